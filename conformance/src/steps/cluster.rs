//! A cluster target's nodes: stopping one, restarting the shared store, and letting a
//! session's auth duration pass while its node is down. Plays on a node are the viewer steps'
//! `on node B`.

use std::time::Duration;

use cucumber::when;

use super::UsherWorld;
use super::backend::last_decision;

/// Margin after an auth duration, so "has passed" is unambiguous.
const AFTER_MARGIN: Duration = Duration::from_millis(300);

fn cluster(world: &UsherWorld) -> &crate::target::cluster::Cluster {
    world
        .ctx
        .target
        .cluster()
        .unwrap_or_else(|| panic!("the target is not a cluster (a cluster case is tagged @needs-cluster)"))
}

/// The node ends without a word to the store, as a crash would; it is started again on its
/// addresses after the scenario.
#[when(regex = r"^node ([A-Z]) stops$")]
async fn node_stops(world: &mut UsherWorld, node: String) {
    world.cluster_touched = true;
    if let Err(e) = cluster(world).stop_node(&node).await {
        panic!("stopping node {node}: {e}");
    }
}

/// The store is killed and started again with no data; the nodes find it again by
/// themselves.
#[when(regex = r"^the session store restarts empty$")]
async fn store_restarts(world: &mut UsherWorld) {
    world.cluster_touched = true;
    if let Err(e) = cluster(world).restart_store().await {
        panic!("restarting the session store: {e}");
    }
}

/// Waits until the auth duration of the backend's last decision on `token` has passed.
#[when(regex = r#"^the auth duration of token "([^"]*)" has passed$"#)]
async fn auth_duration_passes(world: &mut UsherWorld, token: String) {
    let Some((at, duration)) = last_decision(world, Some(&token)) else {
        panic!(
            "{}",
            world.explain(format!("the backend never decided on token \"{token}\""))
        );
    };
    assert!(
        duration <= Duration::from_secs(30),
        "waiting {duration:?} is too long for the suite; give the answer a short X-AuthDuration"
    );
    // Letting a time window pass is what this step is about; it is not a readiness wait.
    tokio::time::sleep_until((at + duration + AFTER_MARGIN).into()).await;
}
