//! Setup shared by the server's integration tests: HTTP clients, streams and the management
//! API's credential, backend mocks, the RTMP client handshake, and ffprobe runs on temp files.
//! (The config files' proptest strategies live apart, in `config_gen`.)
#![allow(dead_code)]

pub mod redis_server;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_server::config::{AuthSpec, AuthTarget, Credential, StreamConfig};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An HTTP client that gives up after 10 s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The body of a GET of `url`, as text.
pub async fn text_of(url: String) -> String {
    client().get(url).send().await.unwrap().text().await.unwrap()
}

/// An HTTP client that connects from `ip` (a loopback address) and gives up after 10 s.
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse().unwrap()))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The management API's credential in the tests: `admin` / `pw`.
pub fn admin() -> Option<Credential> {
    Some(Credential {
        login: "admin".into(),
        password: "pw".into(),
    })
}

/// Sends `request` with the management API's credential.
pub async fn as_admin(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.basic_auth("admin", Some("pw")).send().await.unwrap()
}

/// A stream named `name` reading `input`, with its `on_play` check if any.
pub fn stream_of(name: &str, input: &str, on_play: Option<AuthSpec>) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        inputs: vec![input.into()],
        on_play,
        ..StreamConfig::default()
    }
}

/// A mock backend with `mocks` mounted in order.
pub async fn backend_with(mocks: impl IntoIterator<Item = Mock>) -> MockServer {
    let backend = MockServer::start().await;
    for mock in mocks {
        mock.mount(&backend).await;
    }
    backend
}

/// A mock backend that answers every GET with `response`.
pub async fn backend_answering(response: ResponseTemplate) -> MockServer {
    backend_with([Mock::given(method("GET")).respond_with(response)]).await
}

/// An HTTP check against `backend`'s `/auth`.
pub fn http_auth(backend: &MockServer) -> AuthSpec {
    AuthSpec::new(AuthTarget::Http(format!("{}/auth", backend.uri())))
}

/// A TCP connection to `addr` that completed the RTMP client handshake, and the bytes the server
/// sent after it.
pub async fn rtmp_handshake(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut handshake = Handshake::new(PeerType::Client);
    socket
        .write_all(&handshake.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed during the handshake");
        match handshake.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => socket.write_all(&response_bytes).await.unwrap(),
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket.write_all(&response_bytes).await.unwrap();
                return (socket, remaining_bytes);
            }
        }
    }
}

/// A program on PATH, or `None`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `true` when every one of `names` (programs of Debian's ffmpeg package) is on PATH; otherwise
/// `false`, after printing the running test's skip line past libtest's capture, in the form
/// `.ci/run` fails on (`usher_conformance::prerequisites`): `SKIP TEST: needs ffprobe (Debian
/// package ffmpeg)`.
pub fn have_ffmpeg_tools(names: &[&str]) -> bool {
    use std::io::Write as _;
    for name in names {
        if find_tool(name).is_none() {
            let test = std::thread::current().name().unwrap_or("a test").to_string();
            let _ = writeln!(
                std::io::stderr(),
                "SKIP {}::{test}: needs {name} (Debian package ffmpeg)",
                env!("CARGO_CRATE_NAME")
            );
            return false;
        }
    }
    true
}

/// A program on PATH; tests call [`have_ffmpeg_tools`] first.
pub fn tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("{name} is not on PATH (have_ffmpeg_tools was not asked)"))
}

/// A file in the temp directory, named after the test binary and the process, removed when
/// dropped (also when the test fails).
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn named(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "usher-{}-{}-{name}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        )))
    }

    pub fn with(name: &str, bytes: &[u8]) -> TempFile {
        let file = TempFile::named(name);
        std::fs::write(file.path(), bytes).expect("temp file written");
        file
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What ffprobe said about one file.
#[derive(Debug)]
pub struct Probe {
    pub streams: Vec<Value>,
    /// Everything ffprobe printed at `-v error`: must be empty for a clean stream.
    pub errors: String,
}

impl Probe {
    /// Runs ffprobe on `bytes`, written to a temp file called `name`.
    pub fn of(bytes: &[u8], name: &str) -> Probe {
        let file = TempFile::with(name, bytes);
        let output = Command::new(tool("ffprobe"))
            .args(["-v", "error", "-of", "json", "-show_streams", "-count_frames"])
            .arg(file.path())
            .output()
            .expect("ffprobe runs");
        assert!(
            output.status.success(),
            "ffprobe failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: Value = serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON");
        Probe {
            streams: json["streams"].as_array().cloned().unwrap_or_default(),
            errors: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn stream(&self, codec_type: &str) -> &Value {
        self.streams
            .iter()
            .find(|s| s["codec_type"] == codec_type)
            .unwrap_or_else(|| panic!("no {codec_type} stream in {:#?}", self.streams))
    }

    pub fn frames(&self, codec_type: &str) -> u64 {
        let stream = self.stream(codec_type);
        stream["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no frame count in {stream:#}"))
    }

    /// No error printed, and AAC-LC 48 kHz mono audio next to H.264 video of `width`x`height`;
    /// returns the video and audio frame counts.
    pub fn assert_h264_and_aac(&self, width: u64, height: u64) -> (u64, u64) {
        assert_eq!(self.errors, "", "ffprobe printed errors");
        let video = self.stream("video");
        assert_eq!(video["codec_name"], "h264");
        assert_eq!(
            (&video["width"], &video["height"]),
            (&Value::from(width), &Value::from(height))
        );
        let audio = self.stream("audio");
        assert_eq!(audio["codec_name"], "aac");
        assert_eq!(audio["profile"], "LC");
        assert_eq!(audio["sample_rate"], "48000");
        assert_eq!(audio["channels"], 1);
        (self.frames("video"), self.frames("audio"))
    }
}

/// Every byte a `tracing_subscriber::fmt()` writer gets, kept for the test to read: install it
/// as the process's global subscriber (`with_writer(capture.clone())`), so such a test is a
/// binary of its own.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// A capture installed as the process's global subscriber, keeping every event at `level`
    /// and above, without colours.
    pub fn install(level: tracing::Level) -> Capture {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// An HLS play request of `name` from `ip` with `token`, nothing else set: the auth core's
/// view of a bare `GET /NAME/index.m3u8?token=…`.
pub fn hls_play(name: &str, ip: std::net::IpAddr, token: &str) -> usher_server::auth::PlayRequest {
    usher_server::auth::PlayRequest {
        kind: usher_server::auth::CallKind::Play,
        name: name.to_string(),
        proto: usher_server::auth::Proto::Hls,
        ip,
        token: Some(token.to_string()),
        qs: None,
        query: vec![],
        headers: Default::default(),
        referer: None,
        user_agent: None,
        host: None,
        dvr: false,
    }
}
