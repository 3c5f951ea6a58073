//! Limits that keep one client from exhausting the server (docs/security.md, "Limits"): a cap
//! on connections per address, a deadline for request headers (slowloris), bounded header and
//! API body sizes, over real sockets against HTTP and RTSP.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{admin, stream_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use usher_server::config::Config;
use usher_server::http::Limits as HttpLimits;
use usher_server::rtsp::Limits as RtspLimits;
use usher_server::{RunningServer, Server, ServerLimits};

/// The header deadline of the slowloris test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// The header deadline of the idle-connections test: long enough that the held connections are
/// still open when the over-cap ones are counted, on a busy machine too.
const IDLE_HEADER_TIMEOUT: Duration = Duration::from_secs(6);

async fn start(limits: ServerLimits) -> RunningServer {
    Server::start_with_limits(
        Config {
            http: Some("127.0.0.1:0".parse().unwrap()),
            rtsp: Some("127.0.0.1:0".parse().unwrap()),
            edit_auth: admin(),
            streams: vec![stream_of("s1", "fake://fake", None)],
            ..Config::default()
        },
        limits,
    )
    .await
    .unwrap()
}

fn short_limits(header_read_timeout: Duration) -> ServerLimits {
    ServerLimits {
        http: HttpLimits {
            header_read_timeout,
            ..HttpLimits::default()
        },
        rtsp: RtspLimits {
            first_request_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(1500),
            ..RtspLimits::default()
        },
    }
}

async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Waits for the server to close `socket` (EOF or reset): how long it took, or `None` if it
/// stayed open for `within`. What the server sent meanwhile is returned too.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let done = tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (done.ok().map(|_| started.elapsed()), got)
}

/// The status of a GET of `url` from the address `local`, given up after 5 s.
async fn status_from(local: &str, url: String) -> reqwest::StatusCode {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn idle_connections_from_one_address_do_not_lock_out_another() {
    let server = start(short_limits(IDLE_HEADER_TIMEOUT)).await;
    let addr = server.http_addr();
    // The address's share (from the descriptor limit) and 44 more.
    let cap = server.connection_caps().http.per_address;
    let opened = cap + 44;
    let mut idle = Vec::new();
    for _ in 0..opened {
        idle.push(connect_from("127.0.0.1", addr).await);
    }
    // Beyond the share, the server closes at once.
    let mut buf = [0u8; 64];
    let mut closed_at_once = 0;
    let counting = Instant::now();
    while counting.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        closed_at_once = idle
            .iter()
            .filter(|socket| !matches!(socket.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
            .count();
        if closed_at_once >= opened - cap {
            break;
        }
    }
    assert_eq!(
        closed_at_once,
        opened - cap,
        "connections over the cap of {cap} are closed"
    );
    // Another address plays meanwhile, at once.
    let started = Instant::now();
    let status = status_from("127.0.0.2", format!("http://{addr}/s1/index.m3u8")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // The held ones are cut at the header deadline, and the address may connect again.
    let (first_closed, _) = closed_within(&mut idle[0], IDLE_HEADER_TIMEOUT + Duration::from_secs(2)).await;
    assert!(
        first_closed.is_some(),
        "an idle connection outlived the header deadline"
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = status_from("127.0.0.1", format!("http://{addr}/s1/index.m3u8")).await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

/// Sends `head` one byte at a time, `gap` apart, until the server closes; how long that took.
async fn trickle(socket: &mut TcpStream, head: &[u8], gap: Duration, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    for &b in head.iter().cycle() {
        if started.elapsed() > within {
            return None;
        }
        if socket.write_all(&[b]).await.is_err() {
            return Some(started.elapsed());
        }
        if let (Some(_), _) = closed_within(socket, gap).await {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test]
async fn slowloris_is_cut_at_the_header_deadline_on_http_and_rtsp() {
    let server = start(short_limits(HEADER_TIMEOUT)).await;
    let mut http = connect_from("127.0.0.1", server.http_addr()).await;
    let head =
        b"GET /s1/index.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let took = trickle(&mut http, head, Duration::from_millis(100), Duration::from_secs(10)).await;
    let took = took.expect("HTTP slowloris kept its connection");
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(200) && took < HEADER_TIMEOUT + Duration::from_secs(2),
        "HTTP cut after {took:?}"
    );

    let rtsp_addr = server.rtsp_addr().unwrap();
    let mut rtsp = connect_from("127.0.0.1", rtsp_addr).await;
    let head = b"OPTIONS rtsp://h/s1 RTSP/1.0\r\nCSeq: 1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let took = trickle(&mut rtsp, head, Duration::from_millis(100), Duration::from_secs(10)).await;
    let took = took.expect("RTSP slowloris kept its connection");
    assert!(took < Duration::from_secs(4), "RTSP first request cut after {took:?}");

    // After a whole request, a trickled second one is cut at the idle deadline.
    let mut rtsp = connect_from("127.0.0.1", rtsp_addr).await;
    rtsp.write_all(b"OPTIONS rtsp://h/s1 RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .await
        .unwrap();
    let took = trickle(&mut rtsp, head, Duration::from_millis(100), Duration::from_secs(10)).await;
    let took = took.expect("RTSP slowloris after a first request kept its connection");
    assert!(took < Duration::from_secs(5), "RTSP second request cut after {took:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_headers_and_api_bodies_are_refused() {
    let server = start(ServerLimits::default()).await;
    let addr = server.http_addr();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let huge = "a".repeat(64 * 1024);
    let result = client
        .get(format!("http://{addr}/s1/index.m3u8"))
        .header("x-huge", &huge)
        .send()
        .await;
    match result {
        Ok(response) => assert_eq!(response.status(), 431),
        // Closing the connection is an acceptable way of refusing too.
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    let body = format!(
        "{{\"inputs\":[{{\"url\":\"fake://fake\"}}],\"pad\":\"{}\"}}",
        "x".repeat(300 * 1024)
    );
    let status = client
        .put(format!("http://{addr}/streamer/api/v3/streams/big"))
        .basic_auth("admin", Some("pw"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 413, "an API body over the limit");
    // The rest of the body is never read and the connection closes: the answer says so, so
    // the client does not send its next request on it.
    assert_eq!(
        status.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    // The server still serves.
    let status = client
        .get(format!("http://{addr}/s1/index.m3u8"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    server.shutdown().await;
}
