//! The database: sea-orm over SQLite (embedded default, WAL) or PostgreSQL.
//!
//! - [`ids`]: typed id newtypes.
//! - [`entities`]: one sea-orm entity per table.
//! - [`queries`]: `impl Database` blocks, one file per domain.
//!
//! Every write goes through [`Database::transaction`], which runs the closure in a
//! serializable transaction (SQLite transactions are serializable by construction) and
//! retries it when the database reports a serialization failure or a busy lock. On
//! SQLite, this process's writers also take turns before they begin
//! ([`Database::write_turn`]).

pub mod entities;
pub mod ids;
pub mod queries;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use sea_orm::{
    ConnectOptions, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, IsolationLevel,
    RuntimeErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use ids::*;

use crate::{error::Result, migrations::Migrator};

/// Attempts of one transaction before a serialization failure is returned.
const MAX_TRANSACTION_ATTEMPTS: u32 = 10;

#[derive(Clone)]
pub struct Database {
    pub conn: DatabaseConnection,
    /// Counts retried transactions (a metric: contention shows up here first).
    pub retries: prometheus::IntCounter,
    /// SQLite only: the turn this process's writers take, in order (see `write_turn`).
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Writers waiting for their turn (a metric; always 0 on PostgreSQL).
    pub writers_waiting: prometheus::IntGauge,
}

/// A writer's turn at the SQLite database; dropping it lets the next writer in.
pub struct WriteTurn {
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Database {
    /// Connects to `url`. SQLite files are created when missing and put in WAL mode with
    /// full fsync on commit, so an acknowledged write survives a crash.
    pub async fn connect(url: &str) -> Result<Self, DbErr> {
        let mut options = ConnectOptions::new(url.to_string());
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10));
        if url.starts_with("sqlite:") {
            // sea-orm defaults SQLite to one connection; WAL lets readers run beside the
            // writer, and lost write races come back as retryable busy errors.
            options.max_connections(8);
            options.map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        } else {
            options.max_connections(32);
        }
        let sqlite = url.starts_with("sqlite:");
        let conn = sea_orm::Database::connect(options).await?;
        let retries = prometheus::IntCounter::new(
            "collab_db_transaction_retries_total",
            "Transactions retried after a serialization failure or busy lock",
        )
        .expect("valid metric");
        let writers_waiting = prometheus::IntGauge::new(
            "collab_db_writers_waiting",
            "Writers waiting for their turn at the SQLite database (0 on PostgreSQL)",
        )
        .expect("valid metric");
        Ok(Database {
            conn,
            retries,
            write_gate: sqlite.then(Arc::default),
            writers_waiting,
        })
    }

    /// Waits for this writer's turn (SQLite; at once on PostgreSQL). Hold it from before
    /// the first statement of a write until its commit.
    ///
    /// SQLite has one writer at a time. Writers that met at its lock would be put to
    /// sleep by its busy handler for 1, 2, 5, 10, 15, 20… ms, rechecking in between, so
    /// a group commit that came a moment after a compaction began slept 30–50 ms longer
    /// than the compaction took. Queued here, the next writer starts the moment the
    /// previous one commits. Other processes (`collab seed`, a second server on the same
    /// file) still meet this one at SQLite's lock, under its busy timeout.
    pub async fn write_turn(&self) -> WriteTurn {
        let Some(gate) = &self.write_gate else {
            return WriteTurn { _turn: None };
        };
        let turn = match gate.clone().try_lock_owned() {
            Ok(turn) => turn,
            Err(_) => {
                self.writers_waiting.inc();
                let turn = gate.clone().lock_owned().await;
                self.writers_waiting.dec();
                turn
            }
        };
        WriteTurn { _turn: Some(turn) }
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Applies pending migrations; returns the names of those applied now.
    pub async fn migrate(&self) -> Result<Vec<String>, DbErr> {
        let pending: Vec<String> = Migrator::get_pending_migrations(&self.conn)
            .await?
            .iter()
            .map(|migration| migration.name().to_string())
            .collect();
        Migrator::up(&self.conn, None).await?;
        Ok(pending)
    }

    /// Runs `body` in a transaction, retrying it on serialization failures. The closure
    /// may run more than once, so it must not have effects outside the transaction.
    pub async fn transaction<T, F>(&self, body: F) -> Result<T>
    where
        T: Send,
        F: for<'a> Fn(&'a DatabaseTransaction) -> BoxFuture<'a, Result<T>> + Send + Sync,
    {
        // PostgreSQL: serializable, so concurrent transactions that would lose an update
        // fail and are retried. SQLite has one writer: taking the write lock at BEGIN
        // (waiting up to the busy timeout) serializes writers outright; a deferred
        // transaction that reads first would instead fail its upgrade whenever another
        // write committed meanwhile, and starve under a steady stream of group commits.
        let options = match self.backend() {
            DbBackend::Postgres => TransactionOptions {
                isolation_level: Some(IsolationLevel::Serializable),
                ..Default::default()
            },
            _ => TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            },
        };
        let mut attempt = 1;
        loop {
            let outcome = async {
                let _turn = self.write_turn().await;
                let tx = self.conn.begin_with_options(options).await?;
                let value = body(&tx).await?;
                tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Err(crate::Error::Database(error))
                    if is_retryable(&error) && attempt < MAX_TRANSACTION_ATTEMPTS =>
                {
                    self.retries.inc();
                    tracing::debug!(%error, attempt, "retrying transaction");
                    // Back off a little, with jitter, so contenders do not collide again.
                    let jitter = rand::random::<u64>() % (5 * attempt as u64 + 1);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

/// Serialization failures and deadlocks (PostgreSQL 40001 / 40P01) and busy or locked
/// databases (SQLite 5 / 6 and their extended codes) succeed when retried.
fn is_retryable(error: &DbErr) -> bool {
    let runtime = match error {
        DbErr::Exec(runtime) | DbErr::Query(runtime) | DbErr::Conn(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(sqlx_error) = runtime else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(database_error) = sqlx_error.as_ref() else {
        return false;
    };
    let code = database_error.code().unwrap_or_default();
    matches!(
        code.as_ref(),
        "40001" | "40P01" | "5" | "6" | "261" | "517" | "262"
    )
}

/// `true` when the error is a unique-constraint violation (a lost insert race).
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
