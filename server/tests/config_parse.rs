//! The configuration file: every directive read right, every bad file rejected with
//! `file:line:column: message`, print → parse round trips, and no input panics the parser.

mod config_gen;

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use usher_server::config::{
    AuthBackendConfig, AuthSpec, AuthTarget, BackendUrl, Config, ConnectionLimits, Credential, DvrConfig, IpPrefix,
    ListenLimits, Protocols, SessionHistoryConfig, SessionKeys, StreamConfig, TemplateConfig, VodConfig, parse_config,
};

fn parse(text: &str) -> Config {
    match parse_config(text, "test.conf") {
        Ok(c) => c,
        Err(e) => panic!("expected the file to parse, got {e}\n---\n{text}"),
    }
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

const EVERY_DIRECTIVE: &str = r#"
# Server-wide settings
http 8080;
rtmp 127.0.0.1:1935 max_connections=2000 max_connections_per_ip=50;
rtsp [::1]:0;            # port 0: pick a free port
auth_token tok;
no_auto_token;
edit_auth admin "s3cret pass";
server_secret "a \"quoted\" \\ secret";
admin_token_ttl 600;
http_session_idle 5;
media_root "/srv/media files";
template_stream_idle 90;
template_stream_limit 50;
soft_limitation_delay 90;
mysql 127.0.0.1:3306;
session_history /var/lib/usher/history.sqlite retention=30 max_rows=5000;
session_store redis://127.0.0.1:6379/1 node=edge-a on_loss=closed;

template live {
  prefix live;
  prefix "cams";
  input publish://;
  on_publish http://backend/publish;
  password pub;
  protocols -dash;
}

stream s1 {
  input fake://fake;
  input file://vod/bunny.mp4;
  on_play http://127.0.0.1:9000/auth?x=1 session_keys=ip,name,proto,token,header.x-playback-session-id,query.sid domains=a.com,b.com max_sessions=2 soft_limitation=true allowed_countries=us,DE disallowed_countries=RU client=usher "note=a b";
  on_publish auth://backend;
  protocols hls mpegts;
  dvr /var/usher/dvr 3600;
}

stream s2 {
  on_play true;
  on_publish /opt/auth/check.lua;
}

vod vod {
  storage /storage;
  on_play http://127.0.0.1:9000/vod session_keys=ip,name,proto;
}

vod movies/hd {
  storage hd;
}

geoip_db /var/lib/GeoLite2-Country.mmdb;

auth_backend backend {
  allow token vip;
  deny ip 172.16/24;
  allow country RU us;
  deny ua "Bad Bot";
  backend http://127.0.0.1:9001/auth client=usher;
  allow default;
}
"#;

#[test]
fn every_directive_is_read() {
    let c = parse(EVERY_DIRECTIVE);
    let mut on_play = AuthSpec::new(AuthTarget::Http("http://127.0.0.1:9000/auth?x=1".into()));
    on_play.session_keys = SessionKeys::parse("ip,name,proto,token,header.x-playback-session-id,query.sid").unwrap();
    on_play.domains = vec!["a.com".into(), "b.com".into()];
    on_play.max_sessions = Some(2);
    on_play.soft_limitation = true;
    on_play.allowed_countries = vec!["US".into(), "DE".into()];
    on_play.disallowed_countries = vec!["RU".into()];
    on_play.extra = config_gen::extra(&[("client", "usher"), ("note", "a b")]);
    let expected = Config {
        http: addr("0.0.0.0:8080"),
        rtmp: addr("127.0.0.1:1935"),
        rtsp: addr("[::1]:0"),
        auth_token: "tok".into(),
        no_auto_token: true,
        edit_auth: Some(Credential {
            login: "admin".into(),
            password: "s3cret pass".into(),
        }),
        server_secret: Some("a \"quoted\" \\ secret".into()),
        admin_token_ttl: Duration::from_secs(600),
        http_session_idle: Duration::from_secs(5),
        media_root: Some("/srv/media files".into()),
        template_stream_idle: Duration::from_secs(90),
        template_stream_limit: 50,
        soft_limitation_delay: Duration::from_secs(90),
        mysql: addr("127.0.0.1:3306"),
        session_history: SessionHistoryConfig {
            path: Some("/var/lib/usher/history.sqlite".into()),
            retention_days: 30,
            max_rows: Some(5000),
        },
        session_store: Some(usher_server::config::SessionStoreConfig {
            url: "redis://127.0.0.1:6379/1".into(),
            node: Some("edge-a".into()),
            on_loss: usher_server::config::OnStoreLoss::Closed,
        }),
        connection_limits: ConnectionLimits {
            rtmp: ListenLimits {
                max_connections: Some(2000),
                max_connections_per_ip: Some(50),
            },
            ..ConnectionLimits::default()
        },
        vods: vec![
            VodConfig {
                name: "vod".into(),
                storage: "/storage".into(),
                on_play: Some(AuthSpec {
                    session_keys: SessionKeys::parse("ip,name,proto").unwrap(),
                    ..AuthSpec::new(AuthTarget::Http("http://127.0.0.1:9000/vod".into()))
                }),
            },
            VodConfig {
                name: "movies/hd".into(),
                storage: "hd".into(),
                on_play: None,
            },
        ],
        geoip_db: Some("/var/lib/GeoLite2-Country.mmdb".into()),
        auth_backends: vec![AuthBackendConfig {
            allow_tokens: vec!["vip".into()],
            deny_ips: vec![IpPrefix::parse("172.16.0.0/24").unwrap()],
            allow_countries: vec!["RU".into(), "US".into()],
            deny_uas: vec!["Bad Bot".into()],
            backends: vec![BackendUrl {
                url: "http://127.0.0.1:9001/auth".into(),
                extra: config_gen::extra(&[("client", "usher")]),
            }],
            allow_default: true,
            ..AuthBackendConfig::new("backend")
        }],
        templates: vec![TemplateConfig::new(
            "live",
            vec!["live".into(), "cams".into()],
            StreamConfig {
                name: String::new(),
                inputs: vec!["publish://".into()],
                on_play: None,
                on_publish: Some(AuthSpec::new(AuthTarget::Http("http://backend/publish".into()))),
                password: Some("pub".into()),
                protocols: Protocols {
                    dash: false,
                    ..Protocols::default()
                },
                dvr: None,
            },
        )],
        streams: vec![
            StreamConfig {
                name: "s1".into(),
                inputs: vec!["fake://fake".into(), "file://vod/bunny.mp4".into()],
                on_play: Some(on_play),
                on_publish: Some(AuthSpec::new(AuthTarget::Configurator("backend".into()))),
                password: None,
                protocols: Protocols {
                    hls: true,
                    mpegts: true,
                    rtmp: false,
                    rtsp: false,
                    dash: false,
                },
                dvr: Some(DvrConfig::new("/var/usher/dvr", Duration::from_secs(3600))),
            },
            StreamConfig {
                name: "s2".into(),
                inputs: vec![],
                on_play: Some(AuthSpec::new(AuthTarget::AllowAll)),
                on_publish: Some(AuthSpec::new(AuthTarget::Script("/opt/auth/check.lua".into()))),
                password: None,
                protocols: Protocols::default(),
                dvr: None,
            },
        ],
    };
    assert_eq!(c, expected);
}

#[test]
fn an_empty_file_gives_the_defaults() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("# only a comment\n\n   \t\n"), Config::default());
    assert_eq!(
        parse("\u{feff}"),
        Config::default(),
        "a UTF-8 byte order mark is skipped"
    );
}

#[test]
fn a_bare_port_binds_every_address() {
    let c = parse("http 0; rtmp 1935;");
    assert_eq!(c.http, addr("0.0.0.0:0"));
    assert_eq!(c.rtmp, addr("0.0.0.0:1935"));
    assert_eq!(c.rtsp, None);
}

#[test]
fn layout_is_free_and_quotes_join_words() {
    let c = parse("stream\n\"my stream\"{input fake://fake;on_play true \"k=v;{}#\" x=\"a b\"c;}");
    let s = &c.streams[0];
    assert_eq!(s.name, "my stream");
    assert_eq!(s.inputs, ["fake://fake"]);
    let spec = s.on_play.as_ref().unwrap();
    assert_eq!(spec.extra, config_gen::extra(&[("k", "v;{}#"), ("x", "a bc")]));
}

#[test]
fn quoting_does_not_change_meaning() {
    let c = parse("stream \"s\" { on_play \"true\"; protocols \"-hls\"; }");
    assert_eq!(c.streams[0].on_play.as_ref().unwrap().target, AuthTarget::AllowAll);
    assert!(!c.streams[0].protocols.hls);
}

#[test]
fn a_stream_without_input_is_allowed() {
    let c = parse("stream later { }");
    assert_eq!(c.streams[0].inputs, Vec::<String>::new());
}

#[test]
fn protocols_enable_or_disable_lists() {
    let only = parse("stream s { protocols rtmp; }").streams[0].protocols;
    assert_eq!(
        only,
        Protocols {
            hls: false,
            mpegts: false,
            rtmp: true,
            rtsp: false,
            dash: false
        }
    );
    let without = parse("stream s { protocols -hls -rtsp; }").streams[0].protocols;
    assert_eq!(
        without,
        Protocols {
            hls: false,
            mpegts: true,
            rtmp: true,
            rtsp: false,
            dash: true
        }
    );
}

#[test]
fn targets_of_every_kind() {
    let target = |t: &str| {
        parse(&format!("stream s {{ on_play {t}; }}")).streams[0]
            .on_play
            .clone()
            .unwrap()
            .target
    };
    assert_eq!(target("http://b/x"), AuthTarget::Http("http://b/x".into()));
    assert_eq!(
        target("https://b:8443/x?a=b"),
        AuthTarget::Http("https://b:8443/x?a=b".into())
    );
    assert_eq!(target("true"), AuthTarget::AllowAll);
    assert_eq!(
        target("/etc/usher/auth.lua"),
        AuthTarget::Script("/etc/usher/auth.lua".into())
    );
    let office = parse("auth_backend office { allow default; }\nstream s { on_play auth://office; }").streams[0]
        .on_play
        .clone()
        .unwrap()
        .target;
    assert_eq!(office, AuthTarget::Configurator("office".into()));
}

#[test]
fn the_printed_example_reads_back() {
    let c = parse(EVERY_DIRECTIVE);
    let printed = c.to_string();
    insta::assert_snapshot!("printed_every_directive", printed);
    assert_eq!(parse(&printed), c);
}

/// Each bad file with the exact error it must produce.
const BAD_FILES: &[(&str, &str)] = &[
    (
        "missing semicolon before a brace",
        "stream s {\n  input fake://fake\n}\n",
    ),
    ("missing semicolon after port", "http 8080\nrtmp 1935;\n"),
    ("missing semicolon at end of file", "http 8080"),
    ("listen without port", "http;\n"),
    ("port out of range", "http 65536;\n"),
    ("port out of range with address", "rtmp 127.0.0.1:70000;\n"),
    ("port not a number", "rtsp 127.0.0.1:abc;\n"),
    ("host name instead of address", "http localhost:8080;\n"),
    ("listen word that is no port", "http eighty;\n"),
    ("duplicate listen", "http 80;\nhttp 81;\n"),
    ("unknown top-level directive", "htp 80;\n"),
    ("stream directive at top level", "input fake://fake;\n"),
    ("prefix at top level", "prefix live;\n"),
    ("top-level directive inside stream", "stream s {\n  http 80;\n}\n"),
    ("unknown directive in stream", "stream s {\n  inptu fake://fake;\n}\n"),
    ("unknown directive in template", "template t {\n  prefx live;\n}\n"),
    ("prefix in a stream", "stream s {\n  prefix live;\n}\n"),
    ("unclosed stream", "stream s {\n  input fake://fake;\n"),
    ("unclosed template", "template t {\n  prefix a;\n\n"),
    ("stray closing brace", "http 80;\n}\n"),
    ("stray semicolon", "http 80;;\n"),
    ("stray semicolon in a block", "stream s { ; }\n"),
    ("stream without a block", "stream s;\n"),
    ("stream without a name", "stream {\n}\n"),
    ("stream with an empty name", "stream \"\" { }\n"),
    (
        "duplicate stream names",
        "stream a { }\n\nstream b { }\nstream a {\n}\n",
    ),
    ("duplicate template names", "template t { }\ntemplate t { }\n"),
    (
        "prefix used by two templates",
        "template a { prefix live; }\ntemplate b {\n  prefix live;\n}\n",
    ),
    ("prefix listed twice", "template a { prefix x; prefix x; }\n"),
    ("empty prefix", "template a { prefix \"\"; }\n"),
    ("input with an empty URL", "stream s {\n  input \"\";\n}\n"),
    (
        "input with two URLs",
        "stream s {\n  input fake://fake fake://other;\n}\n",
    ),
    ("on_play without target", "stream s {\n  on_play;\n}\n"),
    (
        "on_play unknown target",
        "stream s {\n  on_play securetoken://key;\n}\n",
    ),
    ("on_play relative script path", "stream s {\n  on_play auth.lua;\n}\n"),
    ("on_play URL without host", "stream s {\n  on_play http://;\n}\n"),
    ("on_play empty configurator", "stream s {\n  on_play auth://;\n}\n"),
    (
        "option without equals",
        "stream s {\n  on_play http://b/x ip,name,proto;\n}\n",
    ),
    ("option with empty name", "stream s {\n  on_play http://b/x =v;\n}\n"),
    (
        "session_keys missing proto",
        "stream s {\n  on_play http://b/x session_keys=ip,name,token;\n}\n",
    ),
    (
        "session_keys unknown key",
        "stream s {\n  on_play http://b/x session_keys=ip,name,proto,cookie;\n}\n",
    ),
    (
        "session_keys empty item",
        "stream s {\n  on_play http://b/x max_sessions=3 session_keys=ip,,name,proto;\n}\n",
    ),
    (
        "session_keys bad header",
        "stream s {\n  on_play true session_keys=ip,name,proto,header.X-Id;\n}\n",
    ),
    ("session_keys empty", "stream s {\n  on_play true session_keys=;\n}\n"),
    ("max_sessions zero", "stream s {\n  on_play true max_sessions=0;\n}\n"),
    (
        "max_sessions not a number",
        "stream s {\n  on_play true max_sessions=two;\n}\n",
    ),
    (
        "max_sessions negative",
        "stream s {\n  on_play true max_sessions=-1;\n}\n",
    ),
    (
        "soft_limitation not a boolean",
        "stream s {\n  on_publish true soft_limitation=yes;\n}\n",
    ),
    ("domains empty item", "stream s {\n  on_play true domains=a.com,;\n}\n"),
    ("domains empty", "stream s {\n  on_play true domains=;\n}\n"),
    (
        "duplicate option",
        "stream s {\n  on_play true max_sessions=1 max_sessions=2;\n}\n",
    ),
    (
        "duplicate on_play",
        "stream s {\n  on_play true;\n  on_play http://b/x;\n}\n",
    ),
    (
        "on_play missing semicolon",
        "stream s {\n  on_play true max_sessions=1\n}\n",
    ),
    ("duplicate password", "stream s { password a; password b; }\n"),
    ("empty password", "stream s { password \"\"; }\n"),
    ("protocols empty", "stream s {\n  protocols;\n}\n"),
    ("protocols unknown", "stream s {\n  protocols hls webrtc;\n}\n"),
    ("protocols unknown negative", "stream s {\n  protocols -srt;\n}\n"),
    ("protocols mixed forms", "stream s {\n  protocols hls -dash;\n}\n"),
    (
        "protocols mixed forms negative first",
        "stream s {\n  protocols -hls dash;\n}\n",
    ),
    ("protocols followed by a brace", "stream s {\n  protocols hls }\n"),
    ("bad number", "admin_token_ttl 1h;\n"),
    ("zero seconds", "http_session_idle 0;\n"),
    ("number with a sign", "http_session_idle +5;\n"),
    ("template idle without seconds", "template_stream_idle;\n"),
    ("no template streams", "template_stream_limit 0;\n"),
    ("template stream limit with a sign", "template_stream_limit +5;\n"),
    ("too many template streams", "template_stream_limit 1000001;\n"),
    (
        "template stream limit twice",
        "template_stream_limit 5;\ntemplate_stream_limit 6;\n",
    ),
    (
        "template stream limit in a stream",
        "stream s {\n  template_stream_limit 5;\n}\n",
    ),
    ("too many seconds", "admin_token_ttl 99999999999999999999999;\n"),
    ("auth_token without name", "auth_token;\n"),
    ("no_auto_token with an argument", "no_auto_token yes;\n"),
    ("edit_auth without password", "edit_auth admin;\n"),
    ("edit_auth login with colon", "edit_auth ad:min pass;\n"),
    ("server_secret empty", "server_secret \"\";\n"),
    ("unterminated string", "stream s {\n  input \"fake://fake;\n}\n"),
    ("unknown escape", "server_secret \"a\\nb\";\n"),
    ("column counts characters", "stream s { input \"é\"; inptu x; }\n"),
    ("media_root without a directory", "media_root;\n"),
    ("media_root empty", "media_root \"\";\n"),
    ("duplicate media_root", "media_root a;\nmedia_root b;\n"),
    ("media_root inside a stream", "stream s {\n  media_root m;\n}\n"),
    ("vod without storage", "vod vod {\n  on_play true;\n}\n"),
    ("vod without a block", "vod vod;\n"),
    ("vod with an empty name", "vod \"\" { storage s; }\n"),
    ("vod name with dot-dot", "vod a/../b { storage s; }\n"),
    ("vod name with an empty segment", "vod a//b { storage s; }\n"),
    (
        "duplicate vod names",
        "vod v { storage s; }\nvod v {\n  storage t;\n}\n",
    ),
    ("duplicate storage", "vod v {\n  storage s;\n  storage t;\n}\n"),
    ("empty storage", "vod v { storage \"\"; }\n"),
    ("storage missing semicolon", "vod v {\n  storage s\n}\n"),
    ("input in a vod", "vod v {\n  storage s;\n  input fake://fake;\n}\n"),
    ("stream inside a vod", "vod v {\n  stream s { }\n}\n"),
    (
        "duplicate on_play in a vod",
        "vod v {\n  storage s;\n  on_play true;\n  on_play true;\n}\n",
    ),
    (
        "on_play bad target in a vod",
        "vod v {\n  storage s;\n  on_play nowhere;\n}\n",
    ),
    ("storage at top level", "storage /x;\n"),
    ("storage in a stream", "stream s {\n  storage /x;\n}\n"),
    ("unclosed vod", "vod v {\n  storage s;\n"),
];

#[test]
fn bad_files_name_file_line_column_and_what_was_expected() {
    let mut report = String::new();
    for (case, text) in BAD_FILES {
        match parse_config(text, "usher.conf") {
            Ok(c) => panic!("case `{case}` parsed but must fail: {c:?}"),
            Err(e) => {
                assert_eq!(e.file, "usher.conf");
                assert!(e.line >= 1 && e.column >= 1, "{case}: {e}");
                report.push_str(&format!("{case}:\n    {e}\n"));
            }
        }
    }
    insta::assert_snapshot!("bad_files", report);
}

#[test]
fn the_error_display_is_file_line_column_message() {
    let e = parse_config("stream s {\n  input fake://fake\n}", "/etc/usher.conf").unwrap_err();
    assert_eq!((e.line, e.column), (3, 1));
    assert_eq!(
        e.to_string(),
        "/etc/usher.conf:3:1: expected ';' after input URL, found '}'"
    );
}

#[test]
fn session_keys_errors_point_at_the_option() {
    let e = parse_config("stream s { on_play true   session_keys=ip,name; }", "f").unwrap_err();
    assert_eq!((e.line, e.column), (1, 27));
    assert!(e.message.contains("must include `proto`"), "{e}");
}

/// DOM-02's opt-in: `require_referer=true` beside `domains=`, printed back; alone it is an
/// error that says what is missing; a value other than true/false names the option.
#[test]
fn require_referer_needs_a_domain_lock() {
    let config = parse("stream s { input fake://fake; on_play http://b/a domains=good.com require_referer=true; }");
    let spec = config.streams[0].on_play.clone().unwrap();
    assert!(spec.require_referer);
    assert!(spec.extra.is_empty(), "not an extra sent to the backend");
    assert!(config.to_string().contains(" require_referer=true"), "{config}");
    assert_eq!(parse(&config.to_string()), config);
    let plain = parse("stream s { input fake://fake; on_play http://b/a domains=good.com; }");
    assert!(
        !plain.streams[0].on_play.as_ref().unwrap().require_referer,
        "off by default (DOM-02)"
    );

    let e = parse_config("stream s { on_play http://b/a require_referer=true; }", "f").unwrap_err();
    assert_eq!((e.line, e.column), (1, 20), "{e}");
    assert!(e.message.contains("require_referer=true needs a domain lock"), "{e}");
    let e = parse_config(
        "stream s { on_play http://b/a domains=a.com require_referer=yes; }",
        "f",
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("require_referer: expected true or false, found 'yes'"),
        "{e}"
    );
}

#[test]
fn lines_inside_multiline_strings_are_counted() {
    let e = parse_config("server_secret \"a\nb\nc\";\nhtp;", "f").unwrap_err();
    assert_eq!((e.line, e.column), (4, 1), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_then_parse_gives_the_same_config(config in config_gen::config()) {
        let printed = config.to_string();
        let back = parse_config(&printed, "printed.conf");
        prop_assert_eq!(back.as_ref(), Ok(&config), "printed file:\n{}", printed);
    }
}

/// Small edits that tend to break the syntax: delete, insert or replace one character.
#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index),
    Insert(prop::sample::Index, char),
    Replace(prop::sample::Index, char),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![
        prop::sample::select(vec![';', '{', '}', '"', '\\', '#', '=', ',', ' ', '\n', '-', ':', '0']),
        any::<char>(),
    ];
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<prop::sample::Index>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let n = chars.len();
        match e {
            Edit::Delete(i) if n > 0 => {
                chars.remove(i.index(n));
            }
            Edit::Insert(i, c) => chars.insert(i.index(n + 1), *c),
            Edit::Replace(i, c) if n > 0 => chars[i.index(n)] = *c,
            Edit::Truncate(i) => chars.truncate(i.index(n + 1)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn check_no_panic(text: &str) -> Result<(), TestCaseError> {
    match parse_config(text, "fuzz.conf") {
        Ok(_) => {}
        Err(e) => {
            let lines = text.lines().count().max(1) + 1;
            prop_assert!(
                e.line >= 1 && e.line <= lines,
                "line {} out of 1..={}: {}",
                e.line,
                lines,
                e
            );
            prop_assert!(e.column >= 1, "{}", e);
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_no_panic(&text)?;
    }

    #[test]
    fn config_like_text_never_panics(text in "[ a-z0-9:./;{}\"\\\\#=,\n-]{0,200}") {
        check_no_panic(&text)?;
    }

    #[test]
    fn mutated_valid_files_never_panic(config in config_gen::config(), edits in prop::collection::vec(edit(), 1..5)) {
        let text = apply_edits(&config.to_string(), &edits);
        check_no_panic(&text)?;
    }

    #[test]
    fn mutated_example_never_panics(edits in prop::collection::vec(edit(), 1..8)) {
        check_no_panic(&apply_edits(EVERY_DIRECTIVE, &edits))?;
    }
}

/// `session_store` (issue 20): the address, `node=` and `on_loss=` read and printed back; bad
/// input names what is wrong and where, and never repeats a password.
#[test]
fn session_store_reads_prints_back_and_names_bad_input() {
    use usher_server::config::{OnStoreLoss, SessionStoreConfig};
    let config = parse("http 8080;\nsession_store redis://:pw@10.0.0.5:6379/2 node=edge-1 on_loss=closed;\n");
    assert_eq!(
        config.session_store,
        Some(SessionStoreConfig {
            url: "redis://:pw@10.0.0.5:6379/2".into(),
            node: Some("edge-1".into()),
            on_loss: OnStoreLoss::Closed,
        })
    );
    assert!(
        !format!("{:?}", config.session_store).contains("pw"),
        "the Debug form hides the password"
    );
    assert_eq!(parse(&config.to_string()), config, "printed back:\n{config}");
    let plain = parse("session_store redis://127.0.0.1:6379;");
    let store = plain.session_store.clone().unwrap();
    assert_eq!((store.node, store.on_loss), (None, OnStoreLoss::Open));
    assert_eq!(parse(&plain.to_string()), plain);
    assert_eq!(parse("http 8080;").session_store, None, "no line, no store");

    for (text, column, says) in [
        ("session_store http://h:1;", 15, "unsupported scheme 'http'"),
        ("session_store redis://h;", 15, "no port"),
        ("session_store redis://:secret@h;", 15, "no port"),
        ("session_store redis://h:1/x;", 15, "bad database 'x'"),
        ("session_store redis://h:1?db=1;", 15, "query"),
        ("session_store not-a-url;", 15, "not a redis:// address"),
        ("session_store redis://h:1 node=;", 27, "bad node name"),
        ("session_store redis://h:1 node=a/b;", 27, "bad node name 'a/b'"),
        (
            "session_store redis://h:1 on_loss=maybe;",
            27,
            "bad on_loss 'maybe' (expected open or closed)",
        ),
        (
            "session_store redis://h:1 ttl=5;",
            27,
            "unknown session_store option 'ttl=5'",
        ),
        ("session_store redis://h:1 node=a node=b;", 34, "duplicate node="),
        (
            "session_store redis://h:1;\nsession_store redis://h:2;",
            1,
            "session_store",
        ),
        ("session_store;", 14, "expected a redis://HOST:PORT[/DB] address"),
        ("stream s { session_store redis://h:1; }", 12, "session_store"),
    ] {
        let e = parse_config(text, "usher.conf").expect_err(text);
        assert!(e.message.contains(says), "{text}: {e}");
        assert!(
            !e.message.contains("secret"),
            "{text}: the password is never repeated: {e}"
        );
        if !text.contains('\n') {
            assert_eq!(e.column, column, "{text}: {e}");
        }
    }
}
