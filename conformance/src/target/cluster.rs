//! A cluster target: several servers that share their per-user limits, X-Unique and bans
//! through one session store (docs/spec.md, "Shared session store"). Scenarios tagged
//! `@needs-cluster` play on "node A" and "node B"; each node is addressed like an ordinary
//! target (its HTTP port, its management API, its RTMP and RTSP ports).
//!
//! The embedded cluster (`usher check --cluster`) is two reference servers and a redis-server
//! of the suite's own on a free loopback port. Only it has the control the
//! `@needs-cluster-control` cases use: stopping a node (it says nothing to the store, like a
//! crash) and restarting the store empty. A running cluster (`[cluster] members` of a
//! manifest) has no such control.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use url::Url;
use usher_server::config::{Config, OnStoreLoss, SessionStoreConfig};
use usher_server::{RunningServer, Server};

use super::{Api, TargetError, rtsp_url};

/// Node names as the steps write them: node A is the first member.
pub const NODE_NAMES: [&str; 2] = ["A", "B"];

/// How long a starting redis-server has to answer PING.
const REDIS_READY_WITHIN: Duration = Duration::from_secs(10);

/// One server of a cluster, reached like a target.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub http: Url,
    pub rtmp: Option<SocketAddr>,
    pub rtsp: Option<Url>,
    pub api: Api,
}

/// The nodes of a cluster and, when the suite started it, the means to stop a node and to
/// restart the store.
pub struct Cluster {
    nodes: Vec<Node>,
    control: Option<Control>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes)
            .field("control", &self.control.is_some())
            .finish()
    }
}

/// What the embedded cluster keeps to stop and restart its parts.
struct Control {
    /// Each node's configuration, with the ports its first start bound, so a node restarts on
    /// the same addresses.
    configs: Vec<Config>,
    servers: Mutex<Vec<Option<RunningServer>>>,
    redis: Mutex<RedisProcess>,
}

impl Cluster {
    /// Running servers that share a store; no control.
    pub fn running(nodes: Vec<Node>) -> Cluster {
        Cluster { nodes, control: None }
    }

    /// Starts a redis-server on a free loopback port and one reference server per
    /// [`NODE_NAMES`] sharing it, each from `base` (addresses on port 0, a credential) plus
    /// the `session_store` line.
    pub(super) async fn embedded(base: &Config, credential: &super::ApiCredential) -> Result<Cluster, TargetError> {
        let redis = RedisProcess::start().await?;
        let mut configs = Vec::new();
        let mut servers = Vec::new();
        let mut nodes = Vec::new();
        for name in NODE_NAMES {
            let mut config = base.clone();
            config.session_store = Some(SessionStoreConfig {
                url: redis.url(),
                node: Some(format!("usher-check-{}", name.to_ascii_lowercase())),
                on_loss: OnStoreLoss::Open,
            });
            let server = Server::start(config.clone())
                .await
                .map_err(|e| TargetError::Start(format!("node {name}: {e}")))?;
            // Restarts bind what the first start bound.
            config.http = Some(server.http_addr());
            config.rtmp = server.rtmp_addr();
            config.rtsp = server.rtsp_addr();
            let http = Url::parse(&format!("http://{}/", server.http_addr())).expect("a socket address makes a URL");
            nodes.push(Node {
                name: name.to_string(),
                api: Api::new(&http, credential.clone())?,
                http,
                rtmp: server.rtmp_addr(),
                rtsp: server.rtsp_addr().map(rtsp_url),
            });
            tracing::info!(node = name, http = %server.http_addr(), "embedded cluster node started");
            configs.push(config);
            servers.push(Some(server));
        }
        Ok(Cluster {
            nodes,
            control: Some(Control {
                configs,
                servers: Mutex::new(servers),
                redis: Mutex::new(redis),
            }),
        })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node a step names (`A`, `B`).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The suite can stop nodes and restart the store.
    pub fn has_control(&self) -> bool {
        self.control.is_some()
    }

    fn control(&self) -> Result<&Control, String> {
        self.control
            .as_ref()
            .ok_or_else(|| "this cluster gives the suite no control over its nodes or its store".to_string())
    }

    fn index(&self, name: &str) -> Result<usize, String> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| format!("the cluster has no node {name}"))
    }

    /// Stops node `name` the way a crash looks to the store: nothing is said to Redis.
    pub async fn stop_node(&self, name: &str) -> Result<(), String> {
        let i = self.index(name)?;
        let server = self.control()?.servers.lock().await[i].take();
        match server {
            Some(server) => {
                server.shutdown().await;
                tracing::info!(node = name, "embedded cluster node stopped");
                Ok(())
            }
            None => Err(format!("node {name} is already stopped")),
        }
    }

    /// Starts node `name` again on its addresses, if it was stopped.
    pub async fn ensure_node(&self, name: &str) -> Result<(), String> {
        let i = self.index(name)?;
        let control = self.control()?;
        let mut servers = control.servers.lock().await;
        if servers[i].is_none() {
            let server = Server::start(control.configs[i].clone())
                .await
                .map_err(|e| format!("restarting node {name}: {e}"))?;
            tracing::info!(node = name, "embedded cluster node started again");
            servers[i] = Some(server);
        }
        Ok(())
    }

    /// Kills the store (SIGKILL) and starts it again, empty, on the same port.
    pub async fn restart_store(&self) -> Result<(), String> {
        let control = self.control()?;
        let mut redis = control.redis.lock().await;
        redis.kill();
        redis.try_start().await.map_err(|e| e.to_string())?;
        tracing::info!(port = redis.port, "embedded cluster store restarted empty");
        Ok(())
    }

    pub(super) async fn shutdown(self) {
        if let Some(control) = self.control {
            for server in control.servers.into_inner().into_iter().flatten() {
                server.shutdown().await;
            }
            drop(control.redis);
        }
    }
}

fn free_port() -> Result<u16, TargetError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TargetError::Start(format!("no free loopback port for redis-server: {e}")))
}

/// A redis-server of the suite's own: loopback only, no persistence, a temp directory, killed
/// when dropped. Never a system service.
/// A redis-server of the suite's own on a free loopback port (no persistence, a temporary
/// folder), killed and its folder removed on drop.
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisProcess {
    /// Starts one and waits (bounded) until it answers PING.
    pub async fn start() -> Result<RedisProcess, TargetError> {
        if crate::prerequisites::find(crate::prerequisites::REDIS_SERVER.name).is_none() {
            return Err(TargetError::Start(crate::prerequisites::skip_line(
                "the embedded cluster",
                crate::prerequisites::REDIS_SERVER,
                "",
            )));
        }
        let dir = std::env::temp_dir().join(format!("usher-check-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| TargetError::Start(format!("cannot create {}: {e}", dir.display())))?;
        let mut redis = RedisProcess {
            child: None,
            port: free_port()?,
            dir,
        };
        // The port was free a moment ago; if another process took it meanwhile, redis-server
        // exits at once and another port is tried.
        for _ in 0..5 {
            match redis.try_start().await {
                Ok(()) => return Ok(redis),
                Err(e) => tracing::debug!(port = redis.port, error = %e, "redis-server did not start; another port"),
            }
            redis.port = free_port()?;
        }
        Err(TargetError::Start(
            "redis-server did not start on any of 5 free ports".into(),
        ))
    }

    /// `redis://127.0.0.1:PORT`, as a `session_store` line takes it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits for it to answer PING.
    async fn try_start(&mut self) -> Result<(), TargetError> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TargetError::Start(format!("cannot run redis-server: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + REDIS_READY_WITHIN;
        loop {
            let exited = self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return Err(TargetError::Start(format!(
                    "redis-server exited at start on port {}",
                    self.port
                )));
            }
            if answers_ping(self.port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(TargetError::Start(format!(
                    "redis-server did not answer PING within {REDIS_READY_WITHIN:?}"
                )));
            }
            // Polling a process that is starting.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn answers_ping(port: u16) -> bool {
    let Ok(mut socket) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if socket.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(socket.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
