//! A grant does not outlive what gave it, over real sockets (docs/security.md): a session an
//! admin view token admitted ends when the token does — a running HTTP MPEG-TS response is cut,
//! and the same client is asked about like anyone afterwards (ADM-04, AMB-17); a stream that
//! gets an `on_play` through the management API closes the sessions it admitted without one,
//! and their clients go to the backend (CFG-01, CFG-05).

mod common;

use std::time::{Duration, Instant};

use common::{admin, as_admin, backend_answering, client, client_from, http_auth, stream_of};
use reqwest::StatusCode;
use serde_json::{Value, json};
use usher_server::config::{Config, StreamConfig};
use usher_server::{RunningServer, Server};
use wiremock::{MockServer, ResponseTemplate};

async fn start(streams: Vec<StreamConfig>, admin_token_ttl: Duration) -> RunningServer {
    Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        edit_auth: admin(),
        server_secret: Some("grants-test-secret".into()),
        admin_token_ttl,
        streams,
        ..Config::default()
    })
    .await
    .unwrap()
}

async fn calls(backend: &MockServer) -> usize {
    backend.received_requests().await.unwrap_or_default().len()
}

/// Reads `response` until it ends; how long that took from `since`, or `None` if it still
/// streamed at `deadline`. Counts the bytes.
async fn read_until_end(
    mut response: reqwest::Response,
    since: Instant,
    deadline: Duration,
) -> (Option<Duration>, u64) {
    let mut bytes = 0u64;
    let ended = tokio::time::timeout(deadline.saturating_sub(since.elapsed()), async {
        while let Ok(Some(chunk)) = response.chunk().await {
            bytes += chunk.len() as u64;
        }
    })
    .await;
    (ended.ok().map(|()| since.elapsed()), bytes)
}

/// ADM-04: with `admin_token_ttl 1`, a token minted at second S is valid through S+1, so a
/// session it admits must end between 1 and 2 s after minting (plus a sweep, 250 ms). The
/// MPEG-TS response is cut then; a new request of the same client with the same token is a
/// new session that the backend (refusing everyone here) is asked about, over MPEG-TS and HLS.
#[tokio::test]
async fn an_admin_session_ends_with_its_token() {
    let backend = backend_answering(ResponseTemplate::new(403)).await;
    let server = start(
        vec![stream_of("s1", "fake://fake", Some(http_auth(&backend)))],
        Duration::from_secs(1),
    )
    .await;
    let base = format!("http://{}", server.http_addr());
    let minted_at = Instant::now();
    let minted: Value = as_admin(client().post(format!("{base}/streamer/api/v3/admin_view_token")))
        .await
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().expect("a token").to_string();

    let mut ts = client_from("127.0.0.2")
        .get(format!("{base}/s1/mpegts?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ts.status(), StatusCode::OK, "the fresh admin token plays");
    let first = ts.chunk().await.unwrap().expect("media flows");
    assert_eq!(first[0], 0x47, "TS sync byte");
    let (ended, bytes) = read_until_end(ts, minted_at, Duration::from_secs(6)).await;
    let ended = ended.unwrap_or_else(|| panic!("the admin session still streams 6 s after minting ({bytes} B)"));
    assert!(
        ended >= Duration::from_millis(900),
        "cut {ended:?} after minting, before the token ended"
    );
    assert!(
        ended <= Duration::from_millis(3500),
        "cut {ended:?} after minting: the token ended at 2 s at the latest"
    );
    assert_eq!(calls(&backend).await, 0, "an admin session makes no backend call");

    // The same address and token: not resumed, asked about (and refused).
    let again = client_from("127.0.0.2")
        .get(format!("{base}/s1/mpegts?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::FORBIDDEN,
        "an expired admin token's session is resumed"
    );
    assert_eq!(calls(&backend).await, 1, "the backend decides the expired token");
    let hls = client_from("127.0.0.2")
        .get(format!("{base}/s1/index.m3u8?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(hls.status(), StatusCode::FORBIDDEN, "HLS with the expired token");
    server.shutdown().await;
}

/// CFG-01/CFG-05 through the management API: a stream without `on_play` admits everyone
/// without a backend; once an `on_play` is put on it, the running MPEG-TS response it admitted
/// is cut within a second and the same client's next requests are new sessions for the
/// backend (refusing here).
#[tokio::test]
async fn a_stream_given_a_backend_closes_the_sessions_admitted_without_one() {
    let backend = backend_answering(ResponseTemplate::new(403)).await;
    let server = start(vec![stream_of("s1", "fake://fake", None)], Duration::from_secs(3600)).await;
    let base = format!("http://{}", server.http_addr());
    let mut ts = client_from("127.0.0.2")
        .get(format!("{base}/s1/mpegts?token=t"))
        .send()
        .await
        .unwrap();
    assert_eq!(ts.status(), StatusCode::OK);
    let first = ts.chunk().await.unwrap().expect("media flows");
    assert_eq!(first[0], 0x47, "TS sync byte");
    let hls = client_from("127.0.0.3")
        .get(format!("{base}/s1/index.m3u8?token=h"))
        .send()
        .await
        .unwrap();
    assert_eq!(hls.status(), StatusCode::OK);
    assert_eq!(calls(&backend).await, 0);

    let stream = json!({"inputs": [{"url": "fake://fake"}], "on_play": {"url": format!("{}/auth", backend.uri())}});
    let put = as_admin(
        client()
            .put(format!("{base}/streamer/api/v3/streams/s1"))
            .body(stream.to_string()),
    )
    .await;
    assert_eq!(put.status(), StatusCode::OK);
    let put_at = Instant::now();
    let (ended, bytes) = read_until_end(ts, put_at, Duration::from_secs(1)).await;
    assert!(
        ended.is_some(),
        "the MPEG-TS response admitted without a backend still streams 1 s after on_play was set ({bytes} B)"
    );

    for (ip, url) in [
        ("127.0.0.2", format!("{base}/s1/mpegts?token=t")),
        ("127.0.0.3", format!("{base}/s1/index.m3u8?token=h")),
    ] {
        let before = calls(&backend).await;
        let status = client_from(ip).get(&url).send().await.unwrap().status();
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}: resumed without the backend");
        assert_eq!(calls(&backend).await, before + 1, "{url}: the backend is asked");
    }
    server.shutdown().await;
}
