//! `fanout`: E editors in one shared project (buffer operations, the relay path) or one
//! channel's notes (durable updates), each sending R operations per second for D
//! seconds; every other editor receives each one. The send time (µs on one monotonic
//! clock, see `micros_at`) travels in the payload — the first 8 bytes of an operation, or `@@<16 digits>!!`
//! inside the inserted text of a notes update — so each delivery's latency is measured
//! at its receiver. With `--peak`, every editor keeps `--in-flight` operations
//! outstanding instead, to find the most deliveries per second.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use collab::{client::Client, db::UserId, rpc::proto};
use parking_lot::Mutex;
use serde_json::json;
use yrs::{ReadTxn, Text, Transact};

use crate::common::{Latencies, ProcSampler, Tokens, merged, now_micros, result, rpc_url};

#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    /// The server, as `http://HOST:PORT`.
    #[arg(long)]
    pub url: String,
    /// The server's pid, to report its CPU and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long, default_value_t = 100)]
    pub editors: usize,
    /// Operations per second per editor.
    #[arg(long, default_value_t = 10)]
    pub rate: u64,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// `project` (buffer operations relayed from memory) or `notes` (durable updates).
    #[arg(long, default_value = "project")]
    pub target: String,
    /// Send as fast as acknowledgements allow, `--in-flight` per editor.
    #[arg(long)]
    pub peak: bool,
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
}

struct Setup {
    editors: Vec<Arc<Client>>,
    project: u64,
    channel: u64,
}

async fn setup(args: &FanoutArgs, tokens: &Tokens) -> anyhow::Result<Setup> {
    let url = rpc_url(&args.url);
    let mut editors = Vec::new();
    let tag = crate::common::run_tag();
    for i in 0..args.editors {
        let token = tokens.token(&format!("fanout-{tag}-{i}")).await?;
        editors.push(Arc::new(Client::connect(&url, &token).await?));
    }
    let host = editors[0].clone();
    let (mut project, mut channel) = (0, 0);
    if args.target == "notes" {
        channel = host
            .request(proto::CreateChannel {
                name: format!("fanout-{}", now_micros()),
                parent_id: 0,
                visibility: proto::ChannelVisibility::Members as i32,
            })
            .await?
            .channel
            .map_or(0, |c| c.id);
        for editor in &editors[1..] {
            host.request(proto::InviteChannelMember {
                channel_id: channel,
                user_id: editor.user_id(),
                role: proto::ChannelRole::Member as i32,
            })
            .await?;
            editor
                .request(proto::RespondToChannelInvite {
                    channel_id: channel,
                    accept: true,
                })
                .await?;
        }
        for editor in &editors {
            editor
                .request(proto::JoinChannelNotes {
                    channel_id: channel,
                })
                .await?;
        }
    } else {
        let room = host
            .request(proto::CreateRoom {})
            .await?
            .room
            .map_or(0, |r| r.id);
        let db = tokens.db();
        let host_id = UserId(host.user_id() as i32);
        for editor in &editors[1..] {
            let id = UserId(editor.user_id() as i32);
            db.request_contact(host_id, id).await?;
            db.respond_to_contact_request(id, host_id, true).await?;
            host.request(proto::Call {
                room_id: room,
                callee_user_id: editor.user_id(),
            })
            .await?;
            editor.request(proto::JoinRoom { room_id: room }).await?;
        }
        project = host
            .request(proto::ShareProject {
                room_id: room,
                worktrees: vec![proto::WorktreeMetadata {
                    id: 1,
                    root_name: "bench".into(),
                    visible: true,
                    ..Default::default()
                }],
            })
            .await?
            .project_id;
        for editor in &editors[1..] {
            editor
                .request(proto::JoinProject {
                    project_id: project,
                })
                .await?;
        }
    }
    Ok(Setup {
        editors,
        project,
        channel,
    })
}

/// Send and receive times, in µs on one monotonic clock: every editor lives in this
/// process, so a send stamp and a receive time compare exactly, and a receiver uses the
/// time its client stamped on the envelope (`received_at`) instead of reading the clock
/// again, one clock read per delivery as the raw relay's clients.
fn micros_at(at: Instant) -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_micros() as u64
}

/// A buffer operation carrying its send time.
fn operation(project: u64) -> proto::UpdateBuffer {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&micros_at(Instant::now()).to_le_bytes());
    data.resize(64, b'x');
    proto::UpdateBuffer {
        project_id: project,
        buffer_id: 1,
        operations: vec![proto::BufferOperation {
            kind: proto::buffer_operation::Kind::Edit as i32,
            data: data.into(),
        }],
    }
}

/// A notes update inserting the send time, from the editor's own document.
fn notes_update(doc: &Mutex<yrs::Doc>, channel: u64) -> proto::UpdateChannelNotes {
    let doc = doc.lock();
    let text = doc.get_or_insert_text("text");
    let before = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        let len = text.len(&txn);
        text.insert(
            &mut txn,
            len,
            &format!("@@{:016}!!", micros_at(Instant::now())),
        );
    }
    let update = doc.transact().encode_state_as_update_v1(&before);
    proto::UpdateChannelNotes {
        channel_id: channel,
        update: update.into(),
    }
}

/// The send times inside a notes update's inserted text.
fn notes_stamps(update: &[u8]) -> Vec<u64> {
    let mut found = Vec::new();
    let mut rest = update;
    while let Some(at) = rest.windows(2).position(|w| w == b"@@") {
        let digits = &rest[at + 2..];
        if digits.len() >= 18 && &digits[16..18] == b"!!" {
            if let Some(stamp) = std::str::from_utf8(&digits[..16])
                .ok()
                .and_then(|s| s.parse().ok())
            {
                found.push(stamp);
            }
            rest = &digits[18..];
        } else {
            rest = &rest[at + 2..];
        }
    }
    found
}

pub async fn run(args: FanoutArgs, tokens: Tokens) -> anyhow::Result<()> {
    anyhow::ensure!(args.editors >= 2, "fanout needs at least 2 editors");
    let setup = setup(&args, &tokens).await?;
    let notes = args.target == "notes";
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let drain = Duration::from_secs(5);

    // Receivers: each editor's reader records every delivery's latency as it decodes it
    // (`Client::on`), as the raw relay's clients do in theirs, until the deadline plus a
    // drain.
    let mut receivers = Vec::new();
    for editor in &setup.editors {
        let mine = Arc::new(Mutex::new(Latencies::default()));
        receivers.push(mine.clone());
        if notes {
            editor.on::<proto::ChannelNotesUpdated>(move |update| {
                let now = micros_at(update.received_at);
                let mut mine = mine.lock();
                for stamp in notes_stamps(&update.payload.update) {
                    mine.record_micros(now.saturating_sub(stamp));
                }
            });
        } else {
            editor.on::<proto::UpdateBuffer>(move |update| {
                let now = micros_at(update.received_at);
                let mut mine = mine.lock();
                for op in &update.payload.operations {
                    if let Some(stamp) = op.data.get(..8) {
                        let stamp = u64::from_le_bytes(stamp.try_into().unwrap_or_default());
                        mine.record_micros(now.saturating_sub(stamp));
                    }
                }
            });
        }
    }

    let sampler = ProcSampler::start(args.server_pid);
    let started = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut senders = Vec::new();
    let lanes = if args.peak { args.in_flight } else { 1 };
    let editors = setup.editors.len() as u64;
    for (index, editor) in setup.editors.iter().enumerate() {
        let doc = Arc::new(Mutex::new(yrs::Doc::new()));
        for lane in 0..lanes {
            let (editor, doc, sent) = (editor.clone(), doc.clone(), sent.clone());
            let (project, channel, rate, peak) =
                (setup.project, setup.channel, args.rate.max(1), args.peak);
            senders.push(tokio::spawn(async move {
                // Editors are spread evenly over one period, as independent typists
                // would be, not all at the same instant.
                let period = Duration::from_nanos(1_000_000_000 / rate);
                tokio::time::sleep(
                    period * index as u32 / editors as u32 + Duration::from_micros(lane as u64),
                )
                .await;
                let mut tick = tokio::time::interval(period);
                while Instant::now() < deadline {
                    if !peak {
                        tick.tick().await;
                    }
                    let outcome = if notes {
                        editor
                            .request(notes_update(&doc, channel))
                            .await
                            .map(|_| ())
                    } else {
                        editor.request(operation(project)).await.map(|_| ())
                    };
                    if outcome.is_err() {
                        break;
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    }
    for sender in senders {
        sender.await?;
    }
    let sending = started.elapsed();
    tokio::time::sleep_until((deadline + drain).into()).await;
    let mut latencies = Latencies::default();
    for receiver in receivers {
        latencies.extend(std::mem::take(&mut *receiver.lock()));
    }
    let server = sampler.finish();
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    let deliveries = latencies.0.len() as u64;
    let expected = sent * (args.editors as u64 - 1);
    // Deliveries a receiver's inbox had no room for (the load generator fell behind).
    let dropped: u64 = setup.editors.iter().map(|e| e.dropped_messages()).sum();
    let summary = latencies.summary();
    println!(
        "fanout ({}{}): {} editors, {} operations sent in {:.1} s, {deliveries} of {expected} deliveries, {:.0} deliveries/s; latency {summary}",
        args.target,
        if args.peak { ", peak" } else { "" },
        args.editors,
        sent,
        sending.as_secs_f64(),
        deliveries as f64 / sending.as_secs_f64(),
    );
    result(merged(
        json!({
            "scenario": if args.peak { "fanout-peak" } else { "fanout" },
            "target": args.target,
            "editors": args.editors,
            "rate": if args.peak { 0 } else { args.rate },
            "seconds": args.seconds,
            "operations_sent": sent,
            "deliveries": deliveries,
            "deliveries_expected": expected,
            "dropped_by_receivers": dropped,
            "deliveries_per_second": deliveries as f64 / sending.as_secs_f64(),
            "latency": summary,
        }),
        json!({ "server": server }),
    ));
    Ok(())
}
