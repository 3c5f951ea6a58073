//! RTSP play against the reference server over real sockets: ffprobe (Debian's ffmpeg) and the
//! conformance suite's retina driver as clients, a wiremock auth backend that records when it
//! was asked what.
//!
//! What is pinned here: the token in the RTSP URL decides (T9, TOK-01); one backend call per
//! RTSP session, at DESCRIBE (REQ-03); a recheck deny closes the connection within about a
//! second (TIME-05, RESP-02, BAN-03); bad input on one connection leaves the others playing.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;
use support::{PROBE_LIMIT, ffprobe_with, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_conformance::clients::rtsp::RtspClient;
use usher_conformance::clients::{Outcome, ViewerProfile};
use usher_server::RunningServer;
use usher_server::config::{AuthSpec, AuthTarget, Config};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// One backend call: when it arrived and its query.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    params: HashMap<String, String>,
}

/// The auth backend. Tokens: `good*` allowed; `bad*` 403; `redirect*` 302; `short*` allowed
/// for 1 s on the first call, denied on every later one.
struct Backend {
    server: MockServer,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Backend {
    async fn start() -> Backend {
        let server = MockServer::start().await;
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let log = calls.clone();
        Mock::given(wiremock::matchers::method("GET"))
            .respond_with(move |request: &Request| {
                let params: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
                let token = params.get("token").cloned().unwrap_or_default();
                let mut calls = log.lock().unwrap();
                let earlier = calls.iter().filter(|c| c.params.get("token") == Some(&token)).count();
                calls.push(Call {
                    at: Instant::now(),
                    params,
                });
                match token {
                    t if t.starts_with("good") => ResponseTemplate::new(200),
                    t if t.starts_with("short") && earlier == 0 => {
                        ResponseTemplate::new(200).insert_header("X-AuthDuration", "1")
                    }
                    t if t.starts_with("redirect") => {
                        ResponseTemplate::new(302).insert_header("Location", "rtsp://elsewhere.example/s")
                    }
                    _ => ResponseTemplate::new(403),
                }
            })
            .mount(&server)
            .await;
        Backend { server, calls }
    }

    fn url(&self) -> String {
        format!("{}/auth", self.server.uri())
    }

    fn calls_for(&self, token: &str) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.params.get("token").map(String::as_str) == Some(token))
            .cloned()
            .collect()
    }
}

async fn start(backend: &Backend) -> RunningServer {
    let on_play = || Some(AuthSpec::new(AuthTarget::Http(backend.url())));
    let config = Config {
        http: support::loopback(),
        rtsp: support::loopback(),
        streams: vec![
            stream("s1", "fake://fake", on_play()),
            stream("live/cam", "fake://fake", on_play()),
        ],
        ..Config::default()
    };
    support::start(config).await
}

fn rtsp_addr(server: &RunningServer) -> SocketAddr {
    server.rtsp_addr().expect("the config has rtsp")
}

fn client(server: &RunningServer, ip: &str) -> RtspClient {
    let base = Url::parse(&format!("rtsp://{}/", rtsp_addr(server))).unwrap();
    RtspClient::new(&base, ViewerProfile::new(ip.parse().unwrap()))
}

fn token(t: &str) -> Vec<(String, String)> {
    vec![("token".to_string(), t.to_string())]
}

/// Runs ffprobe over RTSP/TCP; returns (success, parsed JSON, stderr).
async fn ffprobe(url: &str) -> (bool, Value, String) {
    ffprobe_with(
        "ffprobe",
        url,
        &["-rtsp_transport", "tcp", "-timeout", "5000000"],
        PROBE_LIMIT,
    )
    .await
}

#[tokio::test]
async fn ffprobe_plays_with_a_good_token_and_gets_403_with_a_bad_one() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let backend = Backend::start().await;
    let server = start(&backend).await;
    let base = format!("rtsp://{}", rtsp_addr(&server));

    let (ok, json, stderr) = ffprobe(&format!("{base}/s1?token=good-ffprobe")).await;
    assert!(ok, "ffprobe failed over RTSP: {stderr}");
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_name"] == "h264")
        .unwrap_or_else(|| panic!("no H.264 stream: {json}"));
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(64), Some(48)),
        "{video}"
    );
    let calls = backend.calls_for("good-ffprobe");
    assert_eq!(calls.len(), 1, "one backend call per RTSP session: {calls:?}");
    assert_eq!(calls[0].params["proto"], "rtsp");
    assert_eq!(calls[0].params["name"], "s1");
    assert_eq!(calls[0].params["request_type"], "new_session");
    assert!(
        calls[0].params.get("user_agent").is_some_and(|ua| ua.contains("Lavf")),
        "{calls:?}"
    );

    let (ok, _, stderr) = ffprobe(&format!("{base}/s1?token=bad-ffprobe")).await;
    assert!(!ok, "ffprobe must fail with a denied token");
    assert!(stderr.contains("403"), "ffprobe should report the 403: {stderr}");
    server.shutdown().await;
}

#[tokio::test]
async fn retina_receives_h264_frames_with_one_backend_call_at_describe() {
    let backend = Backend::start().await;
    let server = start(&backend).await;

    let (attempt, session) = client(&server, "127.0.0.2")
        .open("live/cam", &token("good-retina"), 5)
        .await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut session = session.expect("a playing session");
    let seen = session.seen();
    assert_eq!(seen.video_size, Some((64, 48)), "{seen:?}");
    assert!(seen.keyframes >= 1, "{seen:?}");
    assert!(seen.described.contains(&"video/h264".to_string()), "{seen:?}");
    assert!(session.wait_more(5, Duration::from_secs(5)).await, "media keeps coming");

    // REQ-03: DESCRIBE asked once; SETUP (per track) and PLAY did not ask again.
    let calls = backend.calls_for("good-retina");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let params = &calls[0].params;
    assert_eq!(params["name"], "live/cam");
    assert_eq!(params["ip"], "127.0.0.2", "the driver plays from the profile's address");
    assert_eq!(params["proto"], "rtsp");
    assert_eq!(params["request_type"], "new_session");
    assert_eq!(params.get("qs").map(String::as_str), Some("token=good-retina"));

    // The session is listed while the connection lives, and closes with it (SESS-07).
    assert_eq!(server.core().sessions().len(), 1);
    drop(session);
    let closed = async {
        while !server.core().sessions().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .expect("the session closes when the connection ends");
    assert_eq!(backend.calls_for("good-retina").len(), 1);

    let (denied, none) = client(&server, "127.0.0.3").open("s1", &token("bad-retina"), 1).await;
    assert_eq!(denied.outcome, Outcome::Denied { status: 403 }, "{denied}");
    assert!(none.is_none());
    let (redirected, _) = client(&server, "127.0.0.3")
        .open("s1", &token("redirect-retina"), 1)
        .await;
    assert_eq!(
        redirected.outcome,
        Outcome::Denied { status: 403 },
        "a backend 302 is a deny for RTSP (AMB-5): {redirected}"
    );
    let (missing, _) = client(&server, "127.0.0.3")
        .open("nope", &token("good-retina"), 1)
        .await;
    assert!(
        matches!(missing.outcome, Outcome::Failed { status: Some(404), .. }),
        "{missing}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_recheck_deny_closes_the_connection_within_a_second() {
    let backend = Backend::start().await;
    let server = start(&backend).await;

    let (attempt, session) = client(&server, "127.0.0.4")
        .open("s1", &token("short-recheck"), 1)
        .await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut session = session.unwrap();
    let closed = session
        .wait_closed(Duration::from_secs(6))
        .await
        .expect("the recheck deny closes the connection");
    let closed_at = session.opened() + closed.after;
    let calls = backend.calls_for("short-recheck");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].params["request_type"], "update_session");
    let after_recheck = closed_at.saturating_duration_since(calls[1].at);
    assert!(closed_at >= calls[1].at, "closed before the recheck: {closed:?}");
    assert!(
        after_recheck < Duration::from_secs(1),
        "closed {after_recheck:?} after the recheck: {closed:?}"
    );
    // Recheck due after the 1 s auth duration; the sweeper runs every 250 ms.
    let recheck_after = calls[1].at.duration_since(calls[0].at);
    assert!(
        recheck_after >= Duration::from_millis(900) && recheck_after < Duration::from_secs(3),
        "{recheck_after:?}"
    );
    // Banned now (BAN-01): a new attempt is refused without a backend call.
    let (again, _) = client(&server, "127.0.0.4")
        .open("s1", &token("short-recheck"), 1)
        .await;
    assert_eq!(again.outcome, Outcome::Denied { status: 403 }, "{again}");
    assert_eq!(backend.calls_for("short-recheck").len(), 2);
    server.shutdown().await;
}

/// Sends `bytes` on a fresh connection and reads until the server closes it; returns what it
/// answered. A reset counts as a close.
async fn bad_client(addr: SocketAddr, bytes: Vec<u8>, then_close_write: bool) -> (String, Duration) {
    let started = Instant::now();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let _ = conn.write_all(&bytes).await;
    if then_close_write {
        let _ = conn.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server must close a connection that sent {:?}…",
        &bytes[..bytes.len().min(40)]
    );
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test]
async fn bad_input_closes_only_its_own_connection() {
    let backend = Backend::start().await;
    let server = start(&backend).await;
    let addr = rtsp_addr(&server);

    let (attempt, session) = client(&server, "127.0.0.5")
        .open("s1", &token("good-bystander"), 1)
        .await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut session = session.unwrap();

    let mut oversized = b"OPTIONS rtsp://127.0.0.1/s1 RTSP/1.0\r\nCSeq: 1\r\nX-Big: ".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 100 * 1024));
    let cases = [
        ("garbage", b"\x00\xff\x16\x03garbage\r\n\r\n".to_vec(), false),
        ("oversized header", oversized, false),
        (
            "HTTP on the RTSP port",
            b"GET /s1/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        (
            "huge body",
            b"SET_PARAMETER rtsp://127.0.0.1/s1 RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
            false,
        ),
        (
            "truncated request",
            b"DESCRIBE rtsp://127.0.0.1/s1?token=good-x RTSP/1.0\r\nCSeq: 1\r\n".to_vec(),
            true,
        ),
    ];
    let runs = cases.map(|(name, bytes, close)| async move { (name, bad_client(addr, bytes, close).await) });
    for (name, (answer, took)) in futures::future::join_all(runs).await {
        let first = answer.lines().next().unwrap_or_default().to_string();
        assert!(
            answer.is_empty() || first.starts_with("RTSP/1.0 400") || first.starts_with("RTSP/1.0 413"),
            "{name}: unexpected answer {first:?}"
        );
        assert!(took < Duration::from_secs(3), "{name}: closed after {took:?}");
    }
    assert!(
        session.wait_more(5, Duration::from_secs(5)).await,
        "the good client keeps receiving: {:?} {:?}",
        session.seen(),
        session.closed()
    );
    assert!(session.closed().is_none());
    assert!(
        backend.calls_for("good-x").is_empty(),
        "a truncated DESCRIBE asks nobody"
    );
    server.shutdown().await;
}
