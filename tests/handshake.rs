//! The handshake: who gets in, who is turned away before the upgrade, and with what.

mod common;

use std::time::Duration;

use collab::{
    auth::{Keys, jwt::AccessClaims},
    client::{Client, ClientOptions, ConnectError},
    rpc::proto,
};
use common::{Backend, TestServer};

fn http_status(error: ConnectError) -> (u16, String) {
    match error {
        ConnectError::Http { status, body } => (status, body),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Alice connects and is greeted by name and peer id; a ping is acknowledged.
async fn a_good_token_gets_hello_then_ack(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.user("alice").await;
    let client = server.client("alice").await;
    let hello = client.hello();
    assert_eq!(hello.user_id, alice.id.to_proto());
    assert_eq!(hello.protocol_version, proto::PROTOCOL_VERSION);
    let peer = hello.peer_id.expect("Hello carries the peer id");
    assert_eq!(peer.server_id, server.state.server_id.0 as u32);
    assert!(peer.id > 0);
    let ack: proto::Ack = client.request(proto::Ping {}).await.expect("ping answered");
    assert_eq!(ack, proto::Ack {});

    // A second device gets a different peer id on the same server.
    let other = server.client("alice").await;
    assert_ne!(other.peer_id(), client.peer_id());
    server.stop().await;
}
db_test!(a_good_token_gets_hello_then_ack);

/// No token, a malformed one, a forged one, an expired one, a revoked one: all 401,
/// before any upgrade.
async fn bad_tokens_get_401(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.rpc_url();
    let alice = server.user("alice").await;

    let (status, _) = http_status(
        Client::connect(&url, "")
            .await
            .err()
            .expect("empty token refused"),
    );
    assert_eq!(status, 401);
    let (status, _) = http_status(
        Client::connect(&url, "not-a-jwt")
            .await
            .err()
            .expect("garbage refused"),
    );
    assert_eq!(status, 401);

    // Signed with another secret.
    let now = chrono::Utc::now().timestamp();
    let claims = AccessClaims {
        iat: now,
        exp: now + 3600,
        jti: uuid::Uuid::new_v4().to_string(),
        aud: "collab".into(),
        user_id: alice.id.0,
        is_admin: true,
        impersonated_user_id: None,
    };
    let forged = Keys::new(&[7u8; 32]).encode(&claims).unwrap();
    let (status, _) = http_status(
        Client::connect(&url, &forged)
            .await
            .err()
            .expect("forged refused"),
    );
    assert_eq!(status, 401);

    // Signed with the right secret but never issued (no row): refused too.
    let secret = std::fs::read(server.dir.path().join("jwt-secret")).unwrap();
    let keys = Keys::new(&secret);
    let unissued = keys.encode(&claims).unwrap();
    let (status, _) = http_status(
        Client::connect(&url, &unissued)
            .await
            .err()
            .expect("unissued refused"),
    );
    assert_eq!(status, 401);

    // Issued, but expired an hour ago.
    let expired_claims = AccessClaims {
        iat: now - 7200,
        exp: now - 3600,
        ..claims.clone()
    };
    server
        .state
        .db
        .insert_access_token(
            &expired_claims.jti,
            alice.id,
            None,
            false,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let expired = keys.encode(&expired_claims).unwrap();
    let (status, _) = http_status(
        Client::connect(&url, &expired)
            .await
            .err()
            .expect("expired refused"),
    );
    assert_eq!(status, 401);

    // Valid, then revoked.
    let minted = server
        .state
        .auth
        .mint_access_token(&server.state.db, &alice, None, Duration::from_secs(600))
        .await
        .unwrap();
    let client = Client::connect(&url, &minted.token)
        .await
        .expect("valid before revocation");
    client.request(proto::Ping {}).await.unwrap();
    server
        .state
        .db
        .revoke_access_token(&minted.jti)
        .await
        .unwrap();
    let (status, _) = http_status(
        Client::connect(&url, &minted.token)
            .await
            .err()
            .expect("revoked refused"),
    );
    assert_eq!(status, 401);

    // A WebSocket token is not an access token.
    let ws = server
        .state
        .auth
        .mint_ws_token(
            alice.id,
            None,
            collab::auth::Permission::Write,
            Duration::from_secs(60),
        )
        .unwrap();
    let (status, _) = http_status(
        Client::connect(&url, &ws.token)
            .await
            .err()
            .expect("ws token refused"),
    );
    assert_eq!(status, 401);
    server.stop().await;
}
db_test!(bad_tokens_get_401);

/// An unsupported (or missing) protocol version gets 426 naming the supported ones.
#[tokio::test]
async fn unsupported_version_gets_426() {
    let server = TestServer::start(Backend::Sqlite).await;
    let token = server.token("alice").await;
    let options = ClientOptions {
        protocol_version: 999,
        ..ClientOptions::default()
    };
    let (status, body) = http_status(
        Client::connect_with(&server.rpc_url(), &token, options)
            .await
            .err()
            .expect("version refused"),
    );
    assert_eq!(status, 426);
    assert!(body.contains("999"), "{body}");
    assert!(
        body.contains(&format!("supported versions: {}", proto::PROTOCOL_VERSION)),
        "{body}"
    );
    // The version is checked first: a bad token with a bad version still gets 426.
    let options = ClientOptions {
        protocol_version: 999,
        ..ClientOptions::default()
    };
    let refused = Client::connect_with(&server.rpc_url(), "garbage", options).await;
    assert_eq!(http_status(refused.err().expect("refused")).0, 426);

    // Without the header at all, with the raw HTTP client.
    let response = reqwest::Client::new()
        .get(server.http("/rpc"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    assert_eq!(
        response.headers()["x-collab-protocol-version"],
        proto::PROTOCOL_VERSION.to_string()
    );
    server.stop().await;
}

/// Past `--max-connections`, an upgrade gets 503 and the connected clients are unaffected.
#[tokio::test]
async fn connection_limit_gets_503() {
    let server = TestServer::start_with(Backend::Sqlite, |config| config.max_connections = 2).await;
    let first = server.client("alice").await;
    let second = server.client("bob").await;
    let token = server.token("carol").await;
    let (status, _) = http_status(
        Client::connect(&server.rpc_url(), &token)
            .await
            .err()
            .expect("third refused"),
    );
    assert_eq!(status, 503);
    first.request(proto::Ping {}).await.unwrap();
    second.request(proto::Ping {}).await.unwrap();
    assert_eq!(server.state.metrics.connections_refused.get(), 1);
    server.stop().await;
}

/// When tokens cannot be checked (the database is gone), the answer is 503, so clients
/// retry later instead of discarding a good token as they would after a 401.
#[tokio::test]
async fn an_unreachable_database_gets_503_not_401() {
    let server = TestServer::start(Backend::Sqlite).await;
    let token = server.token("alice").await;
    server.state.db.conn.close_by_ref().await.unwrap();
    let refused = Client::connect(&server.rpc_url(), &token)
        .await
        .err()
        .expect("refused");
    assert_eq!(http_status(refused).0, 503);
}

/// While every turn for connect work is taken (a reconnect storm), a new connection is
/// upgraded and waits, counted, with no Hello yet; a client that speaks first is not
/// lost. When a turn frees, each gets its Hello first, then its answers.
#[tokio::test]
async fn connections_wait_their_turn_for_connect_work() {
    use common::raw::{next_envelope, ping_envelope, raw_connect};
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.connection_work_concurrency = 1
    })
    .await;
    let waiting = || server.state.metrics.connection_work_waiting.get();
    // The test holds the only turn.
    let turn = server
        .state
        .connection_work
        .clone()
        .acquire_owned()
        .await
        .unwrap();

    let token = server.token("alice").await;
    let url = server.rpc_url();
    let alice = tokio::spawn(async move { Client::connect(&url, &token).await });
    // Bob speaks before he is greeted.
    let mut bob = raw_connect(&server, "bob").await;
    bob.send(Message::Binary(ping_envelope(7).into()))
        .await
        .unwrap();
    common::within("both connections to wait for a turn", async {
        while waiting() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(server.state.peer.connection_count(), 2, "both are upgraded");
    assert!(!alice.is_finished(), "no Hello while the turn is taken");

    drop(turn);
    let alice = alice
        .await
        .unwrap()
        .expect("alice is greeted once a turn frees");
    alice.request(proto::Ping {}).await.unwrap();
    let hello = next_envelope(&mut bob, |_| true).await;
    assert!(
        matches!(hello.payload, Some(proto::envelope::Payload::Hello(_))),
        "Hello comes first: {hello:?}"
    );
    let ack = next_envelope(&mut bob, |e| e.responding_to.is_some()).await;
    assert_eq!(ack.responding_to, Some(7), "bob's early ping is answered");
    assert_eq!(waiting(), 0);

    // Disconnect work takes turns too, and gives them back.
    drop(alice);
    drop(bob);
    server.until_connections(0).await;
    let carol = server.client("carol").await;
    carol.request(proto::Ping {}).await.unwrap();
    server.stop().await;
}
