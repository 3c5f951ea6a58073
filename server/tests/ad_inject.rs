//! Issue 18 item 4: a backend answer's `ad_inject` is not acted on (no ads are inserted), and
//! the server says so honestly: one info line per session (session id and stream, never the
//! token), however many answers repeat it, and `ad_inject_ignored: true` on the session in the
//! management API's session list, kept on its record in the session history once it closes
//! (docs/spec.md, "Reading the answer").
//!
//! Its own test binary: the log capture is the process's global subscriber.

mod common;

use common::Capture;
use reqwest::StatusCode;
use serde_json::{Value, json};
use usher_server::Server;
use usher_server::config::Config;
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, ResponseTemplate};

const ADS: &str = "tokADS-0123456789";
const PLAIN: &str = "tokPLAIN-0123456789";
const LINE: &str = "ad_inject; ad insertion is not supported";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_inject_is_logged_once_per_session_and_shown_in_the_session_list_and_history() {
    let capture = Capture::install(tracing::Level::INFO);

    // X-AuthDuration 0: every HLS request re-checks, and every answer asks for ads again.
    let ads = json!({"ad_inject": {"v": 2, "preroll": ["ad_vod/preroll1.mp4"], "midroll_interval": 180}});
    let backend = common::backend_with([
        Mock::given(method("GET")).and(query_param("token", ADS)).respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-AuthDuration", "0")
                .set_body_json(ads),
        ),
        Mock::given(method("GET"))
            .and(query_param("token", PLAIN))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"user_id": "plain"}))),
    ])
    .await;
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        edit_auth: common::admin(),
        streams: vec![common::stream_of(
            "s1",
            "fake://fake",
            Some(common::http_auth(&backend)),
        )],
        ..Config::default()
    };
    let server = Server::start(config).await.unwrap();
    let url = |path: &str| format!("http://{}{path}", server.http_addr());
    let client = common::client();

    const REQUESTS: usize = 4;
    for _ in 0..REQUESTS {
        let resp = client
            .get(url(&format!("/s1/index.m3u8?token={ADS}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = client
        .get(url(&format!("/s1/index.m3u8?token={PLAIN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Every request of the ads session was judged by an answer carrying ad_inject, so a line per
    // answer would show as several.
    let asked = backend
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.query().is_some_and(|q| q.contains(ADS)))
        .count();
    assert_eq!(asked, REQUESTS, "one backend call per request (X-AuthDuration 0)");

    let resp = common::as_admin(client.get(url("/streamer/api/v3/sessions?name=s1"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{body}");
    let by_token = |token: &str| sessions.iter().find(|s| s["token"] == token).unwrap().clone();
    let (with_ads, plain) = (by_token(ADS), by_token(PLAIN));
    assert_eq!(with_ads["ad_inject_ignored"], json!(true), "{body}");
    assert!(plain.get("ad_inject_ignored").is_none(), "{body}");

    let log = capture.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(LINE)).collect();
    assert_eq!(lines.len(), 1, "one line for the session, not one per answer:\n{log}");
    let line = lines[0];
    assert!(line.contains(" INFO "), "{line}");
    let id = with_ads["id"].as_str().unwrap();
    assert!(line.contains(&format!("session_id={id}")), "{line}");
    assert!(line.contains("stream=s1"), "{line}");
    assert!(
        !line.contains(ADS) && !line.contains("tokADS"),
        "no token in the line: {line}"
    );

    // Closed, both sessions keep what they showed open: the flag on the ads session's history
    // record, none on the other.
    for session in [&with_ads, &plain] {
        let id = session["id"].as_str().unwrap();
        let resp = common::as_admin(client.delete(url(&format!("/streamer/api/v3/sessions/{id}")))).await;
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    // The history is written by its own task: poll it, within a bound.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let closed = loop {
        let resp = common::as_admin(client.get(url("/streamer/api/v3/sessions?closed=true&name=s1"))).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        let records = body["sessions"].as_array().cloned().unwrap_or_default();
        if records.len() >= 2 {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two closed sessions are not in the history after 10 s: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let record = |id: &Value| closed.iter().find(|r| r["id"] == *id).unwrap().clone();
    let (ads_closed, plain_closed) = (record(&with_ads["id"]), record(&plain["id"]));
    assert_eq!(ads_closed["close_reason"], "api", "{ads_closed}");
    assert_eq!(ads_closed["ad_inject_ignored"], json!(true), "{ads_closed}");
    assert!(plain_closed.get("ad_inject_ignored").is_none(), "{plain_closed}");
    server.shutdown().await;
}
