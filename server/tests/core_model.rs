//! Model-based test of the auth core: random sequences of viewer requests, backend answers
//! (allow with user id / X-Max-Sessions / X-Unique / X-AuthDuration, deny, 500, timeout),
//! clock advances and API closes run against the real core (paused Tokio time, scripted
//! backend) and against a small reference model written from the spec and decisions.md. After
//! every step both must agree on the verdict, on every backend call (type, number, counters),
//! and on the set of open sessions; no user may keep more open sessions than its limit.
//!
//! Scope: HTTP-segment sessions (lazy re-checks, idle close, linger). Persistent sessions and
//! their background re-checks are covered by `core_timeline.rs`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use proptest::prelude::*;
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::identity::RequestFacts;
use usher_server::auth::{
    Answer, AuthCore, AuthSettings, Backend, BackendRequest, CallKind, Grant, Identity, PlayRequest, Proto,
    RequestType, Verdict,
};
use usher_server::config::{AuthSpec, AuthTarget, SessionKeys};

const CLIENTS: u8 = 3;
const STREAMS: u8 = 2;
const IDLE: u64 = 30;
const MIN_LINGER: u64 = 10;
const TIMEOUT: u64 = 3;

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Allow {
        secs: u64,
        user: Option<u8>,
        max: Option<u32>,
        unique: bool,
    },
    Deny {
        secs: u64,
    },
    Fail,
    Timeout,
}

#[derive(Debug, Clone)]
enum Event {
    /// The backend's answer for this (client, stream)'s token from now on.
    Script {
        client: u8,
        stream: u8,
        reply: Reply,
    },
    Play {
        client: u8,
        stream: u8,
    },
    Advance {
        secs: u64,
    },
    /// Close the client's session on that stream through the API.
    Close {
        client: u8,
        stream: u8,
    },
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => (0u64..=20, proptest::option::of(0u8..2), proptest::option::of(1u32..=3), proptest::bool::weighted(0.15))
            .prop_map(|(secs, user, max, unique)| Reply::Allow { secs, user, max, unique }),
        2 => (1u64..=20).prop_map(|secs| Reply::Deny { secs }),
        1 => Just(Reply::Fail),
        1 => Just(Reply::Timeout),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0..CLIENTS, 0..STREAMS, reply()).prop_map(|(client, stream, reply)| Event::Script { client, stream, reply }),
        6 => (0..CLIENTS, 0..STREAMS).prop_map(|(client, stream)| Event::Play { client, stream }),
        3 => (1u64..=25).prop_map(|secs| Event::Advance { secs }),
        1 => (0..CLIENTS, 0..STREAMS).prop_map(|(client, stream)| Event::Close { client, stream }),
    ]
}

fn token(client: u8, stream: u8) -> String {
    format!("t{client}{stream}")
}

fn ip(client: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + client])
}

fn stream_name(stream: u8) -> String {
    format!("s{stream}")
}

// ---------------------------------------------------------------- the system under test

#[derive(Default)]
struct Scripted {
    replies: Mutex<HashMap<String, Reply>>,
    log: Mutex<Vec<BackendRequest>>,
}

impl Backend for Scripted {
    fn call(&self, _url: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
        self.log.lock().unwrap().push(request.clone());
        let token = request.token.clone().unwrap_or_default();
        let reply = self.replies.lock().unwrap().get(&token).cloned().unwrap_or(Reply::Fail);
        Box::pin(async move {
            match reply {
                Reply::Allow {
                    secs,
                    user,
                    max,
                    unique,
                } => Answer::Allow(Grant {
                    duration: Duration::from_secs(secs),
                    user_id: user.map(|u| format!("u{u}")),
                    max_sessions: max,
                    unique,
                    ..Grant::default()
                }),
                Reply::Deny { secs } => Answer::Deny {
                    status: 403,
                    duration: Duration::from_secs(secs),
                },
                Reply::Fail => Answer::NoDecision { reason: "500".into() },
                Reply::Timeout => {
                    tokio::time::sleep(Duration::from_secs(TIMEOUT)).await;
                    Answer::NoDecision {
                        reason: "timeout".into(),
                    }
                }
            }
        })
    }
}

// ---------------------------------------------------------------- the reference model

#[derive(Debug, Clone)]
enum Rec {
    Allowed {
        opened_at: u64,
        last_seen: u64,
        expires: u64,
        duration: u64,
        user: Option<u8>,
        request_number: u64,
    },
    Banned {
        until: u64,
    },
}

/// What the model expects of one call.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    request_type: RequestType,
    request_number: u64,
    stream_clients: u64,
    total_clients: u64,
}

#[derive(Default)]
struct Model {
    now: u64,
    replies: HashMap<(u8, u8), Reply>,
    recs: BTreeMap<(u8, u8), Rec>,
    identity: HashMap<(u8, u8), Identity>,
    /// Limit of the most recent allow per user.
    limits: HashMap<u8, u32>,
}

impl Model {
    fn is_open(&self, key: (u8, u8)) -> bool {
        matches!(self.recs.get(&key), Some(Rec::Allowed { last_seen, .. }) if self.now < last_seen + IDLE)
    }

    fn counts(&self, key: (u8, u8)) -> (u64, u64) {
        let open: Vec<(u8, u8)> = self
            .recs
            .keys()
            .copied()
            // The session being checked never counts itself (REQ-06, AMB-12).
            .filter(|k| *k != key && self.is_open(*k))
            .collect();
        let stream = open.iter().filter(|k| k.1 == key.1).count() as u64;
        (stream, open.len() as u64)
    }

    /// Returns (allowed, the call made if any).
    fn play(&mut self, key: (u8, u8)) -> (bool, Option<Call>) {
        let now = self.now;
        let rec = self.recs.get(&key).cloned();
        let existing = match rec {
            Some(Rec::Banned { until }) if now < until => return (false, None),
            Some(Rec::Banned { .. }) | None => None,
            Some(Rec::Allowed { last_seen, expires, .. }) => {
                let closed_at = (now >= last_seen + IDLE).then_some(last_seen + IDLE);
                let linger_over = closed_at.is_some_and(|c| now >= expires.max(c + MIN_LINGER));
                if linger_over {
                    None
                } else if now < expires {
                    if let Some(Rec::Allowed { last_seen, .. }) = self.recs.get_mut(&key) {
                        *last_seen = now;
                    }
                    return (true, None);
                } else {
                    rec
                }
            }
        };
        let (stream_clients, total_clients) = self.counts(key);
        let reply = self.replies.get(&key).cloned().unwrap_or(Reply::Fail);
        let (request_type, request_number) = match &existing {
            Some(Rec::Allowed { request_number, .. }) => (RequestType::UpdateSession, request_number + 1),
            _ => (RequestType::NewSession, 1),
        };
        let call = Call {
            request_type,
            request_number,
            stream_clients,
            total_clients,
        };
        let started = now;
        if reply == Reply::Timeout {
            self.now += TIMEOUT;
        }
        let now = self.now;
        let allowed = match (reply, existing) {
            (
                Reply::Allow {
                    secs,
                    user,
                    max,
                    unique,
                },
                existing,
            ) => {
                let (opened_at, old_user) = match existing {
                    Some(Rec::Allowed { opened_at, user, .. }) => (opened_at, user),
                    _ => (started, None),
                };
                let is_new = request_type == RequestType::NewSession;
                let user = if user.is_some() || is_new { user } else { old_user };
                self.recs.insert(
                    key,
                    Rec::Allowed {
                        opened_at,
                        last_seen: started,
                        expires: now + secs,
                        duration: secs,
                        user,
                        request_number,
                    },
                );
                let limit = if unique { Some(1) } else { max };
                match (user, limit) {
                    (Some(u), Some(l)) => {
                        self.limits.insert(u, l);
                        self.kick(key, u, l, secs);
                    }
                    // An allow without a limit lifts the bound until the next limited one.
                    (Some(u), None) => {
                        self.limits.remove(&u);
                    }
                    _ => {}
                }
                true
            }
            (Reply::Deny { secs }, _) => {
                self.recs.insert(key, Rec::Banned { until: now + secs });
                false
            }
            (
                Reply::Fail | Reply::Timeout,
                Some(Rec::Allowed {
                    opened_at,
                    user,
                    duration,
                    ..
                }),
            ) => {
                self.recs.insert(
                    key,
                    Rec::Allowed {
                        opened_at,
                        last_seen: started,
                        expires: now + duration.max(1),
                        duration,
                        user,
                        request_number,
                    },
                );
                true
            }
            (Reply::Fail | Reply::Timeout, _) => {
                self.recs.remove(&key);
                false
            }
        };
        (allowed, Some(call))
    }

    /// AMB-1: close the oldest open sessions of the user beyond the limit, ban them for the
    /// auth duration of the answer.
    /// A record still granted: open, or closed and lingering.
    fn is_granted(&self, key: (u8, u8)) -> bool {
        match self.recs.get(&key) {
            Some(Rec::Allowed { last_seen, expires, .. }) => {
                let closed_at = last_seen + IDLE;
                self.now < closed_at || self.now < (*expires).max(closed_at + MIN_LINGER)
            }
            _ => false,
        }
    }

    /// AMB-1: ban the user's granted records beyond the limit — lingering ones first, then
    /// open ones oldest first — for the auth duration of the answer.
    fn kick(&mut self, admitted: (u8, u8), user: u8, limit: u32, ban: u64) {
        let mut others: Vec<(bool, u64, Identity, (u8, u8))> = self
            .recs
            .iter()
            .filter(|(k, r)| {
                **k != admitted && self.is_granted(**k) && matches!(r, Rec::Allowed { user: Some(u), .. } if *u == user)
            })
            .map(|(k, r)| match r {
                Rec::Allowed { opened_at, .. } => (self.is_open(*k), *opened_at, self.identity[k], *k),
                Rec::Banned { .. } => unreachable!(),
            })
            .collect();
        others.sort();
        let keep = (limit as usize).saturating_sub(1);
        let excess = others.len().saturating_sub(keep);
        for (_, _, _, k) in others.into_iter().take(excess) {
            self.recs.insert(k, Rec::Banned { until: self.now + ban });
        }
    }

    fn close(&mut self, key: (u8, u8)) {
        if self.is_open(key) {
            self.recs.remove(&key);
        }
    }

    fn open_sessions(&self) -> Vec<((u8, u8), Option<u8>)> {
        self.recs
            .iter()
            .filter(|(k, _)| self.is_open(**k))
            .map(|(k, r)| match r {
                Rec::Allowed { user, .. } => (*k, *user),
                Rec::Banned { .. } => unreachable!(),
            })
            .collect()
    }
}

// ---------------------------------------------------------------- the run

fn spec() -> AuthSpec {
    let mut spec = AuthSpec::new(AuthTarget::Http("http://backend.invalid/".into()));
    spec.session_keys = SessionKeys::parse("ip,name,proto,token").unwrap();
    spec
}

fn identity_of(keys: &SessionKeys, client: u8, stream: u8) -> Identity {
    let name = stream_name(stream);
    let token = token(client, stream);
    Identity::compute(
        keys,
        &RequestFacts {
            name: &name,
            ip: ip(client),
            proto: Proto::Hls,
            token: Some(&token),
            headers: &[],
            query: &[],
        },
    )
}

fn run(events: Vec<Event>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let backend = Arc::new(Scripted::default());
        let core = AuthCore::new(
            backend.clone(),
            AdminTokens::new("k", Duration::from_secs(60), false),
            AuthSettings {
                no_auto_token: AtomicBool::new(false),
                http_session_idle: Duration::from_secs(IDLE),
                soft_limitation_delay: Duration::from_secs(30),
            },
        );
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(core.clone().run_sweeper(stop.clone()));
        let spec = spec();
        let mut model = Model::default();
        for c in 0..CLIENTS {
            for s in 0..STREAMS {
                model.identity.insert((c, s), identity_of(&spec.session_keys, c, s));
            }
        }
        let mut session_ids: HashMap<uuid::Uuid, (u8, u8)> = HashMap::new();
        for (step, event) in events.into_iter().enumerate() {
            match event {
                Event::Script { client, stream, reply } => {
                    backend
                        .replies
                        .lock()
                        .unwrap()
                        .insert(token(client, stream), reply.clone());
                    model.replies.insert((client, stream), reply);
                }
                Event::Advance { secs } => {
                    // Whole seconds, one at a time, so the sweeper runs as it would.
                    for _ in 0..secs * 4 {
                        tokio::time::advance(Duration::from_millis(250)).await;
                    }
                    model.now += secs;
                }
                Event::Close { client, stream } => {
                    let id = model.identity[&(client, stream)].session_id();
                    core.close_session(id);
                    model.close((client, stream));
                }
                Event::Play { client, stream } => {
                    let calls_before = backend.log.lock().unwrap().len();
                    let verdict = core
                        .authorize(
                            Some(&spec),
                            PlayRequest {
                                kind: CallKind::Play,
                                name: stream_name(stream),
                                proto: Proto::Hls,
                                ip: ip(client),
                                token: Some(token(client, stream)),
                                qs: None,
                                query: vec![],
                                headers: vec![],
                                referer: None,
                                user_agent: None,
                                host: None,
                                dvr: false,
                            },
                        )
                        .await;
                    let real_allowed = matches!(verdict, Verdict::Allow(_));
                    let (model_allowed, model_call) = model.play((client, stream));
                    let log = backend.log.lock().unwrap();
                    let real_calls: Vec<Call> = log[calls_before..]
                        .iter()
                        .map(|r| Call {
                            request_type: r.request_type,
                            request_number: r.request_number,
                            stream_clients: r.stream_clients,
                            total_clients: r.total_clients,
                        })
                        .collect();
                    for r in &log[calls_before..] {
                        session_ids.insert(r.session_id, (client, stream));
                    }
                    drop(log);
                    prop_assert_eq!(
                        real_allowed,
                        model_allowed,
                        "step {}: verdict for {:?}",
                        step,
                        (client, stream)
                    );
                    prop_assert_eq!(
                        real_calls,
                        model_call.into_iter().collect::<Vec<_>>(),
                        "step {}: calls",
                        step
                    );
                }
            }
            // Both agree on who is open, with which user; no user over its limit.
            let mut real: Vec<((u8, u8), Option<u8>)> = core
                .sessions()
                .into_iter()
                .map(|s| {
                    let key = session_ids[&s.id];
                    (key, s.user_id.map(|u| u[1..].parse().unwrap()))
                })
                .collect();
            real.sort();
            prop_assert_eq!(&real, &model.open_sessions(), "step {}: open sessions", step);
            let mut per_user: HashMap<u8, u32> = HashMap::new();
            for (_, user) in &real {
                if let Some(u) = user {
                    *per_user.entry(*u).or_default() += 1;
                }
            }
            for (u, n) in per_user {
                if let Some(limit) = model.limits.get(&u) {
                    prop_assert!(
                        n <= *limit,
                        "step {step}: user u{u} has {n} open sessions, limit {limit}"
                    );
                }
            }
        }
        stop.cancel();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// 64 runs × 20–60 events: well over 1,000 state-machine steps per `cargo test`.
    #[test]
    fn core_agrees_with_the_model(events in proptest::collection::vec(event(), 20..60)) {
        run(events)?;
    }
}
