//! LiveKit, end to end against a fake RoomService: the credentials handed out when
//! creating, joining and rejoining a room (tokens checked with LiveKit's own Python SDK
//! when it is installed), the RoomService calls made when roles change and participants
//! leave, and LiveKit failures that must never block the call flow.

mod common;
#[path = "common/livekit.rs"]
mod fake_livekit;

use std::time::Duration;

use collab::{client::Client, rpc::proto};
use common::{Backend, TestServer, WAIT, rooms::*};
use fake_livekit::FakeLiveKit;

use fake_livekit::{KEY, SECRET};

/// Verifies a token with LiveKit's Python SDK and prints the claims the tests check.
const VERIFY_TOKEN_PY: &str = r#"
import json, sys
from livekit import api
key, secret, token = sys.argv[1:4]
claims = api.TokenVerifier(key, secret).verify(token)
video = claims.video
print(json.dumps({
    "identity": claims.identity,
    "name": claims.name,
    "room": video.room,
    "room_join": video.room_join,
    "can_publish": video.can_publish,
}))
"#;

#[derive(Debug, serde::Deserialize)]
struct Claims {
    identity: String,
    name: Option<String>,
    room: Option<String>,
    room_join: Option<bool>,
    can_publish: Option<bool>,
}

/// The token's claims as LiveKit's SDK reads them, or `None` when the SDK is not
/// installed (a failure instead when `COLLAB_REQUIRE_LIVEKIT_SDK=1`).
async fn verify_with_sdk(token: &str) -> Option<Claims> {
    let available = tokio::process::Command::new("python3")
        .args(["-c", "import livekit.api"])
        .output()
        .await
        .is_ok_and(|output| output.status.success());
    if !available {
        if std::env::var("COLLAB_REQUIRE_LIVEKIT_SDK").as_deref() == Ok("1") {
            panic!("COLLAB_REQUIRE_LIVEKIT_SDK=1 but python3 cannot import livekit.api");
        }
        eprintln!("skipped: pip install livekit-api to verify tokens with LiveKit's SDK");
        return None;
    }
    let output = tokio::process::Command::new("python3")
        .args(["-c", VERIFY_TOKEN_PY, KEY, SECRET, token])
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "LiveKit's SDK refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("the claims as JSON"))
}

/// Checks the credentials handed to `client` (user `login`) for `room`.
async fn check_credentials(
    info: Option<proto::LiveKitConnectionInfo>,
    fake: &FakeLiveKit,
    room: &proto::Room,
    client: &Client,
    login: &str,
    can_publish: bool,
) {
    let info = info.expect("LiveKit credentials when LiveKit is configured");
    assert_eq!(info.server_url, fake.url);
    assert_eq!(info.can_publish, can_publish, "{login}'s can_publish");
    assert!(!info.token.is_empty());
    assert!(
        !room.livekit_room.is_empty(),
        "the room names its LiveKit room"
    );
    // Decoded here with the secret (always), and by LiveKit's own SDK (when installed).
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[KEY]);
    validation.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
    let decoded = jsonwebtoken::decode::<serde_json::Value>(&info.token, &key, &validation)
        .expect("a token signed with the LiveKit secret")
        .claims;
    assert_eq!(decoded["sub"], client.user_id().to_string());
    assert_eq!(decoded["name"], login);
    assert_eq!(decoded["video"]["room"], room.livekit_room.as_str());
    assert_eq!(decoded["video"]["roomJoin"], true);
    assert_eq!(decoded["video"]["canPublish"], can_publish, "{decoded}");
    if let Some(claims) = verify_with_sdk(&info.token).await {
        assert_eq!(claims.identity, client.user_id().to_string());
        assert_eq!(claims.name.as_deref(), Some(login));
        assert_eq!(claims.room.as_deref(), Some(room.livekit_room.as_str()));
        assert_eq!(claims.room_join, Some(true));
        assert_eq!(claims.can_publish, Some(can_publish), "{claims:?}");
    }
}

/// A server whose LiveKit is `fake`.
async fn server_with(backend: Backend, fake: &FakeLiveKit) -> TestServer {
    let url = fake.url.clone();
    TestServer::start_with(backend, move |config| {
        config.livekit_url = Some(url);
        config.livekit_key = Some(KEY.into());
        config.livekit_secret = Some(SECRET.into());
        config.livekit_token_ttl = Duration::from_secs(3600);
        config.reconnect_grace = Duration::from_secs(60);
    })
    .await
}

/// Alice creates a room and Bob joins it; a guest Bob reconnects and loses the right to
/// publish; both leave and the LiveKit room is deleted.
async fn livekit_credentials_and_room_service(backend: Backend) {
    let fake = FakeLiveKit::start().await;
    let server = server_with(backend, &fake).await;
    befriend(&server, "alice", "bob").await;
    let alice_client = server.client("alice").await;
    let bob_client = server.client("bob").await;
    let bob = bob_client.user_id();
    let bob_identity = bob.to_string();

    // Alice creates a room: she gets credentials for its LiveKit room, and may publish.
    let created = alice_client.request(proto::CreateRoom {}).await.unwrap();
    let room = created
        .room
        .clone()
        .expect("CreateRoomResponse carries the room");
    let room_id = room.id;
    let livekit_room = room.livekit_room.clone();
    check_credentials(
        created.live_kit_connection_info,
        &fake,
        &room,
        &alice_client,
        "alice",
        true,
    )
    .await;

    // Alice calls Bob; he answers and gets his own credentials for the same LiveKit room.
    let joined = call_and_answer(&alice_client, &bob_client, room_id).await;
    let room = joined
        .room
        .clone()
        .expect("JoinRoomResponse carries the room");
    assert_eq!(room.livekit_room, livekit_room);
    check_credentials(
        joined.live_kit_connection_info,
        &fake,
        &room,
        &bob_client,
        "bob",
        true,
    )
    .await;

    // Alice makes Bob a guest: LiveKit is told he may no longer publish.
    alice_client
        .request(proto::SetRoomParticipantRole {
            room_id,
            user_id: bob,
            role: proto::ParticipantRole::Guest as i32,
        })
        .await
        .unwrap();
    let update = fake
        .until("UpdateParticipant for Bob", |call| {
            call.method == "UpdateParticipant" && call.identity == bob_identity
        })
        .await;
    assert_eq!(update.room, livekit_room);
    assert_eq!(update.can_publish, Some(false));
    // Bob's client gets fresh credentials without the right to publish.
    let fresh = bob_client
        .recv_timeout::<proto::UpdateLiveKitCredentials>(WAIT)
        .await
        .expect("new LiveKit credentials")
        .payload;
    assert_eq!(fresh.room_id, room_id);
    let room_now = proto::Room {
        livekit_room: livekit_room.clone(),
        ..Default::default()
    };
    check_credentials(fresh.info, &fake, &room_now, &bob_client, "bob", false).await;
    assert!(
        update.authorized,
        "the server signs RoomService calls with its key and secret"
    );

    // Bob's connection drops; he rejoins from a new one and gets guest credentials.
    bob_client.close().await;
    room_until(&alice_client, "Bob's connection lost", |room| {
        participant(room, bob).is_some_and(|p| p.connection_lost)
    })
    .await;
    let bob_again = server.client("bob").await;
    let rejoined = bob_again
        .request(proto::RejoinRoom { room_id })
        .await
        .unwrap();
    let room = rejoined
        .room
        .clone()
        .expect("JoinRoomResponse carries the room");
    assert_eq!(
        participant(&room, bob).map(|p| p.role),
        Some(proto::ParticipantRole::Guest as i32)
    );
    check_credentials(
        rejoined.live_kit_connection_info,
        &fake,
        &room,
        &bob_again,
        "bob",
        false,
    )
    .await;

    // Bob leaves: LiveKit removes him from the LiveKit room.
    bob_again.request(proto::LeaveRoom {}).await.unwrap();
    let removed = fake
        .until("RemoveParticipant for Bob", |call| {
            call.method == "RemoveParticipant" && call.identity == bob_identity
        })
        .await;
    assert_eq!(removed.room, livekit_room);
    assert!(removed.authorized);

    // Alice, the last one, leaves: the LiveKit room is deleted.
    alice_client.request(proto::LeaveRoom {}).await.unwrap();
    let deleted = fake
        .until("DeleteRoom", |call| call.method == "DeleteRoom")
        .await;
    assert_eq!(deleted.room, livekit_room);
    assert!(deleted.authorized);
    server.stop().await;
}
db_test!(livekit_credentials_and_room_service);

/// LiveKit answering 500 to everything never blocks creating, calling, joining, roles or
/// leaving.
async fn livekit_errors_never_block_calls(backend: Backend) {
    let fake = FakeLiveKit::start().await;
    fake.fail(true);
    let server = server_with(backend, &fake).await;
    befriend(&server, "alice", "bob").await;
    let alice_client = server.client("alice").await;
    let bob_client = server.client("bob").await;
    let bob = bob_client.user_id();

    let created = alice_client.request(proto::CreateRoom {}).await.unwrap();
    let room_id = created
        .room
        .expect("CreateRoomResponse carries the room")
        .id;
    assert!(created.live_kit_connection_info.is_some());

    let joined = call_and_answer(&alice_client, &bob_client, room_id).await;
    assert!(joined.live_kit_connection_info.is_some());
    room_until(&alice_client, "Bob to join", |room| {
        participant(room, bob).is_some()
    })
    .await;

    // The role changes although LiveKit refuses the permission update.
    alice_client
        .request(proto::SetRoomParticipantRole {
            room_id,
            user_id: bob,
            role: proto::ParticipantRole::Guest as i32,
        })
        .await
        .unwrap();
    fake.until("UpdateParticipant (answered 500)", |call| {
        call.method == "UpdateParticipant"
    })
    .await;
    room_until(&alice_client, "Bob a guest", |room| {
        participant(room, bob).map(|p| p.role) == Some(proto::ParticipantRole::Guest as i32)
    })
    .await;

    // Bob leaves although LiveKit refuses to remove him.
    bob_client.request(proto::LeaveRoom {}).await.unwrap();
    fake.until("RemoveParticipant (answered 500)", |call| {
        call.method == "RemoveParticipant"
    })
    .await;
    room_until(&alice_client, "Bob to leave", |room| {
        participant(room, bob).is_none()
    })
    .await;

    // Alice leaves too; the server still answers.
    alice_client.request(proto::LeaveRoom {}).await.unwrap();
    fake.until("DeleteRoom (answered 500)", |call| {
        call.method == "DeleteRoom"
    })
    .await;
    alice_client.request(proto::Ping {}).await.unwrap();
    bob_client.request(proto::Ping {}).await.unwrap();
    server.stop().await;
}
db_test!(livekit_errors_never_block_calls);
