//! The runtime `config` override layer (CONF-01..04, AMB-16).
//!
//! A backend answer may carry `"config": {…}`, a part of the vendor's stream object. The
//! fields this server implements are applied: `inputs` (their `url`), `protocols` (the
//! server's names and the vendor's, `tshttp` for HTTP MPEG-TS), `password`, `on_publish` and
//! `dvr` (`root`, `depth` or its vendor twin `expiration`). Every other field of the vendor's
//! schema (and any unknown one) is accepted and ignored: [`StreamOverride::parse`] lists them
//! so the caller can log them in one line. A malformed value of an applied field rejects the
//! whole override before anything changes (AMB-16), so a stream is never left
//! half-overridden. The override is kept apart from the on-disk configuration (CONF-04) and
//! [`StreamOverride::apply`] computes the effective stream from the two.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::json::{auth_from_override, auth_to_json, dvr_to_json, json_type};
use super::model::{AuthSpec, DvrConfig, Protocols, StreamConfig};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct OverrideError {
    pub path: String,
    pub message: String,
}

impl OverrideError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        OverrideError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Input schemes an override may point a stream at. Anything that would make the server
/// connect elsewhere (rtmp://, http://…) is refused: a backend answer must not turn the
/// server into a proxy for arbitrary hosts.
pub const OVERRIDE_INPUT_SCHEMES: [&str; 3] = ["fake://", "file://", "publish://"];

/// A validated partial stream configuration from a backend answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOverride {
    /// Replaces the stream's whole input list when present (never empty).
    pub inputs: Option<Vec<String>>,
    /// Protocol name (one of [`Protocols::NAMES`]) → on/off.
    pub protocols: BTreeMap<String, bool>,
    /// Replaces the publishers' password (PUB-04).
    pub password: Option<String>,
    /// Replaces the stream's `on_publish`.
    pub on_publish: Option<AuthSpec>,
    /// Replaces the stream's archive settings; the root is confined to the media root.
    pub dvr: Option<DvrConfig>,
}

/// A validated override and the paths of the fields it carried that this server ignores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedOverride {
    pub config: StreamOverride,
    /// `config.thumbnails`, `config.inputs[0].priority`, `config.protocols.webrtc`, …
    pub ignored: Vec<String>,
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, OverrideError> {
    v.as_object()
        .ok_or_else(|| OverrideError::new(path, format!("expected an object, found {}", json_type(v))))
}

impl StreamOverride {
    /// Validates the `config` object of a backend answer, dropping the fields this server
    /// does not implement. Errors are paths from `config` (`config.inputs[0].url`).
    pub fn from_json(value: &Value) -> Result<StreamOverride, OverrideError> {
        Self::parse(value).map(|p| p.config)
    }

    /// [`from_json`](Self::from_json), also returning what was ignored. A `null` value
    /// counts as not given (the vendor's schema makes most fields nullable).
    pub fn parse(value: &Value) -> Result<ParsedOverride, OverrideError> {
        let root = object(value, "config")?;
        let mut out = StreamOverride::default();
        let mut ignored = Vec::new();
        for (key, v) in root {
            if v.is_null() {
                continue;
            }
            match key.as_str() {
                "inputs" => out.inputs = Some(inputs_from_json(v, &mut ignored)?),
                "protocols" => out.protocols = protocols_from_json(v, &mut ignored)?,
                "password" => out.password = Some(password_from_json(v)?),
                "on_publish" => {
                    let (spec, more) = auth_from_override("config.on_publish", v)
                        .map_err(|e| OverrideError::new(e.path, e.message))?;
                    if spec.target == super::model::AuthTarget::AllowAll {
                        // The same reasoning as for `publish://` inputs: one viewer's answer
                        // must not drop the check on every publisher.
                        return Err(OverrideError::new(
                            "config.on_publish.url",
                            "an override may not open publishing to everyone ('true'); name a backend",
                        ));
                    }
                    ignored.extend(more);
                    out.on_publish = Some(spec);
                }
                "dvr" => out.dvr = Some(dvr_from_json(v, &mut ignored)?),
                other => ignored.push(format!("config.{other}")),
            }
        }
        Ok(ParsedOverride { config: out, ignored })
    }

    /// Layers a newer override on this one: each key the newer one sets wins.
    pub fn merge(&mut self, newer: StreamOverride) {
        if newer.inputs.is_some() {
            self.inputs = newer.inputs;
        }
        self.protocols.extend(newer.protocols);
        if newer.password.is_some() {
            self.password = newer.password;
        }
        if newer.on_publish.is_some() {
            self.on_publish = newer.on_publish;
        }
        if newer.dvr.is_some() {
            self.dvr = newer.dvr;
        }
    }

    /// The effective stream configuration: `base` with this override's keys replaced.
    pub fn apply(&self, base: &StreamConfig) -> StreamConfig {
        let mut out = base.clone();
        if let Some(inputs) = &self.inputs {
            out.inputs = inputs.clone();
        }
        for (name, on) in &self.protocols {
            // Names were checked by from_json; a hand-built override with an unknown name
            // changes nothing rather than failing at apply time.
            out.protocols.set(name, *on);
        }
        if let Some(password) = &self.password {
            out.password = Some(password.clone());
        }
        if let Some(spec) = &self.on_publish {
            out.on_publish = Some(spec.clone());
        }
        if let Some(dvr) = &self.dvr {
            out.dvr = Some(dvr.clone());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self == &StreamOverride::default()
    }

    /// The override in the backend's own shape (and the API's `config_override` part);
    /// [`StreamOverride::from_json`] reads it back to an equal override.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        if let Some(inputs) = &self.inputs {
            out.insert(
                "inputs".into(),
                Value::Array(inputs.iter().map(|u| json!({ "url": u })).collect()),
            );
        }
        if !self.protocols.is_empty() {
            out.insert("protocols".into(), json!(self.protocols));
        }
        if let Some(password) = &self.password {
            out.insert("password".into(), json!(password));
        }
        if let Some(spec) = &self.on_publish {
            out.insert("on_publish".into(), auth_to_json(spec));
        }
        if let Some(dvr) = &self.dvr {
            out.insert("dvr".into(), dvr_to_json(dvr));
        }
        Value::Object(out)
    }

    /// [`to_json`](Self::to_json) with the secrets (password, signing key) replaced, for logs.
    pub fn to_log_json(&self) -> Value {
        let mut out = self.to_json();
        if let Some(map) = out.as_object_mut() {
            if map.contains_key("password") {
                map.insert("password".into(), json!("<redacted>"));
            }
            if let Some(Value::Object(spec)) = map.get_mut("on_publish")
                && spec.contains_key("sign_key")
            {
                spec.insert("sign_key".into(), json!("<redacted>"));
            }
        }
        out
    }
}

fn password_from_json(v: &Value) -> Result<String, OverrideError> {
    match v {
        Value::String(p) if !p.is_empty() => Ok(p.clone()),
        Value::String(_) => Err(OverrideError::new(
            "config.password",
            "the password is empty (omit it to keep the stream's)",
        )),
        other => Err(OverrideError::new(
            "config.password",
            format!("expected a string, found {}", json_type(other)),
        )),
    }
}

/// The vendor's stream `dvr` object: `root` (confined to the media root, like a `file://`
/// input) and the depth in seconds as `depth` or `expiration`.
fn dvr_from_json(v: &Value, ignored: &mut Vec<String>) -> Result<DvrConfig, OverrideError> {
    let obj = object(v, "config.dvr")?;
    let mut root = None;
    let mut depth = None;
    let mut storage_limit = None;
    let mut disk_usage_limit = None;
    for (key, value) in obj {
        if value.is_null() {
            continue;
        }
        let path = format!("config.dvr.{key}");
        match key.as_str() {
            "root" => {
                let text = value.as_str().ok_or_else(|| {
                    OverrideError::new(&path, format!("expected a string, found {}", json_type(value)))
                })?;
                check_relative_path(text, "dvr root").map_err(|m| OverrideError::new(&path, m))?;
                root = Some(text.to_string());
            }
            "depth" | "expiration" => {
                let max = super::parse::MAX_CONFIG_SECONDS;
                let secs = value.as_u64().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    OverrideError::new(&path, format!("expected whole seconds, 1..{max}, found {value}"))
                })?;
                if depth.is_some_and(|d| d != secs) {
                    return Err(OverrideError::new(&path, "depth and expiration disagree"));
                }
                depth = Some(secs);
            }
            "storage_limit" => {
                storage_limit = Some(value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    OverrideError::new(&path, format!("expected a positive number of bytes, found {value}"))
                })?);
            }
            "disk_usage_limit" => {
                disk_usage_limit = Some(
                    value
                        .as_u64()
                        .filter(|n| (1..=100).contains(n))
                        .map(|n| n as u8)
                        .ok_or_else(|| {
                            OverrideError::new(&path, format!("expected a percentage, 1..100, found {value}"))
                        })?,
                );
            }
            _ => ignored.push(path),
        }
    }
    let root = root.ok_or_else(|| OverrideError::new("config.dvr.root", "missing field"))?;
    let depth = depth.ok_or_else(|| OverrideError::new("config.dvr.depth", "missing field (depth or expiration)"))?;
    Ok(DvrConfig {
        root,
        depth: Duration::from_secs(depth),
        storage_limit,
        disk_usage_limit,
    })
}

fn inputs_from_json(v: &Value, ignored: &mut Vec<String>) -> Result<Vec<String>, OverrideError> {
    let items = v.as_array().ok_or_else(|| {
        OverrideError::new(
            "config.inputs",
            format!("expected an array of {{\"url\": …}}, found {}", json_type(v)),
        )
    })?;
    if items.is_empty() {
        return Err(OverrideError::new(
            "config.inputs",
            "the input list is empty (a stream needs at least one input)",
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("config.inputs[{i}]");
        let obj = object(item, &path)?;
        let mut url = None;
        for (key, v) in obj {
            if key == "url" {
                url = Some(v);
            } else {
                // The vendor's input options (priority, source_timeout, headers, …): this
                // server plays the first input as it is.
                ignored.push(format!("{path}.{key}"));
            }
        }
        let path = format!("{path}.url");
        let url = url.ok_or_else(|| OverrideError::new(&path, "missing field"))?;
        let url = url
            .as_str()
            .ok_or_else(|| OverrideError::new(&path, format!("expected a string, found {}", json_type(url))))?;
        check_input(url).map_err(|m| OverrideError::new(&path, m))?;
        out.push(url.to_string());
    }
    Ok(out)
}

/// An override input must be `fake://…`, `publish://…` or a `file://` path inside the media root.
fn check_input(url: &str) -> Result<(), String> {
    let Some(scheme) = OVERRIDE_INPUT_SCHEMES.iter().find(|s| url.starts_with(*s)) else {
        return Err(format!(
            "input '{}' has a scheme an override may not use (allowed: {})",
            short(&crate::redact::url(url)),
            OVERRIDE_INPUT_SCHEMES.join(", ")
        ));
    };
    if *scheme != "file://" {
        return Ok(());
    }
    check_relative_path(&url[scheme.len()..], "file://")
}

/// A path from a backend answer must stay under the media root: relative, no `..` (also
/// %-escaped: the media layer may decode escapes, so the decoded path is judged), no NUL.
fn check_relative_path(raw: &str, what: &str) -> Result<(), String> {
    let path = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    if path.is_empty() {
        return Err(format!("{what} has no path"));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Err(format!(
            "{what} path '{}' is absolute; it must be relative to the media root",
            short(&path)
        ));
    }
    if path.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(format!(
            "{what} path '{}' contains '..'; it must stay under the media root",
            short(&path)
        ));
    }
    if path.contains('\0') {
        return Err(format!("{what} path contains a NUL byte"));
    }
    Ok(())
}

fn short(text: &str) -> String {
    if text.chars().count() <= 64 {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(64).collect();
        s.push('…');
        s
    }
}

/// `protocols`: the server's switch names and the vendor's (`tshttp` = `mpegts`); the
/// vendor's `whitelist: true` turns off every switch the object does not turn on. Names of
/// protocols this server does not serve (the vendor's `webrtc`, `srt`, … or any other) are
/// ignored; a value that is not a boolean (or null) rejects the override.
fn protocols_from_json(v: &Value, ignored: &mut Vec<String>) -> Result<BTreeMap<String, bool>, OverrideError> {
    let obj = object(v, "config.protocols")?;
    let mut out: BTreeMap<String, bool> = BTreeMap::new();
    let mut whitelist = false;
    for (name, on) in obj {
        let path = format!("config.protocols.{name}");
        if on.is_null() {
            continue;
        }
        let on = on
            .as_bool()
            .ok_or_else(|| OverrideError::new(&path, format!("expected true or false, found {}", json_type(on))))?;
        if name == "whitelist" {
            whitelist = on;
            continue;
        }
        let Some(switch) = Protocols::canonical(name) else {
            ignored.push(path);
            continue;
        };
        if out.get(switch).is_some_and(|before| *before != on) {
            return Err(OverrideError::new(
                path,
                format!("'{name}' and '{switch}' name the same protocol and disagree"),
            ));
        }
        out.insert(switch.to_string(), on);
    }
    if whitelist {
        for name in Protocols::NAMES {
            out.entry(name.to_string()).or_insert(false);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::check_input;

    #[test]
    fn config_override_inputs_stay_in_the_media_root() {
        for good in [
            "fake://fake",
            "publish://",
            "file://vod/bunny.mp4",
            "file://a..b.mp4",
            "file://./x.mp4",
        ] {
            assert_eq!(check_input(good), Ok(()), "{good}");
        }
        for bad in [
            "file:///abs",
            "file://..",
            "file://a/../b",
            "file://a/%2E%2E/b",
            "file://%2fabs",
            "file://c:/x",
            "file://a\\..\\b",
            "file://",
            "rtmp://x/y",
            "udp://239.0.0.1:1234",
            "",
        ] {
            assert!(check_input(bad).is_err(), "{bad}");
        }
    }
}
