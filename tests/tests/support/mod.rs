//! What the reference-server tests share: starting a server on loopback ports, a wiremock
//! backend's token answers, running Debian's ffmpeg programs with a bound on their run time and
//! reading ffprobe's answers, ffmpeg-made test media and ffmpeg publishers (ffmpeg is the
//! outside client here; the conformance suite makes its own media), and throwaway directories.
//!
//! A test that needs an outside program asks [`have`] first: without the program it returns
//! after one line naming the program and its Debian package (`.ci/run` fails on such lines).

#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use usher_conformance::prerequisites::{self, Program};
use usher_server::config::{AuthSpec, AuthTarget, Config, StreamConfig};
use usher_server::{RunningServer, Server};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How long an ffprobe run may take unless a test says otherwise.
pub const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// `127.0.0.1:0`: a listener on a free loopback port.
pub fn loopback() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

/// Starts the reference server with `config`.
pub async fn start(config: Config) -> RunningServer {
    Server::start(config).await.expect("server starts")
}

/// A server with HTTP on loopback and `streams`.
pub async fn start_http(streams: Vec<StreamConfig>) -> RunningServer {
    start(Config {
        http: loopback(),
        streams,
        ..Config::default()
    })
    .await
}

/// The backend's `route` as an `on_play` / `on_publish` target.
pub fn auth(backend: &MockServer, route: &str) -> Option<AuthSpec> {
    Some(AuthSpec::new(AuthTarget::Http(format!("{}{route}", backend.uri()))))
}

/// A stream `name` playing `input`, authorized by `on_play`.
pub fn stream(name: &str, input: &str, on_play: Option<AuthSpec>) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        inputs: vec![input.into()],
        on_play,
        ..StreamConfig::default()
    }
}

/// Mounts `verb route` on `backend`, for requests with `token` only when one is given, answering
/// `response`; `priority` as wiremock's (1 the highest, 5 its default).
pub async fn answer(
    backend: &MockServer,
    verb: &str,
    route: &str,
    token: Option<&str>,
    priority: u8,
    response: ResponseTemplate,
) {
    let mock = Mock::given(method(verb)).and(path(route));
    let mock = match token {
        Some(token) => mock.and(query_param("token", token)),
        None => mock,
    };
    mock.respond_with(response).with_priority(priority).mount(backend).await;
}

/// `verb route` allows token `good` (200) and refuses token `bad` (403).
pub async fn good_and_bad(backend: &MockServer, verb: &str, route: &str) {
    answer(backend, verb, route, Some("good"), 5, ResponseTemplate::new(200)).await;
    answer(backend, verb, route, Some("bad"), 5, ResponseTemplate::new(403)).await;
}

pub const FFMPEG: Program = prerequisites::FFMPEG;
pub const FFPROBE: Program = prerequisites::FFPROBE;
pub const MARIADB: Program = prerequisites::MARIADB;

/// `true` when every one of `programs` is on PATH; otherwise `false`, after printing the running
/// test's skip line for the first one missing.
pub fn have(programs: &[Program]) -> bool {
    programs
        .iter()
        .all(|&p| prerequisites::require(env!("CARGO_CRATE_NAME"), p).is_some())
}

/// ffmpeg's encoding of the test pattern: H.264 4:2:0 with a keyframe a second at 25 fps and no
/// B-frames.
pub const H264_ENCODING: [&str; 8] = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "0"];

/// ffmpeg's test clip: `seconds` of its test pattern at `size` and 25 fps (a keyframe a second,
/// no B-frames) with a 440 Hz tone, as MP4 (`.mp4`, faststart) or MPEG-TS (`.ts`): media from a
/// real-world muxer, which the server's readers must take as well as the suite's own.
pub async fn ffmpeg_media_file(path: &Path, size: (u32, u32), seconds: u32) -> Result<(), String> {
    let pattern = format!("testsrc=size={}x{}:rate=25", size.0, size.1);
    let seconds = seconds.to_string();
    let target = path.to_str().ok_or("the media folder's path is not UTF-8")?;
    let mut args = vec![
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        &pattern,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &seconds,
    ];
    args.extend(H264_ENCODING);
    args.extend(["-c:a", "aac"]);
    if target.ends_with(".ts") {
        args.extend(["-f", "mpegts"]);
    } else {
        args.extend(["-movflags", "+faststart"]);
    }
    args.push(target);
    let (ok, _, stderr) = run("ffmpeg", &args, Duration::from_secs(60)).await;
    if !ok {
        return Err(format!("ffmpeg could not make {target}: {stderr}"));
    }
    Ok(())
}

/// The ffmpeg command that pushes `seconds` of live (`-re`) test pattern (160x120, 25 fps, a
/// keyframe a second, no B-frames) and tone as FLV to `url`: no standard input or output, killed
/// when dropped; its standard error is the caller's to set.
pub fn ffmpeg_publish_command(url: &str, seconds: u32) -> Command {
    let seconds = seconds.to_string();
    let mut command = Command::new("ffmpeg");
    command
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            &seconds,
        ])
        .args(H264_ENCODING)
        .args(["-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs a program of Debian's ffmpeg package with a bound on its run time; returns (success,
/// stdout, stderr).
pub async fn run(program: &str, args: &[&str], limit: Duration) -> (bool, Vec<u8>, String) {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{program} must be installed (Debian package ffmpeg; .ci/run installs it): {e}"));
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// ffprobe with JSON output, errors only, and `args`, bounded by `limit`: (success, stdout,
/// stderr).
pub async fn ffprobe_json(args: &[&str], limit: Duration) -> (bool, Vec<u8>, String) {
    let args: Vec<&str> = ["-v", "error", "-of", "json"].iter().chain(args).copied().collect();
    run("ffprobe", &args, limit).await
}

/// `program` (an ffprobe) on `url` with `-show_streams` and the `extra` options, bounded by
/// `limit`: (success, JSON answer or null, stderr).
pub async fn ffprobe_with(program: &str, url: &str, extra: &[&str], limit: Duration) -> (bool, Value, String) {
    let mut args = vec!["-v", "error", "-of", "json", "-show_streams"];
    args.extend_from_slice(extra);
    args.push(url);
    let (ok, stdout, stderr) = run(program, &args, limit).await;
    (ok, serde_json::from_slice(&stdout).unwrap_or(Value::Null), stderr)
}

/// ffprobe's streams of `url`, see [`ffprobe_with`].
pub async fn ffprobe(url: &str, extra: &[&str], limit: Duration) -> (bool, Value, String) {
    ffprobe_with("ffprobe", url, extra, limit).await
}

/// ffprobe's verdict on `url` within [`PROBE_LIMIT`]: (success, sorted codec names, stderr).
pub async fn ffprobe_codecs(url: &str, extra: &[&str]) -> (bool, Vec<String>, String) {
    let (ok, json, stderr) = ffprobe(url, extra, PROBE_LIMIT).await;
    (ok, codecs(&json), stderr)
}

/// The codec names of an ffprobe `-show_streams` answer, sorted.
pub fn codecs(json: &Value) -> Vec<String> {
    let mut codecs: Vec<String> = json["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["codec_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    codecs.sort();
    codecs
}

/// The first H.264 stream of an ffprobe `-show_streams` answer.
pub fn h264(json: &Value) -> Option<&Value> {
    json["streams"].as_array()?.iter().find(|s| s["codec_name"] == "h264")
}

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `usher-PREFIX-PID-NANOS-N` in the system's temp dir.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("usher-{prefix}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
