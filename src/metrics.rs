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
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
