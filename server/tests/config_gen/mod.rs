//! proptest strategies for valid configuration values, shared by the config test files.
//! Every value generated is one the parsers accept, so printing and reading it back must
//! give it again.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use usher_server::config::{
    AuthBackendConfig, AuthSpec, AuthTarget, BackendUrl, Config, ConnectionLimits, Credential, DvrConfig, IpPrefix,
    ListenLimits, Protocols, SessionHistoryConfig, SessionKeys, StreamConfig, TemplateConfig, VodConfig,
};

/// Any non-empty text, biased towards the characters the file syntax treats specially.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./:-]{1,12}",
        "[ a-z;{}#\"\\\\=,\t\n-]{1,10}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

pub fn protocols() -> impl Strategy<Value = Protocols> {
    any::<[bool; 5]>().prop_map(|[hls, mpegts, rtmp, rtsp, dash]| Protocols {
        hls,
        mpegts,
        rtmp,
        rtsp,
        dash,
    })
}

pub fn session_keys() -> impl Strategy<Value = SessionKeys> {
    let extra = prop_oneof![
        Just("token".to_string()),
        Just("ip".to_string()),
        "header\\.[a-z0-9_-]{1,10}",
        "query\\.[a-zA-Z0-9_.:%-]{1,10}",
    ];
    prop_oneof![
        1 => Just(SessionKeys::default()),
        3 => (vec(extra, 0..4), any::<prop::sample::Index>()).prop_map(|(mut items, at)| {
            for k in ["ip", "name", "proto"] {
                let i = at.index(items.len() + 1);
                items.insert(i, k.to_string());
            }
            SessionKeys::from_items(items.iter().map(String::as_str)).expect("generated keys are valid")
        }),
    ]
}

pub fn target() -> impl Strategy<Value = AuthTarget> {
    prop_oneof![
        "https?://[a-z]{1,8}(\\.[a-z]{2,3})?(:[0-9]{2,4})?/[a-z/]{0,8}(\\?[a-z]=[a-z0-9]{1,4})?"
            .prop_map(AuthTarget::Http),
        Just(AuthTarget::AllowAll),
        text().prop_map(|t| AuthTarget::Script(format!("/{t}"))),
        text().prop_map(AuthTarget::Configurator),
    ]
}

const RESERVED: [&str; 8] = [
    "session_keys",
    "domains",
    "require_referer",
    "max_sessions",
    "soft_limitation",
    "sign_key",
    "allowed_countries",
    "disallowed_countries",
];

/// Disjoint lists of country codes for the two gates.
pub fn countries() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    let code = proptest::sample::select(vec!["US", "DE", "GB", "RU", "FR", "JP"]);
    (vec(code.clone(), 0..3), vec(code, 0..3)).prop_map(|(a, d)| {
        let mut allowed: Vec<String> = Vec::new();
        for c in a {
            if !allowed.iter().any(|x| x == c) {
                allowed.push(c.to_string());
            }
        }
        let mut disallowed: Vec<String> = Vec::new();
        for c in d {
            if !allowed.iter().any(|x| x == c) && !disallowed.iter().any(|x| x == c) {
                disallowed.push(c.to_string());
            }
        }
        (allowed, disallowed)
    })
}

pub fn auth_spec() -> impl Strategy<Value = AuthSpec> {
    (
        target(),
        session_keys(),
        vec("[a-z0-9.-]{1,12}", 0..3),
        option::of(1u32..),
        any::<bool>(),
        btree_map(
            text().prop_filter("key", |k| !k.contains('=') && !RESERVED.contains(&k.as_str())),
            prop_oneof![Just(String::new()), text()],
            0..3,
        ),
        option::of(text().prop_filter("a key is not empty", |k| !k.is_empty())),
        any::<bool>(),
        countries(),
    )
        .prop_map(
            |(
                target,
                session_keys,
                domains,
                max_sessions,
                soft_limitation,
                extra,
                sign_key,
                require_referer,
                (allowed_countries, disallowed_countries),
            )| {
                AuthSpec {
                    target,
                    session_keys,
                    // Only a domain lock can require a Referer.
                    require_referer: require_referer && !domains.is_empty(),
                    domains,
                    max_sessions,
                    soft_limitation,
                    allowed_countries,
                    disallowed_countries,
                    extra,
                    sign_key,
                }
            },
        )
}

pub fn stream() -> impl Strategy<Value = StreamConfig> {
    (
        text(),
        vec(text(), 0..3),
        option::of(auth_spec()),
        option::of(auth_spec()),
        option::of(text()),
        protocols(),
        option::of(dvr()),
    )
        .prop_map(
            |(name, inputs, on_play, on_publish, password, protocols, dvr)| StreamConfig {
                name,
                inputs,
                on_play,
                on_publish,
                password,
                protocols,
                dvr,
            },
        )
}

/// `dvr ROOT DEPTH;`
pub fn dvr() -> impl Strategy<Value = DvrConfig> {
    (
        text().prop_filter("a local directory", |r| !r.contains("://")),
        seconds(),
        option::of((1u64..1 << 20).prop_map(|k| k << 10)),
        option::of(1u8..=100),
    )
        .prop_map(|(root, depth, storage_limit, disk_usage_limit)| DvrConfig {
            root,
            depth,
            storage_limit,
            disk_usage_limit,
        })
}

pub fn template() -> impl Strategy<Value = TemplateConfig> {
    (text(), vec(text(), 0..3), stream()).prop_map(|(name, prefixes, s)| TemplateConfig::new(name, prefixes, s))
}

pub fn vod() -> impl Strategy<Value = VodConfig> {
    (
        "[a-z0-9_-]{1,8}(/[a-zA-Z0-9_.-]{0,6}[a-z0-9])?",
        text(),
        option::of(auth_spec()),
    )
        .prop_map(|(name, storage, on_play)| VodConfig { name, storage, on_play })
}

pub fn ip_prefix() -> impl Strategy<Value = IpPrefix> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(ip, len)| IpPrefix::new(IpAddr::V4(ip.into()), len)),
        (any::<u128>(), 0u8..=128).prop_map(|(ip, len)| IpPrefix::new(IpAddr::V6(ip.into()), len)),
    ]
    .prop_map(|p| p.expect("lengths are in range"))
}

/// A configurator block; `name` is set by the caller.
pub fn auth_backend() -> impl Strategy<Value = AuthBackendConfig> {
    let backend = (
        "https?://[a-z]{1,8}(\\.[a-z]{2,3})?(:[0-9]{2,4})?/[a-z/]{0,8}",
        btree_map(
            text().prop_filter("key", |k| !k.contains('=')),
            prop_oneof![Just(String::new()), text()],
            0..3,
        ),
    )
        .prop_map(|(url, extra)| BackendUrl { url, extra });
    (
        (vec(text(), 0..3), vec(text(), 0..3)),
        (vec(ip_prefix(), 0..3), vec(ip_prefix(), 0..3)),
        (vec("[A-Z]{2}", 0..3), vec("[A-Z]{2}", 0..3)),
        (vec(text(), 0..3), vec(text(), 0..3)),
        vec(backend, 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(tokens, ips, countries, uas, backends, allow_default)| AuthBackendConfig {
                name: String::new(),
                allow_tokens: tokens.0,
                deny_tokens: tokens.1,
                allow_ips: ips.0,
                deny_ips: ips.1,
                allow_countries: countries.0,
                deny_countries: countries.1,
                allow_uas: uas.0,
                deny_uas: uas.1,
                backends,
                allow_default,
            },
        )
}

pub fn listen() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        any::<u16>().prop_map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(ip.into()), p)),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, p)| {
            let [a, b, c, d, e, f, g, h] = ip;
            SocketAddr::new(IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), p)
        }),
    ]
}

pub fn seconds() -> impl Strategy<Value = Duration> {
    (1u64..=365 * 24 * 3600).prop_map(Duration::from_secs)
}

pub fn config() -> impl Strategy<Value = Config> {
    let head = (
        option::of(listen()),
        option::of(listen()),
        option::of(listen()),
        text(),
        any::<bool>(),
        option::of((text().prop_filter("no colon", |l| !l.contains(':')), text())),
        option::of(text()),
        seconds(),
        seconds(),
        option::of(text()),
    );
    let auth = (
        option::of(text()),
        vec((text(), auth_backend()), 0..3),
        option::of(listen()),
        session_history(),
        (seconds(), 1u32..=1_000_000, seconds()),
        [listen_limits(), listen_limits(), listen_limits(), listen_limits()],
    );
    (head, vec(stream(), 0..4), vec(template(), 0..3), vec(vod(), 0..3), auth).prop_map(
        |(
            (http, rtmp, rtsp, auth_token, no_auto_token, edit_auth, server_secret, ttl, idle, media_root),
            streams,
            templates,
            vods,
            (
                geoip_db,
                blocks,
                mysql,
                session_history,
                (template_stream_idle, template_stream_limit, soft_limitation_delay),
                [http_caps, rtmp_caps, rtsp_caps, mysql_caps],
            ),
        )| {
            // Caps are written on their listen directive: none without one.
            let caps = |addr: &Option<SocketAddr>, caps: ListenLimits| addr.map(|_| caps).unwrap_or_default();
            let connection_limits = ConnectionLimits {
                http: caps(&http, http_caps),
                rtmp: caps(&rtmp, rtmp_caps),
                rtsp: caps(&rtsp, rtsp_caps),
                mysql: caps(&mysql, mysql_caps),
            };
            // Names and prefixes must be unique; drop repeats rather than reject the case.
            let mut names = HashSet::new();
            let streams: Vec<_> = streams.into_iter().filter(|s| names.insert(s.name.clone())).collect();
            let mut names = HashSet::new();
            let mut prefixes = HashSet::new();
            let templates: Vec<_> = templates
                .into_iter()
                .filter(|t| names.insert(t.name().to_string()))
                .map(|mut t| {
                    t.prefixes.retain(|p| prefixes.insert(p.clone()));
                    t
                })
                .collect();
            let mut names = HashSet::new();
            let vods: Vec<_> = vods.into_iter().filter(|v| names.insert(v.name.clone())).collect();
            // Block names are unique, and every `auth://NAME` must name a block (a dangling
            // one is a config error): add an empty block for each name only referenced.
            let mut names = HashSet::new();
            let mut auth_backends: Vec<AuthBackendConfig> = blocks
                .into_iter()
                .filter(|(name, _)| names.insert(name.clone()))
                .map(|(name, b)| AuthBackendConfig { name, ..b })
                .collect();
            let specs = streams
                .iter()
                .flat_map(|s| [&s.on_play, &s.on_publish])
                .chain(templates.iter().flat_map(|t| [&t.stream.on_play, &t.stream.on_publish]))
                .chain(vods.iter().map(|v| &v.on_play));
            for spec in specs.flatten() {
                if let AuthTarget::Configurator(name) = &spec.target
                    && names.insert(name.clone())
                {
                    auth_backends.push(AuthBackendConfig::new(name.clone()));
                }
            }
            Config {
                http,
                rtmp,
                rtsp,
                auth_token,
                no_auto_token,
                edit_auth: edit_auth.map(|(login, password)| Credential { login, password }),
                server_secret,
                admin_token_ttl: ttl,
                http_session_idle: idle,
                media_root,
                template_stream_idle,
                template_stream_limit,
                soft_limitation_delay,
                // Read and printed back in config_parse.rs (every directive, bad input).
                session_store: None,
                streams,
                templates,
                vods,
                geoip_db,
                auth_backends,
                mysql,
                session_history,
                connection_limits,
            }
        },
    )
}

/// `max_connections=N max_connections_per_ip=M` of a listen directive (the share never above
/// the cap).
pub fn listen_limits() -> impl Strategy<Value = ListenLimits> {
    (option::of(1usize..=1 << 24), option::of(1usize..=1 << 24)).prop_map(|(max_connections, per_ip)| ListenLimits {
        max_connections,
        max_connections_per_ip: match (max_connections, per_ip) {
            (Some(all), Some(n)) => Some(n.min(all)),
            (_, n) => n,
        },
    })
}

/// `session_history PATH [retention=DAYS] [max_rows=N];` (`:memory:` is the `None` path).
pub fn session_history() -> impl Strategy<Value = SessionHistoryConfig> {
    (
        option::of(text().prop_filter("not the in-memory word", |p| p != ":memory:")),
        1u32..=36_500,
        option::of(1u64..=1_000_000_000),
    )
        .prop_map(|(path, retention_days, max_rows)| SessionHistoryConfig {
            path,
            retention_days,
            max_rows,
        })
}

/// An `extra` map from literal pairs.
pub fn extra(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
