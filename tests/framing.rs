//! Bad input on the wire, seen from raw WebSocket clients: every bad frame gets an
//! `Error` and a close of that connection only; slow and silent peers are cut; the
//! other clients never notice.

mod common;

use std::time::Duration;

use collab::rpc::proto;
use common::{
    Backend, TestServer, WAIT,
    raw::{
        error_then_close, next_envelope, next_envelope_stream, ping_ack, ping_envelope,
        raw_connect, until_end, upgrade_request,
    },
    within,
};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

/// Each kind of bad frame gets its error code and close code, and Bob, connected all
/// along, keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let server =
        TestServer::start_with(Backend::Sqlite, |config| config.max_frame_bytes = 64 * 1024).await;
    let bob = server.client("bob").await;

    // Oversized: 100 KiB against a 64 KiB cap. Sent from a task, since the server stops
    // reading it.
    let (mut sink, mut stream) = raw_connect(&server, "alice").await.split();
    tokio::spawn(async move {
        let _ = sink
            .send(Message::Binary(vec![1u8; 100 * 1024].into()))
            .await;
        std::future::pending::<()>().await;
    });
    let envelope = next_envelope_stream(&mut stream).await;
    assert_eq!(
        envelope.code,
        proto::ErrorCode::PayloadTooLarge as i32,
        "{envelope:?}"
    );
    let close = within("the close frame", async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(close, Some(CloseCode::Size));
    until_end(&mut stream).await;
    bob.request(proto::Ping {}).await.unwrap();

    // A zstd bomb: 300 bytes on the wire, 10 MiB inflated.
    let mut socket = raw_connect(&server, "alice").await;
    let bomb = zstd::bulk::compress(&vec![0u8; 10 * 1024 * 1024], 3).unwrap();
    assert!(bomb.len() < 64 * 1024);
    socket.send(Message::Binary(bomb.into())).await.unwrap();
    let (error, code) = error_then_close(&mut socket).await;
    assert_eq!(error.code, proto::ErrorCode::PayloadTooLarge as i32);
    assert_eq!(code, CloseCode::Size);

    // Garbage that is not an Envelope.
    let mut socket = raw_connect(&server, "alice").await;
    socket
        .send(Message::Binary(vec![0xff, 0xff, 0xff, 0xff].into()))
        .await
        .unwrap();
    let (error, code) = error_then_close(&mut socket).await;
    assert_eq!(error.code, proto::ErrorCode::InvalidRequest as i32);
    assert_eq!(code, CloseCode::Invalid);

    // A truncated varint.
    let mut socket = raw_connect(&server, "alice").await;
    socket
        .send(Message::Binary(vec![0x08, 0x80].into()))
        .await
        .unwrap();
    let (error, _) = error_then_close(&mut socket).await;
    assert_eq!(error.code, proto::ErrorCode::InvalidRequest as i32);

    // A text frame.
    let mut socket = raw_connect(&server, "alice").await;
    socket
        .send(Message::Text("{\"ping\":{}}".into()))
        .await
        .unwrap();
    let (error, code) = error_then_close(&mut socket).await;
    assert_eq!(error.code, proto::ErrorCode::InvalidRequest as i32);
    assert_eq!(code, CloseCode::Unsupported);

    bob.request(proto::Ping {})
        .await
        .expect("bob never noticed");
    server.until_connections(1).await;
    let bad = server.disconnects("bad_frame");
    assert_eq!(bad, 5);
    server.stop().await;
}

/// A payload this server does not know gets `UnknownMessage` in answer to its id, and
/// the connection stays open: the next ping is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_messages_get_unknown_message() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut socket = raw_connect(&server, "alice").await;
    let mut unknown = proto::Envelope {
        id: 5,
        ..Default::default()
    }
    .encode_to_vec();
    // Field 9999, length-delimited, empty: a message from a newer protocol.
    prost::encoding::encode_key(
        9999,
        prost::encoding::WireType::LengthDelimited,
        &mut unknown,
    );
    prost::encoding::encode_varint(0, &mut unknown);
    socket.send(Message::Binary(unknown.into())).await.unwrap();
    let answer = next_envelope(&mut socket, |e| e.responding_to == Some(5)).await;
    match answer.payload {
        Some(proto::envelope::Payload::Error(error)) => {
            assert_eq!(error.code, proto::ErrorCode::UnknownMessage as i32)
        }
        other => panic!("expected UnknownMessage, got {other:?}"),
    }
    ping_ack(&mut socket, 6).await;
    server.stop().await;
}

/// A client that sends requests but never reads its answers fills its outgoing queue
/// and is cut; Bob keeps working throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.outgoing_queue_messages = 32;
        config.socket_send_buffer = 4096;
    })
    .await;
    let bob = server.client("bob").await;
    let token = server.token("alice").await;

    // A socket with a tiny receive window, so the kernel cannot absorb the backlog.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    let (socket, _) = tokio_tungstenite::client_async(upgrade_request(&server, &token), tcp)
        .await
        .unwrap();
    let (mut sink, mut stream) = socket.split();

    // 200,000 pings, never reading an Ack. The sends fail once the server cuts us.
    let flood = tokio::spawn(async move {
        for id in 1..=200_000u32 {
            if sink
                .feed(Message::Binary(ping_envelope(id).into()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = sink.flush().await;
    });
    bob.request(proto::Ping {})
        .await
        .expect("bob is served during the flood");
    within("the flood to end", flood).await.unwrap();

    // Now read: what was buffered, then the end of the connection.
    within("the server to cut the slow reader", async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    let cut = server.disconnects("slow_consumer");
    assert_eq!(cut, 1, "the slow reader was cut as a slow consumer");
    bob.request(proto::Ping {}).await.expect("bob still served");
    server.stop().await;
}

/// A peer that completes the handshake and then never answers the server's pings is
/// dropped after the receive timeout; a normal client, answering pings, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.keepalive_interval = Duration::from_millis(100);
        config.receive_timeout = Duration::from_millis(500);
    })
    .await;
    let bob = server.client("bob").await;
    let token = server.token("alice").await;

    // Raw TCP: upgrade by hand, then read bytes without ever answering.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /rpc HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\nx-collab-protocol-version: {}\r\n\r\n",
        server.addr,
        proto::PROTOCOL_VERSION
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buffer = [0u8; 4096];
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the silent peer is dropped");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // Server frames are unmasked: an empty ping is `89 00`; the close frame is `88`, a
    // length, then the code 1008 (`03 F0`).
    let frames = &received[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(
        frames.windows(2).any(|w| w == [0x89, 0x00]),
        "the server pinged before giving up"
    );
    assert!(
        frames
            .windows(4)
            .any(|w| w[0] == 0x88 && w[2..] == [0x03, 0xF0]),
        "closed with 1008 (policy): {frames:02x?}"
    );
    assert_eq!(server.disconnects("silent"), 1);
    bob.request(proto::Ping {})
        .await
        .expect("bob answered pings and stayed");
    server.stop().await;
}
