//! Queries, as `impl Database` blocks split by domain.

pub mod access_tokens;
pub mod channel_members;
pub mod channel_rooms;
pub mod channel_tree;
pub mod channels;
pub mod chat;
pub mod contacts;
pub mod documents;
pub mod notifications;
pub mod project_sweep;
pub mod projects;
pub mod rooms;
pub mod servers;
pub mod users;
pub mod worktrees;
