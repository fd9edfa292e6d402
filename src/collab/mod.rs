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

pub mod connection;
pub mod connection_pool;
pub mod contacts;
pub mod core;
pub mod locks;
pub mod presence;
pub mod room_lifecycle;
pub mod rooms;
pub mod session;
pub mod users;

use std::sync::Arc;

pub use session::Session;

use crate::rpc::{Peer, Server};

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
        .add_message_handler(rooms::update_presence);
    server
}
