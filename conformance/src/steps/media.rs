//! Media files and what a player actually gets: `file://` streams, and *watchers*, clients that
//! keep playing a stream in the background and record the picture size of every segment (HLS)
//! or keyframe (HTTP MPEG-TS) they receive. A watcher tells one input from another by its
//! picture size: the suite's media file is 160x120, which no synthetic `fake://` source of a
//! known server uses.
//!
//! The media file is made by the suite itself ([`crate::media`]: the test pattern as a
//! progressive MP4) into the embedded server's media folder the first time a case needs it. A
//! running target cannot be reached that way: it declares the `file_input` feature only if its
//! media folder already holds the file (`usher media FILE` makes the same one).
//!
//! Picture sizes are read from the SPS in front of keyframes, through the reference server's TS
//! demuxer and SPS reader (`usher_server::media`): the suite links the server anyway, and the
//! demuxer reads any conforming MPEG-TS.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cucumber::{given, then, when};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;
use usher_server::media::{AvcParams, Track, TsIngest};

use super::{StreamEntry, UsherWorld};
use crate::clients::{ViewerProfile, media_url};
use crate::target::{AuthSettings, StreamSpec};

/// A picture size, `WIDTHxHEIGHT`.
pub use crate::media::Size;

fn parse_size(text: &str) -> Size {
    let (w, h) = text
        .split_once('x')
        .unwrap_or_else(|| panic!("`{text}` is not a picture size (WIDTHxHEIGHT)"));
    let n = |v: &str| {
        v.parse()
            .unwrap_or_else(|_| panic!("`{text}` is not a picture size (WIDTHxHEIGHT)"))
    };
    (n(w), n(h))
}

/// Makes the suite's test clip in-process: `seconds` of the test pattern at `size` (10 frames
/// a second, every frame a keyframe) with silent AAC, as MP4 or, for a `.ts` name, MPEG-TS.
pub async fn make_media_file(path: &Path, size: Size, seconds: u32) -> Result<(), String> {
    crate::media::write_clip(path, size, seconds).await
}

/// Makes one file at a time: concurrent cases needing the same file wait for the first.
static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[given(regex = r#"^the media file "([^"]+)" of (\d+x\d+) is in the target's media folder$"#)]
async fn media_file(world: &mut UsherWorld, name: String, size: String) {
    let size = parse_size(&size);
    let Some(root) = world.ctx.target.media_root() else {
        // A running target declared `file_input`: the file is its operator's to put there.
        return;
    };
    if name.contains("..") || name.starts_with('/') {
        panic!("media file \"{name}\" must be a plain relative name");
    }
    let path = root.join(&name);
    let _making = MAKING.lock().await;
    if path.exists() {
        return;
    }
    if let Err(e) = make_media_file(&path, size, 4).await {
        panic!("{e}");
    }
}

#[given(regex = r#"^a stream "([^"]+)" playing "([^"]+)" with on_play auth$"#)]
async fn a_file_stream(world: &mut UsherWorld, alias: String, input: String) {
    let server_name = world.stream_name(&alias);
    world.streams.insert(
        alias,
        StreamEntry {
            server_name,
            spec: StreamSpec {
                on_play: Some(AuthSettings::default()),
                input: Some(input),
                ..StreamSpec::default()
            },
            in_place: false,
        },
    );
}

/// What a watcher has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Picture sizes in the order they came, each run of equal sizes once.
    pub sizes: Vec<Size>,
    /// Segments (HLS) or keyframes (MPEG-TS) read.
    pub pieces: usize,
    /// HLS: an EXT-X-DISCONTINUITY tag stood before a segment that was read; the index in
    /// `sizes` that was current when it came.
    pub discontinuity_at: Option<usize>,
    /// Refusals, failed requests or a closed connection, in order.
    pub troubles: Vec<String>,
}

/// A client that keeps playing in the background. Dropping it stops it.
#[derive(Debug)]
pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    changes: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits at most `within` until `done` holds for what was seen.
    async fn wait_for(&mut self, within: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let seen = self.seen.clone();
        let check = move || done(&seen.lock().unwrap_or_else(|e| e.into_inner()));
        tokio::time::timeout(within, self.changes.wait_for(|_| check()))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Records into the shared [`Seen`] and wakes the steps waiting on it.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Recorder {
    fn update(&self, change: impl FnOnce(&mut Seen)) {
        change(&mut self.seen.lock().unwrap_or_else(|e| e.into_inner()));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn sizes(&self, sizes: Vec<Size>) {
        self.update(|seen| {
            for size in sizes {
                seen.pieces += 1;
                if seen.sizes.last() != Some(&size) {
                    seen.sizes.push(size);
                }
            }
        });
    }

    fn trouble(&self, what: String) {
        tracing::debug!(what, "watcher trouble");
        self.update(|seen| seen.troubles.push(what));
    }
}

/// The picture sizes of the keyframes in TS bytes.
fn sizes_in(ingest: &mut TsIngest, bytes: &[u8], finish: bool) -> Vec<Size> {
    let mut units = ingest.push(bytes).unwrap_or_default();
    if finish {
        units.extend(ingest.finish());
    }
    units
        .iter()
        .filter(|u| u.track == Track::Video)
        .filter_map(|u| AvcParams::from_annex_b(&u.data)?.dimensions())
        .collect()
}

async fn watch_hls(http: reqwest::Client, playlist: Url, recorder: Recorder) {
    // The next media sequence number to read; the first look starts at the newest segment.
    let mut next: Option<u64> = None;
    loop {
        match http.get(playlist.clone()).send().await {
            Ok(response) if response.status() == 200 => {
                let text = response.text().await.unwrap_or_default();
                let mut sequence = text
                    .lines()
                    .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let segments: Vec<(u64, bool, String)> = {
                    let mut out = Vec::new();
                    let mut tagged = false;
                    for line in text.lines() {
                        if line == "#EXT-X-DISCONTINUITY" {
                            tagged = true;
                        } else if !line.is_empty() && !line.starts_with('#') {
                            out.push((sequence, tagged, line.to_string()));
                            sequence += 1;
                            tagged = false;
                        }
                    }
                    out
                };
                let start = next.unwrap_or_else(|| segments.last().map_or(0, |s| s.0));
                for (sequence, tagged, uri) in segments.into_iter().filter(|s| s.0 >= start) {
                    let Ok(url) = playlist.join(&uri) else { continue };
                    match http.get(url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let bytes = r.bytes().await.unwrap_or_default();
                            if tagged {
                                recorder.update(|seen| {
                                    seen.discontinuity_at.get_or_insert(seen.sizes.len());
                                });
                            }
                            recorder.sizes(sizes_in(&mut TsIngest::new(), &bytes, true));
                        }
                        Ok(r) => recorder.trouble(format!("segment {sequence}: {}", r.status())),
                        Err(e) => recorder.trouble(format!("segment {sequence}: {e}")),
                    }
                    next = Some(sequence + 1);
                }
            }
            Ok(response) => recorder.trouble(format!("playlist: {}", response.status())),
            Err(e) => recorder.trouble(format!("playlist: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

async fn watch_ts(http: reqwest::Client, url: Url, recorder: Recorder) {
    let mut response = match http.get(url).send().await {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => return recorder.trouble(format!("refused: {}", r.status())),
        Err(e) => return recorder.trouble(format!("request failed: {e}")),
    };
    let mut ingest = TsIngest::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => recorder.sizes(sizes_in(&mut ingest, &chunk, false)),
            Ok(None) => return recorder.trouble("the server closed the connection".into()),
            Err(e) => return recorder.trouble(format!("the connection failed: {e}")),
        }
    }
}

#[when(regex = r#"^watcher "([^"]+)" watches "([^"]+)" over (HLS|MPEG-TS) with token "([^"]*)"$"#)]
async fn watches(world: &mut UsherWorld, name: String, stream: String, proto: String, token: String) {
    world.ensure_streams().await;
    let server_name = world
        .streams
        .get(&stream)
        .unwrap_or_else(|| panic!("stream \"{stream}\" was never declared"))
        .server_name
        .clone();
    // Watchers play from their own addresses, away from the viewers' 127.0.0.2…
    let ip = std::net::IpAddr::from([127, 0, 1, 1 + world.watchers.len() as u8]);
    let http = ViewerProfile::new(ip).client().expect("an HTTP client");
    let query = vec![(world.token_param().to_string(), token)];
    let base = world.ctx.target.http_base().clone();
    let (tx, changes) = watch::channel(0u64);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorder = Recorder {
        seen: seen.clone(),
        changes: Arc::new(tx),
    };
    let task = if proto == "HLS" {
        tokio::spawn(watch_hls(
            http,
            media_url(&base, &server_name, "index.m3u8", &query),
            recorder,
        ))
    } else {
        tokio::spawn(watch_ts(
            http,
            media_url(&base, &server_name, "mpegts", &query),
            recorder,
        ))
    };
    world.watchers.insert(name, Watcher { seen, changes, task });
}

fn watcher<'a>(world: &'a mut UsherWorld, name: &str) -> &'a mut Watcher {
    world
        .watchers
        .get_mut(name)
        .unwrap_or_else(|| panic!("watcher \"{name}\" is not watching (When watcher \"{name}\" watches …)"))
}

fn describe(seen: &Seen) -> String {
    let sizes: Vec<String> = seen.sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
    format!(
        "sizes seen in order: [{}] over {} pieces; troubles: {:?}",
        sizes.join(", "),
        seen.pieces,
        seen.troubles
    )
}

#[then(regex = r#"^watcher "([^"]+)" sees video of (\d+x\d+)(?: within (\d+) seconds)?$"#)]
async fn sees(world: &mut UsherWorld, name: String, size: String, within: String) {
    let size = parse_size(&size);
    let within = world
        .ctx
        .bound(super::seconds(if within.is_empty() { "15" } else { &within }));
    let w = watcher(world, &name);
    if !w.wait_for(within, |seen| seen.sizes.contains(&size)).await {
        let seen = w.seen();
        panic!(
            "{}",
            world.explain(format!(
                "watcher \"{name}\" saw no {}x{} video within {within:?}: {}",
                size.0,
                size.1,
                describe(&seen)
            ))
        );
    }
}

#[then(regex = r#"^watcher "([^"]+)" sees video other than (\d+x\d+) within (\d+) seconds$"#)]
async fn sees_other(world: &mut UsherWorld, name: String, size: String, within: String) {
    let size = parse_size(&size);
    let within = world.ctx.bound(super::seconds(&within));
    let w = watcher(world, &name);
    let switched = w.wait_for(within, |seen| seen.sizes.iter().any(|s| *s != size)).await;
    if !switched {
        let seen = w.seen();
        panic!(
            "{}",
            world.explain(format!(
                "watcher \"{name}\" saw no video other than {}x{} within {within:?}: {}",
                size.0,
                size.1,
                describe(&seen)
            ))
        );
    }
}

#[then(regex = r#"^watcher "([^"]+)" was never refused nor disconnected$"#)]
async fn never_troubled(world: &mut UsherWorld, name: String) {
    let seen = watcher(world, &name).seen();
    if !seen.troubles.is_empty() {
        panic!(
            "{}",
            world.explain(format!("watcher \"{name}\" had trouble: {}", describe(&seen)))
        );
    }
}

#[then(regex = r#"^watcher "([^"]+)" saw EXT-X-DISCONTINUITY before the new video$"#)]
async fn saw_discontinuity(world: &mut UsherWorld, name: String) {
    let seen = watcher(world, &name).seen();
    // The tag stands before the first segment of the new input: when it came, exactly one size
    // (the old input's) had been seen.
    let ok = seen.discontinuity_at == Some(1) && seen.sizes.len() >= 2;
    if !ok {
        panic!(
            "{}",
            world.explain(format!(
                "watcher \"{name}\": expected EXT-X-DISCONTINUITY right before the first segment of the new \
                 input; tag seen after {:?} sizes; {}",
                seen.discontinuity_at,
                describe(&seen)
            ))
        );
    }
}
