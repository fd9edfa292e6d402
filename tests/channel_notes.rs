//! Channel notes (the Yjs document `channel/<id>/notes`) over RPC, with yrs documents as
//! the editors: convergence and a late joiner, collaborators pushed on join/leave, a
//! rejoin that gets only what it lacks, durability across a restart, a randomized
//! seed-replayable run through compaction and rejoins, bad input and permissions, and
//! the same document over y-websocket (edits, read-only guests, refusals, awareness).

mod common;

use collab::rpc::proto::{self, ChannelRole, ChannelVisibility, ErrorCode};
use common::{
    Backend, TestServer,
    notes::*,
    projects::refused,
    within,
    yjs::{YjsClient, refused_status, text_of_update},
};
use yrs::{StateVector, sync::Message};

// ---------------------------------------------------------------------------------------
// Convergence, collaborators
// ---------------------------------------------------------------------------------------

/// Alice and Bob edit at once (each update acknowledged) and converge, each receiving the
/// other's updates and never its own; Carol, joining late, gets everything in her join's
/// state. Collaborators are listed in the join answers and pushed on join, leave and
/// disconnect.
async fn editors_converge_and_a_late_joiner_has_everything(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let channel_id = channel_with(
        &alice,
        "notes-converge",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&carol, ChannelRole::Member)],
    )
    .await;

    let joined = join_notes(&alice, channel_id).await;
    assert!(joined.can_edit, "an admin edits");
    assert_eq!(
        collaborator_keys(&joined.collaborators),
        client_keys(&[&alice])
    );
    let alice_doc = NotesDoc::from_update(&joined.state);
    assert_eq!(alice_doc.text(), "");

    let joined = join_notes(&bob, channel_id).await;
    assert!(joined.can_edit, "a member edits");
    assert_eq!(
        collaborator_keys(&joined.collaborators),
        client_keys(&[&alice, &bob])
    );
    let bob_doc = NotesDoc::from_update(&joined.state);
    collaborators_until(&alice, channel_id, &[&alice, &bob]).await;

    // Concurrent inserts at the same place: neither has seen the other's.
    let from_alice = alice_doc.insert(0, "alpha");
    let from_bob = bob_doc.insert(0, "beta");
    update_notes(&alice, channel_id, from_alice).await;
    update_notes(&bob, channel_id, from_bob).await;
    // The first update each receives is the other's (an echo would bring nothing new).
    let got = next_notes_update(&bob, channel_id).await;
    assert!(bob_doc.apply_news(&got), "Bob's first update is Alice's");
    let got = next_notes_update(&alice, channel_id).await;
    assert!(alice_doc.apply_news(&got), "Alice's first update is Bob's");
    let text = alice_doc.text();
    assert_eq!(text.len(), 9, "{text:?}");
    assert!(text.contains("alpha") && text.contains("beta"), "{text:?}");
    assert_eq!(bob_doc.text(), text);
    assert_eq!(bob_doc.state_vector(), alice_doc.state_vector());

    // More edits on top, from both sides.
    update_notes(&alice, channel_id, alice_doc.push("!")).await;
    let got = next_notes_update(&bob, channel_id).await;
    assert!(bob_doc.apply_news(&got));
    assert_eq!(bob_doc.text(), format!("{text}!"));
    update_notes(&bob, channel_id, bob_doc.insert(0, ">")).await;
    let got = next_notes_update(&alice, channel_id).await;
    assert!(alice_doc.apply_news(&got));
    let text = format!(">{text}!");
    assert_eq!(alice_doc.text(), text);

    // The late joiner: her join's state holds everything, and the server's state vector
    // is the editors'.
    let joined = join_notes(&carol, channel_id).await;
    assert!(joined.can_edit);
    let carol_doc = NotesDoc::from_update(&joined.state);
    assert_eq!(carol_doc.text(), text);
    assert_eq!(text_of_update(&joined.state), text);
    assert_eq!(decode_sv(&joined.state_vector), alice_doc.state_vector());
    assert_eq!(carol_doc.state_vector(), bob_doc.state_vector());
    assert_eq!(
        collaborator_keys(&joined.collaborators),
        client_keys(&[&alice, &bob, &carol])
    );
    collaborators_until(&alice, channel_id, &[&alice, &bob, &carol]).await;
    collaborators_until(&bob, channel_id, &[&alice, &bob, &carol]).await;

    // Carol edits too; both others get it.
    update_notes(&carol, channel_id, carol_doc.push("?")).await;
    for (client, doc) in [(&alice, &alice_doc), (&bob, &bob_doc)] {
        let got = next_notes_update(client, channel_id).await;
        assert!(doc.apply_news(&got));
        assert_eq!(doc.text(), format!("{text}?"));
    }

    // Bob leaves: the others are told, and he may no longer send updates.
    bob.request(proto::LeaveChannelNotes { channel_id })
        .await
        .expect("Bob leaves the notes");
    collaborators_until(&alice, channel_id, &[&alice, &carol]).await;
    collaborators_until(&carol, channel_id, &[&alice, &carol]).await;
    refused(
        bob.request(proto::UpdateChannelNotes {
            channel_id,
            update: bob_doc.push("late").into(),
        })
        .await,
        ErrorCode::Forbidden,
    );

    // Carol's connection ends: that leaves the notes too.
    carol.close().await;
    collaborators_until(&alice, channel_id, &[&alice]).await;

    // Bob's refused update is nowhere.
    let fresh = server.client("dave").await;
    add_member(&alice, channel_id, &fresh, ChannelRole::Member).await;
    let joined = join_notes(&fresh, channel_id).await;
    assert_eq!(text_of_update(&joined.state), format!("{text}?"));
    server.stop().await;
}
db_test!(editors_converge_and_a_late_joiner_has_everything);

/// After a reconnect, RejoinChannelNotes with the old state vector returns only what the
/// client lacks (smaller than the whole state; applied, the texts match), re-subscribes,
/// and with the server's own state vector returns an update that adds nothing.
async fn a_rejoin_gets_only_what_it_lacks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let channel_id = channel_with(
        &alice,
        "notes-rejoin",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&carol, ChannelRole::Guest)],
    )
    .await;

    // A long document first: 20 edits of 50 characters.
    let alice_doc = NotesDoc::from_update(&join_notes(&alice, channel_id).await.state);
    for i in 0..20 {
        let line = format!("{i:02} {}\n", "lorem ipsum ".repeat(4));
        update_notes(&alice, channel_id, alice_doc.push(&line)).await;
    }
    let bob_doc = NotesDoc::from_update(&join_notes(&bob, channel_id).await.state);
    assert_eq!(bob_doc.text(), alice_doc.text());
    let bob_sv = bob_doc.state_vector_bytes();

    // Bob's connection drops; meanwhile Alice inserts and deletes.
    drop(bob);
    collaborators_until(&alice, channel_id, &[&alice]).await;
    update_notes(&alice, channel_id, alice_doc.insert(0, "head: ")).await;
    update_notes(&alice, channel_id, alice_doc.remove(100, 7)).await;
    update_notes(&alice, channel_id, alice_doc.push("tail.")).await;
    let expected = alice_doc.text();
    assert_ne!(bob_doc.text(), expected);

    let bob = server.client("bob").await;
    let rejoined = bob
        .request(proto::RejoinChannelNotes {
            channel_id,
            state_vector: bob_sv.into(),
        })
        .await
        .expect("Bob rejoins");
    assert!(rejoined.can_edit);
    assert_eq!(
        collaborator_keys(&rejoined.collaborators),
        client_keys(&[&alice, &bob])
    );
    assert_eq!(
        decode_sv(&rejoined.state_vector),
        alice_doc.state_vector(),
        "the server's state vector"
    );

    // The whole state, as a late joiner gets it (Carol, a guest, reads).
    let full = join_notes(&carol, channel_id).await;
    assert!(!full.can_edit, "a guest reads only");
    assert_eq!(text_of_update(&full.state), expected);
    assert!(
        rejoined.update.len() < full.state.len(),
        "the rejoin's update ({} bytes) is smaller than the whole state ({} bytes)",
        rejoined.update.len(),
        full.state.len()
    );
    bob_doc.apply(&rejoined.update);
    assert_eq!(bob_doc.text(), expected);
    assert_eq!(bob_doc.state_vector(), alice_doc.state_vector());

    // With the server's state vector there is nothing to add.
    let again = bob
        .request(proto::RejoinChannelNotes {
            channel_id,
            state_vector: rejoined.state_vector.clone(),
        })
        .await
        .expect("Bob rejoins again");
    let nothing = NotesDoc::from_update(&again.update);
    assert_eq!(
        nothing.state_vector(),
        StateVector::default(),
        "no new items"
    );
    assert_eq!(nothing.text(), "");
    let before = bob_doc.state_vector();
    bob_doc.apply(&again.update);
    assert_eq!(bob_doc.state_vector(), before);
    assert_eq!(bob_doc.text(), expected);

    // Re-subscribed: Alice's next edit reaches Bob's new connection, and his reaches her.
    update_notes(&alice, channel_id, alice_doc.push("+")).await;
    let got = next_notes_update(&bob, channel_id).await;
    assert!(bob_doc.apply_news(&got));
    assert_eq!(bob_doc.text(), format!("{expected}+"));
    update_notes(&bob, channel_id, bob_doc.insert(0, "~")).await;
    let got = next_notes_update(&alice, channel_id).await;
    assert!(alice_doc.apply_news(&got));
    assert_eq!(alice_doc.text(), format!("~{expected}+"));
    server.stop().await;
}
db_test!(a_rejoin_gets_only_what_it_lacks);

/// Every acknowledged update (sequential ones from two editors, and a pipelined burst)
/// is in the notes after a restart.
async fn acknowledged_updates_survive_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let channel_id = channel_with(
        &alice,
        "notes-durable",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member)],
    )
    .await;
    let alice_doc = NotesDoc::from_update(&join_notes(&alice, channel_id).await.state);
    let bob_doc = NotesDoc::from_update(&join_notes(&bob, channel_id).await.state);
    // Everything acknowledged, merged.
    let reference = NotesDoc::new();

    for i in 0..16 {
        let (client, doc) = if i % 2 == 0 {
            (&alice, &alice_doc)
        } else {
            (&bob, &bob_doc)
        };
        let update = doc.push(&format!("[{i}]"));
        update_notes(client, channel_id, update.clone()).await;
        reference.apply(&update);
    }
    // A pipelined burst: ten updates in flight at once, each acknowledged.
    let burst: Vec<Vec<u8>> = (0..10).map(|i| alice_doc.push(&format!("<{i}>"))).collect();
    let acks = futures::future::join_all(burst.iter().map(|update| {
        alice.request(proto::UpdateChannelNotes {
            channel_id,
            update: update.clone().into(),
        })
    }))
    .await;
    for (ack, update) in acks.into_iter().zip(&burst) {
        ack.expect("each update of the burst is acknowledged");
        reference.apply(update);
    }
    let expected = reference.text();
    assert!(
        expected.contains("[15]") && expected.contains("<9>"),
        "{expected}"
    );
    let expected_sv = reference.state_vector();

    alice.close().await;
    bob.close().await;
    let server = server.restart().await;

    let alice = server.client("alice").await;
    let joined = join_notes(&alice, channel_id).await;
    assert_eq!(text_of_update(&joined.state), expected);
    assert_eq!(decode_sv(&joined.state_vector), expected_sv);
    assert!(joined.can_edit);

    // And the notes are live again.
    let bob = server.client("bob").await;
    let bob_doc = NotesDoc::from_update(&join_notes(&bob, channel_id).await.state);
    let alice_doc = NotesDoc::from_update(&joined.state);
    update_notes(&alice, channel_id, alice_doc.push(" after")).await;
    let got = next_notes_update(&bob, channel_id).await;
    assert!(bob_doc.apply_news(&got));
    assert_eq!(bob_doc.text(), format!("{expected} after"));
    server.stop().await;
}
db_test!(acknowledged_updates_survive_a_restart);

// ---------------------------------------------------------------------------------------
// Randomized
// ---------------------------------------------------------------------------------------

/// xorshift64*: small, deterministic, good enough to pick operations.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        let state = seed ^ 0x9E37_79B9_7F4A_7C15;
        XorShift(if state == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            state
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next() % n
    }
}

/// `COLLAB_TEST_SEED`, or a fixed default; printed either way.
fn seed() -> u64 {
    let seed = match std::env::var("COLLAB_TEST_SEED") {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("COLLAB_TEST_SEED={value:?} is not a u64")),
        _ => 0x00C0_11AB_5EED,
    };
    eprintln!("channel notes random run: seed {seed} (replay with COLLAB_TEST_SEED={seed})");
    seed
}

struct Editor {
    login: &'static str,
    client: collab::client::Client,
    doc: NotesDoc,
}

/// Whether `doc` has exactly what `reference` has: the same items (state vector) and the
/// same text (a missing delete would leave more text).
fn caught_up(doc: &NotesDoc, reference: &NotesDoc) -> bool {
    doc.state_vector() == reference.state_vector() && doc.text() == reference.text()
}

/// Takes ChannelNotesUpdated at `editor` until its copy has everything acknowledged (all
/// of which is in `reference`).
async fn catch_up(editor: &Editor, channel_id: u64, reference: &NotesDoc, what: &str) {
    within(what, async {
        while !caught_up(&editor.doc, reference) {
            let update = next_notes_update(&editor.client, channel_id).await;
            editor.doc.apply(&update);
        }
    })
    .await
}

/// Three editors make random inserts and deletes at random places (each update
/// acknowledged), take the others' updates at random moments, and reconnect at random
/// (RejoinChannelNotes with their state vector); the server compacts along the way
/// (threshold 10). At the end every copy, the server's (a fresh join, and again after a
/// restart) and the merge of every acknowledged update have the same text.
///
/// The operations are a function of the seed (`COLLAB_TEST_SEED`, printed at the start):
/// a copy takes the others' updates only at its catch-ups, and then until it has
/// everything acknowledged so far, so a run replays (up to the order of concurrent
/// inserts at one place, which yrs breaks by the random client ids).
async fn random_edits_converge_through_compaction_and_rejoins(backend: Backend) {
    let seed = seed();
    let mut rng = XorShift::new(seed);
    let server = TestServer::start_with(backend, |config| config.compaction_threshold = 10).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let channel_id = channel_with(
        &alice,
        "notes-random",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&carol, ChannelRole::Member)],
    )
    .await;
    let name = notes_name(channel_id);

    let mut editors = Vec::new();
    for (login, client) in [("alice", alice), ("bob", bob), ("carol", carol)] {
        let joined = join_notes(&client, channel_id).await;
        editors.push(Editor {
            login,
            client,
            doc: NotesDoc::from_update(&joined.state),
        });
    }
    // Every acknowledged update, merged.
    let reference = NotesDoc::new();
    let mut edits = 0u32;
    let mut compacted = false;
    let (mut deliveries, mut rejoins) = (0u32, 0u32);

    const STEPS: u32 = 160;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    for step in 0..STEPS {
        let index = rng.below(editors.len() as u64) as usize;
        let roll = rng.below(100);
        let editor = &mut editors[index];
        let context = format!("seed {seed}, step {step}, {}", editor.login);
        if roll < 15 {
            // Take what the others did.
            deliveries += 1;
            catch_up(editor, channel_id, &reference, &context).await;
        } else if roll < 22 {
            // The connection drops; a new one rejoins with the copy's state vector.
            rejoins += 1;
            let state_vector = editor.doc.state_vector_bytes();
            let fresh = server.client(editor.login).await;
            drop(std::mem::replace(&mut editor.client, fresh));
            let rejoined = editor
                .client
                .request(proto::RejoinChannelNotes {
                    channel_id,
                    state_vector: state_vector.into(),
                })
                .await
                .unwrap_or_else(|error| panic!("{context}: the rejoin: {error}"));
            assert!(rejoined.can_edit, "{context}");
            editor.doc.apply(&rejoined.update);
            assert_eq!(
                decode_sv(&rejoined.state_vector),
                reference.state_vector(),
                "{context}: the server's state vector"
            );
            assert_eq!(
                editor.doc.text(),
                reference.text(),
                "{context}: the rejoin brings everything acknowledged"
            );
            assert_eq!(
                editor.doc.state_vector(),
                reference.state_vector(),
                "{context}"
            );
        } else {
            // An edit at a random place of the editor's (possibly stale) copy.
            let len = editor.doc.len();
            let update = if roll >= 75 && len > 0 {
                let at = rng.below(u64::from(len)) as u32;
                let count = 1 + rng.below(u64::from((len - at).min(5))) as u32;
                editor.doc.remove(at, count)
            } else {
                let at = rng.below(u64::from(len) + 1) as u32;
                let size = 1 + rng.below(4) as usize;
                let chunk: String = (0..size)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
                    .collect();
                editor.doc.insert(at, &chunk)
            };
            editor
                .client
                .request(proto::UpdateChannelNotes {
                    channel_id,
                    update: update.clone().into(),
                })
                .await
                .unwrap_or_else(|error| panic!("{context}: the update is acknowledged: {error}"));
            reference.apply(&update);
            edits += 1;
        }

        // Past the threshold several times over: the notes have been compacted. (The
        // compaction runs in the background and signals nothing: poll its table.)
        if !compacted && edits >= 40 {
            within(&format!("seed {seed}: a snapshot of {name}"), async {
                while !has_snapshot(&server, &name).await {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
            })
            .await;
            compacted = true;
        }
    }
    eprintln!(
        "seed {seed}: {edits} edits, {deliveries} catch-ups, {rejoins} rejoins, text of {} bytes",
        reference.len()
    );
    assert!(
        compacted,
        "seed {seed}: only {edits} edits: compaction never forced"
    );

    // Everyone catches up; the server (a fresh client's join) has the same text.
    for editor in &editors {
        let what = format!("seed {seed}: {} catching up at the end", editor.login);
        catch_up(editor, channel_id, &reference, &what).await;
    }
    let fresh = server.client("alice").await;
    let joined = join_notes(&fresh, channel_id).await;
    let server_text = text_of_update(&joined.state);
    assert_eq!(
        server_text,
        reference.text(),
        "seed {seed}: the server has every acknowledged update"
    );
    assert_eq!(
        decode_sv(&joined.state_vector),
        reference.state_vector(),
        "seed {seed}"
    );
    for editor in &editors {
        assert_eq!(
            editor.doc.text(),
            server_text,
            "seed {seed}: {}'s copy",
            editor.login
        );
        assert_eq!(
            editor.doc.state_vector(),
            reference.state_vector(),
            "seed {seed}"
        );
    }

    // The compacted notes load after a restart.
    for editor in &editors {
        editor.client.close().await;
    }
    fresh.close().await;
    let server = server.restart().await;
    let fresh = server.client("bob").await;
    let joined = join_notes(&fresh, channel_id).await;
    assert_eq!(
        text_of_update(&joined.state),
        server_text,
        "seed {seed}: after a restart"
    );
    server.stop().await;
}
db_test!(random_edits_converge_through_compaction_and_rejoins);

// ---------------------------------------------------------------------------------------
// Bad input and permissions
// ---------------------------------------------------------------------------------------

/// An update that does not decode is InvalidRequest and changes nothing; a guest reads
/// but may not edit; a member must join before editing; a non-member may not join; an
/// unknown channel is NotFound. None of the refused updates reaches anyone.
async fn bad_updates_and_read_only_guests_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let eve = server.client("eve").await;
    let dave = server.client("dave").await;
    let channel_id = channel_with(
        &alice,
        "notes-refusals",
        ChannelVisibility::Members,
        &[(&bob, ChannelRole::Member), (&eve, ChannelRole::Guest)],
    )
    .await;
    let alice_doc = NotesDoc::from_update(&join_notes(&alice, channel_id).await.state);
    update_notes(&alice, channel_id, alice_doc.push("base")).await;
    let base_sv = alice_doc.state_vector();

    // Undecodable updates.
    for garbage in [vec![1u8, 2, 3], vec![0xff; 16]] {
        refused(
            alice
                .request(proto::UpdateChannelNotes {
                    channel_id,
                    update: garbage.clone().into(),
                })
                .await,
            ErrorCode::InvalidRequest,
        );
    }

    // A member who has not joined may not edit.
    let bob_doc = NotesDoc::new();
    refused(
        bob.request(proto::UpdateChannelNotes {
            channel_id,
            update: bob_doc.push("sneaky").into(),
        })
        .await,
        ErrorCode::Forbidden,
    );

    // Once joined, Bob sees the document unchanged by the refusals.
    let joined = join_notes(&bob, channel_id).await;
    let bob_doc = NotesDoc::from_update(&joined.state);
    assert_eq!(bob_doc.text(), "base");
    assert_eq!(decode_sv(&joined.state_vector), base_sv);

    // The guest reads, and may not edit.
    let joined = join_notes(&eve, channel_id).await;
    assert!(!joined.can_edit, "a guest does not edit");
    let eve_state = joined.state.clone();
    let eve_doc = NotesDoc::from_update(&eve_state);
    assert_eq!(eve_doc.text(), "base");
    refused(
        eve.request(proto::UpdateChannelNotes {
            channel_id,
            update: eve_doc.push(" by the guest").into(),
        })
        .await,
        ErrorCode::Forbidden,
    );

    // A non-member sees nothing; an unknown channel is not found.
    refused(
        dave.request(proto::JoinChannelNotes { channel_id }).await,
        ErrorCode::Forbidden,
    );
    refused(
        dave.request(proto::UpdateChannelNotes {
            channel_id,
            update: NotesDoc::new().push("outsider").into(),
        })
        .await,
        ErrorCode::Forbidden,
    );
    refused(
        alice
            .request(proto::JoinChannelNotes {
                channel_id: channel_id + 1_000_000,
            })
            .await,
        ErrorCode::NotFound,
    );

    // Editing goes on: the first update Bob and Eve receive is Alice's next one (nothing
    // refused was relayed), and a fresh join has exactly "base!".
    update_notes(&alice, channel_id, alice_doc.push("!")).await;
    let got = next_notes_update(&bob, channel_id).await;
    assert!(bob_doc.apply_news(&got));
    assert_eq!(bob_doc.text(), "base!");
    // The guest receives edits: applied to what her join brought, "base!".
    let got = next_notes_update(&eve, channel_id).await;
    let eve_view = NotesDoc::from_update(&eve_state);
    assert!(eve_view.apply_news(&got));
    assert_eq!(eve_view.text(), "base!");
    let carol = server.client("carol").await;
    add_member(&alice, channel_id, &carol, ChannelRole::Member).await;
    let joined = join_notes(&carol, channel_id).await;
    assert_eq!(text_of_update(&joined.state), "base!");
    assert_eq!(decode_sv(&joined.state_vector), alice_doc.state_vector());
    server.stop().await;
}
db_test!(bad_updates_and_read_only_guests_are_refused);

// ---------------------------------------------------------------------------------------
// Over y-websocket too
// ---------------------------------------------------------------------------------------

/// The notes are the Yjs document `channel/<id>/notes`: an RPC edit reaches a member's
/// y-websocket client and back; a guest's socket is read-only; a non-member's upgrade is
/// refused with 403. Awareness goes both ways (and is not echoed to the RPC sender); a
/// late RPC joiner gets the known awareness states.
async fn notes_are_shared_with_y_websocket_clients(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let eve = server.client("eve").await;
    let channel_id = channel_with(
        &alice,
        "notes-yjs",
        ChannelVisibility::Members,
        &[
            (&bob, ChannelRole::Member),
            (&carol, ChannelRole::Member),
            (&eve, ChannelRole::Guest),
        ],
    )
    .await;
    let name = notes_name(channel_id);
    let alice_doc = NotesDoc::from_update(&join_notes(&alice, channel_id).await.state);
    update_notes(&alice, channel_id, alice_doc.push("from rpc")).await;

    // Bob's socket: the sync brings the RPC edit; later RPC edits arrive as updates.
    let mut bob_ws = YjsClient::join(&server, &name, "bob").await;
    assert_eq!(bob_ws.text(), "from rpc");
    update_notes(&alice, channel_id, alice_doc.push(" and more")).await;
    bob_ws.wait_text("from rpc and more").await;

    // Bob's edit over the socket reaches Alice as ChannelNotesUpdated.
    bob_ws.push("; from yjs").await;
    let got = next_notes_update(&alice, channel_id).await;
    assert!(alice_doc.apply_news(&got));
    assert_eq!(alice_doc.text(), "from rpc and more; from yjs");
    assert_eq!(alice_doc.state_vector(), bob_ws.state_vector());

    // Eve, a guest, reads over the socket; her update is refused with permission-denied.
    let mut eve_ws = YjsClient::join(&server, &name, "eve").await;
    assert_eq!(eve_ws.text(), "from rpc and more; from yjs");
    let denied_before = eve_ws.denied.len();
    eve_ws.push(" + guest").await;
    let answer = eve_ws
        .frame_where("the permission-denied answer", |f| {
            f.bytes.starts_with(&[2, 0])
        })
        .await;
    assert!(
        matches!(&answer.messages[..], [Message::Auth(Some(_))]),
        "{:?}",
        answer.messages
    );
    assert_eq!(eve_ws.denied.len(), denied_before + 1);

    // The next update Alice receives is Bob's next one, without the guest's text.
    bob_ws.push("!").await;
    let got = next_notes_update(&alice, channel_id).await;
    assert!(alice_doc.apply_news(&got));
    assert_eq!(alice_doc.text(), "from rpc and more; from yjs!");
    // (Eve's socket still receives: Bob's "!" reaches her diverged copy.)
    eve_ws
        .wait_until("Bob's '!' at Eve's socket", |c| c.text().contains('!'))
        .await;

    // A non-member's upgrade is refused before it happens; so is an unknown channel's.
    let dave_token = server.token("dave").await;
    assert_eq!(
        refused_status(&server, &name, Some(dave_token.as_str())).await,
        403
    );
    let unknown = notes_name(channel_id + 1_000_000);
    let status = refused_status(&server, &unknown, Some(dave_token.as_str())).await;
    assert!(status == 403 || status == 404, "unknown channel: {status}");

    // Awareness, RPC → socket.
    let alice_state = r#"{"user":"alice","cursor":4}"#;
    let (alice_aw, update) = awareness_update(&alice_doc.doc, alice_state);
    alice
        .send(proto::ChannelNotesAwareness {
            channel_id,
            update: update.into(),
        })
        .expect("the awareness is sent");
    bob_ws
        .wait_until("Alice's awareness at Bob's socket", |c| {
            c.awareness_state(alice_aw).as_deref() == Some(alice_state)
        })
        .await;

    // Socket → RPC. Alice's own state came before it, so were it echoed to her, the echo
    // would be her first ChannelNotesAwareness.
    let bob_state = r#"{"user":"bob","cursor":9}"#;
    bob_ws.set_awareness(bob_state).await;
    let bob_aw = bob_ws.client_id();
    let message = within(
        "a ChannelNotesAwareness at Alice",
        alice.recv::<proto::ChannelNotesAwareness>(),
    )
    .await
    .expect("the connection is open")
    .payload;
    assert_eq!(message.channel_id, channel_id);
    let states = awareness_states(&message.update);
    assert_eq!(
        states.get(&bob_aw).map(String::as_str),
        Some(bob_state),
        "{states:?}"
    );
    assert!(
        !states.contains_key(&alice_aw),
        "Alice's own awareness is not echoed to her: {states:?}"
    );

    // A late RPC joiner: the notes as edited by members only, and the known awareness.
    let joined = join_notes(&carol, channel_id).await;
    assert_eq!(
        text_of_update(&joined.state),
        "from rpc and more; from yjs!"
    );
    assert!(!joined.awareness.is_empty(), "the join carries awareness");
    let states = awareness_states(&joined.awareness);
    assert_eq!(
        states.get(&bob_aw).map(String::as_str),
        Some(bob_state),
        "{states:?}"
    );

    // A late socket has the same text.
    let fresh = YjsClient::join(&server, &name, "carol").await;
    assert_eq!(fresh.text(), "from rpc and more; from yjs!");

    fresh.close().await;
    eve_ws.close().await;
    bob_ws.close().await;
    server.stop().await;
}
db_test!(notes_are_shared_with_y_websocket_clients);
