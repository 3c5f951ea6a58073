//! Issue 18 item 7: the management API requests the suite sends are checked against JSON
//! Schemas written in this repository from the vendor's published OpenAPI
//! (conformance/schemas/), so that `usher check --target` speaks the vendor's API. The suite
//! runs against the embedded server with `USHER_API_RECORD` set, and every recorded body of
//! `PUT streams/NAME` (stream_config.schema.json), `PUT auth_backends/NAME`
//! (auth_backend_config.schema.json) and `PUT config` (server_config.schema.json) is validated.
//! The validator below implements the keywords the schemas use (type, properties, required,
//! additionalProperties, items, minimum, maximum, pattern, local $ref); a keyword it does not
//! know fails the test rather than being skipped.

mod common;

use std::time::Duration;

use serde_json::{Map, Value};

/// Fields the suite sends that the vendor's schemas do not have, by schema: Usher's own
/// extensions and settings the vendor does not publish, each listed in docs/conformance.md
/// ("The management API: differences from the vendor's").
const STREAM_EXTENSIONS: [&str; 1] = ["require_referer"];
const AUTH_BACKEND_EXTENSIONS: [&str; 0] = [];
const CONFIG_EXTENSIONS: [&str; 1] = ["no_auto_token"];

const STREAM: &str = "stream_config.schema.json";
const AUTH_BACKEND: &str = "auth_backend_config.schema.json";
const CONFIG: &str = "server_config.schema.json";

fn schema(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the schema file")).expect("the schema is JSON")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Appends to `errors` every place where `value` breaks `schema` (`root` resolves `$ref`s).
fn validate(root: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(rules) = schema.as_object() else {
        errors.push(format!("{path}: the schema here is not an object"));
        return;
    };
    for (keyword, rule) in rules {
        match keyword.as_str() {
            "$comment" | "definitions" | "properties" => {}
            "$ref" => {
                let target = rule
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/definitions/"))
                    .and_then(|name| root["definitions"].get(name));
                match target {
                    Some(target) => validate(root, target, value, path, errors),
                    None => errors.push(format!("{path}: unresolved $ref {rule}")),
                }
            }
            "type" => {
                let allowed: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                let actual = type_name(value);
                let ok = allowed
                    .iter()
                    .any(|t| *t == actual || (*t == "number" && actual == "integer"));
                if !ok {
                    errors.push(format!("{path}: expected {allowed:?}, found {actual}"));
                }
            }
            "required" => {
                if let Some(obj) = value.as_object() {
                    for name in rule.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !obj.contains_key(name) {
                            errors.push(format!("{path}: missing required {name}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                let (Some(obj), known) = (value.as_object(), rules.get("properties").and_then(Value::as_object)) else {
                    continue;
                };
                let empty = Map::new();
                let known = known.unwrap_or(&empty);
                for (name, item) in obj {
                    if known.contains_key(name) {
                        continue;
                    }
                    match rule {
                        Value::Bool(false) => errors.push(format!("{path}.{name}: not in the vendor's schema")),
                        Value::Bool(true) => {}
                        sub => validate(root, sub, item, &format!("{path}.{name}"), errors),
                    }
                }
            }
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    validate(root, rule, item, &format!("{path}[{i}]"), errors);
                }
            }
            "minimum" | "maximum" => {
                if let (Some(n), Some(bound)) = (value.as_f64(), rule.as_f64()) {
                    let ok = if keyword == "minimum" { n >= bound } else { n <= bound };
                    if !ok {
                        errors.push(format!("{path}: {n} is outside the {keyword} {bound}"));
                    }
                }
            }
            "pattern" => {
                if let (Some(text), Some(pattern)) = (value.as_str(), rule.as_str()) {
                    let re = regex::Regex::new(pattern).expect("a valid pattern in the schema");
                    if !re.is_match(text) {
                        errors.push(format!("{path}: '{text}' does not match {pattern}"));
                    }
                }
            }
            other => errors.push(format!(
                "{path}: the test's validator does not know the keyword {other}"
            )),
        }
    }
    if let (Some(props), Some(obj)) = (rules.get("properties").and_then(Value::as_object), value.as_object()) {
        for (name, sub) in props {
            if let Some(item) = obj.get(name) {
                validate(root, sub, item, &format!("{path}.{name}"), errors);
            }
        }
    }
}

fn errors_against(file: &str, body: &Value) -> Vec<String> {
    let root = schema(file);
    let mut errors = Vec::new();
    validate(&root, &root, body, "body", &mut errors);
    errors
}

fn errors_of(body: &Value) -> Vec<String> {
    errors_against(STREAM, body)
}

#[test]
fn the_validator_catches_what_the_vendor_would_not_understand() {
    use serde_json::json;
    let good = json!({
        "inputs": [{ "url": "fake://fake" }],
        "on_play": { "url": "http://b/auth", "session_keys": ["name", "ip", "proto", "token"], "max_sessions": 2,
                     "allowed_countries": ["US"], "extra": { "site": "1" } },
        "protocols": { "tshttp": false, "hls": true },
        "dvr": { "root": "/storage", "expiration": 3600 }
    });
    assert_eq!(errors_of(&good), Vec::<String>::new());
    for (bad, expected) in [
        (
            json!({ "protocols": { "mpegts": false } }),
            "body.protocols.mpegts: not in the vendor's schema",
        ),
        (
            json!({ "dvr": { "root": "/s", "depth": 60 } }),
            "body.dvr.depth: not in the vendor's schema",
        ),
        (json!({ "inputs": [{}] }), "body.inputs[0]: missing required url"),
        (
            json!({ "on_play": { "max_sessions": 0 } }),
            "body.on_play.max_sessions: 0 is outside the minimum 1",
        ),
        (json!({ "on_play": { "allowed_countries": ["usa"] } }), "does not match"),
        (
            json!({ "on_play": { "extra": { "n": 1 } } }),
            "body.on_play.extra.n: expected [\"string\"], found integer",
        ),
        (
            json!({ "password": true }),
            "body.password: expected [\"string\"], found boolean",
        ),
    ] {
        let errors = errors_of(&bad);
        assert!(errors.iter().any(|e| e.contains(expected)), "{bad}: {errors:?}");
    }
}

#[test]
fn the_auth_backend_and_config_schemas_catch_what_the_vendor_would_not_understand() {
    use serde_json::json;
    let good = json!({
        "allow_tokens": ["a"], "deny_tokens": ["b"], "allow_ips": ["10.0.0.0/8"], "deny_ips": ["10.0.0.1"],
        "allow_countries": ["US"], "deny_countries": ["GB"], "allow_uas": ["VLC"], "deny_uas": ["curl"],
        "backends": [{ "url": "http://b/auth" }], "allow_default": true
    });
    assert_eq!(errors_against(AUTH_BACKEND, &good), Vec::<String>::new());
    assert_eq!(
        errors_against(CONFIG, &json!({ "auth_token": "tk" })),
        Vec::<String>::new()
    );
    for (file, bad, expected) in [
        (
            AUTH_BACKEND,
            json!({ "allow_tokens": "a" }),
            "body.allow_tokens: expected [\"array\", \"null\"], found string",
        ),
        (
            AUTH_BACKEND,
            json!({ "deny_ips": [1] }),
            "body.deny_ips[0]: expected [\"string\"], found integer",
        ),
        (
            AUTH_BACKEND,
            json!({ "backends": [{}] }),
            "body.backends[0]: missing required url",
        ),
        (
            AUTH_BACKEND,
            json!({ "backends": [{ "url": "http://b", "timeout": 3 }] }),
            "body.backends[0].timeout: not in the vendor's schema",
        ),
        (
            AUTH_BACKEND,
            json!({ "allow_default": "yes" }),
            "body.allow_default: expected [\"boolean\"], found string",
        ),
        (
            AUTH_BACKEND,
            json!({ "allow_referers": ["x"] }),
            "body.allow_referers: not in the vendor's schema",
        ),
        (
            CONFIG,
            json!({ "auth_token": 1 }),
            "body.auth_token: expected [\"string\"], found integer",
        ),
        (
            CONFIG,
            json!({ "no_auto_token": true }),
            "body.no_auto_token: not in the vendor's schema",
        ),
    ] {
        let errors = errors_against(file, &bad);
        assert!(errors.iter().any(|e| e.contains(expected)), "{file} {bad}: {errors:?}");
    }
}

/// Whether `error` is about one of `extensions` (a field the vendor's schema does not have,
/// listed in docs/conformance.md).
fn is_listed_difference(error: &str, extensions: &[&str]) -> bool {
    extensions
        .iter()
        .any(|x| error.contains(&format!(".{x}: not in the vendor's schema")))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_body_the_suite_puts_matches_the_vendors_schema() {
    let dir = std::env::temp_dir().join(format!("usher-api-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let record = dir.join("requests.jsonl");
    let _ = std::fs::remove_file(&record);
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(common::USHER)
            .args(["check", "--concurrency", "8"])
            .env("CI", "true")
            .env("USHER_API_RECORD", &record)
            .env_remove("RUST_LOG")
            .env_remove("USHER_API_AUTH")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the run ends within 10 minutes")
    .expect("usher runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the suite itself must pass:\n{stdout}");
    let text = std::fs::read_to_string(&record).expect("requests were recorded");
    let mut streams = 0;
    let (mut auth_backends, mut configs) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    let mut seen_rules = std::collections::BTreeSet::new();
    let mut seen_settings = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for line in text.lines() {
        let request: Value = serde_json::from_str(line).expect("one JSON request per line");
        let (method, path) = (
            request["method"].as_str().unwrap_or(""),
            request["path"].as_str().unwrap_or(""),
        );
        if method != "PUT" {
            continue;
        }
        let body = &request["body"];
        let (file, extensions): (&str, &[&str]) = if path.starts_with("streams/") {
            streams += 1;
            for key in ["on_play", "on_publish", "dvr", "password"] {
                if body.get(key).is_some() {
                    seen.insert(key);
                }
            }
            (STREAM, &STREAM_EXTENSIONS)
        } else if path.starts_with("auth_backends/") {
            auth_backends += 1;
            seen_rules.extend(body.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
            (AUTH_BACKEND, &AUTH_BACKEND_EXTENSIONS)
        } else if path == "config" {
            configs += 1;
            seen_settings.extend(body.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
            (CONFIG, &CONFIG_EXTENSIONS)
        } else {
            continue;
        };
        for error in errors_against(file, body) {
            if !is_listed_difference(&error, extensions) {
                problems.push(format!("PUT {path}: {error}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        streams >= 50,
        "too few streams were put ({streams}); was the request recorder on?"
    );
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["dvr", "on_play", "on_publish", "password"],
        "the run must exercise every part of the stream body"
    );
    assert!(
        auth_backends >= 5,
        "too few auth_backends were put ({auth_backends}); was the request recorder on?"
    );
    for rule in [
        "allow_default",
        "allow_ips",
        "allow_tokens",
        "backends",
        "deny_ips",
        "deny_tokens",
    ] {
        assert!(
            seen_rules.contains(rule),
            "the run must exercise `{rule}` of the auth_backend body: {seen_rules:?}"
        );
    }
    assert!(
        configs >= 2,
        "too few PUT config ({configs}); was the request recorder on?"
    );
    assert_eq!(
        seen_settings.into_iter().collect::<Vec<_>>(),
        ["auth_token", "no_auto_token"],
        "the run must exercise every server setting the suite changes"
    );
    assert!(
        problems.is_empty(),
        "requests the vendor's schema does not allow:\n{}",
        problems.join("\n")
    );
}
