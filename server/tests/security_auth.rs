//! No way in without a grant, over real HLS (docs/security.md): forged, altered, expired,
//! future and foreign-secret admin tokens are ordinary tokens that the backend refuses
//! (ADM-04, AMB-17); Referer tricks do not pass the domain lock and cost no backend call
//! (DOM-01, AMB-18); a backend's `config` override cannot point a stream's `file://` input
//! outside the media root (AMB-16), whatever the encoding or a link says.

mod common;

use std::time::{Duration, SystemTime};

use common::{admin, as_admin, backend_answering, client, http_auth, stream_of, text_of};
use reqwest::header::{HeaderValue, REFERER};
use serde_json::{Value, json};
use usher_server::auth::admin::AdminTokens;
use usher_server::config::{AuthSpec, Config, StreamConfig};
use usher_server::{RunningServer, Server};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "s3cret-of-this-server";

fn stream(name: &str, on_play: AuthSpec) -> StreamConfig {
    stream_of(name, "fake://fake", Some(on_play))
}

async fn start(streams: Vec<StreamConfig>, media_root: Option<String>) -> RunningServer {
    Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        edit_auth: admin(),
        server_secret: Some(SECRET.into()),
        admin_token_ttl: Duration::from_secs(3600),
        media_root,
        streams,
        ..Config::default()
    })
    .await
    .unwrap()
}

async fn calls(backend: &MockServer) -> usize {
    backend.received_requests().await.unwrap_or_default().len()
}

async fn play(server: &RunningServer, stream: &str, token: &str) -> u16 {
    let url = format!("http://{}/{stream}/index.m3u8", server.http_addr());
    client()
        .get(url)
        .query(&[("token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn only_this_server_s_fresh_admin_tokens_bypass_the_backend() {
    let backend = backend_answering(ResponseTemplate::new(403)).await;
    let on_play = http_auth(&backend);
    let server = start(vec![stream("s1", on_play)], None).await;

    let minted: Value = as_admin(client().post(format!(
        "http://{}/streamer/api/v3/admin_view_token",
        server.http_addr()
    )))
    .await
    .json()
    .await
    .unwrap();
    let token = minted["token"].as_str().expect("a token").to_string();
    assert_eq!(play(&server, "s1", &token).await, 200, "the minted token plays");
    let playlist = text_of(format!("http://{}/s1/index.m3u8?token={token}", server.http_addr())).await;
    let segment = playlist
        .lines()
        .find(|l| l.starts_with("segment-"))
        .expect("a segment URI");
    let status = client()
        .get(format!("http://{}/s1/{segment}", server.http_addr()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "its segments play too");
    assert_eq!(calls(&backend).await, 0, "an admin token makes no backend call");

    let now = SystemTime::now();
    let ours = AdminTokens::new(SECRET, Duration::from_secs(3600), false);
    let (stamp, sig) = token.rsplit_once('-').unwrap();
    let mut flipped = sig.to_string();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    let secs: u64 = stamp.trim_start_matches("ADM1-").parse().unwrap();
    let hostile = [
        ("forged signature", format!("ADM1-{secs}-{}", "0".repeat(40))),
        ("altered signature", format!("{stamp}-{flipped}")),
        ("altered time", format!("ADM1-{}-{sig}", secs + 1)),
        ("trailing bytes", format!("{token}0")),
        ("lower-case prefix", token.replacen("ADM1", "adm1", 1)),
        ("other version", token.replacen("ADM1", "ADM2", 1)),
        ("expired", ours.mint(now - Duration::from_secs(3601)).unwrap()),
        ("from the future", ours.mint(now + Duration::from_secs(600)).unwrap()),
        (
            "foreign secret",
            AdminTokens::new("another-server", Duration::from_secs(3600), false)
                .mint(now)
                .unwrap(),
        ),
    ];
    for (i, (what, hostile)) in hostile.iter().enumerate() {
        if hostile == &token {
            continue;
        }
        let before = calls(&backend).await;
        assert_eq!(play(&server, "s1", hostile).await, 403, "{what}: {hostile}");
        assert_eq!(
            calls(&backend).await,
            before + 1,
            "{what} (case {i}): goes to the backend like any token"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn referer_tricks_do_not_pass_the_domain_lock() {
    let backend = backend_answering(ResponseTemplate::new(200)).await;
    let mut on_play = http_auth(&backend);
    on_play.domains = vec!["good.com".into(), "bücher.de".into()];
    // The same lock with `require_referer=true`: a missing Referer is refused too.
    let mut strict = on_play.clone();
    strict.require_referer = true;
    let server = start(vec![stream("s1", on_play), stream("strict", strict)], None).await;
    // (Referer as sent, whether it plays.) A refused one must not reach the backend. On
    // `strict` every row plays the same except the first: no Referer is refused there.
    let table: &[(Option<&[u8]>, bool)] = &[
        (None, true),
        (Some(b"http://good.com/player"), true),
        (Some(b"https://www.good.com:8443/p?x=1"), true),
        (Some(b"HTTP://GOOD.COM/"), true),
        (Some(b"http://Www.Good.Com./"), true),
        (Some(b"http://user@good.com/"), true),
        (Some(b"http://xn--bcher-kva.de/"), true),
        (Some("http://www.bücher.de/".as_bytes()), true),
        (Some("http://WWW.BÜCHER.DE./".as_bytes()), true),
        (Some(b"http://good.com.evil.com/"), false),
        (Some(b"http://good.com.evil.com./"), false),
        (Some(b"http://evil.com/?good.com"), false),
        (Some(b"http://evil.com/good.com"), false),
        (Some(b"http://evil.com/#good.com"), false),
        (Some(b"http://good.com@evil.com/"), false),
        (Some(b"http://user:good.com@evil.com/"), false),
        (Some(b"http://evilgood.com/"), false),
        (Some(b"http://good.com%2eevil.com/"), false),
        (Some(b"http://bucher.de/"), false),
        (Some(b"http://xn--bcher-kva.de.evil.com/"), false),
        (Some("http://evil.com/bücher.de".as_bytes()), false),
        (Some(b"ftp://good.com/"), false),
        (Some(b"javascript:alert('good.com')"), false),
        (Some(b"good.com"), false),
        (Some(b"//good.com/"), false),
        (Some(b"http://127.0.0.1/"), false),
    ];
    let mut failures = Vec::new();
    for name in ["s1", "strict"] {
        for (i, (referer, plays)) in table.iter().enumerate() {
            let plays = *plays && !(name == "strict" && referer.is_none());
            let before = calls(&backend).await;
            let mut request = client()
                .get(format!("http://{}/{name}/index.m3u8", server.http_addr()))
                .query(&[("token", format!("{name}-t{i}"))]);
            if let Some(referer) = referer {
                request = request.header(REFERER, HeaderValue::from_bytes(referer).unwrap());
            }
            let status = request.send().await.unwrap().status().as_u16();
            let made_call = calls(&backend).await > before;
            let shown = referer.map(String::from_utf8_lossy);
            if (status == 200) != plays || made_call != plays {
                failures.push(format!(
                    "{name}: Referer {shown:?}: status {status}, backend called: {made_call}, expected to play: {plays}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    server.shutdown().await;
}

/// A temporary media root with a link that points out of it.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("usher-sec-{tag}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn an_overridden_file_input_cannot_leave_the_media_root() {
    let media = TempDir::new("media");
    let outside = TempDir::new("outside");
    std::fs::write(outside.0.join("secret.ts"), b"not for viewers").unwrap();
    std::os::unix::fs::symlink(outside.0.join("secret.ts"), media.0.join("link.ts")).unwrap();
    std::os::unix::fs::symlink(&outside.0, media.0.join("dir")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", media.0.join("passwd.ts")).unwrap();
    let hostile = [
        "file:///etc/passwd",
        "file://../outside/secret.ts",
        "file://a/../../secret.ts",
        "file://a/%2E%2E/%2e%2e/secret.ts",
        "file://%2Fetc%2Fpasswd",
        "file://..%2F..%2Fetc%2Fpasswd",
        "file://a\\..\\..\\secret.ts",
        "file://c:/windows/win.ini",
        "file://secret.ts\u{0}.mp4",
        "file://link.ts",
        "file://dir/secret.ts",
        "file://passwd.ts",
        "file://",
    ];
    let backend = MockServer::start().await;
    for (i, input) in hostile.iter().enumerate() {
        Mock::given(method("GET"))
            .and(path("/auth"))
            .and(query_param("token", format!("h{i}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"config": {"inputs": [{"url": input}]}})))
            .mount(&backend)
            .await;
    }
    let on_play = http_auth(&backend);
    let server = start(
        vec![stream("s1", on_play)],
        Some(media.0.to_string_lossy().into_owned()),
    )
    .await;
    let s1 = server.streams().get("s1").expect("stream");
    let mut failures = Vec::new();
    for (i, input) in hostile.iter().enumerate() {
        // The session decision stands (AMB-16): the viewer plays the stream as it was.
        let status = play(&server, "s1", &format!("h{i}")).await;
        let inputs = s1.effective().inputs.clone();
        if status != 200 || inputs != ["fake://fake"] {
            failures.push(format!("{input:?}: status {status}, inputs now {inputs:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(s1.overlay().to_json(), json!({}), "no hostile override was kept");
    server.shutdown().await;
}
