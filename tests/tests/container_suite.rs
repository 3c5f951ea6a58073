//! The conformance suite against the reference server's image, started with testcontainers
//! (`usher-server:dev`, built by server/docker/build.sh): the same verdicts as the embedded run.
//!
//! Without a reachable Docker daemon the test is skipped with one printed reason; with a daemon
//! and no image it fails, saying how to build the image.

mod container_common;

use std::collections::BTreeMap;
use std::time::Duration;

use usher_conformance::target::container::{self, ContainerOptions, ServerContainer};
use usher_conformance::{Capabilities, Catalogue, OnResult, RunOptions, Summary, TargetChoice, Verdict};

/// Both runs generate the same property-case inputs.
const SEED: u64 = 0x00c0_ffee;

async fn run(target: TargetChoice, capabilities: Option<Capabilities>) -> Summary {
    let options = RunOptions {
        target,
        capabilities,
        seed: Some(SEED),
        timeout: Duration::from_secs(600),
        ..RunOptions::default()
    };
    usher_conformance::run(options, OnResult(|_: &usher_conformance::CaseResult| {}))
        .await
        .expect("the run starts")
}

fn verdicts(summary: &Summary) -> BTreeMap<&str, Verdict> {
    summary.cases.iter().map(|c| (c.key.as_str(), c.verdict)).collect()
}

fn failures(summary: &Summary) -> String {
    summary
        .cases
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| format!("{}\n{}", c.line(), c.details().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_gets_the_verdicts_of_the_embedded_run() {
    if !container_common::docker_ready().await {
        return;
    }
    let embedded = run(TargetChoice::Embedded, None).await;
    assert!(embedded.ok(), "the embedded run passes:\n{}", failures(&embedded));

    // As `usher check --target-image` does: the container gets the media files the cases play,
    // and so supports everything the embedded server does.
    let catalogue = Catalogue::load(&usher_conformance::default_features_dir()).expect("the catalogue");
    let mut options = ContainerOptions::new(container_common::image());
    let media = container::prepare_media(&catalogue)
        .await
        .expect("the media files (ffmpeg)");
    options.media = Some(media.clone());
    let started = ServerContainer::start(options).await;
    let _ = std::fs::remove_dir_all(&media);
    let container = started.unwrap_or_else(|e| panic!("{e}"));
    let ready = container.ready();
    assert!(
        ready.http.ip().is_loopback(),
        "the server listens on loopback only: {ready:?}"
    );
    let by_image = run(
        TargetChoice::Running {
            address: container.address(),
            static_streams: false,
        },
        Some(container::capabilities_with_media(&catalogue)),
    )
    .await;
    let log = if by_image.ok() {
        String::new()
    } else {
        container.logs().await
    };
    let id = container.id().to_string();
    container.remove().await;

    assert!(
        by_image.target.contains(&ready.http.to_string()),
        "the run checked the container: {}",
        by_image.target
    );
    let (a, b) = (verdicts(&embedded), verdicts(&by_image));
    let differ: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: embedded {v:?}, image {:?}", b.get(k)))
        .collect();
    assert!(
        differ.is_empty() && a.len() == b.len(),
        "verdicts differ:\n{}\n{}\ncontainer {id} log:\n{log}",
        differ.join("\n"),
        failures(&by_image)
    );
    assert!(by_image.ok(), "{}\ncontainer log:\n{log}", failures(&by_image));
    // A single server has no nodes: the cluster cases are not applicable to it.
    let not_cluster_skips: Vec<String> = by_image
        .cases
        .iter()
        .filter(|c| c.verdict == Verdict::Skip && !c.needs.iter().any(|n| n == "cluster"))
        .map(|c| c.line())
        .collect();
    assert!(
        not_cluster_skips.is_empty(),
        "the container runs every case: {not_cluster_skips:?}"
    );
}
