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
//! takes them, unless `on::<M>(handler)` has the reader hand them to a handler. The inbox is bounded: past `inbox_capacity` messages of one type, the
//! oldest is dropped (and counted), so an application that ignores a message type never
//! grows without bound.

mod inbox;

use std::{
    any::TypeId,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig};

use crate::rpc::{
    Connection, ConnectionId, EnvelopedMessage, Peer, PeerConfig, RequestMessage, RpcError,
    TypedEnvelope,
    envelope::{into_typed, into_typed_at},
    metrics::RpcMetrics,
    peer::close_code,
    proto::{self, PROTOCOL_VERSION},
};
use inbox::{Inbox, Recv};

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

    /// Waits for the next message of type `M`, then also takes those of its type already
    /// waiting, up to `max` in all, oldest first: one lock and one wakeup for a burst, for
    /// applications that handle a stream of messages (edits, cursor moves) in batches.
    /// `Disconnected` once the connection ended and no such message is left.
    pub async fn recv_batch<M: EnvelopedMessage>(
        &self,
        max: usize,
    ) -> Result<Vec<TypedEnvelope<M>>, RpcError> {
        let type_id = TypeId::of::<M>();
        let first = Recv {
            inbox: &self.inbox,
            type_id,
            waiter: None,
        }
        .await?;
        let mut envelopes = vec![first];
        self.inbox
            .take_up_to(type_id, max.saturating_sub(1), &mut envelopes);
        let received_at = Instant::now();
        envelopes
            .into_iter()
            .map(|envelope| self.typed_at(*envelope, received_at))
            .collect()
    }

    fn typed<M: EnvelopedMessage>(
        &self,
        envelope: proto::Envelope,
    ) -> Result<TypedEnvelope<M>, RpcError> {
        self.typed_at(envelope, Instant::now())
    }

    fn typed_at<M: EnvelopedMessage>(
        &self,
        envelope: proto::Envelope,
        received_at: Instant,
    ) -> Result<TypedEnvelope<M>, RpcError> {
        // The inbox sorted it by this type, so the payload matches.
        into_typed_at(self.connection_id, envelope, received_at).ok_or_else(|| {
            RpcError::new(proto::ErrorCode::Internal, "inbox sorted a message wrongly")
        })
    }

    /// Runs `handler` in the connection's reader for each message of type `M`, instead of
    /// keeping them for `recv::<M>()`; messages of `M` already waiting go to it first, in
    /// order. For high-rate streams (remote edits, cursors): no queue, no wakeup, no
    /// second task. The handler runs between reads of the socket, so it must be quick,
    /// must not block, and must not call `on` itself. A later `on::<M>` replaces it; a
    /// `recv::<M>()` gets nothing more (it waits until the connection ends).
    /// This is for messages: requests still need `answer_requests` and `recv`.
    pub fn on<M: EnvelopedMessage>(
        &self,
        mut handler: impl FnMut(TypedEnvelope<M>) + Send + 'static,
    ) {
        let sender = self.connection_id;
        self.inbox.set_handler(
            TypeId::of::<M>(),
            Box::new(move |envelope| {
                // Sorted by this type, so the payload matches.
                if let Some(typed) = into_typed_at(sender, *envelope, Instant::now()) {
                    handler(typed);
                }
            }),
        );
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
