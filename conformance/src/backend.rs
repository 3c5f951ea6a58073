//! The programmable auth backend: one wiremock [`MockServer`] for the whole run, with one
//! path prefix per scenario.
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
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_base: None,
            unreachable_port: None,
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
            write!(f, " {n}: {v}")?;
        }
        if let Some(body) = &self.body {
            write!(f, " body {body}")?;
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
    /// The query exactly as sent, decoded, in order.
    pub query: Vec<(String, String)>,
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

type Routes = Arc<Mutex<HashMap<String, Arc<ScenarioSlot>>>>;

fn record(request: &Request, slot: &ScenarioSlot, answer: Option<Answer>, answered: String) -> Call {
    let at = Instant::now();
    Call {
        at,
        offset: at.saturating_duration_since(slot.started),
        method: request.method.to_string(),
        path: request.url.path().to_string(),
        query: request
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        body: match serde_json::from_slice(&request.body) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            _ => None,
        },
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

/// Routes a request to its scenario by the first path segment, records it, answers as programmed.
struct Router {
    routes: Routes,
    strays: Arc<ScenarioSlot>,
}

impl Router {
    fn slot(&self, request: &Request) -> Option<Arc<ScenarioSlot>> {
        let scope = scope_of(request)?;
        lock(&self.routes).get(scope).cloned()
    }
}

impl Respond for Router {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Some(slot) = self.slot(request) else {
            let call = record(request, &self.strays, None, "404 (no live scenario)".into());
            tracing::warn!(%call, "auth backend: request for no live scenario");
            lock(&self.strays.state).log.push(call);
            return ResponseTemplate::new(404);
        };
        let mut state = lock(&slot.state);
        let mut call = record(request, &slot, None, String::new());
        let answer = state.answer_for(call.token());
        call.answered = answer.to_string();
        call.answer = Some(answer.clone());
        tracing::debug!(%call, "auth backend");
        state.log.push(call);
        answer.template()
    }
}

/// Matches requests of a scenario that is dropping connections.
struct Dropping {
    routes: Routes,
}

impl Match for Dropping {
    fn matches(&self, request: &Request) -> bool {
        let Some(scope) = scope_of(request) else {
            return false;
        };
        let slot = lock(&self.routes).get(scope).cloned();
        slot.is_some_and(|s| lock(&s.state).drop_connections)
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
        Mock::given(any())
            .and(Dropping { routes: routes.clone() })
            .respond_with_err(move |request: &Request| {
                let slot = scope_of(request).and_then(|s| lock(&drop_routes).get(s).cloned());
                if let Some(slot) = slot {
                    let call = record(request, &slot, None, "connection closed without an answer".into());
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
            })
            .named("scenario router")
            .mount(&server)
            .await;
        tracing::info!(listen = %server.address(), base = %base, "auth backend started");
        Ok(Backend {
            server,
            base,
            closed_port,
            routes,
            strays,
        })
    }

    /// Requests that arrived under no live scenario's prefix.
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
        lock(&self.routes).insert(scope.to_string(), slot.clone());
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
        lock(&self.routes).remove(&self.scope);
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
