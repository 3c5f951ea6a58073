//! The auth core's decisions, without I/O: the session registry and every change to it.
//!
//! [`Machine`] is fed events and says what to do: a request arrives ([`Machine::on_request`]),
//! a backend answers ([`Machine::on_answer`]) or does not within the budget
//! ([`Machine::on_timeout`]), time passes ([`Machine::on_tick`]), a connection comes and goes,
//! the management API acts. It reads no clock (every entry point takes [`Now`]), starts no
//! task, holds no lock and performs no call: a backend call it wants made comes back as a
//! [`Call`], whose answer is fed back with the call's [`Ticket`]. Sessions it closes are
//! queued for the session history ([`Machine::drain_closed`]). [`super::AuthCore`] drives it:
//! the one lock, the tasks, the one 3 s timer, the channels that let concurrent requests of one
//! identity wait for one call. A test drives it directly, on a clock of its own.
//!
//! Per identity the registry holds one record; its [`State`] and how it changes are drawn on
//! the enum, and every change of state is made by [`transition`].

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use uuid::Uuid;

use super::backend::{Answer, BackendRequest, CallKind, Grant, MAX_AUTH_DURATION, RequestType, SignKey};
use super::core::{CloseReason, ClosedSession, DenyReason, PlayRequest, SessionInfo, Verdict, redact};
use super::registry::{CallTemplate, Entry, PendingKick, Registry, Wall};
pub use super::registry::{Key, Tick};
use super::session::{SessionHandle, SessionShared};
use crate::config::{AuthSpec, AuthTarget, Protocols};

/// Records a tick handles per [`Machine::on_tick_chunk`] (the driver lets go of its lock in
/// between, so that at a million sessions a request waits for one chunk, not a whole pass).
pub const TICK_CHUNK: u32 = 4096;

/// A record's state, named for what the record expects next.
///
/// ```text
///                 first request: new_session call
///   (none) ───────────────────────────► AwaitingFirstAnswer
///     ▲  ▲                                 │       │      │
///     │  │ no decision / redirect          │allow  │deny  │
///     │  └─────────────────────────────────┘       │      │
///     │                                            ▼      ▼
///     │       admitted without a backend ──►  Granted ──► Refusing ──► (none)
///     │                                      ▲  │ │  deny, redirect,    ban ends
///     │ linger ends, admin token ends,       │  │ │  per-user kick,
///     │ API close, protocol off              │  │ │  X-Unique
///     └──────────────────────────────────────┼──┘ │
///                                            └────┘ re-check (update_session) allows,
///                                                   or gives no decision: kept
/// ```
///
/// * `AwaitingFirstAnswer`: a `new_session` call is in flight; every request of the identity
///   waits for it (single flight). No decision (T11) or a redirect drops the record: the
///   session was never opened.
/// * `Granted`: the backend (or no backend) admitted it until `expires`. While fresh, requests
///   are answered without a call; once stale, the next request (HTTP) or the next tick
///   (a live connection, TIME-05) asks again with `update_session`. It is *open* until its
///   last connection ends or it sees no request for `http_session_idle`, and a closed record
///   lingers so that the same identity comes back without a call while fresh (SESS-08,
///   AMB-13).
/// * `Refusing`: refused locally until the ban ends (BAN-01); the record keeps the identity's
///   digest only, not the request's values.
///
/// Records admitted without a backend (no `on_play`, `on_play true`, an admin token) are never
/// resumed by a request a backend decides; an admin token's record ends, connections included,
/// when the token does (ADM-04).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AwaitingFirstAnswer,
    Granted,
    Refusing,
}

/// The present moment, as the driver read it: the monotonic clock decides, the wall clock is
/// only shown (session lists, history records).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub(super) tick: Tick,
    pub(super) wall: Wall,
}

impl Now {
    pub fn new(tick: Tick, wall: SystemTime) -> Now {
        Now {
            tick,
            wall: Wall::from_system_time(wall),
        }
    }
}

/// Names one backend call while it is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(NonZeroU64);

/// What the driver keeps of a call to feed its answer back.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub key: Key,
    pub id: CallId,
    pub request_type: RequestType,
}

/// A backend call the machine wants made.
#[derive(Debug)]
pub struct Call {
    pub ticket: Ticket,
    pub url: String,
    pub request: BackendRequest,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Step {
    /// Decided.
    Done(Verdict),
    /// A call for this identity is in flight: wait for its verdict.
    Wait(CallId),
    /// Make this call; its verdict decides this request (and those that wait for it).
    Call(Box<Call>),
}

/// What an answer (or a timeout) leads to.
#[derive(Debug)]
pub struct Effects {
    /// The verdict for the requests that waited on the call.
    pub verdict: Verdict,
    /// A `config` override of an allow, for the stream side (CONF-01..03).
    pub config: Option<Value>,
    /// With a shared store: the session an allow admitted, for the store to count (and to
    /// close the user's oldest sessions on every server beyond the limit).
    pub claim: Option<Claim>,
    /// With a shared store: a deny's ban, for every server to refuse the identity.
    pub ban: Option<Duration>,
}

/// A session of a user id for the shared session store to count (driver side: `store.rs`).
/// The machine only says what to share; it never talks to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: Key,
    pub user: String,
    /// The user's limit: X-Unique's 1, X-Max-Sessions, the stream's cap; `u32::MAX` counts the
    /// session without a limit of its own (another session of the user may bring one).
    pub max: u32,
    /// How long the store keeps counting it unless it is claimed again: its auth duration.
    pub ttl: Duration,
    /// The ban of sessions this claim closes (BAN-02: the auth duration of the answer).
    pub ban: Duration,
    pub unique: bool,
    /// When the session opened (AMB-1's order across servers).
    pub opened_unix_ms: u64,
    /// Handed back after the store was lost: the oldest go, this one included.
    pub resync: bool,
}

/// Where the store's 1 s floor on a claim's life comes from: an answer with
/// `X-AuthDuration: 0` is asked again at the next request, and its session still counts
/// until then.
const MIN_CLAIM_TTL: Duration = Duration::from_secs(1);

/// How [`Machine::on_request`] sees a record.
enum Look {
    /// A call for it is in flight.
    Wait(CallId),
    /// Refused until its ban ends.
    Banned,
    /// Granted and fresh: answered without a call.
    Fresh,
    /// Granted but stale: re-checked with `update_session`.
    Stale,
    /// No usable record: a new session (`new_session`).
    Afresh,
}

fn look(e: &Entry, t: Tick) -> Look {
    if let Some(id) = e.inflight() {
        return Look::Wait(id);
    }
    match e.state {
        State::Refusing if t < e.expires => Look::Banned,
        State::Refusing | State::AwaitingFirstAnswer => Look::Afresh,
        // A session the server ended (protocol switched off) is over; its client starts
        // afresh. So is one admitted without a backend (an admin token no longer valid, a
        // stream that had no backend then): a request that needs a backend is never resumed
        // through it.
        State::Granted
            if e.linger_until().is_some_and(|l| t >= l) || e.shared.ended.is_cancelled() || e.call.is_none() =>
        {
            Look::Afresh
        }
        State::Granted if t < e.expires => Look::Fresh,
        State::Granted => Look::Stale,
    }
}

/// One event in a record's life that changes its state; see [`transition`].
#[derive(Debug, Clone, Copy)]
enum Event {
    /// The backend allowed, for `duration`.
    Allowed { duration: Duration },
    /// Refused for `ban`: a deny, a redirect of a running session, a per-user kick.
    Refused { ban: Duration },
    /// A re-check gave no decision: the state stays, asked again after the retry period.
    Undecided,
    /// Admitted without a backend call until `expires`.
    AdmittedWithoutBackend { expires: Tick, admin: bool },
    /// Its protocol was switched off: closed, and judged afresh next time (CONF-03).
    ProtocolOff,
}

/// The one place a record's state changes. What happens around it (the books, the user's
/// other sessions, dropping a record the event ends) is the caller's.
fn transition(e: &mut Entry, now: Tick, event: Event) {
    match (e.state, event) {
        (_, Event::Allowed { duration }) => {
            e.state = State::Granted;
            e.expires = now + duration;
            e.set_duration(duration);
        }
        (_, Event::Refused { ban }) => {
            e.state = State::Refusing;
            e.expires = now + ban;
            e.close(now);
            e.set_pending_kick(None);
            e.shared.ended.cancel();
        }
        (State::Granted | State::Refusing, Event::Undecided) => {
            // T11/TIME-04: keep the previous state, ask again at the next check.
            e.expires = now + e.duration().max(Duration::from_secs(1));
        }
        (State::AwaitingFirstAnswer, Event::Undecided) => {
            debug_assert!(false, "an unopened session without a decision is dropped, not kept");
        }
        (_, Event::AdmittedWithoutBackend { expires, admin }) => {
            e.state = State::Granted;
            e.call = None;
            e.admin = admin;
            e.expires = expires;
            e.touch(now);
        }
        (State::Granted, Event::ProtocolOff) => {
            e.close(now);
            // The record is forgotten so that a later request is judged afresh.
            e.expires = now;
            e.shared.ended.cancel();
        }
        (State::AwaitingFirstAnswer | State::Refusing, Event::ProtocolOff) => {}
    }
}

/// The session registry and the decisions on it. See the module documentation.
#[derive(Debug)]
pub struct Machine {
    registry: Registry,
    http_session_idle: Duration,
    soft_limitation_delay: Duration,
    next_call: u64,
    /// Closed sessions not yet handed to the history; kept only once someone listens.
    closed: Vec<ClosedSession>,
    record_closes: bool,
    /// A shared session store is in use: allows and denies say what to share ([`Effects`]).
    shared: bool,
}

impl Machine {
    /// `http_session_idle`: when an unconnected session closes (SESS-07); `soft_limitation_delay`:
    /// the grace of a soft-limitation kick (LIM-05).
    pub fn new(http_session_idle: Duration, soft_limitation_delay: Duration) -> Machine {
        Machine {
            registry: Registry::default(),
            http_session_idle,
            soft_limitation_delay,
            next_call: 0,
            closed: Vec::new(),
            record_closes: false,
            shared: false,
        }
    }

    /// From now on, allows and denies say what the shared session store must learn
    /// ([`Effects::claim`], [`Effects::ban`]).
    pub fn share(&mut self) {
        self.shared = true;
    }

    /// Whether a request of `key` now would open a new session (a `new_session` call): only
    /// then does the driver ask the shared store about a ban first.
    pub fn starts_afresh(&self, now: Now, key: &Key) -> bool {
        self.registry
            .get(key)
            .is_none_or(|e| matches!(look(e, now.tick), Look::Afresh))
    }

    /// The shared store holds a ban of `key` for `ban` more: refuse it here too, from now on
    /// without asking the store (BAN-01 across servers). The record keeps no request values.
    pub fn ban_from_store(&mut self, now: Now, key: &Key, req: &PlayRequest, ban: Duration) {
        let t = now.tick;
        let reg = &mut self.registry;
        let shared = Arc::new(SessionShared::new(key.1, req.kind, req.proto, "", None));
        let name = reg.stream_name("");
        let entry = Entry::new(
            shared,
            name,
            req.ip,
            State::AwaitingFirstAnswer,
            None,
            (t, now.wall),
            (t, Duration::ZERO),
        );
        if let Some(old) = reg.insert(entry) {
            old.shared.ended.cancel();
        }
        if let Some(mut e) = reg.get_mut(key) {
            transition(&mut e, t, Event::Refused { ban });
        }
        keep_ban_only(reg, key);
    }

    /// Another server's admission closed the session of `key` (per-user limit or X-Unique):
    /// close and ban it here if it is granted. Returns whether it was.
    pub fn on_remote_kick(&mut self, now: Now, key: &Key, ban: Duration, unique: bool) -> bool {
        let (closed, record) = (&mut self.closed, self.record_closes);
        let reg = &mut self.registry;
        let Some(slot) = reg.slot_of(key) else { return false };
        let Some(mut e) = reg.slot_mut(slot) else { return false };
        if e.state != State::Granted || e.call.is_none() {
            return false;
        }
        let user = e.user_id().unwrap_or_default().to_string();
        let reason = if unique {
            CloseReason::Unique
        } else {
            CloseReason::Kicked
        };
        Self::closing(closed, record, &e, reason, now);
        let text = if unique {
            "duplicated user id on another server (X-Unique)"
        } else {
            "exceeded session limit across servers"
        };
        ban_kicked(&mut e, &user, ban, text, now.tick);
        drop(e);
        reg.keep_decision_only(slot);
        true
    }

    /// The store could not count the session of `key` and `on_loss=closed`: the admission is
    /// withdrawn (the record goes, connections end). Returns whether there was one.
    pub fn withdraw(&mut self, now: Now, key: &Key) -> bool {
        let Some(e) = self.registry.remove(key) else {
            return false;
        };
        tracing::warn!(session_id = %e.shared.session_id(), "session store unreachable and on_loss=closed; admission withdrawn");
        Self::closing(&mut self.closed, self.record_closes, &e, CloseReason::Denied, now);
        e.shared.ended.cancel();
        true
    }

    /// What to hand the shared store back after it was lost: every granted, fresh session of
    /// a user id, with what is left of its auth duration (a resync claim each).
    pub fn shared_sessions(&self, now: Now) -> Vec<Claim> {
        let t = now.tick;
        let mut claims: Vec<Claim> = self
            .registry
            .iter()
            .filter(|e| e.state == State::Granted && e.call.is_some() && t < e.expires)
            .filter(|e| e.linger_until().is_none_or(|l| t < l) && !e.shared.ended.is_cancelled())
            .filter_map(|e| {
                Some(Claim {
                    key: e.key(),
                    user: e.user_id()?.to_string(),
                    max: e.max_sessions().unwrap_or(u32::MAX),
                    ttl: e.expires.duration_since(t).max(MIN_CLAIM_TTL),
                    ban: e.duration(),
                    unique: false,
                    opened_unix_ms: e.opened_wall.unix_millis(),
                    resync: true,
                })
            })
            .collect();
        claims.sort_by_key(|c| c.opened_unix_ms);
        claims
    }

    /// Keeps closed-session records from now on, for [`drain_closed`](Self::drain_closed).
    pub fn record_closes(&mut self) {
        self.record_closes = true;
    }

    /// Closed-session records since the last drain.
    pub fn drain_closed(&mut self) -> std::vec::Drain<'_, ClosedSession> {
        self.closed.drain(..)
    }

    /// Number of records (open, lingering, pending or refusing).
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.registry.len() == 0
    }

    fn new_call(&mut self) -> CallId {
        self.next_call += 1;
        CallId(NonZeroU64::MIN.saturating_add(self.next_call - 1))
    }

    /// Records `e` as closed for `reason` if it is open now (call before changing it).
    fn closing(closed: &mut Vec<ClosedSession>, record: bool, e: &Entry, reason: CloseReason, now: Now) {
        if !record || !e.is_open() {
            return;
        }
        closed.push(ClosedSession {
            session_id: e.shared.session_id(),
            kind: kind_str(e.shared.kind),
            name: e.name.to_string(),
            ip: e.ip.to_string(),
            proto: e.shared.proto.as_str(),
            token: e.shared.token().to_string(),
            user_id: e.user_id().map(str::to_string),
            opened_at: e.opened_wall.system_time(),
            closed_at: now.wall.system_time(),
            bytes: e.shared.bytes.load(std::sync::atomic::Ordering::Relaxed),
            reason,
            dvr: e.call.as_ref().is_some_and(|c| c.dvr),
            ad_inject_ignored: e.ad_inject_ignored(),
        });
    }

    /// A request that a backend decides (`spec` is the stream's `on_play`/`on_publish`, not
    /// `true`), for identity `key`, with its token settled: answer now, wait for the call in
    /// flight, or make a call.
    pub fn on_request(&mut self, now: Now, key: &Key, req: &PlayRequest, token: &str, spec: &AuthSpec) -> Step {
        let t = now.tick;
        let reg = &mut self.registry;
        let fresh_start = match reg.get_mut(key) {
            None => true,
            Some(mut e) => match look(&e, t) {
                Look::Wait(id) => return Step::Wait(id),
                Look::Banned => return Step::Done(Verdict::deny(DenyReason::Banned)),
                Look::Fresh => {
                    e.touch(t);
                    return Step::Done(Verdict::Allow(SessionHandle {
                        shared: e.shared.clone(),
                    }));
                }
                Look::Stale => false,
                Look::Afresh => true,
            },
        };
        if fresh_start {
            // What later re-checks send: built only here, for a new record, and shared with
            // every record of the same stream settings and client profile.
            let template = reg.template(CallTemplate {
                // The target's text form (`http…`, `/path.lua`, `auth://NAME`) is what the
                // backend router dispatches on.
                url: spec.target.to_string(),
                user_agent: req.user_agent.clone(),
                referer: req.referer.clone(),
                host: req.host.clone(),
                dvr: req.dvr,
                extra: spec.extra.clone(),
                sign_key: spec.sign_key.as_deref().map(SignKey::new),
                stream_max_sessions: spec.max_sessions,
                soft_limitation: spec.soft_limitation,
            });
            let shared = Arc::new(SessionShared::new(key.1, req.kind, req.proto, token, req.qs.as_deref()));
            let name = reg.stream_name(&req.name);
            let entry = Entry::new(
                shared,
                name,
                req.ip,
                State::AwaitingFirstAnswer,
                Some(template),
                (t, now.wall),
                (t, Duration::ZERO),
            );
            if let Some(old) = reg.insert(entry) {
                old.shared.ended.cancel();
            }
        }
        // Make a call: new_session for a record awaiting its first answer, update_session for a
        // stale one.
        let (stream_clients, total_clients) = reg.counts(&req.name, key);
        let id = self.new_call();
        let Some(mut e) = self.registry.get_mut(key) else {
            return Step::Done(Verdict::deny(DenyReason::Gone));
        };
        // A client coming back to a closed (lingering) session reopens it; a deny closes it again.
        e.touch(t);
        let request_type = if e.state == State::AwaitingFirstAnswer {
            RequestType::NewSession
        } else {
            RequestType::UpdateSession
        };
        let request = build_request(&e, key.0, request_type, stream_clients, total_clients, t);
        let url = e.call.as_ref().map(|c| c.url.clone()).unwrap_or_default();
        e.set_inflight(Some(id));
        e.request_number = request.request_number;
        Step::Call(Box::new(Call {
            ticket: Ticket {
                key: *key,
                id,
                request_type,
            },
            url,
            request,
        }))
    }

    /// The backend did not answer within its budget (TIME-03): no decision.
    pub fn on_timeout(&mut self, now: Now, ticket: &Ticket) -> Effects {
        self.on_answer(
            now,
            ticket,
            Answer::NoDecision {
                reason: "timeout".into(),
            },
        )
    }

    /// The backend answered the call of `ticket`.
    pub fn on_answer(&mut self, now: Now, ticket: &Ticket, answer: Answer) -> Effects {
        let t = now.tick;
        let (key, request_type) = (&ticket.key, ticket.request_type);
        let done = |verdict| Effects {
            verdict,
            config: None,
            claim: None,
            ban: None,
        };
        let shared = self.shared;
        let (closed, record) = (&mut self.closed, self.record_closes);
        let reg = &mut self.registry;
        let Some(mut e) = reg.get_mut(key).filter(|e| e.inflight() == Some(ticket.id)) else {
            // The record went (API close, reconfiguration) or was made anew meanwhile.
            return done(Verdict::deny(DenyReason::Gone));
        };
        e.set_inflight(None);
        let session_id = e.shared.session_id();
        if request_type == RequestType::UpdateSession && e.state == State::Refusing {
            // Kicked while its re-check was in flight: the kick stands whatever the answer.
            tracing::debug!(%session_id, "re-check answer for a session kicked meanwhile; ignored");
            return done(Verdict::deny(DenyReason::Banned));
        }
        match answer {
            Answer::Allow(grant) => {
                let was_new = e.state == State::AwaitingFirstAnswer;
                transition(
                    &mut e,
                    t,
                    Event::Allowed {
                        duration: grant.duration,
                    },
                );
                if grant.user_id.is_some() || was_new {
                    e.set_user(grant.user_id.as_deref());
                }
                // Every answer states the ranges anew; an absent field means the whole archive
                // (ADV-02, RESP-07).
                e.set_dvr_ranges(grant.allowed_dvr_ranges.clone());
                // Ads are not inserted (not built): said once per opening of the session, not
                // on every answer that repeats the request, and shown in the session list.
                if was_new {
                    e.set_ad_inject_ignored(false);
                }
                if grant.ad_inject.as_ref().is_some_and(|v| !v.is_null()) && !e.ad_inject_ignored() {
                    e.set_ad_inject_ignored(true);
                    tracing::info!(%session_id, stream = %&*e.name, "backend asked for ad_inject; ad insertion is not supported, the stream plays without ads");
                }
                let stream_cap = e.call.as_ref().and_then(|c| c.stream_max_sessions);
                let limit = effective_limit(&grant, stream_cap);
                e.set_max_sessions(limit);
                if was_new {
                    tracing::info!(%session_id, stream = %&*e.name, ip = %e.ip, proto = %e.shared.proto, user_id = ?e.user_id(), "session opened");
                }
                let handle = SessionHandle {
                    shared: e.shared.clone(),
                };
                // X-Unique is never soft: it names exactly one session to survive.
                let soft = (!grant.unique && e.call.as_ref().is_some_and(|c| c.soft_limitation))
                    .then_some(self.soft_limitation_delay);
                let user = e.user_id().map(str::to_string);
                let claim = match &user {
                    Some(user) if shared => Some(Claim {
                        key: *key,
                        user: user.clone(),
                        // A soft limit is kept per server: the store counts the session but
                        // closes nothing for it.
                        max: limit.filter(|_| soft.is_none()).unwrap_or(u32::MAX),
                        ttl: grant.duration.max(MIN_CLAIM_TTL),
                        ban: grant.duration,
                        unique: grant.unique,
                        opened_unix_ms: e.opened_wall.unix_millis(),
                        resync: false,
                    }),
                    _ => None,
                };
                drop(e);
                if let (Some(user), Some(max)) = (user, limit) {
                    let kick = Kick {
                        user: &user,
                        max,
                        ban: grant.duration,
                        unique: grant.unique,
                        soft,
                    };
                    enforce_limit(reg, closed, record, key, &kick, now);
                }
                Effects {
                    verdict: Verdict::Allow(handle),
                    config: grant.config,
                    claim,
                    ban: None,
                }
            }
            Answer::Deny { status, duration } => {
                tracing::info!(%session_id, stream = %&*e.name, ip = %e.ip, status, ?request_type, ban_secs = duration.as_secs(), "backend denied; banned");
                Self::closing(closed, record, &e, CloseReason::Denied, now);
                transition(&mut e, t, Event::Refused { ban: duration });
                drop(e);
                keep_ban_only(reg, key);
                Effects {
                    ban: shared.then_some(duration),
                    ..done(Verdict::deny(DenyReason::Backend))
                }
            }
            Answer::Redirect { location } if request_type == RequestType::NewSession => {
                drop(e);
                reg.remove(key);
                done(Verdict::Redirect { location })
            }
            Answer::Redirect { .. } => {
                // A redirect cannot move a running session; it ends it like a deny.
                tracing::info!(%session_id, "backend redirected a running session; closing it");
                Self::closing(closed, record, &e, CloseReason::Denied, now);
                let ban = e.duration();
                transition(&mut e, t, Event::Refused { ban });
                drop(e);
                keep_ban_only(reg, key);
                done(Verdict::deny(DenyReason::Backend))
            }
            Answer::NoDecision { reason } if request_type == RequestType::NewSession => {
                tracing::warn!(%session_id, stream = %&*e.name, %reason, "backend gave no decision; session not opened");
                drop(e);
                reg.remove(key);
                done(Verdict::deny(DenyReason::NoDecision))
            }
            Answer::NoDecision { reason } => {
                tracing::warn!(%session_id, stream = %&*e.name, %reason, state = ?e.state, "backend gave no decision; previous decision kept");
                transition(&mut e, t, Event::Undecided);
                match e.state {
                    State::Granted => done(Verdict::Allow(SessionHandle {
                        shared: e.shared.clone(),
                    })),
                    _ => done(Verdict::deny(DenyReason::Banned)),
                }
            }
        }
    }

    /// Admits without a backend call: no `on_play`, `on_play true`, or an admin token valid
    /// until `admin_until` (the session then ends at that moment, ADM-04).
    pub fn admit_without_backend(
        &mut self,
        now: Now,
        key: &Key,
        req: &PlayRequest,
        token: &str,
        admin_until: Option<Tick>,
    ) -> Verdict {
        let t = now.tick;
        let expires = admin_until.unwrap_or(t + MAX_AUTH_DURATION);
        let reg = &mut self.registry;
        // A record is taken up again unless the server ended it (API, override) or it is a
        // ban, which kept nothing of the request (`keep_ban_only`): then the client starts
        // afresh with a new one.
        let reuse = reg
            .get(key)
            .is_some_and(|e| e.state != State::Refusing && !e.shared.ended.is_cancelled());
        if !reuse {
            let shared = Arc::new(SessionShared::new(key.1, req.kind, req.proto, token, None));
            let name = reg.stream_name(&req.name);
            let expiry = (expires, MAX_AUTH_DURATION);
            reg.insert(Entry::new(
                shared,
                name,
                req.ip,
                State::Granted,
                None,
                (t, now.wall),
                expiry,
            ));
        }
        let Some(mut e) = reg.get_mut(key) else {
            return Verdict::deny(DenyReason::Gone);
        };
        transition(
            &mut e,
            t,
            Event::AdmittedWithoutBackend {
                expires,
                admin: admin_until.is_some(),
            },
        );
        Verdict::Allow(SessionHandle {
            shared: e.shared.clone(),
        })
    }

    /// A persistent connection of `handle`'s session begins: the session is open while it lasts.
    pub fn on_connect(&mut self, handle: &SessionHandle) {
        if let Some(mut e) = self.registry.get_mut(&handle_key(handle))
            && Arc::ptr_eq(&e.shared, &handle.shared)
        {
            e.connections += 1;
            e.reopen();
        }
    }

    /// A persistent connection ends; the session closes with its last one (SESS-07).
    pub fn on_disconnect(&mut self, now: Now, handle: &SessionHandle) {
        let (closed, record) = (&mut self.closed, self.record_closes);
        if let Some(mut e) = self.registry.get_mut(&handle_key(handle))
            && Arc::ptr_eq(&e.shared, &handle.shared)
        {
            e.connections = e.connections.saturating_sub(1);
            e.seen_at(now.tick);
            if e.connections == 0 && e.closed_at().is_none() {
                Self::closing(closed, record, &e, CloseReason::Disconnected, now);
                e.close(now.tick);
                tracing::info!(session_id = %e.shared.session_id(), bytes = handle.bytes(), "connection ended; session closed");
            }
        }
    }

    /// See [`super::AuthCore::allowed_dvr_ranges`].
    pub fn allowed_dvr_ranges(&self, handle: &SessionHandle) -> Option<Option<Value>> {
        self.registry
            .get(&handle_key(handle))
            .filter(|e| Arc::ptr_eq(&e.shared, &handle.shared))
            .map(|e| e.dvr_ranges().cloned())
    }

    /// Ends every open session of `stream` whose protocol is switched off (CONF-03).
    pub fn end_disabled(&mut self, now: Now, stream: &str, protocols: &Protocols) {
        let (closed, record) = (&mut self.closed, self.record_closes);
        let reg = &mut self.registry;
        for slot in 0..reg.slot_count() {
            let Some(mut e) = reg.slot_mut(slot) else { continue };
            let off = e.shared.proto.switch_name().and_then(|n| protocols.get(n)) == Some(false);
            if &*e.name == stream && off && e.state == State::Granted {
                tracing::info!(session_id = %e.shared.session_id(), stream, proto = %e.shared.proto, "protocol switched off; session closed");
                Self::closing(closed, record, &e, CloseReason::ProtocolOff, now);
                transition(&mut e, now.tick, Event::ProtocolOff);
            }
        }
    }

    /// Open sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut list: Vec<(Tick, SessionInfo)> = self
            .registry
            .iter()
            .filter(|e| e.is_open())
            .map(|e| {
                let call = e.call.as_ref();
                (
                    e.opened_at,
                    SessionInfo {
                        id: e.shared.session_id(),
                        kind: kind_str(e.shared.kind),
                        name: e.name.to_string(),
                        ip: e.ip.to_string(),
                        proto: e.shared.proto.as_str(),
                        token: e.shared.token().to_string(),
                        user_id: e.user_id().map(str::to_string),
                        max_sessions: e.max_sessions(),
                        ad_inject_ignored: e.ad_inject_ignored(),
                        opened_at: e.opened_wall.unix_millis(),
                        bytes: e.shared.bytes.load(std::sync::atomic::Ordering::Relaxed),
                        dvr: call.is_some_and(|c| c.dvr),
                        referer: call.and_then(|c| c.referer.clone()),
                        user_agent: call.and_then(|c| c.user_agent.clone()),
                        query_string: call.and_then(|_| e.shared.qs().map(str::to_string)),
                    },
                )
            })
            .collect();
        list.sort_by_key(|(opened_at, _)| *opened_at);
        list.into_iter().map(|(_, info)| info).collect()
    }

    /// Closes an open session by id (API-02). Its record is dropped, so the client's next
    /// request is judged afresh by the backend.
    pub fn close_session(&mut self, now: Now, id: Uuid) -> bool {
        let reg = &mut self.registry;
        let key = reg
            .iter()
            .find(|e| e.shared.session_id() == id && e.is_open())
            .map(Entry::key);
        match key.and_then(|k| reg.remove(&k)) {
            Some(e) => {
                tracing::info!(session_id = %id, "session closed through the API");
                Self::closing(&mut self.closed, self.record_closes, &e, CloseReason::Api, now);
                e.shared.ended.cancel();
                true
            }
            None => false,
        }
    }

    /// See [`super::AuthCore::stream_reconfigured`].
    pub fn stream_reconfigured(
        &mut self,
        now: Now,
        stream: &str,
        on_play: Option<&AuthSpec>,
        on_publish: Option<&AuthSpec>,
    ) -> usize {
        let needs_backend = |spec: Option<&AuthSpec>| spec.is_some_and(|s| !matches!(s.target, AuthTarget::AllowAll));
        let kinds = [
            (CallKind::Play, needs_backend(on_play)),
            (CallKind::Publish, needs_backend(on_publish)),
        ];
        let (closed_list, record) = (&mut self.closed, self.record_closes);
        let reg = &mut self.registry;
        let mut closed = 0;
        for slot in 0..reg.slot_count() {
            let Some(e) = reg.at(slot) else { continue };
            let backendless = e.call.is_none() && !e.admin && e.state == State::Granted;
            if &*e.name != stream || !backendless || !kinds.iter().any(|&(k, on)| on && k == e.shared.kind) {
                continue;
            }
            if e.is_open() {
                tracing::info!(session_id = %e.shared.session_id(), stream, "the stream now has a backend; session admitted without one closed");
                Self::closing(closed_list, record, e, CloseReason::Reconfigured, now);
                closed += 1;
            }
            e.shared.ended.cancel();
            reg.remove_slot(slot);
        }
        closed
    }

    /// Marks every open session of `stream` as due for a re-check now (REQ-07): persistent ones
    /// are asked by the next tick, HTTP ones by their next request. Returns how many.
    pub fn reauth_stream(&mut self, now: Now, stream: &str) -> usize {
        let reg = &mut self.registry;
        let mut count = 0;
        for slot in 0..reg.slot_count() {
            let Some(mut e) = reg.slot_mut(slot) else { continue };
            if &*e.name == stream && e.is_open() && e.call.is_some() {
                e.expires = now.tick;
                count += 1;
            }
        }
        count
    }

    /// One whole tick: [`on_tick_start`](Self::on_tick_start) and every chunk.
    pub fn on_tick(&mut self, now: Now) -> Vec<Call> {
        let mut calls = Vec::new();
        self.on_tick_start(now);
        let mut from = 0;
        while let Some(next) = self.on_tick_chunk(now, from, &mut calls) {
            from = next;
        }
        calls
    }

    /// The part of a tick that looks at few records: soft-limitation kicks whose grace ended,
    /// shared templates no record holds any more.
    pub fn on_tick_start(&mut self, now: Now) {
        #[cfg(debug_assertions)]
        self.registry.audit();
        run_pending_kicks(&mut self.registry, &mut self.closed, self.record_closes, now);
        self.registry.collect_templates();
    }

    /// The tick of up to [`TICK_CHUNK`] records from slot `from`: start due background
    /// re-checks of connected sessions (TIME-05; added to `calls`), close idle ones
    /// (SESS-07), end admin sessions whose token ended (ADM-04), forget expired records.
    /// Returns where the next chunk starts, `None` once the pass is done. Records are
    /// independent here: a request between chunks is one that came just before or after.
    pub fn on_tick_chunk(&mut self, now: Now, from: u32, calls: &mut Vec<Call>) -> Option<u32> {
        let end = from.saturating_add(TICK_CHUNK).min(self.registry.slot_count());
        for slot in from..end {
            self.tick_slot(slot, now, calls);
        }
        (end < self.registry.slot_count()).then_some(end)
    }

    fn tick_slot(&mut self, slot: u32, now: Now, calls: &mut Vec<Call>) {
        let t = now.tick;
        let idle = self.http_session_idle;
        let (closed, record) = (&mut self.closed, self.record_closes);
        let reg = &mut self.registry;
        let Some(mut e) = reg.slot_mut(slot) else { return };
        if e.inflight().is_some() {
            return;
        }
        if e.admin && e.state == State::Granted && t >= e.expires {
            // ADM-04: the admin token ended; so does its session, persistent connections
            // included, and the record goes so that nothing resumes it.
            if e.is_open() {
                tracing::info!(session_id = %e.shared.session_id(), stream = %&*e.name, "admin view token expired; session closed");
                Self::closing(closed, record, &e, CloseReason::Expired, now);
            }
            e.shared.ended.cancel();
            drop(e);
            reg.remove_slot(slot);
            return;
        }
        let forget = match e.state {
            State::Refusing => t >= e.expires,
            State::AwaitingFirstAnswer => false,
            State::Granted => e.linger_until().is_some_and(|l| t >= l),
        };
        if forget {
            drop(e);
            reg.remove_slot(slot);
            return;
        }
        // A session with a live connection (any protocol: an HLS identity joined by an MPEG-TS
        // response) is persistent while it lasts: it does not idle, and it is re-checked in
        // the background. Without one, any session idles (a persistent protocol's session has
        // no connection left once its last one ended). Tested first, this needs no look at the
        // shared state, so a pass over a million records reads the slab alone.
        let connected = e.connections > 0;
        if e.is_open() && !connected && t.duration_since(e.last_seen()) >= idle {
            tracing::info!(session_id = %e.shared.session_id(), "idle; session closed");
            Self::closing(closed, record, &e, CloseReason::Idle, now);
            e.close(t);
            return;
        }
        let due = e.is_open() && connected && t >= e.expires && e.call.is_some();
        if !due {
            return;
        }
        let (key, name) = (e.key(), e.name.clone());
        drop(e);
        let (stream_clients, total_clients) = reg.counts(&name, &key);
        self.next_call += 1;
        let id = CallId(NonZeroU64::MIN.saturating_add(self.next_call - 1));
        let Some(mut e) = self.registry.slot_mut(slot) else {
            return;
        };
        let request = build_request(&e, key.0, RequestType::UpdateSession, stream_clients, total_clients, t);
        let url = e.call.as_ref().map(|c| c.url.clone()).unwrap_or_default();
        e.set_inflight(Some(id));
        e.request_number = request.request_number;
        calls.push(Call {
            ticket: Ticket {
                key,
                id,
                request_type: RequestType::UpdateSession,
            },
            url,
            request,
        });
    }
}

fn handle_key(handle: &SessionHandle) -> Key {
    (handle.shared.kind, handle.shared.identity)
}

fn kind_str(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Play => "play",
        CallKind::Publish => "publish",
    }
}

fn build_request(
    e: &Entry,
    kind: CallKind,
    request_type: RequestType,
    stream_clients: u64,
    total_clients: u64,
    now: Tick,
) -> BackendRequest {
    let call = e.call.as_deref();
    let update = request_type == RequestType::UpdateSession;
    BackendRequest {
        kind,
        name: e.name.to_string(),
        proto: e.shared.proto,
        ip: e.ip,
        request_type,
        // AMB-12: 1 on new_session, +1 on every later call.
        request_number: e.request_number + 1,
        session_id: e.shared.session_id(),
        stream_clients,
        total_clients,
        token: Some(e.shared.token().to_string()),
        duration: update.then(|| now.duration_since(e.opened_at).as_secs()),
        bytes: update.then(|| e.shared.bytes.load(std::sync::atomic::Ordering::Relaxed)),
        qs: call.and_then(|_| e.shared.qs().map(str::to_string)),
        dvr: call.is_some_and(|c| c.dvr),
        user_agent: call.and_then(|c| c.user_agent.clone()),
        referer: call.and_then(|c| c.referer.clone()),
        host: call.and_then(|c| c.host.clone()),
        extra: call.map(|c| c.extra.clone()).unwrap_or_default(),
        sign_key: call.and_then(|c| c.sign_key.clone()),
    }
}

/// The cap for a user: X-Unique = 1 (UNIQ-02); else the header; else the stream's option
/// (AMB-15).
fn effective_limit(grant: &Grant, stream_cap: Option<u32>) -> Option<u32> {
    if grant.unique {
        Some(1)
    } else {
        grant.max_sessions.or(stream_cap)
    }
}

/// A per-user limit to enforce after an allow.
struct Kick<'a> {
    user: &'a str,
    max: u32,
    /// Ban of a closed session: the auth duration of the answer that caused the kick (BAN-02).
    ban: Duration,
    unique: bool,
    /// `soft_limitation`: close after this grace instead of at once (LIM-05).
    soft: Option<Duration>,
}

/// Closes the oldest open sessions of the user beyond the limit (AMB-1) and bans them; with
/// soft limitation they are only flagged and closed by a tick when the grace ends and the
/// user is still over the limit.
fn enforce_limit(
    reg: &mut Registry,
    closed: &mut Vec<ClosedSession>,
    record: bool,
    admitted: &Key,
    kick: &Kick<'_>,
    now: Now,
) {
    let t = now.tick;
    // Candidates are the user's other granted records: open ones, and closed ones still
    // lingering (they could come back without a call and exceed the limit). Lingering ones go
    // first, then open ones oldest first (AMB-1).
    let mut others: Vec<(bool, Tick, Key, u32)> = reg
        .user_slots(admitted.0, kick.user)
        .iter()
        .filter_map(|&slot| reg.at(slot).map(|e| (slot, e)))
        .filter(|(_, e)| e.key() != *admitted && e.state == State::Granted && e.linger_until().is_none_or(|l| t < l))
        .map(|(slot, e)| (e.is_open(), e.opened_at, e.key(), slot))
        .collect();
    let allowed_others = (kick.max as usize).saturating_sub(1);
    if others.len() <= allowed_others {
        return;
    }
    others.sort();
    let excess = others.len() - allowed_others;
    for (_, _, _, slot) in others.into_iter().take(excess) {
        let Some(mut e) = reg.slot_mut(slot) else { continue };
        if let Some(grace) = kick.soft
            && e.is_open()
        {
            if e.pending_kick().is_none() {
                tracing::info!(
                    session_id = %e.shared.session_id(),
                    user_id = kick.user,
                    grace_secs = grace.as_secs(),
                    "over the session limit; will be closed after the soft-limitation grace"
                );
                e.set_pending_kick(Some(PendingKick {
                    at: t + grace,
                    limit: kick.max,
                    ban: kick.ban,
                }));
            }
            continue;
        }
        let reason = if kick.unique {
            CloseReason::Unique
        } else {
            CloseReason::Kicked
        };
        Machine::closing(closed, record, &e, reason, now);
        let text = if kick.unique {
            "duplicated user id (X-Unique)"
        } else {
            "exceeded session limit"
        };
        ban_kicked(&mut e, kick.user, kick.ban, text, t);
        drop(e);
        reg.keep_decision_only(slot);
    }
}

fn ban_kicked(e: &mut Entry, user: &str, ban: Duration, reason: &str, now: Tick) {
    tracing::warn!(
        session_id = %e.shared.session_id(),
        user_id = user,
        token = %redact(e.shared.token()),
        stream = %&*e.name,
        ban_secs = ban.as_secs(),
        "{reason}; session closed and banned"
    );
    transition(e, now, Event::Refused { ban });
}

/// Carries out soft-limitation kicks whose grace has ended, if the user is still over its
/// limit then. Due kicks are taken in key order.
fn run_pending_kicks(reg: &mut Registry, closed: &mut Vec<ClosedSession>, record: bool, now: Now) {
    let t = now.tick;
    let mut due: Vec<(Key, u32, PendingKick)> = reg
        .kick_slots()
        .into_iter()
        .filter_map(|slot| {
            let e = reg.at(slot)?;
            e.pending_kick().filter(|p| p.at <= t).map(|p| (e.key(), slot, *p))
        })
        .collect();
    due.sort_by_key(|(key, _, _)| *key);
    for (key, slot, pending) in due {
        let Some(user) = reg.at(slot).and_then(|e| e.user_id().map(str::to_string)) else {
            continue;
        };
        let open = reg
            .user_slots(key.0, &user)
            .iter()
            .filter(|&&s| reg.at(s).is_some_and(Entry::is_open))
            .count();
        let Some(mut e) = reg.slot_mut(slot) else { continue };
        if e.is_open() && open > pending.limit as usize {
            Machine::closing(closed, record, &e, CloseReason::Kicked, now);
            ban_kicked(
                &mut e,
                &user,
                pending.ban,
                "exceeded session limit (after soft-limitation grace)",
                t,
            );
            drop(e);
            reg.keep_decision_only(slot);
        } else {
            e.set_pending_kick(None);
        }
    }
}

/// A ban keeps what its decision needs and lets go of the request's values (BAN-01).
fn keep_ban_only(reg: &mut Registry, key: &Key) {
    if let Some(slot) = reg.slot_of(key) {
        reg.keep_decision_only(slot);
    }
}
