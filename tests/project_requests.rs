//! Shared projects, requests through the host: guests open buffers, search and hover
//! through the host's editor and get its answers (or its errors); viewers may not send
//! mutating requests; a host that is gone, vanishes mid-request or never answers yields
//! a prompt error; following a collaborator and unfollowing.

mod common;

use std::time::{Duration, Instant};

use collab::rpc::{
    RpcError,
    proto::{self, ErrorCode},
};
use common::{Backend, TestServer, projects::*, rooms::*};

/// How soon a request to a host that is gone must fail (the server's request timeout is
/// 30 s unless a test sets it).
const PROMPTLY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Forwarded requests
// ---------------------------------------------------------------------------------------

/// Bob (an editor) and Carol (a viewer) send each forwarded request type; Alice, the host,
/// receives each marked as theirs and answers; they get her answer or her error. Carol's
/// mutating requests are refused without reaching Alice.
async fn guests_reach_the_host_through_forwarded_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    make_room_guest(&alice_client, room_id, carol_client.user_id()).await;
    alice_client.answer_requests::<proto::OpenBufferByPath>();
    alice_client.answer_requests::<proto::OpenBufferById>();
    alice_client.answer_requests::<proto::SearchProject>();
    alice_client.answer_requests::<proto::GetHover>();
    alice_client.answer_requests::<proto::SaveBuffer>();
    alice_client.answer_requests::<proto::CreateProjectEntry>();
    let app = worktree(1, "app");
    let project_id = share_project(&alice_client, room_id, vec![app.clone()]).await;
    let files = entries(&["src/main.rs", "README.md"]);
    upload(&alice_client, project_id, &app, 1, &files, MAX_CHUNK).await;

    // Bob has not joined yet: refused by the server.
    let early = bob_client
        .request(open_path(project_id, "src/main.rs"))
        .await;
    refused(early, ErrorCode::Forbidden);
    join_project(&bob_client, project_id).await;
    join_project(&carol_client, project_id).await;

    // Bob opens a buffer by path; Carol, a viewer, by id.
    let buffer = proto::OpenBufferResponse {
        buffer_id: 7,
        state: b"fn main() {}\n".to_vec().into(),
    };
    let request = open_path(project_id, "src/main.rs");
    let opened = forwarded(&alice_client, &bob_client, request, Ok(buffer.clone())).await;
    assert_eq!(opened.expect("Bob opens src/main.rs"), buffer);
    let request = proto::OpenBufferById {
        project_id,
        buffer_id: 7,
    };
    let opened = forwarded(&alice_client, &carol_client, request, Ok(buffer.clone())).await;
    assert_eq!(opened.expect("Carol opens buffer 7"), buffer);

    // Search and hover, read-only: viewers too.
    let found = proto::SearchProjectResponse {
        matches: vec![proto::SearchMatch {
            worktree_id: 1,
            path: "src/main.rs".into(),
            line: 1,
            text: "fn main() {}".into(),
        }],
    };
    let search = proto::SearchProject {
        project_id,
        query: "main".into(),
        limit: 10,
    };
    let result = forwarded(&alice_client, &carol_client, search, Ok(found.clone())).await;
    assert_eq!(result.expect("Carol searches"), found);
    let hover = proto::GetHoverResponse {
        contents: "fn main()".into(),
    };
    let request = proto::GetHover {
        project_id,
        buffer_id: 7,
        offset: 3,
    };
    let result = forwarded(&alice_client, &bob_client, request, Ok(hover.clone())).await;
    assert_eq!(result.expect("Bob hovers"), hover);

    // Mutating requests, by the editor.
    let save = proto::SaveBuffer {
        project_id,
        buffer_id: 7,
        version: vec![1, 2, 3].into(),
    };
    let saved = proto::BufferSaved {
        project_id,
        buffer_id: 7,
        version: vec![1, 2, 3].into(),
        mtime_ms: 1_800_000_000_000,
    };
    let result = forwarded(&alice_client, &bob_client, save.clone(), Ok(saved.clone())).await;
    assert_eq!(result.expect("Bob saves"), saved);
    let create = proto::CreateProjectEntry {
        project_id,
        worktree_id: 1,
        path: "src/lib.rs".into(),
        is_dir: false,
    };
    let result = forwarded(
        &alice_client,
        &bob_client,
        create.clone(),
        Ok(proto::Ack {}),
    )
    .await;
    result.expect("Bob creates a file");

    // The host's error reaches the guest as the host gave it.
    let missing = RpcError::new(ErrorCode::NotFound, "no such file: missing.rs");
    let request = open_path(project_id, "missing.rs");
    let result = forwarded(&alice_client, &bob_client, request, Err(missing.clone())).await;
    let error = refused(result, ErrorCode::NotFound);
    assert_eq!(error.message, missing.message);

    // Carol, a viewer, may not save or create: refused at once, never forwarded. The next
    // request Alice receives is Carol's hover, and no refused one waits behind it.
    refused(carol_client.request(save).await, ErrorCode::Forbidden);
    refused(carol_client.request(create).await, ErrorCode::Forbidden);
    let request = proto::GetHover {
        project_id,
        buffer_id: 7,
        offset: 4,
    };
    let result = forwarded(&alice_client, &carol_client, request, Ok(hover.clone())).await;
    assert_eq!(result.expect("Carol hovers"), hover);
    assert!(alice_client.try_recv::<proto::SaveBuffer>().is_none());
    assert!(
        alice_client
            .try_recv::<proto::CreateProjectEntry>()
            .is_none()
    );

    // Requests for a project that does not exist.
    let nowhere = bob_client.request(open_path(999_999, "src/main.rs")).await;
    let error = nowhere.unwrap_err();
    assert!(
        matches!(error.code, ErrorCode::NotFound | ErrorCode::Forbidden),
        "{error}"
    );
    server.stop().await;
}
db_test!(guests_reach_the_host_through_forwarded_requests);

/// The host receives Bob's request and its connection drops before it answers: Bob gets
/// Disconnected at once. While the host is lost (the grace is long), requests for it
/// fail at once with Unavailable, read-only and mutating alike.
async fn requests_to_a_vanished_host_fail_promptly(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.reconnect_grace = Duration::from_secs(60);
    })
    .await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    let alice = alice_client.user_id();
    alice_client.answer_requests::<proto::OpenBufferByPath>();
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    join_project(&bob_client, project_id).await;

    let request = bob_client.request(open_path(project_id, "src/main.rs"));
    let (result, ()) = tokio::join!(tokio::time::timeout(PROMPTLY, request), async {
        let received = next_message::<proto::OpenBufferByPath>(&alice_client).await;
        assert_eq!(received.original_sender_id, Some(bob_client.peer_id()));
        alice_client.close().await;
    });
    let error = result
        .expect("Bob hears promptly that the host went away")
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Disconnected, "{error}");
    assert!(bob_client.is_connected(), "Bob's own connection is fine");

    room_until(&bob_client, "Alice's connection lost", |room| {
        participant(room, alice).is_some_and(|p| p.connection_lost)
    })
    .await;
    let open = bob_client.request(open_path(project_id, "src/main.rs"));
    let error = tokio::time::timeout(PROMPTLY, open)
        .await
        .expect("an open for a lost host fails promptly")
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable, "{error}");
    let save = bob_client.request(proto::SaveBuffer {
        project_id,
        buffer_id: 1,
        version: Default::default(),
    });
    let error = tokio::time::timeout(PROMPTLY, save)
        .await
        .expect("a save for a lost host fails promptly")
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable, "{error}");
    server.stop().await;
}
db_test!(requests_to_a_vanished_host_fail_promptly);

/// A host that receives a request and never answers: the guest gets Timeout after the
/// server's request timeout; the late answer is dropped, and the next request still works.
async fn a_host_that_never_answers_times_out(backend: Backend) {
    let request_timeout = Duration::from_millis(1000);
    let server = TestServer::start_with(backend, |config| {
        config.request_timeout = request_timeout;
    })
    .await;
    let (alice_client, bob_client, room_id) = room_of_two(&server, "alice", "bob").await;
    alice_client.answer_requests::<proto::GetHover>();
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    join_project(&bob_client, project_id).await;

    let hover = |offset| proto::GetHover {
        project_id,
        buffer_id: 1,
        offset,
    };
    let started = Instant::now();
    let (result, received) = tokio::join!(
        tokio::time::timeout(PROMPTLY, bob_client.request(hover(1))),
        next_message::<proto::GetHover>(&alice_client)
    );
    let error = result.expect("Bob hears within the bound").unwrap_err();
    assert_eq!(error.code, ErrorCode::Timeout, "{error}");
    assert!(
        started.elapsed() >= request_timeout - Duration::from_millis(50),
        "timed out after {:?}",
        started.elapsed()
    );
    // Alice answers too late; nothing breaks.
    let late = proto::GetHoverResponse {
        contents: "late".into(),
    };
    let _ = alice_client.respond(&received, late);
    let answer = proto::GetHoverResponse {
        contents: "on time".into(),
    };
    let result = forwarded(&alice_client, &bob_client, hover(2), Ok(answer.clone())).await;
    assert_eq!(result.expect("the next request is answered"), answer);
    server.stop().await;
}
db_test!(a_host_that_never_answers_times_out);

// ---------------------------------------------------------------------------------------
// Following
// ---------------------------------------------------------------------------------------

/// Bob and Carol follow Alice: each gets her current view through her, then her
/// UpdateFollowers; a non-follower gets none; after Unfollow none arrive. Following
/// someone outside the project is refused.
async fn follow_and_unfollow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_client, bob_client, carol_client, room_id) =
        room_of_three(&server, "alice", "bob", "carol").await;
    make_room_guest(&alice_client, room_id, carol_client.user_id()).await;
    alice_client.answer_requests::<proto::Follow>();
    let project_id = share_project(&alice_client, room_id, vec![worktree(1, "app")]).await;
    join_project(&bob_client, project_id).await;

    // Carol has not joined: she cannot be followed.
    let outsider = proto::Follow {
        project_id,
        leader_id: peer(&carol_client),
    };
    let error = bob_client.request(outsider).await.unwrap_err();
    assert!(
        matches!(error.code, ErrorCode::NotFound | ErrorCode::Forbidden),
        "{error}"
    );
    join_project(&carol_client, project_id).await;

    let view = |id: u64| proto::View {
        id,
        state: format!("view {id}").into_bytes().into(),
    };
    let update = |id: u64| proto::UpdateFollowers {
        project_id,
        active_view_id: Some(id),
        views: vec![view(id)],
    };
    let follow = proto::Follow {
        project_id,
        leader_id: peer(&alice_client),
    };
    let current = proto::FollowResponse {
        active_view_id: Some(1),
        views: vec![view(1)],
    };
    let from_alice = Some(alice_client.peer_id());

    // Bob follows Alice and gets her view, then her updates.
    let result = forwarded(&alice_client, &bob_client, follow, Ok(current.clone())).await;
    assert_eq!(result.expect("Bob follows Alice"), current);
    alice_client.send(update(1)).expect("sent");
    let got = next_message::<proto::UpdateFollowers>(&bob_client).await;
    assert_eq!(got.original_sender_id, from_alice);
    assert_eq!(got.payload, update(1));

    // Carol (a viewer) follows too: her first update is the next one, not update 1.
    let result = forwarded(&alice_client, &carol_client, follow, Ok(current.clone())).await;
    assert_eq!(result.expect("Carol follows Alice"), current);
    alice_client.send(update(2)).expect("sent");
    for client in [&bob_client, &carol_client] {
        let got = next_message::<proto::UpdateFollowers>(client).await;
        assert_eq!(got.original_sender_id, from_alice);
        assert_eq!(got.payload, update(2));
    }

    // Bob unfollows: update 3 reaches Carol only. Bob follows again and gets update 4
    // next, which he could not if update 3 had been relayed to him before it.
    let unfollow = proto::Unfollow {
        project_id,
        leader_id: peer(&alice_client),
    };
    bob_client.request(unfollow).await.expect("Bob unfollows");
    alice_client.send(update(3)).expect("sent");
    let got = next_message::<proto::UpdateFollowers>(&carol_client).await;
    assert_eq!(got.payload, update(3));
    let result = forwarded(&alice_client, &bob_client, follow, Ok(current.clone())).await;
    assert_eq!(result.expect("Bob follows Alice again"), current);
    alice_client.send(update(4)).expect("sent");
    for client in [&bob_client, &carol_client] {
        let got = next_message::<proto::UpdateFollowers>(client).await;
        assert_eq!(got.payload, update(4));
    }
    assert!(alice_client.try_recv::<proto::UpdateFollowers>().is_none());
    server.stop().await;
}
db_test!(follow_and_unfollow);
