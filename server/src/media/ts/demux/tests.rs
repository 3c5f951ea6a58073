//! TsIngest against our own muxer (every access unit must come back), against hand-made
//! streams for the cases the muxer never writes, and against arbitrary bytes.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::media::aac::{self, AacConfig};
use crate::media::ts::packet::{Continuity, FirstPacket, write_payload_unit};
use crate::media::ts::pes::{AUDIO_STREAM_ID, pes_header};
use crate::media::ts::{AUDIO_PID, TsMuxer};

const SPS: [u8; 8] = [0x67, 0x42, 0xC0, 0x0B, 0xD9, 0x02, 0x84, 0x7E];
const PPS: [u8; 4] = [0x68, 0xCB, 0x83, 0xCB];

fn params() -> AvcParams {
    AvcParams {
        sps: Bytes::from_static(&SPS),
        pps: Bytes::from_static(&PPS),
    }
}

/// A video unit as a publisher would send it: parameter sets and an IDR slice, or a non-IDR
/// slice, with payload bytes that contain no zero (so no start code can appear inside).
fn video(pts: u64, dts: u64, keyframe: bool, payload: &[u8]) -> AccessUnit {
    let mut data = Vec::new();
    if keyframe {
        data.extend_from_slice(&params().to_annex_b());
    }
    data.extend_from_slice(&[0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
    data.extend_from_slice(payload);
    AccessUnit {
        track: Track::Video,
        pts,
        dts,
        keyframe,
        data: Bytes::from(data),
    }
}

fn audio(pts: u64, data: &[u8]) -> AccessUnit {
    AccessUnit {
        track: Track::Audio,
        pts,
        dts: pts,
        keyframe: true,
        data: Bytes::copy_from_slice(data),
    }
}

fn mux(units: &[AccessUnit]) -> Vec<u8> {
    let mut muxer = TsMuxer::new(Some(AacConfig::LC_48K_MONO));
    let mut out = Vec::new();
    muxer.write_tables(&mut out);
    for unit in units {
        muxer.write_access_unit(unit, &mut out).expect("muxable");
    }
    out
}

/// Everything an ingest gives for `ts` fed in pieces of `chunk` bytes, then finished.
fn ingest(ts: &[u8], chunk: usize) -> (Vec<AccessUnit>, Codecs) {
    let mut ingest = TsIngest::new();
    let mut units = Vec::new();
    for piece in ts.chunks(chunk.max(1)) {
        units.extend(ingest.push(piece).expect("valid TS"));
    }
    units.extend(ingest.finish());
    (units, ingest.codecs().clone())
}

fn of_track(units: &[AccessUnit], track: Track) -> Vec<AccessUnit> {
    units.iter().filter(|u| u.track == track).cloned().collect()
}

#[test]
fn a_muxed_stream_comes_back_unit_for_unit() {
    let units = vec![
        video(126_000 + 3_000, 126_000, true, b"key"),
        audio(126_000, &aac::SILENT_MONO_FRAME),
        audio(127_920, &aac::SILENT_MONO_FRAME),
        video(132_000, 129_000, false, b"delta"),
    ];
    let ts = mux(&units);
    for chunk in [1, 7, 188, 1000, ts.len()] {
        let (back, codecs) = ingest(&ts, chunk);
        assert_eq!(
            of_track(&back, Track::Video),
            of_track(&units, Track::Video),
            "chunk {chunk}"
        );
        assert_eq!(
            of_track(&back, Track::Audio),
            of_track(&units, Track::Audio),
            "chunk {chunk}"
        );
        assert_eq!(codecs.video, Some(params()));
        assert_eq!(codecs.audio, Some(AacConfig::LC_48K_MONO));
    }
}

#[test]
fn units_come_out_in_decoding_order() {
    let units = vec![
        video(126_000, 126_000, true, b"a"),
        audio(126_000, &[1]),
        audio(127_920, &[2]),
        video(129_000, 129_000, false, b"b"),
        audio(129_840, &[3]),
    ];
    let (back, _) = ingest(&mux(&units), 100_000);
    let dts: Vec<u64> = back.iter().map(|u| u.dts).collect();
    assert!(dts.is_sorted(), "{dts:?}");
    assert_eq!(back.len(), units.len());
}

#[test]
fn timestamps_are_unwrapped_across_33_bits() {
    let wrap = 1u64 << 33;
    let units: Vec<AccessUnit> = (0..6)
        .map(|n| video(wrap - 6_000 + n * 3_000, wrap - 6_000 + n * 3_000, n == 0, b"x"))
        .collect();
    let (back, _) = ingest(&mux(&units), 188);
    let dts: Vec<u64> = back.iter().map(|u| u.dts).collect();
    assert_eq!(dts, units.iter().map(|u| u.dts).collect::<Vec<_>>());
    assert!(dts[5] > wrap, "past the wrap and still counting up: {dts:?}");
}

#[test]
fn an_unbounded_video_pes_ends_at_the_next_one_or_at_finish() {
    // Over 64 KiB: PES_packet_length 0, as ffmpeg writes all video PES.
    let big: Vec<u8> = (0..70_000).map(|i| (i % 250 + 1) as u8).collect();
    let units = vec![video(0, 0, true, &big), video(3_000, 3_000, false, &big)];
    let ts = mux(&units);
    let mut ingest = TsIngest::new();
    let first = ingest.push(&ts).expect("valid");
    assert_eq!(first, units[..1], "the first ends when the second starts");
    assert_eq!(ingest.finish(), units[1..], "the last one at the end of the stream");
}

/// One audio PES carrying several ADTS frames, as ffmpeg's muxer writes them.
fn audio_pes(pts: u64, frames: &[&[u8]], cc: &mut Continuity) -> Vec<u8> {
    let config = AacConfig::LC_48K_MONO;
    let payload: Vec<u8> = frames
        .iter()
        .flat_map(|frame| [&config.adts_header(frame.len()).expect("short")[..], frame].concat())
        .collect();
    let (header, len) = pes_header(AUDIO_STREAM_ID, pts, pts, payload.len()).expect("fits");
    let mut out = Vec::new();
    write_payload_unit(
        &mut out,
        AUDIO_PID,
        cc,
        FirstPacket::default(),
        &[&header[..len], &payload],
    );
    out
}

#[test]
fn several_adts_frames_in_one_pes_get_their_own_timestamps() {
    let mut ts = mux(&[]);
    let mut cc = Continuity::default();
    ts.extend(audio_pes(90_000, &[&[1, 2], &[3], &[4, 5, 6]], &mut cc));
    let (back, codecs) = ingest(&ts, 50);
    let got: Vec<(u64, &[u8])> = back.iter().map(|u| (u.pts, &u.data[..])).collect();
    assert_eq!(
        got,
        [(90_000, &[1, 2][..]), (91_920, &[3][..]), (93_840, &[4, 5, 6][..])]
    );
    assert_eq!(codecs.audio, Some(AacConfig::LC_48K_MONO));
    assert_eq!(codecs.video, None);
}

#[test]
fn a_continuity_gap_costs_the_damaged_pes_only() {
    let mut ts = mux(&[]);
    let mut cc = Continuity::default();
    let long = vec![7u8; 400];
    ts.extend(audio_pes(0, &[&long], &mut cc));
    // Lose the second packet of the first PES.
    ts.drain(3 * PACKET_SIZE..4 * PACKET_SIZE);
    ts.extend(audio_pes(1_920, &[&[8]], &mut cc));
    let (back, _) = ingest(&ts, 188);
    assert_eq!(back, [audio(1_920, &[8])]);
}

#[test]
fn a_duplicate_packet_is_ignored() {
    let mut ts = mux(&[]);
    let mut cc = Continuity::default();
    ts.extend(audio_pes(0, &[&[9; 300]], &mut cc));
    let second = ts[3 * PACKET_SIZE..4 * PACKET_SIZE].to_vec();
    ts.splice(4 * PACKET_SIZE..4 * PACKET_SIZE, second);
    let (back, _) = ingest(&ts, 188);
    assert_eq!(back, [audio(0, &[9; 300])]);
}

#[test]
fn garbage_between_packets_is_skipped() {
    let units: Vec<AccessUnit> = (0..4).map(|n| audio(n * 1_920, &[n as u8 + 1])).collect();
    let mut ts = mux(&units);
    // 100 bytes of junk after the tables, and a few at the very start.
    ts.splice(2 * PACKET_SIZE..2 * PACKET_SIZE, [0xAB; 100]);
    ts.splice(0..0, [1, 2, 3]);
    let (back, _) = ingest(&ts, 64);
    assert_eq!(back, units);
}

#[test]
fn lost_sync_is_an_error_naming_the_offset_and_stays_one() {
    let mut ts = mux(&[audio(0, &[1])]);
    let good = ts.len() as u64;
    ts.extend(std::iter::repeat_n(0u8, 2_000));
    let mut ingest = TsIngest::new();
    let error = ingest.push(&ts).expect_err("no sync in 2000 bytes");
    assert_eq!(error.offset, good);
    assert!(
        error
            .to_string()
            .starts_with(&format!("bad MPEG-TS at byte {good}: lost packet sync")),
        "{error}"
    );
    assert_eq!(ingest.push(&mux(&[])), Err(error), "a failed stream stays failed");
}

#[test]
fn lost_sync_is_only_decided_with_enough_bytes() {
    let mut ingest = TsIngest::new();
    // Fewer junk bytes than the limit: maybe the next chunk resyncs.
    assert_eq!(ingest.push(&[0u8; 500]), Ok(Vec::new()));
    assert!(ingest.push(&[0u8; 300]).is_err());
}

#[test]
fn streams_not_in_the_pmt_are_ignored() {
    let mut ts = mux(&[]);
    let mut cc = Continuity::default();
    let mut other = Vec::new();
    let (header, len) = pes_header(0xE1, 0, 0, 3).expect("fits");
    write_payload_unit(
        &mut other,
        0x200,
        &mut cc,
        FirstPacket::default(),
        &[&header[..len], &[0, 0, 1]],
    );
    ts.extend(other);
    assert_eq!(ingest(&ts, 188).0, []);
}

#[test]
fn leading_delimiters_are_stripped_and_nothing_else() {
    assert_eq!(
        without_leading_delimiters(&[0, 0, 0, 1, 9, 0xF0, 0, 0, 0, 1, 0x65, 1]),
        [0, 0, 0, 1, 0x65, 1]
    );
    assert_eq!(
        without_leading_delimiters(&[0, 0, 1, 9, 0x10, 0, 0, 1, 0x41, 1]),
        [0, 0, 1, 0x41, 1]
    );
    assert_eq!(
        without_leading_delimiters(&[0, 0, 0, 1, 0x65, 1]),
        [0, 0, 0, 1, 0x65, 1]
    );
    assert_eq!(without_leading_delimiters(&[0, 0, 0, 1, 9, 0xF0]), [0u8; 0]);
    assert_eq!(without_leading_delimiters(&[5, 0, 0, 1, 9]), [5, 0, 0, 1, 9]);
}

#[test]
fn nearest_unwraps_both_ways() {
    let wrap = 1u64 << 33;
    assert_eq!(nearest(wrap - 10, 5), wrap + 5);
    assert_eq!(nearest(wrap + 5, wrap - 10), wrap - 10);
    assert_eq!(
        nearest(100, wrap - 50),
        wrap - 50,
        "no negative time: the far side instead"
    );
    assert_eq!(nearest(3 * wrap + 7, 9), 3 * wrap + 9);
}

/// Access units in decoding order as a publisher's muxer would write them: monotonic DTS
/// starting anywhere below 2^33 (so some runs cross the wrap), B-frame style PTS ahead of DTS,
/// audio frames of arbitrary content in between.
fn stream() -> impl Strategy<Value = Vec<AccessUnit>> {
    let unit = (
        any::<bool>(),
        1u64..20_000,
        0u64..9_000,
        any::<bool>(),
        prop::collection::vec(1u8..=255, 1..600),
    );
    (
        (1u64 << 33) - 200_000..(1u64 << 33),
        prop::collection::vec(unit, 1..16),
        0u64..(1 << 33),
    )
        .prop_map(|(near_wrap, units, anywhere)| {
            let mut dts = if anywhere % 2 == 0 { near_wrap } else { anywhere };
            let mut out: Vec<AccessUnit> = Vec::new();
            // The first unit below 2^33: a reader can only know the timestamps modulo 2^33, and
            // counts from the first.
            for (is_video, step, reorder, keyframe, payload) in units {
                out.push(if is_video {
                    video(dts + reorder, dts, keyframe, &payload)
                } else {
                    audio(dts, &payload)
                });
                dts += step;
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn muxer_output_ingests_back_to_the_same_units(units in stream(), chunk in 1usize..2_000) {
        let (back, codecs) = ingest(&mux(&units), chunk);
        prop_assert_eq!(of_track(&back, Track::Video), of_track(&units, Track::Video));
        prop_assert_eq!(of_track(&back, Track::Audio), of_track(&units, Track::Audio));
        let dts: Vec<u64> = back.iter().map(|u| u.dts).collect();
        prop_assert!(dts.is_sorted());
        let has_key = units.iter().any(|u| u.keyframe && u.track == Track::Video);
        prop_assert_eq!(codecs.video.is_some(), has_key);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4_000), chunk in 1usize..500) {
        let mut ingest = TsIngest::new();
        for piece in data.chunks(chunk) {
            if ingest.push(piece).is_err() {
                break;
            }
        }
        let _ = ingest.finish();
    }

    #[test]
    fn damaged_streams_never_panic(
        units in stream(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..40),
        chunk in 1usize..2_000,
    ) {
        let mut ts = mux(&units);
        for (at, byte) in damage {
            let at = at.index(ts.len());
            ts[at] = byte;
        }
        let mut ingest = TsIngest::new();
        for piece in ts.chunks(chunk) {
            match ingest.push(piece) {
                Ok(units) => {
                    for unit in units {
                        prop_assert!(unit.pts >= unit.dts || unit.track == Track::Video);
                    }
                }
                Err(_) => break,
            }
        }
        let _ = ingest.finish();
    }
}
