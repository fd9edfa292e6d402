//! The Yjs endpoint under limits and bad input, with yrs as the client: clients per
//! document, documents in memory, message size; malformed frames each close their own
//! socket (with the right code) while the document and the other clients carry on; and
//! compaction into a snapshot that a restarted server loads.

mod common;

use std::time::Duration;

use collab::db::entities::document_snapshot;
use common::{
    Backend, TestServer, within,
    yjs::{YjsClient, closed, encode_frame, open, text_of_update},
};
use futures::SinkExt;
use sea_orm::EntityTrait;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::{
    Doc, StateVector,
    sync::{Awareness, Message},
    updates::decoder::Decode,
};

/// Alice and Bob still edit together (both ways).
async fn still_converge(alice: &mut YjsClient, bob: &mut YjsClient, marker: &str) {
    let start = alice.text();
    alice.push(marker).await;
    bob.wait_text(&format!("{start}{marker}")).await;
    bob.insert(0, marker).await;
    alice.wait_text(&format!("{marker}{start}{marker}")).await;
}

/// With two clients per document, a third socket is closed with 1013 and a reason
/// naming the limit; the first two carry on, and other documents are not affected.
async fn a_full_document_refuses_a_third_client(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.max_clients_per_doc = 2).await;
    let name = "notes/full";
    let mut alice = YjsClient::join(&server, name, "alice").await;
    let mut bob = YjsClient::join(&server, name, "bob").await;

    let token = server.token("carol").await;
    let mut third = open(&server, name, &token).await;
    let (code, reason) = closed(&mut third).await.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("maximum of 2 clients"), "{reason}");

    still_converge(&mut alice, &mut bob, "+").await;
    let carol = YjsClient::join_with(&server, "notes/elsewhere", &token).await;

    carol.close().await;
    alice.close().await;
    bob.close().await;
    server.stop().await;
}
db_test!(a_full_document_refuses_a_third_client);

/// With one document in memory at most, opening a second one is closed with 1013; the
/// open document still takes new clients.
async fn a_second_document_is_refused_at_max_docs(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.max_docs = 1).await;
    let mut alice = YjsClient::join(&server, "notes/one", "alice").await;

    let token = server.token("carol").await;
    let mut other = open(&server, "notes/two", &token).await;
    let (code, reason) = closed(&mut other).await.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("max-docs"), "{reason}");

    let mut bob = YjsClient::join(&server, "notes/one", "bob").await;
    still_converge(&mut alice, &mut bob, "*").await;

    alice.close().await;
    bob.close().await;
    server.stop().await;
}
db_test!(a_second_document_is_refused_at_max_docs);

/// A frame over `max_message_bytes` ends its socket (a 1009 close, or the connection
/// drops); a frame just under it is fine, and the other clients are not affected.
async fn an_oversized_frame_ends_only_its_socket(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.max_message_bytes = 4096).await;
    let name = "notes/sized";
    let mut alice = YjsClient::join(&server, name, "alice").await;
    let mut bob = YjsClient::join(&server, name, "bob").await;

    let token = server.token("mallory").await;
    let mut mallory = YjsClient::connect(&server, name, &token).await;
    // The send itself may fail if the server drops the connection first.
    let _ = within(
        "the oversized frame to be sent",
        mallory
            .socket
            .send(WsMessage::Binary(vec![0u8; 64 * 1024].into())),
    )
    .await;
    let end = mallory.closed().await;
    assert!(matches!(end, None | Some((1009, _))), "{end:?}");

    // Just under the limit: accepted and relayed.
    let big = "x".repeat(3000);
    alice.push(&big).await;
    bob.wait_text(&big).await;
    still_converge(&mut alice, &mut bob, "~").await;

    alice.close().await;
    bob.close().await;
    server.stop().await;
}
db_test!(an_oversized_frame_ends_only_its_socket);

/// An awareness update whose JSON state is over 64 KiB.
fn huge_awareness() -> Vec<u8> {
    let mut awareness = Awareness::new(Doc::new());
    awareness.set_local_state_raw(format!(r#"{{"blob":"{}"}}"#, "x".repeat(70 * 1024)));
    let update = awareness.update().expect("the state is known");
    encode_frame(&[Message::Awareness(update)])
}

/// Each malformed frame closes its own socket with its code; a healthy client stays
/// connected throughout, the document is untouched, and editing goes on afterwards.
async fn bad_input_closes_only_the_sender(backend: Backend) {
    let server = TestServer::start(backend).await;
    let name = "notes/bad";
    let mut healthy = YjsClient::join(&server, name, "alice").await;
    healthy.insert(0, "base").await;
    healthy.round_trip().await;
    let state_vector = healthy.state_vector();

    let cases: Vec<(&str, WsMessage, u16)> = vec![
        (
            "garbage bytes",
            WsMessage::Binary(vec![0xffu8; 16].into()),
            1007,
        ),
        (
            "a truncated varint",
            WsMessage::Binary(vec![0x80u8].into()),
            1007,
        ),
        (
            "an update that does not decode",
            WsMessage::Binary(vec![0u8, 2, 3, 1, 2, 3].into()),
            1007,
        ),
        (
            "a huge awareness update",
            WsMessage::Binary(huge_awareness().into()),
            1009,
        ),
        (
            "an unknown message type",
            WsMessage::Binary(vec![7u8].into()),
            1003,
        ),
        ("a text frame", WsMessage::text("hello"), 1003),
    ];
    let token = server.token("mallory").await;
    for (what, frame, code) in cases {
        let mut bad = YjsClient::connect(&server, name, &token).await;
        within("the bad frame to be sent", bad.socket.send(frame))
            .await
            .unwrap_or_else(|error| panic!("{what}: sending failed: {error}"));
        let end = bad.closed().await;
        let (got, reason) = end.unwrap_or_else(|| panic!("{what}: no close frame"));
        assert_eq!(got, code, "{what}: {reason}");
        assert!(!reason.is_empty(), "{what}: the close frame says why");

        // The stored document is as it was.
        let fresh = YjsClient::join(&server, name, "carol").await;
        assert_eq!(fresh.text(), "base", "after {what}");
        assert_eq!(fresh.state_vector(), state_vector, "after {what}");
        fresh.close().await;
    }

    // Nothing from the bad sockets reached the healthy client.
    healthy.round_trip().await;
    assert_eq!(healthy.updates, 0);
    assert!(
        healthy.awareness_log.is_empty(),
        "{:?}",
        healthy.awareness_log
    );
    assert_eq!(healthy.text(), "base");

    let mut other = YjsClient::join(&server, name, "bob").await;
    assert_eq!(other.text(), "base");
    still_converge(&mut healthy, &mut other, "!").await;
    assert_eq!(healthy.text(), "!base!");

    healthy.close().await;
    other.close().await;
    server.stop().await;
}
db_test!(bad_input_closes_only_the_sender);

async fn snapshots(server: &TestServer) -> Vec<document_snapshot::Model> {
    document_snapshot::Entity::find()
        .all(&server.state.db.conn)
        .await
        .expect("read document_snapshots")
}

/// Past `compaction_threshold` updates the log is merged into a snapshot; after a
/// restart, a new client sees every edit.
async fn compaction_writes_a_snapshot_that_survives_a_restart(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.compaction_threshold = 10).await;
    let name = "notes/compacted";
    let mut alice = YjsClient::join(&server, name, "alice").await;
    let mut bob = YjsClient::join(&server, name, "bob").await;
    assert!(snapshots(&server).await.is_empty());

    let mut expected = String::new();
    for i in 0..25 {
        let edit = format!("{i:02};");
        alice.push(&edit).await;
        expected.push_str(&edit);
    }
    // Updates are relayed once committed: all 25 are in the log.
    bob.wait_text(&expected).await;
    assert_eq!(bob.updates, 25);

    // Compaction runs in the background and signals nothing: poll the table.
    let snapshot = within("a row in document_snapshots", async {
        loop {
            if let Some(row) = snapshots(&server).await.into_iter().max_by_key(|r| r.epoch) {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(snapshot.up_to_update_id > 0);
    let merged = text_of_update(&snapshot.state);
    assert!(merged.len() >= 30, "at least 10 edits merged: {merged:?}");
    assert!(expected.starts_with(&merged), "{merged:?}");
    let merged_sv = StateVector::decode_v1(&snapshot.state_vector).expect("a state vector");
    assert_eq!(merged_sv.get(&alice.client_id()) as usize, merged.len());

    alice.close().await;
    bob.close().await;
    let server = server.restart().await;
    let carol = YjsClient::join(&server, name, "carol").await;
    assert_eq!(carol.text(), expected);
    assert_eq!(text_of_update(&carol.step2s[0]), expected);
    assert!(!snapshots(&server).await.is_empty());

    carol.close().await;
    server.stop().await;
}
db_test!(compaction_writes_a_snapshot_that_survives_a_restart);

/// The newest snapshot once one holds exactly `text`.
async fn snapshot_of(server: &TestServer, text: &str) -> document_snapshot::Model {
    // Compaction runs in the background and signals nothing: poll the table.
    within("a snapshot of the whole text", async {
        loop {
            let newest = snapshots(server).await.into_iter().max_by_key(|r| r.epoch);
            if let Some(row) = newest.filter(|row| text_of_update(&row.state) == text) {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
}

/// Compaction rewrites the whole snapshot, so once a document has a large one, small
/// edits stay in the log (past `compaction_threshold` of them) until the log is as
/// large as the snapshot; then one compaction takes them all. (The rule itself is
/// `compaction::due`'s unit test; this checks the sizes it is given are kept.)
async fn a_large_snapshot_is_rewritten_once_the_log_is_as_large(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.compaction_threshold = 10).await;
    let name = "notes/proportional";
    let mut alice = YjsClient::join(&server, name, "alice").await;
    let mut bob = YjsClient::join(&server, name, "bob").await;

    // Ten updates, the first of 8 KiB: no snapshot yet, so the tenth compacts.
    let mut expected = "x".repeat(8 * 1024);
    alice.push(&expected).await;
    for i in 0..9 {
        let edit = format!("{i};");
        alice.push(&edit).await;
        expected.push_str(&edit);
    }
    bob.wait_text(&expected).await;
    assert_eq!(snapshot_of(&server, &expected).await.epoch, 1);

    // Thirty small edits, three times the threshold but far fewer bytes than the
    // snapshot: no compaction.
    for i in 0..30 {
        let edit = format!("{i:02},");
        alice.push(&edit).await;
        expected.push_str(&edit);
    }
    // Then 9 KiB more: the log outgrows the snapshot, and one compaction merges it all.
    let large = "y".repeat(9 * 1024);
    alice.push(&large).await;
    expected.push_str(&large);
    bob.wait_text(&expected).await;
    let snapshot = snapshot_of(&server, &expected).await;
    assert_eq!(snapshot.epoch, 2, "one compaction after the first");

    alice.close().await;
    bob.close().await;
    server.stop().await;
}
db_test!(a_large_snapshot_is_rewritten_once_the_log_is_as_large);
