//! Tokens over REST.
//!
//! - `POST /api/users/{id}/access_tokens` (admins): an access token for user `id`, or with
//!   `"impersonate": true` a token for the calling admin acting as `id`.
//! - `POST /api/ws-token`: a short-lived `collab-ws` token for the caller (admins may name
//!   another `user_id`), optionally scoped to a document and a permission.
//! - `DELETE /api/access_tokens/{jti}`: revoke (admins, or the token's owner).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    auth::{MintedToken, Permission, Principal},
    db::UserId,
    error::{Error, Result},
};

/// The longest TTL a request may ask for: one year.
const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

fn ttl(requested: Option<u64>, default: Duration) -> Result<Duration> {
    match requested {
        None => Ok(default),
        Some(0) => Err(Error::invalid("ttl_seconds must be positive")),
        Some(seconds) if seconds > MAX_TTL_SECONDS => Err(Error::invalid(format!(
            "ttl_seconds must be at most {MAX_TTL_SECONDS}"
        ))),
        Some(seconds) => Ok(Duration::from_secs(seconds)),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessToken {
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub impersonate: bool,
}

#[derive(Serialize)]
pub struct TokenJson {
    #[serde(flatten)]
    pub minted: MintedToken,
    pub user_id: i32,
}

pub async fn create_access_token(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<i32>,
    body: Option<Json<CreateAccessToken>>,
) -> Result<(StatusCode, Json<TokenJson>)> {
    let Principal::Admin(admin) = &principal else {
        return Err(Error::forbidden("only admins may create access tokens"));
    };
    let body = body.map(|Json(body)| body).unwrap_or_default();
    let target = state
        .db
        .get_user(UserId(id))
        .await?
        .ok_or_else(|| Error::not_found(format!("no user {id}")))?;
    let ttl = ttl(body.ttl_seconds, state.config.token_ttl)?;
    let minted = if body.impersonate {
        state
            .auth
            .mint_access_token(&state.db, admin, Some(&target), ttl)
            .await?
    } else {
        state
            .auth
            .mint_access_token(&state.db, &target, None, ttl)
            .await?
    };
    Ok((
        StatusCode::CREATED,
        Json(TokenJson {
            minted,
            user_id: target.id.0,
        }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateWsToken {
    pub user_id: Option<i32>,
    pub document: Option<String>,
    pub permission: Option<Permission>,
    pub ttl_seconds: Option<u64>,
}

pub async fn create_ws_token(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: Option<Json<CreateWsToken>>,
) -> Result<(StatusCode, Json<TokenJson>)> {
    let body = body.map(|Json(body)| body).unwrap_or_default();
    let user = match body.user_id {
        None => principal.user_id(),
        Some(id) if id == principal.user_id().0 => principal.user_id(),
        Some(id) if principal.is_admin() => {
            state
                .db
                .get_user(UserId(id))
                .await?
                .ok_or_else(|| Error::not_found(format!("no user {id}")))?
                .id
        }
        Some(_) => {
            return Err(Error::forbidden(
                "only admins may mint tokens for other users",
            ));
        }
    };
    if body
        .document
        .as_deref()
        .is_some_and(|doc| doc.is_empty() || doc.len() > 512)
    {
        return Err(Error::invalid("document must be 1-512 characters"));
    }
    let ttl = ttl(body.ttl_seconds, state.config.ws_token_ttl)?;
    let permission = body.permission.unwrap_or(Permission::Write);
    let minted = state
        .auth
        .mint_ws_token(user, body.document, permission, ttl)?;
    Ok((
        StatusCode::CREATED,
        Json(TokenJson {
            minted,
            user_id: user.0,
        }),
    ))
}

pub async fn revoke_access_token(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(jti): Path<String>,
) -> Result<StatusCode> {
    let token = state
        .db
        .get_access_token(&jti)
        .await?
        .ok_or_else(|| Error::not_found(format!("no access token {jti}")))?;
    if !principal.is_admin() && token.user_id != principal.user_id() {
        return Err(Error::forbidden(
            "only admins may revoke other users' tokens",
        ));
    }
    state.db.revoke_access_token(&jti).await?;
    // Sessions on other servers (and revocations by the CLI) are ended by the sweep.
    crate::collab::connection::end_token_sessions(&state, &jti);
    Ok(StatusCode::NO_CONTENT)
}
