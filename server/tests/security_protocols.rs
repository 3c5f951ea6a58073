//! One protocol's grant covers no other protocol (SESS-01, decisions AMB-25): with the default
//! session keys (name, ip, proto, token) a viewer the backend allowed over HLS is a new session
//! when the same token plays the same stream from the same address over HTTP MPEG-TS, RTSP or
//! RTMP, so the backend is asked with that `proto` and can refuse it. Over real sockets, with a
//! backend that allows `proto=hls` only.
//!
//! With the same four clients, the request details of a first call over each protocol (issue
//! 18 item 6, REQ-01/02, AMB-12): a GET, `request_number` 1, the `host` the client named,
//! `dvr=false`, and no `duration` or `bytes`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{backend_with, client, http_auth, rtmp_handshake, stream_of};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_server::Server;
use usher_server::config::Config;
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "hls-only-token";

/// The `proto` of every call the backend got, in order.
async fn protos(backend: &MockServer) -> Vec<String> {
    backend
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "proto")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Whether an RTMP play of `static`/`key` is admitted (the server starts the play) or refused.
async fn rtmp_plays(addr: SocketAddr, key: &str) -> bool {
    let (mut socket, rest) = rtmp_handshake(addr).await;
    let mut buf = vec![0u8; 64 * 1024];
    // A tcUrl as players send it: the server reads the `host` of the backend call from it.
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(format!("rtmp://{addr}/static"));
    let (mut session, _) = ClientSession::new(config).unwrap();
    let mut pending = vec![session.request_connection("static".into()).unwrap()];
    let mut input = rest;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            for result in pending.drain(..) {
                if let ClientSessionResult::OutboundResponse(packet) = result {
                    socket.write_all(&packet.bytes).await.unwrap();
                }
            }
            if input.is_empty() {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
                input = buf[..n].to_vec();
            }
            let Ok(results) = session.handle_input(&input) else {
                return false;
            };
            input.clear();
            for result in results {
                match result {
                    ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                        pending.push(session.request_playback(key.into()).unwrap());
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::PlaybackRequestAccepted | ClientSessionEvent::VideoDataReceived { .. },
                    ) => return true,
                    other => pending.push(other),
                }
            }
        }
    })
    .await;
    outcome.expect("the RTMP play neither started nor was refused within 10 s")
}

/// The status line of an RTSP DESCRIBE of `s1` with the token.
async fn rtsp_describe(addr: SocketAddr) -> String {
    let mut rtsp = TcpStream::connect(addr).await.unwrap();
    let describe = format!("DESCRIBE rtsp://{addr}/s1?token={TOKEN} RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    rtsp.write_all(describe.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(10), rtsp.read(&mut buf))
        .await
        .expect("an RTSP answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hls_grant_does_not_play_over_another_protocol_without_the_backend() {
    let backend = backend_with([
        Mock::given(method("GET"))
            .and(query_param("proto", "hls"))
            .respond_with(ResponseTemplate::new(200).insert_header("X-AuthDuration", "60")),
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(403)),
    ])
    .await;
    let server = Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        rtsp: Some("127.0.0.1:0".parse().unwrap()),
        rtmp: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![stream_of("s1", "fake://fake", Some(http_auth(&backend)))],
        ..Config::default()
    })
    .await
    .unwrap();
    let http = |rest: &str| format!("http://{}/s1/{rest}?token={TOKEN}", server.http_addr());

    let hls = client().get(http("index.m3u8")).send().await.unwrap().status();
    assert_eq!(hls, 200, "the backend allows HLS");
    assert_eq!(protos(&backend).await, ["hls"]);

    // The same name, address (127.0.0.1) and token over HTTP MPEG-TS: a new session.
    let ts = client().get(http("mpegts")).send().await.unwrap().status();
    assert_eq!(ts, 403, "the HLS grant must not play HTTP MPEG-TS");
    assert_eq!(protos(&backend).await, ["hls", "tshttp"]);

    let rtsp = rtsp_describe(server.rtsp_addr().unwrap()).await;
    assert!(
        rtsp.starts_with("RTSP/1.0 403"),
        "the HLS grant must not play RTSP: {rtsp}"
    );
    assert_eq!(protos(&backend).await, ["hls", "tshttp", "rtsp"]);

    let rtmp = rtmp_plays(server.rtmp_addr().unwrap(), &format!("s1?token={TOKEN}")).await;
    assert!(!rtmp, "the HLS grant must not play RTMP");
    assert_eq!(protos(&backend).await, ["hls", "tshttp", "rtsp", "rtmp"]);

    // The HLS session itself is untouched: its next request needs no call.
    let again = client().get(http("index.m3u8")).send().await.unwrap().status();
    assert_eq!(again, 200);
    assert_eq!(
        protos(&backend).await.len(),
        4,
        "the HLS session is resumed, not asked about again"
    );
    server.shutdown().await;
}

/// Issue 18 item 6: what a first (`new_session`) play call carries, over each protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_call_over_each_protocol_carries_the_request_details() {
    let backend = backend_with([Mock::given(method("GET")).respond_with(ResponseTemplate::new(200))]).await;
    let server = Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        rtsp: Some("127.0.0.1:0".parse().unwrap()),
        rtmp: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![stream_of("s1", "fake://fake", Some(http_auth(&backend)))],
        ..Config::default()
    })
    .await
    .unwrap();
    let http = |rest: &str| format!("http://{}/s1/{rest}?token={TOKEN}", server.http_addr());
    assert_eq!(client().get(http("index.m3u8")).send().await.unwrap().status(), 200);
    let ts = client().get(http("mpegts")).send().await.unwrap();
    assert_eq!(ts.status(), 200);
    drop(ts);
    let rtsp_addr = server.rtsp_addr().unwrap();
    let rtsp = rtsp_describe(rtsp_addr).await;
    assert!(rtsp.starts_with("RTSP/1.0 200"), "{rtsp}");
    let rtmp_addr = server.rtmp_addr().unwrap();
    assert!(rtmp_plays(rtmp_addr, &format!("s1?token={TOKEN}")).await);

    let calls = backend.received_requests().await.unwrap_or_default();
    let http_host = server.http_addr().to_string();
    let expected = [
        ("hls", http_host.clone()),
        ("tshttp", http_host),
        ("rtsp", rtsp_addr.to_string()),
        ("rtmp", rtmp_addr.to_string()),
    ];
    assert_eq!(calls.len(), expected.len(), "one call per protocol");
    for (call, (proto, host)) in calls.iter().zip(expected) {
        let params: std::collections::HashMap<String, String> = call.url.query_pairs().into_owned().collect();
        let seen = format!("{} {}", call.method, call.url);
        assert_eq!(call.method.as_str(), "GET", "{seen}");
        assert_eq!(params["proto"], proto, "{seen}");
        assert_eq!(params["request_type"], "new_session", "{seen}");
        assert_eq!(
            params["request_number"], "1",
            "AMB-12: the first call is number 1: {seen}"
        );
        assert_eq!(params.get("host"), Some(&host), "the host the client named: {seen}");
        assert_eq!(params["dvr"], "false", "a live play: {seen}");
        assert!(
            !params.contains_key("duration") && !params.contains_key("bytes"),
            "duration and bytes are for update_session calls: {seen}"
        );
    }
    server.shutdown().await;
}
