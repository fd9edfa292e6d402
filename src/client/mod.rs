//! The client library editors link: one authenticated connection to a collab server.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use collab::{client::Client, rpc::proto};
//! let client = Client::connect("ws://127.0.0.1:8080/rpc", "<access token>").await?;
//! client.request(proto::Ping {}).await?; // typed: returns proto::Ack
//! let contacts = client.recv::<proto::UpdateContacts>().await?;
//! println!("{} contacts", contacts.payload.contacts.len());
//! # Ok(()) }
//! ```
//!
//! Incoming messages that are not responses wait in a per-type inbox until `recv::<M>()`
//! takes them. The inbox is bounded: past `inbox_capacity` messages of one type, the
//! oldest is dropped (and counted), so an application that ignores a message type never
//! grows without bound.

use std::{
    any::TypeId,
    collections::VecDeque,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use parking_lot::{Mutex, RwLock};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig};

use crate::rpc::{
    Connection, ConnectionId, EnvelopedMessage, Peer, PeerConfig, RequestMessage, RpcError,
    TypedEnvelope,
    envelope::into_typed,
    metrics::RpcMetrics,
    peer::{Disconnect, close_code},
    proto::{self, PROTOCOL_VERSION},
};

/// Why `connect` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server answered the upgrade with an HTTP error: 401 (token), 426 (version), 503.
    #[error("server refused the connection with HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("invalid server URL or token: {0}")]
    Invalid(String),
    #[error("could not connect: {0}")]
    Transport(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub protocol_version: u32,
    pub peer: PeerConfig,
    /// Unclaimed messages kept per message type.
    pub inbox_capacity: usize,
    /// How long `connect` waits for the upgrade and the server's `Hello`.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            protocol_version: PROTOCOL_VERSION,
            peer: PeerConfig::default(),
            inbox_capacity: 4096,
            connect_timeout: Duration::from_secs(20),
        }
    }
}

/// Messages waiting for `recv`, sorted by type as the connection's reader decodes them
/// (no queue or task in between). Each type keeps the wakers of the `recv`s waiting for
/// it, registered under the same lock as the check, so a message wakes only those.
#[derive(Default)]
struct Inbox {
    /// Request types the application answers; any other request is refused at once.
    answered: RwLock<FxHashSet<TypeId>>,
    slots: Mutex<FxHashMap<TypeId, Slot>>,
    /// Numbers the waiting `recv`s, so a cancelled one can take its waker back.
    next_waiter: AtomicU64,
    closed: AtomicBool,
    /// Why the connection ended, once it has.
    ended: Mutex<Option<Disconnect>>,
    /// Wakes `closed()` (every waiting `recv` is woken too) and a failed handshake.
    closing: Notify,
    /// The first message was not `Hello`: the handshake failed.
    bad_greeting: AtomicBool,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Slot {
    queue: VecDeque<Box<proto::Envelope>>,
    /// The `recv`s waiting for this type, by number.
    waiters: Vec<(u64, Waker)>,
}

impl Inbox {
    /// Sorts one incoming envelope into its type's slot (runs in the connection's reader).
    fn deliver(
        &self,
        peer: &Peer,
        connection_id: ConnectionId,
        envelope: Box<proto::Envelope>,
        capacity: usize,
    ) {
        let Some(payload) = envelope.payload.as_ref() else {
            return;
        };
        let (type_id, name) = proto::payload_type(payload);
        if proto::is_request(payload)
            && !envelope.one_way
            && !self.answered.read().contains(&type_id)
        {
            // Nobody here will answer: say so now rather than let the requester wait
            // for its timeout.
            let error = RpcError::unknown_message(name);
            let _ = peer.respond_with_error_to(connection_id, envelope.id, error);
            return;
        }
        let mut slots = self.slots.lock();
        let slot = slots.entry(type_id).or_default();
        if slot.queue.len() >= capacity {
            slot.queue.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        slot.queue.push_back(envelope);
        // Woken under the lock: waking only schedules the task, and `drain` keeps the
        // list's memory for the next wait.
        for (_, waker) in slot.waiters.drain(..) {
            waker.wake();
        }
    }

    fn take(&self, type_id: TypeId) -> Option<Box<proto::Envelope>> {
        self.slots.lock().get_mut(&type_id)?.queue.pop_front()
    }

    fn close(&self, ended: Disconnect) {
        *self.ended.lock() = Some(ended);
        self.closed.store(true, Ordering::SeqCst);
        // A `recv` checks `closed` under this lock before it registers, so each one
        // either saw the flag or is woken here.
        for slot in self.slots.lock().values_mut() {
            for (_, waker) in slot.waiters.drain(..) {
                waker.wake();
            }
        }
        self.closing.notify_waiters();
    }
}

/// `recv`'s future: the next message of one type, or `Disconnected`.
struct Recv<'a> {
    inbox: &'a Inbox,
    type_id: TypeId,
    /// This future's number while its waker is registered.
    waiter: Option<u64>,
}

impl Future for Recv<'_> {
    type Output = Result<Box<proto::Envelope>, RpcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut slots = this.inbox.slots.lock();
        let slot = slots.entry(this.type_id).or_default();
        let registered = this
            .waiter
            .and_then(|number| slot.waiters.iter().position(|(n, _)| *n == number));
        let ready = match slot.queue.pop_front() {
            Some(envelope) => Some(Ok(envelope)),
            None if this.inbox.closed.load(Ordering::SeqCst) => Some(Err(RpcError::disconnected())),
            None => None,
        };
        if let Some(ready) = ready {
            if let Some(index) = registered {
                slot.waiters.swap_remove(index);
            }
            this.waiter = None;
            return Poll::Ready(ready);
        }
        match registered {
            Some(index) => slot.waiters[index].1.clone_from(cx.waker()),
            None => {
                let number = *this
                    .waiter
                    .get_or_insert_with(|| this.inbox.next_waiter.fetch_add(1, Ordering::Relaxed));
                slot.waiters.push((number, cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        // Cancelled while waiting: take the waker back, or the list would keep it.
        if let Some(number) = self.waiter
            && let Some(slot) = self.inbox.slots.lock().get_mut(&self.type_id)
        {
            slot.waiters.retain(|(n, _)| *n != number);
        }
    }
}

pub struct Client {
    peer: Arc<Peer>,
    connection_id: ConnectionId,
    hello: proto::Hello,
    inbox: Arc<Inbox>,
    io: JoinHandle<()>,
}

impl Client {
    pub async fn connect(url: &str, token: &str) -> Result<Client, ConnectError> {
        Self::connect_with(url, token, ClientOptions::default()).await
    }

    pub async fn connect_with(
        url: &str,
        token: &str,
        options: ClientOptions,
    ) -> Result<Client, ConnectError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| ConnectError::Invalid(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| ConnectError::Invalid("token is not a header value".into()))?,
        );
        headers.insert(
            "x-collab-protocol-version",
            options
                .protocol_version
                .to_string()
                .parse()
                .expect("digits are a header value"),
        );
        let max = options.peer.codec.max_frame_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            .read_buffer_size(16 * 1024)
            .write_buffer_size(16 * 1024);
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _) = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| ConnectError::Transport("timed out".into()))?
            .map_err(|error| match error {
                tungstenite::Error::Http(response) => ConnectError::Http {
                    status: response.status().as_u16(),
                    body: response
                        .body()
                        .as_ref()
                        .map(|body| String::from_utf8_lossy(body).trim().to_string())
                        .unwrap_or_default(),
                },
                other => ConnectError::Transport(other.to_string()),
            })?;

        let peer = Peer::new(0, options.peer.clone(), RpcMetrics::new(None));
        let inbox = Arc::new(Inbox::default());
        let capacity = options.inbox_capacity.max(1);
        let sorting = inbox.clone();
        let mut greeted = false;
        let deliver = Box::new(move |peer: &Peer, id, envelope: Box<proto::Envelope>| {
            // The server's first envelope must be Hello.
            if !greeted {
                greeted = true;
                if !matches!(envelope.payload, Some(proto::envelope::Payload::Hello(_))) {
                    sorting.bad_greeting.store(true, Ordering::SeqCst);
                    sorting.closing.notify_waiters();
                    return;
                }
            }
            sorting.deliver(peer, id, envelope, capacity);
        });
        let (connection_id, io) =
            peer.add_connection_direct(Connection::from_tungstenite(socket), deliver);
        let io_inbox = inbox.clone();
        let io = tokio::spawn(async move {
            let ended = io.await;
            io_inbox.close(ended);
        });
        let client = Client {
            peer,
            connection_id,
            hello: proto::Hello::default(),
            inbox,
            io,
        };
        let greeting = async {
            // Hello, a first message that is not Hello, or the end of the connection.
            loop {
                let closing = client.inbox.closing.notified();
                tokio::pin!(closing);
                closing.as_mut().enable();
                if client.inbox.bad_greeting.load(Ordering::SeqCst) {
                    return Err(ConnectError::Handshake(
                        "the first message was not Hello".into(),
                    ));
                }
                tokio::select! {
                    hello = client.recv::<proto::Hello>() => {
                        return hello.map(|hello| hello.payload).map_err(|_| {
                            let ended = client.inbox.ended.lock().clone();
                            let detail = ended.map(|e| e.detail).unwrap_or_default();
                            ConnectError::Handshake(format!("connection ended: {detail}"))
                        });
                    }
                    _ = &mut closing => {}
                }
            }
        };
        let hello = tokio::time::timeout(options.connect_timeout, greeting)
            .await
            .map_err(|_| ConnectError::Handshake("no Hello from the server".into()))??;
        let mut client = client;
        client.hello = hello;
        Ok(client)
    }

    /// The `Hello` the server sent: this connection's peer id and the user id.
    pub fn hello(&self) -> &proto::Hello {
        &self.hello
    }

    pub fn peer_id(&self) -> ConnectionId {
        self.hello.peer_id.map(Into::into).unwrap_or(ConnectionId {
            server_id: 0,
            id: 0,
        })
    }

    pub fn user_id(&self) -> u64 {
        self.hello.user_id
    }

    /// Sends a request and waits for its declared response (or the server's error).
    pub async fn request<T: RequestMessage>(&self, request: T) -> Result<T::Response, RpcError> {
        self.peer.request(self.connection_id, request).await
    }

    /// Sends a message without waiting for anything.
    pub fn send<T: EnvelopedMessage>(&self, message: T) -> Result<(), RpcError> {
        self.peer.send(self.connection_id, message)
    }

    /// Answers a request the server relayed to this client.
    pub fn respond<T: RequestMessage>(
        &self,
        request: &TypedEnvelope<T>,
        response: T::Response,
    ) -> Result<(), RpcError> {
        self.peer.respond(request.receipt(), response)
    }

    pub fn respond_with_error<T: RequestMessage>(
        &self,
        request: &TypedEnvelope<T>,
        error: RpcError,
    ) -> Result<(), RpcError> {
        self.peer.respond_with_error(request.receipt(), error)
    }

    /// Declares that the application answers requests of type `M` (taken with `recv`,
    /// answered with `respond`). Requests of other types are refused with
    /// `UnknownMessage` as they arrive.
    pub fn answer_requests<M: RequestMessage>(&self) {
        self.inbox.answered.write().insert(TypeId::of::<M>());
    }

    /// Takes the oldest unclaimed message of type `M`, if any.
    pub fn try_recv<M: EnvelopedMessage>(&self) -> Option<TypedEnvelope<M>> {
        let envelope = self.inbox.take(TypeId::of::<M>())?;
        into_typed(self.connection_id, *envelope)
    }

    /// Waits for the next message of type `M`; `Disconnected` once the connection ended
    /// and no such message is left.
    pub async fn recv<M: EnvelopedMessage>(&self) -> Result<TypedEnvelope<M>, RpcError> {
        let recv = Recv {
            inbox: &self.inbox,
            type_id: TypeId::of::<M>(),
            waiter: None,
        };
        self.typed(*recv.await?)
    }

    fn typed<M: EnvelopedMessage>(
        &self,
        envelope: proto::Envelope,
    ) -> Result<TypedEnvelope<M>, RpcError> {
        // The inbox sorted it by this type, so the payload matches.
        into_typed(self.connection_id, envelope).ok_or_else(|| {
            RpcError::new(proto::ErrorCode::Internal, "inbox sorted a message wrongly")
        })
    }

    /// Like `recv`, giving up after `timeout` with `Timeout`.
    pub async fn recv_timeout<M: EnvelopedMessage>(
        &self,
        timeout: Duration,
    ) -> Result<TypedEnvelope<M>, RpcError> {
        tokio::time::timeout(timeout, self.recv::<M>())
            .await
            .unwrap_or_else(|_| Err(RpcError::timeout(M::NAME)))
    }

    /// Messages dropped because their type's inbox was full.
    pub fn dropped_messages(&self) -> u64 {
        self.inbox.dropped.load(Ordering::Relaxed)
    }

    pub fn is_connected(&self) -> bool {
        !self.inbox.closed.load(Ordering::SeqCst)
    }

    /// Waits until the connection ends (closed by the server or by `close`).
    pub async fn closed(&self) {
        loop {
            let closing = self.inbox.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.inbox.closed.load(Ordering::SeqCst) {
                return;
            }
            closing.await;
        }
    }

    /// Closes the connection with a close frame and waits for it to end.
    pub async fn close(&self) {
        self.peer
            .close(self.connection_id, close_code::NORMAL, "client closed");
        self.closed().await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.io.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };

    use super::*;

    /// Counts its wakeups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn update(n: u64) -> Box<proto::Envelope> {
        Box::new(proto::Envelope {
            id: n as u32,
            payload: Some(proto::envelope::Payload::UpdateContacts(
                proto::UpdateContacts {
                    outgoing_requests: vec![n],
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
    }

    fn recv(inbox: &Inbox) -> Recv<'_> {
        Recv {
            inbox,
            type_id: TypeId::of::<proto::UpdateContacts>(),
            waiter: None,
        }
    }

    fn waiting(inbox: &Inbox) -> usize {
        let slots = inbox.slots.lock();
        slots
            .get(&TypeId::of::<proto::UpdateContacts>())
            .map_or(0, |slot| slot.waiters.len())
    }

    #[test]
    fn a_message_wakes_the_waiting_recvs_of_its_type_only() {
        let peer = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
        let inbox = Inbox::default();
        let (first, second) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
        let mut a = Box::pin(recv(&inbox));
        let mut b = Box::pin(recv(&inbox));
        let (waker_a, waker_b) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let mut cx_a = Context::from_waker(&waker_a);
        let mut cx_b = Context::from_waker(&waker_b);
        assert!(a.as_mut().poll(&mut cx_a).is_pending());
        assert!(b.as_mut().poll(&mut cx_b).is_pending());
        // Polling again replaces the waker rather than adding one.
        assert!(a.as_mut().poll(&mut cx_a).is_pending());
        assert_eq!(waiting(&inbox), 2);

        // Another type wakes nobody.
        let other = Box::new(proto::Envelope {
            payload: Some(proto::envelope::Payload::Ack(proto::Ack {})),
            ..Default::default()
        });
        inbox.deliver(
            &peer,
            ConnectionId {
                server_id: 0,
                id: 1,
            },
            other,
            8,
        );
        assert_eq!(first.0.load(Ordering::SeqCst), 0);

        inbox.deliver(
            &peer,
            ConnectionId {
                server_id: 0,
                id: 1,
            },
            update(1),
            8,
        );
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        // One message: the first to look takes it, the other waits on.
        let Poll::Ready(Ok(got)) = a.as_mut().poll(&mut cx_a) else {
            panic!("the woken recv takes the message");
        };
        assert_eq!(got.id, 1);
        assert!(b.as_mut().poll(&mut cx_b).is_pending());
        assert_eq!(waiting(&inbox), 1);
    }

    #[test]
    fn a_cancelled_recv_takes_its_waker_back() {
        let inbox = Inbox::default();
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut pending = Box::pin(recv(&inbox));
            assert!(pending.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(waiting(&inbox), 0, "dropped recvs left their wakers behind");
    }

    #[test]
    fn closing_wakes_every_recv_with_disconnected_after_the_queued_messages() {
        let peer = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
        let inbox = Inbox::default();
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waiting_recv = Box::pin(recv(&inbox));
        assert!(waiting_recv.as_mut().poll(&mut cx).is_pending());
        inbox.deliver(
            &peer,
            ConnectionId {
                server_id: 0,
                id: 1,
            },
            update(7),
            8,
        );
        inbox.close(Disconnect {
            kind: "closed",
            detail: "test".into(),
        });
        assert!(counter.0.load(Ordering::SeqCst) >= 1);
        // What arrived before the end is still read, then the end is reported.
        let Poll::Ready(Ok(got)) = waiting_recv.as_mut().poll(&mut cx) else {
            panic!("the queued message comes first");
        };
        assert_eq!(got.id, 7);
        let mut after = Box::pin(recv(&inbox));
        let Poll::Ready(Err(error)) = after.as_mut().poll(&mut cx) else {
            panic!("a closed inbox reports Disconnected");
        };
        assert_eq!(error.code, proto::ErrorCode::Disconnected);
    }

    #[test]
    fn a_full_inbox_drops_the_oldest_and_counts_it() {
        let peer = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
        let inbox = Inbox::default();
        for n in 1..=5 {
            inbox.deliver(
                &peer,
                ConnectionId {
                    server_id: 0,
                    id: 1,
                },
                update(n),
                3,
            );
        }
        assert_eq!(inbox.dropped.load(Ordering::SeqCst), 2);
        let kept: Vec<u32> =
            std::iter::from_fn(|| inbox.take(TypeId::of::<proto::UpdateContacts>()))
                .map(|e| e.id)
                .collect();
        assert_eq!(kept, [3, 4, 5]);
    }
}
