//! A running cluster named by a manifest: two reference servers started with `usher serve`,
//! sharing a redis-server this test starts on a free loopback port, checked with
//! `usher check --target-config` and `[cluster] members`. The cases that need no control over
//! the nodes pass; the two that stop a node or restart the store are not applicable to a
//! running cluster (SKIP, never FAIL). A manifest naming one member is a setup error (exit 2).
//!
//! Without redis-server the cluster test prints the prerequisites module's SKIP line.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Serve, free_port, read_json, scratch, usher, verdicts};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use usher_conformance::prerequisites::{self, REDIS_SERVER};

const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A redis-server of this test's own, killed on drop.
struct Redis {
    _child: Child,
    port: u16,
}

impl Redis {
    /// Starts redis-server on a free port and waits (bounded) until it answers PING.
    async fn start(dir: &Path) -> Redis {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("redis-server starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: another one
                }
                if pong(port).await {
                    return Redis { _child: child, port };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("redis-server did not answer PING on any of 5 free ports");
    }
}

async fn pong(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
}

fn node_config(redis_port: u16, node: &str) -> String {
    format!(
        "# node {node} of a two-node cluster\nsession_store redis://127.0.0.1:{redis_port} node={node};\nhttp 127.0.0.1:0;\nedit_auth usher-test s3cret;\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_cluster_named_by_a_manifest_passes_the_cases_it_can_play() {
    if prerequisites::require(env!("CARGO_CRATE_NAME"), REDIS_SERVER).is_none() {
        return;
    }
    let dir = scratch("cluster-manifest");
    let redis = Redis::start(&dir).await;
    let a = Serve::start(&dir, "a.conf", &node_config(redis.port, "a")).await;
    let b = Serve::start(&dir, "b.conf", &node_config(redis.port, "b")).await;

    let manifest = dir.join("cluster.toml");
    std::fs::write(
        &manifest,
        format!(
            "target = \"{a}\"\napi_auth = \"usher-test:s3cret\"\n\n[cluster]\nmembers = [\"{a}\", \"{b}\"]\n",
            a = a.url(),
            b = b.url()
        ),
    )
    .expect("the manifest is written");
    let report = dir.join("report.json");
    let run = usher(
        &[
            "check",
            "--target-config",
            manifest.to_str().unwrap(),
            "--only",
            "cluster.feature",
            "--json",
            report.to_str().unwrap(),
        ],
        RUN_LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run}");
    let report = read_json(&report);
    let verdicts = verdicts(&report);
    assert_eq!(verdicts.len(), 5, "the catalogue's cluster cases: {verdicts:?}\n{run}");
    assert_eq!(run.closing(), (3, 0, 2), "{run}");
    // The two skipped cases are the ones that need to stop a node or restart the store, and
    // they say so.
    for case in report["cases"].as_array().expect("cases") {
        if case["verdict"] == "skip" {
            assert_eq!(
                case["skip"]["missing"],
                serde_json::json!(["cluster_control"]),
                "{case}"
            );
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_manifest_naming_one_member_is_a_setup_error() {
    let dir = scratch("cluster-manifest-one");
    let manifest = dir.join("one.toml");
    std::fs::write(
        &manifest,
        "target = \"http://127.0.0.1:9/\"\napi_auth = \"usher-test:s3cret\"\n\n[cluster]\nmembers = [\"http://127.0.0.1:9/\"]\n",
    )
    .expect("the manifest is written");
    let run = usher(&["check", "--target-config", manifest.to_str().unwrap()], RUN_LIMIT).await;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("at least two"), "{run}");
}
