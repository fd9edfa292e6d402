//! The benchmark harness keeps working: every `collab-bench` scenario runs at a tiny size
//! against a real server and prints a `RESULT` line whose counts add up. No figure is
//! asserted here — figures come from `bench/run.sh`, never from tests.

mod common;

use std::process::Stdio;

use common::{Backend, TestServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Three clients sending 5 updates a second for one second.
const TINY_LOAD: [&str; 6] = ["--clients", "3", "--rate", "5", "--seconds", "1"];
const BENCH: &str = env!("CARGO_BIN_EXE_collab-bench");

/// Runs `collab-bench <args>` and returns its `RESULT` object.
async fn bench(args: &[&str]) -> Value {
    let output = common::within(
        "collab-bench",
        tokio::process::Command::new(BENCH)
            .args(args)
            .env_remove("DATABASE_URL")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("collab-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "collab-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    serde_json::from_str(line).expect("RESULT is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_at_a_tiny_size() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.doc_idle_timeout = std::time::Duration::from_millis(200);
    })
    .await;
    let url = server.http("");
    let data_dir = server.dir.path().display().to_string();
    let pid = std::process::id().to_string();
    let common = ["--data-dir", data_dir.as_str()];

    for target in ["project", "notes"] {
        let result = bench(
            &[
                &common[..],
                &[
                    "fanout",
                    "--url",
                    &url,
                    "--server-pid",
                    &pid,
                    "--editors",
                    "3",
                    "--rate",
                    "5",
                    "--seconds",
                    "1",
                    "--target",
                    target,
                ],
            ]
            .concat(),
        )
        .await;
        assert_eq!(result["scenario"], "fanout");
        assert!(result["operations_sent"].as_u64().unwrap() > 0, "{result}");
        assert_eq!(
            result["deliveries"], result["deliveries_expected"],
            "{result}"
        );
    }

    let result = bench(
        &[
            &common[..],
            &[
                "rooms",
                "--url",
                &url,
                "--rooms",
                "2",
                "--size",
                "3",
                "--rate",
                "2",
                "--seconds",
                "1",
            ],
        ]
        .concat(),
    )
    .await;
    assert!(result["deliveries"].as_u64().unwrap() > 0, "{result}");

    let result = bench(
        &[
            &common[..],
            &[
                "idle",
                "--url",
                &url,
                "--connections",
                "20",
                "--hold-seconds",
                "0",
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(result["open"], 20, "{result}");

    let result = bench(
        &[
            &common[..],
            &[
                "notes-durable",
                "--url",
                &url,
                "--editors",
                "2",
                "--in-flight",
                "2",
                "--seconds",
                "1",
                "--history",
                "100",
                "--joins",
                "2",
            ],
        ]
        .concat(),
    )
    .await;
    assert!(
        result["throughput"]["acknowledged"].as_u64().unwrap() > 0,
        "{result}"
    );
    assert_eq!(result["join"]["history"], 100, "{result}");

    let token = server.token("yjs-smoke").await;
    let yjs_url = format!("ws://{}/yjs", server.addr);
    // Both receiver modes: send times read from raw updates, and updates applied.
    for (mode, extra) in [("raw", None), ("apply", Some("--apply-updates"))] {
        let mut args = vec!["yjs", "--url", &yjs_url, "--token", &token];
        args.extend(TINY_LOAD);
        args.extend(extra);
        let result = bench(&args).await;
        assert_eq!(result["receivers"], mode, "{result}");
        let deliveries = result["deliveries"].as_u64().unwrap();
        // A client's own updates never count, even when a server echoes them.
        let expected = result["expected_deliveries"].as_u64().unwrap();
        assert!(deliveries > 0 && deliveries <= expected, "{result}");
    }

    // The raw relay, as its own process.
    let mut relay = tokio::process::Command::new(BENCH)
        .args(["raw-server", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("raw-server starts");
    let mut first = String::new();
    BufReader::new(relay.stdout.take().unwrap())
        .read_line(&mut first)
        .await
        .unwrap();
    let relay_url = first
        .trim()
        .strip_prefix("raw relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let result = bench(&[&["raw", "--url", &relay_url][..], &TINY_LOAD].concat()).await;
    assert!(result["deliveries"].as_u64().unwrap() > 0, "{result}");
    relay.kill().await.unwrap();
    server.stop().await;
}
