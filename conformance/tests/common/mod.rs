//! Helpers of the integration tests that drive the `usher` binary: run it, start a second
//! reference server with `usher serve` (waiting for its readiness line, never sleeping), and read
//! the closing line.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const USHER: &str = env!("CARGO_BIN_EXE_usher");

/// A fresh folder for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

/// What one `usher` run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// `(passed, failed, skipped)` from the closing line, which must be the last line of stdout.
    pub fn closing(&self) -> (usize, usize, usize) {
        let last = self.stdout.lines().last().unwrap_or_default();
        let nums: Vec<usize> = last
            .split(", ")
            .map(|part| {
                part.split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("the last line is not `N passed, N failed, N skipped`: {last:?}\n{self}"))
            })
            .collect();
        assert!(
            last.starts_with(&format!("{} passed, {} failed", nums[0], nums[1])),
            "closing line {last:?}"
        );
        (nums[0], nums[1], nums.get(2).copied().unwrap_or(0))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:.1} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `usher ARGS` (plain progress lines) and waits at most `limit`.
pub async fn usher(args: &[&str], limit: Duration) -> Run {
    let started = Instant::now();
    let child = Command::new(USHER)
        .args(args)
        .env("CI", "true")
        .env_remove("RUST_LOG")
        .env_remove("USHER_API_AUTH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the usher binary starts");
    let output: Output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`usher {}` did not end within {limit:?}", args.join(" ")))
        .expect("the usher binary runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// A reference server started with `usher serve --config FILE`, stopped on drop.
pub struct Serve {
    child: Child,
    pub http: String,
    pub rtmp: Option<String>,
    pub rtsp: Option<String>,
}

impl Serve {
    /// Writes `config` to `dir/name` and starts the server; returns once it printed
    /// `usher: ready http=ADDR [rtmp=ADDR] [rtsp=ADDR]`.
    pub async fn start(dir: &Path, name: &str, config: &str) -> Serve {
        let path = dir.join(name);
        std::fs::write(&path, config).expect("the config file is written");
        let mut child = Command::new(USHER)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            // Relative paths of the server (its default media folder, DVR archives) stay in
            // the scratch folder, not the source tree.
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("usher serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("usher serve's stdout") {
                if line.starts_with("usher: ready") {
                    return Some(line);
                }
            }
            None
        })
        .await
        .expect("usher serve printed its readiness line within 30 s")
        .expect("usher serve ended before it was ready");
        // Keep reading so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let field = |key: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .map(str::to_string)
        };
        Serve {
            http: field("http").expect("the readiness line names the HTTP address"),
            rtmp: field("rtmp"),
            rtsp: field("rtsp"),
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.http)
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A local port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Verdicts by case key, from a JSON report.
pub fn verdicts(report: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    report["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["key"].as_str().expect("key").to_string(),
                c["verdict"].as_str().expect("verdict").to_string(),
            )
        })
        .collect()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

// ---- deliberately wrong targets (wiremock) ----

pub fn ts_bytes(packets: usize) -> Vec<u8> {
    (0..packets)
        .flat_map(|_| {
            let mut p = vec![0xffu8; 188];
            p[0] = 0x47;
            p
        })
        .collect()
}

/// A management API that accepts everything and changes nothing.
pub async fn lenient_api(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/streamer/api/v3/config"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"no_auto_token": false, "auth_token": "token"})),
        )
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/streamer/api/v3/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sessions": []})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/streamer/api/v3/admin_view_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "token": "ADM1-1700000000-0123456789abcdef0123456789abcdef01234567"
        })))
        .mount(server)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/streamer/api/v3/"))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
    Mock::given(path_regex("^/streamer/api/v3/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(server)
        .await;
}

pub async fn open_door() -> MockServer {
    let server = MockServer::start().await;
    lenient_api(&server).await;
    Mock::given(method("GET"))
        .and(path_regex(r"/index\.m3u8$"))
        .respond_with(ResponseTemplate::new(200).set_body_string("#EXTM3U\n#EXTINF:2.0,\nsegment-1.ts\n"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"/segment-\d+\.ts$"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(ts_bytes(4)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"/mpegts$"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(ts_bytes(30)))
        .mount(&server)
        .await;
    server
}

pub async fn closed_door() -> MockServer {
    let server = MockServer::start().await;
    lenient_api(&server).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    server
}
