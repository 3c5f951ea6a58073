//! Sessions at scale, in process: opens N sessions through the real [`AuthCore`] with an
//! instant scripted backend, then reports what they cost and how the core performs at that
//! size. One size per process, so every figure starts from the same idle baseline.
//!
//! ```text
//! sessions --sessions 100000 [--users-per 0] [--token-len 32] [--lookups 200000]
//! ```
//!
//! Prints one line of JSON:
//!
//! * `rss_per_session`: (VmRSS after − VmRSS before) / N, from `/proc/self/status`;
//! * `heap_per_session`: live heap bytes added per session, counted by this binary's allocator;
//! * `open_per_sec`: sessions opened per second (new_session through the backend, one task);
//! * `hits_per_sec`: cached requests of random open sessions per second (the HLS fast path);
//! * `sweep_ms`: one sweeper pass over the registry.
//!
//! Each request looks like an HLS segment request from a player: a 32-hex-digit token in the
//! query (`token=…`), a Host and a User-Agent header, one of ten streams, one client address per
//! session. With `--users-per K` the backend also names a user id shared by K sessions.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::{
    Answer, AuthCore, AuthSettings, Backend, BackendRequest, CallKind, Grant, PlayRequest, Proto, Verdict,
};
use usher_server::config::{AuthSpec, AuthTarget};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

const USER_AGENT: &str = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile";

/// Allows every call at once, for an hour; names a user when asked to.
struct Instant200 {
    users_per: u64,
}

impl Backend for Instant200 {
    fn call(&self, _url: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
        let user_id = (self.users_per > 0).then(|| {
            let n: u64 = request
                .token
                .as_deref()
                .and_then(|t| u64::from_str_radix(&t[..16], 16).ok())
                .unwrap_or(0);
            format!("user{}", n / self.users_per)
        });
        Box::pin(std::future::ready(Answer::Allow(Grant {
            duration: Duration::from_secs(3600),
            user_id,
            ..Grant::default()
        })))
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The token of session `i`: its number in the first 16 hex digits (so the backend can name
/// its user), padded with a mix of it to `len` digits.
fn token(i: u64, len: usize) -> String {
    let mut t = format!("{i:016x}");
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while t.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t.push_str(&format!("{x:016x}"));
    }
    t.truncate(len.max(16));
    t
}

fn request(i: u64, token_len: usize) -> PlayRequest {
    let t = token(i, token_len);
    PlayRequest {
        kind: CallKind::Play,
        name: format!("live/stream{}", i % 10),
        proto: Proto::Hls,
        ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i as u32)),
        qs: Some(format!("token={t}")),
        query: vec![("token".into(), t.clone())],
        headers: [
            (
                axum::http::header::HOST,
                axum::http::HeaderValue::from_static("cdn.example.com"),
            ),
            (
                axum::http::header::USER_AGENT,
                axum::http::HeaderValue::from_static(USER_AGENT),
            ),
        ]
        .into_iter()
        .collect(),
        token: Some(t),
        referer: None,
        user_agent: Some(USER_AGENT.into()),
        host: Some("cdn.example.com".into()),
        dvr: false,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().all(|a| a == "--bench");
    let n: u64 = arg(&args, "--sessions", if quick { 100_000 } else { 1_000_000 });
    let users_per: u64 = arg(&args, "--users-per", 0);
    let token_len: usize = arg(&args, "--token-len", 32);
    let lookups: u64 = arg(&args, "--lookups", 200_000);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let core = AuthCore::new(
            Arc::new(Instant200 { users_per }),
            AdminTokens::new("bench", Duration::from_secs(3600), false),
            AuthSettings {
                no_auto_token: AtomicBool::new(false),
                // No session may close as idle while the bench runs.
                http_session_idle: Duration::from_secs(24 * 3600),
                soft_limitation_delay: Duration::from_secs(30),
            },
        );
        let spec = AuthSpec::new(AuthTarget::Http("http://127.0.0.1:9/on_play".into()));
        // Warm up the runtime, the allocator and the tracing machinery with one session, then
        // close it, so the baseline holds everything but the sessions themselves.
        assert!(matches!(
            core.authorize(Some(&spec), request(u64::MAX / 2, token_len)).await,
            Verdict::Allow(_)
        ));
        core.close_session(
            match core.authorize(Some(&spec), request(u64::MAX / 2, token_len)).await {
                Verdict::Allow(h) => h.session_id(),
                other => panic!("warm-up refused: {other:?}"),
            },
        );
        let (rss0, heap0) = (rss_bytes(), counting_alloc::live_bytes());

        let started = Instant::now();
        for i in 0..n {
            let verdict = core.authorize(Some(&spec), request(i, token_len)).await;
            assert!(matches!(verdict, Verdict::Allow(_)), "session {i} refused: {verdict:?}");
        }
        let open_secs = started.elapsed().as_secs_f64();
        let (rss1, heap1) = (rss_bytes(), counting_alloc::live_bytes());
        assert_eq!(core.record_count() as u64, n, "every session has its record");

        // Cached requests of random open sessions: what an HLS segment request costs the core.
        // Built beforehand (in batches, to bound the memory they take) and handed over, so the
        // timed loop is the core's work alone.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut hit_secs = 0.0;
        let mut left = lookups;
        while left > 0 {
            let batch: Vec<PlayRequest> = (0..left.min(50_000))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    request(x % n.max(1), token_len)
                })
                .collect();
            left -= batch.len() as u64;
            let started = Instant::now();
            for req in batch {
                let verdict = core.authorize(Some(&spec), req).await;
                assert!(matches!(verdict, Verdict::Allow(_)));
            }
            hit_secs += started.elapsed().as_secs_f64();
        }

        let started = Instant::now();
        core.sweep();
        let sweep_ms = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(core.record_count() as u64, n, "the sweep closes nothing");

        let per = |a: u64, b: u64| (b as f64 - a as f64) / n.max(1) as f64;
        println!(
            "{}",
            serde_json::json!({
                "sessions": n,
                "users_per": users_per,
                "token_len": token_len,
                "rss_baseline": rss0,
                "rss_per_session": per(rss0, rss1),
                "heap_per_session": per(heap0 as u64, heap1 as u64),
                "open_per_sec": n as f64 / open_secs,
                "hits_per_sec": lookups as f64 / hit_secs.max(1e-9),
                "hit_ns": hit_secs / lookups.max(1) as f64 * 1e9,
                "sweep_ms": sweep_ms,
            })
        );
    });
}
