//! HTTP MPEG-TS publishing (PUB-01, PUB-02, PUB-04, PUB-06): ffmpeg makes a real H.264/AAC
//! TS file, reqwest uploads it with `PUT /NAME/mpegts`; `on_publish` is a POST that decides
//! before any media is taken; the stream password is checked before the backend is asked; and
//! viewers then receive the published media (ffprobe over HLS).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{PROBE_LIMIT, TempDir, ffmpeg_media_file, ffprobe};
use usher_server::RunningServer;
use usher_server::config::{AuthSpec, AuthTarget, Config, StreamConfig};
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A 3 s H.264 160x120 + AAC TS file made by ffmpeg (fails clearly without ffmpeg), and the
/// directory holding it.
async fn ts_file() -> (TempDir, Vec<u8>) {
    let dir = TempDir::new("ts-publish");
    let path = dir.path().join("in.ts");
    ffmpeg_media_file(&path, (160, 120), 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body = tokio::fs::read(&path).await.unwrap();
    (dir, body)
}

async fn start(backend: &MockServer) -> RunningServer {
    let mut on_publish = AuthSpec::new(AuthTarget::Http(format!("{}/publish", backend.uri())));
    on_publish.extra.insert("site".into(), "main".into());
    let config = Config {
        http: support::loopback(),
        streams: vec![StreamConfig {
            name: "pub".into(),
            inputs: vec!["publish://".into()],
            on_publish: Some(on_publish),
            password: Some("s3cret".into()),
            ..StreamConfig::default()
        }],
        ..Config::default()
    };
    support::start(config).await
}

#[tokio::test]
async fn http_mpegts_publish_is_authorized_then_served() {
    if !support::have(&[support::FFMPEG, support::FFPROBE]) {
        return;
    }
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(query_param("token", "good"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .and(query_param("token", "bad"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&backend)
        .await;
    let server = start(&backend).await;
    let (_dir, body) = ts_file().await;
    let base = format!("http://{}", server.http_addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // PUB-04: a wrong or missing password is refused before the backend is asked.
    for url in [
        format!("{base}/pub/mpegts?token=good&password=nope"),
        format!("{base}/pub/mpegts?token=good"),
    ] {
        let status = client.put(&url).body(body.clone()).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 403, "{url}");
    }
    assert!(
        backend.received_requests().await.unwrap().is_empty(),
        "no backend call for a bad password"
    );

    // PUB-01/02: a refused publisher: one POST, 403, and no media reaches the stream.
    let status = client
        .put(format!("{base}/pub/mpegts?token=bad&password=s3cret"))
        .body(body.clone())
        .send()
        .await;
    assert_eq!(status.unwrap().status().as_u16(), 403);
    let seen = backend.received_requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method.as_str(), "POST");
    let query: std::collections::HashMap<String, String> = seen[0].url.query_pairs().into_owned().collect();
    assert_eq!(query["name"], "pub");
    assert_eq!(query["proto"], "tshttp");
    assert_eq!(query["request_type"], "new_session");
    assert_eq!(query["site"], "main");
    let json: Value = serde_json::from_slice(&seen[0].body).expect("publish body is JSON (AMB-2)");
    assert_eq!(json["token"], "bad");
    let playlist = reqwest::get(format!("{base}/pub/index.m3u8"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !playlist.contains(".ts"),
        "no segment after a refused publish: {playlist}"
    );

    // An admitted publisher: its media is served to viewers.
    let status = client
        .put(format!("{base}/pub/mpegts?token=good&password=s3cret"))
        .body(body)
        .send()
        .await;
    assert!(status.unwrap().status().is_success());
    let (ok, json, stderr) = ffprobe(&format!("{base}/pub/index.m3u8"), &[], PROBE_LIMIT).await;
    assert!(ok, "ffprobe: {stderr}");
    let video = support::h264(&json).expect("h264");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(160), Some(120))
    );
    server.shutdown().await;
}
