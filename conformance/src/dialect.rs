//! Backend dialects: how a server under test calls its authorization backend, and how it reads
//! the answer.
//!
//! The suite's cases are written in the contract's terms (a call carries `name`, `ip`, `proto`,
//! `token`, `request_type`, `session_id`; an answer is a status with headers). A server that
//! calls its backend in a shape of its own is judged through a **dialect**, chosen in the
//! target manifest (`[backend] dialect = "…"`):
//!
//! * `flussonic` (the default): the contract itself; GET (play) or POST (publish) with the
//!   fields in the query string (a JSON body for publish calls, AMB-2).
//! * `nginx-rtmp`: one URL per application, a form-encoded POST (or a GET with
//!   `notify_method get`) with `call=play|publish|update_play|update_publish|…`, `addr`,
//!   `clientid`, `app`, `name`, `tcurl`, … and the client's own query arguments (where the token
//!   is). A 2xx answer allows, a 3xx with `Location` redirects, anything else denies. Its
//!   `on_update` calls (`call=update_play`) are its re-checks. Tested against a real nginx with
//!   Debian's `libnginx-mod-rtmp` (`conformance/targets/nginx-rtmp/`).
//! * `nginx-auth-request`: nginx's `auth_request` in front of files it serves (the HLS that
//!   nginx-rtmp writes, `conformance/targets/nginx-auth-request/`): one GET subrequest per
//!   viewer request that the auth cache does not answer, whose query the configuration writes
//!   with the contract's names (`name`, `ip`, `proto`, `token`, and `request_type=new_session`
//!   for every call, as nginx keeps no session); there is no `session_id`. nginx reads only the status: 2xx allows, 401 and 403
//!   deny, anything else is an error the viewer gets as 500; every header is ignored.
//! * `srs`: SRS's HTTP hooks: a JSON POST with `action` (`on_play`, `on_publish`, …),
//!   `client_id`, `ip`, `vhost`, `app`, `stream`, `param` (the client's `?query`), `tcUrl`. SRS
//!   allows when the answer is HTTP 200 with the body `0` or `{"code":0}`.
//! * `mediamtx`: MediaMTX's `authMethod: http`: a JSON POST with `user`, `password`, `token`,
//!   `ip`, `action` (`read`, `publish`, `playback`, …), `path`, `protocol`, `id`, `query`. A 2xx
//!   answer allows; the suite writes a deny as 401.
//!
//! SRS and MediaMTX do not run here: their two dialects are tested against request and answer
//! shapes written from their published documentation (the unit tests below), not against the
//! servers themselves.
//!
//! What a dialect cannot carry (nginx-rtmp has no `X-AuthDuration`, no `X-UserId`) is not
//! translated away: the case then fails its requirement on what the server did instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::backend::Answer;

/// The dialects, as the manifest names them.
pub const DIALECTS: [&str; 5] = ["flussonic", "nginx-rtmp", "nginx-auth-request", "srs", "mediamtx"];

/// How the server under test talks to its backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// The contract itself.
    #[default]
    Flussonic,
    NginxRtmp,
    NginxAuthRequest,
    Srs,
    #[serde(rename = "mediamtx")]
    MediaMtx,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Flussonic => "flussonic",
            Dialect::NginxRtmp => "nginx-rtmp",
            Dialect::NginxAuthRequest => "nginx-auth-request",
            Dialect::Srs => "srs",
            Dialect::MediaMtx => "mediamtx",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flussonic" => Ok(Dialect::Flussonic),
            "nginx-rtmp" => Ok(Dialect::NginxRtmp),
            "nginx-auth-request" => Ok(Dialect::NginxAuthRequest),
            "srs" => Ok(Dialect::Srs),
            "mediamtx" => Ok(Dialect::MediaMtx),
            other => Err(format!("unknown dialect `{other}` (known: {})", DIALECTS.join(", "))),
        }
    }
}

/// A request to the backend as it arrived, before any reading.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// A request read into the contract's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// The contract's fields first (`name`, `ip`, `proto`, `token`, `request_type`,
    /// `session_id`, as far as the server sent them), then the server's own fields that are not
    /// already there under the same key, in the order they came.
    pub fields: Vec<(String, String)>,
    /// The body, when it is a JSON object.
    pub body: Option<serde_json::Map<String, serde_json::Value>>,
    /// A publish check (`on_publish`), not a play check.
    pub publish: bool,
}

impl Reading {
    /// The first value of a field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The stream name the server reported.
    pub fn name(&self) -> Option<&str> {
        self.field("name").filter(|n| !n.is_empty())
    }
}

fn json_object(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn form(text: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text).into_owned().collect()
}

/// Contract fields first, then the server's own fields under keys not used yet.
fn assemble(contract: Vec<(&str, Option<String>)>, own: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = contract
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    for (k, v) in own {
        if !fields.iter().any(|(have, _)| *have == k) {
            fields.push((k, v));
        }
    }
    fields
}

/// `token` of a query text (`?token=t1&x=y` or `token=t1&x=y`).
fn token_of_query(query: &str) -> Option<String> {
    form(query.trim_start_matches('?').as_bytes())
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

impl Dialect {
    /// Reads a request into the contract's fields.
    pub fn read(self, request: RawRequest<'_>) -> Reading {
        match self {
            Dialect::Flussonic => Reading {
                fields: request.url.query_pairs().into_owned().collect(),
                body: json_object(request.body),
                publish: request
                    .url
                    .path_segments()
                    .and_then(|mut s| s.next_back())
                    .is_some_and(|last| last == "on_publish"),
            },
            Dialect::NginxRtmp => read_nginx(request),
            // The configuration's own query, in the contract's names; nginx never checks a
            // publisher through it.
            Dialect::NginxAuthRequest => Reading {
                fields: request.url.query_pairs().into_owned().collect(),
                body: None,
                publish: false,
            },
            Dialect::Srs => read_srs(request),
            Dialect::MediaMtx => read_mediamtx(request),
        }
    }

    /// The case's programmed answer written in the server's terms.
    pub fn write(self, answer: &Answer) -> Answer {
        let allowed = (200..300).contains(&answer.status);
        match self {
            // nginx-rtmp reads 2xx as allow, 3xx with Location as a redirect and anything else
            // as deny: the contract's own statuses. auth_request reads 2xx and 403 as the
            // contract does; what it cannot read (a redirect, a 5xx) is left for the viewer to
            // see as nginx's error, not translated away.
            Dialect::Flussonic | Dialect::NginxRtmp | Dialect::NginxAuthRequest => answer.clone(),
            Dialect::Srs => {
                let mut written = answer.clone();
                if allowed {
                    written.status = 200;
                    written.body = Some(serde_json::json!({ "code": 0 }));
                } else {
                    written.body = Some(serde_json::json!({ "code": answer.status }));
                }
                written
            }
            Dialect::MediaMtx => {
                let mut written = answer.clone();
                if answer.status == 403 {
                    written.status = 401;
                }
                written
            }
        }
    }
}

fn read_nginx(request: RawRequest<'_>) -> Reading {
    // POST: the fields are the form body; GET (`notify_method get`): the query string.
    let mut own = form(request.body);
    if own.is_empty() {
        own = request.url.query_pairs().into_owned().collect();
    }
    let get = |k: &str| own.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let call = get("call").unwrap_or_default();
    let request_type = match call.as_str() {
        "play" | "publish" => Some("new_session".to_string()),
        "update_play" | "update_publish" => Some("update_session".to_string()),
        "" => None,
        other => Some(other.to_string()),
    };
    let contract = vec![
        ("name", get("name")),
        ("ip", get("addr")),
        ("proto", Some("rtmp".to_string())),
        ("token", get("token")),
        ("request_type", request_type),
        ("session_id", get("clientid")),
    ];
    Reading {
        fields: assemble(contract, own),
        body: None,
        publish: call == "publish" || call == "update_publish",
    }
}

fn read_srs(request: RawRequest<'_>) -> Reading {
    let body = json_object(request.body);
    let get = |k: &str| body.as_ref().and_then(|b| b.get(k)).and_then(json_text);
    let action = get("action").unwrap_or_default();
    let param = get("param").unwrap_or_default();
    let proto = get("tcUrl")
        .and_then(|u| u.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase()))
        .filter(|s| !s.is_empty());
    let request_type = match action.as_str() {
        "on_play" | "on_publish" => Some("new_session".to_string()),
        "" => None,
        other => Some(other.to_string()),
    };
    let mut own: Vec<(String, String)> = form(param.trim_start_matches('?').as_bytes());
    if let Some(b) = &body {
        own.extend(b.iter().filter_map(|(k, v)| json_text(v).map(|v| (k.clone(), v))));
    }
    let contract = vec![
        ("name", get("stream")),
        ("ip", get("ip")),
        ("proto", proto),
        ("token", token_of_query(&param)),
        ("request_type", request_type),
        ("session_id", get("client_id")),
    ];
    Reading {
        fields: assemble(contract, own),
        body,
        publish: action == "on_publish",
    }
}

fn read_mediamtx(request: RawRequest<'_>) -> Reading {
    let body = json_object(request.body);
    let get = |k: &str| {
        body.as_ref()
            .and_then(|b| b.get(k))
            .and_then(json_text)
            .filter(|v| !v.is_empty())
    };
    let action = get("action").unwrap_or_default();
    let query = get("query").unwrap_or_default();
    let request_type = match action.as_str() {
        "read" | "publish" | "playback" => Some("new_session".to_string()),
        "" => None,
        other => Some(other.to_string()),
    };
    let mut own: Vec<(String, String)> = form(query.as_bytes());
    if let Some(b) = &body {
        own.extend(b.iter().filter_map(|(k, v)| json_text(v).map(|v| (k.clone(), v))));
    }
    let contract = vec![
        ("name", get("path")),
        ("ip", get("ip")),
        ("proto", get("protocol")),
        ("token", get("token").or_else(|| token_of_query(&query))),
        ("request_type", request_type),
        ("session_id", get("id")),
    ];
    Reading {
        fields: assemble(contract, own),
        body,
        publish: action == "publish",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn read(dialect: Dialect, method: &str, u: &str, ct: Option<&str>, body: &str) -> Reading {
        let u = url(u);
        dialect.read(RawRequest {
            method,
            url: &u,
            content_type: ct,
            body: body.as_bytes(),
        })
    }

    #[test]
    fn names_parse_and_unknown_ones_are_named() {
        for name in DIALECTS {
            assert_eq!(name.parse::<Dialect>().unwrap().name(), name);
        }
        let e = "wowza".parse::<Dialect>().unwrap_err();
        assert!(e.contains("wowza") && e.contains("nginx-rtmp"), "{e}");
        assert_eq!(Dialect::default(), Dialect::Flussonic);
    }

    #[test]
    fn flussonic_is_the_contract_itself() {
        let r = read(
            Dialect::Flussonic,
            "GET",
            "http://b/c1/on_play?name=c1-s&ip=127.0.0.2&proto=hls&token=t1&request_type=new_session",
            None,
            "",
        );
        assert_eq!(r.name(), Some("c1-s"));
        assert_eq!(r.field("token"), Some("t1"));
        assert!(!r.publish);
        let r = read(
            Dialect::Flussonic,
            "POST",
            "http://b/c1/on_publish",
            Some("application/json"),
            r#"{"name":"c1-p","token":"pt"}"#,
        );
        assert!(r.publish);
        assert_eq!(r.body.unwrap()["token"], "pt");
        let a = Answer::allow().with_header("X-AuthDuration", "5");
        assert_eq!(Dialect::Flussonic.write(&a), a);
    }

    /// The shape nginx-rtmp 1.2 sends from `on_play` (form POST), as observed from the real
    /// module in `tests/nginx_profiles.rs`; `on_update`'s `call=update_play` with `time` and
    /// `timestamp` as the module's directive documentation describes it.
    #[test]
    fn nginx_rtmp_form_posts_are_read() {
        let r = read(
            Dialect::NginxRtmp,
            "POST",
            "http://b/nginx/on_play",
            Some("application/x-www-form-urlencoded"),
            "app=static&flashver=LNX%209&swfurl=&tcurl=rtmp://127.0.0.1:1935/static&pageurl=\
             &addr=127.0.0.2&clientid=7&call=play&name=c1-s&start=0&duration=0&reset=0&token=t1",
        );
        assert_eq!(r.name(), Some("c1-s"));
        assert_eq!(r.field("ip"), Some("127.0.0.2"));
        assert_eq!(r.field("proto"), Some("rtmp"));
        assert_eq!(r.field("token"), Some("t1"));
        assert_eq!(r.field("request_type"), Some("new_session"));
        assert_eq!(r.field("session_id"), Some("7"));
        assert_eq!(r.field("tcurl"), Some("rtmp://127.0.0.1:1935/static"));
        assert_eq!(r.fields.iter().filter(|(k, _)| k == "token").count(), 1);
        assert!(!r.publish);
        let r = read(
            Dialect::NginxRtmp,
            "POST",
            "http://b/nginx/on_update",
            None,
            "app=static&addr=127.0.0.2&clientid=7&call=update_play&time=2&timestamp=1900&name=c1-s&token=t1",
        );
        assert_eq!(r.field("request_type"), Some("update_session"));
        let r = read(
            Dialect::NginxRtmp,
            "GET",
            "http://b/nginx/on_publish?call=publish&name=c1-p&addr=127.0.0.5&clientid=9&token=pt",
            None,
            "",
        );
        assert!(r.publish);
        assert_eq!(r.name(), Some("c1-p"));
        // nginx-rtmp reads the contract's statuses as they are.
        let redirect = Answer::redirect("other");
        assert_eq!(Dialect::NginxRtmp.write(&redirect), redirect);
    }

    /// The subrequest `conformance/targets/nginx-auth-request/nginx.conf` makes, as observed
    /// from nginx 1.22 in `tests/nginx_profiles.rs`.
    #[test]
    fn nginx_auth_request_reads_its_configured_query() {
        let r = read(
            Dialect::NginxAuthRequest,
            "GET",
            "http://b/nginx-auth-request/on_play?name=c1-s&ip=127.0.0.2&proto=hls&token=t%201&request_type=new_session",
            None,
            "",
        );
        assert_eq!(r.name(), Some("c1-s"));
        assert_eq!(r.field("ip"), Some("127.0.0.2"));
        assert_eq!(r.field("proto"), Some("hls"));
        assert_eq!(r.field("token"), Some("t 1"));
        assert_eq!(r.field("request_type"), Some("new_session"));
        assert_eq!(r.field("session_id"), None);
        assert!(!r.publish);
        let r = read(
            Dialect::NginxAuthRequest,
            "GET",
            "http://b/nginx-auth-request/on_publish?name=c1-s",
            None,
            "",
        );
        assert!(!r.publish, "nginx never checks a publisher through auth_request");
        let a = Answer::allow().with_header("X-AuthDuration", "1");
        assert_eq!(Dialect::NginxAuthRequest.write(&a), a);
    }

    /// SRS's HTTP hook body for `on_play`, as its HTTP callback documentation describes it
    /// (not observed from a running SRS).
    #[test]
    fn srs_hooks_are_read_and_answered_with_code_zero() {
        let r = read(
            Dialect::Srs,
            "POST",
            "http://b/srs/hooks",
            Some("application/json"),
            r#"{"server_id":"vid-0xk989d","action":"on_play","client_id":"341w361a","ip":"127.0.0.2",
                "vhost":"__defaultVhost__","app":"live","tcUrl":"rtmp://127.0.0.1:1935/live",
                "stream":"c1-s","param":"?token=t1&x=1","pageUrl":"","stream_url":"/live/c1-s",
                "stream_id":"vid-124q9y3"}"#,
        );
        assert_eq!(r.name(), Some("c1-s"));
        assert_eq!(r.field("ip"), Some("127.0.0.2"));
        assert_eq!(r.field("proto"), Some("rtmp"));
        assert_eq!(r.field("token"), Some("t1"));
        assert_eq!(r.field("x"), Some("1"));
        assert_eq!(r.field("request_type"), Some("new_session"));
        assert_eq!(r.field("session_id"), Some("341w361a"));
        assert!(!r.publish);
        let r = read(
            Dialect::Srs,
            "POST",
            "http://b/srs/hooks",
            None,
            r#"{"action":"on_publish","client_id":"1","ip":"127.0.0.5","app":"live","stream":"c1-p","param":""}"#,
        );
        assert!(r.publish);
        assert_eq!(r.field("token"), None);
        let allow = Dialect::Srs.write(&Answer::allow());
        assert_eq!((allow.status, allow.body), (200, Some(serde_json::json!({"code": 0}))));
        let deny = Dialect::Srs.write(&Answer::deny());
        assert_eq!(deny.status, 403);
        assert_ne!(deny.body, Some(serde_json::json!({"code": 0})));
    }

    /// MediaMTX's `authMethod: http` body, as its authentication documentation describes it
    /// (not observed from a running MediaMTX).
    #[test]
    fn mediamtx_auth_posts_are_read_and_denied_with_401() {
        let r = read(
            Dialect::MediaMtx,
            "POST",
            "http://b/mediamtx/auth",
            Some("application/json"),
            r#"{"user":"","password":"","token":"","ip":"127.0.0.2","action":"read","path":"c1-s",
                "protocol":"rtmp","id":"5b5e1b52-0c2c-4a4e-9d59-5c3a2b1e0f11","query":"token=t1"}"#,
        );
        assert_eq!(r.name(), Some("c1-s"));
        assert_eq!(r.field("proto"), Some("rtmp"));
        assert_eq!(
            r.field("token"),
            Some("t1"),
            "an empty token field falls back to the query"
        );
        assert_eq!(r.field("request_type"), Some("new_session"));
        assert_eq!(r.field("session_id"), Some("5b5e1b52-0c2c-4a4e-9d59-5c3a2b1e0f11"));
        let r = read(
            Dialect::MediaMtx,
            "POST",
            "http://b/mediamtx/auth",
            None,
            r#"{"user":"u","password":"p","token":"jwt1","ip":"127.0.0.5","action":"publish","path":"c1-p",
                "protocol":"rtsp","id":null,"query":""}"#,
        );
        assert!(r.publish);
        assert_eq!(r.field("token"), Some("jwt1"));
        assert_eq!(r.field("session_id"), None);
        assert_eq!(Dialect::MediaMtx.write(&Answer::deny()).status, 401);
        assert_eq!(Dialect::MediaMtx.write(&Answer::allow()).status, 200);
    }
}
