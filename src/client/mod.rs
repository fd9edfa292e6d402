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
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::{sync::Notify, task::JoinHandle};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig};

use crate::rpc::{
    Connection, ConnectionId, EnvelopedMessage, Peer, PeerConfig, RequestMessage, RpcError,
    TypedEnvelope,
    envelope::into_typed,
    metrics::RpcMetrics,
    peer::close_code,
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

#[derive(Default)]
struct Inbox {
    /// Request types the application answers; any other request is refused at once.
    answered: Mutex<std::collections::HashSet<TypeId>>,
    queues: Mutex<HashMap<TypeId, VecDeque<proto::Envelope>>>,
    arrived: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
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
        let (connection_id, io, mut incoming) =
            peer.add_connection(Connection::from_tungstenite(socket));
        let inbox = Arc::new(Inbox::default());
        let capacity = options.inbox_capacity.max(1);

        // The server's first envelope must be Hello.
        let mut io = Box::pin(io);
        let first = tokio::time::timeout(options.connect_timeout, async {
            tokio::select! {
                first = incoming.recv() => Ok(first),
                ended = &mut io => Err(ended),
            }
        })
        .await
        .map_err(|_| ConnectError::Handshake("no Hello from the server".into()))?
        .map_err(|ended| ConnectError::Handshake(format!("connection ended: {}", ended.detail)))?;
        let hello = first
            .and_then(|item| into_typed::<proto::Hello>(connection_id, *item.into_envelope()))
            .ok_or_else(|| ConnectError::Handshake("the first message was not Hello".into()))?
            .payload;

        let io_inbox = inbox.clone();
        let io_peer = peer.clone();
        let io = tokio::spawn(async move {
            let sort = async {
                while let Some(item) = incoming.recv().await {
                    // The inbox is bounded by count; the budget share returns right away.
                    let envelope = item.into_envelope();
                    let Some(payload) = envelope.payload.as_ref() else {
                        continue;
                    };
                    let (type_id, name) = proto::payload_type(payload);
                    if proto::is_request(payload)
                        && !envelope.one_way
                        && !io_inbox.answered.lock().contains(&type_id)
                    {
                        // Nobody here will answer: say so now rather than let the
                        // requester wait for its timeout.
                        let error = RpcError::unknown_message(name);
                        let _ = io_peer.respond_with_error_to(connection_id, envelope.id, error);
                        continue;
                    }
                    let mut queues = io_inbox.queues.lock();
                    let queue = queues.entry(type_id).or_default();
                    if queue.len() >= capacity {
                        queue.pop_front();
                        io_inbox.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    queue.push_back(*envelope);
                    drop(queues);
                    io_inbox.arrived.notify_waiters();
                }
            };
            tokio::join!(io, sort);
            io_inbox.closed.store(true, Ordering::SeqCst);
            io_inbox.arrived.notify_waiters();
        });
        Ok(Client {
            peer,
            connection_id,
            hello,
            inbox,
            io,
        })
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
        self.inbox.answered.lock().insert(TypeId::of::<M>());
    }

    /// Takes the oldest unclaimed message of type `M`, if any.
    pub fn try_recv<M: EnvelopedMessage>(&self) -> Option<TypedEnvelope<M>> {
        let envelope = self
            .inbox
            .queues
            .lock()
            .get_mut(&TypeId::of::<M>())?
            .pop_front()?;
        into_typed(self.connection_id, envelope)
    }

    /// Waits for the next message of type `M`; `Disconnected` once the connection ended
    /// and no such message is left.
    pub async fn recv<M: EnvelopedMessage>(&self) -> Result<TypedEnvelope<M>, RpcError> {
        loop {
            // A message already waiting is taken without registering for a wakeup.
            if let Some(message) = self.try_recv::<M>() {
                return Ok(message);
            }
            let arrived = self.inbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(message) = self.try_recv::<M>() {
                return Ok(message);
            }
            if self.inbox.closed.load(Ordering::SeqCst) {
                return Err(RpcError::disconnected());
            }
            arrived.await;
        }
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
            let arrived = self.inbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.inbox.closed.load(Ordering::SeqCst) {
                return;
            }
            arrived.await;
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
