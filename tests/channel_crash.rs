//! Durability across a crash: the real `collab` binary takes a stream of note updates
//! and chat messages from several pipelining tasks, is killed with SIGKILL in the middle
//! of it, and restarted on the same data. Every note update and every message that had
//! been acknowledged is there afterwards.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use collab::{client::Client, rpc::proto};
use common::Backend;
use parking_lot::Mutex;
use yrs::{GetString, ReadTxn, Text, Transact, Update, updates::decoder::Decode};

const BIN: &str = env!("CARGO_BIN_EXE_collab");

/// The stream is cut once at least this many of each were acknowledged.
const NOTES_BEFORE_KILL: usize = 300;
const MESSAGES_BEFORE_KILL: usize = 100;

struct Binary {
    child: Child,
    addr: String,
}

impl Drop for Binary {
    /// A failing test must not leave the server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(store: &[String]) -> Binary {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--chat-rate-limit",
            "100000",
        ])
        .args(store)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("collab starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("collab listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Binary { child, addr }
}

fn token(store: &[String], login: &str) -> String {
    let output = Command::new(BIN)
        .args(["token", "create", "--user", login])
        .args(store)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// An update that inserts `marker` and depends on nothing else (a fresh client each
/// time), so every acknowledged update can integrate whatever else was lost.
fn insertion(marker: &str) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("text");
    text.insert(&mut doc.transact_mut(), 0, marker);
    doc.transact()
        .encode_state_as_update_v1(&yrs::StateVector::default())
}

async fn sigkill_loses_nothing_acknowledged(backend: Backend) {
    let (config, dir, pg) = common::test_config(&backend).await;
    let mut store = vec!["--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(url) = config.store.database_url {
        store.extend(["--database-url".to_string(), url]);
    }
    let alice_token = token(&store, "alice");
    let mut server = start(&store);
    let url = format!("ws://{}/rpc", server.addr);
    let alice = Arc::new(Client::connect(&url, &alice_token).await.unwrap());
    let channel = alice
        .request(proto::CreateChannel {
            name: "durable".into(),
            parent_id: 0,
            visibility: proto::ChannelVisibility::Members as i32,
        })
        .await
        .unwrap()
        .channel
        .unwrap()
        .id;
    alice
        .request(proto::JoinChannelNotes {
            channel_id: channel,
        })
        .await
        .unwrap();

    // Four note writers and two chat writers, each keeping requests in flight until the
    // server dies under them.
    let acked_notes = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (alice, acked, next) = (alice.clone(), acked_notes.clone(), next.clone());
        let progress = progress.clone();
        writers.push(tokio::spawn(async move {
            loop {
                let marker = format!("[n{}]", next.fetch_add(1, Ordering::SeqCst));
                let update = proto::UpdateChannelNotes {
                    channel_id: channel,
                    update: insertion(&marker).into(),
                };
                match alice.request(update).await {
                    Ok(_) => {
                        acked.lock().push(marker);
                        progress.notify_one();
                    }
                    Err(error) => {
                        eprintln!("note writer stops: {error}");
                        return;
                    }
                }
            }
        }));
    }
    for _ in 0..2 {
        let (alice, acked, next) = (alice.clone(), acked_messages.clone(), next.clone());
        let progress = progress.clone();
        writers.push(tokio::spawn(async move {
            loop {
                let nonce = format!("m{}", next.fetch_add(1, Ordering::SeqCst));
                let message = proto::SendChannelMessage {
                    channel_id: channel,
                    body: format!("message {nonce}"),
                    nonce: nonce.clone(),
                    ..Default::default()
                };
                match alice.request(message).await {
                    Ok(_) => {
                        acked.lock().push(nonce);
                        progress.notify_one();
                    }
                    Err(error) => {
                        eprintln!("chat writer stops: {error}");
                        return;
                    }
                }
            }
        }));
    }

    common::within("enough acknowledgements", async {
        loop {
            let notes = acked_notes.lock().len();
            let messages = acked_messages.lock().len();
            if notes >= NOTES_BEFORE_KILL && messages >= MESSAGES_BEFORE_KILL {
                break;
            }
            progress.notified().await;
        }
    })
    .await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    for writer in writers {
        common::within("the writers to stop", writer).await.unwrap();
    }
    let notes = acked_notes.lock().clone();
    let messages = acked_messages.lock().clone();
    eprintln!(
        "acknowledged before SIGKILL: {} note updates, {} messages",
        notes.len(),
        messages.len()
    );

    let restarted = start(&store);
    let url = format!("ws://{}/rpc", restarted.addr);
    let alice = Client::connect(&url, &alice_token).await.unwrap();
    let joined = alice
        .request(proto::JoinChannelNotes {
            channel_id: channel,
        })
        .await
        .unwrap();
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("text");
    doc.transact_mut()
        .apply_update(Update::decode_v1(&joined.state).unwrap())
        .unwrap();
    let content = text.get_string(&doc.transact());
    let lost: Vec<_> = notes.iter().filter(|m| !content.contains(*m)).collect();
    assert!(lost.is_empty(), "acknowledged note updates lost: {lost:?}");

    let mut stored = Vec::new();
    let mut before = 0;
    loop {
        let page = alice
            .request(proto::GetChannelMessages {
                channel_id: channel,
                before_message_id: before,
                limit: 100,
            })
            .await
            .unwrap();
        before = page.messages.first().map_or(0, |m| m.id);
        stored.extend(page.messages.into_iter().map(|m| m.nonce));
        if page.done {
            break;
        }
    }
    let lost: Vec<_> = messages.iter().filter(|n| !stored.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");

    drop(restarted);
    if let Some(pg) = pg {
        pg.drop_database().await;
    }
}
db_test!(sigkill_loses_nothing_acknowledged);
