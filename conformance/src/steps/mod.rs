//! Cucumber step definitions, one file per domain concept, and the [`UsherWorld`] they share.
//!
//! A World is fresh per scenario. Everything a scenario creates on the server is namespaced by
//! its *scope* (a short id unique in the run): stream `s` is `<scope>-s` on the server, user `u1`
//! is `<scope>-u1` in `X-UserId`, and the backend answers under `/<scope>/…`. So scenarios run
//! concurrently against one server without seeing each other.

pub mod backend;
pub mod cluster;
pub mod configurator;
pub mod dvr;
pub mod history;
pub mod media;
pub mod properties;
pub mod publish;
pub mod server;
pub mod sessions;
pub mod stream;
pub mod viewer;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::backend::{Backend, ScenarioBackend};
use crate::clients::hls::HlsClient;
use crate::clients::rtmp::{RtmpPlayer, STATIC_APP};
use crate::clients::rtsp::RtspSession;
use crate::clients::tshttp::TsSession;
use crate::clients::{Attempt, ViewerProfile};
use crate::source::{self as own_source, Source, SourceSpec};
use crate::target::{ApiAnswer, StreamSpec, Target};

/// What a run shares between its scenarios.
pub struct RunContext {
    pub target: Target,
    pub backend: Backend,
    /// Prefix of every scope in this run (random, so runs against one external server do not
    /// collide).
    pub run_id: String,
    /// Multiplies every upper time bound (slow machines).
    pub time_scale: f64,
    /// Name of the token query parameter (`auth_token`).
    pub token_param: String,
    /// Seed of the generated (property) cases: `USHER_SEED` when set, else random. Each
    /// scenario derives its own from it and its name, and prints it when it fails.
    pub seed: u64,
    /// The application in RTMP URLs (`static` unless the manifest names another).
    pub rtmp_app: String,
    /// The suite publishes each case's stream itself, here (`[source]` of the manifest).
    pub source: Option<SourceSpec>,
    /// What a viewer plays `over the target's protocol` (the capabilities' default protocol).
    pub default_proto: Proto,
    counter: AtomicU64,
    /// Concurrent scenarios hold it shared, `@serial` ones exclusively.
    exclusive: Arc<RwLock<()>>,
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("target", &self.target)
            .field("backend", &self.backend)
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl RunContext {
    pub fn new(target: Target, backend: Backend, time_scale: f64, token_param: String) -> Self {
        RunContext {
            target,
            backend,
            run_id: uuid::Uuid::new_v4().simple().to_string()[..6].to_string(),
            time_scale,
            token_param,
            seed: seed_from_env().unwrap_or_else(rand_seed),
            rtmp_app: STATIC_APP.to_string(),
            source: None,
            default_proto: Proto::Hls,
            counter: AtomicU64::new(0),
            exclusive: Arc::new(RwLock::new(())),
        }
    }

    /// Replaces the seed of generated cases (`usher check --seed`).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Replaces the application of RTMP URLs (`rtmp_app` of the manifest).
    pub fn with_rtmp_app(mut self, app: &str) -> Self {
        self.rtmp_app = app.to_string();
        self
    }

    /// The suite publishes each case's stream itself (`[source]` of the manifest).
    pub fn with_source(mut self, source: SourceSpec) -> Self {
        self.source = Some(source);
        self
    }

    /// Replaces the protocol of protocol-neutral plays (`default_protocol` of the manifest).
    pub fn with_default_proto(mut self, proto: Proto) -> Self {
        self.default_proto = proto;
        self
    }

    fn next_scope(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("c{}{n:03}", self.run_id)
    }

    /// Stretches an upper bound by the run's time scale.
    pub fn bound(&self, d: Duration) -> Duration {
        d.mul_f64(self.time_scale)
    }
}

/// The run the Worlds of this process belong to. Cucumber builds Worlds without arguments, so
/// the runner installs the context here before the run and removes it after.
static CONTEXT: Mutex<Option<Arc<RunContext>>> = Mutex::new(None);

pub(crate) fn install(ctx: Option<Arc<RunContext>>) {
    *CONTEXT.lock().unwrap_or_else(|e| e.into_inner()) = ctx;
}

fn current() -> Option<Arc<RunContext>> {
    CONTEXT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `USHER_SEED`, decimal or `0x` hex.
fn seed_from_env() -> Option<u64> {
    let text = std::env::var("USHER_SEED").ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(seed) => Some(seed),
        Err(_) => {
            tracing::warn!(value = text, "USHER_SEED is not a number; using a random seed");
            None
        }
    }
}

fn rand_seed() -> u64 {
    let (a, _) = uuid::Uuid::new_v4().as_u64_pair();
    a
}

/// A stream of the scenario.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub server_name: String,
    pub spec: StreamSpec,
    pub in_place: bool,
}

/// How a step names the run's default protocol (see [`UsherWorld::proto`]).
pub const TARGETS_PROTOCOL: &str = "the target's protocol";

/// The delivery protocol of a play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Hls,
    MpegTs,
    Rtmp,
    Rtsp,
}

impl Proto {
    pub fn parse(s: &str) -> Proto {
        match s {
            "HLS" => Proto::Hls,
            "MPEG-TS" => Proto::MpegTs,
            "RTMP" => Proto::Rtmp,
            "RTSP" => Proto::Rtsp,
            other => panic!("unknown protocol `{other}` (HLS, MPEG-TS, RTMP or RTSP)"),
        }
    }

    /// A protocol as the capabilities name it (`hls`, `mpegts`, `rtmp`, `rtsp`).
    pub fn from_capability(name: &str) -> Option<Proto> {
        match name {
            "hls" => Some(Proto::Hls),
            "mpegts" => Some(Proto::MpegTs),
            "rtmp" => Some(Proto::Rtmp),
            "rtsp" => Some(Proto::Rtsp),
            _ => None,
        }
    }

    /// The `proto` value the backend should see (T8).
    pub fn wire_name(self) -> &'static str {
        match self {
            Proto::Hls => "hls",
            Proto::MpegTs => "tshttp",
            Proto::Rtmp => "rtmp",
            Proto::Rtsp => "rtsp",
        }
    }

    /// The session is its connection (SESS-07): ended by the server closing it.
    pub fn is_persistent(self) -> bool {
        self != Proto::Hls
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Hls => "HLS",
            Proto::MpegTs => "MPEG-TS",
            Proto::Rtmp => "RTMP",
            Proto::Rtsp => "RTSP",
        })
    }
}

/// One play request of a viewer, as the scenario stated it.
#[derive(Debug, Clone)]
pub struct Play {
    pub stream: String,
    pub proto: Proto,
    /// The token sent; `None`: no token parameter.
    pub token: Option<String>,
    /// Further query parameters of the client URL (after the token).
    pub query: Vec<(String, String)>,
    /// The cluster node played on (`on node B`); `None`: the target (node A of a cluster).
    pub node: Option<String>,
}

/// A running play over a persistent connection: the server ends the session by closing it.
#[derive(Debug)]
pub enum Connection {
    Ts(TsSession),
    Rtmp(RtmpPlayer),
    Rtsp(RtspSession),
}

impl Connection {
    /// Waits at most `within` for the server to close it; how it ended, if it did.
    pub async fn wait_closed(&mut self, within: Duration) -> Option<String> {
        match self {
            Connection::Ts(s) => s.wait_closed(within).await.map(|c| c.reason),
            Connection::Rtmp(p) => p.wait_closed(within).await.map(|c| c.reason),
            Connection::Rtsp(s) => s.wait_closed(within).await.map(|c| c.reason),
        }
    }

    /// Waits at most `within` for more media (a few packets or frames).
    pub async fn wait_more(&mut self, within: Duration) -> bool {
        match self {
            Connection::Ts(s) => s.wait_more(188 * 5, within).await,
            Connection::Rtmp(p) => p.wait_more_video(2, within).await,
            Connection::Rtsp(s) => s.wait_more(2, within).await,
        }
    }

    /// What arrived so far and whether it ended, for messages.
    pub fn describe(&self) -> String {
        match self {
            Connection::Ts(s) => format!("{} bytes of MPEG-TS, closed: {:?}", s.bytes(), s.closed()),
            Connection::Rtmp(p) => format!("{:?}, closed: {:?}", p.seen(), p.closed()),
            Connection::Rtsp(s) => format!("{:?}, closed: {:?}", s.seen(), s.closed()),
        }
    }
}

/// A viewer: one client address and the headers its player sends.
#[derive(Debug)]
pub struct Viewer {
    pub profile: ViewerProfile,
    pub hls: Option<HlsClient>,
    /// The node [`Viewer::hls`] talks to (`None`: the target).
    pub hls_node: Option<String>,
    pub plays: Vec<(Play, Attempt)>,
    /// The running MPEG-TS, RTMP or RTSP play, if any.
    pub live: Option<Connection>,
}

impl Viewer {
    pub fn last(&self) -> Option<&(Play, Attempt)> {
        self.plays.last()
    }
}

enum Exclusive {
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    Alone(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
}

/// The state of one scenario.
#[derive(cucumber::World)]
#[world(init = Self::start)]
pub struct UsherWorld {
    pub ctx: Arc<RunContext>,
    pub scope: String,
    pub backend: ScenarioBackend,
    /// Streams by the scenario's alias.
    pub streams: BTreeMap<String, StreamEntry>,
    pub viewers: BTreeMap<String, Viewer>,
    pub publishers: BTreeMap<String, publish::Publisher>,
    pub admin_token: Option<String>,
    pub last_api: Option<ApiAnswer>,
    /// The backend URL is a closed port for streams put in place from now on.
    pub backend_unreachable: bool,
    /// Server-wide settings to put back after the scenario.
    pub restore_server_config: Option<Value>,
    /// The token query parameter, when the scenario renamed it (`auth_token`, CFG-07).
    pub token_param: Option<String>,
    /// When the operator forced a re-check (REQ-07).
    pub reauth_at: Option<std::time::Instant>,
    /// Generated cases, between the step that plays them and the step that checks them.
    pub generated: Option<properties::Generated>,
    /// Watchers: clients that keep playing and record what picture they get (`media`).
    pub watchers: BTreeMap<String, media::Watcher>,
    /// Recordings and what archive requests received (`dvr`).
    pub archive: dvr::ArchiveState,
    /// What the suite publishes itself, by stream alias (`[source]` of the manifest).
    pub sources: BTreeMap<String, Source>,
    /// The cluster changed under the scenario (a node stopped, the store restarted): the
    /// clean-up starts stopped nodes again.
    pub cluster_touched: bool,
    /// Each viewer's session as `the server's session of viewer … shows` last read it, for
    /// the `as before` and `more than before` values.
    pub sessions_seen: BTreeMap<String, Value>,
    exclusive: Option<Exclusive>,
}

impl fmt::Debug for UsherWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsherWorld")
            .field("scope", &self.scope)
            .field("streams", &self.streams)
            .field("viewers", &self.viewers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A World was asked for outside [`crate::run`].
#[derive(Debug, thiserror::Error)]
#[error("no conformance run is installed: run scenarios through usher_conformance::run")]
pub struct NoRun;

impl UsherWorld {
    async fn start() -> Result<Self, NoRun> {
        let ctx = current().ok_or(NoRun)?;
        let scope = ctx.next_scope();
        let backend = ctx.backend.scenario(&scope);
        Ok(UsherWorld {
            ctx,
            scope,
            backend,
            streams: BTreeMap::new(),
            viewers: BTreeMap::new(),
            publishers: BTreeMap::new(),
            admin_token: None,
            last_api: None,
            backend_unreachable: false,
            restore_server_config: None,
            token_param: None,
            reauth_at: None,
            generated: None,
            watchers: BTreeMap::new(),
            archive: dvr::ArchiveState::default(),
            sources: BTreeMap::new(),
            cluster_touched: false,
            sessions_seen: BTreeMap::new(),
            exclusive: None,
        })
    }

    /// Takes the run-wide lock: shared for ordinary scenarios, exclusive for `@serial` ones
    /// (which change server-wide settings). Cucumber's own `@serial` does not wait for the
    /// concurrent scenarios already running, so the suite enforces it itself.
    pub async fn enter(&mut self, serial: bool) {
        let lock = self.ctx.exclusive.clone();
        self.exclusive = Some(if serial {
            Exclusive::Alone(lock.write_owned().await)
        } else {
            Exclusive::Shared(lock.read_owned().await)
        });
    }

    /// Undoes what the scenario changed on the server. Runs even when a step failed.
    pub async fn leave(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for viewer in self.viewers.values_mut() {
            viewer.live = None;
        }
        self.watchers.clear();
        self.publishers.clear();
        self.sources.clear();
        if let Some(config) = self.restore_server_config.take()
            && let Err(e) = self.ctx.target.api().put_server_config(&config).await
        {
            problems.push(format!("restoring the server settings {config}: {e}"));
        }
        if self.cluster_touched
            && let Some(cluster) = self.ctx.target.cluster()
        {
            for node in cluster.nodes() {
                if let Err(e) = cluster.ensure_node(&node.name).await {
                    problems.push(e);
                }
            }
        }
        for entry in self.streams.values().filter(|e| e.in_place) {
            for api in self.apis() {
                if let Err(e) = api.delete_stream(&entry.server_name).await {
                    tracing::warn!(stream = %entry.server_name, error = %e, "cannot delete stream");
                }
            }
        }
        self.exclusive = None;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The management API of the target, or of every node of a cluster.
    fn apis(&self) -> Vec<crate::target::Api> {
        match self.ctx.target.cluster() {
            Some(c) => c.nodes().iter().map(|n| n.api.clone()).collect(),
            None => vec![self.ctx.target.api().clone()],
        }
    }

    pub fn stream_name(&self, alias: &str) -> String {
        format!("{}-{alias}", self.scope)
    }

    /// The `X-UserId` of user `alias` in this scenario. An all-digit alias stays all digits, its
    /// leading zeros first (`007` → `007<n>`, `7` → `7<n>`), so that ids equal as integers but
    /// different as strings can be written (RESP-06).
    pub fn user_id(&self, alias: &str) -> String {
        if !alias.is_empty() && alias.bytes().all(|b| b.is_ascii_digit()) {
            let hex = self.scope.strip_prefix('c').unwrap_or(&self.scope);
            let n = u64::from_str_radix(hex, 16).unwrap_or_default();
            return format!("{alias}{n}");
        }
        format!("{}-{alias}", self.scope)
    }

    /// The query parameter that carries the token for this scenario.
    pub fn token_param(&self) -> &str {
        self.token_param.as_deref().unwrap_or(&self.ctx.token_param)
    }

    /// Puts every declared stream in place that is not yet.
    pub async fn ensure_streams(&mut self) {
        let pending: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, e)| !e.in_place)
            .map(|(a, _)| a.clone())
            .collect();
        for alias in pending {
            self.ensure_stream(&alias).await;
        }
    }

    /// Puts stream `alias` in place through the API (once).
    pub async fn ensure_stream(&mut self, alias: &str) {
        let unreachable = self.backend_unreachable;
        let backend_url = if unreachable {
            self.backend.unreachable_url().clone()
        } else {
            self.backend.url().clone()
        };
        // Publish calls go to a path of their own in the scenario's backend.
        let publish_url = backend_url.join("on_publish").expect("a relative path joins");
        let Some(entry) = self.streams.get_mut(alias) else {
            panic!("stream \"{alias}\" was never declared (use: Given a stream \"{alias}\" with on_play auth)");
        };
        if entry.in_place {
            return;
        }
        if let Some(auth) = entry.spec.on_play.as_mut()
            && auth.url.is_empty()
        {
            auth.url = backend_url.to_string();
        }
        if let Some(auth) = entry.spec.on_publish.as_mut()
            && auth.url.is_empty()
        {
            auth.url = publish_url.to_string();
        }
        // A cluster serves every stream on every node.
        for api in self.ctx.target.cluster().map_or_else(
            || vec![self.ctx.target.api().clone()],
            |c| c.nodes().iter().map(|n| n.api.clone()).collect(),
        ) {
            let answer = api
                .put_stream(&entry.server_name, &entry.spec)
                .await
                .unwrap_or_else(|e| panic!("putting stream \"{alias}\" in place: {e}"));
            if answer.status != 200 {
                panic!(
                    "the API refused stream \"{alias}\" ({}): {} {}",
                    entry.server_name, answer.status, answer.text
                );
            }
        }
        entry.in_place = true;
        let feeds = entry.spec.input.is_none() && !entry.spec.publish;
        let server_name = entry.server_name.clone();
        if feeds && let Some(spec) = self.ctx.source.clone() {
            self.start_source(alias, &spec, &server_name).await;
        }
    }

    /// Publishes the suite's synthetic media to stream `alias` (server name `server_name`) and
    /// keeps it up for the scenario. Its publish check carries the run's source marker, which
    /// the backend allows without logging it into the scenario's calls.
    async fn start_source(&mut self, alias: &str, spec: &SourceSpec, server_name: &str) {
        let addr = tokio::net::lookup_host(&spec.addr)
            .await
            .ok()
            .and_then(|mut found| found.next())
            .unwrap_or_else(|| panic!("the source's publish address `{}` does not resolve", spec.addr));
        let query = [(
            own_source::SOURCE_PARAM.to_string(),
            self.ctx.backend.source_secret().to_string(),
        )];
        let profile = crate::clients::ViewerProfile::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        match own_source::publish(spec, addr, profile, server_name, &query).await {
            Ok(source) => {
                self.sources.insert(alias.to_string(), source);
            }
            Err(attempt) => panic!(
                "{}",
                self.explain(format!(
                    "the suite's own source could not publish stream \"{alias}\" to {}: {attempt}",
                    spec.url
                ))
            ),
        }
    }

    /// A failure message: what went wrong, then everything the backend saw.
    pub fn explain(&self, what: impl fmt::Display) -> String {
        let mut out = format!("{what}\n{}", self.backend.log().describe());
        for (name, publisher) in &self.publishers {
            out.push_str(&format!("\npublisher \"{name}\": {publisher}"));
        }
        for (name, viewer) in &self.viewers {
            for (play, attempt) in &viewer.plays {
                let token = play
                    .token
                    .as_ref()
                    .map_or("without a token".to_string(), |t| format!("with token \"{t}\""));
                out.push_str(&format!(
                    "\nviewer \"{name}\" ({}) played \"{}\" over {} {token}: {attempt}",
                    viewer.profile.local_ip, play.stream, play.proto
                ));
            }
        }
        out
    }

    /// The protocol a step names: `HLS`, `MPEG-TS`, `RTMP`, `RTSP`, or `the target's protocol`
    /// (the run's default protocol, so that what does not depend on HTTP runs on any target).
    pub fn proto(&self, text: &str) -> Proto {
        if text == TARGETS_PROTOCOL {
            self.ctx.default_proto
        } else {
            Proto::parse(text)
        }
    }

    pub fn viewer(&self, name: &str) -> &Viewer {
        self.viewers
            .get(name)
            .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"))
    }

    pub fn viewer_ip(&self, name: &str) -> IpAddr {
        self.viewer(name).profile.local_ip
    }
}

/// Parses a number of seconds as written in a step (`1`, `2.5`).
pub fn seconds(text: &str) -> Duration {
    Duration::from_secs_f64(
        text.parse::<f64>()
            .unwrap_or_else(|_| panic!("`{text}` is not a number of seconds")),
    )
}

/// `""` (an optional group that did not match) is `None`.
pub fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}
