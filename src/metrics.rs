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
}

impl Metrics {
    pub fn new(db_retries: &prometheus::IntCounter) -> Self {
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
        registry.register(Box::new(db_retries.clone())).unwrap();
        Metrics {
            registry,
            rpc,
            users_online,
            connections_refused,
            shared_projects,
            project_collaborators,
            buffer_operations_relayed,
            forwarded_requests,
            join_entries_streamed,
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
