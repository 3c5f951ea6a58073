//! The management API's stream JSON: good bodies, bad bodies with an error naming the path,
//! and JSON → config → JSON round trips.

mod config_gen;

use proptest::prelude::*;
use serde_json::json;
use usher_server::config::{
    ApiBodyError, AuthSpec, AuthTarget, DvrConfig, Protocols, SessionKeys, StreamConfig, stream_from_api_json,
    stream_to_api_json,
};

fn read(name: &str, body: &str) -> Result<StreamConfig, ApiBodyError> {
    stream_from_api_json(name, body.as_bytes())
}

#[test]
fn a_full_body_is_read() {
    let body = r#"{
        "name": "s1",
        "inputs": [{"url": "fake://fake"}, {"url": "publish://"}],
        "on_play": {"url": "http://b/x", "session_keys": ["ip", "name", "proto", "token"],
                    "domains": ["a.com"], "max_sessions": 2, "soft_limitation": true,
                    "extra": {"k": "v"}},
        "on_publish": {"url": "auth://office"},
        "password": "p",
        "protocols": {"hls": true, "mpegts": false, "rtmp": true, "rtsp": true, "dash": false},
        "dvr": {"root": "/var/usher/dvr", "depth": 3600}
    }"#;
    let mut on_play = AuthSpec::new(AuthTarget::Http("http://b/x".into()));
    on_play.session_keys = SessionKeys::parse("ip,name,proto,token").unwrap();
    on_play.domains = vec!["a.com".into()];
    on_play.max_sessions = Some(2);
    on_play.soft_limitation = true;
    on_play.extra = config_gen::extra(&[("k", "v")]);
    let expected = StreamConfig {
        name: "s1".into(),
        inputs: vec!["fake://fake".into(), "publish://".into()],
        on_play: Some(on_play),
        on_publish: Some(AuthSpec::new(AuthTarget::Configurator("office".into()))),
        password: Some("p".into()),
        protocols: Protocols {
            hls: true,
            mpegts: false,
            rtmp: true,
            rtsp: true,
            dash: false,
        },
        dvr: Some(DvrConfig::new("/var/usher/dvr", std::time::Duration::from_secs(3600))),
    };
    assert_eq!(read("s1", body), Ok(expected));
}

#[test]
fn a_minimal_body_takes_the_defaults_and_the_path_name() {
    let s = read("cam", "{}").unwrap();
    assert_eq!(
        s,
        StreamConfig {
            name: "cam".into(),
            ..StreamConfig::default()
        }
    );
    let s = read(
        "cam",
        r#"{"on_play": null, "on_publish": null, "password": null, "inputs": null}"#,
    )
    .unwrap();
    assert_eq!(
        s,
        StreamConfig {
            name: "cam".into(),
            ..StreamConfig::default()
        }
    );
}

#[test]
fn missing_protocols_stay_on() {
    let s = read("s", r#"{"protocols": {"hls": false}}"#).unwrap();
    assert_eq!(
        s.protocols,
        Protocols {
            hls: false,
            ..Protocols::default()
        }
    );
}

#[test]
fn on_play_url_takes_every_target_of_the_file() {
    for (url, target) in [
        ("true", AuthTarget::AllowAll),
        ("auth://x", AuthTarget::Configurator("x".into())),
        ("/opt/check.lua", AuthTarget::Script("/opt/check.lua".into())),
        ("https://b/x?y=1", AuthTarget::Http("https://b/x?y=1".into())),
    ] {
        let body = json!({ "on_play": { "url": url } }).to_string();
        assert_eq!(read("s", &body).unwrap().on_play.unwrap().target, target, "{url}");
    }
}

#[test]
fn the_same_name_in_the_body_is_fine() {
    assert_eq!(read("s1", r#"{"name": "s1"}"#).unwrap().name, "s1");
}

/// Each bad body with the exact error it must produce.
const BAD_BODIES: &[(&str, &str)] = &[
    ("invalid JSON", r#"{"name": "s1",}"#),
    (
        "invalid JSON on line 3",
        "{\n  \"inputs\": [\n    {\"url\" \"fake://fake\"}\n  ]\n}",
    ),
    ("empty body", ""),
    ("trailing text", r#"{} {}"#),
    ("not an object", r#"["s1"]"#),
    ("name mismatch", r#"{"name": "s2"}"#),
    ("name of the wrong type", r#"{"name": 7}"#),
    ("unknown top-level field", r#"{"nmae": "s1"}"#),
    ("duplicate field", r#"{"password": "a", "password": "b"}"#),
    ("inputs not an array", r#"{"inputs": "fake://fake"}"#),
    ("input as a string", r#"{"inputs": ["fake://fake"]}"#),
    ("input without url", r#"{"inputs": [{}]}"#),
    ("input url of the wrong type", r#"{"inputs": [{"url": 5}]}"#),
    (
        "input with an empty url",
        r#"{"inputs": [{"url": "fake://fake"}, {"url": ""}]}"#,
    ),
    (
        "input unknown field",
        r#"{"inputs": [{"url": "fake://fake", "priority": 1}]}"#,
    ),
    (
        "on_play unknown field",
        r#"{"on_play": {"url": "http://b/x", "sesion_keys": ["ip"]}}"#,
    ),
    ("on_play as an array", r#"{"on_play": ["http://b/x"]}"#),
    ("on_play as a string", r#"{"on_play": "http://b/x"}"#),
    ("on_play without url", r#"{"on_play": {"max_sessions": 1}}"#),
    ("on_play unknown target", r#"{"on_play": {"url": "ftp://b/x"}}"#),
    (
        "session_keys missing proto",
        r#"{"on_play": {"url": "true", "session_keys": ["ip", "name", "token"]}}"#,
    ),
    (
        "session_keys unknown key",
        r#"{"on_play": {"url": "true", "session_keys": ["ip", "name", "proto", "cookie"]}}"#,
    ),
    (
        "session_keys as a string",
        r#"{"on_play": {"url": "true", "session_keys": "ip,name,proto"}}"#,
    ),
    (
        "session_keys item of the wrong type",
        r#"{"on_play": {"url": "true", "session_keys": ["ip", 1]}}"#,
    ),
    (
        "max_sessions as a string",
        r#"{"on_play": {"url": "true", "max_sessions": "2"}}"#,
    ),
    (
        "max_sessions zero",
        r#"{"on_play": {"url": "true", "max_sessions": 0}}"#,
    ),
    (
        "max_sessions negative",
        r#"{"on_publish": {"url": "true", "max_sessions": -1}}"#,
    ),
    (
        "max_sessions fractional",
        r#"{"on_play": {"url": "true", "max_sessions": 1.5}}"#,
    ),
    (
        "soft_limitation as a string",
        r#"{"on_play": {"url": "true", "soft_limitation": "true"}}"#,
    ),
    (
        "domains empty item",
        r#"{"on_play": {"url": "true", "domains": ["a.com", ""]}}"#,
    ),
    (
        "domains item with a comma",
        r#"{"on_play": {"url": "true", "domains": ["a.com,b.com"]}}"#,
    ),
    (
        "extra value not a string",
        r#"{"on_play": {"url": "true", "extra": {"k": 1}}}"#,
    ),
    (
        "extra key reserved",
        r#"{"on_play": {"url": "true", "extra": {"max_sessions": "1"}}}"#,
    ),
    (
        "extra key with equals",
        r#"{"on_play": {"url": "true", "extra": {"a=b": "1"}}}"#,
    ),
    ("password empty", r#"{"password": ""}"#),
    ("password of the wrong type", r#"{"password": true}"#),
    (
        "protocols unknown name",
        r#"{"protocols": {"hls": true, "webrtc": true}}"#,
    ),
    ("protocols value not a boolean", r#"{"protocols": {"hls": "yes"}}"#),
    ("protocols as an array", r#"{"protocols": ["hls"]}"#),
];

#[test]
fn bad_bodies_name_the_path_and_what_was_expected() {
    let mut report = String::new();
    for (case, body) in BAD_BODIES {
        match read("s1", body) {
            Ok(s) => panic!("case `{case}` was accepted but must fail: {s:?}"),
            Err(e) => {
                assert!(!e.path.is_empty() && !e.message.is_empty(), "{case}: {e:?}");
                report.push_str(&format!("{case}:\n    {e}\n"));
            }
        }
    }
    insta::assert_snapshot!("bad_bodies", report);
}

#[test]
fn an_empty_path_name_is_refused() {
    let e = read("", "{}").unwrap_err();
    assert_eq!(e.path, "name");
}

#[test]
fn the_answer_has_the_vendor_shape() {
    let mut on_play = AuthSpec::new(AuthTarget::Http("http://b/x".into()));
    on_play.session_keys = SessionKeys::parse("ip,name,proto,token").unwrap();
    on_play.max_sessions = Some(3);
    let s = StreamConfig {
        name: "s1".into(),
        inputs: vec!["fake://fake".into()],
        on_play: Some(on_play),
        on_publish: Some(AuthSpec::new(AuthTarget::AllowAll)),
        password: Some("p".into()),
        protocols: Protocols {
            dash: false,
            ..Protocols::default()
        },
        dvr: Some(DvrConfig::new("dvr", std::time::Duration::from_secs(60))),
    };
    assert_eq!(
        stream_to_api_json(&s),
        json!({
            "name": "s1",
            "inputs": [{"url": "fake://fake"}],
            "on_play": {"url": "http://b/x", "session_keys": ["ip", "name", "proto", "token"],
                        "domains": [], "max_sessions": 3, "soft_limitation": false, "extra": {}},
            "on_publish": {"url": "true", "domains": [], "soft_limitation": false, "extra": {}},
            "password": "p",
            "protocols": {"hls": true, "mpegts": true, "rtmp": true, "rtsp": true, "dash": false},
            "dvr": {"root": "dvr", "depth": 60}
        })
    );
}

/// DOM-02's opt-in through the API: read, shown only when set, and refused without a domain
/// lock with the path of the field.
#[test]
fn require_referer_is_read_shown_and_needs_domains() {
    let s = read(
        "s1",
        r#"{"on_play": {"url": "http://b/x", "domains": ["good.com"], "require_referer": true}}"#,
    )
    .unwrap();
    assert!(s.on_play.as_ref().unwrap().require_referer);
    assert_eq!(stream_to_api_json(&s)["on_play"]["require_referer"], json!(true));
    let plain = read("s1", r#"{"on_play": {"url": "http://b/x", "domains": ["good.com"]}}"#).unwrap();
    assert!(!plain.on_play.as_ref().unwrap().require_referer);
    assert!(stream_to_api_json(&plain)["on_play"].get("require_referer").is_none());
    let e = read("s1", r#"{"on_play": {"url": "http://b/x", "require_referer": true}}"#).unwrap_err();
    assert_eq!(e.path, "on_play.require_referer", "{e}");
    assert!(e.message.contains("needs a domain lock"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn to_json_then_from_json_gives_the_same_stream(stream in config_gen::stream()) {
        let body = serde_json::to_vec(&stream_to_api_json(&stream)).unwrap();
        let back = stream_from_api_json(&stream.name, &body);
        prop_assert_eq!(back, Ok(stream));
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in any::<Vec<u8>>()) {
        let _ = stream_from_api_json("s", &body);
    }

    #[test]
    fn json_like_bodies_never_panic(body in "[{}\\[\\]\":, a-z0-9._/-]{0,120}") {
        if let Err(e) = stream_from_api_json("s", body.as_bytes()) {
            prop_assert!(!e.path.is_empty() && !e.message.is_empty());
        }
    }
}
