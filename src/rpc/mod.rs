//! The RPC core: protobuf envelopes over a WebSocket. It knows nothing of users, rooms
//! or channels; the domains in `crate::collab` plug into it through the handler registry.
//!
//! - [`proto`]: the generated types and the message tables (request → response, once).
//! - [`envelope`]: `ConnectionId`, `TypedEnvelope<T>`, `Receipt<T>`.
//! - [`error`]: `RpcError`, the error value that travels as a wire `Error`.
//! - [`connection`]: frames, the codec (compression, size caps) and WebSocket adapters.
//! - [`peer`]: `Peer`, one per process: connections, send/request/respond/forward,
//!   bounded outgoing queues, batched writes and keepalive.
//! - `io` (private): the reader and writer halves of each connection.
//! - [`queue`]: the bounded per-connection queues, which allocate only while in use.
//! - [`server`]: the handler registry keyed by `TypeId` and the per-connection loop.
//! - [`metrics`]: Prometheus counters for everything above.

pub mod connection;
pub mod envelope;
pub mod error;
mod io;
pub mod metrics;
pub mod peer;
pub mod proto;
pub mod queue;
pub mod server;

pub use connection::{Codec, Connection};
pub use envelope::{ConnectionId, Receipt, TypedEnvelope};
pub use error::RpcError;
pub use peer::{Peer, PeerConfig, SharedEnvelope};
pub use proto::{EnvelopedMessage, RequestMessage};
pub use server::{Response, Server};
