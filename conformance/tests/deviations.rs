//! The deviations file: every entry needs a reason (a missing one is an error naming the line),
//! matching cases are SKIP with the reason shown, and an entry that matches no case is reported
//! (an error under --strict).

mod common;

use std::time::Duration;

use common::{read_json, scratch, usher};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_without_a_reason_is_an_error_naming_its_line() {
    let dir = scratch("deviations-no-reason");
    let lines = dir.join("deviations.txt");
    std::fs::write(&lines, "# known gaps\nLIM-*   no per-user limits\n\nTOK-03\n").unwrap();
    let run = usher(
        &["check", "--deviations", lines.to_str().unwrap(), "--only", "TOK-01"],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(
        run.stderr.contains("deviations.txt:4: `TOK-03` has no reason"),
        "the error names the file and line\n{run}"
    );

    let toml = dir.join("deviations.toml");
    std::fs::write(
        &toml,
        "[[deviation]]\ncase = \"LIM-*\"\nreason = \"no limits\"\n\n[[deviation]]\ncase = \"TOK-03\"\n",
    )
    .unwrap();
    let run = usher(&["check", "--deviations", toml.to_str().unwrap()], LIMIT).await;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("deviations.toml:6:"), "{run}");
    assert!(run.stderr.contains("no reason"), "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn matching_cases_are_skipped_with_the_reason_and_unmatched_entries_are_reported() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch("deviations-skip");
    let file = dir.join("deviations.toml");
    std::fs::write(
        &file,
        "[[deviation]]\ncase = \"SESS-03\"\nreason = \"our API names errors differently (ticket 42)\"\n\n\
         [[deviation]]\ncase = \"NOPE-99\"\nreason = \"an entry that matches nothing\"\n",
    )
    .unwrap();
    let json = dir.join("report.json");
    let run = usher(
        &[
            "check",
            "--only",
            "SESS-01,SESS-03",
            "--deviations",
            file.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(0), "skips are not failures\n{run}");
    let (passed, failed, skipped) = run.closing();
    assert!(passed >= 2 && failed == 0 && skipped >= 3, "{run}");
    assert!(
        run.stdout.contains("our API names errors differently (ticket 42)"),
        "{run}"
    );
    assert!(
        run.stdout.contains("deviation") && run.stdout.contains("deviations.toml:6 matches no case"),
        "the unmatched entry is reported\n{run}"
    );
    let report = read_json(&json);
    let skipped_cases: Vec<&serde_json::Value> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "skip")
        .collect();
    assert_eq!(skipped_cases.len(), skipped);
    for c in skipped_cases {
        assert!(c["ids"].as_array().unwrap().iter().any(|i| i == "SESS-03"), "{c}");
        assert_eq!(c["skip"]["kind"], "deviation");
        assert_eq!(c["skip"]["reason"], "our API names errors differently (ticket 42)");
        assert_eq!(c["skip"]["at"], format!("{}:2", file.display()));
    }
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("matches no case"))
    );

    let strict = usher(
        &[
            "check",
            "--only",
            "SESS-01",
            "--strict",
            "--deviations",
            file.to_str().unwrap(),
        ],
        LIMIT,
    )
    .await;
    assert_eq!(
        strict.code,
        Some(2),
        "--strict makes an unmatched entry an error\n{strict}"
    );
    assert!(strict.stderr.contains("NOPE-99"), "{strict}");
}
