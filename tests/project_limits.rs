//! Shared projects under pressure: a host that keeps changing the tree while a guest
//! joins (the joiner's snapshot comes first, every later change after it), the mirror's
//! limits (entries per worktree, duplicate and overlong paths), and what room changes do
//! to projects: unsharing clears locations, a room guest is only a viewer.

mod common;

use collab::rpc::proto::{self, ErrorCode};
use common::{Backend, TestServer, projects::*, rooms::*};

/// Bob joins while Alice removes the last entries of a 10,000-entry tree and adds new
/// ones. Whatever the interleaving, Bob's join stream followed by the relays he gets
/// after it must add up to Alice's final tree: a removal relayed before the snapshot
/// chunk holding that path would bring the path back.
async fn changes_during_a_join_arrive_after_the_snapshot(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let tree = worktree(1, "app");
    let project_id = share_project(&alice_client, room_id, vec![tree.clone()]).await;
    let initial = numbered_entries(10_000);
    upload(&alice_client, project_id, &tree, 1, &initial, MAX_CHUNK).await;

    // The paths streamed last, so the removals race the stream's final chunks.
    let mut expected = by_path(&initial);
    let doomed: Vec<String> = expected.keys().rev().take(200).cloned().collect();
    let added = entries(&["zz-late-1", "zz-late-2", "zz-late-3"]);
    let changes = async {
        for (i, paths) in doomed.chunks(50).enumerate() {
            let update = proto::UpdateWorktree {
                removed_paths: paths.to_vec(),
                updated_entries: if i == 0 { added.clone() } else { Vec::new() },
                ..worktree_chunk(project_id, &tree, 2, Vec::new(), i == 3)
            };
            alice_client.request(update).await.expect("scan 2 chunk");
        }
        // A marker that is relayed after every change above.
        alice_client
            .request(edit(project_id, 1, 7))
            .await
            .expect("marker relayed");
    };
    let (joined, ()) = tokio::join!(join_project(&bob_client, project_id), changes);
    for path in &doomed {
        expected.remove(path);
    }
    expected.extend(by_path(&added));

    let marker = next_message::<proto::UpdateBuffer>(&bob_client).await;
    assert_eq!(seq(&marker.payload), 7);
    let mut seen = joined.entries(1);
    for update in drain::<proto::UpdateWorktree>(&bob_client) {
        apply(&mut seen, &update);
    }
    assert_eq!(seen.len(), expected.len(), "entry count after the join");
    assert!(seen == expected, "Bob's tree differs from Alice's");
    server.stop().await;
}
db_test!(changes_during_a_join_arrive_after_the_snapshot);

/// The mirror is bounded: at most `--max-worktree-entries` entries and summaries per
/// worktree; a path listed twice in one update or longer than 2 KiB is refused. Each
/// refusal leaves the stored tree as it was, which a later joiner sees.
async fn the_mirror_is_bounded(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.max_worktree_entries = 10).await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let tree = worktree(1, "app");
    let project_id = share_project(&alice_client, room_id, vec![tree.clone()]).await;
    let ten = numbered_entries(10);
    upload(&alice_client, project_id, &tree, 1, &ten, MAX_CHUNK).await;

    // An eleventh entry is one too many; replacing an existing one is not.
    let eleventh = worktree_chunk(project_id, &tree, 2, entries(&["one-more"]), false);
    let error = refused(
        alice_client.request(eleventh).await,
        ErrorCode::InvalidRequest,
    );
    assert!(error.message.contains("--max-worktree-entries"), "{error}");
    let replaced = worktree_chunk(project_id, &tree, 2, ten[..1].to_vec(), false);
    alice_client
        .request(replaced)
        .await
        .expect("an update in place");
    // Removing one makes room for one, in the same update.
    let swap = proto::UpdateWorktree {
        removed_paths: vec![ten[1].path.clone()],
        ..worktree_chunk(project_id, &tree, 2, entries(&["swapped-in"]), true)
    };
    alice_client
        .request(swap)
        .await
        .expect("a swap stays in bounds");

    let twice = worktree_chunk(project_id, &tree, 3, entries(&["dup", "dup"]), true);
    refused(alice_client.request(twice).await, ErrorCode::InvalidRequest);
    let both = proto::UpdateWorktree {
        removed_paths: vec!["dup".into()],
        ..worktree_chunk(project_id, &tree, 3, entries(&["dup"]), true)
    };
    refused(alice_client.request(both).await, ErrorCode::InvalidRequest);
    let long = "d/".repeat(1100);
    let overlong = worktree_chunk(project_id, &tree, 3, entries(&[&long]), true);
    refused(
        alice_client.request(overlong).await,
        ErrorCode::InvalidRequest,
    );

    let summaries = |count: u32| proto::UpdateDiagnosticSummary {
        project_id,
        worktree_id: tree.id,
        summaries: (0..count)
            .map(|i| proto::DiagnosticSummary {
                path: format!("src/{i}.rs"),
                language_server_id: 1,
                error_count: 1,
                warning_count: 0,
            })
            .collect(),
    };
    refused(
        alice_client.request(summaries(11)).await,
        ErrorCode::InvalidRequest,
    );
    alice_client
        .request(summaries(10))
        .await
        .expect("ten summaries fit");

    // Bob sees the ten entries of scan 2 and the ten summaries: nothing refused stuck.
    let joined = join_project(&bob_client, project_id).await;
    let mut expected = by_path(&ten);
    expected.remove(&ten[1].path);
    expected.extend(by_path(&entries(&["swapped-in"])));
    assert!(
        joined.entries(1) == expected,
        "{:?}",
        joined.entries(1).keys()
    );
    let streamed = next_message::<proto::UpdateDiagnosticSummary>(&bob_client).await;
    assert_eq!(streamed.payload.summaries.len(), 10);
    server.stop().await;
}
db_test!(the_mirror_is_bounded);

/// Bob works in Alice's project; when she unshares it, the room no longer places him in
/// a project that is gone.
async fn unsharing_clears_locations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let bob = bob_client.user_id();
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    open_project(&bob_client, room_id, project_id).await;
    room_until(&alice_client, "Bob in the project", |room| {
        participant(room, bob).and_then(|p| p.location) == Some(shared_project(project_id))
    })
    .await;

    alice_client
        .request(proto::UnshareProject { project_id })
        .await
        .expect("unshared");
    let room = room_until(&alice_client, "the project gone", |room| {
        !lists(room, alice_client.user_id(), project_id)
    })
    .await;
    let location = participant(&room, bob).and_then(|p| p.location);
    assert_eq!(
        location.map(|l| (l.kind, l.project_id)),
        Some((proto::participant_location::Kind::NoProject as i32, 0)),
        "{room:?}"
    );
    server.stop().await;
}
db_test!(unsharing_clears_locations);

/// Bob edits Alice's project as a room member; when the room's admin makes him a room
/// guest he becomes a viewer there too: everyone hears of it, his edits are refused and
/// his selections still pass.
async fn a_room_guest_is_a_viewer_in_projects(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    let joined = join_project(&bob_client, project_id).await;
    assert_eq!(joined.response.role, proto::ProjectRole::Editor as i32);
    bob_client
        .request(edit(project_id, 1, 1))
        .await
        .expect("an editor edits");
    assert_eq!(
        seq(&next_message::<proto::UpdateBuffer>(&alice_client)
            .await
            .payload),
        1
    );

    make_room_guest(&alice_client, room_id, bob_client.user_id()).await;
    let viewer = Some(collaborator(&bob_client, 1, proto::ProjectRole::Viewer));
    for client in [&alice_client, &bob_client] {
        let update = next_message::<proto::UpdateProjectCollaborator>(client).await;
        assert_eq!(update.payload.collaborator, viewer);
    }
    refused(
        bob_client.request(edit(project_id, 1, 2)).await,
        ErrorCode::Forbidden,
    );
    bob_client
        .request(select(project_id, 1, 3))
        .await
        .expect("a viewer's selection passes");
    let relayed = next_message::<proto::UpdateBuffer>(&alice_client).await;
    assert_eq!(seq(&relayed.payload), 3, "the refused edit was not relayed");
    server.stop().await;
}
db_test!(a_room_guest_is_a_viewer_in_projects);
