//! The handler registry on its own: a bare `rpc::Server` behind a plain WebSocket
//! listener, with no domain at all. Every request gets an answer, whatever its handler
//! does.

use std::{sync::Arc, time::Duration};

use collab::rpc::{
    Connection, Peer, PeerConfig, Response, RpcError, Server, metrics::RpcMetrics, proto,
};
use tokio_util::sync::CancellationToken;

/// Serves `server` on a loopback port; returns a connected client peer and its
/// connection id.
async fn serve(server: Server<()>) -> (Arc<Peer>, collab::rpc::ConnectionId) {
    serve_with(server, PeerConfig::default()).await
}

async fn serve_with(
    server: Server<()>,
    client_config: PeerConfig,
) -> (Arc<Peer>, collab::rpc::ConnectionId) {
    let server = Arc::new(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let (id, io, incoming) = server
                    .peer()
                    .add_connection(Connection::from_tungstenite(socket));
                tokio::spawn(io);
                server
                    .handle_connection(id, incoming, (), CancellationToken::new())
                    .await;
            });
        }
    });
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
        .await
        .unwrap();
    let client = Peer::new(0, client_config, RpcMetrics::new(None));
    let (id, io, incoming) = client.add_connection(Connection::from_tungstenite(socket));
    tokio::spawn(io);
    // Keep the client's incoming queue alive (and drained) for the test's lifetime.
    tokio::spawn(async move {
        let mut incoming = incoming;
        while incoming.recv().await.is_some() {}
    });
    (client, id)
}

fn server() -> Server<()> {
    Server::new(
        Peer::new(1, PeerConfig::default(), RpcMetrics::new(None)),
        16,
    )
}

#[test]
#[should_panic(expected = "a handler for Ping is already registered")]
fn registering_a_message_twice_panics() {
    async fn ping(_: proto::Ping, response: Response<proto::Ping>, _: ()) -> Result<(), RpcError> {
        response.send(proto::Ack {})
    }
    let mut server = server();
    server.add_request_handler(ping).add_request_handler(ping);
}

#[tokio::test]
async fn a_handler_that_does_not_respond_yields_internal() {
    let mut server = server();
    server.add_request_handler(|_: proto::Ping, _: Response<proto::Ping>, _: ()| async {
        Ok::<_, RpcError>(())
    });
    let (client, id) = serve(server).await;
    let error = client.request(id, proto::Ping {}).await.unwrap_err();
    assert_eq!(error.code, proto::ErrorCode::Internal);
}

#[tokio::test]
async fn a_handler_error_becomes_a_response_with_its_code() {
    let mut server = server();
    server.add_request_handler(|_: proto::Ping, _: Response<proto::Ping>, _: ()| async {
        Err::<(), _>(
            RpcError::new(proto::ErrorCode::Forbidden, "not you").with_tag("reason", "test"),
        )
    });
    let (client, id) = serve(server).await;
    let error = client.request(id, proto::Ping {}).await.unwrap_err();
    assert_eq!(error.code, proto::ErrorCode::Forbidden);
    assert_eq!(error.message, "not you");
    assert_eq!(error.tag("reason"), Some("test"));
}

#[tokio::test]
async fn a_panicking_handler_yields_internal_and_the_connection_survives() {
    let mut server = server();
    server.add_request_handler(
        |request: proto::GetUsers, response: Response<proto::GetUsers>, _: ()| async move {
            if request.user_ids.is_empty() {
                panic!("boom");
            }
            response.send(proto::UsersResponse::default())
        },
    );
    let (client, id) = serve(server).await;
    let error = client
        .request(id, proto::GetUsers::default())
        .await
        .unwrap_err();
    assert_eq!(error.code, proto::ErrorCode::Internal);
    client
        .request(id, proto::GetUsers { user_ids: vec![1] })
        .await
        .expect("still served");
}

#[tokio::test]
async fn a_request_without_a_handler_gets_unknown_message() {
    let (client, id) = serve(server()).await;
    let error = client.request(id, proto::Ping {}).await.unwrap_err();
    assert_eq!(error.code, proto::ErrorCode::UnknownMessage);
    assert!(error.message.contains("Ping"), "{error}");
}

/// With a cap of 16 handlers in flight, 100 slow requests all complete: the loop pauses
/// reading instead of failing or spawning without bound.
#[tokio::test]
async fn handlers_in_flight_are_capped_without_losing_requests() {
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut server = server();
    let (r, p) = (running.clone(), peak.clone());
    server.add_request_handler(
        move |_: proto::Ping, response: Response<proto::Ping>, _: ()| {
            let (running, peak) = (r.clone(), p.clone());
            async move {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                response.send(proto::Ack {})
            }
        },
    );
    let (client, id) = serve(server).await;
    let requests = (0..100).map(|_| client.request(id, proto::Ping {}));
    for result in futures::future::join_all(requests).await {
        result.expect("every request answered");
    }
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak <= 16, "at most 16 handlers ran at once, saw {peak}");
    assert!(peak > 1, "handlers do run concurrently, saw {peak}");
}

/// A request the other side never answers fails with `Timeout`, not a hang.
#[tokio::test]
async fn an_unanswered_request_times_out() {
    let mut server = server();
    server.add_request_handler(
        |_: proto::Ping, response: Response<proto::Ping>, _: ()| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            response.send(proto::Ack {})
        },
    );
    let client_config = PeerConfig {
        request_timeout: Duration::from_millis(200),
        ..PeerConfig::default()
    };
    let (client, id) = serve_with(server, client_config).await;
    let error = client.request(id, proto::Ping {}).await.unwrap_err();
    assert_eq!(error.code, proto::ErrorCode::Timeout);
}

/// A connection's incoming-bytes budget bounds the memory its requests hold: with room
/// for three 20 KiB requests, ten sent at once run at most three at a time (the handler
/// cap of 16 would allow all ten), and all ten are answered.
#[tokio::test]
async fn large_requests_wait_for_the_incoming_byte_budget() {
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let config = PeerConfig {
        incoming_bytes: 64 * 1024,
        ..PeerConfig::default()
    };
    let metrics = RpcMetrics::new(None);
    let mut server = Server::new(Peer::new(1, config, metrics.clone()), 16);
    let (r, p) = (running.clone(), peak.clone());
    server.add_request_handler(
        move |_: proto::SearchUsers, response: Response<proto::SearchUsers>, _: ()| {
            let (running, peak) = (r.clone(), p.clone());
            async move {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                // Simulated work, so that requests overlap.
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                response.send(proto::UsersResponse::default())
            }
        },
    );
    let (client, id) = serve(server).await;
    // Incompressible bytes, so each frame really is about 20 KiB.
    let query = |i: usize| {
        (0..20 * 1024)
            .map(|j| char::from(b'a' + ((i * 31 + j * 7919) % 26) as u8))
            .collect()
    };
    let requests = (0..10).map(|i| {
        client.request(
            id,
            proto::SearchUsers {
                query: query(i),
                limit: 0,
            },
        )
    });
    for result in futures::future::join_all(requests).await {
        result.expect("every request answered");
    }
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        peak <= 3,
        "at most three 20 KiB requests held at once, saw {peak}"
    );
    assert!(
        metrics.incoming_waits.get() > 0,
        "the reader waited for budget"
    );
}

/// A burst longer than one write batch (256 envelopes) queued at once reaches the other
/// side whole and in order: the writer flushes a full batch and takes the rest after it.
#[tokio::test]
async fn a_burst_longer_than_a_write_batch_arrives_whole_and_in_order() {
    const BURST: u64 = 1000;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Peer::new(1, PeerConfig::default(), RpcMetrics::new(None));
    let (accepted, id) = tokio::sync::oneshot::channel();
    let serving = server.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let (id, io, incoming) = serving.add_connection(Connection::from_tungstenite(socket));
        tokio::spawn(io);
        accepted.send((id, incoming)).ok();
    });
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
        .await
        .unwrap();
    let client = Peer::new(0, PeerConfig::default(), RpcMetrics::new(None));
    let (_, io, mut incoming) = client.add_connection(Connection::from_tungstenite(socket));
    tokio::spawn(io);
    let (id, _server_incoming) = id.await.unwrap();

    // Queued without yielding: on this single-threaded runtime the writer sees them all
    // at once.
    for n in 0..BURST {
        let update = proto::UpdateContacts {
            outgoing_requests: vec![n],
            ..Default::default()
        };
        server.send(id, update).unwrap();
    }
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        let mut received = Vec::new();
        while (received.len() as u64) < BURST {
            let envelope = incoming
                .recv()
                .await
                .expect("connection open")
                .into_envelope();
            if let Some(proto::envelope::Payload::UpdateContacts(update)) = envelope.payload {
                received.extend(update.outgoing_requests);
            }
        }
        received
    })
    .await
    .expect("the whole burst arrives");
    assert_eq!(received, (0..BURST).collect::<Vec<_>>());
}
