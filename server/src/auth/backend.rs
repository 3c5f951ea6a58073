//! The backend contract: what is sent (tables T1, T2) and how an answer is read (T3, T4, T5).
//!
//! [`interpret`] is sans-IO so every status/header/body combination is unit-testable; the one
//! HTTP client that performs calls is [`HttpBackend`] (in `http_backend.rs`), and [`Router`]
//! sends each call to the backend kind its target names. The 3 s budget of every call
//! (TIME-03) is the core's one timer ([`BACKEND_TIMEOUT`]), not an adapter's.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use uuid::Uuid;

pub use super::http_backend::{FetchError, HttpBackend, RawAnswer};
use super::proto::Proto;

/// Whole-call budget: connect + headers + body (TIME-03). The core's driver enforces it around
/// every backend kind; no adapter keeps a timer of its own.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(3);
/// Freshness of a decision when the answer names none (TIME-01).
pub const DEFAULT_AUTH_DURATION: Duration = Duration::from_secs(180);
/// Upper clamp of X-AuthDuration (AMB-23).
pub const MAX_AUTH_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Bodies above this are "no decision".
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Header blocks above this are "no decision".
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Whether the call opens a session or re-checks it (`request_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    NewSession,
    UpdateSession,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::NewSession => "new_session",
            RequestType::UpdateSession => "update_session",
        }
    }
}

/// Play (`on_play`, GET) or publish (`on_publish`, POST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    Play,
    Publish,
}

/// The fields of one backend call (T1/T2). Optional fields that are unknown are omitted.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRequest {
    pub kind: CallKind,
    pub name: String,
    pub proto: Proto,
    pub ip: IpAddr,
    pub request_type: RequestType,
    pub request_number: u64,
    pub session_id: Uuid,
    pub stream_clients: u64,
    pub total_clients: u64,
    pub token: Option<String>,
    /// Seconds the session has lasted (updates only).
    pub duration: Option<u64>,
    pub bytes: Option<u64>,
    pub qs: Option<String>,
    pub dvr: bool,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub host: Option<String>,
    /// Static extras from the `on_play` line.
    pub extra: BTreeMap<String, String>,
    /// `sign_key=` of the `on_play`/`on_publish` line: [`HttpBackend`] signs the call with it
    /// ([`SIGNATURE_HEADER`]). Not a field of the call; scripts never see it.
    pub sign_key: Option<SignKey>,
}

/// A key that signs backend calls. Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SignKey(Arc<str>);

impl SignKey {
    pub fn new(key: &str) -> SignKey {
        SignKey(key.into())
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for SignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignKey(…)")
    }
}

/// The header of a signed backend call:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<METHOD>.<path?query>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Usher-Signature";

/// The value of [`SIGNATURE_HEADER`] for a call at `unix` seconds. `target` is the request
/// target exactly as sent (`/path?query`), `body` the exact body bytes (empty for GET).
pub fn signature(key: &[u8], unix: u64, method: &str, target: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{unix}.{method}.{target}.").as_bytes());
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl BackendRequest {
    /// The fields in the wire order, as (name, value) pairs.
    pub fn fields(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![
            ("name".into(), self.name.clone()),
            ("proto".into(), self.proto.as_str().into()),
            ("ip".into(), self.ip.to_string()),
            ("request_type".into(), self.request_type.as_str().into()),
            ("request_number".into(), self.request_number.to_string()),
            ("session_id".into(), self.session_id.to_string()),
            ("stream_clients".into(), self.stream_clients.to_string()),
            ("total_clients".into(), self.total_clients.to_string()),
        ];
        let optional = [
            ("token", self.token.clone()),
            ("duration", self.duration.map(|d| d.to_string())),
            ("bytes", self.bytes.map(|b| b.to_string())),
            ("qs", self.qs.clone()),
            ("dvr", Some(self.dvr.to_string())),
            ("user_agent", self.user_agent.clone()),
            ("referer", self.referer.clone()),
            ("host", self.host.clone()),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                out.push((k.into(), v));
            }
        }
        for (k, v) in &self.extra {
            if !out.iter().any(|(name, _)| name == k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// The query string: every value percent-encoded so `&`, `=`, `%`, `+`, spaces and
    /// non-ASCII survive as one value (REQ-02).
    pub fn query_string(&self) -> String {
        encode_pairs(&self.fields())
    }

    /// The JSON body of a publish call (AMB-2): the same fields with typed values.
    pub fn json_body(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (k, v) in self.fields() {
            let typed = match k.as_str() {
                "request_number" | "stream_clients" | "total_clients" | "duration" | "bytes" => {
                    v.parse::<u64>().map(Value::from).unwrap_or(Value::String(v))
                }
                "dvr" => Value::Bool(v == "true"),
                _ => Value::String(v),
            };
            map.insert(k, typed);
        }
        Value::Object(map)
    }
}

/// Characters left as they are in a query value: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(utf8_percent_encode(k, QUERY_VALUE));
        out.push('=');
        out.extend(utf8_percent_encode(v, QUERY_VALUE));
    }
    out
}

/// Appends a query to a backend URL: `&` when the URL already has a query (AMB-4).
pub fn url_with_query(base: &str, query: &str) -> String {
    if query.is_empty() {
        return base.to_string();
    }
    match base.find('?') {
        Some(_) if base.ends_with('?') || base.ends_with('&') => format!("{base}{query}"),
        Some(_) => format!("{base}&{query}"),
        None => format!("{base}?{query}"),
    }
}

/// What a 200 grants (T4, T5). Its `Debug` shows the JSON parts redacted
/// ([`crate::redact::json`]): an override's input URL may hold a password or a token.
#[derive(Clone, PartialEq, Default)]
pub struct Grant {
    /// `X-AuthDuration`, already defaulted and clamped (AMB-23).
    pub duration: Duration,
    pub user_id: Option<String>,
    pub max_sessions: Option<u32>,
    pub unique: bool,
    /// The `config` object, validated later by the stream (AMB-16).
    pub config: Option<Value>,
    pub allowed_dvr_ranges: Option<Value>,
    pub ad_inject: Option<Value>,
}

/// The backend's answer, reduced to what the decision machine needs (T3). Its `Debug` (what
/// the log shows of an answer) redacts a redirect's Location, which may carry a token.
#[derive(Clone, PartialEq)]
pub enum Answer {
    Allow(Grant),
    /// 403 or another 4xx (AMB-5); banned for `duration` (AMB-8).
    Deny {
        status: u16,
        duration: Duration,
    },
    /// 302 with a Location.
    Redirect {
        location: String,
    },
    /// 5xx, timeout, transport failure, oversized answer: the T11 table applies.
    NoDecision {
        reason: String,
    },
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<Value>| v.as_ref().map(crate::redact::json);
        f.debug_struct("Grant")
            .field("duration", &self.duration)
            .field("user_id", &self.user_id)
            .field("max_sessions", &self.max_sessions)
            .field("unique", &self.unique)
            .field("config", &shown(&self.config))
            .field("allowed_dvr_ranges", &shown(&self.allowed_dvr_ranges))
            .field("ad_inject", &shown(&self.ad_inject))
            .finish()
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Allow(grant) => f.debug_tuple("Allow").field(grant).finish(),
            Answer::Deny { status, duration } => f
                .debug_struct("Deny")
                .field("status", status)
                .field("duration", duration)
                .finish(),
            Answer::Redirect { location } => f
                .debug_struct("Redirect")
                .field("location", &crate::redact::Url(location))
                .finish(),
            Answer::NoDecision { reason } => f.debug_struct("NoDecision").field("reason", reason).finish(),
        }
    }
}

/// Reads an answer. `headers` are (name, value) with any case.
pub fn interpret(status: u16, headers: &[(String, String)], body: &[u8]) -> Answer {
    let header_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Answer::NoDecision {
            reason: format!("header block of {header_bytes} bytes"),
        };
    }
    if body.len() > MAX_BODY_BYTES {
        return Answer::NoDecision {
            reason: format!("body of {} bytes", body.len()),
        };
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let json: Option<serde_json::Map<String, Value>> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) => {
                tracing::warn!(status, "backend answer body is JSON but not an object; ignored");
                None
            }
            Err(e) => {
                tracing::warn!(status, error = %e, "backend answer body is not JSON; ignored");
                None
            }
        }
    };
    let json_str = |key: &str| {
        json.as_ref().and_then(|m| m.get(key)).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    };
    // Headers are normative; the JSON twins are a documented extension (AMB-7).
    let duration_text = header("x-authduration")
        .or_else(|| json_str("auth_time"))
        .or_else(|| json_str("duration"));
    let duration = parse_auth_duration(duration_text.as_deref());
    match status {
        200..=299 => {
            let user_id = header("x-userid")
                .or_else(|| json_str("user_id"))
                .filter(|u| !u.is_empty()); // AMB-24
            let max_sessions = header("x-max-sessions")
                .or_else(|| json_str("max_sessions"))
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|n| *n > 0);
            // Any value other than `true` is ignored (UNIQ-05).
            let unique = header("x-unique")
                .or_else(|| json_str("unique"))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let field = |key: &str| json.as_ref().and_then(|m| m.get(key)).cloned();
            Answer::Allow(Grant {
                duration,
                user_id,
                max_sessions,
                unique,
                config: field("config").filter(|v| !v.is_null()),
                allowed_dvr_ranges: field("allowed_dvr_ranges"),
                ad_inject: field("ad_inject"),
            })
        }
        302 => match header("location").filter(|l| !l.is_empty()) {
            Some(location) => Answer::Redirect { location },
            None => Answer::Deny { status: 403, duration },
        },
        400..=499 => Answer::Deny { status, duration },
        500..=599 => Answer::NoDecision {
            reason: format!("backend answered {status}"),
        },
        other => Answer::Deny {
            status: other,
            duration,
        },
    }
}

/// AMB-23: not a non-negative integer ⇒ default; 0 stays 0 (re-check at the next request);
/// above 30 days ⇒ 30 days.
pub fn parse_auth_duration(text: Option<&str>) -> Duration {
    match text.map(str::trim).and_then(|t| t.parse::<u64>().ok()) {
        Some(secs) => Duration::from_secs(secs).min(MAX_AUTH_DURATION),
        None => DEFAULT_AUTH_DURATION,
    }
}

/// Anything that decides: the HTTP client in production, a scripted one in in-process tests.
pub trait Backend: Send + Sync + 'static {
    fn call(&self, url: &str, request: &BackendRequest) -> BoxFuture<'static, Answer>;
}

/// Sends each call to the backend kind its target names (CFG-01): `http(s)://` URLs to the
/// HTTP client, absolute paths to the script runner, `auth://NAME` to the configurator. A kind
/// that is not configured gives "no decision", logged once per call with the target.
pub struct Router {
    pub http: Arc<dyn Backend>,
    pub script: Option<Arc<dyn Backend>>,
    pub configurator: Option<Arc<dyn Backend>>,
}

impl Backend for Router {
    fn call(&self, target: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let backend = if lower.starts_with("http://") || lower.starts_with("https://") {
            Some(&self.http)
        } else if lower.starts_with("auth://") {
            self.configurator.as_ref()
        } else if target.starts_with('/') {
            self.script.as_ref()
        } else {
            None
        };
        match backend {
            Some(b) => b.call(target, request),
            None => {
                // The configured URL may hold a password or a key: logged redacted.
                let shown = crate::redact::url(target);
                tracing::warn!(target = %shown, "no backend of this kind is available; no decision");
                let reason = format!("no backend for target `{shown}`");
                Box::pin(async move { Answer::NoDecision { reason } })
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn status_table() {
        assert!(matches!(interpret(200, &[], b""), Answer::Allow(_)));
        assert!(matches!(interpret(204, &[], b""), Answer::Allow(_)));
        assert_eq!(
            interpret(403, &[], b""),
            Answer::Deny {
                status: 403,
                duration: DEFAULT_AUTH_DURATION
            }
        );
        assert_eq!(
            interpret(403, &h(&[("X-AuthDuration", "7")]), b""),
            Answer::Deny {
                status: 403,
                duration: Duration::from_secs(7)
            }
        );
        assert!(matches!(interpret(404, &[], b""), Answer::Deny { status: 404, .. }));
        assert!(matches!(interpret(500, &[], b""), Answer::NoDecision { .. }));
        assert!(matches!(interpret(503, &[], b""), Answer::NoDecision { .. }));
        assert_eq!(
            interpret(302, &h(&[("location", "http://x/y")]), b""),
            Answer::Redirect {
                location: "http://x/y".into()
            }
        );
    }

    #[test]
    fn headers_are_read_case_insensitively() {
        let answer = interpret(
            200,
            &h(&[
                ("x-authduration", "5"),
                ("X-USERID", "u1"),
                ("x-max-sessions", "2"),
                ("X-Unique", "true"),
            ]),
            b"",
        );
        assert_eq!(
            answer,
            Answer::Allow(Grant {
                duration: Duration::from_secs(5),
                user_id: Some("u1".into()),
                max_sessions: Some(2),
                unique: true,
                ..Grant::default()
            })
        );
    }

    #[test]
    fn auth_duration_bounds() {
        assert_eq!(parse_auth_duration(None), DEFAULT_AUTH_DURATION);
        assert_eq!(parse_auth_duration(Some("abc")), DEFAULT_AUTH_DURATION);
        assert_eq!(parse_auth_duration(Some("-5")), DEFAULT_AUTH_DURATION);
        assert_eq!(parse_auth_duration(Some("0")), Duration::ZERO);
        assert_eq!(parse_auth_duration(Some("99999999999")), MAX_AUTH_DURATION);
    }

    #[test]
    fn empty_user_id_is_absent_and_unique_needs_true() {
        let Answer::Allow(g) = interpret(200, &h(&[("X-UserId", ""), ("X-Unique", "yes")]), b"") else {
            panic!("expected allow");
        };
        assert_eq!(g.user_id, None);
        assert!(!g.unique);
    }

    #[test]
    fn json_body_fields_and_header_precedence() {
        let body = br#"{"config":{"protocols":{"hls":false}},"user_id":"j","allowed_dvr_ranges":[]}"#;
        let Answer::Allow(g) = interpret(200, &h(&[("X-UserId", "hdr")]), body) else {
            panic!("expected allow");
        };
        assert_eq!(g.user_id.as_deref(), Some("hdr"));
        assert!(g.config.is_some());
        assert_eq!(g.allowed_dvr_ranges, Some(serde_json::json!([])));
        // Invalid JSON on a 200 keeps the decision and drops the body.
        assert!(matches!(interpret(200, &[], b"{not json"), Answer::Allow(_)));
    }

    #[test]
    fn oversized_answers_are_no_decision() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(interpret(200, &[], &big), Answer::NoDecision { .. }));
        let hdr = h(&[("x-big", &"a".repeat(MAX_HEADER_BYTES))]);
        assert!(matches!(interpret(200, &hdr, b""), Answer::NoDecision { .. }));
    }

    struct Fixed(u16);

    impl Backend for Fixed {
        fn call(&self, _target: &str, _request: &BackendRequest) -> BoxFuture<'static, Answer> {
            let status = self.0;
            Box::pin(async move {
                Answer::Deny {
                    status,
                    duration: Duration::ZERO,
                }
            })
        }
    }

    /// A play `new_session` request for stream `s` from 127.0.0.1 without a token.
    pub(in crate::auth) fn play_request() -> BackendRequest {
        BackendRequest {
            kind: CallKind::Play,
            name: "s".into(),
            proto: Proto::Hls,
            ip: "127.0.0.1".parse().expect("ip literal"),
            request_type: RequestType::NewSession,
            request_number: 1,
            session_id: Uuid::nil(),
            stream_clients: 0,
            total_clients: 0,
            token: None,
            duration: None,
            bytes: None,
            qs: None,
            dvr: false,
            user_agent: None,
            referer: None,
            host: None,
            extra: BTreeMap::new(),
            sign_key: None,
        }
    }

    #[tokio::test]
    async fn router_dispatches_on_the_target_kind() {
        let request = play_request();
        let router = Router {
            http: Arc::new(Fixed(401)),
            script: Some(Arc::new(Fixed(402))),
            configurator: Some(Arc::new(Fixed(405))),
        };
        let status = |a: Answer| match a {
            Answer::Deny { status, .. } => status,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(status(router.call("HTTP://b/x", &request).await), 401);
        assert_eq!(status(router.call("https://b/x", &request).await), 401);
        assert_eq!(status(router.call("/etc/usher/auth.lua", &request).await), 402);
        assert_eq!(status(router.call("auth://office", &request).await), 405);
        let bare = Router {
            http: Arc::new(Fixed(401)),
            script: None,
            configurator: None,
        };
        assert!(matches!(bare.call("/x.lua", &request).await, Answer::NoDecision { .. }));
        assert!(matches!(
            bare.call("ftp://x", &request).await,
            Answer::NoDecision { .. }
        ));
    }

    #[test]
    fn url_joining() {
        assert_eq!(url_with_query("http://b/a", "x=1"), "http://b/a?x=1");
        assert_eq!(url_with_query("http://b/a?k=v", "x=1"), "http://b/a?k=v&x=1");
        assert_eq!(url_with_query("http://b/a?", "x=1"), "http://b/a?x=1");
    }

    #[test]
    fn values_are_percent_encoded_as_one_value() {
        let q = encode_pairs(&[("token".into(), "a&user_id=1 +%é".into())]);
        assert_eq!(q, "token=a%26user_id%3D1%20%2B%25%C3%A9");
    }
}
