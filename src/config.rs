//! Configuration: every setting is a clap flag with an environment fallback and a
//! documented default, so `collab serve` needs no config file. `StoreArgs` is shared by
//! every subcommand (where the data lives); `Config` is what `serve` runs with.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use crate::rpc::{
    PeerConfig,
    connection::{Codec, DEFAULT_COMPRESSION_THRESHOLD, DEFAULT_MAX_FRAME_BYTES},
};

/// Where the data lives; every subcommand takes these.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Directory for the embedded SQLite database and the generated JWT secret.
    #[arg(
        long,
        env = "COLLAB_DATA_DIR",
        default_value = "collab-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database URL (`postgres://…` or `sqlite://…`). Default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Secret that signs access tokens (HS256). Default: generated once and kept in
    /// `<data-dir>/jwt-secret`. Servers that share a database must share it.
    #[arg(long, env = "COLLAB_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

impl StoreArgs {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreArgs {
            data_dir: data_dir.into(),
            database_url: None,
            jwt_secret: None,
        }
    }

    /// The configured URL, or SQLite in the data directory (created if missing).
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("collab.db").display()
            ),
        }
    }
}

/// Which parts of the server to run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// REST only (`/api/...`).
    Api,
    /// Real-time endpoints only (`/rpc`).
    Collab,
    /// Both.
    All,
}

impl Mode {
    pub fn serves_api(self) -> bool {
        matches!(self, Mode::Api | Mode::All)
    }
    pub fn serves_collab(self) -> bool {
        matches!(self, Mode::Collab | Mode::All)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `collab serve` runs with.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// What to serve.
    #[arg(value_enum, default_value = "all")]
    pub mode: Mode,

    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, env = "COLLAB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Do not apply migrations on start.
    #[arg(long, env = "COLLAB_NO_MIGRATE")]
    pub no_migrate: bool,

    /// Largest WebSocket frame accepted or sent, and largest decompressed envelope.
    #[arg(long, env = "COLLAB_MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES, value_parser = parse_frame_cap)]
    pub max_frame_bytes: usize,

    /// Envelopes at least this large are zstd-compressed when that makes them smaller.
    #[arg(long, env = "COLLAB_COMPRESSION_THRESHOLD", default_value_t = DEFAULT_COMPRESSION_THRESHOLD)]
    pub compression_threshold: usize,

    /// Envelopes queued for one connection before it is cut as a slow consumer.
    #[arg(long, env = "COLLAB_OUTGOING_QUEUE_MESSAGES", default_value_t = 1024)]
    pub outgoing_queue_messages: usize,

    /// Bytes queued for one connection before it is cut as a slow consumer.
    #[arg(long, env = "COLLAB_OUTGOING_QUEUE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub outgoing_queue_bytes: usize,

    /// Bytes of requests one connection may have queued or being handled; past it,
    /// reading pauses until handlers finish.
    #[arg(long, env = "COLLAB_MAX_INCOMING_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_incoming_bytes: usize,

    /// Handlers one connection may have running at once; past it, reading pauses.
    #[arg(long, env = "COLLAB_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,

    /// Most simultaneous RPC connections; more get HTTP 503.
    #[arg(long, env = "COLLAB_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Connections doing their connect or disconnect work (database reads and writes,
    /// announcements) at once; the others wait their turn holding only their socket, so
    /// a reconnect or disconnect storm costs neither memory nor database connections.
    #[arg(long, env = "COLLAB_CONNECTION_WORK_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connection_work_concurrency: u32,

    /// WebSocket ping interval.
    #[arg(long, env = "COLLAB_KEEPALIVE_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub keepalive_interval: Duration,

    /// A client silent (no frame, not even a pong) for this long is dropped.
    #[arg(long, env = "COLLAB_RECEIVE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub receive_timeout: Duration,

    /// A socket write that makes no progress for this long cuts the connection.
    #[arg(long, env = "COLLAB_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub write_timeout: Duration,

    /// How long the server waits for a client's answer to a request it sent.
    #[arg(long, env = "COLLAB_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,

    /// How often the server refreshes its row in `servers`.
    #[arg(long, env = "COLLAB_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub heartbeat_interval: Duration,

    /// How often the server looks for revoked tokens (revoked by the CLI or another
    /// server) and ends their sessions.
    #[arg(long, env = "COLLAB_REVOCATION_CHECK_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub revocation_check_interval: Duration,

    /// On SIGINT/SIGTERM, how long in-flight work may take before sockets are cut.
    #[arg(long, env = "COLLAB_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub shutdown_timeout: Duration,

    /// Lifetime of access tokens minted through the REST API unless the request says.
    #[arg(long, env = "COLLAB_TOKEN_TTL", default_value = "30days", value_parser = parse_positive_duration)]
    pub token_ttl: Duration,

    /// Lifetime of `collab-ws` WebSocket tokens.
    #[arg(long, env = "COLLAB_WS_TOKEN_TTL", default_value = "5m", value_parser = parse_positive_duration)]
    pub ws_token_ttl: Duration,

    /// How long an unanswered call rings before it ends and the caller is told.
    #[arg(long, env = "COLLAB_CALL_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub call_timeout: Duration,

    /// How long a room participant whose connection was lost keeps their place, waiting
    /// for `RejoinRoom` from a new connection.
    #[arg(long, env = "COLLAB_RECONNECT_GRACE", default_value = "30s", value_parser = parse_positive_duration)]
    pub reconnect_grace: Duration,

    /// Presence broadcasts per second per connection, at most (updates in between are
    /// coalesced: the latest wins).
    #[arg(long, env = "COLLAB_PRESENCE_RATE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub presence_rate: u32,

    /// Presence not renewed for this long is dropped.
    #[arg(long, env = "COLLAB_PRESENCE_TTL", default_value = "5m", value_parser = parse_positive_duration)]
    pub presence_ttl: Duration,

    /// Worktree entries (updated + removed) or diagnostic summaries per `UpdateWorktree` /
    /// `UpdateDiagnosticSummary`: the most a host may send in one message, and the
    /// chunk size in which a joiner receives them.
    #[arg(long, env = "COLLAB_MAX_WORKTREE_CHUNK", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=2048))]
    pub max_worktree_chunk: u32,

    /// Worktrees one shared project may have.
    #[arg(long, env = "COLLAB_MAX_WORKTREES_PER_PROJECT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_worktrees_per_project: u32,

    /// Entries (and, separately, diagnostic summaries) one worktree of a shared project
    /// may hold in the server's mirror.
    #[arg(long, env = "COLLAB_MAX_WORKTREE_ENTRIES", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_worktree_entries: u64,

    /// Projects one connection may share at once.
    #[arg(long, env = "COLLAB_MAX_PROJECTS_PER_CONNECTION", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_projects_per_connection: u32,

    /// Documents (Yjs) held in memory at once; opening one more is refused.
    #[arg(long, env = "COLLAB_MAX_DOCS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_docs: u64,

    /// Yjs WebSocket connections per document.
    #[arg(long, env = "COLLAB_MAX_CLIENTS_PER_DOC", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_clients_per_doc: u64,

    /// Largest Yjs WebSocket message (and REST update body) accepted, in bytes.
    #[arg(long, env = "COLLAB_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=(256 * 1024 * 1024)))]
    pub max_message_bytes: u64,

    /// A document nobody uses leaves memory after this long (once its saves are done).
    #[arg(long, env = "COLLAB_DOC_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub doc_idle_timeout: Duration,

    /// A document's update log is compacted into a snapshot once it has this many
    /// updates and is at least as large as the snapshot (so compaction's cost stays
    /// proportional to the edits), and when the document goes idle.
    #[arg(long, env = "COLLAB_COMPACTION_THRESHOLD", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub compaction_threshold: u64,

    /// Chat messages one user may send per minute (a token bucket: bursts up to this
    /// many, refilled evenly over a minute); past it `RateLimited` with `retry_after_ms`.
    #[arg(long, env = "COLLAB_CHAT_RATE_LIMIT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub chat_rate_limit: u32,

    /// Largest chat message body, in bytes.
    #[arg(long, env = "COLLAB_MAX_CHAT_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=(1024 * 1024)))]
    pub max_chat_message_bytes: u64,

    /// LiveKit server URL handed to clients (e.g. `wss://livekit.example.com`); the
    /// RoomService API is called at the same host. Without URL, key and secret, rooms
    /// work without audio/video credentials.
    #[arg(long, env = "COLLAB_LIVEKIT_URL")]
    pub livekit_url: Option<String>,

    /// LiveKit API key.
    #[arg(long, env = "COLLAB_LIVEKIT_KEY")]
    pub livekit_key: Option<String>,

    /// LiveKit API secret.
    #[arg(long, env = "COLLAB_LIVEKIT_SECRET", hide_env_values = true)]
    pub livekit_secret: Option<String>,

    /// Lifetime of the LiveKit tokens handed to participants.
    #[arg(long, env = "COLLAB_LIVEKIT_TOKEN_TTL", default_value = "6h", value_parser = parse_positive_duration)]
    pub livekit_token_ttl: Duration,

    /// Kernel send buffer per accepted socket (SO_SNDBUF), in bytes; 0 keeps the OS default.
    #[arg(long, env = "COLLAB_SOCKET_SEND_BUFFER", default_value_t = 0)]
    pub socket_send_buffer: usize,

    /// Set from the global `StoreArgs` by `main`.
    #[arg(skip = StoreArgs::new("collab-data"))]
    pub store: StoreArgs,
}

/// A duration such as `30s`, from 1ns to 10 years; zero is refused (a zero interval
/// would spin or panic).
pub fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    // Far beyond any sensible setting, and short enough that date arithmetic on it can
    // never overflow.
    const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    if duration > MAX {
        return Err("must be at most 10 years".into());
    }
    Ok(duration)
}

/// Frame caps below 4 KiB would refuse ordinary messages; above 256 MiB one frame could
/// exhaust memory.
fn parse_frame_cap(value: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<usize> = 4096..=256 * 1024 * 1024;
    let bytes: usize = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number of bytes"))?;
    if RANGE.contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "must be between {} and {} bytes",
            RANGE.start(),
            RANGE.end()
        ))
    }
}

impl Config {
    /// The defaults, with data in `data_dir`: what `collab serve --data-dir <dir>` runs.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut config = <Wrapper as clap::Parser>::try_parse_from(["collab"])
            .expect("the defaults parse")
            .config;
        config.store = StoreArgs::new(data_dir);
        config
    }

    pub fn peer_config(&self) -> PeerConfig {
        PeerConfig {
            codec: Codec {
                max_frame_bytes: self.max_frame_bytes,
                compression_threshold: self.compression_threshold,
                ..Codec::default()
            },
            outgoing_queue_messages: self.outgoing_queue_messages,
            outgoing_queue_bytes: self.outgoing_queue_bytes,
            incoming_bytes: self.max_incoming_bytes,
            keepalive_interval: self.keepalive_interval,
            receive_timeout: self.receive_timeout,
            write_timeout: self.write_timeout,
            request_timeout: self.request_timeout,
            ..PeerConfig::default()
        }
    }
}
