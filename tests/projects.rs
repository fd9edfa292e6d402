//! Shared projects, the worktree side: Alice shares a project into her room and uploads its
//! entries in chunks; Bob (a room member, so an editor) and Carol (a room guest, so a
//! viewer) join it and get every entry in bounded chunks; the host's later changes reach
//! the guests and later joiners; bad input is refused with a clear error and leaves the
//! project as it was. Buffers, roles and host loss are in `project_collaboration.rs`;
//! forwarded requests and following in `project_requests.rs`.

mod common;

use collab::rpc::proto::{self, ErrorCode, ProjectRole};
use common::{Backend, TestServer, projects::*, rooms::*};

// ---------------------------------------------------------------------------------------
// A large project
// ---------------------------------------------------------------------------------------

/// 10,000 entries uploaded in chunks of 256 reach each joiner in chunks of at most 256:
/// every entry exactly once, unchanged, the last chunk marked; an empty worktree still
/// gets its one marked chunk.
async fn joining_a_large_project_streams_every_entry(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    let (alice, bob) = (alice_client.user_id(), bob_client.user_id());
    make_room_guest(&alice_client, room_id, carol_client.user_id()).await;

    let big = worktree(1, "big");
    let empty = proto::WorktreeMetadata {
        visible: false,
        ..worktree(2, "empty")
    };
    let project_id = share_project(&alice_client, room_id, vec![big.clone(), empty.clone()]).await;
    let room = room_until(&bob_client, "the project listed", |room| {
        lists(room, alice, project_id)
    })
    .await;
    assert_eq!(
        shared_by(&room, alice),
        vec![proto::ParticipantProject {
            id: project_id,
            worktree_root_names: vec!["big".into(), "empty".into()],
        }]
    );
    assert!(shared_by(&room, bob).is_empty(), "{room:?}");

    let uploaded = numbered_entries(10_000);
    let sent = upload(&alice_client, project_id, &big, 1, &uploaded, MAX_CHUNK).await;
    assert_eq!(sent, 40);

    let bob_joined = join_project(&bob_client, project_id).await;
    let carol_joined = join_project(&carol_client, project_id).await;
    for (joined, replica_id, role) in [
        (&bob_joined, 1, ProjectRole::Editor),
        (&carol_joined, 2, ProjectRole::Viewer),
    ] {
        let response = &joined.response;
        assert_eq!(response.replica_id, replica_id);
        assert_eq!(response.role, role as i32);
        assert_eq!(
            response.worktrees,
            vec![
                proto::WorktreeMetadata {
                    scan_id: 1,
                    completed_scan_id: 1,
                    ..big.clone()
                },
                empty.clone(),
            ]
        );

        let chunks = joined.chunks_of(1);
        assert_eq!(chunks.len(), 40, "10,000 entries in full chunks of 256");
        for chunk in &chunks {
            let size = chunk.updated_entries.len() + chunk.removed_paths.len();
            assert!(size <= MAX_CHUNK, "a chunk of {size} entries");
            assert_eq!((chunk.scan_id, chunk.root_name.as_str()), (1, "big"));
        }
        let marked: Vec<usize> = (0..chunks.len())
            .filter(|&i| chunks[i].is_last_update)
            .collect();
        assert_eq!(marked, [chunks.len() - 1], "only the last chunk is marked");
        let total: usize = chunks.iter().map(|c| c.updated_entries.len()).sum();
        assert_eq!(total, 10_000, "each entry exactly once");
        assert_eq!(joined.entries(1), by_path(&uploaded));

        let empty_chunks = joined.chunks_of(2);
        assert_eq!(empty_chunks.len(), 1, "{empty_chunks:?}");
        assert!(empty_chunks[0].is_last_update);
        assert!(empty_chunks[0].updated_entries.is_empty());
    }

    // Everyone else is listed, the host first; the others hear of each joiner.
    assert_eq!(
        bob_joined.collaborators(),
        vec![collaborator(&alice_client, 0, ProjectRole::Host)]
    );
    assert_eq!(
        carol_joined.collaborators(),
        vec![
            collaborator(&alice_client, 0, ProjectRole::Host),
            collaborator(&bob_client, 1, ProjectRole::Editor),
        ]
    );
    let bob_added = Some(collaborator(&bob_client, 1, ProjectRole::Editor));
    let carol_added = Some(collaborator(&carol_client, 2, ProjectRole::Viewer));
    for expected in [bob_added, carol_added] {
        let added = next_message::<proto::AddProjectCollaborator>(&alice_client).await;
        assert_eq!(added.payload.project_id, project_id);
        assert_eq!(added.payload.collaborator, expected);
    }
    let added = next_message::<proto::AddProjectCollaborator>(&bob_client).await;
    assert_eq!(added.payload.collaborator, carol_added);
    server.stop().await;
}
db_test!(joining_a_large_project_streams_every_entry);

// ---------------------------------------------------------------------------------------
// Changes after joining
// ---------------------------------------------------------------------------------------

/// The host's new scan, diagnostics and worktree list are persisted and relayed to the
/// guests as the host's; a later joiner gets the resulting state, not the history.
async fn worktree_changes_reach_guests_and_later_joiners(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    let alice = alice_client.user_id();
    make_room_guest(&alice_client, room_id, carol_client.user_id()).await;
    let from_alice = Some(alice_client.peer_id());

    let app = worktree(1, "app");
    let project_id = share_project(&alice_client, room_id, vec![app.clone()]).await;
    let first: Vec<_> = (0..10).map(|i| entry(&format!("src/{i}.rs"))).collect();
    upload(&alice_client, project_id, &app, 1, &first, MAX_CHUNK).await;
    let joined = join_project(&bob_client, project_id).await;
    assert_eq!(joined.entries(1), by_path(&first));

    // A new scan: one file changes, one appears, one goes.
    let changed = proto::WorktreeEntry {
        size: 4096,
        mtime_ms: 1_800_000_000_000,
        ..entry("src/0.rs")
    };
    let scan = proto::UpdateWorktree {
        removed_paths: vec!["src/1.rs".into()],
        ..worktree_chunk(
            project_id,
            &app,
            2,
            vec![changed, entry("src/new.rs")],
            true,
        )
    };
    alice_client.request(scan.clone()).await.expect("scan 2");
    let relayed = next_message::<proto::UpdateWorktree>(&bob_client).await;
    assert_eq!(relayed.original_sender_id, from_alice);
    assert_eq!(relayed.payload, scan);
    let mut expected = by_path(&first);
    apply(&mut expected, &scan);

    // Diagnostics: two paths get summaries, then one is cleared.
    let summary = |path: &str, errors: u32, warnings: u32| proto::DiagnosticSummary {
        path: path.into(),
        language_server_id: 1,
        error_count: errors,
        warning_count: warnings,
    };
    let diagnostics = proto::UpdateDiagnosticSummary {
        project_id,
        worktree_id: 1,
        summaries: vec![summary("src/0.rs", 2, 0), summary("src/2.rs", 0, 1)],
    };
    let cleared = proto::UpdateDiagnosticSummary {
        summaries: vec![summary("src/2.rs", 0, 0)],
        ..diagnostics.clone()
    };
    for update in [&diagnostics, &cleared] {
        alice_client
            .request(update.clone())
            .await
            .expect("summaries");
        let relayed = next_message::<proto::UpdateDiagnosticSummary>(&bob_client).await;
        assert_eq!(relayed.original_sender_id, from_alice);
        assert_eq!(&relayed.payload, update);
    }

    // A second worktree: relayed, listed in the room, then filled.
    let docs = worktree(2, "docs");
    let worktrees = vec![app.clone(), docs.clone()];
    alice_client
        .request(proto::UpdateProject {
            project_id,
            worktrees,
        })
        .await
        .expect("the worktree list changes");
    let relayed = next_message::<proto::UpdateProject>(&bob_client).await;
    assert_eq!(relayed.original_sender_id, from_alice);
    let names: Vec<(u64, &str)> = (relayed.payload.worktrees.iter())
        .map(|w| (w.id, w.root_name.as_str()))
        .collect();
    assert_eq!(names, [(1, "app"), (2, "docs")]);
    room_until(&bob_client, "both worktrees listed", |room| {
        shared_by(room, alice)
            .iter()
            .any(|p| p.id == project_id && p.worktree_root_names == ["app", "docs"])
    })
    .await;
    let readme = entries(&["README.md"]);
    upload(&alice_client, project_id, &docs, 1, &readme, MAX_CHUNK).await;
    let relayed = next_message::<proto::UpdateWorktree>(&bob_client)
        .await
        .payload;
    assert_eq!(
        (relayed.worktree_id, &relayed.updated_entries),
        (2, &readme)
    );

    // Carol joins now: the state as it is.
    let late = join_project(&carol_client, project_id).await;
    assert_eq!(late.response.role, ProjectRole::Viewer as i32);
    assert_eq!(late.response.replica_id, 2);
    assert_eq!(
        late.response.worktrees,
        vec![
            proto::WorktreeMetadata {
                scan_id: 2,
                completed_scan_id: 2,
                ..app.clone()
            },
            proto::WorktreeMetadata {
                scan_id: 1,
                completed_scan_id: 1,
                ..docs.clone()
            },
        ]
    );
    assert_eq!(late.entries(1), expected);
    assert_eq!(late.entries(2), by_path(&readme));
    assert_eq!(
        late.collaborators(),
        vec![
            collaborator(&alice_client, 0, ProjectRole::Host),
            collaborator(&bob_client, 1, ProjectRole::Editor),
        ]
    );
    let bob_added = Some(collaborator(&bob_client, 1, ProjectRole::Editor));
    let carol_added = Some(collaborator(&carol_client, 2, ProjectRole::Viewer));
    for (client, expected) in [
        (&alice_client, bob_added),
        (&alice_client, carol_added),
        (&bob_client, carol_added),
    ] {
        let added = next_message::<proto::AddProjectCollaborator>(client).await;
        assert_eq!(added.payload.collaborator, expected);
    }

    // A change after Carol's join reaches both guests; it follows Carol's join stream, so
    // by then her diagnostics have all arrived: only the summary still standing.
    let later = worktree_chunk(project_id, &app, 3, entries(&["src/later.rs"]), true);
    alice_client.request(later.clone()).await.expect("scan 3");
    for client in [&bob_client, &carol_client] {
        let relayed = next_message::<proto::UpdateWorktree>(client).await;
        assert_eq!(relayed.original_sender_id, from_alice);
        assert_eq!(relayed.payload, later);
    }
    let carol_diagnostics = drain::<proto::UpdateDiagnosticSummary>(&carol_client);
    assert!(
        (carol_diagnostics.iter()).all(|u| u.project_id == project_id && u.worktree_id == 1),
        "{carol_diagnostics:?}"
    );
    let summaries: Vec<_> = (carol_diagnostics.into_iter())
        .flat_map(|update| update.summaries)
        .collect();
    assert_eq!(summaries, vec![summary("src/0.rs", 2, 0)]);
    server.stop().await;
}
db_test!(worktree_changes_reach_guests_and_later_joiners);

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

/// Oversized chunks, replayed and out-of-order scans, unknown worktrees and projects,
/// guests sending the host's updates, strangers joining or editing: each is refused with
/// a clear error, nothing refused is relayed, and a later joiner sees exactly what was
/// accepted.
async fn bad_project_input_is_refused_and_changes_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.max_worktree_chunk = 4).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    let (bob, carol) = (bob_client.user_id(), carol_client.user_id());
    let dave_client = server.client("dave").await;
    let bob_phone = server.client("bob").await;
    make_room_guest(&alice_client, room_id, carol).await;

    // Sharing: not by a room guest, not into someone else's room.
    let app = worktree(1, "app");
    let share = proto::ShareProject {
        room_id,
        worktrees: vec![app.clone()],
    };
    refused(
        carol_client.request(share.clone()).await,
        ErrorCode::Forbidden,
    );
    refused(dave_client.request(share).await, ErrorCode::Forbidden);
    let project_id = share_project(&alice_client, room_id, vec![app.clone()]).await;

    // Joining: only on the connection in the room, once; unknown projects are not found.
    let join = proto::JoinProject { project_id };
    refused(dave_client.request(join).await, ErrorCode::Forbidden);
    refused(bob_phone.request(join).await, ErrorCode::Forbidden);
    let unknown = proto::JoinProject {
        project_id: 999_999,
    };
    refused(bob_client.request(unknown).await, ErrorCode::NotFound);
    assert!(
        join_project(&bob_client, project_id)
            .await
            .entries(1)
            .is_empty()
    );
    refused(bob_client.request(join).await, ErrorCode::Conflict);

    // Scans. Scan 1 begins (the worktree was shared at scan 0).
    let scan = |scan_id, paths: &[&str], last| {
        worktree_chunk(project_id, &app, scan_id, entries(paths), last)
    };
    let first = scan(1, &["a", "b"], false);
    alice_client
        .request(first.clone())
        .await
        .expect("scan 1 begins");
    // More than 4 entries in a chunk, counting removals.
    let error = refused(
        alice_client
            .request(scan(1, &["c", "d", "e", "f", "g"], false))
            .await,
        ErrorCode::InvalidRequest,
    );
    assert!(!error.message.is_empty());
    let mixed = proto::UpdateWorktree {
        removed_paths: vec!["a".into(), "b".into()],
        ..scan(1, &["c", "d", "e"], false)
    };
    refused(alice_client.request(mixed).await, ErrorCode::InvalidRequest);
    // Scan 1 continues and completes.
    let rest = scan(1, &["c", "d"], true);
    alice_client
        .request(rest.clone())
        .await
        .expect("scan 1 completes");
    // A replay of the completed scan, and an older scan.
    refused(
        alice_client.request(scan(1, &["x"], true)).await,
        ErrorCode::Conflict,
    );
    refused(
        alice_client.request(scan(0, &["y"], true)).await,
        ErrorCode::Conflict,
    );
    // An unknown worktree, and an unknown project.
    let elsewhere = worktree_chunk(project_id, &worktree(99, "nope"), 4, entries(&["z"]), true);
    refused(alice_client.request(elsewhere).await, ErrorCode::NotFound);
    let nowhere = worktree_chunk(999_999, &app, 4, entries(&["z"]), true);
    let error = alice_client.request(nowhere).await.unwrap_err();
    assert!(
        matches!(error.code, ErrorCode::NotFound | ErrorCode::Forbidden),
        "{error}"
    );
    // Scan 3 begins (scan ids may skip); scan 2 is then out of order.
    let later = proto::UpdateWorktree {
        removed_paths: vec!["a".into()],
        ..scan(3, &["e"], false)
    };
    alice_client
        .request(later.clone())
        .await
        .expect("scan 3 begins");
    refused(
        alice_client.request(scan(2, &["w"], true)).await,
        ErrorCode::Conflict,
    );

    // Diagnostics are bounded and checked the same way.
    let summaries = (0..5)
        .map(|i| proto::DiagnosticSummary {
            path: format!("{i}"),
            language_server_id: 1,
            error_count: 1,
            warning_count: 0,
        })
        .collect();
    let too_many = proto::UpdateDiagnosticSummary {
        project_id,
        worktree_id: 1,
        summaries,
    };
    let misplaced = proto::UpdateDiagnosticSummary {
        worktree_id: 99,
        summaries: too_many.summaries[..1].to_vec(),
        ..too_many.clone()
    };
    refused(
        alice_client.request(too_many).await,
        ErrorCode::InvalidRequest,
    );
    refused(
        alice_client.request(misplaced.clone()).await,
        ErrorCode::NotFound,
    );

    // Bob, a guest of the project, may not send the host's updates.
    let guest_scan = scan(5, &["bob.rs"], true);
    refused(bob_client.request(guest_scan).await, ErrorCode::Forbidden);
    let guest_diagnostics = proto::UpdateDiagnosticSummary {
        worktree_id: 1,
        ..misplaced
    };
    refused(
        bob_client.request(guest_diagnostics).await,
        ErrorCode::Forbidden,
    );
    let guest_project = proto::UpdateProject {
        project_id,
        worktrees: Vec::new(),
    };
    refused(
        bob_client.request(guest_project).await,
        ErrorCode::Forbidden,
    );
    let guest_unshare = proto::UnshareProject { project_id };
    refused(
        bob_client.request(guest_unshare).await,
        ErrorCode::Forbidden,
    );
    let guest_role = proto::SetProjectCollaboratorRole {
        project_id,
        user_id: bob,
        role: ProjectRole::Viewer as i32,
    };
    refused(bob_client.request(guest_role).await, ErrorCode::Forbidden);
    let guest_reshare = proto::ReshareProject { project_id };
    refused(
        bob_client.request(guest_reshare).await,
        ErrorCode::Forbidden,
    );

    // Edits to a project one has not joined.
    refused(
        carol_client.request(edit(project_id, 1, 0)).await,
        ErrorCode::Forbidden,
    );
    refused(
        dave_client.request(edit(project_id, 1, 0)).await,
        ErrorCode::Forbidden,
    );

    // A shared-project location must name a project shared in the room.
    let bogus = Some(shared_project(999_999));
    let location = proto::UpdateParticipantLocation {
        room_id,
        location: bogus,
    };
    refused(bob_client.request(location).await, ErrorCode::NotFound);
    open_project(&bob_client, room_id, project_id).await;
    room_until(&alice_client, "Bob in the project", |room| {
        participant(room, bob).and_then(|p| p.location) == Some(shared_project(project_id))
    })
    .await;

    // Scan 3 completes. Bob got exactly the accepted updates, in order: had anything
    // refused been relayed, it would have come before this one.
    let last = scan(3, &["f"], true);
    alice_client
        .request(last.clone())
        .await
        .expect("scan 3 completes");
    for expected in [&first, &rest, &later, &last] {
        let relayed = next_message::<proto::UpdateWorktree>(&bob_client).await;
        assert_eq!(&relayed.payload, expected);
    }
    let diagnostics = drain::<proto::UpdateDiagnosticSummary>(&bob_client);
    assert!(
        diagnostics.is_empty(),
        "refused, yet relayed: {diagnostics:?}"
    );
    let project_updates = drain::<proto::UpdateProject>(&bob_client);
    assert!(
        project_updates.is_empty(),
        "refused, yet relayed: {project_updates:?}"
    );

    // Carol, joining last, sees what was accepted and nothing else.
    let late = join_project(&carol_client, project_id).await;
    assert_eq!(
        late.response.worktrees,
        vec![proto::WorktreeMetadata {
            scan_id: 3,
            completed_scan_id: 3,
            ..app.clone()
        }]
    );
    assert_eq!(
        late.entries(1),
        by_path(&entries(&["b", "c", "d", "e", "f"]))
    );
    assert_eq!(late.chunks.len(), 2, "5 entries in chunks of at most 4");
    assert!(
        (late.chunks.iter()).all(|c| c.updated_entries.len() + c.removed_paths.len() <= 4),
        "{:?}",
        late.chunks
    );
    assert_eq!(
        late.collaborators(),
        vec![
            collaborator(&alice_client, 0, ProjectRole::Host),
            collaborator(&bob_client, 1, ProjectRole::Editor),
        ]
    );
    server.stop().await;
}
db_test!(bad_project_input_is_refused_and_changes_nothing);
