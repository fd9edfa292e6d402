//! `idle`: C idle authenticated RPC connections, and the server's memory per connection.
//! Each connection is a bare WebSocket (no client library state on this side) that
//! upgrades with a token, reads what the server sends (Hello, its initial state) and
//! answers pings, from a source address given with `--source-ip` (spread clients over
//! 127.0.0.x when one address runs out of ports). Several processes may run at once
//! against one server (the per-process descriptor cap is 20,000); each reports the
//! server's RSS growth while it held its connections.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{ProcSampler, Tokens, result, rpc_url, rss_kib};

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// The local address connections come from.
    #[arg(long, default_value = "127.0.0.1")]
    pub source_ip: IpAddr,
    /// How long to hold the connections once all are open.
    #[arg(long, default_value_t = 5)]
    pub hold_seconds: u64,
}

async fn open(
    url: &str,
    token: &str,
    source: IpAddr,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {token}").parse()?);
    headers.insert(
        collab::collab::connection::PROTOCOL_VERSION_HEADER,
        collab::rpc::proto::PROTOCOL_VERSION.to_string().parse()?,
    );
    let host = request.uri().host().unwrap_or("127.0.0.1").to_string();
    let port = request.uri().port_u16().unwrap_or(80);
    let server: SocketAddr = format!("{host}:{port}").parse()?;
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream).await?;
    // Reading answers the server's pings; nothing else is sent.
    Ok(tokio::spawn(async move {
        while let Some(Ok(_)) = socket.next().await {}
    }))
}

pub async fn run(args: IdleArgs, tokens: Tokens) -> anyhow::Result<()> {
    let url = rpc_url(&args.url);
    // One user: the server's state per connection does not depend on who it is.
    let token = tokens.token("idle").await?;
    let before = args.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let mut connections = Vec::with_capacity(args.connections);
    let mut failed = 0usize;
    // In batches of 100, so the accept queue is not overrun.
    for batch in (0..args.connections).collect::<Vec<_>>().chunks(100) {
        let opened =
            futures::future::join_all(batch.iter().map(|_| open(&url, &token, args.source_ip)))
                .await;
        for connection in opened {
            match connection {
                Ok(task) => connections.push(task),
                Err(error) => {
                    if failed == 0 {
                        eprintln!("a connection failed: {error:#}");
                    }
                    failed += 1;
                }
            }
        }
    }
    let connect = started.elapsed();
    // Let the server settle (lazily grown buffers, the allocator) before reading it.
    let sampler = ProcSampler::start(args.server_pid);
    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    let server = sampler.finish();
    let after = args.server_pid.and_then(rss_kib);
    let open_now = connections.iter().filter(|c| !c.is_finished()).count();
    let per_connection = match (before, after) {
        (Some(before), Some(after)) if open_now > 0 => {
            Some(after.saturating_sub(before) as f64 / open_now as f64)
        }
        _ => None,
    };
    println!(
        "idle: {open_now} of {} connections open from {} (connected in {:.1} s, {failed} failed); server RSS {before:?} -> {after:?} KiB, {per_connection:?} KiB per connection",
        args.connections,
        args.source_ip,
        connect.as_secs_f64()
    );
    result(json!({
        "scenario": "idle",
        "connections": args.connections,
        "open": open_now,
        "failed": failed,
        "source_ip": args.source_ip.to_string(),
        "connect_seconds": connect.as_secs_f64(),
        "server_rss_before_kib": before,
        "server_rss_after_kib": after,
        "server_kib_per_connection": per_connection,
        "server": server,
    }));
    for connection in connections {
        connection.abort();
    }
    Ok(())
}
