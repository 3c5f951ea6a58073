//! The HTTP backend client against a real HTTP server (wiremock): the wire shape of play and
//! publish calls (T1, T2, AMB-2, AMB-4), and every failure that must read as "no decision"
//! (RESP-04), a slow backend within the core's 3 s budget (TIME-03).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{backend_answering, backend_with};
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::{
    Answer, AuthCore, AuthSettings, Backend, BackendRequest, CallKind, DenyReason, HttpBackend, Proto, RequestType,
    Verdict,
};
use usher_server::config::{AuthSpec, AuthTarget};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn request(kind: CallKind) -> BackendRequest {
    BackendRequest {
        kind,
        name: "live/news".into(),
        proto: Proto::Hls,
        ip: "127.0.0.2".parse().unwrap(),
        request_type: RequestType::NewSession,
        request_number: 1,
        session_id: Uuid::parse_str("0f0e0d0c-0b0a-8908-8706-050403020100").unwrap(),
        stream_clients: 3,
        total_clients: 7,
        token: Some("a&user_id=1 +%é".into()),
        duration: None,
        bytes: None,
        qs: Some("token=a%26user_id%3D1".into()),
        dvr: false,
        user_agent: Some("curl/7.68.0".into()),
        referer: Some("http://site.example/page?token=x&name=y".into()),
        host: Some("127.0.0.1:8080".into()),
        extra: BTreeMap::from([("site".to_string(), "main".to_string())]),
        sign_key: None,
    }
}

/// One call of a fresh HTTP backend client to `url`.
async fn ask(url: &str, kind: CallKind) -> Answer {
    HttpBackend::new().unwrap().call(url, &request(kind)).await
}

#[tokio::test]
async fn play_call_is_a_get_with_every_field_percent_encoded() {
    let server = backend_with([Mock::given(method("GET"))
        .and(path("/auth"))
        .respond_with(ResponseTemplate::new(200))])
    .await;
    let answer = ask(&format!("{}/auth?key=v", server.uri()), CallKind::Play).await;
    assert!(matches!(answer, Answer::Allow(_)), "{answer:?}");
    let seen = server.received_requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    // The backend's own query stays first and ours is appended with `&` (AMB-4).
    insta::assert_snapshot!(seen[0].url.query().unwrap(), @"key=v&name=live%2Fnews&proto=hls&ip=127.0.0.2&request_type=new_session&request_number=1&session_id=0f0e0d0c-0b0a-8908-8706-050403020100&stream_clients=3&total_clients=7&token=a%26user_id%3D1%20%2B%25%C3%A9&qs=token%3Da%2526user_id%253D1&dvr=false&user_agent=curl%2F7.68.0&referer=http%3A%2F%2Fsite.example%2Fpage%3Ftoken%3Dx%26name%3Dy&host=127.0.0.1%3A8080&site=main");
    // Decoded back, each value is exactly what was sent: no parameter injection (REQ-02).
    let pairs: BTreeMap<String, String> = seen[0].url.query_pairs().into_owned().collect();
    assert_eq!(pairs["token"], "a&user_id=1 +%é");
    assert_eq!(pairs["referer"], "http://site.example/page?token=x&name=y");
    assert!(!pairs.contains_key("user_id"));
}

#[tokio::test]
async fn publish_call_is_a_post_with_query_and_json_body() {
    let server = backend_with([Mock::given(method("POST"))
        .and(path("/pub"))
        .respond_with(ResponseTemplate::new(403))])
    .await;
    let answer = ask(&format!("{}/pub", server.uri()), CallKind::Publish).await;
    assert!(matches!(answer, Answer::Deny { status: 403, .. }), "{answer:?}");
    let seen = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    insta::assert_json_snapshot!(body, @r#"
    {
      "dvr": false,
      "host": "127.0.0.1:8080",
      "ip": "127.0.0.2",
      "name": "live/news",
      "proto": "hls",
      "qs": "token=a%26user_id%3D1",
      "referer": "http://site.example/page?token=x&name=y",
      "request_number": 1,
      "request_type": "new_session",
      "session_id": "0f0e0d0c-0b0a-8908-8706-050403020100",
      "site": "main",
      "stream_clients": 3,
      "token": "a&user_id=1 +%é",
      "total_clients": 7,
      "user_agent": "curl/7.68.0"
    }
    "#);
    let query: BTreeMap<String, String> = seen[0].url.query_pairs().into_owned().collect();
    assert_eq!(query["name"], "live/news");
}

#[tokio::test]
async fn headers_and_json_of_an_allow_are_read() {
    let server = backend_answering(
        ResponseTemplate::new(200)
            .insert_header("x-authduration", "42")
            .insert_header("X-UserId", "u7")
            .insert_header("X-Max-Sessions", "2")
            .set_body_json(serde_json::json!({"config": {"protocols": {"hls": false}}, "allowed_dvr_ranges": []})),
    )
    .await;
    let answer = ask(&server.uri(), CallKind::Play).await;
    let Answer::Allow(grant) = answer else {
        panic!("expected allow, got {answer:?}")
    };
    assert_eq!(grant.duration, Duration::from_secs(42));
    assert_eq!(grant.user_id.as_deref(), Some("u7"));
    assert_eq!(grant.max_sessions, Some(2));
    assert_eq!(grant.config, Some(serde_json::json!({"protocols": {"hls": false}})));
    assert_eq!(grant.allowed_dvr_ranges, Some(serde_json::json!([])));
}

#[tokio::test]
async fn slow_backend_is_no_decision_after_three_seconds() {
    // TIME-03: the budget is the core's one timer, around every backend kind (the client keeps
    // none of its own), so a slow backend is asked through the core.
    let server = backend_answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(5))).await;
    let core = AuthCore::new(
        Arc::new(HttpBackend::new().unwrap()),
        AdminTokens::new("k", Duration::from_secs(60), false),
        AuthSettings::new(false, Duration::from_secs(30)),
    );
    let spec = AuthSpec::new(AuthTarget::Http(server.uri()));
    let viewer = common::hls_play("live/news", "127.0.0.2".parse().unwrap(), "t");
    let started = Instant::now();
    let verdict = core.authorize(Some(&spec), viewer).await;
    let took = started.elapsed();
    assert!(
        matches!(
            verdict,
            Verdict::Deny {
                reason: DenyReason::NoDecision,
                ..
            }
        ),
        "{verdict:?}"
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4000),
        "took {took:?}"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "one call, dropped at 3 s"
    );
}

#[tokio::test]
async fn refused_connection_and_5xx_are_no_decision() {
    // A port that was just free: bind, read the port, drop the listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = HttpBackend::new().unwrap();
    let answer = backend
        .call(&format!("http://127.0.0.1:{port}/auth"), &request(CallKind::Play))
        .await;
    assert!(matches!(answer, Answer::NoDecision { .. }), "{answer:?}");

    let server = backend_answering(ResponseTemplate::new(503)).await;
    let answer = backend.call(&server.uri(), &request(CallKind::Play)).await;
    assert!(matches!(answer, Answer::NoDecision { .. }), "{answer:?}");
}

#[tokio::test]
async fn oversized_body_is_no_decision() {
    let server = backend_answering(ResponseTemplate::new(200).set_body_bytes(vec![b' '; 2 * 1024 * 1024])).await;
    let answer = ask(&server.uri(), CallKind::Play).await;
    assert!(matches!(answer, Answer::NoDecision { .. }), "{answer:?}");
}
