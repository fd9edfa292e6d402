//! Measures the relay of `UpdateBuffer` from one host to many guests of a shared
//! project: per-delivery latency (p50 / p99 / max) at a steady rate, then the peak
//! deliveries per second with pipelined operations.
//!
//! ```sh
//! cargo run --release --example project_relay -- [guests=10] [rate=200] [seconds=10]
//! ```
//!
//! The server runs in this process (SQLite in a temp dir) on the same two-worker
//! runtime as the clients, which compete with it for the cores, as a server and its
//! local clients would. The send time travels in each operation's
//! payload, so latency is measured from the host's send to each guest's receipt.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use collab::{Config, client::Client, rpc::proto, serve};

struct Setup {
    host: Arc<Client>,
    guests: Vec<Arc<Client>>,
    project_id: u64,
    _server: serve::RunningServer,
    _dir: tempfile::TempDir,
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

/// One host and `guests` guests in a room, a project shared and joined by all.
async fn setup(guests: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.bind = "127.0.0.1:0".parse().unwrap();
    let server = serve::start(config).await.unwrap();
    let host = connect(&server, "host").await;
    let room = host.request(proto::CreateRoom {}).await.unwrap();
    let room_id = room.room.unwrap().id;
    let mut clients = Vec::new();
    for i in 0..guests {
        let login = format!("guest{i}");
        let guest = connect(&server, &login).await;
        let db = &server.state.db;
        let (a, b) = (host.user_id(), guest.user_id());
        let (a, b) = (collab::db::UserId(a as i32), collab::db::UserId(b as i32));
        db.request_contact(a, b).await.unwrap();
        db.respond_to_contact_request(b, a, true).await.unwrap();
        host.request(proto::Call {
            room_id,
            callee_user_id: guest.user_id(),
        })
        .await
        .unwrap();
        guest.request(proto::JoinRoom { room_id }).await.unwrap();
        clients.push(guest);
    }
    let project_id = host
        .request(proto::ShareProject {
            room_id,
            worktrees: vec![proto::WorktreeMetadata {
                id: 1,
                root_name: "bench".into(),
                visible: true,
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .project_id;
    for guest in &clients {
        guest
            .request(proto::JoinProject { project_id })
            .await
            .unwrap();
    }
    Setup {
        host: Arc::new(host),
        guests: clients.into_iter().map(Arc::new).collect(),
        project_id,
        _server: server,
        _dir: dir,
    }
}

fn operation(base: Instant, seq: u64) -> proto::UpdateBuffer {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
    data.extend_from_slice(&seq.to_le_bytes());
    data.resize(64, b'x');
    proto::UpdateBuffer {
        project_id: 0,
        buffer_id: 1,
        operations: vec![proto::BufferOperation {
            kind: proto::buffer_operation::Kind::Edit as i32,
            data: data.into(),
        }],
    }
}

/// Each guest counts `expected` deliveries and records their latencies (µs).
fn receivers(
    setup: &Setup,
    base: Instant,
    expected: u64,
) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    setup
        .guests
        .iter()
        .map(|guest| {
            let guest = guest.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(expected as usize);
                for _ in 0..expected {
                    let update = guest
                        .recv_timeout::<proto::UpdateBuffer>(Duration::from_secs(30))
                        .await
                        .expect("delivery");
                    let data = &update.payload.operations[0].data;
                    let sent = u64::from_le_bytes(data[..8].try_into().unwrap());
                    let now = base.elapsed().as_nanos() as u64;
                    latencies.push(now.saturating_sub(sent) / 1000);
                }
                latencies
            })
        })
        .collect()
}

fn report(label: &str, mut latencies: Vec<u64>, deliveries: u64, elapsed: Duration) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{label}: {deliveries} deliveries in {elapsed:.2?} = {:.0}/s; latency p50 {} µs, p99 {} µs, max {} µs",
        deliveries as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
        latencies.last().copied().unwrap_or(0),
    );
}

async fn run(guests: usize, rate: u64, seconds: u64) {
    let setup = setup(guests).await;
    let base = Instant::now();
    let with_project = |mut op: proto::UpdateBuffer| {
        op.project_id = setup.project_id;
        op
    };

    // Steady rate: one operation every 1/rate s, each acknowledged before the next.
    let count = rate * seconds;
    let handles = receivers(&setup, base, count);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for seq in 0..count {
        tick.tick().await;
        let host = setup.host.clone();
        let op = with_project(operation(base, seq));
        tokio::spawn(async move { host.request(op).await.expect("acknowledged") });
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.unwrap());
    }
    report(
        &format!("steady {rate} ops/s to {guests} guests"),
        latencies,
        count * guests as u64,
        started.elapsed(),
    );

    // Peak: 20,000 operations, 64 in flight at a time.
    let count = 20_000u64;
    let handles = receivers(&setup, base, count);
    let started = Instant::now();
    let window = Arc::new(tokio::sync::Semaphore::new(64));
    for seq in 0..count {
        let permit = window.clone().acquire_owned().await.unwrap();
        let host = setup.host.clone();
        let op = with_project(operation(base, seq));
        tokio::spawn(async move {
            host.request(op).await.expect("acknowledged");
            drop(permit);
        });
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.unwrap());
    }
    report(
        &format!("peak (64 in flight) to {guests} guests"),
        latencies,
        count * guests as u64,
        started.elapsed(),
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("numeric arguments"))
        .collect();
    let guests = args.first().copied().unwrap_or(10) as usize;
    let rate = args.get(1).copied().unwrap_or(200);
    let seconds = args.get(2).copied().unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(guests, rate, seconds));
}
