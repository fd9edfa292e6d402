//! `GET /rpc`: the handshake and the life of one RPC connection.
//!
//! Before the upgrade: the protocol version (else 426, naming the supported versions),
//! the bearer token (else 401), capacity and shutdown (else 503). After it: `Hello` first,
//! then the domains' on-connect state, then the handler loop until the socket ends or
//! the server shuts down; then the domains' on-disconnect work.

use std::{future::Future, sync::Arc};

use axum::{
    extract::{State, WebSocketUpgrade, ws::WebSocket},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use futures::FutureExt;

use super::{Session, contacts, room_lifecycle};
use crate::{
    AppState,
    auth::{Authenticated, extract::authenticate_headers},
    db::UserId,
    error::Error,
    rpc::{
        Connection, ConnectionId, RpcError, Server,
        peer::{Disconnect, Incoming, close_code},
        proto::{self, ErrorCode, PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS},
        queue,
    },
    serve::HttpState,
};

pub const PROTOCOL_VERSION_HEADER: &str = "x-collab-protocol-version";
/// Read buffer per socket: small, because tungstenite fills it in full before the first
/// read and idle connections dominate memory (see the build notes). A frame larger than
/// this is still read in one piece: tungstenite reserves its full length once the header
/// is known; small frames take one read per kilobyte.
const READ_BUFFER_BYTES: usize = 1024;
/// Write buffer per socket: batches are fed into it and flushed once.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

fn supported_versions() -> String {
    SUPPORTED_PROTOCOL_VERSIONS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the version header: `Err(426 response)` when it is missing or unsupported.
fn check_version(headers: &HeaderMap) -> Result<u32, Box<Response>> {
    let version = headers
        .get(PROTOCOL_VERSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u32>().ok());
    match version {
        Some(version) if SUPPORTED_PROTOCOL_VERSIONS.contains(&version) => Ok(version),
        other => {
            let got = other.map_or("none".to_string(), |v| v.to_string());
            tracing::info!(version = %got, "refused unsupported protocol version");
            let body = format!(
                "unsupported protocol version {got} (header {PROTOCOL_VERSION_HEADER}); supported versions: {}\n",
                supported_versions()
            );
            Err(Box::new(
                (
                    StatusCode::UPGRADE_REQUIRED,
                    [(PROTOCOL_VERSION_HEADER, supported_versions())],
                    body,
                )
                    .into_response(),
            ))
        }
    }
}

pub async fn rpc_upgrade(
    State(http): State<HttpState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let state = http.app.clone();
    let version = match check_version(&headers) {
        Ok(version) => version,
        Err(response) => return *response,
    };
    let authenticated = match authenticate_headers(&state, &headers).await {
        Ok(authenticated) => authenticated,
        Err(error) => return error.into_response(),
    };
    // Tracked from here, so a shutdown that starts during the upgrade still waits for it.
    let tracked = state.connections.token();
    if state.shutdown.is_cancelled() {
        return Error::unavailable("server is shutting down").into_response();
    }
    // The permit travels with the connection, so concurrent upgrades cannot overshoot.
    let Ok(slot) = state.connection_slots.clone().try_acquire_owned() else {
        state.metrics.connections_refused.inc();
        tracing::warn!(
            limit = state.config.max_connections,
            "refused connection: limit reached"
        );
        return Error::unavailable("too many connections").into_response();
    };
    let frame_cap = state.config.max_frame_bytes;
    let rpc = http.rpc.clone();
    upgrade
        .max_message_size(frame_cap)
        .max_frame_size(frame_cap)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let life = run_connection(state, rpc, socket, authenticated, version);
            life.map(move |()| drop((slot, tracked)))
        })
}

/// The life of one connection, in one task: the connect work, then the socket's reader
/// and writer (`io`) side by side with the handler loop, then the disconnect work.
///
/// The connect and disconnect work wait for a turn (`in_turn`), so a storm of either
/// is bounded in memory and database load.
///
/// This future lives as long as the connection, so its size is paid by every idle
/// connection. Hence one task (not one for `io` and one for the handlers), the connect
/// and disconnect work boxed, and combinators rather than an `async fn`: a generator
/// keeps a moved-from future's slot beside the one it awaits, which had made this
/// 3.5 KiB plus a second task of 1.9 KiB.
fn run_connection(
    state: Arc<AppState>,
    rpc: Arc<Server<Session>>,
    socket: WebSocket,
    authenticated: Authenticated,
    version: u32,
) -> impl Future<Output = ()> + Send + 'static {
    let Authenticated { principal, jti } = authenticated;
    let (connection_id, io, incoming) = state.peer.add_connection(Connection::from_axum(socket));
    let user_id = principal.user_id();
    tracing::info!(connection = %connection_id, user = %user_id, login = %principal.user().login, "connected");
    let greet = in_turn(&state, {
        let state = state.clone();
        move || connected(state, connection_id, user_id, version, jti)
    });
    greet.then(move |greeted| {
        let session = Session {
            connection_id,
            principal: Arc::new(principal),
            state: state.clone(),
        };
        // A panic in the socket's halves ends this connection, not the disconnect work.
        let io = std::panic::AssertUnwindSafe(io).catch_unwind();
        let handlers = handle(
            state.clone(),
            rpc,
            connection_id,
            incoming,
            session,
            greeted,
        );
        futures::future::join(io, handlers).then(move |(ended, ())| {
            let ended = ended.unwrap_or_else(|_| {
                tracing::error!(connection = %connection_id, "connection io panicked");
                Disconnect {
                    kind: "panic",
                    detail: "connection io panicked".into(),
                }
            });
            let app = state.clone();
            in_turn(&app, move || {
                disconnected(state, connection_id, user_id, ended)
            })
        })
    })
}

/// Runs the work `make` creates once one of the `--connection-work-concurrency` turns is
/// free. The work's future (database queries and all) is created and boxed only then:
/// when thousands of clients reconnect or drop at once, each waiting connection holds a
/// place in the semaphore's queue, not a few KiB of pending queries.
fn in_turn<Work, Make>(
    state: &Arc<AppState>,
    make: Make,
) -> impl Future<Output = Work::Output> + Send + 'static + use<Work, Make>
where
    Work: Future + Send + 'static,
    Make: FnOnce() -> Work + Send + 'static,
{
    /// Counts a waiting connection until its turn comes or it is dropped.
    struct Waiting(prometheus::IntGauge);
    impl Drop for Waiting {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let waiting = Waiting(state.metrics.connection_work_waiting.clone());
    waiting.0.inc();
    state
        .connection_work
        .clone()
        .acquire_owned()
        .then(move |turn| {
            drop(waiting);
            // The semaphore is never closed; without a turn the work still runs.
            let turn = turn.ok();
            Box::pin(make()).map(move |output| {
                drop(turn);
                output
            })
        })
}

/// The handler loop, once the connection is greeted; on shutdown, a close.
async fn handle(
    state: Arc<AppState>,
    rpc: Arc<Server<Session>>,
    connection_id: ConnectionId,
    incoming: queue::Receiver<Incoming>,
    session: Session,
    greeted: bool,
) {
    if !greeted {
        return;
    }
    rpc.handle_connection(connection_id, incoming, session, state.shutdown.clone())
        .await;
    if state.shutdown.is_cancelled() {
        state.peer.close(
            connection_id,
            close_code::GOING_AWAY,
            "server shutting down",
        );
    }
}

/// Queues `Hello`, then the domains' on-connect state; whether `Hello` was queued.
///
/// Nothing reaches the socket until `io` runs. Hello is queued first (no one else knows
/// this connection yet), then the connection joins the pool and gets its initial state,
/// and only then does the writer start: a client holding its Hello is already reachable
/// (by calls, contact updates, ...).
async fn connected(
    state: Arc<AppState>,
    connection_id: ConnectionId,
    user_id: UserId,
    version: u32,
    jti: String,
) -> bool {
    let hello = proto::Hello {
        peer_id: Some(connection_id.into()),
        user_id: user_id.to_proto(),
        protocol_version: version.min(PROTOCOL_VERSION),
    };
    if state.cluster.send(connection_id, hello).is_err() {
        return false;
    }
    if let Err(error) = contacts::connection_added(&state, connection_id, user_id, &jti).await {
        tracing::error!(connection = %connection_id, %error, "on-connect work failed");
    }
    if let Err(error) = room_lifecycle::connection_added(&state, connection_id, user_id).await {
        tracing::error!(connection = %connection_id, %error, "on-connect work failed (rooms)");
    }
    true
}

/// The domains' on-disconnect work, once the socket and the handlers have ended.
async fn disconnected(
    state: Arc<AppState>,
    connection_id: ConnectionId,
    user_id: UserId,
    ended: Disconnect,
) {
    super::channels::connection_removed(&state, connection_id).await;
    if let Err(error) = contacts::connection_removed(&state, connection_id).await {
        tracing::error!(connection = %connection_id, %error, "on-disconnect work failed");
    }
    if let Err(error) = room_lifecycle::connection_lost(&state, connection_id, user_id).await {
        tracing::error!(connection = %connection_id, %error, "room cleanup failed");
    }
    tracing::info!(
        connection = %connection_id, user = %user_id,
        reason = ended.kind, detail = %ended.detail, "disconnected"
    );
}

/// Ends every session opened with the access token `jti` (after it was revoked): each
/// gets an `Unauthorized` error and a close with 1008.
pub fn end_token_sessions(state: &AppState, jti: &str) -> usize {
    let connections = state.pool.token_connections(jti);
    for connection in &connections {
        let error = RpcError::new(ErrorCode::Unauthorized, "your access token was revoked");
        state
            .peer
            .close_with_error(*connection, error, close_code::POLICY, "token_revoked");
    }
    if !connections.is_empty() {
        tracing::info!(
            jti,
            sessions = connections.len(),
            "ended the sessions of a revoked token"
        );
    }
    connections.len()
}
