//! The runtime `config` override from a backend answer (CONF-01..04, AMB-16): what is accepted,
//! every reason for rejecting the whole override, merge order, and the effective stream.

use proptest::prelude::*;
use serde_json::{Value, json};
use usher_server::config::{OverrideError, Protocols, StreamConfig, StreamOverride};

fn base() -> StreamConfig {
    StreamConfig {
        name: "s1".into(),
        inputs: vec!["file://vod/bunny.mp4".into()],
        protocols: Protocols {
            dash: false,
            ..Protocols::default()
        },
        ..StreamConfig::default()
    }
}

fn ov(v: Value) -> StreamOverride {
    StreamOverride::from_json(&v).unwrap_or_else(|e| panic!("expected {v} to be accepted, got {e}"))
}

#[test]
fn the_seed_example_replaces_the_input() {
    let o = ov(json!({ "inputs": [{ "url": "fake://fake" }] }));
    assert_eq!(o.inputs, Some(vec!["fake://fake".to_string()]));
    assert!(o.protocols.is_empty());
    let effective = o.apply(&base());
    assert_eq!(effective.inputs, ["fake://fake"]);
    assert_eq!(
        effective.protocols,
        base().protocols,
        "keys the override does not name stay"
    );
    assert_eq!(effective.name, "s1");
}

#[test]
fn protocols_switch_on_and_off() {
    let o = ov(json!({ "protocols": { "hls": false, "dash": true } }));
    let effective = o.apply(&base());
    assert_eq!(
        effective.protocols,
        Protocols {
            hls: false,
            dash: true,
            ..Protocols::default()
        }
    );
    assert_eq!(effective.inputs, base().inputs);
}

#[test]
fn every_accepted_input_scheme() {
    let o = ov(json!({ "inputs": [
        { "url": "fake://fake" },
        { "url": "publish://" },
        { "url": "file://vod/bunny.mp4" },
        { "url": "file://a..b/c.mp4" },
    ]}));
    assert_eq!(o.inputs.unwrap().len(), 4);
}

#[test]
fn an_empty_override_changes_nothing() {
    let o = ov(json!({}));
    assert!(o.is_empty());
    assert_eq!(o.apply(&base()), base());
    assert_eq!(o.to_json(), json!({}));
}

/// Each bad override with the exact error it must produce.
fn bad_overrides() -> Vec<(&'static str, Value)> {
    vec![
        ("not an object", json!([{ "url": "fake://fake" }])),
        ("null", Value::Null),
        (
            "dvr root absolute",
            json!({ "inputs": [{ "url": "fake://fake" }], "dvr": { "root": "/", "depth": 60 } }),
        ),
        (
            "dvr root with dot-dot",
            json!({ "dvr": { "root": "a/../..", "expiration": 60 } }),
        ),
        ("dvr without depth", json!({ "dvr": { "root": "archive" } })),
        ("dvr depth zero", json!({ "dvr": { "root": "archive", "depth": 0 } })),
        (
            "dvr depth and expiration disagree",
            json!({ "dvr": { "root": "archive", "depth": 60, "expiration": 61 } }),
        ),
        ("password empty", json!({ "password": "" })),
        ("password not a string", json!({ "password": 1 })),
        (
            "on_publish open to everyone",
            json!({ "on_publish": { "url": "true" } }),
        ),
        ("on_publish bad url", json!({ "on_publish": { "url": "ftp://x" } })),
        (
            "on_publish bad country",
            json!({ "on_publish": { "url": "http://b/p", "allowed_countries": ["USA"] } }),
        ),
        ("inputs not an array", json!({ "inputs": "fake://fake" })),
        ("inputs empty", json!({ "inputs": [] })),
        ("input as a string", json!({ "inputs": ["fake://fake"] })),
        ("input without url", json!({ "inputs": [{}] })),
        ("input url not a string", json!({ "inputs": [{ "url": 1 }] })),
        (
            "input scheme rtmp",
            json!({ "inputs": [{ "url": "rtmp://evil/app/s" }] }),
        ),
        (
            "input scheme http",
            json!({ "inputs": [{ "url": "fake://fake" }, { "url": "http://169.254.169.254/" }] }),
        ),
        (
            "input scheme uppercase",
            json!({ "inputs": [{ "url": "FILE://vod/x.mp4" }] }),
        ),
        (
            "file path absolute",
            json!({ "inputs": [{ "url": "file:///etc/passwd" }] }),
        ),
        (
            "file path with dot-dot",
            json!({ "inputs": [{ "url": "file://vod/../../etc/passwd" }] }),
        ),
        ("file path only dot-dot", json!({ "inputs": [{ "url": "file://.." }] })),
        (
            "file path escaped dot-dot",
            json!({ "inputs": [{ "url": "file://vod/%2e%2e/secret" }] }),
        ),
        (
            "file path with backslashes",
            json!({ "inputs": [{ "url": "file://vod\\..\\secret" }] }),
        ),
        ("file path empty", json!({ "inputs": [{ "url": "file://" }] })),
        ("protocols not an object", json!({ "protocols": ["hls"] })),
        ("protocol value not a boolean", json!({ "protocols": { "hls": "off" } })),
        (
            "vendor name disagrees with ours",
            json!({ "protocols": { "mpegts": true, "tshttp": false } }),
        ),
        (
            "whitelist not a boolean",
            json!({ "protocols": { "whitelist": "yes" } }),
        ),
    ]
}

#[test]
fn bad_overrides_are_rejected_whole_with_the_path() {
    let mut report = String::new();
    for (case, value) in bad_overrides() {
        match StreamOverride::from_json(&value) {
            Ok(o) => panic!("case `{case}` was accepted but must fail: {o:?}"),
            Err(OverrideError { path, message }) => {
                assert!(path.starts_with("config"), "{case}: {path}");
                report.push_str(&format!("{case}:\n    {path}: {message}\n"));
            }
        }
    }
    insta::assert_snapshot!("bad_overrides", report);
}

/// CONF-01 (issue 18): the vendor's protocol names are understood; `tshttp` is our `mpegts`.
#[test]
fn the_vendors_protocol_names_are_accepted() {
    let parsed = StreamOverride::parse(&json!({ "protocols": { "tshttp": false, "rtmp": false } })).unwrap();
    assert!(parsed.ignored.is_empty(), "{:?}", parsed.ignored);
    let effective = parsed.config.apply(&base());
    assert!(!effective.protocols.mpegts, "tshttp switches HTTP MPEG-TS");
    assert!(!effective.protocols.rtmp);
    assert!(effective.protocols.hls);
    // Both names with one value are fine.
    let o = ov(json!({ "protocols": { "tshttp": true, "mpegts": true } }));
    assert_eq!(o.protocols.get("mpegts"), Some(&true));
}

/// A protocol the server does not serve is accepted and ignored (listed for the log line),
/// never a reason to reject the override.
#[test]
fn unserved_protocols_are_ignored_not_refused() {
    let parsed = StreamOverride::parse(&json!({ "protocols": {
        "hls": false, "webrtc": false, "srt": true, "mss": false, "carrier-pigeon": true, "player": null
    }}))
    .unwrap();
    assert_eq!(parsed.config.protocols.len(), 1);
    assert_eq!(parsed.config.protocols.get("hls"), Some(&false));
    assert_eq!(
        parsed.ignored,
        [
            "config.protocols.carrier-pigeon",
            "config.protocols.mss",
            "config.protocols.srt",
            "config.protocols.webrtc"
        ]
    );
}

/// The vendor's `whitelist: true`: only the protocols named true stay on.
#[test]
fn a_whitelist_turns_off_what_it_does_not_name() {
    let o = ov(json!({ "protocols": { "whitelist": true, "hls": true, "tshttp": true } }));
    let effective = o.apply(&base());
    assert_eq!(
        effective.protocols,
        Protocols {
            hls: true,
            mpegts: true,
            rtmp: false,
            rtsp: false,
            dash: false,
        }
    );
    let o = ov(json!({ "protocols": { "whitelist": false, "rtsp": false } }));
    assert_eq!(o.protocols.len(), 1, "without whitelist only the named switch changes");
}

/// Override breadth (issue 18): the stream fields this server implements are applied, the
/// rest of the vendor's stream object is ignored and listed.
#[test]
fn implemented_fields_apply_and_the_rest_is_listed() {
    let parsed = StreamOverride::parse(&json!({
        "name": "other",
        "title": "News",
        "inputs": [{ "url": "fake://fake", "priority": 1, "source_timeout": 10, "headers": { "a": "b" } }],
        "password": "pub-secret",
        "on_play": { "url": "http://elsewhere/auth" },
        "on_publish": { "url": "http://b/publish", "max_sessions": 2, "mystery": 1 },
        "dvr": { "root": "archive", "expiration": 3600, "storage_limit": 1000000, "disk_usage_limit": 90 },
        "thumbnails": { "enabled": true },
        "transcoder": null,
    }))
    .unwrap();
    let o = &parsed.config;
    assert_eq!(o.inputs, Some(vec!["fake://fake".to_string()]));
    assert_eq!(o.password.as_deref(), Some("pub-secret"));
    let publish = o.on_publish.as_ref().expect("on_publish applied");
    assert_eq!(publish.target.to_string(), "http://b/publish");
    assert_eq!(publish.max_sessions, Some(2));
    let dvr = o.dvr.as_ref().expect("dvr applied");
    assert_eq!((dvr.root.as_str(), dvr.depth.as_secs()), ("archive", 3600));
    let mut ignored = parsed.ignored.clone();
    ignored.sort();
    assert_eq!(
        ignored,
        [
            "config.inputs[0].headers",
            "config.inputs[0].priority",
            "config.inputs[0].source_timeout",
            "config.name",
            "config.on_play",
            "config.on_publish.mystery",
            "config.thumbnails",
            "config.title",
        ]
    );
    let effective = o.apply(&base());
    assert_eq!(effective.password.as_deref(), Some("pub-secret"));
    assert_eq!(effective.on_publish, o.on_publish);
    assert_eq!(effective.dvr, o.dvr);
    assert_eq!(
        effective.on_play,
        base().on_play,
        "on_play is never replaced by an answer"
    );
    assert_eq!(effective.name, "s1");
    // The override reads back from its own JSON, and its log form hides the password.
    assert_eq!(StreamOverride::from_json(&o.to_json()).as_ref(), Ok(o));
    let logged = o.to_log_json().to_string();
    assert!(!logged.contains("pub-secret"), "{logged}");
}

#[test]
fn a_good_part_does_not_survive_a_bad_part() {
    // inputs are fine, protocols are not: nothing may be applied (AMB-16).
    let v = json!({ "inputs": [{ "url": "fake://fake" }], "protocols": { "hls": 0 } });
    let e = StreamOverride::from_json(&v).unwrap_err();
    assert_eq!(e.path, "config.protocols.hls");
}

#[test]
fn merge_lets_newer_keys_win() {
    let mut layer = ov(json!({ "inputs": [{ "url": "fake://fake" }], "protocols": { "hls": false, "rtmp": false } }));
    layer.merge(ov(json!({ "protocols": { "hls": true, "dash": true } })));
    assert_eq!(
        layer.inputs,
        Some(vec!["fake://fake".to_string()]),
        "inputs not named by the newer layer stay"
    );
    assert_eq!(
        layer.to_json(),
        json!({ "inputs": [{ "url": "fake://fake" }], "protocols": { "hls": true, "rtmp": false, "dash": true } })
    );
    layer.merge(ov(json!({ "inputs": [{ "url": "publish://" }] })));
    assert_eq!(layer.inputs, Some(vec!["publish://".to_string()]));
    let effective = layer.apply(&base());
    assert_eq!(effective.inputs, ["publish://"]);
    assert_eq!(
        effective.protocols,
        Protocols {
            rtmp: false,
            ..Protocols::default()
        }
    );
}

#[test]
fn merging_an_empty_override_changes_nothing() {
    let mut layer = ov(json!({ "protocols": { "hls": false } }));
    let before = layer.clone();
    layer.merge(StreamOverride::default());
    assert_eq!(layer, before);
}

fn good_override() -> impl Strategy<Value = StreamOverride> {
    let input = prop_oneof![
        Just("fake://fake".to_string()),
        Just("publish://".to_string()),
        "file://[a-z]{1,8}(/[a-z0-9_]{1,8}[a-z0-9_.]{0,4}){0,3}\\.mp4",
    ];
    (
        proptest::option::of(proptest::collection::vec(input, 1..4)),
        proptest::collection::btree_map(proptest::sample::select(Protocols::NAMES.to_vec()), any::<bool>(), 0..5),
    )
        .prop_map(|(inputs, protocols)| StreamOverride {
            inputs,
            protocols: protocols.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..StreamOverride::default()
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("inputs".to_string()),
            Just("protocols".to_string()),
            Just("url".to_string()),
            Just("hls".to_string()),
            Just("file://../x".to_string()),
            Just("fake://fake".to_string()),
            ".{0,8}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("inputs".to_string()),
                    Just("protocols".to_string()),
                    Just("url".to_string()),
                    Just("hls".to_string()),
                    Just("rtmp".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn to_json_then_from_json_gives_the_same_override(o in good_override()) {
        prop_assert_eq!(StreamOverride::from_json(&o.to_json()), Ok(o));
    }

    #[test]
    fn apply_only_changes_what_the_override_names(o in good_override(), hls in any::<bool>()) {
        let mut b = base();
        b.protocols.hls = hls;
        let effective = o.apply(&b);
        prop_assert_eq!(&effective.name, &b.name);
        prop_assert_eq!(&effective.inputs, o.inputs.as_ref().unwrap_or(&b.inputs));
        for name in Protocols::NAMES {
            let want = o.protocols.get(name).copied().or(b.protocols.get(name));
            prop_assert_eq!(effective.protocols.get(name), want);
        }
    }

    #[test]
    fn random_json_never_panics_and_accepted_overrides_are_safe(v in json_value()) {
        if let Ok(o) = StreamOverride::from_json(&v) {
            for url in o.inputs.iter().flatten() {
                prop_assert!(["fake://", "file://", "publish://"].iter().any(|s| url.starts_with(s)));
                if let Some(path) = url.strip_prefix("file://") {
                    prop_assert!(!path.starts_with('/'), "{}", url);
                    prop_assert!(!path.split(['/', '\\']).any(|seg| seg == ".."), "{}", url);
                }
            }
            prop_assert_eq!(StreamOverride::from_json(&o.to_json()), Ok(o));
        }
    }
}
