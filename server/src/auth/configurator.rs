//! The authorization configurator (T7, CZR): `on_play auth://NAME` decides with the rules and
//! backends of the `auth_backend NAME { … }` block.
//!
//! Evaluation follows the fixed order of CZR-01 and stops at the first rule that matches
//! (CZR-02):
//!
//! ```text
//! allow token → deny token → allow ip → deny ip → allow country → deny country
//!   → allow ua → deny ua → backends (in parallel) → allow default
//! ```
//!
//! Backends are combined as AMB-20 says ([`combine`]): the first allow to arrive wins at once;
//! otherwise the first deny (or redirect) in the block's order; when none of them decides,
//! `allow default` admits, and without it the call is "no decision", so a new session is
//! refused and an open one keeps its grant (T11, CZR-03). A block with no backends and no
//! matching rule denies unless it has `allow default`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;

use super::backend::{Answer, Backend, BackendRequest, DEFAULT_AUTH_DURATION, Grant};
use super::geoip::GeoIp;
use crate::config::AuthBackendConfig;

/// The rule that decided a request, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    AllowToken,
    DenyToken,
    AllowIp,
    DenyIp,
    AllowCountry,
    DenyCountry,
    AllowUa,
    DenyUa,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AllowToken => "allow token",
            Rule::DenyToken => "deny token",
            Rule::AllowIp => "allow ip",
            Rule::DenyIp => "deny ip",
            Rule::AllowCountry => "allow country",
            Rule::DenyCountry => "deny country",
            Rule::AllowUa => "allow ua",
            Rule::DenyUa => "deny ua",
        }
    }

    pub fn allows(self) -> bool {
        matches!(
            self,
            Rule::AllowToken | Rule::AllowIp | Rule::AllowCountry | Rule::AllowUa
        )
    }
}

/// The first rule of `block` that matches the request, in the order of CZR-01. `country` is
/// the client's country from the GeoIP database, `None` when unknown (then no country rule
/// matches, AMB-21). User-agent rules are case-sensitive substrings (AMB-22).
pub fn first_matching_rule(block: &AuthBackendConfig, request: &BackendRequest, country: Option<&str>) -> Option<Rule> {
    let token = request.token.as_deref();
    let token_in = |list: &[String]| token.is_some_and(|t| list.iter().any(|x| x == t));
    let ip_in = |list: &[crate::config::IpPrefix]| list.iter().any(|p| p.contains(request.ip));
    let country_in = |list: &[String]| country.is_some_and(|c| list.iter().any(|x| x.eq_ignore_ascii_case(c)));
    let ua = request.user_agent.as_deref();
    let ua_in = |list: &[String]| ua.is_some_and(|u| list.iter().any(|x| u.contains(x.as_str())));
    [
        (Rule::AllowToken, token_in(&block.allow_tokens)),
        (Rule::DenyToken, token_in(&block.deny_tokens)),
        (Rule::AllowIp, ip_in(&block.allow_ips)),
        (Rule::DenyIp, ip_in(&block.deny_ips)),
        (Rule::AllowCountry, country_in(&block.allow_countries)),
        (Rule::DenyCountry, country_in(&block.deny_countries)),
        (Rule::AllowUa, ua_in(&block.allow_uas)),
        (Rule::DenyUa, ua_in(&block.deny_uas)),
    ]
    .into_iter()
    .find_map(|(rule, hit)| hit.then_some(rule))
}

/// What a rule's decision answers: allowed or denied for the default auth duration.
fn rule_answer(rule: Rule) -> Answer {
    if rule.allows() {
        Answer::Allow(Grant {
            duration: DEFAULT_AUTH_DURATION,
            ..Grant::default()
        })
    } else {
        Answer::Deny {
            status: 403,
            duration: DEFAULT_AUTH_DURATION,
        }
    }
}

fn default_allow() -> Answer {
    Answer::Allow(Grant {
        duration: DEFAULT_AUTH_DURATION,
        ..Grant::default()
    })
}

/// Combines the answers of a block's backends (AMB-20). `arrivals` are `(index in the block,
/// answer)` in the order they arrived. The first allow to arrive wins; otherwise the deny or
/// redirect of the lowest index; otherwise `allow default` admits, and without it there is no
/// decision.
pub fn combine(arrivals: &[(usize, Answer)], allow_default: bool) -> Answer {
    if let Some((_, allow)) = arrivals.iter().find(|(_, a)| matches!(a, Answer::Allow(_))) {
        return allow.clone();
    }
    let refusal = arrivals
        .iter()
        .filter(|(_, a)| matches!(a, Answer::Deny { .. } | Answer::Redirect { .. }))
        .min_by_key(|(i, _)| *i);
    if let Some((_, answer)) = refusal {
        return answer.clone();
    }
    if allow_default {
        return default_allow();
    }
    let reasons: Vec<String> = arrivals
        .iter()
        .filter_map(|(i, a)| match a {
            Answer::NoDecision { reason } => Some(format!("backend {}: {reason}", i + 1)),
            _ => None,
        })
        .collect();
    Answer::NoDecision {
        reason: format!("no backend decided ({}) and no 'allow default'", reasons.join("; ")),
    }
}

/// The configurator backend: the blocks by name, the HTTP client for their backends and the
/// optional country database. Blocks can be replaced at run time (management API).
pub struct Configurator {
    blocks: RwLock<HashMap<String, Arc<AuthBackendConfig>>>,
    http: Arc<dyn Backend>,
    geoip: Option<Arc<GeoIp>>,
}

impl std::fmt::Debug for Configurator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configurator")
            .field("blocks", &self.names())
            .field("geoip", &self.geoip)
            .finish_non_exhaustive()
    }
}

impl Configurator {
    pub fn new(blocks: Vec<AuthBackendConfig>, http: Arc<dyn Backend>, geoip: Option<GeoIp>) -> Configurator {
        let configurator = Configurator {
            blocks: RwLock::new(HashMap::new()),
            http,
            geoip: geoip.map(Arc::new),
        };
        for block in blocks {
            configurator.put(block);
        }
        configurator
    }

    /// The country database, shared with the stream's country gates.
    pub fn geoip(&self) -> Option<Arc<GeoIp>> {
        self.geoip.clone()
    }

    /// Adds or replaces a block (CZR-05: rules take effect from the next request).
    pub fn put(&self, block: AuthBackendConfig) {
        if block.has_country_rules() && self.geoip.is_none() {
            tracing::warn!(
                auth_backend = %block.name,
                "country rules never match: no geoip_db is configured"
            );
        }
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        blocks.insert(block.name.clone(), Arc::new(block));
    }

    pub fn get(&self, name: &str) -> Option<Arc<AuthBackendConfig>> {
        self.blocks.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub fn remove(&self, name: &str) -> bool {
        self.blocks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some()
    }

    /// Block names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .blocks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn country(&self, request: &BackendRequest) -> Option<String> {
        self.geoip.as_ref().and_then(|g| g.country(request.ip))
    }
}

impl Backend for Configurator {
    fn call(&self, target: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
        let name = target.get(7..).unwrap_or_default().to_string();
        let Some(block) = self.get(&name) else {
            tracing::warn!(target, "no auth_backend block has this name; no decision");
            let reason = format!("no auth_backend named `{name}`");
            return Box::pin(async move { Answer::NoDecision { reason } });
        };
        let country = self.country(request);
        if let Some(rule) = first_matching_rule(&block, request, country.as_deref()) {
            tracing::info!(
                auth_backend = %name,
                rule = rule.as_str(),
                stream = %request.name,
                ip = %request.ip,
                country = ?country,
                "configurator rule decided"
            );
            let answer = rule_answer(rule);
            return Box::pin(async move { answer });
        }
        if block.backends.is_empty() {
            let answer = if block.allow_default {
                default_allow()
            } else {
                Answer::Deny {
                    status: 403,
                    duration: DEFAULT_AUTH_DURATION,
                }
            };
            tracing::info!(
                auth_backend = %name,
                stream = %request.name,
                ip = %request.ip,
                allow_default = block.allow_default,
                "no configurator rule matched and the block has no backends"
            );
            return Box::pin(async move { answer });
        }
        let mut calls: FuturesUnordered<BoxFuture<'static, (usize, Answer)>> = FuturesUnordered::new();
        for (i, backend) in block.backends.iter().enumerate() {
            let mut request = request.clone();
            for (k, v) in &backend.extra {
                request.extra.insert(k.clone(), v.clone());
            }
            let call = self.http.call(&backend.url, &request);
            calls.push(Box::pin(async move { (i, call.await) }));
        }
        let allow_default = block.allow_default;
        let stream = request.name.clone();
        Box::pin(async move {
            let mut arrivals = Vec::new();
            while let Some((i, answer)) = calls.next().await {
                let allowed = matches!(answer, Answer::Allow(_));
                arrivals.push((i, answer));
                if allowed {
                    // First allow wins: the calls still running are dropped (cancelled).
                    break;
                }
            }
            let answer = combine(&arrivals, allow_default);
            tracing::debug!(auth_backend = %name, %stream, answers = arrivals.len(), ?answer, "configurator backends combined");
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::auth::backend::{CallKind, RequestType};
    use crate::auth::proto::Proto;
    use crate::config::{BackendUrl, IpPrefix, parse_config};

    fn request(ip: &str, token: &str, ua: Option<&str>) -> BackendRequest {
        BackendRequest {
            kind: CallKind::Play,
            name: "s".into(),
            proto: Proto::Hls,
            ip: ip.parse().expect("ip literal"),
            request_type: RequestType::NewSession,
            request_number: 1,
            session_id: Uuid::nil(),
            stream_clients: 0,
            total_clients: 0,
            token: Some(token.into()),
            duration: None,
            bytes: None,
            qs: None,
            dvr: false,
            user_agent: ua.map(str::to_string),
            referer: None,
            host: None,
            extra: BTreeMap::new(),
            sign_key: None,
        }
    }

    fn block(body: &str) -> AuthBackendConfig {
        let text = format!("auth_backend b {{ {body} }}");
        match parse_config(&text, "test.conf") {
            Ok(mut c) => c.auth_backends.remove(0),
            Err(e) => panic!("{e}"),
        }
    }

    fn rule(
        b: &AuthBackendConfig,
        ip: &str,
        token: &str,
        ua: Option<&str>,
        country: Option<&str>,
    ) -> Option<&'static str> {
        first_matching_rule(b, &request(ip, token, ua), country).map(Rule::as_str)
    }

    #[test]
    fn every_rule_kind_matches_its_field() {
        let b = block(
            "allow token vip; deny token stolen; allow ip 10.0.0.1 172.16/24; deny ip 192.168.0/24 2001:db8::/32; \
             allow country US; deny country CN; allow ua MAG; deny ua \"Bad Bot\";",
        );
        assert_eq!(rule(&b, "8.8.8.8", "vip", None, None), Some("allow token"));
        assert_eq!(rule(&b, "8.8.8.8", "stolen", None, None), Some("deny token"));
        assert_eq!(rule(&b, "10.0.0.1", "t", None, None), Some("allow ip"));
        assert_eq!(rule(&b, "172.16.0.200", "t", None, None), Some("allow ip"));
        assert_eq!(rule(&b, "192.168.0.7", "t", None, None), Some("deny ip"));
        assert_eq!(rule(&b, "2001:db8::5", "t", None, None), Some("deny ip"));
        assert_eq!(rule(&b, "8.8.8.8", "t", None, Some("US")), Some("allow country"));
        assert_eq!(rule(&b, "8.8.8.8", "t", None, Some("CN")), Some("deny country"));
        assert_eq!(rule(&b, "8.8.8.8", "t", Some("MAG254 stb"), None), Some("allow ua"));
        assert_eq!(rule(&b, "8.8.8.8", "t", Some("a Bad Bot/1.0"), None), Some("deny ua"));
        assert_eq!(rule(&b, "8.8.8.8", "t", Some("VLC"), Some("DE")), None);
    }

    #[test]
    fn the_order_is_fixed_and_the_first_match_decides() {
        // CZR-02: a whitelisted IP with a blacklisted token is denied (token rules come first),
        // whatever order the lines are written in.
        let b = block("allow ip 10.0.0.0/8; deny token stolen;");
        assert_eq!(rule(&b, "10.1.1.1", "stolen", None, None), Some("deny token"));
        assert_eq!(rule(&b, "10.1.1.1", "fine", None, None), Some("allow ip"));
        let b = block("deny token vip; allow token vip;");
        assert_eq!(rule(&b, "1.1.1.1", "vip", None, None), Some("allow token"));
        let b = block("deny ip 10/8; allow ip 10.0.0.1;");
        assert_eq!(rule(&b, "10.0.0.1", "t", None, None), Some("allow ip"));
        let b = block("deny ip 10/8; allow country RU;");
        assert_eq!(rule(&b, "10.0.0.1", "t", None, Some("RU")), Some("deny ip"));
        let b = block("deny country RU; allow ua MAG;");
        assert_eq!(rule(&b, "1.1.1.1", "t", Some("MAG"), Some("RU")), Some("deny country"));
        let b = block("deny ua MAG; allow ua MAG250;");
        assert_eq!(rule(&b, "1.1.1.1", "t", Some("MAG250"), None), Some("allow ua"));
    }

    #[test]
    fn unknown_country_and_ua_case_do_not_match() {
        let b = block("deny country RU; deny ua mag;");
        assert_eq!(rule(&b, "1.1.1.1", "t", None, None), None, "AMB-21");
        assert_eq!(
            rule(&b, "1.1.1.1", "t", Some("MAG250"), None),
            None,
            "AMB-22: case-sensitive"
        );
        assert_eq!(rule(&b, "1.1.1.1", "t", None, Some("ru")), Some("deny country"));
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_rules() {
        let b = block("deny ip 172.16/24;");
        assert_eq!(rule(&b, "::ffff:172.16.0.3", "t", None, None), Some("deny ip"));
    }

    fn allow(user: &str) -> Answer {
        Answer::Allow(Grant {
            duration: Duration::from_secs(5),
            user_id: Some(user.into()),
            ..Grant::default()
        })
    }

    fn deny(status: u16) -> Answer {
        Answer::Deny {
            status,
            duration: Duration::from_secs(7),
        }
    }

    fn none() -> Answer {
        Answer::NoDecision { reason: "down".into() }
    }

    /// The AMB-20 table: (answers in arrival order, allow default) → outcome.
    #[test]
    fn amb_20_combination_table() {
        let redirect = Answer::Redirect {
            location: "http://x/".into(),
        };
        type Row = (Vec<(usize, Answer)>, bool, Answer);
        let table: Vec<Row> = vec![
            (vec![(0, allow("a"))], false, allow("a")),
            (vec![(1, allow("b")), (0, allow("a"))], false, allow("b")),
            (vec![(0, deny(403)), (1, allow("b"))], false, allow("b")),
            (vec![(0, none()), (1, allow("b"))], false, allow("b")),
            (vec![(0, deny(403)), (1, none())], false, deny(403)),
            (vec![(0, deny(403)), (1, none())], true, deny(403)),
            (vec![(1, deny(401)), (0, deny(404))], false, deny(404)),
            (vec![(1, redirect.clone()), (0, deny(403))], false, deny(403)),
            (vec![(0, redirect.clone()), (1, none())], false, redirect.clone()),
            (vec![(0, none()), (1, none())], true, default_allow()),
            (vec![], true, default_allow()),
        ];
        for (arrivals, allow_default, expected) in table {
            assert_eq!(
                combine(&arrivals, allow_default),
                expected,
                "{arrivals:?} allow_default={allow_default}"
            );
        }
        let all_down = combine(&[(0, none()), (1, none())], false);
        let Answer::NoDecision { reason } = all_down else {
            panic!("all without decision and no allow default: {all_down:?}");
        };
        assert!(
            reason.contains("backend 1: down") && reason.contains("backend 2: down"),
            "{reason}"
        );
    }

    /// A backend answering from a table keyed by URL, after a delay.
    struct Scripted(HashMap<String, (Duration, Answer)>);

    impl Backend for Scripted {
        fn call(&self, target: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
            let (delay, answer) = self.0.get(target).cloned().unwrap_or((Duration::ZERO, none()));
            let extra = request.extra.clone();
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                match answer {
                    Answer::Allow(mut g) => {
                        g.user_id = extra.get("who").cloned().or(g.user_id);
                        Answer::Allow(g)
                    }
                    other => other,
                }
            })
        }
    }

    fn configurator(backends: &[(&str, u64, Answer)], allow_default: bool) -> Configurator {
        let mut b = AuthBackendConfig::new("office");
        b.allow_default = allow_default;
        b.deny_tokens = vec!["stolen".into()];
        b.allow_ips = vec![IpPrefix::parse("10/8").expect("valid")];
        let mut table = HashMap::new();
        for (url, ms, answer) in backends {
            b.backends.push(BackendUrl {
                url: (*url).into(),
                extra: [("who".to_string(), format!("via-{url}"))].into(),
            });
            table.insert((*url).to_string(), (Duration::from_millis(*ms), answer.clone()));
        }
        Configurator::new(vec![b], Arc::new(Scripted(table)), None)
    }

    #[tokio::test(start_paused = true)]
    async fn backends_run_in_parallel_and_the_first_allow_wins() {
        let c = configurator(
            &[
                ("http://slow/", 2000, allow("x")),
                ("http://fast/", 100, allow("x")),
                ("http://no/", 50, deny(403)),
            ],
            false,
        );
        let started = tokio::time::Instant::now();
        let answer = c.call("auth://office", &request("8.8.8.8", "t", None)).await;
        let Answer::Allow(g) = answer else {
            panic!("expected allow")
        };
        assert_eq!(
            g.user_id.as_deref(),
            Some("via-http://fast/"),
            "the backend's extras are sent"
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(100),
            "no wait for the slow backend"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rules_decide_before_any_backend_and_defaults_apply() {
        let c = configurator(&[("http://a/", 10, allow("x"))], false);
        assert_eq!(
            c.call("auth://office", &request("10.1.1.1", "stolen", None)).await,
            rule_answer(Rule::DenyToken),
            "a whitelisted IP with a blacklisted token is denied"
        );
        let down = configurator(&[("http://a/", 10, none()), ("http://b/", 20, none())], true);
        assert!(matches!(
            down.call("auth://office", &request("8.8.8.8", "t", None)).await,
            Answer::Allow(_)
        ));
        let down = configurator(&[("http://a/", 10, none())], false);
        assert!(matches!(
            down.call("auth://office", &request("8.8.8.8", "t", None)).await,
            Answer::NoDecision { .. }
        ));
        let empty = Configurator::new(
            vec![AuthBackendConfig::new("e")],
            Arc::new(Scripted(HashMap::new())),
            None,
        );
        assert!(matches!(
            empty.call("auth://e", &request("8.8.8.8", "t", None)).await,
            Answer::Deny { status: 403, .. }
        ));
        assert!(matches!(
            empty.call("auth://missing", &request("8.8.8.8", "t", None)).await,
            Answer::NoDecision { .. }
        ));
    }

    #[tokio::test]
    async fn country_rules_read_the_geoip_database() {
        let path = std::env::temp_dir().join(format!("usher-czr-{}.mmdb", Uuid::new_v4().simple()));
        let db = crate::auth::geoip::mmdb_writer::country_db(&[
            ("81.2.69.0".parse::<IpAddr>().expect("ip"), 24, "GB"),
            ("5.255.255.0".parse::<IpAddr>().expect("ip"), 24, "RU"),
        ]);
        std::fs::write(&path, db).expect("write db");
        let geo = GeoIp::open(&path).expect("opens");
        let _ = std::fs::remove_file(&path);
        let mut b = AuthBackendConfig::new("geo");
        b.allow_countries = vec!["GB".into()];
        b.deny_countries = vec!["RU".into()];
        let c = Configurator::new(vec![b], Arc::new(Scripted(HashMap::new())), Some(geo));
        let call = |ip: &str| c.call("auth://geo", &request(ip, "t", None));
        assert!(matches!(call("81.2.69.10").await, Answer::Allow(_)));
        assert!(matches!(call("5.255.255.10").await, Answer::Deny { .. }));
        // Unknown country: no rule matches, no backends, no allow default ⇒ deny.
        assert!(matches!(call("127.0.0.1").await, Answer::Deny { .. }));
    }
}
