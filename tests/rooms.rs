//! Rooms and calls, end to end: Alice creates a room and calls her contacts into it; Bob
//! answers on one of his two devices, Carol declines, Erin's call is cancelled; locations,
//! roles, leaving, refusals; call timeouts; reconnecting within (and after) the grace;
//! RoomUpdated in commit order. Presence is in `presence.rs`.

mod common;

use std::time::{Duration, Instant};

use collab::rpc::proto;
use common::{Backend, TestServer, rooms::*, within};

// ---------------------------------------------------------------------------------------
// The main story (SQLite and PostgreSQL)
// ---------------------------------------------------------------------------------------

async fn rooms_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Alice knows Bob, Carol and Erin; Bob knows Carol; Dave knows nobody.
    for (a, b) in [
        ("alice", "bob"),
        ("alice", "carol"),
        ("alice", "erin"),
        ("bob", "carol"),
    ] {
        befriend(&server, a, b).await;
    }
    let alice = server.user_id("alice").await.to_proto();
    let bob = server.user_id("bob").await.to_proto();
    let carol = server.user_id("carol").await.to_proto();
    let dave = server.user_id("dave").await.to_proto();
    let erin = server.user_id("erin").await.to_proto();

    let alice_client = server.client("alice").await;
    let bob_laptop = server.client("bob").await;
    let bob_desktop = server.client("bob").await;
    let carol_client = server.client("carol").await;
    let dave_client = server.client("dave").await;
    let erin_phone = server.client("erin").await;
    let erin_laptop = server.client("erin").await;

    // Alice creates a room: she is its only participant, its admin, index 0, on this
    // connection. Without LiveKit settings there are no audio/video credentials.
    let created = alice_client.request(proto::CreateRoom {}).await.unwrap();
    assert_eq!(created.live_kit_connection_info, None);
    let room = created.room.expect("CreateRoomResponse carries the room");
    let room_id = room.id;
    assert_ne!(room_id, 0);
    assert_eq!(room.participants.len(), 1, "{room:?}");
    let me = &room.participants[0];
    assert_eq!(me.user_id, alice);
    assert_eq!(me.role, proto::ParticipantRole::Admin as i32);
    assert_eq!(me.participant_index, 0);
    assert_eq!(me.peer_id, peer(&alice_client));
    assert!(!me.connection_lost);
    assert!(room.pending_participants.is_empty(), "{room:?}");

    // Refusals: Dave is not Alice's contact; Carol is not in Alice's room; Dave was not
    // called, so he cannot join.
    let stranger = alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: dave,
        })
        .await
        .unwrap_err();
    assert_eq!(stranger.code, proto::ErrorCode::Forbidden, "{stranger}");
    let outsider = carol_client
        .request(proto::Call {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap_err();
    assert_eq!(outsider.code, proto::ErrorCode::Forbidden, "{outsider}");
    let uninvited = dave_client
        .request(proto::JoinRoom { room_id })
        .await
        .unwrap_err();
    assert_eq!(uninvited.code, proto::ErrorCode::Forbidden, "{uninvited}");

    // Alice calls Bob: both of his devices ring, and the room shows him pending.
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap();
    for device in [&bob_laptop, &bob_desktop] {
        let call = incoming_call(device).await;
        assert_eq!(
            call,
            proto::IncomingCall {
                room_id,
                calling_user_id: alice,
                participant_user_ids: vec![alice],
            }
        );
    }
    let room = room_until(&alice_client, "Bob pending", |room| is_pending(room, bob)).await;
    let pending = room
        .pending_participants
        .iter()
        .find(|p| p.user_id == bob)
        .unwrap();
    assert_eq!(pending.calling_user_id, alice);

    // Calling Bob again while he rings is a conflict.
    let twice = alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code, proto::ErrorCode::Conflict, "{twice}");

    // Bob answers on his desktop: the laptop stops ringing; the room has both of them,
    // Bob on his desktop's connection.
    let joined = bob_desktop
        .request(proto::JoinRoom { room_id })
        .await
        .unwrap();
    assert_eq!(joined.live_kit_connection_info, None);
    let room = joined.room.expect("JoinRoomResponse carries the room");
    assert_eq!(room.id, room_id);
    assert_eq!(
        sorted(room.participants.iter().map(|p| p.user_id).collect()),
        sorted(vec![alice, bob])
    );
    assert!(!is_pending(&room, bob), "{room:?}");
    let bob_in_room = participant(&room, bob).unwrap();
    assert_eq!(bob_in_room.peer_id, peer(&bob_desktop));
    assert_ne!(
        bob_in_room.participant_index,
        participant(&room, alice).unwrap().participant_index,
        "participant indexes are distinct"
    );
    assert_eq!(
        call_canceled(&bob_laptop).await,
        proto::CallCanceled { room_id }
    );
    let room = room_until(&alice_client, "Bob to join", |room| {
        participant(room, bob).is_some()
    })
    .await;
    assert_eq!(participant(&room, bob).unwrap().peer_id, peer(&bob_desktop));
    assert!(!is_pending(&room, bob), "{room:?}");

    // Bob is in a room now: calling him there (or from another room) is a conflict.
    let again = alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code, proto::ErrorCode::Conflict, "{again}");
    let carol_room = carol_client
        .request(proto::CreateRoom {})
        .await
        .unwrap()
        .room
        .expect("CreateRoomResponse carries the room")
        .id;
    assert_ne!(carol_room, room_id);
    let busy = carol_client
        .request(proto::Call {
            room_id: carol_room,
            callee_user_id: bob,
        })
        .await
        .unwrap_err();
    assert_eq!(busy.code, proto::ErrorCode::Conflict, "{busy}");
    carol_client.request(proto::LeaveRoom {}).await.unwrap();

    // Alice calls Carol, who declines: Alice is told, and Carol is no longer pending.
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap();
    let call = incoming_call(&carol_client).await;
    assert_eq!(call.room_id, room_id);
    assert_eq!(call.calling_user_id, alice);
    assert_eq!(sorted(call.participant_user_ids), sorted(vec![alice, bob]));
    for client in [&alice_client, &bob_desktop] {
        room_until(client, "Carol pending", |room| is_pending(room, carol)).await;
    }
    carol_client
        .request(proto::DeclineCall { room_id })
        .await
        .unwrap();
    let ended = call_ended(&alice_client).await;
    assert_eq!(ended.room_id, room_id);
    assert_eq!(ended.callee_user_id, carol);
    assert_eq!(ended.reason, proto::call_ended::Reason::Declined as i32);
    for client in [&alice_client, &bob_desktop] {
        let room = room_until(client, "Carol no longer pending", |room| {
            !is_pending(room, carol)
        })
        .await;
        assert!(participant(&room, carol).is_none(), "{room:?}");
    }

    // Alice calls Erin (two devices), then thinks better of it: both devices stop ringing.
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: erin,
        })
        .await
        .unwrap();
    for device in [&erin_phone, &erin_laptop] {
        assert_eq!(incoming_call(device).await.room_id, room_id);
    }
    for client in [&alice_client, &bob_desktop] {
        room_until(client, "Erin pending", |room| is_pending(room, erin)).await;
    }
    alice_client
        .request(proto::CancelCall {
            room_id,
            callee_user_id: erin,
        })
        .await
        .unwrap();
    for device in [&erin_phone, &erin_laptop] {
        assert_eq!(call_canceled(device).await, proto::CallCanceled { room_id });
    }
    for client in [&alice_client, &bob_desktop] {
        room_until(client, "Erin no longer pending", |room| {
            !is_pending(room, erin)
        })
        .await;
    }

    // Bob shares a project and opens it: Alice sees where he is.
    let project = share_empty_project(&bob_desktop, room_id).await;
    open_project(&bob_desktop, room_id, project).await;
    room_until(&alice_client, "Bob in his project", |room| {
        participant(room, bob).and_then(|p| p.location) == Some(shared_project(project))
    })
    .await;

    // Only admins change roles: Bob may not; Alice makes Bob a guest.
    let not_admin = bob_desktop
        .request(proto::SetRoomParticipantRole {
            room_id,
            user_id: alice,
            role: proto::ParticipantRole::Guest as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(not_admin.code, proto::ErrorCode::Forbidden, "{not_admin}");
    alice_client
        .request(proto::SetRoomParticipantRole {
            room_id,
            user_id: bob,
            role: proto::ParticipantRole::Guest as i32,
        })
        .await
        .unwrap();
    for client in [&alice_client, &bob_desktop] {
        let room = room_until(client, "Bob a guest", |room| {
            participant(room, bob).map(|p| p.role) == Some(proto::ParticipantRole::Guest as i32)
        })
        .await;
        assert_eq!(
            participant(&room, alice).unwrap().role,
            proto::ParticipantRole::Admin as i32
        );
    }

    // A guest may not call anyone.
    let guest_call = bob_desktop
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap_err();
    assert_eq!(guest_call.code, proto::ErrorCode::Forbidden, "{guest_call}");

    // Bob leaves: Alice's room no longer has him.
    bob_desktop.request(proto::LeaveRoom {}).await.unwrap();
    let room = room_until(&alice_client, "Bob to leave", |room| {
        participant(room, bob).is_none()
    })
    .await;
    assert_eq!(
        room.participants
            .iter()
            .map(|p| p.user_id)
            .collect::<Vec<_>>(),
        vec![alice]
    );

    server.stop().await;
}
db_test!(rooms_story);

// ---------------------------------------------------------------------------------------
// Call timeouts
// ---------------------------------------------------------------------------------------

/// An unanswered call rings for `call_timeout`: then the caller hears TIMED_OUT and every
/// device of the callee stops ringing.
async fn unanswered_call_times_out(backend: Backend) {
    let call_timeout = Duration::from_millis(500);
    let server = TestServer::start_with(backend, |config| {
        config.call_timeout = call_timeout;
    })
    .await;
    befriend(&server, "alice", "bob").await;
    let alice_client = server.client("alice").await;
    let bob_laptop = server.client("bob").await;
    let bob_desktop = server.client("bob").await;
    let bob = bob_laptop.user_id();

    let room_id = alice_client
        .request(proto::CreateRoom {})
        .await
        .unwrap()
        .room
        .unwrap()
        .id;
    let started = Instant::now();
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap();
    for device in [&bob_laptop, &bob_desktop] {
        assert_eq!(incoming_call(device).await.room_id, room_id);
    }

    // Nobody answers.
    let ended = call_ended(&alice_client).await;
    assert!(
        started.elapsed() >= call_timeout - Duration::from_millis(50),
        "the call ended after {:?}, before its timeout",
        started.elapsed()
    );
    assert_eq!(ended.room_id, room_id);
    assert_eq!(ended.callee_user_id, bob);
    assert_eq!(ended.reason, proto::call_ended::Reason::TimedOut as i32);
    for device in [&bob_laptop, &bob_desktop] {
        assert_eq!(call_canceled(device).await, proto::CallCanceled { room_id });
    }
    room_until(&alice_client, "Bob no longer pending", |room| {
        !is_pending(room, bob) && participant(room, bob).is_none()
    })
    .await;

    // Bob can be called again.
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap();
    server.stop().await;
}
db_test!(unanswered_call_times_out);

// ---------------------------------------------------------------------------------------
// Reconnecting
// ---------------------------------------------------------------------------------------

/// Within the grace, a participant whose connection was lost is shown as such, and takes
/// their place back from a new connection with RejoinRoom.
async fn rejoin_within_the_grace(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.reconnect_grace = Duration::from_secs(60);
    })
    .await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let bob = bob_client.user_id();

    // Bob's connection goes away: Alice sees him as lost, still in the room.
    bob_client.close().await;
    let room = room_until(&alice_client, "Bob's connection lost", |room| {
        participant(room, bob).is_some_and(|p| p.connection_lost)
    })
    .await;
    assert!(
        !participant(&room, alice_client.user_id())
            .unwrap()
            .connection_lost
    );

    // Bob comes back on a new connection and rejoins.
    let bob_again = server.client("bob").await;
    assert_ne!(peer(&bob_again), peer(&bob_client));
    let rejoined = bob_again
        .request(proto::RejoinRoom { room_id })
        .await
        .unwrap();
    let room = rejoined.room.expect("JoinRoomResponse carries the room");
    assert_eq!(room.id, room_id);
    let me = participant(&room, bob).expect("Bob is still a participant");
    assert_eq!(me.peer_id, peer(&bob_again));
    assert!(!me.connection_lost);

    // Alice sees Bob under his new peer id, connected.
    room_until(&alice_client, "Bob back on his new connection", |room| {
        participant(room, bob).is_some_and(|p| p.peer_id == peer(&bob_again) && !p.connection_lost)
    })
    .await;

    // He is really back: his location updates reach Alice.
    let project = share_empty_project(&bob_again, room_id).await;
    open_project(&bob_again, room_id, project).await;
    room_until(&alice_client, "Bob in his new project", |room| {
        participant(room, bob).and_then(|p| p.location) == Some(shared_project(project))
    })
    .await;
    server.stop().await;
}
db_test!(rejoin_within_the_grace);

/// After the grace, a lost participant leaves the room, and the calls they made that were
/// still ringing are cancelled.
async fn lost_participant_leaves_after_the_grace(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.reconnect_grace = Duration::from_millis(300);
    })
    .await;
    befriend(&server, "alice", "carol").await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let alice = alice_client.user_id();
    let carol_client = server.client("carol").await;
    let carol = carol_client.user_id();

    // Alice calls Carol, then loses her connection while Carol's phone rings.
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap();
    assert_eq!(incoming_call(&carol_client).await.room_id, room_id);
    room_until(&bob_client, "Carol pending", |room| is_pending(room, carol)).await;
    alice_client.close().await;

    // The grace passes: Alice is gone from Bob's room, and Carol's call is cancelled.
    let room = room_until(&bob_client, "Alice to be removed", |room| {
        participant(room, alice).is_none()
    })
    .await;
    assert!(participant(&room, bob_client.user_id()).is_some());
    assert_eq!(
        call_canceled(&carol_client).await,
        proto::CallCanceled { room_id }
    );
    // One transaction removed both: the same update shows Carol's call gone.
    assert!(!is_pending(&room, carol), "{room:?}");
    server.stop().await;
}
db_test!(lost_participant_leaves_after_the_grace);

// ---------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------

/// RoomUpdated messages arrive in commit order: Alice, Bob and Carol change their
/// locations concurrently, ten times each, and all three see exactly the same sequence
/// of room states — which they could not if broadcasts raced their commits.
async fn room_updates_arrive_in_commit_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    befriend(&server, "alice", "carol").await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let carol_client = server.client("carol").await;
    let carol = carol_client.user_id();
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap();
    incoming_call(&carol_client).await;
    carol_client
        .request(proto::JoinRoom { room_id })
        .await
        .unwrap();
    let clients = [&alice_client, &bob_client, &carol_client];
    for client in clients {
        room_until(client, "everyone in the room", |room| {
            room.participants.len() == 3
        })
        .await;
    }

    let mut projects = Vec::new();
    for _ in 0..10 {
        projects.push(share_empty_project(&alice_client, room_id).await);
    }
    let projects = &projects;
    let alice = alice_client.user_id();
    for client in clients {
        room_until(client, "ten projects shared", |room| {
            participant(room, alice).map(|p| p.projects.len()) == Some(10)
        })
        .await;
    }
    let moves = clients.map(|client| async move {
        for &project_id in projects {
            let location = Some(shared_project(project_id));
            client
                .request(proto::UpdateParticipantLocation { room_id, location })
                .await
                .unwrap();
        }
    });
    futures::future::join_all(moves).await;

    let at_ten = |room: &proto::Room| {
        room.participants
            .iter()
            .all(|p| p.location.is_some_and(|l| l.project_id == projects[9]))
    };
    let mut sequences = Vec::new();
    for client in clients {
        let sequence = within("everyone at project 10", async {
            let mut sequence = Vec::new();
            loop {
                let room = next_room(client).await;
                let done = at_ten(&room);
                sequence.push(room);
                if done {
                    return sequence;
                }
            }
        })
        .await;
        assert_eq!(sequence.len(), 30, "one RoomUpdated per change");
        sequences.push(sequence);
    }
    assert_eq!(
        sequences[0], sequences[1],
        "alice and bob saw different orders"
    );
    assert_eq!(
        sequences[1], sequences[2],
        "bob and carol saw different orders"
    );
    server.stop().await;
}
db_test!(room_updates_arrive_in_commit_order);

// ---------------------------------------------------------------------------------------
// Three participants; bad input
// ---------------------------------------------------------------------------------------

/// Alice, Bob and Carol share a room: each has a place (distinct participant indices), a
/// location and a role. Alice makes Carol an admin; Carol makes Bob a guest; Bob, now a
/// guest, may neither call nor change roles. Everyone sees the same final room.
async fn three_participants_with_locations_and_roles(backend: Backend) {
    let server = TestServer::start(backend).await;
    befriend(&server, "alice", "carol").await;
    befriend(&server, "bob", "dave").await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let carol_client = server.client("carol").await;
    let (alice, bob, carol) = (
        alice_client.user_id(),
        bob_client.user_id(),
        carol_client.user_id(),
    );
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap();
    incoming_call(&carol_client).await;
    let joined = carol_client
        .request(proto::JoinRoom { room_id })
        .await
        .unwrap();
    let room = joined.room.unwrap();
    let mut indices: Vec<u32> = room
        .participants
        .iter()
        .map(|p| p.participant_index)
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2], "each participant has its own index");

    let external = proto::ParticipantLocation {
        kind: proto::participant_location::Kind::External as i32,
        project_id: 0,
    };
    bob_client
        .request(proto::UpdateParticipantLocation {
            room_id,
            location: Some(external),
        })
        .await
        .unwrap();
    let project = share_empty_project(&carol_client, room_id).await;
    open_project(&carol_client, room_id, project).await;
    let role = |user_id, role: proto::ParticipantRole| proto::SetRoomParticipantRole {
        room_id,
        user_id,
        role: role as i32,
    };
    alice_client
        .request(role(carol, proto::ParticipantRole::Admin))
        .await
        .unwrap();
    carol_client
        .request(role(bob, proto::ParticipantRole::Guest))
        .await
        .expect("carol is an admin now");

    // Bob, a guest, is refused with reasons.
    let call = bob_client.request(proto::Call {
        room_id,
        callee_user_id: server.user_id("dave").await.to_proto(),
    });
    let refused = call.await.unwrap_err();
    assert_eq!(refused.code, proto::ErrorCode::Forbidden, "{refused}");
    assert!(refused.message.contains("guest"), "{refused}");
    let refused = bob_client
        .request(role(bob, proto::ParticipantRole::Admin))
        .await
        .unwrap_err();
    assert_eq!(refused.code, proto::ErrorCode::Forbidden, "{refused}");

    // All three converge on the same room.
    let expected = |room: &proto::Room| {
        participant(room, bob).is_some_and(|p| {
            p.role == proto::ParticipantRole::Guest as i32
                && p.location.is_some_and(|l| l.kind == external.kind)
        }) && participant(room, carol).is_some_and(|p| {
            p.role == proto::ParticipantRole::Admin as i32
                && p.location == Some(shared_project(project))
        }) && participant(room, alice)
            .is_some_and(|p| p.role == proto::ParticipantRole::Admin as i32)
    };
    let seen_by_alice = room_until(&alice_client, "the final room (alice)", expected).await;
    let seen_by_bob = room_until(&bob_client, "the final room (bob)", expected).await;
    let seen_by_carol = room_until(&carol_client, "the final room (carol)", expected).await;
    assert_eq!(seen_by_alice, seen_by_bob);
    assert_eq!(seen_by_bob, seen_by_carol);
    server.stop().await;
}
db_test!(three_participants_with_locations_and_roles);

/// Calling yourself, answering a call that was cancelled, bad ids and bad enum values:
/// clear errors, and the room is unchanged.
async fn bad_room_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    befriend(&server, "alice", "bob").await;
    let alice_client = server.client("alice").await;
    let bob_client = server.client("bob").await;
    let (alice, bob) = (alice_client.user_id(), bob_client.user_id());
    let room = alice_client
        .request(proto::CreateRoom {})
        .await
        .unwrap()
        .room
        .unwrap();
    let room_id = room.id;

    let myself = alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: alice,
        })
        .await
        .unwrap_err();
    assert_eq!(myself.code, proto::ErrorCode::InvalidRequest, "{myself}");
    let zero = alice_client
        .request(proto::Call {
            room_id: 0,
            callee_user_id: bob,
        })
        .await
        .unwrap_err();
    assert_eq!(zero.code, proto::ErrorCode::InvalidRequest, "{zero}");
    let second_room = alice_client
        .request(proto::CreateRoom {})
        .await
        .unwrap_err();
    assert_eq!(
        second_room.code,
        proto::ErrorCode::Conflict,
        "{second_room}"
    );

    // Bob is called, the call is cancelled, and Bob answers anyway.
    alice_client
        .request(proto::Call {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap();
    incoming_call(&bob_client).await;
    alice_client
        .request(proto::CancelCall {
            room_id,
            callee_user_id: bob,
        })
        .await
        .unwrap();
    call_canceled(&bob_client).await;
    let late = bob_client
        .request(proto::JoinRoom { room_id })
        .await
        .unwrap_err();
    assert_eq!(late.code, proto::ErrorCode::Forbidden, "{late}");
    let decline = bob_client
        .request(proto::DeclineCall { room_id })
        .await
        .unwrap_err();
    assert_eq!(decline.code, proto::ErrorCode::NotFound, "{decline}");

    let bad_role = alice_client
        .request(proto::SetRoomParticipantRole {
            room_id,
            user_id: alice,
            role: 42,
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_role.code,
        proto::ErrorCode::InvalidRequest,
        "{bad_role}"
    );
    let no_project = proto::ParticipantLocation {
        kind: proto::participant_location::Kind::SharedProject as i32,
        project_id: 0,
    };
    let bad_location = alice_client
        .request(proto::UpdateParticipantLocation {
            room_id,
            location: Some(no_project),
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_location.code,
        proto::ErrorCode::InvalidRequest,
        "{bad_location}"
    );
    let not_in_room = bob_client.request(proto::LeaveRoom {}).await.unwrap_err();
    assert_eq!(
        not_in_room.code,
        proto::ErrorCode::NotFound,
        "{not_in_room}"
    );

    // Through all of it the room stayed Alice's alone.
    let now = server
        .state
        .db
        .get_room(collab::db::RoomId::from_proto(room_id).unwrap())
        .await
        .unwrap();
    assert_eq!(now.participants.len(), 1);
    assert_eq!(now.participants[0].user_id.to_proto(), alice);
    server.stop().await;
}
db_test!(bad_room_requests);

/// Devices and admins: only the connection that joined acts in the room; a device that
/// connects while a call rings rings too; a callee whose last device drops ends the call
/// at once; the last admin cannot step down, and when they leave someone takes over.
async fn devices_and_admins(backend: Backend) {
    let server = TestServer::start(backend).await;
    befriend(&server, "alice", "carol").await;
    let (alice_laptop, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let (alice, bob) = (alice_laptop.user_id(), bob_client.user_id());
    let carol = server.user_id("carol").await.to_proto();

    // Alice's phone is hers, but it did not join: it may not act in the room.
    let alice_phone = server.client("alice").await;
    let location = Some(shared_project(9));
    let refused = alice_phone
        .request(proto::UpdateParticipantLocation { room_id, location })
        .await
        .unwrap_err();
    assert_eq!(refused.code, proto::ErrorCode::Forbidden, "{refused}");
    let refused = alice_phone
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, proto::ErrorCode::Forbidden, "{refused}");

    // Carol is called with no device online: refused as unavailable.
    let offline = alice_laptop
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap_err();
    assert_eq!(offline.code, proto::ErrorCode::Unavailable, "{offline}");
    // Carol connects her laptop and is called; her phone, connecting later, rings too.
    let carol_laptop = server.client("carol").await;
    alice_laptop
        .request(proto::Call {
            room_id,
            callee_user_id: carol,
        })
        .await
        .unwrap();
    incoming_call(&carol_laptop).await;
    let carol_phone = server.client("carol").await;
    let ringing = incoming_call(&carol_phone).await;
    assert_eq!((ringing.room_id, ringing.calling_user_id), (room_id, alice));
    // Both of Carol's devices drop while it rings: Alice hears at once, not at the timeout.
    carol_laptop.close().await;
    carol_phone.close().await;
    let ended = call_ended(&alice_laptop).await;
    assert_eq!(ended.reason, proto::call_ended::Reason::Unavailable as i32);
    assert_eq!(ended.callee_user_id, carol);

    // Alice, the only admin, may not step down.
    let role = |user_id, role: proto::ParticipantRole| proto::SetRoomParticipantRole {
        room_id,
        user_id,
        role: role as i32,
    };
    let refused = alice_laptop
        .request(role(alice, proto::ParticipantRole::Member))
        .await
        .unwrap_err();
    assert_eq!(refused.code, proto::ErrorCode::Forbidden, "{refused}");
    // When she leaves, Bob takes over as admin.
    alice_laptop.request(proto::LeaveRoom {}).await.unwrap();
    let room = room_until(&bob_client, "alice gone", |room| {
        participant(room, alice).is_none()
    })
    .await;
    assert_eq!(
        participant(&room, bob).map(|p| p.role),
        Some(proto::ParticipantRole::Admin as i32)
    );
    server.stop().await;
}
db_test!(devices_and_admins);

/// A restart: the server stops while Alice and Bob share a room. The next server sees
/// their places as lost; Alice reconnects and rejoins within the grace; Bob does not and
/// is removed once the grace has passed.
async fn rooms_survive_a_restart(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.reconnect_grace = std::time::Duration::from_millis(1500);
        config.heartbeat_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let (alice, bob) = (alice_client.user_id(), bob_client.user_id());
    let server = server.restart().await;
    within("the old connections to close", async {
        alice_client.closed().await;
        bob_client.closed().await;
    })
    .await;

    let alice_again = server.client("alice").await;
    let rejoined = alice_again
        .request(proto::RejoinRoom { room_id })
        .await
        .expect("alice rejoins");
    let room = rejoined.room.unwrap();
    assert_eq!(
        participant(&room, alice).map(|p| p.peer_id),
        Some(peer(&alice_again))
    );
    let room = room_until(&alice_again, "bob removed after the grace", |room| {
        participant(room, bob).is_none()
    })
    .await;
    assert_eq!(room.participants.len(), 1);
    server.stop().await;
}
db_test!(rooms_survive_a_restart);
