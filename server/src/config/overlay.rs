//! The runtime `config` override layer (CONF-01..04, AMB-16).
//!
//! A backend answer may carry `"config": {"inputs": [{"url": …}], "protocols": {"hls": false}}`.
//! The override is validated whole before anything changes: one bad key, type, protocol name or
//! input rejects all of it (AMB-16), so a stream is never left half-overridden. It is kept apart
//! from the on-disk configuration (CONF-04) and [`StreamOverride::apply`] computes the effective
//! stream from the two.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::json::json_type;
use super::model::{Protocols, StreamConfig};

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
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, OverrideError> {
    v.as_object()
        .ok_or_else(|| OverrideError::new(path, format!("expected an object, found {}", json_type(v))))
}

impl StreamOverride {
    /// Validates the `config` object of a backend answer. Errors are paths from `config`
    /// (`config.inputs[0].url`).
    pub fn from_json(value: &Value) -> Result<StreamOverride, OverrideError> {
        let root = object(value, "config")?;
        let mut out = StreamOverride::default();
        for (key, v) in root {
            match key.as_str() {
                "inputs" => out.inputs = Some(inputs_from_json(v)?),
                "protocols" => out.protocols = protocols_from_json(v)?,
                other => {
                    return Err(OverrideError::new(
                        format!("config.{other}"),
                        "unknown field (an override may hold only inputs and protocols)",
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Layers a newer override on this one: each key the newer one sets wins.
    pub fn merge(&mut self, newer: StreamOverride) {
        if newer.inputs.is_some() {
            self.inputs = newer.inputs;
        }
        self.protocols.extend(newer.protocols);
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
        out
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_none() && self.protocols.is_empty()
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
        Value::Object(out)
    }
}

fn inputs_from_json(v: &Value) -> Result<Vec<String>, OverrideError> {
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
            if key != "url" {
                return Err(OverrideError::new(
                    format!("{path}.{key}"),
                    "unknown field (an input holds only url)",
                ));
            }
            url = Some(v);
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
    let raw = &url[scheme.len()..];
    // The media layer may decode %-escapes, so judge the decoded path.
    let path = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    if path.is_empty() {
        return Err("file:// input has no path".into());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Err(format!(
            "file:// path '{}' is absolute; it must be relative to the media root",
            short(&path)
        ));
    }
    if path.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(format!(
            "file:// path '{}' contains '..'; it must stay under the media root",
            short(&path)
        ));
    }
    if path.contains('\0') {
        return Err("file:// path contains a NUL byte".into());
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

fn protocols_from_json(v: &Value) -> Result<BTreeMap<String, bool>, OverrideError> {
    let obj = object(v, "config.protocols")?;
    let mut out = BTreeMap::new();
    for (name, on) in obj {
        let path = format!("config.protocols.{name}");
        if !Protocols::NAMES.contains(&name.as_str()) {
            return Err(OverrideError::new(
                path,
                format!("unknown protocol (known: {})", Protocols::NAMES.join(", ")),
            ));
        }
        let on = on
            .as_bool()
            .ok_or_else(|| OverrideError::new(&path, format!("expected true or false, found {}", json_type(on))))?;
        out.insert(name.clone(), on);
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
