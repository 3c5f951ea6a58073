//! Tokens, admin tokens and publish passwords are credentials: the server's log never holds
//! one whole (docs/security.md). Every log line of every crate, at TRACE, is captured while
//! viewers are allowed, denied, kicked and refused for lack of a decision over HLS, HTTP
//! MPEG-TS, RTSP and RTMP (a token in the stream key and in the app), a Lua script fails with
//! the token in its URL, a publisher gives a wrong password, and the management API lists,
//! re-checks and closes sessions. URLs that carry credentials are logged too: a refused
//! Referer with user information and a token, a backend URL with a password and a key, a
//! redirect's Location, an override's input URL, an RTMP `tcUrl` and an RTSP URL with user
//! information. Then no secret may appear in the capture; the kick's log line shows a long
//! token's first four characters only and a short token not at all (`crate::redact`).
//!
//! Its own test binary: the capture is the process's global subscriber.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Capture, admin, as_admin, backend_with, client, http_auth, rtmp_handshake, stream_of, text_of};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_server::config::{AuthSpec, AuthTarget, Config};
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, ResponseTemplate};

const ALLOW: &str = "tokALLOW-0123456789";
const DENY: &str = "tokDENY-0123456789";
const KICK_OLD: &str = "tokKICK1-0123456789";
const KICK_NEW: &str = "tokKICK2-0123456789";
const DOWN: &str = "tokDOWN-0123456789";
const MPEGTS: &str = "tokMPEGTS-0123456789";
const RTSP: &str = "tokRTSP-0123456789";
const RTMP_KEY: &str = "tokRTMPKEY-0123456789";
const RTMP_APP: &str = "tokRTMPAPP-0123456789";
const SCRIPT: &str = "tokSCRIPT-0123456789";
const PASSWORD: &str = "pubPASSWORD-0123456789";
const WRONG_PASSWORD: &str = "pubWRONG-0123456789";
/// Tokens of four characters or fewer: hidden whole (they used to be logged whole).
const SHORT_OLD: &str = "zQ9x";
const SHORT_NEW: &str = "zQ8";
/// The Referer: user information and a token in the query.
const REFERER_PASSWORD: &str = "hunter2";
const REFERER_TOKEN: &str = "LEAKME123456";
const BACKEND_PASSWORD: &str = "BACKENDPW-0123";
const BACKEND_KEY: &str = "BACKENDKEY-0123";
const REDIRECT: &str = "tokREDIRECT-0123456789";
const REDIRECT_SECRET: &str = "REDIRSECRET-0123";
const OVERRIDE: &str = "tokOVERRIDE-0123456789";
const INPUT_PASSWORD: &str = "INPUTPW-0123";
const INPUT_TOKEN: &str = "INPUTTOK-0123";
const TCURL_PASSWORD: &str = "TCURLPW-0123";
const TCURL_TOKEN: &str = "TCURLTOK-0123";
const RTSP_PASSWORD: &str = "RTSPPW-0123";

/// Plays `app`/`key` over RTMP until the first video message or a refusal, with `tc_url` as
/// the connect's tcUrl if given.
async fn rtmp_play(addr: SocketAddr, app: &str, key: &str, tc_url: Option<&str>) {
    let (mut socket, rest) = rtmp_handshake(addr).await;
    let mut buf = vec![0u8; 64 * 1024];
    let mut config = ClientSessionConfig::new();
    config.tc_url = tc_url.map(str::to_string);
    let (mut session, _) = ClientSession::new(config).unwrap();
    let mut pending = vec![session.request_connection(app.into()).unwrap()];
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
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                input = buf[..n].to_vec();
            }
            let Ok(results) = session.handle_input(&input) else {
                return;
            };
            input.clear();
            for result in results {
                match result {
                    ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                        pending.push(session.request_playback(key.into()).unwrap());
                    }
                    ClientSessionResult::RaisedEvent(ClientSessionEvent::VideoDataReceived { .. }) => return,
                    other => pending.push(other),
                }
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "RTMP play of {app}/{key} neither played nor ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_is_ever_logged_whole() {
    let capture = Capture::install(tracing::Level::TRACE);

    let by_token = |token: &str, response: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(query_param("token", token.to_string()))
            .respond_with(response)
    };
    let kicked = || {
        ResponseTemplate::new(200)
            .insert_header("X-UserId", "kicked-user")
            .insert_header("X-Max-Sessions", "1")
    };
    let short_kicked = || {
        ResponseTemplate::new(200)
            .insert_header("X-UserId", "short-user")
            .insert_header("X-Max-Sessions", "1")
    };
    let backend = backend_with([
        by_token(DENY, ResponseTemplate::new(403)),
        by_token(KICK_OLD, kicked()),
        by_token(KICK_NEW, kicked()),
        by_token(SHORT_OLD, short_kicked()),
        by_token(SHORT_NEW, short_kicked()),
        by_token(
            REDIRECT,
            ResponseTemplate::new(302).insert_header(
                "Location",
                format!("http://cdn.example/x.m3u8?token={REDIRECT_SECRET}").as_str(),
            ),
        ),
        by_token(
            OVERRIDE,
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"config": {"inputs": [
                {"url": format!("rtmp://user:{INPUT_PASSWORD}@cam.example/live?token={INPUT_TOKEN}")}
            ]}})),
        ),
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(200)),
    ])
    .await;
    let script_dir = std::env::temp_dir().join(format!("usher-logs-{}", std::process::id()));
    std::fs::create_dir_all(&script_dir).unwrap();
    let script = script_dir.join("auth.lua");
    std::fs::write(
        &script,
        "local r, err = http.get('http://127.0.0.1:1/mw?token=' .. req.token)\nif not r then error(err) end\nreturn true\n",
    )
    .unwrap();
    let on_play = || Some(http_auth(&backend));
    let mut locked = http_auth(&backend);
    locked.domains = vec!["good.example".into()];
    let mut publish = stream_of("pub", "publish://", None);
    publish.password = Some(PASSWORD.into());
    let server = usher_server::Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        rtsp: Some("127.0.0.1:0".parse().unwrap()),
        rtmp: Some("127.0.0.1:0".parse().unwrap()),
        edit_auth: admin(),
        streams: vec![
            stream_of("s1", "fake://fake", on_play()),
            stream_of(
                "down",
                "fake://fake",
                Some(AuthSpec::new(AuthTarget::Http(format!(
                    "http://user:{BACKEND_PASSWORD}@127.0.0.1:1/auth?key={BACKEND_KEY}"
                )))),
            ),
            stream_of("locked", "fake://fake", Some(locked)),
            stream_of(
                "scripted",
                "fake://fake",
                Some(AuthSpec::new(AuthTarget::Script(script.to_string_lossy().into_owned()))),
            ),
            publish,
        ],
        ..Config::default()
    })
    .await
    .unwrap();
    let http = |rest: &str| format!("http://{}/{rest}", server.http_addr());
    let get = |url: String| async move { client().get(url).send().await.unwrap().status().as_u16() };

    // HLS: allowed (playlist and segment), denied, kicked, no decision.
    assert_eq!(get(http(&format!("s1/index.m3u8?token={ALLOW}"))).await, 200);
    let playlist = text_of(http(&format!("s1/index.m3u8?token={ALLOW}"))).await;
    let segment = playlist.lines().find(|l| l.starts_with("segment-")).unwrap();
    assert_eq!(get(http(&format!("s1/{segment}"))).await, 200);
    assert_eq!(get(http(&format!("s1/index.m3u8?token={DENY}"))).await, 403);
    assert_eq!(get(http(&format!("s1/index.m3u8?token={DENY}"))).await, 403, "banned");
    assert_eq!(get(http(&format!("s1/index.m3u8?token={KICK_OLD}"))).await, 200);
    assert_eq!(get(http(&format!("s1/index.m3u8?token={KICK_NEW}"))).await, 200);
    assert_eq!(
        get(http(&format!("s1/index.m3u8?token={KICK_OLD}"))).await,
        403,
        "kicked"
    );
    assert_eq!(get(http(&format!("down/index.m3u8?token={DOWN}"))).await, 403);
    // Short tokens, kicked: the kick's line names the token.
    assert_eq!(get(http(&format!("s1/index.m3u8?token={SHORT_OLD}"))).await, 200);
    assert_eq!(get(http(&format!("s1/index.m3u8?token={SHORT_NEW}"))).await, 200);
    assert_eq!(
        get(http(&format!("s1/index.m3u8?token={SHORT_OLD}"))).await,
        403,
        "kicked"
    );
    // The refused Referer.
    let referer = format!("http://user:{REFERER_PASSWORD}@evil.example/player?token={REFERER_TOKEN}");
    let status = client()
        .get(http("locked/index.m3u8?token=ref-0123456789"))
        .header("Referer", &referer)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "refused by the domain lock");
    // A redirect whose Location carries a token, an override whose input carries credentials.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let status = no_follow
        .get(http(&format!("s1/index.m3u8?token={REDIRECT}")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 302);
    assert_eq!(get(http(&format!("s1/index.m3u8?token={OVERRIDE}"))).await, 200);
    assert_eq!(get(http(&format!("scripted/index.m3u8?token={SCRIPT}"))).await, 403);
    // HTTP MPEG-TS: some bytes, then the viewer leaves.
    let mut response = client()
        .get(http(&format!("s1/mpegts?token={MPEGTS}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.chunk().await;
    drop(response);
    // Publishing with a wrong password.
    let status = client()
        .put(http(&format!("pub/mpegts?password={WRONG_PASSWORD}")))
        .body(Vec::new())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);

    // RTSP.
    let mut rtsp = TcpStream::connect(server.rtsp_addr().unwrap()).await.unwrap();
    let describe = format!(
        "DESCRIBE rtsp://user:{RTSP_PASSWORD}@{}/s1?token={RTSP} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: test\r\n\r\n",
        server.rtsp_addr().unwrap()
    );
    rtsp.write_all(describe.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(10), rtsp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("RTSP/1.0 200"));
    drop(rtsp);

    // RTMP: the token in the stream key, and in the app.
    let rtmp = server.rtmp_addr().unwrap();
    rtmp_play(rtmp, "static", &format!("s1?token={RTMP_KEY}"), None).await;
    rtmp_play(rtmp, &format!("static?token={RTMP_APP}"), "s1", None).await;
    rtmp_play(rtmp, &format!("nowhere?token={RTMP_APP}"), "", None).await;
    let tc_url = format!("rtmp://user:{TCURL_PASSWORD}@{rtmp}/static?token={TCURL_TOKEN}");
    rtmp_play(rtmp, "static", &format!("s1?token={RTMP_KEY}"), Some(&tc_url)).await;

    // The management API: list, re-check, admin token, close.
    let api = |path: &str| format!("http://{}/streamer/api/v3/{path}", server.http_addr());
    let sessions: serde_json::Value = as_admin(client().get(api("sessions"))).await.json().await.unwrap();
    let reauth = as_admin(client().post(api("sessions/reauth?name=s1"))).await;
    assert_eq!(reauth.status(), 200);
    let adm: serde_json::Value = as_admin(client().post(api("admin_view_token")))
        .await
        .json()
        .await
        .unwrap();
    let adm = adm["token"].as_str().unwrap().to_string();
    assert_eq!(get(http(&format!("s1/index.m3u8?token={adm}"))).await, 200);
    for s in sessions["sessions"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let status = as_admin(client().delete(api(&format!("sessions/{id}")))).await.status();
        assert_eq!(status, 204);
    }
    // Let background work (re-checks, closes) log too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&script_dir);

    let log = capture.text();
    let secrets = [
        ALLOW,
        DENY,
        KICK_OLD,
        KICK_NEW,
        DOWN,
        MPEGTS,
        RTSP,
        RTMP_KEY,
        RTMP_APP,
        SCRIPT,
        PASSWORD,
        WRONG_PASSWORD,
        SHORT_OLD,
        SHORT_NEW,
        REFERER_PASSWORD,
        REFERER_TOKEN,
        BACKEND_PASSWORD,
        BACKEND_KEY,
        REDIRECT,
        REDIRECT_SECRET,
        OVERRIDE,
        INPUT_PASSWORD,
        INPUT_TOKEN,
        TCURL_PASSWORD,
        TCURL_TOKEN,
        RTSP_PASSWORD,
        adm.as_str(),
    ];
    let leaks: HashMap<&str, Vec<&str>> = secrets
        .iter()
        .map(|s| (*s, log.lines().filter(|l| l.contains(s)).collect::<Vec<_>>()))
        .filter(|(_, lines)| !lines.is_empty())
        .collect();
    assert!(leaks.is_empty(), "credentials in the log: {leaks:#?}");
    assert!(
        log.contains("token=tokK…") || log.contains("token=\"tokK…\""),
        "the kick names a long token's first four characters"
    );
    let short_kick = log
        .lines()
        .find(|l| l.contains("exceeded session limit") && l.contains("short-user"))
        .expect("the short token's kick is logged");
    assert!(
        short_kick.contains("token=…"),
        "a short token is hidden whole: {short_kick}"
    );
    let refused = log
        .lines()
        .find(|l| l.contains("refused by the domain lock"))
        .expect("the refused Referer is logged");
    assert!(
        refused.contains("referer=http://…@evil.example/player?token=…"),
        "the Referer is logged redacted, host and path kept: {refused}"
    );
    // The flows reached the log sites that see credentials.
    for expected in [
        "session opened",
        "backend denied; banned",
        "exceeded session limit",
        "backend gave no decision",
        "script backend gave no decision",
        "RTMP connect",
        "RTSP play admitted",
        "publish refused: wrong or missing password",
        "admitted with an admin view token",
        "session closed through the API",
        "refused by the domain lock",
        "config override rejected",
        "backend answered",
    ] {
        assert!(log.contains(expected), "no log line says `{expected}`");
    }
}
