//! Presence in rooms: relayed to the other participants, coalesced to the configured
//! rate (the latest state wins), expired after the TTL, cleared on leave.

mod common;

use std::time::{Duration, Instant};

use collab::rpc::proto;
use common::{Backend, TestServer, WAIT, rooms::*, within};

/// A burst of presence updates is relayed at most `presence_rate` times per second, the
/// latest state winning; a presence not renewed for `presence_ttl` is removed.
async fn presence_is_rate_limited_and_expires(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.presence_rate = 5;
        config.presence_ttl = Duration::from_millis(300);
    })
    .await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let alice = alice_client.user_id();

    // Alice's cursor moves down 1,000 lines in a burst.
    let started = Instant::now();
    for line in 1..=1000 {
        alice_client.send(presence_at(line)).unwrap();
    }

    // Bob sees a few of those states, ending with line 1,000.
    let mut received = 0u32;
    let latest = within("Alice's cursor on line 1000", async {
        loop {
            let update = bob_client
                .recv::<proto::PresenceUpdated>()
                .await
                .expect("the connection is open")
                .payload;
            assert_eq!(update.user_id, alice, "{update:?}");
            assert!(
                !update.removed,
                "removed before the latest state: {update:?}"
            );
            received += 1;
            if update.cursor.as_ref().map(|cursor| cursor.line) == Some(1000) {
                return update;
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(
        f64::from(received) <= 3.0 + elapsed.as_secs_f64() * 5.0,
        "{received} presence updates relayed in {elapsed:?} at 5 per second"
    );
    assert_eq!(latest.room_id, room_id);
    assert_eq!(latest.peer_id, peer(&alice_client));
    assert_eq!(latest.status, proto::PresenceStatus::Active as i32);
    assert_eq!(latest.cursor.as_ref().unwrap().path, "src/main.rs");

    // No more updates: after the ttl, Bob hears that Alice's presence is gone.
    let removed = within("Alice's presence to expire", async {
        loop {
            let update = bob_client
                .recv::<proto::PresenceUpdated>()
                .await
                .expect("the connection is open")
                .payload;
            if update.removed {
                return update;
            }
            assert_eq!(
                update.cursor.as_ref().map(|cursor| cursor.line),
                Some(1000),
                "the latest state wins: {update:?}"
            );
        }
    })
    .await;
    assert_eq!(removed.user_id, alice);
    assert_eq!(removed.room_id, room_id);
    assert_eq!(removed.peer_id, peer(&alice_client));
    server.stop().await;
}
db_test!(presence_is_rate_limited_and_expires);

/// Leaving the room removes your presence for the others; presence from a connection that
/// is in no room is ignored.
async fn presence_is_removed_on_leave_and_ignored_outside_rooms(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.presence_ttl = Duration::from_secs(300);
    })
    .await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let alice = alice_client.user_id();

    // Alice's cursor reaches Bob.
    alice_client.send(presence_at(12)).unwrap();
    let update = bob_client
        .recv_timeout::<proto::PresenceUpdated>(WAIT)
        .await
        .expect("a PresenceUpdated")
        .payload;
    assert_eq!(update.user_id, alice);
    assert_eq!(update.room_id, room_id);
    assert!(!update.removed);
    assert_eq!(update.cursor.unwrap().line, 12);

    // Alice leaves: her presence is removed for Bob (long before the ttl).
    alice_client.request(proto::LeaveRoom {}).await.unwrap();
    let removed = presence_removed(&bob_client, "Alice's presence to be removed").await;
    assert_eq!(removed.user_id, alice);
    assert_eq!(removed.room_id, room_id);

    // Presence from connections in no room (Alice now, Carol ever) is ignored, and the
    // connections keep working.
    let carol_client = server.client("carol").await;
    alice_client.send(presence_at(13)).unwrap();
    carol_client.send(presence_at(1)).unwrap();
    alice_client.request(proto::Ping {}).await.unwrap();
    carol_client.request(proto::Ping {}).await.unwrap();
    bob_client.request(proto::Ping {}).await.unwrap();
    assert!(alice_client.is_connected() && carol_client.is_connected());
    server.stop().await;
}
db_test!(presence_is_removed_on_leave_and_ignored_outside_rooms);
