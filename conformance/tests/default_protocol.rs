//! The protocol-neutral cases (`over the target's protocol`) keep their meaning over every
//! protocol: the embedded reference server, told by a manifest to take RTMP (then MPEG-TS) as its
//! default protocol, passes every one of them, as it does over HLS. This is what makes a FAIL of
//! an RTMP-only peer on those cases the peer's, not the steps' (RESP-01, RESP-02, SESS-01,
//! TIME-02, TIME-04, BAN-01, LIM-02, UNIQ-05, PUB-04: docs/conformance.md, "The target's
//! protocol").

mod common;

use std::time::Duration;

use common::{read_json, scratch, usher};

/// The feature files whose cases play over the target's protocol.
const NEUTRAL: &str = "bans.feature,failures.feature,limits.feature,rechecks.feature,requests.feature,\
                       responses.feature,sessions.feature,tokens.feature,unique.feature,publish.feature";

async fn run_with_default(protocol: &str) {
    let dir = scratch(&format!("default-protocol-{protocol}"));
    let manifest = dir.join("target.toml");
    std::fs::write(
        &manifest,
        format!("[capabilities]\ndefault_protocol = \"{protocol}\"\n"),
    )
    .unwrap();
    let json = dir.join("report.json");
    let run = usher(
        &[
            "check",
            "--target-config",
            manifest.to_str().unwrap(),
            "--only",
            NEUTRAL,
            // The neutral cases hold time windows of a second or two; on a loaded machine a
            // debug build running all of them at once stretches those windows.
            "--concurrency",
            "6",
            "--time-scale",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(run.code, Some(0), "{run}");
    let (passed, failed, skipped) = run.closing();
    assert_eq!((failed, skipped), (0, 0), "{run}");
    assert!(passed > 50, "the neutral cases ran: {passed}\n{run}");
    assert!(
        run.stdout
            .contains(&format!("cases play over {protocol} unless they name a protocol")),
        "the run says which protocol the neutral cases use\n{run}"
    );
    // The plays really went over that protocol: the backend heard `proto` of it.
    let wire = if protocol == "mpegts" { "tshttp" } else { protocol };
    let report = read_json(&json);
    let heard = report["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["key"].as_str().is_some_and(|k| k.starts_with("bans-")))
        .flat_map(|c| c["backend_requests"].as_array().cloned().unwrap_or_default())
        .filter(|r| {
            r["query"]
                .as_array()
                .is_some_and(|q| q.iter().any(|kv| kv[0] == "proto" && kv[1] == wire))
        })
        .count();
    assert!(heard > 0, "the ban cases' backend calls carry proto={wire}\n{run}");
}

/// One after the other, not as two tests at once: each run is timing-sensitive.
#[tokio::test(flavor = "multi_thread")]
async fn the_neutral_cases_pass_over_rtmp_and_mpegts_on_the_reference_server() {
    run_with_default("rtmp").await;
    run_with_default("mpegts").await;
}
