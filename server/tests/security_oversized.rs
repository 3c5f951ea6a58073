//! Over-long tokens and stream names, over real sockets (docs/security.md): a token over 4096
//! bytes or a name over 1024 bytes is refused before a stream is looked up or made and before
//! any backend call — HTTP answers 414 naming what is too long, RTSP refuses DESCRIBE, RTMP
//! rejects the play. A token or name at the limit plays as before. The log lines of those
//! refusals show a long name cut to its first characters and its length (`redact::Name`), so a
//! refused request cannot write kilobytes into the log. Its own test binary: the log capture is
//! the process's global subscriber.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Capture, backend_answering, client, http_auth, rtmp_handshake, stream_of};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_server::config::{Config, StreamConfig, TemplateConfig};
use usher_server::{RunningServer, Server};
use wiremock::{MockServer, ResponseTemplate};

/// The longest run of `c` in `text`.
fn longest_run(text: &str, c: char) -> usize {
    text.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

const MAX_TOKEN: usize = 4096;
const MAX_NAME: usize = 1024;

async fn start(backend: &MockServer) -> RunningServer {
    Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        rtsp: Some("127.0.0.1:0".parse().unwrap()),
        rtmp: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![stream_of("s1", "fake://fake", Some(http_auth(backend)))],
        templates: vec![TemplateConfig::new(
            "live",
            vec!["live".into()],
            StreamConfig {
                inputs: vec!["fake://fake".into()],
                on_play: Some(http_auth(backend)),
                ..StreamConfig::default()
            },
        )],
        ..Config::default()
    })
    .await
    .unwrap()
}

async fn calls(backend: &MockServer) -> usize {
    backend.received_requests().await.unwrap_or_default().len()
}

/// A template-made name of exactly `len` bytes.
fn name_of(len: usize) -> String {
    let mut name = "live/".to_string();
    name.extend(std::iter::repeat_n('n', len - name.len()));
    name
}

async fn rtsp_describe_status(addr: SocketAddr, name: &str, token: &str) -> String {
    let mut rtsp = TcpStream::connect(addr).await.unwrap();
    let describe = format!("DESCRIBE rtsp://{addr}/{name}?token={token} RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    rtsp.write_all(describe.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), rtsp.read(&mut buf))
        .await
        .expect("an RTSP answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Plays `key` of app `static` over RTMP: whether video came before the server closed.
async fn rtmp_plays(addr: SocketAddr, key: &str) -> bool {
    let (mut socket, rest) = rtmp_handshake(addr).await;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let mut pending = vec![session.request_connection("static".into()).unwrap()];
    let mut input = rest;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            for result in pending.drain(..) {
                if let ClientSessionResult::OutboundResponse(packet) = result
                    && socket.write_all(&packet.bytes).await.is_err()
                {
                    return false;
                }
            }
            if input.is_empty() {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
                input = buf[..n].to_vec();
            }
            let Ok(results) = session.handle_input(&input) else {
                return false;
            };
            input.clear();
            for result in results {
                match result {
                    ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                        pending.push(session.request_playback(key.into()).unwrap());
                    }
                    ClientSessionResult::RaisedEvent(ClientSessionEvent::VideoDataReceived { .. }) => return true,
                    other => pending.push(other),
                }
            }
        }
    })
    .await
    .expect("the RTMP play neither played nor ended")
}

#[tokio::test]
async fn over_long_tokens_and_names_are_refused_before_the_backend() {
    let capture = Capture::install(tracing::Level::TRACE);
    let backend = backend_answering(ResponseTemplate::new(200)).await;
    let server = start(&backend).await;
    let http = |path: &str| format!("http://{}/{path}", server.http_addr());
    let long_token = "t".repeat(MAX_TOKEN + 1);
    let long_name = name_of(MAX_NAME + 1);

    // HTTP: 414 with a body that says what, no backend call, no stream made.
    for (what, path) in [
        ("token", format!("s1/index.m3u8?token={long_token}")),
        ("token", format!("s1/mpegts?token={long_token}")),
        ("stream name", format!("{long_name}/index.m3u8?token=t")),
    ] {
        let response = client().get(http(&path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 414, "{what} over its limit");
        let body = response.text().await.unwrap();
        assert!(body.contains(what), "the refusal names the {what}: {body}");
    }
    assert_eq!(calls(&backend).await, 0, "refused before any backend call");

    // RTSP and RTMP refuse them too, without a backend call.
    let rtsp = server.rtsp_addr().unwrap();
    let status = rtsp_describe_status(rtsp, "s1", &long_token).await;
    assert!(
        status.starts_with("RTSP/1.0 4"),
        "RTSP DESCRIBE with a long token: {status}"
    );
    let status = rtsp_describe_status(rtsp, &long_name, "t").await;
    assert!(
        status.starts_with("RTSP/1.0 4"),
        "RTSP DESCRIBE of a long name: {status}"
    );
    let rtmp = server.rtmp_addr().unwrap();
    assert!(
        !rtmp_plays(rtmp, &format!("s1?token={long_token}")).await,
        "RTMP with a long token"
    );
    // Names far over the limit, over RTMP and RTSP: refused, and logged cut.
    let huge_name = name_of(8 * 1024);
    assert!(
        !rtmp_plays(rtmp, &format!("{huge_name}?token=t")).await,
        "RTMP play of a long name"
    );
    let status = rtsp_describe_status(rtsp, &huge_name, "t").await;
    assert!(
        status.starts_with("RTSP/1.0 4"),
        "RTSP DESCRIBE of a long name: {status}"
    );
    assert_eq!(calls(&backend).await, 0, "refused before any backend call");
    let log = capture.text();
    assert!(
        log.contains("(1025 bytes)") && log.contains("(8192 bytes)"),
        "the refusals' log lines give the names' lengths:\n{log}"
    );
    // `redact::NAME_SHOWN` characters of a name: "live/" and 59 `n`s.
    assert!(
        longest_run(&log, 'n') <= 64,
        "a long name is cut in the log (longest run of its letter: {})",
        longest_run(&log, 'n')
    );

    // At the limits everything plays as before.
    let token = "t".repeat(MAX_TOKEN);
    let status = client()
        .get(http(&format!("s1/index.m3u8?token={token}")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "a 4096-byte token plays");
    let status = client()
        .get(http(&format!("{}/index.m3u8?token=t", name_of(MAX_NAME))))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "a 1024-byte name plays");
    assert!(
        rtsp_describe_status(rtsp, "s1", &token)
            .await
            .starts_with("RTSP/1.0 200"),
        "RTSP with a 4096-byte token"
    );
    assert!(
        rtmp_plays(rtmp, &format!("s1?token={token}")).await,
        "RTMP with a 4096-byte token"
    );
    server.shutdown().await;
}
