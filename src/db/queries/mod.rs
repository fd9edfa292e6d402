//! Queries, as `impl Database` blocks split by domain.

pub mod access_tokens;
pub mod contacts;
pub mod documents;
pub mod project_sweep;
pub mod projects;
pub mod rooms;
pub mod servers;
pub mod users;
pub mod worktrees;
