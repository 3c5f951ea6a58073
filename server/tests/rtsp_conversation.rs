//! The RTSP front end over a raw TCP socket: the exact requests and answers of a session
//! (RFC 2326), the interleaved RTP it sends, refusals, and the limits that protect the server.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::{backend_with, http_auth, stream_of};
use rtsp_types::{Message, ParseError, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::{AuthCore, AuthSettings, HttpBackend};
use usher_server::config::Config;
use usher_server::context::Context;
use usher_server::listener::{Caps, Listener, Protocol};
use usher_server::rtsp::{Limits, run_with_limits};
use usher_server::streams::Streams;
use usher_server::{RunningServer, Server};
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A hand-driven RTSP client: writes request text, reads answers, and keeps the interleaved
/// frames that arrive in between.
struct Client {
    conn: TcpStream,
    buf: Vec<u8>,
    frames: Vec<(u8, Vec<u8>)>,
    cseq: u32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            conn: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
            frames: Vec::new(),
            cseq: 0,
        }
    }

    /// Sends `METHOD URL RTSP/1.0` with a CSeq and `headers`, and reads the answer.
    async fn request(&mut self, line: &str, headers: &[(&str, &str)]) -> Response<Vec<u8>> {
        self.cseq += 1;
        let mut text = format!("{line} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        self.send(text.as_bytes()).await;
        let response = self.response().await;
        let cseq = response
            .header(&rtsp_types::headers::CSEQ)
            .map(|v| v.as_str().to_string());
        assert_eq!(cseq, Some(self.cseq.to_string()), "CSeq echoed");
        response
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).await.unwrap();
    }

    /// The next message: interleaved frames are stored, the first response returned.
    async fn response(&mut self) -> Response<Vec<u8>> {
        loop {
            match self.next_message().await {
                Some(Message::Response(r)) => return r,
                Some(_) => continue,
                None => panic!("the server closed instead of answering"),
            }
        }
    }

    async fn next_message(&mut self) -> Option<Message<Vec<u8>>> {
        loop {
            match Message::<Vec<u8>>::parse(&self.buf) {
                Ok((message, used)) => {
                    self.buf.drain(..used);
                    if let Message::Data(d) = &message {
                        self.frames.push((d.channel_id(), d.as_slice().to_vec()));
                    }
                    return Some(message);
                }
                Err(ParseError::Incomplete(_)) => {}
                Err(ParseError::Error) => {
                    panic!("unparseable server output: {:?}", &self.buf[..self.buf.len().min(64)])
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), self.conn.read(&mut chunk))
                .await
                .expect("the server answers within 5 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes; `true` if it did within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        tokio::time::timeout(within, async {
            loop {
                match self.conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

fn status(r: &Response<Vec<u8>>) -> u16 {
    r.status().into()
}

fn header(r: &Response<Vec<u8>>, name: &str) -> Option<String> {
    r.headers()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str().to_string())
}

async fn backend() -> MockServer {
    backend_with([
        Mock::given(method("GET"))
            .and(query_param("token", "good"))
            .respond_with(ResponseTemplate::new(200)),
        Mock::given(method("GET"))
            .and(query_param("token", "redirect"))
            .respond_with(ResponseTemplate::new(302).insert_header("Location", "rtsp://elsewhere/s")),
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(403)),
    ])
    .await
}

async fn start(backend: &MockServer) -> RunningServer {
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        rtsp: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![stream_of("s1", "fake://fake", Some(http_auth(backend)))],
        ..Config::default()
    };
    Server::start(config).await.unwrap()
}

/// A server with `s1` checked by `backend()`, and a client connected to its RTSP port.
struct Session {
    backend: MockServer,
    server: RunningServer,
    addr: SocketAddr,
    /// `rtsp://` and the address.
    base: String,
    c: Client,
}

impl Session {
    async fn start() -> Session {
        let backend = backend().await;
        let server = start(&backend).await;
        let addr = server.rtsp_addr().unwrap();
        let c = Client::connect(addr).await;
        Session {
            backend,
            server,
            addr,
            base: format!("rtsp://{addr}"),
            c,
        }
    }
}

/// `(seq, timestamp, marker, payload)` of an RTP packet.
fn rtp(p: &[u8]) -> (u16, u32, bool, &[u8]) {
    assert_eq!(p[0] >> 6, 2, "RTP version 2");
    (
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        p[1] & 0x80 != 0,
        &p[12..],
    )
}

/// Key/value items of one RTP-Info entry.
fn rtp_info(value: &str) -> Vec<HashMap<String, String>> {
    value
        .split(',')
        .map(|entry| {
            entry
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_whole_session_over_a_raw_socket() {
    let Session {
        backend,
        server,
        addr,
        base,
        mut c,
    } = Session::start().await;

    let options = c.request("OPTIONS *", &[]).await;
    assert_eq!(status(&options), 200);
    assert!(header(&options, "Public").unwrap().contains("DESCRIBE"));

    // RFC 2326 §12.17: no CSeq is a 400, and the connection goes on.
    c.send(b"OPTIONS * RTSP/1.0\r\n\r\n").await;
    assert_eq!(status(&c.response().await), 400);

    let describe = c
        .request(
            &format!("DESCRIBE {base}/s1?token=good"),
            &[
                ("Accept", "application/sdp"),
                ("User-Agent", "raw-test/1"),
                ("Referer", "http://site.example/p"),
            ],
        )
        .await;
    assert_eq!(status(&describe), 200);
    assert_eq!(header(&describe, "Content-Type").as_deref(), Some("application/sdp"));
    let sdp = sdp_types::Session::parse(describe.body()).expect("the SDP parses");
    assert_eq!(
        sdp.get_first_attribute_value("control").unwrap(),
        Some(format!("{base}/s1?token=good").as_str())
    );
    let controls: Vec<String> = sdp
        .medias
        .iter()
        .map(|m| m.get_first_attribute_value("control").unwrap().unwrap().to_string())
        .collect();
    assert_eq!(
        controls[0],
        format!("{base}/s1/trackID=0?token=good"),
        "absolute, with the token"
    );
    let video = &sdp.medias[0];
    assert_eq!(
        video.get_first_attribute_value("rtpmap").unwrap(),
        Some("96 H264/90000")
    );
    let fmtp = video.get_first_attribute_value("fmtp").unwrap().unwrap();
    assert!(
        fmtp.contains("packetization-mode=1") && fmtp.contains("sprop-parameter-sets="),
        "{fmtp}"
    );
    let has_audio = sdp.medias.len() == 2;
    if has_audio {
        assert_eq!(
            sdp.medias[1].get_first_attribute_value("rtpmap").unwrap(),
            Some("97 MPEG4-GENERIC/48000/1")
        );
    }

    let udp = c
        .request(
            &format!("SETUP {}", controls[0]),
            &[("Transport", "RTP/AVP;unicast;client_port=5000-5001")],
        )
        .await;
    assert_eq!(status(&udp), 461, "UDP is not served");

    let setup = c
        .request(
            &format!("SETUP {}", controls[0]),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        )
        .await;
    assert_eq!(status(&setup), 200);
    let transport = header(&setup, "Transport").unwrap();
    assert!(
        transport.starts_with("RTP/AVP/TCP;unicast;interleaved=0-1"),
        "{transport}"
    );
    let session = header(&setup, "Session").unwrap();
    let (id, timeout) = session.split_once(';').unwrap();
    assert_eq!(timeout, "timeout=60");
    if has_audio {
        // The relative control joined by string pasting is understood too.
        let audio = c
            .request(
                &format!("SETUP {base}/s1?token=good/trackID=1"),
                &[("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"), ("Session", id)],
            )
            .await;
        assert_eq!(status(&audio), 200);
    }

    assert_eq!(
        status(&c.request(&format!("PLAY {base}/s1"), &[("Session", "nope")]).await),
        454
    );
    let play = c
        .request(
            &format!("PLAY {base}/s1?token=good"),
            &[("Session", id), ("Range", "npt=0.000-")],
        )
        .await;
    assert_eq!(status(&play), 200);
    let info = rtp_info(&header(&play, "RTP-Info").expect("RTP-Info"));
    assert_eq!(info[0]["url"], controls[0]);
    let first_seq: u16 = info[0]["seq"].parse().unwrap();
    let first_time: u32 = info[0]["rtptime"].parse().unwrap();

    // The client's RTCP (interleaved, channel 1) and a keepalive in the middle of the media.
    c.send(&[b'$', 1, 0, 8, 0x81, 201, 0, 1, 0, 0, 0, 1]).await;
    let keepalive = c.request(&format!("GET_PARAMETER {base}/s1"), &[("Session", id)]).await;
    assert_eq!(status(&keepalive), 200);

    // Three video access units: the first starts with SPS, PPS, IDR at the RTP-Info point.
    let mut units: Vec<Vec<u8>> = Vec::new();
    let mut types = Vec::new();
    let mut packets = Vec::new();
    while units.len() < 3 {
        if c.frames.is_empty() {
            c.next_message().await.expect("media keeps coming");
            continue;
        }
        let (channel, packet) = c.frames.remove(0);
        if channel == 2 {
            let (_, _, marker, payload) = rtp(&packet);
            assert!(marker, "one AAC frame per packet");
            assert_eq!(&payload[..2], &[0, 16], "one 16-bit AU-header");
            continue;
        }
        assert_eq!(channel, 0);
        let (seq, ts, marker, payload) = rtp(&packet);
        packets.push((seq, ts));
        let nal_type = payload[0] & 0x1F;
        types.push(if nal_type == 28 { payload[1] & 0x1F } else { nal_type });
        if marker {
            units.push(types.clone());
            types.clear();
        }
    }
    assert_eq!(
        packets[0],
        (first_seq, first_time),
        "the first packet is the RTP-Info point"
    );
    assert!(
        packets.windows(2).all(|w| w[1].0 == w[0].0.wrapping_add(1)),
        "contiguous sequence numbers"
    );
    assert_eq!(&units[0][..3], &[7, 8, 5], "SPS, PPS, IDR: {units:?}");
    let times: Vec<u32> = packets.iter().map(|p| p.1).collect();
    assert!(
        times.contains(&first_time.wrapping_add(9_000)),
        "10 fps at 90 kHz: {times:?}"
    );

    let teardown = c.request(&format!("TEARDOWN {base}/s1"), &[("Session", id)]).await;
    assert_eq!(status(&teardown), 200);
    // The session ends as the connection's handler lets go of it: poll, with a bound.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !server.core().sessions().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        server.core().sessions().is_empty(),
        "TEARDOWN closes the session (within 5 s)"
    );

    let calls = backend.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1, "one backend call for DESCRIBE, SETUP, PLAY, keepalive");
    let params: HashMap<String, String> = calls[0].url.query_pairs().into_owned().collect();
    assert_eq!(params["proto"], "rtsp");
    assert_eq!(params["user_agent"], "raw-test/1");
    assert_eq!(params["referer"], "http://site.example/p");
    assert_eq!(params["host"], addr.to_string());
    assert_eq!(params["qs"], "token=good");
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_and_unsupported_requests() {
    let Session {
        backend,
        server,
        base,
        mut c,
        ..
    } = Session::start().await;

    assert_eq!(
        status(&c.request(&format!("DESCRIBE {base}/s1?token=bad"), &[]).await),
        403
    );
    assert_eq!(
        status(&c.request(&format!("DESCRIBE {base}/s1?token=redirect"), &[]).await),
        403,
        "a backend 302 is a deny for RTSP (AMB-5)"
    );
    assert_eq!(
        status(&c.request(&format!("DESCRIBE {base}/nope?token=good"), &[]).await),
        404
    );
    assert_eq!(status(&c.request(&format!("DESCRIBE {base}/"), &[]).await), 404);
    assert_eq!(
        status(&c.request(&format!("PLAY {base}/s1"), &[("Session", "x")]).await),
        454
    );
    assert_eq!(status(&c.request(&format!("ANNOUNCE {base}/s1"), &[]).await), 501);
    // Nothing was granted, so nothing plays and only the DESCRIBEs asked the backend.
    assert_eq!(status(&c.request(&format!("PLAY {base}/s1"), &[]).await), 454);
    c.send(format!("OPTIONS {base}/s1 RTSP/2.0\r\nCSeq: 99\r\n\r\n").as_bytes())
        .await;
    assert_eq!(status(&c.response().await), 505);
    assert_eq!(backend.received_requests().await.unwrap().len(), 2);
    assert!(server.core().sessions().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_closed_through_the_core_closes_the_connection() {
    // The backend is kept to the end, as the other tests keep theirs.
    let Session {
        backend: _backend,
        server,
        base,
        mut c,
        ..
    } = Session::start().await;
    assert_eq!(
        status(&c.request(&format!("DESCRIBE {base}/s1?token=good"), &[]).await),
        200
    );
    let setup = c
        .request(
            &format!("SETUP {base}/s1/trackID=0?token=good"),
            &[("Transport", "RTP/AVP/TCP;interleaved=0-1")],
        )
        .await;
    let session = header(&setup, "Session").unwrap();
    let id = session.split(';').next().unwrap();
    assert_eq!(
        status(&c.request(&format!("PLAY {base}/s1"), &[("Session", id)]).await),
        200
    );

    let sessions = server.core().sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].proto, "rtsp");
    assert!(server.core().close_session(sessions[0].id));
    assert!(
        c.closed_within(Duration::from_secs(1)).await,
        "closed within 1 s of the API DELETE"
    );
    server.shutdown().await;
}

/// A front end on a context without `on_play`, with short limits and the default caps.
async fn limited(limits: Limits) -> (SocketAddr, CancellationToken) {
    limited_to(limits, Caps::of(1024)).await
}

/// [`limited`] with `caps` on its listener.
async fn limited_to(limits: Limits, caps: Caps) -> (SocketAddr, CancellationToken) {
    let core = AuthCore::new(
        Arc::new(HttpBackend::new().unwrap()),
        AdminTokens::new("secret", Duration::from_secs(3600), false),
        AuthSettings {
            no_auto_token: AtomicBool::new(false),
            http_session_idle: Duration::from_secs(30),
            soft_limitation_delay: usher_server::auth::DEFAULT_SOFT_LIMITATION_DELAY,
        },
    );
    let streams = Arc::new(Streams::new(vec![stream_of("s1", "fake://fake", None)], vec![]));
    let ctx = Arc::new(Context::new(core, streams, "token".into()));
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Protocol::Rtsp, caps)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(run_with_limits(listener, ctx, shutdown.clone(), limits));
    (addr, shutdown)
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let (addr, shutdown) = limited(Limits {
        first_request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..Limits::default()
    })
    .await;
    let started = tokio::time::Instant::now();
    let mut silent = Client::connect(addr).await;
    assert!(silent.closed_within(Duration::from_secs(2)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );

    let mut idle = Client::connect(addr).await;
    assert_eq!(status(&idle.request("OPTIONS *", &[]).await), 200);
    let started = tokio::time::Instant::now();
    assert!(idle.closed_within(Duration::from_secs(3)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    shutdown.cancel();
}

/// Over the cap a client is closed at once (it used to wait in the listen backlog, the one
/// front end that did; every listener now refuses alike, docs/security.md "Limits"), and the
/// slot is free again when the holder leaves.
#[tokio::test]
async fn a_connection_over_the_cap_is_closed_and_the_slot_comes_back() {
    let (addr, shutdown) = limited_to(
        Limits::default(),
        Caps {
            max_connections: 1,
            per_address: 1,
        },
    )
    .await;
    let mut first = Client::connect(addr).await;
    assert_eq!(status(&first.request("OPTIONS *", &[]).await), 200);
    let mut second = Client::connect(addr).await;
    assert!(
        second.closed_within(Duration::from_secs(2)).await,
        "the second client is closed while the first holds the only slot"
    );
    drop(first);
    let answer = loop {
        let mut third = Client::connect(addr).await;
        third.send(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n").await;
        // The server may not have seen the first one go yet.
        if let Ok(Some(answer)) = tokio::time::timeout(Duration::from_secs(2), third.next_message()).await {
            break answer;
        }
    };
    let Message::Response(answer) = answer else {
        panic!("expected a response, got {answer:?}")
    };
    assert_eq!(status(&answer), 200);
    shutdown.cancel();
}

#[tokio::test]
async fn shutdown_closes_playing_connections() {
    let (addr, shutdown) = limited(Limits::default()).await;
    let mut c = Client::connect(addr).await;
    let describe = c.request(&format!("DESCRIBE rtsp://{addr}/s1"), &[]).await;
    assert_eq!(status(&describe), 200, "no on_play: everyone may play");
    shutdown.cancel();
    assert!(c.closed_within(Duration::from_secs(1)).await);
}
