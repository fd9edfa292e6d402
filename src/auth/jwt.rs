//! JWT encoding and decoding (HS256). Access tokens carry audience `collab`; WebSocket
//! tokens carry audience `collab-ws`, so neither can stand in for the other.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ACCESS_AUDIENCE: &str = "collab";
pub const WS_AUDIENCE: &str = "collab-ws";
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECONDS: u64 = 5;

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub aud: String,
    /// The token's owner (the admin, for an impersonation token).
    pub user_id: i32,
    pub is_admin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user_id: Option<i32>,
}

/// What a WebSocket token allows on its document.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
}

/// Claims of a short-lived WebSocket token, for browsers that cannot set headers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WsClaims {
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub aud: String,
    pub user_id: i32,
    /// The one document this token opens; `None` means any document the user may open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    pub permission: Permission,
}

#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn encode<C: Serialize>(&self, claims: &C) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Decodes and checks signature, expiry and audience.
    pub fn decode<C: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<C, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        Ok(jsonwebtoken::decode::<C>(token, &self.decoding, &validation)?.claims)
    }
}
