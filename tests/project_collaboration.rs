//! Shared projects, the people side: guests' edits reach everyone in order; a viewer may
//! move its selections but not edit; the host changes roles; collaborators leave (the
//! project, or the room); the host unshares, leaves, or loses its connection and either
//! comes back within the reconnect grace (and reshares) or does not.

mod common;

use std::time::{Duration, Instant};

use collab::rpc::proto::{
    self, ErrorCode, ProjectRole, buffer_operation::Kind, project_unshared::Reason,
};
use common::{Backend, TestServer, projects::*, rooms::*};

/// How soon a request to a host that is gone must fail (the server's request timeout is
/// much longer).
const PROMPTLY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Buffers and roles
// ---------------------------------------------------------------------------------------

/// Bob (a guest) and Alice (the host) each send 100 edits to buffer 1 at once, pipelined:
/// each gets the other's in the order they were sent, Carol gets both senders' in order,
/// and nobody gets their own back.
async fn edits_reach_everyone_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    make_room_guest(&alice_client, room_id, carol_client.user_id()).await;
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    join_project(&bob_client, project_id).await;
    join_project(&carol_client, project_id).await;

    let bob_edits = (0..100).map(|n| bob_client.request(edit(project_id, 1, n)));
    let alice_edits = (0..100).map(|n| alice_client.request(edit(project_id, 1, 1000 + n)));
    let (bob_acks, alice_acks) = tokio::join!(
        futures::future::join_all(bob_edits),
        futures::future::join_all(alice_edits)
    );
    for ack in bob_acks.into_iter().chain(alice_acks) {
        ack.expect("the edit is acknowledged");
    }

    let alice_got = next_messages::<proto::UpdateBuffer>(&alice_client, 100).await;
    assert_eq!(sent_by(&alice_got, &bob_client), edits(project_id, 0..100));
    let bob_got = next_messages::<proto::UpdateBuffer>(&bob_client, 100).await;
    assert_eq!(
        sent_by(&bob_got, &alice_client),
        edits(project_id, 1000..1100)
    );
    let carol_got = next_messages::<proto::UpdateBuffer>(&carol_client, 200).await;
    assert_eq!(sent_by(&carol_got, &bob_client), edits(project_id, 0..100));
    assert_eq!(
        sent_by(&carol_got, &alice_client),
        edits(project_id, 1000..1100)
    );

    // An echo of one's own edits would have been queued before their acks: the next
    // update Alice and Bob get is Carol's selection, sent after all of them.
    carol_client
        .request(select(project_id, 1, 7))
        .await
        .expect("a viewer's selections pass");
    for client in [&alice_client, &bob_client] {
        let next = next_message::<proto::UpdateBuffer>(client).await;
        assert_eq!(next.original_sender_id, Some(carol_client.peer_id()));
        assert_eq!(next.payload, select(project_id, 1, 7));
    }
    server.stop().await;
}
db_test!(edits_reach_everyone_in_order);

/// Carol, a viewer, may select but not edit; only the host sets roles (never HOST); a
/// promoted viewer edits, a demoted editor cannot; Bob leaves; Alice unshares.
async fn viewers_roles_leaving_and_unsharing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    let (alice, bob, carol) = (
        alice_client.user_id(),
        bob_client.user_id(),
        carol_client.user_id(),
    );
    make_room_guest(&alice_client, room_id, carol).await;
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    room_until(&bob_client, "the project listed", |room| {
        lists(room, alice, project_id)
    })
    .await;
    let joined = join_project(&bob_client, project_id).await;
    assert_eq!(joined.response.role, ProjectRole::Editor as i32);
    let joined = join_project(&carol_client, project_id).await;
    assert_eq!(joined.response.role, ProjectRole::Viewer as i32);

    // Carol may not edit, alone or alongside a selection; her selections alone pass, and
    // they are the first of her updates anyone sees.
    refused(
        carol_client.request(edit(project_id, 1, 1)).await,
        ErrorCode::Forbidden,
    );
    let mixed = proto::UpdateBuffer {
        project_id,
        buffer_id: 1,
        operations: vec![op(Kind::Selections, 2), op(Kind::Edit, 3)],
    };
    refused(carol_client.request(mixed).await, ErrorCode::Forbidden);
    carol_client
        .request(select(project_id, 1, 4))
        .await
        .expect("a viewer's selections pass");
    for client in [&alice_client, &bob_client] {
        let relayed = next_message::<proto::UpdateBuffer>(client).await;
        assert_eq!(relayed.original_sender_id, Some(carol_client.peer_id()));
        assert_eq!(relayed.payload, select(project_id, 1, 4));
    }

    // Roles: only the host sets them, and HOST is never assigned.
    let set_role = |user_id, role: ProjectRole| proto::SetProjectCollaboratorRole {
        project_id,
        user_id,
        role: role as i32,
    };
    refused(
        bob_client
            .request(set_role(carol, ProjectRole::Editor))
            .await,
        ErrorCode::Forbidden,
    );
    refused(
        alice_client.request(set_role(bob, ProjectRole::Host)).await,
        ErrorCode::InvalidRequest,
    );
    let everyone = [&alice_client, &bob_client, &carol_client];

    // Carol becomes an editor (the refusals above changed nobody: this is the first
    // change anyone hears of), and edits.
    alice_client
        .request(set_role(carol, ProjectRole::Editor))
        .await
        .expect("the host promotes Carol");
    for client in everyone {
        let update = next_message::<proto::UpdateProjectCollaborator>(client).await;
        assert_eq!(update.payload.project_id, project_id);
        let expected = collaborator(&carol_client, 2, ProjectRole::Editor);
        assert_eq!(update.payload.collaborator, Some(expected));
    }
    carol_client
        .request(edit(project_id, 1, 5))
        .await
        .expect("a promoted viewer edits");
    for client in [&alice_client, &bob_client] {
        let relayed = next_message::<proto::UpdateBuffer>(client).await;
        assert_eq!(relayed.payload, edit(project_id, 1, 5));
    }

    // Bob becomes a viewer: his edits are refused (and not relayed), his selections pass.
    alice_client
        .request(set_role(bob, ProjectRole::Viewer))
        .await
        .expect("the host demotes Bob");
    for client in everyone {
        let update = next_message::<proto::UpdateProjectCollaborator>(client).await;
        let expected = collaborator(&bob_client, 1, ProjectRole::Viewer);
        assert_eq!(update.payload.collaborator, Some(expected));
    }
    refused(
        bob_client.request(edit(project_id, 1, 6)).await,
        ErrorCode::Forbidden,
    );
    bob_client
        .request(select(project_id, 1, 7))
        .await
        .expect("a viewer's selections pass");
    for client in [&alice_client, &carol_client] {
        let relayed = next_message::<proto::UpdateBuffer>(client).await;
        assert_eq!(relayed.original_sender_id, Some(bob_client.peer_id()));
        assert_eq!(relayed.payload, select(project_id, 1, 7));
    }

    // Bob leaves the project: the others are told; he may no longer send to it.
    bob_client
        .request(proto::LeaveProject { project_id })
        .await
        .expect("Bob leaves");
    let removed = proto::RemoveProjectCollaborator {
        project_id,
        peer_id: peer(&bob_client),
    };
    for client in [&alice_client, &carol_client] {
        let message = next_message::<proto::RemoveProjectCollaborator>(client).await;
        assert_eq!(message.payload, removed);
    }
    refused(
        bob_client.request(select(project_id, 1, 8)).await,
        ErrorCode::Forbidden,
    );

    // He joins again and gets the smallest free replica id, his old one. (Alice has long
    // had the news of the first joins; set them aside.)
    let first_joins = drain::<proto::AddProjectCollaborator>(&alice_client);
    assert_eq!(
        first_joins.len(),
        2,
        "Bob's and Carol's first joins: {first_joins:?}"
    );
    let rejoined = join_project(&bob_client, project_id).await;
    assert_eq!(rejoined.response.replica_id, 1);
    for client in [&alice_client, &carol_client] {
        let added = next_message::<proto::AddProjectCollaborator>(client).await;
        let added = added.payload.collaborator.expect("a collaborator");
        assert_eq!((added.peer_id, added.replica_id), (peer(&bob_client), 1));
    }

    // Alice unshares: the guests are told, the room no longer lists it, nobody can join.
    alice_client
        .request(proto::UnshareProject { project_id })
        .await
        .expect("the host unshares");
    let expected = proto::ProjectUnshared {
        project_id,
        reason: Reason::Unshared as i32,
    };
    for client in [&bob_client, &carol_client] {
        let unshared = next_message::<proto::ProjectUnshared>(client).await;
        assert_eq!(unshared.payload, expected);
    }
    room_until(&bob_client, "the project unlisted", |room| {
        !lists(room, alice, project_id)
    })
    .await;
    refused(
        bob_client.request(proto::JoinProject { project_id }).await,
        ErrorCode::NotFound,
    );
    let after = carol_client.request(edit(project_id, 1, 9)).await;
    assert!(after.is_err(), "an edit to an unshared project: {after:?}");
    server.stop().await;
}
db_test!(viewers_roles_leaving_and_unsharing);

// ---------------------------------------------------------------------------------------
// Leaving the room
// ---------------------------------------------------------------------------------------

/// A guest who leaves the room leaves the project; a host who leaves the room ends it.
async fn leaving_the_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    let alice = alice_client.user_id();
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    join_project(&bob_client, project_id).await;
    join_project(&carol_client, project_id).await;

    carol_client
        .request(proto::LeaveRoom {})
        .await
        .expect("Carol leaves the room");
    let removed = proto::RemoveProjectCollaborator {
        project_id,
        peer_id: peer(&carol_client),
    };
    for client in [&alice_client, &bob_client] {
        let message = next_message::<proto::RemoveProjectCollaborator>(client).await;
        assert_eq!(message.payload, removed);
    }
    refused(
        carol_client.request(edit(project_id, 1, 0)).await,
        ErrorCode::Forbidden,
    );

    alice_client
        .request(proto::LeaveRoom {})
        .await
        .expect("Alice leaves the room");
    let unshared = next_message::<proto::ProjectUnshared>(&bob_client).await;
    let expected = proto::ProjectUnshared {
        project_id,
        reason: Reason::HostLeft as i32,
    };
    assert_eq!(unshared.payload, expected);
    room_until(&bob_client, "Alice gone", |room| {
        participant(room, alice).is_none()
    })
    .await;
    refused(
        bob_client.request(proto::JoinProject { project_id }).await,
        ErrorCode::NotFound,
    );
    server.stop().await;
}
db_test!(leaving_the_room);

// ---------------------------------------------------------------------------------------
// Host loss
// ---------------------------------------------------------------------------------------

/// A host whose connection drops keeps the project for the grace; when the grace passes
/// without a reshare, the guests get ProjectUnshared { HOST_LOST }.
async fn host_lost_past_the_grace_unshares(backend: Backend) {
    let grace = Duration::from_millis(500);
    let server = TestServer::start_with(backend, |config| config.reconnect_grace = grace).await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let alice = alice_client.user_id();
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    join_project(&bob_client, project_id).await;

    let lost_at = Instant::now();
    alice_client.close().await;
    let room = room_until(&bob_client, "Alice's connection lost", |room| {
        participant(room, alice).is_some_and(|p| p.connection_lost)
    })
    .await;
    assert!(
        lists(&room, alice, project_id),
        "kept during the grace: {room:?}"
    );

    let unshared = next_message::<proto::ProjectUnshared>(&bob_client).await;
    assert!(
        lost_at.elapsed() >= grace - Duration::from_millis(50),
        "unshared after {:?}, before the grace ended",
        lost_at.elapsed()
    );
    let expected = proto::ProjectUnshared {
        project_id,
        reason: Reason::HostLost as i32,
    };
    assert_eq!(unshared.payload, expected);
    room_until(&bob_client, "Alice removed", |room| {
        participant(room, alice).is_none()
    })
    .await;
    refused(
        bob_client.request(proto::JoinProject { project_id }).await,
        ErrorCode::NotFound,
    );
    server.stop().await;
}
db_test!(host_lost_past_the_grace_unshares);

/// Within the grace the host comes back on a new connection, rejoins the room and
/// reshares: same project, same entries; the guests learn the host's new peer id, and
/// requests and edits reach the new connection.
async fn host_reshares_within_the_grace(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.reconnect_grace = Duration::from_secs(60);
    })
    .await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    let alice = alice_client.user_id();
    let app = worktree(1, "app");
    let project_id = share_project(&alice_client, room_id, vec![app.clone()]).await;
    let uploaded = numbered_entries(300);
    upload(&alice_client, project_id, &app, 1, &uploaded, MAX_CHUNK).await;
    join_project(&bob_client, project_id).await;

    // Alice's connection drops: she is lost, her project kept, requests for her fail fast.
    alice_client.close().await;
    let room = room_until(&bob_client, "Alice's connection lost", |room| {
        participant(room, alice).is_some_and(|p| p.connection_lost)
    })
    .await;
    assert!(
        lists(&room, alice, project_id),
        "kept during the grace: {room:?}"
    );
    let request = bob_client.request(open_path(project_id, "src/main.rs"));
    let error = tokio::time::timeout(PROMPTLY, request)
        .await
        .expect("a request for a lost host fails promptly")
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable, "{error}");

    // Alice comes back; only she may reshare.
    let alice_again = server.client("alice").await;
    alice_again
        .request(proto::RejoinRoom { room_id })
        .await
        .expect("Alice rejoins the room");
    let reshare = proto::ReshareProject { project_id };
    refused(bob_client.request(reshare).await, ErrorCode::Forbidden);
    alice_again.request(reshare).await.expect("Alice reshares");
    let update = next_message::<proto::UpdateProjectCollaborator>(&bob_client).await;
    let expected = proto::UpdateProjectCollaborator {
        project_id,
        old_peer_id: peer(&alice_client),
        collaborator: Some(collaborator(&alice_again, 0, ProjectRole::Host)),
    };
    assert_eq!(update.payload, expected);
    room_until(&bob_client, "Alice back, still sharing", |room| {
        participant(room, alice).is_some_and(|p| p.peer_id == peer(&alice_again))
            && lists(room, alice, project_id)
    })
    .await;

    // Requests and edits reach the new connection.
    alice_again.answer_requests::<proto::OpenBufferByPath>();
    let buffer = proto::OpenBufferResponse {
        buffer_id: 1,
        state: b"fn main() {}\n".to_vec().into(),
    };
    let request = open_path(project_id, "src/main.rs");
    let opened = forwarded(&alice_again, &bob_client, request, Ok(buffer.clone())).await;
    assert_eq!(opened.expect("the new host answers"), buffer);
    bob_client
        .request(edit(project_id, 1, 1))
        .await
        .expect("Bob edits");
    let relayed = next_message::<proto::UpdateBuffer>(&alice_again).await;
    assert_eq!(relayed.original_sender_id, Some(bob_client.peer_id()));
    assert_eq!(relayed.payload, edit(project_id, 1, 1));

    // Carol joins now: the same entries, hosted on the new connection.
    let late = join_project(&carol_client, project_id).await;
    assert_eq!(late.entries(1), by_path(&uploaded));
    assert_eq!(
        late.collaborators(),
        vec![
            collaborator(&alice_again, 0, ProjectRole::Host),
            collaborator(&bob_client, 1, ProjectRole::Editor),
        ]
    );

    // The worktree kept its scans: scan 1 is complete, scan 2 goes through to both guests.
    let replay = worktree_chunk(project_id, &app, 1, entries(&["again.rs"]), true);
    refused(alice_again.request(replay).await, ErrorCode::Conflict);
    let next_scan = worktree_chunk(project_id, &app, 2, entries(&["new.rs"]), true);
    alice_again
        .request(next_scan.clone())
        .await
        .expect("scan 2");
    for client in [&bob_client, &carol_client] {
        let relayed = next_message::<proto::UpdateWorktree>(client).await;
        assert_eq!(relayed.original_sender_id, Some(alice_again.peer_id()));
        assert_eq!(relayed.payload, next_scan);
    }
    server.stop().await;
}
db_test!(host_reshares_within_the_grace);
