//! The Yjs endpoint: `GET /yjs/{document name...}` speaks y-protocols v1 to stock
//! `y-websocket` clients, on the durable document store.
//!
//! - Auth happens before the upgrade: a token in `?token=` or `Authorization: Bearer`,
//!   either a `collab-ws` token (scoped to a document or not, read or write) or an
//!   access token (read-write). No valid token → 401; a token for another document → 403.
//! - [`connection`]: one socket's life. [`protocol`]: the framing.

pub mod connection;
pub mod protocol;

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State, WebSocketUpgrade},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{
    AppState,
    auth::{AuthError, extract::bearer_token, jwt::Permission},
    db::{ChannelId, UserId},
    error::Error,
    rpc::proto::{ChannelRole, ErrorCode},
};

#[derive(Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// Who may open `name`, and how: from a `collab-ws` token or an access token.
pub async fn authorize(
    app: &AppState,
    token: &str,
    name: &str,
) -> Result<(UserId, Permission), Error> {
    let refused = |reason: String| {
        tracing::info!(%reason, "document access refused");
        Error::unauthorized("invalid, expired or revoked token")
    };
    let (user, permission) = match app.auth.verify_ws_token(token) {
        Ok(claims) => {
            if claims.document.as_deref().is_some_and(|d| d != name) {
                return Err(Error::forbidden("this token is for another document"));
            }
            (UserId(claims.user_id), claims.permission)
        }
        Err(_) => match app.auth.authenticate(&app.db, token).await {
            Ok(authenticated) => (authenticated.principal.user_id(), Permission::Write),
            Err(AuthError::Rejected(reason)) => return Err(refused(reason)),
            Err(AuthError::Unavailable(reason)) => {
                tracing::error!(%reason, "token check failed");
                return Err(Error::unavailable(
                    "authentication is temporarily unavailable; retry",
                ));
            }
        },
    };
    if let Some(rest) = name.strip_prefix("channel/") {
        return channel_notes_access(app, user, permission, rest).await;
    }
    Ok((user, permission))
}

/// `channel/<id>/notes` follows the channel's roles: admins and members write (if the
/// token allows), guests who see the channel read; anyone else is refused. Other names
/// under `channel/` are reserved.
async fn channel_notes_access(
    app: &AppState,
    user: UserId,
    permission: Permission,
    rest: &str,
) -> Result<(UserId, Permission), Error> {
    let channel = notes_channel(&format!("channel/{rest}"))
        .ok_or_else(|| Error::forbidden("channel documents are named channel/<id>/notes"))?;
    let allowed = channel_permission(app, user, channel).await?;
    let permission = if allowed == Permission::Write {
        permission
    } else {
        Permission::Read
    };
    Ok((user, permission))
}

/// The channel whose notes `name` is (`channel/<id>/notes`, the id spelled canonically:
/// `channel/05/notes` would be another document).
pub fn notes_channel(name: &str) -> Option<ChannelId> {
    name.strip_prefix("channel/")?
        .strip_suffix("/notes")
        .and_then(|id| id.parse::<u64>().ok().filter(|n| n.to_string() == id))
        .and_then(ChannelId::from_proto)
}

/// What `user` may do with `channel`'s notes: write (admins, members), read (guests who
/// see it), or nothing (`Forbidden`).
pub async fn channel_permission(
    app: &AppState,
    user: UserId,
    channel: ChannelId,
) -> Result<Permission, Error> {
    let path = match app.db.channel_path(channel).await {
        Ok(path) => path,
        Err(error) if error.code() == ErrorCode::NotFound => {
            return Err(Error::forbidden(format!(
                "no channel {channel} you can see"
            )));
        }
        Err(error) => return Err(error),
    };
    let role = path.require(user, channel, ChannelRole::Guest, "reading notes")?;
    Ok(match role {
        ChannelRole::Admin | ChannelRole::Member => Permission::Write,
        _ => Permission::Read,
    })
}

/// The token of a request: `?token=` first, then the `Authorization` header.
pub fn request_token<'a>(query: &'a TokenQuery, headers: &'a HeaderMap) -> Option<&'a str> {
    query
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .or_else(|| bearer_token(headers).ok())
}

pub async fn upgrade(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(error) = crate::documents::check_name(&name) {
        return error.into_response();
    }
    let Some(token) = request_token(&query, &headers) else {
        return Error::unauthorized("a token is required (?token= or Authorization: Bearer)")
            .into_response();
    };
    let (user, permission) = match authorize(&app, token, &name).await {
        Ok(access) => access,
        Err(error) => return error.into_response(),
    };
    if app.shutdown.is_cancelled() {
        return Error::unavailable("server is shutting down").into_response();
    }
    let max = app.config.max_message_bytes as usize;
    let tracked = app.connections.token();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| async move {
            let session = connection::Session {
                app,
                name,
                user,
                permission,
            };
            connection::run(socket, session).await;
            drop(tracked);
        })
}
