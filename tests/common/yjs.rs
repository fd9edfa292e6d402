//! A y-websocket client built on yrs, for the Yjs endpoint (`GET /yjs/{name}`): it keeps
//! a `Doc` (inside an `Awareness`) in step with the server, records everything it
//! receives, and exposes its raw socket for tests that misbehave.
//!
//! Every wait is bounded by `WAIT`; nothing here sleeps.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use yrs::{
    ClientID, Doc, GetString, ReadTxn, StateVector, Text, TextRef, Transact, Update,
    sync::{Awareness, AwarenessUpdate, Message, MessageReader, SyncMessage},
    updates::{
        decoder::{Decode, DecoderV1},
        encoder::Encode,
    },
};

use super::{TestServer, raw::Raw, within};

/// The root text every test edits.
pub const TEXT: &str = "text";

/// `ws://ADDR/yjs/NAME`, with `?token=` when given.
pub fn url(server: &TestServer, name: &str, token: Option<&str>) -> String {
    let mut url = url::Url::parse(&format!("ws://{}/yjs/{name}", server.addr)).unwrap();
    if let Some(token) = token {
        url.query_pairs_mut().append_pair("token", token);
    }
    url.to_string()
}

/// Opens a socket to document `name`; reads nothing.
pub async fn try_open(
    server: &TestServer,
    name: &str,
    token: Option<&str>,
) -> Result<Raw, tungstenite::Error> {
    within(
        "the WebSocket upgrade",
        tokio_tungstenite::connect_async(url(server, name, token)),
    )
    .await
    .map(|(socket, _)| socket)
}

/// Opens a socket to document `name`, which must be accepted; reads nothing.
pub async fn open(server: &TestServer, name: &str, token: &str) -> Raw {
    try_open(server, name, Some(token))
        .await
        .unwrap_or_else(|error| panic!("the upgrade to {name} failed: {error}"))
}

/// The HTTP status of an upgrade the server must refuse.
pub async fn refused_status(server: &TestServer, name: &str, token: Option<&str>) -> u16 {
    match try_open(server, name, token).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Ok(_) => panic!("the upgrade to {name} was accepted"),
        Err(other) => panic!("the upgrade to {name} failed without an HTTP status: {other}"),
    }
}

/// Reads until the server ends the socket: the close frame's code and reason, or `None`
/// when the connection ended without one (dropped, reset). Other frames are skipped.
pub async fn closed(socket: &mut Raw) -> Option<(u16, String)> {
    within("the server to end the socket", async {
        let mut close = None;
        loop {
            match socket.next().await {
                Some(Ok(WsMessage::Close(frame))) => {
                    close = Some(frame.map_or((1005, String::new()), |frame| {
                        (u16::from(frame.code), frame.reason.as_str().to_string())
                    }));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return close,
            }
        }
    })
    .await
}

/// The messages of one y-protocols frame (several may be laid end to end).
pub fn decode_frame(bytes: &[u8]) -> Vec<Message> {
    let mut decoder = DecoderV1::from(bytes);
    MessageReader::new(&mut decoder)
        .map(|message| message.unwrap_or_else(|error| panic!("{bytes:?} does not decode: {error}")))
        .collect()
}

/// Messages laid end to end in one frame.
pub fn encode_frame(messages: &[Message]) -> Vec<u8> {
    messages.iter().flat_map(|m| m.encode_v1()).collect()
}

/// The text of a document made from one update alone.
pub fn text_of_update(update: &[u8]) -> String {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT);
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).expect("the update decodes"))
        .expect("the update applies");
    text.get_string(&doc.transact())
}

/// One frame received from the server: its bytes and its messages.
pub struct Frame {
    pub bytes: Vec<u8>,
    pub messages: Vec<Message>,
}

impl Frame {
    pub fn has_step2(&self) -> bool {
        self.messages
            .iter()
            .any(|m| matches!(m, Message::Sync(SyncMessage::SyncStep2(_))))
    }

    /// The client ids of the awareness messages in this frame.
    pub fn awareness_ids(&self) -> Vec<ClientID> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Awareness(update) => Some(update.clients.keys().copied()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

pub struct YjsClient {
    pub socket: Raw,
    /// The client's awareness, which owns its document.
    pub awareness: Awareness,
    pub text: TextRef,
    /// The server's first frame, as received.
    pub hello: Vec<u8>,
    /// The state vector of the server's latest Step1.
    pub server_sv: Option<StateVector>,
    /// Every message received, in order.
    pub received: Vec<Message>,
    /// The payload of each Step2 received, in order.
    pub step2s: Vec<Vec<u8>>,
    /// How many sync Update messages were received.
    pub updates: usize,
    /// Every awareness entry received: client id, clock, JSON state (`"null"`: removed).
    pub awareness_log: Vec<(ClientID, u32, String)>,
    /// The reasons of the permission-denied messages received.
    pub denied: Vec<String>,
}

impl YjsClient {
    /// Connects and reads the server's first frame (which must be binary: the server
    /// speaks first); does not sync.
    pub async fn connect(server: &TestServer, name: &str, token: &str) -> YjsClient {
        let socket = open(server, name, token).await;
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT);
        let mut client = YjsClient {
            socket,
            awareness: Awareness::new(doc),
            text,
            hello: Vec::new(),
            server_sv: None,
            received: Vec::new(),
            step2s: Vec::new(),
            updates: 0,
            awareness_log: Vec::new(),
            denied: Vec::new(),
        };
        let hello = client.next_frame().await;
        client.hello = hello.bytes;
        client
    }

    /// Connects with an access token for `login`, then syncs.
    pub async fn join(server: &TestServer, name: &str, login: &str) -> YjsClient {
        let token = server.token(login).await;
        Self::join_with(server, name, &token).await
    }

    /// Connects with `token`, then syncs.
    pub async fn join_with(server: &TestServer, name: &str, token: &str) -> YjsClient {
        let mut client = Self::connect(server, name, token).await;
        client.sync().await;
        client
    }

    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }

    pub fn client_id(&self) -> ClientID {
        self.doc().client_id()
    }

    pub fn text(&self) -> String {
        self.text.get_string(&self.doc().transact())
    }

    pub fn state_vector(&self) -> StateVector {
        self.doc().transact().state_vector()
    }

    /// The handshake of a y-websocket client: its Step1, and a Step2 answering the
    /// server's Step1, in one frame; returns once the server's Step2 has arrived.
    pub async fn sync(&mut self) {
        let server_sv = self.server_sv.clone().unwrap_or_default();
        let (sv, diff) = {
            let txn = self.doc().transact();
            (
                txn.state_vector(),
                txn.encode_state_as_update_v1(&server_sv),
            )
        };
        let before = self.step2s.len();
        self.send(&[
            Message::Sync(SyncMessage::SyncStep1(sv)),
            Message::Sync(SyncMessage::SyncStep2(diff)),
        ])
        .await;
        self.wait_until("the server's Step2", |c| c.step2s.len() > before)
            .await;
    }

    /// Sends a Step1 alone and waits for its Step2: frames are handled in order, so
    /// everything sent before has been handled by the server.
    pub async fn round_trip(&mut self) {
        let before = self.step2s.len();
        let sv = self.state_vector();
        self.send(&[Message::Sync(SyncMessage::SyncStep1(sv))])
            .await;
        self.wait_until("the answer to a Step1", |c| c.step2s.len() > before)
            .await;
    }

    /// Inserts `chunk` at `index` locally; returns the update (not sent).
    pub fn edit(&mut self, index: u32, chunk: &str) -> Vec<u8> {
        let doc = self.awareness.doc();
        let before = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            self.text.insert(&mut txn, index, chunk);
        }
        doc.transact().encode_state_as_update_v1(&before)
    }

    /// Inserts `chunk` at `index` and sends the update.
    pub async fn insert(&mut self, index: u32, chunk: &str) {
        let update = self.edit(index, chunk);
        self.send(&[Message::Sync(SyncMessage::Update(update))])
            .await;
    }

    /// Appends `chunk` and sends the update.
    pub async fn push(&mut self, chunk: &str) {
        let end = self.text.len(&self.doc().transact());
        self.insert(end, chunk).await;
    }

    /// Sets this client's awareness state (JSON) and sends it.
    pub async fn set_awareness(&mut self, json: &str) {
        self.awareness.set_local_state_raw(json);
        let update = self
            .awareness
            .update_with_clients([self.client_id()])
            .expect("the local state is known");
        self.send(&[Message::Awareness(update)]).await;
    }

    /// The awareness state this client knows for `id` (`None`: unknown or removed).
    pub fn awareness_state(&self, id: ClientID) -> Option<String> {
        self.awareness
            .iter()
            .find(|(client, _)| *client == id)
            .and_then(|(_, state)| state.data.map(|json| json.to_string()))
    }

    /// Whether a removal (`null` state) of `id` was received.
    pub fn saw_removal(&self, id: ClientID) -> bool {
        self.awareness_log
            .iter()
            .any(|(client, _, json)| *client == id && json == "null")
    }

    /// Sends messages in one frame.
    pub async fn send(&mut self, messages: &[Message]) {
        self.send_raw(encode_frame(messages)).await;
    }

    /// Sends one binary frame as is.
    pub async fn send_raw(&mut self, bytes: impl Into<Vec<u8>>) {
        let bytes: Vec<u8> = bytes.into();
        within(
            "a frame to be sent",
            self.socket.send(WsMessage::Binary(bytes.into())),
        )
        .await
        .expect("the frame is sent");
    }

    /// Reads the next binary frame and applies it; fails on close or after `WAIT`.
    pub async fn next_frame(&mut self) -> Frame {
        within("a frame from the server", self.recv()).await
    }

    /// Reads frames until `pick` accepts one (every frame read is applied).
    pub async fn frame_where(&mut self, what: &str, pick: impl Fn(&Frame) -> bool) -> Frame {
        within(what, async {
            loop {
                let frame = self.recv().await;
                if pick(&frame) {
                    return frame;
                }
            }
        })
        .await
    }

    /// Reads and applies frames until `done` holds (checked first).
    pub async fn wait_until(&mut self, what: &str, done: impl Fn(&YjsClient) -> bool) {
        within(what, async {
            while !done(self) {
                self.recv().await;
            }
        })
        .await
    }

    /// Reads and applies frames until the text is `expected`.
    pub async fn wait_text(&mut self, expected: &str) {
        let what = format!("the text {expected:?}");
        self.wait_until(&what, |c| c.text() == expected).await;
    }

    /// Reads until the server ends the socket; see [`closed`].
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        closed(&mut self.socket).await
    }

    /// Closes the socket cleanly and waits for the connection to end.
    pub async fn close(mut self) {
        let _ = within("the close frame to be sent", self.socket.close(None)).await;
        within("the connection to end", async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    async fn recv(&mut self) -> Frame {
        let bytes = loop {
            match self.socket.next().await {
                Some(Ok(WsMessage::Binary(bytes))) => break bytes.to_vec(),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                other => panic!("expected a binary frame from the server, got {other:?}"),
            }
        };
        let messages = decode_frame(&bytes);
        for message in &messages {
            self.apply(message.clone());
        }
        self.received.extend(messages.iter().cloned());
        Frame { bytes, messages }
    }

    fn apply(&mut self, message: Message) {
        match message {
            Message::Sync(SyncMessage::SyncStep1(sv)) => self.server_sv = Some(sv),
            Message::Sync(SyncMessage::SyncStep2(update)) => {
                self.apply_update(&update);
                self.step2s.push(update);
            }
            Message::Sync(SyncMessage::Update(update)) => {
                self.apply_update(&update);
                self.updates += 1;
            }
            Message::Awareness(update) => self.apply_awareness(update),
            Message::Auth(Some(reason)) => self.denied.push(reason),
            Message::Auth(None) | Message::AwarenessQuery => {}
            Message::Custom(tag, _) => panic!("the server sent a custom message {tag}"),
        }
    }

    fn apply_update(&self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("the server's update decodes");
        self.doc()
            .transact_mut()
            .apply_update(update)
            .expect("the server's update applies");
    }

    fn apply_awareness(&mut self, update: AwarenessUpdate) {
        for (id, entry) in &update.clients {
            self.awareness_log
                .push((*id, entry.clock, entry.json.to_string()));
        }
        self.awareness
            .apply_update(update)
            .expect("the server's awareness update applies");
    }
}
