//! HTTP MPEG-TS publishing (PUB-01, PUB-02, PUB-04, PUB-06): ffmpeg makes a real H.264/AAC
//! TS file, reqwest uploads it with `PUT /NAME/mpegts`; `on_publish` is a POST that decides
//! before any media is taken; the stream password is checked before the backend is asked; and
//! viewers then receive the published media (ffprobe over HLS).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use usher_server::config::{AuthSpec, AuthTarget, Config, StreamConfig};
use usher_server::{RunningServer, Server};
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A 3 s H.264 160x120 + AAC TS file made by ffmpeg (fails clearly without ffmpeg).
async fn ts_file() -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("in.ts");
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25",
            "-f",
            "lavfi",
            "-i",
        ])
        .args([
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-bf", "0", "-g", "25", "-c:a", "aac", "-f", "mpegts"])
        .arg(&path)
        .output()
        .await
        .expect("ffmpeg must be installed (Debian package ffmpeg); .ci/run installs it");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, path)
}

/// A throwaway directory removed on drop (no extra crate needed).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!("usher-ts-publish-{}", uuid_like()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn uuid_like() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{}-{nanos}", std::process::id())
    }
}

async fn start(backend: &MockServer) -> RunningServer {
    let mut on_publish = AuthSpec::new(AuthTarget::Http(format!("{}/publish", backend.uri())));
    on_publish.extra.insert("site".into(), "main".into());
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![StreamConfig {
            name: "pub".into(),
            inputs: vec!["publish://".into()],
            on_publish: Some(on_publish),
            password: Some("s3cret".into()),
            ..StreamConfig::default()
        }],
        ..Config::default()
    };
    Server::start(config).await.unwrap()
}

#[tokio::test]
async fn http_mpegts_publish_is_authorized_then_served() {
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
    let (_dir, file) = ts_file().await;
    let body = tokio::fs::read(&file).await.unwrap();
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
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_streams"])
        .arg(format!("{base}/pub/index.m3u8"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .unwrap()
        .expect("ffprobe installed");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let video = json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_name"] == "h264")
        .expect("h264");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(160), Some(120))
    );
    server.shutdown().await;
}
