//! `usher backend-check` against backends on loopback: a well-behaved one in the style of the
//! vendor's PHP example, one wiremock backend per class of problem, a backend that hangs, and
//! the binary's exit statuses and report files.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use usher_conformance::Verdict;
use usher_conformance::backend_check::{self, Options, Outcome, SetupError};
use usher_conformance::report::CaseResult;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const GOOD: [&str; 2] = ["good-1", "good-2"];

fn query(req: &Request) -> HashMap<String, String> {
    req.url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The vendor's PHP example, as a site writes it: known tokens get 200 with X-AuthDuration and
/// X-UserId, anything else 403.
struct Php;

impl Respond for Php {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = query(req);
        match q.get("token").map(String::as_str) {
            Some(t) if GOOD.contains(&t) => ResponseTemplate::new(200)
                .insert_header("X-AuthDuration", "60")
                .insert_header("X-UserId", if t == "good-1" { "1" } else { "2" }),
            _ => ResponseTemplate::new(403),
        }
    }
}

/// Allows the known tokens with the given headers and body, refuses the rest with 403.
struct Allow {
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Value>,
}

impl Respond for Allow {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !query(req).get("token").is_some_and(|t| GOOD.contains(&t.as_str())) {
            return ResponseTemplate::new(403).insert_header("X-AuthDuration", "30");
        }
        let mut r = ResponseTemplate::new(200);
        for (k, v) in &self.headers {
            r = r.insert_header(*k, *v);
        }
        if let Some(body) = &self.body {
            r = r.set_body_json(body);
        }
        r
    }
}

fn allow(headers: &[(&'static str, &'static str)], body: Option<Value>) -> Allow {
    Allow {
        headers: headers.to_vec(),
        body,
    }
}

async fn backend(responder: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/auth")).respond_with(responder).mount(&server).await;
    server
}

fn options(server: &MockServer) -> Options {
    Options {
        tokens: GOOD.iter().map(ToString::to_string).collect(),
        concurrency: 4,
        latency_calls: 10,
        deadline: Duration::from_secs(30),
        ..Options::new(&format!("{}/auth", server.uri()))
    }
}

async fn check(server: &MockServer) -> Outcome {
    backend_check::run(options(server)).await.expect("the check runs")
}

fn case<'a>(o: &'a Outcome, slug: &str) -> &'a CaseResult {
    let key = format!("backend-check-{slug}");
    o.summary
        .cases
        .iter()
        .find(|c| c.key == key)
        .unwrap_or_else(|| panic!("no case {key} in {:#?}", titles(o)))
}

fn titles(o: &Outcome) -> Vec<String> {
    o.summary
        .cases
        .iter()
        .map(|c| format!("{} {}", c.verdict, c.title))
        .collect()
}

fn notes(o: &Outcome) -> Vec<&str> {
    o.summary
        .cases
        .iter()
        .filter(|c| c.key.starts_with("backend-check-note-"))
        .map(|c| c.title.as_str())
        .collect()
}

/// Exactly the listed cases are not PASS (notes aside), each with its verdict.
fn assert_only(o: &Outcome, expected: &[(&str, Verdict)]) {
    let mut seen: Vec<(String, Verdict)> = o
        .summary
        .cases
        .iter()
        .filter(|c| c.verdict != Verdict::Pass && !c.key.starts_with("backend-check-note-"))
        .map(|c| (c.key.trim_start_matches("backend-check-").to_string(), c.verdict))
        .collect();
    seen.sort();
    let mut want: Vec<(String, Verdict)> = expected.iter().map(|(s, v)| (s.to_string(), *v)).collect();
    want.sort();
    assert_eq!(seen, want, "cases: {:#?}", o.summary.cases);
}

fn failure<'a>(o: &'a Outcome, slug: &str) -> &'a str {
    case(o, slug).failure.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn a_backend_like_the_vendors_php_example_passes_and_hears_the_whole_contract() {
    let server = backend(Php).await;
    let o = check(&server).await;
    assert_only(&o, &[]);
    assert!(o.summary.ok(), "{:#?}", titles(&o));
    assert_eq!(case(&o, "known-tokens-allowed").verdict, Verdict::Pass);
    assert!(
        notes(&o).contains(&"A 403 without X-AuthDuration is cached 180 s: the viewer is refused without asking you for three minutes, even once you would allow them"),
        "{:?}",
        notes(&o)
    );
    let latency = o.latency.expect("the latency round ran");
    assert_eq!((latency.calls, latency.answered, latency.concurrency), (10, 10, 4));
    assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);

    // What the backend heard: the HLS session of good-1, new_session then two updates.
    let requests = server.received_requests().await.expect("recorded");
    let hls: Vec<HashMap<String, String>> = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .map(query)
        .filter(|q| {
            q.get("token").map(String::as_str) == Some("good-1")
                && q["proto"] == "hls"
                && q["dvr"] == "false"
                && q["ip"] == "198.51.100.7"
        })
        .collect();
    let kinds: Vec<(&str, &str)> = hls
        .iter()
        .map(|q| (q["request_type"].as_str(), q["request_number"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("new_session", "1"), ("update_session", "2"), ("update_session", "3")]
    );
    assert!(hls.iter().all(|q| q["session_id"] == hls[0]["session_id"]));
    for key in [
        "name",
        "ip",
        "proto",
        "token",
        "session_id",
        "stream_clients",
        "total_clients",
        "qs",
        "user_agent",
        "referer",
        "host",
        "dvr",
    ] {
        assert!(hls[0].contains_key(key), "new_session lacks {key}: {:?}", hls[0]);
    }
    assert_eq!(
        (hls[1]["duration"].as_str(), hls[1]["bytes"].as_str()),
        ("10", "2500000")
    );
    assert_eq!(hls[0]["qs"], "token=good-1");
    // Every play protocol, and an archive session.
    for proto in ["hls", "dash", "tshttp", "rtmp", "rtsp"] {
        assert!(
            requests.iter().map(query).any(|q| q["proto"] == proto),
            "no {proto} call"
        );
    }
    assert!(requests.iter().map(query).any(|q| q["dvr"] == "true"));
    // The generated tokens arrive as one value each.
    for token in ["", "abc&user_id=1", "100%25%zz", "a+b c", "abc#frag", "токен-ü-東京"] {
        assert!(
            requests
                .iter()
                .map(query)
                .any(|q| q.get("token").map(String::as_str) == Some(token)),
            "token {token:?} did not arrive whole"
        );
    }
    assert!(
        requests.iter().map(query).all(|q| !q.contains_key("user_id")),
        "a token's `&` leaked into the query"
    );
}

#[tokio::test]
async fn publish_calls_are_posts_with_the_query_and_a_json_body() {
    let server = MockServer::start().await;
    Mock::given(path("/auth")).respond_with(Php).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/publish"))
        .respond_with(Php)
        .mount(&server)
        .await;
    let o = backend_check::run(Options {
        publish_url: Some(format!("{}/publish", server.uri())),
        ..options(&server)
    })
    .await
    .expect("the check runs");
    assert_only(&o, &[]);
    let requests = server.received_requests().await.expect("recorded");
    let posts: Vec<&Request> = requests.iter().filter(|r| r.url.path() == "/publish").collect();
    assert!(!posts.is_empty());
    for post in &posts {
        assert_eq!(post.method.as_str(), "POST");
        assert_eq!(
            post.headers.get("content-type").map(|v| v.to_str().unwrap_or_default()),
            Some("application/json")
        );
        let body: Value = serde_json::from_slice(&post.body).expect("a JSON body");
        let q = query(post);
        assert_eq!(body["token"].as_str(), q.get("token").map(String::as_str));
        assert_eq!(
            body["request_number"].as_u64().map(|n| n.to_string()),
            Some(q["request_number"].clone())
        );
    }
    let protos: Vec<String> = posts.iter().map(|p| query(p)["proto"].clone()).collect();
    for proto in ["rtmp", "rtsp", "tshttp"] {
        assert!(protos.iter().any(|p| p == proto), "no publish over {proto}");
    }
    assert!(
        posts
            .iter()
            .map(|p| query(p))
            .any(|q| q["request_type"] == "update_session" && q["request_number"] == "2")
    );
}

#[tokio::test]
async fn a_bad_x_authduration_fails_with_what_the_server_uses_instead() {
    let server = backend(allow(&[("X-AuthDuration", "1h")], None)).await;
    let o = check(&server).await;
    assert_only(&o, &[("auth-duration", Verdict::Fail)]);
    assert!(
        failure(&o, "auth-duration")
            .contains("X-AuthDuration `1h` is not a non-negative integer: the server uses 180 s")
    );
    assert!(!o.summary.ok());
}

#[tokio::test]
async fn limit_headers_are_graded_and_the_long_ban_is_said() {
    let server = backend(allow(
        &[
            ("X-AuthDuration", "36000"),
            ("X-UserId", "7"),
            ("X-Max-Sessions", "0"),
            ("X-Unique", "yes"),
        ],
        None,
    ))
    .await;
    let o = check(&server).await;
    assert_only(&o, &[("max-sessions", Verdict::Fail), ("unique", Verdict::Fail)]);
    assert!(failure(&o, "max-sessions").contains("X-Max-Sessions `0` is not a positive integer"));
    assert!(failure(&o, "unique").contains("X-Unique `yes` is ignored"));

    let server = backend(allow(
        &[("X-AuthDuration", "36000"), ("X-UserId", "7"), ("X-Max-Sessions", "1")],
        None,
    ))
    .await;
    let o = check(&server).await;
    assert_only(&o, &[]);
    let n = notes(&o);
    assert!(
        n.contains(&"X-AuthDuration 36000 with X-Max-Sessions: a viewer cut by the limit is banned for 10 hours"),
        "{n:?}"
    );
    assert!(
        n.contains(&"2 tokens share one user id with X-Max-Sessions 1: opening them all closes the oldest viewers"),
        "{n:?}"
    );
}

#[tokio::test]
async fn x_unique_with_one_user_id_for_two_tokens_is_said() {
    let server = backend(allow(&[("X-UserId", "42"), ("X-Unique", "true")], None)).await;
    let o = check(&server).await;
    assert_only(&o, &[]);
    let n = notes(&o);
    assert!(
        n.contains(&"The same user id from two tokens with X-Unique closes the first viewer"),
        "{n:?}"
    );
    assert!(
        n.contains(&"A 200 without X-AuthDuration is re-checked every 180 s"),
        "{n:?}"
    );
}

#[tokio::test]
async fn limits_without_a_user_id_are_a_should_problem() {
    let server = backend(allow(&[("X-Max-Sessions", "2")], None)).await;
    let o = check(&server).await;
    assert_only(&o, &[("user-id", Verdict::Info)]);
    assert!(failure(&o, "user-id").contains("without X-UserId limits nothing"));
    assert!(o.summary.ok(), "a SHOULD problem does not fail the run");
    let strict = backend_check::run(Options {
        strict: true,
        ..options(&server)
    })
    .await
    .expect("the check runs");
    assert_eq!(case(&strict, "user-id").verdict, Verdict::Fail);
    assert!(!strict.summary.ok());
}

#[tokio::test]
async fn a_config_override_is_read_by_the_servers_own_parser() {
    let server = backend(allow(&[], Some(json!({"config": {"protocols": {"hls": "off"}}})))).await;
    let o = check(&server).await;
    assert_only(&o, &[("config-override", Verdict::Fail)]);
    assert!(
        failure(&o, "config-override")
            .contains("the server rejects the whole override: config.protocols.hls: expected true or false"),
        "{}",
        failure(&o, "config-override")
    );

    let server = backend(allow(
        &[],
        Some(json!({"config": {"protocols": {"rtmp": false}, "thumbnails": {"enabled": true}}})),
    ))
    .await;
    let o = check(&server).await;
    assert_only(&o, &[]);
    let n = notes(&o);
    assert!(
        n.contains(&"An override field the server ignores: config.thumbnails"),
        "{n:?}"
    );
    assert!(
        n.contains(&"A config override changes the stream for every viewer, not only the one whose answer carried it"),
        "{n:?}"
    );
}

#[tokio::test]
async fn dvr_ranges_and_ad_inject_shapes_are_checked() {
    let server = backend(allow(
        &[],
        Some(json!({
            "allowed_dvr_ranges": [{"opened_at": 200, "closed_at": 100}],
            "ad_inject": {"v": 3, "preroll": ["ads/a.mp4"]}
        })),
    ))
    .await;
    let o = check(&server).await;
    assert_only(
        &o,
        &[("allowed-dvr-ranges", Verdict::Fail), ("ad-inject", Verdict::Fail)],
    );
    assert!(failure(&o, "allowed-dvr-ranges").contains("opens at 200 and closes at 100"));
    assert!(failure(&o, "ad-inject").contains("ad_inject.v must be 1 or 2"));

    let server = backend(allow(
        &[],
        Some(json!({"allowed_dvr_ranges": [], "ad_inject": {"preroll": ["ads/a.mp4"], "midroll_insert_by": "interval", "midroll_interval": 600}})),
    ))
    .await;
    let o = check(&server).await;
    assert_only(&o, &[]);
    let n = notes(&o);
    assert!(
        n.contains(&"allowed_dvr_ranges [] forbids this viewer every archive request"),
        "{n:?}"
    );
    assert!(
        n.contains(&"ad_inject is not supported by the reference server: the viewer gets the stream without ads"),
        "{n:?}"
    );
}

#[tokio::test]
async fn json_twins_of_headers_and_a_non_json_body_are_should_problems() {
    let server = backend(allow(
        &[("X-UserId", "1")],
        Some(json!({"user_id": "1", "auth_time": 60})),
    ))
    .await;
    let o = check(&server).await;
    assert_only(&o, &[("json-twins", Verdict::Info)]);
    let text = failure(&o, "json-twins");
    assert!(
        text.contains("`user_id` in the body beside X-UserId: the header wins"),
        "{text}"
    );
    assert!(
        text.contains("`auth_time` in the body is not in the contract"),
        "{text}"
    );

    let server = MockServer::start().await;
    Mock::given(path("/auth"))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK"))
        .mount(&server)
        .await;
    let o = backend_check::run(Options {
        tokens: Vec::new(),
        ..options(&server)
    })
    .await
    .expect("runs");
    // Without --tokens there is no known-token case; allowing generated tokens is a SHOULD.
    assert!(
        o.summary
            .cases
            .iter()
            .all(|c| c.key != "backend-check-known-tokens-allowed")
    );
    assert_only(&o, &[("json-body", Verdict::Info), ("awkward-tokens", Verdict::Info)]);
    assert!(failure(&o, "awkward-tokens").contains("generated token (empty) was allowed"));
}

#[tokio::test]
async fn statuses_5xx_and_302_are_graded_by_what_the_server_does() {
    let server = MockServer::start().await;
    Mock::given(path("/auth"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let o = check(&server).await;
    assert_eq!(case(&o, "decides").verdict, Verdict::Fail);
    assert!(failure(&o, "decides").contains("503 is no decision: a new viewer is refused"));
    assert_eq!(
        case(&o, "known-tokens-allowed").verdict,
        Verdict::Pass,
        "no decision is not a refusal"
    );

    let server = MockServer::start().await;
    Mock::given(path("/auth"))
        .respond_with(ResponseTemplate::new(302))
        .mount(&server)
        .await;
    let o = check(&server).await;
    assert_eq!(case(&o, "statuses").verdict, Verdict::Fail);
    assert!(failure(&o, "statuses").contains("302 without a Location: the server reads it as a 403"));

    let server = MockServer::start().await;
    Mock::given(path("/auth"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", "http://cdn.example/backup.m3u8"))
        .mount(&server)
        .await;
    let o = check(&server).await;
    assert_eq!(case(&o, "redirects").verdict, Verdict::Info);
    assert!(failure(&o, "redirects").contains("a redirect answered to an RTMP viewer is a deny"));
    assert_eq!(case(&o, "known-tokens-allowed").verdict, Verdict::Fail);
}

/// Allows the known tokens on new_session only: a one-time-token backend.
struct OneTime;

impl Respond for OneTime {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = query(req);
        if q.get("request_type").map(String::as_str) == Some("new_session")
            && q.get("token").is_some_and(|t| GOOD.contains(&t.as_str()))
        {
            ResponseTemplate::new(200)
        } else {
            ResponseTemplate::new(403)
        }
    }
}

/// Allows every other call, whatever it is.
struct Flaky(std::sync::atomic::AtomicUsize);

impl Respond for Flaky {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        if self
            .0
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .is_multiple_of(2)
        {
            ResponseTemplate::new(200)
        } else {
            ResponseTemplate::new(403)
        }
    }
}

#[tokio::test]
async fn a_one_time_token_and_a_flaky_backend_are_said() {
    let server = backend(OneTime).await;
    let o = check(&server).await;
    assert_only(&o, &[("updates", Verdict::Info)]);
    assert!(failure(&o, "updates").contains("allowed on new_session, refused on update_session #2"));

    let server = backend(Flaky(Default::default())).await;
    let o = check(&server).await;
    assert_eq!(case(&o, "consistent").verdict, Verdict::Info);
    assert!(failure(&o, "consistent").contains("answers differ for the same token within its auth duration"));
}

#[tokio::test]
async fn an_oversized_answer_is_no_decision() {
    let server = MockServer::start().await;
    Mock::given(path("/auth"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b' '; 2 * 1024 * 1024]))
        .mount(&server)
        .await;
    let o = check(&server).await;
    assert_eq!(case(&o, "decides").verdict, Verdict::Fail);
    assert!(failure(&o, "decides").contains("body over 1 MiB: the server reads it as no decision"));
}

/// A backend that accepts connections and never answers; it reports when each one closes.
#[tokio::test]
async fn a_backend_that_hangs_keeps_the_run_bounded_and_leaves_no_connection_open() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Read the request and never answer; a read of 0 (or an error) is the close.
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = closed.send(());
            });
        }
    });
    let started = Instant::now();
    let o = backend_check::run(Options {
        tokens: GOOD.iter().map(ToString::to_string).collect(),
        concurrency: 4,
        latency_calls: 100,
        deadline: Duration::from_secs(30),
        ..Options::new(&format!("http://{addr}/auth"))
    })
    .await
    .expect("a hanging backend is a finding, not a setup error");
    let took = started.elapsed();
    // At most four calls at once, none started after the first waited out the budget: one
    // 3 s round.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(took >= Duration::from_millis(2900), "waited out the budget: {took:?}");
    assert_eq!(case(&o, "in-time").verdict, Verdict::Fail);
    assert_eq!(case(&o, "decides").verdict, Verdict::Fail);
    assert!(failure(&o, "decides").contains("the backend stopped answering"));
    assert!(
        o.latency.is_none(),
        "the latency round is not run against a dead backend"
    );
    assert!(!o.summary.ok());
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=4).contains(&n), "{n} connections");
    for i in 0..n {
        tokio::time::timeout(Duration::from_secs(2), closed_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("connection {i} of {n} still open after the run"))
            .expect("a close");
    }
    acceptor.abort();
}

#[tokio::test]
async fn setup_errors_name_what_is_wrong() {
    let e = backend_check::run(Options::new("https://auth.example/x"))
        .await
        .unwrap_err();
    assert!(matches!(e, SetupError::BadUrl { .. }), "{e}");
    assert!(e.to_string().contains("only plain http://"), "{e}");
    let e = backend_check::run(Options::new("auth.example/x")).await.unwrap_err();
    assert!(e.to_string().contains("is not a backend URL"), "{e}");
    let e = backend_check::run(Options {
        concurrency: 0,
        ..Options::new("http://127.0.0.1:1/auth")
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("--concurrency 0 is out of range"), "{e}");
    // Nothing listens there: every call is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let free = listener.local_addr().expect("address");
    drop(listener);
    let e = backend_check::run(Options::new(&format!("http://{free}/auth")))
        .await
        .unwrap_err();
    assert!(matches!(e, SetupError::Unreachable { .. }), "{e}");
    let long = "x".repeat(5000);
    let e = backend_check::read_tokens(&format!("a\r\n\n{long}\n"), "tokens.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "tokens.txt:3: a token of 5000 bytes; a server refuses tokens over 4096 bytes without asking the backend"
    );
    assert_eq!(backend_check::read_tokens("a\r\n\nb\n", "t").expect("read"), ["a", "b"]);
}

fn usher(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("usher runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exits_0_1_2_and_writes_the_three_reports() {
    let dir = std::env::temp_dir().join(format!("usher-backend-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, "good-1\ngood-2\n").expect("write");
    let (json_path, junit_path, html_path) = (dir.join("r.json"), dir.join("r.xml"), dir.join("r.html"));

    let good = backend(Php).await;
    let url = format!("{}/auth", good.uri());
    let out = usher(&[
        "backend-check",
        &url,
        "--tokens",
        tokens.to_str().expect("utf-8"),
        "--latency-calls",
        "5",
        "--json",
        json_path.to_str().expect("utf-8"),
        "--junit",
        junit_path.to_str().expect("utf-8"),
        "--html",
        html_path.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("good-1"), "a site's token is printed: {stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).expect("JSON")).expect("parses");
    assert_eq!(report["counts"]["failed"], 0);
    assert!(
        !report.to_string().contains("good-1"),
        "a site's token is in the report"
    );
    let xml = std::fs::read_to_string(&junit_path).expect("JUnit");
    roxmltree::Document::parse(&xml).expect("well-formed JUnit");
    assert!(
        std::fs::read_to_string(&html_path)
            .expect("HTML")
            .contains("backend-check")
    );

    let bad = backend(allow(&[("X-AuthDuration", "soon")], None)).await;
    let out = usher(&[
        "backend-check",
        &format!("{}/auth", bad.uri()),
        "--tokens",
        tokens.to_str().expect("utf-8"),
        "--latency-calls",
        "0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  TIME-02,BAN-05 MUST  X-AuthDuration is a non-negative integer"),
        "{stdout}"
    );

    let out = usher(&["backend-check", "ftp://x/auth"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scheme `ftp`"));
    let missing = dir.join("missing.txt");
    let out = usher(&["backend-check", &url, "--tokens", missing.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read --tokens"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- --replay: the reference server in front of the backend, with synthetic viewers ----

use backend_check::replay::{self, Event, Replay, ReplayOptions, Source, What};

const REPLAY: Duration = Duration::from_secs(5);

/// Runs a replay of `REPLAY` with `tokens` and checks what every replay must show: it ended
/// within its bound, and the server, its RTMP port and the relay no longer accept connections.
async fn replay_with(server: &MockServer, tokens: &[&str]) -> Replay {
    let started = Instant::now();
    let r = replay::run(ReplayOptions {
        play_url: format!("{}/auth", server.uri()),
        publish_url: None,
        tokens: tokens.iter().map(ToString::to_string).collect(),
        stream: "news".to_string(),
        seconds: REPLAY,
    })
    .await
    .expect("the replay runs");
    let took = started.elapsed();
    // The viewers stop at the bound (earlier once all were refused twice); closing down takes
    // a moment more (the last reads of the session lists, the server's stop).
    assert!(took < REPLAY + Duration::from_secs(3), "the replay took {took:?}");
    let mut ports = vec![r.http, r.relay];
    ports.extend(r.rtmp);
    for addr in ports {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts connections after the replay:\n{}",
            timeline(&r)
        );
    }
    r
}

fn timeline(r: &Replay) -> String {
    r.events.iter().map(|e| format!("{e}\n")).collect()
}

fn events<'a>(r: &'a Replay, source: Source, proto: &str, ip: &str) -> Vec<&'a Event> {
    r.events
        .iter()
        .filter(|e| e.source == source && e.proto == proto && e.ip == ip)
        .collect()
}

#[tokio::test]
async fn replay_shows_the_recheck_a_short_x_authduration_causes() {
    let server = backend(allow(&[("X-AuthDuration", "1")], None)).await;
    let r = replay_with(&server, &["good-1"]).await;
    let t = timeline(&r);
    let calls = events(&r, Source::Backend, "hls", "127.0.0.2");
    let first = calls
        .iter()
        .find(|e| matches!(e.what, What::Allowed { recheck: false, .. }))
        .unwrap_or_else(|| panic!("no allowed new session for the first HLS viewer:\n{t}"));
    assert_eq!(first.token, "token #1 of --tokens", "{t}");
    assert!(first.at() < Duration::from_secs(2), "{t}");
    // The viewer asks every second; the grant lasts one: the next ask after it re-checks.
    let recheck = calls
        .iter()
        .find(|e| {
            matches!(
                e.what,
                What::Allowed {
                    recheck: true,
                    duration_s: 1,
                    ..
                }
            )
        })
        .unwrap_or_else(|| panic!("no re-check of the first HLS viewer:\n{t}"));
    let gap = recheck.at() - first.at();
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_millis(3000),
        "re-check {gap:?} after the new session:\n{t}"
    );
    // RTMP is re-checked in the background on the same schedule.
    assert!(
        events(&r, Source::Backend, "rtmp", "127.0.0.3")
            .iter()
            .any(|e| matches!(e.what, What::Allowed { recheck: true, .. })),
        "no re-check of the RTMP viewer:\n{t}"
    );
    let viewer = events(&r, Source::Viewer, "hls", "127.0.0.2");
    assert!(matches!(viewer.first().map(|e| &e.what), Some(What::Playing)), "{t}");
    assert!(t.contains("re-check: allowed, duration 1 s"), "{t}");
    assert!(!t.contains("good-1"), "a token value is shown:\n{t}");
}

#[tokio::test]
async fn replay_shows_the_first_viewer_kicked_when_the_second_opens() {
    let server = backend(allow(
        &[("X-AuthDuration", "30"), ("X-UserId", "u1"), ("X-Max-Sessions", "1")],
        None,
    ))
    .await;
    let r = replay_with(&server, &["good-1"]).await;
    let t = timeline(&r);
    let opened = |proto: &str, ip: &str| {
        events(&r, Source::Server, proto, ip)
            .into_iter()
            .find(|e| matches!(e.what, What::Opened { .. }))
            .unwrap_or_else(|| panic!("no session opened for {proto} {ip}:\n{t}"))
            .at()
    };
    let kicked = |proto: &str, ip: &str| {
        events(&r, Source::Server, proto, ip)
            .into_iter()
            .find(|e| matches!(&e.what, What::Closed { reason } if reason == "kicked"))
            .unwrap_or_else(|| panic!("{proto} {ip} was not kicked:\n{t}"))
            .at()
    };
    // HLS .2 first, RTMP .3 a second later kicks it, HLS .4 a second after kicks RTMP.
    let rtmp_opened = opened("rtmp", "127.0.0.3");
    let first_kicked = kicked("hls", "127.0.0.2");
    assert!(opened("hls", "127.0.0.2") < rtmp_opened, "{t}");
    assert!(
        first_kicked + Duration::from_millis(50) >= rtmp_opened
            && first_kicked < rtmp_opened + Duration::from_millis(500),
        "the first viewer was not kicked when the second opened:\n{t}"
    );
    let rtmp_kicked = kicked("rtmp", "127.0.0.3");
    assert!(
        rtmp_kicked + Duration::from_millis(50) >= opened("hls", "127.0.0.4"),
        "{t}"
    );
    // The kicked RTMP player saw its connection end; the kicked HLS player is refused from its
    // ban, without a backend call.
    assert!(
        events(&r, Source::Viewer, "rtmp", "127.0.0.3")
            .iter()
            .any(|e| matches!(e.what, What::Ended { .. })),
        "{t}"
    );
    assert!(
        events(&r, Source::Viewer, "hls", "127.0.0.2").iter().any(|e| matches!(
            e.what,
            What::Refused {
                backend_asked: false,
                ..
            }
        )),
        "{t}"
    );
    assert!(t.contains("kicked (X-Max-Sessions"), "{t}");
}

#[tokio::test]
async fn replay_shows_a_refusal_then_a_cached_refusal() {
    let server = MockServer::start().await;
    Mock::given(path("/auth"))
        .respond_with(ResponseTemplate::new(403).insert_header("X-AuthDuration", "30"))
        .mount(&server)
        .await;
    let r = replay_with(&server, &[]).await;
    let t = timeline(&r);
    for (proto, ip) in [("hls", "127.0.0.2"), ("rtmp", "127.0.0.3"), ("hls", "127.0.0.4")] {
        let seen: Vec<&What> = events(&r, Source::Viewer, proto, ip).iter().map(|e| &e.what).collect();
        assert!(
            matches!(
                seen.as_slice(),
                [
                    What::Refused {
                        backend_asked: true,
                        ..
                    },
                    What::Refused {
                        backend_asked: false,
                        ..
                    }
                ]
            ),
            "{proto} {ip}: {seen:?}\n{t}"
        );
        assert_eq!(events(&r, Source::Backend, proto, ip).len(), 1, "{proto} {ip}:\n{t}");
        assert!(events(&r, Source::Server, proto, ip).is_empty(), "{t}");
    }
    // What the backend heard agrees: one call per viewer, the refusal of each retry cached.
    let mut heard: HashMap<(String, String), usize> = HashMap::new();
    for req in server.received_requests().await.unwrap_or_default() {
        let q = query(&req);
        *heard
            .entry((
                q.get("proto").cloned().unwrap_or_default(),
                q.get("ip").cloned().unwrap_or_default(),
            ))
            .or_default() += 1;
    }
    assert!(heard.values().all(|n| *n == 1), "{heard:?}");
    assert_eq!(heard.len(), 6, "two generated tokens, three viewers each: {heard:?}");
    assert!(t.contains("generated token #2"), "{t}");
    assert!(t.contains("cached refusal"), "{t}");
}

#[tokio::test]
async fn a_replay_against_a_backend_that_hangs_still_ends_within_its_bound() {
    let server = MockServer::start().await;
    Mock::given(path("/auth"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    // replay_with asserts the bound and that nothing is left listening.
    let r = replay_with(&server, &["good-1"]).await;
    let t = timeline(&r);
    assert!(
        r.events
            .iter()
            .any(|e| matches!(&e.what, What::NoDecision { reason, .. } if reason.contains("stopped waiting"))),
        "{t}"
    );
    assert!(!r.events.iter().any(|e| matches!(e.what, What::Playing)), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_the_replay_timeline_and_puts_it_in_the_json_report() {
    let dir = std::env::temp_dir().join(format!("usher-backend-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, "good-1\ngood-2\n").expect("write");
    let json_path = dir.join("r.json");
    let server = backend(Php).await;
    let url = format!("{}/auth", server.uri());
    let tokens = tokens.to_str().expect("utf-8");
    let json = json_path.to_str().expect("utf-8");
    let args = [
        "backend-check",
        &url,
        "--tokens",
        tokens,
        "--latency-calls",
        "0",
        "--replay",
        "--replay-seconds",
        "4s",
        "--json",
        json,
    ];
    let out = usher(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("127.0.0.2  token #1 of --tokens   server   session opened (user 1)"),
        "{stdout}"
    );
    assert!(stdout.contains("token #2 of --tokens"), "{stdout}");
    assert!(!stdout.contains("good-1"), "a site's token is printed: {stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).expect("JSON")).expect("parses");
    let events = report["replay"]["events"]
        .as_array()
        .expect("the timeline is in the report");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "opened" && e["source"] == "server" && e["proto"] == "rtmp"),
        "{events:#?}"
    );
    assert!(
        !report.to_string().contains("good-1"),
        "a site's token is in the report"
    );

    let mut too_long = args.to_vec();
    too_long[8] = "61s";
    let out = usher(&too_long);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replay-seconds 61 is out of range 4..=60"));
    let _ = std::fs::remove_dir_all(&dir);
}
