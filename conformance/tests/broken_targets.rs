//! A target that is wrong, dead or silent gives per-case FAILs with reasons, a non-zero exit and
//! an end within `--timeout`: never a hang.

mod common;

use std::time::Duration;

use common::{open_door, read_json, scratch, usher};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn case<'a>(report: &'a serde_json::Value, title_part: &str) -> &'a serde_json::Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"].as_str().is_some_and(|t| t.contains(title_part)))
        .unwrap_or_else(|| panic!("no case titled like `{title_part}` in the report"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_door_fails_with_reasons_and_a_non_zero_exit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = open_door().await;
    let dir = scratch("open-door");
    let json = dir.join("open.json");
    let timeout = Duration::from_secs(120);
    let run = usher(
        &[
            "check",
            "--target",
            &format!("{}/", server.uri()),
            "--api-auth",
            "x:y",
            "--only",
            "RESP-*,BAN-01,DOM-01",
            "--timeout",
            "120s",
            "--json",
            json.to_str().unwrap(),
        ],
        timeout + Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code, Some(1), "failures exit 1\n{run}");
    assert!(run.elapsed < timeout, "{run}");
    let (_, failed, _) = run.closing();
    assert!(failed >= 5, "{run}");
    let report = read_json(&json);
    assert_eq!(report["counts"]["failed"], failed);
    for c in report["cases"].as_array().unwrap() {
        if c["verdict"] == "fail" {
            let reason = c["failure"].as_str().unwrap_or_default();
            assert!(reason.contains("step `"), "the reason names the failed step: {c}");
            assert!(
                reason.contains("The backend received"),
                "the reason lists the backend's requests: {c}"
            );
        }
    }
    // Expected versus seen, and what the backend got (nothing: the door never asks).
    let denied = case(&report, "403");
    let reason = denied["failure"].as_str().unwrap();
    assert!(
        reason.contains("should be denied") && reason.contains("but is playing"),
        "{reason}"
    );
    assert!(reason.contains("The backend received no request."), "{reason}");
    assert!(
        run.stdout.contains("FAIL  "),
        "failures are printed as they happen\n{run}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_accepts_and_never_answers_ends_within_the_timeout() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Accepts every connection, reads nothing, answers nothing, keeps it open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = scratch("silent");
    let json = dir.join("silent.json");
    let limit = Duration::from_secs(20);
    let run = usher(
        &[
            "check",
            "--target",
            &format!("http://{addr}/"),
            "--api-auth",
            "x:y",
            "--timeout",
            "20s",
            "--step-timeout",
            "4s",
            "--json",
            json.to_str().unwrap(),
        ],
        limit + Duration::from_secs(30),
    )
    .await;
    silent.abort();
    assert!(
        run.elapsed < limit + Duration::from_secs(10),
        "the run ends within --timeout (and a little to write the reports)\n{run}"
    );
    assert_eq!(run.code, Some(1), "{run}");
    let (passed, failed, _) = run.closing();
    assert_eq!(passed, 0, "{run}");
    let report = read_json(&json);
    assert_eq!(report["counts"]["failed"], failed);
    assert!(failed > 40, "{run}");
    let cases = report["cases"].as_array().unwrap();
    for c in cases.iter().filter(|c| c["verdict"] == "fail") {
        let reason = c["failure"].as_str().unwrap_or_default();
        assert!(
            reason.contains("did not finish within its limit")
                || reason.contains("--timeout")
                || reason.contains("no answer within"),
            "every failure says it timed out: {c}"
        );
    }
    assert!(
        cases.iter().any(|c| c["failure"]
            .as_str()
            .is_some_and(|f| f.contains("did not finish within its limit of 4 s"))),
        "steps are cut at --step-timeout"
    );
    assert_eq!(report["stopped_by_timeout"], true, "{run}");
    assert!(run.stdout.contains("stopped by --timeout"), "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_target_fails_every_case_quickly_with_the_connection_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    let port = common::free_port();
    let run = usher(
        &[
            "check",
            "--target",
            &format!("http://127.0.0.1:{port}/"),
            "--api-auth",
            "x:y",
            "--only",
            "SESS-*",
            "--timeout",
            "60s",
        ],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(run.code, Some(1), "{run}");
    let (passed, failed, _) = run.closing();
    assert_eq!(passed, 0);
    assert!(failed > 5, "{run}");
    assert!(
        run.stdout.contains("does not take connections"),
        "a warning up front\n{run}"
    );
    assert!(
        run.stdout.contains("Connection refused") || run.stdout.contains("connect"),
        "{run}"
    );
}
