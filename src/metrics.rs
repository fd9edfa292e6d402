//! The server's Prometheus registry: the RPC layer's metrics plus the domains' gauges.
//! Rendered in the text format at `/metrics`.

use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

use crate::rpc::metrics::RpcMetrics;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub rpc: RpcMetrics,
    /// Users with at least one RPC connection.
    pub users_online: IntGauge,
    /// RPC upgrades refused because `--max-connections` was reached.
    pub connections_refused: prometheus::IntCounter,
    /// Connections waiting for a turn to do their connect or disconnect work.
    pub connection_work_waiting: IntGauge,
    /// Shared projects with collaborators connected to this server.
    pub shared_projects: IntGauge,
    /// Collaborator connections of those projects.
    pub project_collaborators: IntGauge,
    /// Buffer operations relayed, counted once per receiver.
    pub buffer_operations_relayed: prometheus::IntCounter,
    /// Requests forwarded to a project's host, by type and outcome (`ok`, the error code).
    pub forwarded_requests: prometheus::IntCounterVec,
    /// Worktree entries streamed to joiners.
    pub join_entries_streamed: prometheus::IntCounter,
    /// Documents held in memory.
    pub documents_loaded: IntGauge,
    /// Time to load a document (snapshot + log) into memory.
    pub document_load_seconds: prometheus::Histogram,
    /// Document updates accepted, by transport (`ws`, `rpc`, `http`).
    pub document_updates: prometheus::IntCounterVec,
    /// Bytes of accepted document updates.
    pub document_update_bytes: prometheus::IntCounter,
    /// Time of each group commit of document updates.
    pub document_commit_seconds: prometheus::Histogram,
    /// Updates per group commit.
    pub document_commit_batch: prometheus::Histogram,
    /// Compactions of document logs into snapshots.
    pub document_compactions: prometheus::IntCounter,
    /// Open Yjs WebSocket connections.
    pub yjs_connections: IntGauge,
    /// Yjs connections closed by the server, by reason.
    pub yjs_closed: prometheus::IntCounterVec,
    /// Connections subscribed to channel updates.
    pub channel_subscribers: IntGauge,
    /// RPC editors in channel notes.
    pub notes_collaborators: IntGauge,
    /// Chat messages stored.
    pub chat_messages: prometheus::IntCounter,
    /// Chat messages refused by the per-user rate limit.
    pub chat_rate_limited: prometheus::IntCounter,
    /// Notifications created.
    pub notifications: prometheus::IntCounter,
}

impl Metrics {
    pub fn new(db_retries: &prometheus::IntCounter, db_writers_waiting: &IntGauge) -> Self {
        let registry = Registry::new();
        let rpc = RpcMetrics::new(Some(&registry));
        let users_online = IntGauge::new(
            "collab_users_online",
            "Users with at least one RPC connection",
        )
        .unwrap();
        let connections_refused = prometheus::IntCounter::new(
            "collab_rpc_connections_refused_total",
            "RPC upgrades refused because the connection limit was reached",
        )
        .unwrap();
        let connection_work_waiting = IntGauge::new(
            "collab_connection_work_waiting",
            "Connections waiting for a turn to do their connect or disconnect work",
        )
        .unwrap();
        let shared_projects = IntGauge::new(
            "collab_shared_projects",
            "Shared projects with collaborators connected to this server",
        )
        .unwrap();
        let project_collaborators = IntGauge::new(
            "collab_project_collaborators",
            "Collaborator connections of shared projects on this server",
        )
        .unwrap();
        let buffer_operations_relayed = prometheus::IntCounter::new(
            "collab_buffer_operations_relayed_total",
            "Buffer operations relayed, once per receiver",
        )
        .unwrap();
        let forwarded_requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "collab_forwarded_requests_total",
                "Project requests forwarded to the host, by type and outcome",
            ),
            &["type", "outcome"],
        )
        .unwrap();
        let join_entries_streamed = prometheus::IntCounter::new(
            "collab_join_entries_streamed_total",
            "Worktree entries streamed to collaborators joining a project",
        )
        .unwrap();
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(name, help).buckets(buckets),
            )
            .unwrap()
        };
        let seconds = prometheus::exponential_buckets(0.0001, 2.5, 14).unwrap();
        let documents_loaded =
            IntGauge::new("collab_documents_loaded", "Documents held in memory").unwrap();
        let document_load_seconds = histogram(
            "collab_document_load_seconds",
            "Time to load a document (snapshot and log) into memory",
            seconds.clone(),
        );
        let document_updates = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "collab_document_updates_total",
                "Document updates accepted, by transport",
            ),
            &["transport"],
        )
        .unwrap();
        let document_update_bytes = prometheus::IntCounter::new(
            "collab_document_update_bytes_total",
            "Bytes of accepted document updates",
        )
        .unwrap();
        let document_commit_seconds = histogram(
            "collab_document_commit_seconds",
            "Time of each group commit of document updates (save latency)",
            seconds,
        );
        let document_commit_batch = histogram(
            "collab_document_commit_batch",
            "Updates per group commit",
            prometheus::exponential_buckets(1.0, 2.0, 10).unwrap(),
        );
        let document_compactions = prometheus::IntCounter::new(
            "collab_document_compactions_total",
            "Compactions of document logs into snapshots",
        )
        .unwrap();
        let yjs_connections =
            IntGauge::new("collab_yjs_connections", "Open Yjs WebSocket connections").unwrap();
        let yjs_closed = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "collab_yjs_closed_total",
                "Yjs connections closed by the server, by reason",
            ),
            &["reason"],
        )
        .unwrap();
        let channel_subscribers = IntGauge::new(
            "collab_channel_subscribers",
            "Connections subscribed to channel updates",
        )
        .unwrap();
        let notes_collaborators =
            IntGauge::new("collab_notes_collaborators", "RPC editors in channel notes").unwrap();
        let chat_messages =
            prometheus::IntCounter::new("collab_chat_messages_total", "Chat messages stored")
                .unwrap();
        let chat_rate_limited = prometheus::IntCounter::new(
            "collab_chat_rate_limited_total",
            "Chat messages refused by the per-user rate limit",
        )
        .unwrap();
        let notifications =
            prometheus::IntCounter::new("collab_notifications_total", "Notifications created")
                .unwrap();
        for metric in [
            Box::new(channel_subscribers.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(notes_collaborators.clone()),
            Box::new(chat_messages.clone()),
            Box::new(chat_rate_limited.clone()),
            Box::new(notifications.clone()),
        ] {
            registry.register(metric).unwrap();
        }
        for metric in [
            Box::new(documents_loaded.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(document_load_seconds.clone()),
            Box::new(document_updates.clone()),
            Box::new(document_update_bytes.clone()),
            Box::new(document_commit_seconds.clone()),
            Box::new(document_commit_batch.clone()),
            Box::new(document_compactions.clone()),
            Box::new(yjs_connections.clone()),
            Box::new(yjs_closed.clone()),
        ] {
            registry.register(metric).unwrap();
        }
        for metric in [
            Box::new(shared_projects.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(project_collaborators.clone()),
            Box::new(buffer_operations_relayed.clone()),
            Box::new(forwarded_requests.clone()),
            Box::new(join_entries_streamed.clone()),
        ] {
            registry.register(metric).unwrap();
        }
        registry.register(Box::new(users_online.clone())).unwrap();
        registry
            .register(Box::new(connections_refused.clone()))
            .unwrap();
        registry
            .register(Box::new(connection_work_waiting.clone()))
            .unwrap();
        registry.register(Box::new(db_retries.clone())).unwrap();
        registry
            .register(Box::new(db_writers_waiting.clone()))
            .unwrap();
        Metrics {
            registry,
            rpc,
            users_online,
            connections_refused,
            connection_work_waiting,
            shared_projects,
            project_collaborators,
            buffer_operations_relayed,
            forwarded_requests,
            join_entries_streamed,
            documents_loaded,
            document_load_seconds,
            document_updates,
            document_update_bytes,
            document_commit_seconds,
            document_commit_batch,
            document_compactions,
            yjs_connections,
            yjs_closed,
            channel_subscribers,
            notes_collaborators,
            chat_messages,
            chat_rate_limited,
            notifications,
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
