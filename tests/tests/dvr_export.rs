//! The DVR archive over real sockets, read by ffprobe (Debian package `ffmpeg`): a `fake://`
//! stream with `dvr` is recorded; MP4 and TS exports fetched with an allowed token are valid
//! files whose duration is the asked one within a segment; the archive HLS playlist plays; the
//! backend is asked with `dvr=true` and the right `proto`; a range outside
//! `allowed_dvr_ranges` gets 403 with no media bytes; an export is a session that lands in the
//! history with its bytes when the download ends.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::{PROBE_LIMIT, TempDir, answer, auth, codecs, stream};
use usher_server::RunningServer;
use usher_server::config::{Config, Credential, DvrConfig, StreamConfig};
use wiremock::{MockServer, ResponseTemplate};

/// Segment length of the `fake://` source: the tolerance on export durations.
const SEGMENT_SECS: f64 = 1.0;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Fixture {
    server: RunningServer,
    backend: MockServer,
    dir: TempDir,
    /// Unix seconds when recording began.
    started: u64,
}

impl Fixture {
    async fn start() -> Fixture {
        let backend = MockServer::start().await;
        let started = unix_now();
        let answers = [
            ("good", json!({})),
            (
                "limited",
                json!({"allowed_dvr_ranges": [{"opened_at": started, "closed_at": started + 3}]}),
            ),
            ("none", json!({"allowed_dvr_ranges": []})),
        ];
        for (token, body) in answers {
            let allow = ResponseTemplate::new(200)
                .set_body_json(body)
                .insert_header("X-UserId", "u1");
            answer(&backend, "GET", "/auth", Some(token), 5, allow).await;
        }
        let dir = TempDir::new("dvr-test");
        let config = Config {
            http: support::loopback(),
            edit_auth: Some(Credential {
                login: "admin".into(),
                password: "pw".into(),
            }),
            streams: vec![StreamConfig {
                dvr: Some(DvrConfig::new(
                    dir.path().display().to_string(),
                    Duration::from_secs(3600),
                )),
                ..stream("s1", "fake://fake", auth(&backend, "/auth"))
            }],
            ..Config::default()
        };
        let server = support::start(config).await;
        Fixture {
            server,
            backend,
            dir,
            started,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.http_addr())
    }

    /// Waits until the archive reaches `secs` past the start.
    async fn wait_for_archive(&self, secs: u64) {
        while unix_now() < self.started + secs {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let resp = client().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.bytes().await.unwrap().to_vec())
}

async fn ffprobe(target: &str) -> Value {
    let (ok, json, stderr) = support::ffprobe(target, &["-show_format"], PROBE_LIMIT).await;
    assert!(ok, "ffprobe failed on {target}: {stderr}");
    json
}

fn duration(probe: &Value) -> f64 {
    probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("a duration")
}

#[tokio::test]
async fn exports_are_valid_files_of_the_asked_duration() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let f = Fixture::start().await;
    f.wait_for_archive(8).await;
    let (from, dur) = (f.started + 2, 4);

    for (ext, proto, format) in [("mp4", "mp4", "mov"), ("ts", "tshttp", "mpegts")] {
        let (status, content_type, body) = get(&f.url(&format!("/s1/archive-{from}-{dur}.{ext}?token=good"))).await;
        assert_eq!(status, 200, "{ext}: {}", String::from_utf8_lossy(&body));
        assert!(content_type.starts_with("video/"), "{content_type}");
        let file = f.dir.path().join(format!("export.{ext}"));
        tokio::fs::write(&file, &body).await.unwrap();
        let probe = ffprobe(&file.display().to_string()).await;
        assert!(
            probe["format"]["format_name"].as_str().unwrap().contains(format),
            "{probe}"
        );
        assert_eq!(codecs(&probe), ["aac", "h264"], "{ext}: {probe}");
        let got = duration(&probe);
        assert!(
            (got - dur as f64).abs() <= SEGMENT_SECS + 0.05,
            "{ext}: {got} s for a {dur} s export"
        );

        // The backend was asked about an archive session of that protocol.
        let asked = f.backend.received_requests().await.unwrap();
        assert!(
            asked.iter().any(|r| {
                let q: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
                q.contains(&("dvr".into(), "true".into())) && q.contains(&("proto".into(), proto.into()))
            }),
            "no dvr=true call with proto {proto}"
        );

        // The export was a session: it is in the history, with its bytes, once it ended.
        let mut record = None;
        for _ in 0..50 {
            let history: Value = client()
                .get(f.url("/streamer/api/v3/sessions?closed=true"))
                .basic_auth("admin", Some("pw"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            record = history["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["proto"] == proto)
                .cloned();
            if record.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let record = record.unwrap_or_else(|| panic!("no closed {proto} session"));
        assert_eq!(record["dvr"], true, "{record}");
        assert_eq!(record["bytes"].as_u64(), Some(body.len() as u64), "{record}");
        assert_eq!(record["close_reason"], "disconnected", "{record}");
    }

    // The archive playlist plays too.
    let probe = ffprobe(&f.url(&format!("/s1/index-{from}-{dur}.m3u8?token=good"))).await;
    assert_eq!(codecs(&probe), ["aac", "h264"], "{probe}");

    f.server.shutdown().await;
}

#[tokio::test]
async fn ranges_outside_allowed_dvr_ranges_get_403_and_no_media() {
    let f = Fixture::start().await;
    f.wait_for_archive(7).await;
    let s = f.started;

    // `limited` may read [start, start+3): inside is served, anything reaching out is not.
    let (status, _, body) = get(&f.url(&format!("/s1/archive-{s}-3.ts?token=limited"))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body.first(), Some(&0x47), "TS");
    for path in [
        format!("/s1/archive-{s}-5.mp4?token=limited"),
        format!("/s1/archive-{}-3.ts?token=limited", s + 2),
        format!("/s1/index-{}-2.m3u8?token=limited", s + 3),
        format!("/s1/archive-{s}-2.mp4?token=none"),
        format!("/s1/index-{s}-2.m3u8?token=none"),
    ] {
        let (status, content_type, body) = get(&f.url(&path)).await;
        assert_eq!(status, 403, "{path}");
        assert!(content_type.starts_with("application/json"), "{path}: {content_type}");
        assert!(
            !body.contains(&0x47) && !body.windows(4).any(|w| w == b"ftyp"),
            "{path}: no media"
        );
    }
    // `[]` closes the archive, not the live stream (scenario 9).
    let (status, _, _) = get(&f.url("/s1/index.m3u8?token=none")).await;
    assert_eq!(status, 200);

    // A stream without dvr has no archive; nothing is asked of the backend for it.
    let (status, _, _) = get(&f.url(&format!("/nope/archive-{s}-2.mp4?token=good"))).await;
    assert_eq!(status, 404);

    f.server.shutdown().await;
}
