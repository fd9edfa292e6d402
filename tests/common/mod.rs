//! The test harness: a real `collab` server on `127.0.0.1:0` with a temporary SQLite
//! file, or a fresh PostgreSQL database when `COLLAB_TEST_DATABASE_URL` is set, plus
//! helpers to make users, tokens and clients.
//!
//! `db_test!(story)` turns `async fn story(backend: Backend)` into two tests, `sqlite`
//! and `postgres`; the second reports itself skipped when no PostgreSQL URL is set.
#![allow(dead_code)]

pub mod channels;
pub mod notes;
pub mod projects;
pub mod raw;
pub mod rooms;
pub mod yjs;

use std::{sync::Arc, time::Duration};

use collab::{
    AppState, Config,
    client::Client,
    db::{UserId, entities::user},
    serve::{self, RunningServer},
};
use sea_orm::ConnectionTrait;

/// How long a test waits for any single event before failing.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// A server URL; each `TestServer` creates its own database there.
    Postgres(String),
}

impl Backend {
    pub fn postgres() -> Option<Backend> {
        match std::env::var("COLLAB_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                eprintln!("skipped: set COLLAB_TEST_DATABASE_URL to run this test on PostgreSQL");
                None
            }
        }
    }
}

#[macro_export]
macro_rules! db_test {
    ($story:ident) => {
        mod $story {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$story($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(backend) = $crate::common::Backend::postgres() {
                    super::$story(backend).await
                }
            }
        }
    };
}

/// A PostgreSQL database created for one test server, dropped by `stop`.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create(base_url: &str) -> (PgDatabase, String) {
        let name = format!("collab_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(base_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let mut url = url::Url::parse(base_url).expect("valid COLLAB_TEST_DATABASE_URL");
        url.set_path(&format!("/{name}"));
        (
            PgDatabase {
                admin_url: base_url.to_string(),
                name,
            },
            url.to_string(),
        )
    }

    pub async fn drop_database(&self) {
        if let Ok(admin) = sea_orm::Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub state: Arc<AppState>,
    pub dir: tempfile::TempDir,
    config: Config,
    server: Option<RunningServer>,
    pg: Option<PgDatabase>,
}

/// A config for tests: a temp data dir, port 0, and the backend's database.
pub async fn test_config(backend: &Backend) -> (Config, tempfile::TempDir, Option<PgDatabase>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::with_data_dir(dir.path());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.shutdown_timeout = Duration::from_secs(5);
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(base) => {
            let (pg, url) = PgDatabase::create(base).await;
            config.store.database_url = Some(url);
            Some(pg)
        }
    };
    (config, dir, pg)
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestServer {
        let (mut config, dir, pg) = test_config(&backend).await;
        configure(&mut config);
        let server = serve::start(config.clone()).await.expect("server starts");
        TestServer {
            addr: server.addr,
            state: server.state.clone(),
            dir,
            config,
            server: Some(server),
            pg,
        }
    }

    /// Stops this server gracefully and starts a new one on the same data (a new
    /// server id, a new port).
    pub async fn restart(mut self) -> TestServer {
        self.halt().await;
        let server = serve::start(self.config.clone())
            .await
            .expect("server restarts");
        TestServer {
            addr: server.addr,
            state: server.state.clone(),
            dir: self.dir,
            config: self.config,
            server: Some(server),
            pg: self.pg.take(),
        }
    }

    pub fn rpc_url(&self) -> String {
        format!("ws://{}/rpc", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn user(&self, login: &str) -> user::Model {
        self.state
            .db
            .ensure_user(login, None, false)
            .await
            .expect("create user")
            .0
    }

    pub async fn admin(&self, login: &str) -> user::Model {
        self.state
            .db
            .ensure_user(login, None, true)
            .await
            .expect("create admin")
            .0
    }

    pub async fn user_id(&self, login: &str) -> UserId {
        self.user(login).await.id
    }

    /// A fresh access token for `login` (created if missing).
    pub async fn token(&self, login: &str) -> String {
        let user = match self.state.db.get_user_by_login(login).await.unwrap() {
            Some(user) => user,
            None => self.user(login).await,
        };
        self.state
            .auth
            .mint_access_token(&self.state.db, &user, None, Duration::from_secs(3600))
            .await
            .expect("mint token")
            .token
    }

    /// A connected client for `login`.
    pub async fn client(&self, login: &str) -> Client {
        let token = self.token(login).await;
        Client::connect(&self.rpc_url(), &token)
            .await
            .expect("client connects")
    }

    /// Waits until exactly `count` RPC connections are open (disconnect metrics are
    /// final for those that ended).
    pub async fn until_connections(&self, count: usize) {
        let mut watch = self.state.peer.watch_connections();
        within(
            "the connection count",
            watch.wait_for(|open| *open == count),
        )
        .await
        .unwrap();
    }

    /// How many RPC connections ended for `reason` (the disconnect metric's label).
    pub fn disconnects(&self, reason: &str) -> u64 {
        self.state
            .metrics
            .rpc
            .disconnects
            .with_label_values(&[reason])
            .get()
    }

    /// Shuts the server down gracefully, keeping its database for inspection.
    pub async fn halt(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    /// Shuts the server down gracefully and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        self.halt().await;
        if let Some(pg) = self.pg.take() {
            pg.drop_database().await;
        }
    }
}

/// Waits for `future` or fails the test after `WAIT`.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
