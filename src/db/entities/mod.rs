//! One sea-orm entity per table.

pub mod access_token;
pub mod contact;
pub mod room;
pub mod room_participant;
pub mod server;
pub mod user;
