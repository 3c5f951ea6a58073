//! `usher backend-check --replay`: the reference server in front of the site's backend, with a
//! few synthetic viewers, so a backend author sees what their answers do to real sessions.
//!
//! The embedded server gets one stream (a generated picture, `fake://`) whose `on_play` (and
//! `on_publish`, when given) lead to the backend through a recording relay on loopback: the
//! relay passes each call and its answer through unchanged and notes what the backend was asked
//! and what it said. The server's side comes from its management API (open sessions, and the
//! closed ones with their reason from the session history), polled over HTTP as `usher check`
//! does; the viewers' side from what each player saw. The three are merged into one timeline.
//!
//! The scenario, for each of the first [`REPLAY_TOKENS`] tokens: an HLS viewer from one loopback
//! address at once, an RTMP viewer from a second address one second later, and a second HLS
//! viewer from a third address one second after that. HLS viewers ask for the playlist and a
//! segment every second (so a short `X-AuthDuration` shows its re-checks); RTMP viewers hold
//! their connection. A refused viewer tries once more a second later, which shows whether the
//! refusal was cached (no backend call) as the contract requires (AMB-8).
//!
//! Bounded: the replay lasts `seconds` (at most [`MAX_REPLAY`]); each viewer makes at most one
//! request a second; the relay's calls have the server's budget; everything is stopped and every
//! socket closed when it ends.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;
use usher_server::auth::Answer;
use usher_server::auth::backend::{BACKEND_TIMEOUT, MAX_BODY_BYTES, interpret};
use usher_server::config::{AuthSpec, AuthTarget, Config, Credential, StreamConfig};

use super::SetupError;
use crate::clients::hls::HlsClient;
use crate::clients::rtmp::RtmpClient;
use crate::clients::{Outcome, ViewerProfile};

/// Tokens that get viewers (the first ones of `--tokens`, or as many generated ones).
pub const REPLAY_TOKENS: usize = 2;
/// Upper bound of `--replay-seconds`.
pub const MAX_REPLAY: Duration = Duration::from_secs(60);
/// Lower bound of `--replay-seconds`: the last viewer starts after two seconds.
pub const MIN_REPLAY: Duration = Duration::from_secs(4);
/// Default of `--replay-seconds`.
pub const DEFAULT_REPLAY: Duration = Duration::from_secs(20);
/// How often HLS viewers ask again, and refused viewers retry.
const EVERY: Duration = Duration::from_secs(1);
/// How often the server's session lists are read.
const POLL: Duration = Duration::from_millis(250);
/// Attempts of one RTMP viewer at most.
const RTMP_ATTEMPTS: usize = 4;
/// After the viewers stop: time for the server's last closes to reach its history.
const SETTLE: Duration = Duration::from_millis(600);

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub play_url: String,
    pub publish_url: Option<String>,
    /// The site's tokens; empty: generated ones (which a backend is likely to refuse).
    pub tokens: Vec<String>,
    pub stream: String,
    pub seconds: Duration,
}

/// Who saw the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The relay: what the server asked the backend and what it answered.
    Backend,
    /// The server's management API.
    Server,
    /// The synthetic player.
    Viewer,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum What {
    /// The backend allowed a `new_session` (`recheck` false) or an `update_session` call.
    Allowed {
        recheck: bool,
        duration_s: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_sessions: Option<u32>,
        unique: bool,
    },
    /// The backend refused (4xx): the server bans the identity for `ban_s`.
    Denied { recheck: bool, status: u16, ban_s: u64 },
    /// 302: a redirect for HTTP players, a refusal for RTMP.
    Redirected { recheck: bool },
    /// 5xx, timeout, broken answer: the server keeps its previous decision.
    NoDecision { recheck: bool, reason: String },
    /// The server opened a session.
    Opened {
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// The server closed a session (`kicked`, `unique`, `denied`, `disconnected`, `idle`, …).
    Closed { reason: String },
    /// The player got media.
    Playing,
    /// The player was refused; `backend_asked` false: without a backend call (a cached refusal).
    Refused { status: u16, backend_asked: bool },
    /// The server ended a playing RTMP connection.
    Ended { reason: String },
    /// The player failed without a refusal (transport error, no media in time).
    Failed { reason: String },
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the replay started.
    pub at_ms: u64,
    pub source: Source,
    /// `hls`, `rtmp`, …
    pub proto: String,
    pub ip: String,
    /// Where the token came from (`token #1 of --tokens`), never its value.
    pub token: String,
    #[serde(flatten)]
    pub what: What,
    /// For a refusal: when the player's attempt started and when its answer came, to the
    /// microsecond (`at_ms` is cut to the millisecond, too coarse to order a call against it).
    #[serde(skip)]
    asked_window: Option<(Duration, Duration)>,
}

impl Event {
    pub fn at(&self) -> Duration {
        Duration::from_millis(self.at_ms)
    }
}

fn recheck_word(recheck: bool) -> &'static str {
    if recheck { "re-check" } else { "new session" }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Backend => "backend",
            Source::Server => "server",
            Source::Viewer => "viewer",
        };
        write!(
            f,
            "t+{:.2}s  {:<5} {:<10} {:<22} {:<8} ",
            self.at_ms as f64 / 1000.0,
            self.proto.to_uppercase(),
            self.ip,
            self.token,
            source
        )?;
        match &self.what {
            What::Allowed {
                recheck,
                duration_s,
                user_id,
                max_sessions,
                unique,
            } => {
                write!(f, "{}: allowed, duration {duration_s} s", recheck_word(*recheck))?;
                if let Some(u) = user_id {
                    write!(f, ", user {u}")?;
                }
                if let Some(m) = max_sessions {
                    write!(f, ", max sessions {m}")?;
                }
                if *unique {
                    f.write_str(", unique")?;
                }
                Ok(())
            }
            What::Denied { recheck, status, ban_s } => {
                write!(
                    f,
                    "{}: refused ({status}), banned for {ban_s} s",
                    recheck_word(*recheck)
                )
            }
            What::Redirected { recheck } => write!(f, "{}: redirect (302)", recheck_word(*recheck)),
            What::NoDecision { recheck, reason } => {
                write!(f, "{}: no decision ({reason})", recheck_word(*recheck))
            }
            What::Opened { user_id: Some(u) } => write!(f, "session opened (user {u})"),
            What::Opened { user_id: None } => f.write_str("session opened"),
            What::Closed { reason } => write!(f, "session closed: {}", close_words(reason)),
            What::Playing => f.write_str("playing"),
            What::Refused {
                status,
                backend_asked: true,
            } => write!(f, "refused ({status})"),
            What::Refused {
                status,
                backend_asked: false,
            } => write!(f, "refused ({status}) without a backend call: cached refusal"),
            What::Ended { reason } => write!(f, "connection ended: {reason}"),
            What::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

fn close_words(reason: &str) -> String {
    match reason {
        "kicked" => "kicked (X-Max-Sessions of its user exceeded)".to_string(),
        "unique" => "kicked (X-Unique: a newer session of its user)".to_string(),
        "denied" => "a re-check refused it".to_string(),
        "disconnected" => "the player left".to_string(),
        "idle" => "idle".to_string(),
        other => other.to_string(),
    }
}

/// What a replay saw.
#[derive(Debug, Clone)]
pub struct Replay {
    /// In time order.
    pub events: Vec<Event>,
    pub elapsed: Duration,
    /// Where the embedded server and the relay listened (all closed once the replay is over).
    pub http: SocketAddr,
    pub rtmp: Option<SocketAddr>,
    pub relay: SocketAddr,
    pub warnings: Vec<String>,
}

impl Replay {
    /// The timeline as JSON (for the report).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "events": self.events,
            "warnings": self.warnings,
        })
    }
}

/// Tokens and how the timeline names them.
struct Tokens(Vec<(String, String)>);

impl Tokens {
    fn label(&self, token: &str) -> String {
        self.0
            .iter()
            .find(|(t, _)| t == token)
            .map_or_else(|| "another token".to_string(), |(_, l)| l.clone())
    }
}

/// A call the relay passed on.
struct Call {
    at: Duration,
    proto: String,
    ip: String,
    token: String,
}

/// The relay between the server and the backend.
struct Relay {
    started: Instant,
    play: String,
    publish: Option<String>,
    http: reqwest::Client,
    tokens: Arc<Tokens>,
    calls: Mutex<Vec<Call>>,
    events: Arc<Mutex<Vec<Event>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn relay(State(relay): State<Arc<Relay>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let target = match uri.path() {
        "/play" => relay.play.clone(),
        "/publish" => match &relay.publish {
            Some(u) => u.clone(),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let query = uri.query().unwrap_or_default();
    let url = if query.is_empty() {
        target
    } else {
        format!("{target}{}{query}", if target.contains('?') { '&' } else { '?' })
    };
    let fields: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let recheck = field("request_type") == "update_session";
    let token = relay.tokens.label(&field("token"));
    let at = relay.started.elapsed();
    lock(&relay.calls).push(Call {
        at,
        proto: field("proto"),
        ip: field("ip"),
        token: token.clone(),
    });
    // The server drops the call after its budget; the guard then notes that it gave up.
    let mut pending = Pending {
        relay: Arc::clone(&relay),
        at,
        proto: field("proto"),
        ip: field("ip"),
        token,
        what: Some(What::NoDecision {
            recheck,
            reason: "the server stopped waiting for the answer".to_string(),
        }),
    };
    let mut request = relay.http.request(method, &url).body(body);
    if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
        request = request.header(axum::http::header::CONTENT_TYPE, ct);
    }
    let (response, what) = match forward(request).await {
        Ok((status, answer_headers, body)) => {
            let pairs: Vec<(String, String)> = answer_headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let what = match interpret(status, &pairs, &body) {
                Answer::Allow(g) => What::Allowed {
                    recheck,
                    duration_s: g.duration.as_secs(),
                    user_id: g.user_id,
                    max_sessions: g.max_sessions,
                    unique: g.unique,
                },
                Answer::Deny { status, duration } => What::Denied {
                    recheck,
                    status,
                    ban_s: duration.as_secs(),
                },
                Answer::Redirect { .. } => What::Redirected { recheck },
                Answer::NoDecision { reason } => What::NoDecision { recheck, reason },
            };
            let mut out = (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body).into_response();
            for (k, v) in answer_headers.iter() {
                if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection") {
                    out.headers_mut().append(k, v.clone());
                }
            }
            (out, what)
        }
        Err(reason) => (
            StatusCode::BAD_GATEWAY.into_response(),
            What::NoDecision { recheck, reason },
        ),
    };
    tracing::debug!(proto = %field("proto"), recheck, "replay relay passed a backend call");
    pending.what = Some(what);
    drop(pending);
    response
}

/// A call in flight; dropping it notes what became of it.
struct Pending {
    relay: Arc<Relay>,
    /// When the server asked: the timeline shows a call where it began.
    at: Duration,
    proto: String,
    ip: String,
    token: String,
    what: Option<What>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(what) = self.what.take() {
            lock(&self.relay.events).push(Event {
                at_ms: self.at.as_millis() as u64,
                source: Source::Backend,
                proto: std::mem::take(&mut self.proto),
                ip: std::mem::take(&mut self.ip),
                token: std::mem::take(&mut self.token),
                what,
                asked_window: None,
            });
        }
    }
}

/// Sends one call; the answer body is read up to one byte over the server's limit.
async fn forward(request: reqwest::RequestBuilder) -> Result<(u16, HeaderMap, Bytes), String> {
    let mut response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            "timeout".to_string()
        } else {
            format!("transport error: {e}")
        }
    })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("answer body: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY_BYTES {
            break;
        }
    }
    Ok((status, headers, Bytes::from(body)))
}

/// A synthetic viewer's part of the scenario.
struct Viewer {
    proto: &'static str,
    ip: IpAddr,
    token: String,
    label: String,
    start_after: Duration,
}

/// Shared by the viewers.
struct Stage {
    started: Instant,
    deadline: Instant,
    http: url::Url,
    rtmp: Option<SocketAddr>,
    stream: String,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Stage {
    fn note(&self, v: &Viewer, what: What, asked_from: Option<Duration>) {
        // A step cut short by the end of the replay is not something the server did.
        if matches!(what, What::Failed { .. }) && Instant::now() + Duration::from_millis(100) >= self.deadline {
            return;
        }
        let now = self.started.elapsed();
        lock(&self.events).push(Event {
            at_ms: now.as_millis() as u64,
            source: Source::Viewer,
            proto: v.proto.to_string(),
            ip: v.ip.to_string(),
            token: v.label.clone(),
            what,
            asked_window: asked_from.map(|from| (from, now)),
        });
    }

    fn profile(&self, v: &Viewer) -> ViewerProfile {
        let mut profile = ViewerProfile::new(v.ip);
        // A step never outlives the replay.
        profile.request_timeout = self
            .deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        profile
    }

    /// Waits until `at` or the deadline; false at the deadline.
    async fn until(&self, at: Instant) -> bool {
        tokio::time::sleep_until(at.min(self.deadline)).await;
        Instant::now() < self.deadline
    }

    async fn hls(&self, v: Viewer) {
        if !self.until(self.started + v.start_after).await {
            return;
        }
        let client = match HlsClient::new(&self.http, self.profile(&v)) {
            Ok(c) => c,
            Err(e) => return self.note(&v, What::Failed { reason: e.to_string() }, None),
        };
        let query = [("token".to_string(), v.token.clone())];
        let mut playing = false;
        let mut refusals = 0;
        let mut last_failure = None;
        loop {
            let asked = Instant::now();
            let attempt = client.play(&self.stream, &query).await;
            match &attempt.outcome {
                Outcome::Playing => {
                    if !playing {
                        self.note(&v, What::Playing, None);
                    }
                    playing = true;
                    refusals = 0;
                    last_failure = None;
                }
                outcome if outcome.is_refused() => {
                    let status = outcome.status();
                    playing = false;
                    refusals += 1;
                    self.note(
                        &v,
                        What::Refused {
                            status,
                            backend_asked: true,
                        },
                        Some(asked - self.started),
                    );
                    // One refusal, and the retry that shows whether it was cached.
                    if refusals >= 2 {
                        return;
                    }
                }
                // A fresh stream may list no segment yet: try again without a line.
                Outcome::Failed { status: Some(200), .. } if !playing => {
                    if self.until(Instant::now() + Duration::from_millis(200)).await {
                        continue;
                    }
                    return;
                }
                other => {
                    let reason = failure(other);
                    if last_failure.as_ref() != Some(&reason) {
                        self.note(&v, What::Failed { reason: reason.clone() }, None);
                    }
                    last_failure = Some(reason);
                    playing = false;
                }
            }
            if !self.until(asked + EVERY).await {
                return;
            }
        }
    }

    async fn rtmp(&self, v: Viewer) {
        let Some(server) = self.rtmp else { return };
        if !self.until(self.started + v.start_after).await {
            return;
        }
        let mut refusals = 0;
        for _ in 0..RTMP_ATTEMPTS {
            let asked = Instant::now();
            let client = RtmpClient::new(server, self.profile(&v));
            let (attempt, player) = client
                .play(&self.stream, &[("token".to_string(), v.token.clone())])
                .await;
            match (&attempt.outcome, player) {
                (Outcome::Playing, Some(mut player)) => {
                    refusals = 0;
                    self.note(&v, What::Playing, None);
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    match player.wait_closed(left).await {
                        Some(closed) => self.note(&v, What::Ended { reason: closed.reason }, None),
                        // The replay is over; dropping the player closes the connection.
                        None => return,
                    }
                }
                (outcome, _) if outcome.is_refused() => {
                    let status = outcome.status();
                    refusals += 1;
                    self.note(
                        &v,
                        What::Refused {
                            status,
                            backend_asked: true,
                        },
                        Some(asked - self.started),
                    );
                    if refusals >= 2 {
                        return;
                    }
                }
                (other, _) => self.note(&v, What::Failed { reason: failure(other) }, None),
            }
            if !self.until(Instant::now().max(asked + EVERY)).await {
                return;
            }
        }
    }
}

fn failure(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Reads the server's open and closed sessions until `stop`, turning them into events.
async fn observe(
    api: reqwest::Client,
    base: url::Url,
    credential: (String, String),
    started_wall: u64,
    tokens: Arc<Tokens>,
    events: Arc<Mutex<Vec<Event>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut opened: HashSet<String> = HashSet::new();
    let mut closed: HashSet<String> = HashSet::new();
    let at = |unix_ms: u64| unix_ms.saturating_sub(started_wall);
    loop {
        let last = *stop.borrow();
        for closed_list in [false, true] {
            let mut url = base.join("streamer/api/v3/sessions").expect("a fixed path joins");
            url.query_pairs_mut()
                .append_pair("closed", if closed_list { "true" } else { "false" });
            let got = api
                .get(url)
                .basic_auth(&credential.0, Some(&credential.1))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let Ok(response) = got else { continue };
            let Ok(list) = response.json::<serde_json::Value>().await else {
                continue;
            };
            for s in list["sessions"].as_array().into_iter().flatten() {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                let id = text("id");
                let event = |at_ms: u64, what: What| Event {
                    at_ms,
                    source: Source::Server,
                    proto: text("proto"),
                    ip: text("ip"),
                    token: tokens.label(&text("token")),
                    what,
                    asked_window: None,
                };
                let mut new = Vec::new();
                if opened.insert(id.clone()) {
                    new.push(event(
                        at(s["opened_at"].as_u64().unwrap_or(started_wall)),
                        What::Opened {
                            user_id: s["user_id"].as_str().map(str::to_string),
                        },
                    ));
                }
                if closed_list && closed.insert(id) {
                    new.push(event(
                        at(s["closed_at"].as_u64().unwrap_or(started_wall)),
                        What::Closed {
                            reason: text("close_reason"),
                        },
                    ));
                }
                lock(&events).extend(new);
            }
        }
        if last {
            return;
        }
        // After the stop, one more read, so the last closes are in.
        let _ = tokio::time::timeout(POLL, stop.changed()).await;
    }
}

/// `--replay-seconds` within its bounds.
pub fn check_seconds(seconds: Duration) -> Result<(), SetupError> {
    if seconds < MIN_REPLAY || seconds > MAX_REPLAY {
        return Err(SetupError::BadOption(format!(
            "--replay-seconds {} is out of range {}..={}",
            seconds.as_secs(),
            MIN_REPLAY.as_secs(),
            MAX_REPLAY.as_secs()
        )));
    }
    Ok(())
}

/// Runs the replay. A setup error (a bad option, a server that cannot start) means no viewer
/// played.
pub async fn run(options: ReplayOptions) -> Result<Replay, SetupError> {
    super::check_url("the play backend", &options.play_url)?;
    if let Some(url) = &options.publish_url {
        super::check_url("the publish backend (--publish)", url)?;
    }
    check_seconds(options.seconds)?;
    let tokens: Vec<(String, String)> = if options.tokens.is_empty() {
        (1..=REPLAY_TOKENS)
            .map(|n| {
                (
                    format!("usher-replay-{}", uuid::Uuid::new_v4().simple()),
                    format!("generated token #{n}"),
                )
            })
            .collect()
    } else {
        options
            .tokens
            .iter()
            .take(REPLAY_TOKENS)
            .enumerate()
            .map(|(i, t)| (t.clone(), format!("token #{} of --tokens", i + 1)))
            .collect()
    };
    let tokens = Arc::new(Tokens(tokens));
    let events = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let started_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);

    // The relay: the server's backend calls pass through it.
    let relay_state = Arc::new(Relay {
        started,
        play: options.play_url.clone(),
        publish: options.publish_url.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A little over the server's budget: the server gives up first, as it would
            // facing the backend directly.
            .timeout(BACKEND_TIMEOUT + Duration::from_millis(500))
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?,
        tokens: Arc::clone(&tokens),
        calls: Mutex::new(Vec::new()),
        events: Arc::clone(&events),
    });
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| SetupError::Client(format!("cannot listen for the replay relay: {e}")))?;
    let relay_addr = listener.local_addr().map_err(|e| SetupError::Client(e.to_string()))?;
    let app = axum::Router::new().fallback(relay).with_state(Arc::clone(&relay_state));
    let relay_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let credential = ("usher-replay".to_string(), uuid::Uuid::new_v4().simple().to_string());
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut stream = StreamConfig {
        name: options.stream.clone(),
        inputs: vec!["fake://fake".to_string()],
        on_play: Some(AuthSpec::new(AuthTarget::Http(format!("http://{relay_addr}/play")))),
        ..StreamConfig::default()
    };
    if options.publish_url.is_some() {
        stream.on_publish = Some(AuthSpec::new(AuthTarget::Http(format!("http://{relay_addr}/publish"))));
    }
    let config = Config {
        http: Some(local),
        rtmp: Some(local),
        edit_auth: Some(Credential {
            login: credential.0.clone(),
            password: credential.1.clone(),
        }),
        streams: vec![stream],
        ..Config::default()
    };
    let server = match usher_server::Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            relay_task.abort();
            return Err(SetupError::Client(format!(
                "cannot start the embedded reference server: {e}"
            )));
        }
    };
    let http = server.http_addr();
    let rtmp = server.rtmp_addr();
    let base = url::Url::parse(&format!("http://{http}/")).expect("a socket address makes a URL");
    tracing::info!(%http, ?rtmp, relay = %relay_addr, "replay: embedded server started");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = reqwest::Client::builder()
        .build()
        .map_err(|e| SetupError::Client(e.to_string()))?;
    let observer = tokio::spawn(observe(
        api,
        base.clone(),
        credential,
        started_wall,
        Arc::clone(&tokens),
        Arc::clone(&events),
        stop_rx,
    ));

    let stage = Arc::new(Stage {
        started,
        deadline: started + options.seconds,
        http: base,
        rtmp,
        stream: options.stream.clone(),
        events: Arc::clone(&events),
    });
    let mut viewers = tokio::task::JoinSet::new();
    for (k, (token, label)) in tokens.0.iter().enumerate() {
        let first = 2 + 3 * k as u8;
        for (i, proto) in ["hls", "rtmp", "hls"].into_iter().enumerate() {
            let v = Viewer {
                proto,
                ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, first + i as u8)),
                token: token.clone(),
                label: label.clone(),
                start_after: EVERY * i as u32,
            };
            let stage = Arc::clone(&stage);
            viewers.spawn(async move {
                match v.proto {
                    "hls" => stage.hls(v).await,
                    _ => stage.rtmp(v).await,
                }
            });
        }
    }
    // Each viewer stops at the deadline; the extra second covers a step in flight.
    let all_done = async { while viewers.join_next().await.is_some() {} };
    let mut warnings = Vec::new();
    if tokio::time::timeout(options.seconds + Duration::from_secs(1), all_done)
        .await
        .is_err()
    {
        warnings.push("a viewer outlived the replay and was stopped".to_string());
    }
    // Dropping the viewers closes their connections; the server then closes their sessions.
    viewers.shutdown().await;
    tokio::time::sleep(SETTLE).await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(3), observer).await.is_err() {
        warnings.push("the server's session list could not be read at the end".to_string());
    }
    server.shutdown().await;
    relay_task.abort();
    let _ = relay_task.await;

    let calls = std::mem::take(&mut *lock(&relay_state.calls));
    let mut events = std::mem::take(&mut *lock(&events));
    // A refusal with no backend call for its viewer since its attempt began was cached.
    for e in &mut events {
        let Some((from, until)) = e.asked_window else { continue };
        let asked = calls
            .iter()
            .any(|c| c.at >= from && c.at <= until && c.proto == e.proto && c.ip == e.ip && c.token == e.token);
        if let What::Refused { backend_asked, .. } = &mut e.what {
            *backend_asked = asked;
        }
    }
    events.sort_by_key(|e| e.at_ms);
    Ok(Replay {
        events,
        elapsed: started.elapsed(),
        http,
        rtmp,
        relay: relay_addr,
        warnings,
    })
}
