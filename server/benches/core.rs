//! Micro-benchmarks of the auth core's hot paths (criterion):
//!
//! * `identity/*`: the SHA-256 identity of a request (every request computes it);
//! * `fast_path/*`: a request of an open session with a fresh decision, through
//!   [`AuthCore::authorize`], from one thread and from two threads at once on one registry
//!   (its single lock), over 10 000 open sessions; and, as the control, two threads on two
//!   registries (no lock shared);
//! * `interpret/*`: reading a backend answer (headers only, and a JSON body).
//!
//! `cargo bench -p usher-server --bench core`; `server/benches/run.sh` runs it with the rest.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::BoxFuture;
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::backend::interpret;
use usher_server::auth::identity::RequestFacts;
use usher_server::auth::{
    Answer, AuthCore, AuthSettings, Backend, BackendRequest, CallKind, Grant, Identity, PlayRequest, Proto, Verdict,
};
use usher_server::config::{AuthSpec, AuthTarget, SessionKeys};

const SESSIONS: u32 = 10_000;

struct Allow;

impl Backend for Allow {
    fn call(&self, _url: &str, _request: &BackendRequest) -> BoxFuture<'static, Answer> {
        Box::pin(std::future::ready(Answer::Allow(Grant {
            duration: Duration::from_secs(3600),
            ..Grant::default()
        })))
    }
}

fn request(i: u32) -> PlayRequest {
    let token = format!(
        "{:032x}",
        u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    );
    PlayRequest {
        kind: CallKind::Play,
        name: "live/stream1".into(),
        proto: Proto::Hls,
        ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
        qs: Some(format!("token={token}")),
        query: vec![("token".into(), token.clone())],
        headers: [(
            axum::http::header::HOST,
            axum::http::HeaderValue::from_static("cdn.example.com"),
        )]
        .into_iter()
        .collect(),
        token: Some(token),
        referer: None,
        user_agent: None,
        host: Some("cdn.example.com".into()),
        dvr: false,
    }
}

fn identity(c: &mut Criterion) {
    let req = request(7);
    let facts = RequestFacts {
        name: &req.name,
        ip: req.ip,
        proto: req.proto,
        token: req.token.as_deref(),
        headers: &req.headers,
        query: &req.query,
    };
    let default = SessionKeys::default();
    c.bench_function("identity/name,ip,token", |b| {
        b.iter(|| Identity::compute(black_box(&default), &facts))
    });
    let listed = SessionKeys::parse("ip,name,proto,token,header.host").expect("valid keys");
    c.bench_function("identity/ip,name,proto,token,header.host", |b| {
        b.iter(|| Identity::compute(black_box(&listed), &facts))
    });
}

/// A core with `SESSIONS` open sessions, and the requests that find them.
fn populated() -> (AuthCore, AuthSpec, Vec<PlayRequest>) {
    let core = AuthCore::new(
        Arc::new(Allow),
        AdminTokens::new("bench", Duration::from_secs(3600), false),
        AuthSettings {
            no_auto_token: AtomicBool::new(false),
            http_session_idle: Duration::from_secs(3600),
            soft_limitation_delay: Duration::from_secs(30),
        },
    );
    let spec = AuthSpec::new(AuthTarget::Http("http://127.0.0.1:9/on_play".into()));
    let requests: Vec<PlayRequest> = (0..SESSIONS).map(request).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for r in &requests {
            assert!(matches!(
                core.authorize(Some(&spec), r.clone()).await,
                Verdict::Allow(_)
            ));
        }
    });
    (core, spec, requests)
}

/// `iters` cached requests spread over `threads` threads; the wall time of the slowest.
fn hammer(core: &AuthCore, spec: &AuthSpec, requests: &[PlayRequest], threads: u32, iters: u64) -> Duration {
    let per_thread = iters.div_ceil(u64::from(threads));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                // The fast path never awaits: a decision in force answers under the lock.
                let mut i = t as usize * 7919;
                for _ in 0..per_thread {
                    i = (i + 1) % requests.len();
                    let verdict = futures::executor::block_on(core.authorize(Some(spec), requests[i].clone()));
                    assert!(matches!(verdict, Verdict::Allow(_)));
                }
            });
        }
    });
    start.elapsed()
}

fn fast_path(c: &mut Criterion) {
    let (core, spec, requests) = populated();
    let (other, _, _) = populated();
    let mut group = c.benchmark_group("fast_path");
    for threads in [1u32, 2] {
        // Time per request as the machine sees it: with two threads, two requests overlap.
        group.bench_function(format!("{threads}_thread"), |b| {
            b.iter_custom(|iters| hammer(&core, &spec, &requests, threads, iters))
        });
    }
    // The control: two threads, each on a registry of its own (no lock shared). If the shared
    // registry's time per request is no worse than this, its lock is not what limits it.
    group.bench_function("2_thread_2_registries", |b| {
        b.iter_custom(|iters| {
            let half = iters.div_ceil(2);
            let start = Instant::now();
            std::thread::scope(|scope| {
                scope.spawn(|| hammer(&core, &spec, &requests, 1, half));
                scope.spawn(|| hammer(&other, &spec, &requests, 1, half));
            });
            start.elapsed()
        })
    });
    // The part of a request that is not the core: building it (cloned strings).
    group.bench_function("request_clone", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(requests[i].clone())
        })
    });
    group.finish();
}

fn interpret_answers(c: &mut Criterion) {
    let headers: Vec<(String, String)> = [
        ("Content-Length", "0"),
        ("X-AuthDuration", "180"),
        ("X-UserId", "user-42"),
        ("X-Max-Sessions", "3"),
        ("Date", "Sat, 28 Nov 2026 12:00:00 GMT"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c.bench_function("interpret/headers", |b| {
        b.iter(|| interpret(200, black_box(&headers), b""))
    });
    let body = br#"{"auth_time":180,"user_id":"user-42","max_sessions":3,"allowed_dvr_ranges":[{"from":1700000000,"duration":3600}]}"#;
    let plain = vec![("Content-Type".to_string(), "application/json".to_string())];
    c.bench_function("interpret/json_body", |b| {
        b.iter(|| interpret(200, black_box(&plain), black_box(body)))
    });
    c.bench_function("interpret/deny", |b| {
        b.iter(|| interpret(403, black_box(&headers[..2]), b""))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = identity, fast_path, interpret_answers
}
criterion_main!(benches);
