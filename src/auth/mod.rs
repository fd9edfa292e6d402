//! Authentication: JWT access tokens recorded by `jti` (so they can be revoked),
//! principals, and short-lived WebSocket tokens.
//!
//! - [`jwt`]: claims and HS256 encoding.
//! - [`secret`]: the signing secret (configured, or generated into the data directory).
//! - [`extract`]: the axum extractor, so a REST handler cannot run unauthenticated.
//!
//! A rejected token is logged with its reason and answered with a bare 401: the client
//! learns only that it must sign in again.

pub mod extract;
pub mod jwt;
pub mod secret;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    db::{Database, UserId, entities::user},
    error::{Error, Result},
};
pub use jwt::{Keys, Permission, WsClaims};

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A user acting as themselves.
    User(user::Model),
    /// An administrator acting as themselves, with admin rights.
    Admin(user::Model),
    /// An administrator acting as another user, with that user's rights only.
    Impersonated {
        user: user::Model,
        admin: user::Model,
    },
}

impl Principal {
    /// The user whose rights apply.
    pub fn user(&self) -> &user::Model {
        match self {
            Principal::User(user) | Principal::Admin(user) => user,
            Principal::Impersonated { user, .. } => user,
        }
    }

    pub fn user_id(&self) -> UserId {
        self.user().id
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin(_))
    }
}

/// A freshly minted token.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MintedToken {
    pub token: String,
    pub jti: String,
    pub expires_at: DateTime<Utc>,
}

/// Why authentication failed; logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is bad: the client must sign in again (401).
    #[error("{0}")]
    Rejected(String),
    /// The token could not be checked (the database is unreachable): retry later (503).
    #[error("token check failed: {0}")]
    Unavailable(String),
}

/// A checked access token: who it speaks for, and its id (to end its sessions when it
/// is revoked).
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub principal: Principal,
    pub jti: String,
}

#[derive(Clone)]
pub struct Auth {
    keys: Keys,
}

fn expiry(ttl: Duration) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(ttl).map_err(|_| Error::invalid("ttl is too long"))?;
    let expires_at = now
        .checked_add_signed(ttl)
        .ok_or_else(|| Error::invalid("ttl is too long"))?;
    Ok((now, expires_at))
}

impl Auth {
    pub fn new(secret: &[u8]) -> Self {
        Auth {
            keys: Keys::new(secret),
        }
    }

    /// Mints an access token for `user` (or, when `impersonated` is set, for the admin
    /// `user` acting as `impersonated`) and records it so it can be revoked.
    pub async fn mint_access_token(
        &self,
        db: &Database,
        user: &user::Model,
        impersonated: Option<&user::Model>,
        ttl: Duration,
    ) -> Result<MintedToken> {
        if impersonated.is_some() && !user.is_admin {
            return Err(Error::forbidden("only admins may impersonate"));
        }
        let (now, expires_at) = expiry(ttl)?;
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = jwt::AccessClaims {
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: jti.clone(),
            aud: jwt::ACCESS_AUDIENCE.to_string(),
            user_id: user.id.0,
            is_admin: user.is_admin,
            impersonated_user_id: impersonated.map(|user| user.id.0),
        };
        let token = self.keys.encode(&claims).map_err(anyhow::Error::from)?;
        db.insert_access_token(
            &jti,
            user.id,
            impersonated.map(|u| u.id),
            user.is_admin,
            expires_at,
        )
        .await?;
        Ok(MintedToken {
            token,
            jti,
            expires_at,
        })
    }

    /// Checks signature, expiry, audience, the token's row (it must exist and not be
    /// revoked) and the users it names.
    pub async fn authenticate(
        &self,
        db: &Database,
        token: &str,
    ) -> Result<Authenticated, AuthError> {
        let claims: jwt::AccessClaims = self
            .keys
            .decode(token, jwt::ACCESS_AUDIENCE)
            .map_err(|error| AuthError::Rejected(format!("invalid token: {error}")))?;
        let internal = |error: Error| AuthError::Unavailable(error.to_string());
        let row = db
            .get_access_token(&claims.jti)
            .await
            .map_err(internal)?
            .ok_or_else(|| AuthError::Rejected(format!("unknown token {}", claims.jti)))?;
        if row.revoked_at.is_some() {
            return Err(AuthError::Rejected(format!(
                "token {} was revoked",
                claims.jti
            )));
        }
        if row.user_id.0 != claims.user_id
            || row.impersonated_user_id.map(|id| id.0) != claims.impersonated_user_id
        {
            return Err(AuthError::Rejected(format!(
                "token {} does not match its record",
                claims.jti
            )));
        }
        let user = db
            .get_user(row.user_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| AuthError::Rejected(format!("user {} no longer exists", row.user_id)))?;
        let principal = match row.impersonated_user_id {
            Some(target) => {
                if !user.is_admin {
                    return Err(AuthError::Rejected(format!(
                        "user {} is no longer an admin",
                        user.id
                    )));
                }
                let target = db
                    .get_user(target)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| {
                        AuthError::Rejected(format!("user {target} no longer exists"))
                    })?;
                Principal::Impersonated {
                    user: target,
                    admin: user,
                }
            }
            // Admin rights need both the token's claim and the user's current flag, so
            // demoting an admin takes effect on tokens already issued.
            None if claims.is_admin && user.is_admin => Principal::Admin(user),
            None => Principal::User(user),
        };
        Ok(Authenticated {
            principal,
            jti: claims.jti,
        })
    }

    /// Mints a short-lived `collab-ws` token for `user`, optionally scoped to a document.
    pub fn mint_ws_token(
        &self,
        user: UserId,
        document: Option<String>,
        permission: Permission,
        ttl: Duration,
    ) -> Result<MintedToken> {
        let (now, expires_at) = expiry(ttl)?;
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = WsClaims {
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: jti.clone(),
            aud: jwt::WS_AUDIENCE.to_string(),
            user_id: user.0,
            document,
            permission,
        };
        let token = self.keys.encode(&claims).map_err(anyhow::Error::from)?;
        Ok(MintedToken {
            token,
            jti,
            expires_at,
        })
    }

    pub fn verify_ws_token(&self, token: &str) -> Result<WsClaims, AuthError> {
        self.keys
            .decode(token, jwt::WS_AUDIENCE)
            .map_err(|error| AuthError::Rejected(format!("invalid ws token: {error}")))
    }
}
