//! One sea-orm entity per table.

pub mod access_token;
pub mod contact;
pub mod server;
pub mod user;
