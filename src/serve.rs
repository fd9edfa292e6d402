//! `collab serve`: build the state, build the router, serve it, shut down gracefully.
//!
//! [`start`] returns once the listener is bound (tests bind `127.0.0.1:0` and read the
//! address back). Shutdown: stop accepting, let each connection finish its in-flight
//! handlers and close with a close frame (1001), wait up to `--shutdown-timeout`, cut
//! whatever is left, and mark this server's row stopped.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use anyhow::Context;
use axum::{
    Json, Router,
    extract::{FromRef, State},
    http::StatusCode,
    response::IntoResponse,
    routing::get,
    serve::ListenerExt,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    AppState, Config, api,
    auth::{self, Auth},
    cluster::Cluster,
    collab::{self, Session, connection::rpc_upgrade, connection_pool::ConnectionPool},
    db::Database,
    metrics::Metrics,
    rpc::{Peer, Server},
};

/// The router's state: the shared app state and the RPC handler registry.
#[derive(Clone)]
pub struct HttpState {
    pub app: Arc<AppState>,
    pub rpc: Arc<Server<Session>>,
}

impl FromRef<HttpState> for Arc<AppState> {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

/// A server that is running; `shutdown` stops it gracefully.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.shutdown.cancel();
        self.task.await?
    }

    /// Waits until the server stops (after `state.shutdown` is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Connects the database (migrating unless told not to) for any subcommand.
pub async fn open_database(
    config: &crate::config::StoreArgs,
    migrate: bool,
) -> anyhow::Result<Database> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    }
    let url = config.database_url();
    let db = Database::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", redact(&url)))?;
    if migrate {
        let applied = db.migrate().await.context("applying migrations")?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations");
        }
    }
    Ok(db)
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let db = open_database(&config.store, !config.no_migrate).await?;
    let secret =
        auth::secret::load_or_create(config.store.jwt_secret.as_deref(), &config.store.data_dir)?;
    let hostname = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let server_id = db
        .register_server(&hostname, env!("CARGO_PKG_VERSION"))
        .await?;
    let metrics = Metrics::new(&db.retries, &db.writers_waiting);
    let livekit = crate::livekit::LiveKit::from_config(&config);
    if let Some(livekit) = &livekit {
        metrics
            .registry
            .register(Box::new(livekit.failures.clone()))?;
    }
    let peer = Peer::new(
        server_id.0 as u32,
        config.peer_config(),
        metrics.rpc.clone(),
    );
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let addr = listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let documents = crate::documents::DocumentStore::new(
        db.clone(),
        metrics.clone(),
        &config,
        shutdown.clone(),
    );
    let projects = collab::project_relay::ProjectRelay::new(
        metrics.shared_projects.clone(),
        metrics.project_collaborators.clone(),
    );
    let state = Arc::new(AppState {
        db,
        auth: Auth::new(&secret),
        cluster: Cluster::new(peer.clone()),
        peer: peer.clone(),
        pool: ConnectionPool::default(),
        metrics,
        server_id,
        started_at: Instant::now(),
        shutdown,
        documents,
        channels: collab::channels::ChannelsState::new(config.chat_rate_limit),
        connections: TaskTracker::new(),
        user_locks: Default::default(),
        room_locks: Default::default(),
        project_locks: Default::default(),
        projects,
        call_timers: Default::default(),
        rooms: Default::default(),
        livekit,
        connection_slots: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
        connection_work: Arc::new(tokio::sync::Semaphore::new(
            config.connection_work_concurrency as usize,
        )),
        join_streams: tokio::sync::Semaphore::new(collab::projects::MAX_JOIN_STREAMS),
        config,
    });
    let rpc = Arc::new(collab::build_server(peer, state.config.max_in_flight));
    let router = router(HttpState {
        app: state.clone(),
        rpc,
    });

    let send_buffer = state.config.socket_send_buffer;
    let listener = listener.tap_io(move |tcp| {
        // Small relayed messages must not wait for Nagle.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY failed");
        }
        if send_buffer > 0 {
            let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer);
        }
    });

    let heartbeat = tokio::spawn(heartbeat(state.clone()));
    let sweep = tokio::spawn(revocation_sweep(state.clone()));
    let presence = tokio::spawn(state.rooms.clone().expire(state.clone()));
    let rooms_sweep = tokio::spawn(collab::room_lifecycle::sweep_gone_servers(state.clone()));
    let awareness_sweep = tokio::spawn(expire_awareness(state.clone()));
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let state = task_state;
        let shutdown = state.shutdown.clone();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving")?;
        // Connections saw the same token: they are finishing their handlers and closing.
        state.connections.close();
        if tokio::time::timeout(state.config.shutdown_timeout, state.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = state.peer.connection_count(),
                "shutdown timeout: cutting connections"
            );
            for id in state.peer.connection_ids() {
                state.peer.disconnect(id, "shutdown timeout");
            }
            state.connections.wait().await;
        }
        heartbeat.abort();
        sweep.abort();
        presence.abort();
        rooms_sweep.abort();
        awareness_sweep.abort();
        // Everything a client was told is saved is committed before the server stops.
        state.documents.flush().await;
        state.db.mark_server_stopped(state.server_id).await?;
        tracing::info!(server_id = %state.server_id, "stopped");
        Ok(())
    });
    Ok(RunningServer { addr, state, task })
}

/// Every 5 s: awareness states of Yjs clients not renewed within 30 s are removed
/// (clients renew every 15 s; some never send their removal when they go), and the
/// update rates in `/stats` are sampled.
async fn expire_awareness(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        interval.tick().await;
        state
            .documents
            .expire_awareness(std::time::Duration::from_secs(30));
        state.documents.sample_rates();
    }
}

async fn heartbeat(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(state.config.heartbeat_interval);
    interval.tick().await;
    loop {
        interval.tick().await;
        if let Err(error) = state.db.server_heartbeat(state.server_id).await {
            tracing::warn!(%error, "server heartbeat failed");
        }
    }
}

/// Ends the sessions of tokens revoked elsewhere (the CLI, another server). Each pass
/// looks back a little further than the interval, so no revocation falls between two.
async fn revocation_sweep(state: Arc<AppState>) {
    let period = state.config.revocation_check_interval;
    let overlap = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::seconds(10)) * 2;
    let mut interval = tokio::time::interval(period);
    interval.tick().await;
    loop {
        interval.tick().await;
        let since = chrono::Utc::now() - overlap;
        match state.db.tokens_revoked_since(since).await {
            Ok(revoked) => {
                for jti in revoked {
                    collab::connection::end_token_sessions(&state, &jti);
                }
            }
            Err(error) => tracing::warn!(%error, "revocation sweep failed"),
        }
    }
}

pub fn router(state: HttpState) -> Router {
    let mode = state.app.config.mode;
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics));
    if mode.serves_collab() {
        router = router
            .route("/rpc", get(rpc_upgrade))
            .route("/yjs/{*name}", get(crate::yjs::upgrade));
    }
    if mode.serves_api() {
        router = router.merge(api::routes(state.app.config.max_message_bytes as usize));
    }
    router.with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.db.conn.ping().await {
        Ok(()) if !state.shutdown.is_cancelled() => (StatusCode::OK, "ok\n"),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        Err(error) => {
            tracing::error!(%error, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
        }
    }
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let commits = &state.metrics.document_commit_seconds;
    let save_latency_ms = if commits.get_sample_count() == 0 {
        0.0
    } else {
        commits.get_sample_sum() * 1000.0 / commits.get_sample_count() as f64
    };
    Json(serde_json::json!({
        "server_id": state.server_id.0,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started_at.elapsed().as_secs(),
        "connections": state.peer.connection_count(),
        "users_online": state.pool.users_online(),
        "max_connections": state.config.max_connections,
        "documents_loaded": state.documents.loaded(),
        "yjs_connections": state.metrics.yjs_connections.get(),
        "document_updates_per_second": state.documents.rates().updates_per_second,
        "document_update_bytes_per_second": state.documents.rates().bytes_per_second,
        "document_save_latency_ms_avg": save_latency_ms,
        // Tasks per connection is a memory figure: each task holds its future.
        "runtime_tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
