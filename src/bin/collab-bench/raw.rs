//! The ceiling: `raw-server` is a minimal WebSocket broadcast relay (tokio-tungstenite;
//! every binary frame a client sends goes to every other client; each connection's
//! writer drains its queue, feeds every queued frame and flushes once, with
//! `TCP_NODELAY`), and `raw` is the fanout workload against it. A frame is 64 bytes:
//! the send time (µs since the epoch, little-endian), the sender's number, and padding,
//! so each delivery's latency is measured at its receiver. The relay echoes each frame
//! to its sender too: that echo is the acknowledgement that lets `--peak` keep a bounded
//! number of frames in flight, as collab's clients do with `Ack`s. No auth, no envelopes, no database: what is
//! left is the cost of moving bytes, which collab's relay is compared with.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::common::{Latencies, ProcSampler, now_micros, result};

/// Frames queued per connection; a connection whose queue is full is too slow and is
/// cut (it stops receiving and its socket closes), as collab cuts slow consumers.
const QUEUE: usize = 4096;
/// How long a client waits for a connection or for its own frame to come back.
const PATIENCE: Duration = Duration::from_secs(6);

#[derive(clap::Args, Debug)]
pub struct RawServerArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
}

type Peers = Arc<Mutex<Vec<(u64, mpsc::Sender<Bytes>)>>>;

pub async fn serve(args: RawServerArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    println!("raw relay listening on ws://{}", listener.local_addr()?);
    let peers: Peers = Arc::default();
    let next = AtomicU64::new(0);
    loop {
        // A failed accept (e.g. out of descriptors) ends that connection, not the relay.
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = next.fetch_add(1, Ordering::Relaxed);
        let peers = peers.clone();
        tokio::spawn(async move {
            let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (mut sink, mut stream) = socket.split();
            let (queue, mut outgoing) = mpsc::channel::<Bytes>(QUEUE);
            peers.lock().push((id, queue));
            let writer = tokio::spawn(async move {
                let mut batch = Vec::new();
                while outgoing.recv_many(&mut batch, 256).await > 0 {
                    for frame in batch.drain(..) {
                        if sink.feed(Message::Binary(frame)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Binary(frame) = message {
                    // Queued under the lock (no copy of the list per frame); a full
                    // queue cuts that connection.
                    peers
                        .lock()
                        .retain(|(_, queue)| queue.try_send(frame.clone()).is_ok());
                }
            }
            peers.lock().retain(|(peer, _)| *peer != id);
            writer.abort();
        });
    }
}

#[derive(clap::Args, Debug)]
pub struct RawArgs {
    /// The relay, as `ws://HOST:PORT`.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Frames per second per client.
    #[arg(long, default_value_t = 10)]
    pub rate: u64,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Send as fast as echoes come back, `--in-flight` outstanding per client.
    #[arg(long)]
    pub peak: bool,
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
}

fn frame(sender: u64) -> Bytes {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&now_micros().to_le_bytes());
    data.extend_from_slice(&sender.to_le_bytes());
    data.resize(64, b'x');
    data.into()
}

pub async fn run(args: RawArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients >= 2, "raw needs at least 2 clients");
    let mut sockets = Vec::new();
    for _ in 0..args.clients {
        let connect = tokio_tungstenite::connect_async_with_config(&args.url, None, true);
        let (socket, _) = tokio::time::timeout(PATIENCE, connect).await??;
        sockets.push(socket);
    }
    // Every client is connected (and so registered) before anyone sends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let sampler = ProcSampler::start(args.server_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let clients = args.clients as u32;
    for (index, socket) in sockets.into_iter().enumerate() {
        let (mut sink, mut stream) = socket.split();
        let latencies = latencies.clone();
        // Own frames coming back release a slot of the window.
        let window = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
        let acks = window.clone();
        let me = index as u64;
        tasks.push(tokio::spawn(async move {
            let mut mine = Latencies::default();
            let stop = tokio::time::sleep_until((deadline + Duration::from_secs(3)).into());
            tokio::pin!(stop);
            loop {
                let message = tokio::select! {
                    message = stream.next() => message,
                    _ = &mut stop => break,
                };
                match message {
                    Some(Ok(Message::Binary(data))) if data.len() >= 16 => {
                        let sender = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
                        if sender == me {
                            acks.add_permits(1);
                            continue;
                        }
                        let stamp = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
                        mine.record_micros(now_micros().saturating_sub(stamp));
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            latencies.lock().extend(mine);
        }));
        let (sent, rate, peak) = (sent.clone(), args.rate.max(1), args.peak);
        tasks.push(tokio::spawn(async move {
            let period = Duration::from_nanos(1_000_000_000 / rate);
            tokio::time::sleep(period * index as u32 / clients).await;
            let mut tick = tokio::time::interval(period);
            while Instant::now() < deadline {
                if peak {
                    // A frame that never comes back (the relay cut us) ends this sender.
                    let Ok(Ok(permit)) = tokio::time::timeout(PATIENCE, window.acquire()).await
                    else {
                        return;
                    };
                    permit.forget();
                } else {
                    tick.tick().await;
                }
                if sink.send(Message::Binary(frame(me))).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let sending = (deadline - started).as_secs_f64();
    let server = sampler.finish();
    let sent = sent.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut *latencies.lock());
    let deliveries = latencies.0.len() as u64;
    let expected = sent * (args.clients as u64 - 1);
    let summary = latencies.summary();
    println!(
        "raw{}: {} clients, {sent} frames sent, {deliveries} of {expected} deliveries, {:.0} deliveries/s; latency {summary}",
        if args.peak { " (peak)" } else { "" },
        args.clients,
        deliveries as f64 / sending
    );
    result(json!({
        "scenario": if args.peak { "raw-peak" } else { "raw" },
        "clients": args.clients,
        "rate": if args.peak { 0 } else { args.rate },
        "seconds": args.seconds,
        "frames_sent": sent,
        "deliveries": deliveries,
        "deliveries_expected": expected,
        "deliveries_per_second": deliveries as f64 / sending,
        "latency": summary,
        "server": server,
    }));
    Ok(())
}
