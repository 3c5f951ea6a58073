//! Generated cases: proptest strategies make a bounded number of cases (tokens, stream names,
//! client addresses in 127/8, session key sets), each case is a few real plays against the
//! target, and one step checks a property over all of them.
//!
//! The cases come from a seed: the run's (`USHER_SEED`, else random) mixed with the name of the
//! property, so a failure names the seed that replays it. Cases run concurrently, a few at a
//! time, and each case plays from addresses of its own (`127.<10 + case>.x.y`), so cases do not
//! share identities even where the key set leaves the token out. There is no shrinking (each
//! try costs real requests); a failure shows the smallest failing cases instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use cucumber::{then, when};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use url::Url;

use super::{Connection, Proto, UsherWorld};
use crate::backend::Call;
use crate::clients::hls::HlsClient;
use crate::clients::tshttp::TsClient;
use crate::clients::{Outcome, ViewerProfile};
use crate::target::{AuthSettings, StreamSpec};

/// Cases played at once.
const CASE_CONCURRENCY: usize = 8;
/// Bytes that make an MPEG-TS play "playing".
const TS_PLAYING_BYTES: u64 = 188 * 20;
/// Most cases a step may ask for: each case owns a second octet of 127/8 from 10 on.
const MAX_CASES: usize = 200;
/// Failing cases shown in a failure message.
const SHOWN_FAILURES: usize = 3;

/// The session key sets the identity property draws from: the default (`name`, `ip`, `proto`,
/// `token`; AMB-25) and explicit lists, one with the order shuffled and a duplicate (SESS-03).
const KEY_SETS: [Option<&str>; 4] = [
    None,
    Some("ip,name,proto"),
    Some("ip,name,proto,token"),
    Some("token,proto,ip,name,ip"),
];

/// What the generating steps leave for the checking steps.
#[derive(Debug)]
pub enum Generated {
    Identity {
        seed: u64,
        /// Server names of the two streams of each key set, by key set.
        names: Vec<Vec<String>>,
        cases: Vec<IdentityCase>,
    },
    Encoding {
        seed: u64,
        cases: Vec<EncodingCase>,
    },
}

/// The seed of one property: the run's seed mixed with the property's name (FNV-1a).
fn property_seed(run_seed: u64, property: &str) -> u64 {
    property.bytes().fold(run_seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// `n` values of `strategy`, drawn in order from `runner`.
fn draw<S: Strategy>(runner: &mut TestRunner, strategy: &S, n: usize) -> Vec<S::Value> {
    (0..n)
        .map(|_| {
            strategy
                .new_tree(runner)
                .unwrap_or_else(|e| panic!("generating a case: {e}"))
                .current()
        })
        .collect()
}

/// The two addresses of case `i`: `127.<10 + i>.x.y`, different from each other.
fn case_ips(i: usize, a: (u8, u8), b: (u8, u8)) -> [Ipv4Addr; 2] {
    let octet = u8::try_from(10 + i).expect("at most MAX_CASES cases");
    let first = Ipv4Addr::new(127, octet, a.0, a.1);
    let mut second = Ipv4Addr::new(127, octet, b.0, b.1);
    if second == first {
        second = Ipv4Addr::new(127, octet, a.0, a.1 % 254 + 1);
    }
    [first, second]
}

fn check_count(n: usize) -> usize {
    assert!(
        (1..=MAX_CASES).contains(&n),
        "ask for 1 to {MAX_CASES} generated cases, not {n}"
    );
    n
}

fn replay_hint(world: &UsherWorld, seed: u64) -> String {
    format!(
        "generated from USHER_SEED={} (this property's seed {seed:#x}); set USHER_SEED to replay the same cases",
        world.ctx.seed
    )
}

// ---- identity: session_id equal exactly when the identity is equal ----

/// One play of an identity case: indexes into the case's names, addresses and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    name: usize,
    ip: usize,
    token: usize,
    proto: Proto,
}

/// A group of plays from two addresses of its own, on two streams with one key set.
#[derive(Debug, Clone)]
pub struct IdentityCase {
    index: usize,
    key_set: usize,
    ips: [Ipv4Addr; 2],
    tokens: [String; 2],
    plays: Vec<Pick>,
    /// Outcomes of the plays, both rounds, in order.
    outcomes: Vec<Outcome>,
}

impl fmt::Display for IdentityCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = KEY_SETS[self.key_set].unwrap_or("default (name, ip, proto, token)");
        write!(f, "case {} with session_keys {keys}:", self.index)?;
        for p in &self.plays {
            write!(
                f,
                "\n      {} plays stream #{} over {} with token {:?}",
                self.ips[p.ip], p.name, p.proto, self.tokens[p.token]
            )?;
        }
        Ok(())
    }
}

/// The alias of the streams of key set `k`: `g<k>-<stem>`.
fn identity_alias(key_set: usize, stem: &str) -> String {
    format!("g{key_set}-{stem}")
}

/// The keys that make an identity under a key set.
fn identity_keys(key_set: usize) -> BTreeSet<&'static str> {
    match KEY_SETS[key_set] {
        // The default carries proto (decisions AMB-25): HLS and MPEG-TS plays of one name,
        // address and token are two sessions.
        None => ["name", "ip", "proto", "token"].into(),
        Some(list) => list.split(',').collect(),
    }
}

/// An identity: the values of the session keys, as (key, value) in key order.
type IdentityValues = Vec<(String, String)>;

/// What the backend saw of one identity: its session_ids and how many new_session calls.
#[derive(Debug, Default)]
struct Seen {
    session_ids: BTreeSet<String>,
    new_sessions: usize,
}

/// The identity of a play under `keys`.
fn identity(keys: &BTreeSet<&str>, fields: &BTreeMap<&str, String>) -> IdentityValues {
    keys.iter()
        .map(|k| {
            (
                k.to_string(),
                fields.get(k).cloned().unwrap_or_else(|| "undefined".into()),
            )
        })
        .collect()
}

#[when(
    regex = r"^(\d+) generated groups of viewers play generated streams with generated tokens and session keys, twice$"
)]
async fn identity_cases(world: &mut UsherWorld, n: usize) {
    let n = check_count(n);
    let seed = property_seed(world.ctx.seed, "identity");
    let mut runner = runner(seed);
    let stems = draw(&mut runner, &"[a-z0-9]{1,6}", 2);
    let stems = if stems[0] == stems[1] {
        vec![stems[0].clone(), format!("{}x", stems[1])]
    } else {
        stems
    };
    let token = "[A-Za-z0-9._~-]{1,10}";
    let pick = (0..2usize, 0..2usize, 0..2usize, any::<bool>()).prop_map(|(name, ip, token, ts)| Pick {
        name,
        ip,
        token,
        proto: if ts { Proto::MpegTs } else { Proto::Hls },
    });
    let case = (
        0..KEY_SETS.len(),
        (1u8..=254, 1u8..=254),
        (1u8..=254, 1u8..=254),
        (token, token),
        proptest::collection::vec(pick, 2..=4),
    );
    let cases: Vec<IdentityCase> = draw(&mut runner, &case, n)
        .into_iter()
        .enumerate()
        .map(|(index, (key_set, a, b, (t1, t2), plays))| IdentityCase {
            index,
            key_set,
            ips: case_ips(index, a, b),
            tokens: if t1 == t2 { [t1, format!("{t2}x")] } else { [t1, t2] },
            plays,
            outcomes: Vec::new(),
        })
        .collect();

    for (key_set, keys) in KEY_SETS.iter().enumerate() {
        for stem in &stems {
            let alias = identity_alias(key_set, stem);
            let auth = AuthSettings {
                session_keys: keys.map(|l| l.split(',').map(str::to_string).collect()),
                ..AuthSettings::default()
            };
            let spec = StreamSpec {
                on_play: Some(auth),
                ..StreamSpec::default()
            };
            super::stream::declare(world, alias, spec);
        }
    }
    world.ensure_streams().await;
    let names: Vec<Vec<String>> = (0..KEY_SETS.len())
        .map(|k| stems.iter().map(|s| world.stream_name(&identity_alias(k, s))).collect())
        .collect();

    let base = world.ctx.target.http_base().clone();
    let token_param = world.token_param().to_string();
    // Round one opens the sessions; round two, after their one-second auth duration, asks
    // about each identity again. MPEG-TS connections stay open until the end.
    let mut cases = cases;
    let mut open: Vec<Connection> = Vec::new();
    for round in 0..2 {
        if round == 1 {
            // Letting the auth duration (1 s) pass is the point of this wait.
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
        let results: Vec<(usize, Vec<Outcome>, Vec<Connection>)> = futures::stream::iter(cases.iter())
            .map(|case| play_identity_case(&base, &token_param, &names[case.key_set], case))
            .buffer_unordered(CASE_CONCURRENCY)
            .collect()
            .await;
        for (index, outcomes, connections) in results {
            cases[index].outcomes.extend(outcomes);
            open.extend(connections);
        }
    }
    drop(open);
    world.generated = Some(Generated::Identity { seed, names, cases });
}

async fn play_identity_case(
    base: &Url,
    token_param: &str,
    names: &[String],
    case: &IdentityCase,
) -> (usize, Vec<Outcome>, Vec<Connection>) {
    let mut outcomes = Vec::new();
    let mut connections = Vec::new();
    for p in &case.plays {
        let profile = ViewerProfile::new(IpAddr::V4(case.ips[p.ip]));
        let query = [(token_param.to_string(), case.tokens[p.token].clone())];
        let name = &names[p.name];
        let outcome = match p.proto {
            Proto::MpegTs => {
                let client = TsClient::new(base, profile).unwrap_or_else(|e| panic!("building an MPEG-TS client: {e}"));
                let (attempt, session) = client.open(name, &query, TS_PLAYING_BYTES).await;
                connections.extend(session.map(Connection::Ts));
                attempt.outcome
            }
            _ => {
                let client = HlsClient::new(base, profile).unwrap_or_else(|e| panic!("building an HLS client: {e}"));
                client.play(name, &query).await.outcome
            }
        };
        outcomes.push(outcome);
    }
    (case.index, outcomes, connections)
}

/// What is wrong with one case, if anything.
fn identity_problems(case: &IdentityCase, names: &[String], calls: &[&Call]) -> Vec<String> {
    let keys = identity_keys(case.key_set);
    let mut problems = Vec::new();
    for (i, outcome) in case.outcomes.iter().enumerate() {
        if *outcome != Outcome::Playing {
            let round = i / case.plays.len() + 1;
            let p = case.plays[i % case.plays.len()];
            problems.push(format!(
                "round {round}: {} playing stream #{} over {} did not play: {outcome}",
                case.ips[p.ip], p.name, p.proto
            ));
        }
    }
    let play_ids: BTreeSet<IdentityValues> = case
        .plays
        .iter()
        .map(|p| {
            let fields = BTreeMap::from([
                ("name", names[p.name].clone()),
                ("ip", case.ips[p.ip].to_string()),
                ("proto", p.proto.wire_name().to_string()),
                ("token", case.tokens[p.token].clone()),
            ]);
            identity(&keys, &fields)
        })
        .collect();
    let mut seen: BTreeMap<IdentityValues, Seen> = BTreeMap::new();
    for call in calls {
        let fields: BTreeMap<&str, String> = ["name", "ip", "proto", "token"]
            .into_iter()
            .filter_map(|k| call.param(k).map(|v| (k, v.to_string())))
            .collect();
        let entry = seen.entry(identity(&keys, &fields)).or_default();
        entry.session_ids.extend(call.session_id().map(str::to_string));
        entry.new_sessions += usize::from(call.request_type() == Some("new_session"));
    }
    for id in &play_ids {
        match seen.get(id) {
            None => problems.push(format!("the backend was never asked about identity {id:?}")),
            Some(Seen {
                session_ids: ids,
                new_sessions: news,
            }) => {
                if ids.len() != 1 {
                    problems.push(format!(
                        "identity {id:?} reached the backend with {} session_ids: {ids:?}",
                        ids.len()
                    ));
                }
                if *news != 1 {
                    problems.push(format!("identity {id:?} had {news} new_session calls, expected 1"));
                }
            }
        }
    }
    for id in seen.keys().filter(|id| !play_ids.contains(*id)) {
        problems.push(format!(
            "the backend was asked about identity {id:?}, which no play had"
        ));
    }
    let mut owner: BTreeMap<&str, &IdentityValues> = BTreeMap::new();
    for (id, s) in &seen {
        for sid in &s.session_ids {
            if let Some(other) = owner.insert(sid, id) {
                problems.push(format!("identities {other:?} and {id:?} share session_id {sid}"));
            }
        }
    }
    problems
}

#[then(regex = r"^two plays share a session_id exactly when their session keys' values are equal$")]
async fn identity_property(world: &mut UsherWorld) {
    let Some(Generated::Identity { seed, names, cases }) = &world.generated else {
        panic!("no generated groups of viewers played in this scenario");
    };
    let log = world.backend.log();
    let mut failures: Vec<(usize, String)> = Vec::new();
    for case in cases {
        let ips: BTreeSet<String> = case.ips.iter().map(ToString::to_string).collect();
        let calls: Vec<&Call> = log
            .calls()
            .iter()
            .filter(|c| c.param("ip").is_some_and(|ip| ips.contains(ip)))
            .collect();
        let problems = identity_problems(case, &names[case.key_set], &calls);
        if !problems.is_empty() {
            let mut text = format!("{case}\n    {}", problems.join("\n    "));
            text.push_str("\n    its backend calls:");
            for c in &calls {
                text.push_str(&format!("\n      {c}"));
            }
            failures.push((case.plays.len(), text));
        }
    }
    if !failures.is_empty() {
        failures.sort_by_key(|(len, _)| *len);
        let shown: Vec<String> = failures.iter().take(SHOWN_FAILURES).map(|(_, t)| t.clone()).collect();
        panic!(
            "{} of {} generated groups broke the property (smallest first):\n  {}\n{}",
            failures.len(),
            cases.len(),
            shown.join("\n  "),
            replay_hint(world, *seed)
        );
    }
}

// ---- encoding: backend query strings decode back to exactly what was sent ----

/// One viewer with a generated stream name, token and user agent.
#[derive(Debug, Clone)]
pub struct EncodingCase {
    index: usize,
    ip: Ipv4Addr,
    server_name: String,
    token: String,
    user_agent: String,
    outcome: Option<Outcome>,
}

impl fmt::Display for EncodingCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "case {}: {} plays {:?} over HLS with token {:?} and User-Agent {:?} ({})",
            self.index,
            self.ip,
            self.server_name,
            self.token,
            self.user_agent,
            self.outcome
                .as_ref()
                .map_or("not played".to_string(), ToString::to_string)
        )
    }
}

/// Characters that break naive encoders (`&`, `=`, `%`, `+`, space, `#`, `?`, non-ASCII), plain
/// ones, and any printable character.
fn tricky_char(slash: bool) -> impl Strategy<Value = char> {
    let special = vec![
        '&', '=', '%', '+', ' ', '#', '?', '~', '!', '\'', '(', ')', '*', ',', ';', ':', '@', '$', '-', '_', '.', 'é',
        'ß', '雪', '🙂',
    ];
    prop_oneof![
        4 => proptest::sample::select(special),
        3 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('0', '9'),
        1 => any::<char>(),
    ]
    .prop_filter("printable, and no path separator in a name segment", move |c| {
        !c.is_control() && (slash || (*c != '/' && *c != '\\'))
    })
}

fn tricky_string(slash: bool, len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(tricky_char(slash), len).prop_map(|chars| chars.into_iter().collect())
}

#[when(regex = r"^(\d+) generated viewers play generated stream names with generated tokens and user agents$")]
async fn encoding_cases(world: &mut UsherWorld, n: usize) {
    let n = check_count(n);
    let seed = property_seed(world.ctx.seed, "encoding");
    let mut runner = runner(seed);
    let segment = tricky_string(false, 1..=8).prop_filter("a path segment", |s| s != "." && s != "..");
    let case = (
        proptest::collection::vec(segment, 1..=2),
        tricky_string(true, 1..=16),
        "[ -~]{1,24}",
        (1u8..=254, 1u8..=254),
    );
    let drawn = draw(&mut runner, &case, n);
    let mut cases = Vec::new();
    for (index, (segments, token, user_agent, (x, y))) in drawn.into_iter().enumerate() {
        let alias = format!("e{index}-{}", segments.join("/"));
        let server_name = world.stream_name(&alias);
        let spec = StreamSpec {
            on_play: Some(AuthSettings::default()),
            ..StreamSpec::default()
        };
        super::stream::declare(world, alias, spec);
        let user_agent = user_agent.trim().to_string();
        cases.push(EncodingCase {
            index,
            ip: case_ips(index, (x, y), (x, y))[0],
            server_name,
            token,
            user_agent: if user_agent.is_empty() { "ua".into() } else { user_agent },
            outcome: None,
        });
    }
    world.ensure_streams().await;
    let base = world.ctx.target.http_base().clone();
    let token_param = world.token_param().to_string();
    let outcomes: Vec<(usize, Outcome)> = futures::stream::iter(cases.iter())
        .map(|case| {
            let base = &base;
            let token_param = &token_param;
            async move {
                let mut profile = ViewerProfile::new(IpAddr::V4(case.ip));
                profile.user_agent = Some(case.user_agent.clone());
                let client = HlsClient::new(base, profile).unwrap_or_else(|e| panic!("building an HLS client: {e}"));
                let query = [(token_param.clone(), case.token.clone())];
                (case.index, client.play(&case.server_name, &query).await.outcome)
            }
        })
        .buffer_unordered(CASE_CONCURRENCY)
        .collect()
        .await;
    for (index, outcome) in outcomes {
        cases[index].outcome = Some(outcome);
    }
    world.generated = Some(Generated::Encoding { seed, cases });
}

#[then(regex = r"^every backend call carried exactly the stream name, token, address and user agent that were sent$")]
async fn encoding_property(world: &mut UsherWorld) {
    let Some(Generated::Encoding { seed, cases }) = &world.generated else {
        panic!("no generated viewers played in this scenario");
    };
    let log = world.backend.log();
    let mut failures: Vec<(usize, String)> = Vec::new();
    for case in cases {
        let ip = case.ip.to_string();
        let calls: Vec<&Call> = log
            .calls()
            .iter()
            .filter(|c| c.param("ip") == Some(ip.as_str()))
            .collect();
        let mut problems = Vec::new();
        if calls.is_empty() {
            problems.push("the backend was never asked".to_string());
        }
        for call in &calls {
            for (param, sent) in [
                ("name", case.server_name.as_str()),
                ("token", case.token.as_str()),
                ("ip", ip.as_str()),
                ("user_agent", case.user_agent.as_str()),
                ("proto", "hls"),
            ] {
                if call.param(param) != Some(sent) {
                    problems.push(format!("`{param}` arrived as {:?}, sent {sent:?}", call.param(param)));
                }
            }
            let repeated: Vec<&str> = call
                .query
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| call.query.iter().filter(|(k2, _)| k2 == k).count() > 1)
                .collect();
            if !repeated.is_empty() {
                problems.push(format!("parameters arrived more than once: {repeated:?}"));
            }
        }
        if !problems.is_empty() {
            let mut text = format!("{case}\n    {}", problems.join("\n    "));
            for c in &calls {
                text.push_str(&format!("\n      {c}"));
            }
            failures.push((case.token.chars().count() + case.server_name.chars().count(), text));
        }
    }
    if !failures.is_empty() {
        failures.sort_by_key(|(len, _)| *len);
        let shown: Vec<String> = failures.iter().take(SHOWN_FAILURES).map(|(_, t)| t.clone()).collect();
        panic!(
            "{} of {} generated viewers broke the property (smallest first):\n  {}\n{}",
            failures.len(),
            cases.len(),
            shown.join("\n  "),
            replay_hint(world, *seed)
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn call(name: &str, ip: &str, proto: &str, token: &str, request_type: &str, session_id: &str) -> Call {
        let query = [
            ("name", name),
            ("proto", proto),
            ("ip", ip),
            ("request_type", request_type),
            ("session_id", session_id),
            ("token", token),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Call {
            at: Instant::now(),
            offset: Duration::ZERO,
            method: "GET".into(),
            path: "/x/on_play".into(),
            query,
            publish: false,
            body: None,
            answered: "200".into(),
            answer: None,
        }
    }

    /// Two HLS plays from one address with two tokens on stream #0, under `key_set`.
    fn case(key_set: usize) -> IdentityCase {
        let pick = |token| Pick {
            name: 0,
            ip: 0,
            token,
            proto: Proto::Hls,
        };
        IdentityCase {
            index: 0,
            key_set,
            ips: [Ipv4Addr::new(127, 10, 0, 1), Ipv4Addr::new(127, 10, 0, 2)],
            tokens: ["a".into(), "b".into()],
            plays: vec![pick(0), pick(1)],
            outcomes: vec![Outcome::Playing; 2],
        }
    }

    fn names() -> Vec<String> {
        vec!["n0".into(), "n1".into()]
    }

    #[test]
    fn distinct_identities_with_distinct_ids_pass() {
        let calls = [
            call("n0", "127.10.0.1", "hls", "a", "new_session", "id-a"),
            call("n0", "127.10.0.1", "hls", "b", "new_session", "id-b"),
            call("n0", "127.10.0.1", "hls", "a", "update_session", "id-a"),
        ];
        let calls: Vec<&Call> = calls.iter().collect();
        assert_eq!(identity_problems(&case(0), &names(), &calls), Vec::<String>::new());
    }

    #[test]
    fn a_shared_id_across_identities_fails() {
        let calls = [
            call("n0", "127.10.0.1", "hls", "a", "new_session", "id"),
            call("n0", "127.10.0.1", "hls", "b", "new_session", "id"),
        ];
        let calls: Vec<&Call> = calls.iter().collect();
        let problems = identity_problems(&case(0), &names(), &calls);
        assert!(problems.iter().any(|p| p.contains("share session_id")), "{problems:?}");
    }

    #[test]
    fn without_token_in_the_keys_two_tokens_are_one_identity() {
        // Key set 1 is ip,name,proto: the second token is the same session.
        let one = [call("n0", "127.10.0.1", "hls", "a", "new_session", "id")];
        let calls: Vec<&Call> = one.iter().collect();
        assert_eq!(identity_problems(&case(1), &names(), &calls), Vec::<String>::new());
        // A second new_session (or a second id) for that identity is a failure.
        let two = [
            call("n0", "127.10.0.1", "hls", "a", "new_session", "id"),
            call("n0", "127.10.0.1", "hls", "b", "new_session", "id2"),
        ];
        let calls: Vec<&Call> = two.iter().collect();
        let problems = identity_problems(&case(1), &names(), &calls);
        assert!(problems.iter().any(|p| p.contains("2 session_ids")), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("2 new_session calls")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_identity_never_asked_about_fails() {
        let calls = [call("n0", "127.10.0.1", "hls", "a", "new_session", "id-a")];
        let calls: Vec<&Call> = calls.iter().collect();
        let problems = identity_problems(&case(0), &names(), &calls);
        assert!(problems.iter().any(|p| p.contains("never asked")), "{problems:?}");
    }

    #[test]
    fn the_same_seed_draws_the_same_cases() {
        let draw_some = |seed| draw(&mut runner(seed), &tricky_string(true, 1..=16), 8);
        assert_eq!(draw_some(7), draw_some(7));
        assert_ne!(draw_some(7), draw_some(8));
        assert_ne!(property_seed(1, "identity"), property_seed(1, "encoding"));
    }
}
