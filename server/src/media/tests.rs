//! The public face of [`MediaSource`] under paused Tokio time: window arithmetic, playlist text,
//! segment bytes and the continuous feed.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::ts::{PACKET_SIZE, PAT_PID, PMT_PID, SYNC_BYTE, VIDEO_PID};
use super::*;

fn sequences(source: &MediaSource) -> Vec<u64> {
    source.segments().iter().map(|s| s.sequence).collect()
}

fn fake() -> Arc<MediaSource> {
    MediaSource::start("fake://test").expect("fake inputs are supported")
}

/// (pid, continuity_counter, payload_unit_start) of every packet, checking the framing.
fn packets(ts: &[u8]) -> Vec<(u16, u8, bool)> {
    assert_eq!(ts.len() % PACKET_SIZE, 0, "whole 188-byte packets");
    ts.chunks(PACKET_SIZE)
        .map(|p| {
            assert_eq!(p[0], SYNC_BYTE);
            (u16::from_be_bytes([p[1], p[2]]) & 0x1FFF, p[3] & 0x0F, p[1] & 0x40 != 0)
        })
        .collect()
}

/// Panics unless every PID's counter goes up by one from packet to packet.
fn assert_continuous(ts: &[u8]) {
    let mut last: std::collections::HashMap<u16, u8> = Default::default();
    for (index, (pid, cc, _)) in packets(ts).into_iter().enumerate() {
        if let Some(previous) = last.insert(pid, cc) {
            assert_eq!(cc, (previous + 1) & 0x0F, "packet {index} on PID {pid:#x}");
        }
    }
}

/// The PTS of the first video PES, in 90 kHz ticks.
fn first_video_pts(ts: &[u8]) -> u64 {
    let packet = ts
        .chunks(PACKET_SIZE)
        .find(|p| u16::from_be_bytes([p[1], p[2]]) & 0x1FFF == VIDEO_PID && p[1] & 0x40 != 0)
        .expect("a video PES");
    let payload = if packet[3] & 0x20 != 0 {
        &packet[5 + usize::from(packet[4])..]
    } else {
        &packet[4..]
    };
    let t = &payload[9..14];
    (u64::from(t[0] & 0x0E) << 29)
        | (u64::from(t[1]) << 22)
        | (u64::from(t[2] & 0xFE) << 14)
        | (u64::from(t[3]) << 7)
        | u64::from(t[4] >> 1)
}

#[tokio::test(start_paused = true)]
async fn a_new_source_already_lists_three_segments() {
    let source = fake();
    assert_eq!(sequences(&source), [0, 1, 2]);
    assert_eq!(source.segments()[0].duration, 1.0);
    let playlist = source.playlist("?token=abc");
    assert!(playlist.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"));
    assert_eq!(playlist.matches("#EXTINF:1.000,\n").count(), 3);
    assert!(playlist.ends_with("segment-2.ts?token=abc\n"), "{playlist}");
}

#[tokio::test(start_paused = true)]
async fn the_window_follows_the_clock() {
    let source = fake();
    advance(Duration::from_millis(999)).await;
    assert_eq!(sequences(&source), [0, 1, 2]);
    assert_eq!(source.segment(3), None, "not complete yet");

    advance(Duration::from_millis(1)).await;
    assert_eq!(sequences(&source), [0, 1, 2, 3]);
    assert!(source.segment(3).is_some());

    advance(Duration::from_secs(10)).await;
    assert_eq!(sequences(&source), [9, 10, 11, 12, 13]);
    assert!(source.playlist("").contains("#EXT-X-MEDIA-SEQUENCE:9\n"));
    // RFC 8216 §6.2.2: recently removed segments stay fetchable for a while, then go.
    assert!(source.segment(8).is_some());
    assert!(source.segment(3).is_some());
    assert_eq!(source.segment(2), None);
    assert_eq!(source.segment(14), None);
}

#[tokio::test(start_paused = true)]
async fn segments_are_made_once_and_continue_each_other() {
    let source = fake();
    // Asked newest first: the older ones are muxed before it all the same.
    let newest = source.segment(2).expect("complete");
    let older = source.segment(1).expect("complete");
    assert_eq!(source.segment(2), Some(newest.clone()), "cached, not remade");

    for segment in [&older, &newest] {
        let packets = packets(segment);
        assert_eq!(packets[0].0, PAT_PID);
        assert_eq!(packets[1].0, PMT_PID);
        assert_eq!(
            (packets[2].0, packets[2].2),
            (VIDEO_PID, true),
            "video PES right after the tables"
        );
        // Random access indicator and PCR flag on the keyframe's first packet.
        let keyframe = &segment[2 * PACKET_SIZE..3 * PACKET_SIZE];
        assert_eq!(keyframe[3] & 0x20, 0x20, "adaptation field present");
        assert_eq!(keyframe[5] & 0x50, 0x50, "random_access_indicator and PCR_flag");
    }
    assert_continuous(&[older.clone(), newest.clone()].concat());
    assert_eq!(
        first_video_pts(&newest) - first_video_pts(&older),
        CLOCK_HZ,
        "timestamps run on"
    );
}

#[tokio::test(start_paused = true)]
async fn the_live_feed_starts_at_the_newest_segment_and_waits_for_the_next() {
    let source = fake();
    let mut viewer = source.live_ts();
    let started = Instant::now();

    let first = viewer.next_chunk().await.expect("a fake source never ends");
    assert_eq!(Some(first.clone()), source.segment(2));
    assert_eq!(started.elapsed(), Duration::ZERO, "the first chunk is there at once");

    let second = viewer.next_chunk().await.expect("a fake source never ends");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "the next one when it is complete"
    );
    assert_eq!(first_video_pts(&second) - first_video_pts(&first), CLOCK_HZ);
    assert_continuous(&[first, second].concat());
}

#[tokio::test(start_paused = true)]
async fn a_viewer_that_falls_behind_skips_to_the_newest_segment() {
    let source = fake();
    let mut viewer = source.live_ts();
    let first = viewer.next_chunk().await.expect("a fake source never ends");

    advance(Duration::from_secs(30)).await;
    let after_skip = viewer.next_chunk().await.expect("a fake source never ends");
    let newest = source.segments().last().expect("listed").sequence;
    assert_eq!(newest, 32);
    assert_eq!(first_video_pts(&after_skip) - first_video_pts(&first), 30 * CLOCK_HZ);
    assert_continuous(&[first, after_skip].concat());
}

#[tokio::test(start_paused = true)]
async fn nothing_keeps_a_source_alive_but_its_handles() {
    let source = fake();
    let viewer = source.live_ts();
    assert_eq!(Arc::strong_count(&source), 2);
    drop(viewer);
    assert_eq!(Arc::strong_count(&source), 1, "no background task holds the source");
}

#[tokio::test(start_paused = true)]
async fn the_au_feed_starts_at_the_segment_in_progress_and_follows_stream_time() {
    let source = fake();
    advance(Duration::from_millis(400)).await;
    let mut feed = source.subscribe();
    let started = Instant::now();
    let first = feed.next().await.expect("a fake source never ends");
    // Segment 3 began 400 ms ago: its keyframe is the newest at a segment boundary.
    assert_eq!((first.track, first.keyframe), (Track::Video, true));
    assert_eq!(first.dts, fake::PTS_OFFSET + 3 * CLOCK_HZ);
    assert_eq!(started.elapsed(), Duration::ZERO);

    // What stream time has already reached comes at once, the rest as it is reached.
    let mut units = vec![first];
    loop {
        let unit = feed.next().await.expect("a fake source never ends");
        let stream_time = unit.dts - fake::PTS_OFFSET;
        let due = Duration::from_nanos((stream_time - 3 * CLOCK_HZ) * 1_000_000_000 / CLOCK_HZ);
        let elapsed = started.elapsed() + Duration::from_millis(400);
        let due = due.max(Duration::from_millis(400));
        // Tokio's timer counts whole milliseconds, rounding up.
        assert!(
            elapsed >= due && elapsed - due < Duration::from_millis(1),
            "unit at {stream_time}: {elapsed:?}"
        );
        units.push(unit);
        if stream_time >= 5 * CLOCK_HZ {
            break;
        }
    }
    assert!(units.windows(2).all(|w| w[0].dts <= w[1].dts), "decoding order");
    let video = units.iter().filter(|u| u.track == Track::Video).count();
    assert_eq!(video, 21, "every picture of two seconds and the next");
    let expected: Vec<AccessUnit> = fake::access_units(3 * CLOCK_HZ..5 * CLOCK_HZ + 1);
    assert_eq!(units, expected, "exactly the units of the segments, in order");
}

#[tokio::test(start_paused = true)]
async fn an_au_viewer_that_falls_behind_skips_to_the_segment_in_progress() {
    let source = fake();
    let mut feed = source.subscribe();
    feed.next().await.expect("a fake source never ends");
    advance(Duration::from_millis(30_500)).await;
    let next = feed.next().await.expect("a fake source never ends");
    assert_eq!(next.dts, fake::PTS_OFFSET + 33 * CLOCK_HZ);
    assert!(next.keyframe);
}

#[test]
fn fake_codecs_describe_the_fake_picture() {
    let source = fake();
    let codecs = source.codecs();
    assert_eq!(codecs.video.and_then(|v| v.dimensions()), Some(FAKE_VIDEO_SIZE));
    assert_eq!(codecs.audio, Some(aac::AacConfig::LC_48K_MONO));
}

#[test]
fn only_fake_and_publish_inputs_are_supported() {
    assert!(MediaSource::start("FAKE://upper").is_ok());
    assert!(MediaSource::start("publish://").is_ok());
    assert!(MediaSource::start("Publish://live/a").is_ok());
    assert_eq!(
        MediaSource::start("rtmp://example/live").map(|_| ()),
        Err(MediaError::UnsupportedInput("rtmp://example/live".to_string()))
    );
    assert!(MediaSource::start("fak").is_err());
}

#[test]
fn segment_durations_round_to_whole_frames() {
    let duration = |requested| {
        let source = MediaSource::start_with_segment_duration("fake://d", requested).expect("fake");
        source.segments()[0].duration
    };
    assert_eq!(duration(Duration::from_millis(2_000)), 2.0);
    assert_eq!(duration(Duration::from_millis(240)), 0.2);
    assert_eq!(duration(Duration::ZERO), 0.1, "at least one frame");
}
