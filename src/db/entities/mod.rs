//! One sea-orm entity per table.

pub mod access_token;
pub mod channel;
pub mod channel_member;
pub mod channel_message;
pub mod channel_message_mention;
pub mod channel_message_reaction;
pub mod contact;
pub mod document;
pub mod document_snapshot;
pub mod document_snapshot_part;
pub mod document_update;
pub mod document_version;
pub mod notification;
pub mod observed_channel_message;
pub mod project;
pub mod project_collaborator;
pub mod room;
pub mod room_participant;
pub mod server;
pub mod user;
pub mod worktree;
pub mod worktree_diagnostic_summary;
pub mod worktree_entry;
