//! `rooms`: many small rooms (e.g. 1,000 rooms × 5 clients). Each room is set up as
//! users do it — the host creates it and calls its contacts, who answer — and then
//! every participant moves its cursor `--rate` times a second for `--seconds`; the other
//! participants of the room receive each move as `PresenceUpdated`. The send time (µs
//! since the epoch) travels in the cursor's path, so latency is measured per delivery.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use collab::{client::Client, db::UserId, rpc::proto};
use parking_lot::Mutex;
use serde_json::json;

use crate::common::{Latencies, ProcSampler, Tokens, now_micros, result, rpc_url};

#[derive(clap::Args, Debug)]
pub struct RoomsArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long, default_value_t = 1000)]
    pub rooms: usize,
    /// Participants per room, the host included.
    #[arg(long, default_value_t = 5)]
    pub size: usize,
    /// Cursor moves per second per participant.
    #[arg(long, default_value_t = 1)]
    pub rate: u64,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

/// One room: its participants, host first.
async fn room(
    url: &str,
    tokens: &Tokens,
    tag: &str,
    index: usize,
    size: usize,
) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(size);
    for seat in 0..size {
        let token = tokens.token(&format!("room-{tag}-{index}-{seat}")).await?;
        clients.push(Client::connect(url, &token).await?);
    }
    let host = &clients[0];
    let room_id = host
        .request(proto::CreateRoom {})
        .await?
        .room
        .map_or(0, |r| r.id);
    let host_id = UserId(host.user_id() as i32);
    for guest in &clients[1..] {
        let id = UserId(guest.user_id() as i32);
        tokens.db().request_contact(host_id, id).await?;
        tokens
            .db()
            .respond_to_contact_request(id, host_id, true)
            .await?;
        host.request(proto::Call {
            room_id,
            callee_user_id: guest.user_id(),
        })
        .await?;
        guest.request(proto::JoinRoom { room_id }).await?;
    }
    Ok(clients)
}

fn cursor_move() -> proto::UpdatePresence {
    proto::UpdatePresence {
        status: proto::PresenceStatus::Active as i32,
        cursor: Some(proto::Cursor {
            path: now_micros().to_string(),
            line: 1,
            column: 1,
        }),
        viewport: None,
    }
}

pub async fn run(args: RoomsArgs, tokens: Tokens) -> anyhow::Result<()> {
    anyhow::ensure!(args.size >= 2, "a room needs at least 2 participants");
    let url = rpc_url(&args.url);
    let rss_before = args.server_pid.and_then(crate::common::rss_kib);
    let tag = crate::common::run_tag();
    let setup_started = Instant::now();
    let mut rooms = Vec::with_capacity(args.rooms);
    // Rooms are set up 20 at a time.
    for batch in (0..args.rooms).collect::<Vec<_>>().chunks(20) {
        let made = futures::future::join_all(
            batch
                .iter()
                .map(|index| room(&url, &tokens, &tag, *index, args.size)),
        )
        .await;
        for clients in made {
            rooms.push(clients?.into_iter().map(Arc::new).collect::<Vec<_>>());
        }
    }
    let setup = setup_started.elapsed();
    let clients = args.rooms * args.size;
    let rss_after = args.server_pid.and_then(crate::common::rss_kib);
    println!(
        "rooms: {} rooms of {} set up in {:.1} s ({:.0} rooms/s)",
        args.rooms,
        args.size,
        setup.as_secs_f64(),
        args.rooms as f64 / setup.as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let sampler = ProcSampler::start(args.server_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let total = clients as u32;
    for (index, participant) in rooms.iter().flatten().enumerate() {
        let (receiver, latencies) = (participant.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Latencies::default();
            let stop = tokio::time::sleep_until((deadline + Duration::from_secs(3)).into());
            tokio::pin!(stop);
            loop {
                let update = tokio::select! {
                    update = receiver.recv::<proto::PresenceUpdated>() => update,
                    _ = &mut stop => break,
                };
                let Ok(update) = update else {
                    break;
                };
                if let Some(sent) = update
                    .payload
                    .cursor
                    .and_then(|cursor| cursor.path.parse::<u64>().ok())
                {
                    mine.record_micros(now_micros().saturating_sub(sent));
                }
            }
            latencies.lock().extend(mine);
        }));
        let (sender, rate) = (participant.clone(), args.rate.max(1));
        tasks.push(tokio::spawn(async move {
            let period = Duration::from_nanos(1_000_000_000 / rate);
            // Participants are spread evenly over one period.
            tokio::time::sleep(period * index as u32 / total).await;
            let mut tick = tokio::time::interval(period);
            while Instant::now() < deadline {
                tick.tick().await;
                if sender.send(cursor_move()).is_err() {
                    break;
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let server = sampler.finish();
    let mut latencies = std::mem::take(&mut *latencies.lock());
    let deliveries = latencies.0.len();
    let summary = latencies.summary();
    let per_client = match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / clients as f64),
        _ => None,
    };
    println!(
        "rooms: {deliveries} cursor deliveries in {:.1} s ({:.0}/s); latency {summary}",
        elapsed.as_secs_f64(),
        deliveries as f64 / elapsed.as_secs_f64()
    );
    result(json!({
        "scenario": "rooms",
        "rooms": args.rooms,
        "size": args.size,
        "clients": clients,
        "setup_seconds": setup.as_secs_f64(),
        "rooms_per_second": args.rooms as f64 / setup.as_secs_f64(),
        "rate": args.rate,
        "deliveries": deliveries,
        "deliveries_per_second": deliveries as f64 / elapsed.as_secs_f64(),
        "latency": summary,
        "server_kib_per_client": per_client,
        "server": server,
    }));
    Ok(())
}
