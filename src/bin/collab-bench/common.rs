//! What every scenario shares: latency percentiles, the server's CPU and memory read
//! from `/proc`, tokens minted from the server's own store, and the `RESULT` line the
//! bench script collects.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use collab::{config::StoreArgs, db::Database};
use serde_json::{Value, json};

/// Microseconds since the Unix epoch: send times carried in payloads.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A tag for this run's users, so runs against one server never share a user (a
/// previous run's users may still hold their rooms through the reconnect grace).
pub fn run_tag() -> String {
    format!("{:x}", now_micros() % 0xffff_ffff)
}

/// Latency samples in microseconds.
#[derive(Default)]
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0.push(latency.as_micros() as u64);
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.0.push(micros);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn summary(&mut self) -> Value {
        self.0.sort_unstable();
        let at = |p: f64| -> f64 {
            if self.0.is_empty() {
                return 0.0;
            }
            let index = ((self.0.len() - 1) as f64 * p).round() as usize;
            self.0[index] as f64 / 1000.0
        };
        json!({
            "count": self.0.len(),
            "p50_ms": at(0.50),
            "p95_ms": at(0.95),
            "p99_ms": at(0.99),
            "max_ms": at(1.0),
        })
    }
}

fn proc_stat(pid: u32) -> Option<(u64, u64)> {
    // utime and stime, fields 14 and 15, counted after the `(comm)` that may hold spaces.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The server's CPU use over a run, and its memory at the end.
pub struct ProcSampler {
    pid: Option<u32>,
    started: Instant,
    ticks: Option<(u64, u64)>,
}

impl ProcSampler {
    pub fn start(pid: Option<u32>) -> Self {
        ProcSampler {
            pid,
            started: Instant::now(),
            ticks: pid.and_then(proc_stat),
        }
    }

    pub fn finish(&self) -> Value {
        let Some(pid) = self.pid else {
            return json!({ "cpu_percent": null, "rss_kib": null, "rss_peak_kib": null });
        };
        // Clock ticks are 100 per second on Linux.
        let cpu = match (self.ticks, proc_stat(pid)) {
            (Some((u0, s0)), Some((u1, s1))) => {
                let seconds = ((u1 + s1).saturating_sub(u0 + s0)) as f64 / 100.0;
                Some(100.0 * seconds / self.started.elapsed().as_secs_f64())
            }
            _ => None,
        };
        json!({
            "cpu_percent": cpu,
            "rss_kib": rss_kib(pid),
            "rss_peak_kib": status_kib(pid, "VmHWM:"),
        })
    }
}

/// Prints the line the bench script collects.
pub fn result(value: Value) {
    println!("RESULT {value}");
}

/// Merges the fields of `extra` into `value` (both objects).
pub fn merged(mut value: Value, extra: Value) -> Value {
    if let (Some(object), Value::Object(extra)) = (value.as_object_mut(), extra) {
        object.extend(extra);
    }
    value
}

/// Mints access tokens for bench users straight from the server's store (its data
/// directory or database URL, and its JWT secret), as `collab token create` does.
pub struct Tokens {
    db: Database,
    auth: collab::auth::Auth,
}

impl Tokens {
    pub async fn open(store: &StoreArgs) -> anyhow::Result<Tokens> {
        let db = collab::serve::open_database(store, false).await?;
        let secret =
            collab::auth::secret::load_or_create(store.jwt_secret.as_deref(), &store.data_dir)?;
        Ok(Tokens {
            db,
            auth: collab::auth::Auth::new(&secret),
        })
    }

    pub async fn token(&self, login: &str) -> anyhow::Result<String> {
        let (user, _) = self.db.ensure_user(login, None, false).await?;
        Ok(self
            .auth
            .mint_access_token(&self.db, &user, None, Duration::from_secs(24 * 3600))
            .await?
            .token)
    }

    pub fn db(&self) -> &Database {
        &self.db
    }
}

/// The `/rpc` URL of a server given as `http://HOST:PORT` (or `ws://…`).
pub fn rpc_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .unwrap_or_else(|| base.to_string());
    format!("{base}/rpc")
}
