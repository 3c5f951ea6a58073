//! Streams made from templates (issue 15, item 2), over real HTTP, RTMP and RTSP sockets with a
//! wiremock backend deciding:
//!
//! * a name under a template's prefix is decided on with the template's `on_play` and the
//!   template-made name (CFG-01, CFG-04), and a refused client leaves no stream behind: none
//!   listed by the management API, no DVR archive folder, nothing recording;
//! * `template_stream_limit` bounds them: a granted client of one more name gets 503 (RTSP 503,
//!   RTMP a failed play) while the streams already there and the configured ones still play;
//! * `template_stream_idle`: a stream made for viewers goes away once nobody has used it for
//!   that long; one a connection holds (HTTP MPEG-TS) stays until the connection ends.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use support::{TempDir, answer, auth, loopback, stream};
use usher_conformance::clients::rtmp::RtmpClient;
use usher_conformance::clients::rtsp::RtspClient;
use usher_conformance::clients::{Outcome, ViewerProfile};
use usher_server::RunningServer;
use usher_server::config::{Config, Credential, DvrConfig, StreamConfig, TemplateConfig};
use usher_server::dvr::Dvr;
use wiremock::{MockServer, ResponseTemplate};

const LOGIN: &str = "admin";
const PASSWORD: &str = "pw";

/// GET /auth: token `good` allowed, every other token refused.
async fn backend() -> MockServer {
    let backend = MockServer::start().await;
    answer(&backend, "GET", "/auth", Some("good"), 1, ResponseTemplate::new(200)).await;
    answer(&backend, "GET", "/auth", None, 5, ResponseTemplate::new(403)).await;
    backend
}

fn template(backend: &MockServer, dvr: Option<DvrConfig>) -> TemplateConfig {
    TemplateConfig::new(
        "live",
        vec!["live".into()],
        StreamConfig {
            inputs: vec!["fake://fake".into()],
            on_play: auth(backend, "/auth"),
            dvr,
            ..StreamConfig::default()
        },
    )
}

async fn start(backend: &MockServer, config: Config) -> RunningServer {
    support::start(Config {
        http: loopback(),
        rtmp: loopback(),
        rtsp: loopback(),
        edit_auth: Some(Credential {
            login: LOGIN.into(),
            password: PASSWORD.into(),
        }),
        streams: vec![stream("cfg", "fake://fake", auth(backend, "/auth"))],
        ..config
    })
    .await
}

/// The stream names the management API lists, each cut to 24 characters (for messages).
async fn listed(server: &RunningServer) -> Vec<String> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/streamer/api/v3/streams", server.http_addr()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .expect("API answers")
        .json()
        .await
        .expect("JSON");
    body["streams"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["name"].as_str().expect("a name").chars().take(24).collect())
        .collect()
}

async fn hls_status(server: &RunningServer, name: &str, token: &str) -> u16 {
    reqwest::get(format!("http://{}/{name}/index.m3u8?token={token}", server.http_addr()))
        .await
        .expect("HTTP answers")
        .status()
        .as_u16()
}

fn profile() -> ViewerProfile {
    ViewerProfile::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
}

fn token(t: &str) -> Vec<(String, String)> {
    vec![("token".to_string(), t.to_string())]
}

async fn rtmp_outcome(server: &RunningServer, name: &str, t: &str) -> Outcome {
    let addr = server.rtmp_addr().expect("rtmp");
    RtmpClient::new(addr, profile()).play(name, &token(t)).await.0.outcome
}

async fn rtsp_outcome(server: &RunningServer, name: &str, t: &str) -> Outcome {
    let base = reqwest::Url::parse(&format!("rtsp://{}/", server.rtsp_addr().expect("rtsp"))).unwrap();
    RtspClient::new(&base, profile())
        .open(name, &token(t), 1)
        .await
        .0
        .outcome
}

/// Polls `check` every 50 ms until it holds or `within` passed; whether it held.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Failed before the fix: every refused request added a stream (120 listed here).
#[tokio::test]
async fn refused_template_names_leave_no_stream_over_http_rtmp_and_rtsp() {
    let backend = backend().await;
    let server = start(
        &backend,
        Config {
            templates: vec![template(&backend, None)],
            ..Config::default()
        },
    )
    .await;
    // Long, but under the name limit (auth::MAX_NAME_LEN): longer names are refused at the door
    // (414) before the stream table is consulted, which security_oversized.rs covers.
    let long = "x".repeat(1000);
    for i in 0..100 {
        let status = hls_status(&server, &format!("live/h{i}{long}"), &format!("bad{i}")).await;
        assert_eq!(status, 403, "HLS request {i}");
    }
    for i in 0..10 {
        let outcome = rtmp_outcome(&server, &format!("live/r{i}"), &format!("bad{i}")).await;
        assert!(outcome.is_refused(), "RTMP play {i}: {outcome}");
        let outcome = rtsp_outcome(&server, &format!("live/t{i}"), &format!("bad{i}")).await;
        assert_eq!(outcome, Outcome::Denied { status: 403 }, "RTSP play {i}");
    }
    // The backend was asked about each, with the template-made name.
    let calls = backend.received_requests().await.unwrap();
    let names: Vec<String> = calls
        .iter()
        .filter_map(|c| {
            c.url
                .query_pairs()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(names.len(), 120, "one backend call per request");
    for name in ["live/r0", "live/t9"] {
        assert!(names.iter().any(|n| n == name), "the backend was asked about {name}");
    }
    assert!(names.iter().any(|n| n.starts_with("live/h0xxx")));
    let after = listed(&server).await;
    assert_eq!(
        after,
        ["cfg"],
        "a refused client makes no stream ({} listed)",
        after.len()
    );
    assert_eq!(server.streams().list().len(), 1);
    // A granted one does, with the template's settings.
    assert_eq!(hls_status(&server, "live/granted", "good").await, 200);
    assert_eq!(listed(&server).await, ["cfg", "live/granted"]);
    server.shutdown().await;
}

/// Failed before the fix: each refused request got an archive folder and a recording.
#[tokio::test]
async fn a_refused_client_of_a_dvr_template_starts_no_recording() {
    let backend = backend().await;
    let archive = TempDir::new("template-dvr");
    let dvr = DvrConfig::new(archive.path().to_string_lossy().into_owned(), Duration::from_secs(60));
    let server = start(
        &backend,
        Config {
            templates: vec![template(&backend, Some(dvr))],
            ..Config::default()
        },
    )
    .await;
    for i in 0..30 {
        assert_eq!(hls_status(&server, &format!("live/cam{i}"), "bad").await, 403);
    }
    assert_eq!(hls_status(&server, "live/granted", "good").await, 200);
    // Two passes of the recorder over the table, whatever the server's own one did meanwhile.
    let recorder = Dvr::new(server.streams().clone());
    recorder.record_once().await;
    recorder.record_once().await;
    let mut folders: Vec<String> = std::fs::read_dir(archive.path().join("live"))
        .expect("the granted stream's archive folder")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders, ["granted"], "only the granted stream records");
    server.shutdown().await;
}

/// Failed before the fix: there was no bound, the fourth name played.
#[tokio::test]
async fn the_template_stream_limit_refuses_one_more_name_with_503() {
    let backend = backend().await;
    let server = start(
        &backend,
        Config {
            templates: vec![template(&backend, None)],
            template_stream_limit: 3,
            ..Config::default()
        },
    )
    .await;
    for name in ["live/a", "live/b", "live/c"] {
        assert_eq!(hls_status(&server, name, "good").await, 200, "{name}");
    }
    let full = reqwest::get(format!("http://{}/live/d/index.m3u8?token=good", server.http_addr()))
        .await
        .unwrap();
    assert_eq!(full.status().as_u16(), 503);
    let body = full.text().await.unwrap();
    assert!(body.contains("template_stream_limit 3"), "the refusal says why: {body}");
    match rtsp_outcome(&server, "live/d", "good").await {
        Outcome::Failed { status: Some(503), .. } => {}
        other => panic!("RTSP beyond the limit: {other}"),
    }
    let outcome = rtmp_outcome(&server, "live/d", "good").await;
    assert!(outcome.is_refused(), "RTMP beyond the limit: {outcome}");
    // A refused client changes nothing; the streams there and the configured one still play.
    assert_eq!(hls_status(&server, "live/e", "bad").await, 403);
    assert_eq!(hls_status(&server, "live/a", "good").await, 200);
    assert_eq!(hls_status(&server, "cfg", "good").await, 200);
    assert_eq!(listed(&server).await, ["cfg", "live/a", "live/b", "live/c"]);
    server.shutdown().await;
}

/// Failed before the fix: template-made streams never went away.
#[tokio::test]
async fn an_unused_template_stream_goes_away_and_a_watched_one_stays() {
    let backend = backend().await;
    let server = start(
        &backend,
        Config {
            templates: vec![template(&backend, None)],
            template_stream_idle: Duration::from_secs(1),
            ..Config::default()
        },
    )
    .await;
    // `live/watched` first, so that it is idle by the clock before `live/left` is.
    let mut response = reqwest::get(format!("http://{}/live/watched/mpegts?token=good", server.http_addr()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.chunk().await.unwrap().is_some(),
        "the MPEG-TS response streams"
    );
    assert_eq!(hls_status(&server, "live/left", "good").await, 200);
    assert_eq!(listed(&server).await, ["cfg", "live/left", "live/watched"]);
    let window = Duration::from_secs(6);
    let left_gone = eventually(window, async || {
        !listed(&server).await.contains(&"live/left".to_string())
    })
    .await;
    assert!(left_gone, "an unused template stream is removed within {window:?}");
    assert_eq!(
        listed(&server).await,
        ["cfg", "live/watched"],
        "a stream a connection holds stays, a configured one too"
    );
    // The connection still streams, then ends; its stream goes too.
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    let watched_gone = eventually(window, async || listed(&server).await == ["cfg"]).await;
    assert!(watched_gone, "the stream goes once its last viewer left");
    // Asked for again, it is made again.
    assert_eq!(hls_status(&server, "live/left", "good").await, 200);
    assert_eq!(listed(&server).await, ["cfg", "live/left"]);
    server.shutdown().await;
}
