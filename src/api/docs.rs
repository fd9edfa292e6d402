//! Documents over REST, on the same store as the Yjs endpoint. A document's name may
//! contain `/`; the last segments `updates` and `snapshots[/N]` address the sub-resources.
//!
//! - `GET /api/docs/{name}`: the state as one Yjs v1 update (`application/octet-stream`);
//!   with `?sv=<base64 state vector>` only what that state lacks.
//! - `POST /api/docs/{name}/updates`: applies a v1 update (the body); connected sockets
//!   receive it. Answers once it is committed: `{"sequence": n}`.
//! - `POST /api/docs/{name}/snapshots`: `{"name"?: "..."}` stores the current state as a
//!   named version → `{"version": n}`.
//! - `GET /api/docs/{name}/snapshots`: the versions, oldest first.
//! - `GET /api/docs/{name}/snapshots/{version}`: the state at that version.
//!
//! Auth as for `/yjs`: an access token, or a `collab-ws` token (in the header or
//! `?token=`); writes need write permission.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use yrs::{StateVector, updates::decoder::Decode};

use crate::{
    AppState,
    auth::jwt::Permission,
    db::{UserId, queries::documents::Transport},
    error::{Error, Result},
    yjs::{TokenQuery, authorize, request_token},
};

/// What a path under `/api/docs/` names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    State(&'a str),
    Updates(&'a str),
    Versions(&'a str),
    Version(&'a str, i32),
}

fn target(path: &str) -> Target<'_> {
    if let Some(name) = path.strip_suffix("/updates") {
        return Target::Updates(name);
    }
    if let Some(name) = path.strip_suffix("/snapshots") {
        return Target::Versions(name);
    }
    if let Some((rest, number)) = path.rsplit_once('/')
        && let Some(name) = rest.strip_suffix("/snapshots")
        && let Ok(number) = number.parse::<i32>()
    {
        return Target::Version(name, number);
    }
    Target::State(path)
}

#[derive(Deserialize)]
pub struct DocQuery {
    token: Option<String>,
    sv: Option<String>,
}

async fn access(
    app: &AppState,
    query: &DocQuery,
    headers: &HeaderMap,
    name: &str,
    write: bool,
) -> Result<UserId> {
    crate::documents::check_name(name)?;
    let token_query = TokenQuery {
        token: query.token.clone(),
    };
    let token = request_token(&token_query, headers)
        .ok_or_else(|| Error::unauthorized("a token is required"))?;
    let (user, permission) = authorize(app, token, name).await?;
    if write && permission != Permission::Write {
        return Err(Error::forbidden("this token may only read the document"));
    }
    Ok(user)
}

fn binary(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

fn base64_bytes(value: &str, what: &str) -> Result<Vec<u8>> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|engine| engine.decode(value).ok())
        .ok_or_else(|| Error::invalid(format!("{what} is not base64")))
}

#[derive(Serialize)]
struct VersionInfo {
    version: i32,
    name: String,
    author_id: Option<i32>,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn get(
    State(app): State<Arc<AppState>>,
    Path(path): Path<String>,
    Query(query): Query<DocQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    match target(&path) {
        Target::State(name) => {
            access(&app, &query, &headers, name, false).await?;
            let since = match &query.sv {
                Some(sv) => StateVector::decode_v1(&base64_bytes(sv, "sv")?)
                    .map_err(|_| Error::invalid("sv is not an encoded state vector"))?,
                None => StateVector::default(),
            };
            let doc = app.documents.open(name).await?;
            Ok(binary(doc.encode_since(&since)))
        }
        Target::Versions(name) => {
            access(&app, &query, &headers, name, false).await?;
            let Some(doc) = app.db.find_document(name).await? else {
                return Ok(Json(Vec::<VersionInfo>::new()).into_response());
            };
            let versions = app.db.list_versions(doc.id).await?;
            Ok(Json(
                versions
                    .into_iter()
                    .map(|v| VersionInfo {
                        version: v.version,
                        name: v.name,
                        author_id: v.author_id.map(|id| id.0),
                        created_at: v.created_at,
                    })
                    .collect::<Vec<_>>(),
            )
            .into_response())
        }
        Target::Version(name, number) => {
            access(&app, &query, &headers, name, false).await?;
            let not_found = || Error::not_found(format!("{name} has no version {number}"));
            let doc = app.db.find_document(name).await?.ok_or_else(not_found)?;
            let version = app
                .db
                .get_version(doc.id, number)
                .await?
                .ok_or_else(not_found)?;
            Ok(binary(version.state))
        }
        Target::Updates(_) => Err(Error::invalid("POST an update to this address")),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    name: Option<String>,
}

pub async fn post(
    State(app): State<Arc<AppState>>,
    Path(path): Path<String>,
    Query(query): Query<DocQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    match target(&path) {
        Target::Updates(name) => {
            let user = access(&app, &query, &headers, name, true).await?;
            if body.len() as u64 > app.config.max_message_bytes {
                return Err(Error::new(
                    crate::rpc::proto::ErrorCode::PayloadTooLarge,
                    "the update is larger than --max-message-bytes",
                ));
            }
            let doc = app.documents.open(name).await?;
            let sequence = app
                .documents
                .apply_update(&doc, body.to_vec(), Some(user), Transport::Http, None)
                .await?;
            Ok(Json(serde_json::json!({ "sequence": sequence })).into_response())
        }
        Target::Versions(name) => {
            let user = access(&app, &query, &headers, name, true).await?;
            let request: NewVersion = if body.is_empty() {
                NewVersion::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|error| Error::invalid(format!("invalid body: {error}")))?
            };
            let label = request.name.unwrap_or_default();
            if label.len() > 200 {
                return Err(Error::invalid("a version name is at most 200 bytes"));
            }
            let doc = app.documents.open(name).await?;
            // A version holds what is saved: everything queued before it is committed.
            app.documents.flush().await;
            let state = doc.encode_since(&StateVector::default());
            let version = app
                .db
                .create_version(doc.id, label, state, Some(user))
                .await?;
            Ok(Json(serde_json::json!({ "version": version })).into_response())
        }
        _ => Err(Error::invalid("POST to {name}/updates or {name}/snapshots")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_documents_and_their_parts() {
        assert_eq!(target("a/b"), Target::State("a/b"));
        assert_eq!(target("a/b/updates"), Target::Updates("a/b"));
        assert_eq!(target("a/b/snapshots"), Target::Versions("a/b"));
        assert_eq!(target("a/b/snapshots/3"), Target::Version("a/b", 3));
        assert_eq!(target("a/snapshots/x"), Target::State("a/snapshots/x"));
    }
}
