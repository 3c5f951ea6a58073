//! Faults only a container makes easy, on the reference server's image (`usher-server:dev`):
//!
//! * **pause** (`docker pause`: the server frozen) for longer than the auth duration of its
//!   sessions: once resumed, the sweeper runs the overdue re-checks at once, **one per session**
//!   (no burst of the ones "missed" while frozen), then the regular cadence goes on;
//! * **restart** (`docker restart`): the sessions are gone (the server keeps them in memory), the
//!   MPEG-TS connection is cut, and every client is authorized again with a `new_session`.
//!
//! The backend's request log is the witness (arrival times at the backend). docs/conformance.md
//! ("Container faults") records what these tests observe.

mod container_common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use usher_conformance::backend::{Answer, Backend, BackendOptions, Call, ScenarioBackend};
use usher_conformance::clients::hls::HlsClient;
use usher_conformance::clients::tshttp::{TsClient, TsSession};
use usher_conformance::clients::{Outcome, ViewerProfile};
use usher_conformance::target::Target;
use usher_conformance::target::container::{ContainerOptions, ServerContainer};

/// The two tests measure time: one at a time on two shared cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// TS bytes that prove a viewer is playing (20 packets).
const PLAYING_BYTES: u64 = 20 * 188;

fn viewer(last: u8) -> ViewerProfile {
    ViewerProfile::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

fn token(t: &str) -> Vec<(String, String)> {
    vec![("token".to_string(), t.to_string())]
}

/// A stream in the container's configuration (it survives a restart), authorized by `backend`.
fn stream_block(name: &str, backend: &ScenarioBackend) -> String {
    format!(
        "stream {name} {{\n  input fake://fake;\n  on_play {};\n}}\n",
        backend.url()
    )
}

fn calls_of<'a>(calls: &'a [Call], t: &str) -> Vec<&'a Call> {
    calls.iter().filter(|c| c.token() == Some(t)).collect()
}

fn describe(calls: &[Call], origin: Instant) -> String {
    calls
        .iter()
        .map(|c| {
            format!(
                "  {:>+8.3} s  {} #{} session {} token {}",
                c.at.saturating_duration_since(origin).as_secs_f64()
                    - origin.saturating_duration_since(c.at).as_secs_f64(),
                c.request_type().unwrap_or("?"),
                c.request_number().unwrap_or(0),
                c.session_id().unwrap_or("?"),
                c.token().unwrap_or("-"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn open_ts(client: &TsClient, stream: &str, t: &str) -> TsSession {
    let (attempt, session) = client.open(stream, &token(t), PLAYING_BYTES).await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    session.expect("a playing session")
}

/// A backend allowing every token of `scenario` for `auth_duration` seconds, and a container
/// whose configuration holds stream `scenario` authorized by it (fixed ports when `fixed_ports`,
/// so that a restarted server comes back at the same addresses). The backend must outlive the
/// test: it is returned with the rest.
async fn start(scenario: &str, auth_duration: &str, fixed_ports: bool) -> (Backend, ScenarioBackend, ServerContainer) {
    let backend = Backend::start(&BackendOptions::default())
        .await
        .expect("the backend starts");
    let auth = backend.scenario(scenario);
    auth.answer_all(Answer::allow().with_header("X-AuthDuration", auth_duration));
    let mut options = ContainerOptions::new(container_common::image());
    if fixed_ports {
        options.ports = container_common::free_ports();
    }
    options.extra_config = stream_block(scenario, &auth);
    let container = ServerContainer::start(options).await.unwrap_or_else(|e| panic!("{e}"));
    (backend, auth, container)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_server_runs_each_overdue_recheck_once_when_it_resumes() {
    if !container_common::docker_ready().await {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (_backend, auth, container) = start("paused", "1", false).await;
    let base = container.ready().http_url();

    let a = TsClient::new(&base, viewer(2)).expect("a client");
    let b = TsClient::new(&base, viewer(3)).expect("a client");
    let mut a = open_ts(&a, "paused", "ta").await;
    let mut b = open_ts(&b, "paused", "tb").await;
    // The regular cadence first: two re-checks of each session, one auth duration apart.
    for t in ["ta", "tb"] {
        let second = auth
            .wait_for(Duration::from_secs(6), |c| {
                c.token() == Some(t) && c.request_number() == Some(3)
            })
            .await;
        assert!(second.is_some(), "two re-checks of {t}:\n{}", auth.log().describe());
    }

    let pause = Duration::from_secs(5);
    let paused_at = Instant::now();
    container.pause().await.expect("docker pause");
    tokio::time::sleep(pause).await; // the fault itself: the server stays frozen this long
    // The server may run its first sweep before `docker unpause` has answered: the resume is
    // counted from the request.
    let resumed_at = Instant::now();
    container.unpause().await.expect("docker unpause");
    // What follows the resume: 2.5 auth durations.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still_a = a.wait_more(PLAYING_BYTES, Duration::from_secs(5)).await;
    let still_b = b.wait_more(PLAYING_BYTES, Duration::from_secs(5)).await;
    let calls = auth.log().0;
    let log = describe(&calls, resumed_at);
    let logs = container.logs().await;
    container.remove().await;

    assert!(still_a && still_b, "both viewers play on after the resume\n{log}");
    // Frozen: no call leaves the server (a margin for one already on the wire).
    let frozen: Vec<&Call> = calls
        .iter()
        .filter(|c| c.at > paused_at + Duration::from_millis(300) && c.at < resumed_at)
        .collect();
    assert!(frozen.is_empty(), "no backend call while paused:\n{log}");
    for t in ["ta", "tb"] {
        let mine = calls_of(&calls, t);
        let after: Vec<&&Call> = mine.iter().filter(|c| c.at >= resumed_at).collect();
        let first = after
            .first()
            .unwrap_or_else(|| panic!("a re-check of {t} after the resume:\n{log}"));
        let delay = first.at - resumed_at;
        // Due for seconds: asked at the sweeper's first pass (every 250 ms), not one auth
        // duration after the resume.
        assert!(
            delay < Duration::from_millis(800),
            "{t}: the overdue re-check comes right after the resume, not {delay:?} later:\n{log}"
        );
        assert_eq!(first.request_type(), Some("update_session"), "{log}");
        // Once: the re-checks the frozen seconds "missed" are not made up for.
        let burst = after
            .iter()
            .filter(|c| c.at < first.at + Duration::from_millis(700))
            .count();
        assert_eq!(burst, 1, "{t}: one overdue re-check, not a burst:\n{log}");
        // Then the cadence of the auth duration again: 2 or 3 in the 2.5 s after the resume.
        let in_window = after
            .iter()
            .filter(|c| c.at < resumed_at + Duration::from_millis(2500))
            .count();
        assert!(
            (2..=3).contains(&in_window),
            "{t}: one re-check per auth duration after the first, {in_window} in 2.5 s:\n{log}"
        );
        // No call was skipped or doubled: request numbers go up by one, one session throughout.
        let numbers: Vec<i64> = mine.iter().filter_map(|c| c.request_number()).collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{t}: request numbers {numbers:?}\n{log}"
        );
        let sessions: std::collections::BTreeSet<&str> = mine.iter().filter_map(|c| c.session_id()).collect();
        assert_eq!(sessions.len(), 1, "{t}: one session across the pause:\n{log}");
    }
    // For the record (docs/conformance.md): the calls around the pause.
    println!("pause of {pause:?}; backend calls, time since the resume:\n{log}\ncontainer log:\n{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_forgets_its_sessions_and_authorizes_clients_again() {
    if !container_common::docker_ready().await {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    // A long auth duration: no re-check during the test, so every call is a new decision.
    let (_backend, auth, mut container) = start("restarted", "600", true).await;
    let before = container.ready();
    let base = before.http_url();
    let api = Target::address(base.clone(), container.credential().clone()).expect("an API client");

    let hls = HlsClient::new(&base, viewer(4)).expect("a client");
    let ts = TsClient::new(&base, viewer(5)).expect("a client");
    let first = hls.play("restarted", &token("th")).await;
    assert_eq!(first.outcome, Outcome::Playing, "{first}");
    let again = hls.play("restarted", &token("th")).await;
    assert_eq!(again.outcome, Outcome::Playing, "{again}");
    let mut held = open_ts(&ts, "restarted", "tt").await;
    let log = auth.log();
    assert_eq!(log.len(), 2, "one new_session per viewer:\n{}", log.describe());
    let open = api.api().sessions(Some("restarted")).await.expect("GET sessions");
    assert_eq!(open.len(), 2, "{open:?}");
    let old: Vec<String> = log
        .0
        .iter()
        .filter_map(|c| c.session_id().map(str::to_string))
        .collect();

    let restart_started = Instant::now();
    let after = container
        .restart(Duration::from_secs(10))
        .await
        .expect("docker restart");
    let restart_took = restart_started.elapsed();
    assert_eq!(after, before, "the same addresses after the restart");
    let cut = held.wait_closed(Duration::from_secs(5)).await;
    assert!(cut.is_some(), "the MPEG-TS connection is cut by the restart");
    let calls_during_restart = auth.log().len() - 2;

    let open = api.api().sessions(Some("restarted")).await.expect("GET sessions");
    assert!(open.is_empty(), "no session survives the restart: {open:?}");
    let replay = hls.play("restarted", &token("th")).await;
    assert_eq!(replay.outcome, Outcome::Playing, "{replay}");
    let _reheld = open_ts(&ts, "restarted", "tt").await;
    let calls = auth.log().0;
    let logs = container.logs().await;
    container.remove().await;

    let text = describe(&calls, restart_started);
    assert_eq!(calls_during_restart, 0, "the stopping server calls nobody:\n{text}");
    let new: Vec<&Call> = calls[2..].iter().collect();
    assert_eq!(new.len(), 2, "each viewer is authorized again, once:\n{text}");
    for c in &new {
        assert_eq!(c.request_type(), Some("new_session"), "{text}");
        assert_eq!(c.request_number(), Some(1), "{text}");
    }
    // The session_id is derived from the session keys (SESS-01), not drawn: the returning
    // viewers get their old ids back, as new sessions.
    let again: Vec<String> = new.iter().filter_map(|c| c.session_id().map(str::to_string)).collect();
    assert_eq!(again, old, "the same session ids, as new sessions:\n{text}");
    println!(
        "restart took {:.1} s; backend calls, time since the restart began:\n{text}\ncontainer log:\n{logs}",
        restart_took.as_secs_f64()
    );
}
