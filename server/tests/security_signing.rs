//! Signed backend calls (docs/security.md, "Signed backend requests"): with `sign_key=` on an
//! `on_play`/`on_publish` line every HTTP call carries
//! `X-Usher-Signature: t=<unix>,v1=<hex HMAC-SHA256(key, "<t>.<METHOD>.<path?query>.<body>")>`,
//! checked here with an HMAC written from the RFC 2104 definition over SHA-256 (not the
//! server's `hmac` crate) and with the Python snippet of docs/security.md; the key itself is
//! never sent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use usher_server::config::{AuthSpec, AuthTarget, Config, StreamConfig, parse_config, stream_to_api_json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "k3y-only-the-backend-knows";

/// HMAC-SHA256 as RFC 2104 defines it.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The backend's check: the header parses, the time is recent, the HMAC matches.
fn verify(request: &Request, key: &str) -> Result<(), String> {
    let header = request
        .headers
        .get("x-usher-signature")
        .ok_or("no X-Usher-Signature header")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .ok_or(format!("malformed header {header}"))?;
    let unix: u64 = t.parse().map_err(|_| format!("t is not a number: {t}"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    if now.abs_diff(unix) > 300 {
        return Err(format!("t={unix} is not within 5 minutes of {now}"));
    }
    let target = match request.url.query() {
        Some(q) => format!("{}?{q}", request.url.path()),
        None => request.url.path().to_string(),
    };
    let mut message = format!("{t}.{}.{target}.", request.method).into_bytes();
    message.extend_from_slice(&request.body);
    let expected: String = hmac_sha256(key.as_bytes(), &message)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected != v1 {
        return Err(format!("v1={v1}, expected {expected}"));
    }
    if python_verifies(header, request, &target, key) == Some(false) {
        return Err("the Python snippet of docs/security.md refuses it".into());
    }
    Ok(())
}

/// The verification example of docs/security.md, run as written (when python3 is there).
const PYTHON_CHECK: &str = r#"
import hashlib, hmac, sys, time
key, header, method, target = sys.argv[1:5]
body = sys.stdin.buffer.read()
fields = dict(part.split("=", 1) for part in header.split(","))
message = f"{fields['t']}.{method}.{target}.".encode() + body
expected = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
fresh = abs(time.time() - int(fields["t"])) < 300
sys.exit(0 if fresh and hmac.compare_digest(expected, fields["v1"]) else 1)
"#;

fn python_verifies(header: &str, request: &Request, target: &str, key: &str) -> Option<bool> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", PYTHON_CHECK, key, header, request.method.as_str(), target])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(&request.body).ok()?;
    Some(child.wait().ok()?.success())
}

fn spec(backend: &MockServer, key: Option<&str>) -> AuthSpec {
    let mut spec = AuthSpec::new(AuthTarget::Http(format!("{}/auth?site=main", backend.uri())));
    spec.sign_key = key.map(str::to_string);
    spec.extra.insert("client".into(), "usher tests/1".into());
    spec
}

#[tokio::test]
async fn calls_are_signed_with_the_line_s_key_and_verify_independently() {
    let backend = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&backend)
        .await;
    let server = usher_server::Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        streams: vec![
            StreamConfig {
                name: "signed".into(),
                inputs: vec!["fake://fake".into()],
                on_play: Some(spec(&backend, Some(KEY))),
                ..StreamConfig::default()
            },
            StreamConfig {
                name: "live/pub".into(),
                inputs: vec!["publish://".into()],
                on_publish: Some(spec(&backend, Some(KEY))),
                ..StreamConfig::default()
            },
            StreamConfig {
                name: "plain".into(),
                inputs: vec!["fake://fake".into()],
                on_play: Some(spec(&backend, None)),
                ..StreamConfig::default()
            },
        ],
        ..Config::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let http = |rest: &str| format!("http://{}/{rest}", server.http_addr());
    let status = client
        .get(http("signed/index.m3u8?token=a%26b%3Dc&x=%C3%A9+1"))
        .header("referer", "http://site.example/p?q=1")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let status = client
        .put(http("live/pub/mpegts?token=pub1"))
        .body(Vec::new())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let status = client
        .get(http("plain/index.m3u8?token=p"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let requests = backend.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let by_name = |name: &str| {
        requests
            .iter()
            .find(|r| r.url.query_pairs().any(|(k, v)| k == "name" && v == name))
            .unwrap_or_else(|| panic!("no call for {name}"))
    };
    let play = by_name("signed");
    verify(play, KEY).unwrap_or_else(|e| panic!("play call: {e}"));
    let publish = by_name("live/pub");
    assert_eq!(publish.method.as_str(), "POST");
    assert!(!publish.body.is_empty(), "the publish call has its JSON body");
    verify(publish, KEY).unwrap_or_else(|e| panic!("publish call: {e}"));
    assert!(verify(play, "another key").is_err(), "another key does not verify");
    // An altered request does not verify.
    let mut altered = play.clone();
    altered
        .url
        .set_query(Some(&play.url.query().unwrap().replace("token=a", "token=b")));
    assert!(verify(&altered, KEY).is_err());
    let plain = by_name("plain");
    assert!(plain.headers.get("x-usher-signature").is_none(), "no key, no signature");
    for r in [play, publish, plain] {
        let text = format!("{} {}", r.url, String::from_utf8_lossy(&r.body));
        assert!(
            !text.contains(KEY) && !text.contains("sign_key"),
            "the key travelled: {text}"
        );
    }
    server.shutdown().await;
}

#[test]
fn sign_key_is_an_option_of_its_own_in_the_file_and_the_api() {
    let config = parse_config(
        "stream s { input fake://fake; on_play http://b/auth site=1 sign_key=\"a b;c\"; }",
        "t.conf",
    )
    .unwrap();
    let on_play = config.streams[0].on_play.clone().unwrap();
    assert_eq!(on_play.sign_key.as_deref(), Some("a b;c"));
    assert_eq!(on_play.extra.len(), 1, "not an extra: {:?}", on_play.extra);
    let printed = config.to_string();
    assert_eq!(parse_config(&printed, "printed.conf").unwrap(), config, "{printed}");
    let json = stream_to_api_json(&config.streams[0]);
    assert_eq!(json["on_play"]["sign_key"], "a b;c");
    let e = parse_config("stream s { on_play http://b/auth sign_key=; }", "t.conf").unwrap_err();
    assert!(e.message.contains("sign_key"), "{e}");
}
