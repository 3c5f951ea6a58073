//! `usher check --target-image IMAGE`: the command line around the container target. The verdicts
//! of a whole run against the reference server's image are compared with the embedded run's in
//! `tests/tests/container_suite.rs` (in-process, the same code path); here: a missing image is a
//! setup error that says how to build it, a run gets the media files (no case skipped), the
//! container is gone afterwards, and a failed run keeps the container's log in its report.
//!
//! Without a reachable Docker daemon these tests are skipped with one printed reason.

mod common;

use std::time::Duration;

use common::{read_json, scratch, usher};
use usher_conformance::target::container::{self, DEFAULT_IMAGE};

const LIMIT: Duration = Duration::from_secs(240);

/// The runs of this file start containers on two shared cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `false` (and one line on stderr, past libtest's capture) when no Docker daemon answers.
async fn docker_ready() -> bool {
    static NOTICE: std::sync::Once = std::sync::Once::new();
    match container::daemon().await {
        Ok(()) => true,
        Err(e) => {
            NOTICE.call_once(|| {
                usher_conformance::prerequisites::print_skip(
                    "container tests (container_cli)",
                    usher_conformance::prerequisites::DOCKER,
                    &e.to_string(),
                );
            });
            false
        }
    }
}

async fn image_ready() -> bool {
    if !docker_ready().await {
        return false;
    }
    // Present afterwards, or an error saying why the build failed.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = container::ensure_reference_image(&workspace).await {
        panic!("the image {DEFAULT_IMAGE} is missing and building it failed: {e}");
    }
    true
}

async fn target_containers() -> Vec<String> {
    container::leftover_containers().await.expect("the daemon answers")
}

/// No target container is left that was not there before the run (other runs may be going on).
async fn no_leftovers(before: &[String]) {
    let left: Vec<String> = target_containers()
        .await
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect();
    assert!(left.is_empty(), "target containers left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_a_setup_error_that_says_how_to_build_it() {
    if !docker_ready().await {
        return;
    }
    let run = usher(&["check", "--target-image", "usher-server:no-such-tag"], LIMIT).await;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("not present locally"), "{run}");
    assert!(run.stderr.contains(container::BUILD_HINT), "{run}");
    let both = usher(
        &[
            "check",
            "--target-image",
            DEFAULT_IMAGE,
            "--target",
            "http://127.0.0.1:1/",
        ],
        LIMIT,
    )
    .await;
    assert_eq!(
        both.code,
        Some(2),
        "--target-image and --target exclude each other: {both}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_every_selected_case_and_is_removed_after() {
    if !image_ready().await {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let before = target_containers().await;
    let dir = scratch("container-cli");
    let json = dir.join("image.json");
    // Client addresses (SESS-01) and a file:// input (override_input.feature).
    let run = usher(
        &[
            "check",
            "--target-image",
            DEFAULT_IMAGE,
            "--only",
            "SESS-01,override_input.feature",
            "--json",
            json.to_str().unwrap(),
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run}");
    let (passed, failed, skipped) = run.closing();
    assert!(passed >= 5 && failed == 0 && skipped == 0, "{run}");
    assert!(
        run.stdout.contains("file_input"),
        "the container declares file_input: {run}"
    );
    let report = read_json(&json);
    assert!(
        report["target"].as_str().unwrap_or_default().contains("127.0.0.1"),
        "{report}"
    );
    no_leftovers(&before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_keeps_the_containers_log_in_its_report() {
    if !image_ready().await {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let before = target_containers().await;
    let dir = scratch("container-cli-fail");
    // A catalogue of one case that is wrong on purpose: an allowed viewer "is denied".
    let features = dir.join("features");
    std::fs::create_dir_all(&features).unwrap();
    std::fs::write(
        features.join("wrong.feature"),
        "Feature: A deliberately wrong case\n\n  @SESS-01 @must\n  Scenario: An allowed viewer is denied\n    \
         Given a stream \"s\" with on_play auth\n    And the backend allows token \"t1\"\n    \
         When viewer \"A\" from 127.0.0.2 plays \"s\" over HLS with token \"t1\"\n    Then viewer \"A\" is denied\n",
    )
    .unwrap();
    let json = dir.join("fail.json");
    let run = usher(
        &[
            "check",
            "--target-image",
            DEFAULT_IMAGE,
            "--features",
            features.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.closing(), (0, 1, 0), "{run}");
    let report = read_json(&json);
    let warnings: Vec<&str> = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    let log = warnings
        .iter()
        .find(|w| w.contains("the log of the target's container"))
        .unwrap_or_else(|| panic!("the container's log is in the report: {warnings:?}"));
    assert!(log.contains("usher: ready http=127.0.0.1:"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour escapes in the log: {log}");
    assert!(run.stdout.contains("the log of the target's container"), "{run}");
    no_leftovers(&before).await;
}
