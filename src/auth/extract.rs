//! Authentication as an axum extractor: a handler that takes a `Principal` cannot run
//! without a valid `Authorization: Bearer <token>` header.

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, header::AUTHORIZATION, request::Parts},
};

use super::{AuthError, Authenticated, Principal};
use crate::{AppState, error::Error};

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or("no Authorization header")?;
    let value = value
        .to_str()
        .map_err(|_| "Authorization header is not ASCII")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("Authorization header is not 'Bearer <token>'")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("Authorization header is not 'Bearer <token>'");
    }
    Ok(token.trim())
}

/// Authenticates a request's bearer token; logs why a token is refused. A bad token is
/// `Unauthorized` (401); a token that cannot be checked right now is `Unavailable` (503),
/// so clients retry instead of signing out.
pub async fn authenticate_headers(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Authenticated, Error> {
    let token = bearer_token(headers).map_err(|reason| {
        tracing::info!(reason, "request refused");
        Error::unauthorized("missing or malformed bearer token")
    })?;
    state
        .auth
        .authenticate(&state.db, token)
        .await
        .map_err(|error| match error {
            AuthError::Rejected(reason) => {
                tracing::info!(%reason, "token refused");
                Error::unauthorized("invalid, expired or revoked token")
            }
            AuthError::Unavailable(reason) => {
                tracing::error!(%reason, "token check failed");
                Error::unavailable("authentication is temporarily unavailable; retry")
            }
        })
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Arc<AppState>: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = Arc::<AppState>::from_ref(state);
        Ok(authenticate_headers(&state, &parts.headers)
            .await?
            .principal)
    }
}
