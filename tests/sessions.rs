//! The life of a session after the handshake: keepalive while the server is busy
//! talking, revocation ending live sessions, and graceful shutdown's close code.

mod common;

use std::time::{Duration, Instant};

use collab::rpc::proto;
use common::{
    Backend, TestServer, WAIT,
    raw::{next_envelope, ping_ack, raw_connect},
    within,
};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

/// Alice's minimal client only answers pings (its WebSocket library does that) and
/// sends nothing else, while Bob keeps the server busy sending her contact updates for
/// several receive timeouts. The server keeps pinging through the traffic, so Alice's
/// pongs keep her connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_survives_a_busy_server() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.keepalive_interval = Duration::from_millis(100);
        config.receive_timeout = Duration::from_millis(400);
    })
    .await;
    let alice = server.user_id("alice").await.to_proto();
    let bob = server.client("bob").await;
    let mut alice_socket = raw_connect(&server, "alice").await;

    let traffic = tokio::spawn(async move {
        let started = Instant::now();
        let mut cycles = 0;
        while started.elapsed() < Duration::from_millis(1500) {
            bob.request(proto::RequestContact {
                responder_id: alice,
            })
            .await
            .unwrap();
            bob.request(proto::RemoveContact { user_id: alice })
                .await
                .unwrap();
            cycles += 1;
        }
        cycles
    });
    tokio::pin!(traffic);
    let mut updates = 0;
    let cycles = within("the traffic to end", async {
        loop {
            tokio::select! {
                cycles = &mut traffic => return cycles.unwrap(),
                frame = alice_socket.next() => match frame {
                    Some(Ok(Message::Binary(_))) => updates += 1,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("alice's connection ended during the traffic: {other:?}"),
                },
            }
        }
    })
    .await;
    assert!(cycles > 0 && updates > 0);
    ping_ack(&mut alice_socket, 1).await;
    assert_eq!(server.disconnects("silent"), 0);
    server.stop().await;
}

/// Revoking a token ends the sessions opened with it: at once when revoked over REST,
/// and within the sweep interval when revoked elsewhere (the CLI, another server).
/// Sessions opened with other tokens stay.
async fn revocation_ends_live_sessions(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.revocation_check_interval = Duration::from_millis(100);
    })
    .await;
    let alice = server.user("alice").await;
    let mint = || {
        server.state.auth.mint_access_token(
            &server.state.db,
            &alice,
            None,
            Duration::from_secs(600),
        )
    };
    let (laptop_token, desktop_token, phone_token) = (
        mint().await.unwrap(),
        mint().await.unwrap(),
        mint().await.unwrap(),
    );
    let connect = |token: String| {
        let url = server.rpc_url();
        async move { collab::client::Client::connect(&url, &token).await.unwrap() }
    };
    let laptop = connect(laptop_token.token.clone()).await;
    let desktop = connect(desktop_token.token.clone()).await;
    let phone = connect(phone_token.token.clone()).await;

    // Over REST: the laptop's session ends at once, with the reason.
    let revoked = reqwest::Client::new()
        .delete(server.http(&format!("/api/access_tokens/{}", laptop_token.jti)))
        .bearer_auth(&laptop_token.token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let error = laptop
        .recv_timeout::<proto::Error>(WAIT)
        .await
        .expect("told why")
        .payload;
    assert_eq!(error.code, proto::ErrorCode::Unauthorized as i32);
    within("the laptop to be closed", laptop.closed()).await;

    // Directly in the database, as `collab token revoke` does: the sweep finds it.
    server
        .state
        .db
        .revoke_access_token(&desktop_token.jti)
        .await
        .unwrap();
    within("the sweep to close the desktop", desktop.closed()).await;

    server.until_connections(1).await;
    phone
        .request(proto::Ping {})
        .await
        .expect("other tokens are unaffected");
    assert_eq!(server.disconnects("token_revoked"), 2);
    server.stop().await;
}
db_test!(revocation_ends_live_sessions);

/// On shutdown, a connected client is closed with 1001 (going away), well within the
/// shutdown timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_with_going_away() {
    let mut server = TestServer::start_with(Backend::Sqlite, |config| {
        config.shutdown_timeout = Duration::from_secs(60);
    })
    .await;
    let mut socket = raw_connect(&server, "alice").await;
    next_envelope(&mut socket, |e| {
        matches!(e.payload, Some(proto::envelope::Payload::Hello(_)))
    })
    .await;
    let started = Instant::now();
    let (_, code) = tokio::join!(server.halt(), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    });
    assert_eq!(code, Some(CloseCode::Away));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "closed gracefully, not by the timeout"
    );
    server.stop().await;
}
