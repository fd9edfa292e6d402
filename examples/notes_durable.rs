//! Measures channel notes durability: acknowledged durable updates per second (each
//! `UpdateChannelNotes` is answered only after its group commit), and the time to join
//! notes with a long history.
//!
//! ```sh
//! cargo run --release --example notes_durable -- [editors=8] [in_flight=32] [seconds=5] [history=100000]
//! COLLAB_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release --example notes_durable
//! ```
//!
//! The server runs in this process on a two-worker runtime, with SQLite in a temp dir
//! (WAL, full fsync), or with a fresh PostgreSQL database created under
//! `COLLAB_BENCH_DATABASE_URL` and dropped afterwards.
//!
//! 1. Throughput: `editors` members each keep `in_flight` updates outstanding (one
//!    inserted character each, as typing produces) for `seconds`.
//! 2. Join: notes whose log holds `history` updates (written straight to the log), joined
//!    cold (loaded from the log), then warm (in memory), then cold again after
//!    compaction (loaded from the snapshot).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use collab::{
    Config,
    client::Client,
    db::queries::documents::{NewUpdate, Transport},
    rpc::proto,
    serve,
};
use parking_lot::Mutex;
use sea_orm::ConnectionTrait;
use yrs::{ReadTxn, StateVector, Text, Transact};

fn arg(index: usize, default: u64) -> u64 {
    std::env::args()
        .nth(index)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

async fn connect(server: &serve::RunningServer, login: &str) -> Client {
    let state = &server.state;
    let user = state.db.ensure_user(login, None, false).await.unwrap().0;
    let token = state
        .auth
        .mint_access_token(&state.db, &user, None, Duration::from_secs(3600))
        .await
        .unwrap()
        .token;
    Client::connect(&format!("ws://{}/rpc", server.addr), &token)
        .await
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A channel created by `admin` with `members` invited and accepted.
async fn channel(admin: &Client, members: &[Client], name: &str) -> u64 {
    let channel = admin
        .request(proto::CreateChannel {
            name: name.into(),
            parent_id: 0,
            visibility: proto::ChannelVisibility::Members as i32,
        })
        .await
        .unwrap()
        .channel
        .unwrap()
        .id;
    for member in members {
        admin
            .request(proto::InviteChannelMember {
                channel_id: channel,
                user_id: member.user_id(),
                role: proto::ChannelRole::Member as i32,
            })
            .await
            .unwrap();
        member
            .request(proto::RespondToChannelInvite {
                channel_id: channel,
                accept: true,
            })
            .await
            .unwrap();
    }
    channel
}

async fn throughput(server: &serve::RunningServer, editors: usize, in_flight: usize, seconds: u64) {
    let admin = connect(server, "bench-admin").await;
    let mut clients = Vec::new();
    for i in 0..editors {
        clients.push(connect(server, &format!("editor{i}")).await);
    }
    let channel = channel(&admin, &clients, "throughput").await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for client in clients {
        let client = Arc::new(client);
        client
            .request(proto::JoinChannelNotes {
                channel_id: channel,
            })
            .await
            .unwrap();
        let doc = Arc::new(Mutex::new(yrs::Doc::new()));
        for _ in 0..in_flight {
            let (client, doc, latencies) = (client.clone(), doc.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let update = {
                        let doc = doc.lock();
                        let text = doc.get_or_insert_text("text");
                        let before = doc.transact().state_vector();
                        let mut txn = doc.transact_mut();
                        let len = text.len(&txn);
                        text.insert(&mut txn, len, "x");
                        drop(txn);
                        doc.transact().encode_state_as_update_v1(&before)
                    };
                    let sent = Instant::now();
                    client
                        .request(proto::UpdateChannelNotes {
                            channel_id: channel,
                            update: update.into(),
                        })
                        .await
                        .unwrap();
                    latencies.lock().push(sent.elapsed());
                }
            }));
        }
    }
    let started = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut latencies = latencies.lock().clone();
    latencies.sort();
    let batches = &server.state.metrics.document_commit_batch;
    let commit = &server.state.metrics.document_commit_seconds;
    println!(
        "throughput: {editors} editors x {in_flight} in flight for {:.1} s: {} acknowledged durable updates, {:.0} updates/s",
        elapsed.as_secs_f64(),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  ack latency p50 {} p99 {} max {}; {} commits, {:.1} updates per commit, {} per commit on average",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        batches.get_sample_count(),
        batches.get_sample_sum() / batches.get_sample_count().max(1) as f64,
        ms(Duration::from_secs_f64(
            commit.get_sample_sum() / commit.get_sample_count().max(1) as f64
        )),
    );
}

/// How long a `JoinChannelNotes` takes, and the size of the state it returns.
async fn timed_join(client: &Client, channel: u64) -> (Duration, usize) {
    let started = Instant::now();
    let joined = client
        .request(proto::JoinChannelNotes {
            channel_id: channel,
        })
        .await
        .unwrap();
    (started.elapsed(), joined.state.len())
}

async fn join(server: &serve::RunningServer, history: usize) {
    let admin = connect(server, "history-admin").await;
    let reader = connect(server, "history-reader").await;
    let channel = channel(&admin, std::slice::from_ref(&reader), "history").await;
    let name = format!("channel/{channel}/notes");
    let db = &server.state.db;
    let document = db.ensure_document(&name).await.unwrap();

    // One editor typing `history` characters, one update each, written to the log.
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("text");
    let mut batch = Vec::new();
    let written = Instant::now();
    for i in 0..history {
        let before = doc.transact().state_vector();
        let len = text.len(&doc.transact());
        let character = ((b'a' + (i % 26) as u8) as char).to_string();
        text.insert(&mut doc.transact_mut(), len, &character);
        batch.push(NewUpdate {
            document: document.id,
            data: doc.transact().encode_state_as_update_v1(&before),
            author: None,
            transport: Transport::Rpc,
        });
        if batch.len() == 5000 {
            db.append_updates(&batch).await.unwrap();
            batch.clear();
        }
    }
    db.append_updates(&batch).await.unwrap();
    let full_state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    println!(
        "join: {history} updates of history written in {:.1} s (state {} bytes)",
        written.elapsed().as_secs_f64(),
        full_state.len()
    );

    let (cold, size) = timed_join(&reader, channel).await;
    println!(
        "  cold join (loads {history} logged updates): {} ({size} bytes)",
        ms(cold)
    );
    let mut warm = Vec::new();
    for _ in 0..200 {
        warm.push(timed_join(&admin, channel).await.0);
    }
    warm.sort();
    println!(
        "  warm join (in memory), 200 joins: p50 {} p99 {} max {}",
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.99)),
        ms(*warm.last().unwrap())
    );

    // Leave so the document unloads; unloading compacts the log into a snapshot.
    for client in [&admin, &reader] {
        client
            .request(proto::LeaveChannelNotes {
                channel_id: channel,
            })
            .await
            .unwrap();
    }
    let unloaded = Instant::now();
    while server.state.documents.loaded() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  unloaded and compacted {:.1} s after the last editor left (idle timeout 1 s)",
        unloaded.elapsed().as_secs_f64()
    );
    let (cold, _) = timed_join(&reader, channel).await;
    let mut colds = vec![cold];
    for _ in 0..4 {
        reader
            .request(proto::LeaveChannelNotes {
                channel_id: channel,
            })
            .await
            .unwrap();
        while server.state.documents.loaded() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        colds.push(timed_join(&reader, channel).await.0);
    }
    colds.sort();
    println!(
        "  cold join from the snapshot, 5 joins: p50 {} max {}",
        ms(percentile(&colds, 0.5)),
        ms(*colds.last().unwrap())
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (editors, in_flight, seconds, history) = (
            arg(1, 8) as usize,
            arg(2, 32) as usize,
            arg(3, 5),
            arg(4, 100_000) as usize,
        );
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.doc_idle_timeout = Duration::from_secs(1);
        let pg = std::env::var("COLLAB_BENCH_DATABASE_URL").ok();
        let mut drop_database = None;
        if let Some(base) = &pg {
            let name = format!("collab_bench_{}", std::process::id());
            let admin = sea_orm::Database::connect(base).await.unwrap();
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap();
            let mut url = url::Url::parse(base).unwrap();
            url.set_path(&format!("/{name}"));
            config.store.database_url = Some(url.to_string());
            drop_database = Some((admin, name));
        }
        println!(
            "notes-durable on {}",
            if pg.is_some() {
                "PostgreSQL"
            } else {
                "SQLite (WAL, synchronous=FULL)"
            }
        );
        let server = serve::start(config).await.unwrap();
        throughput(&server, editors, in_flight, seconds).await;
        join(&server, history).await;
        server.shutdown().await.unwrap();
        if let Some((admin, name)) = drop_database {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .unwrap();
        }
    });
}
