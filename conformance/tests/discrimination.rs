//! The catalogue must be able to fail. It is run against two deliberately wrong servers built on
//! wiremock — one that lets everybody play without asking the backend ("open door"), one that
//! refuses everybody without asking ("closed door") — and every scenario must fail against
//! them, except the few listed here whose claim such a server does satisfy. A scenario that
//! starts passing against a broken server has lost its teeth, and this test says which.

use std::collections::BTreeSet;

mod common;

use common::{closed_door, open_door};
use usher_conformance::target::ApiCredential;
use usher_conformance::{CaseResult, OnResult, RunOptions, TargetChoice, Verdict};
use wiremock::MockServer;

async fn passing_against(server: &MockServer) -> BTreeSet<String> {
    let options = RunOptions {
        target: TargetChoice::address(
            url::Url::parse(&format!("{}/", server.uri())).unwrap(),
            ApiCredential {
                login: "x".into(),
                password: "y".into(),
            },
        ),
        concurrency: 16,
        ..RunOptions::default()
    };
    let summary = usher_conformance::run(options, OnResult(|_: &CaseResult| {}))
        .await
        .unwrap();
    assert!(summary.cases.len() > 40, "the catalogue ran");
    summary
        .cases
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .map(|r| format!("{} {}", r.location, r.title))
        .collect()
}

fn names(set: &BTreeSet<String>) -> BTreeSet<String> {
    // Locations carry line numbers; compare by name only for a stable list.
    set.iter()
        .map(|s| s.split_once(' ').map_or(s.clone(), |(_, n)| n.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_servers_fail_the_catalogue() {
    // One run at a time: a run installs the process-wide scenario context.
    let open = open_door().await;
    let passing = names(&passing_against(&open).await);
    let expected_open: BTreeSet<String> = [
        // Claims an open door satisfies: no refusal is asked of it.
        "A minted admin view token plays without a backend call",
        "The mandatory session keys may come in any order",
        "A viewer that sends no Referer is not covered by the lock",
        // `allow default` admits when no backend answers: exactly what an open door does.
        "Unreachable backends with allow default admit",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        passing, expected_open,
        "against a server that lets everyone play without asking the backend"
    );

    let closed = closed_door().await;
    let passing = names(&passing_against(&closed).await);
    let expected_closed: BTreeSet<String> = [
        // Claims a closed door satisfies: refusals without a backend call.
        "A Referer from a foreign site is refused without asking the backend",
        // The outline's 4096-character row, which must play, fails against a closed door.
        "A token of 4097 characters is refused without asking the backend",
        "With a forged admin token the viewer does not play unless the backend allows it",
        "With an altered-signature admin token the viewer does not play unless the backend allows it",
        "With an altered-timestamp admin token the viewer does not play unless the backend allows it",
        "A new session is refused when the backend is unreachable",
        "The mandatory session keys may come in any order",
        // A refused publisher is what a closed door does; the backend-side checks of these
        // cases are in the cases that admit a publisher.
        "A publisher over HTTP MPEG-TS with token \"pt\" is refused",
        "A publisher over HTTP MPEG-TS with token \"pt\" and password \"wrong\" is refused",
        // Refusals of the archive (ADV-02, DVR): the rows of the same outlines that must play
        // fail against a closed door.
        "A denied download as MP4 carries no media",
        "A denied download as MPEG-TS carries no media",
        "A denied viewer gets none of the archive",
        "A range outside allowed_dvr_ranges gets no media",
        "Only a range inside allowed_dvr_ranges is served (no closed_at, starting before)",
        "Only a range inside allowed_dvr_ranges is served (no opened_at, ending after)",
        "Only a range inside allowed_dvr_ranges is served (reaching closed_at, exclusive)",
        "Only a range inside allowed_dvr_ranges is served (starting before opened_at)",
        // Configurator denials (CZR): the admitting cases fail against a closed door.
        "A denied client stays out even with allow default",
        "The only backend that answers denies: denied even with allow default",
        "Unreachable backends without allow default refuse",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        passing, expected_closed,
        "against a server that refuses everyone without asking the backend"
    );
}
