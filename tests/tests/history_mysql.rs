//! Session history over real sockets: HLS and HTTP MPEG-TS viewers closed by a disconnect, an
//! API DELETE and a per-user kick land in the history; the stock MariaDB client (Debian
//! package `mariadb-client`) reads them by user id over the MySQL protocol; bad queries get an
//! ERR packet and leave the connection usable; a wrong password is refused; the API lists
//! closed sessions filtered by user id.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::{answer, auth, stream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::Command;
use usher_server::RunningServer;
use usher_server::config::{Config, Credential};
use usher_server::mysql::packet::{self, Reply};
use wiremock::{MockServer, ResponseTemplate};

const LOGIN: &str = "admin";
const PASSWORD: &str = "s3cret";

async fn backend() -> MockServer {
    let server = MockServer::start().await;
    for (token, user, max) in [
        ("a", "100", None),
        ("b", "100", None),
        ("c1", "200", Some("1")),
        ("c2", "200", Some("1")),
    ] {
        let mut allow = ResponseTemplate::new(200).insert_header("X-UserId", user);
        if let Some(max) = max {
            allow = allow.insert_header("X-Max-Sessions", max);
        }
        answer(&server, "GET", "/auth", Some(token), 5, allow).await;
    }
    server
}

async fn start(backend: &MockServer) -> RunningServer {
    let config = Config {
        http: support::loopback(),
        mysql: support::loopback(),
        edit_auth: Some(Credential {
            login: LOGIN.into(),
            password: PASSWORD.into(),
        }),
        streams: vec![stream("s1", "fake://fake", auth(backend, "/auth"))],
        ..Config::default()
    };
    support::start(config).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn api_get(server: &RunningServer, path_and_query: &str) -> Value {
    let resp = client()
        .get(format!("http://{}/streamer/api/v3{path_and_query}", server.http_addr()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path_and_query}: {}", resp.status());
    resp.json().await.unwrap()
}

/// Plays HLS: the playlist and its first segment.
async fn hls(server: &RunningServer, token: &str) {
    let base = format!("http://{}/s1", server.http_addr());
    let playlist = client()
        .get(format!("{base}/index.m3u8?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(playlist.status(), 200, "playlist for {token}");
    let text = playlist.text().await.unwrap();
    let segment = text.lines().find(|l| l.starts_with("segment-")).expect("a segment");
    let bytes = client().get(format!("{base}/{segment}")).send().await.unwrap();
    assert_eq!(bytes.status(), 200);
    assert!(!bytes.bytes().await.unwrap().is_empty());
}

/// Waits until the history holds `n` closed sessions of `user`.
async fn closed_of(server: &RunningServer, user: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let body = api_get(server, &format!("/sessions?closed=true&user_id={user}")).await;
        let list = body["sessions"].as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the history never held {n} closed sessions of user {user}");
}

/// Runs the stock client; returns (success, stdout, stderr).
async fn mariadb(server: &RunningServer, password: &str, args: &[&str]) -> (bool, String, String) {
    mariadb_with_input(server, password, args, "").await
}

/// Runs the stock client with `input` as its standard input (one statement per line).
async fn mariadb_with_input(
    server: &RunningServer,
    password: &str,
    args: &[&str],
    input: &str,
) -> (bool, String, String) {
    let port = server.mysql_addr().expect("mysql listener").port().to_string();
    let pw = format!("-p{password}");
    let mut child = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            LOGIN,
            &pw,
            "--batch",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the mariadb client must be installed (Debian package mariadb-client)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("mariadb finishes within 20 s")
        .expect("mariadb runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Closes sessions three ways: user 100 by disconnect (MPEG-TS) and API DELETE (HLS), user
/// 200 by a kick (X-Max-Sessions: 1).
async fn close_three_ways(server: &RunningServer) {
    // MPEG-TS viewer: read a little, then hang up.
    let resp = client()
        .get(format!("http://{}/s1/mpegts?token=a", server.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut got = 0;
    while got < 10_000 {
        got += resp.chunk().await.unwrap().expect("media").len();
    }
    drop(resp);

    // HLS viewer closed through the API.
    hls(server, "b").await;
    let open = api_get(server, "/sessions?user_id=100").await;
    let id = open["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["token"] == "b")
        .and_then(|s| s["id"].as_str())
        .expect("b is open")
        .to_string();
    let deleted = client()
        .delete(format!("http://{}/streamer/api/v3/sessions/{id}", server.http_addr()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // User 200 may hold one session: c2 kicks c1.
    hls(server, "c1").await;
    hls(server, "c2").await;
}

#[tokio::test]
async fn the_stock_client_reads_closed_sessions_by_user_id() {
    if !support::have(&[support::MARIADB]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    close_three_ways(&server).await;

    let user100 = closed_of(&server, "100", 2).await;
    let mut reasons: Vec<&str> = user100.iter().map(|s| s["close_reason"].as_str().unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons, ["api", "disconnected"], "{user100:?}");
    for s in &user100 {
        assert!(s["bytes"].as_i64().unwrap() > 0, "{s}");
        assert!(
            s["closed_at"].as_i64().unwrap() >= s["opened_at"].as_i64().unwrap(),
            "{s}"
        );
        assert_eq!(s["name"], "s1");
    }
    // Newest first.
    assert!(user100[0]["closed_at"].as_i64() >= user100[1]["closed_at"].as_i64());
    let user200 = closed_of(&server, "200", 1).await;
    assert_eq!(user200.len(), 1, "{user200:?}");
    assert_eq!(user200[0]["token"], "c1");
    assert_eq!(user200[0]["close_reason"], "kicked");
    let limited = api_get(&server, "/sessions?closed=true&limit=1").await;
    assert_eq!(limited["sessions"].as_array().unwrap().len(), 1);

    let (ok, out, err) = mariadb(
        &server,
        PASSWORD,
        &[
            "-e",
            "select user_id, bytes, close_reason, proto from sessions where user_id='100' order by proto",
        ],
    )
    .await;
    assert!(ok, "mariadb failed: {err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines[0], ["user_id", "bytes", "close_reason", "proto"], "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!((lines[1][0], lines[1][2], lines[1][3]), ("100", "api", "hls"), "{out}");
    assert_eq!(
        (lines[2][0], lines[2][2], lines[2][3]),
        ("100", "disconnected", "tshttp"),
        "{out}"
    );
    for row in &lines[1..] {
        assert!(row[1].parse::<u64>().unwrap() > 0, "{out}");
    }

    // What a stock client asks on its own, and the table's description.
    let (ok, out, err) = mariadb(
        &server,
        PASSWORD,
        &[
            "usher",
            "-e",
            "select @@version_comment limit 1; select database(); show tables; describe sessions",
        ],
    )
    .await;
    assert!(ok, "mariadb failed: {err}");
    assert!(out.contains("Usher session history"), "{out}");
    assert!(out.contains("sessions") && out.contains("close_reason"), "{out}");

    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_query_gets_an_error_and_the_connection_goes_on() {
    if !support::have(&[support::MARIADB]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    close_three_ways(&server).await;
    closed_of(&server, "100", 2).await;
    closed_of(&server, "200", 1).await;

    // The stock client prints ERROR and exits non-zero…
    for (query, code) in [
        ("select nope from sessions", "1054"),
        ("select * from users", "1146"),
        ("select * from sessions where", "1064"),
        ("select count(*) from sessions", "1235"),
        ("delete from sessions", "1290"),
    ] {
        let (ok, _, err) = mariadb(&server, PASSWORD, &["-e", query]).await;
        assert!(!ok, "{query} should fail");
        assert!(err.contains(&format!("ERROR {code}")), "{query}: {err}");
    }
    // …and with --force goes on to the next statement on the same connection.
    let (_, out, err) = mariadb_with_input(
        &server,
        PASSWORD,
        &["--force"],
        "select from nowhere;\nselect user_id from sessions where user_id = '200';\n",
    )
    .await;
    assert!(err.contains("ERROR 1064"), "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["user_id", "200"], "{out} / {err}");

    // A raw client sees the ERR packet, then a result set on the same connection.
    let mut conn = RawClient::login(&server, PASSWORD).await.expect("login");
    let (first, _) = conn
        .query("select user_id from sessions where user_id = 'x' or 1=1")
        .await;
    assert_eq!(first[0], 0xff, "an ERR packet");
    let (first, packets) = conn
        .query("select user_id, bytes from sessions where user_id = '100'")
        .await;
    assert_eq!(first, [2], "two columns");
    // count, 2 definitions, EOF, 2 rows, EOF
    assert_eq!(packets, 7);
    let (first, _) = conn.command(0x0e, b"").await;
    assert_eq!(first[0], 0x00, "COM_PING gets OK");

    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    if !support::have(&[support::MARIADB]) {
        return;
    }
    let backend = backend().await;
    let server = start(&backend).await;
    let (ok, _, err) = mariadb(&server, "wrong", &["-e", "select 1"]).await;
    assert!(!ok);
    assert!(err.contains("ERROR 1045"), "{err}");
    assert!(RawClient::login(&server, "wrong").await.is_err());
    assert!(RawClient::login(&server, PASSWORD).await.is_ok());
    server.shutdown().await;
}

/// A minimal protocol client, to look at the packets themselves.
struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    async fn login(server: &RunningServer, password: &str) -> Result<RawClient, String> {
        let mut stream = TcpStream::connect(server.mysql_addr().unwrap()).await.unwrap();
        let (_, greeting) = packet::read_packet(&mut stream).await.unwrap();
        assert_eq!(greeting[0], 10, "protocol v10");
        let version_end = greeting.iter().position(|b| *b == 0).unwrap();
        let rest = &greeting[version_end + 1..];
        let mut scramble = [0u8; 20];
        scramble[..8].copy_from_slice(&rest[4..12]);
        // conn id 4, part1 8, filler 1, caps 2, charset 1, status 2, caps 2, len 1, reserved 10
        scramble[8..].copy_from_slice(&rest[31..43]);
        let caps = packet::CLIENT_PROTOCOL_41 | packet::CLIENT_SECURE_CONNECTION | packet::CLIENT_PLUGIN_AUTH;
        let mut p = Vec::new();
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(33);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(LOGIN.as_bytes());
        p.push(0);
        let auth = packet::native_password_response(&scramble, password);
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        p.extend_from_slice(packet::NATIVE_PASSWORD.as_bytes());
        p.push(0);
        let mut reply = Reply::after(0);
        reply.packet(&p);
        reply.send(&mut stream).await.unwrap();
        let (_, answer) = packet::read_packet(&mut stream).await.unwrap();
        match answer[0] {
            0x00 => Ok(RawClient { stream }),
            _ => Err(String::from_utf8_lossy(&answer[9..]).into_owned()),
        }
    }

    /// Sends a command; returns the first reply packet and how many packets the reply has.
    async fn command(&mut self, command: u8, body: &[u8]) -> (Vec<u8>, usize) {
        let mut p = vec![command];
        p.extend_from_slice(body);
        let mut out = Reply::after(u8::MAX);
        out.packet(&p);
        out.send(&mut self.stream).await.unwrap();
        let (_, first) = packet::read_packet(&mut self.stream).await.unwrap();
        if first[0] == 0x00 || first[0] == 0xff {
            return (first, 1);
        }
        // A result set: definitions up to EOF, rows up to EOF.
        let mut count = 1;
        let mut eofs = 0;
        while eofs < 2 {
            let (_, p) = packet::read_packet(&mut self.stream).await.unwrap();
            count += 1;
            if p[0] == 0xfe && p.len() < 9 {
                eofs += 1;
            }
        }
        (first, count)
    }

    async fn query(&mut self, sql: &str) -> (Vec<u8>, usize) {
        self.command(0x03, sql.as_bytes()).await
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        // COM_QUIT is a courtesy; the server also copes with a plain close.
        let _ = self.stream.try_write(&[1, 0, 0, 0, 1]);
    }
}
