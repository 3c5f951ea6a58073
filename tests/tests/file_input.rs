//! `file://` inputs, VOD locations and the seed's config-override example, against the
//! reference server over real sockets, with ffprobe (Debian's ffmpeg) as the outside client
//! and a wiremock backend deciding.
//!
//! Test media is made here with ffmpeg (a 4 s 160x120 test pattern with a 440 Hz tone, as MP4
//! and as MPEG-TS) in a fresh media root per test; nothing is downloaded or committed. The
//! `fake://` picture is 64x48, so the two inputs are told apart by their resolution.
//!
//! * a file plays over HLS, HTTP MPEG-TS, RTMP and RTSP (MP4 and TS sources);
//! * the loop: segments fetched across the file's end carry timestamps that keep increasing;
//! * a missing file is a 503 naming it, while another stream plays;
//! * the seed's example (CONF-01/03): a viewer connected before an `on_play` answer switches
//!   the input to `fake://fake` keeps its connection and receives the new input; an HLS poller
//!   sees EXT-X-DISCONTINUITY and the new resolution;
//! * an override whose file leaves the media root (by `..`, or through a link) is rejected and
//!   the stream keeps its input;
//! * VOD: `/vod/clip.mp4/index.m3u8` is the whole file with EXT-X-ENDLIST, authorized by the
//!   location's `on_play` with the name `vod/clip.mp4`.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{TempDir, answer, auth as on_play, codecs, ffmpeg_media_file, ffprobe_json, good_and_bad, stream};
use usher_server::RunningServer;
use usher_server::config::{Config, VodConfig};
use wiremock::{MockServer, ResponseTemplate};

const FILE_SIZE: (u64, u64) = (160, 120);
const FAKE_SIZE: (u64, u64) = (64, 48);

/// Makes `clip.mp4` and `clip.ts` (4 s, 160x120, 25 fps, a keyframe a second, AAC) in `dir`.
async fn make_media(dir: &Path) {
    let (mp4, ts) = (dir.join("clip.mp4"), dir.join("clip.ts"));
    let (mp4, ts) = tokio::join!(
        ffmpeg_media_file(&mp4, (160, 120), 4),
        ffmpeg_media_file(&ts, (160, 120), 4)
    );
    if let Err(e) = mp4 {
        panic!("ffmpeg could not make the MP4 test clip: {e}");
    }
    if let Err(e) = ts {
        panic!("ffmpeg could not make the TS test clip: {e}");
    }
}

/// The override of the seed's example.
fn switch_to_fake() -> Value {
    json!({ "config": { "inputs": [{ "url": "fake://fake" }] } })
}

/// The backend: `/auth` allows `good` and refuses `bad`; `/seed` allows everyone and answers
/// token `b` with the seed's override; `/escape` answers `dotdot` and `link` with overrides
/// whose file leaves the media root.
async fn backend() -> MockServer {
    let server = MockServer::start().await;
    let allow = || ResponseTemplate::new(200);
    good_and_bad(&server, "GET", "/auth").await;
    answer(
        &server,
        "GET",
        "/seed",
        Some("b"),
        1,
        allow().set_body_json(switch_to_fake()),
    )
    .await;
    answer(&server, "GET", "/seed", None, 2, allow()).await;
    for (token, url) in [("dotdot", "file://../../etc/passwd"), ("link", "file://outside.mp4")] {
        let escape = allow().set_body_json(json!({ "config": { "inputs": [{ "url": url }] } }));
        answer(&server, "GET", "/escape", Some(token), 1, escape).await;
    }
    answer(&server, "GET", "/escape", None, 2, allow()).await;
    server
}

/// A media root with the clips, and a server on it.
struct Setup {
    media: TempDir,
    backend: MockServer,
    server: RunningServer,
}

impl Setup {
    async fn new() -> Setup {
        let media = TempDir::new("file-input");
        make_media(media.path()).await;
        let backend = backend().await;
        let config = Config {
            http: support::loopback(),
            rtmp: support::loopback(),
            rtsp: support::loopback(),
            media_root: Some(media.path().to_str().expect("utf-8 path").into()),
            streams: vec![
                stream("mp4", "file://clip.mp4", on_play(&backend, "/auth")),
                stream("ts", "file://clip.ts", on_play(&backend, "/auth")),
                stream("missing", "file://missing.mp4", on_play(&backend, "/auth")),
                stream("fake", "fake://fake", on_play(&backend, "/auth")),
                stream("example_stream", "file://clip.mp4", on_play(&backend, "/seed")),
                stream("escape", "file://clip.mp4", on_play(&backend, "/escape")),
            ],
            vods: vec![VodConfig {
                name: "vod".into(),
                storage: ".".into(),
                on_play: on_play(&backend, "/auth"),
            }],
            ..Config::default()
        };
        let server = support::start(config).await;
        Setup { media, backend, server }
    }

    fn http(&self, rest: &str) -> String {
        format!("http://{}/{rest}", self.server.http_addr())
    }
}

/// ffprobe's streams of `url` (with a bound on its run time): (success, JSON, stderr).
async fn probe(url: &str, extra: &[&str]) -> (bool, Value, String) {
    support::ffprobe(url, extra, Duration::from_secs(40)).await
}

/// (codec names sorted, video width and height) of an ffprobe `-show_streams` answer.
fn streams_of(json: &Value) -> (Vec<String>, Option<(u64, u64)>) {
    let size = support::h264(json).and_then(|s| Some((s["width"].as_u64()?, s["height"].as_u64()?)));
    (codecs(json), size)
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
}

/// (media sequence, [(sequence, tagged with EXT-X-DISCONTINUITY)]) of a media playlist.
fn playlist_segments(text: &str) -> Vec<(u64, bool)> {
    let mut out = Vec::new();
    let mut tagged = false;
    for line in text.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            tagged = true;
        } else if let Some(rest) = line.strip_prefix("segment-") {
            let sequence = rest
                .split('.')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("segment number");
            out.push((sequence, tagged));
            tagged = false;
        }
    }
    out
}

/// The video size ffprobe reads from a file of TS bytes.
async fn size_of_ts(bytes: &[u8], dir: &Path, name: &str) -> Option<(u64, u64)> {
    let file = dir.join(name);
    std::fs::write(&file, bytes).expect("write capture");
    let (ok, json, stderr) = probe(file.to_str().expect("utf-8 path"), &[]).await;
    assert!(ok, "ffprobe failed on {name}: {stderr}");
    streams_of(&json).1
}

/// Every decoded frame's size, in order, over a captured TS file.
async fn frame_sizes(file: &Path) -> Vec<(u64, u64)> {
    let (ok, stdout, stderr) = ffprobe_json(
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=width,height",
            "-show_frames",
            file.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "ffprobe -show_frames failed: {stderr}");
    let json: Value = serde_json::from_slice(&stdout).expect("ffprobe JSON");
    json["frames"]
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(|f| Some((f["width"].as_u64()?, f["height"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_streams_play_over_hls_mpegts_rtmp_and_rtsp() {
    if !support::have(&[support::FFMPEG, support::FFPROBE]) {
        return;
    }
    let setup = Setup::new().await;
    let rtmp = setup.server.rtmp_addr().expect("rtmp configured");
    let rtsp = setup.server.rtsp_addr().expect("rtsp configured");
    for name in ["mp4", "ts"] {
        let cases = [
            ("HLS", setup.http(&format!("{name}/index.m3u8?token=good")), vec![]),
            ("HTTP MPEG-TS", setup.http(&format!("{name}/mpegts?token=good")), vec![]),
            ("RTMP", format!("rtmp://{rtmp}/static/{name}?token=good"), vec![]),
            (
                "RTSP",
                format!("rtsp://{rtsp}/{name}?token=good"),
                vec!["-rtsp_transport", "tcp"],
            ),
        ];
        for (protocol, url, extra) in cases {
            let (ok, json, stderr) = probe(&url, &extra).await;
            assert!(ok, "{name} over {protocol}: ffprobe failed: {stderr}");
            let (codecs, size) = streams_of(&json);
            assert_eq!(codecs, ["aac", "h264"], "{name} over {protocol}: {json}");
            assert_eq!(size, Some(FILE_SIZE), "{name} over {protocol}: {json}");
        }
    }
    let (status, _) = get(&setup.http("mp4/index.m3u8?token=bad")).await;
    assert_eq!(status, 403, "a file stream is authorized like any other");
    setup.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looped_file_keeps_its_timestamps_increasing() {
    if !support::have(&[support::FFMPEG, support::FFPROBE]) {
        return;
    }
    let setup = Setup::new().await;
    for name in ["mp4", "ts"] {
        // Fetch every segment from the first listed one until more than one pass (4 s) and a
        // bit have been fetched.
        let mut fetched: Vec<(u64, Vec<u8>)> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while fetched.len() < 7 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: segments stopped coming"
            );
            let (status, playlist) = get(&setup.http(&format!("{name}/index.m3u8?token=good"))).await;
            assert_eq!(status, 200, "{name}: {playlist}");
            assert!(!playlist.contains("#EXT-X-ENDLIST"), "a live loop never ends");
            for (sequence, tagged) in playlist_segments(&playlist) {
                if fetched.last().is_some_and(|(last, _)| sequence <= *last) {
                    continue;
                }
                assert!(!tagged, "{name}: a loop point is no discontinuity");
                let (status, bytes) = get_bytes(&setup.http(&format!("{name}/segment-{sequence}.ts?token=good"))).await;
                assert_eq!(status, 200);
                fetched.push((sequence, bytes));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let sequences: Vec<u64> = fetched.iter().map(|(s, _)| *s).collect();
        assert!(
            sequences.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: no segment missed: {sequences:?}"
        );
        let capture = setup.media.path().join(format!("{name}-loop.ts"));
        std::fs::write(
            &capture,
            fetched.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<u8>>(),
        )
        .unwrap();
        let (ok, stdout, stderr) = ffprobe_json(
            &[
                "-show_entries",
                "packet=codec_type,pts,dts",
                "-show_packets",
                capture.to_str().unwrap(),
            ],
            Duration::from_secs(30),
        )
        .await;
        assert!(ok, "{name}: ffprobe failed: {stderr}");
        let json: Value = serde_json::from_slice(&stdout).unwrap();
        let packets = json["packets"].as_array().cloned().unwrap_or_default();
        for kind in ["video", "audio"] {
            let dts: Vec<i64> = packets
                .iter()
                .filter(|p| p["codec_type"] == kind)
                .filter_map(|p| p["dts"].as_i64())
                .collect();
            assert!(
                dts.windows(2).all(|w| w[0] < w[1]),
                "{name} {kind}: dts must keep increasing"
            );
            let span = dts.last().unwrap() - dts.first().unwrap();
            assert!(
                span > 5 * 90_000,
                "{name} {kind}: {span} ticks cover more than one pass"
            );
        }
        let video = packets.iter().filter(|p| p["codec_type"] == "video").count();
        assert!(video >= 7 * 25, "{name}: every picture of seven seconds ({video})");
    }
    setup.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_a_503_naming_it_while_other_streams_play() {
    if !support::have(&[support::FFMPEG, support::FFPROBE]) {
        return;
    }
    let setup = Setup::new().await;
    for resource in ["index.m3u8", "mpegts"] {
        let (status, body) = get(&setup.http(&format!("missing/{resource}?token=good"))).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("file://missing.mp4") && body.contains("no such file"),
            "the error names the file and the problem: {body}"
        );
    }
    // Unparsable and unreadable files are the same kind of error.
    std::fs::write(setup.media.path().join("junk.mp4"), b"\0\0\0\x10ftypisom\0\0\0\0junk").unwrap();
    setup
        .server
        .streams()
        .put(stream("junk", "file://junk.mp4", on_play(&setup.backend, "/auth")));
    let (status, body) = get(&setup.http("junk/index.m3u8?token=good")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("file://junk.mp4") && body.contains("not a playable file"),
        "{body}"
    );

    let (ok, json, stderr) = probe(&setup.http("mp4/index.m3u8?token=good"), &[]).await;
    assert!(ok, "another stream plays meanwhile: {stderr}");
    assert_eq!(streams_of(&json).1, Some(FILE_SIZE));
    // Once the file appears, the stream plays.
    std::fs::copy(
        setup.media.path().join("clip.mp4"),
        setup.media.path().join("missing.mp4"),
    )
    .unwrap();
    let (status, body) = get(&setup.http("missing/index.m3u8?token=good")).await;
    assert_eq!(status, 200, "{body}");
    setup.server.shutdown().await;
}

/// The seed's example step by step (CONF-01, CONF-03): `example_stream` plays `file://…`;
/// viewer A (HTTP MPEG-TS) and an HLS poller are connected; a new viewer's `on_play` answer
/// replaces the input with `fake://fake`; A's connection carries on into the new input, and the
/// poller's playlist continues with EXT-X-DISCONTINUITY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_switches_the_input_under_connected_viewers() {
    if !support::have(&[support::FFMPEG, support::FFPROBE]) {
        return;
    }
    let setup = Setup::new().await;
    let client = reqwest::Client::new();

    // Viewer A: a persistent HTTP MPEG-TS connection, read in the background.
    let response = client
        .get(setup.http("example_stream/mpegts?token=a"))
        .send()
        .await
        .expect("viewer A connects");
    assert_eq!(response.status(), 200);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = tokio::spawn(async move {
        let mut response = response;
        while let Ok(Some(chunk)) = response.chunk().await {
            if tx.send(chunk.to_vec()).is_err() {
                break;
            }
        }
    });

    // The HLS poller, before the switch.
    let (status, before) = get(&setup.http("example_stream/index.m3u8?token=p")).await;
    assert_eq!(status, 200);
    assert!(!before.contains("DISCONTINUITY"), "{before}");
    let last_before = playlist_segments(&before).last().expect("segments listed").0;
    let (_, segment) = get_bytes(&setup.http(&format!("example_stream/segment-{last_before}.ts?token=p"))).await;
    assert_eq!(
        size_of_ts(&segment, setup.media.path(), "before.ts").await,
        Some(FILE_SIZE)
    );

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Viewer B: its backend answer carries the override.
    let (status, _) = get(&setup.http("example_stream/index.m3u8?token=b")).await;
    assert_eq!(status, 200);
    let effective = setup
        .server
        .streams()
        .get("example_stream")
        .expect("stream")
        .effective();
    assert_eq!(effective.inputs, ["fake://fake"], "the override is in force");

    // The poller keeps its sequence and sees the break, then the new input.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let tagged = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no EXT-X-DISCONTINUITY appeared"
        );
        let (status, text) = get(&setup.http("example_stream/index.m3u8?token=p")).await;
        assert_eq!(status, 200, "the poller is not dropped");
        let segments = playlist_segments(&text);
        assert!(
            segments.first().unwrap().0 <= last_before + 1,
            "media sequence continues: {text}"
        );
        if let Some((sequence, _)) = segments.iter().find(|(_, tagged)| *tagged) {
            break *sequence;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(tagged > last_before);
    let (_, old) = get_bytes(&setup.http(&format!("example_stream/segment-{}.ts?token=p", tagged - 1))).await;
    let (_, new) = get_bytes(&setup.http(&format!("example_stream/segment-{tagged}.ts?token=p"))).await;
    assert_eq!(size_of_ts(&old, setup.media.path(), "old.ts").await, Some(FILE_SIZE));
    assert_eq!(size_of_ts(&new, setup.media.path(), "new.ts").await, Some(FAKE_SIZE));

    // Viewer A goes on for a while longer, then its capture is decoded start to end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    reader.abort();
    let mut capture = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        capture.extend(chunk);
    }
    let file = setup.media.path().join("viewer-a.ts");
    std::fs::write(&file, &capture).unwrap();
    let sizes = frame_sizes(&file).await;
    let first_fake = sizes
        .iter()
        .position(|s| *s == FAKE_SIZE)
        .expect("viewer A received the new input");
    assert!(
        first_fake > 0 && sizes[0] == FILE_SIZE,
        "viewer A started on the file: {:?}",
        &sizes[..3]
    );
    assert!(
        sizes[first_fake..].iter().all(|s| *s == FAKE_SIZE),
        "after the switch only the new input"
    );
    assert!(
        sizes.len() - first_fake >= 20,
        "and kept receiving it ({} frames)",
        sizes.len() - first_fake
    );

    // A viewer arriving now starts on the new input.
    let (ok, json, stderr) = probe(&setup.http("example_stream/index.m3u8?token=c"), &[]).await;
    assert!(ok, "{stderr}");
    assert_eq!(streams_of(&json).1, Some(FAKE_SIZE));
    setup.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_whose_file_leaves_the_media_root_is_rejected() {
    if !support::have(&[support::FFMPEG]) {
        return;
    }
    let setup = Setup::new().await;
    // A link inside the media root to a file outside it: the override's path looks relative
    // and clean, only resolving it shows where it goes.
    let outside = TempDir::new("file-input");
    std::fs::copy(setup.media.path().join("clip.mp4"), outside.path().join("clip.mp4")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("clip.mp4"), setup.media.path().join("outside.mp4")).unwrap();

    let (status, _) = get(&setup.http("escape/index.m3u8?token=first")).await;
    assert_eq!(status, 200);
    for token in ["dotdot", "link"] {
        let (status, body) = get(&setup.http(&format!("escape/index.m3u8?token={token}"))).await;
        assert_eq!(status, 200, "the decision stands (AMB-16): {body}");
        let stream = setup.server.streams().get("escape").expect("stream");
        assert_eq!(
            stream.effective().inputs.clone(),
            ["file://clip.mp4"],
            "{token}: the input is kept"
        );
        assert!(stream.overlay().is_empty(), "{token}: the override is rejected whole");
    }
    let (status, playlist) = get(&setup.http("escape/index.m3u8?token=first")).await;
    assert_eq!(status, 200);
    assert!(!playlist.contains("DISCONTINUITY"), "no switch happened: {playlist}");
    let newest = playlist_segments(&playlist).last().expect("listed").0;
    let (_, segment) = get_bytes(&setup.http(&format!("escape/segment-{newest}.ts?token=first"))).await;
    assert_eq!(
        size_of_ts(&segment, setup.media.path(), "escape.ts").await,
        Some(FILE_SIZE)
    );
    setup.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_files_play_whole_with_the_location_s_authorization() {
    if !support::have(&[support::FFMPEG, support::FFPROBE]) {
        return;
    }
    let setup = Setup::new().await;
    let (status, playlist) = get(&setup.http("vod/clip.mp4/index.m3u8?token=good")).await;
    assert_eq!(status, 200, "{playlist}");
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && playlist.ends_with("#EXT-X-ENDLIST\n"));
    assert_eq!(
        playlist_segments(&playlist).len(),
        4,
        "one segment per keyframe second: {playlist}"
    );
    assert!(playlist.contains("segment-0.ts?token=good"), "{playlist}");

    let (ok, json, stderr) = probe(&setup.http("vod/clip.ts/index.m3u8?token=good"), &["-show_format"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(streams_of(&json).1, Some(FILE_SIZE));
    let duration: f64 = json["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!((3.5..4.5).contains(&duration), "the whole file, once: {duration}");

    let (status, _) = get(&setup.http("vod/clip.mp4/index.m3u8?token=bad")).await;
    assert_eq!(status, 403);
    let (status, _) = get(&setup.http("vod/nothing.mp4/index.m3u8?token=good")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&setup.http("vod/clip.mp4/segment-99.ts?token=good")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&setup.http("vod/..%2Fetc/passwd/index.m3u8?token=good")).await;
    assert_eq!(status, 404);
    let calls_before = setup.backend.received_requests().await.unwrap_or_default().len();
    let (status, _) = get(&setup.http("vod/clip.mp4/mpegts?token=good")).await;
    assert_eq!(status, 404, "VOD plays over HLS only");
    let calls_after = setup.backend.received_requests().await.unwrap_or_default().len();
    assert_eq!(calls_before, calls_after, "no backend call for what cannot play");

    // The backend was asked about `vod/clip.mp4` over HLS.
    let requests = setup.backend.received_requests().await.unwrap_or_default();
    let asked = requests.iter().any(|r| {
        let query: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
        let has = |k: &str, v: &str| query.iter().any(|(qk, qv)| qk == k && qv == v);
        has("name", "vod/clip.mp4") && has("proto", "hls")
    });
    assert!(
        asked,
        "backend calls: {:?}",
        requests.iter().map(|r| r.url.to_string()).collect::<Vec<_>>()
    );
    setup.server.shutdown().await;
}
