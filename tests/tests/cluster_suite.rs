//! The cluster cases (features/cluster.feature) against the embedded cluster: two reference
//! servers sharing a redis-server the suite starts on a free loopback port. Every case passes,
//! the ones that stop a node and restart the store included; and a single embedded server
//! reports the same cases as not applicable (SKIP), never as failed.
//!
//! Without redis-server the cluster test prints the prerequisites module's SKIP line.

use std::time::Duration;

use usher_conformance::prerequisites::{self, REDIS_SERVER};
use usher_conformance::{OnResult, RunOptions, Summary, TargetChoice, Verdict};

async fn run_cluster_cases(target: TargetChoice) -> Summary {
    let options = RunOptions {
        target,
        only: vec!["cluster.feature".to_string()],
        timeout: Duration::from_secs(300),
        ..RunOptions::default()
    };
    usher_conformance::run(options, OnResult(|_: &usher_conformance::CaseResult| {}))
        .await
        .expect("the run starts")
}

fn failures(summary: &Summary) -> String {
    summary
        .cases
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| format!("{}\n{}", c.line(), c.details().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_cases_pass_against_the_embedded_cluster() {
    if prerequisites::require(env!("CARGO_CRATE_NAME"), REDIS_SERVER).is_none() {
        return;
    }
    let summary = run_cluster_cases(TargetChoice::EmbeddedCluster).await;
    assert!(summary.target.contains("embedded cluster"), "{}", summary.target);
    assert_eq!(
        summary.cases.len(),
        7,
        "the catalogue's cluster cases: {:?}",
        summary.cases
    );
    assert_eq!(
        summary.passed(),
        summary.cases.len(),
        "every cluster case passes:\n{}",
        failures(&summary)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_server_reports_the_cluster_cases_as_not_applicable() {
    let summary = run_cluster_cases(TargetChoice::Embedded).await;
    assert_eq!(summary.cases.len(), 7);
    for case in &summary.cases {
        assert_eq!(case.verdict, Verdict::Skip, "{}", case.line());
        assert!(
            case.needs.iter().any(|n| n == "cluster"),
            "{} needs {:?}",
            case.key,
            case.needs
        );
    }
}
