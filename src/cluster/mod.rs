//! The one routing point for every message the domains send to a connection.
//!
//! A `ConnectionId` names its owning server. Connections owned by this process are
//! written through the local `Peer`; connections owned by another server will be reached
//! through the cluster bus (Redis pub/sub) once it exists. Until then such a send fails
//! with `Unavailable` and says why, rather than vanishing.

use std::sync::Arc;

use crate::rpc::{
    ConnectionId, EnvelopedMessage, Peer, RequestMessage, RpcError, SharedEnvelope,
    proto::ErrorCode,
};

#[derive(Clone)]
pub struct Cluster {
    peer: Arc<Peer>,
}

impl Cluster {
    pub fn new(peer: Arc<Peer>) -> Self {
        Cluster { peer }
    }

    /// The local peer when `to` is ours; the reason otherwise.
    fn route(&self, to: ConnectionId) -> Result<&Peer, RpcError> {
        if to.server_id == self.peer.server_id() {
            Ok(&self.peer)
        } else {
            Err(RpcError::new(
                ErrorCode::Unavailable,
                format!(
                    "connection {to} belongs to server {}, which this server cannot reach",
                    to.server_id
                ),
            ))
        }
    }

    pub fn send<M: EnvelopedMessage>(&self, to: ConnectionId, message: M) -> Result<(), RpcError> {
        self.route(to)?.send(to, message)
    }

    /// Waits for room in the receiver's queue, then sends (see `Peer::send_paced`).
    pub async fn send_paced<M: EnvelopedMessage>(
        &self,
        to: ConnectionId,
        message: M,
    ) -> Result<(), RpcError> {
        self.route(to)?.send_paced(to, message).await
    }

    pub fn forward_send<M: EnvelopedMessage>(
        &self,
        sender: ConnectionId,
        to: ConnectionId,
        message: M,
    ) -> Result<(), RpcError> {
        self.route(to)?.forward_send(sender, to, message)
    }

    pub async fn request<M: RequestMessage>(
        &self,
        to: ConnectionId,
        request: M,
    ) -> Result<M::Response, RpcError> {
        self.route(to)?.request(to, request).await
    }

    pub async fn forward_request<M: RequestMessage>(
        &self,
        sender: ConnectionId,
        to: ConnectionId,
        request: M,
    ) -> Result<M::Response, RpcError> {
        self.route(to)?.forward_request(sender, to, request).await
    }

    /// Encodes `message` once for several receivers, as relayed from `sender` if any.
    pub fn share<M: EnvelopedMessage>(
        &self,
        message: M,
        sender: Option<ConnectionId>,
    ) -> Result<SharedEnvelope, RpcError> {
        self.peer.share(message, sender)
    }

    /// Sends an envelope made by `share`.
    pub fn send_shared(&self, to: ConnectionId, envelope: &SharedEnvelope) -> Result<(), RpcError> {
        self.route(to)?.send_shared(to, envelope)
    }

    /// Like `send_shared` for each of `to` (see `Peer::send_shared_each`); returns how
    /// many it was queued for.
    pub fn send_shared_each(
        &self,
        to: impl IntoIterator<Item = ConnectionId>,
        envelope: &SharedEnvelope,
        mut skipped: impl FnMut(ConnectionId, RpcError),
    ) -> usize {
        let server = self.peer.server_id();
        let mut elsewhere = Vec::new();
        let local = to.into_iter().filter(|id| {
            let here = id.server_id == server;
            if !here {
                elsewhere.push(*id);
            }
            here
        });
        let sent = self.peer.send_shared_each(local, envelope, &mut skipped);
        for id in elsewhere {
            if let Err(error) = self.route(id) {
                skipped(id, error);
            }
        }
        sent
    }

    /// Sends `message` to each connection, encoded once. A failure for one receiver
    /// (gone, too slow) is logged and does not stop the others.
    pub fn broadcast<M: EnvelopedMessage>(
        &self,
        to: impl IntoIterator<Item = ConnectionId>,
        message: &M,
    ) {
        let mut to = to.into_iter().peekable();
        if to.peek().is_none() {
            return;
        }
        let shared = match self.share(message.clone(), None) {
            Ok(shared) => shared,
            Err(error) => {
                tracing::warn!(%error, message = M::NAME, "broadcast not sent");
                return;
            }
        };
        self.send_shared_each(to, &shared, |receiver, error| {
            tracing::debug!(%receiver, %error, message = M::NAME, "broadcast skipped a receiver");
        });
    }
}
