//! Self-tests of the suite's own machinery — the programmable backend and the protocol clients —
//! against real sockets, with wiremock standing in for a media server where one is needed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use usher_conformance::backend::{Answer, Backend, BackendOptions};
use usher_conformance::clients::hls::HlsClient;
use usher_conformance::clients::tshttp::TsClient;
use usher_conformance::clients::{Outcome, ViewerProfile};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const VIEWER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn ts_bytes(packets: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(packets * 188);
    for _ in 0..packets {
        let mut p = vec![0xff; 188];
        p[0] = 0x47;
        out.extend_from_slice(&p);
    }
    out
}

fn token(t: &str) -> Vec<(String, String)> {
    vec![("token".to_string(), t.to_string())]
}

fn profile() -> ViewerProfile {
    let mut p = ViewerProfile::new(VIEWER);
    p.request_timeout = Duration::from_secs(2);
    p
}

async fn hls_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/live/s/index.m3u8"))
        .and(query_param("token", "good"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nsegment-3.ts?token=good\n"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/segment-3.ts"))
        .and(query_param("token", "good"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(ts_bytes(2)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/index.m3u8"))
        .and(query_param("token", "bad"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/index.m3u8"))
        .and(query_param("token", "moved"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", "http://elsewhere/x.m3u8"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/index.m3u8"))
        .and(query_param("token", "garbage"))
        .respond_with(ResponseTemplate::new(200).set_body_string("#EXTM3U\n#EXTINF:2.0,\nsegment-9.ts\n"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/segment-9.ts"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>not ts</html>"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/index.m3u8"))
        .and(query_param("token", "empty"))
        .respond_with(ResponseTemplate::new(200).set_body_string("#EXTM3U\n#EXT-X-ENDLIST\n"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/index.m3u8"))
        .and(query_param("token", "slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/live/s/index.m3u8"))
        .and(query_param("token", "broken"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn hls_outcomes_are_normalised() {
    let server = hls_server().await;
    let base = url::Url::parse(&server.uri()).unwrap();
    let client = HlsClient::new(&base, profile()).unwrap();

    let play = client.play("live/s", &token("good")).await;
    assert_eq!(play.outcome, Outcome::Playing, "{play}");
    assert_eq!(play.trail.len(), 2, "playlist then segment: {play}");

    let play = client.play("live/s", &token("bad")).await;
    assert_eq!(play.outcome, Outcome::Denied { status: 403 }, "{play}");
    assert!(play.outcome.is_refused());

    let play = client.play("live/s", &token("moved")).await;
    assert_eq!(
        play.outcome,
        Outcome::Redirected {
            location: "http://elsewhere/x.m3u8".into()
        },
        "redirects are reported, not followed: {play}"
    );
    assert!(!play.outcome.is_refused());

    let play = client.play("live/s", &token("garbage")).await;
    assert!(
        matches!(&play.outcome, Outcome::Failed { status: Some(200), reason } if reason.contains("0x47")),
        "a segment that is not TS is a failure: {play}"
    );

    let play = client.play("live/s", &token("empty")).await;
    assert!(
        matches!(&play.outcome, Outcome::Failed { reason, .. } if reason.contains("no segment")),
        "{play}"
    );

    let play = client.play("live/s", &token("broken")).await;
    assert_eq!(
        play.outcome,
        Outcome::Failed {
            status: Some(503),
            reason: "playlist: unexpected status 503".into()
        }
    );
    assert!(play.outcome.is_refused(), "an error answer is a refusal");

    let play = client.play("live/s", &token("slow")).await;
    assert!(
        matches!(&play.outcome, Outcome::Failed { status: None, .. }),
        "no answer within the request timeout: {play}"
    );
    assert!(!play.outcome.is_refused(), "a timeout is not a decision");
    assert!(play.elapsed < Duration::from_secs(4), "{play}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hls_client_sends_from_its_address_with_its_headers() {
    let server = hls_server().await;
    let base = url::Url::parse(&server.uri()).unwrap();
    let mut p = profile();
    p.referer = Some("http://example.com/watch?a=1&b=2".into());
    p.user_agent = Some("TestPlayer/1.0".into());
    let client = HlsClient::new(&base, p).unwrap();
    let play = client.play("live/s", &token("good")).await;
    assert_eq!(play.outcome, Outcome::Playing, "{play}");
    let requests = server.received_requests().await.unwrap();
    let first = &requests[0];
    assert_eq!(
        first.headers.get("referer").unwrap(),
        "http://example.com/watch?a=1&b=2"
    );
    assert_eq!(first.headers.get("user-agent").unwrap(), "TestPlayer/1.0");
    assert_eq!(first.url.query(), Some("token=good"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ts_client_plays_and_sees_the_server_close() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/s/mpegts"))
        .and(query_param("token", "good"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(ts_bytes(40)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/s/mpegts"))
        .and(query_param("token", "bad"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    let base = url::Url::parse(&server.uri()).unwrap();
    let client = TsClient::new(&base, profile()).unwrap();

    let (attempt, session) = client.open("s", &token("good"), 188 * 20).await;
    assert_eq!(attempt.outcome, Outcome::Playing, "{attempt}");
    let mut session = session.expect("a playing session");
    let closed = session.wait_closed(Duration::from_secs(2)).await;
    assert!(closed.is_some(), "a finite body is a closed session");
    assert_eq!(session.bytes(), 188 * 40);

    let (attempt, session) = client.open("s", &token("bad"), 188).await;
    assert_eq!(attempt.outcome, Outcome::Denied { status: 403 });
    assert!(session.is_none());

    let (attempt, _) = client.open("s", &token("good"), 188 * 100).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Failed { reason, .. } if reason.contains("closed after")),
        "fewer bytes than asked before the close is not playing: {attempt}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_routes_scenarios_apart_and_records_every_call() {
    let backend = Backend::start(&BackendOptions::default()).await.unwrap();
    let a = backend.scenario("scopea");
    let b = backend.scenario("scopeb");
    a.answer(Some("t1"), Answer::allow().with_header("X-AuthDuration", "1"));
    b.answer(None, Answer::status(500));
    let http = reqwest::Client::new();

    let r = http
        .get(format!("{}?token=t1&request_type=new_session", a.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-authduration"], "1");
    let r = http.get(format!("{}?token=other", a.url())).send().await.unwrap();
    assert_eq!(r.status(), 403, "unprogrammed tokens are denied");
    let r = http.get(format!("{}?token=t1", b.url())).send().await.unwrap();
    assert_eq!(r.status(), 500, "scenario b has its own answers");

    let log = a.log();
    assert_eq!(log.len(), 2, "{}", log.describe());
    assert_eq!(log.for_token(Some("t1")).len(), 1);
    assert_eq!(log.of_type("new_session").len(), 1);
    assert_eq!(b.log().len(), 1);
    assert!(log.describe().contains("token=t1"));

    // Answers change mid-scenario.
    a.answer_all(Answer::status(500));
    let r = http.get(format!("{}?token=t1", a.url())).send().await.unwrap();
    assert_eq!(r.status(), 500);

    // A scenario that is gone leaves a stray call behind, not a silent 200.
    let stale = b.url().clone();
    drop(b);
    let r = http.get(stale).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(backend.strays().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_delays_drops_and_unreachable() {
    let backend = Backend::start(&BackendOptions::default()).await.unwrap();
    let s = backend.scenario("scopec");
    s.answer(None, Answer::allow());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();

    s.delay_all(Some(Duration::from_secs(2)));
    let err = http.get(s.url().clone()).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(s.log().len(), 1, "a delayed call is recorded on arrival");
    s.delay_all(None);

    s.drop_connections(true);
    let err = http.get(s.url().clone()).send().await.unwrap_err();
    assert!(!err.is_timeout(), "the connection is cut, not held: {err}");
    assert_eq!(s.log().len(), 2);
    assert!(s.log().calls()[1].answer.is_none());

    let err = http.get(s.unreachable_url().clone()).send().await.unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert_eq!(s.log().len(), 2, "nothing reaches the backend");

    let at = s.log().calls()[0].at;
    let found = s.wait_for(Duration::from_millis(50), |c| c.at >= at).await;
    assert!(found.is_some());
    let missing = s
        .wait_for(Duration::from_millis(50), |c| c.token() == Some("nope"))
        .await;
    assert!(missing.is_none());
}
