//! Script backends (SCR, AMB-19), the configurator (CZR) and template precedence (CFG-04/05)
//! against real clients over real sockets: reqwest and ffprobe over HLS, ffprobe over HTTP
//! MPEG-TS, RTSP and RTMP, a wiremock middleware behind a Lua script.
//!
//! The server is started from a configuration *file text* so the parser's new directives are
//! exercised too. Each test starts its own server on random ports.
//!
//! * a vendor-style Lua script admits a listed token and refuses the rest on every protocol;
//! * a script that asks an HTTP backend through `http.get` passes the middleware's user id on;
//! * a script that loops forever, one that allocates without bound and one that throws each give
//!   "no decision" (a new client is refused) with a log line naming the script, and the server
//!   answers other streams within 1 s meanwhile;
//! * configurator precedence: a whitelisted IP with a blacklisted token is denied; unreachable
//!   backends admit with `allow default` and refuse without it;
//! * a stream's own `on_play` wins over its template's, `on_play true` opens one stream.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{TempDir, ffprobe_codecs as ffprobe};
use tracing_subscriber::fmt::MakeWriter;
use usher_server::RunningServer;
use usher_server::config::parse_config;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Log lines of the whole test binary (one global subscriber), searched by script path.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let _ = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init();
        logs
    })
}

impl Logs {
    /// Waits up to 2 s for a line holding every needle; the line, or a panic with the log.
    async fn line_with(&self, needles: &[&str]) -> String {
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let text = String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            if Instant::now() > until {
                panic!("no log line with {needles:?}; log:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The vendor's documented shape: the script reads `req`, answers `true, {…}` or
/// `false, {code = …}`.
const AUTH_LUA: &str = r#"
-- Tokens sold to subscribers; anything else is refused.
local subscribers = { good = "user-1", vip = "user-2" }
local user = subscribers[req.token]
if user then
  return true, { user_id = user, max_sessions = 2, auth_time = 60 }
end
return false, { code = 403 }
"#;

/// Asks a middleware, as in the vendor's "two backends" example. `BACKEND` is replaced.
const PROXY_LUA: &str = r#"
local url = "BACKEND/check?" .. http.qs_encode({ token = req.token, name = req.name, ip = req.ip })
local answer, err = http.get(url)
if not answer then
  error("middleware unreachable: " .. tostring(err))
end
if answer.code == 200 then
  return true, { user_id = answer.headers["x-userid"], auth_time = tonumber(answer.headers["x-authduration"]) }
end
return false, { code = 403 }
"#;

const LOOP_LUA: &str = "-- never returns\nwhile true do end\n";
const ALLOC_LUA: &str = "local t, i = {}, 0\nwhile true do i = i + 1; t[i] = string.rep('x', 4096) .. i end\n";
const THROW_LUA: &str = "local config = nil\n\nreturn config.allowed -- line 3\n";
const DENY_ALL_LUA: &str = "return false\n";

struct Fixture {
    server: RunningServer,
    middleware: MockServer,
    dir: TempDir,
}

impl Fixture {
    fn http(&self) -> String {
        format!("http://{}", self.server.http_addr())
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn start() -> Fixture {
    logs();
    let dir = TempDir::new("scripts");
    let middleware = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/check"))
        .and(query_param("token", "good"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-UserId", "mw-7")
                .insert_header("X-AuthDuration", "30"),
        )
        .mount(&middleware)
        .await;
    Mock::given(method("GET"))
        .and(path("/check"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&middleware)
        .await;
    for (name, text) in [
        ("auth.lua", AUTH_LUA.to_string()),
        ("proxy.lua", PROXY_LUA.replace("BACKEND", &middleware.uri())),
        ("loop.lua", LOOP_LUA.to_string()),
        ("alloc.lua", ALLOC_LUA.to_string()),
        ("throw.lua", THROW_LUA.to_string()),
        ("deny_all.lua", DENY_ALL_LUA.to_string()),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write script");
    }
    let d = dir.path().display();
    let (down1, down2) = (closed_port(), closed_port());
    let text = format!(
        r#"
http 127.0.0.1:0;
edit_auth admin pw;
rtmp 127.0.0.1:0;
rtsp 127.0.0.1:0;

stream lua {{ input fake://fake; on_play {d}/auth.lua; }}
stream proxy {{ input fake://fake; on_play {d}/proxy.lua; }}
stream loop {{ input fake://fake; on_play {d}/loop.lua; }}
stream alloc {{ input fake://fake; on_play {d}/alloc.lua; }}
stream throw {{ input fake://fake; on_play {d}/throw.lua; }}
stream missing {{ input fake://fake; on_play {d}/no-such-script.lua; }}
stream plain {{ input fake://fake; }}

auth_backend office {{
  deny token stolen;
  allow ip 127.0.0.2;
}}
auth_backend down_default {{
  backend http://127.0.0.1:{down1}/auth;
  backend http://127.0.0.1:{down2}/auth;
  allow default;
}}
auth_backend down_strict {{
  backend http://127.0.0.1:{down1}/auth;
  backend http://127.0.0.1:{down2}/auth;
}}
stream czr {{ input fake://fake; on_play auth://office; }}
stream czr_default {{ input fake://fake; on_play auth://down_default; }}
stream czr_strict {{ input fake://fake; on_play auth://down_strict; }}

template live {{ prefix live; input fake://fake; on_play {d}/deny_all.lua; }}
stream live/open {{ on_play true; }}
stream live/own {{ on_play {d}/auth.lua; }}
stream live/inherits {{ }}
"#
    );
    let config = parse_config(&text, "script_backends.conf").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let server = support::start(config).await;
    Fixture {
        server,
        middleware,
        dir,
    }
}

fn client(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse().expect("ip literal")))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// GETs the HLS playlist of `stream` from `ip`; (status, body).
async fn playlist(f: &Fixture, ip: &str, stream: &str, token: &str) -> (u16, String) {
    let url = format!("{}/{stream}/index.m3u8?token={token}", f.http());
    let response = client(ip).get(&url).send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_lua_script_admits_and_refuses_hls_viewers() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let f = start().await;
    let (status, body) = playlist(&f, "127.0.0.1", "lua", "good").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("#EXTM3U"), "{body}");
    // A segment of the admitted session plays too.
    let segment = body
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("a segment URI");
    let base = format!("{}/lua/", f.http());
    let segment_url = if segment.starts_with("http") {
        segment.to_string()
    } else {
        format!("{base}{segment}")
    };
    let seg = client("127.0.0.1").get(&segment_url).send().await.expect("segment");
    assert_eq!(seg.status().as_u16(), 200, "{segment_url}");
    assert!(seg.bytes().await.expect("body").len() >= 188);

    let (status, body) = playlist(&f, "127.0.0.1", "lua", "bad").await;
    assert_eq!(status, 403, "{body}");

    let session = f
        .server
        .core()
        .sessions()
        .into_iter()
        .find(|s| s.name == "lua" && s.token == "good")
        .expect("the admitted session is listed");
    assert_eq!(session.user_id.as_deref(), Some("user-1"));
    assert_eq!(session.max_sessions, Some(2));

    let (ok, codecs, stderr) = ffprobe(&format!("{}/lua/index.m3u8?token=vip", f.http()), &[]).await;
    assert!(ok, "ffprobe failed on HLS with an allowed token: {stderr}");
    assert_eq!(codecs, ["aac", "h264"]);
    let (ok, _, _) = ffprobe(&format!("{}/lua/index.m3u8?token=bad", f.http()), &[]).await;
    assert!(!ok, "ffprobe must fail with a refused token");
    f.server.stopping().cancel();
}

#[tokio::test]
async fn a_lua_script_decides_for_mpegts_rtsp_and_rtmp() {
    if !support::have(&[support::FFPROBE]) {
        return;
    }
    let f = start().await;
    let rtsp = f.server.rtsp_addr().expect("rtsp listener");
    let rtmp = f.server.rtmp_addr().expect("rtmp listener");
    let cases: [(&str, String, String, Vec<&str>); 3] = [
        (
            "HTTP MPEG-TS",
            format!("{}/lua/mpegts?token=good", f.http()),
            format!("{}/lua/mpegts?token=bad", f.http()),
            vec!["-rw_timeout", "8000000"],
        ),
        (
            "RTSP",
            format!("rtsp://{rtsp}/lua?token=good"),
            format!("rtsp://{rtsp}/lua?token=bad"),
            vec!["-rtsp_transport", "tcp", "-timeout", "8000000"],
        ),
        (
            "RTMP",
            format!("rtmp://{rtmp}/static/lua?token=good"),
            format!("rtmp://{rtmp}/static/lua?token=bad"),
            vec!["-rw_timeout", "8000000"],
        ),
    ];
    for (proto, good, bad, extra) in cases {
        let (ok, codecs, stderr) = ffprobe(&good, &extra).await;
        assert!(ok, "ffprobe failed over {proto} with an allowed token: {stderr}");
        assert!(codecs.iter().any(|c| c == "h264"), "{proto}: {codecs:?}");
        let (ok, _, stderr) = ffprobe(&bad, &extra).await;
        assert!(!ok, "ffprobe must fail over {proto} with a refused token: {stderr}");
    }
}

#[tokio::test]
async fn a_script_asks_an_http_backend_through_http_get() {
    let f = start().await;
    let (status, body) = playlist(&f, "127.0.0.1", "proxy", "good").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = playlist(&f, "127.0.0.1", "proxy", "bad").await;
    assert_eq!(status, 403);
    let calls = f.middleware.received_requests().await.expect("recording on");
    let good = calls
        .iter()
        .find(|r| r.url.query_pairs().any(|(k, v)| k == "token" && v == "good"))
        .expect("the script asked the middleware for token good");
    let params: std::collections::HashMap<String, String> = good.url.query_pairs().into_owned().collect();
    assert_eq!(params["name"], "proxy");
    assert_eq!(params["ip"], "127.0.0.1");
    let session = f
        .server
        .core()
        .sessions()
        .into_iter()
        .find(|s| s.name == "proxy" && s.token == "good")
        .expect("session listed");
    assert_eq!(
        session.user_id.as_deref(),
        Some("mw-7"),
        "the middleware's X-UserId came through"
    );
}

#[tokio::test]
async fn runaway_scripts_are_contained_and_the_server_keeps_serving() {
    let f = start().await;
    // Warm the plain stream so its first request does not count media start-up.
    assert_eq!(playlist(&f, "127.0.0.1", "plain", "w").await.0, 200);
    let started = Instant::now();
    let mut runaways = Vec::new();
    for (i, stream) in ["loop", "alloc", "throw", "missing"].into_iter().enumerate() {
        let url = format!("{}/{stream}/index.m3u8?token=t{i}", f.http());
        runaways.push(tokio::spawn(async move {
            let response = client("127.0.0.1").get(&url).send().await.expect("answer");
            (stream, response.status().as_u16(), Instant::now())
        }));
    }
    // While they run, other viewers are served promptly.
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while runaways.iter().any(|t| !t.is_finished()) && started.elapsed() < Duration::from_secs(10) {
        let t0 = Instant::now();
        let (status, _) = playlist(&f, "127.0.0.1", "plain", &format!("p{probes}")).await;
        assert_eq!(status, 200);
        worst = worst.max(t0.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        probes >= 10,
        "the loop script must keep running for a while ({probes} probes)"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a plain request took {worst:?} during the runaway scripts"
    );
    for task in runaways {
        let (stream, status, done) = task.await.expect("client task");
        assert_eq!(status, 403, "{stream}: no decision refuses a new client");
        let took = done - started;
        assert!(took < Duration::from_millis(4500), "{stream} answered after {took:?}");
    }
    let cases = [
        ("loop.lua", "time budget"),
        ("alloc.lua", "memory"),
        ("throw.lua", "throw.lua:3:"),
        ("no-such-script.lua", "does not exist"),
    ];
    for (script, reason) in cases {
        let line = logs()
            .line_with(&[&f.dir.path().join(script).display().to_string(), reason])
            .await;
        assert!(line.contains("no decision"), "{line}");
    }
    // The same runaway stream still refuses the next new client (nothing was cached).
    assert_eq!(playlist(&f, "127.0.0.1", "throw", "again").await.0, 403);
    assert_eq!(
        playlist(&f, "127.0.0.1", "lua", "good").await.0,
        200,
        "good scripts still work"
    );
    eprintln!("plain stream during runaway scripts: worst {worst:?} over {probes} requests");
}

#[tokio::test]
async fn configurator_precedence_over_real_hls() {
    let f = start().await;
    // CZR-02: the whitelisted address with a blacklisted token is denied (token rules first).
    assert_eq!(playlist(&f, "127.0.0.2", "czr", "stolen").await.0, 403);
    assert_eq!(playlist(&f, "127.0.0.2", "czr", "fine").await.0, 200);
    // No rule matches, no backends, no allow default: refused.
    assert_eq!(playlist(&f, "127.0.0.3", "czr", "fine").await.0, 403);
    // CZR-03: every backend unreachable.
    assert_eq!(
        playlist(&f, "127.0.0.4", "czr_default", "t").await.0,
        200,
        "allow default admits"
    );
    assert_eq!(
        playlist(&f, "127.0.0.4", "czr_strict", "t").await.0,
        403,
        "without it: refused"
    );
    logs()
        .line_with(&["configurator rule decided", "deny token", "127.0.0.2"])
        .await;
}

#[tokio::test]
async fn blocks_put_through_the_api_take_effect_at_the_next_request() {
    let f = start().await;
    let api = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{}/streamer/api/v3/{path}", f.http()))
            .basic_auth("admin", Some("pw"))
    };
    let stream = serde_json::json!({"inputs": [{"url": "fake://fake"}], "on_play": {"url": "auth://later"}});
    let put = api(reqwest::Method::PUT, "streams/api_stream")
        .json(&stream)
        .send()
        .await
        .expect("answer");
    assert_eq!(put.status().as_u16(), 200, "{}", put.text().await.unwrap_or_default());
    // No block of that name yet: no decision, logged with the target.
    assert_eq!(playlist(&f, "127.0.0.1", "api_stream", "t1").await.0, 403);
    logs()
        .line_with(&["auth://later", "no auth_backend block has this name"])
        .await;

    let bad = serde_json::json!({"allow_ips": ["127.0.0.1", "300.0.0.1"]});
    let answer = api(reqwest::Method::PUT, "auth_backends/later")
        .json(&bad)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 400);
    let text = answer.text().await.unwrap_or_default();
    assert!(text.contains("allow_ips[1]"), "{text}");

    let block = serde_json::json!({"deny_tokens": ["stolen"], "allow_default": true});
    let answer = api(reqwest::Method::PUT, "auth_backends/later")
        .json(&block)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 200);
    let json: Value = answer.json().await.expect("JSON");
    assert_eq!(json["deny_tokens"], serde_json::json!(["stolen"]));
    assert_eq!(
        playlist(&f, "127.0.0.1", "api_stream", "t2").await.0,
        200,
        "allow default admits"
    );
    assert_eq!(playlist(&f, "127.0.0.1", "api_stream", "stolen").await.0, 403);

    let listed: Value = api(reqwest::Method::GET, "auth_backends")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = listed["auth_backends"]
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["down_default", "down_strict", "later", "office"]);
    let deleted = api(reqwest::Method::DELETE, "auth_backends/later")
        .send()
        .await
        .expect("answer");
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(
        playlist(&f, "127.0.0.1", "api_stream", "t3").await.0,
        403,
        "deleted: no decision again"
    );
}

#[tokio::test]
async fn a_stream_on_play_wins_over_its_template() {
    let f = start().await;
    assert_eq!(
        playlist(&f, "127.0.0.1", "live/open", "any").await.0,
        200,
        "on_play true opens the stream"
    );
    assert_eq!(
        playlist(&f, "127.0.0.1", "live/own", "good").await.0,
        200,
        "its own script admits"
    );
    assert_eq!(playlist(&f, "127.0.0.1", "live/own", "bad").await.0, 403);
    assert_eq!(
        playlist(&f, "127.0.0.1", "live/inherits", "good").await.0,
        403,
        "no on_play of its own: the template's script refuses"
    );
    assert_eq!(
        playlist(&f, "127.0.0.1", "live/made", "good").await.0,
        403,
        "template-made stream"
    );
}

#[tokio::test]
async fn an_auth_target_naming_no_block_is_a_config_error() {
    let err = parse_config("stream s {\n  on_play auth://nowhere;\n}\n", "u.conf").expect_err("refused");
    assert_eq!((err.line, err.column), (2, 11), "{err}");
    assert!(
        err.to_string().contains("auth://nowhere names no auth_backend block"),
        "{err}"
    );
}
