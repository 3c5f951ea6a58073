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
fn only_fake_publish_and_file_inputs_are_supported() {
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

// ---- file:// inputs and switching inputs under viewers ----

use super::testing::{TempDir, clip_ts};

/// A media root holding `clip.ts`: 32x32 pictures at 25 fps for `seconds`, silent audio.
fn root_with_clip(seconds: u64) -> (TempDir, MediaRoot) {
    let dir = TempDir::new();
    std::fs::write(dir.0.join("clip.ts"), clip_ts(32, 32, 25, 25 * seconds)).expect("write clip");
    let root = MediaRoot::new(&dir.0);
    (dir, root)
}

fn has_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The SPS of the clip's pictures, to tell its segments from the fake's.
fn clip_sps() -> Bytes {
    AvcParams::from_annex_b(&testing::picture(32, 32, 100))
        .expect("parameter sets")
        .sps
}

#[tokio::test(start_paused = true)]
async fn a_file_source_loops_with_timestamps_that_keep_going() {
    let (_dir, root) = root_with_clip(2);
    let source = MediaSource::open("file://clip.ts", &root, Duration::from_secs(1)).expect("the clip loads");
    assert_eq!(source.codecs().video.and_then(|v| v.dimensions()), Some((32, 32)));
    assert_eq!(
        sequences(&source),
        [0, 1, 2],
        "three segments to start with, as for fake"
    );
    let mut viewer = source.live_ts();
    let mut last = None;
    // Segment 2 is the first of the second pass; go on through four passes.
    for _ in 0..8 {
        let chunk = viewer.next_chunk().await.expect("a file source never ends");
        assert!(has_bytes(&chunk, &clip_sps()));
        let pts = first_video_pts(&chunk);
        if let Some(last) = last {
            assert_eq!(
                pts - last,
                CLOCK_HZ,
                "one second per segment, across the loop point too"
            );
        }
        last = Some(pts);
    }
    let playlist = source.playlist("");
    assert!(
        !playlist.contains("DISCONTINUITY"),
        "a loop is no discontinuity: {playlist}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_file_is_an_error_naming_it() {
    let (_dir, root) = root_with_clip(1);
    let error = MediaSource::open("file://nope.mp4", &root, Duration::from_secs(1)).unwrap_err();
    assert_eq!(error.to_string(), "file://nope.mp4: no such file under the media root");
    let error = MediaSource::open("file://../clip.ts", &root, Duration::from_secs(1)).unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn switching_the_input_keeps_every_viewer_and_their_timestamps() {
    let (_dir, root) = root_with_clip(2);
    let source = MediaSource::open("fake://fake", &root, Duration::from_secs(1)).expect("fake");
    let mut ts_viewer = source.live_ts();
    let mut au_viewer = source.subscribe();
    let before = ts_viewer.next_chunk().await.expect("fake never ends");
    assert!(!has_bytes(&before, &clip_sps()));
    let mut au_last = au_viewer.next().await.expect("fake never ends");

    advance(Duration::from_millis(1_500)).await;
    let old_codecs = source.codecs();
    let prepared = source.prepare("file://clip.ts").expect("the clip loads");
    source.switch(prepared);
    assert_eq!(source.input(), "file://clip.ts");
    assert_ne!(source.codecs(), old_codecs);
    assert_eq!(source.codecs().video.and_then(|v| v.dimensions()), Some((32, 32)));

    // The segment-based viewer: what completed before the switch, then the new input.
    let mut chunks = Vec::new();
    for _ in 0..3 {
        chunks.push(ts_viewer.next_chunk().await.expect("the source goes on"));
    }
    let switched_at = chunks
        .iter()
        .position(|c| has_bytes(c, &clip_sps()))
        .expect("the new input arrives");
    assert!(chunks[switched_at..].iter().all(|c| has_bytes(c, &clip_sps())));
    let pts: Vec<u64> = std::iter::once(&before)
        .chain(&chunks)
        .map(|c| first_video_pts(c))
        .collect();
    assert!(
        pts.windows(2).all(|w| w[0] < w[1]),
        "timestamps keep increasing: {pts:?}"
    );

    // The access-unit viewer: never a step back, then the new input's keyframe.
    let mut saw_new = false;
    for _ in 0..200 {
        let unit = au_viewer.next().await.expect("the source goes on");
        if unit.track == au_last.track {
            assert!(unit.dts > au_last.dts, "dts {} after {}", unit.dts, au_last.dts);
        }
        if unit.track == Track::Video && has_bytes(&unit.data, &clip_sps()) {
            saw_new = true;
            assert!(unit.keyframe);
            break;
        }
        au_last = unit;
    }
    assert!(saw_new, "the access-unit viewer reached the new input");

    // The playlist: one sequence, the first new segment tagged.
    let playlist = source.playlist("");
    assert_eq!(playlist.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{playlist}");
    let listed = source.segments();
    assert!(
        listed.windows(2).all(|w| w[1].sequence == w[0].sequence + 1),
        "{listed:?}"
    );
    let tagged = listed.iter().find(|s| s.discontinuity).expect("tagged");
    assert!(has_bytes(
        &source.segment(tagged.sequence).expect("fetchable"),
        &clip_sps()
    ));
    assert!(!has_bytes(
        &source.segment(tagged.sequence - 1).expect("fetchable"),
        &clip_sps()
    ));

    // Once the tagged segment leaves the list, the discontinuity sequence counts it.
    advance(Duration::from_secs(8)).await;
    let playlist = source.playlist("");
    assert!(playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{playlist}");
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
}

#[tokio::test(start_paused = true)]
async fn a_new_viewer_after_a_switch_starts_on_the_new_input() {
    let (_dir, root) = root_with_clip(2);
    let source = MediaSource::open("fake://fake", &root, Duration::from_secs(1)).expect("fake");
    source.switch(source.prepare("file://clip.ts").expect("loads"));
    let mut feed = source.subscribe();
    let first = feed.next().await.expect("goes on");
    assert!(first.keyframe && has_bytes(&first.data, &clip_sps()));
    let mut live = source.live_ts();
    let chunk = live.next_chunk().await.expect("goes on");
    // The newest complete segment is still the fake's; the next one is the clip's.
    let next = if has_bytes(&chunk, &clip_sps()) {
        chunk
    } else {
        live.next_chunk().await.expect("goes on")
    };
    assert!(has_bytes(&next, &clip_sps()));
}

#[tokio::test(start_paused = true)]
async fn many_switches_keep_history_bounded_and_numbering_unbroken() {
    let (_dir, root) = root_with_clip(1);
    let source = MediaSource::open("fake://fake", &root, Duration::from_secs(1)).expect("fake");
    let mut viewer = source.live_ts();
    let mut last_pts = first_video_pts(&viewer.next_chunk().await.expect("goes on"));
    for round in 0..40u64 {
        let input = if round % 2 == 0 {
            "file://clip.ts"
        } else {
            "fake://fake"
        };
        source.switch(source.prepare(input).expect("loads"));
        advance(Duration::from_millis(700)).await;
        if round % 3 == 0 {
            let chunk = viewer.next_chunk().await.expect("goes on");
            let pts = first_video_pts(&chunk);
            assert!(pts > last_pts, "round {round}");
            last_pts = pts;
        }
        let listed = source.segments();
        assert!(
            listed.windows(2).all(|w| w[1].sequence == w[0].sequence + 1),
            "{listed:?}"
        );
    }
    assert!(
        source.lock().list.len() <= window::RETAINED_SEGMENTS as usize + 2,
        "old inputs are forgotten"
    );
}

#[tokio::test(start_paused = true)]
async fn switching_to_a_publish_point_and_back() {
    let source = fake();
    source.switch(source.prepare("publish://").expect("publish"));
    let mut publisher = source.publisher().expect("the new input takes a publisher");
    let start = source.segments().len();
    let frame = testing::picture(32, 32, 50);
    for n in 0..30u64 {
        publisher.push(AccessUnit {
            track: Track::Video,
            pts: n * 9_000,
            dts: n * 9_000,
            keyframe: n % 10 == 0,
            data: frame.clone(),
        });
    }
    let listed = source.segments();
    assert!(listed.len() > start, "the publisher's segments join the window");
    assert!(listed.iter().any(|s| s.discontinuity));
    source.switch(source.prepare("fake://fake").expect("fake"));
    assert!(source.publisher().is_err(), "fake takes no publisher");
    drop(publisher);
    advance(Duration::from_secs(2)).await;
    assert!(source.segments().windows(2).all(|w| w[1].sequence == w[0].sequence + 1));
}
