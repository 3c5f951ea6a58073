//! What a refusal costs the server (docs/security.md): a request the backend refuses leaves a
//! ban record for the ban's life (BAN-01), and that record keeps what a decision needs — the
//! identity's digest, the state, the end of the ban — not the token, the query, the stream name
//! or the client's headers. Tokens and names beyond the documented limits are refused before
//! anything is kept or asked.
//!
//! One test in this binary: the counting allocator sees the whole process, so nothing else may
//! run beside it. Prints the figures docs/security.md quotes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::{
    Answer, AuthCore, AuthSettings, Backend, BackendRequest, CallKind, PlayRequest, Proto, Verdict,
};
use usher_server::config::{AuthSpec, AuthTarget};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

/// Refuses every call at once with the default ban; counts the calls.
#[derive(Default)]
struct Refusing {
    calls: AtomicUsize,
}

impl Backend for Refusing {
    fn call(&self, _url: &str, _request: &BackendRequest) -> BoxFuture<'static, Answer> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Answer::Deny {
            status: 403,
            duration: Duration::from_secs(180),
        }))
    }
}

const USER_AGENT: &str = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile";

/// Request `i` of a run: its own address, a token of `token_len` bytes in the query, a stream
/// name of `name_len` bytes (one per request, as a template would take), and a User-Agent and
/// Referer of their own (what a client profile costs when every refused request has another).
fn request(i: u32, token_len: usize, name_len: usize) -> PlayRequest {
    let mut token = format!("{i:08x}");
    token.extend(std::iter::repeat_n('t', token_len.saturating_sub(8)));
    token.truncate(token_len);
    let mut name = format!("live/{i:08x}");
    name.extend(std::iter::repeat_n('n', name_len.saturating_sub(name.len())));
    let user_agent = format!("{USER_AGENT} {i}");
    let referer = format!("http://site{i}.example/player");
    PlayRequest {
        kind: CallKind::Play,
        name,
        proto: Proto::Hls,
        ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i))),
        qs: Some(format!("token={token}")),
        query: vec![("token".into(), token.clone())],
        headers: [(
            axum::http::header::USER_AGENT,
            axum::http::HeaderValue::from_str(&user_agent).expect("a valid header value"),
        )]
        .into_iter()
        .collect(),
        token: Some(token),
        referer: Some(referer),
        user_agent: Some(user_agent),
        host: Some("cdn.example.com".into()),
        dvr: false,
    }
}

fn rss_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Run {
    /// Heap bytes held per refused request once it was refused.
    held: f64,
    /// VmRSS growth per refused request (coarse: pages, and what the allocator keeps).
    rss: f64,
    records: usize,
    calls: usize,
    refused: usize,
    /// Kept alive to the end, so that each run's VmRSS growth is fresh pages.
    _core: AuthCore,
}

const N: u32 = 4096;

fn core_with(backend: Arc<Refusing>) -> AuthCore {
    AuthCore::new(
        backend,
        AdminTokens::new("k", Duration::from_secs(3600), false),
        AuthSettings {
            no_auto_token: AtomicBool::new(false),
            http_session_idle: Duration::from_secs(30),
            soft_limitation_delay: Duration::from_secs(30),
        },
    )
}

async fn run(token_len: usize, name_len: usize) -> Run {
    let spec = AuthSpec::new(AuthTarget::Http("http://backend.invalid/on_play".into()));
    // Warm-up on a core of its own: one refusal, so that what is made lazily once per process
    // is there before the baseline, and the measured registry holds exactly N records.
    let warm = core_with(Arc::default());
    let _ = warm.authorize(Some(&spec), request(u32::MAX - 1, 16, 16)).await;
    drop(warm);
    let backend = Arc::new(Refusing::default());
    let core = core_with(backend.clone());
    let records0 = core.record_count();
    let (before, rss0) = (counting_alloc::live_bytes(), rss_bytes());
    let mut refused = 0;
    for i in 0..N {
        let req = request(i, token_len, name_len);
        // The request as a front end built it is dropped before the figure is read.
        let verdict = core.authorize(Some(&spec), req).await;
        assert!(!matches!(verdict, Verdict::Allow(_)), "request {i} was admitted");
        refused += 1;
    }
    // Let the resolver tasks finish and drop what they held, and sweep once, as the sweeper
    // does every 250 ms (it lets go of re-check templates no record holds).
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    core.sweep();
    let (after, rss1) = (counting_alloc::live_bytes(), rss_bytes());
    Run {
        held: (after - before) as f64 / f64::from(N),
        rss: (rss1 - rss0) as f64 / f64::from(N),
        records: core.record_count() - records0,
        calls: backend.calls.load(Ordering::Relaxed),
        refused,
        _core: core,
    }
}

/// BAN-01 records hold a digest, not the request: with a 4 KiB token (the longest accepted), a
/// 1 KiB stream name and a User-Agent and Referer of its own, a refused request holds what one
/// with a 16-byte token and a short name holds. Longer tokens and names are refused before any
/// backend call and leave nothing.
#[tokio::test(flavor = "current_thread")]
async fn a_refusal_holds_a_digest_not_the_request() {
    let small = run(16, 16).await;
    let long_token = run(4096, 16).await;
    let long_name = run(16, 1024).await;
    let over_token = run(7 * 1024, 16).await;
    let over_name = run(16, 1025).await;
    for (what, r) in [
        ("16-byte token", &small),
        ("4 KiB token", &long_token),
        ("1 KiB name", &long_name),
        ("7 KiB token", &over_token),
        ("1025-byte name", &over_name),
    ] {
        eprintln!(
            "{what}: {:.0} B heap held per refused request, VmRSS +{:.0} B ({} refused, {} records, {} backend calls)",
            r.held, r.rss, r.refused, r.records, r.calls
        );
    }
    let n = N as usize;
    for r in [&small, &long_token, &long_name] {
        assert_eq!(
            (r.records, r.calls),
            (n, n),
            "each refusal asked the backend once and left its ban"
        );
    }
    assert!(small.held < 300.0, "a ban record costs {:.0} B", small.held);
    for (what, r) in [("a 4 KiB token", &long_token), ("a 1 KiB name", &long_name)] {
        assert!(
            r.held < small.held + 32.0,
            "a refusal with {what} holds {:.0} B against {:.0} B with a short one: it keeps the raw value",
            r.held,
            small.held
        );
    }
    for (what, r) in [("a 7 KiB token", &over_token), ("a 1025-byte name", &over_name)] {
        assert_eq!(
            (r.records, r.calls),
            (0, 0),
            "{what} is refused before any record or backend call"
        );
        assert!(r.held < 8.0, "{what}: {:.0} B held", r.held);
    }
}
