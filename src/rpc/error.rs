//! `RpcError`: an error code, a message that is safe to show, and tags. It is what a
//! handler's error becomes on the wire, and what `request` returns when the other side
//! answered with an `Error` (or did not answer).

use std::fmt;

use super::proto::{self, ErrorCode};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
    pub tags: Vec<String>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            tags: Vec::new(),
        }
    }

    /// Adds a `key=value` tag that clients may branch on.
    pub fn with_tag(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.tags.push(format!("{key}={value}"));
        self
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
    pub fn unknown_message(name: &str) -> Self {
        Self::new(
            ErrorCode::UnknownMessage,
            format!("no handler for message {name}"),
        )
    }
    pub fn timeout(what: &str) -> Self {
        Self::new(ErrorCode::Timeout, format!("{what} timed out"))
    }
    pub fn disconnected() -> Self {
        Self::new(ErrorCode::Disconnected, "connection closed")
    }

    pub fn to_proto(&self) -> proto::Error {
        proto::Error {
            code: self.code as i32,
            message: self.message.clone(),
            tags: self.tags.clone(),
        }
    }

    pub fn from_proto(error: proto::Error) -> Self {
        RpcError {
            // An unknown code from a newer peer reads as Internal rather than failing.
            code: ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal),
            message: error.message,
            tags: error.tags,
        }
    }

    /// The tag's value, if the error carries `key=value`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|tag| tag.strip_prefix(key)?.strip_prefix('='))
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str_name(), self.message)
    }
}

impl std::error::Error for RpcError {}
