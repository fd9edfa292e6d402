//! `GET /api/user` (the caller) and `POST /api/users` (admins create users).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    auth::Principal,
    db::{entities::user, queries::users::Ensured},
    error::{Error, Result},
};

#[derive(Serialize)]
pub struct UserJson {
    pub id: i32,
    pub login: String,
    pub name: String,
    pub is_admin: bool,
}

impl From<&user::Model> for UserJson {
    fn from(user: &user::Model) -> Self {
        UserJson {
            id: user.id.0,
            login: user.login.clone(),
            name: user.name.clone(),
            is_admin: user.is_admin,
        }
    }
}

#[derive(Serialize)]
pub struct CurrentUser {
    #[serde(flatten)]
    pub user: UserJson,
    /// The admin behind an impersonation token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonator: Option<UserJson>,
}

pub async fn current_user(principal: Principal) -> Json<CurrentUser> {
    let impersonator = match &principal {
        Principal::Impersonated { admin, .. } => Some(admin.into()),
        _ => None,
    };
    Json(CurrentUser {
        user: principal.user().into(),
        impersonator,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub login: String,
    pub name: Option<String>,
    #[serde(default)]
    pub is_admin: bool,
}

/// Creates a user (201), or returns the existing one brought up to date (200).
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Json(body): Json<CreateUser>,
) -> Result<(StatusCode, Json<UserJson>)> {
    if !principal.is_admin() {
        return Err(Error::forbidden("only admins may create users"));
    }
    let (user, ensured) = state
        .db
        .ensure_user(&body.login, body.name.as_deref(), body.is_admin)
        .await?;
    let status = if ensured == Ensured::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json((&user).into())))
}
