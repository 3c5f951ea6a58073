//! The server under test: how it is reached and how streams with a given auth configuration are
//! put in place.
//!
//! The embedded reference server is driven exactly like a third-party server: over its HTTP port
//! and its management API, never through its memory. The only thing the suite does with the
//! in-process [`RunningServer`] handle is to start and stop it.
//!
//! Three ways to reach a target ([`Target`]): the embedded server; a running server by address,
//! managed through its API; a running server in **static** mode, whose streams were loaded from
//! the configuration `usher check --print-config` printed (no stream management API).

pub mod cluster;
pub mod config;
pub mod container;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;
use usher_server::config::{Config, Credential};
use usher_server::{RunningServer, Server};

/// Timeout of one management API request.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The management API credential (HTTP Basic).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiCredential {
    pub login: String,
    pub password: String,
}

impl fmt::Debug for ApiCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredential")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl std::str::FromStr for ApiCredential {
    type Err = String;

    /// `LOGIN:PASSWORD`
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (login, password) = s.split_once(':').ok_or_else(|| "expected LOGIN:PASSWORD".to_string())?;
        Ok(ApiCredential {
            login: login.to_string(),
            password: password.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "static mode: the target has no management API for {0} (give --api-auth and declare the feature in --target-config to use one)"
    )]
    NoApi(String),
    #[error("static mode: {0}")]
    Static(String),
    #[error("cannot resolve {what} address `{addr}`: {detail}")]
    Resolve {
        what: &'static str,
        addr: String,
        detail: String,
    },
    #[error("cannot start the embedded reference server: {0}")]
    Start(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("{method} {url}: {}", chain(source))]
    Transport {
        method: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url}: unexpected answer {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{method} {url}: the answer is not the expected JSON: {detail}")]
    Shape {
        method: &'static str,
        url: String,
        detail: String,
    },
}

/// An error and its causes, `: `-joined (reqwest's own message omits the cause, such as
/// "Connection refused").
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The auth settings of a stream, in the terms of the vendor's `auth_spec`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthSettings {
    pub url: String,
    /// `None`: the server's default keys.
    pub session_keys: Option<Vec<String>>,
    pub domains: Vec<String>,
    pub max_sessions: Option<u32>,
    /// `soft_limitation` (LIM-05).
    pub soft_limitation: bool,
    /// `require_referer` (the reference server's extension to DOM-02): with `domains`, a play
    /// without a Referer is refused.
    pub require_referer: bool,
}

/// What the suite asks a target to serve under a name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamSpec {
    pub on_play: Option<AuthSettings>,
    /// `on_publish` (PUB-02); only meaningful with [`StreamSpec::publish`].
    pub on_publish: Option<AuthSettings>,
    /// The stream takes publishers (`input publish://`) instead of the synthetic `fake://fake`.
    pub publish: bool,
    /// `password` required from publishers (PUB-04).
    pub password: Option<String>,
    /// Another input than the synthetic one (`file://clip.mp4`); overrides `publish`.
    pub input: Option<String>,
    /// Record the stream for archive playback and exports (the vendor's stream `dvr` object).
    pub dvr: Option<DvrSpec>,
}

/// The vendor's stream `dvr` object: where the archive is kept (relative paths under the
/// target's media folder) and how many seconds it reaches back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvrSpec {
    pub root: String,
    pub depth: u64,
}

impl StreamSpec {
    /// The body of `PUT /streamer/api/v3/streams/NAME`.
    pub fn to_api_json(&self) -> Value {
        let input = match &self.input {
            Some(input) => input.as_str(),
            None if self.publish => "publish://",
            None => "fake://fake",
        };
        let mut body = json!({ "inputs": [{ "url": input }] });
        if let Some(auth) = &self.on_play {
            body["on_play"] = auth.to_api_json();
        }
        if let Some(auth) = &self.on_publish {
            body["on_publish"] = auth.to_api_json();
        }
        if let Some(password) = &self.password {
            body["password"] = json!(password);
        }
        if let Some(dvr) = &self.dvr {
            // `expiration` is the vendor's name of the archive depth (its `dvr_base_config`);
            // `depth` is not in its schema.
            body["dvr"] = json!({ "root": dvr.root, "expiration": dvr.depth });
        }
        body
    }
}

impl AuthSettings {
    /// The vendor's `auth_spec` object.
    fn to_api_json(&self) -> Value {
        let mut spec = json!({ "url": self.url });
        if let Some(keys) = &self.session_keys {
            spec["session_keys"] = json!(keys);
        }
        if !self.domains.is_empty() {
            spec["domains"] = json!(self.domains);
        }
        if let Some(n) = self.max_sessions {
            spec["max_sessions"] = json!(n);
        }
        if self.soft_limitation {
            spec["soft_limitation"] = json!(true);
        }
        if self.require_referer {
            spec["require_referer"] = json!(true);
        }
        spec
    }
}

/// `USHER_API_RECORD=FILE` makes every management API request the suite sends append one JSON
/// line `{"method", "path", "body"}` to FILE, so a test can check the requests against the
/// vendor's published schema (conformance/schemas/). Off unless the variable is set.
pub const API_RECORD_ENV: &str = "USHER_API_RECORD";

fn record_request(method: &str, path: &str, body: Option<&Value>) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let Some(file) = std::env::var_os(API_RECORD_ENV) else {
        return;
    };
    let line = json!({ "method": method, "path": path, "body": body }).to_string() + "\n";
    let _one_writer = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(file = %std::path::Path::new(&file).display(), error = %e, "cannot record a management API request");
    }
}

/// `streams/NAME` with each segment of NAME percent-encoded, so names holding `%`, `?`, `#` or
/// spaces stay one path.
fn stream_path(name: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let segments: Vec<String> = name
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!("streams/{}", segments.join("/"))
}

/// An API answer kept as it came (for steps that assert on refusals).
#[derive(Debug, Clone)]
pub struct ApiAnswer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl ApiAnswer {
    /// The `title`s of a vendor error body `{"errors":[{"title": …}]}`.
    pub fn error_titles(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["title"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One open session as the management API lists it (API-01, subset).
#[derive(Debug, Clone, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub proto: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Deserialize)]
struct SessionList {
    sessions: Vec<SessionRecord>,
}

/// A client of the management API (`/streamer/api/v3`).
///
/// In static mode stream management is not a network call: `put_stream` checks that the stream
/// is one the printed configuration holds, with the same settings, and `delete_stream` does
/// nothing. The other calls need a credential.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    credential: Option<ApiCredential>,
    /// Static mode: the streams the target was configured with, by server name.
    static_streams: Option<Arc<BTreeMap<String, StreamSpec>>>,
    /// Static mode on a server that takes any stream name with one application-wide auth
    /// configuration (nginx-rtmp and the other non-`flussonic` dialects): every stream is in
    /// place as soon as it is named, and what its settings ask for (`max_sessions`, session
    /// keys, …) is judged by what the server does, not refused up front.
    implicit_streams: bool,
}

impl Api {
    pub fn new(http_base: &Url, credential: ApiCredential) -> Result<Api, TargetError> {
        Api::build(http_base, Some(credential), None)
    }

    fn build(
        http_base: &Url,
        credential: Option<ApiCredential>,
        static_streams: Option<Arc<BTreeMap<String, StreamSpec>>>,
    ) -> Result<Api, TargetError> {
        let http = reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .connect_timeout(API_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(TargetError::Client)?;
        let base = http_base
            .join("/streamer/api/v3/")
            .expect("a fixed relative path joins");
        Ok(Api {
            http,
            base,
            credential,
            static_streams,
            implicit_streams: false,
        })
    }

    /// Static mode: streams are fixed.
    pub fn is_static(&self) -> bool {
        self.static_streams.is_some()
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("API paths are relative")
    }

    /// One API call; `path` is relative to `/streamer/api/v3/`. The answer is returned whatever
    /// its status.
    pub async fn send(&self, method: &'static str, path: &str, body: Option<&Value>) -> Result<ApiAnswer, TargetError> {
        let Some(credential) = &self.credential else {
            return Err(TargetError::NoApi(format!("{method} {path}")));
        };
        record_request(method, path, body);
        let url = self.url(path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut request = self
            .http
            .request(m, url.clone())
            .basic_auth(&credential.login, Some(&credential.password));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|source| TargetError::Transport {
            method,
            url: url.to_string(),
            source,
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| TargetError::Transport {
            method,
            url: url.to_string(),
            source,
        })?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        tracing::debug!(method, %url, status, body = %text, "management API");
        Ok(ApiAnswer { status, body, text })
    }

    fn expect_ok(
        method: &'static str,
        path: &str,
        answer: ApiAnswer,
        ok: &[StatusCode],
    ) -> Result<ApiAnswer, TargetError> {
        if ok.iter().any(|s| s.as_u16() == answer.status) {
            Ok(answer)
        } else {
            Err(TargetError::Status {
                method,
                url: path.to_string(),
                status: answer.status,
                body: answer.text,
            })
        }
    }

    /// `PUT streams/NAME`. The answer is returned whatever its status: refusals are assertions.
    pub async fn put_stream(&self, name: &str, spec: &StreamSpec) -> Result<ApiAnswer, TargetError> {
        if self.implicit_streams {
            tracing::debug!(stream = name, spec = %spec.to_api_json(), "implicit stream: nothing to put in place");
            return Ok(ApiAnswer {
                status: 200,
                body: Value::Null,
                text: String::new(),
            });
        }
        if let Some(streams) = &self.static_streams {
            return match streams.get(name) {
                Some(expected) if expected == spec => Ok(ApiAnswer {
                    status: 200,
                    body: Value::Null,
                    text: String::new(),
                }),
                Some(expected) => Err(TargetError::Static(format!(
                    "stream `{name}` was printed as {} but the case needs {}; print the configuration again with the same --backend-url",
                    expected.to_api_json(),
                    spec.to_api_json()
                ))),
                None => Err(TargetError::Static(format!(
                    "stream `{name}` ({}) is not in the printed configuration; the case cannot run without the management API",
                    spec.to_api_json()
                ))),
            };
        }
        self.send("PUT", &stream_path(name), Some(&spec.to_api_json())).await
    }

    /// `DELETE streams/NAME`; an unknown stream is fine.
    pub async fn delete_stream(&self, name: &str) -> Result<(), TargetError> {
        if self.is_static() {
            return Ok(());
        }
        let path = stream_path(name);
        let answer = self.send("DELETE", &path, None).await?;
        Self::expect_ok(
            "DELETE",
            &path,
            answer,
            &[StatusCode::NO_CONTENT, StatusCode::OK, StatusCode::NOT_FOUND],
        )
        .map(drop)
    }

    /// `GET sessions[?name=S]`: the open sessions.
    pub async fn sessions(&self, stream: Option<&str>) -> Result<Vec<SessionRecord>, TargetError> {
        let mut path = "sessions".to_string();
        if let Some(s) = stream {
            let mut u = self.url(&path);
            u.query_pairs_mut().append_pair("name", s);
            path = format!("sessions?{}", u.query().unwrap_or_default());
        }
        let answer = self.send("GET", &path, None).await?;
        let answer = Self::expect_ok("GET", &path, answer, &[StatusCode::OK])?;
        serde_json::from_value::<SessionList>(answer.body)
            .map(|l| l.sessions)
            .map_err(|e| TargetError::Shape {
                method: "GET",
                url: path,
                detail: e.to_string(),
            })
    }

    /// `DELETE sessions/ID`.
    pub async fn close_session(&self, id: &str) -> Result<(), TargetError> {
        let path = format!("sessions/{id}");
        let answer = self.send("DELETE", &path, None).await?;
        Self::expect_ok("DELETE", &path, answer, &[StatusCode::NO_CONTENT]).map(drop)
    }

    /// `GET config`: the server-wide settings (`no_auto_token`, `auth_token`).
    pub async fn server_config(&self) -> Result<Value, TargetError> {
        let answer = self.send("GET", "config", None).await?;
        Self::expect_ok("GET", "config", answer, &[StatusCode::OK]).map(|a| a.body)
    }

    /// `PUT config` with a partial object: only the given keys change.
    pub async fn put_server_config(&self, partial: &Value) -> Result<(), TargetError> {
        let answer = self.send("PUT", "config", Some(partial)).await?;
        Self::expect_ok("PUT", "config", answer, &[StatusCode::OK, StatusCode::NO_CONTENT]).map(drop)
    }

    /// `POST admin_view_token`.
    pub async fn mint_admin_token(&self) -> Result<String, TargetError> {
        let answer = self.send("POST", "admin_view_token", None).await?;
        let answer = Self::expect_ok("POST", "admin_view_token", answer, &[StatusCode::OK])?;
        answer.body["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| TargetError::Shape {
                method: "POST",
                url: "admin_view_token".into(),
                detail: format!("no string `token` in {}", answer.text),
            })
    }
}

/// The embedded server's configuration: HTTP, RTMP and RTSP on 127.0.0.1, port 0, a random API
/// password, a fresh media folder.
fn embedded_config() -> Result<(Config, ApiCredential, std::path::PathBuf), TargetError> {
    let credential = ApiCredential {
        login: "usher-check".to_string(),
        password: uuid::Uuid::new_v4().simple().to_string(),
    };
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let media_root = std::env::temp_dir().join(format!("usher-check-media-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&media_root)
        .map_err(|e| TargetError::Start(format!("cannot create the media folder {}: {e}", media_root.display())))?;
    let config = Config {
        http: Some(local),
        rtmp: Some(local),
        rtsp: Some(local),
        media_root: Some(media_root.to_string_lossy().into_owned()),
        edit_auth: Some(Credential {
            login: credential.login.clone(),
            password: credential.password.clone(),
        }),
        ..Config::default()
    };
    Ok((config, credential, media_root))
}

/// Where a running server is, as the user gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    /// Base URL of the HTTP port (HLS, MPEG-TS, management API).
    pub http: Url,
    /// `HOST:PORT` of the RTMP port, if the server has one.
    pub rtmp: Option<String>,
    /// `HOST:PORT` of the RTSP port, if the server has one.
    pub rtsp: Option<String>,
    /// Management API credential; without one, only static mode works.
    pub credential: Option<ApiCredential>,
}

impl Address {
    pub fn http(http: Url, credential: ApiCredential) -> Address {
        Address {
            http,
            rtmp: None,
            rtsp: None,
            credential: Some(credential),
        }
    }
}

/// How the server under test is reached: its addresses and its management API.
pub struct Target {
    /// The in-process reference server, when the target is embedded.
    server: Option<RunningServer>,
    /// The embedded server's media folder (`file://` inputs), which the suite fills with the
    /// media files cases need; removed at shutdown.
    media_root: Option<std::path::PathBuf>,
    http: Url,
    rtmp: Option<SocketAddr>,
    rtsp: Option<Url>,
    api: Api,
    description: String,
    /// The nodes, when the target is a cluster sharing a session store; node A is the target
    /// itself (its addresses above).
    cluster: Option<cluster::Cluster>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

async fn resolve(what: &'static str, addr: &str) -> Result<SocketAddr, TargetError> {
    let err = |detail: String| TargetError::Resolve {
        what,
        addr: addr.to_string(),
        detail,
    };
    let mut found = tokio::net::lookup_host(addr).await.map_err(|e| err(e.to_string()))?;
    found.next().ok_or_else(|| err("no address".to_string()))
}

fn rtsp_url(addr: SocketAddr) -> Url {
    Url::parse(&format!("rtsp://{addr}/")).expect("a socket address makes a URL")
}

impl Target {
    /// Starts the reference server in-process: HTTP, RTMP and RTSP on 127.0.0.1, port 0, with a
    /// random API password.
    pub async fn embedded() -> Result<Target, TargetError> {
        let (config, credential, media_root) = embedded_config()?;
        let server = Server::start(config)
            .await
            .map_err(|e| TargetError::Start(e.to_string()))?;
        let http = Url::parse(&format!("http://{}/", server.http_addr())).expect("a socket address makes a URL");
        let api = Api::new(&http, credential)?;
        let rtmp = server.rtmp_addr();
        let rtsp = server.rtsp_addr().map(rtsp_url);
        tracing::info!(%http, ?rtmp, ?rtsp, "embedded reference server started");
        Ok(Target {
            description: format!("embedded reference server at {http}"),
            server: Some(server),
            media_root: Some(media_root),
            http,
            rtmp,
            rtsp,
            api,
            cluster: None,
        })
    }

    /// Starts the embedded cluster: a redis-server of the suite's own and two reference
    /// servers sharing it ([`cluster`]). Node A is the target the other steps use.
    pub async fn embedded_cluster() -> Result<Target, TargetError> {
        let (config, credential, media_root) = embedded_config()?;
        let cluster = match cluster::Cluster::embedded(&config, &credential).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&media_root);
                return Err(e);
            }
        };
        let a = cluster.nodes()[0].clone();
        let names: Vec<String> = cluster
            .nodes()
            .iter()
            .map(|n| format!("{} at {}", n.name, n.http))
            .collect();
        Ok(Target {
            description: format!("embedded cluster (nodes {}, one redis-server)", names.join(", ")),
            server: None,
            media_root: Some(media_root),
            http: a.http,
            rtmp: a.rtmp,
            rtsp: a.rtsp,
            api: a.api,
            cluster: Some(cluster),
        })
    }

    /// A server already running at `http` (its HTTP port), managed with `credential`.
    pub fn address(http: Url, credential: ApiCredential) -> Result<Target, TargetError> {
        let api = Api::new(&http, credential)?;
        Ok(Target {
            description: format!("server at {http}"),
            server: None,
            media_root: None,
            http,
            rtmp: None,
            rtsp: None,
            api,
            cluster: None,
        })
    }

    /// A running server. With `static_streams`, streams are not managed through the API: they
    /// must be the ones given (what `--print-config` printed).
    pub async fn running(
        address: &Address,
        static_streams: Option<BTreeMap<String, StreamSpec>>,
    ) -> Result<Target, TargetError> {
        let rtmp = match &address.rtmp {
            Some(a) => Some(resolve("RTMP", a).await?),
            None => None,
        };
        let rtsp = match &address.rtsp {
            Some(a) => Some(rtsp_url(resolve("RTSP", a).await?)),
            None => None,
        };
        let is_static = static_streams.is_some();
        let api = Api::build(&address.http, address.credential.clone(), static_streams.map(Arc::new))?;
        Ok(Target {
            description: format!("{}server at {}", if is_static { "static " } else { "" }, address.http),
            server: None,
            media_root: None,
            http: address.http.clone(),
            rtmp,
            rtsp,
            api,
            cluster: None,
        })
    }

    /// The running servers at `members` (HTTP base URLs, node A first) share a session store:
    /// each is managed with the target's credential and reached over HTTP only.
    pub fn with_cluster_members(mut self, members: &[Url]) -> Result<Target, TargetError> {
        let mut nodes = Vec::new();
        for (i, http) in members.iter().enumerate() {
            let name = cluster::NODE_NAMES
                .get(i)
                .map_or_else(|| format!("N{i}"), |n| n.to_string());
            let mut api = self.api.clone();
            api.base = http.join("/streamer/api/v3/").expect("a fixed relative path joins");
            nodes.push(cluster::Node {
                name,
                http: http.clone(),
                rtmp: None,
                rtsp: None,
                api,
            });
        }
        if let Some(a) = nodes.first() {
            self.http = a.http.clone();
            self.api = a.api.clone();
        }
        self.description = format!("cluster of {} servers ({})", nodes.len(), self.description);
        self.cluster = Some(cluster::Cluster::running(nodes));
        Ok(self)
    }

    /// The cluster's nodes, when the target is a cluster.
    pub fn cluster(&self) -> Option<&cluster::Cluster> {
        self.cluster.as_ref()
    }

    /// Static mode on a server whose streams need no configuration of their own (a
    /// non-`flussonic` dialect): see [`Api`]'s `implicit_streams`.
    pub fn with_implicit_streams(mut self) -> Target {
        self.api.implicit_streams = true;
        self.description = format!("{} (streams taken by name)", self.description);
        self
    }

    /// Base URL of the HTTP port (HLS, MPEG-TS, API).
    pub fn http_base(&self) -> &Url {
        &self.http
    }

    /// The RTMP port, if the target has one.
    pub fn rtmp_addr(&self) -> Option<SocketAddr> {
        self.rtmp
    }

    /// `rtsp://HOST:PORT/`, if the target has an RTSP port.
    pub fn rtsp_base(&self) -> Option<Url> {
        self.rtsp.clone()
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn is_embedded(&self) -> bool {
        self.server.is_some() || self.cluster.as_ref().is_some_and(cluster::Cluster::has_control)
    }

    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The media folder the suite may write media files into: the embedded server's. A
    /// running target's is out of reach (it declares `file_input` only if the files are there).
    pub fn media_root(&self) -> Option<&std::path::Path> {
        self.media_root.as_deref()
    }

    /// Stops the embedded server; an external one is left running.
    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
        if let Some(cluster) = self.cluster {
            cluster.shutdown().await;
        }
        if let Some(root) = self.media_root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
