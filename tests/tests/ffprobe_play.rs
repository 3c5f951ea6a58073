//! ffprobe (Debian's ffmpeg) as an outside client of the reference server: a `fake://` stream
//! decodes over HLS and HTTP MPEG-TS with a token the backend allows, and a token it denies
//! gets 403 and makes ffprobe fail.

use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use usher_server::config::{AuthSpec, AuthTarget, Config, StreamConfig};
use usher_server::{RunningServer, Server};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn backend() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/auth"))
        .and(query_param("token", "good"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/auth"))
        .and(query_param("token", "bad"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    server
}

async fn start(backend: &MockServer) -> RunningServer {
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![StreamConfig {
            name: "s1".into(),
            inputs: vec!["fake://fake".into()],
            on_play: Some(AuthSpec::new(AuthTarget::Http(format!("{}/auth", backend.uri())))),
            ..StreamConfig::default()
        }],
        ..Config::default()
    };
    Server::start(config).await.expect("server starts")
}

/// Runs ffprobe on `url`; returns (success, parsed JSON, stderr).
async fn ffprobe(url: &str) -> (bool, Value, String) {
    let run = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-rw_timeout",
            "5000000",
            url,
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("ffprobe finishes within 30 s")
        .expect("ffprobe must be installed (Debian package ffmpeg); .ci/run installs it");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn codecs(json: &Value) -> Vec<String> {
    json["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["codec_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn ffprobe_decodes_hls_and_mpegts_with_an_allowed_token() {
    let backend = backend().await;
    let server = start(&backend).await;
    let base = format!("http://{}", server.http_addr());

    let (ok, json, stderr) = ffprobe(&format!("{base}/s1/index.m3u8?token=good")).await;
    assert!(ok, "ffprobe failed on HLS: {stderr}");
    let mut found = codecs(&json);
    found.sort();
    assert_eq!(found, ["aac", "h264"], "HLS streams: {json}");
    let video = json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_name"] == "h264")
        .unwrap();
    assert!(video["width"].as_u64().unwrap_or(0) > 0, "{video}");

    let (ok, json, stderr) = ffprobe(&format!("{base}/s1/mpegts?token=good")).await;
    assert!(ok, "ffprobe failed on HTTP MPEG-TS: {stderr}");
    let mut found = codecs(&json);
    found.sort();
    assert_eq!(found, ["aac", "h264"], "MPEG-TS streams: {json}");

    server.shutdown().await;
}

#[tokio::test]
async fn a_denied_token_gets_403_and_ffprobe_fails() {
    let backend = backend().await;
    let server = start(&backend).await;
    let base = format!("http://{}", server.http_addr());

    for url in [
        format!("{base}/s1/index.m3u8?token=bad"),
        format!("{base}/s1/mpegts?token=bad"),
    ] {
        let status = reqwest::get(&url).await.unwrap().status();
        assert_eq!(status.as_u16(), 403, "{url}");
        let (ok, _, stderr) = ffprobe(&url).await;
        assert!(!ok, "ffprobe must fail on {url}");
        assert!(stderr.contains("403"), "ffprobe should report the 403: {stderr}");
    }
    // The deny is cached: one backend call for the token despite four requests (BAN-01).
    let calls = backend.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    server.shutdown().await;
}
