//! A redis-server of the test's own: a free loopback port, a temp directory, no persistence,
//! killed when dropped. Never a system service. Ready means it answered PING (polled with a
//! deadline, no fixed sleep).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a starting redis-server has to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// More `redis-server` options (`--requirepass …`).
    extra: Vec<String>,
}

/// `true` when redis-server is on PATH; otherwise `false`, after printing the running test's
/// skip line in the form `.ci/run` fails on (`usher_conformance::prerequisites`).
pub fn have_redis_server() -> bool {
    use std::io::Write as _;
    if super::find_tool("redis-server").is_some() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {}::{test}: needs redis-server (Debian package redis-server)",
        env!("CARGO_CRATE_NAME")
    );
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    /// A new instance on a free loopback port; callers check [`have_redis_server`] first.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// [`start`](Self::start) with more `redis-server` options.
    pub async fn start_with(extra: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "usher-redis-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // The port was free a moment ago; if another process took it meanwhile, redis-server
        // exits at once, and another port is tried.
        for _ in 0..5 {
            if server.try_start().await {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts (again) on the same port and directory, with an empty data set.
    pub async fn restart(&mut self) {
        assert!(
            self.try_start().await,
            "redis-server exited at start on port {}",
            self.port
        );
    }

    /// Starts the process and waits for PING; `false` if it exited first.
    async fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "still running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let exited = self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return false;
            }
            if self.answers_ping().await {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {READY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn answers_ping(&self) -> bool {
        let Ok(mut socket) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if socket.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        // With `--requirepass` a ready server refuses PING without the password.
        matches!(socket.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
    }

    /// Kills the process (SIGKILL: a crash, not a shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
