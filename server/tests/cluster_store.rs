//! Per-user limits, X-Unique and bans across servers through a shared Redis store
//! (`session_store`, issue 20): two in-process servers on loopback, a redis-server of the
//! test's own, a wiremock backend. docs/spec.md, "Shared session store", says what is shared.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::redis_server::{RedisServer, have_redis_server};
use common::{Capture, backend_with, client_from, http_auth, stream_of};
use reqwest::StatusCode;
use usher_server::auth::CallKind;
use usher_server::auth::store::SessionStore;
use usher_server::config::{Config, OnStoreLoss, SessionStoreConfig};
use usher_server::{RunningServer, Server};
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How long a kick may take to reach the other server (the bound).
const KICK_WITHIN: Duration = Duration::from_secs(1);
/// How long a server has to connect (or reconnect) to its store.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// The log of every test of this binary (one global subscriber); tests tell their lines apart
/// by their servers' node names.
fn log() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| Capture::install(tracing::Level::INFO))
}

async fn start_node(redis_url: &str, node: &str, backend: &MockServer, on_loss: OnStoreLoss) -> RunningServer {
    log();
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![stream_of("s1", "fake://fake", Some(http_auth(backend)))],
        session_store: Some(SessionStoreConfig {
            url: redis_url.to_string(),
            node: Some(node.to_string()),
            on_loss,
        }),
        ..Config::default()
    };
    Server::start(config).await.unwrap()
}

fn store(server: &RunningServer) -> &SessionStore {
    server.core().session_store().expect("the server has a session store")
}

/// Polls `cond` every 20 ms until it holds or `within` has passed; returns how long it took.
async fn wait_for(what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connected(server: &RunningServer) {
    let store = store(server);
    wait_for("the store connects", CONNECT_WITHIN, async || store.is_up()).await;
}

/// Two servers sharing the store at `redis`.
async fn two_nodes(redis: &RedisServer, backend: &MockServer, names: [&str; 2]) -> (RunningServer, RunningServer) {
    let a = start_node(&redis.url(), names[0], backend, OnStoreLoss::Open).await;
    let b = start_node(&redis.url(), names[1], backend, OnStoreLoss::Open).await;
    connected(&a).await;
    connected(&b).await;
    (a, b)
}

/// An allow for `token` with the user id and extra headers.
fn allow(token: &str, user: &str, headers: &[(&str, &str)]) -> Mock {
    let mut answer = ResponseTemplate::new(200).insert_header("X-UserId", user);
    for (name, value) in headers {
        answer = answer.insert_header(*name, *value);
    }
    Mock::given(method("GET"))
        .and(query_param("token", token))
        .respond_with(answer)
}

async fn calls_with_token(backend: &MockServer, token: &str) -> usize {
    backend
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.query_pairs().any(|(k, v)| k == "token" && v == token))
        .count()
}

async fn playlist(server: &RunningServer, from: &str, token: &str) -> StatusCode {
    client_from(from)
        .get(format!("http://{}/s1/index.m3u8?token={token}", server.http_addr()))
        .send()
        .await
        .unwrap()
        .status()
}

/// Reads an MPEG-TS response until it ends; how long that took from `since`.
async fn ended_after(mut ts: reqwest::Response, since: Instant, within: Duration) -> Option<Duration> {
    tokio::time::timeout(within, async { while let Ok(Some(_)) = ts.chunk().await {} })
        .await
        .ok()
        .map(|()| since.elapsed())
}

async fn mpegts(server: &RunningServer, from: &str, token: &str) -> reqwest::Response {
    let mut ts = client_from(from)
        .get(format!("http://{}/s1/mpegts?token={token}", server.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(ts.status(), StatusCode::OK);
    let first = ts.chunk().await.unwrap().expect("media flows");
    assert_eq!(first[0], 0x47, "TS sync byte");
    ts
}

/// LIM-02 and AMB-1 across servers: X-Max-Sessions 2, a session on B, then two on A. A alone
/// never exceeds 2, so only the shared count closes B's session (the oldest), within 1 s;
/// the kicked identity is then refused on either server without a backend call (BAN-02).
#[tokio::test]
async fn limit_across_nodes_closes_the_oldest_session_on_the_other_node_within_a_second() {
    if !have_redis_server() {
        return;
    }
    let redis = RedisServer::start().await;
    let limit = [("X-Max-Sessions", "2"), ("X-AuthDuration", "60")];
    let backend = backend_with([
        allow("a", "u-limit", &limit),
        allow("b", "u-limit", &limit),
        allow("c", "u-limit", &limit),
    ])
    .await;
    let (a, b) = two_nodes(&redis, &backend, ["limit-a", "limit-b"]).await;

    let oldest = mpegts(&b, "127.0.0.2", "a").await;
    assert_eq!(playlist(&a, "127.0.0.3", "b").await, StatusCode::OK);
    let counted = store(&a).user_sessions(CallKind::Play, "u-limit").await.unwrap();
    assert_eq!(counted, 2, "the store counts the user's sessions of both servers");

    let admitted = Instant::now();
    assert_eq!(
        playlist(&a, "127.0.0.4", "c").await,
        StatusCode::OK,
        "the newcomer is admitted"
    );
    let took = ended_after(oldest, admitted, KICK_WITHIN)
        .await
        .expect("the oldest session, on the other server, ends within 1 s");
    eprintln!("cross-node kick: the viewer on B was cut {took:?} after A's admission");

    assert_eq!(
        playlist(&a, "127.0.0.3", "b").await,
        StatusCode::OK,
        "the second session stays"
    );
    assert_eq!(
        store(&b).user_sessions(CallKind::Play, "u-limit").await.unwrap(),
        2,
        "never more than N once the kick happened"
    );
    // The kicked identity is banned on every server, without asking the backend again.
    let client = client_from("127.0.0.2");
    for server in [&b, &a] {
        let again = client
            .get(format!("http://{}/s1/mpegts?token=a", server.http_addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        calls_with_token(&backend, "a").await,
        1,
        "a banned identity makes no backend call"
    );
}

/// UNIQ-01 across servers: X-Unique on B closes the user's session on A within 1 s.
#[tokio::test]
async fn x_unique_across_nodes_closes_the_session_on_the_other_node() {
    if !have_redis_server() {
        return;
    }
    let redis = RedisServer::start().await;
    let backend = backend_with([
        allow("old", "u-unique", &[]),
        allow("new", "u-unique", &[("X-Unique", "true")]),
    ])
    .await;
    let (a, b) = two_nodes(&redis, &backend, ["unique-a", "unique-b"]).await;
    let old = mpegts(&a, "127.0.0.2", "old").await;
    let admitted = Instant::now();
    assert_eq!(playlist(&b, "127.0.0.3", "new").await, StatusCode::OK);
    let took = ended_after(old, admitted, KICK_WITHIN)
        .await
        .expect("the other server's session of the user ends within 1 s");
    eprintln!("cross-node X-Unique: the viewer on A was cut {took:?} after B's admission");
    assert_eq!(
        playlist(&b, "127.0.0.3", "new").await,
        StatusCode::OK,
        "the newest survives"
    );
    // The closed identity (MPEG-TS from 127.0.0.2 with `old`) is banned on both servers.
    for server in [&a, &b] {
        let again = client_from("127.0.0.2")
            .get(format!("http://{}/s1/mpegts?token=old", server.http_addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        calls_with_token(&backend, "old").await,
        1,
        "refused without a backend call"
    );
}

/// BAN-01 across servers: a backend's deny on A refuses the same identity on B with no backend
/// call; and B keeps the ban, so its next refusal costs no store round trip either.
#[tokio::test]
async fn a_ban_on_one_node_refuses_the_identity_on_the_other_without_a_backend_call() {
    if !have_redis_server() {
        return;
    }
    let redis = RedisServer::start().await;
    let backend = backend_with([Mock::given(method("GET"))
        .and(query_param("token", "bad"))
        .respond_with(ResponseTemplate::new(403).insert_header("X-AuthDuration", "60"))])
    .await;
    let (a, b) = two_nodes(&redis, &backend, ["ban-a", "ban-b"]).await;
    assert_eq!(playlist(&a, "127.0.0.2", "bad").await, StatusCode::FORBIDDEN);
    assert_eq!(backend.received_requests().await.unwrap().len(), 1);

    let before = store(&b).round_trips();
    assert_eq!(playlist(&b, "127.0.0.2", "bad").await, StatusCode::FORBIDDEN);
    assert_eq!(
        backend.received_requests().await.unwrap().len(),
        1,
        "the other server refused without asking the backend"
    );
    assert_eq!(store(&b).round_trips() - before, 1, "one look-up of the ban");
    assert_eq!(playlist(&b, "127.0.0.2", "bad").await, StatusCode::FORBIDDEN);
    assert_eq!(store(&b).round_trips() - before, 1, "the ban is then known locally");
    // Another viewer (another address) is another identity: asked as usual.
    assert_eq!(playlist(&b, "127.0.0.3", "bad").await, StatusCode::FORBIDDEN);
    assert_eq!(backend.received_requests().await.unwrap().len(), 2);
}

/// A server that stops (no goodbye to the store) frees its users' slots when their auth
/// duration ends, not before.
#[tokio::test]
async fn a_stopped_nodes_sessions_free_their_slots_within_their_auth_duration() {
    if !have_redis_server() {
        return;
    }
    let redis = RedisServer::start().await;
    let backend = backend_with([allow("a", "u-ttl", &[("X-AuthDuration", "2"), ("X-Max-Sessions", "1")])]).await;
    let (a, b) = two_nodes(&redis, &backend, ["ttl-a", "ttl-b"]).await;
    assert_eq!(playlist(&a, "127.0.0.2", "a").await, StatusCode::OK);
    let admitted = Instant::now();
    a.shutdown().await;
    let store_b = store(&b);
    assert_eq!(
        store_b.user_sessions(CallKind::Play, "u-ttl").await.unwrap(),
        1,
        "the stopped server's session still counts"
    );
    wait_for("the slot is freed", Duration::from_secs(4), async || {
        store_b.user_sessions(CallKind::Play, "u-ttl").await.unwrap() == 0
    })
    .await;
    let freed = admitted.elapsed();
    eprintln!("a stopped server's slot was freed {freed:?} after its admission (auth duration 2 s)");
    assert!(
        freed >= Duration::from_millis(1900),
        "freed after {freed:?}, before the auth duration ended"
    );
}

/// Redis dies: both servers log it loudly and go on deciding locally (on_loss=open); Redis
/// comes back empty: each hands its sessions back, and the limit holds across servers again.
#[tokio::test]
async fn redis_killed_then_restarted_falls_back_locally_then_resynchronises() {
    if !have_redis_server() {
        return;
    }
    let mut redis = RedisServer::start().await;
    let limit = [("X-Max-Sessions", "1"), ("X-AuthDuration", "60")];
    let backend = backend_with([allow("a", "u-resync", &limit), allow("b", "u-resync", &limit)]).await;
    let (a, b) = two_nodes(&redis, &backend, ["resync-a", "resync-b"]).await;

    redis.kill();
    wait_for("A notices the loss", CONNECT_WITHIN, async || !store(&a).is_up()).await;
    let lost = log()
        .text()
        .lines()
        .any(|l| l.contains("SESSION STORE LOST") && l.contains("resync-a") && l.contains("ERROR"));
    assert!(lost, "the loss is logged as an error naming the server");
    let ts = mpegts(&a, "127.0.0.2", "a").await;

    redis.restart().await;
    connected(&a).await;
    connected(&b).await;
    wait_for("A hands its session back", CONNECT_WITHIN, async || {
        store(&b).user_sessions(CallKind::Play, "u-resync").await.unwrap_or(0) == 1
    })
    .await;
    let back = log()
        .text()
        .lines()
        .any(|l| l.contains("resynchronised") && l.contains("resync-a"));
    assert!(back, "the return is logged");

    let admitted = Instant::now();
    assert_eq!(playlist(&b, "127.0.0.3", "b").await, StatusCode::OK);
    ended_after(ts, admitted, KICK_WITHIN)
        .await
        .expect("after the resync, B's admission closes A's older session");
}

/// The cost of the store on the request path: one round trip for the ban look-up and one
/// for the count-and-admit script per admission, none per request of a fresh session.
#[tokio::test]
async fn a_cached_request_makes_no_store_round_trip() {
    if !have_redis_server() {
        return;
    }
    let redis = RedisServer::start().await;
    let backend = backend_with([
        allow("a", "u-cost", &[("X-Max-Sessions", "3")]),
        Mock::given(method("GET"))
            .and(query_param("token", "anon"))
            .respond_with(ResponseTemplate::new(200)),
    ])
    .await;
    let node = start_node(&redis.url(), "cost", &backend, OnStoreLoss::Open).await;
    connected(&node).await;
    let store = store(&node);

    let before = store.round_trips();
    assert_eq!(playlist(&node, "127.0.0.2", "a").await, StatusCode::OK);
    let admission = store.round_trips() - before;
    // EVALSHA, then EVAL the first time Redis has not seen the script.
    assert!((2..=3).contains(&admission), "{admission} round trips for an admission");
    assert_eq!(playlist(&node, "127.0.0.3", "a").await, StatusCode::OK);
    let second = store.round_trips() - before - admission;
    assert_eq!(second, 2, "a later admission: the ban look-up and the script");

    let before = store.round_trips();
    for _ in 0..100 {
        assert_eq!(playlist(&node, "127.0.0.2", "a").await, StatusCode::OK);
    }
    assert_eq!(store.round_trips() - before, 0, "cached requests never reach Redis");

    let before = store.round_trips();
    assert_eq!(playlist(&node, "127.0.0.2", "anon").await, StatusCode::OK);
    assert_eq!(store.round_trips() - before, 1, "no user id: only the ban look-up");
    eprintln!("round trips: admission {second} (first ever {admission}), cached request 0, no user id 1");
}

/// on_loss=closed: with the store unreachable a new session is refused before any backend
/// call; nothing is decided locally.
#[tokio::test]
async fn on_loss_closed_refuses_new_sessions_while_the_store_is_unreachable() {
    if !have_redis_server() {
        return;
    }
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    redis.kill();
    let backend = backend_with([allow("a", "u-closed", &[])]).await;
    let node = start_node(&url, "closed", &backend, OnStoreLoss::Closed).await;
    assert_eq!(playlist(&node, "127.0.0.2", "a").await, StatusCode::FORBIDDEN);
    assert!(backend.received_requests().await.unwrap().is_empty(), "no backend call");
    redis.restart().await;
    connected(&node).await;
    assert_eq!(
        playlist(&node, "127.0.0.2", "a").await,
        StatusCode::OK,
        "admitted once Redis is back"
    );
}

/// A store with a password: the server authenticates with the one in `session_store` and never
/// logs it; with a wrong one it says the store is lost (naming the server), without the
/// password either.
#[tokio::test]
async fn a_store_password_is_used_and_never_logged() {
    if !have_redis_server() {
        return;
    }
    const SECRET: &str = "hunter2-store-secret";
    const WRONG: &str = "wrong-store-secret";
    let redis = RedisServer::start_with(&["--requirepass", SECRET]).await;
    let backend = backend_with([allow("a", "u-pw", &[])]).await;
    let good = format!("redis://:{SECRET}@127.0.0.1:{}", redis.port());
    let node = start_node(&good, "pw-good", &backend, OnStoreLoss::Open).await;
    connected(&node).await;
    assert_eq!(playlist(&node, "127.0.0.2", "a").await, StatusCode::OK);
    assert_eq!(store(&node).user_sessions(CallKind::Play, "u-pw").await.unwrap(), 1);

    let bad = format!("redis://:{WRONG}@127.0.0.1:{}", redis.port());
    let refused = start_node(&bad, "pw-wrong", &backend, OnStoreLoss::Open).await;
    wait_for("the refusal is logged", CONNECT_WITHIN, async || {
        log()
            .text()
            .lines()
            .any(|l| l.contains("SESSION STORE LOST") && l.contains("pw-wrong"))
    })
    .await;
    assert!(!store(&refused).is_up());
    let text = log().text();
    assert!(text.contains("pw-good"), "the servers logged their start");
    assert!(
        !text.contains(SECRET) && !text.contains(WRONG),
        "a password reached the log"
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The figures of docs/performance.md, "Shared session store": admission latency over HTTP
/// (fresh token, backend allows with a user id and a limit no one reaches) and cached requests,
/// with and without the store, alternating request by request on the same backend; round
/// trips counted.
/// Run by hand: `cargo test -p usher-server --test cluster_store -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement that prints figures for docs/performance.md; it asserts nothing about speed, so it is run by hand"]
async fn measure_admission_with_and_without_the_store() {
    if !have_redis_server() {
        return;
    }
    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 300;
    let redis = RedisServer::start().await;
    let backend = backend_with([Mock::given(method("GET")).respond_with(
        ResponseTemplate::new(200)
            .insert_header("X-UserId", "u-measure")
            .insert_header("X-Max-Sessions", "1000000"),
    )])
    .await;
    let shared = start_node(&redis.url(), "measure", &backend, OnStoreLoss::Open).await;
    connected(&shared).await;
    let alone = Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![stream_of("s1", "fake://fake", Some(http_auth(&backend)))],
        ..Config::default()
    })
    .await
    .unwrap();
    let client = client_from("127.0.0.2");
    let mut admission = [Vec::new(), Vec::new()];
    let mut cached = [Vec::new(), Vec::new()];
    let trips_before = store(&shared).round_trips();
    let mut token = 0u64;
    // Alternating request by request, so that the load of the moment weighs on both alike.
    for _ in 0..ROUNDS * PER_ROUND {
        for (i, server) in [&alone, &shared].into_iter().enumerate() {
            token += 1;
            let url = format!("http://{}/s1/index.m3u8?token=m{token}", server.http_addr());
            let start = Instant::now();
            let status = client.get(&url).send().await.unwrap().status();
            admission[i].push(start.elapsed());
            assert_eq!(status, StatusCode::OK);
            let start = Instant::now();
            let status = client.get(&url).send().await.unwrap().status();
            cached[i].push(start.elapsed());
            assert_eq!(status, StatusCode::OK);
        }
    }
    let trips = store(&shared).round_trips() - trips_before;
    for (i, name) in ["without the store", "with the store"].into_iter().enumerate() {
        for (what, v) in [("admission", &mut admission[i]), ("cached", &mut cached[i])] {
            v.sort();
            eprintln!(
                "{name}: {what} n={} p50={:?} p99={:?}",
                v.len(),
                percentile(v, 0.50),
                percentile(v, 0.99)
            );
        }
    }
    eprintln!(
        "store round trips: {trips} for {} admissions and as many cached requests",
        ROUNDS * PER_ROUND
    );
    // One round trip on its own, from this process: the ban look-up of an unknown identity.
    let key = (CallKind::Play, usher_server::auth::Identity::from_bytes([9; 32]));
    let mut trip = Vec::new();
    for _ in 0..1000 {
        let start = Instant::now();
        store(&shared).ban_of(&key).await.unwrap();
        trip.push(start.elapsed());
    }
    trip.sort();
    eprintln!(
        "one round trip (PTTL): p50={:?} p99={:?}",
        percentile(&trip, 0.50),
        percentile(&trip, 0.99)
    );
}
