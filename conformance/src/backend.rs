//! The programmable auth backend: one wiremock [`MockServer`] for the whole run, with one
//! path prefix per scenario, and routing by the stream name the server reports.
//!
//! # Why one server for the run, not one per scenario
//!
//! * The server under test must be able to reach the backend. For the embedded target any
//!   loopback port works, but a third-party target (another host, a container) needs one address
//!   that can be published or let through a firewall, known before the run starts
//!   ([`BackendOptions::listen`], [`BackendOptions::advertised_base`]).
//! * Isolation does not need separate listeners: every scenario gets its own prefix
//!   (`/<scope>/on_play`), its own programmed answers and its own request log, so scenarios run
//!   concurrently without cross-talk. A request under a prefix that no live scenario owns is kept
//!   in a separate "stray" log: it is a cross-talk detector (a server calling a backend of a stream
//!   that was deleted, or of another stream).
//! * A server that cannot take a URL per stream (nginx-rtmp calls one URL per application) is
//!   routed by the **stream name** it reports: every scenario's streams are named
//!   `<scope>-<alias>`, so the name finds its scenario whatever path and method the server used.
//!   The path is tried first, then the name; a request that neither finds is a stray.
//! * The server's request is read through its [`Dialect`] into the contract's fields, and the
//!   scenario's programmed answer is written in the server's terms (see [`crate::dialect`]).
//! * wiremock is used for what it is good at — an HTTP server with programmable delays and the
//!   ability to drop a connection without answering — and routing is a single [`Respond`]
//!   implementation, so a scenario can change its answers mid-run (allow, then 500).
//!
//! Every request is recorded with its arrival [`Instant`] and its parsed query before the answer
//! is chosen, so timing windows are measured at the backend, where the spec defines them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::dialect::{Dialect, RawRequest, Reading};
use crate::source::SOURCE_PARAM;
use url::Url;
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

/// Where the backend listens and how the server under test reaches it.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Listening address; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Base URL the server under test is told to call (`http://host:port`). `None` means
    /// `http://<listen address>`, right for a server on the same host.
    pub advertised_base: Option<Url>,
    /// The port of 127.0.0.1 that stands for a backend that is down. `None`: a port that was
    /// free a moment ago. Static mode fixes it (it is printed in the target's configuration).
    pub unreachable_port: Option<u16>,
    /// How the server under test calls its backend and reads the answer.
    pub dialect: Dialect,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_base: None,
            unreachable_port: None,
            dialect: Dialect::Flussonic,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot listen for the auth backend on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot find a closed local port to stand for an unreachable backend: {0}")]
    ClosedPort(std::io::Error),
}

/// What the backend answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    /// Hold the answer back this long (a slow or hanging backend).
    pub delay: Option<Duration>,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: None,
            delay: None,
        }
    }

    /// 200: allowed.
    pub fn allow() -> Answer {
        Answer::status(200)
    }

    /// 403: denied.
    pub fn deny() -> Answer {
        Answer::status(403)
    }

    /// 302 with `Location`.
    pub fn redirect(location: &str) -> Answer {
        Answer::status(302).with_header("Location", location)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: serde_json::Value) -> Answer {
        self.body = Some(body);
        self
    }

    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = Some(delay);
        self
    }

    /// The `X-AuthDuration` this answer carries, if any and numeric.
    pub fn auth_duration(&self) -> Option<Duration> {
        self.header("x-authduration")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn template(&self) -> ResponseTemplate {
        let mut t = ResponseTemplate::new(self.status);
        for (name, value) in &self.headers {
            t = t.insert_header(name.as_str(), value.as_str());
        }
        if let Some(body) = &self.body {
            t = t.set_body_json(body);
        }
        if let Some(delay) = self.delay {
            t = t.set_delay(delay);
        }
        t
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        for (n, v) in &self.headers {
            // Padding headers (`a header block of N KiB`) would flood a report: their size says enough.
            if v.len() > 200 {
                write!(f, " {n}: ({} bytes)", v.len())?;
            } else {
                write!(f, " {n}: {v}")?;
            }
        }
        if let Some(body) = &self.body {
            // A padded body (`a body of N bytes`) would flood a report: its size says enough.
            let text = body.to_string();
            if text.len() > 200 {
                write!(f, " body of {} bytes", text.len())?;
            } else {
                write!(f, " body {text}")?;
            }
        }
        if let Some(d) = self.delay {
            write!(f, " after {:.1} s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Arrival time.
    pub at: Instant,
    /// Arrival time relative to the scenario's start (for messages).
    pub offset: Duration,
    pub method: String,
    pub path: String,
    /// The contract's fields of the call, decoded, in order: with the `flussonic` dialect the
    /// query exactly as sent; with another dialect the fields it read from the server's request
    /// (see [`Reading::fields`]).
    pub query: Vec<(String, String)>,
    /// A publish check (`on_publish`): by its path with the `flussonic` dialect, by what the
    /// server says with another.
    pub publish: bool,
    /// The body, when it is a JSON object (publish calls may carry their fields there, AMB-2).
    pub body: Option<serde_json::Map<String, serde_json::Value>>,
    /// What the backend did with it.
    pub answered: String,
    /// The answer it got; `None` when the connection was cut or no scenario owned it.
    pub answer: Option<Answer>,
}

impl Call {
    /// First value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// All parameters, first value of each.
    pub fn params(&self) -> BTreeMap<&str, &str> {
        let mut map = BTreeMap::new();
        for (k, v) in &self.query {
            map.entry(k.as_str()).or_insert(v.as_str());
        }
        map
    }

    /// A field of the call: the query parameter, else the JSON body's field (strings as they
    /// are, numbers and booleans in their JSON form).
    pub fn field(&self, name: &str) -> Option<String> {
        if let Some(v) = self.param(name) {
            return Some(v.to_string());
        }
        match self.body.as_ref()?.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// The `token` of the query, else of a JSON body.
    pub fn token(&self) -> Option<&str> {
        self.param("token")
            .or_else(|| self.body.as_ref().and_then(|b| b.get("token")).and_then(|v| v.as_str()))
    }

    pub fn request_type(&self) -> Option<&str> {
        self.param("request_type")
    }

    pub fn session_id(&self) -> Option<&str> {
        self.param("session_id")
    }

    pub fn request_number(&self) -> Option<i64> {
        self.param("request_number").and_then(|v| v.parse().ok())
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:>6} ms {} {}", self.offset.as_millis(), self.method, self.path)?;
        // Values are shown decoded; one that would read ambiguously is quoted.
        let mut sep = '?';
        for (k, v) in &self.query {
            if v.contains(['&', '=', ' ', '+', '#', '"', '%']) {
                write!(f, "{sep}{k}={v:?}")?;
            } else {
                write!(f, "{sep}{k}={v}")?;
            }
            sep = '&';
        }
        if let Some(body) = &self.body {
            write!(f, " body {}", serde_json::Value::Object(body.clone()))?;
        }
        write!(f, " -> {}", self.answered)
    }
}

/// A snapshot of the requests a scenario's backend received, with query helpers.
#[derive(Debug, Clone, Default)]
pub struct BackendLog(pub Vec<Call>);

impl BackendLog {
    pub fn calls(&self) -> &[Call] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Calls whose `token` parameter is `token` (`None`: calls without a token).
    pub fn for_token(&self, token: Option<&str>) -> Vec<&Call> {
        self.0.iter().filter(|c| c.token() == token).collect()
    }

    pub fn of_type(&self, request_type: &str) -> Vec<&Call> {
        self.0
            .iter()
            .filter(|c| c.request_type() == Some(request_type))
            .collect()
    }

    pub fn matching(&self, pred: impl Fn(&Call) -> bool) -> Vec<&Call> {
        self.0.iter().filter(|c| pred(c)).collect()
    }

    /// Every recorded request, one a line (wiremock style), for failure messages.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "The backend received no request.".to_string();
        }
        let mut out = format!("The backend received {} request(s):", self.0.len());
        for (i, call) in self.0.iter().enumerate() {
            let _ = write!(out, "\n  #{} {call}", i + 1);
        }
        out
    }
}

#[derive(Debug, Default)]
struct ScenarioState {
    /// Answers by token; an empty string stands for "no token".
    by_token: HashMap<String, Answer>,
    /// Answer for tokens without their own rule. `None`: a plain 403.
    default: Option<Answer>,
    /// Delay added to every answer (a slow backend).
    delay: Option<Duration>,
    /// Drop every connection without answering.
    drop_connections: bool,
    log: Vec<Call>,
}

impl ScenarioState {
    fn answer_for(&self, token: Option<&str>) -> Answer {
        let mut answer = token
            .and_then(|t| self.by_token.get(t))
            .or(self.default.as_ref())
            .cloned()
            .unwrap_or_else(Answer::deny);
        if answer.delay.is_none() {
            answer.delay = self.delay;
        }
        answer
    }
}

struct ScenarioSlot {
    started: Instant,
    state: Mutex<ScenarioState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A step that panicked while holding the lock leaves consistent data behind: every critical
    // section is a single push or insert.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Scenarios by scope: `Some` while live, `None` once ended (a call under an ended scenario's
/// path stays a stray, never re-routed by its name: it is cross-talk).
type Routes = Arc<Mutex<HashMap<String, Option<Arc<ScenarioSlot>>>>>;

/// Reads a request through the run's dialect.
fn read(dialect: Dialect, request: &Request) -> Reading {
    let content_type = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    dialect.read(RawRequest {
        method: request.method.as_str(),
        url: &request.url,
        content_type,
        body: &request.body,
    })
}

fn record(request: &Request, reading: Reading, slot: &ScenarioSlot, answer: Option<Answer>, answered: String) -> Call {
    let at = Instant::now();
    Call {
        at,
        offset: at.saturating_duration_since(slot.started),
        method: request.method.to_string(),
        path: request.url.path().to_string(),
        query: reading.fields,
        publish: reading.publish,
        body: reading.body,
        answered,
        answer,
    }
}

fn scope_of(request: &Request) -> Option<&str> {
    request
        .url
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty())
}

/// The live scope a reported stream name belongs to: the longest scope `S` with the name `S`
/// or `S-…`. A name the server reports with its application in front (`live/S-s`) is tried
/// after each `/` too.
fn scope_of_name(routes: &HashMap<String, Option<Arc<ScenarioSlot>>>, name: &str) -> Option<Arc<ScenarioSlot>> {
    let mut candidates = vec![name];
    candidates.extend(name.match_indices('/').map(|(i, _)| &name[i + 1..]));
    for candidate in candidates {
        let found = routes
            .iter()
            .filter_map(|(scope, slot)| slot.as_ref().map(|slot| (scope, slot)))
            .filter(|(scope, _)| {
                candidate == scope.as_str()
                    || candidate
                        .strip_prefix(scope.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(scope, _)| scope.len());
        if let Some((_, slot)) = found {
            return Some(slot.clone());
        }
    }
    None
}

/// The scenario a request belongs to: by the first path segment, else by the stream name.
fn route(routes: &Routes, request: &Request, reading: &Reading) -> Option<Arc<ScenarioSlot>> {
    let routes = lock(routes);
    if let Some(slot) = scope_of(request).and_then(|s| routes.get(s)) {
        return slot.clone();
    }
    scope_of_name(&routes, reading.name()?)
}

/// Whether a call is the publish check of the suite's own source (see [`crate::source`]): its
/// marker is a field of the call (a dialect that forwards the client's query) or inside `qs`.
fn is_own_source(reading: &Reading, secret: &str) -> bool {
    let marker = format!("{SOURCE_PARAM}={secret}");
    reading.field(SOURCE_PARAM) == Some(secret)
        || reading.field("qs").is_some_and(|qs| qs.split('&').any(|p| p == marker))
}

/// Routes a request to its scenario (path, else stream name), records it, answers as programmed.
struct Router {
    routes: Routes,
    strays: Arc<ScenarioSlot>,
    dialect: Dialect,
    source_secret: String,
}

impl Respond for Router {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let reading = read(self.dialect, request);
        if is_own_source(&reading, &self.source_secret) {
            tracing::debug!(name = ?reading.name(), "auth backend: the suite's own source is allowed");
            return self.dialect.write(&Answer::allow()).template();
        }
        let Some(slot) = route(&self.routes, request, &reading) else {
            let call = record(request, reading, &self.strays, None, "404 (no live scenario)".into());
            tracing::warn!(%call, "auth backend: request for no live scenario");
            lock(&self.strays.state).log.push(call);
            return ResponseTemplate::new(404);
        };
        let mut state = lock(&slot.state);
        let mut call = record(request, reading, &slot, None, String::new());
        let answer = state.answer_for(call.token());
        let written = self.dialect.write(&answer);
        call.answered = if written == answer {
            answer.to_string()
        } else {
            format!("{answer} (written for {} as {written})", self.dialect)
        };
        call.answer = Some(answer);
        tracing::debug!(%call, "auth backend");
        state.log.push(call);
        written.template()
    }
}

/// Matches requests of a scenario that is dropping connections.
struct Dropping {
    routes: Routes,
    dialect: Dialect,
    source_secret: String,
}

impl Match for Dropping {
    fn matches(&self, request: &Request) -> bool {
        let reading = read(self.dialect, request);
        if is_own_source(&reading, &self.source_secret) {
            return false;
        }
        route(&self.routes, request, &reading).is_some_and(|s| lock(&s.state).drop_connections)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the conformance backend")]
struct Dropped;

/// The backend shared by a run.
pub struct Backend {
    server: MockServer,
    base: Url,
    closed_port: u16,
    routes: Routes,
    strays: Arc<ScenarioSlot>,
    dialect: Dialect,
    source_secret: String,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("listen", self.server.address())
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl Backend {
    pub async fn start(options: &BackendOptions) -> Result<Backend, BackendError> {
        let listener = TcpListener::bind(options.listen).map_err(|source| BackendError::Listen {
            addr: options.listen,
            source,
        })?;
        // Request recording stays off: the router keeps its own log with arrival times.
        let server = MockServer::builder()
            .listener(listener)
            .disable_request_recording()
            .start()
            .await;
        let base = match &options.advertised_base {
            Some(base) => base.clone(),
            None => Url::parse(&server.uri()).expect("wiremock gives a valid URI"),
        };
        // A port that was free a moment ago: connecting to it is refused. It stands for a
        // backend that is down.
        let closed_port = match options.unreachable_port {
            Some(port) => port,
            None => TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .map_err(BackendError::ClosedPort)?
                .port(),
        };
        let routes: Routes = Arc::default();
        let strays = Arc::new(ScenarioSlot {
            started: Instant::now(),
            state: Mutex::default(),
        });
        // Priority 1 beats the router's default 5. The request is recorded in its scenario's log
        // before the connection is cut.
        let drop_routes = routes.clone();
        let dialect = options.dialect;
        let source_secret = uuid::Uuid::new_v4().simple().to_string();
        Mock::given(any())
            .and(Dropping {
                routes: routes.clone(),
                dialect,
                source_secret: source_secret.clone(),
            })
            .respond_with_err(move |request: &Request| {
                let reading = read(dialect, request);
                if let Some(slot) = route(&drop_routes, request, &reading) {
                    let call = record(
                        request,
                        reading,
                        &slot,
                        None,
                        "connection closed without an answer".into(),
                    );
                    tracing::debug!(%call, "auth backend");
                    lock(&slot.state).log.push(call);
                }
                Dropped
            })
            .with_priority(1)
            .named("drop connection")
            .mount(&server)
            .await;
        Mock::given(any())
            .respond_with(Router {
                routes: routes.clone(),
                strays: strays.clone(),
                dialect,
                source_secret: source_secret.clone(),
            })
            .named("scenario router")
            .mount(&server)
            .await;
        tracing::info!(listen = %server.address(), base = %base, %dialect, "auth backend started");
        Ok(Backend {
            server,
            base,
            closed_port,
            routes,
            strays,
            dialect,
            source_secret,
        })
    }

    /// The marker of the suite's own source's publish calls (see [`crate::source`]).
    pub fn source_secret(&self) -> &str {
        &self.source_secret
    }

    /// How the server under test calls this backend.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Requests that no live scenario owns, by path or by stream name.
    pub fn strays(&self) -> BackendLog {
        BackendLog(lock(&self.strays.state).log.clone())
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Opens the backend of one scenario. Dropping the handle removes its route.
    pub fn scenario(&self, scope: &str) -> ScenarioBackend {
        assert!(
            !scope.is_empty() && !scope.contains('/'),
            "scope must be one path segment"
        );
        let slot = Arc::new(ScenarioSlot {
            started: Instant::now(),
            state: Mutex::default(),
        });
        lock(&self.routes).insert(scope.to_string(), Some(slot.clone()));
        let url = self
            .base
            .join(&format!("/{scope}/on_play"))
            .expect("scope is a valid path segment");
        let mut unreachable = url.clone();
        unreachable.set_host(Some("127.0.0.1")).expect("127.0.0.1 is a host");
        unreachable
            .set_port(Some(self.closed_port))
            .expect("http URL takes a port");
        ScenarioBackend {
            scope: scope.to_string(),
            url,
            unreachable_url: unreachable,
            slot,
            routes: self.routes.clone(),
        }
    }
}

/// The backend of one scenario: its URL, its programmed answers, its request log.
pub struct ScenarioBackend {
    scope: String,
    url: Url,
    unreachable_url: Url,
    slot: Arc<ScenarioSlot>,
    routes: Routes,
}

impl fmt::Debug for ScenarioBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScenarioBackend")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Drop for ScenarioBackend {
    fn drop(&mut self) {
        lock(&self.routes).insert(self.scope.clone(), None);
    }
}

impl ScenarioBackend {
    /// The URL to configure as `on_play`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The same path on a closed port: every call is refused at the TCP level.
    pub fn unreachable_url(&self) -> &Url {
        &self.unreachable_url
    }

    pub fn started(&self) -> Instant {
        self.slot.started
    }

    /// Programs the answer for `token`, or for every token without its own rule (`None`).
    /// Replaces any earlier answer for it: a scenario can change its backend mid-run.
    pub fn answer(&self, token: Option<&str>, answer: Answer) {
        let mut state = lock(&self.slot.state);
        state.drop_connections = false;
        match token {
            Some(t) => {
                state.by_token.insert(t.to_string(), answer);
            }
            None => state.default = Some(answer),
        }
    }

    /// Programs one answer for every token, forgetting the per-token ones.
    pub fn answer_all(&self, answer: Answer) {
        let mut state = lock(&self.slot.state);
        state.drop_connections = false;
        state.by_token.clear();
        state.default = Some(answer);
    }

    /// The answer currently programmed for `token`.
    pub fn current_answer(&self, token: Option<&str>) -> Answer {
        lock(&self.slot.state).answer_for(token)
    }

    /// Every answer from now on is held back by `delay` (`None`: no delay).
    pub fn delay_all(&self, delay: Option<Duration>) {
        let mut state = lock(&self.slot.state);
        state.delay = delay;
        for answer in state.by_token.values_mut() {
            answer.delay = None;
        }
        if let Some(a) = state.default.as_mut() {
            a.delay = None;
        }
    }

    /// From now on every connection is closed without an answer.
    pub fn drop_connections(&self, on: bool) {
        lock(&self.slot.state).drop_connections = on;
    }

    pub fn log(&self) -> BackendLog {
        BackendLog(lock(&self.slot.state).log.clone())
    }

    /// Waits until a recorded call satisfies `pred`, polling every 20 ms, for at most `within`.
    pub async fn wait_for(&self, within: Duration, pred: impl Fn(&Call) -> bool) -> Option<Call> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(c) = lock(&self.slot.state).log.iter().find(|c| pred(c)) {
                return Some(c.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn backend(dialect: Dialect) -> Backend {
        Backend::start(&BackendOptions {
            dialect,
            ..BackendOptions::default()
        })
        .await
        .expect("the backend starts on a free loopback port")
    }

    /// A form POST the way nginx-rtmp sends it: one URL for the application.
    async fn post_form(backend: &Backend, path: &str, form: &str) -> u16 {
        reqwest::Client::new()
            .post(backend.base().join(path).unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .expect("the backend answers")
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn a_shared_url_is_routed_by_the_reported_stream_name() {
        let backend = backend(Dialect::NginxRtmp).await;
        let a = backend.scenario("ca001");
        let b = backend.scenario("ca002");
        a.answer(Some("t1"), Answer::allow());
        b.answer_all(Answer::deny());
        let form = |name: &str| format!("call=play&addr=127.0.0.2&clientid=3&app=static&name={name}&token=t1");
        assert_eq!(post_form(&backend, "/nginx/on_play", &form("ca001-s")).await, 200);
        assert_eq!(post_form(&backend, "/nginx/on_play", &form("ca002-s")).await, 403);
        assert_eq!(a.log().len(), 1, "{}", a.log().describe());
        assert_eq!(b.log().len(), 1, "{}", b.log().describe());
        let log = a.log();
        let call = &log.calls()[0];
        assert_eq!(call.param("name"), Some("ca001-s"));
        assert_eq!(call.param("ip"), Some("127.0.0.2"));
        assert_eq!(call.request_type(), Some("new_session"));
        assert_eq!(call.token(), Some("t1"));
        assert!(backend.strays().is_empty(), "{}", backend.strays().describe());
    }

    #[tokio::test]
    async fn a_name_of_no_live_scenario_is_a_stray() {
        let backend = backend(Dialect::NginxRtmp).await;
        let a = backend.scenario("ca001");
        a.answer_all(Answer::allow());
        // A name that only shares the scope's first characters is not the scope's.
        for name in ["ca0010-s", "other-s", ""] {
            let form = format!("call=play&addr=127.0.0.2&name={name}");
            assert_eq!(post_form(&backend, "/nginx/on_play", &form).await, 404, "{name}");
        }
        assert!(a.log().is_empty(), "{}", a.log().describe());
        let strays = backend.strays();
        assert_eq!(strays.len(), 3, "{}", strays.describe());
        assert!(
            strays.calls()[0].to_string().contains("name=ca0010-s"),
            "{}",
            strays.describe()
        );
        // A scenario that ended takes no more calls.
        drop(a);
        let form = "call=play&addr=127.0.0.2&name=ca001-s";
        assert_eq!(post_form(&backend, "/nginx/on_play", form).await, 404);
        assert_eq!(backend.strays().len(), 4);
    }

    #[tokio::test]
    async fn the_longest_scope_wins_and_an_application_prefix_is_ignored() {
        // Static mode scopes are case keys, which hold dashes themselves.
        let backend = backend(Dialect::MediaMtx).await;
        let short = backend.scenario("tokens");
        let long = backend.scenario("tokens-3fa2c1d0");
        for slot in [&short, &long] {
            slot.answer_all(Answer::allow());
        }
        let client = reqwest::Client::new();
        let body = serde_json::json!({
            "user": "", "password": "", "token": "t1", "ip": "127.0.0.2", "action": "read",
            "path": "live/tokens-3fa2c1d0-s", "protocol": "rtmp", "id": null, "query": ""
        });
        let status = client
            .post(backend.base().join("/mediamtx/auth").unwrap())
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        assert_eq!(long.log().len(), 1);
        assert!(short.log().is_empty());
    }

    #[tokio::test]
    async fn a_per_case_path_still_routes_and_wins_over_the_name() {
        let backend = backend(Dialect::Flussonic).await;
        let a = backend.scenario("ca001");
        let b = backend.scenario("ca002");
        a.answer_all(Answer::allow());
        b.answer_all(Answer::deny());
        // The path says ca001 even though the name says ca002.
        let mut url = a.url().clone();
        url.query_pairs_mut()
            .append_pair("name", "ca002-s")
            .append_pair("token", "t1");
        let status = reqwest::get(url).await.unwrap().status();
        assert_eq!(status, 200);
        assert_eq!((a.log().len(), b.log().len()), (1, 0));
        // The path of an ended scenario is a stray even when the name is of a live one.
        let ended = backend.scenario("ca003");
        let mut url = ended.url().clone();
        drop(ended);
        url.query_pairs_mut().append_pair("name", "ca002-s");
        assert_eq!(reqwest::get(url).await.unwrap().status(), 404);
        assert_eq!(b.log().len(), 0);
        assert_eq!(backend.strays().len(), 1, "{}", backend.strays().describe());
        // No path scope: the name routes a flussonic call too.
        let mut url = backend.base().join("/shared/on_play").unwrap();
        url.query_pairs_mut().append_pair("name", "ca002-s");
        assert_eq!(reqwest::get(url).await.unwrap().status(), 403);
        assert_eq!(b.log().len(), 1);
    }

    #[tokio::test]
    async fn answers_are_written_in_the_dialect_and_logged_as_programmed() {
        let backend = backend(Dialect::Srs).await;
        let a = backend.scenario("ca001");
        a.answer_all(Answer::allow().with_header("X-AuthDuration", "1"));
        let body = serde_json::json!({
            "action": "on_play", "client_id": "x1", "ip": "127.0.0.2", "app": "live",
            "stream": "ca001-s", "param": "?token=t1", "tcUrl": "rtmp://127.0.0.1/live"
        });
        let response = reqwest::Client::new()
            .post(backend.base().join("/srs/hooks").unwrap())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"],
            0,
            "{text}"
        );
        let log = a.log();
        let call = &log.calls()[0];
        assert_eq!(
            call.answer.as_ref().and_then(Answer::auth_duration),
            Some(Duration::from_secs(1))
        );
        assert!(call.answered.contains("written for srs"), "{call}");
        // Dropping connections is routed by name as well.
        a.drop_connections(true);
        let cut = reqwest::Client::new()
            .post(backend.base().join("/srs/hooks").unwrap())
            .json(&body)
            .send()
            .await;
        assert!(cut.is_err(), "{cut:?}");
        assert_eq!(a.log().len(), 2);
    }
}
