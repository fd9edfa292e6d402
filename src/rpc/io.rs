//! The three parts of a connection's `io` future: the reader (frames in, responses to
//! their waiters, everything else to the handler loop), the writer (batched writes from
//! the outgoing queue, pings, the close frame) and the watchdog, the connection's only
//! timer (keepalive pings, silence, stalled writes). All belong to `Peer`; they live
//! here to keep `peer.rs` about the API.
//!
//! One timer ticking per connection, instead of a timeout around every read and write:
//! idle connections dominate memory, and each timer is about 110 bytes of the
//! connection's future, registered and unregistered on the hot path.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::Semaphore;

use super::{
    connection::{Frame, FrameSink, FrameStream, ReadError, ZSTD_MAGIC},
    envelope::ConnectionId,
    error::RpcError,
    peer::{
        ConnectionState, Deliver, Disconnect, Incoming, Outgoing, Peer, SharedEnvelope, close_code,
    },
    proto, queue,
};

/// How long a closing connection waits for the other side before the socket is dropped,
/// so the last frames (an `Error`, the close frame) are read before any reset.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The most envelopes the writer takes from the queue before it flushes.
const MAX_BATCH: usize = 256;

/// Where the reader puts the envelopes that are not responses.
pub(super) enum Inbound {
    /// The handler loop's bounded queue. Each envelope holds a share of the connection's
    /// incoming-bytes budget until it has been handled; a full queue or an exhausted
    /// budget stops the reader (back-pressure).
    Queue {
        queue: queue::Sender<Incoming>,
        budget: Arc<Semaphore>,
    },
    /// A consumer that takes each envelope as it is read and never makes the reader
    /// wait (the client library's inbox, bounded per message type).
    Direct(Deliver),
}

/// What the reader and the writer report to the watchdog.
#[derive(Default)]
pub(super) struct Activity {
    /// Frames read (any frame proves the peer alive).
    frames_in: AtomicU64,
    /// Frames handed to the socket; unchanged during a write means it is stuck.
    frames_out: AtomicU64,
    /// The writer holds a batch it has not yet flushed.
    writing: AtomicBool,
    /// The reader waits for the handler loop, not for the peer: not silence.
    paused: AtomicBool,
}

impl Peer {
    /// Reads frames until the peer leaves or sends something unacceptable. Not timed:
    /// the watchdog notices silence. The loop only awaits; what a frame means is decided
    /// by `read_frame`, so that no frame-sized value is held across an await (this
    /// future is part of every connection's).
    pub(super) async fn read_loop(
        &self,
        id: ConnectionId,
        state: &ConnectionState,
        mut stream: FrameStream,
        mut inbound: Inbound,
        activity: &Activity,
    ) -> Disconnect {
        loop {
            let next = stream.next().await;
            activity.frames_in.fetch_add(1, Ordering::Relaxed);
            let (ended, after) = match self.read_frame(id, state, next) {
                Read::Next => continue,
                Read::Deliver(envelope, cost) => match &mut inbound {
                    Inbound::Direct(deliver) => {
                        deliver(self, id, envelope);
                        continue;
                    }
                    Inbound::Queue { queue, budget } => {
                        match self.admit(envelope, cost, budget) {
                            Ok(item) => match queue.try_send(item) {
                                Ok(()) => continue,
                                // Waits on slow paths are boxed, to keep them out of
                                // this future.
                                Err(queue::TrySendError::Full(item)) => {
                                    activity.paused.store(true, Ordering::Relaxed);
                                    let queued = Box::pin(queue.send(item)).await.is_ok();
                                    activity.paused.store(false, Ordering::Relaxed);
                                    if queued {
                                        continue;
                                    }
                                    (handler_loop_ended(), After::Nothing)
                                }
                                Err(queue::TrySendError::Closed(_)) => {
                                    (handler_loop_ended(), After::Nothing)
                                }
                            },
                            Err((envelope, cost)) => {
                                self.metrics.incoming_waits.inc();
                                activity.paused.store(true, Ordering::Relaxed);
                                let queued = Box::pin(async {
                                    let share =
                                        budget.clone().acquire_many_owned(cost).await.ok()?;
                                    let item = Incoming {
                                        envelope,
                                        budget: Some(share),
                                    };
                                    queue.send(item).await.ok()
                                })
                                .await;
                                activity.paused.store(false, Ordering::Relaxed);
                                if queued.is_some() {
                                    continue;
                                }
                                (handler_loop_ended(), After::Nothing)
                            }
                        }
                    }
                },
                Read::End(ended, after) => (ended, after),
            };
            match after {
                After::Nothing => {}
                // The rest of an oversized frame is still unread; reading it would cost
                // what the cap prevents. Wait instead, so the client reads our Error
                // before the socket is dropped.
                After::Grace => Box::pin(tokio::time::sleep(CLOSE_GRACE)).await,
                // Read on (and discard) until the peer closes, so our last frames are
                // not lost to a reset.
                After::Drain => {
                    let drain =
                        tokio::time::timeout(self.config.receive_timeout, drain(&mut stream));
                    let _ = Box::pin(drain).await;
                }
            }
            return ended;
        }
    }

    /// An envelope with its share of the incoming budget, or, when the budget has no
    /// room now, the envelope and the share to wait for. Taking the share before queueing
    /// makes a flood back-pressure rather than memory.
    fn admit(
        &self,
        envelope: Box<proto::Envelope>,
        cost: usize,
        budget: &Arc<Semaphore>,
    ) -> Result<Incoming, (Box<proto::Envelope>, u32)> {
        // At least 1, at most the whole budget (which may be configured below 1).
        let cost = cost
            .min(self.config.incoming_bytes)
            .clamp(1, u32::MAX as usize) as u32;
        match budget.clone().try_acquire_many_owned(cost) {
            Ok(share) => Ok(Incoming {
                envelope,
                budget: Some(share),
            }),
            Err(_) => Err((envelope, cost)),
        }
    }

    /// What one frame (or the end of the stream) means.
    fn read_frame(
        &self,
        id: ConnectionId,
        state: &ConnectionState,
        next: Option<Result<Frame, ReadError>>,
    ) -> Read {
        let frame = match next {
            None => return Read::End(closed("end of stream"), After::Nothing),
            Some(Err(ReadError::TooLarge(detail))) => {
                let max = self.config.codec.max_frame_bytes;
                let error = RpcError::new(
                    proto::ErrorCode::PayloadTooLarge,
                    format!("frame exceeds the {max} byte cap"),
                )
                .with_tag("max_frame_bytes", max);
                self.fail_connection(state, error, close_code::TOO_BIG);
                let ended = Disconnect {
                    kind: "bad_frame",
                    detail,
                };
                return Read::End(ended, After::Grace);
            }
            Some(Err(ReadError::Transport(detail))) => {
                let ended = Disconnect {
                    kind: "transport",
                    detail,
                };
                return Read::End(ended, After::Nothing);
            }
            Some(Ok(frame)) => frame,
        };
        let bytes = match frame {
            Frame::Binary(bytes) => bytes,
            Frame::Text(_) => {
                let error = RpcError::new(
                    proto::ErrorCode::InvalidRequest,
                    "text frames are not part of the protocol; send binary envelopes",
                );
                self.fail_connection(state, error, close_code::UNSUPPORTED_DATA);
                let ended = Disconnect {
                    kind: "bad_frame",
                    detail: "text frame".into(),
                };
                return Read::End(ended, After::Drain);
            }
            // Any frame proves liveness; the WebSocket layer answers pings itself.
            Frame::Ping(_) | Frame::Pong(_) => return Read::Next,
            Frame::Close(_) => {
                let _ = state.outgoing.try_send(Outgoing::Close {
                    code: close_code::NORMAL,
                    reason: String::new(),
                });
                return Read::End(closed("closed by peer"), After::Nothing);
            }
        };
        // What the envelope costs the incoming budget: a compressed frame costs what it
        // decompressed to.
        let (compressed, frame_len) = (bytes.starts_with(&ZSTD_MAGIC), bytes.len());
        let envelope = match self.config.codec.decode(bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                let code = if error.code == proto::ErrorCode::PayloadTooLarge {
                    close_code::TOO_BIG
                } else {
                    close_code::INVALID_PAYLOAD
                };
                let detail = error.message.clone();
                self.fail_connection(state, error, code);
                let ended = Disconnect {
                    kind: "bad_frame",
                    detail,
                };
                return Read::End(ended, After::Drain);
            }
        };
        if self.metrics.by_type {
            let name = proto::payload_name(envelope.payload.as_ref());
            self.metrics.messages_in.with_label_values(&[name]).inc();
        }
        if let Some(request_id) = envelope.responding_to {
            let waiting = state
                .response_channels
                .lock()
                .as_mut()
                .and_then(|channels| channels.remove(&request_id));
            match waiting {
                Some(tx) => {
                    let _ = tx.send(*envelope);
                }
                None => tracing::debug!(%id, request_id, "response to no pending request"),
            }
            return Read::Next;
        }
        let cost = if compressed {
            frame_len.max(envelope.encoded_len())
        } else {
            frame_len
        };
        Read::Deliver(envelope, cost)
    }

    /// Writes what the queue holds, a batch at a time with one flush each. Not timed: a
    /// write that makes no progress is the watchdog's to cut.
    pub(super) async fn write_loop(
        &self,
        state: &ConnectionState,
        mut sink: FrameSink,
        mut outgoing: queue::Receiver<Outgoing>,
        activity: &Activity,
    ) -> Disconnect {
        let mut scratch = Vec::new();
        let failed = |what: &str| Disconnect {
            kind: "write_failed",
            detail: format!("socket {what}"),
        };
        loop {
            let Some(mut item) = outgoing.recv().await else {
                return Disconnect {
                    kind: "closed",
                    detail: "outgoing queue closed".into(),
                };
            };
            activity.writing.store(true, Ordering::Relaxed);
            // Feed a batch into the socket's write buffer, then flush once: one syscall
            // per batch instead of one per message.
            let mut close = None;
            let mut pending = Vec::new();
            for taken in 1..=MAX_BATCH {
                // `None`: an envelope that cannot be encoded, logged and skipped.
                let written = match item {
                    Outgoing::Envelope { envelope, bytes } => {
                        state.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                        let name = proto::payload_name(envelope.payload.as_ref());
                        match self.config.codec.encode(&envelope, &mut scratch) {
                            Ok(frame) if self.metrics.by_type => Some((
                                Frame::Binary(frame),
                                Sent::Counter(self.metrics.messages_out.with_label_values(&[name])),
                            )),
                            Ok(frame) => Some((Frame::Binary(frame), Sent::Uncounted)),
                            Err(error) => {
                                tracing::error!(%error, name, "dropping an envelope that cannot be encoded");
                                None
                            }
                        }
                    }
                    Outgoing::Shared { id, envelope } => {
                        state
                            .queued_bytes
                            .fetch_sub(envelope.queued_bytes(), Ordering::Relaxed);
                        scratch.clear();
                        envelope.encode_with_id(id, &mut scratch);
                        match self.config.codec.frame(&scratch) {
                            Ok(frame) => Some((Frame::Binary(frame), Sent::Shared(envelope))),
                            Err(error) => {
                                tracing::error!(%error, "dropping a shared envelope that cannot be framed");
                                None
                            }
                        }
                    }
                    Outgoing::Ping => Some((Frame::Ping(Bytes::new()), Sent::Uncounted)),
                    Outgoing::Close { code, reason } => {
                        close = Some((code, reason));
                        break;
                    }
                };
                if let Some((frame, sent)) = written {
                    if sink.feed(frame).await.is_err() {
                        return failed("write");
                    }
                    activity.frames_out.fetch_add(1, Ordering::Relaxed);
                    match sent {
                        Sent::Counter(counter) => counter.inc(),
                        Sent::Shared(envelope) => envelope.count_sent(),
                        Sent::Uncounted => {}
                    }
                }
                // A full batch takes nothing more: an item taken now would be dropped.
                if taken == MAX_BATCH {
                    break;
                }
                if pending.is_empty() {
                    // Taken in one go; reversed, so that `pop` gives them in order.
                    outgoing.try_recv_many(&mut pending, MAX_BATCH - taken);
                    pending.reverse();
                }
                match pending.pop() {
                    Some(next) => item = next,
                    None => break,
                }
            }
            if sink.flush().await.is_err() {
                return failed("flush");
            }
            activity.frames_out.fetch_add(1, Ordering::Relaxed);
            activity.writing.store(false, Ordering::Relaxed);
            state.drained.notify_waiters();
            if let Some((code, reason)) = close {
                let reason = truncate_close_reason(reason);
                activity.writing.store(true, Ordering::Relaxed);
                let _ = sink.send(Frame::Close(Some((code, reason.clone())))).await;
                return Disconnect {
                    kind: "closed",
                    detail: format!("closed by us ({code}: {reason})"),
                };
            }
        }
    }

    /// The connection's one timer. Every tick it queues a ping when one is due, and ends
    /// the connection when no frame arrived for `receive_timeout` ("silent") or a write
    /// made no progress for `write_timeout` ("write_failed"). Each is noticed within one
    /// tick of its limit; a tick is the shortest of the keepalive interval, a third of
    /// the receive timeout and half the write timeout.
    pub(super) async fn watchdog(
        &self,
        state: &ConnectionState,
        activity: &Activity,
    ) -> Disconnect {
        let config = &self.config;
        let tick = config
            .keepalive_interval
            .min(config.receive_timeout / 3)
            .min(config.write_timeout / 2)
            .max(Duration::from_millis(1));
        let ticks = |limit: Duration| limit.as_nanos().div_ceil(tick.as_nanos()).max(1) as u32;
        let (silent_after, stalled_after, ping_every) = (
            ticks(config.receive_timeout),
            ticks(config.write_timeout),
            ticks(config.keepalive_interval),
        );
        let (mut quiet, mut stalled, mut since_ping) = (Streak::default(), Streak::default(), 0);
        let timer = tokio::time::sleep(tick);
        tokio::pin!(timer);
        loop {
            timer.as_mut().await;
            // From now, not from the last deadline: after a stall of the runtime, missed
            // ticks are not replayed at once (they would count as silence).
            timer.as_mut().reset(tokio::time::Instant::now() + tick);

            let paused = activity.paused.load(Ordering::Relaxed);
            let frames_in = activity.frames_in.load(Ordering::Relaxed);
            if quiet.unchanged(frames_in, !paused) >= silent_after {
                return Disconnect {
                    kind: "silent",
                    detail: format!("no frame for {:?}", config.receive_timeout),
                };
            }
            let writing = activity.writing.load(Ordering::Relaxed);
            let frames_out = activity.frames_out.load(Ordering::Relaxed);
            if stalled.unchanged(frames_out, writing) >= stalled_after {
                return Disconnect {
                    kind: "write_failed",
                    detail: format!("socket write stalled for {:?}", config.write_timeout),
                };
            }
            since_ping += 1;
            if since_ping >= ping_every {
                since_ping = 0;
                // A full queue is a stalled or slow writer: dealt with above or on send.
                let _ = state.outgoing.try_send(Outgoing::Ping);
            }
        }
    }

    /// Queues an `Error` (not a response) and a close frame: the end of a connection
    /// that sent something we cannot accept (or that we no longer serve).
    pub(super) fn fail_connection(&self, state: &ConnectionState, error: RpcError, code: u16) {
        self.metrics
            .errors
            .with_label_values(&[error.code.as_str_name()])
            .inc();
        state
            .kill_reason
            .lock()
            .get_or_insert(("bad_frame", error.message.clone()));
        let envelope = proto::Envelope {
            id: state.next_message_id(),
            payload: Some(proto::envelope::Payload::Error(error.to_proto())),
            ..Default::default()
        };
        let bytes = envelope.encoded_len();
        state.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let queued = state
            .outgoing
            .try_send(Outgoing::Envelope {
                envelope: Box::new(envelope),
                bytes,
            })
            .is_ok()
            && state
                .outgoing
                .try_send(Outgoing::Close {
                    code,
                    reason: error.message,
                })
                .is_ok();
        if !queued {
            // No room to say goodbye: cut the connection rather than leave it open.
            state.set_killed();
        }
    }
}

/// For how many ticks in a row a counter stood still while it mattered.
#[derive(Default)]
struct Streak {
    last: u64,
    ticks: u32,
}

impl Streak {
    /// Records this tick's `value`; a tick counts only when `counting`.
    fn unchanged(&mut self, value: u64, counting: bool) -> u32 {
        self.ticks = if counting && value == self.last {
            self.ticks + 1
        } else {
            0
        };
        self.last = value;
        self.ticks
    }
}

/// What the reader does after a frame.
enum Read {
    /// Nothing more: read the next frame.
    Next,
    /// Hand this, costing this many bytes of the incoming budget, to the consumer.
    Deliver(Box<proto::Envelope>, usize),
    /// The connection ends.
    End(Disconnect, After),
}

/// What the reader does before it returns.
enum After {
    Nothing,
    Grace,
    Drain,
}

fn closed(detail: &str) -> Disconnect {
    Disconnect {
        kind: "closed",
        detail: detail.into(),
    }
}

fn handler_loop_ended() -> Disconnect {
    closed("handler loop ended")
}

/// Which counter a written frame adds to.
enum Sent {
    Counter(prometheus::IntCounter),
    /// Written, counted by nobody (a ping, or a client's unregistered metrics).
    Uncounted,
    Shared(SharedEnvelope),
}

/// A close frame's payload is at most 125 bytes: a 2-byte code and a reason of at most
/// 123, cut on a character boundary.
fn truncate_close_reason(mut reason: String) -> String {
    const MAX: usize = 123;
    if reason.len() > MAX {
        let mut end = MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Reads and discards frames until the peer closes or fails, so the socket is not reset
/// while our last frames are still in flight.
async fn drain(stream: &mut FrameStream) {
    while let Some(Ok(frame)) = stream.next().await {
        if matches!(frame, Frame::Close(_)) {
            break;
        }
    }
}
