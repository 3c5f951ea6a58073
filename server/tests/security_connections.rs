//! Connection caps of every listener (docs/security.md, "Limits"; issue 15 item 6): bounded
//! floods of idle sockets on loopback, from several 127.0.0.x addresses, against HTTP, RTMP,
//! RTSP and MySQL. Each address keeps its share and no more, a newcomer from another address
//! is still served, and a listener at its cap refuses the next connection (with a 503 on HTTP
//! and `ERR 1040` on MySQL) until a slot frees.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{admin, stream_of};
use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use usher_server::config::parse_config;
use usher_server::listener::{Caps, Protocol};
use usher_server::{RunningServer, Server};

/// How long a refused socket may take to be closed, and a held one is watched for.
const SETTLE: Duration = Duration::from_millis(1500);

async fn start(extra: &str) -> RunningServer {
    let text = format!(
        "http 127.0.0.1:0{extra};\nrtmp 127.0.0.1:0{extra};\nrtsp 127.0.0.1:0{extra};\nmysql 127.0.0.1:0{extra};\n\
         edit_auth admin pw;\n"
    );
    let mut config = parse_config(&text, "caps.conf").unwrap();
    assert_eq!(config.edit_auth, admin());
    config.streams.push(stream_of("s1", "fake://fake", None));
    Server::start(config).await.unwrap()
}

fn addr_of(server: &RunningServer, protocol: Protocol) -> SocketAddr {
    match protocol {
        Protocol::Http => server.http_addr(),
        Protocol::Rtmp => server.rtmp_addr().unwrap(),
        Protocol::Rtsp => server.rtsp_addr().unwrap(),
        Protocol::Mysql => server.mysql_addr().unwrap(),
    }
}

async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// What the server did with a socket within [`SETTLE`]: closed it (with the bytes it sent
/// first), or kept it open.
#[derive(Debug)]
enum Fate {
    Closed(Vec<u8>),
    Held,
}

async fn fate(socket: &mut TcpStream) -> Fate {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(SETTLE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match closed {
        Ok(()) => Fate::Closed(got),
        Err(_) => Fate::Held,
    }
}

/// Opens `attempts` idle connections from each of `addresses` (`127.0.0.N`); returns them with
/// how many each address got to keep.
async fn flood(to: SocketAddr, addresses: &[u8], attempts: usize) -> (Vec<TcpStream>, Vec<usize>) {
    let mut sockets = Vec::new();
    let mut from = Vec::new();
    for &n in addresses {
        for _ in 0..attempts {
            sockets.push(connect_from(&format!("127.0.0.{n}"), to).await);
            from.push(n);
        }
    }
    let fates = join_all(sockets.iter_mut().map(fate)).await;
    let held = addresses
        .iter()
        .map(|&n| {
            from.iter()
                .zip(&fates)
                .filter(|(f, fate)| **f == n && matches!(fate, Fate::Held))
                .count()
        })
        .collect();
    (sockets, held)
}

/// Whether a newcomer from `local` is served: a playlist over HTTP, the handshake's S0/S1 over
/// RTMP, an answer to OPTIONS over RTSP, a greeting (not an ERR packet) over MySQL. On a
/// refusal, what the server sent.
async fn served(protocol: Protocol, local: &str, to: SocketAddr) -> Result<(), String> {
    let mut socket = connect_from(local, to).await;
    let expect: &[u8] = match protocol {
        Protocol::Http => {
            socket
                .write_all(b"GET /s1/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .map_err(|e| e.to_string())?;
            b"HTTP/1.1 200"
        }
        Protocol::Rtmp => {
            let mut c0c1 = vec![3u8];
            c0c1.extend_from_slice(&[0u8; 1536]);
            socket.write_all(&c0c1).await.map_err(|e| e.to_string())?;
            &[3]
        }
        Protocol::Rtsp => {
            socket
                .write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
                .await
                .map_err(|e| e.to_string())?;
            b"RTSP/1.0 200"
        }
        // A greeting packet: 3 bytes of length, sequence 0, protocol version 10.
        Protocol::Mysql => &[],
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let enough = |got: &[u8]| match protocol {
        Protocol::Mysql => got.len() >= 5,
        _ => got.len() >= expect.len(),
    };
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !enough(&got) {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let ok = match protocol {
        Protocol::Mysql => got.len() >= 5 && got[3] == 0 && got[4] == 10,
        _ => got.starts_with(expect),
    };
    match (read, ok) {
        (_, true) => Ok(()),
        (Err(_), false) => Err(format!("no answer within 5 s; got {:?}", String::from_utf8_lossy(&got))),
        (Ok(()), false) => Err(format!("refused: {:?}", String::from_utf8_lossy(&got))),
    }
}

/// [`served`], retried while the server has not yet seen freed slots go (5 s at most).
async fn served_soon(protocol: Protocol, local: &str, to: SocketAddr) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match served(protocol, local, to).await {
            Err(e) if e.starts_with("refused") && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// The attack of issue 15: five addresses each open as many idle connections as the old
/// per-address cap let them (256; 64 on MySQL, whose whole cap that was). Before, that filled
/// RTMP's and RTSP's 1 024 and MySQL's 64, and a newcomer was reset, left waiting or got
/// `ERROR 1043`; now each address keeps its share (1/16 of the cap) and the newcomer is served,
/// on every listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_addresses_at_their_share_leave_room_for_a_newcomer_on_every_listener() {
    let server = start("").await;
    let caps = server.connection_caps();
    for (protocol, attempts) in [
        (Protocol::Mysql, 64),
        (Protocol::Rtmp, 256),
        (Protocol::Rtsp, 256),
        (Protocol::Http, 300),
    ] {
        let cap: Caps = caps.of(protocol);
        assert!(
            attempts > cap.per_address && 5 * cap.per_address < cap.max_connections,
            "{protocol:?}: {cap:?} with {} descriptors",
            caps.descriptors
        );
        let to = addr_of(&server, protocol);
        let (flood, held) = flood(to, &[2, 3, 4, 5, 6], attempts).await;
        assert_eq!(
            held,
            vec![cap.per_address; 5],
            "{protocol:?}: each address keeps its share of {cap:?}"
        );
        served(protocol, "127.0.0.9", to)
            .await
            .unwrap_or_else(|e| panic!("{protocol:?}: a newcomer from another address: {e}"));
        drop(flood);
        // The addresses may connect again once their sockets are gone.
        served_soon(protocol, "127.0.0.2", to)
            .await
            .unwrap_or_else(|e| panic!("{protocol:?}: after the flood: {e}"));
    }
    server.shutdown().await;
}

/// A listener at its configured cap refuses the next connection, whichever address it comes
/// from, and serves again once a slot frees; MySQL says `ERR 1040 Too many connections` and
/// HTTP answers 503, RTMP and RTSP close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_at_its_cap_refuses_until_a_slot_frees() {
    let server = start(" max_connections=10 max_connections_per_ip=4").await;
    for protocol in [Protocol::Http, Protocol::Rtmp, Protocol::Rtsp, Protocol::Mysql] {
        assert_eq!(
            server.connection_caps().of(protocol),
            Caps {
                max_connections: 10,
                per_address: 4
            }
        );
        let to = addr_of(&server, protocol);
        // 4 + 4 + 2 = the cap of 10, from three addresses.
        let mut held = Vec::new();
        for (n, count) in [(2, 4), (3, 4), (4, 2)] {
            for _ in 0..count {
                held.push(connect_from(&format!("127.0.0.{n}"), to).await);
            }
        }
        let fates = join_all(held.iter_mut().map(fate)).await;
        assert!(fates.iter().all(|f| matches!(f, Fate::Held)), "{protocol:?}: {fates:?}");
        let mut refused = connect_from("127.0.0.9", to).await;
        let Fate::Closed(said) = fate(&mut refused).await else {
            panic!("{protocol:?}: an eleventh connection was kept");
        };
        let text = String::from_utf8_lossy(&said).into_owned();
        match protocol {
            Protocol::Http => assert!(text.starts_with("HTTP/1.1 503"), "{text:?}"),
            Protocol::Mysql => {
                assert!(text.contains("Too many connections (at most 10)"), "{text:?}");
                assert_eq!(said.get(4..7), Some(&[0xff, 0x10, 0x04][..]), "ERR 1040: {said:?}");
            }
            Protocol::Rtmp | Protocol::Rtsp => assert_eq!(text, "", "closed without a word"),
        }
        // An address at its share is refused by that rule (with a message saying so).
        if protocol == Protocol::Mysql {
            held.pop();
            let mut fifth = connect_from("127.0.0.2", to).await;
            let Fate::Closed(said) = fate(&mut fifth).await else {
                panic!("a fifth connection from one address was kept");
            };
            let said = String::from_utf8_lossy(&said).into_owned();
            assert!(
                said.contains("Too many connections from 127.0.0.2 (at most 4 per address)"),
                "{said:?}"
            );
        }
        drop(held);
        served_soon(protocol, "127.0.0.9", to)
            .await
            .unwrap_or_else(|e| panic!("{protocol:?}: once slots freed: {e}"));
    }
    server.shutdown().await;
}

/// Shutdown waits for every listener's handlers (MySQL's were detached and never awaited):
/// after `shutdown` returns, no connection of any front end is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_connections_of_every_listener() {
    let server = start("").await;
    let mut open = Vec::new();
    for protocol in [Protocol::Http, Protocol::Rtmp, Protocol::Rtsp, Protocol::Mysql] {
        open.push(connect_from("127.0.0.2", addr_of(&server, protocol)).await);
    }
    let fates = join_all(open.iter_mut().map(fate)).await;
    assert!(fates.iter().all(|f| matches!(f, Fate::Held)), "{fates:?}");
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown ends");
    let fates = join_all(open.iter_mut().map(fate)).await;
    assert!(fates.iter().all(|f| matches!(f, Fate::Closed(_))), "{fates:?}");
}
