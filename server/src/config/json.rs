//! The management API's JSON shape of a stream (vendor schema `stream_config`, subset).
//!
//! ```json
//! {"name": "s1", "inputs": [{"url": "fake://fake"}],
//!  "on_play": {"url": "http://b/x", "session_keys": ["ip", "name", "proto", "token"],
//!              "domains": ["a.com"], "max_sessions": 2, "soft_limitation": false,
//!              "extra": {"k": "v"}},
//!  "on_publish": {…same shape…}, "password": "p",
//!  "protocols": {"hls": true, "mpegts": false, "rtmp": true, "rtsp": true, "dash": true},
//!  "dvr": {"root": "/var/usher/dvr", "depth": 3600}}
//! ```
//!
//! Reading is strict: unknown keys and wrong types are errors naming their path
//! (`on_play.session_keys[1]`), so a typo never silently drops an authorization setting.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::model::{AuthSpec, AuthTarget, DvrConfig, Protocols, SessionKeys, StreamConfig};
use super::parse::{RESERVED_OPTIONS, check_domain};

/// A bad API body: what was wrong and where (a JSON pointer-like path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ApiBodyError {
    pub path: String,
    pub message: String,
}

impl ApiBodyError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ApiBodyError {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a stream object")]
struct StreamBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    inputs: Option<Vec<InputBody>>,
    #[serde(default)]
    on_play: Option<AuthBody>,
    #[serde(default)]
    on_publish: Option<AuthBody>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    protocols: Option<ProtocolsBody>,
    #[serde(default)]
    dvr: Option<DvrBody>,
}

/// The vendor's stream `dvr` object (subset): where and how long the archive is kept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a dvr object {\"root\": …, \"depth\": …}")]
struct DvrBody {
    root: String,
    /// Seconds.
    #[serde(default)]
    depth: Option<u64>,
    /// The vendor's name of the depth (seconds).
    #[serde(default)]
    expiration: Option<u64>,
    /// Bytes.
    #[serde(default)]
    storage_limit: Option<u64>,
    /// Percent of the disk.
    #[serde(default)]
    disk_usage_limit: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an input object {\"url\": …}")]
struct InputBody {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an auth_spec object {\"url\": …}")]
pub(super) struct AuthBody {
    url: String,
    #[serde(default)]
    session_keys: Option<Vec<String>>,
    #[serde(default)]
    domains: Option<Vec<String>>,
    #[serde(default)]
    require_referer: Option<bool>,
    #[serde(default)]
    max_sessions: Option<u32>,
    #[serde(default)]
    soft_limitation: Option<bool>,
    #[serde(default)]
    extra: Option<BTreeMap<String, String>>,
    #[serde(default)]
    sign_key: Option<String>,
    #[serde(default)]
    allowed_countries: Option<Vec<String>>,
    #[serde(default)]
    disallowed_countries: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object of protocol name → true/false")]
struct ProtocolsBody {
    #[serde(default)]
    hls: Option<bool>,
    #[serde(default)]
    mpegts: Option<bool>,
    /// The vendor's name of `mpegts`.
    #[serde(default)]
    tshttp: Option<bool>,
    #[serde(default)]
    rtmp: Option<bool>,
    #[serde(default)]
    rtsp: Option<bool>,
    #[serde(default)]
    dash: Option<bool>,
}

/// Reads the body of `PUT /streamer/api/v3/streams/NAME`. The name in the path wins; a body
/// `name` that differs is an error.
pub fn stream_from_api_json(name: &str, body: &[u8]) -> Result<StreamConfig, ApiBodyError> {
    if name.is_empty() {
        return Err(ApiBodyError::new("name", "the stream name is empty"));
    }
    // Syntax first, so invalid JSON is reported with its line and column.
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiBodyError::new("body", format!("invalid JSON: {e}")))?;
    check_object_shapes(&value)?;
    // Then the typed read, which names the path of unknown fields, wrong types and repeats.
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: StreamBody = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        typed_error(&path, e.into_inner())
    })?;
    de.end()
        .map_err(|e| ApiBodyError::new("body", format!("invalid JSON: {e}")))?;

    if let Some(body_name) = &parsed.name
        && body_name != name
    {
        return Err(ApiBodyError::new(
            "name",
            format!("the body names stream '{body_name}' but the URL names '{name}'"),
        ));
    }
    let mut inputs = Vec::new();
    for (i, input) in parsed.inputs.unwrap_or_default().into_iter().enumerate() {
        if input.url.is_empty() {
            return Err(ApiBodyError::new(format!("inputs[{i}].url"), "the input URL is empty"));
        }
        inputs.push(input.url);
    }
    let on_play = parsed.on_play.map(|b| auth_from_body("on_play", b)).transpose()?;
    let on_publish = parsed.on_publish.map(|b| auth_from_body("on_publish", b)).transpose()?;
    if parsed.password.as_deref() == Some("") {
        return Err(ApiBodyError::new(
            "password",
            "the password is empty (omit it or use null for none)",
        ));
    }
    let mut protocols = Protocols::default();
    if let Some(p) = parsed.protocols {
        if let (Some(a), Some(b)) = (p.mpegts, p.tshttp)
            && a != b
        {
            return Err(ApiBodyError::new(
                "protocols.tshttp",
                "tshttp is the vendor's name of mpegts, and the two disagree",
            ));
        }
        let mpegts = p.mpegts.or(p.tshttp);
        for (name, value) in [
            ("hls", p.hls),
            ("mpegts", mpegts),
            ("rtmp", p.rtmp),
            ("rtsp", p.rtsp),
            ("dash", p.dash),
        ] {
            if let Some(on) = value {
                protocols.set(name, on);
            }
        }
    }
    let dvr = match parsed.dvr {
        None => None,
        Some(d) => Some(dvr_from_body(d)?),
    };
    Ok(StreamConfig {
        name: name.to_string(),
        inputs,
        on_play,
        on_publish,
        password: parsed.password,
        protocols,
        dvr,
    })
}

fn dvr_from_body(d: DvrBody) -> Result<DvrConfig, ApiBodyError> {
    if d.root.is_empty() {
        return Err(ApiBodyError::new("dvr.root", "the archive root is empty"));
    }
    let max = super::parse::MAX_CONFIG_SECONDS;
    let depth = match (d.depth, d.expiration) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiBodyError::new("dvr.expiration", "depth and expiration disagree"));
        }
        (Some(secs), _) | (None, Some(secs)) => secs,
        (None, None) => return Err(ApiBodyError::new("dvr.depth", "missing field (depth or expiration)")),
    };
    if depth == 0 || depth > max {
        return Err(ApiBodyError::new(
            "dvr.depth",
            format!("expected whole seconds, 1..{max}"),
        ));
    }
    if d.storage_limit == Some(0) {
        return Err(ApiBodyError::new(
            "dvr.storage_limit",
            "expected a positive number of bytes",
        ));
    }
    if d.disk_usage_limit.is_some_and(|p| p == 0 || p > 100) {
        return Err(ApiBodyError::new(
            "dvr.disk_usage_limit",
            "expected a percentage, 1..100",
        ));
    }
    Ok(DvrConfig {
        root: d.root,
        depth: std::time::Duration::from_secs(depth),
        storage_limit: d.storage_limit,
        disk_usage_limit: d.disk_usage_limit,
    })
}

/// Turns serde's wording into the API's: the path names the field, the message says what was
/// expected (`on_play.sesion_keys: unknown field (expected one of …)`).
fn typed_error(path: &str, e: serde_json::Error) -> ApiBodyError {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    let message = message
        .replace("expected u32", "expected a positive integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected an object");
    let parent = if path == "." { "" } else { path };
    let join = |field: &str| {
        if parent.is_empty() {
            field.to_string()
        } else {
            format!("{parent}.{field}")
        }
    };
    let field_of = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, rest)| (field.to_string(), rest.to_string()))
    };
    let (path, message) = if let Some((_, rest)) = field_of("unknown field `") {
        // The path already ends with the unknown key.
        (
            parent.to_string(),
            format!("unknown field ({})", rest.trim_start_matches(", ")),
        )
    } else if let Some((field, _)) = field_of("missing field `") {
        (join(&field), "missing field".to_string())
    } else if let Some((field, _)) = field_of("duplicate field `") {
        (join(&field), "duplicate field".to_string())
    } else {
        (
            if parent.is_empty() {
                "body".to_string()
            } else {
                parent.to_string()
            },
            message,
        )
    };
    ApiBodyError::new(path, format!("{message} (line {}, column {})", e.line(), e.column()))
}

/// How an error names the kind of a JSON value ("a string", "null"…).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde's derived structs also accept a JSON array (fields by position); the API does not,
/// so every place that holds an object must hold one.
fn check_object_shapes(body: &Value) -> Result<(), ApiBodyError> {
    let expect_object = |v: &Value, path: &str| match v {
        Value::Object(_) => Ok(()),
        other => Err(ApiBodyError::new(
            path,
            format!("expected an object, found {}", json_type(other)),
        )),
    };
    let root = match body {
        Value::Object(m) => m,
        other => {
            return Err(ApiBodyError::new(
                "body",
                format!("expected a stream object, found {}", json_type(other)),
            ));
        }
    };
    for key in ["on_play", "on_publish", "protocols", "dvr"] {
        if let Some(v) = root.get(key).filter(|v| !v.is_null()) {
            expect_object(v, key)?;
        }
    }
    if let Some(Value::Array(items)) = root.get("inputs") {
        for (i, item) in items.iter().enumerate() {
            expect_object(item, &format!("inputs[{i}]"))?;
        }
    }
    Ok(())
}

pub(super) fn auth_from_body(at: &str, body: AuthBody) -> Result<AuthSpec, ApiBodyError> {
    let target = AuthTarget::parse(&body.url).map_err(|m| ApiBodyError::new(format!("{at}.url"), m))?;
    let mut spec = AuthSpec::new(target);
    if let Some(keys) = body.session_keys {
        spec.session_keys = SessionKeys::from_items(keys.iter().map(String::as_str))
            .map_err(|m| ApiBodyError::new(format!("{at}.session_keys"), m))?;
    }
    for (i, d) in body.domains.unwrap_or_default().iter().enumerate() {
        spec.domains
            .push(check_domain(d).map_err(|m| ApiBodyError::new(format!("{at}.domains[{i}]"), m))?);
    }
    spec.require_referer = body.require_referer.unwrap_or(false);
    if spec.require_referer && spec.domains.is_empty() {
        return Err(ApiBodyError::new(
            format!("{at}.require_referer"),
            "true needs a domain lock: give domains (or drop require_referer)",
        ));
    }
    if let Some(n) = body.max_sessions {
        if n == 0 {
            return Err(ApiBodyError::new(
                format!("{at}.max_sessions"),
                "expected a positive integer, found 0 (omit it or use null for no cap)",
            ));
        }
        spec.max_sessions = Some(n);
    }
    spec.soft_limitation = body.soft_limitation.unwrap_or(false);
    if let Some(key) = body.sign_key {
        if key.is_empty() {
            return Err(ApiBodyError::new(
                format!("{at}.sign_key"),
                "the key is empty (omit it for no signature)",
            ));
        }
        spec.sign_key = Some(key);
    }
    for (field, list) in [
        ("allowed_countries", body.allowed_countries),
        ("disallowed_countries", body.disallowed_countries),
    ] {
        let mut codes: Vec<String> = Vec::new();
        for (i, item) in list.unwrap_or_default().iter().enumerate() {
            let code =
                super::model::parse_country(item).map_err(|m| ApiBodyError::new(format!("{at}.{field}[{i}]"), m))?;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        if field == "allowed_countries" {
            spec.allowed_countries = codes;
        } else {
            spec.disallowed_countries = codes;
        }
    }
    if let Some(both) = super::parse::countries_in_both(&spec) {
        return Err(ApiBodyError::new(
            format!("{at}.disallowed_countries"),
            format!("country {both} is also in allowed_countries"),
        ));
    }
    for (k, v) in body.extra.unwrap_or_default() {
        let path = format!("{at}.extra.{k}");
        if k.is_empty() {
            return Err(ApiBodyError::new(path, "an extra key is empty"));
        }
        if k.contains('=') {
            return Err(ApiBodyError::new(path, "an extra key must not contain '='"));
        }
        if RESERVED_OPTIONS.contains(&k.as_str()) {
            return Err(ApiBodyError::new(
                path,
                format!("'{k}' is a field of {at}, not an extra option"),
            ));
        }
        if let Some(known) = super::parse::near_miss(&k) {
            tracing::warn!(
                path = %path,
                resembles = known,
                "extra option '{k}' is sent to the backend as it is; did you mean the field '{known}'?"
            );
        }
        spec.extra.insert(k, v);
    }
    Ok(spec)
}

/// The JSON the API answers for a stream; [`stream_from_api_json`] reads it back to an equal
/// `StreamConfig`.
pub fn stream_to_api_json(stream: &StreamConfig) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(stream.name));
    out.insert(
        "inputs".into(),
        Value::Array(stream.inputs.iter().map(|url| json!({ "url": url })).collect()),
    );
    if let Some(spec) = &stream.on_play {
        out.insert("on_play".into(), auth_to_json(spec));
    }
    if let Some(spec) = &stream.on_publish {
        out.insert("on_publish".into(), auth_to_json(spec));
    }
    if let Some(p) = &stream.password {
        out.insert("password".into(), json!(p));
    }
    let protocols: Map<String, Value> = Protocols::NAMES
        .iter()
        .map(|n| ((*n).to_string(), json!(stream.protocols.get(n).unwrap_or(true))))
        .collect();
    out.insert("protocols".into(), Value::Object(protocols));
    if let Some(dvr) = &stream.dvr {
        out.insert("dvr".into(), dvr_to_json(dvr));
    }
    Value::Object(out)
}

pub(super) fn auth_to_json(spec: &AuthSpec) -> Value {
    let mut out = Map::new();
    out.insert("url".into(), json!(spec.target.to_string()));
    // The default keys (name, ip, proto, token; AMB-25) are shown by omission, as they always
    // were: a stream without session_keys reads back without them.
    if spec.session_keys != SessionKeys::default() {
        out.insert("session_keys".into(), json!(spec.session_keys.to_items()));
    }
    out.insert("domains".into(), json!(spec.domains));
    if spec.require_referer {
        out.insert("require_referer".into(), json!(true));
    }
    if let Some(n) = spec.max_sessions {
        out.insert("max_sessions".into(), json!(n));
    }
    out.insert("soft_limitation".into(), json!(spec.soft_limitation));
    if !spec.allowed_countries.is_empty() {
        out.insert("allowed_countries".into(), json!(spec.allowed_countries));
    }
    if !spec.disallowed_countries.is_empty() {
        out.insert("disallowed_countries".into(), json!(spec.disallowed_countries));
    }
    out.insert("extra".into(), json!(spec.extra));
    if let Some(key) = &spec.sign_key {
        out.insert("sign_key".into(), json!(key));
    }
    Value::Object(out)
}

/// The fields of the vendor's `auth_spec` this server reads (plus its own `require_referer`
/// and `sign_key`).
const AUTH_FIELDS: [&str; 10] = [
    "url",
    "session_keys",
    "domains",
    "require_referer",
    "max_sessions",
    "soft_limitation",
    "extra",
    "sign_key",
    "allowed_countries",
    "disallowed_countries",
];

/// Reads an `auth_spec` object found at `at` of a backend's `config` override. Unlike the
/// API, fields this server does not know are left out and returned (as paths) rather than
/// refused; a known field with a bad value is an error naming its path.
pub(super) fn auth_from_override(at: &str, value: &Value) -> Result<(AuthSpec, Vec<String>), ApiBodyError> {
    let Value::Object(map) = value else {
        return Err(ApiBodyError::new(
            at,
            format!("expected an auth_spec object, found {}", json_type(value)),
        ));
    };
    let mut known = Map::new();
    let mut ignored = Vec::new();
    for (k, v) in map {
        if AUTH_FIELDS.contains(&k.as_str()) {
            if !v.is_null() {
                known.insert(k.clone(), v.clone());
            }
        } else {
            ignored.push(format!("{at}.{k}"));
        }
    }
    let body: AuthBody = serde_path_to_error::deserialize(Value::Object(known)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            ApiBodyError::new(at, inner)
        } else {
            ApiBodyError::new(format!("{at}.{path}"), inner)
        }
    })?;
    Ok((auth_from_body(at, body)?, ignored))
}

/// The stream `dvr` object the API answers (and an override's `config_override` part shows).
pub(super) fn dvr_to_json(dvr: &DvrConfig) -> Value {
    let mut out = Map::new();
    out.insert("root".into(), json!(dvr.root));
    out.insert("depth".into(), json!(dvr.depth.as_secs()));
    if let Some(bytes) = dvr.storage_limit {
        out.insert("storage_limit".into(), json!(bytes));
    }
    if let Some(p) = dvr.disk_usage_limit {
        out.insert("disk_usage_limit".into(), json!(p));
    }
    Value::Object(out)
}
