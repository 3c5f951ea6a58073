//! Hostile RTMP input against the reference server over real sockets: every case below would
//! panic `rml_rtmp` 0.8, overflow its recursive AMF0 decoder, or make it buffer without bound.
//! Each must close only its own connection; a viewer playing meanwhile keeps playing, and new
//! viewers are still served.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{rtmp_handshake, stream_of};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use usher_server::config::Config;
use usher_server::{RunningServer, Server};

async fn start() -> RunningServer {
    let config = Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        rtmp: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![stream_of("s1", "fake://fake", None)],
        ..Config::default()
    };
    Server::start(config).await.unwrap()
}

/// Reads until the server closes (EOF or reset); panics after `within`.
async fn closed_by_server(mut socket: TcpStream, within: Duration, case: &str) {
    let mut buf = vec![0u8; 64 * 1024];
    let result = tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "{case}: the server kept the connection open for {within:?}"
    );
}

/// A viewer on `rml_rtmp`'s client session, counting video messages in the background.
struct Viewer {
    videos: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Viewer {
    async fn play(addr: SocketAddr, key: &str) -> Viewer {
        let mut socket = rtmp_handshake(addr).await.0;
        let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let connect = session.request_connection("static".into()).unwrap();
        send(&mut socket, vec![connect]).await;
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let key = key.to_string();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut requested = false;
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let Ok(results) = session.handle_input(&buf[..n]) else {
                    return;
                };
                // Packets go out in the order the session made them: the batch's own first.
                let mut answers = Vec::new();
                let mut requests = Vec::new();
                for result in results {
                    match result {
                        ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted)
                            if !requested =>
                        {
                            requested = true;
                            requests.push(session.request_playback(key.clone()).unwrap());
                        }
                        ClientSessionResult::RaisedEvent(ClientSessionEvent::VideoDataReceived { .. }) => {
                            tx.send_modify(|n| *n += 1);
                        }
                        other => answers.push(other),
                    }
                }
                answers.extend(requests);
                send(&mut socket, answers).await;
            }
        });
        Viewer { videos: rx, task }
    }

    /// Waits for `more` video messages beyond the current count.
    async fn receives(&mut self, more: u64, within: Duration) -> bool {
        let target = *self.videos.borrow() + more;
        tokio::time::timeout(within, self.videos.wait_for(|n| *n >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn send(socket: &mut TcpStream, results: Vec<ClientSessionResult>) {
    for result in results {
        if let ClientSessionResult::OutboundResponse(packet) = result {
            let _ = socket.write_all(&packet.bytes).await;
        }
    }
}

fn message(type_id: u8, data: Vec<u8>) -> MessagePayload {
    MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id,
        message_stream_id: 0,
        data: Bytes::from(data),
    }
}

fn amf0(values: Vec<Amf0Value>) -> Vec<u8> {
    rml_amf0::serialize(&values).unwrap()
}

/// A well-formed `connect`, so later input reaches the stages past it.
fn connect_bytes(serializer: &mut ChunkSerializer) -> Vec<u8> {
    let props = HashMap::from([("app".to_string(), Amf0Value::Utf8String("static".into()))]);
    let connect = RtmpMessage::Amf0Command {
        command_name: "connect".into(),
        transaction_id: 1.0,
        command_object: Amf0Value::Object(props),
        additional_arguments: vec![],
    }
    .into_message_payload(RtmpTimestamp::new(0), 0)
    .unwrap();
    serializer.serialize(&connect, false, false).unwrap().bytes
}

/// The hostile inputs, each sent on a fresh connection after the handshake.
fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = Vec::new();

    let mut s = ChunkSerializer::new();
    let one_value = amf0(vec![Amf0Value::Utf8String("connect".into())]);
    cases.push((
        "a command of one AMF0 value",
        s.serialize(&message(20, one_value), true, false).unwrap().bytes,
    ));

    let mut s = ChunkSerializer::new();
    let mut bytes = connect_bytes(&mut s);
    let alone = amf0(vec![Amf0Value::Utf8String("@setDataFrame".into())]);
    bytes.extend(s.serialize(&message(18, alone), true, false).unwrap().bytes);
    cases.push(("@setDataFrame alone", bytes));

    let mut s = ChunkSerializer::new();
    let mut bytes = s.set_max_chunk_size(65_536, RtmpTimestamp::new(0)).unwrap().bytes;
    let mut deep = amf0(vec![Amf0Value::Utf8String("connect".into()), Amf0Value::Number(1.0)]);
    deep.extend(std::iter::repeat_n([0x0A, 0, 0, 0, 1], 12_000).flatten());
    bytes.extend(s.serialize(&message(20, deep), true, false).unwrap().bytes);
    cases.push(("AMF0 nested 12000 levels deep", bytes));

    // Type 0 header on chunk stream 3 announcing 16 MiB − 1 of video, then a little of it.
    let mut huge = vec![0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
    huge.extend([0u8; 128]);
    cases.push(("a 16 MiB message", huge));

    // A 200-byte message cut after its first 128-byte chunk by a chunk of another stream.
    let mut interleaved = vec![0x04, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0];
    interleaved.extend([0x17u8; 128]);
    interleaved.extend([0x05, 0, 0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0xAF, 1]);
    cases.push(("interleaved chunk streams", interleaved));

    // A complete audio message, then a type 2 header with an extended delta below 0xFFFFFF.
    let mut ext = vec![0x04, 0, 0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0xAF, 1];
    ext.extend([0x84, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0xAF, 1]);
    cases.push(("an extended timestamp delta below 0xFFFFFF", ext));

    let mut s = ChunkSerializer::new();
    let mut zero = connect_bytes(&mut s);
    zero.extend(s.serialize(&message(1, vec![0, 0, 0, 0]), true, false).unwrap().bytes);
    cases.push(("Set Chunk Size 0", zero));

    let mut s = ChunkSerializer::new();
    let mut window = connect_bytes(&mut s);
    window.extend(
        s.serialize(&message(5, vec![0xFF, 0xFF, 0xFF, 0xFF]), true, false)
            .unwrap()
            .bytes,
    );
    cases.push(("a 4 GiB acknowledgement window", window));

    cases.push(("a type 3 chunk first", vec![0xC3, 1, 2, 3]));
    cases
}

#[tokio::test]
async fn hostile_input_closes_only_its_own_connection() {
    let server = start().await;
    let addr = server.rtmp_addr().unwrap();
    let mut viewer = Viewer::play(addr, "s1").await;
    assert!(viewer.receives(1, Duration::from_secs(10)).await, "the viewer plays");

    for (case, bytes) in hostile_inputs() {
        let mut socket = rtmp_handshake(addr).await.0;
        let _ = socket.write_all(&bytes).await;
        closed_by_server(socket, Duration::from_secs(3), case).await;
        assert!(
            viewer.receives(1, Duration::from_secs(3)).await,
            "{case}: the viewer stopped"
        );
    }

    let mut another = Viewer::play(addr, "s1").await;
    assert!(
        another.receives(1, Duration::from_secs(10)).await,
        "a new viewer is served"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_by_the_setup_timeout() {
    let server = start().await;
    let addr = server.rtmp_addr().unwrap();
    let started = Instant::now();
    // Connected but never a byte.
    let silent = TcpStream::connect(addr).await.unwrap();
    // Handshaken, then nothing: no connect, no play.
    let quiet = rtmp_handshake(addr).await.0;
    closed_by_server(silent, Duration::from_secs(15), "silent").await;
    closed_by_server(quiet, Duration::from_secs(5), "quiet after the handshake").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= usher_server::rtmp::SETUP_TIMEOUT - Duration::from_millis(500),
        "closed too early: {elapsed:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_playing_connections() {
    let server = start().await;
    let addr = server.rtmp_addr().unwrap();
    let mut viewer = Viewer::play(addr, "s1").await;
    assert!(viewer.receives(1, Duration::from_secs(10)).await);
    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown waited {:?} for the RTMP connections",
        started.elapsed()
    );
    let closed = tokio::time::timeout(Duration::from_secs(2), viewer.videos.wait_for(|_| false)).await;
    assert!(matches!(closed, Ok(Err(_))), "the viewer's connection ended");
}
