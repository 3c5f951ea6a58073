//! The auth core's driver and its public types: [`AuthCore`] runs the decision
//! [`Machine`](super::machine::Machine) behind one lock, makes the backend calls it asks for
//! in their own tasks under the one 3 s timer, lets concurrent requests of one identity wait
//! for one call on a watch channel (single flight), reads the clocks, and runs the sweeper
//! that ticks the machine. The lock is never held across an await.
//!
//! Before a request reaches the machine, the driver refuses what needs no registry: an
//! over-long token or name, a missing token under `no_auto_token`, a Referer outside the
//! domain lock; and admits without a backend what needs none (no `on_play`, `on_play true`,
//! an admin view token).

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::admin::AdminTokens;
use super::backend::{BACKEND_TIMEOUT, Backend, BackendRequest, CallKind};
use super::domain::referer_allowed;
use super::geo_gate::{GeoGate, GeoGates};
use super::identity::{Identity, RequestFacts};
use super::machine::{Call, CallId, Claim, Effects, Key, Machine, Now, Step, Tick};
use super::proto::Proto;
use super::session::SessionHandle;
use super::store::{Kick, SessionStore, StoreError};
use crate::config::{AuthSpec, AuthTarget, OnStoreLoss, Protocols, SessionKeys};
use crate::log_throttle::LogThrottle;

/// How often the sweeper ticks the machine: due rechecks, idle sessions, expired records.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// The stream side of a `config` override (CONF-01..03): the core hands the object over and
/// learns which protocols the stream serves afterwards.
pub trait StreamControl: Send + Sync + 'static {
    fn apply_override(&self, stream: &str, config: &Value) -> Result<Protocols, crate::streams::OverrideRefused>;
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
    /// The request's headers (for `header.*` session keys), as the client sent them: a clone
    /// of the HTTP request's map, whose values share the request's bytes.
    pub headers: axum::http::HeaderMap,
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
    /// The GeoIP database places the client in one of `disallowed_countries` (T6).
    CountryGate,
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
    pub(super) fn deny(reason: DenyReason) -> Verdict {
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
    /// The backend's answer carried `ad_inject`, and no ads were inserted (not supported).
    /// Usher's own field (the vendor's session has none); absent when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ad_inject_ignored: bool,
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
    /// An answer of the session carried `ad_inject`, and no ads were inserted (as
    /// [`SessionInfo::ad_inject_ignored`]).
    pub ad_inject_ignored: bool,
}

/// Where closed-session records go; sending never blocks the registry.
struct Events {
    closed: OnceLock<tokio::sync::mpsc::Sender<ClosedSession>>,
    /// Records not queued because the queue was full (the history writer fell behind).
    dropped: AtomicU64,
    /// One "records dropped" line per window, with the count.
    dropped_log: Mutex<LogThrottle>,
}

/// Closed-session records queued for the history writer at most. A stranger who opens and
/// closes sessions faster than the store writes them fills it; further records are dropped,
/// counted and logged, so neither the core's memory nor its latency follows the backlog.
pub const CLOSED_SESSIONS_QUEUE: usize = 65_536;

/// At most one "closed-session records dropped" line in this window.
const CLOSED_DROP_LOG_EVERY: Duration = Duration::from_secs(10);

impl Default for Events {
    fn default() -> Events {
        Events {
            closed: OnceLock::new(),
            dropped: AtomicU64::new(0),
            dropped_log: Mutex::new(LogThrottle::new(CLOSED_DROP_LOG_EVERY)),
        }
    }
}

/// The outcome of a call, published to every request that waits on it.
type Outcome = Option<Verdict>;

/// What the one lock guards: the machine, and the channels of the calls in flight.
struct Locked {
    machine: Machine,
    /// Per call in flight, the channel its verdict is published on (single flight).
    waiters: HashMap<CallId, watch::Receiver<Outcome>>,
}

struct Inner {
    locked: Mutex<Locked>,
    epoch: Instant,
    backend: Arc<dyn Backend>,
    admin: AdminTokens,
    settings: AuthSettings,
    streams: OnceLock<Arc<dyn StreamControl>>,
    events: Events,
    geo: GeoGates,
    /// The shared session store (`session_store`), when the server is one of a cluster.
    store: OnceLock<Arc<SessionStore>>,
}

/// The auth core: drives the decision [`Machine`] (one lock around it, the backend calls in
/// their own tasks under the one [`BACKEND_TIMEOUT`] timer, the channels that let concurrent
/// requests wait for one call, the clock). Clone it freely; clones share one registry.
#[derive(Clone)]
pub struct AuthCore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCore").finish_non_exhaustive()
    }
}

/// The lock on the machine; closed-session records the machine queued while it was held are
/// sent when it is let go.
struct Guard<'a> {
    locked: MutexGuard<'a, Locked>,
    events: &'a Events,
}

impl Deref for Guard<'_> {
    type Target = Locked;

    fn deref(&self) -> &Locked {
        &self.locked
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Locked {
        &mut self.locked
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let Some(tx) = self.events.closed.get() else { return };
        let mut dropped = 0u64;
        for closed in self.locked.machine.drain_closed() {
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = tx.try_send(closed) {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.events.dropped.fetch_add(dropped, Ordering::Relaxed);
            let mut log = self.events.dropped_log.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(unlogged) = log.hits(Instant::now(), dropped) {
                tracing::warn!(
                    dropped = unlogged + 1,
                    queue = tx.max_capacity(),
                    "session history: the writer is behind; closed-session records dropped"
                );
            }
        }
    }
}

impl AuthCore {
    pub fn new(backend: Arc<dyn Backend>, admin: AdminTokens, settings: AuthSettings) -> AuthCore {
        AuthCore {
            inner: Arc::new(Inner {
                locked: Mutex::new(Locked {
                    machine: Machine::new(settings.http_session_idle, settings.soft_limitation_delay),
                    waiters: HashMap::new(),
                }),
                epoch: Instant::now(),
                backend,
                admin,
                settings,
                streams: OnceLock::new(),
                events: Events::default(),
                geo: GeoGates::default(),
                store: OnceLock::new(),
            }),
        }
    }

    /// Closed-session records from now on (for the session history), at most
    /// [`CLOSED_SESSIONS_QUEUE`] waiting. Only the first call gets a receiver.
    pub fn closed_sessions(&self) -> Option<tokio::sync::mpsc::Receiver<ClosedSession>> {
        self.closed_sessions_queued(CLOSED_SESSIONS_QUEUE)
    }

    /// [`closed_sessions`](Self::closed_sessions) with at most `queue` records waiting.
    pub fn closed_sessions_queued(&self, queue: usize) -> Option<tokio::sync::mpsc::Receiver<ClosedSession>> {
        let (tx, rx) = tokio::sync::mpsc::channel(queue.max(1));
        let mut guard = self.lock();
        self.inner.events.closed.set(tx).ok()?;
        guard.machine.record_closes();
        Some(rx)
    }

    /// Connects the stream side for `config` overrides. Only the first call has an effect.
    pub fn set_stream_control(&self, control: Arc<dyn StreamControl>) {
        let _ = self.inner.streams.set(control);
    }

    /// Gives the country gates their database (`geoip_db`). Only the first call has an effect.
    pub fn set_geoip(&self, db: Arc<super::geoip::GeoIp>) {
        self.inner.geo.set(db);
    }

    /// Closed-session records dropped because the history writer's queue was full.
    pub fn closed_sessions_dropped(&self) -> u64 {
        self.inner.events.dropped.load(Ordering::Relaxed)
    }

    /// Shares per-user sessions and bans through `store` (run [`run_store`](Self::run_store)
    /// to connect it). Only the first call has an effect.
    pub fn set_store(&self, store: Arc<SessionStore>) {
        let mut guard = self.lock();
        if self.inner.store.set(store).is_ok() {
            guard.machine.share();
        }
    }

    /// The shared session store, if the server has one.
    pub fn session_store(&self) -> Option<&Arc<SessionStore>> {
        self.inner.store.get()
    }

    pub fn admin_tokens(&self) -> &AdminTokens {
        &self.inner.admin
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    fn lock(&self) -> Guard<'_> {
        // A panic while the lock was held cannot leave a record half-written in a way that
        // admits anyone (every write is a whole-field store, and the books are settled when a
        // changed record is let go, unwinding included), so keep serving.
        Guard {
            locked: self.inner.locked.lock().unwrap_or_else(|e| e.into_inner()),
            events: &self.inner.events,
        }
    }

    /// The present on the Tokio clock (paused in tests) and the wall clock.
    fn now(&self) -> Now {
        let since = Instant::now().saturating_duration_since(self.inner.epoch);
        Now::new(Tick::from_start(since), SystemTime::now())
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
            GeoGate::Refuse { .. } => return Verdict::deny(DenyReason::CountryGate),
            GeoGate::Ask => {}
        }
        let identity = identity_of(&spec.session_keys, &req, &token);
        let key = (req.kind, identity);
        if let Some(store) = self.inner.store.get() {
            let afresh = {
                let now = self.now();
                self.lock().machine.starts_afresh(now, &key)
            };
            // Only a new session asks the store (one round trip); a fresh grant or a known
            // ban is answered from memory.
            if afresh && let Some(verdict) = self.check_store_ban(store, &key, &req).await {
                return verdict;
            }
        }
        loop {
            let mut rx = {
                let now = self.now();
                let mut guard = self.lock();
                match guard.machine.on_request(now, &key, &req, &token, spec) {
                    Step::Done(verdict) => return verdict,
                    Step::Wait(id) => match guard.waiters.get(&id) {
                        Some(rx) => rx.clone(),
                        None => {
                            debug_assert!(false, "a call in flight has its channel");
                            return Verdict::deny(DenyReason::Gone);
                        }
                    },
                    Step::Call(call) => self.start(&mut guard, *call),
                }
            };
            loop {
                if let Some(verdict) = rx.borrow_and_update().clone() {
                    return verdict;
                }
                if rx.changed().await.is_err() {
                    // The call's task ended without an outcome; look at the registry again.
                    break;
                }
            }
        }
    }

    /// Starts `call` in its own task (so that a client going away mid-call cannot strand the
    /// record), under the lock that made it; returns the channel of its verdict.
    fn start(&self, guard: &mut Guard<'_>, call: Call) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        guard.waiters.insert(call.ticket.id, rx.clone());
        let core = self.clone();
        tokio::spawn(async move { core.resolve(call, tx).await });
        rx
    }

    /// Performs one backend call within the budget and feeds its answer to the machine.
    async fn resolve(&self, call: Call, tx: watch::Sender<Outcome>) {
        let Call { ticket, url, request } = call;
        // The one timer of every backend kind (HTTP, Lua, configurator): past it, the call is
        // dropped (cancelled) and the answer is "no decision" (TIME-03).
        let answer = tokio::time::timeout(BACKEND_TIMEOUT, self.inner.backend.call(&url, &request)).await;
        tracing::debug!(session_id = %request.session_id, request_type = ?ticket.request_type, ?answer, "backend answered");
        let effects = {
            let now = self.now();
            let mut guard = self.lock();
            let effects = match answer {
                Ok(answer) => guard.machine.on_answer(now, &ticket, answer),
                Err(_) => guard.machine.on_timeout(now, &ticket),
            };
            guard.waiters.remove(&ticket.id);
            effects
        };
        let Effects {
            verdict,
            config,
            claim,
            ban,
        } = effects;
        let mut verdict = verdict;
        if let Some(store) = self.inner.store.get() {
            let new = ticket.request_type == super::backend::RequestType::NewSession;
            if let Some(claim) = claim
                && !self.share_claim(store, &claim, new).await
            {
                verdict = Verdict::deny(DenyReason::NoDecision);
            }
            if let Some(ban) = ban
                && let Err(e) = store.ban(&ticket.key, ban).await
            {
                tracing::warn!(session_id = %request.session_id, error = %e, "deny not shared through the session store; it holds on this server only");
            }
        }
        if let (Some(config), Verdict::Allow(_)) = (config, &verdict) {
            self.apply_override(&request, &config);
        }
        // A protocol switched off by this very answer refuses this request too (CONF-03).
        let verdict = match verdict {
            Verdict::Allow(h) if h.is_ended() => Verdict::deny(DenyReason::ProtocolOff),
            v => v,
        };
        let _ = tx.send(Some(verdict));
    }

    /// Before a new session's backend call: a ban of `key` on the shared store refuses it
    /// (no backend call), and is kept here from then on. With the store unreachable, the
    /// request goes on (`on_loss=open`) or is refused (`on_loss=closed`).
    async fn check_store_ban(&self, store: &SessionStore, key: &Key, req: &PlayRequest) -> Option<Verdict> {
        match store.ban_of(key).await {
            Ok(None) => None,
            Ok(Some(ban)) => {
                tracing::info!(stream = %crate::redact::Name(&req.name), ip = %req.ip, ban_ms = ban.as_millis() as u64, "refused: banned through the session store");
                let now = self.now();
                self.lock().machine.ban_from_store(now, key, req, ban);
                Some(Verdict::deny(DenyReason::Banned))
            }
            Err(e) => self.store_unavailable(store, &e, req),
        }
    }

    fn store_unavailable(&self, store: &SessionStore, e: &StoreError, req: &PlayRequest) -> Option<Verdict> {
        match store.on_loss() {
            OnStoreLoss::Open => {
                tracing::debug!(error = %e, stream = %crate::redact::Name(&req.name), "session store unavailable; deciding locally");
                None
            }
            OnStoreLoss::Closed => {
                tracing::warn!(error = %e, stream = %crate::redact::Name(&req.name), ip = %req.ip, "refused: session store unavailable (on_loss=closed)");
                Some(Verdict::deny(DenyReason::NoDecision))
            }
        }
    }

    /// Has the store count an admitted session (`new`: just opened; otherwise re-checked);
    /// sessions it closes on this server are closed here at once (other servers hear of theirs
    /// on the kick channel). Returns false when the admission must be withdrawn: a new session
    /// the unreachable store could not count under `on_loss=closed` (a running one goes on).
    async fn share_claim(&self, store: &SessionStore, claim: &Claim, new: bool) -> bool {
        match store.claim(claim).await {
            Ok(kicked) => {
                let now = self.now();
                let mut guard = self.lock();
                for key in kicked {
                    guard.machine.on_remote_kick(now, &key, claim.ban, claim.unique);
                }
                true
            }
            Err(e) => match store.on_loss() {
                OnStoreLoss::Open if new => {
                    // While the store is known to be lost (`Down`) the loss was logged once
                    // already; a failure of its own is worth a line.
                    if matches!(e, StoreError::Down) {
                        tracing::debug!(user_id = %claim.user, "session not counted by the lost session store");
                    } else {
                        tracing::warn!(error = %e, user_id = %claim.user, "session not counted by the session store; its limit holds on this server only");
                    }
                    true
                }
                OnStoreLoss::Closed if new => {
                    let now = self.now();
                    self.lock().machine.withdraw(now, &claim.key);
                    false
                }
                _ => {
                    tracing::debug!(error = %e, user_id = %claim.user, "re-checked session not renewed in the session store");
                    true
                }
            },
        }
    }

    /// Keeps the shared store connected until `shutdown`: applies the kicks other servers
    /// publish, notices a lost Redis (the store logs it loudly; requests are decided as
    /// `on_loss` says meanwhile), reconnects with a growing pause (at most 2 s) and then hands
    /// back this server's sessions (resynchronisation).
    pub async fn run_store(self, shutdown: CancellationToken) {
        use futures::StreamExt;
        let Some(store) = self.inner.store.get().cloned() else {
            return;
        };
        const FIRST_RETRY: Duration = Duration::from_millis(100);
        let mut retry = FIRST_RETRY;
        let mut lost_before = false;
        loop {
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = store.connect() => c,
            };
            match connected {
                Ok(pubsub) => {
                    retry = FIRST_RETRY;
                    let handed = self.resync(&store).await;
                    if lost_before {
                        tracing::warn!(
                            node = store.node(),
                            sessions = handed,
                            "session store reachable again; this server's sessions handed back (resynchronised)"
                        );
                    } else {
                        tracing::info!(node = store.node(), sessions = handed, "session store connected");
                    }
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = store.lost() => {
                                if !store.is_up() {
                                    break;
                                }
                            }
                            msg = messages.next() => match msg {
                                Some(msg) => self.on_kick_message(msg.get_payload_bytes()),
                                None => {
                                    store.set_lost(&"the kick subscription closed");
                                    break;
                                }
                            },
                        }
                    }
                }
                Err(e) => store.set_lost(&e),
            }
            lost_before = true;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(Duration::from_secs(2));
        }
    }

    /// Hands every granted session of a user id back to the store (oldest first), closing
    /// what the limits close now that every server's sessions are counted together.
    async fn resync(&self, store: &SessionStore) -> usize {
        let claims = {
            let now = self.now();
            self.lock().machine.shared_sessions(now)
        };
        let mut handed = 0;
        for claim in &claims {
            match store.claim(claim).await {
                Ok(kicked) => {
                    handed += 1;
                    let now = self.now();
                    let mut guard = self.lock();
                    for key in kicked {
                        guard.machine.on_remote_kick(now, &key, claim.ban, claim.unique);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resynchronisation with the session store interrupted");
                    break;
                }
            }
        }
        handed
    }

    /// A message on the kick channel: closes the named session if this server holds it.
    fn on_kick_message(&self, payload: &[u8]) {
        let Some(kick) = std::str::from_utf8(payload).ok().and_then(Kick::parse) else {
            tracing::warn!(
                bytes = payload.len(),
                "unreadable message on the session store's kick channel; ignored"
            );
            return;
        };
        let now = self.now();
        self.lock()
            .machine
            .on_remote_kick(now, &kick.key, kick.ban, kick.unique);
    }

    /// Hands the `config` override of the answer to `request` to the stream side.
    fn apply_override(&self, request: &BackendRequest, config: &Value) {
        let stream = request.name.as_str();
        let Some(control) = self.inner.streams.get() else {
            tracing::warn!(stream, "config override ignored: no stream control attached");
            return;
        };
        match control.apply_override(stream, config) {
            Ok(protocols) => self.end_disabled(stream, &protocols),
            Err(e) => tracing::warn!(
                stream,
                session_id = %request.session_id,
                ip = %request.ip,
                error = %e,
                "config override rejected; the session decision stands"
            ),
        }
    }

    /// Ends every open session of `stream` whose protocol is switched off (CONF-03).
    pub fn end_disabled(&self, stream: &str, protocols: &Protocols) {
        let now = self.now();
        self.lock().machine.end_disabled(now, stream, protocols);
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
        let key = (req.kind, identity_of(keys, &req, &token));
        let now = self.now();
        // The token's end on the core's clock, read once here: a tick ends the session then,
        // whatever the wall clock does meanwhile.
        let admin_until =
            admin_until.map(|until| now.tick + until.duration_since(SystemTime::now()).unwrap_or_default());
        self.lock()
            .machine
            .admit_without_backend(now, &key, &req, &token, admin_until)
    }

    /// Binds a persistent connection to its session: the session stays open while at least
    /// one guard lives and closes when the last one drops (SESS-07).
    pub fn attach(&self, handle: &SessionHandle) -> ConnectionGuard {
        self.lock().machine.on_connect(handle);
        ConnectionGuard {
            core: self.clone(),
            handle: handle.clone(),
        }
    }

    fn detach(&self, handle: &SessionHandle) {
        let now = self.now();
        self.lock().machine.on_disconnect(now, handle);
    }

    /// The `allowed_dvr_ranges` of the backend's last answer for this session (ADV-02):
    /// `Some(None)` when the answer had no such field (or no backend decides the stream),
    /// which means the whole archive; `None` when the session is no longer registered.
    pub fn allowed_dvr_ranges(&self, handle: &SessionHandle) -> Option<Option<Value>> {
        self.lock().machine.allowed_dvr_ranges(handle)
    }

    /// Open sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.lock().machine.sessions()
    }

    /// Closes an open session by id (API-02). Its record is dropped, so the client's next
    /// request is judged afresh by the backend.
    pub fn close_session(&self, id: Uuid) -> bool {
        let now = self.now();
        self.lock().machine.close_session(now, id)
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
        let now = self.now();
        self.lock()
            .machine
            .stream_reconfigured(now, stream, on_play, on_publish)
    }

    /// Forces a re-check of every open session of `stream` (REQ-07); returns how many.
    pub fn reauth_stream(&self, stream: &str) -> usize {
        let now = self.now();
        let count = self.lock().machine.reauth_stream(now, stream);
        tracing::info!(
            stream,
            count,
            "re-check of the stream's sessions forced through the API"
        );
        count
    }

    /// Number of records (open, lingering, pending or banned) — for tests and metrics.
    pub fn record_count(&self) -> usize {
        self.lock().machine.len()
    }

    /// One sweep: the machine's tick, chunk by chunk, letting go of the lock in between;
    /// the background re-checks it asks for are started.
    pub fn sweep(&self) {
        let now = self.now();
        let mut calls = Vec::new();
        let mut guard = self.lock();
        guard.machine.on_tick_start(now);
        let mut from = 0;
        loop {
            let next = guard.machine.on_tick_chunk(now, from, &mut calls);
            for call in calls.drain(..) {
                self.start(&mut guard, call);
            }
            let Some(next) = next else { break };
            drop(guard);
            guard = self.lock();
            from = next;
        }
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

/// Tokens are credentials: logs carry only a prefix of a long one ([`crate::redact::token`]).
pub(crate) fn redact(token: &str) -> String {
    crate::redact::token(token)
}
