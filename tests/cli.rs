//! The `collab` binary as an operator uses it: migrate, seed, tokens, serve, and clear
//! refusals of bad arguments.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
};

use collab::{client::Client, rpc::proto};
use common::Backend;

const BIN: &str = env!("CARGO_BIN_EXE_collab");

/// Runs `collab <args>` against `store` (data dir, and database URL when PostgreSQL).
fn collab(store: &[String], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(store)
        .env_remove("DATABASE_URL")
        .output()
        .expect("runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

async fn store_args(
    backend: &Backend,
) -> (Vec<String>, tempfile::TempDir, Option<common::PgDatabase>) {
    let (config, dir, pg) = common::test_config(backend).await;
    let mut args = vec!["--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(url) = config.store.database_url {
        args.extend(["--database-url".to_string(), url]);
    }
    (args, dir, pg)
}

/// Migrations and seeds apply once; running them again changes nothing and says so.
async fn migrate_and_seed_are_idempotent(backend: Backend) {
    let (store, _dir, pg) = store_args(&backend).await;
    let first = collab(&store, &["migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("applied m20261123_000001_initial"),
        "{}",
        stderr(&first)
    );
    let second = collab(&store, &["migrate"]);
    assert!(second.status.success());
    assert!(
        stderr(&second).contains("up to date"),
        "{}",
        stderr(&second)
    );

    let seeds = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/default.json");
    let first = collab(&store, &["seed", "--file", seeds]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("created 4 users"),
        "{}",
        stderr(&first)
    );
    let second = collab(&store, &["seed", "--file", seeds]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("nothing to change"),
        "{}",
        stderr(&second)
    );

    // The seeded admin is an admin.
    let url = match store.iter().position(|arg| arg == "--database-url") {
        Some(i) => store[i + 1].clone(),
        None => collab::config::StoreArgs::new(&store[1]).database_url(),
    };
    let db = collab::db::Database::connect(&url).await.unwrap();
    assert!(
        db.get_user_by_login("admin")
            .await
            .unwrap()
            .unwrap()
            .is_admin
    );
    assert!(
        !db.get_user_by_login("alice")
            .await
            .unwrap()
            .unwrap()
            .is_admin
    );
    drop(db);
    if let Some(pg) = pg {
        pg.drop_database().await;
    }
}
db_test!(migrate_and_seed_are_idempotent);

/// `serve` on port 0 prints its address; `token create` prints a token that connects;
/// `token revoke` locks it out; SIGTERM stops the server cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_token_connect_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut server = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir", &data])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let addr = first_line
        .trim()
        .strip_prefix("collab listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_string();

    let created = collab(
        &["--data-dir".into(), data.clone()],
        &["token", "create", "--user", "alice"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        stderr(&created).contains("created user alice"),
        "{}",
        stderr(&created)
    );
    let token = String::from_utf8_lossy(&created.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "stdout is exactly the JWT");

    let url = format!("ws://{addr}/rpc");
    let client = Client::connect(&url, &token).await.expect("token connects");
    client.request(proto::Ping {}).await.expect("Ack");

    // A second token for the same user does not re-create them.
    let again = collab(
        &["--data-dir".into(), data.clone()],
        &["token", "create", "--user", "alice"],
    );
    assert!(
        !stderr(&again).contains("created user"),
        "{}",
        stderr(&again)
    );

    let jti = stderr(&created)
        .split("token id (jti) ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let revoked = collab(
        &["--data-dir".into(), data.clone()],
        &["token", "revoke", &jti],
    );
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = Client::connect(&url, &token)
        .await
        .err()
        .expect("revoked token refused");
    assert!(
        matches!(
            refused,
            collab::client::ConnectError::Http { status: 401, .. }
        ),
        "{refused}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    common::within("the client to see the close", client.closed()).await;
    let exit = tokio::task::spawn_blocking(move || server.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit, got {exit:?}");
}

/// Bad arguments: a message on stderr and a non-zero exit, never a panic.
#[test]
fn bad_arguments_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = ["--data-dir".to_string(), dir.path().display().to_string()];
    let cases: &[(&[&str], &str)] = &[
        (&["token", "create"], "--user"),
        (
            &["token", "create", "--user", "alice", "--ttl", "forever"],
            "--ttl",
        ),
        (
            &["token", "create", "--user", "not a login"],
            "invalid login",
        ),
        (&["token", "revoke", "no-such-jti"], "no access token"),
        (&["serve", "--bind", "nowhere"], "--bind"),
        (&["serve", "--keepalive-interval", "0s"], "longer than zero"),
        (&["serve", "--max-frame-bytes", "10"], "between"),
        (
            &["seed", "--file", "/nonexistent.json"],
            "/nonexistent.json",
        ),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, expected) in cases {
        let output = collab(&store, args);
        let message = stderr(&output);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(!message.contains("panicked"), "{args:?}: {message}");
    }
    let bad_url = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            "mysql://nobody@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    assert!(!bad_url.status.success());
    assert!(
        stderr(&bad_url).contains("connecting to"),
        "{}",
        stderr(&bad_url)
    );
}
