//! The `fake://` source's MPEG-TS judged by an independent decoder: ffprobe must find an H.264
//! and an AAC stream, decode frames of both, and print no errors — for one HLS segment and for
//! the continuous HTTP MPEG-TS feed, including a viewer that fell behind and skipped ahead.
//!
//! ffprobe is required, not optional: CI installs it (Debian package `ffmpeg`). Without it these
//! tests fail with a message saying so rather than pass silently.

mod common;

use std::time::Duration;

use common::Probe;
use usher_server::media::{FAKE_VIDEO_SIZE, MediaSource};

impl Probe {
    /// The checks every fake stream must pass; returns the video and audio frame counts.
    fn assert_fake_stream(&self) -> (u64, u64) {
        let counts = self.assert_h264_and_aac(FAKE_VIDEO_SIZE.0.into(), FAKE_VIDEO_SIZE.1.into());
        assert!(counts.0 > 0 && counts.1 > 0, "frames decoded: {counts:?}");
        counts
    }
}

#[tokio::test(start_paused = true)]
async fn one_segment_decodes_as_h264_and_aac() {
    if !common::have_ffmpeg_tools(&["ffprobe"]) {
        return;
    }
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
    if !common::have_ffmpeg_tools(&["ffprobe"]) {
        return;
    }
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
