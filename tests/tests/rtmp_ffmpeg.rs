//! The RTMP front end against outside clients: ffmpeg/ffprobe (Debian's ffmpeg) and the
//! conformance suite's `rml_rtmp` driver, with a wiremock backend deciding.
//!
//! * play `rtmp://HOST/static/NAME?token=T` (T9): an allowed token decodes, a denied one makes
//!   ffprobe fail and the driver report a refusal;
//! * publish with ffmpeg (`-f flv`, PUB-01..06): admitted with the right token and password,
//!   refused (ffmpeg exits non-zero) with a denied token (the backend saw the POST) or a wrong
//!   password (no backend call); while it publishes the stream plays over HLS and RTMP;
//! * a recheck deny closes a playing connection within about a second (TIME-05, RESP-02);
//! * garbage and a truncated handshake cost only their own connection.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{answer, auth as spec, ffmpeg_publish_command, ffprobe_codecs, ffprobe_json, good_and_bad, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_conformance::clients::rtmp::{REFUSED_STATUS, RtmpClient};
use usher_conformance::clients::{Outcome, ViewerProfile};
use usher_server::RunningServer;
use usher_server::config::{Config, StreamConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "P";

/// The backend: GET /auth and POST /publish allow token `good` and refuse token `bad`;
/// GET /recheck allows once for one second, then refuses.
async fn backend() -> MockServer {
    let server = MockServer::start().await;
    for (verb, route) in [("GET", "/auth"), ("POST", "/publish")] {
        good_and_bad(&server, verb, route).await;
    }
    let moved = ResponseTemplate::new(302).insert_header("Location", "http://backup.example/clip.m3u8");
    answer(&server, "GET", "/redirect", None, 5, moved).await;
    Mock::given(method("GET"))
        .and(path("/recheck"))
        .respond_with(ResponseTemplate::new(200).insert_header("X-AuthDuration", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    answer(&server, "GET", "/recheck", None, 2, ResponseTemplate::new(403)).await;
    server
}

async fn start(backend: &MockServer) -> RunningServer {
    let config = Config {
        http: support::loopback(),
        rtmp: support::loopback(),
        streams: vec![
            stream("s1", "fake://fake", spec(backend, "/auth")),
            StreamConfig {
                on_publish: spec(backend, "/publish"),
                password: Some(PASSWORD.into()),
                ..stream("pub", "publish://", spec(backend, "/auth"))
            },
            stream("r1", "fake://fake", spec(backend, "/recheck")),
            stream("live/cam1", "fake://fake", spec(backend, "/auth")),
            stream("moved", "fake://fake", spec(backend, "/redirect")),
        ],
        ..Config::default()
    };
    support::start(config).await
}

fn rtmp_addr(server: &RunningServer) -> SocketAddr {
    server.rtmp_addr().expect("the config has rtmp")
}

/// ffprobe's verdict on `url`: (success, sorted codec names, stderr).
async fn ffprobe(url: &str) -> (bool, Vec<String>, String) {
    ffprobe_codecs(url, &["-rw_timeout", "8000000"]).await
}

/// ffmpeg publishing `seconds` of test pattern and tone as FLV to `url`.
fn ffmpeg_publish(url: &str, seconds: u32) -> tokio::process::Child {
    ffmpeg_publish_command(url, seconds)
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (Debian package ffmpeg; .ci/run installs it)")
}

/// Waits for a publishing ffmpeg; returns (success, stderr).
async fn finish(child: tokio::process::Child, limit: Duration) -> (bool, String) {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("ffmpeg did not finish within {limit:?}"))
        .expect("ffmpeg runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn calls_to(backend: &MockServer, route: &str) -> Vec<wiremock::Request> {
    backend
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == route)
        .collect()
}

fn query(request: &wiremock::Request, key: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn good() -> Vec<(String, String)> {
    vec![("token".to_string(), "good".to_string())]
}

#[tokio::test]
async fn ffprobe_plays_over_rtmp_with_an_allowed_token_and_fails_with_a_denied_one() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    let base = format!("rtmp://{}", rtmp_addr(&server));

    let (ok, codecs, stderr) = ffprobe(&format!("{base}/static/s1?token=good")).await;
    assert!(ok, "ffprobe failed over RTMP: {stderr}");
    // Exactly the two tracks: no bogus data or subtitle streams from script data.
    assert_eq!(codecs, ["aac", "h264"], "{stderr}");

    let (ok, _, stderr) = ffprobe(&format!("{base}/static/s1?token=bad")).await;
    assert!(!ok, "ffprobe must fail with a denied token");
    assert!(
        stderr.contains("refused"),
        "ffprobe should print the server's reason: {stderr}"
    );

    // The backend saw the RTMP session as T1 describes it.
    let calls = calls_to(&backend, "/auth").await;
    let first = calls.first().expect("a backend call");
    assert_eq!(query(first, "name").as_deref(), Some("s1"));
    assert_eq!(query(first, "proto").as_deref(), Some("rtmp"));
    assert_eq!(query(first, "ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(query(first, "qs").as_deref(), Some("token=good"));
    assert_eq!(query(first, "token").as_deref(), Some("good"));
    assert!(
        query(first, "user_agent").is_some_and(|ua| !ua.is_empty()),
        "flashVer is the user agent: {:?}",
        first.url
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_app_other_than_static_prefixes_the_name_and_page_url_is_the_referer() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    let url = format!("rtmp://{}/live/cam1?token=good", rtmp_addr(&server));
    let page = "https://site.example/watch?token=good&name=cam1";
    let (ok, stdout, stderr) = ffprobe_json(
        &[
            "-show_streams",
            "-rtmp_pageurl",
            page,
            "-rtmp_flashver",
            "usher-test/1.0",
            &url,
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "ffprobe failed on {url}: {stderr}");
    assert!(String::from_utf8_lossy(&stdout).contains("h264"), "{stderr}");
    let calls = calls_to(&backend, "/auth").await;
    let call = calls.first().expect("a backend call");
    assert_eq!(
        query(call, "name").as_deref(),
        Some("live/cam1"),
        "T9: app `live` is part of the name"
    );
    assert_eq!(
        query(call, "referer").as_deref(),
        Some(page),
        "pageUrl is the referer (T1)"
    );
    assert_eq!(query(call, "user_agent").as_deref(), Some("usher-test/1.0"));
    server.shutdown().await;
}

#[tokio::test]
async fn the_rml_rtmp_driver_plays_and_is_refused() {
    let backend = backend().await;
    let server = start(&backend).await;
    let client = RtmpClient::new(rtmp_addr(&server), ViewerProfile::new("127.0.0.1".parse().unwrap()));

    let (attempt, player) = client.play("s1", &good()).await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut player = player.expect("a playing connection");
    let seen = player.seen();
    assert!(seen.avc_sequence_header, "{seen:?}");
    assert!(seen.keyframes >= 1, "the first picture is a keyframe: {seen:?}");
    assert!(
        player.wait_more_video(5, Duration::from_secs(5)).await,
        "{:?}",
        player.seen()
    );
    let seen = player.seen();
    assert!(seen.aac_sequence_header && seen.audio_messages > 0, "{seen:?}");
    assert!(seen.last_video_ms > seen.first_video_ms, "timestamps advance: {seen:?}");

    let bad = [("token".to_string(), "bad".to_string())];
    let (attempt, player) = client.play("s1", &bad).await;
    assert_eq!(attempt.outcome, Outcome::Denied { status: REFUSED_STATUS }, "{attempt}");
    assert!(player.is_none());
    assert!(
        attempt
            .trail
            .iter()
            .any(|l| l.contains("refused by the authorization backend")),
        "{attempt}"
    );
    // Unknown stream: refused too, not a transport failure.
    let (attempt, _) = client.play("nope", &good()).await;
    assert!(attempt.outcome.is_refused(), "{attempt}");
    // A backend redirect is a refusal over RTMP (AMB-5).
    let (attempt, _) = client.play("moved", &good()).await;
    assert_eq!(attempt.outcome, Outcome::Denied { status: REFUSED_STATUS }, "{attempt}");
    assert!(attempt.trail.iter().any(|l| l.contains("redirect")), "{attempt}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_recheck_deny_closes_a_playing_connection_within_a_second() {
    let backend = backend().await;
    let server = start(&backend).await;
    let client = RtmpClient::new(rtmp_addr(&server), ViewerProfile::new("127.0.0.1".parse().unwrap()));
    let (attempt, player) = client.play("r1", &good()).await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut player = player.unwrap();

    // The recheck is due one second after the allow (X-AuthDuration: 1).
    let deadline = Instant::now() + Duration::from_secs(6);
    while calls_to(&backend, "/recheck").await.len() < 2 {
        assert!(Instant::now() < deadline, "no recheck call within 6 s");
        assert!(
            player.closed().is_none(),
            "closed before the recheck: {:?}",
            player.closed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recheck_seen = Instant::now();
    let calls = calls_to(&backend, "/recheck").await;
    assert_eq!(query(&calls[1], "request_type").as_deref(), Some("update_session"));
    let closed = player.wait_closed(Duration::from_millis(1500)).await;
    assert!(
        closed.is_some(),
        "the connection must close within about a second of the denying recheck; seen {:?}",
        player.seen()
    );
    let within = recheck_seen.elapsed();
    assert!(
        within < Duration::from_millis(1500),
        "closed {within:?} after the recheck"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_and_a_truncated_handshake_close_only_their_connection() {
    let backend = backend().await;
    let server = start(&backend).await;
    let addr = rtmp_addr(&server);
    let client = RtmpClient::new(addr, ViewerProfile::new("127.0.0.1".parse().unwrap()));
    let (attempt, player) = client.play("s1", &good()).await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut player = player.unwrap();

    // Not RTMP at all.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_closed_by_server(&mut garbage, Duration::from_secs(3)).await;

    // C0 and a third of C1, then silence: the setup timeout (10 s) would end it; half-closing
    // ends it now.
    let mut truncated = TcpStream::connect(addr).await.unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0x5Au8, 500));
    truncated.write_all(&c0c1).await.unwrap();
    truncated.shutdown().await.unwrap();
    assert_closed_by_server(&mut truncated, Duration::from_secs(3)).await;

    // Random bytes after a valid C0.
    let mut noise = TcpStream::connect(addr).await.unwrap();
    let mut bytes = vec![3u8];
    bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let _ = noise.write_all(&bytes).await;
    assert_closed_by_server(&mut noise, Duration::from_secs(12)).await;

    assert!(
        player.wait_more_video(5, Duration::from_secs(5)).await,
        "the good player stopped: {:?} {:?}",
        player.seen(),
        player.closed()
    );
    let (attempt, _) = client.play("s1", &good()).await;
    assert_eq!(
        attempt.outcome,
        Outcome::Playing,
        "a new player after the garbage: {attempt}"
    );
    server.shutdown().await;
}

/// Reads until the server closes (EOF or reset), at most `within`.
async fn assert_closed_by_server(socket: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open for {within:?}");
}

#[tokio::test]
async fn ffmpeg_publishes_with_token_and_password_and_the_stream_plays_meanwhile() {
    if !support::have(&[support::FFMPEG, support::FFPROBE]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    let rtmp = format!("rtmp://{}", rtmp_addr(&server));
    let http = format!("http://{}", server.http_addr());

    let publisher = ffmpeg_publish(&format!("{rtmp}/static/pub?token=good&password={PASSWORD}"), 10);
    // Let a few segments form before reading.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, codecs, stderr) = ffprobe(&format!("{http}/pub/index.m3u8?token=good")).await;
    assert!(ok, "ffprobe failed on the published stream over HLS: {stderr}");
    assert!(codecs.contains(&"h264".to_string()), "HLS streams: {codecs:?}");
    let (ok, codecs, stderr) = ffprobe(&format!("{rtmp}/static/pub?token=good")).await;
    assert!(ok, "ffprobe failed on the published stream over RTMP: {stderr}");
    assert_eq!(
        codecs,
        ["aac", "h264"],
        "RTMP streams of the published stream; {stderr}"
    );

    let (ok, stderr) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "an admitted publisher ffmpeg must succeed: {stderr}");
    let posts = calls_to(&backend, "/publish").await;
    assert!(!posts.is_empty(), "on_publish was called");
    assert_eq!(posts[0].method.as_str(), "POST");
    assert_eq!(query(&posts[0], "proto").as_deref(), Some("rtmp"));
    assert_eq!(query(&posts[0], "name").as_deref(), Some("pub"));
    server.shutdown().await;
}

#[tokio::test]
async fn ffmpeg_publishing_is_refused_with_a_denied_token_or_a_wrong_password() {
    if !support::have(&[support::FFMPEG]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    let rtmp = format!("rtmp://{}", rtmp_addr(&server));

    let denied = ffmpeg_publish(&format!("{rtmp}/static/pub?token=bad&password={PASSWORD}"), 4);
    let (ok, stderr) = finish(denied, Duration::from_secs(30)).await;
    assert!(!ok, "ffmpeg must fail when on_publish denies");
    assert!(stderr.contains("refused"), "ffmpeg should print the reason: {stderr}");
    let posts = calls_to(&backend, "/publish").await;
    assert_eq!(posts.len(), 1, "one POST for the denied token: {posts:?}");
    assert_eq!(query(&posts[0], "token").as_deref(), Some("bad"));

    let wrong = ffmpeg_publish(&format!("{rtmp}/static/pub?token=good&password=nope"), 4);
    let (ok, stderr) = finish(wrong, Duration::from_secs(30)).await;
    assert!(!ok, "ffmpeg must fail with a wrong password");
    assert!(stderr.contains("password"), "ffmpeg should print the reason: {stderr}");
    assert_eq!(
        calls_to(&backend, "/publish").await.len(),
        1,
        "a wrong password is refused before the backend is asked (PUB-04)"
    );

    // Nothing was published: the stream has no media to play.
    let client = RtmpClient::new(rtmp_addr(&server), ViewerProfile::new("127.0.0.1".parse().unwrap()));
    let mut profile = client.profile().clone();
    profile.request_timeout = Duration::from_secs(2);
    let (attempt, _) = RtmpClient::new(rtmp_addr(&server), profile).play("pub", &good()).await;
    assert_ne!(attempt.outcome, Outcome::Playing, "{attempt}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_rml_rtmp_driver_publishes_with_the_password_and_is_refused_without() {
    let backend = backend().await;
    let server = start(&backend).await;
    let client = RtmpClient::new(rtmp_addr(&server), ViewerProfile::new("127.0.0.1".parse().unwrap()));

    let (attempt, publisher) = client.publish_key("static", "pub?token=good&password=nope").await;
    assert_eq!(attempt.outcome, Outcome::Denied { status: REFUSED_STATUS }, "{attempt}");
    assert!(publisher.is_none());
    assert!(attempt.trail.iter().any(|l| l.contains("password")), "{attempt}");

    let (attempt, publisher) = client
        .publish_key("static", &format!("pub?token=good&password={PASSWORD}"))
        .await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut publisher = publisher.expect("an accepted publisher");
    // AAC-LC 48 kHz mono: the sequence header, then silent frames (21.3 ms each).
    publisher.send_audio(&[0xAF, 0, 0x11, 0x88][..], 0).await.unwrap();
    for n in 0..20u32 {
        let frame = &[0xAF, 1, 0x01, 0x18, 0x20, 0x07][..];
        publisher.send_audio(frame, n * 64 / 3).await.unwrap();
    }
    publisher.finish().await;
    let posts = calls_to(&backend, "/publish").await;
    assert_eq!(
        posts.len(),
        1,
        "the wrong password never reached the backend: {posts:?}"
    );
    server.shutdown().await;
}
