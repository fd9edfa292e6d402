//! Shared projects across a server restart: the project and its worktree mirror are in
//! the database, so a host who comes back to the next server and reshares keeps the same
//! project with the same entries; a host who never comes back loses it once the next
//! server's sweep of gone servers has passed the reconnect grace.

mod common;

use std::time::{Duration, Instant};

use collab::rpc::proto::{self, ErrorCode, ProjectRole, project_unshared::Reason};
use common::{Backend, TestServer, projects::*, rooms::*, within};

/// Alice shares a project with Bob and Carol; the server restarts. Alice comes back to
/// the new server, rejoins the room and reshares: the same project, the entries uploaded
/// before the restart, hosted on her new connection. Bob comes back and joins it; Carol
/// does not (her place stays lost for the grace, her old collaborator row is gone).
async fn a_shared_project_survives_a_restart_when_its_host_reshares(backend: Backend) {
    // A grace long enough that nobody's place expires during the story; a short heartbeat
    // so the new server's sweep of gone servers runs often.
    let server = TestServer::start_with(backend, |config| {
        config.reconnect_grace = Duration::from_secs(60);
        config.heartbeat_interval = Duration::from_millis(100);
    })
    .await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    let (alice, carol) = (alice_client.user_id(), carol_client.user_id());
    let app = worktree(1, "app");
    let project_id = share_project(&alice_client, room_id, vec![app.clone()]).await;
    let uploaded = entries(&["Cargo.toml", "README.md", "src/lib.rs", "src/main.rs"]);
    upload(&alice_client, project_id, &app, 1, &uploaded, MAX_CHUNK).await;
    join_project(&bob_client, project_id).await;
    join_project(&carol_client, project_id).await;

    let server = server.restart().await;
    within("the old connections to close", async {
        alice_client.closed().await;
        bob_client.closed().await;
        carol_client.closed().await;
    })
    .await;

    // Alice rejoins: her place, and the project listed under it, outlived the server.
    let alice_again = server.client("alice").await;
    let rejoined = alice_again
        .request(proto::RejoinRoom { room_id })
        .await
        .expect("Alice rejoins the room");
    let room = rejoined.room.expect("the rejoin carries the room");
    assert_eq!(
        participant(&room, alice).map(|p| p.peer_id),
        Some(peer(&alice_again))
    );
    assert_eq!(
        shared_by(&room, alice)
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![project_id],
        "the project before the restart, and no other: {room:?}"
    );
    // Her old connection was on a server that is gone: she may take the project over.
    alice_again
        .request(proto::ReshareProject { project_id })
        .await
        .expect("Alice reshares the same project");

    // Bob rejoins and sees Alice back, on her new connection, still sharing the project;
    // Carol is still within her grace.
    let bob_again = server.client("bob").await;
    let room = bob_again
        .request(proto::RejoinRoom { room_id })
        .await
        .expect("Bob rejoins the room")
        .room
        .expect("the rejoin carries the room");
    assert!(
        participant(&room, alice).is_some_and(|p| p.peer_id == peer(&alice_again)),
        "{room:?}"
    );
    assert!(lists(&room, alice, project_id), "{room:?}");
    assert!(
        participant(&room, carol).is_some_and(|p| p.connection_lost),
        "{room:?}"
    );

    // Bob joins: the entries are those uploaded before the restart (the mirror is
    // durable), and the only other collaborator is Alice on her new connection. The old
    // guests' rows are gone — their connections ended with the old server, and the new
    // server's sweep removes any a crash would have left — so Bob gets replica 1 again.
    let joined = join_project(&bob_again, project_id).await;
    assert_eq!(joined.entries(app.id), by_path(&uploaded));
    assert_eq!(joined.response.replica_id, 1);
    assert_eq!(joined.response.role, ProjectRole::Editor as i32);
    assert_eq!(
        joined.collaborators(),
        vec![collaborator(&alice_again, 0, ProjectRole::Host)],
        "no collaborator from before the restart"
    );
    let added = next_message::<proto::AddProjectCollaborator>(&alice_again).await;
    assert_eq!(
        added.payload.collaborator,
        Some(collaborator(&bob_again, 1, ProjectRole::Editor))
    );

    // Bob's edits reach the host's new connection.
    bob_again
        .request(edit(project_id, 1, 1))
        .await
        .expect("Bob edits");
    let relayed = next_message::<proto::UpdateBuffer>(&alice_again).await;
    assert_eq!(relayed.original_sender_id, Some(bob_again.peer_id()));
    assert_eq!(relayed.payload, edit(project_id, 1, 1));
    server.stop().await;
}
db_test!(a_shared_project_survives_a_restart_when_its_host_reshares);

/// Alice shares a project with Bob; the server restarts and only Bob comes back. Within
/// the grace the project is kept (Bob may even join it, hostless); once the new server's
/// sweep has removed Alice's expired place, it unshares the orphaned project: Bob is
/// told HOST_LOST, the room no longer lists it, and nobody can join it.
async fn after_a_restart_a_project_whose_host_never_returns_is_unshared(backend: Backend) {
    // The grace must outlast the restart and Bob's rejoin: when it ends, Bob's old place
    // expires along with Alice's (as in `rooms_survive_a_restart`).
    let grace = Duration::from_millis(1500);
    let server = TestServer::start_with(backend, |config| {
        config.reconnect_grace = grace;
        config.heartbeat_interval = Duration::from_millis(100);
    })
    .await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let (alice, bob) = (alice_client.user_id(), bob_client.user_id());
    let app = worktree(1, "app");
    let project_id = share_project(&alice_client, room_id, vec![app.clone()]).await;
    let uploaded = entries(&["src/lib.rs", "src/main.rs"]);
    upload(&alice_client, project_id, &app, 1, &uploaded, MAX_CHUNK).await;
    join_project(&bob_client, project_id).await;

    // The old server is marked stopped during `restart`, after this instant: the grace
    // of its connections cannot end before `restarted_at + grace`.
    let restarted_at = Instant::now();
    let server = server.restart().await;
    within("the old connections to close", async {
        alice_client.closed().await;
        bob_client.closed().await;
    })
    .await;

    // Bob rejoins within the grace: Alice's place is lost but kept, her project listed.
    let bob_again = server.client("bob").await;
    let room = bob_again
        .request(proto::RejoinRoom { room_id })
        .await
        .expect("Bob rejoins within the grace")
        .room
        .expect("the rejoin carries the room");
    assert!(
        participant(&room, alice).is_some_and(|p| p.connection_lost),
        "{room:?}"
    );
    assert!(
        lists(&room, alice, project_id),
        "kept during the grace: {room:?}"
    );

    // He joins the hostless project: the durable entries, and Alice still listed as its
    // host on her old (lost) connection. Being a collaborator, he will hear its end.
    let joined = join_project(&bob_again, project_id).await;
    assert_eq!(joined.entries(app.id), by_path(&uploaded));
    assert_eq!(
        joined.collaborators(),
        vec![collaborator(&alice_client, 0, ProjectRole::Host)]
    );

    // The grace ends: the sweep removes Alice's place, then unshares her project. The
    // ProjectUnshared is sent after the deletion committed, so it is the event to await.
    let unshared = next_message::<proto::ProjectUnshared>(&bob_again).await;
    assert!(
        restarted_at.elapsed() >= grace,
        "unshared after {:?}, before the grace ended",
        restarted_at.elapsed()
    );
    let expected = proto::ProjectUnshared {
        project_id,
        reason: Reason::HostLost as i32,
    };
    assert_eq!(unshared.payload, expected);
    let room = room_until(&bob_again, "Alice removed, her project unlisted", |room| {
        participant(room, alice).is_none() && !lists(room, alice, project_id)
    })
    .await;
    assert_eq!(
        room.participants
            .iter()
            .map(|p| p.user_id)
            .collect::<Vec<_>>(),
        vec![bob],
        "Bob's rejoined place outlives the grace"
    );
    refused(
        bob_again.request(proto::JoinProject { project_id }).await,
        ErrorCode::NotFound,
    );
    server.stop().await;
}
db_test!(after_a_restart_a_project_whose_host_never_returns_is_unshared);
