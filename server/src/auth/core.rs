//! The session registry and the decision machine.
//!
//! Per identity the registry holds one entry whose state moves like this:
//!
//! ```text
//!            new_session call                 recheck allows / no decision
//!   (none) ─────────────────► Pending ──allow──► Allowed ◄──────────────┐
//!                                │               │  │ expires          │
//!                                │ deny          │  └──► update_session ┘
//!                                ▼               │ deny / kick / X-Unique
//!                              Banned ◄──────────┘
//!   no decision on a new session: the entry is dropped (T11: not opened)
//! ```
//!
//! An Allowed entry is *open* until its connection ends (persistent protocols) or it sees no
//! request for `http_session_idle` (HTTP protocols); a closed entry lingers so that the same
//! identity comes back without a backend call while its decision is fresh (SESS-08, AMB-13).
//! Banned entries refuse locally until the ban ends (BAN-01); they keep the identity's digest,
//! not the request's values. Entries admitted without a backend (no `on_play`, `on_play true`,
//! an admin token) are never resumed by a request a backend decides; an admin token's entry
//! ends, connections included, when the token does (ADM-04). The registry lock is never held
//! across an await: backend calls run in their own task and publish their outcome on a watch
//! channel that every concurrent request of that identity waits on (single flight).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::admin::AdminTokens;
use super::backend::{Answer, Backend, BackendRequest, CallKind, Grant, MAX_AUTH_DURATION, RequestType, SignKey};
use super::domain::referer_allowed;
use super::geo_gate::{GeoGate, GeoGates};
use super::identity::{Identity, RequestFacts};
use super::proto::Proto;
use super::registry::{CallTemplate, Clock, Entry, Key, Outcome, PendingKick, Registry, State, Tick};
use super::session::{SessionHandle, SessionShared};
use crate::config::{AuthSpec, AuthTarget, Protocols, SessionKeys};

/// How often the sweeper looks for due rechecks, idle sessions and expired records.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Records the sweeper handles per hold of the registry lock.
const SWEEP_CHUNK: u32 = 4096;

/// A background re-check the sweeper starts once it has let go of the lock.
type SweepCall = (Key, String, BackendRequest, watch::Sender<Outcome>);

/// The stream side of a `config` override (CONF-01..03): the core hands the object over and
/// learns which protocols the stream serves afterwards.
pub trait StreamControl: Send + Sync + 'static {
    fn apply_override(&self, stream: &str, config: &Value) -> Result<Protocols, String>;
}

/// Server-wide settings the core consults on every request.
#[derive(Debug)]
pub struct AuthSettings {
    pub no_auto_token: AtomicBool,
    pub http_session_idle: Duration,
    /// Grace before an excess session is closed when the stream has `soft_limitation`
    /// (LIM-05, AMB-3).
    pub soft_limitation_delay: Duration,
}

impl AuthSettings {
    /// Settings with the documented defaults for everything not given.
    pub fn new(no_auto_token: bool, http_session_idle: Duration) -> AuthSettings {
        AuthSettings {
            no_auto_token: AtomicBool::new(no_auto_token),
            http_session_idle,
            soft_limitation_delay: DEFAULT_SOFT_LIMITATION_DELAY,
        }
    }
}

/// Default of [`AuthSettings::soft_limitation_delay`] (AMB-3).
pub const DEFAULT_SOFT_LIMITATION_DELAY: Duration = Duration::from_secs(30);

/// Longest token a request may carry, in bytes. A longer one is refused (HTTP 414) before any
/// record is made or backend asked: signed tokens and JWTs of real players are well under it.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest stream name a request may carry, in bytes (VOD `LOCATION/FILE` included); refused
/// like a long token.
pub const MAX_NAME_LEN: usize = 1024;

/// Refuses a request whose token or stream name is over its limit ([`MAX_TOKEN_LEN`],
/// [`MAX_NAME_LEN`]), with a log line that names what and where (and no token).
pub fn refuse_oversized(req: &PlayRequest) -> Option<DenyReason> {
    let token_len = req.token.as_deref().map_or(0, str::len);
    let reason = if token_len > MAX_TOKEN_LEN {
        DenyReason::TokenTooLong
    } else if req.name.len() > MAX_NAME_LEN {
        DenyReason::NameTooLong
    } else {
        return None;
    };
    tracing::info!(
        stream = %crate::redact::Name(&req.name),
        name_len = req.name.len(),
        token_len,
        ip = %req.ip,
        proto = %req.proto,
        max_name = MAX_NAME_LEN,
        max_token = MAX_TOKEN_LEN,
        "refused: {}",
        match reason {
            DenyReason::TokenTooLong => "token longer than the limit",
            _ => "stream name longer than the limit",
        }
    );
    Some(reason)
}

/// One client request asking to play (or publish).
#[derive(Debug, Clone)]
pub struct PlayRequest {
    pub kind: CallKind,
    pub name: String,
    pub proto: Proto,
    pub ip: IpAddr,
    /// The token from the URL, if any (TOK-01).
    pub token: Option<String>,
    /// The client's raw query string (`qs`).
    pub qs: Option<String>,
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names (for `header.*` session keys).
    pub headers: Vec<(String, String)>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub host: Option<String>,
    pub dvr: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The backend said no (now or in a cached ban).
    Backend,
    /// A cached deny (BAN-01).
    Banned,
    /// Kicked by a per-user limit or X-Unique and banned (BAN-02).
    Kicked,
    /// No token and `no_auto_token` (TOK-03).
    NoToken,
    /// The Referer is not one of the stream's domains (DOM-01).
    DomainLock,
    /// The backend gave no decision for a session not yet open (T11).
    NoDecision,
    /// The stream does not serve this protocol (CONF-03).
    ProtocolOff,
    /// The session was closed while it was being authorized.
    Gone,
    /// A publisher without the stream's `password` (PUB-04).
    BadPassword,
    /// The token is longer than [`MAX_TOKEN_LEN`] (refused before anything is kept).
    TokenTooLong,
    /// The stream name is longer than [`MAX_NAME_LEN`].
    NameTooLong,
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Allow(SessionHandle),
    Deny { status: u16, reason: DenyReason },
    Redirect { location: String },
}

impl Verdict {
    fn deny(reason: DenyReason) -> Verdict {
        Verdict::Deny { status: 403, reason }
    }
}

/// A session as the management API lists it (API-01 subset).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionInfo {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub ip: String,
    pub proto: &'static str,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// Unix milliseconds.
    pub opened_at: u64,
    pub bytes: u64,
    pub dvr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
}

/// Why a session closed (history, API-03 `play_closed` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// No request for `http_session_idle` (HTTP protocols).
    Idle,
    /// The last connection ended (persistent protocols).
    Disconnected,
    /// A re-check denied (or redirected) it.
    Denied,
    /// Closed by a per-user session limit.
    Kicked,
    /// Closed by X-Unique.
    Unique,
    /// Its protocol was switched off by a config override.
    ProtocolOff,
    /// Closed through the management API.
    Api,
    /// Its admin view token expired (ADM-04).
    Expired,
    /// The stream now has a backend through the management API, and the session was admitted
    /// without one.
    Reconfigured,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Disconnected => "disconnected",
            CloseReason::Denied => "denied",
            CloseReason::Kicked => "kicked",
            CloseReason::Unique => "unique",
            CloseReason::ProtocolOff => "protocol_off",
            CloseReason::Api => "api",
            CloseReason::Expired => "expired",
            CloseReason::Reconfigured => "reconfigured",
        }
    }
}

/// A session that just closed, for the session history. A session that reopens (a client
/// returning while its record lingers) and closes again yields one record per close.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedSession {
    pub session_id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub ip: String,
    pub proto: &'static str,
    pub token: String,
    pub user_id: Option<String>,
    pub opened_at: SystemTime,
    pub closed_at: SystemTime,
    pub bytes: u64,
    pub reason: CloseReason,
    /// The session played the archive (DVR-01/02).
    pub dvr: bool,
}

/// Where closed-session records go; sending never blocks the registry.
#[derive(Default)]
struct Events(OnceLock<tokio::sync::mpsc::UnboundedSender<ClosedSession>>);

impl Events {
    /// Records `e` as closed for `reason` if it is open now (call before changing it).
    fn closing(&self, e: &Entry, reason: CloseReason) {
        if !e.is_open() {
            return;
        }
        let Some(tx) = self.0.get() else { return };
        let _ = tx.send(ClosedSession {
            session_id: e.shared.session_id(),
            kind: match e.shared.kind {
                CallKind::Play => "play",
                CallKind::Publish => "publish",
            },
            name: e.name.to_string(),
            ip: e.ip.to_string(),
            proto: e.shared.proto.as_str(),
            token: e.shared.token().to_string(),
            user_id: e.user_id().map(str::to_string),
            opened_at: e.opened_wall.system_time(),
            closed_at: SystemTime::now(),
            bytes: e.shared.bytes.load(Ordering::Relaxed),
            reason,
            dvr: e.call.as_ref().is_some_and(|c| c.dvr),
        });
    }
}

struct Inner {
    registry: Mutex<Registry>,
    clock: Clock,
    backend: Arc<dyn Backend>,
    admin: AdminTokens,
    settings: AuthSettings,
    streams: OnceLock<Arc<dyn StreamControl>>,
    sessions_total: AtomicU64,
    events: Events,
    geo: GeoGates,
}

/// The auth core. Clone it freely; clones share one registry.
#[derive(Clone)]
pub struct AuthCore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCore").finish_non_exhaustive()
    }
}

enum Step {
    Done(Verdict),
    Wait(watch::Receiver<Outcome>),
    Call(Box<PendingCall>),
}

/// A backend call the caller must start.
struct PendingCall {
    url: String,
    request: BackendRequest,
    tx: watch::Sender<Outcome>,
    rx: watch::Receiver<Outcome>,
}

impl AuthCore {
    pub fn new(backend: Arc<dyn Backend>, admin: AdminTokens, settings: AuthSettings) -> AuthCore {
        AuthCore {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::default()),
                clock: Clock::start(),
                backend,
                admin,
                settings,
                streams: OnceLock::new(),
                sessions_total: AtomicU64::new(0),
                events: Events::default(),
                geo: GeoGates::default(),
            }),
        }
    }

    /// Closed-session records from now on (for the session history). Only the first call
    /// gets a receiver.
    pub fn closed_sessions(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ClosedSession>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.inner.events.0.set(tx).ok().map(|_| rx)
    }

    /// Connects the stream side for `config` overrides. Only the first call has an effect.
    pub fn set_stream_control(&self, control: Arc<dyn StreamControl>) {
        let _ = self.inner.streams.set(control);
    }

    /// Gives the country gates their database (`geoip_db`). Only the first call has an effect.
    pub fn set_geoip(&self, db: Arc<super::geoip::GeoIp>) {
        self.inner.geo.set(db);
    }

    pub fn admin_tokens(&self) -> &AdminTokens {
        &self.inner.admin
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while the lock was held cannot leave an entry half-written in a way that
        // admits anyone (every write is a whole-field store, and the books are settled when a
        // changed entry is let go, unwinding included), so keep serving.
        self.inner.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Tick {
        self.inner.clock.now()
    }

    /// Decides a play (or publish) request. `spec` is the stream's `on_play`/`on_publish`.
    pub async fn authorize(&self, spec: Option<&AuthSpec>, mut req: PlayRequest) -> Verdict {
        if let Some(reason) = refuse_oversized(&req) {
            return Verdict::Deny { status: 414, reason };
        }
        let token = match req.token.take().filter(|t| !t.is_empty()) {
            Some(t) => t,
            None if self.inner.settings.no_auto_token.load(Ordering::Relaxed) => {
                tracing::info!(stream = %req.name, ip = %req.ip, "refused: no token and no_auto_token");
                return Verdict::deny(DenyReason::NoToken);
            }
            None => Uuid::new_v4().simple().to_string(),
        };
        let spec = match spec {
            None => return self.admit_without_backend(&SessionKeys::default(), req, token, None),
            Some(spec) => spec,
        };
        if matches!(spec.target, AuthTarget::AllowAll) {
            return self.admit_without_backend(&spec.session_keys, req, token, None);
        }
        // An admin token matters only where a backend would decide; the session it admits
        // ends with the token (ADM-04).
        if token.starts_with("ADM")
            && let Some(until) = self.inner.admin.valid_until(&token, SystemTime::now())
        {
            tracing::info!(stream = %req.name, ip = %req.ip, "admitted with an admin view token");
            return self.admit_without_backend(&SessionKeys::default(), req, token, Some(until));
        }
        if !referer_allowed(&spec.domains, spec.require_referer, req.referer.as_deref()) {
            tracing::info!(stream = %req.name, ip = %req.ip, referer = %crate::redact::OptUrl(req.referer.as_deref()), "refused by the domain lock");
            return Verdict::deny(DenyReason::DomainLock);
        }
        match self.inner.geo.check(spec, &req.name, req.ip) {
            GeoGate::Admit { .. } => return self.admit_without_backend(&spec.session_keys, req, token, None),
            GeoGate::Refuse { .. } => return Verdict::deny(DenyReason::Banned),
            GeoGate::Ask => {}
        }
        let identity = identity_of(&spec.session_keys, &req, &token);
        let key = (req.kind, identity);
        loop {
            let step = self.step(&key, &req, &token, spec);
            let mut rx = match step {
                Step::Done(verdict) => return verdict,
                Step::Wait(rx) => rx,
                Step::Call(call) => {
                    let PendingCall { url, request, tx, rx } = *call;
                    let core = self.clone();
                    tokio::spawn(async move { core.resolve(key, url, request, tx).await });
                    rx
                }
            };
            loop {
                if let Some(verdict) = rx.borrow_and_update().clone() {
                    return verdict;
                }
                if rx.changed().await.is_err() {
                    // The resolver ended without an outcome; look at the registry again.
                    break;
                }
            }
        }
    }

    /// One look at the registry under the lock: answer now, wait for a call in flight, or
    /// start a call.
    fn step(&self, key: &Key, req: &PlayRequest, token: &str, spec: &AuthSpec) -> Step {
        let now = self.now();
        let mut reg = self.registry();
        let fresh_start = match reg.get_mut(key) {
            None => true,
            Some(mut e) => {
                if let Some(rx) = e.inflight() {
                    return Step::Wait(rx.clone());
                }
                match e.state {
                    State::Banned if now < e.expires => {
                        return Step::Done(Verdict::deny(DenyReason::Banned));
                    }
                    State::Banned | State::Pending => true,
                    State::Allowed => {
                        // A session the server ended (protocol switched off) is over; its
                        // client starts afresh. So is one admitted without a backend (an admin
                        // token no longer valid, a stream that had no backend then): a request
                        // that needs a backend is never resumed through it.
                        if e.linger_until().is_some_and(|t| now >= t)
                            || e.shared.ended.is_cancelled()
                            || e.call.is_none()
                        {
                            true
                        } else if now < e.expires {
                            e.touch(now);
                            return Step::Done(Verdict::Allow(SessionHandle {
                                shared: e.shared.clone(),
                            }));
                        } else {
                            false
                        }
                    }
                }
            }
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
                State::Pending,
                Some(template),
                now,
                (now, Duration::ZERO),
            );
            if let Some(old) = reg.insert(entry) {
                old.shared.ended.cancel();
            }
        }
        // Start a call: new_session for a Pending entry, update_session for a stale one.
        let (stream_clients, total_clients) = reg.counts(&req.name, key);
        let Some(mut e) = reg.get_mut(key) else {
            return Step::Done(Verdict::deny(DenyReason::Gone));
        };
        // A client coming back to a closed (lingering) session reopens it; a deny closes it again.
        e.touch(now);
        let request_type = if e.state == State::Pending {
            RequestType::NewSession
        } else {
            RequestType::UpdateSession
        };
        let request = build_request(&e, key.0, request_type, stream_clients, total_clients, now);
        let url = e.call.as_ref().map(|c| c.url.clone()).unwrap_or_default();
        let (tx, rx) = watch::channel(None);
        e.set_inflight(Some(rx.clone()));
        e.request_number = request.request_number;
        Step::Call(Box::new(PendingCall { url, request, tx, rx }))
    }

    /// Performs one backend call and applies its answer. Runs in its own task so that a
    /// client going away mid-call cannot strand the entry.
    async fn resolve(&self, key: Key, url: String, request: BackendRequest, tx: watch::Sender<Outcome>) {
        let request_type = request.request_type;
        let answer = self.inner.backend.call(&url, &request).await;
        tracing::debug!(session_id = %request.session_id, ?request_type, ?answer, "backend answered");
        let (verdict, override_cfg) = self.apply_answer(&key, request_type, answer);
        if let (Some(config), Verdict::Allow(_)) = (override_cfg, &verdict) {
            self.apply_override(&request.name, &config);
        }
        // A protocol switched off by this very answer refuses this request too (CONF-03).
        let verdict = match verdict {
            Verdict::Allow(h) if h.is_ended() => Verdict::deny(DenyReason::ProtocolOff),
            v => v,
        };
        let _ = tx.send(Some(verdict));
    }

    fn apply_answer(&self, key: &Key, request_type: RequestType, answer: Answer) -> (Verdict, Option<Value>) {
        let now = self.now();
        let mut reg = self.registry();
        let Some(mut e) = reg.get_mut(key) else {
            return (Verdict::deny(DenyReason::Gone), None);
        };
        e.set_inflight(None);
        let session_id = e.shared.session_id();
        if request_type == RequestType::UpdateSession && e.state == State::Banned {
            // Kicked while its re-check was in flight: the kick stands whatever the answer.
            tracing::debug!(%session_id, "re-check answer for a session kicked meanwhile; ignored");
            return (Verdict::deny(DenyReason::Banned), None);
        }
        match answer {
            Answer::Allow(grant) => {
                let was_pending = e.state == State::Pending;
                e.state = State::Allowed;
                e.expires = now + grant.duration;
                e.set_duration(grant.duration);
                if grant.user_id.is_some() || was_pending {
                    e.set_user(grant.user_id.as_deref());
                }
                // Every answer states the ranges anew; an absent field means the whole archive
                // (ADV-02, RESP-07).
                e.set_dvr_ranges(grant.allowed_dvr_ranges.clone());
                let stream_cap = e.call.as_ref().and_then(|c| c.stream_max_sessions);
                let limit = effective_limit(&grant, stream_cap);
                e.set_max_sessions(limit);
                if was_pending {
                    self.inner.sessions_total.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%session_id, stream = %&*e.name, ip = %e.ip, proto = %e.shared.proto, user_id = ?e.user_id(), "session opened");
                }
                let handle = SessionHandle {
                    shared: e.shared.clone(),
                };
                // X-Unique is never soft: it names exactly one session to survive.
                let soft = (!grant.unique && e.call.as_ref().is_some_and(|c| c.soft_limitation))
                    .then_some(self.inner.settings.soft_limitation_delay);
                let user = e.user_id().map(str::to_string);
                drop(e);
                if let (Some(user), Some(max)) = (user, limit) {
                    let kick = Kick {
                        user: &user,
                        max,
                        ban: grant.duration,
                        unique: grant.unique,
                        soft,
                    };
                    enforce_limit(&mut reg, &self.inner.events, key, &kick, now);
                }
                (Verdict::Allow(handle), grant.config)
            }
            Answer::Deny { status, duration } => {
                tracing::info!(%session_id, stream = %&*e.name, ip = %e.ip, status, ?request_type, ban_secs = duration.as_secs(), "backend denied; banned");
                self.inner.events.closing(&e, CloseReason::Denied);
                e.state = State::Banned;
                e.expires = now + duration;
                e.close(now);
                e.shared.ended.cancel();
                drop(e);
                keep_ban_only(&mut reg, key);
                (
                    Verdict::Deny {
                        status: 403,
                        reason: DenyReason::Backend,
                    },
                    None,
                )
            }
            Answer::Redirect { location } => {
                if request_type == RequestType::NewSession {
                    drop(e);
                    reg.remove(key);
                    (Verdict::Redirect { location }, None)
                } else {
                    // A redirect cannot move a running session; it ends it like a deny.
                    tracing::info!(%session_id, "backend redirected a running session; closing it");
                    self.inner.events.closing(&e, CloseReason::Denied);
                    e.state = State::Banned;
                    e.expires = now + e.duration();
                    e.close(now);
                    e.shared.ended.cancel();
                    drop(e);
                    keep_ban_only(&mut reg, key);
                    (Verdict::deny(DenyReason::Backend), None)
                }
            }
            Answer::NoDecision { reason } => {
                if request_type == RequestType::NewSession {
                    tracing::warn!(%session_id, stream = %&*e.name, %reason, "backend gave no decision; session not opened");
                    drop(e);
                    reg.remove(key);
                    (Verdict::deny(DenyReason::NoDecision), None)
                } else {
                    // T11/TIME-04: keep the previous state, ask again at the next check.
                    tracing::warn!(%session_id, stream = %&*e.name, %reason, state = ?e.state, "backend gave no decision; previous decision kept");
                    e.expires = now + e.duration().max(Duration::from_secs(1));
                    match e.state {
                        State::Allowed => (
                            Verdict::Allow(SessionHandle {
                                shared: e.shared.clone(),
                            }),
                            None,
                        ),
                        _ => (Verdict::deny(DenyReason::Banned), None),
                    }
                }
            }
        }
    }

    fn apply_override(&self, stream: &str, config: &Value) {
        let Some(control) = self.inner.streams.get() else {
            tracing::warn!(stream, "config override ignored: no stream control attached");
            return;
        };
        match control.apply_override(stream, config) {
            Ok(protocols) => self.end_disabled(stream, &protocols),
            Err(e) => tracing::warn!(stream, error = %e, "config override rejected; the session decision stands"),
        }
    }

    /// Ends every open session of `stream` whose protocol is switched off (CONF-03).
    pub fn end_disabled(&self, stream: &str, protocols: &Protocols) {
        let now = self.now();
        let mut reg = self.registry();
        for slot in 0..reg.slot_count() {
            let Some(mut e) = reg.slot_mut(slot) else { continue };
            let off = e.shared.proto.switch_name().and_then(|n| protocols.get(n)) == Some(false);
            if &*e.name == stream && off && e.state == State::Allowed {
                tracing::info!(session_id = %e.shared.session_id(), stream, proto = %e.shared.proto, "protocol switched off; session closed");
                self.inner.events.closing(&e, CloseReason::ProtocolOff);
                e.close(now);
                // The record is forgotten so that a later request is judged afresh.
                e.expires = now;
                e.shared.ended.cancel();
            }
        }
    }

    /// Admits without a backend call: no `on_play`, `on_play true`, or an admin token valid
    /// until `admin_until` (the session then ends at that moment, ADM-04).
    fn admit_without_backend(
        &self,
        keys: &SessionKeys,
        req: PlayRequest,
        token: String,
        admin_until: Option<SystemTime>,
    ) -> Verdict {
        let identity = identity_of(keys, &req, &token);
        let key = (req.kind, identity);
        let now = self.now();
        let expires = match admin_until {
            // The token's end on the core's clock, read once here: the sweeper ends the
            // session then, whatever the wall clock does meanwhile.
            Some(until) => now + until.duration_since(SystemTime::now()).unwrap_or_default(),
            None => now + MAX_AUTH_DURATION,
        };
        let mut reg = self.registry();
        // A record is taken up again unless the server ended it (API, override) or it is a
        // ban, which kept nothing of the request (`keep_ban_only`): then the client starts
        // afresh with a new one.
        let reuse = reg
            .get(&key)
            .is_some_and(|e| e.state != State::Banned && !e.shared.is_ended_for_good());
        if !reuse {
            let shared = Arc::new(SessionShared::new(identity, req.kind, req.proto, &token, None));
            let name = reg.stream_name(&req.name);
            let expiry = (expires, MAX_AUTH_DURATION);
            reg.insert(Entry::new(shared, name, req.ip, State::Allowed, None, now, expiry));
        }
        let Some(mut entry) = reg.get_mut(&key) else {
            return Verdict::deny(DenyReason::Gone);
        };
        entry.state = State::Allowed;
        entry.call = None;
        entry.admin = admin_until.is_some();
        entry.expires = expires;
        entry.touch(now);
        Verdict::Allow(SessionHandle {
            shared: entry.shared.clone(),
        })
    }

    /// Binds a persistent connection to its session: the session stays open while at least
    /// one guard lives and closes when the last one drops (SESS-07).
    pub fn attach(&self, handle: &SessionHandle) -> ConnectionGuard {
        let key = (handle.shared.kind, handle.shared.identity);
        if let Some(mut e) = self.registry().get_mut(&key)
            && Arc::ptr_eq(&e.shared, &handle.shared)
        {
            e.connections += 1;
            e.reopen();
        }
        ConnectionGuard {
            core: self.clone(),
            handle: handle.clone(),
        }
    }

    fn detach(&self, handle: &SessionHandle) {
        let key = (handle.shared.kind, handle.shared.identity);
        let now = self.now();
        let mut reg = self.registry();
        if let Some(mut e) = reg.get_mut(&key)
            && Arc::ptr_eq(&e.shared, &handle.shared)
        {
            e.connections = e.connections.saturating_sub(1);
            e.seen_at(now);
            if e.connections == 0 && e.closed_at().is_none() {
                self.inner.events.closing(&e, CloseReason::Disconnected);
                e.close(now);
                tracing::info!(session_id = %e.shared.session_id(), bytes = handle.bytes(), "connection ended; session closed");
            }
        }
    }

    /// The `allowed_dvr_ranges` of the backend's last answer for this session (ADV-02):
    /// `Some(None)` when the answer had no such field (or no backend decides the stream),
    /// which means the whole archive; `None` when the session is no longer registered.
    pub fn allowed_dvr_ranges(&self, handle: &SessionHandle) -> Option<Option<Value>> {
        let key = (handle.shared.kind, handle.shared.identity);
        let reg = self.registry();
        reg.get(&key)
            .filter(|e| Arc::ptr_eq(&e.shared, &handle.shared))
            .map(|e| e.dvr_ranges().cloned())
    }

    /// Open sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let reg = self.registry();
        let mut list: Vec<(Tick, SessionInfo)> = reg
            .iter()
            .filter(|e| e.is_open())
            .map(|e| {
                let call = e.call.as_ref();
                (
                    e.opened_at,
                    SessionInfo {
                        id: e.shared.session_id(),
                        kind: match e.shared.kind {
                            CallKind::Play => "play",
                            CallKind::Publish => "publish",
                        },
                        name: e.name.to_string(),
                        ip: e.ip.to_string(),
                        proto: e.shared.proto.as_str(),
                        token: e.shared.token().to_string(),
                        user_id: e.user_id().map(str::to_string),
                        max_sessions: e.max_sessions(),
                        opened_at: e.opened_wall.unix_millis(),
                        bytes: e.shared.bytes.load(Ordering::Relaxed),
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
    pub fn close_session(&self, id: Uuid) -> bool {
        let mut reg = self.registry();
        let key = reg
            .iter()
            .find(|e| e.shared.session_id() == id && e.is_open())
            .map(Entry::key);
        match key.and_then(|k| reg.remove(&k)) {
            Some(e) => {
                tracing::info!(session_id = %id, "session closed through the API");
                self.inner.events.closing(&e, CloseReason::Api);
                e.shared.ended.cancel();
                true
            }
            None => false,
        }
    }

    /// A stream was configured anew through the management API: where it now has a backend
    /// (`on_play` for viewers, `on_publish` for publishers, other than `true`), the sessions of
    /// that kind it admitted without one are closed, persistent connections cut, and their
    /// records dropped, so that the client's next request goes to the backend as a new session.
    /// Admin-token sessions keep running until their token ends. Returns how many were closed.
    pub fn stream_reconfigured(
        &self,
        stream: &str,
        on_play: Option<&AuthSpec>,
        on_publish: Option<&AuthSpec>,
    ) -> usize {
        let needs_backend = |spec: Option<&AuthSpec>| spec.is_some_and(|s| !matches!(s.target, AuthTarget::AllowAll));
        let kinds = [
            (CallKind::Play, needs_backend(on_play)),
            (CallKind::Publish, needs_backend(on_publish)),
        ];
        let mut reg = self.registry();
        let mut closed = 0;
        for slot in 0..reg.slot_count() {
            let Some(e) = reg.at(slot) else { continue };
            let backendless = e.call.is_none() && !e.admin && e.state == State::Allowed;
            if &*e.name != stream || !backendless || !kinds.iter().any(|&(k, on)| on && k == e.shared.kind) {
                continue;
            }
            if e.is_open() {
                tracing::info!(session_id = %e.shared.session_id(), stream, "the stream now has a backend; session admitted without one closed");
                self.inner.events.closing(e, CloseReason::Reconfigured);
                closed += 1;
            }
            e.shared.ended.cancel();
            reg.remove_slot(slot);
        }
        closed
    }

    /// Forces a re-check of every open session of `stream` (REQ-07); returns how many.
    pub fn reauth_stream(&self, stream: &str) -> usize {
        let count = expire_stream(&mut self.registry(), stream, self.now());
        tracing::info!(
            stream,
            count,
            "re-check of the stream's sessions forced through the API"
        );
        count
    }

    /// Number of records (open, lingering, pending or banned) — for tests and metrics.
    pub fn record_count(&self) -> usize {
        self.registry().len()
    }

    /// One sweep: start due background rechecks of persistent sessions (TIME-05), close idle
    /// HTTP sessions (SESS-07), forget expired records.
    pub fn sweep(&self) {
        let now = self.now();
        let idle = self.inner.settings.http_session_idle;
        let mut calls = Vec::new();
        let mut reg = self.registry();
        #[cfg(debug_assertions)]
        reg.audit();
        run_pending_kicks(&mut reg, &self.inner.events, now);
        reg.collect_templates();
        // The pass lets go of the lock between chunks of records, so that at a million
        // sessions requests wait for one chunk, not for the whole pass. Records are
        // independent here; a request between chunks is one that came just before or after.
        let mut slot = 0;
        while slot < reg.slot_count() {
            if slot % SWEEP_CHUNK == 0 && slot > 0 {
                drop(reg);
                reg = self.registry();
            }
            self.sweep_slot(&mut reg, slot, now, idle, &mut calls);
            slot += 1;
        }
        drop(reg);
        for (key, url, request, tx) in calls {
            let core = self.clone();
            tokio::spawn(async move { core.resolve(key, url, request, tx).await });
        }
    }

    /// The sweep of one record; a background re-check it starts is added to `calls`.
    fn sweep_slot(&self, reg: &mut Registry, slot: u32, now: Tick, idle: Duration, calls: &mut Vec<SweepCall>) {
        let Some(mut e) = reg.slot_mut(slot) else { return };
        if e.inflight().is_some() {
            return;
        }
        if e.admin && e.state == State::Allowed && now >= e.expires {
            // ADM-04: the admin token ended; so does its session, persistent connections
            // included, and the record goes so that nothing resumes it.
            if e.is_open() {
                tracing::info!(session_id = %e.shared.session_id(), stream = %&*e.name, "admin view token expired; session closed");
                self.inner.events.closing(&e, CloseReason::Expired);
            }
            e.shared.ended.cancel();
            drop(e);
            reg.remove_slot(slot);
            return;
        }
        let forget = match e.state {
            State::Banned => now >= e.expires,
            State::Pending => false,
            State::Allowed => e.linger_until().is_some_and(|t| now >= t),
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
        if e.is_open() && !connected && now.duration_since(e.last_seen()) >= idle {
            tracing::info!(session_id = %e.shared.session_id(), "idle; session closed");
            self.inner.events.closing(&e, CloseReason::Idle);
            e.close(now);
            return;
        }
        let due = e.is_open() && connected && now >= e.expires && e.call.is_some();
        if !due {
            return;
        }
        let (key, name) = (e.key(), e.name.clone());
        drop(e);
        let (stream_clients, total_clients) = reg.counts(&name, &key);
        let Some(mut e) = reg.slot_mut(slot) else { return };
        let request = build_request(
            &e,
            key.0,
            RequestType::UpdateSession,
            stream_clients,
            total_clients,
            now,
        );
        let url = e.call.as_ref().map(|c| c.url.clone()).unwrap_or_default();
        let (tx, rx) = watch::channel(None);
        e.set_inflight(Some(rx));
        e.request_number = request.request_number;
        calls.push((key, url, request, tx));
    }

    /// Runs [`sweep`](Self::sweep) every [`SWEEP_INTERVAL`] until `shutdown` is cancelled.
    pub async fn run_sweeper(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.sweep(),
            }
        }
    }
}

impl SessionShared {
    /// An admin/backendless session that was ended (API, override) gets a new handle when
    /// its client returns.
    fn is_ended_for_good(&self) -> bool {
        self.ended.is_cancelled()
    }
}

/// Keeps a persistent connection's session open; see [`AuthCore::attach`].
pub struct ConnectionGuard {
    core: AuthCore,
    handle: SessionHandle,
}

impl ConnectionGuard {
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.core.detach(&self.handle);
    }
}

fn identity_of(keys: &SessionKeys, req: &PlayRequest, token: &str) -> Identity {
    let live = live_identity_of(keys, req, token);
    if req.dvr { live.for_archive(req.proto) } else { live }
}

fn live_identity_of(keys: &SessionKeys, req: &PlayRequest, token: &str) -> Identity {
    Identity::compute(
        keys,
        &RequestFacts {
            name: &req.name,
            ip: req.ip,
            proto: req.proto,
            token: Some(token),
            headers: &req.headers,
            query: &req.query,
        },
    )
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
        bytes: update.then(|| e.shared.bytes.load(Ordering::Relaxed)),
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
/// soft limitation they are only flagged and closed by the sweeper when the grace ends and
/// the user is still over the limit.
fn enforce_limit(reg: &mut Registry, events: &Events, admitted: &Key, kick: &Kick<'_>, now: Tick) {
    // Candidates are the user's other granted records: open ones, and closed ones still
    // lingering (they could come back without a call and exceed the limit). Lingering ones go
    // first, then open ones oldest first (AMB-1).
    let mut others: Vec<(bool, Tick, Key, u32)> = reg
        .user_slots(admitted.0, kick.user)
        .iter()
        .filter_map(|&slot| reg.at(slot).map(|e| (slot, e)))
        .filter(|(_, e)| e.key() != *admitted && e.state == State::Allowed && e.linger_until().is_none_or(|t| now < t))
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
                    at: now + grace,
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
        events.closing(&e, reason);
        let text = if kick.unique {
            "duplicated user id (X-Unique)"
        } else {
            "exceeded session limit"
        };
        ban_kicked(&mut e, kick.user, kick.ban, text, now);
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
    e.state = State::Banned;
    e.expires = now + ban;
    e.close(now);
    e.set_pending_kick(None);
    e.shared.ended.cancel();
}

/// Carries out soft-limitation kicks whose grace has ended, if the user is still over its
/// limit then. Due kicks are taken in key order.
fn run_pending_kicks(reg: &mut Registry, events: &Events, now: Tick) {
    let mut due: Vec<(Key, u32, PendingKick)> = reg
        .kick_slots()
        .into_iter()
        .filter_map(|slot| {
            let e = reg.at(slot)?;
            e.pending_kick().filter(|p| p.at <= now).map(|p| (e.key(), slot, *p))
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
            events.closing(&e, CloseReason::Kicked);
            ban_kicked(
                &mut e,
                &user,
                pending.ban,
                "exceeded session limit (after soft-limitation grace)",
                now,
            );
            drop(e);
            reg.keep_decision_only(slot);
        } else {
            e.set_pending_kick(None);
        }
    }
}

/// Marks every open session of `stream` as due for a re-check now (REQ-07): persistent ones
/// are asked by the next sweep, HTTP ones by their next request. Returns how many.
fn expire_stream(reg: &mut Registry, stream: &str, now: Tick) -> usize {
    let mut count = 0;
    for slot in 0..reg.slot_count() {
        let Some(mut e) = reg.slot_mut(slot) else { continue };
        if &*e.name == stream && e.is_open() && e.call.is_some() {
            e.expires = now;
            count += 1;
        }
    }
    count
}

/// A ban keeps what its decision needs and lets go of the request's values (BAN-01).
fn keep_ban_only(reg: &mut Registry, key: &Key) {
    if let Some(slot) = reg.slot_of(key) {
        reg.keep_decision_only(slot);
    }
}

/// Tokens are credentials: logs carry only a prefix of a long one ([`crate::redact::token`]).
pub(crate) fn redact(token: &str) -> String {
    crate::redact::token(token)
}
