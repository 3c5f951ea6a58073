//! A running cluster named by a manifest: two reference servers started with `usher serve`,
//! sharing a redis-server this test starts on a free loopback port, checked with
//! `usher check --target-config` and `[cluster] members`. The cases that need no control over
//! the nodes pass; the two that stop a node or restart the store are not applicable to a
//! running cluster (SKIP, never FAIL). A manifest naming one member is a setup error (exit 2).
//!
//! Without redis-server the cluster test prints the prerequisites module's SKIP line.

mod common;

use std::time::Duration;

use common::{Serve, read_json, scratch, usher, verdicts};
use usher_conformance::prerequisites::{self, REDIS_SERVER};
use usher_conformance::target::cluster::RedisProcess;

const RUN_LIMIT: Duration = Duration::from_secs(300);

fn node_config(redis: &RedisProcess, node: &str) -> String {
    format!(
        "# node {node} of a two-node cluster\nsession_store {} node={node};\nhttp 127.0.0.1:0;\nedit_auth usher-test s3cret;\n",
        redis.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_cluster_named_by_a_manifest_passes_the_cases_it_can_play() {
    if prerequisites::require(env!("CARGO_CRATE_NAME"), REDIS_SERVER).is_none() {
        return;
    }
    let dir = scratch("cluster-manifest");
    let redis = RedisProcess::start().await.expect("redis-server starts");
    let a = Serve::start(&dir, "a.conf", &node_config(&redis, "a")).await;
    let b = Serve::start(&dir, "b.conf", &node_config(&redis, "b")).await;

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
    assert_eq!(verdicts.len(), 7, "the catalogue's cluster cases: {verdicts:?}\n{run}");
    assert_eq!(run.closing(), (3, 0, 4), "{run}");
    // The four skipped cases are the ones that need to stop a node or restart the store, and
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
