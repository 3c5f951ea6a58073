//! The backend fault matrix (issue "Reliability and security", item 1; T11, AMB-5, AMB-8,
//! AMB-16, AMB-23): for every session state before the call — new, allowed, denied — and every
//! kind of broken answer, a real HLS client gets what decisions.md says, over real sockets. The
//! fake backend is a raw TCP server so it can send what no HTTP library would: malformed status
//! lines, resets mid-body, huge header blocks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use usher_server::config::{AuthSpec, AuthTarget, Config, StreamConfig};
use usher_server::{RunningServer, Server};

/// One scripted answer of the raw backend.
#[derive(Clone, Debug)]
enum Fault {
    /// A well-formed answer: status, extra header lines, body.
    Http(u16, Vec<String>, Vec<u8>),
    /// Waits this long before answering 200.
    Delay(Duration),
    /// Closes the connection without a byte.
    Close,
    /// Sends a status line and half a body, then resets.
    ResetMidBody,
    /// Bytes that are not HTTP.
    Raw(Vec<u8>),
    /// A header block larger than 64 KiB.
    HugeHeaders,
}

fn ok(headers: &[&str]) -> Fault {
    Fault::Http(200, headers.iter().map(|s| s.to_string()).collect(), Vec::new())
}

fn status(code: u16) -> Fault {
    Fault::Http(code, Vec::new(), Vec::new())
}

/// A raw HTTP backend answering each request with the next scripted fault (the last repeats).
struct RawBackend {
    port: u16,
    calls: Arc<Mutex<usize>>,
}

impl RawBackend {
    async fn start(script: Vec<Fault>) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(script));
        let calls = Arc::new(Mutex::new(0));
        let (s, c) = (script.clone(), calls.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (s, c) = (s.clone(), c.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let fault = {
                        let mut n = c.lock().unwrap();
                        *n += 1;
                        let script = s.lock().unwrap();
                        script.get(*n - 1).or(script.last()).cloned().unwrap()
                    };
                    let _ = answer(&mut sock, fault).await;
                });
            }
        });
        RawBackend { port, calls }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/auth", self.port)
    }

    fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

async fn answer(sock: &mut tokio::net::TcpStream, fault: Fault) -> std::io::Result<()> {
    match fault {
        Fault::Http(code, headers, body) => {
            let mut head = format!(
                "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for h in headers {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await?;
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await?;
        }
        Fault::Close => {}
        Fault::ResetMidBody => {
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"config\":")
                .await?;
            sock.set_zero_linger()?;
        }
        Fault::Raw(bytes) => sock.write_all(&bytes).await?,
        Fault::HugeHeaders => {
            let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n");
            for i in 0..2000 {
                head.push_str(&format!("x-filler-{i}: {}\r\n", "a".repeat(40)));
            }
            head.push_str("\r\n");
            sock.write_all(head.as_bytes()).await?;
        }
    }
    sock.flush().await
}

async fn server(backend: &RawBackend) -> RunningServer {
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![StreamConfig {
            name: "s1".into(),
            inputs: vec!["fake://fake".into()],
            on_play: Some(AuthSpec::new(AuthTarget::Http(backend.url()))),
            ..StreamConfig::default()
        }],
        ..Config::default()
    };
    Server::start(config).await.unwrap()
}

async fn play(server: &RunningServer) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://{}/s1/index.m3u8?token=t", server.http_addr());
    client.get(url).send().await.unwrap().status().as_u16()
}

/// The faults and whether each is a decision ("allow"/"deny") or "no decision".
fn faults() -> Vec<(&'static str, Fault, &'static str)> {
    vec![
        ("timeout over 3 s", Fault::Delay(Duration::from_millis(3500)), "none"),
        ("connection closed", Fault::Close, "none"),
        ("reset mid-body", Fault::ResetMidBody, "none"),
        ("500", status(500), "none"),
        ("502", status(502), "none"),
        ("503", status(503), "none"),
        ("504", status(504), "none"),
        ("401", status(401), "deny"),
        ("404", status(404), "deny"),
        (
            "malformed status line",
            Fault::Raw(b"HTTP/1.1 two hundred\r\n\r\n".to_vec()),
            "none",
        ),
        (
            "not HTTP at all",
            Fault::Raw(b"\x00\x01garbage\r\n\r\n".to_vec()),
            "none",
        ),
        ("huge header block", Fault::HugeHeaders, "none"),
        (
            "body over 1 MiB",
            Fault::Http(200, vec![], vec![b' '; 1024 * 1024 + 10]),
            "none",
        ),
        (
            "invalid JSON on a 200",
            Fault::Http(200, vec![], b"{not json".to_vec()),
            "allow",
        ),
        (
            "config with a malformed value",
            // An unknown key is only ignored (issue 18); a wrong type in an applied field
            // rejects the whole override, the protocol switch included (AMB-16).
            Fault::Http(
                200,
                vec![],
                br#"{"config":{"password":1,"protocols":{"hls":false}}}"#.to_vec(),
            ),
            "allow",
        ),
        ("X-AuthDuration garbage", ok(&["X-AuthDuration: soon"]), "allow"),
        ("X-AuthDuration negative", ok(&["X-AuthDuration: -5"]), "allow"),
        (
            "X-AuthDuration huge",
            ok(&["X-AuthDuration: 99999999999999999999"]),
            "allow",
        ),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Before {
    New,
    Allowed,
    Denied,
}

/// One (state × fault) cell: `None` when it holds, else what went wrong.
async fn cell(before: Before, label: &'static str, fault: Fault, kind: &'static str) -> Vec<String> {
    let mut failures = Vec::new();
    let first = match before {
        Before::New => None,
        Before::Allowed => Some(ok(&["X-AuthDuration: 1"])),
        Before::Denied => Some(Fault::Http(403, vec!["X-AuthDuration: 1".into()], vec![])),
    };
    let script: Vec<Fault> = first.clone().into_iter().chain([fault]).collect();
    let backend = RawBackend::start(script).await;
    let server = server(&backend).await;
    if first.is_some() {
        play(&server).await;
        // Let the 1 s decision go stale.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let got = play(&server).await;
    // T11: new ⇒ refused, allowed ⇒ stays allowed, denied ⇒ stays denied; a decision applies
    // as it is.
    let expected = match (before, kind) {
        (_, "allow") => 200,
        (_, "deny") => 403,
        (Before::Allowed, _) => 200,
        (_, _) => 403,
    };
    let calls = backend.calls();
    let expected_calls = if first.is_some() { 2 } else { 1 };
    if got != expected || calls != expected_calls {
        failures.push(format!(
            "{before:?} × {label}: status {got} (expected {expected}), calls {calls} (expected {expected_calls})"
        ));
    }
    // Nothing leaks: at most this client's one record remains.
    let records = server.core().record_count();
    if records > 1 {
        failures.push(format!("{before:?} × {label}: {records} records left"));
    }
    // A malformed override never takes effect: HLS stays on.
    if label == "config with a malformed value" && play(&server).await != 200 {
        failures.push(format!("{before:?} × {label}: the rejected override switched HLS off"));
    }
    server.shutdown().await;
    failures
}

/// Every (state × fault) cell, run concurrently (each has its own server and backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix() {
    let mut cells = Vec::new();
    for before in [Before::New, Before::Allowed, Before::Denied] {
        for (label, fault, kind) in faults() {
            cells.push(cell(before, label, fault, kind));
        }
    }
    let failures: Vec<String> = futures::future::join_all(cells).await.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "fault matrix cells that do not hold:\n{}",
        failures.join("\n")
    );
}
