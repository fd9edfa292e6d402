//! Prometheus metrics of the RPC layer. They are registered into the registry the
//! caller passes (the server's `/metrics`); the client library uses an unregistered set.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Clone)]
pub struct RpcMetrics {
    /// Open RPC connections.
    pub connections: IntGauge,
    /// Envelopes received, by payload type.
    pub messages_in: IntCounterVec,
    /// Envelopes written to sockets, by payload type.
    pub messages_out: IntCounterVec,
    /// Time from a message's arrival to its handler's completion, by payload type.
    pub handler_seconds: HistogramVec,
    /// Error responses sent, by error code.
    pub errors: IntCounterVec,
    /// Connections that ended, by reason (closed, silent, slow_consumer, bad_frame, ...).
    pub disconnects: IntCounterVec,
    /// Envelopes dropped at the queue by a full outgoing queue (the connection is cut).
    pub queue_overflows: IntCounterVec,
    /// Times a connection's reader paused because its incoming-bytes budget was spent.
    pub incoming_waits: IntCounter,
    /// Whether `messages_in` / `messages_out` are counted: only when registered. Each
    /// count is a label lookup per envelope, which nobody could read in a client.
    pub by_type: bool,
}

impl RpcMetrics {
    pub fn new(registry: Option<&Registry>) -> Self {
        let metrics = RpcMetrics {
            connections: IntGauge::new("collab_rpc_connections", "Open RPC connections").unwrap(),
            messages_in: IntCounterVec::new(
                Opts::new(
                    "collab_rpc_messages_in_total",
                    "Envelopes received, by type",
                ),
                &["type"],
            )
            .unwrap(),
            messages_out: IntCounterVec::new(
                Opts::new("collab_rpc_messages_out_total", "Envelopes sent, by type"),
                &["type"],
            )
            .unwrap(),
            handler_seconds: HistogramVec::new(
                HistogramOpts::new("collab_rpc_handler_seconds", "Handler latency, by type")
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
                &["type"],
            )
            .unwrap(),
            errors: IntCounterVec::new(
                Opts::new("collab_rpc_errors_total", "Error responses sent, by code"),
                &["code"],
            )
            .unwrap(),
            disconnects: IntCounterVec::new(
                Opts::new(
                    "collab_rpc_disconnects_total",
                    "Connections ended, by reason",
                ),
                &["reason"],
            )
            .unwrap(),
            incoming_waits: IntCounter::new(
                "collab_rpc_incoming_budget_waits_total",
                "Times a reader paused because its connection's incoming-bytes budget was spent",
            )
            .unwrap(),
            by_type: registry.is_some(),
            queue_overflows: IntCounterVec::new(
                Opts::new(
                    "collab_rpc_queue_overflows_total",
                    "Connections cut because their outgoing queue was full, by limit",
                ),
                &["limit"],
            )
            .unwrap(),
        };
        if let Some(registry) = registry {
            // Registration fails only for duplicate names, i.e. a programming error.
            registry
                .register(Box::new(metrics.connections.clone()))
                .unwrap();
            registry
                .register(Box::new(metrics.messages_in.clone()))
                .unwrap();
            registry
                .register(Box::new(metrics.messages_out.clone()))
                .unwrap();
            registry
                .register(Box::new(metrics.handler_seconds.clone()))
                .unwrap();
            registry.register(Box::new(metrics.errors.clone())).unwrap();
            registry
                .register(Box::new(metrics.disconnects.clone()))
                .unwrap();
            registry
                .register(Box::new(metrics.queue_overflows.clone()))
                .unwrap();
            registry
                .register(Box::new(metrics.incoming_waits.clone()))
                .unwrap();
        }
        metrics
    }
}
