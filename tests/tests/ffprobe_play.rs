//! ffprobe (Debian's ffmpeg) as an outside client of the reference server: a `fake://` stream
//! decodes over HLS and HTTP MPEG-TS with a token the backend allows, and a token it denies
//! gets 403 and makes ffprobe fail.

mod support;

use support::{PROBE_LIMIT, auth, codecs, ffprobe, good_and_bad, start_http, stream};
use usher_server::RunningServer;
use wiremock::MockServer;

/// ffprobe's I/O timeout, microseconds.
const RW_TIMEOUT: &[&str] = &["-rw_timeout", "5000000"];

async fn backend() -> MockServer {
    let server = MockServer::start().await;
    good_and_bad(&server, "GET", "/auth").await;
    server
}

async fn start(backend: &MockServer) -> RunningServer {
    start_http(vec![stream("s1", "fake://fake", auth(backend, "/auth"))]).await
}

#[tokio::test]
async fn ffprobe_decodes_hls_and_mpegts_with_an_allowed_token() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    let base = format!("http://{}", server.http_addr());

    let (ok, json, stderr) = ffprobe(&format!("{base}/s1/index.m3u8?token=good"), RW_TIMEOUT, PROBE_LIMIT).await;
    assert!(ok, "ffprobe failed on HLS: {stderr}");
    assert_eq!(codecs(&json), ["aac", "h264"], "HLS streams: {json}");
    let video = support::h264(&json).unwrap();
    assert!(video["width"].as_u64().unwrap_or(0) > 0, "{video}");

    let (ok, json, stderr) = ffprobe(&format!("{base}/s1/mpegts?token=good"), RW_TIMEOUT, PROBE_LIMIT).await;
    assert!(ok, "ffprobe failed on HTTP MPEG-TS: {stderr}");
    assert_eq!(codecs(&json), ["aac", "h264"], "MPEG-TS streams: {json}");

    server.shutdown().await;
}

#[tokio::test]
async fn a_denied_token_gets_403_and_ffprobe_fails() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    let base = format!("http://{}", server.http_addr());

    for url in [
        format!("{base}/s1/index.m3u8?token=bad"),
        format!("{base}/s1/mpegts?token=bad"),
    ] {
        let status = reqwest::get(&url).await.unwrap().status();
        assert_eq!(status.as_u16(), 403, "{url}");
        let (ok, _, stderr) = ffprobe(&url, RW_TIMEOUT, PROBE_LIMIT).await;
        assert!(!ok, "ffprobe must fail on {url}");
        assert!(stderr.contains("403"), "ffprobe should report the 403: {stderr}");
    }
    // The deny is cached: one backend call per protocol for the token despite four requests
    // (BAN-01); the default session keys carry proto (AMB-25), so HLS and MPEG-TS are two
    // identities, each asked once.
    let calls = backend.received_requests().await.unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    server.shutdown().await;
}
