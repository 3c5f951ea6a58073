//! The archive: streams recorded by the target, archive playback over HLS
//! (`NAME/index-FROM-DUR.m3u8`) and downloads (`NAME/archive-FROM-DUR.mp4|ts`), and the
//! backend's `allowed_dvr_ranges` (DVR-01, DVR-02, ADV-02).
//!
//! Times in steps are seconds of a stream's recording: second 0 is when the stream was put in
//! place, so a scenario never writes a clock time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cucumber::{given, then, when};
use serde_json::{Value, json};
use url::Url;

use super::stream::declare;
use super::{Play, Proto, UsherWorld, Viewer, opt};
use crate::backend::Answer;
use crate::clients::{Attempt, Outcome, TS_SYNC_BYTE, ViewerProfile, media_url, short};
use crate::target::{AuthSettings, DvrSpec, StreamSpec};

/// Where the target keeps the archive (relative: under its media folder) and how far back.
const DVR_ROOT: &str = "dvr";
const DVR_DEPTH_SECS: u64 = 3600;
/// Slack after the asked recording time, so the segment in progress then is complete.
const RECORDING_MARGIN: Duration = Duration::from_millis(1500);
/// The longest a download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the archive steps remember in a scenario.
#[derive(Debug, Default)]
pub struct ArchiveState {
    /// Second 0 of each stream's recording (unix seconds), by alias.
    started: BTreeMap<String, u64>,
    /// Everything the last archive request of each viewer received, by viewer.
    received: BTreeMap<String, Vec<u8>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn started(world: &UsherWorld, alias: &str) -> u64 {
    *world.archive.started.get(alias).unwrap_or_else(|| {
        panic!(
            "stream \"{alias}\" has no recording yet (use: Given stream \"{alias}\" has recorded N seconds of archive)"
        )
    })
}

#[given(regex = r#"^a stream "([^"]+)" with a DVR archive and on_play auth$"#)]
async fn archived_stream(world: &mut UsherWorld, alias: String) {
    let spec = StreamSpec {
        on_play: Some(AuthSettings::default()),
        dvr: Some(DvrSpec {
            root: DVR_ROOT.to_string(),
            depth: DVR_DEPTH_SECS,
        }),
        ..StreamSpec::default()
    };
    declare(world, alias, spec);
}

#[given(regex = r#"^stream "([^"]+)" has recorded (\d+) seconds of archive$"#)]
async fn has_recorded(world: &mut UsherWorld, alias: String, secs: u64) {
    if !world.archive.started.contains_key(&alias) {
        let entry = world
            .streams
            .get(&alias)
            .unwrap_or_else(|| panic!("stream \"{alias}\" was never declared"));
        assert!(
            !entry.in_place,
            "stream \"{alias}\" is already in place, so when its recording began is unknown: \
             say `has recorded` right after declaring it"
        );
        // The recording begins when the stream is put in place; counting from the second
        // before keeps every step's second inside the recording.
        let zero = unix_now();
        world.ensure_stream(&alias).await;
        world.archive.started.insert(alias.clone(), zero);
    }
    let until = UNIX_EPOCH + Duration::from_secs(started(world, &alias) + secs) + RECORDING_MARGIN;
    if let Ok(left) = until.duration_since(SystemTime::now()) {
        // Letting the archive grow is what this step is about; it is not a readiness wait.
        tokio::time::sleep(left).await;
    }
}

fn ranges_answer(ranges: Value) -> Answer {
    Answer::allow().with_body(json!({ "allowed_dvr_ranges": ranges }))
}

#[given(regex = r#"^the backend lets token "([^"]*)" read no archive$"#)]
async fn no_archive(world: &mut UsherWorld, token: String) {
    world.backend.answer(Some(&token), ranges_answer(json!([])));
}

/// `from second A to second B`, `from second A on`, `up to second B`: `opened_at` inclusive,
/// `closed_at` exclusive, either one may be left out (T5).
#[given(
    regex = r#"^the backend lets token "([^"]*)" read the archive of "([^"]+)" (?:from second (\d+) to second (\d+)|from second (\d+) on|up to second (\d+))$"#
)]
async fn archive_range(
    world: &mut UsherWorld,
    token: String,
    alias: String,
    from: String,
    to: String,
    open_from: String,
    open_to: String,
) {
    let zero = started(world, &alias);
    let at = |s: &str| zero + s.parse::<u64>().expect("digits");
    let mut range = serde_json::Map::new();
    if let Some(from) = opt(from).or(opt(open_from)) {
        range.insert("opened_at".into(), json!(at(&from)));
    }
    if let Some(to) = opt(to).or(opt(open_to)) {
        range.insert("closed_at".into(), json!(at(&to)));
    }
    world
        .backend
        .answer(Some(&token), ranges_answer(json!([Value::Object(range)])));
}

/// Finds or creates viewer `name`, as the live play steps do.
fn viewer<'a>(world: &'a mut UsherWorld, name: &str, ip: Option<IpAddr>) -> &'a mut Viewer {
    let viewer = world.viewers.entry(name.to_string()).or_insert_with(|| {
        let ip = ip.unwrap_or_else(|| {
            panic!("say where viewer \"{name}\" plays from the first time (viewer \"{name}\" from 127.0.0.2 …)")
        });
        Viewer {
            profile: ViewerProfile::new(ip),
            hls: None,
            hls_node: None,
            plays: Vec::new(),
            live: None,
        }
    });
    if let Some(ip) = ip {
        assert_eq!(
            ip, viewer.profile.local_ip,
            "viewer \"{name}\" already plays from {}; a viewer at another address is another viewer",
            viewer.profile.local_ip
        );
    }
    viewer
}

/// What kind of archive request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Hls,
    Mp4,
    Ts,
}

impl Request {
    fn leaf(self, from: u64, duration: u64) -> String {
        match self {
            Request::Hls => format!("index-{from}-{duration}.m3u8"),
            Request::Mp4 => format!("archive-{from}-{duration}.mp4"),
            Request::Ts => format!("archive-{from}-{duration}.ts"),
        }
    }
}

/// The body of `response`, within `limit`.
async fn body(response: reqwest::Response, limit: Duration) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(limit, response.bytes()).await {
        Ok(Ok(b)) => Ok(b.to_vec()),
        Ok(Err(e)) => Err(format!("reading the body: {e}")),
        Err(_) => Err(format!("the body did not end within {limit:?}")),
    }
}

/// One archive request: the outcome, the trail, and every byte received.
async fn fetch(
    client: &reqwest::Client,
    base: &Url,
    server_name: &str,
    request: Request,
    leaf: &str,
    query: &[(String, String)],
) -> (Outcome, Vec<String>, Vec<u8>) {
    let mut trail = Vec::new();
    let mut received = Vec::new();
    let url = media_url(base, server_name, leaf, query);
    let response = match client.get(url.clone()).timeout(DOWNLOAD_TIMEOUT).send().await {
        Ok(r) => r,
        Err(e) => {
            trail.push(format!("GET {} -> transport error: {e}", short(&url)));
            let reason = format!("transport error: {e}");
            return (Outcome::Failed { status: None, reason }, trail, received);
        }
    };
    let status = response.status().as_u16();
    trail.push(format!("GET {} -> {status}", short(&url)));
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = match body(response, DOWNLOAD_TIMEOUT).await {
        Ok(b) => b,
        Err(reason) => {
            return (
                Outcome::Failed {
                    status: Some(status),
                    reason,
                },
                trail,
                received,
            );
        }
    };
    received.extend_from_slice(&text);
    if status != 200 {
        return (Outcome::from_status(status, location, leaf), trail, received);
    }
    let outcome = match request {
        Request::Mp4 if text.get(4..8) == Some(b"ftyp".as_slice()) => Outcome::Playing,
        Request::Ts if text.first() == Some(&TS_SYNC_BYTE) && text.len() % 188 == 0 => Outcome::Playing,
        Request::Hls => {
            let playlist = String::from_utf8_lossy(&text).into_owned();
            let Some(uri) = playlist.lines().find(|l| !l.is_empty() && !l.starts_with('#')) else {
                let reason = format!("the archive playlist lists no segment: {playlist:?}");
                return (
                    Outcome::Failed {
                        status: Some(200),
                        reason,
                    },
                    trail,
                    received,
                );
            };
            let Ok(segment_url) = url.join(uri) else {
                let reason = format!("segment URI `{uri}` does not resolve");
                return (
                    Outcome::Failed {
                        status: Some(200),
                        reason,
                    },
                    trail,
                    received,
                );
            };
            match client.get(segment_url.clone()).timeout(DOWNLOAD_TIMEOUT).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    trail.push(format!("GET {} -> {status}", short(&segment_url)));
                    let bytes = body(r, DOWNLOAD_TIMEOUT).await.unwrap_or_default();
                    received.extend_from_slice(&bytes);
                    if status != 200 {
                        Outcome::from_status(status, None, "archive segment")
                    } else if bytes.first() == Some(&TS_SYNC_BYTE) {
                        Outcome::Playing
                    } else {
                        Outcome::Failed {
                            status: Some(200),
                            reason: "the archive segment is not MPEG-TS".into(),
                        }
                    }
                }
                Err(e) => Outcome::Failed {
                    status: None,
                    reason: format!("archive segment: transport error: {e}"),
                },
            }
        }
        _ => Outcome::Failed {
            status: Some(200),
            reason: format!("{} bytes that are not a {request:?} file", text.len()),
        },
    };
    (outcome, trail, received)
}

#[allow(clippy::too_many_arguments)]
async fn archive_request(
    world: &mut UsherWorld,
    name: String,
    ip: String,
    from: u64,
    to: u64,
    alias: String,
    request: Request,
    token: String,
) {
    assert!(to > from, "seconds {from} to {to}: the end must come after the start");
    let ip: Option<IpAddr> = opt(ip).map(|ip| ip.parse().unwrap_or_else(|_| panic!("`{ip}` is not an IP address")));
    let zero = started(world, &alias);
    world.ensure_stream(&alias).await;
    let server_name = world.streams[&alias].server_name.clone();
    let query = vec![(world.token_param().to_string(), token.clone())];
    let base = world.ctx.target.http_base().clone();
    let viewer = viewer(world, &name, ip);
    let client = viewer
        .profile
        .client()
        .unwrap_or_else(|e| panic!("building an HTTP client: {e}"));
    let leaf = request.leaf(zero + from, to - from);
    let t = Instant::now();
    let (outcome, trail, received) = fetch(&client, &base, &server_name, request, &leaf, &query).await;
    let attempt = Attempt {
        outcome,
        elapsed: t.elapsed(),
        trail,
    };
    tracing::debug!(viewer = name, %attempt, "archive request");
    // Recorded as a play so that the viewer steps (`is playing`, `is denied`) read it; the
    // protocol is the nearest live one.
    let proto = if request == Request::Ts {
        Proto::MpegTs
    } else {
        Proto::Hls
    };
    let play = Play {
        stream: alias,
        proto,
        token: Some(token),
        query: Vec::new(),
        node: None,
    };
    viewer.plays.push((play, attempt));
    world.archive.received.insert(name, received);
}

#[when(
    regex = r#"^viewer "([^"]+)"(?: from (\d+\.\d+\.\d+\.\d+))? plays seconds (\d+) to (\d+) of the archive of "([^"]+)" over HLS with token "([^"]*)"$"#
)]
async fn plays_archive(
    world: &mut UsherWorld,
    name: String,
    ip: String,
    from: u64,
    to: u64,
    alias: String,
    token: String,
) {
    archive_request(world, name, ip, from, to, alias, Request::Hls, token).await;
}

#[when(
    regex = r#"^viewer "([^"]+)"(?: from (\d+\.\d+\.\d+\.\d+))? downloads seconds (\d+) to (\d+) of the archive of "([^"]+)" as (MP4|MPEG-TS) with token "([^"]*)"$"#
)]
#[allow(clippy::too_many_arguments)]
async fn downloads_archive(
    world: &mut UsherWorld,
    name: String,
    ip: String,
    from: u64,
    to: u64,
    alias: String,
    format: String,
    token: String,
) {
    let request = if format == "MP4" { Request::Mp4 } else { Request::Ts };
    archive_request(world, name, ip, from, to, alias, request, token).await;
}

/// A refusal carries no media: no TS packet, no MP4 box, no playlist.
#[then(regex = r#"^viewer "([^"]+)" received no media$"#)]
async fn received_no_media(world: &mut UsherWorld, name: String) {
    let received = world
        .archive
        .received
        .get(&name)
        .unwrap_or_else(|| panic!("viewer \"{name}\" has made no archive request"));
    let media = received.first() == Some(&TS_SYNC_BYTE)
        || received
            .windows(4)
            .any(|w| w == b"ftyp" || w == b"moof" || w == b"mdat")
        || received.starts_with(b"#EXTM3U");
    if media {
        panic!(
            "{}",
            world.explain(format!(
                "viewer \"{name}\" should have received no media, but got {} bytes starting {:02x?}",
                received.len(),
                &received[..received.len().min(16)]
            ))
        );
    }
}
