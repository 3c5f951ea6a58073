//! Admission: what the server adds to the backend's time when new sessions arrive, and the
//! single flight of a storm of first requests. A client of a running server (`usher serve`)
//! and of the benchmark's stub backend (`stub_backend`), both started by `run.sh`.
//!
//! ```text
//! admission --server http://127.0.0.1:P --backend http://127.0.0.1:B \
//!     [--rate 1000] [--seconds 10] [--storm 1000]
//! ```
//!
//! 1. **Rate**: `--rate` new sessions per second (open loop: a request starts every 1/rate s
//!    whether or not the earlier ones are done), each with a fresh token, for `--seconds`.
//!    The latency of a request is the time to its response headers (the decision; the body is
//!    the segment's bytes); the stub reports how long it held each token's call, so
//!    *added* = client-seen − backend-held, per request.
//! 2. **Storm**: `--storm` first requests with one token (one identity), released at once, on
//!    a stream whose backend answers in 5 ms (`s1`) and on one whose backend answers in 250 ms
//!    (`s2`, so that the requests arrive while the call is in flight). One identity is one
//!    client address, and the server lets an address hold 256 connections: over HTTP the
//!    storm is 250 connections opened beforehand, each sending its share of the requests one
//!    after the other. The same storm on the core itself (`AuthCore`, 5 ms backend) has all
//!    `--storm` requests in flight at once. Each storm must make exactly one backend call and
//!    every request must be allowed; the bench fails otherwise.
//!
//! Prints one line of JSON. Started by `cargo bench` itself it only says how it is meant to run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::{
    Answer, AuthCore, AuthSettings, Backend, BackendRequest, CallKind, Grant, PlayRequest, Proto, Verdict,
};
use usher_server::config::{AuthSpec, AuthTarget};

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn percentiles(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    json!({
        "n": v.len(),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": v[v.len() - 1],
    })
}

/// The stub's record: per token, how long it held each call (µs).
async fn backend_calls(client: &reqwest::Client, backend: &str) -> HashMap<String, Vec<u64>> {
    let stats: Value = client
        .get(format!("{backend}/_stats?reset=1"))
        .send()
        .await
        .expect("the stub answers")
        .json()
        .await
        .expect("the stub's stats are JSON");
    let mut out = HashMap::new();
    if let Some(tokens) = stats["tokens"].as_object() {
        for (token, t) in tokens {
            let held = t["held_us"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            out.insert(token.clone(), held);
        }
    }
    out
}

/// The newest segment the playlist of `stream` lists.
async fn newest_segment(client: &reqwest::Client, server: &str, stream: &str) -> String {
    let playlist = client
        .get(format!("{server}/{stream}/index.m3u8?token=admission-probe"))
        .send()
        .await
        .expect("the server answers")
        .text()
        .await
        .expect("a playlist");
    let line = playlist
        .lines()
        .rev()
        .find(|l| l.starts_with("segment-"))
        .expect("a segment in the playlist");
    format!("{server}/{stream}/{}", line.split('?').next().unwrap_or(line))
}

async fn rate_phase(client: &reqwest::Client, server: &str, backend: &str, rate: u32, seconds: u32) -> Value {
    let url = Arc::new(newest_segment(client, server, "s1").await);
    backend_calls(client, backend).await;
    let total = rate * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let token = format!("adm{i}");
            let sent = Instant::now();
            let response = client.get(format!("{url}?token={token}")).send().await;
            let ttfb = sent.elapsed();
            let status = response.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
            if let Ok(r) = response {
                let _ = r.bytes().await;
            }
            (token, status, ttfb)
        }));
    }
    let offered_secs = started.elapsed().as_secs_f64();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.expect("a request task"));
    }
    let held = backend_calls(client, backend).await;
    let (mut client_ms, mut backend_ms, mut added_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ok, mut calls_off) = (0, 0);
    for (token, status, ttfb) in &results {
        ok += usize::from(*status == 200);
        let calls = held.get(token).map_or(&[][..], Vec::as_slice);
        if calls.len() != 1 {
            calls_off += 1;
            continue;
        }
        let (c, b) = (ttfb.as_secs_f64() * 1e3, calls[0] as f64 / 1e3);
        client_ms.push(c);
        backend_ms.push(b);
        added_ms.push(c - b);
    }
    json!({
        "requests": total,
        "offered_per_sec": f64::from(total) / offered_secs,
        "allowed": ok,
        "not_one_backend_call": calls_off,
        "client": percentiles(client_ms),
        "backend": percentiles(backend_ms),
        "added": percentiles(added_ms),
    })
}

/// Connections one storm opens at once (one identity is one address; run.sh lifts the
/// server's per-address share to 4 096 for the benches).
const STORM_CONNECTIONS: usize = 250;

async fn storm(client: &reqwest::Client, server: &str, backend: &str, stream: &str, n: usize) -> Value {
    let url = newest_segment(client, server, stream).await;
    let conns = n.min(STORM_CONNECTIONS);
    // Open the connections first (a 404 needs no decision), so the storm starts at once.
    let warm: Vec<_> = (0..conns)
        .map(|_| client.get(format!("{server}/no-such-path")).send())
        .collect();
    for r in futures::future::join_all(warm).await.into_iter().flatten() {
        let _ = r.bytes().await;
    }
    backend_calls(client, backend).await;
    let token = format!("storm-{stream}-{}", std::process::id());
    let gate = Arc::new(tokio::sync::Barrier::new(conns));
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let (client, gate, url) = (client.clone(), gate.clone(), format!("{url}?token={token}"));
            // Connection c sends requests c, c + conns, c + 2·conns, … one after the other.
            let mine = (c..n).step_by(conns).count();
            tokio::spawn(async move {
                gate.wait().await;
                let mut outcomes = Vec::with_capacity(mine);
                for _ in 0..mine {
                    outcomes.push(match client.get(&url).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let _ = r.bytes().await;
                            Ok(status)
                        }
                        Err(e) => Err(format!("{e:?}")),
                    });
                }
                outcomes
            })
        })
        .collect();
    let (mut allowed, mut outcomes) = (0, HashMap::<String, usize>::new());
    for t in tasks {
        for outcome in t.await.expect("a storm task") {
            allowed += usize::from(outcome == Ok(200));
            let key = match outcome {
                Ok(status) => status.to_string(),
                Err(e) => e.chars().take(160).collect(),
            };
            *outcomes.entry(key).or_default() += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let calls = backend_calls(client, backend).await.get(&token).map_or(0, Vec::len);
    json!({
        "where": format!("HTTP, stream {stream}"),
        "requests": n,
        "at_once": conns,
        "allowed": allowed,
        "outcomes": outcomes,
        "backend_calls": calls,
        "secs": secs,
    })
}

/// A backend answering after 5 ms, counting its calls.
struct Slow5 {
    calls: std::sync::atomic::AtomicUsize,
}

impl Backend for Slow5 {
    fn call(&self, _url: &str, _request: &BackendRequest) -> BoxFuture<'static, Answer> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Answer::Allow(Grant {
                duration: Duration::from_secs(3600),
                ..Grant::default()
            })
        })
    }
}

/// The storm without the HTTP front end's per-address cap: `n` first requests of one identity
/// at once on the core itself (tasks on the runtime's threads), against a 5 ms backend.
async fn core_storm(n: usize) -> Value {
    let backend = Arc::new(Slow5 {
        calls: Default::default(),
    });
    let core = AuthCore::new(
        backend.clone(),
        AdminTokens::new("bench", Duration::from_secs(3600), false),
        AuthSettings::new(false, Duration::from_secs(30)),
    );
    let spec = Arc::new(AuthSpec::new(AuthTarget::Http("http://127.0.0.1:9/on_play".into())));
    let request = PlayRequest {
        kind: CallKind::Play,
        name: "s1".into(),
        proto: Proto::Hls,
        ip: "127.0.0.2".parse().expect("ip literal"),
        token: Some("storm".into()),
        qs: Some("token=storm".into()),
        query: vec![("token".into(), "storm".into())],
        headers: Default::default(),
        referer: None,
        user_agent: None,
        host: None,
        dvr: false,
    };
    let gate = Arc::new(tokio::sync::Barrier::new(n));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (core, spec, request, gate) = (core.clone(), spec.clone(), request.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                matches!(core.authorize(Some(&spec), request).await, Verdict::Allow(_))
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.expect("a storm task"));
    }
    json!({
        "where": "AuthCore, in process",
        "requests": n,
        "at_once": n,
        "allowed": allowed,
        "backend_calls": backend.calls.load(std::sync::atomic::Ordering::SeqCst),
        "secs": started.elapsed().as_secs_f64(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(server), Some(backend)) = (arg::<String>(&args, "--server"), arg::<String>(&args, "--backend")) else {
        println!("admission: a helper of server/benches/run.sh (needs --server and --backend)");
        return;
    };
    let rate: u32 = arg(&args, "--rate").unwrap_or(1000);
    let seconds: u32 = arg(&args, "--seconds").unwrap_or(10);
    let n: usize = arg(&args, "--storm").unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let report = rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(STORM_CONNECTIONS)
            .build()
            .expect("a client");
        let rate = rate_phase(&client, &server, &backend, rate, seconds).await;
        let storms = [
            storm(&client, &server, &backend, "s1", n).await,
            storm(&client, &server, &backend, "s2", n).await,
            core_storm(n).await,
        ];
        json!({ "rate": rate, "storms": storms })
    });
    println!("{report}");
    for s in report["storms"].as_array().into_iter().flatten() {
        assert_eq!(
            s["backend_calls"], 1,
            "a storm of first requests with one identity must make exactly one backend call: {s}"
        );
        assert_eq!(s["allowed"], s["requests"], "every storm request is allowed: {s}");
    }
}
