//! Typed views of envelopes: who sent a message, its id, and a `Receipt` that lets the
//! receiver answer a request with the declared response type only.

use std::{fmt, marker::PhantomData, time::Instant};

use super::proto::{self, EnvelopedMessage, RequestMessage};

/// A connection anywhere in a cluster: the owning server's id and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    pub server_id: u32,
    pub id: u32,
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server_id, self.id)
    }
}

impl From<ConnectionId> for proto::PeerId {
    fn from(id: ConnectionId) -> Self {
        proto::PeerId {
            server_id: id.server_id,
            id: id.id,
        }
    }
}

impl From<proto::PeerId> for ConnectionId {
    fn from(id: proto::PeerId) -> Self {
        ConnectionId {
            server_id: id.server_id,
            id: id.id,
        }
    }
}

/// A decoded message with its routing information.
#[derive(Clone, Debug)]
pub struct TypedEnvelope<T> {
    /// The connection it arrived on.
    pub sender_id: ConnectionId,
    /// Set when the server relayed it from another connection.
    pub original_sender_id: Option<ConnectionId>,
    pub message_id: u32,
    pub payload: T,
    pub received_at: Instant,
}

impl<T: RequestMessage> TypedEnvelope<T> {
    /// The receipt needed to answer this request.
    pub fn receipt(&self) -> Receipt<T> {
        Receipt {
            sender_id: self.sender_id,
            message_id: self.message_id,
            _request: PhantomData,
        }
    }
}

/// Proof that a request of type `T` arrived: answering takes `T::Response` only.
pub struct Receipt<T> {
    pub sender_id: ConnectionId,
    pub message_id: u32,
    _request: PhantomData<fn() -> T>,
}

impl<T> Receipt<T> {
    pub(crate) fn new(sender_id: ConnectionId, message_id: u32) -> Self {
        Receipt {
            sender_id,
            message_id,
            _request: PhantomData,
        }
    }
}

impl<T> Clone for Receipt<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Receipt<T> {}

impl<T> fmt::Debug for Receipt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Receipt({}#{})", self.sender_id, self.message_id)
    }
}

/// Splits an envelope into its typed payload, if it has the expected type.
pub fn into_typed<T: EnvelopedMessage>(
    sender_id: ConnectionId,
    envelope: proto::Envelope,
) -> Option<TypedEnvelope<T>> {
    into_typed_at(sender_id, envelope, Instant::now())
}

/// Like `into_typed`, with the time it was received (one clock read for a batch).
pub fn into_typed_at<T: EnvelopedMessage>(
    sender_id: ConnectionId,
    envelope: proto::Envelope,
    received_at: Instant,
) -> Option<TypedEnvelope<T>> {
    let payload = T::from_payload(envelope.payload?)?;
    Some(TypedEnvelope {
        sender_id,
        original_sender_id: envelope.original_sender_id.map(Into::into),
        message_id: envelope.id,
        payload,
        received_at,
    })
}
