//! Playback over real sockets for what the conformance slice does not drive: template-made
//! streams, backend redirects, and an HTTP MPEG-TS response ended by a kick.

mod common;

use std::time::Duration;

use common::{backend_answering, backend_with, client_from, http_auth, stream_of};
use reqwest::StatusCode;
use usher_server::config::{Config, StreamConfig, TemplateConfig};
use usher_server::{RunningServer, Server};
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn start(streams: Vec<StreamConfig>, templates: Vec<TemplateConfig>) -> RunningServer {
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        streams,
        templates,
        ..Config::default()
    };
    Server::start(config).await.unwrap()
}

/// A server with one stream, `s1`, of the fake source, checked by `backend`.
async fn start_s1(backend: &MockServer) -> RunningServer {
    start(vec![stream_of("s1", "fake://fake", Some(http_auth(backend)))], vec![]).await
}

#[tokio::test]
async fn template_prefix_makes_streams_on_first_request() {
    let backend = backend_answering(ResponseTemplate::new(200)).await;
    let server = start(
        vec![],
        vec![TemplateConfig::new(
            "live",
            vec!["live".into()],
            StreamConfig {
                inputs: vec!["fake://fake".into()],
                on_play: Some(http_auth(&backend)),
                ..StreamConfig::default()
            },
        )],
    )
    .await;
    let base = format!("http://{}", server.http_addr());
    let ok = reqwest::get(format!("{base}/live/cam1/index.m3u8?token=t"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let calls = backend.received_requests().await.unwrap();
    let pairs: std::collections::HashMap<_, _> = calls[0].url.query_pairs().into_owned().collect();
    assert_eq!(pairs["name"], "live/cam1");
    let missing = reqwest::get(format!("{base}/other/cam1/index.m3u8?token=t"))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bare = reqwest::get(format!("{base}/live/index.m3u8?token=t")).await.unwrap();
    assert_eq!(bare.status(), StatusCode::NOT_FOUND, "the prefix alone is not a stream");
}

#[tokio::test]
async fn backend_redirect_is_passed_to_the_client() {
    let backend =
        backend_answering(ResponseTemplate::new(302).insert_header("Location", "http://backup.example/clip.m3u8"))
            .await;
    let server = start_s1(&backend).await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_follow
        .get(format!("http://{}/s1/index.m3u8?token=t", server.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()["location"], "http://backup.example/clip.m3u8");
}

/// UNIQ-01 across protocols, RESP-02: a running MPEG-TS response ends when a newer session of
/// the same user arrives with X-Unique.
#[tokio::test]
async fn mpegts_response_ends_when_the_session_is_kicked() {
    let backend = backend_with([
        Mock::given(method("GET"))
            .and(query_param("token", "old"))
            .respond_with(ResponseTemplate::new(200).insert_header("X-UserId", "u1")),
        Mock::given(method("GET"))
            .and(query_param("token", "new"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("X-UserId", "u1")
                    .insert_header("X-Unique", "true"),
            ),
    ])
    .await;
    let server = start_s1(&backend).await;
    let base = format!("http://{}", server.http_addr());
    let mut ts = client_from("127.0.0.2")
        .get(format!("{base}/s1/mpegts?token=old"))
        .send()
        .await
        .unwrap();
    assert_eq!(ts.status(), StatusCode::OK);
    let first = ts.chunk().await.unwrap().expect("media flows");
    assert_eq!(first[0], 0x47, "TS sync byte");

    let hls = client_from("127.0.0.3")
        .get(format!("{base}/s1/index.m3u8?token=new"))
        .send()
        .await
        .unwrap();
    assert_eq!(hls.status(), StatusCode::OK);
    // The old response must end within 1 s (it may deliver what was already in flight).
    let ended = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(Some(_)) = ts.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the kicked MPEG-TS response is still streaming after 1 s"
    );
    let again = client_from("127.0.0.2")
        .get(format!("{base}/s1/mpegts?token=old"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "the kicked identity is banned");
}
