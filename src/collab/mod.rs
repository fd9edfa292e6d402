//! The RPC domains: one handler file per domain, and below, the one registration chain
//! that says which function answers which message.
//!
//! - [`connection`]: the `/rpc` handshake and a connection's life (Hello, presence in the
//!   pool, shutdown).
//! - [`session`]: `Session`, what every handler receives.
//! - [`connection_pool`]: user ⇄ connections on this server.
//! - [`locks`]: per-user and per-room locks that keep broadcasts in commit order.
//! - [`core`]: `Ping`, the application-level liveness check.
//! - [`users`]: user lookup.
//! - [`contacts`]: contact requests and online status.
//! - [`rooms`]: rooms, calls, roles, locations, rejoin, LiveKit.
//! - [`room_lifecycle`]: lost connections, ring timers, the sweep of gone servers.
//! - [`presence`]: room membership in memory and presence (coalesced, expiring).
//! - [`projects`]: shared projects: share, join, leave, reshare, roles, host loss.
//! - [`worktrees`]: the worktree mirror: host updates and the stream to joiners.
//! - [`project_relay`]: the in-memory collaborators of each project, and buffer
//!   operations relayed from it.
//! - [`project_forwarding`]: requests forwarded to the host, and following.
//! - [`project_lifecycle`]: projects when connections leave rooms, drop, or never come
//!   back; the sweep.
//! - [`channels`]: the channel tree, subscriptions to it, and channel call rooms.
//! - [`channel_members`]: invitations, members and roles.
//! - [`channel_notes`]: channel notes (a document of the store) over RPC.
//! - [`chat`]: channel chat, its rate limit, mentions.
//! - [`notifications`]: notifications, paged and pushed.

pub mod channel_members;
pub mod channel_notes;
pub mod channels;
pub mod chat;
pub mod connection;
pub mod connection_pool;
pub mod contacts;
pub mod core;
pub mod locks;
pub mod notifications;
pub mod presence;
pub mod project_forwarding;
pub mod project_lifecycle;
pub mod project_relay;
pub mod projects;
pub mod room_lifecycle;
pub mod rooms;
pub mod session;
pub mod users;
pub mod worktrees;

use std::sync::Arc;

pub use session::Session;

use crate::rpc::{Peer, Server, proto};

/// Every message the server handles, one line each.
pub fn build_server(peer: Arc<Peer>, max_in_flight: usize) -> Server<Session> {
    let mut server = Server::new(peer, max_in_flight);
    server
        .add_request_handler(core::ping)
        .add_request_handler(users::get_users)
        .add_request_handler(users::search_users)
        .add_request_handler(contacts::request_contact)
        .add_request_handler(contacts::respond_to_contact_request)
        .add_request_handler(contacts::remove_contact)
        .add_request_handler(rooms::create_room)
        .add_request_handler(rooms::call)
        .add_request_handler(rooms::join_room)
        .add_request_handler(rooms::rejoin_room)
        .add_request_handler(rooms::decline_call)
        .add_request_handler(rooms::cancel_call)
        .add_request_handler(rooms::leave_room)
        .add_request_handler(rooms::update_participant_location)
        .add_request_handler(rooms::set_room_participant_role)
        .add_message_handler(rooms::update_presence)
        .add_request_handler(projects::share_project)
        .add_request_handler(projects::unshare_project)
        .add_request_handler(projects::join_project)
        .add_request_handler(projects::leave_project)
        .add_request_handler(projects::reshare_project)
        .add_request_handler(projects::update_project)
        .add_request_handler(projects::set_project_collaborator_role)
        .add_request_handler(worktrees::update_worktree)
        .add_request_handler(worktrees::update_diagnostic_summary)
        .add_inline_request_handler(project_relay::update_buffer)
        .add_request_handler(project_forwarding::forward::<proto::OpenBufferByPath>)
        .add_request_handler(project_forwarding::forward::<proto::OpenBufferById>)
        .add_request_handler(project_forwarding::forward::<proto::SearchProject>)
        .add_request_handler(project_forwarding::forward::<proto::GetHover>)
        .add_request_handler(project_forwarding::forward::<proto::SaveBuffer>)
        .add_request_handler(project_forwarding::forward::<proto::CreateProjectEntry>)
        .add_request_handler(project_forwarding::follow)
        .add_request_handler(project_forwarding::unfollow)
        .add_inline_message_handler(project_forwarding::update_followers)
        .add_request_handler(channels::subscribe_to_channels)
        .add_request_handler(channels::create_channel)
        .add_request_handler(channels::rename_channel)
        .add_request_handler(channels::move_channel)
        .add_request_handler(channels::delete_channel)
        .add_request_handler(channels::set_channel_visibility)
        .add_request_handler(channels::join_channel)
        .add_request_handler(channel_members::invite_channel_member)
        .add_request_handler(channel_members::respond_to_channel_invite)
        .add_request_handler(channel_members::remove_channel_member)
        .add_request_handler(channel_members::set_channel_member_role)
        .add_request_handler(channel_members::get_channel_members)
        .add_request_handler(channel_notes::join_channel_notes)
        .add_request_handler(channel_notes::rejoin_channel_notes)
        .add_request_handler(channel_notes::leave_channel_notes)
        .add_request_handler(channel_notes::update_channel_notes)
        .add_message_handler(channel_notes::channel_notes_awareness)
        .add_request_handler(chat::send_channel_message)
        .add_request_handler(chat::edit_channel_message)
        .add_request_handler(chat::delete_channel_message)
        .add_request_handler(chat::add_reaction)
        .add_request_handler(chat::remove_reaction)
        .add_request_handler(chat::get_channel_messages)
        .add_request_handler(chat::ack_channel_message)
        .add_request_handler(notifications::get_notifications)
        .add_request_handler(notifications::mark_notification_read);
    server
}
