//! `yjs`: Yjs update delivery through a y-websocket server (collab's `/yjs/<doc>`,
//! `@y/websocket-server`) or, with `--hocuspocus`, Hocuspocus. Each client is a yrs `Doc`
//! over tokio-tungstenite: it sends SyncStep1, answers the server's SyncStep1 with
//! SyncStep2 and is ready on the server's SyncStep2. Then each client sends `--rate`
//! updates/s for `--seconds`, each appending the chunk `"<micros>|"` (send time) to text
//! `text`.
//!
//! Latency travels in the document: every client observes its text and, for each remote
//! transaction (local edits carry an origin and are skipped), splits the inserted strings
//! on `|` and reads every run of digits as a send time. That holds whether the server
//! relays updates one by one, merged (Hocuspocus), or echoed to the sender (an echo
//! inserts nothing), since chunks are always appended after whole chunks. Send times
//! older than the run's start (text a persistent server kept) are ignored. A delivery is
//! one chunk reaching one other client of its document: `sent × (members − 1)` are
//! expected; draining stops when all have arrived, or after 2 s.
//!
//! Hocuspocus 2–4 frames each message as `varString(document) • varUint(type) • …` (Sync 0,
//! Awareness 1, Auth 2, QueryAwareness 3, SyncReply 4, Stateless 5, Close 7, SyncStatus 8)
//! and queues a socket's messages until an Auth `[2, 0, varString(token),
//! varString(version)]` passes its `onAuthenticate` hooks (also when none is configured),
//! so, like `@hocuspocus/provider`, this client sends Auth first (empty token without
//! `--token`), then SyncStep1; the URL is used as given.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until, timeout_at};
use tokio::{net::TcpStream, sync::Semaphore, task::JoinSet};
use tokio_tungstenite::tungstenite::{Message as Ws, protocol::WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use yrs::types::Delta;
use yrs::updates::{decoder::Decode, encoder::Encode};
use yrs::{Any, Doc, Observable, Out, ReadTxn, StateVector, Text, TextRef, Transact, Update};

use collab::yjs::protocol::{self, Message};

use crate::common::{Latencies, ProcSampler, now_micros, result};

/// Connecting every client must fit in `SETUP`, draining in `DRAIN`; the run ends by
/// `--seconds` + `GRACE` whatever happens.
const SETUP: Duration = Duration::from_secs(6);
const DRAIN: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(10);
const CONNECTING_AT_ONCE: usize = 64;
/// The origin of local edits, which the delivery observer skips.
const LOCAL: &str = "collab-bench";

#[derive(clap::Args, Debug)]
pub struct YjsArgs {
    /// `ws://HOST:PORT/yjs` (collab) or `ws://HOST:PORT`; `/<doc>` is appended unless --hocuspocus.
    #[arg(long)]
    pub url: String,
    /// Access token: `?token=T`, or the Auth message's token with --hocuspocus.
    #[arg(long)]
    pub token: Option<String>,
    /// The server's pid, for its CPU and memory figures.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Clients, spread round-robin over the documents.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Documents `<doc-prefix><i>`.
    #[arg(long, default_value_t = 1)]
    pub docs: usize,
    /// Updates a second per client.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long clients send.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Speak Hocuspocus's framing (document-name prefix, Auth message first).
    #[arg(long)]
    pub hocuspocus: bool,
    #[arg(long, default_value = "bench-")]
    pub doc_prefix: String,
    /// Apply every received update to the client's yrs document, as an editor would.
    /// Off by default: then receivers read the send times straight from the update bytes
    /// (senders still edit a real yrs document), so the load generator's own CPU is not
    /// what limits the run: applying every update to 100 documents saturates it near
    /// 50–60 k deliveries/s whichever server it drives.
    #[arg(long)]
    pub apply_updates: bool,
}

/// Counters the client tasks update (they survive a task being aborted).
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    /// Updates sent to each document.
    doc_sent: Vec<AtomicU64>,
    delivered: AtomicU64,
    closed: AtomicU64,
    bad_frames: AtomicU64,
}

struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    doc: Doc,
    text: TextRef,
    /// Hocuspocus: the document name every message starts with.
    address: Option<String>,
    token: String,
    doc_index: usize,
    /// This client's number, written into its stamps.
    index: usize,
    bad_frames: u64,
    apply_updates: bool,
    /// Where send times read from raw updates go (light receivers, once running).
    stamps: Option<StampSink>,
    /// The last frame's outcome, kept for its buffers.
    scratch: Outcome,
}

/// Light receivers' latency samples: the shared list and the run's start, as the
/// observer of applied updates has them.
struct StampSink {
    samples: Arc<Mutex<Vec<u64>>>,
    shared: Arc<Shared>,
    go_micros: u64,
}

/// What a received frame asks for.
#[derive(Default)]
struct Outcome {
    replies: Vec<Vec<u8>>,
    step2: bool,
    denied: Option<String>,
    closed: bool,
    /// Send times found in updates that were not applied (light receivers).
    stamps: Vec<u64>,
}

/// `edit_frame` inserts `<send time: 16 digits of µs><sender: 6 digits>|`.
const STAMP_DIGITS: usize = 16 + 6;

/// The send time in one inserted chunk (without its `|`), unless `me` sent it. Digits
/// are read by hand: this runs for every delivery, in the load generator whose CPU the
/// server shares.
fn parse_stamp(chunk: &[u8], me: usize) -> Option<u64> {
    if chunk.len() != STAMP_DIGITS {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u64, |value, &byte| {
            let digit = byte.wrapping_sub(b'0');
            (digit <= 9).then(|| value * 10 + u64::from(digit))
        })
    };
    let (stamp, sender) = (number(&chunk[..16])?, number(&chunk[16..])?);
    (sender != me as u64).then_some(stamp)
}

/// The send times in an update's raw bytes, except `me`'s own (a server may echo them):
/// a v1 update carries inserted strings verbatim, so each `|` ends a stamp.
fn raw_stamps(update: &[u8], me: usize, found: &mut Vec<u64>) {
    for (at, _) in update.iter().enumerate().filter(|(_, b)| **b == b'|') {
        if let Some(start) = at.checked_sub(STAMP_DIGITS) {
            found.extend(parse_stamp(&update[start..at], me));
        }
    }
}

fn var_uint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A lib0 reader over one Hocuspocus message.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn var_uint(&mut self) -> anyhow::Result<u64> {
        let (mut value, mut shift) = (0u64, 0u32);
        loop {
            let (&byte, rest) = self.0.split_first().context("truncated message")?;
            self.0 = rest;
            if shift > 56 {
                bail!("varUint too long");
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn bytes(&mut self) -> anyhow::Result<&'a [u8]> {
        let len = usize::try_from(self.var_uint()?)?;
        anyhow::ensure!(len <= self.0.len(), "truncated message");
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }
}

impl Client {
    /// Connects client `index` and syncs it with the server.
    async fn connect(args: &YjsArgs, index: usize) -> anyhow::Result<Client> {
        let doc_index = index % args.docs;
        let name = format!("{}{doc_index}", args.doc_prefix);
        let mut url = url::Url::parse(args.url.trim_end_matches('/')).context("--url")?;
        if !args.hocuspocus {
            url.path_segments_mut()
                .map_err(|()| anyhow!("--url cannot take a path"))?
                .pop_if_empty()
                .push(&name);
            if let Some(token) = &args.token {
                url.query_pairs_mut().append_pair("token", token);
            }
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
                .await
                .with_context(|| format!("connecting to {url}"))?;
        let doc = Doc::new();
        let text = doc.get_or_insert_text("text");
        let (address, token) = (
            args.hocuspocus.then_some(name),
            args.token.clone().unwrap_or_default(),
        );
        let mut client = Client {
            socket,
            doc,
            text,
            address,
            token,
            doc_index,
            index,
            bad_frames: 0,
            apply_updates: args.apply_updates,
            stamps: None,
            scratch: Outcome::default(),
        };
        if client.address.is_some() {
            let auth = client.auth_frame();
            client.send(auth).await?;
        }
        let sv = client.doc.transact().state_vector().encode_v1();
        let step1 = client.frame(|out| protocol::sync_step1(out, &sv));
        client.send(step1).await?;
        loop {
            let frame = client.recv().await?;
            let synced = client.on_frame(&frame).await?;
            if client.bad_frames > 0 {
                bail!(
                    "a malformed frame in the handshake: {:02x?}",
                    &frame[..frame.len().min(24)]
                );
            }
            if synced {
                return Ok(client);
            }
        }
    }

    /// One message: the Hocuspocus address (if any), then what `build` writes.
    fn frame(&self, build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        if let Some(address) = &self.address {
            var_bytes(&mut out, address.as_bytes());
        }
        build(&mut out);
        out
    }

    /// Hocuspocus's Auth message, as `@hocuspocus/provider` sends it on open.
    fn auth_frame(&self) -> Vec<u8> {
        self.frame(|out| {
            out.extend_from_slice(&[2, 0]); // Auth, Token
            var_bytes(out, self.token.as_bytes());
            var_bytes(out, b"collab-bench");
        })
    }

    /// Appends a timestamp chunk locally; returns the update message.
    fn edit_frame(&self) -> Vec<u8> {
        let chunk = format!("{:016}{:06}|", now_micros(), self.index);
        let update = {
            let mut txn = self.doc.transact_mut_with(LOCAL);
            let end = self.text.len(&txn);
            self.text.insert(&mut txn, end, &chunk);
            txn.encode_update_v1()
        };
        self.frame(|out| protocol::update(out, &update))
    }

    fn sync(&self, kind: u64, payload: &[u8], outcome: &mut Outcome) -> anyhow::Result<()> {
        if kind == 0 {
            let sv =
                StateVector::decode_v1(payload).map_err(|e| anyhow!("bad state vector: {e}"))?;
            let diff = self.doc.transact().encode_state_as_update_v1(&sv);
            outcome
                .replies
                .push(self.frame(|out| protocol::sync_step2(out, &diff)));
            return Ok(());
        }
        anyhow::ensure!(kind <= 2, "unknown sync message type {kind}");
        if !self.apply_updates {
            raw_stamps(payload, self.index, &mut outcome.stamps);
            outcome.step2 |= kind == 1;
            return Ok(());
        }
        let update = Update::decode_v1(payload).map_err(|e| anyhow!("bad update: {e}"))?;
        let mut txn = self.doc.transact_mut();
        txn.apply_update(update)
            .map_err(|e| anyhow!("the update does not apply: {e}"))?;
        outcome.step2 |= kind == 1;
        Ok(())
    }

    /// Applies one received frame to `outcome` (cleared first); an error means it was
    /// malformed.
    fn handle(&self, frame: &[u8], outcome: &mut Outcome) -> anyhow::Result<()> {
        outcome.replies.clear();
        outcome.stamps.clear();
        (outcome.step2, outcome.denied, outcome.closed) = (false, None, false);
        if self.address.is_none() {
            let messages = protocol::parse(frame).map_err(|e| anyhow!("bad frame: {e}"))?;
            for message in messages {
                match message {
                    Message::SyncStep1(sv) => self.sync(0, sv, outcome)?,
                    Message::SyncStep2(update) => self.sync(1, update, outcome)?,
                    Message::Update(update) => self.sync(2, update, outcome)?,
                    _ => {} // awareness, auth, query awareness
                }
            }
            return Ok(());
        }
        if frame == [9] {
            outcome.replies.push(vec![10]); // a connection-level Ping: Pong, as the provider does
            return Ok(());
        }
        let mut cursor = Cursor(frame);
        cursor.bytes()?; // the document name
        match cursor.var_uint()? {
            0 | 4 => {
                let kind = cursor.var_uint()?;
                self.sync(kind, cursor.bytes()?, outcome)?;
            }
            2 => match cursor.var_uint()? {
                0 => outcome.replies.push(self.auth_frame()), // the server asks for the token
                1 => {
                    let reason = cursor.bytes().unwrap_or_default();
                    outcome.denied = Some(String::from_utf8_lossy(reason).into_owned());
                }
                _ => {} // Authenticated
            },
            7 => outcome.closed = true,
            _ => {} // awareness, query awareness, stateless, sync status
        }
        Ok(())
    }

    async fn send(&mut self, frame: Vec<u8>) -> anyhow::Result<()> {
        Ok(self.socket.send(Ws::Binary(frame.into())).await?)
    }

    /// The next binary frame; an error when the server closes the socket.
    async fn recv(&mut self) -> anyhow::Result<Bytes> {
        loop {
            match self.socket.next().await {
                Some(Ok(Ws::Binary(bytes))) => return Ok(bytes),
                Some(Ok(Ws::Close(close))) => bail!("the server closed the socket: {close:?}"),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => bail!("the server ended the connection"),
            }
        }
    }

    /// Handles a frame and sends its replies: whether it held a SyncStep2. A malformed
    /// frame is counted; a refusal or a close is an error.
    async fn on_frame(&mut self, frame: &[u8]) -> anyhow::Result<bool> {
        // One `Outcome` per client, reused: no allocation per delivery.
        let mut outcome = std::mem::take(&mut self.scratch);
        let handled = self.handle(frame, &mut outcome);
        let synced = self.after_frame(handled, &mut outcome).await;
        self.scratch = outcome;
        synced
    }

    async fn after_frame(
        &mut self,
        handled: anyhow::Result<()>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<bool> {
        if handled.is_err() {
            self.bad_frames += 1;
            return Ok(false);
        }
        if let Some(sink) = self.stamps.as_ref().filter(|_| !outcome.stamps.is_empty()) {
            let now = now_micros();
            let mut found = 0;
            let mut samples = sink.samples.lock();
            for stamp in outcome.stamps.iter().filter(|s| **s >= sink.go_micros) {
                samples.push(now.saturating_sub(*stamp));
                found += 1;
            }
            sink.shared.delivered.fetch_add(found, Relaxed);
        }
        for reply in outcome.replies.drain(..) {
            self.send(reply).await?;
        }
        if let Some(reason) = outcome.denied.take() {
            bail!("permission denied: {reason}");
        }
        anyhow::ensure!(!outcome.closed, "the server closed the document");
        Ok(outcome.step2)
    }

    /// Sends on `plan` and handles what arrives, until the server ends the socket.
    async fn exchange(&mut self, plan: &Plan, shared: &Shared) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval_at(plan.first, plan.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut sent = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = ticker.tick(), if sent < plan.max => {
                    if Instant::now() >= plan.until {
                        sent = plan.max;
                        continue;
                    }
                    let frame = self.edit_frame();
                    self.send(frame).await?;
                    sent += 1;
                    shared.sent.fetch_add(1, Relaxed);
                    shared.doc_sent[self.doc_index].fetch_add(1, Relaxed);
                }
                frame = self.recv() => {
                    self.on_frame(&frame?).await?;
                    // Frames already read are handled here rather than one per trip
                    // through `select!` (which re-arms the ticker each time); a bound
                    // keeps the ticker on time.
                    for _ in 0..BURST {
                        match self.recv().now_or_never() {
                            Some(frame) => {
                                self.on_frame(&frame?).await?;
                            }
                            None => break,
                        }
                    }
                }
            }
        }
    }
}

/// Frames a client handles in a row, once one has arrived, before it checks its ticker.
const BURST: usize = 32;

/// When a client sends: from `first` every `period`, until `until` or `max` updates.
struct Plan {
    go_micros: u64,
    first: Instant,
    period: Duration,
    until: Instant,
    max: u64,
}

async fn drive(
    mut client: Client,
    plan: Plan,
    shared: Arc<Shared>,
    samples: Arc<Mutex<Vec<u64>>>,
    stop: CancellationToken,
) {
    let (observed, go_micros) = (shared.clone(), plan.go_micros);
    client.stamps = Some(StampSink {
        samples: samples.clone(),
        shared: shared.clone(),
        go_micros,
    });
    client.text.observe(LOCAL, move |txn, event| {
        if txn.origin().is_some() {
            return; // a local edit
        }
        let (now, mut found) = (now_micros(), 0);
        let mut samples = samples.lock();
        for delta in event.delta(txn) {
            if let Delta::Inserted(Out::Any(Any::String(inserted)), _) = delta {
                let chunks = inserted.split('|');
                for stamp in chunks.filter_map(|s| parse_stamp(s.as_bytes(), usize::MAX)) {
                    if stamp >= go_micros {
                        samples.push(now.saturating_sub(stamp));
                        found += 1;
                    }
                }
            }
        }
        observed.delivered.fetch_add(found, Relaxed);
    });
    let ended = tokio::select! {
        _ = stop.cancelled() => Ok(()),
        ended = client.exchange(&plan, &shared) => ended,
    };
    if ended.is_err() {
        shared.closed.fetch_add(1, Relaxed);
    }
    shared.bad_frames.fetch_add(client.bad_frames, Relaxed);
}

async fn connect_one(
    args: Arc<YjsArgs>,
    index: usize,
    limit: Arc<Semaphore>,
    deadline: Instant,
) -> anyhow::Result<Client> {
    let _permit = limit.acquire_owned().await?;
    match timeout_at(deadline, Client::connect(&args, index)).await {
        Ok(connected) => connected,
        Err(_) => Err(anyhow!("connecting and syncing took over {SETUP:?}")),
    }
}

pub async fn run(args: YjsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=10_000).contains(&args.clients) && (1..=args.clients).contains(&args.docs),
        "--clients must be 1..=10000 and --docs 1..=clients"
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 1000.0 && (1..=3600).contains(&args.seconds),
        "--rate must be in (0, 1000] and --seconds in 1..=3600"
    );
    let started = Instant::now();
    let hard = started + Duration::from_secs(args.seconds) + GRACE;
    let args = Arc::new(args);
    let dialect = if args.hocuspocus {
        "hocuspocus"
    } else {
        "y-websocket"
    };

    let limit = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut connecting = JoinSet::new();
    for index in 0..args.clients {
        connecting.spawn(connect_one(
            args.clone(),
            index,
            limit.clone(),
            started + SETUP,
        ));
    }
    let (mut clients, mut connect_errors, mut first_error) = (Vec::new(), 0u64, None);
    while let Some(joined) = connecting.join_next().await {
        match joined
            .map_err(anyhow::Error::from)
            .and_then(|connected| connected)
        {
            Ok(client) => clients.push(client),
            Err(error) => {
                connect_errors += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    let count = clients.len();
    let first_error = first_error.unwrap_or_default();
    anyhow::ensure!(
        count >= 2,
        "{count} of {} clients connected; first error: {first_error}",
        args.clients
    );
    if connect_errors > 0 {
        println!("yjs: {connect_errors} clients failed to connect, first: {first_error}");
    }
    let mut members = vec![0u64; args.docs];
    for client in &clients {
        members[client.doc_index] += 1;
    }
    println!(
        "yjs: {count}/{} {dialect} clients synced on {} documents at {}; {} updates/s each for {} s",
        args.clients, args.docs, args.url, args.rate, args.seconds
    );

    let sampler = ProcSampler::start(args.server_pid);
    let doc_sent = (0..args.docs).map(|_| AtomicU64::new(0)).collect();
    let shared = Arc::new(Shared {
        doc_sent,
        ..Shared::default()
    });
    let stop = CancellationToken::new();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let (go, go_micros) = (Instant::now(), now_micros());
    let until = go + Duration::from_secs(args.seconds);
    let max = (args.rate * args.seconds as f64).ceil() as u64;
    let (mut tasks, mut all_samples) = (JoinSet::new(), Vec::new());
    for (index, client) in clients.into_iter().enumerate() {
        // Clients' sends are spread evenly over a period.
        let first = go + period.mul_f64(index as f64 / count as f64);
        let plan = Plan {
            go_micros,
            first,
            period,
            until,
            max,
        };
        let samples = Arc::new(Mutex::new(Vec::new()));
        all_samples.push(samples.clone());
        tasks.spawn(drive(client, plan, shared.clone(), samples, stop.clone()));
    }

    sleep_until(until).await;
    let expected = || -> u64 {
        let sent = shared.doc_sent.iter().map(|n| n.load(Relaxed));
        sent.zip(&members)
            .map(|(s, m)| s * m.saturating_sub(1))
            .sum()
    };
    let drain_until = (until + DRAIN).min(hard);
    while shared.delivered.load(Relaxed) < expected() && Instant::now() < drain_until {
        sleep(Duration::from_millis(20)).await;
    }
    let run_seconds = go.elapsed().as_secs_f64();
    stop.cancel();
    let _ = timeout_at(hard, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    let server = sampler.finish();

    let mut latencies = Latencies::default();
    for samples in &all_samples {
        for micros in samples.lock().iter() {
            latencies.record(Duration::from_micros(*micros));
        }
    }
    let latency = latencies.summary();
    let (sent, delivered, expected) = (
        shared.sent.load(Relaxed),
        shared.delivered.load(Relaxed),
        expected(),
    );
    let per_second = delivered as f64 / args.seconds as f64;
    let (closed, bad_frames) = (shared.closed.load(Relaxed), shared.bad_frames.load(Relaxed));
    println!(
        "yjs: sent {sent} updates; {delivered}/{expected} deliveries ({per_second:.0}/s); latency p50 {} ms, p99 {} ms, max {} ms; {closed} sockets closed by the server, {bad_frames} bad frames",
        latency["p50_ms"], latency["p99_ms"], latency["max_ms"]
    );
    result(json!({
        "scenario": "yjs",
        "dialect": dialect,
        "receivers": if args.apply_updates { "apply" } else { "raw" },
        "clients": args.clients,
        "connected": count,
        "connect_errors": connect_errors,
        "docs": args.docs,
        "rate": args.rate,
        "seconds": args.seconds,
        "run_seconds": run_seconds,
        "sent": sent,
        "deliveries": delivered,
        "expected_deliveries": expected,
        "deliveries_per_second": per_second,
        "latency": latency,
        "closed_by_server": closed,
        "bad_frames": bad_frames,
        "server": server,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stamps are found in a real yrs update's bytes, and the reader's own are skipped.
    #[test]
    fn raw_stamps_come_from_update_bytes() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("text");
        let update = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "1763900000000001000007|");
            text.insert(&mut txn, 23, "1763900000000002000003|x|12|");
            txn.encode_update_v1()
        };
        let mut found = Vec::new();
        raw_stamps(&update, 99, &mut found);
        assert_eq!(found, vec![1763900000000001, 1763900000000002]);
        found.clear();
        raw_stamps(&update, 7, &mut found);
        assert_eq!(
            found,
            vec![1763900000000002],
            "client 7's own stamp is skipped"
        );
    }
}
