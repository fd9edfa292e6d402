//! `collab-bench`: the load generator. Every scenario runs against a server started
//! separately (by `bench/run.sh`), on loopback, bounded in time and count, and ends with
//! one `RESULT {json}` line.
//!
//! - [`fanout`]: E editors in one project (relay) or one channel's notes (durable).
//! - [`rooms`]: many small rooms, cursor moves between their participants.
//! - [`idle`]: C idle connections; the server's memory per connection.
//! - [`notes`]: acknowledged durable notes updates per second; join time with history.
//! - [`yjs`]: one y-websocket workload against collab or another Yjs server.
//! - [`raw`]: a minimal WebSocket broadcast relay (`raw-server`) and the fanout workload
//!   against it, the ceiling collab's relay is compared with.
//!
//! Scenarios that talk to collab mint their users' tokens from the server's store, so
//! they take the same `--data-dir` / `--database-url` as the server.

mod common;
mod fanout;
mod idle;
mod notes;
mod raw;
mod rooms;
mod yjs;

use clap::{Parser, Subcommand};
use collab::config::StoreArgs;

/// jemalloc keeps per-connection memory close to what is live; glibc's malloc kept the
/// holes of each upgrade's freed HTTP buffers (about 10 KiB per idle connection).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at start-up: a background thread returns pages freed for
/// a second to the system. By default freed pages stay resident for 10 s, and an idle
/// process (no allocations to trigger purging) would keep them indefinitely.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_OPTIONS: &[u8; 63] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

#[derive(Parser)]
#[command(
    name = "collab-bench",
    about = "Load generator and benchmarks for collab"
)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    /// Worker threads of this process's runtime.
    #[arg(long, default_value_t = 2, global = true)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Editors in one project or notes, each sending at a rate; delivery latency.
    Fanout(fanout::FanoutArgs),
    /// Many small rooms; cursor moves delivered within each.
    Rooms(rooms::RoomsArgs),
    /// Idle connections; server memory per connection.
    Idle(idle::IdleArgs),
    /// Durable notes updates per second; join time with a long history.
    NotesDurable(notes::NotesArgs),
    /// A y-websocket workload (collab, @y/websocket-server, Hocuspocus).
    Yjs(yjs::YjsArgs),
    /// The fanout workload against the raw relay.
    Raw(raw::RawArgs),
    /// Runs the raw relay.
    RawServer(raw::RawServerArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let tokens = || common::Tokens::open(&cli.store);
        match cli.command {
            Command::Fanout(args) => fanout::run(args, tokens().await?).await,
            Command::Rooms(args) => rooms::run(args, tokens().await?).await,
            Command::Idle(args) => idle::run(args, tokens().await?).await,
            Command::NotesDurable(args) => notes::run(args, tokens().await?).await,
            Command::Yjs(args) => yjs::run(args).await,
            Command::Raw(args) => raw::run(args).await,
            Command::RawServer(args) => raw::serve(args).await,
        }
    })
}
