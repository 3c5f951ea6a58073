//! HTTP MPEG-TS ingest end to end, judged by real tools: ffmpeg (libx264 + its AAC encoder)
//! writes a TS file, which goes through `TsIngest` into a `publish://` source the way the HTTP
//! ingest handler feeds it; ffprobe must then decode a segment of the window and the continuous
//! live feed as H.264 160x120 + AAC without errors.
//!
//! ffmpeg and ffprobe are required, not optional: CI installs them (Debian package `ffmpeg`).
//! Without them these tests fail with a message saying so rather than pass silently.

mod common;

use std::process::Command;

use common::{Probe, TempFile, tool};
use usher_server::media::aac::AacConfig;
use usher_server::media::{AccessUnit, Codecs, MediaSource, PUSH_IDLE_TIMEOUT, Publisher, Track, TsIngest};

/// Three seconds of a 160x120 test picture at 25 fps with a keyframe every second, and a 440 Hz
/// tone at 48 kHz mono, as an MPEG-TS file from ffmpeg. `-pix_fmt yuv420p` because libx264
/// would otherwise keep the source's RGB as 4:4:4, which no real publisher sends.
fn ffmpeg_upload() -> Vec<u8> {
    let out = TempFile::named("upload.ts");
    let output = Command::new(tool("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "3", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-bf", "0", "-g", "25",
        ])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(out.path())
        .output()
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "ffmpeg could not make the upload (is libx264 there?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(out.path()).expect("ffmpeg wrote the file")
}

impl Probe {
    /// H.264 160x120 and AAC-LC 48 kHz mono, decoded without a single error; returns the video
    /// and audio frame counts.
    fn assert_upload_stream(&self) -> (u64, u64) {
        self.assert_h264_and_aac(160, 120)
    }
}

/// Feeds bytes to the publisher as the HTTP ingest handler does: codecs first when they
/// change, then the units.
fn ingest_into(publisher: &mut Publisher, ingest: &mut TsIngest, known: &mut Codecs, bytes: &[u8]) -> Vec<AccessUnit> {
    let units = ingest.push(bytes).expect("ffmpeg's TS is valid");
    if ingest.codecs() != known {
        *known = ingest.codecs().clone();
        publisher.set_codecs(known.clone());
    }
    for unit in &units {
        publisher.push(unit.clone());
    }
    units
}

#[tokio::test(start_paused = true)]
async fn an_ffmpeg_upload_becomes_segments_and_a_live_feed_that_decode() {
    if !common::have_ffmpeg_tools(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let upload = ffmpeg_upload();
    let source = MediaSource::start("publish://ingest").expect("publish inputs are supported");
    let mut publisher = source.publisher().expect("nobody publishes yet");
    let mut ingest = TsIngest::new();
    let mut known = Codecs::default();
    let mut live = source.live_ts();
    let mut live_output = Vec::new();
    let mut ingested = Vec::new();

    // An HTTP body arrives in pieces that split packets anywhere.
    for chunk in upload.chunks(1_000) {
        ingested.extend(ingest_into(&mut publisher, &mut ingest, &mut known, chunk));
        if live_output.is_empty() && !source.segments().is_empty() {
            // A viewer that joined at the first segment follows the whole stream.
            live_output.extend_from_slice(&live.next_chunk().await.expect("the first segment"));
        }
    }
    for unit in ingest.finish() {
        publisher.push(unit.clone());
        ingested.push(unit);
    }
    let video_in = ingested.iter().filter(|u| u.track == Track::Video).count();
    assert_eq!(video_in, 75, "3 s at 25 fps, the last picture from finish()");
    assert!(
        ingested
            .iter()
            .filter(|u| u.track == Track::Video && u.keyframe)
            .count()
            >= 3
    );

    let codecs = source.codecs();
    let video = codecs.video.expect("SPS/PPS read from the upload");
    assert_eq!(video.dimensions(), Some((160, 120)));
    assert_eq!(codecs.audio, Some(AacConfig::LC_48K_MONO));

    let mut feed = source.subscribe();
    drop(publisher);

    // One-second GOPs and a one-second target: a segment per second.
    let segments = source.segments();
    assert_eq!(segments.len(), 3, "{segments:?}");
    for segment in &segments[..2] {
        assert!((segment.duration - 1.0).abs() < 0.01, "{segments:?}");
    }
    let (video_frames, audio_frames) =
        Probe::of(&source.segment(1).expect("complete"), "segment-1.ts").assert_upload_stream();
    assert_eq!(video_frames, 25, "one GOP");
    assert!(
        (45..=49).contains(&audio_frames),
        "about a second of AAC frames: {audio_frames}"
    );

    // An RTMP/RTSP viewer arriving now gets the newest segment's units, then the idle end.
    let started = tokio::time::Instant::now();
    let first = feed.next().await.expect("the newest segment");
    assert!(first.keyframe && first.track == Track::Video);
    assert!(
        first.data.starts_with(&video.to_annex_b()),
        "parameter sets in front of the keyframe"
    );
    let mut units = 1;
    while feed.next().await.is_some() {
        units += 1;
    }
    assert!(units > 25, "a GOP of pictures and its audio: {units}");
    assert_eq!(started.elapsed(), PUSH_IDLE_TIMEOUT);

    // The live viewer has the rest waiting, then ends too (the idle time has passed).
    while let Some(chunk) = live.next_chunk().await {
        live_output.extend_from_slice(&chunk);
    }
    let (video_frames, audio_frames) = Probe::of(&live_output, "live.ts").assert_upload_stream();
    assert_eq!(video_frames, 75, "every picture of the upload");
    assert!(audio_frames >= 138, "about three seconds of AAC frames: {audio_frames}");
}
