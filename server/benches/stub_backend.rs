//! The authorization backend of the benchmarks: one tiny HTTP server that both Usher (`on_play`)
//! and nginx (`auth_request`) ask, so the two are compared against the same backend.
//!
//! Every request except `/_stats` is allowed: `200` with `X-AuthDuration` after an optional
//! delay (`--delay-ms`; paths under `/slow/` wait `--slow-delay-ms` instead). The stub counts calls per `token` query parameter and keeps how long it held each call
//! (from the request's arrival at the handler to the answer), so the admission bench can take
//! the backend's own time out of what its clients saw.
//!
//! ```text
//! stub_backend --port 0 [--delay-ms 5] [--slow-delay-ms 250] [--auth-duration 3600] [--threads 1]
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections. `GET /_stats` answers
//! `{"calls":N,"tokens":{"T":{"calls":N,"held_us":[…]}}}`; `GET /_stats?reset=1` also clears.
//! Started by `cargo bench` itself (argument `--bench`) it only says how it is meant to run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[derive(Default)]
struct Token {
    calls: u64,
    held_us: Vec<u64>,
}

struct Stub {
    delay: Duration,
    slow_delay: Duration,
    auth_duration: HeaderValue,
    calls: Mutex<(u64, HashMap<String, Token>)>,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().all(|a| a == "--bench") {
        println!("stub_backend: a helper of server/benches/run.sh (start it with --port PORT)");
        return;
    }
    let port: u16 = arg(&args, "--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let delay_ms: u64 = arg(&args, "--delay-ms").and_then(|p| p.parse().ok()).unwrap_or(0);
    let slow_delay_ms: u64 = arg(&args, "--slow-delay-ms")
        .and_then(|p| p.parse().ok())
        .unwrap_or(250);
    let auth_duration = arg(&args, "--auth-duration").unwrap_or_else(|| "3600".into());
    let threads: usize = arg(&args, "--threads").and_then(|p| p.parse().ok()).unwrap_or(1);
    let stub = Arc::new(Stub {
        delay: Duration::from_millis(delay_ms),
        slow_delay: Duration::from_millis(slow_delay_ms),
        auth_duration: HeaderValue::from_str(&auth_duration).expect("a header value"),
        calls: Mutex::new((0, HashMap::new())),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("bind");
        println!("listening on {}", listener.local_addr().expect("local addr"));
        let app = Router::new().fallback(handle).with_state(stub);
        axum::serve(listener, app).await.expect("serve");
    });
}

async fn handle(State(stub): State<Arc<Stub>>, request: Request) -> Response {
    let arrived = Instant::now();
    let query = request.uri().query().unwrap_or("");
    if request.uri().path() == "/_stats" {
        return stats(&stub, query.contains("reset=1"));
    }
    let token = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let delay = if request.uri().path().starts_with("/slow/") {
        stub.slow_delay
    } else {
        stub.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep_until(arrived + delay).await;
    }
    let held = arrived.elapsed().as_micros() as u64;
    {
        let mut calls = stub.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.0 += 1;
        let t = calls.1.entry(token).or_default();
        t.calls += 1;
        t.held_us.push(held);
    }
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert("x-authduration", stub.auth_duration.clone());
    response
}

fn stats(stub: &Stub, reset: bool) -> Response {
    let mut calls = stub.calls.lock().unwrap_or_else(|e| e.into_inner());
    let tokens: serde_json::Map<String, serde_json::Value> = calls
        .1
        .iter()
        .map(|(t, c)| (t.clone(), serde_json::json!({ "calls": c.calls, "held_us": c.held_us })))
        .collect();
    let body = serde_json::json!({ "calls": calls.0, "tokens": tokens });
    if reset {
        *calls = (0, HashMap::new());
    }
    axum::Json(body).into_response()
}
