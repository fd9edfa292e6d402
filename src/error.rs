//! The application error: a wire `ErrorCode` with a message that is safe to show, or an
//! internal failure whose details go to the log only. It becomes an `RpcError` for RPC
//! handlers and a JSON body with an HTTP status for REST.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::rpc::{RpcError, proto::ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A refusal the client should see as is.
    #[error("{0}")]
    Rpc(RpcError),
    /// A database failure: logged, shown as `Internal`.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Anything else unexpected: logged, shown as `Internal`.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Rpc(RpcError::new(code, message))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Rpc(error) => error.code,
            Error::Database(_) | Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The error as the client may see it; internal details are logged here instead.
    pub fn into_rpc(self) -> RpcError {
        match self {
            Error::Rpc(error) => error,
            internal => {
                tracing::error!(error = %internal, "internal error");
                RpcError::internal()
            }
        }
    }
}

impl From<RpcError> for Error {
    fn from(error: RpcError) -> Self {
        Error::Rpc(error)
    }
}

impl From<Error> for RpcError {
    fn from(error: Error) -> Self {
        error.into_rpc()
    }
}

/// The HTTP status that matches a wire error code.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest | ErrorCode::UnknownMessage => StatusCode::BAD_REQUEST,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Unavailable | ErrorCode::Disconnected => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// REST errors are `{"error": {"code": "NOT_FOUND", "message": "..."}}`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let error = self.into_rpc();
        let code = error.code.as_str_name().trim_start_matches("ERROR_CODE_");
        let body = serde_json::json!({ "error": { "code": code, "message": error.message } });
        (http_status(error.code), Json(body)).into_response()
    }
}
