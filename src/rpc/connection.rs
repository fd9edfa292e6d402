//! Framing: one envelope per binary WebSocket frame, with size caps and optional zstd.
//!
//! The transport-neutral [`Frame`] lets the same `Peer` drive axum's server-side sockets
//! and tokio-tungstenite's client sockets. The [`Codec`] turns envelopes into frame bytes
//! and back; it never allocates more than the frame cap, even for a hostile zstd frame.

use std::{
    io::Read,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use prost::Message as _;

use super::{error::RpcError, proto};

/// The zstd frame magic number. A valid Envelope encoding never starts with 0x28 (field 5
/// is reserved in `envelope.proto`), so these bytes unambiguously mark a compressed frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// A WebSocket frame, independent of the WebSocket library.
#[derive(Debug)]
pub enum Frame {
    Binary(Bytes),
    Text(String),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<(u16, String)>),
}

/// Why reading a frame failed.
#[derive(Debug)]
pub enum ReadError {
    /// The frame (or message) was larger than the cap: the WebSocket layer refused it.
    TooLarge(String),
    /// Any other transport failure (reset, protocol violation, ...).
    Transport(String),
}

pub type FrameSink = Pin<Box<dyn Sink<Frame, Error = std::io::Error> + Send>>;
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, ReadError>> + Send>>;

/// Both halves of a WebSocket, as frames.
pub struct Connection {
    pub sink: FrameSink,
    pub stream: FrameStream,
}

impl Connection {
    /// Wraps a server-side socket accepted by axum.
    ///
    /// The socket is read once, right away, without waiting: until its first read,
    /// hyper's upgraded stream keeps the whole HTTP read buffer (8 KiB or more) for the
    /// bytes that followed the request, and a connection can wait a while for its turn to
    /// do its connect work before its reader starts (thousands of them in a reconnect
    /// storm). A message that was already there is kept and read first.
    pub fn from_axum(mut socket: axum::extract::ws::WebSocket) -> Self {
        use axum::extract::ws::{CloseFrame, Message};
        let early = socket.poll_next_unpin(&mut Context::from_waker(Waker::noop()));
        let (sink, stream) = socket.split();
        let sink = sink
            .sink_map_err(|error| std::io::Error::other(error.to_string()))
            .with(|frame: Frame| {
                futures::future::ready(Ok::<_, std::io::Error>(match frame {
                    Frame::Binary(bytes) => Message::Binary(bytes),
                    Frame::Text(text) => Message::Text(text.into()),
                    Frame::Ping(bytes) => Message::Ping(bytes),
                    Frame::Pong(bytes) => Message::Pong(bytes),
                    Frame::Close(close) => Message::Close(close.map(|(code, reason)| CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                }))
            });
        let frame = |message| match message {
            Ok(Message::Binary(bytes)) => Ok(Frame::Binary(bytes)),
            Ok(Message::Text(text)) => Ok(Frame::Text(text.to_string())),
            Ok(Message::Ping(bytes)) => Ok(Frame::Ping(bytes)),
            Ok(Message::Pong(bytes)) => Ok(Frame::Pong(bytes)),
            Ok(Message::Close(close)) => {
                Ok(Frame::Close(close.map(|c| (c.code, c.reason.to_string()))))
            }
            Err(error) => Err(classify_axum_error(error)),
        };
        let stream: FrameStream = match early {
            Poll::Pending => Box::pin(stream.map(frame)),
            Poll::Ready(Some(first)) => Box::pin(
                futures::stream::once(async { first })
                    .chain(stream)
                    .map(frame),
            ),
            Poll::Ready(None) => Box::pin(futures::stream::empty()),
        };
        Connection {
            sink: Box::pin(sink),
            stream,
        }
    }

    /// Wraps a client-side tokio-tungstenite socket.
    pub fn from_tungstenite<S>(socket: tokio_tungstenite::WebSocketStream<S>) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tokio_tungstenite::tungstenite::{
            Message,
            protocol::{CloseFrame, frame::coding::CloseCode},
        };
        let (sink, stream) = socket.split();
        let sink = sink
            .sink_map_err(std::io::Error::other)
            .with(|frame: Frame| {
                futures::future::ready(Ok::<_, std::io::Error>(match frame {
                    Frame::Binary(bytes) => Message::Binary(bytes),
                    Frame::Text(text) => Message::Text(text.into()),
                    Frame::Ping(bytes) => Message::Ping(bytes),
                    Frame::Pong(bytes) => Message::Pong(bytes),
                    Frame::Close(close) => Message::Close(close.map(|(code, reason)| CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    })),
                }))
            });
        let stream = stream.filter_map(|message| {
            futures::future::ready(match message {
                Ok(Message::Binary(bytes)) => Some(Ok(Frame::Binary(bytes))),
                Ok(Message::Text(text)) => Some(Ok(Frame::Text(text.to_string()))),
                Ok(Message::Ping(bytes)) => Some(Ok(Frame::Ping(bytes))),
                Ok(Message::Pong(bytes)) => Some(Ok(Frame::Pong(bytes))),
                Ok(Message::Close(close)) => Some(Ok(Frame::Close(
                    close.map(|c| (u16::from(c.code), c.reason.to_string())),
                ))),
                Ok(Message::Frame(_)) => None,
                Err(error) => Some(Err(classify_tungstenite_error(&error))),
            })
        });
        Connection {
            sink: Box::pin(sink),
            stream: Box::pin(stream),
        }
    }
}

fn classify_axum_error(error: axum::Error) -> ReadError {
    let inner = error.into_inner();
    match inner.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
        Some(error) => classify_tungstenite_error(error),
        None => ReadError::Transport(inner.to_string()),
    }
}

fn classify_tungstenite_error(error: &tokio_tungstenite::tungstenite::Error) -> ReadError {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Capacity(capacity) => ReadError::TooLarge(capacity.to_string()),
        other => ReadError::Transport(other.to_string()),
    }
}

/// Envelope ⇄ frame bytes.
#[derive(Clone, Debug)]
pub struct Codec {
    /// The largest frame accepted or produced, and the largest decompressed envelope.
    pub max_frame_bytes: usize,
    /// Envelopes whose encoding is at least this long are zstd-compressed (when that
    /// makes them smaller). `usize::MAX` turns compression off.
    pub compression_threshold: usize,
    pub compression_level: i32,
}

/// The default frame cap: 4 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// The default compression threshold: 1 KiB. Below it zstd's frame overhead and CPU
/// cost outweigh what it saves.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;

impl Default for Codec {
    fn default() -> Self {
        Codec {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            compression_level: 3,
        }
    }
}

impl Codec {
    /// Encodes one envelope into one frame's bytes, compressing large ones. `scratch` is
    /// reused between calls so the hot path does not allocate an encode buffer each time.
    pub fn encode(
        &self,
        envelope: &proto::Envelope,
        scratch: &mut Vec<u8>,
    ) -> Result<Bytes, RpcError> {
        scratch.clear();
        envelope.encode(scratch).map_err(|_| RpcError::internal())?;
        self.frame(scratch)
    }

    /// One frame's bytes from an encoded envelope: compressed when large, checked
    /// against the cap.
    pub fn frame(&self, scratch: &[u8]) -> Result<Bytes, RpcError> {
        let bytes = if scratch.len() >= self.compression_threshold {
            match zstd::bulk::compress(scratch, self.compression_level) {
                Ok(compressed) if compressed.len() < scratch.len() => Bytes::from(compressed),
                _ => Bytes::copy_from_slice(scratch),
            }
        } else {
            Bytes::copy_from_slice(scratch)
        };
        if bytes.len() > self.max_frame_bytes {
            return Err(too_large(bytes.len(), self.max_frame_bytes));
        }
        Ok(bytes)
    }

    /// Decodes one frame's bytes, straight into the box the envelope travels in. Its
    /// `bytes` fields (buffer operations, updates) are slices of the frame, not copies. A
    /// compressed frame is inflated through a reader that stops one byte past the cap, so
    /// a small "zip bomb" costs at most the cap.
    pub fn decode(&self, bytes: impl Into<Bytes>) -> Result<Box<proto::Envelope>, RpcError> {
        let bytes: Bytes = bytes.into();
        if bytes.len() > self.max_frame_bytes {
            return Err(too_large(bytes.len(), self.max_frame_bytes));
        }
        if bytes.starts_with(&ZSTD_MAGIC) {
            let decoder = zstd::stream::read::Decoder::new(&bytes[..])
                .map_err(|error| invalid_frame(format!("bad zstd frame: {error}")))?;
            let mut inflated =
                Vec::with_capacity(bytes.len().saturating_mul(4).min(self.max_frame_bytes));
            decoder
                .take(self.max_frame_bytes as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|error| invalid_frame(format!("bad zstd frame: {error}")))?;
            if inflated.len() > self.max_frame_bytes {
                return Err(RpcError::new(
                    proto::ErrorCode::PayloadTooLarge,
                    format!(
                        "decompressed frame exceeds the {} byte cap",
                        self.max_frame_bytes
                    ),
                )
                .with_tag("max_frame_bytes", self.max_frame_bytes));
            }
            decode_envelope(inflated.into())
        } else {
            decode_envelope(bytes)
        }
    }
}

fn decode_envelope(bytes: Bytes) -> Result<Box<proto::Envelope>, RpcError> {
    // Merged in place: an `Envelope` is 256 bytes, and every delivery decodes one.
    let mut envelope = Box::<proto::Envelope>::default();
    envelope
        .merge(bytes)
        .map_err(|error| invalid_frame(format!("frame is not a valid Envelope: {error}")))?;
    Ok(envelope)
}

fn invalid_frame(message: String) -> RpcError {
    RpcError::new(proto::ErrorCode::InvalidRequest, message)
}

pub(crate) fn too_large(len: usize, max: usize) -> RpcError {
    RpcError::new(
        proto::ErrorCode::PayloadTooLarge,
        format!("frame of {len} bytes exceeds the {max} byte cap"),
    )
    .with_tag("frame_bytes", len)
    .with_tag("max_frame_bytes", max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope_with(bytes: usize) -> proto::Envelope {
        proto::Envelope {
            id: 7,
            payload: Some(proto::envelope::Payload::Error(proto::Error {
                code: 0,
                message: "x".repeat(bytes),
                tags: vec![],
            })),
            ..Default::default()
        }
    }

    #[test]
    fn small_envelopes_are_plain_and_large_ones_compressed() {
        let codec = Codec::default();
        let mut scratch = Vec::new();
        let small = codec.encode(&envelope_with(10), &mut scratch).unwrap();
        assert!(!small.starts_with(&ZSTD_MAGIC));
        assert_eq!(*codec.decode(small.clone()).unwrap(), envelope_with(10));
        let large = codec.encode(&envelope_with(100_000), &mut scratch).unwrap();
        assert!(large.starts_with(&ZSTD_MAGIC));
        assert!(large.len() < 1000);
        assert_eq!(*codec.decode(large).unwrap(), envelope_with(100_000));
    }

    #[test]
    fn no_envelope_encoding_starts_with_the_zstd_magic() {
        let mut scratch = Vec::new();
        proto::Envelope {
            id: 1,
            ..Default::default()
        }
        .encode(&mut scratch)
        .unwrap();
        assert_ne!(scratch[0], ZSTD_MAGIC[0]);
    }

    #[test]
    fn a_bomb_is_refused_at_the_cap() {
        let codec = Codec {
            max_frame_bytes: 64 * 1024,
            ..Codec::default()
        };
        let bomb = zstd::bulk::compress(&vec![0u8; 10 * 1024 * 1024], 3).unwrap();
        assert!(bomb.len() < codec.max_frame_bytes);
        let error = codec.decode(bomb).unwrap_err();
        assert_eq!(error.code, proto::ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn garbage_and_truncated_frames_are_invalid_requests() {
        let codec = Codec::default();
        assert_eq!(
            codec.decode(vec![0xff, 0xff, 0xff]).unwrap_err().code,
            proto::ErrorCode::InvalidRequest
        );
        let mut truncated = ZSTD_MAGIC.to_vec();
        truncated.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            codec.decode(truncated).unwrap_err().code,
            proto::ErrorCode::InvalidRequest
        );
    }
}
