//! # collab
//!
//! A self-hostable real-time collaboration server for code editors: protobuf RPC
//! envelopes over a WebSocket for native editors, SQLite embedded by default and
//! PostgreSQL in production. See `README.md` and `PROTOCOL.md`.
//!
//! ## Layout
//! - [`config`]: `Config` and `StoreArgs`, every flag with its env fallback and default.
//! - [`error`]: `Error`, which becomes a wire `ErrorCode` or an HTTP status.
//! - [`rpc`]: envelopes, framing, `Peer`, the handler registry. Knows no domain.
//! - [`cluster`]: the one routing point for sends to a `ConnectionId`.
//! - [`auth`]: JWT access tokens, principals, WebSocket tokens.
//! - [`db`]: sea-orm database, typed ids, entities and queries; `migrations` beside it.
//! - [`collab`]: the RPC domains, one handler file each, and the registration chain.
//! - [`documents`]: the durable Yjs document store (update log, group commit,
//!   snapshots), shared by the Yjs endpoint, REST and channel notes.
//! - [`yjs`]: `GET /yjs/{name}`, the y-websocket endpoint.
//! - [`livekit`]: LiveKit tokens and RoomService calls.
//! - [`api`]: REST routes, one file per resource.
//! - [`serve`]: builds the state and router and runs the server with graceful shutdown.
//! - [`seed`]: `collab seed`.
//! - [`client`]: the client library editors link.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.

pub mod api;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod collab;
pub mod config;
pub mod db;
pub mod documents;
pub mod error;
pub mod livekit;
pub mod metrics;
#[path = "../migrations/mod.rs"]
pub mod migrations;
pub mod rpc;
pub mod seed;
pub mod serve;
pub mod yjs;

use std::{sync::Arc, time::Instant};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use config::Config;
pub use error::{Error, Result};

/// What every handler and route shares.
pub struct AppState {
    pub config: Config,
    pub db: db::Database,
    pub auth: auth::Auth,
    pub peer: Arc<rpc::Peer>,
    pub cluster: cluster::Cluster,
    pub pool: collab::connection_pool::ConnectionPool,
    pub metrics: metrics::Metrics,
    pub server_id: db::ServerId,
    pub started_at: Instant,
    /// Cancelled on SIGINT/SIGTERM: stop accepting, finish handlers, close sockets.
    pub shutdown: CancellationToken,
    /// Tracks every RPC connection task, so shutdown can wait for them.
    pub connections: TaskTracker,
    /// Per-user locks held from a transaction until its broadcasts are queued.
    pub user_locks: collab::locks::UserLocks,
    /// Per-room locks, likewise.
    pub room_locks: collab::locks::RoomLocks,
    /// Per-project locks, likewise (taken after the room's when both are needed).
    pub project_locks: collab::locks::KeyedLocks<db::ProjectId>,
    /// The collaborators of shared projects, in memory for the relay paths.
    pub projects: collab::project_relay::ProjectRelay,
    /// Ring timers of pending calls.
    pub call_timers: collab::room_lifecycle::CallTimers,
    /// Who is in which room on this server, and their presence.
    pub rooms: Arc<collab::presence::RoomPresence>,
    /// Durable Yjs documents (the Yjs endpoint, REST, channel notes).
    pub documents: Arc<documents::DocumentStore>,
    /// Channel subscriptions, notes editors and the chat rate limiter.
    pub channels: collab::channels::ChannelsState,
    /// LiveKit, when configured.
    pub livekit: Option<Arc<livekit::LiveKit>>,
    /// One permit per allowed RPC connection (`--max-connections`).
    pub connection_slots: Arc<tokio::sync::Semaphore>,
    /// Turns for connect and disconnect work (`--connection-work-concurrency`).
    pub connection_work: Arc<tokio::sync::Semaphore>,
    /// Turns for project join streams (`collab::projects::MAX_JOIN_STREAMS`).
    pub join_streams: tokio::sync::Semaphore,
}
