//! The Yjs endpoint (`GET /yjs/{name}`) with yrs as the client: convergence and late
//! joiners, the server speaking first and handling several messages per frame,
//! awareness relay and removal, auth before and after the upgrade, and durability
//! across a restart.

mod common;

use std::time::Duration;

use collab::auth::jwt::Permission;
use common::{
    Backend, TestServer,
    yjs::{YjsClient, decode_frame, refused_status, text_of_update},
};
use yrs::{
    StateVector,
    sync::{Message, SyncMessage},
};

/// Alice and Bob insert at the same place concurrently and end with the same text; Carol,
/// joining later, has it all as soon as her sync is answered.
async fn two_clients_converge_and_a_late_joiner_catches_up(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = YjsClient::join(&server, "notes/converge", "alice").await;
    let mut bob = YjsClient::join(&server, "notes/converge", "bob").await;
    assert_eq!(alice.text(), "");

    // Neither has seen the other's insert when making its own.
    alice.insert(0, "alpha").await;
    bob.insert(0, "beta").await;
    alice
        .wait_until("both inserts at Alice", |c| c.text().len() == 9)
        .await;
    bob.wait_until("both inserts at Bob", |c| c.text().len() == 9)
        .await;
    let text = alice.text();
    assert_eq!(bob.text(), text);
    assert!(text.contains("alpha") && text.contains("beta"), "{text}");

    // More edits on top, from both sides.
    alice.push("!").await;
    bob.wait_text(&format!("{text}!")).await;
    bob.insert(0, ">").await;
    alice.wait_text(&format!(">{text}!")).await;

    // The late joiner: the answer to her Step1 holds everything.
    let carol = YjsClient::join(&server, "notes/converge", "carol").await;
    assert_eq!(carol.text(), format!(">{text}!"));
    assert_eq!(carol.step2s.len(), 1);
    assert_eq!(text_of_update(&carol.step2s[0]), format!(">{text}!"));
    assert_eq!(carol.state_vector(), alice.state_vector());
    assert_eq!(carol.state_vector(), bob.state_vector());

    alice.close().await;
    bob.close().await;
    carol.close().await;
    server.stop().await;
}
db_test!(two_clients_converge_and_a_late_joiner_catches_up);

/// The server sends its Step1 before the client says anything, answers a Step1 with a
/// Step2, and handles every message of a frame (Step1 + update + queryAwareness in one
/// frame: a Step2 and the awareness come back, the update reaches the others).
async fn the_server_speaks_first_and_reads_whole_frames(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("alice").await;
    let mut alice = YjsClient::connect(&server, "notes/first", &token).await;
    // Read before Alice sent anything: Step1 of an empty document, and no awareness.
    assert_eq!(alice.hello, [0, 0, 1, 0], "the first frame");

    // A bare Step1 (empty state vector) is answered by a bare Step2 (empty update).
    alice.send_raw([0u8, 0, 1, 0]).await;
    let reply = alice.next_frame().await;
    assert_eq!(
        reply.bytes,
        [0, 1, 2, 0, 0],
        "the Step2 of an empty document"
    );

    // Alice's awareness, echoed back to her.
    alice.set_awareness(r#"{"user":"alice"}"#).await;
    let alice_id = alice.client_id();
    alice
        .wait_until("Alice's awareness echo", |c| {
            c.awareness_log.iter().any(|(id, _, _)| *id == alice_id)
        })
        .await;
    alice.insert(0, "hello").await;
    // Frames are handled in order: after this, the insert is in the server's copy.
    alice.round_trip().await;

    // Bob's first frame: Step1 with the server's state; the next, the awareness it knows
    // (one message per frame: stock clients read only the first message of a frame).
    let token = server.token("bob").await;
    let mut bob = YjsClient::connect(&server, "notes/first", &token).await;
    assert_eq!(
        &bob.hello[..2],
        &[0, 0],
        "the first frame starts with Step1"
    );
    let hello = decode_frame(&bob.hello);
    assert_eq!(hello.len(), 1, "{hello:?}");
    let Message::Sync(SyncMessage::SyncStep1(server_sv)) = &hello[0] else {
        panic!("the first message is not Step1: {hello:?}");
    };
    assert_eq!(server_sv.get(&alice_id), 5, "the server has Alice's insert");
    let second = bob.next_frame().await;
    let second = decode_frame(&second.bytes);
    let [Message::Awareness(states)] = second.as_slice() else {
        panic!("the second frame is not one awareness message: {second:?}");
    };
    assert_eq!(
        states.clients.get(&alice_id).map(|e| e.json.to_string()),
        Some(r#"{"user":"alice"}"#.to_string())
    );
    assert_eq!(
        bob.awareness_state(alice_id).as_deref(),
        Some(r#"{"user":"alice"}"#)
    );

    // One frame from Bob: Step1 (he has nothing), his own update, a queryAwareness.
    let update = bob.edit(0, "bob:");
    bob.send(&[
        Message::Sync(SyncMessage::SyncStep1(StateVector::default())),
        Message::Sync(SyncMessage::Update(update)),
        Message::AwarenessQuery,
    ])
    .await;
    let answer = bob
        .frame_where("the answer to Bob's frame", |f| f.has_step2())
        .await;
    assert!(
        matches!(answer.messages[0], Message::Sync(SyncMessage::SyncStep2(_))),
        "{:?}",
        answer.messages
    );
    let awareness = bob
        .frame_where("the answer to Bob's queryAwareness", |f| {
            f.awareness_ids().contains(&alice_id)
        })
        .await;
    assert_eq!(awareness.messages.len(), 1, "{:?}", awareness.messages);
    assert_eq!(text_of_update(&bob.step2s[0]), "hello");
    // Bob's update was applied and relayed; the Step2 made his copy whole. (The two
    // inserts at 0 are concurrent: their order is the client ids' tie-break.)
    alice
        .wait_until("Bob's update at Alice", |c| c.text().len() == 9)
        .await;
    let text = bob.text();
    assert!(text.contains("bob:") && text.contains("hello"), "{text}");
    assert_eq!(alice.text(), text);

    alice.close().await;
    bob.close().await;
    server.stop().await;
}
db_test!(the_server_speaks_first_and_reads_whole_frames);

/// Awareness states are relayed; a socket's states are removed for everyone when it
/// ends (cleanly or not); queryAwareness gets every live state.
async fn awareness_is_relayed_and_removed_with_its_socket(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = YjsClient::join(&server, "notes/awareness", "alice").await;
    let mut bob = YjsClient::join(&server, "notes/awareness", "bob").await;
    let (alice_id, bob_id) = (alice.client_id(), bob.client_id());

    alice.set_awareness(r#"{"user":"alice","cursor":3}"#).await;
    bob.wait_until("Alice's state at Bob", |c| {
        c.awareness_state(alice_id).as_deref() == Some(r#"{"user":"alice","cursor":3}"#)
    })
    .await;
    bob.set_awareness(r#"{"user":"bob"}"#).await;
    alice
        .wait_until("Bob's state at Alice", |c| {
            c.awareness_state(bob_id).as_deref() == Some(r#"{"user":"bob"}"#)
        })
        .await;

    // A later state replaces the earlier one.
    alice.set_awareness(r#"{"user":"alice","cursor":7}"#).await;
    bob.wait_until("Alice's new state at Bob", |c| {
        c.awareness_state(alice_id).as_deref() == Some(r#"{"user":"alice","cursor":7}"#)
    })
    .await;

    // queryAwareness: one answer with both states.
    bob.send(&[Message::AwarenessQuery]).await;
    let answer = bob
        .frame_where("the awareness answer", |f| {
            let ids = f.awareness_ids();
            ids.contains(&alice_id) && ids.contains(&bob_id)
        })
        .await;
    assert_eq!(answer.messages.len(), 1, "{:?}", answer.messages);

    // Carol's socket drops without a close frame: her state goes too.
    let mut carol = YjsClient::join(&server, "notes/awareness", "carol").await;
    let carol_id = carol.client_id();
    carol.set_awareness(r#"{"user":"carol"}"#).await;
    bob.wait_until("Carol's state at Bob", |c| {
        c.awareness_state(carol_id).is_some()
    })
    .await;
    drop(carol);
    bob.wait_until("Carol's removal at Bob", |c| c.saw_removal(carol_id))
        .await;
    assert_eq!(bob.awareness_state(carol_id), None);

    // Alice closes: Bob gets a null state for her client id.
    alice.close().await;
    bob.wait_until("Alice's removal at Bob", |c| c.saw_removal(alice_id))
        .await;
    assert_eq!(bob.awareness_state(alice_id), None);
    assert!(!bob.saw_removal(bob_id), "Bob's own state stays");

    // What the server knows now: Bob only.
    bob.send(&[Message::AwarenessQuery]).await;
    let answer = bob
        .frame_where("the second awareness answer", |f| {
            f.awareness_ids().contains(&bob_id)
        })
        .await;
    let ids = answer.awareness_ids();
    assert!(
        !ids.contains(&alice_id) && !ids.contains(&carol_id),
        "{:?}",
        answer.messages
    );

    bob.close().await;
    server.stop().await;
}
db_test!(awareness_is_relayed_and_removed_with_its_socket);

/// Tokens are checked before the upgrade (401, 403); a read-only token's updates are
/// answered with permission-denied and go nowhere; a read-write ws token edits.
async fn auth_before_the_upgrade_and_read_only_sockets(backend: Backend) {
    let server = TestServer::start(backend).await;
    let name = "notes/auth";
    assert_eq!(refused_status(&server, name, None).await, 401);
    assert_eq!(refused_status(&server, name, Some("garbage")).await, 401);

    let alice_id = server.user_id("alice").await;
    let ttl = Duration::from_secs(600);
    let mint = |document: &str, permission: Permission| {
        server
            .state
            .auth
            .mint_ws_token(alice_id, Some(document.to_string()), permission, ttl)
            .expect("mint a ws token")
            .token
    };
    let elsewhere = mint("notes/other", Permission::Write);
    assert_eq!(
        refused_status(&server, name, Some(elsewhere.as_str())).await,
        403
    );

    let mut bob = YjsClient::join(&server, name, "bob").await;
    bob.insert(0, "shared").await;

    // Read-only: the document comes in, updates are refused.
    let mut viewer = YjsClient::join_with(&server, name, &mint(name, Permission::Read)).await;
    viewer.wait_text("shared").await;
    let denied_before = viewer.denied.len();
    viewer.push(" + forbidden").await;
    let answer = viewer
        .frame_where("the permission-denied answer", |f| {
            f.bytes.starts_with(&[2, 0])
        })
        .await;
    assert!(
        matches!(&answer.messages[..], [Message::Auth(Some(_))]),
        "{:?}",
        answer.messages
    );
    assert_eq!(viewer.denied.len(), denied_before + 1);
    assert!(
        viewer.denied.last().unwrap().contains("read-only"),
        "{:?}",
        viewer.denied
    );

    // A read-write ws token edits; Bob gets that, and never the viewer's text.
    let mut writer = YjsClient::join_with(&server, name, &mint(name, Permission::Write)).await;
    writer.push(" by alice").await;
    bob.wait_text("shared by alice").await;
    assert_eq!(bob.updates, 1, "only the writer's update reached Bob");
    writer.close().await;

    // A fresh client's sync: the stored document has no trace of the viewer's edit.
    let fresh = YjsClient::join(&server, name, "carol").await;
    assert_eq!(fresh.text(), "shared by alice");
    assert!(
        viewer.text().contains("forbidden"),
        "the viewer's copy diverged locally"
    );

    fresh.close().await;
    viewer.close().await;
    bob.close().await;
    server.stop().await;
}
db_test!(auth_before_the_upgrade_and_read_only_sockets);

/// After a restart, the answer to a new client's Step1 already holds the text: the
/// document is loaded before the server speaks.
async fn the_text_survives_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let name = "notes/durable";
    let mut alice = YjsClient::join(&server, name, "alice").await;
    let mut bob = YjsClient::join(&server, name, "bob").await;
    alice.insert(0, "written before the restart").await;
    // Relayed only once committed.
    bob.wait_text("written before the restart").await;
    bob.insert(0, "[b] ").await;
    alice.wait_text("[b] written before the restart").await;
    let state_vector = alice.state_vector();
    alice.close().await;
    bob.close().await;

    let server = server.restart().await;
    let token = server.token("carol").await;
    let mut carol = YjsClient::connect(&server, name, &token).await;
    let hello = decode_frame(&carol.hello);
    let Message::Sync(SyncMessage::SyncStep1(server_sv)) = &hello[0] else {
        panic!("the first message is not Step1: {hello:?}");
    };
    assert_eq!(
        server_sv, &state_vector,
        "the server's Step1 has every edit"
    );

    carol
        .send(&[Message::Sync(
            SyncMessage::SyncStep1(StateVector::default()),
        )])
        .await;
    carol
        .wait_until("Carol's first Step2", |c| !c.step2s.is_empty())
        .await;
    assert_eq!(
        text_of_update(&carol.step2s[0]),
        "[b] written before the restart",
        "the very first Step2"
    );
    assert_eq!(carol.updates, 0, "nothing came as a later update");
    assert_eq!(carol.text(), "[b] written before the restart");

    // And the document is live again.
    let mut dave = YjsClient::join(&server, name, "dave").await;
    carol.push(".").await;
    dave.wait_text("[b] written before the restart.").await;

    carol.close().await;
    dave.close().await;
    server.stop().await;
}
db_test!(the_text_survives_a_restart);
