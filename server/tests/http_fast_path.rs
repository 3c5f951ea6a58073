//! The media fast path (src/http/fast.rs) over real sockets: live HLS requests answered by the
//! lean loop, and every other request on the same connection handed to hyper with the bytes
//! already read. Responses are read byte by byte as a client sees them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{admin, as_admin, client, stream_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_server::config::Config;
use usher_server::http::Limits as HttpLimits;
use usher_server::{RunningServer, Server, ServerLimits};

async fn start(header_read_timeout: Duration) -> RunningServer {
    Server::start_with_limits(
        Config {
            http: Some("127.0.0.1:0".parse().unwrap()),
            edit_auth: admin(),
            streams: vec![stream_of("s1", "fake://fake", None)],
            ..Config::default()
        },
        ServerLimits {
            http: HttpLimits {
                header_read_timeout,
                ..HttpLimits::default()
            },
            ..ServerLimits::default()
        },
    )
    .await
    .unwrap()
}

/// One response as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header names lowercased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A client connection with what it has read but not yet consumed.
struct Conn {
    socket: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn {
            socket: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(10), self.socket.read(&mut chunk))
            .await
            .expect("the server answers within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Reads one response; `head_request` says it has no body whatever its headers say.
    async fn answer(&mut self, head_request: bool) -> Answer {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "connection closed before a whole response head");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1."), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request {
            return answer;
        }
        if let Some(len) = answer.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "connection closed inside a body");
            }
            answer.body = self.buf.drain(..len).collect();
        } else if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    assert!(self.fill().await);
                };
                let size = usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16).unwrap();
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await);
                }
                answer.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        }
        answer
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        self.answer(false).await
    }

    /// Whether the server closes the connection within `within` (reading nothing more).
    async fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(within, self.socket.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Some(started.elapsed()),
            Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(_) => None,
        }
    }
}

/// The newest segment's path, once the fake stream has one (polled, bounded).
async fn newest_segment(server: &RunningServer) -> String {
    let started = Instant::now();
    loop {
        let text = client()
            .get(format!("http://{}/s1/index.m3u8", server.http_addr()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(line) = text.lines().rfind(|l| l.starts_with("segment-")) {
            return format!("/s1/{}", line.split('?').next().unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no segment in 15 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kept_alive_connection_serves_playlists_and_segments_with_lengths_and_dates() {
    let server = start(Duration::from_secs(10)).await;
    let segment = newest_segment(&server).await;
    let expected = client()
        .get(format!("http://{}{segment}", server.http_addr()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        expected.len() > 16 * 1024,
        "a mapped (sendfile) segment: {} bytes",
        expected.len()
    );
    let mut conn = Conn::open(server.http_addr()).await;
    for _ in 0..3 {
        let playlist = conn.get("/s1/index.m3u8?token=abc").await;
        assert_eq!(playlist.status, 200);
        assert_eq!(playlist.header("content-type"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(playlist.header("cache-control"), Some("no-cache"));
        assert!(
            playlist.header("date").is_some_and(|d| d.ends_with(" GMT")),
            "{playlist:?}"
        );
        let text = String::from_utf8(playlist.body).unwrap();
        assert!(text.starts_with("#EXTM3U"), "{text}");
        assert!(text.contains("?token=abc"), "segment URIs carry the token: {text}");
        let got = conn.get(&segment).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), Some("video/mp2t"));
        assert_eq!(got.body, expected, "the same bytes on the fast path");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_head_has_a_length_but_no_body() {
    let server = start(Duration::from_secs(10)).await;
    let segment = newest_segment(&server).await;
    let mut conn = Conn::open(server.http_addr()).await;
    conn.send(
        format!(
            "HEAD {segment} HTTP/1.1\r\nHost: x\r\n\r\nGET /s1/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /nosuch/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\nGET {segment} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let head = conn.answer(true).await;
    assert_eq!(head.status, 200);
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    let playlist = conn.answer(false).await;
    assert_eq!(
        playlist.status, 200,
        "the HEAD answer carried no body: the next answer follows it"
    );
    assert!(playlist.body.starts_with(b"#EXTM3U"));
    let missing = conn.answer(false).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&missing.body).unwrap();
    assert_eq!(body["errors"][0]["status"], "404");
    let got = conn.answer(false).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), length);
    server.shutdown().await;
}

#[tokio::test]
async fn other_requests_on_the_same_connection_go_to_hyper_with_the_bytes_read() {
    let server = start(Duration::from_secs(10)).await;
    newest_segment(&server).await;
    let mut conn = Conn::open(server.http_addr()).await;
    assert_eq!(conn.get("/s1/index.m3u8").await.status, 200);
    // The management API (needs its credentials: hyper's router answers 401 without them),
    // in the same write as a playlist request that hyper then serves too.
    conn.send(
        b"GET /streamer/api/v3/streams HTTP/1.1\r\nHost: x\r\n\r\nGET /s1/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let api = conn.answer(false).await;
    assert_eq!(api.status, 401, "{api:?}");
    let playlist = conn.answer(false).await;
    assert_eq!(playlist.status, 200);
    assert!(playlist.body.starts_with(b"#EXTM3U"));
    // A head hyper cannot parse: its 400, then the connection closes.
    conn.send(b"GET /s1/index.m3u8 HTTP/1.1\r\nBad Header\r\n\r\n").await;
    let bad = conn.answer(false).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(conn.closed_within(Duration::from_secs(5)).await.is_some());

    // A head over the size limit, on a fresh connection after a fast request: hyper's 431.
    let mut conn = Conn::open(server.http_addr()).await;
    assert_eq!(conn.get("/s1/index.m3u8").await.status, 200);
    let big = format!(
        "GET /s1/index.m3u8 HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    conn.send(big.as_bytes()).await;
    assert_eq!(conn.answer(false).await.status, 431);

    // The API through the same path as an operator's client uses.
    let listed = as_admin(client().get(format!("http://{}/streamer/api/v3/streams", server.http_addr()))).await;
    assert_eq!(listed.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn the_fast_path_answers_as_hyper_does_for_the_same_request() {
    let server = start(Duration::from_secs(10)).await;
    let segment = newest_segment(&server).await;
    // HTTP/1.0 goes to hyper; the same request as HTTP/1.1 stays on the fast path.
    for path in [
        "/s1/index.m3u8?token=t",
        segment.as_str(),
        "/nosuch/index.m3u8",
        "/s1/segment-1.ts",
    ] {
        let mut fast = Conn::open(server.http_addr()).await;
        let a = fast.get(path).await;
        let mut slow = Conn::open(server.http_addr()).await;
        slow.send(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        let b = slow.answer(false).await;
        assert_eq!(a.status, b.status, "{path}");
        let names = |x: &Answer| {
            let mut n: Vec<String> = x
                .headers
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| n != "connection")
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&a), names(&b), "{path}: {a:?} / {b:?}");
        for name in ["content-type", "cache-control", "content-length"] {
            assert_eq!(a.header(name), b.header(name), "{path}: {name}");
        }
        if !path.contains("m3u8") || a.status != 200 {
            // Playlists move with the live window between the two requests; the rest must not.
            assert_eq!(a.body, b.body, "{path}");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn connection_close_is_honoured_and_said() {
    let server = start(Duration::from_secs(10)).await;
    newest_segment(&server).await;
    let mut conn = Conn::open(server.http_addr()).await;
    conn.send(b"GET /s1/index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let answer = conn.answer(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(5)).await.is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn header_deadline_cuts_quiet_and_trickling_connections_but_not_busy_ones() {
    let timeout = Duration::from_millis(1500);
    let server = start(timeout).await;
    newest_segment(&server).await;
    // Busy: a request every 500 ms for 4 s, past the deadline counted from the first one.
    let mut busy = Conn::open(server.http_addr()).await;
    let started = Instant::now();
    let quiet_from = loop {
        assert_eq!(
            busy.get("/s1/index.m3u8").await.status,
            200,
            "after {:?}",
            started.elapsed()
        );
        if started.elapsed() >= Duration::from_secs(4) {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Quiet after its last answer: closed once the deadline has passed, not before.
    let closed = busy
        .closed_within(Duration::from_secs(6))
        .await
        .expect("a quiet connection is closed");
    assert!(quiet_from.elapsed() >= timeout, "closed after {closed:?}");
    // Trickling a head: cut at the deadline, however steadily bytes arrive.
    let mut slow = Conn::open(server.http_addr()).await;
    assert_eq!(slow.get("/s1/index.m3u8").await.status, 200);
    let started = Instant::now();
    let mut cut = None;
    for byte in b"GET /s1/index.m3u8 HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'))
    {
        if slow.socket.write_all(&[*byte]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        if slow.closed_within(Duration::from_millis(200)).await.is_some() {
            cut = Some(started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a trickled head was never cut"
        );
    }
    let cut = cut.unwrap();
    assert!(
        cut >= timeout - Duration::from_millis(250) && cut <= timeout + Duration::from_secs(2),
        "cut after {cut:?}"
    );
    server.shutdown().await;
}
