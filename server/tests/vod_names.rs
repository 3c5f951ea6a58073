//! A VOD name is percent-decoded once (docs/security.md): the name the backend decides on is
//! exactly the name of the file that is served. `GET /vods/%2570remium.mp4/index.m3u8` asks
//! the backend about `vods/%70remium.mp4` and may only ever serve the file of that name, never
//! `vods/premium.mp4` (which a second decoding made of it).
//!
//! Over real HTTP with a recording backend. The VOD files are cut from the server's own
//! `fake://` stream (1, 2 and 3 of its segments, so each file has a playlist of its own); a
//! second, unauthorized location holds the same files under plain names, which is how a
//! playlist is recognised as the playlist of one file.

mod common;

use std::path::{Path, PathBuf};

use common::{backend_answering, client, http_auth, text_of};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use usher_server::config::{Config, StreamConfig, VodConfig};
use usher_server::{RunningServer, Server};
use wiremock::{MockServer, ResponseTemplate};

/// The files of the `vods` location: (name on disk, how many fake segments it holds; 0 = bytes
/// that are no media file). Names that one more decoding turns into another file's name.
const FILES: [(&str, usize); 4] = [
    ("premium.mp4", 1),
    ("%70remium.mp4", 2),
    ("%2570remium.mp4", 3),
    ("p x.ts", 0),
];

/// Names asked for besides the files: near misses that must answer 404.
const MISSES: [&str; 4] = ["%premium.mp4", "p%20x.ts", "%252570remium.mp4", "Premium.mp4"];

struct Setup {
    dir: PathBuf,
    backend: MockServer,
    server: RunningServer,
    /// Per file of `vods`: its playlist without queries (`None` for the non-media file).
    signatures: Vec<Option<String>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A playlist with the queries of its URIs cut off (they carry each request's token).
fn without_queries(playlist: &str) -> String {
    playlist
        .lines()
        .map(|l| l.split('?').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn setup(tag: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("usher-vod-names-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["vods", "ref"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let backend = backend_answering(ResponseTemplate::new(200)).await;
    let vod = |name: &str, storage: &str, on_play| VodConfig {
        name: name.into(),
        storage: storage.into(),
        on_play,
    };
    let server = Server::start(Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        media_root: Some(dir.to_string_lossy().into_owned()),
        streams: vec![StreamConfig {
            name: "src".into(),
            inputs: vec!["fake://fake".into()],
            ..StreamConfig::default()
        }],
        vods: vec![vod("vods", "vods", Some(http_auth(&backend))), vod("ref", "ref", None)],
        ..Config::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", server.http_addr());

    // The fake stream's first segments (a new stream has three at once).
    let playlist = text_of(format!("{base}/src/index.m3u8")).await;
    let uris: Vec<&str> = playlist.lines().filter(|l| l.starts_with("segment-")).collect();
    assert!(
        uris.len() >= 3,
        "the fake stream lists three segments at once:\n{playlist}"
    );
    let mut segments = Vec::new();
    for uri in &uris[..3] {
        let response = client().get(format!("{base}/src/{uri}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        segments.push(response.bytes().await.unwrap().to_vec());
    }
    let write = |path: &Path, count: usize| {
        let bytes = if count == 0 {
            b"not a media file".to_vec()
        } else {
            segments[..count].concat()
        };
        std::fs::write(path, bytes).unwrap();
    };
    let mut signatures = Vec::new();
    for (i, (name, count)) in FILES.iter().enumerate() {
        write(&dir.join("vods").join(name), *count);
        if *count == 0 {
            signatures.push(None);
            continue;
        }
        let plain = format!("f{i}.ts");
        write(&dir.join("ref").join(&plain), *count);
        let response = client()
            .get(format!("{base}/ref/{plain}/index.m3u8"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "ref/{plain} plays");
        signatures.push(Some(without_queries(&response.text().await.unwrap())));
    }
    let distinct: std::collections::BTreeSet<_> = signatures.iter().flatten().collect();
    assert_eq!(distinct.len(), 3, "each media file has a playlist of its own");
    assert!(
        backend.received_requests().await.unwrap().is_empty(),
        "ref has no backend"
    );
    Setup {
        dir,
        backend,
        server,
        signatures,
    }
}

/// One way a client may write `name` in a URL path: each byte as it is or `%XX` (upper or
/// lower case hex); `%`, space and bytes outside ASCII always escaped.
fn encodings(name: &'static str) -> impl Strategy<Value = (&'static str, String)> {
    proptest::collection::vec((any::<bool>(), any::<bool>()), name.len()).prop_map(move |choices| {
        let mut out = String::new();
        for (byte, (escape, lower)) in name.bytes().zip(choices) {
            if escape || matches!(byte, b'%' | b' ' | b'?' | b'#') || byte >= 0x80 {
                out.push_str(&if lower {
                    format!("%{byte:02x}")
                } else {
                    format!("%{byte:02X}")
                });
            } else {
                out.push(byte as char);
            }
        }
        (name, out)
    })
}

/// Plays `/vods/<encoded>/index.m3u8` with a token of its own and checks that the name the
/// backend was asked about is `vods/<name>` and that what came back is that file's (or the
/// answer for no such file).
async fn check(setup: &Setup, case: usize, name: &str, encoded: &str) -> Result<(), TestCaseError> {
    let token = format!("case{case}");
    let url = format!(
        "http://{}/vods/{encoded}/index.m3u8?token={token}",
        setup.server.http_addr()
    );
    let response = client().get(&url).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let calls = setup.backend.received_requests().await.unwrap();
    let asked: Vec<String> = calls
        .iter()
        .filter(|r| r.url.query_pairs().any(|(k, v)| k == "token" && v == token.as_str()))
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    prop_assert_eq!(asked.len(), 1, "{} → backend calls {:?}", url, asked);
    let decided = &asked[0];
    prop_assert_eq!(
        decided,
        &format!("vods/{name}"),
        "{} was decided under another name",
        url
    );
    let file = decided.strip_prefix("vods/").unwrap_or_default();
    match FILES.iter().position(|(f, _)| *f == file) {
        Some(i) => match &setup.signatures[i] {
            Some(signature) => {
                prop_assert_eq!(status, 200, "{} → {}", url, body);
                prop_assert_eq!(
                    &without_queries(&body),
                    signature,
                    "{} was decided as `{}` but served another file",
                    url,
                    decided
                );
            }
            None => prop_assert_eq!(status, 503, "{} → {}: the non-media file", url, body),
        },
        None => prop_assert_eq!(status, 404, "{} → {}: `{}` is no file", url, body, decided),
    }
    Ok(())
}

/// The report's request: the backend is asked about `vods/%70remium.mp4` and the server serves
/// that file, not `vods/premium.mp4`. (Before the fix: the premium file's playlist.)
#[test]
fn a_double_encoded_name_is_decided_and_served_as_the_same_file() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let setup = setup("report").await;
        check(&setup, 0, "%70remium.mp4", "%2570remium.mp4").await.unwrap();
        check(&setup, 1, "premium.mp4", "%70remium.mp4").await.unwrap();
    });
}

/// For arbitrary encodings of names that decode into one another, the name sent to the
/// backend and the file served are the same.
#[test]
fn the_name_sent_to_the_backend_is_the_name_of_the_file_served() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = rt.block_on(setup("property"));
    let names: Vec<&'static str> = FILES.iter().map(|(n, _)| *n).chain(MISSES).collect();
    let strategy = proptest::sample::select(names).prop_flat_map(encodings);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let case = std::cell::Cell::new(10);
    runner
        .run(&strategy, |(name, encoded)| {
            case.set(case.get() + 1);
            rt.block_on(check(&setup, case.get(), name, &encoded))
        })
        .unwrap();
    rt.block_on(async { drop(setup) });
}
