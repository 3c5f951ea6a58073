//! Round trip through an independent reader: what [`TsMuxer`] writes, the `mpeg2ts` crate must
//! parse back into the tables and access units that went in.

use std::collections::HashMap;

use bytes::Bytes;
use mpeg2ts::es::StreamType;
use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
use mpeg2ts::ts::{ReadTsPacket, TsPacketReader, TsPayload};
use proptest::prelude::*;

use super::pes::TIMESTAMP_MASK;
use super::*;
use crate::media::aac::{self, AacConfig};

fn mux(units: &[AccessUnit]) -> Vec<u8> {
    let mut muxer = TsMuxer::new(Some(AacConfig::LC_48K_MONO));
    let mut out = Vec::new();
    muxer.write_tables(&mut out);
    for au in units {
        muxer.write_access_unit(au, &mut out).expect("muxable");
    }
    out
}

/// The PES payload a unit must come back as: what the muxer adds in front, then its data.
fn expected_payload(au: &AccessUnit) -> Vec<u8> {
    let prefix: Vec<u8> = match au.track {
        Track::Video if h264::starts_with_access_unit_delimiter(&au.data) => Vec::new(),
        Track::Video => h264::ACCESS_UNIT_DELIMITER.to_vec(),
        Track::Audio => AacConfig::LC_48K_MONO
            .adts_header(au.data.len())
            .expect("short frame")
            .to_vec(),
    };
    [prefix, au.data.to_vec()].concat()
}

/// One PES as the reader saw it: (pts, dts if written, payload).
type ReadPes = (u64, Option<u64>, Vec<u8>);

/// Every PES the reader finds, per stream_id in stream order.
fn read_pes(ts: &[u8]) -> HashMap<u8, Vec<ReadPes>> {
    let mut reader = PesPacketReader::new(TsPacketReader::new(ts));
    let mut by_stream: HashMap<u8, Vec<_>> = HashMap::new();
    while let Some(pes) = reader.read_pes_packet().expect("valid PES") {
        let pts = pes.header.pts.expect("every PES has a PTS").as_u64();
        let dts = pes.header.dts.map(|d| d.as_u64());
        by_stream
            .entry(pes.header.stream_id.as_u8())
            .or_default()
            .push((pts, dts, pes.data));
    }
    by_stream
}

fn video(pts: u64, data: &[u8]) -> AccessUnit {
    AccessUnit {
        track: Track::Video,
        pts,
        dts: pts,
        keyframe: true,
        data: Bytes::copy_from_slice(data),
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

#[test]
fn tables_name_the_program_and_its_streams() {
    let ts = mux(&[
        video(0, &[0, 0, 0, 1, 0x65, 1, 2, 3]),
        audio(0, &aac::SILENT_MONO_FRAME),
    ]);
    let mut reader = TsPacketReader::new(&ts[..]);
    let mut continuity: HashMap<u16, u8> = HashMap::new();
    let mut saw_pmt = false;
    while let Some(packet) = reader.read_ts_packet().expect("valid TS packet") {
        let pid = packet.header.pid.as_u16();
        let cc = packet.header.continuity_counter.as_u8();
        if let Some(previous) = continuity.insert(pid, cc) {
            assert_eq!(cc, (previous + 1) & 0x0F, "PID {pid:#x}");
        }
        match packet.payload {
            Some(TsPayload::Pat(pat)) => {
                assert_eq!(pat.table.len(), 1);
                assert_eq!(pat.table[0].program_num, PROGRAM_NUMBER);
                assert_eq!(pat.table[0].program_map_pid.as_u16(), PMT_PID);
            }
            Some(TsPayload::Pmt(pmt)) => {
                saw_pmt = true;
                assert_eq!(pmt.pcr_pid.map(|p| p.as_u16()), Some(VIDEO_PID));
                let streams: Vec<_> = pmt
                    .es_info
                    .iter()
                    .map(|es| (es.stream_type, es.elementary_pid.as_u16()))
                    .collect();
                assert_eq!(
                    streams,
                    [(StreamType::H264, VIDEO_PID), (StreamType::AdtsAac, AUDIO_PID)]
                );
            }
            Some(TsPayload::PesStart(_)) if pid == VIDEO_PID => {
                let adaptation = packet.adaptation_field.expect("keyframe flags");
                assert!(adaptation.random_access_indicator);
                assert!(adaptation.pcr.is_some());
            }
            _ => {}
        }
    }
    assert!(saw_pmt);
}

#[test]
fn a_video_unit_with_its_own_delimiter_gets_no_second_one() {
    let with_aud = [&h264::ACCESS_UNIT_DELIMITER[..], &[0, 0, 0, 1, 0x65, 9]].concat();
    let pes = read_pes(&mux(&[video(90_000, &with_aud)]));
    assert_eq!(pes[&pes::VIDEO_STREAM_ID][0].2, with_aud);
}

#[test]
fn a_large_picture_uses_an_unbounded_pes() {
    let picture: Vec<u8> = [0, 0, 0, 1, 0x65]
        .into_iter()
        .chain((0..80_000).map(|i| (i % 200 + 1) as u8))
        .collect();
    // The reader needs the next PES start to end an unbounded one.
    let ts = mux(&[video(0, &picture), video(3_000, &[0, 0, 1, 0x65, 7])]);
    let pes = read_pes(&ts);
    assert_eq!(pes[&pes::VIDEO_STREAM_ID][0].2, expected_payload(&video(0, &picture)));
}

#[test]
fn audio_without_an_audio_track_is_refused() {
    let mut muxer = TsMuxer::new(None);
    let mut out = Vec::new();
    assert_eq!(
        muxer.write_access_unit(&audio(0, &[1]), &mut out),
        Err(MuxError::NoAudioTrack)
    );
    assert!(out.is_empty(), "nothing half-written");
}

#[test]
fn an_audio_only_stream_carries_its_pcr_on_the_audio_pid() {
    let mut muxer = TsMuxer::with_tracks(false, Some(AacConfig::LC_48K_MONO));
    let mut out = Vec::new();
    muxer.write_tables(&mut out);
    muxer
        .write_access_unit(&audio(90_000, &aac::SILENT_MONO_FRAME), &mut out)
        .expect("audio track");
    assert_eq!(
        muxer.write_access_unit(&video(0, &[0, 0, 1, 0x65]), &mut out),
        Err(MuxError::NoVideoTrack)
    );
    let mut reader = TsPacketReader::new(&out[..]);
    let mut saw_pcr = false;
    while let Some(packet) = reader.read_ts_packet().expect("valid TS packet") {
        match packet.payload {
            Some(TsPayload::Pmt(pmt)) => {
                assert_eq!(pmt.pcr_pid.map(|p| p.as_u16()), Some(AUDIO_PID));
                let streams: Vec<_> = pmt.es_info.iter().map(|es| es.elementary_pid.as_u16()).collect();
                assert_eq!(streams, [AUDIO_PID]);
            }
            Some(TsPayload::PesStart(_)) => {
                let pcr = packet
                    .adaptation_field
                    .and_then(|a| a.pcr)
                    .expect("PCR on the audio PES");
                assert_eq!(pcr.as_u64() / 300, 90_000 - PCR_LEAD_TICKS);
                saw_pcr = true;
            }
            _ => {}
        }
    }
    assert!(saw_pcr);
}

#[test]
fn a_new_track_set_bumps_the_pmt_version_and_keeps_the_counters() {
    let mut muxer = TsMuxer::with_tracks(true, None);
    let mut first = Vec::new();
    muxer.write_tables(&mut first);
    muxer.set_tracks(true, Some(AacConfig::LC_48K_MONO));
    let mut second = Vec::new();
    muxer.write_tables(&mut second);
    // PMT packet: header, pointer_field, table_id, length (2), program_number (2), version byte.
    let version = |tables: &[u8]| (tables[PACKET_SIZE + 10] >> 1) & 0x1F;
    assert_eq!((version(&first), version(&second)), (0, 1));
    assert_eq!(second[PACKET_SIZE + 3] & 0x0F, 1, "the PMT's counter went on");
    // A new AAC configuration alone changes no table.
    muxer.set_tracks(
        true,
        Some(AacConfig {
            channel_configuration: 2,
            ..AacConfig::LC_48K_MONO
        }),
    );
    let mut third = Vec::new();
    muxer.write_tables(&mut third);
    assert_eq!(version(&third), 1);
}

/// Small access units with arbitrary content, timestamps anywhere in (and past) 33 bits, and
/// B-frame style DTS below PTS now and then.
fn access_unit() -> impl Strategy<Value = AccessUnit> {
    (
        any::<bool>(),
        0u64..(1 << 34),
        0u64..3_000,
        prop::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(|(is_video, pts, reorder, data)| {
            let track = if is_video { Track::Video } else { Track::Audio };
            let dts = if is_video { pts.saturating_sub(reorder) } else { pts };
            AccessUnit {
                track,
                pts,
                dts,
                keyframe: is_video && reorder % 2 == 0,
                data: Bytes::from(data),
            }
        })
}

proptest! {
    #[test]
    fn access_units_survive_the_round_trip(units in prop::collection::vec(access_unit(), 1..12)) {
        let ts = mux(&units);
        prop_assert_eq!(ts.len() % PACKET_SIZE, 0);
        let mut pes = read_pes(&ts);
        for (track, stream_id) in [(Track::Video, pes::VIDEO_STREAM_ID), (Track::Audio, pes::AUDIO_STREAM_ID)] {
            let expected: Vec<_> = units
                .iter()
                .filter(|au| au.track == track)
                .map(|au| {
                    let (pts, dts) = (au.pts & TIMESTAMP_MASK, au.dts & TIMESTAMP_MASK);
                    (pts, (dts != pts).then_some(dts), expected_payload(au))
                })
                .collect();
            prop_assert_eq!(pes.remove(&stream_id).unwrap_or_default(), expected);
        }
    }
}
