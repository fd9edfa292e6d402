//! `notes-durable`: acknowledged durable updates per second on channel notes (each
//! `UpdateChannelNotes` is answered only after its group commit), and the time to join
//! notes with H updates of history.
//!
//! 1. Throughput: E members each keep K updates in flight (one typed character each)
//!    for D seconds; the figure is acknowledgements per second.
//! 2. Join: a channel's notes get H updates written straight to the log (one editor
//!    typing H characters), then are joined cold (the server loads the log), warm (in
//!    memory), and — after everyone leaves and the server unloads and compacts them
//!    (run the server with a short `--doc-idle-timeout`) — cold from the snapshot.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use collab::{
    client::Client,
    db::queries::documents::{NewUpdate, Transport},
    rpc::proto,
};
use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yrs::{ReadTxn, Text, Transact};

use crate::common::{Latencies, ProcSampler, Tokens, result, rpc_url};

#[derive(clap::Args, Debug)]
pub struct NotesArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long, default_value_t = 8)]
    pub editors: usize,
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Updates of history for the join measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub history: usize,
    /// Joins measured per phase.
    #[arg(long, default_value_t = 50)]
    pub joins: usize,
    /// A label for the database (`sqlite`, `postgres`) in the result.
    #[arg(long, default_value = "sqlite")]
    pub database: String,
}

async fn channel(admin: &Client, members: &[Arc<Client>], name: &str) -> anyhow::Result<u64> {
    let channel = admin
        .request(proto::CreateChannel {
            name: name.into(),
            parent_id: 0,
            visibility: proto::ChannelVisibility::Members as i32,
        })
        .await?
        .channel
        .map_or(0, |c| c.id);
    for member in members {
        admin
            .request(proto::InviteChannelMember {
                channel_id: channel,
                user_id: member.user_id(),
                role: proto::ChannelRole::Member as i32,
            })
            .await?;
        member
            .request(proto::RespondToChannelInvite {
                channel_id: channel,
                accept: true,
            })
            .await?;
    }
    Ok(channel)
}

/// `documents_loaded` from the server's `/stats`.
async fn documents_loaded(base: &str) -> anyhow::Result<u64> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(format!("GET /stats HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let stats: serde_json::Value = serde_json::from_str(body)?;
    Ok(stats["documents_loaded"].as_u64().unwrap_or(0))
}

async fn timed_joins(
    client: &Client,
    channel: u64,
    count: usize,
    leave: bool,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::default();
    for _ in 0..count {
        let started = Instant::now();
        client
            .request(proto::JoinChannelNotes {
                channel_id: channel,
            })
            .await?;
        latencies.record(started.elapsed());
        if leave {
            client
                .request(proto::LeaveChannelNotes {
                    channel_id: channel,
                })
                .await?;
        }
    }
    Ok(latencies)
}

async fn throughput(args: &NotesArgs, tokens: &Tokens) -> anyhow::Result<serde_json::Value> {
    let url = rpc_url(&args.url);
    let admin = Client::connect(&url, &tokens.token("notes-admin").await?).await?;
    let mut editors = Vec::new();
    let tag = crate::common::run_tag();
    for i in 0..args.editors {
        let token = tokens.token(&format!("notes-{tag}-{i}")).await?;
        editors.push(Arc::new(Client::connect(&url, &token).await?));
    }
    let channel = channel(
        &admin,
        &editors,
        &format!("durable-{}", crate::common::now_micros()),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let sampler = ProcSampler::start(args.server_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for editor in &editors {
        editor
            .request(proto::JoinChannelNotes {
                channel_id: channel,
            })
            .await?;
        let doc = Arc::new(Mutex::new(yrs::Doc::new()));
        for _ in 0..args.in_flight {
            let (editor, doc, latencies) = (editor.clone(), doc.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Latencies::default();
                while Instant::now() < deadline {
                    let update = {
                        let doc = doc.lock();
                        let text = doc.get_or_insert_text("text");
                        let before = doc.transact().state_vector();
                        {
                            let mut txn = doc.transact_mut();
                            let len = text.len(&txn);
                            text.insert(&mut txn, len, "x");
                        }
                        doc.transact().encode_state_as_update_v1(&before)
                    };
                    let sent = Instant::now();
                    let request = proto::UpdateChannelNotes {
                        channel_id: channel,
                        update: update.into(),
                    };
                    if editor.request(request).await.is_err() {
                        break;
                    }
                    mine.record(sent.elapsed());
                }
                latencies.lock().extend(mine);
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let server = sampler.finish();
    let mut latencies = std::mem::take(&mut *latencies.lock());
    let acked = latencies.0.len();
    let summary = latencies.summary();
    println!(
        "notes-durable ({}): {} editors x {} in flight: {acked} acknowledged in {:.1} s = {:.0} durable updates/s; ack latency {summary}",
        args.database,
        args.editors,
        args.in_flight,
        elapsed.as_secs_f64(),
        acked as f64 / elapsed.as_secs_f64()
    );
    Ok(json!({
        "acknowledged": acked,
        "durable_updates_per_second": acked as f64 / elapsed.as_secs_f64(),
        "ack_latency": summary,
        "server": server,
    }))
}

async fn join(args: &NotesArgs, tokens: &Tokens) -> anyhow::Result<serde_json::Value> {
    let url = rpc_url(&args.url);
    let admin = Client::connect(&url, &tokens.token("history-admin").await?).await?;
    let channel = channel(
        &admin,
        &[],
        &format!("history-{}", crate::common::now_micros()),
    )
    .await?;
    let db = tokens.db();
    let document = db
        .ensure_document(&format!("channel/{channel}/notes"))
        .await?;
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("text");
    let mut batch = Vec::with_capacity(5000);
    for i in 0..args.history {
        let before = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            text.insert(
                &mut txn,
                len,
                &((b'a' + (i % 26) as u8) as char).to_string(),
            );
        }
        batch.push(NewUpdate {
            document: document.id,
            data: doc.transact().encode_state_as_update_v1(&before),
            author: None,
            transport: Transport::Rpc,
        });
        if batch.len() == 5000 {
            db.append_updates(&batch).await?;
            batch.clear();
        }
    }
    db.append_updates(&batch).await?;

    let mut cold = timed_joins(&admin, channel, 1, false).await?;
    let cold = cold.summary()["max_ms"].clone();
    let mut warm = timed_joins(&admin, channel, args.joins, false).await?;
    let warm = warm.summary();
    admin
        .request(proto::LeaveChannelNotes {
            channel_id: channel,
        })
        .await?;
    // The server unloads (and compacts) idle notes after its --doc-idle-timeout.
    let waited = Instant::now();
    while documents_loaded(&args.url).await? > 0 && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut snapshot = Latencies::default();
    for _ in 0..args.joins.min(5) {
        snapshot.extend(timed_joins(&admin, channel, 1, true).await?);
        let waited = Instant::now();
        while documents_loaded(&args.url).await? > 0 && waited.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let snapshot = snapshot.summary();
    println!(
        "notes-durable ({}): join with {} updates of history: cold from the log {cold} ms; warm {warm}; cold from the snapshot {snapshot}",
        args.database, args.history
    );
    Ok(json!({
        "history": args.history,
        "join_cold_log_ms": cold,
        "join_warm": warm,
        "join_cold_snapshot": snapshot,
    }))
}

pub async fn run(args: NotesArgs, tokens: Tokens) -> anyhow::Result<()> {
    let throughput = throughput(&args, &tokens).await?;
    let join = if args.history > 0 {
        join(&args, &tokens).await?
    } else {
        json!(null)
    };
    result(json!({
        "scenario": "notes-durable",
        "database": args.database,
        "editors": args.editors,
        "in_flight": args.in_flight,
        "seconds": args.seconds,
        "throughput": throughput,
        "join": join,
    }));
    Ok(())
}
