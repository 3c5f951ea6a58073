//! The configurator block in the configuration file (T7, CZR): every rule kind is read, the
//! printed form reads back, and each bad block is refused with `file:line:column` and what was
//! expected (snapshot).

use usher_server::config::{AuthBackendConfig, AuthTarget, BackendUrl, IpPrefix, parse_config};

const BLOCK: &str = r#"
geoip_db "/var/lib/GeoLite2 Country.mmdb";

auth_backend office {
  allow ua MAG TVIP;
  deny ua "Bad Bot";
  backend http://127.0.0.1:9001/auth site=1 "note=a b";
  backend https://mw.example/check;
  allow token vip vip2;
  allow token vip3;
  deny token stolen;
  allow ip 10.0.0.1 172.16/24;
  deny ip 192.168.0/24 2001:db8::/32;
  allow country us DE;
  deny country CN;
  allow default;
}

auth_backend empty {
}

stream s { on_play auth://office; }
"#;

fn prefixes(items: &[&str]) -> Vec<IpPrefix> {
    items
        .iter()
        .map(|i| IpPrefix::parse(i).expect("valid prefix"))
        .collect()
}

#[test]
fn every_rule_kind_is_read_and_lines_add_up() {
    let config = parse_config(BLOCK, "usher.conf").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.geoip_db.as_deref(), Some("/var/lib/GeoLite2 Country.mmdb"));
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let office = AuthBackendConfig {
        name: "office".into(),
        allow_tokens: strings(&["vip", "vip2", "vip3"]),
        deny_tokens: strings(&["stolen"]),
        allow_ips: prefixes(&["10.0.0.1/32", "172.16.0.0/24"]),
        deny_ips: prefixes(&["192.168.0.0/24", "2001:db8::/32"]),
        allow_countries: strings(&["US", "DE"]),
        deny_countries: strings(&["CN"]),
        allow_uas: strings(&["MAG", "TVIP"]),
        deny_uas: strings(&["Bad Bot"]),
        backends: vec![
            BackendUrl {
                url: "http://127.0.0.1:9001/auth".into(),
                extra: [
                    ("note".to_string(), "a b".to_string()),
                    ("site".to_string(), "1".to_string()),
                ]
                .into(),
            },
            BackendUrl {
                url: "https://mw.example/check".into(),
                extra: Default::default(),
            },
        ],
        allow_default: true,
    };
    assert_eq!(config.auth_backends, vec![office, AuthBackendConfig::new("empty")]);
    assert_eq!(
        config.streams[0].on_play.as_ref().map(|s| &s.target),
        Some(&AuthTarget::Configurator("office".into()))
    );
    let printed = config.to_string();
    assert_eq!(
        parse_config(&printed, "printed").unwrap_or_else(|e| panic!("{e}\n{printed}")),
        config
    );
    insta::assert_snapshot!("printed_auth_backend", printed);
}

#[test]
fn a_block_may_come_after_the_streams_that_name_it() {
    let text = "stream s { on_play auth://late; }\nauth_backend late { allow default; }\n";
    assert!(parse_config(text, "u.conf").is_ok());
    let text =
        "vod v { storage s; on_play auth://x; }\ntemplate t { prefix p; on_publish auth://x; }\nauth_backend x { }\n";
    assert!(parse_config(text, "u.conf").is_ok());
}

const BAD: &[(&str, &str)] = &[
    ("unknown rule kind", "auth_backend b {\n  allow tokens x;\n}\n"),
    ("deny default", "auth_backend b {\n  deny default;\n}\n"),
    (
        "allow default with a value",
        "auth_backend b {\n  allow default yes;\n}\n",
    ),
    (
        "duplicate allow default",
        "auth_backend b {\n  allow default;\n  allow default;\n}\n",
    ),
    ("rule without values", "auth_backend b {\n  allow ip;\n}\n"),
    ("rule without a kind", "auth_backend b {\n  deny;\n}\n"),
    (
        "octet above 255",
        "auth_backend b {\n  deny ip 10.0.0.1 300.1.1.1;\n}\n",
    ),
    (
        "abbreviated address without length",
        "auth_backend b {\n  allow ip 172.16;\n}\n",
    ),
    ("prefix too long", "auth_backend b {\n  allow ip 10.0.0.0/33;\n}\n"),
    ("ipv6 prefix too long", "auth_backend b {\n  allow ip ::/129;\n}\n"),
    ("host name as ip", "auth_backend b {\n  allow ip example.com;\n}\n"),
    ("three-letter country", "auth_backend b {\n  allow country RU USA;\n}\n"),
    ("empty ua", "auth_backend b {\n  deny ua \"\";\n}\n"),
    ("empty token", "auth_backend b {\n  allow token \"\";\n}\n"),
    ("backend not http", "auth_backend b {\n  backend ftp://x/y;\n}\n"),
    ("backend without url", "auth_backend b {\n  backend;\n}\n"),
    (
        "backend option without value",
        "auth_backend b {\n  backend http://b/x site;\n}\n",
    ),
    (
        "backend duplicate option",
        "auth_backend b {\n  backend http://b/x a=1 a=2;\n}\n",
    ),
    ("missing semicolon", "auth_backend b {\n  allow token x\n}\n"),
    (
        "unknown directive in block",
        "auth_backend b {\n  input fake://fake;\n}\n",
    ),
    ("stream inside block", "auth_backend b {\n  stream s { }\n}\n"),
    ("block without braces", "auth_backend b;\n"),
    ("block without name", "auth_backend { }\n"),
    ("unclosed block", "auth_backend b {\n  allow default;\n"),
    ("duplicate block", "auth_backend b { }\nauth_backend b {\n}\n"),
    (
        "dangling reference",
        "auth_backend b { }\nstream s {\n  on_play auth://nowhere;\n}\n",
    ),
    (
        "dangling reference without blocks",
        "stream s {\n  on_publish auth://x;\n}\n",
    ),
    ("geoip_db without path", "geoip_db;\n"),
    ("duplicate geoip_db", "geoip_db a.mmdb;\ngeoip_db b.mmdb;\n"),
    ("auth_backend inside a stream", "stream s {\n  auth_backend b { }\n}\n"),
    ("allow at top level", "allow token x;\n"),
];

#[test]
fn bad_blocks_name_file_line_column_and_what_was_expected() {
    let mut report = String::new();
    for (case, text) in BAD {
        match parse_config(text, "usher.conf") {
            Ok(c) => panic!("case `{case}` parsed but must fail: {c:?}"),
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1, "{case}: {e}");
                report.push_str(&format!("{case}:\n    {e}\n"));
            }
        }
    }
    insta::assert_snapshot!("bad_blocks", report);
}
