//! A backend's `config` override may not open a stream to publishers (issue 15, item 8; CONF-01,
//! docs/spec.md "Config override"): an override naming a `publish://` input is rejected whole
//! on a stream with no `on_publish` and no `password` (the viewer's grant stands, the stream
//! keeps its input), so an RTMP or HTTP MPEG-TS publisher is refused with no backend call. On a
//! stream that checks its publishers the override applies and the publisher is asked about.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;
use support::{answer, auth, loopback, stream};
use usher_conformance::clients::rtmp::{RtmpClient, STATIC_APP, stream_key};
use usher_conformance::clients::{Outcome, ViewerProfile};
use usher_server::RunningServer;
use usher_server::config::{Config, StreamConfig};
use wiremock::{MockServer, ResponseTemplate};

/// GET /auth allows token `switch` with an override to `publish://`; POST /publish allows
/// every publisher.
async fn backend() -> MockServer {
    let backend = MockServer::start().await;
    let switch = ResponseTemplate::new(200).set_body_json(json!({"config": {"inputs": [{"url": "publish://"}]}}));
    answer(&backend, "GET", "/auth", Some("switch"), 1, switch).await;
    answer(&backend, "POST", "/publish", None, 5, ResponseTemplate::new(200)).await;
    backend
}

async fn start(backend: &MockServer) -> RunningServer {
    support::start(Config {
        http: loopback(),
        rtmp: loopback(),
        streams: vec![
            stream("open", "fake://fake", auth(backend, "/auth")),
            StreamConfig {
                on_publish: auth(backend, "/publish"),
                ..stream("checked", "fake://fake", auth(backend, "/auth"))
            },
        ],
        ..Config::default()
    })
    .await
}

async fn publish_calls(backend: &MockServer) -> usize {
    let calls = backend.received_requests().await.unwrap();
    calls.iter().filter(|c| c.url.path() == "/publish").count()
}

async fn rtmp_publish(server: &RunningServer, name: &str) -> Outcome {
    let profile = ViewerProfile::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)));
    let key = stream_key(name, &[("token".into(), "pub".into())]);
    let (attempt, _publisher) = RtmpClient::new(server.rtmp_addr().unwrap(), profile)
        .publish_key(STATIC_APP, &key)
        .await;
    attempt.outcome
}

async fn http_publish_status(server: &RunningServer, name: &str) -> u16 {
    reqwest::Client::new()
        .put(format!("http://{}/{name}/mpegts?token=pub", server.http_addr()))
        .body(Vec::new())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn viewer_status(server: &RunningServer, name: &str) -> u16 {
    reqwest::get(format!("http://{}/{name}/index.m3u8?token=switch", server.http_addr()))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Failed before the fix: the RTMP publisher was admitted to `open` with no backend call.
#[tokio::test]
async fn a_publish_override_does_not_open_a_stream_without_publish_checks() {
    let backend = backend().await;
    let server = start(&backend).await;
    assert_eq!(viewer_status(&server, "open").await, 200, "the viewer's grant stands");
    let open = server.streams().get("open").unwrap();
    assert_eq!(open.effective().inputs, ["fake://fake"], "the override was rejected");
    assert_eq!(open.overlay().to_json(), json!({}));
    let outcome = rtmp_publish(&server, "open").await;
    assert!(outcome.is_refused(), "RTMP publisher: {outcome}");
    let status = http_publish_status(&server, "open").await;
    assert!(status >= 400, "HTTP MPEG-TS publisher: {status}");
    assert_eq!(
        publish_calls(&backend).await,
        0,
        "no publisher was let in, nor asked about"
    );
    server.shutdown().await;
}

/// The positive side: where `on_publish` is configured, the override applies and the publisher
/// goes to the backend.
#[tokio::test]
async fn a_publish_override_applies_where_publishers_are_checked() {
    let backend = backend().await;
    let server = start(&backend).await;
    assert_eq!(viewer_status(&server, "checked").await, 200);
    let checked = server.streams().get("checked").unwrap();
    assert_eq!(checked.effective().inputs, ["publish://"], "the override applied");
    assert_eq!(rtmp_publish(&server, "checked").await, Outcome::Playing);
    assert_eq!(publish_calls(&backend).await, 1, "the publisher was asked about");
    server.shutdown().await;
}
