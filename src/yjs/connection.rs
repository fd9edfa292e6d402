//! One Yjs WebSocket: the server speaks first (Step1 and the current awareness, once the
//! document is loaded), answers Step1 with Step2, commits updates before relaying them,
//! relays awareness (echoed to the sender too, as the reference server does), answers
//! awareness queries, and keeps the client's 30 s silence timer from firing. On close,
//! the awareness states the socket owned are removed for everyone.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use yrs::{StateVector, sync::AwarenessUpdate, updates::decoder::Decode, updates::encoder::Encode};

use super::protocol::{self, Message};
use crate::{
    AppState,
    auth::jwt::Permission,
    db::{UserId, queries::documents::Transport},
    documents::{Committed, DocEvent, DocHandle, Subscriber, SubscriberId},
};

/// Frames queued for one socket at most (updates count one each, however they are
/// grouped); a socket that falls further behind is closed.
const QUEUE: usize = 1024;
/// Something is sent at least this often (clients drop a connection silent for 30 s).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// An awareness update larger than this closes the socket.
pub const MAX_AWARENESS_BYTES: usize = 64 * 1024;

/// Close codes (RFC 6455 and the registered 1013).
mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// What a socket writes.
enum Outgoing {
    Frame(Bytes),
    /// A group commit's updates: each one the socket did not send is a frame.
    Updates(Arc<[Committed]>),
    Close(u16, &'static str),
}

/// The socket as a subscriber of its document.
struct Socket {
    queue: mpsc::Sender<Outgoing>,
    /// Frames queued and not yet written (at most `QUEUE`).
    backlog: Arc<AtomicUsize>,
    too_slow: CancellationToken,
}

impl Socket {
    /// Closes the socket: its access to the document changed.
    fn revoke(&self) {
        let close = Outgoing::Close(close::POLICY, "your access to this document changed");
        if self.queue.try_send(close).is_err() {
            self.too_slow.cancel();
        }
    }
}

impl Subscriber for Socket {
    fn deliver(&self, me: SubscriberId, event: &DocEvent) {
        let (outgoing, frames) = match event {
            DocEvent::Updates(updates) => match DocEvent::updates_for(updates, me).count() {
                0 => return,
                frames => (Outgoing::Updates(updates.clone()), frames),
            },
            DocEvent::Awareness { frame, .. } => (Outgoing::Frame(frame.clone()), 1),
            DocEvent::Closed(reason) => (Outgoing::Close(close::INTERNAL, reason), 0),
        };
        let backlog = self.backlog.fetch_add(frames, Ordering::Relaxed) + frames;
        if backlog > QUEUE || self.queue.try_send(outgoing).is_err() {
            self.too_slow.cancel();
        }
    }
}

pub struct Session {
    pub app: Arc<AppState>,
    pub name: String,
    pub user: UserId,
    pub permission: Permission,
}

/// Why the server ends a socket: a close code and a reason the client sees.
struct Ending(u16, String, &'static str);

pub async fn run(mut socket: WebSocket, session: Session) {
    let metrics = session.app.metrics.clone();
    metrics.yjs_connections.inc();
    let ending = serve(&mut socket, &session).await;
    metrics.yjs_connections.dec();
    if let Err(Ending(code, reason, kind)) = ending {
        metrics.yjs_closed.with_label_values(&[kind]).inc();
        tracing::info!(document = %session.name, code, %reason, "closing a Yjs connection");
        let frame = CloseFrame {
            code,
            reason: reason.chars().take(120).collect::<String>().into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            socket.send(WsMessage::Close(Some(frame))),
        )
        .await;
    }
}

async fn serve(socket: &mut WebSocket, session: &Session) -> Result<(), Ending> {
    let app = &session.app;
    let doc = app.documents.open(&session.name).await.map_err(|error| {
        Ending(
            close::TRY_AGAIN_LATER,
            error.into_rpc().message,
            "unavailable",
        )
    })?;
    // Every entry holds a frame or more, so `QUEUE` entries are enough.
    let (queue, outgoing) = mpsc::channel(QUEUE);
    let too_slow = CancellationToken::new();
    let backlog = Arc::new(AtomicUsize::new(0));
    let subscriber = Arc::new(Socket {
        queue,
        backlog: backlog.clone(),
        too_slow: too_slow.clone(),
    });
    let max = Some(app.config.max_clients_per_doc as usize);
    let id = app
        .documents
        .subscribe(&doc, subscriber.clone(), max)
        .map_err(|error| Ending(close::TRY_AGAIN_LATER, error.into_rpc().message, "full"))?;
    // Channel notes: a ban, removal or demotion closes the socket. Access is checked
    // again once watched, so a change committed since the upgrade is not missed.
    let _watch = match crate::yjs::notes_channel(&session.name) {
        Some(channel) => {
            let watch = app.channels.notes.watch_socket(
                channel,
                session.user,
                session.permission == Permission::Write,
                Box::new(move || subscriber.revoke()),
            );
            let still = crate::yjs::channel_permission(app, session.user, channel).await;
            let lost = match still {
                Ok(Permission::Write) => false,
                Ok(_) => session.permission == Permission::Write,
                Err(_) => true,
            };
            if lost {
                doc.unsubscribe(id);
                return Err(Ending(
                    close::POLICY,
                    "your access to this document changed".into(),
                    "revoked",
                ));
            }
            Some(watch)
        }
        None => None,
    };
    let mut outgoing = Queued {
        me: id,
        items: outgoing,
        backlog,
    };
    let ended = exchange(socket, session, &doc, id, &mut outgoing, &too_slow).await;
    doc.unsubscribe(id);
    // The socket's cursors disappear for everyone now, not after the 30 s sweep.
    if let Some(removal) = doc.release_awareness(id) {
        doc.broadcast(&DocEvent::awareness(removal), None);
    }
    ended
}

async fn exchange(
    socket: &mut WebSocket,
    session: &Session,
    doc: &DocHandle,
    id: SubscriberId,
    outgoing: &mut Queued,
    too_slow: &CancellationToken,
) -> Result<(), Ending> {
    let app = &session.app;
    // The server speaks first: Step1, and the awareness states it knows.
    // One message per frame: the stock client reads only the first of a frame.
    let mut hello = Vec::new();
    protocol::sync_step1(&mut hello, &doc.state_vector().encode_v1());
    send(socket, hello).await?;
    if let Some(states) = all_awareness(doc) {
        let mut frame = Vec::new();
        protocol::awareness(&mut frame, &states);
        send(socket, frame).await?;
    }
    let mut last_sent = Instant::now();
    let mut keepalive = tokio::time::interval(KEEPALIVE / 3);
    // Under load, frames wait up to `COALESCE` after the previous write so that one
    // write carries several (see `COALESCE`); `held` is the first of them.
    let mut held: Option<Outgoing> = None;
    let release = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(release);
    loop {
        tokio::select! {
            received = socket.recv() => match received {
                Some(Ok(WsMessage::Binary(data))) => {
                    for reply in handle(session, doc, id, &data).await? {
                        send(socket, reply).await?;
                        last_sent = Instant::now();
                    }
                }
                Some(Ok(WsMessage::Text(_))) => {
                    return Err(Ending(close::UNSUPPORTED, "y-protocols frames are binary".into(), "text"));
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
            next = outgoing.items.recv(), if held.is_none() => match next {
                Some(Outgoing::Close(code, reason)) => return Err(Ending(code, reason.into(), "document_closed")),
                Some(first) => {
                    let due = last_sent + COALESCE;
                    if Instant::now() < due {
                        held = Some(first);
                        release.as_mut().reset(due.into());
                    } else {
                        outgoing.write(socket, first).await?;
                        last_sent = Instant::now();
                    }
                }
                None => return Ok(()),
            },
            () = &mut release, if held.is_some() => {
                if let Some(first) = held.take() {
                    outgoing.write(socket, first).await?;
                    last_sent = Instant::now();
                }
            }
            _ = keepalive.tick() => {
                if last_sent.elapsed() >= KEEPALIVE {
                    send(socket, Bytes::from_static(protocol::KEEPALIVE)).await?;
                    last_sent = Instant::now();
                }
            }
            _ = too_slow.cancelled() => {
                return Err(Ending(close::POLICY, "too slow: the outgoing queue is full".into(), "slow_consumer"));
            }
            _ = app.shutdown.cancelled() => {
                return Err(Ending(close::GOING_AWAY, "server shutting down".into(), "shutdown"));
            }
        }
    }
}

/// Queued frames written at once, at most.
const MAX_BATCH: usize = 256;

/// A socket written to less than this long ago holds its next frames until this much
/// time has passed since that write, so one write carries every frame that arrived
/// meanwhile. Without it, a busy document costs a wakeup and a `sendmsg` per update per
/// socket, which is what bounds the relay's throughput (see BENCHMARKS.md); a socket
/// written to less often is not delayed at all. 1 ms rather than 2: p99 3.7 instead of
/// 4.6 ms at 100 clients × 20 updates/s, and 5.2 instead of 6.0 at 100/s, with the
/// same throughput at 300/s (2.86 M against 2.91 M deliveries/s, within run-to-run
/// noise).
const COALESCE: Duration = Duration::from_millis(1);

/// A socket's queue, as its writer sees it.
struct Queued {
    /// The socket's subscriber id: its own updates are not sent back to it.
    me: SubscriberId,
    items: mpsc::Receiver<Outgoing>,
    backlog: Arc<AtomicUsize>,
}

impl Queued {
    /// Writes `first` and what else is queued (about `MAX_BATCH` frames at most) with one
    /// flush; a queued close is honoured after the write.
    async fn write(&mut self, socket: &mut WebSocket, first: Outgoing) -> Result<(), Ending> {
        use futures::SinkExt;
        let (mut closing, mut written) = (None, 0);
        let write = async {
            let mut next = Some(first);
            while let Some(item) = next.take() {
                match item {
                    Outgoing::Frame(frame) => {
                        socket.feed(WsMessage::Binary(frame)).await?;
                        written += 1;
                    }
                    Outgoing::Updates(updates) => {
                        for update in DocEvent::updates_for(&updates, self.me) {
                            socket.feed(WsMessage::Binary(update.frame.clone())).await?;
                            written += 1;
                        }
                    }
                    Outgoing::Close(code, reason) => {
                        closing = Some((code, reason));
                        break;
                    }
                }
                if written < MAX_BATCH {
                    next = self.items.try_recv().ok();
                }
            }
            socket.flush().await
        };
        let outcome = tokio::time::timeout(Duration::from_secs(10), write).await;
        self.backlog.fetch_sub(written, Ordering::Relaxed);
        match outcome {
            Ok(Ok(())) => {}
            _ => return Err(Ending(close::POLICY, "write failed".into(), "write_failed")),
        }
        match closing {
            Some((code, reason)) => Err(Ending(code, reason.into(), "document_closed")),
            None => Ok(()),
        }
    }
}

async fn send(socket: &mut WebSocket, frame: impl Into<Bytes>) -> Result<(), Ending> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        socket.send(WsMessage::Binary(frame.into())),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(Ending(close::POLICY, "write failed".into(), "write_failed")),
    }
}

/// Every awareness state the document knows, encoded; `None` when there is none.
fn all_awareness(doc: &DocHandle) -> Option<Vec<u8>> {
    doc.with_awareness(|awareness| awareness.update().ok())
        .filter(|update| !update.clients.is_empty())
        .map(|update| update.encode_v1())
}

fn invalid(reason: impl Into<String>) -> Ending {
    Ending(close::INVALID, reason.into(), "invalid")
}

/// Handles one frame; returns the replies, one message per frame.
async fn handle(
    session: &Session,
    doc: &DocHandle,
    id: SubscriberId,
    frame: &[u8],
) -> Result<Vec<Vec<u8>>, Ending> {
    let app = &session.app;
    let messages = protocol::parse(frame).map_err(|error| match error {
        protocol::FrameError::UnknownType(_) | protocol::FrameError::UnknownSyncType(_) => {
            Ending(close::UNSUPPORTED, error.to_string(), "unsupported")
        }
        error => invalid(error.to_string()),
    })?;
    let mut replies = Vec::new();
    for message in messages {
        let mut reply = Vec::new();
        match message {
            Message::SyncStep1(sv) => {
                let sv = StateVector::decode_v1(sv).map_err(|error| {
                    invalid(format!("the state vector does not decode: {error}"))
                })?;
                protocol::sync_step2(&mut reply, &doc.encode_since(&sv));
            }
            Message::SyncStep2(update) | Message::Update(update) => {
                // An empty update (a Step2 of a client with nothing new) changes nothing,
                // even for a read-only connection.
                if update == [0, 0] {
                    continue;
                }
                if session.permission != Permission::Write {
                    protocol::permission_denied(
                        &mut reply,
                        "read-only connection: updates are not accepted",
                    );
                    replies.push(reply);
                    continue;
                }
                // Pipelined: the commit (and the relay after it) go on while we read on.
                app.documents
                    .submit_update(
                        doc,
                        update.to_vec(),
                        Some(session.user),
                        Transport::Ws,
                        Some(id),
                    )
                    .await
                    .map_err(|error| invalid(error.into_rpc().message))?;
            }
            Message::Awareness(bytes) => {
                if bytes.len() > MAX_AWARENESS_BYTES {
                    return Err(Ending(
                        close::TOO_BIG,
                        format!("an awareness update over {MAX_AWARENESS_BYTES} bytes"),
                        "too_big",
                    ));
                }
                let update = AwarenessUpdate::decode_v1(bytes).map_err(|error| {
                    invalid(format!("the awareness update does not decode: {error}"))
                })?;
                doc.claim_awareness(update.clients.keys().copied(), id);
                doc.with_awareness(|awareness| awareness.apply_update(update))
                    .map_err(|error| {
                        invalid(format!("the awareness update does not apply: {error}"))
                    })?;
                // To everyone, the sender included: the echo is its keepalive.
                doc.broadcast(&DocEvent::awareness(Bytes::copy_from_slice(bytes)), None);
            }
            Message::QueryAwareness => match all_awareness(doc) {
                Some(states) => protocol::awareness(&mut reply, &states),
                None => reply.extend_from_slice(protocol::KEEPALIVE),
            },
            Message::Auth => {}
        }
        if !reply.is_empty() {
            replies.push(reply);
        }
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn updates(origins: &[Option<SubscriberId>]) -> DocEvent {
        let updates: Vec<_> = origins
            .iter()
            .map(|origin| Committed::new(Bytes::from_static(&[0, 0]), *origin))
            .collect();
        DocEvent::Updates(updates.into())
    }

    #[test]
    fn a_socket_queues_the_frames_it_did_not_send_and_is_closed_past_its_limit() {
        let (queue, mut items) = mpsc::channel(QUEUE);
        let socket = Socket {
            queue,
            backlog: Arc::default(),
            too_slow: CancellationToken::new(),
        };
        // Only its own updates: nothing to send back.
        socket.deliver(7, &updates(&[Some(7), Some(7)]));
        assert!(items.try_recv().is_err());
        // One event, counted by the frames it holds for this socket.
        let mut origins = vec![Some(8); 600];
        origins.extend([Some(7), None]);
        let group = updates(&origins);
        socket.deliver(7, &group);
        assert_eq!(socket.backlog.load(Ordering::Relaxed), 601);
        assert!(matches!(items.try_recv(), Ok(Outgoing::Updates(u)) if u.len() == 602));
        assert!(!socket.too_slow.is_cancelled());
        // Another such group passes `QUEUE` frames: the socket is too slow.
        socket.deliver(7, &group);
        assert!(socket.too_slow.is_cancelled());
    }
}
