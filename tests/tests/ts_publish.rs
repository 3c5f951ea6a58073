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

/// A refused publisher is usually still uploading when its refusal is ready. The server reads
/// the upload and throws it away (up to a bound) instead of closing on it unread, which would
/// break the publisher's write and hide the 403 from an HTTP client still writing (seen as
/// "Broken pipe" in the catalogue under load). Shown without a race: after the refusal the
/// same connection answers a second request, which it can only when the upload was read.
#[tokio::test]
async fn a_refused_upload_is_read_so_the_refusal_arrives_and_the_connection_lives_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = MockServer::start().await;
    let server = start(&backend).await;
    let mut socket = tokio::net::TcpStream::connect(server.http_addr()).await.unwrap();
    let upload = vec![0x47u8; 1_000_000];
    let head = format!(
        "PUT /pub/mpegts?token=t&password=nope HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        upload.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&upload).await.unwrap();
    socket
        .write_all(b"GET /no-such-stream/index.m3u8 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answers = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answers)).await;
    let text = String::from_utf8_lossy(&answers);
    assert!(text.starts_with("HTTP/1.1 403"), "{read:?}: {text:?}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        2,
        "the refused upload's connection answered the next request too: {text:?}"
    );
    assert!(backend.received_requests().await.unwrap().is_empty());
}

/// What a refused stranger can make the server read is bounded in time: a publisher that
/// trickles an endless upload after its refusal has the connection closed once the discard
/// time (3 s) is over, not held for as long as it keeps sending.
#[tokio::test]
async fn a_refused_upload_that_trickles_on_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = MockServer::start().await;
    let server = start(&backend).await;
    let socket = tokio::net::TcpStream::connect(server.http_addr()).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    write
        .write_all(b"PUT /pub/mpegts?token=t&password=nope HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        // A slow client's pace, for up to 20 s; it stops when the server closes.
        for _ in 0..200 {
            if write.write_all(&[0x47; 1024]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(ended.is_ok(), "the connection was still open after 10 s: {text:?}");
    assert!(text.starts_with("HTTP/1.1 403"), "{text:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closed after {:?}",
        started.elapsed()
    );
    trickle.abort();
}
