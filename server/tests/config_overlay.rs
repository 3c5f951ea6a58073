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
            "unknown key",
            json!({ "inputs": [{ "url": "fake://fake" }], "dvr": { "root": "/" } }),
        ),
        ("inputs not an array", json!({ "inputs": "fake://fake" })),
        ("inputs empty", json!({ "inputs": [] })),
        ("input as a string", json!({ "inputs": ["fake://fake"] })),
        ("input without url", json!({ "inputs": [{}] })),
        ("input url not a string", json!({ "inputs": [{ "url": 1 }] })),
        (
            "input unknown key",
            json!({ "inputs": [{ "url": "fake://fake", "priority": 1 }] }),
        ),
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
        (
            "protocol unknown",
            json!({ "protocols": { "hls": false, "webrtc": false } }),
        ),
        ("protocol value not a boolean", json!({ "protocols": { "hls": "off" } })),
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
