//! The two halves of a connection's `io` future: the reader (frames in, responses to
//! their waiters, everything else to the handler loop, silence detection) and the
//! writer (batched writes from the outgoing queue, keepalive pings, the close frame).
//! Both belong to `Peer`; they live here to keep `peer.rs` about the API.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc};

use super::{
    connection::{Frame, FrameSink, FrameStream, ReadError},
    envelope::ConnectionId,
    error::RpcError,
    peer::{ConnectionState, Disconnect, Incoming, Outgoing, Peer, SharedEnvelope, close_code},
    proto,
};

/// How long a closing connection waits for the other side before the socket is dropped,
/// so the last frames (an `Error`, the close frame) are read before any reset.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The most envelopes the writer takes from the queue before it flushes.
const MAX_BATCH: usize = 256;

impl Peer {
    pub(super) async fn read_loop(
        &self,
        id: ConnectionId,
        state: &ConnectionState,
        mut stream: FrameStream,
        incoming: mpsc::Sender<Incoming>,
        budget: Arc<Semaphore>,
    ) -> Disconnect {
        loop {
            let frame = match tokio::time::timeout(self.config.receive_timeout, stream.next()).await
            {
                Err(_) => {
                    return Disconnect {
                        kind: "silent",
                        detail: format!("no frame for {:?}", self.config.receive_timeout),
                    };
                }
                Ok(None) => {
                    return Disconnect {
                        kind: "closed",
                        detail: "end of stream".into(),
                    };
                }
                Ok(Some(Err(ReadError::TooLarge(detail)))) => {
                    let max = self.config.codec.max_frame_bytes;
                    let error = RpcError::new(
                        proto::ErrorCode::PayloadTooLarge,
                        format!("frame exceeds the {max} byte cap"),
                    )
                    .with_tag("max_frame_bytes", max);
                    self.fail_connection(state, error, close_code::TOO_BIG);
                    // The rest of the oversized frame is still unread; reading it would
                    // cost what the cap prevents. Wait instead, so the client reads our
                    // Error before the socket is dropped.
                    tokio::time::sleep(CLOSE_GRACE).await;
                    return Disconnect {
                        kind: "bad_frame",
                        detail,
                    };
                }
                Ok(Some(Err(ReadError::Transport(detail)))) => {
                    return Disconnect {
                        kind: "transport",
                        detail,
                    };
                }
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Frame::Binary(bytes) => match self.config.codec.decode(&bytes) {
                    Ok(envelope) => {
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
                                    let _ = tx.send(envelope);
                                }
                                None => {
                                    tracing::debug!(%id, request_id, "response to no pending request")
                                }
                            }
                        } else {
                            // Wait for budget before taking more: back-pressure, not
                            // memory. Waiting is not silence: only `stream.next()` is timed.
                            let cost = bytes.len().max(envelope.encoded_len()).max(1);
                            let cost =
                                cost.min(self.config.incoming_bytes).min(u32::MAX as usize) as u32;
                            let share = match budget.clone().try_acquire_many_owned(cost) {
                                Ok(share) => share,
                                Err(_) => {
                                    self.metrics.incoming_waits.inc();
                                    match budget.clone().acquire_many_owned(cost).await {
                                        Ok(share) => share,
                                        Err(_) => {
                                            return Disconnect {
                                                kind: "closed",
                                                detail: "budget closed".into(),
                                            };
                                        }
                                    }
                                }
                            };
                            let item = Incoming {
                                envelope: Box::new(envelope),
                                budget: Some(share),
                            };
                            if incoming.send(item).await.is_err() {
                                return Disconnect {
                                    kind: "closed",
                                    detail: "handler loop ended".into(),
                                };
                            }
                        }
                    }
                    Err(error) => {
                        let code = if error.code == proto::ErrorCode::PayloadTooLarge {
                            close_code::TOO_BIG
                        } else {
                            close_code::INVALID_PAYLOAD
                        };
                        let detail = error.message.clone();
                        self.fail_connection(state, error, code);
                        let _ =
                            tokio::time::timeout(self.config.receive_timeout, drain(&mut stream))
                                .await;
                        return Disconnect {
                            kind: "bad_frame",
                            detail,
                        };
                    }
                },
                Frame::Text(_) => {
                    let error = RpcError::new(
                        proto::ErrorCode::InvalidRequest,
                        "text frames are not part of the protocol; send binary envelopes",
                    );
                    self.fail_connection(state, error, close_code::UNSUPPORTED_DATA);
                    let _ =
                        tokio::time::timeout(self.config.receive_timeout, drain(&mut stream)).await;
                    return Disconnect {
                        kind: "bad_frame",
                        detail: "text frame".into(),
                    };
                }
                // Any frame proves liveness; the WebSocket layer answers pings itself.
                Frame::Ping(_) | Frame::Pong(_) => {}
                Frame::Close(_) => {
                    let _ = state.outgoing.try_send(Outgoing::Close {
                        code: close_code::NORMAL,
                        reason: String::new(),
                    });
                    return Disconnect {
                        kind: "closed",
                        detail: "closed by peer".into(),
                    };
                }
            }
        }
    }

    pub(super) async fn write_loop(
        &self,
        state: &ConnectionState,
        mut sink: FrameSink,
        mut outgoing: mpsc::Receiver<Outgoing>,
    ) -> Disconnect {
        let timeout = self.config.write_timeout;
        let mut scratch = Vec::new();
        let period = self.config.keepalive_interval;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                item = outgoing.recv() => item,
                _ = keepalive.tick() => {
                    if !matches!(tokio::time::timeout(timeout, sink.send(Frame::Ping(Bytes::new()))).await, Ok(Ok(()))) {
                        return Disconnect { kind: "write_failed", detail: "keepalive ping".into() };
                    }
                    continue;
                }
            };
            let Some(mut item) = first else {
                return Disconnect {
                    kind: "closed",
                    detail: "outgoing queue closed".into(),
                };
            };
            // Feed a batch into the socket's write buffer, then flush once: one syscall
            // per batch instead of one per message. One deadline covers each write, so
            // the clock is read once per batch, not once per envelope.
            let deadline = tokio::time::Instant::now() + timeout;
            let mut close = None;
            for _ in 0..MAX_BATCH {
                let (frame, sent) = match item {
                    Outgoing::Envelope { envelope, bytes } => {
                        state.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                        let name = proto::payload_name(envelope.payload.as_ref());
                        match self.config.codec.encode(&envelope, &mut scratch) {
                            Ok(frame) if self.metrics.by_type => (
                                frame,
                                Sent::Counter(self.metrics.messages_out.with_label_values(&[name])),
                            ),
                            Ok(frame) => (frame, Sent::Uncounted),
                            Err(error) => {
                                tracing::error!(%error, name, "dropping an envelope that cannot be encoded");
                                (Bytes::new(), Sent::Nothing)
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
                            Ok(frame) => (frame, Sent::Shared(envelope)),
                            Err(error) => {
                                tracing::error!(%error, "dropping a shared envelope that cannot be framed");
                                (Bytes::new(), Sent::Nothing)
                            }
                        }
                    }
                    Outgoing::Close { code, reason } => {
                        close = Some((code, reason));
                        break;
                    }
                };
                if !matches!(sent, Sent::Nothing) {
                    if !matches!(
                        tokio::time::timeout_at(deadline, sink.feed(Frame::Binary(frame))).await,
                        Ok(Ok(()))
                    ) {
                        return Disconnect {
                            kind: "write_failed",
                            detail: "socket write".into(),
                        };
                    }
                    match sent {
                        Sent::Counter(counter) => counter.inc(),
                        Sent::Shared(envelope) => envelope.count_sent(),
                        Sent::Uncounted => {}
                        Sent::Nothing => {}
                    }
                }
                match outgoing.try_recv() {
                    Ok(next) => item = next,
                    Err(_) => break,
                }
            }
            if !matches!(
                tokio::time::timeout(timeout, sink.flush()).await,
                Ok(Ok(()))
            ) {
                return Disconnect {
                    kind: "write_failed",
                    detail: "socket flush".into(),
                };
            }
            state.drained.notify_waiters();
            if let Some((code, reason)) = close {
                let reason = truncate_close_reason(reason);
                let _ = tokio::time::timeout(
                    timeout,
                    sink.send(Frame::Close(Some((code, reason.clone())))),
                )
                .await;
                return Disconnect {
                    kind: "closed",
                    detail: format!("closed by us ({code}: {reason})"),
                };
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
            state.killed.cancel();
        }
    }
}

/// Which counter a written envelope adds to; `Nothing` when it could not be encoded
/// and is skipped.
enum Sent {
    Counter(prometheus::IntCounter),
    /// Written, counted by nobody (a client's unregistered metrics).
    Uncounted,
    Shared(SharedEnvelope),
    Nothing,
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
