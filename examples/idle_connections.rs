//! Opens many idle authenticated RPC connections to a running server, pings each once,
//! and holds them, so the server's memory per connection can be read off.
//!
//! ```sh
//! collab serve --bind 127.0.0.1:8080 &
//! TOKEN=$(collab token create --user loadtest)
//! cargo run --release --example idle_connections -- ws://127.0.0.1:8080/rpc "$TOKEN" 5000 [server-pid]
//! ```
//!
//! With a server pid it prints the server's RSS before and after, and per connection.

use std::time::{Duration, Instant};

use collab::{client::Client, rpc::proto};

fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, token, count, rest @ ..] = args.as_slice() else {
        eprintln!("usage: idle_connections <ws-url> <token> <count> [server-pid]");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("count is a number");
    let pid = rest.first();
    let before = pid.and_then(|pid| rss_kib(pid));

    let started = Instant::now();
    let mut clients = Vec::with_capacity(count);
    // Connect in batches of 100 so the accept queue is not overrun.
    for batch in (0..count).collect::<Vec<_>>().chunks(100) {
        let connects = batch.iter().map(|_| Client::connect(url, token));
        for client in futures::future::join_all(connects).await {
            clients.push(client.expect("connects"));
        }
    }
    let connected = started.elapsed();
    let pings = clients.iter().map(|client| client.request(proto::Ping {}));
    for result in futures::future::join_all(pings).await {
        result.expect("ping answered");
    }
    println!(
        "connections: {count}; connect time {connected:.2?}; all pinged after {:.2?}",
        started.elapsed()
    );
    // Let the server settle (allocator, lazily grown buffers) before reading its RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some(pid), Some(before)) = (pid, before) {
        let after = rss_kib(pid).unwrap_or(0);
        let per = (after.saturating_sub(before)) as f64 / count as f64;
        println!(
            "server RSS: {before} KiB before, {after} KiB with {count} connections: {per:.1} KiB per connection"
        );
    }
    for client in &clients {
        client.close().await;
    }
}
