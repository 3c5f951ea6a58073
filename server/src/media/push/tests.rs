//! `publish://` sources through their public face, under paused Tokio time: publishers coming
//! and going, the push segmenter, the window, and the viewers (LiveTs, AuFeed) waiting on them.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, advance};

use super::timestamps::START_TICKS;
use crate::media::aac::{self, AacConfig};
use crate::media::ts::{PACKET_SIZE, TsIngest};
use crate::media::*;

const SPS: [u8; 8] = [0x67, 0x42, 0xC0, 0x0B, 0xD9, 0x02, 0x84, 0x7E];
const PPS: [u8; 4] = [0x68, 0xCB, 0x83, 0xCB];
/// 25 fps.
const FRAME: u64 = 3_600;
const AUDIO_FRAME: u64 = 1_920;

fn params() -> AvcParams {
    AvcParams {
        sps: Bytes::from_static(&SPS),
        pps: Bytes::from_static(&PPS),
    }
}

fn codecs() -> Codecs {
    Codecs {
        video: Some(params()),
        audio: Some(AacConfig::LC_48K_MONO),
    }
}

fn source() -> Arc<MediaSource> {
    MediaSource::start("publish://test").expect("publish inputs are supported")
}

/// A picture without parameter sets: the publisher adds them to keyframes from its codecs.
fn video(dts: u64, keyframe: bool) -> AccessUnit {
    let nal = if keyframe { 0x65 } else { 0x41 };
    AccessUnit {
        track: Track::Video,
        pts: dts,
        dts,
        keyframe,
        data: Bytes::from(vec![0, 0, 0, 1, nal, (dts / FRAME) as u8 | 0x80]),
    }
}

fn audio(dts: u64) -> AccessUnit {
    AccessUnit {
        track: Track::Audio,
        pts: dts,
        dts,
        keyframe: true,
        data: Bytes::from_static(&aac::SILENT_MONO_FRAME),
    }
}

/// 25 fps video with a keyframe every `gop` frames and 48 kHz audio, interleaved by dts (video
/// first on a tie), for the stretch `seconds` of a stream whose time 0 is input time `base`.
fn media(base: u64, seconds: Range<f64>, gop: u64) -> Vec<AccessUnit> {
    let ticks = |s: f64| (s * CLOCK_HZ as f64).round() as u64;
    let (start, end) = (ticks(seconds.start), ticks(seconds.end));
    let mut units: Vec<AccessUnit> = (start.div_ceil(FRAME)..end.div_ceil(FRAME))
        .map(|n| video(base + n * FRAME, n % gop == 0))
        .collect();
    units.extend((start.div_ceil(AUDIO_FRAME)..end.div_ceil(AUDIO_FRAME)).map(|n| audio(base + n * AUDIO_FRAME)));
    units.sort_by_key(|u| u.dts);
    units
}

fn publish(publisher: &mut Publisher, units: &[AccessUnit]) {
    for unit in units {
        publisher.push(unit.clone());
    }
}

fn sequences(source: &MediaSource) -> Vec<u64> {
    source.segments().iter().map(|s| s.sequence).collect()
}

/// What a segment holds, read back by the ingest.
fn read(segment: &[u8]) -> (Vec<AccessUnit>, Codecs) {
    let mut ingest = TsIngest::new();
    let mut units = ingest.push(segment).expect("our own TS");
    units.extend(ingest.finish());
    (units, ingest.codecs().clone())
}

#[tokio::test(start_paused = true)]
async fn a_publish_source_is_empty_until_a_segment_completes() {
    let source = source();
    assert_eq!(sequences(&source), [0u64; 0]);
    assert_eq!(source.segment(0), None);
    assert_eq!(source.codecs(), Codecs::default());
    let playlist = source.playlist("");
    assert!(
        playlist.contains("#EXT-X-MEDIA-SEQUENCE:0\n") && !playlist.contains("#EXTINF"),
        "{playlist}"
    );

    let mut publisher = source.publisher().expect("nobody publishes yet");
    publisher.set_codecs(codecs());
    assert_eq!(source.codecs(), codecs());
    publish(&mut publisher, &media(0, 0.0..0.9, 25));
    assert_eq!(sequences(&source), [0u64; 0], "the first segment is still open");
}

#[tokio::test(start_paused = true)]
async fn one_publisher_at_a_time_and_only_on_publish_inputs() {
    let source = source();
    let first = source.publisher().expect("free");
    assert_eq!(source.publisher().map(|_| ()), Err(PublishError::Busy));
    drop(first);
    let _second = source.publisher().expect("free again once the first left");

    let fake = MediaSource::start("fake://x").expect("fake");
    assert_eq!(
        fake.publisher().map(|_| ()),
        Err(PublishError::NotPublishable("fake://x".to_string()))
    );
}

#[tokio::test(start_paused = true)]
async fn segments_are_cut_at_the_first_keyframe_after_the_target() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    // A keyframe every 12 frames (0.48 s): cuts at 1.44 s and 2.88 s.
    publish(&mut publisher, &media(0, 0.0..3.0, 12));
    let segments = source.segments();
    assert_eq!(sequences(&source), [0, 1]);
    assert!((segments[0].duration - 1.44).abs() < 1e-9, "{segments:?}");
    assert!((segments[1].duration - 1.44).abs() < 1e-9, "{segments:?}");
    assert!(
        source
            .playlist("?t=1")
            .contains("#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n")
    );

    for sequence in [0, 1] {
        let bytes = source.segment(sequence).expect("complete");
        assert_eq!(bytes.len() % PACKET_SIZE, 0);
        let (units, codecs_read) = read(&bytes);
        assert_eq!(codecs_read, codecs(), "PMT and in-band parameter sets");
        let first = &units[0];
        assert_eq!(
            (first.track, first.keyframe),
            (Track::Video, true),
            "starts with a keyframe"
        );
        assert_eq!(first.dts, START_TICKS + sequence * 36 * FRAME);
        assert!(first.data.starts_with(&params().to_annex_b()), "parameter sets added");
        assert_eq!(units.iter().filter(|u| u.track == Track::Video).count(), 36);
    }
}

#[tokio::test(start_paused = true)]
async fn the_window_slides_and_keeps_recent_segments_fetchable() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    publish(&mut publisher, &media(0, 0.0..20.5, 25));
    assert_eq!(sequences(&source), [15, 16, 17, 18, 19]);
    assert!(source.segment(9).is_some(), "left the list, still retained");
    assert_eq!(source.segment(8), None);
    assert_eq!(source.segment(20), None, "still open");
    assert!(source.segments().iter().all(|s| s.duration == 1.0));
}

#[tokio::test(start_paused = true)]
async fn segments_continue_each_other_and_read_back_as_pushed() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    // RTMP style: starting at 0; rebased to START_TICKS.
    let pushed = media(0, 0.0..3.5, 25);
    publish(&mut publisher, &pushed);
    let joined: Vec<u8> = (0..3)
        .flat_map(|s| source.segment(s).expect("complete").to_vec())
        .collect();
    let (units, _) = read(&joined);
    let expected: Vec<AccessUnit> = pushed
        .iter()
        .filter(|u| u.dts < 3 * CLOCK_HZ)
        .map(|u| {
            let mut u = u.clone();
            u.pts += START_TICKS;
            u.dts += START_TICKS;
            if u.keyframe && u.track == Track::Video {
                u.data = Bytes::from([&params().to_annex_b()[..], &u.data[..]].concat());
            }
            u
        })
        .collect();
    assert_eq!(units, expected);
}

#[tokio::test(start_paused = true)]
async fn late_and_early_units_do_no_harm() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    // Video before the first keyframe, audio before it (kept only from the keyframe on).
    publisher.push(video(0, false));
    publisher.push(audio(0));
    publisher.push(audio(AUDIO_FRAME));
    let media = media(AUDIO_FRAME, 0.0..2.5, 25);
    for unit in &media {
        publisher.push(unit.clone());
        // Every unit again, late: dropped.
        publisher.push(unit.clone());
        if unit.dts > 10 * FRAME {
            publisher.push(video(unit.dts - 5 * FRAME, false));
        }
    }
    assert_eq!(sequences(&source), [0, 1]);
    let (units, _) = read(&source.segment(0).expect("complete"));
    assert_eq!(units[0].track, Track::Video, "{:?}", &units[..2]);
    let video_dts: Vec<u64> = units
        .iter()
        .filter(|u| u.track == Track::Video)
        .map(|u| u.dts)
        .collect();
    assert_eq!(video_dts.len(), 25, "no duplicates, no late frames");
    assert!(video_dts.is_sorted());
    let audio_dts: Vec<u64> = units
        .iter()
        .filter(|u| u.track == Track::Audio)
        .map(|u| u.dts)
        .collect();
    assert!(audio_dts.is_sorted() && audio_dts[0] >= video_dts[0], "{audio_dts:?}");
}

#[tokio::test(start_paused = true)]
async fn audio_only_streams_are_cut_by_duration() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(Codecs {
        video: None,
        audio: Some(AacConfig::LC_48K_MONO),
    });
    let frames: Vec<AccessUnit> = (0..200).map(|n| audio(n * AUDIO_FRAME)).collect();
    publish(&mut publisher, &frames);
    // 200 frames of 21.3 ms: the first segment opens once 1 s of audio has arrived without
    // video (frames 0..=47), then each is cut at the first frame 1 s or more after its start.
    let segments = source.segments();
    assert_eq!(sequences(&source), [0, 1, 2, 3]);
    assert!(
        segments.iter().all(|s| (1.0..1.1).contains(&s.duration)),
        "{segments:?}"
    );
    let (units, codecs) = read(&source.segment(1).expect("complete"));
    assert_eq!(codecs.video, None, "no video track announced");
    assert!(units.iter().all(|u| u.track == Track::Audio));
    assert_eq!(units.len(), 47);
}

#[tokio::test(start_paused = true)]
async fn codecs_come_from_the_stream_when_not_set() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    let keyframe = AccessUnit {
        data: Bytes::from([&params().to_annex_b()[..], &[0, 0, 0, 1, 0x65, 0x88]].concat()),
        ..video(0, true)
    };
    publisher.push(keyframe);
    let adts = AacConfig::LC_48K_MONO.adts_header(4).expect("fits");
    publisher.push(AccessUnit {
        data: Bytes::from([&adts[..], &aac::SILENT_MONO_FRAME].concat()),
        ..audio(1)
    });
    assert_eq!(source.codecs(), codecs());
    let mut feed = source.subscribe();
    assert_eq!(feed.next().await.map(|u| u.track), Some(Track::Video));
    let audio = feed.next().await.expect("the audio frame");
    assert_eq!(&audio.data[..], aac::SILENT_MONO_FRAME, "ADTS header taken off");
}

#[tokio::test(start_paused = true)]
async fn a_new_publisher_continues_after_a_discontinuity() {
    let source = source();
    let mut first = source.publisher().expect("free");
    first.set_codecs(codecs());
    publish(&mut first, &media(0, 0.0..2.5, 25));
    assert_eq!(sequences(&source), [0, 1]);
    drop(first);
    assert_eq!(sequences(&source), [0, 1, 2], "leaving completes the open segment");
    // The last picture at 2.48 s lasts a frame.
    assert!(
        (source.segments()[2].duration - 0.52).abs() < 1e-9,
        "{:?}",
        source.segments()
    );

    let mut second = source.publisher().expect("free again");
    assert_eq!(
        source.codecs(),
        Codecs::default(),
        "a new publisher brings its own codecs"
    );
    second.set_codecs(codecs());
    // A TS publisher with its own clock, far from the first one's.
    publish(&mut second, &media(8_000_000_000, 0.0..2.5, 25));
    assert_eq!(sequences(&source), [0, 1, 2, 3, 4]);
    let discontinuities: Vec<bool> = source.segments().iter().map(|s| s.discontinuity).collect();
    assert_eq!(discontinuities, [false, false, false, true, false]);
    let playlist = source.playlist("");
    assert!(
        playlist.contains("segment-2.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\nsegment-3.ts\n"),
        "{playlist}"
    );

    let (before, _) = read(&source.segment(2).expect("retained"));
    let (after, _) = read(&source.segment(3).expect("complete"));
    let last = before.iter().map(|u| u.dts).max().expect("units");
    let next = after[0].dts;
    assert!(
        next > last && next - last < CLOCK_HZ / 2,
        "timeline continues: {last} then {next}"
    );

    // Five more segments push the discontinuity out of the list: it is counted instead.
    drop(second);
    let mut third = source.publisher().expect("free");
    third.set_codecs(codecs());
    publish(&mut third, &media(0, 0.0..7.5, 25));
    let playlist = source.playlist("");
    assert!(playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{playlist}");
}

#[tokio::test(start_paused = true)]
async fn live_ts_gets_each_segment_as_it_completes_and_ends_when_media_stops() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    publish(&mut publisher, &media(0, 0.0..2.5, 25));
    let mut viewer = source.live_ts();
    let first = viewer.next_chunk().await.expect("segment 1");
    assert_eq!(Some(first), source.segment(1));

    // A waiting viewer is woken by the unit that completes the next segment.
    let waiting = tokio::spawn(async move {
        let chunk = viewer.next_chunk().await;
        (viewer, chunk)
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    publish(&mut publisher, &media(0, 2.5..3.1, 25));
    let (mut viewer, chunk) = waiting.await.expect("no panic");
    assert_eq!(chunk, source.segment(2));

    drop(publisher);
    let last = viewer.next_chunk().await.expect("the segment completed by leaving");
    assert_eq!(Some(last), source.segment(3));
    let left = Instant::now();
    assert_eq!(viewer.next_chunk().await, None);
    assert_eq!(
        left.elapsed(),
        PUSH_IDLE_TIMEOUT,
        "viewers wait for a new publisher, then end"
    );
}

#[tokio::test(start_paused = true)]
async fn a_live_ts_viewer_before_any_publisher_waits_then_ends() {
    let source = source();
    let mut viewer = source.live_ts();
    let started = Instant::now();
    let waiting = tokio::spawn(async move { viewer.next_chunk().await });
    advance(Duration::from_secs(3)).await;
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    publish(&mut publisher, &media(0, 0.0..1.1, 25));
    assert_eq!(waiting.await.expect("no panic"), source.segment(0));
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    let mut late = source.live_ts();
    drop(publisher);
    assert!(late.next_chunk().await.is_some(), "the newest segment at once");
    assert!(late.next_chunk().await.is_none(), "then nothing more comes");
}

#[tokio::test(start_paused = true)]
async fn the_au_feed_starts_at_the_open_segment_and_follows_the_publisher() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    let pushed = media(0, 0.0..1.5, 25);
    publish(&mut publisher, &pushed);
    let mut feed = source.subscribe();
    let first = feed.next().await.expect("a unit");
    assert_eq!(
        (first.track, first.keyframe, first.dts),
        (Track::Video, true, START_TICKS + CLOCK_HZ)
    );

    // The rest of what was pushed comes at once, in push order.
    let rest = pushed.iter().filter(|u| u.dts > CLOCK_HZ).count();
    let mut got = vec![first];
    for _ in 0..rest {
        got.push(feed.next().await.expect("pushed already"));
    }
    assert!(got.windows(2).all(|w| w[0].dts <= w[1].dts));

    // Then each unit as soon as it is pushed, segment boundary or not.
    let waiting = tokio::spawn(async move {
        let unit = feed.next().await;
        (feed, unit)
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    publisher.push(video(40 * FRAME, false));
    let (mut feed, unit) = waiting.await.expect("no panic");
    assert_eq!(unit.map(|u| u.track), Some(Track::Video));

    drop(publisher);
    let left = Instant::now();
    assert_eq!(feed.next().await, None);
    assert_eq!(left.elapsed(), PUSH_IDLE_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_slow_au_viewer_skips_to_the_newest_keyframe() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    publish(&mut publisher, &media(0, 0.0..1.5, 25));
    let mut feed = source.subscribe();
    feed.next().await.expect("a unit");
    publish(&mut publisher, &media(0, 1.5..11.5, 25));
    // Ten segments later the viewer's segment left the list: newest keyframe next.
    let next = feed.next().await.expect("a unit");
    assert!(next.keyframe && next.track == Track::Video);
    assert_eq!(next.dts, START_TICKS + 11 * CLOCK_HZ);
}

#[tokio::test(start_paused = true)]
async fn nothing_keeps_a_push_source_alive_but_its_handles() {
    let source = source();
    let publisher = source.publisher().expect("free");
    let viewer = source.live_ts();
    let feed = source.subscribe();
    assert_eq!(Arc::strong_count(&source), 4);
    drop((publisher, viewer, feed));
    assert_eq!(Arc::strong_count(&source), 1, "no background task holds the source");
}

/// `try_next` takes what was pushed already, in the order `next` gives it, across a segment
/// boundary, and says "not at once" when the viewer has caught up; `next` then waits as before.
#[tokio::test(start_paused = true)]
async fn an_au_viewer_takes_what_is_there_at_once_without_waiting() {
    let source = source();
    let mut publisher = source.publisher().expect("free");
    publisher.set_codecs(codecs());
    publish(&mut publisher, &media(0, 0.0..1.0, 25));
    let mut waiting = source.subscribe();
    let mut eager = source.subscribe();
    assert!(eager.try_next().is_none(), "no position before the first next()");
    let first = eager.next().await.expect("a unit");
    assert_eq!(waiting.next().await.expect("a unit").dts, first.dts);
    publish(&mut publisher, &media(0, 1.0..3.0, 25));
    let mut taken = 0;
    while let Some(unit) = eager.try_next() {
        let expected = waiting.next().await.expect("the same unit");
        assert_eq!((unit.track, unit.dts), (expected.track, expected.dts));
        taken += 1;
    }
    assert!(
        taken >= 50,
        "the units of two more seconds, past a segment boundary: {taken}"
    );
    // Caught up: nothing at once, and next() gets the following unit once it is pushed.
    assert!(eager.try_next().is_none());
    let later = tokio::spawn(async move { eager.next().await.map(|u| u.dts) });
    publish(&mut publisher, &media(0, 3.0..3.2, 25));
    let expected = waiting.next().await.expect("the next unit").dts;
    assert_eq!(later.await.expect("no panic"), Some(expected));
}
