//! Entry points for the fuzzers (`server/fuzz/`, docs/security.md): every parser that reads
//! bytes from outside the server, each taking arbitrary input and checking what must hold for
//! any input, beyond "does not panic". Not part of the server's API; the regression tests in
//! `server/tests/fuzz_regressions.rs` replay what the fuzzers found through the same functions.
//!
//! | entry | parser | what faces the outside |
//! |---|---|---|
//! | [`config`] | `parse_config` and the printer | the configuration file |
//! | [`backend_answer`] | `auth::backend::interpret` | a backend's status, headers and body |
//! | [`http_target`] | HLS/MPEG-TS path and query, segment URIs | a player's request line |
//! | [`http_request`] | the whole HTTP router: play, ingest, DVR, the management API | any HTTP request |
//! | [`api_body`] | `stream_from_api_json`, `AuthBackendConfig::from_api_json` | management API bodies |
//! | [`rtsp`] | RTSP framing, request URL, `Transport` | an RTSP client's bytes |
//! | [`rtmp`] | the inbound guard and `rml_rtmp` behind it | an RTMP client's bytes |
//! | [`ts_ingest`] | `TsIngest` | an MPEG-TS publisher's upload |

use crate::auth::backend::{Answer, MAX_BODY_BYTES, interpret};
use crate::config::{AuthBackendConfig, parse_config, stream_from_api_json, stream_to_api_json};
use crate::media::TsIngest;

/// Splits `data` at the first `0xFF` bytes (at most `n` pieces): a cheap way for one fuzz input
/// to carry several fields.
fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == 0xFF).collect()
}

/// Chunk sizes taken from the input's first byte, so the fuzzer explores splits of the stream.
fn chunked(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (usize::from(first % 64) + 1, rest),
        None => (1, data),
    }
}

/// The configuration file: parse; what parses prints to a file that parses back to the same
/// configuration (so what the API and `usher check` show is what runs).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_config(text, "fuzz.conf") {
        Ok(config) => {
            let printed = config.to_string();
            match parse_config(&printed, "printed.conf") {
                Ok(back) => assert_eq!(back, config, "print/parse round trip differs:\n{printed}"),
                Err(e) => panic!("the printed config does not parse: {e}\n{printed}"),
            }
        }
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1, "{e}");
            assert!(!e.message.is_empty());
        }
    }
}

/// A backend's answer: any status, header block and body reads as one of the four answers,
/// the status table of T3/AMB-5 holds whatever the headers and body say, and a grant's
/// duration stays within the clamp.
pub fn backend_answer(data: &[u8]) {
    let [status, headers, body] = match fields(data, 3)[..] {
        [s, h, b] => [s, h, b],
        [s, h] => [s, h, &[][..]],
        [s] => [s, &[][..], &[][..]],
        _ => return,
    };
    let status = match status {
        [a, b, ..] => 100 + u16::from_be_bytes([*a, *b]) % 500,
        [a] => 100 + u16::from(*a),
        [] => 200,
    };
    let headers: Vec<(String, String)> = String::from_utf8_lossy(headers)
        .split('\n')
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let answer = interpret(status, &headers, body);
    match (&answer, status) {
        (Answer::NoDecision { .. }, _) => {}
        (Answer::Allow(grant), 200..=299) => {
            assert!(grant.duration <= crate::auth::backend::MAX_AUTH_DURATION);
            assert!(grant.max_sessions != Some(0));
            assert!(grant.user_id.as_deref() != Some(""));
        }
        (Answer::Deny { .. }, 300..=499) | (Answer::Redirect { .. }, 302) => {}
        (Answer::Deny { .. }, 100..=199) => {}
        (other, status) => panic!("status {status} read as {other:?}"),
    }
    if (500..=599).contains(&status) || body.len() > MAX_BODY_BYTES {
        assert!(matches!(answer, Answer::NoDecision { .. }), "{status}: {answer:?}");
    }
}

/// A player's request target (`/NAME/index.m3u8?…`): the path parses to a stream name that
/// cannot climb out of the namespace, and the segment URIs of a playlist carry the client's
/// query back unchanged with the session's token in place of the client's.
pub fn http_target(data: &[u8]) {
    let [target, token] = match fields(data, 2)[..] {
        [t, k] => [t, k],
        [t] => [t, &b"tok"[..]],
        _ => return,
    };
    let target = String::from_utf8_lossy(target);
    let token = String::from_utf8_lossy(token);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if let Some((name, _)) = crate::http::play::parse_path(path) {
        assert!(
            !name.is_empty() && !name.starts_with('/') && !name.ends_with('/'),
            "{name:?}"
        );
        assert!(
            !name.split('/').any(|p| p.is_empty() || p == "." || p == ".."),
            "{name:?}"
        );
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = "token";
    let uri = crate::http::play::segment_query_for(param, &token, &pairs);
    let back: Vec<(String, String)> = url::form_urlencoded::parse(uri.trim_start_matches('?').as_bytes())
        .into_owned()
        .collect();
    let mut expected: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != param).collect();
    expected.push((param.to_string(), token.into_owned()));
    assert_eq!(back, expected, "segment query {uri:?}");
}

/// Management API bodies: whatever a stream body is, it is refused with a message or read to a
/// stream whose own JSON reads back to the same stream; configurator blocks likewise.
pub fn api_body(data: &[u8]) {
    let (which, body) = data.split_first().map_or((0, data), |(w, b)| (*w, b));
    if which % 2 == 0 {
        if let Ok(stream) = stream_from_api_json("fuzz/s", body) {
            let json = serde_json::to_vec(&stream_to_api_json(&stream)).expect("JSON of a value");
            let back = stream_from_api_json("fuzz/s", &json);
            assert_eq!(back.as_ref().ok(), Some(&stream), "{}", String::from_utf8_lossy(&json));
        }
    } else if let Ok(block) = AuthBackendConfig::from_api_json("fuzz", body) {
        let json = serde_json::to_vec(&block.to_api_json()).expect("JSON of a value");
        let back = AuthBackendConfig::from_api_json("fuzz", &json);
        assert_eq!(back.as_ref().ok(), Some(&block), "{}", String::from_utf8_lossy(&json));
    }
}

/// An RTSP client's bytes in any split: the framer yields requests or refuses the input; it
/// never holds more than its limits allow; each request's URL and `Transport` header are read
/// the way the connection reads them.
pub fn rtsp(data: &[u8]) {
    use crate::rtsp::framing::{Frame, Reader, Step};
    const MAX_HEAD: usize = 1024;
    const MAX_BODY: usize = 512;
    let (chunk, data) = chunked(data);
    let mut reader = Reader::new(MAX_HEAD, MAX_BODY);
    'feed: for piece in data.chunks(chunk) {
        reader.buffer().extend_from_slice(piece);
        loop {
            match reader.next() {
                Ok(Step::NeedMore) => {
                    // Buffered: at most a head, a body and the piece that completed them, or an
                    // interleaved frame (4 + 65535).
                    let bound = (MAX_HEAD + MAX_BODY + chunk).max(4 + 65_535);
                    assert!(
                        reader.buffer().len() <= bound,
                        "{} bytes buffered",
                        reader.buffer().len()
                    );
                    break;
                }
                Ok(Step::Frame(Frame::Request(request))) => {
                    if let Some(url) = request.request_uri()
                        && let Some(target) = crate::rtsp::target::Target::parse(url)
                    {
                        assert!(!target.name.split('/').any(|p| p.is_empty() || p == ".."));
                    }
                    for (name, value) in request.headers() {
                        if name.as_str().eq_ignore_ascii_case("transport") {
                            let _ = crate::rtsp::transport::requested(value.as_str());
                        }
                    }
                }
                Ok(Step::Frame(Frame::Ignored(_))) => {}
                Err(_) => break 'feed,
            }
        }
    }
}

/// An RTMP client's bytes after a real handshake (or, with the first byte odd, the handshake
/// itself): whatever the inbound guard lets through must not panic `rml_rtmp`'s session, which
/// is exactly what the guard is for.
pub fn rtmp(data: &[u8]) {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{ServerSession, ServerSessionConfig};
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        let mut server = Handshake::new(PeerType::Server);
        for piece in data.chunks(usize::from(mode >> 1) + 1) {
            match server.process_bytes(piece) {
                Ok(HandshakeProcessResult::InProgress { .. }) => {}
                Ok(HandshakeProcessResult::Completed { .. }) | Err(_) => return,
            }
        }
        return;
    }
    let chunk = usize::from(mode >> 1) + 1;
    let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else {
        return;
    };
    let mut guard = crate::rtmp::inbound::InboundCheck::default();
    // Publishing clients may send media up to 8 MiB once admitted; half the inputs take that
    // path.
    if mode & 2 == 2 {
        guard.allow_media();
    }
    for piece in data.chunks(chunk) {
        if guard.check(piece).is_err() {
            return;
        }
        if session.handle_input(piece).is_err() {
            return;
        }
    }
}

/// An MPEG-TS upload in any split: access units come out in decoding order per push, the
/// stream fails for good once it fails, and nothing panics.
pub fn ts_ingest(data: &[u8]) {
    let (chunk, data) = chunked(data);
    let chunk = chunk * 47;
    let mut ingest = TsIngest::new();
    let mut failed = false;
    for piece in data.chunks(chunk) {
        match ingest.push(piece) {
            Ok(units) => {
                assert!(!failed, "a failed ingest produced units again");
                assert!(units.windows(2).all(|w| w[0].dts <= w[1].dts));
            }
            Err(_) => failed = true,
        }
    }
    let units = ingest.finish();
    assert!(units.windows(2).all(|w| w[0].dts <= w[1].dts));
}

/// A stand-in backend for [`http_request`]: the token's first character decides.
struct TokenBackend;

impl crate::auth::Backend for TokenBackend {
    fn call(&self, _url: &str, request: &crate::auth::BackendRequest) -> futures::future::BoxFuture<'static, Answer> {
        use std::time::Duration;
        let token = request.token.clone().unwrap_or_default();
        let deny = Answer::Deny {
            status: 403,
            duration: Duration::from_secs(5),
        };
        let answer = match token.as_bytes().first() {
            // The stream `denied` has a backend that refuses everyone.
            _ if request.name == "denied" => deny,
            Some(b'd') => deny,
            Some(b'n') => Answer::NoDecision { reason: "fuzz".into() },
            Some(b'r') => Answer::Redirect {
                location: format!("http://elsewhere/{token}"),
            },
            Some(b'u') => Answer::Allow(crate::auth::Grant {
                duration: Duration::from_secs(1),
                user_id: Some("u".into()),
                max_sessions: Some(1),
                ..crate::auth::Grant::default()
            }),
            _ => Answer::Allow(crate::auth::Grant {
                duration: Duration::ZERO,
                ..crate::auth::Grant::default()
            }),
        };
        Box::pin(async move { answer })
    }
}

/// The router of a small server (streams `s1` with a domain lock, request-derived session keys
/// and a signing key, `live/cam` without backend, `pub` for publishing with a password,
/// `denied` whose backend refuses everyone) and the runtime that drives it.
struct World {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    uses: usize,
}

fn world() -> World {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::auth::admin::AdminTokens;
    use crate::auth::configurator::Configurator;
    use crate::auth::{AuthCore, AuthSettings};
    use crate::config::{AuthSpec, AuthTarget, Credential, SessionKeys, StreamConfig};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let router = runtime.block_on(async {
        let backend: Arc<dyn crate::auth::Backend> = Arc::new(TokenBackend);
        let core = AuthCore::new(
            backend.clone(),
            AdminTokens::new("fuzz", Duration::from_secs(3600), false),
            AuthSettings::new(false, Duration::from_secs(30)),
        );
        let mut s1 = AuthSpec::new(AuthTarget::Http("http://backend.invalid/auth".into()));
        s1.domains = vec!["good.com".into()];
        s1.session_keys = SessionKeys::parse("ip,name,proto,token,query.x,header.user-agent").expect("keys");
        s1.sign_key = Some("k".into());
        let stream = |name: &str, input: &str, on_play: Option<AuthSpec>| StreamConfig {
            name: name.into(),
            inputs: vec![input.into()],
            on_play,
            ..StreamConfig::default()
        };
        let mut publish = stream("pub", "publish://", None);
        publish.password = Some("pw".into());
        publish.on_publish = Some(AuthSpec::new(AuthTarget::Http("http://backend.invalid/pub".into())));
        let denied = AuthSpec::new(AuthTarget::Http("http://backend.invalid/no".into()));
        let streams = Arc::new(crate::streams::Streams::new(
            vec![
                stream("s1", "fake://fake", Some(s1)),
                stream("live/cam", "fake://fake", None),
                stream("denied", "fake://fake", Some(denied)),
                publish,
            ],
            Vec::new(),
        ));
        core.set_stream_control(streams.clone());
        let ctx = Arc::new(crate::context::Context::new(core, streams.clone(), "token".into()));
        let state = Arc::new(crate::http::HttpState {
            ctx,
            edit_auth: Some(Credential {
                login: "admin".into(),
                password: "pw".into(),
            }),
            configurator: Arc::new(Configurator::new(Vec::new(), backend, None)),
            history: crate::history::History::open(None, Duration::from_secs(86_400)).expect("history"),
            dvr: crate::dvr::Dvr::new(streams),
        });
        crate::http::router(state)
    });
    World {
        runtime,
        router,
        uses: 0,
    }
}

/// A whole HTTP request through the router, as a connection hands it over: the method from
/// the first byte, then the target, header lines and body (fields apart by `0xFF`), from one of
/// four client addresses; with the first byte's high bit, the management credential is added.
/// Nothing may answer 500, and without the credential (so the API cannot reconfigure anything)
/// the stream whose backend refuses everyone never plays.
pub fn http_request(data: &[u8]) {
    use std::cell::RefCell;

    use axum::extract::ConnectInfo;
    use tower::ServiceExt;

    thread_local! {
        static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let [target, headers, body] = match fields(rest, 3)[..] {
        [t, h, b] => [t, h, b],
        [t, h] => [t, h, &[][..]],
        [t] => [t, &[][..], &[][..]],
        _ => return,
    };
    let method = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "GET"][usize::from(mode & 7)];
    let credential = mode & 0x80 != 0;
    let Ok(mut request) = http::Request::builder()
        .method(method)
        .uri(target)
        .body(axum::body::Body::from(body.to_vec()))
    else {
        return;
    };
    for line in headers.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        request.headers_mut().append(name, value);
    }
    if credential {
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Basic YWRtaW46cHc="),
        );
    }
    let peer: std::net::SocketAddr = ([127, 0, 0, 1 + ((mode >> 3) & 3)], 40_000).into();
    request.extensions_mut().insert(ConnectInfo(peer));
    let names_denied = crate::http::play::parse_path(request.uri().path()).is_some_and(|(name, _)| name == "denied");
    let status = WORLD.with_borrow_mut(|world| {
        // A fresh server now and then, so the records of earlier inputs do not pile up.
        if world.as_ref().is_none_or(|w| w.uses >= 2000) {
            *world = Some(self::world());
        }
        let world = world.as_mut().expect("just made");
        world.uses += 1;
        let router = world.router.clone();
        world.runtime.block_on(async move {
            let response = router.oneshot(request).await.expect("the router is infallible");
            response.status()
        })
    });
    assert!(
        status.as_u16() != 500,
        "{method} {}: 500",
        String::from_utf8_lossy(target)
    );
    if names_denied && !credential && method != "PUT" && method != "POST" {
        assert!(
            !status.is_success(),
            "{method} {} played a stream whose backend refuses everyone: {status}",
            String::from_utf8_lossy(target)
        );
    }
}
