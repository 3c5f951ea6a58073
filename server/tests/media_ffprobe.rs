//! The `fake://` source's MPEG-TS judged by an independent decoder: ffprobe must find an H.264
//! and an AAC stream, decode frames of both, and print no errors — for one HLS segment and for
//! the continuous HTTP MPEG-TS feed, including a viewer that fell behind and skipped ahead.
//!
//! ffprobe is required, not optional: CI installs it (Debian package `ffmpeg`). Without it these
//! tests fail with a message saying so rather than pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use usher_server::media::{FAKE_VIDEO_SIZE, MediaSource};

/// What ffprobe said about one file.
#[derive(Debug)]
struct Probe {
    streams: Vec<Value>,
    /// Everything ffprobe printed at `-v error`: must be empty for a clean stream.
    errors: String,
}

impl Probe {
    fn of(bytes: &[u8], name: &str) -> Probe {
        let file = TempFile::new(name, bytes);
        let output = Command::new(ffprobe())
            .args(["-v", "error", "-of", "json", "-show_streams", "-count_frames"])
            .arg(file.path())
            .output()
            .expect("ffprobe runs");
        assert!(
            output.status.success(),
            "ffprobe failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: Value = serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON");
        Probe {
            streams: json["streams"].as_array().cloned().unwrap_or_default(),
            errors: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn stream(&self, codec_type: &str) -> &Value {
        self.streams
            .iter()
            .find(|s| s["codec_type"] == codec_type)
            .unwrap_or_else(|| panic!("no {codec_type} stream in {:#?}", self.streams))
    }

    fn frames(&self, codec_type: &str) -> u64 {
        let stream = self.stream(codec_type);
        stream["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no frame count in {stream:#}"))
    }

    /// The checks every fake stream must pass; returns the video and audio frame counts.
    fn assert_fake_stream(&self) -> (u64, u64) {
        assert_eq!(self.errors, "", "ffprobe printed errors");
        let video = self.stream("video");
        assert_eq!(video["codec_name"], "h264");
        assert_eq!(video["width"], FAKE_VIDEO_SIZE.0);
        assert_eq!(video["height"], FAKE_VIDEO_SIZE.1);
        let audio = self.stream("audio");
        assert_eq!(audio["codec_name"], "aac");
        assert_eq!(audio["profile"], "LC");
        assert_eq!(audio["sample_rate"], "48000");
        assert_eq!(audio["channels"], 1);
        let counts = (self.frames("video"), self.frames("audio"));
        assert!(counts.0 > 0 && counts.1 > 0, "frames decoded: {counts:?}");
        counts
    }
}

fn ffprobe() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("ffprobe"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin/ffprobe")])
        .find(|candidate| candidate.is_file())
        .expect(
            "ffprobe is not installed: these tests need it to judge the TS output \
             (install the `ffmpeg` package; CI does)",
        )
}

/// A file in the temp directory, removed when dropped (also when the test fails).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("usher-media-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("temp file written");
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(start_paused = true)]
async fn one_segment_decodes_as_h264_and_aac() {
    let source = MediaSource::start("fake://ffprobe").expect("fake source starts");
    let newest = source
        .segments()
        .last()
        .expect("a fresh source lists segments")
        .sequence;
    let segment = source.segment(newest).expect("the newest segment is there");

    let probe = Probe::of(&segment, "segment.ts");
    let (video, audio) = probe.assert_fake_stream();
    assert_eq!(video, 10, "one second at 10 fps");
    assert!(
        (46..=48).contains(&audio),
        "one second of 1024-sample frames at 48 kHz: {audio}"
    );
}

#[tokio::test(start_paused = true)]
async fn continuous_feed_decodes_across_chunks_and_a_skip() {
    let source = MediaSource::start("fake://ffprobe-live").expect("fake source starts");
    let mut viewer = source.live_ts();
    let mut feed = Vec::new();
    // Paused time auto-advances while the viewer waits, so "a few seconds" takes no time.
    for _ in 0..4 {
        feed.extend_from_slice(&viewer.next_chunk().await.expect("a fake source never ends"));
    }
    // The viewer stalls long enough to fall out of the window, then continues. The timestamp
    // gap makes ffprobe warn "DTS discontinuity" at its default level (a true gap, see
    // media/live.rs); at `-v error` it must stay silent.
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..2 {
        feed.extend_from_slice(&viewer.next_chunk().await.expect("a fake source never ends"));
    }

    let probe = Probe::of(&feed, "live.ts");
    let (video, _) = probe.assert_fake_stream();
    assert_eq!(video, 60, "six one-second chunks at 10 fps");
}
