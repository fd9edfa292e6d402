//! Compatibility with the real npm client: `tests/yjs-node/compat.mjs` drives stock
//! `y-websocket` 3.1.0 (on `yjs` 13.6.33 and `ws` 8.23.0) against `GET /yjs/{name}`:
//! concurrent edits converge, a late joiner has everything at its first sync, awareness
//! comes and goes, a read-only connection changes nothing, a document written before
//! a restart is there at the first sync after it, and channel notes are shared with
//! native editors.
//!
//! Needs `npm ci` in `tests/yjs-node`. Without its `node_modules` these tests report
//! themselves skipped, unless `COLLAB_REQUIRE_NODE=1` (CI), which makes that a failure.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use collab::auth::jwt::Permission;
use common::{Backend, TestServer};
use serde_json::Value;

/// How long one run of the script may take (its own steps time out after 10 s each).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

/// The script's directory, or `None` (the test is skipped) when `npm ci` has not run.
fn node_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/yjs-node");
    if dir.join("node_modules").is_dir() {
        return Some(dir);
    }
    if std::env::var("COLLAB_REQUIRE_NODE").is_ok_and(|v| v == "1") {
        panic!(
            "COLLAB_REQUIRE_NODE=1 but {} is missing: run npm ci in tests/yjs-node",
            dir.join("node_modules").display()
        );
    }
    eprintln!("skipped: run npm ci in tests/yjs-node");
    None
}

/// What one run of the script printed: its JSON lines.
struct Run {
    lines: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The first line reporting `event`.
    fn event(&self, event: &str) -> &Value {
        self.lines
            .iter()
            .find(|line| line["event"] == event)
            .unwrap_or_else(|| panic!("no {event:?} event in:\n{}", self.stdout))
    }

    fn events(&self, event: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["event"] == event).collect()
    }
}

/// Runs `node compat.mjs <scenario> <args...>` and checks that it succeeded: exit status
/// 0 and a last line `{"ok":true}` for this scenario.
async fn compat(dir: &Path, scenario: &str, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join("compat.mjs"))
        .arg(scenario)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("running node (is Node.js installed?): {error}"));
    let output = tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node compat.mjs {scenario} ran longer than {NODE_TIMEOUT:?}"))
        .expect("node compat.mjs runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                panic!("compat.mjs printed a line that is not JSON ({error}): {line}\nstderr:\n{stderr}")
            })
        })
        .collect();
    let last = lines.last().cloned().unwrap_or(Value::Null);
    assert!(
        output.status.success() && last["ok"] == true && last["scenario"] == scenario,
        "node compat.mjs {scenario} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    Run {
        lines,
        stdout,
        stderr,
    }
}

fn yjs_url(server: &TestServer) -> String {
    format!("ws://{}/yjs", server.addr)
}

async fn ws_token(
    server: &TestServer,
    login: &str,
    document: &str,
    permission: Permission,
) -> String {
    let user = server.user_id(login).await;
    server
        .state
        .auth
        .mint_ws_token(
            user,
            Some(document.to_string()),
            permission,
            Duration::from_secs(600),
        )
        .expect("mint a ws token")
        .token
}

/// Two clients insert at the same time and end with the same text holding every
/// insert once; a third client joining afterwards has that text at its first sync.
async fn concurrent_edits_converge_and_a_late_joiner_has_them_at_its_first_sync(backend: Backend) {
    let Some(dir) = node_dir() else { return };
    let server = TestServer::start(backend).await;
    let doc = "notes/compat/converge";
    let alice = server.token("alice").await;
    // Bob comes with a document-scoped write token, Carol with one for any document.
    let bob = ws_token(&server, "bob", doc, Permission::Write).await;
    let carol_id = server.user_id("carol").await;
    let carol = server
        .state
        .auth
        .mint_ws_token(carol_id, None, Permission::Write, Duration::from_secs(600))
        .expect("mint a ws token")
        .token;

    let url = yjs_url(&server);
    let args = [
        url.as_str(),
        doc,
        alice.as_str(),
        bob.as_str(),
        carol.as_str(),
    ];
    let run = compat(&dir, "converge", &args).await;
    let converged = run.event("converged");
    assert_eq!(converged["inserts"], 50, "{}", run.stdout);
    let text = converged["text"].as_str().expect("the converged text");
    let late = run.event("late-joiner");
    assert_eq!(late["text"], text, "{}", run.stdout);
    assert_eq!(late["winner"], converged["winner"], "{}", run.stdout);
    server.stop().await;
}
db_test!(concurrent_edits_converge_and_a_late_joiner_has_them_at_its_first_sync);

/// A's awareness state reaches B and a client joining later; when A's socket dies
/// without a goodbye, B sees A's state removed well before clients' own 30 s expiry
/// (the server removes a closed socket's states at once); a client leaving through
/// `provider.destroy()` disappears too.
async fn awareness_comes_and_goes_with_the_socket(backend: Backend) {
    let Some(dir) = node_dir() else { return };
    let server = TestServer::start(backend).await;
    let doc = "notes/compat/awareness";
    let alice = server.token("alice").await;
    let bob = server.token("bob").await;

    let url = yjs_url(&server);
    let run = compat(
        &dir,
        "awareness",
        &[url.as_str(), doc, alice.as_str(), bob.as_str()],
    )
    .await;
    let seen = run.events("seen");
    assert_eq!(seen.len(), 2, "b and the late joiner see a: {}", run.stdout);
    let removed = run.events("removed");
    assert_eq!(removed.len(), 2, "{}", run.stdout);
    assert_eq!(removed[0]["how"], "socket-terminated", "{}", run.stdout);
    let after = removed[0]["elapsed_ms"].as_u64().expect("elapsed_ms");
    assert!(
        after < 10_000,
        "a dead socket's awareness was removed after {after} ms: {}",
        run.stdout
    );
    assert_eq!(removed[1]["how"], "provider-destroy", "{}", run.stdout);
    server.stop().await;
}
db_test!(awareness_comes_and_goes_with_the_socket);

/// A read-only client (a `collab-ws` read token) syncs and receives edits; its own
/// edits are answered with permission denied, reach nobody and leave the server's
/// document as it was; it stays connected throughout.
async fn a_read_only_client_stays_connected_and_changes_nothing(backend: Backend) {
    let Some(dir) = node_dir() else { return };
    let server = TestServer::start(backend).await;
    let doc = "notes/compat/read-only";
    let writer = ws_token(&server, "alice", doc, Permission::Write).await;
    let reader = ws_token(&server, "bob", doc, Permission::Read).await;
    let fresh = server.token("carol").await;

    let url = yjs_url(&server);
    let args = [
        url.as_str(),
        doc,
        writer.as_str(),
        reader.as_str(),
        fresh.as_str(),
    ];
    let run = compat(&dir, "readonly", &args).await;
    let denied = run.event("denied");
    assert!(
        denied["denials"].as_u64().unwrap_or(0) >= 1,
        "{}",
        run.stdout
    );
    let connected = run.event("reader-connected");
    assert_eq!(connected["writer_text"], "base;after;", "{}", run.stdout);
    let state = run.event("server-state");
    assert_eq!(state["text"], "base;after;", "{}", run.stdout);
    assert_eq!(state["map"], serde_json::json!({}), "{}", run.stdout);
    assert!(
        !run.stderr.contains("Permission denied"),
        "denials are captured, not printed: {}",
        run.stderr
    );
    server.stop().await;
}
db_test!(a_read_only_client_stays_connected_and_changes_nothing);

/// A client writes; once another client has received the write (so it is committed),
/// the server restarts; a fresh client has the content at its first sync, and the
/// reloaded document takes further edits.
async fn a_document_is_there_at_the_first_sync_after_a_restart(backend: Backend) {
    let Some(dir) = node_dir() else { return };
    let server = TestServer::start(backend).await;
    let doc = "notes/compat/durable";
    let content = "written before the restart: ünïcödé ✓";
    let token = server.token("alice").await;

    let url = yjs_url(&server);
    let run = compat(&dir, "write", &[url.as_str(), doc, token.as_str(), content]).await;
    assert_eq!(run.event("acknowledged")["text"], content, "{}", run.stdout);

    let server = server.restart().await;
    // The access token lives in the database, so it is still good on the new server.
    let url = yjs_url(&server);
    let args = [url.as_str(), doc, token.as_str(), content];
    let run = compat(&dir, "read-after-restart", &args).await;
    assert_eq!(run.event("first-sync")["text"], content, "{}", run.stdout);
    assert_eq!(
        run.event("edited")["text"],
        format!("{content}+after-restart"),
        "{}",
        run.stdout
    );
    server.stop().await;
}
db_test!(a_document_is_there_at_the_first_sync_after_a_restart);

/// Refusals as the stock client sees them: the upgrade is answered with an HTTP status
/// and the client never connects.
async fn refused_connections_get_an_http_status(backend: Backend) {
    let Some(dir) = node_dir() else { return };
    let server = TestServer::start(backend).await;
    let url = yjs_url(&server);
    let token = server.token("alice").await;
    let scoped = ws_token(&server, "alice", "notes/compat/mine", Permission::Write).await;

    for (doc, token, status) in [
        // Channel notes are named by the channel's id.
        ("channel/general/notes", token.as_str(), "403"),
        // A document-scoped token opens that document only.
        ("notes/compat/theirs", scoped.as_str(), "403"),
        // Not a token at all.
        ("notes/compat/mine", "not-a-token", "401"),
    ] {
        let run = compat(&dir, "refused", &[url.as_str(), doc, token, status]).await;
        run.event("refused");
    }
    server.stop().await;
}
db_test!(refused_connections_get_an_http_status);

/// Channel notes are one document for both kinds of editor: what the stock npm client
/// writes on `channel/<id>/notes` reaches a native editor as `ChannelNotesUpdated`, and
/// what the native editor writes with `UpdateChannelNotes` is in the stock client's
/// first sync. Someone outside the channel is refused.
async fn channel_notes_are_shared_with_the_stock_client(backend: Backend) {
    let Some(dir) = node_dir() else { return };
    let server = TestServer::start(backend).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let channel = common::notes::channel_with(
        &alice,
        "compat",
        collab::rpc::proto::ChannelVisibility::Members,
        &[(&bob, collab::rpc::proto::ChannelRole::Member)],
    )
    .await;
    let name = common::notes::notes_name(channel);
    let url = yjs_url(&server);
    common::notes::join_notes(&bob, channel).await;

    // The stock client writes; Bob's editor receives it.
    let token = server.token("alice").await;
    let run = compat(&dir, "write", &[url.as_str(), &name, &token, "from-npm"]).await;
    run.event("acknowledged");
    let notes = common::notes::NotesDoc::new();
    while notes.text() != "from-npm" {
        notes.apply(&common::notes::next_notes_update(&bob, channel).await);
    }

    // Bob writes over RPC (text and the map the script checks); a fresh stock client
    // has it at its first sync.
    let update = {
        use yrs::{Map, ReadTxn, Transact};
        let before = notes.state_vector();
        let meta = notes.doc.get_or_insert_map("meta");
        let mut txn = notes.doc.transact_mut();
        let len = yrs::Text::len(&notes.text, &txn);
        yrs::Text::insert(&notes.text, &mut txn, len, "+rpc");
        meta.insert(&mut txn, "content", "from-npm+rpc");
        drop(txn);
        notes.doc.transact().encode_state_as_update_v1(&before)
    };
    common::notes::update_notes(&bob, channel, update).await;
    let bob_token = server.token("bob").await;
    let args = [
        url.as_str(),
        name.as_str(),
        bob_token.as_str(),
        "from-npm+rpc",
    ];
    let run = compat(&dir, "read-after-restart", &args).await;
    assert_eq!(
        run.event("first-sync")["text"],
        "from-npm+rpc",
        "{}",
        run.stdout
    );

    let stranger = server.token("mallory").await;
    let run = compat(&dir, "refused", &[url.as_str(), &name, &stranger, "403"]).await;
    run.event("refused");
    server.stop().await;
}
db_test!(channel_notes_are_shared_with_the_stock_client);
