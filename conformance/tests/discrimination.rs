//! The catalogue must be able to fail. It is run against two deliberately wrong servers built on
//! wiremock — one that lets everybody play without asking the backend ("open door"), one that
//! refuses everybody without asking ("closed door") — and every scenario must fail against
//! them, except the few listed here whose claim such a server does satisfy. A scenario that
//! starts passing against a broken server has lost its teeth, and this test says which.

use std::collections::BTreeSet;

use usher_conformance::target::ApiCredential;
use usher_conformance::{RunOptions, TargetChoice, Verdict};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn ts_bytes(packets: usize) -> Vec<u8> {
    (0..packets)
        .flat_map(|_| {
            let mut p = vec![0xffu8; 188];
            p[0] = 0x47;
            p
        })
        .collect()
}

/// A management API that accepts everything and changes nothing.
async fn lenient_api(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/streamer/api/v3/config"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"no_auto_token": false, "auth_token": "token"})),
        )
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/streamer/api/v3/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sessions": []})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/streamer/api/v3/admin_view_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "token": "ADM1-1700000000-0123456789abcdef0123456789abcdef01234567"
        })))
        .mount(server)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/streamer/api/v3/"))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
    Mock::given(path_regex("^/streamer/api/v3/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(server)
        .await;
}

async fn open_door() -> MockServer {
    let server = MockServer::start().await;
    lenient_api(&server).await;
    Mock::given(method("GET"))
        .and(path_regex(r"/index\.m3u8$"))
        .respond_with(ResponseTemplate::new(200).set_body_string("#EXTM3U\n#EXTINF:2.0,\nsegment-1.ts\n"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"/segment-\d+\.ts$"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(ts_bytes(4)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"/mpegts$"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(ts_bytes(30)))
        .mount(&server)
        .await;
    server
}

async fn closed_door() -> MockServer {
    let server = MockServer::start().await;
    lenient_api(&server).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    server
}

async fn passing_against(server: &MockServer) -> BTreeSet<String> {
    let options = RunOptions {
        target: TargetChoice::Address {
            http: url::Url::parse(&format!("{}/", server.uri())).unwrap(),
            credential: ApiCredential {
                login: "x".into(),
                password: "y".into(),
            },
        },
        concurrency: 16,
        ..RunOptions::default()
    };
    let summary = usher_conformance::run(options, |_| {}).await.unwrap();
    assert!(summary.results.len() > 40, "the catalogue ran");
    summary
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .map(|r| format!("{} {}", r.location, r.name))
        .collect()
}

fn names(set: &BTreeSet<String>) -> BTreeSet<String> {
    // Locations carry line numbers; compare by name only for a stable list.
    set.iter()
        .map(|s| s.split_once(' ').map_or(s.clone(), |(_, n)| n.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_servers_fail_the_catalogue() {
    // One run at a time: a run installs the process-wide scenario context.
    let open = open_door().await;
    let passing = names(&passing_against(&open).await);
    let expected_open: BTreeSet<String> = [
        // Claims an open door satisfies: no refusal is asked of it.
        "A minted admin view token plays without a backend call",
        "The mandatory session keys may come in any order",
        "A viewer that sends no Referer is not covered by the lock",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        passing, expected_open,
        "against a server that lets everyone play without asking the backend"
    );

    let closed = closed_door().await;
    let passing = names(&passing_against(&closed).await);
    let expected_closed: BTreeSet<String> = [
        // Claims a closed door satisfies: refusals without a backend call.
        "A Referer from a foreign site is refused without asking the backend",
        "With a forged admin token the viewer does not play unless the backend allows it",
        "With an altered-signature admin token the viewer does not play unless the backend allows it",
        "With an altered-timestamp admin token the viewer does not play unless the backend allows it",
        "A new session is refused when the backend is unreachable",
        "The mandatory session keys may come in any order",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        passing, expected_closed,
        "against a server that refuses everyone without asking the backend"
    );
}
