//! REST routes under `/api`, one file per resource. Every route authenticates with the
//! `Principal` extractor; errors are `{"error": {"code", "message"}}` with a status.
//!
//! - [`users`]: `GET /api/user`, `POST /api/users`.
//! - [`tokens`]: `POST /api/users/{id}/access_tokens`, `POST /api/ws-token`,
//!   `DELETE /api/access_tokens/{jti}`.
//! - [`docs`]: `/api/docs/{name}` (state, updates, named versions).

pub mod docs;
pub mod tokens;
pub mod users;

use axum::{
    Router,
    routing::{delete, get, post},
};

use crate::serve::HttpState;

/// The routes; request bodies of document updates may be `max_body` bytes.
pub fn routes(max_body: usize) -> Router<HttpState> {
    Router::new()
        .route(
            "/api/docs/{*path}",
            get(docs::get)
                .post(docs::post)
                .layer(axum::extract::DefaultBodyLimit::max(max_body)),
        )
        .route("/api/user", get(users::current_user))
        .route("/api/users", post(users::create_user))
        .route(
            "/api/users/{id}/access_tokens",
            post(tokens::create_access_token),
        )
        .route("/api/ws-token", post(tokens::create_ws_token))
        .route(
            "/api/access_tokens/{jti}",
            delete(tokens::revoke_access_token),
        )
}
