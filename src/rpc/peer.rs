//! `Peer`: the connections of one process and everything that moves envelopes over them.
//!
//! Each connection has three parts driven by one `io` future:
//! - the reader decodes frames, hands responses to the waiting `request` and everything
//!   else to a bounded incoming queue (the handler loop);
//! - the writer drains a bounded outgoing queue in batches into the socket's write
//!   buffer and flushes once per batch;
//! - the watchdog, the connection's one timer, queues a WebSocket ping every
//!   `keepalive_interval` and cuts a silent peer or a stalled write.
//!
//! Sending never waits: a connection whose outgoing queue is full (in messages or bytes)
//! is a consumer that cannot keep up, and is cut with a logged reason so one slow client
//! never grows the server's memory.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    time::Duration,
};

use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use rustc_hash::FxHashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{
    connection::{Codec, Connection},
    envelope::{ConnectionId, Receipt},
    error::RpcError,
    io::{Activity, CLOSE_GRACE, Inbound},
    metrics::RpcMetrics,
    proto::{self, EnvelopedMessage, RequestMessage},
    queue,
};

/// WebSocket close codes used by the server.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// Limits and timers of every connection of a `Peer`.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub codec: Codec,
    /// Envelopes queued for one connection before it is cut as a slow consumer.
    pub outgoing_queue_messages: usize,
    /// Encoded bytes queued for one connection before it is cut as a slow consumer.
    pub outgoing_queue_bytes: usize,
    /// Envelopes read ahead of the handler loop; a full queue stops reading (back-pressure).
    pub incoming_queue_messages: usize,
    /// Encoded bytes of the envelopes a connection has queued or being handled; past it,
    /// reading pauses until handlers finish (large requests cannot pile up in memory).
    pub incoming_bytes: usize,
    /// A WebSocket ping is sent this often.
    pub keepalive_interval: Duration,
    /// A peer from which no frame (not even a pong) arrives for this long is dropped
    /// (noticed within one watchdog tick; see `io::watchdog`).
    pub receive_timeout: Duration,
    /// A socket write or flush that makes no progress for this long cuts the connection.
    pub write_timeout: Duration,
    /// `request` gives up after this long with `Timeout`.
    pub request_timeout: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            codec: Codec::default(),
            outgoing_queue_messages: 1024,
            outgoing_queue_bytes: 16 * 1024 * 1024,
            incoming_queue_messages: 64,
            incoming_bytes: 16 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(10),
            receive_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Queued items are small (a pointer and a length) so that a connection's queue blocks
/// cost little memory; an envelope is only allocated while it is queued.
pub(super) enum Outgoing {
    Envelope {
        envelope: Box<proto::Envelope>,
        bytes: usize,
    },
    /// An envelope encoded once for many connections; the writer adds this one's id.
    Shared {
        id: u32,
        envelope: SharedEnvelope,
    },
    /// A WebSocket ping (the watchdog's keepalive).
    Ping,
    Close {
        code: u16,
        reason: String,
    },
}

/// An envelope encoded once for many receivers (a relay, a broadcast). Only the id
/// differs between connections, and protobuf fields may come in any order, so each
/// writer puts its own `id` field in front of these bytes: a copy of the frame per
/// receiver instead of a clone, an allocation and an encode of the message each.
#[derive(Clone)]
pub struct SharedEnvelope(Arc<SharedInner>);

struct SharedInner {
    /// The envelope without its id (field 1 left at zero, so not encoded).
    body: bytes::Bytes,
    /// `collab_rpc_messages_out_total` for this message type, resolved once.
    sent: prometheus::IntCounter,
}

impl SharedEnvelope {
    /// The encoded length a connection queues for it (the id adds at most 6 bytes).
    pub(super) fn queued_bytes(&self) -> usize {
        self.0.body.len() + 6
    }

    /// Appends this envelope, numbered `id`, to `scratch` as protobuf bytes.
    pub(super) fn encode_with_id(&self, id: u32, scratch: &mut Vec<u8>) {
        prost::encoding::uint32::encode(1, &id, scratch);
        scratch.extend_from_slice(&self.0.body);
    }

    pub(super) fn count_sent(&self) {
        self.0.sent.inc();
    }
}

pub(super) struct ConnectionState {
    pub(super) outgoing: queue::Sender<Outgoing>,
    pub(super) queued_bytes: AtomicUsize,
    pub(super) next_message_id: AtomicU32,
    /// Requests awaiting a response, by message id; `None` once the connection is gone.
    pub(super) response_channels: Mutex<Option<FxHashMap<u32, oneshot::Sender<proto::Envelope>>>>,
    /// Notified each time the writer takes a batch off the queue, and on a kill (see
    /// `send_paced`).
    pub(super) drained: tokio::sync::Notify,
    /// Set to cut the connection at once (slow consumer, server reset); `kill` wakes the
    /// connection's `io` and any `send_paced` waiting on it. (A `CancellationToken` would
    /// cost every connection another 112-byte allocation.)
    pub(super) killed: AtomicBool,
    pub(super) kill: tokio::sync::Notify,
    /// Why the connection was cut or failed, for the log and the disconnect metric.
    pub(super) kill_reason: Mutex<Option<(&'static str, String)>>,
}

impl ConnectionState {
    pub(super) fn next_message_id(&self) -> u32 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Marks the connection killed and wakes whoever waits for it.
    pub(super) fn set_killed(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill.notify_waiters();
        self.drained.notify_waiters();
    }

    /// Resolves once the connection is killed.
    pub(super) async fn killed(&self) {
        loop {
            let kill = self.kill.notified();
            tokio::pin!(kill);
            kill.as_mut().enable();
            if self.is_killed() {
                return;
            }
            kill.await;
        }
    }
}

/// A connection's place in the peer. Dropping it (even when the io future panics or is
/// dropped unfinished) unregisters the connection and fails its pending requests.
struct Registration {
    peer: Arc<Peer>,
    id: ConnectionId,
    state: Arc<ConnectionState>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut connections = self.peer.connections.write();
        if connections.remove(&self.id).is_some() {
            self.peer.count.send_replace(connections.len());
            self.peer.metrics.connections.dec();
        }
        // Dropping the senders fails every request still waiting on this connection.
        self.state.response_channels.lock().take();
        // Paced senders waiting for room find the connection gone.
        self.state.drained.notify_waiters();
    }
}

/// An incoming envelope holding its share of the connection's incoming-bytes budget;
/// the share returns when this is dropped (the registry keeps it until the handler ends).
pub struct Incoming {
    pub envelope: Box<proto::Envelope>,
    pub(super) budget: Option<OwnedSemaphorePermit>,
}

impl Incoming {
    /// The envelope, returning its budget share now.
    pub fn into_envelope(self) -> Box<proto::Envelope> {
        self.envelope
    }

    /// The envelope and its budget share, to be dropped when the work is done.
    pub fn into_parts(self) -> (Box<proto::Envelope>, Option<OwnedSemaphorePermit>) {
        (self.envelope, self.budget)
    }
}

/// Takes a connection's incoming envelopes (other than responses) as they are read,
/// inside its `io` future; see [`Peer::add_connection_direct`].
pub type Deliver = Box<dyn FnMut(&Peer, ConnectionId, Box<proto::Envelope>) + Send>;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// A short label: `closed`, `silent`, `slow_consumer`, `bad_frame`, `transport`, ...
    pub kind: &'static str,
    pub detail: String,
}

pub struct Peer {
    pub(super) server_id: AtomicU32,
    pub(super) next_connection_id: AtomicU32,
    pub(super) connections: RwLock<FxHashMap<ConnectionId, Arc<ConnectionState>>>,
    /// The number of connections, for whoever waits for it to change.
    pub(super) count: tokio::sync::watch::Sender<usize>,
    pub(super) config: PeerConfig,
    pub(super) metrics: RpcMetrics,
}

impl Peer {
    /// `server_id` is the first half of every `ConnectionId` this peer hands out (the
    /// server's row in the `servers` table; 0 in clients).
    pub fn new(server_id: u32, config: PeerConfig, metrics: RpcMetrics) -> Arc<Self> {
        Arc::new(Peer {
            server_id: AtomicU32::new(server_id),
            next_connection_id: AtomicU32::new(1),
            connections: RwLock::new(FxHashMap::default()),
            count: tokio::sync::watch::Sender::new(0),
            config,
            metrics,
        })
    }

    pub fn server_id(&self) -> u32 {
        self.server_id.load(Ordering::Relaxed)
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    pub fn metrics(&self) -> &RpcMetrics {
        &self.metrics
    }

    /// Follows the number of connections (e.g. to wait until some have ended).
    pub fn watch_connections(&self) -> tokio::sync::watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Whether `id` is an open connection of this peer.
    pub fn is_connected(&self, id: ConnectionId) -> bool {
        self.connections.read().contains_key(&id)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.read().len()
    }

    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        self.connections.read().keys().copied().collect()
    }

    /// Registers a connection. Returns its id, the `io` future that must be polled for
    /// the connection to make progress (it resolves when the connection ends), and the
    /// queue of incoming envelopes that are not responses.
    pub fn add_connection(
        self: &Arc<Self>,
        connection: Connection,
    ) -> (
        ConnectionId,
        impl Future<Output = Disconnect> + Send + 'static + use<>,
        queue::Receiver<Incoming>,
    ) {
        let (queue, incoming) = queue::channel(self.config.incoming_queue_messages.max(1));
        let budget = Arc::new(Semaphore::new(
            self.config.incoming_bytes.clamp(1, Semaphore::MAX_PERMITS),
        ));
        let (id, io) = self.start(connection, Inbound::Queue { queue, budget });
        (id, io, incoming)
    }

    /// Registers a connection whose incoming envelopes (other than responses) go to
    /// `deliver` as they are read, with no queue and no budget in between: for a
    /// consumer that never makes the reader wait, such as the client library's inbox.
    /// `deliver` runs inside the `io` future; it must not block.
    pub fn add_connection_direct(
        self: &Arc<Self>,
        connection: Connection,
        deliver: Deliver,
    ) -> (
        ConnectionId,
        impl Future<Output = Disconnect> + Send + 'static + use<>,
    ) {
        self.start(connection, Inbound::Direct(deliver))
    }

    fn start(
        self: &Arc<Self>,
        connection: Connection,
        inbound: Inbound,
    ) -> (
        ConnectionId,
        impl Future<Output = Disconnect> + Send + 'static + use<>,
    ) {
        let id = ConnectionId {
            server_id: self.server_id(),
            id: self.next_connection_id.fetch_add(1, Ordering::Relaxed),
        };
        let (outgoing_tx, outgoing_rx) = queue::channel(self.config.outgoing_queue_messages.max(1));
        let state = Arc::new(ConnectionState {
            outgoing: outgoing_tx,
            queued_bytes: AtomicUsize::new(0),
            next_message_id: AtomicU32::new(1),
            response_channels: Mutex::new(Some(FxHashMap::default())),
            drained: tokio::sync::Notify::new(),
            killed: AtomicBool::new(false),
            kill: tokio::sync::Notify::new(),
            kill_reason: Mutex::new(None),
        });
        {
            let mut connections = self.connections.write();
            connections.insert(id, state.clone());
            self.count.send_replace(connections.len());
        }
        self.metrics.connections.inc();

        let peer = self.clone();
        let registration = Registration {
            peer: self.clone(),
            id,
            state: state.clone(),
        };
        let io = async move {
            let registration = registration;
            let Connection { sink, stream } = connection;
            let activity = Activity::default();
            let reader = peer.read_loop(id, &state, stream, inbound, &activity);
            let writer = peer.write_loop(&state, sink, outgoing_rx, &activity);
            let watchdog = peer.watchdog(&state, &activity);
            tokio::pin!(reader, writer, watchdog);
            let ended = tokio::select! {
                ended = &mut reader => {
                    // Queue a close (a no-op when the reader already queued its Error and
                    // close) and let the writer flush what is queued, within bounds.
                    let _ = state.outgoing.try_send(Outgoing::Close { code: close_code::NORMAL, reason: ended.detail.clone() });
                    let _ = tokio::time::timeout(peer.config.write_timeout, &mut writer).await;
                    ended
                }
                ended = &mut writer => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader).await;
                    ended
                }
                ended = &mut watchdog => {
                    if ended.kind == "silent" {
                        // Say why, within bounds, as when the reader ends.
                        let _ = state.outgoing.try_send(Outgoing::Close { code: close_code::POLICY, reason: ended.detail.clone() });
                        let _ = tokio::time::timeout(peer.config.write_timeout, &mut writer).await;
                    }
                    ended
                }
                _ = state.killed() => {
                    let (kind, detail) = state.kill_reason.lock().clone()
                        .unwrap_or(("killed", String::new()));
                    Disconnect { kind, detail }
                }
            };
            // A reason recorded on the way (a bad frame, a kill) beats how the halves ended.
            let ended = match state.kill_reason.lock().clone() {
                Some((kind, detail)) => Disconnect { kind, detail },
                None => ended,
            };
            // Count the disconnect before unregistering, so whoever sees the connection
            // gone (see `watch_connections`) also sees it counted.
            peer.metrics
                .disconnects
                .with_label_values(&[ended.kind])
                .inc();
            drop(registration);
            ended
        };
        (id, io)
    }

    /// Sends `error` (not as a response) and closes the connection with `code`: the end
    /// of a session the server no longer accepts, e.g. after its token was revoked.
    pub fn close_with_error(
        &self,
        id: ConnectionId,
        error: RpcError,
        code: u16,
        kind: &'static str,
    ) {
        if let Ok(state) = self.connection(id) {
            state
                .kill_reason
                .lock()
                .get_or_insert((kind, error.message.clone()));
            self.fail_connection(&state, error, code);
        }
    }

    pub(super) fn connection(&self, id: ConnectionId) -> Result<Arc<ConnectionState>, RpcError> {
        self.connections
            .read()
            .get(&id)
            .cloned()
            .ok_or_else(RpcError::disconnected)
    }

    /// Cuts a connection at once, without a close handshake.
    pub(super) fn kill(&self, state: &ConnectionState, kind: &'static str, detail: String) {
        state.kill_reason.lock().get_or_insert((kind, detail));
        state.set_killed();
    }

    /// Queues an envelope without waiting. A full queue means a consumer that cannot
    /// keep up: it is disconnected rather than buffered without bound.
    fn enqueue(
        &self,
        id: ConnectionId,
        state: &ConnectionState,
        envelope: proto::Envelope,
    ) -> Result<(), RpcError> {
        let bytes = envelope.encoded_len();
        let max_frame = self.config.codec.max_frame_bytes;
        if bytes > max_frame {
            return Err(super::connection::too_large(bytes, max_frame));
        }
        let item = Outgoing::Envelope {
            envelope: Box::new(envelope),
            bytes,
        };
        self.enqueue_item(id, state, item, bytes)
    }

    /// Queues `item` (`bytes` long once encoded), cutting a consumer that cannot keep up.
    fn enqueue_item(
        &self,
        id: ConnectionId,
        state: &ConnectionState,
        item: Outgoing,
        bytes: usize,
    ) -> Result<(), RpcError> {
        let queued = state.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued > self.config.outgoing_queue_bytes {
            state.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.metrics
                .queue_overflows
                .with_label_values(&["bytes"])
                .inc();
            let detail = format!(
                "outgoing queue over {} bytes",
                self.config.outgoing_queue_bytes
            );
            tracing::warn!(%id, %detail, "disconnecting slow consumer");
            self.kill(state, "slow_consumer", detail);
            return Err(RpcError::disconnected());
        }
        match state.outgoing.try_send(item) {
            Ok(()) => Ok(()),
            Err(queue::TrySendError::Full(_)) => {
                state.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.metrics
                    .queue_overflows
                    .with_label_values(&["messages"])
                    .inc();
                let detail = format!(
                    "outgoing queue full ({} messages)",
                    self.config.outgoing_queue_messages
                );
                tracing::warn!(%id, %detail, "disconnecting slow consumer");
                self.kill(state, "slow_consumer", detail);
                Err(RpcError::disconnected())
            }
            Err(queue::TrySendError::Closed(_)) => Err(RpcError::disconnected()),
        }
    }

    fn envelope(
        state: &ConnectionState,
        payload: proto::envelope::Payload,
        responding_to: Option<u32>,
        original_sender_id: Option<ConnectionId>,
    ) -> proto::Envelope {
        proto::Envelope {
            id: state.next_message_id(),
            responding_to,
            original_sender_id: original_sender_id.map(Into::into),
            payload: Some(payload),
            one_way: false,
        }
    }

    /// Sends a message; does not wait for the socket.
    pub fn send<T: EnvelopedMessage>(&self, to: ConnectionId, message: T) -> Result<(), RpcError> {
        let state = self.connection(to)?;
        let envelope = Self::one_way(Self::envelope(&state, message.into_payload(), None, None));
        self.enqueue(to, &state, envelope)
    }

    /// Encodes `message` once for several receivers (see `send_shared`), marked as
    /// relayed from `sender` when there is one.
    pub fn share<T: EnvelopedMessage>(
        &self,
        message: T,
        sender: Option<ConnectionId>,
    ) -> Result<SharedEnvelope, RpcError> {
        let envelope = Self::one_way(proto::Envelope {
            id: 0,
            responding_to: None,
            original_sender_id: sender.map(Into::into),
            payload: Some(message.into_payload()),
            one_way: false,
        });
        let shared = SharedEnvelope(Arc::new(SharedInner {
            body: envelope.encode_to_vec().into(),
            sent: self.metrics.messages_out.with_label_values(&[T::NAME]),
        }));
        let max_frame = self.config.codec.max_frame_bytes;
        if shared.queued_bytes() > max_frame {
            return Err(super::connection::too_large(
                shared.queued_bytes(),
                max_frame,
            ));
        }
        Ok(shared)
    }

    /// Sends an envelope encoded by `share`; like `send`, it never waits.
    pub fn send_shared(&self, to: ConnectionId, envelope: &SharedEnvelope) -> Result<(), RpcError> {
        let state = self.connection(to)?;
        let item = Outgoing::Shared {
            id: state.next_message_id(),
            envelope: envelope.clone(),
        };
        self.enqueue_item(to, &state, item, envelope.queued_bytes())
    }

    /// Sends an envelope encoded by `share` to each of `to`, looking the connections up
    /// under one read of the table (a relay's hot path: one lookup per receiver was 4 %
    /// of the server's time at the fan-out peak). Returns how many it was queued for; a
    /// receiver that is gone or too slow goes to `skipped` and does not stop the others.
    pub fn send_shared_each(
        &self,
        to: impl IntoIterator<Item = ConnectionId>,
        envelope: &SharedEnvelope,
        mut skipped: impl FnMut(ConnectionId, RpcError),
    ) -> usize {
        let connections = self.connections.read();
        let mut sent = 0;
        for id in to {
            let outcome = match connections.get(&id) {
                Some(state) => {
                    let item = Outgoing::Shared {
                        id: state.next_message_id(),
                        envelope: envelope.clone(),
                    };
                    self.enqueue_item(id, state, item, envelope.queued_bytes())
                }
                None => Err(RpcError::disconnected()),
            };
            match outcome {
                Ok(()) => sent += 1,
                Err(error) => skipped(id, error),
            }
        }
        sent
    }

    /// A request type sent without waiting for an answer is marked, so the receiver
    /// handles it as a message.
    fn one_way(mut envelope: proto::Envelope) -> proto::Envelope {
        envelope.one_way = envelope.payload.as_ref().is_some_and(proto::is_request);
        envelope
    }

    /// Like `send`, but first waits (up to `write_timeout`) until the connection's
    /// outgoing queue is at most half full, in messages and in bytes: for long streams
    /// (a large worktree to a joiner) that must not trip the slow-consumer cut or crowd
    /// out live traffic. A queue that does not drain in time fails with `Timeout`.
    pub async fn send_paced<T: EnvelopedMessage>(
        &self,
        to: ConnectionId,
        message: T,
    ) -> Result<(), RpcError> {
        let state = self.connection(to)?;
        let max_messages = state.outgoing.max_capacity();
        let gone = || state.is_killed() || !self.connections.read().contains_key(&to);
        let has_room = |state: &ConnectionState| {
            state.outgoing.len() <= max_messages / 2
                && state.queued_bytes.load(Ordering::Relaxed)
                    <= self.config.outgoing_queue_bytes / 2
        };
        let wait = async {
            loop {
                let drained = state.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if has_room(&state) || gone() {
                    return;
                }
                // A kill wakes this too.
                drained.await;
            }
        };
        if tokio::time::timeout(self.config.write_timeout, wait)
            .await
            .is_err()
        {
            return Err(RpcError::timeout(T::NAME).with_tag("peer", to));
        }
        if gone() {
            return Err(RpcError::disconnected());
        }
        self.send(to, message)
    }

    /// Relays a message from `sender` to `to`, marking its original sender.
    pub fn forward_send<T: EnvelopedMessage>(
        &self,
        sender: ConnectionId,
        to: ConnectionId,
        message: T,
    ) -> Result<(), RpcError> {
        let state = self.connection(to)?;
        let envelope = Self::envelope(&state, message.into_payload(), None, Some(sender));
        self.enqueue(to, &state, Self::one_way(envelope))
    }

    /// Sends a request and waits (up to `request_timeout`) for its declared response.
    pub async fn request<T: RequestMessage>(
        &self,
        to: ConnectionId,
        request: T,
    ) -> Result<T::Response, RpcError> {
        self.request_internal(None, to, request).await
    }

    /// Relays a request from `sender` to `to` and waits for the answer.
    pub async fn forward_request<T: RequestMessage>(
        &self,
        sender: ConnectionId,
        to: ConnectionId,
        request: T,
    ) -> Result<T::Response, RpcError> {
        self.request_internal(Some(sender), to, request).await
    }

    async fn request_internal<T: RequestMessage>(
        &self,
        original_sender_id: Option<ConnectionId>,
        to: ConnectionId,
        request: T,
    ) -> Result<T::Response, RpcError> {
        let state = self.connection(to)?;
        let envelope = Self::envelope(&state, request.into_payload(), None, original_sender_id);
        let message_id = envelope.id;
        let (tx, rx) = oneshot::channel();
        state
            .response_channels
            .lock()
            .as_mut()
            .ok_or_else(RpcError::disconnected)?
            .insert(message_id, tx);
        let forget = || {
            if let Some(channels) = state.response_channels.lock().as_mut() {
                channels.remove(&message_id);
            }
        };
        if let Err(error) = self.enqueue(to, &state, envelope) {
            forget();
            return Err(error);
        }
        let response = match tokio::time::timeout(self.config.request_timeout, rx).await {
            Err(_) => {
                forget();
                return Err(RpcError::timeout(T::NAME).with_tag("peer", to));
            }
            Ok(Err(_)) => return Err(RpcError::disconnected()),
            Ok(Ok(response)) => response,
        };
        match response.payload {
            Some(proto::envelope::Payload::Error(error)) => Err(RpcError::from_proto(error)),
            Some(payload) => T::Response::from_payload(payload).ok_or_else(|| {
                RpcError::new(
                    proto::ErrorCode::Internal,
                    format!("{} was answered with the wrong message type", T::NAME),
                )
            }),
            None => Err(RpcError::new(proto::ErrorCode::Internal, "empty response")),
        }
    }

    /// Answers a request with its declared response type.
    pub fn respond<T: RequestMessage>(
        &self,
        receipt: Receipt<T>,
        response: T::Response,
    ) -> Result<(), RpcError> {
        let state = self.connection(receipt.sender_id)?;
        let envelope = Self::envelope(
            &state,
            response.into_payload(),
            Some(receipt.message_id),
            None,
        );
        self.enqueue(receipt.sender_id, &state, envelope)
    }

    /// Answers a request with an error.
    pub fn respond_with_error<T>(
        &self,
        receipt: Receipt<T>,
        error: RpcError,
    ) -> Result<(), RpcError> {
        self.respond_with_error_to(receipt.sender_id, receipt.message_id, error)
    }

    /// Answers the envelope `message_id` (whatever its type) with an error.
    pub(crate) fn respond_with_error_to(
        &self,
        to: ConnectionId,
        message_id: u32,
        error: RpcError,
    ) -> Result<(), RpcError> {
        self.metrics
            .errors
            .with_label_values(&[error.code.as_str_name()])
            .inc();
        let state = self.connection(to)?;
        let payload = proto::envelope::Payload::Error(error.to_proto());
        let envelope = Self::envelope(&state, payload, Some(message_id), None);
        self.enqueue(to, &state, envelope)
    }

    /// Closes a connection politely: queued envelopes go out, then a close frame.
    pub fn close(&self, id: ConnectionId, code: u16, reason: &str) {
        if let Ok(state) = self.connection(id) {
            let close = Outgoing::Close {
                code,
                reason: reason.to_string(),
            };
            if state.outgoing.try_send(close).is_err() {
                self.kill(&state, "closed", format!("closed by us ({code}: {reason})"));
            }
        }
    }

    /// Cuts a connection at once.
    pub fn disconnect(&self, id: ConnectionId, reason: &str) {
        if let Ok(state) = self.connection(id) {
            self.kill(&state, "disconnected", reason.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(bytes: usize) -> proto::UpdateBuffer {
        proto::UpdateBuffer {
            project_id: 3,
            buffer_id: 4,
            operations: vec![proto::BufferOperation {
                kind: 0,
                data: vec![7; bytes].into(),
            }],
        }
    }

    /// A shared envelope, numbered by each connection, decodes to exactly what a
    /// per-receiver encode would have sent: small (plain) and large (compressed).
    #[test]
    fn shared_envelopes_decode_like_per_receiver_ones() {
        let peer = Peer::new(1, PeerConfig::default(), RpcMetrics::new(None));
        let sender = ConnectionId {
            server_id: 1,
            id: 9,
        };
        let codec = &peer.config.codec;
        for bytes in [10, 100_000] {
            let shared = peer.share(update(bytes), Some(sender)).unwrap();
            for id in [1, 300, u32::MAX] {
                let mut scratch = Vec::new();
                shared.encode_with_id(id, &mut scratch);
                let frame = codec.frame(&scratch).unwrap();
                assert_eq!(
                    frame.starts_with(&super::super::connection::ZSTD_MAGIC),
                    bytes > 1024
                );
                let expected = Peer::one_way(proto::Envelope {
                    id,
                    responding_to: None,
                    original_sender_id: Some(sender.into()),
                    payload: Some(update(bytes).into_payload()),
                    one_way: false,
                });
                assert!(expected.one_way, "a relayed request is marked one way");
                assert_eq!(*codec.decode(frame.clone()).unwrap(), expected);
            }
        }
    }

    /// Sharing checks the frame cap once, before any receiver is queued.
    #[test]
    fn shared_envelopes_over_the_cap_are_refused() {
        let mut config = PeerConfig::default();
        config.codec.max_frame_bytes = 4096;
        let peer = Peer::new(1, config, RpcMetrics::new(None));
        let error = peer.share(update(8192), None).err().unwrap();
        assert_eq!(error.code, proto::ErrorCode::PayloadTooLarge);
        assert!(peer.share(update(1024), None).is_ok());
    }
}
