//! Reading an MPEG-TS byte stream back into access units: HTTP MPEG-TS ingest.
//!
//! Bytes arrive in any split. Packets are found by their sync byte; PAT and PMT name the H.264
//! (stream_type 0x1B) and AAC ADTS (0x0F) PIDs; PES packets are reassembled per PID and each
//! becomes one video access unit or, after the ADTS headers are stripped, one audio access unit
//! per ADTS frame. Timestamps are unwrapped from 33 bits onto one ever-increasing 90 kHz clock.
//!
//! Damage is survived where it can be: a packet with transport_error_indicator, a continuity
//! gap or a broken PES header costs that PES (logged at debug), and a lost sync byte is searched
//! for again. Only a sync that stays lost for [`RESYNC_LIMIT`] bytes is an error: such a stream
//! is not TS (or not 188-byte TS) and reading on would only produce garbage.

use std::collections::HashMap;

use bytes::Bytes;

use super::packet::{PACKET_SIZE, ReceivedPacket, SYNC_BYTE, parse_packet};
use super::pes::{ReceivedPesHeader, TIMESTAMP_MASK, parse_pes_header};
use super::psi::{self, MAX_SECTION_LEN};
use super::{PAT_PID, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264};
use crate::media::aac::{self, AdtsHeader};
use crate::media::access_unit::{AccessUnit, Track};
use crate::media::avc::AvcParams;
use crate::media::h264::{self, nal_type};
use crate::media::{Codecs, IngestError};

/// Bytes skipped while looking for the sync byte again before giving up: four packets.
pub const RESYNC_LIMIT: u64 = 4 * PACKET_SIZE as u64;

/// A PES larger than this is dropped: no sane picture is, and memory must stay bounded whatever
/// a publisher sends.
const MAX_PES_LEN: usize = 8 << 20;

/// Reads an MPEG-TS byte stream (HTTP MPEG-TS ingest) into access units.
///
/// Video units are Annex B as received minus a leading access unit delimiter (the TS muxer adds
/// its own); `keyframe` means the unit holds an IDR slice. Parameter sets are not added to
/// keyframes that lack them: the [`Publisher`](crate::media::Publisher) does that from
/// [`codecs`](Self::codecs). Audio units are raw AAC frames.
#[derive(Debug, Default)]
pub struct TsIngest {
    codecs: Codecs,
    /// Received bytes not yet consumed: at most a packet plus a resync search.
    buffer: Vec<u8>,
    /// Stream offset of `buffer[0]`.
    buffer_offset: u64,
    /// Set while searching for sync: where it was lost.
    lost_sync_at: Option<u64>,
    /// A stream that failed stays failed.
    failed: Option<IngestError>,
    psi: HashMap<u16, SectionAssembly>,
    pmt_pid: Option<u16>,
    video: Option<Elementary>,
    audio: Option<Elementary>,
    clock: Unwrapper,
    /// Where the next audio frame falls when a PES comes without a PTS.
    audio_next_pts: Option<u64>,
}

impl TsIngest {
    pub fn new() -> TsIngest {
        TsIngest::default()
    }

    /// Feeds bytes in any split; returns the access units completed by them, in decoding order
    /// (by dts, stable). A video PES without PES_packet_length (as ffmpeg writes them) completes
    /// when the next one starts, or at [`finish`](Self::finish).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<AccessUnit>, IngestError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.buffer.extend_from_slice(bytes);
        let mut units = Vec::new();
        let mut position = 0;
        let result = loop {
            let rest = &self.buffer[position..];
            let offset = self.buffer_offset + position as u64;
            if self.lost_sync_at.is_none() {
                let Some(packet) = rest.first_chunk::<PACKET_SIZE>() else {
                    break Ok(());
                };
                if packet[0] == SYNC_BYTE {
                    let packet = *packet;
                    self.on_packet(&packet, offset, &mut units);
                    position += PACKET_SIZE;
                    continue;
                }
                tracing::debug!(offset, "MPEG-TS ingest lost sync; searching");
                self.lost_sync_at = Some(offset);
            }
            // Searching: a sync byte counts when the next packet starts with one too.
            match rest {
                [] => break Ok(()),
                [SYNC_BYTE, ..] if rest.len() <= PACKET_SIZE => break Ok(()),
                [SYNC_BYTE, ..] if rest[PACKET_SIZE] == SYNC_BYTE => {
                    let lost = self.lost_sync_at.take().unwrap_or(offset);
                    tracing::debug!(lost, skipped = offset - lost, "MPEG-TS ingest found sync again");
                    continue;
                }
                _ => position += 1,
            }
            let lost = self.lost_sync_at.unwrap_or(offset);
            if offset + 1 - lost > RESYNC_LIMIT {
                break Err(IngestError {
                    offset: lost,
                    message: format!(
                        "lost packet sync (no 0x47 every 188 bytes) and found none within {RESYNC_LIMIT} bytes"
                    ),
                });
            }
        };
        self.buffer.drain(..position);
        self.buffer_offset += position as u64;
        if let Err(error) = result {
            self.failed = Some(error.clone());
            return Err(error);
        }
        units.sort_by_key(|unit| unit.dts);
        Ok(units)
    }

    /// Ends the stream: completes the PES packets still open (a video PES without length has no
    /// other end) and returns their access units. Bytes of an incomplete packet are dropped.
    pub fn finish(&mut self) -> Vec<AccessUnit> {
        let mut units = Vec::new();
        for track in [Track::Video, Track::Audio] {
            if let Some((pes, offset)) = self.elementary(track).and_then(|es| es.pes.take()) {
                self.on_pes(track, &pes, offset, &mut units);
            }
        }
        self.buffer.clear();
        units.sort_by_key(|unit| unit.dts);
        units
    }

    /// The codec parameters seen so far (SPS/PPS from the video, the AAC config from ADTS).
    pub fn codecs(&self) -> &Codecs {
        &self.codecs
    }

    fn elementary(&mut self, track: Track) -> Option<&mut Elementary> {
        match track {
            Track::Video => self.video.as_mut(),
            Track::Audio => self.audio.as_mut(),
        }
    }

    fn on_packet(&mut self, packet: &[u8; PACKET_SIZE], offset: u64, units: &mut Vec<AccessUnit>) {
        let header = match parse_packet(packet) {
            Ok(header) => header,
            Err(why) => {
                tracing::debug!(offset, why, "MPEG-TS ingest skipped a packet");
                return;
            }
        };
        if header.transport_error {
            tracing::debug!(
                offset,
                pid = header.pid,
                "MPEG-TS ingest skipped a packet marked in error"
            );
            self.drop_partial(header.pid);
            return;
        }
        let payload = &packet[header.payload_offset..];
        let track = if self.video.as_ref().is_some_and(|es| es.pid == header.pid) {
            Some(Track::Video)
        } else if self.audio.as_ref().is_some_and(|es| es.pid == header.pid) {
            Some(Track::Audio)
        } else {
            None
        };
        if let Some(track) = track {
            let Some(es) = self.elementary(track) else {
                return;
            };
            match es.continuity.check(&header) {
                Continuity::Next => {}
                Continuity::Repeat => return,
                Continuity::Gap => {
                    if es.pes.take().is_some() {
                        tracing::debug!(offset, pid = header.pid, "continuity gap: PES in progress dropped");
                    }
                }
            }
            if !header.has_payload {
                return;
            }
            if header.payload_unit_start {
                let previous = es.pes.replace((payload.to_vec(), offset));
                if let Some((pes, pes_offset)) = previous {
                    self.on_pes(track, &pes, pes_offset, units);
                }
            } else if let Some((pes, _)) = es.pes.as_mut() {
                pes.extend_from_slice(payload);
            }
            self.complete_bounded_pes(track, units);
        } else if header.pid == PAT_PID || Some(header.pid) == self.pmt_pid {
            let assembly = self.psi.entry(header.pid).or_default();
            if assembly.continuity.check(&header) != Continuity::Next || !header.has_payload {
                return;
            }
            for section in assembly.push(header.payload_unit_start, payload) {
                self.on_section(header.pid, &section, offset);
            }
        }
    }

    /// Ends a PES as soon as its PES_packet_length is reached, without waiting for the next one.
    fn complete_bounded_pes(&mut self, track: Track, units: &mut Vec<AccessUnit>) {
        let Some(es) = self.elementary(track) else {
            return;
        };
        let Some((pes, offset)) = es.pes.as_mut() else {
            return;
        };
        let length = match pes.get(4..6) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return,
        };
        if length != 0 && pes.len() >= 6 + length {
            pes.truncate(6 + length);
            let (pes, offset) = (std::mem::take(pes), *offset);
            es.pes = None;
            self.on_pes(track, &pes, offset, units);
        } else if pes.len() > MAX_PES_LEN {
            tracing::debug!(offset = *offset, "PES over {MAX_PES_LEN} bytes dropped");
            es.pes = None;
        }
    }

    fn drop_partial(&mut self, pid: u16) {
        for es in [self.video.as_mut(), self.audio.as_mut()].into_iter().flatten() {
            if es.pid == pid {
                es.pes = None;
            }
        }
        if let Some(assembly) = self.psi.get_mut(&pid) {
            assembly.data.clear();
        }
    }

    fn on_section(&mut self, pid: u16, section: &[u8], offset: u64) {
        let section = match psi::parse_section(section) {
            Ok(section) => section,
            Err(why) => {
                tracing::debug!(offset, pid, why, "MPEG-TS ingest skipped a table section");
                return;
            }
        };
        if pid == PAT_PID {
            if let Some(pmt_pid) = psi::parse_pat(&section)
                && self.pmt_pid != Some(pmt_pid)
            {
                tracing::debug!(offset, pmt_pid, "MPEG-TS ingest: program map PID");
                self.pmt_pid = Some(pmt_pid);
            }
            return;
        }
        let Some(streams) = psi::parse_pmt(&section) else {
            tracing::debug!(offset, pid, "MPEG-TS ingest skipped a malformed PMT");
            return;
        };
        let find = |stream_type| streams.iter().find(|es| es.stream_type == stream_type).map(|es| es.pid);
        for (track, pid) in [
            (Track::Video, find(STREAM_TYPE_H264)),
            (Track::Audio, find(STREAM_TYPE_AAC_ADTS)),
        ] {
            let slot = match track {
                Track::Video => &mut self.video,
                Track::Audio => &mut self.audio,
            };
            if slot.as_ref().map(|es| es.pid) != pid {
                tracing::debug!(offset, ?track, ?pid, "MPEG-TS ingest: elementary stream PID");
                *slot = pid.map(Elementary::new);
            }
        }
    }

    fn on_pes(&mut self, track: Track, pes: &[u8], offset: u64, units: &mut Vec<AccessUnit>) {
        let header = match parse_pes_header(pes) {
            Ok(header) => header,
            Err(why) => {
                tracing::debug!(offset, ?track, why, "MPEG-TS ingest skipped a PES");
                return;
            }
        };
        let Some(data) = pes.get(header.header_len..).filter(|data| !data.is_empty()) else {
            return;
        };
        match track {
            Track::Video => self.on_video(&header, data, offset, units),
            Track::Audio => self.on_audio(&header, data, offset, units),
        }
    }

    fn on_video(&mut self, header: &ReceivedPesHeader, data: &[u8], offset: u64, units: &mut Vec<AccessUnit>) {
        let Some((pts, dts)) = self.clock.timestamps(header) else {
            tracing::debug!(offset, "MPEG-TS ingest skipped a video PES without PTS");
            return;
        };
        let data = without_leading_delimiters(data);
        let mut keyframe = false;
        for unit in h264::nal_units(data) {
            keyframe |= h264::nal_unit_type(unit) == Some(nal_type::IDR_SLICE);
        }
        if let Some(params) = AvcParams::from_annex_b(data)
            && self.codecs.video.as_ref() != Some(&params)
        {
            tracing::debug!(offset, "MPEG-TS ingest: new H.264 parameter sets");
            self.codecs.video = Some(params);
        }
        units.push(AccessUnit {
            track: Track::Video,
            pts,
            dts,
            keyframe,
            data: Bytes::copy_from_slice(data),
        });
    }

    fn on_audio(&mut self, header: &ReceivedPesHeader, mut data: &[u8], offset: u64, units: &mut Vec<AccessUnit>) {
        let mut pts = match self.clock.timestamps(header) {
            Some((pts, _)) => pts,
            None => match self.audio_next_pts {
                Some(next) => next,
                None => {
                    tracing::debug!(offset, "MPEG-TS ingest skipped an audio PES without PTS");
                    return;
                }
            },
        };
        while !data.is_empty() {
            let Some(adts) = AdtsHeader::parse(data) else {
                // Not at a frame: look for the next syncword (a damaged or split frame).
                let skip = data[1..]
                    .windows(2)
                    .position(|w| w[0] == 0xFF && w[1] & 0xF6 == 0xF0)
                    .map_or(data.len(), |at| at + 1);
                tracing::debug!(offset, skip, "MPEG-TS ingest skipped bytes that are not ADTS");
                data = &data[skip..];
                continue;
            };
            let Some(frame) = data.get(adts.header_len..adts.frame_len) else {
                tracing::debug!(offset, "MPEG-TS ingest dropped an ADTS frame cut at the PES end");
                break;
            };
            if self.codecs.audio != Some(adts.config) {
                tracing::debug!(offset, config = ?adts.config, "MPEG-TS ingest: new AAC configuration");
                self.codecs.audio = Some(adts.config);
            }
            if !frame.is_empty() {
                units.push(AccessUnit {
                    track: Track::Audio,
                    pts,
                    dts: pts,
                    keyframe: true,
                    data: Bytes::copy_from_slice(frame),
                });
            }
            let rate = adts.config.sample_rate().unwrap_or(48_000);
            pts = pts.saturating_add(aac::frames_to_ticks(u64::from(adts.raw_data_blocks), rate));
            data = &data[adts.frame_len..];
        }
        self.audio_next_pts = Some(pts);
    }
}

/// The Annex B data after any access unit delimiters at its start.
fn without_leading_delimiters(mut data: &[u8]) -> &[u8] {
    loop {
        let start = match data {
            [0, 0, 1, ..] => 3,
            [0, 0, 0, 1, ..] => 4,
            _ => return data,
        };
        if data.get(start).map(|&header| header & 0x1F) != Some(nal_type::ACCESS_UNIT_DELIMITER) {
            return data;
        }
        // The delimiter ends where the next start code begins.
        let after = &data[start..];
        match after.windows(3).position(|w| w == [0, 0, 1]) {
            Some(at) => {
                let next = start + at;
                // A 4-byte start code's leading zero was counted into the delimiter's tail.
                let next = if next > start && data[next - 1] == 0 {
                    next - 1
                } else {
                    next
                };
                data = &data[next..];
            }
            None => return &[],
        }
    }
}

/// One elementary stream being reassembled.
#[derive(Debug)]
struct Elementary {
    pid: u16,
    continuity: ContinuityCheck,
    /// The PES in progress and the stream offset of its first packet.
    pes: Option<(Vec<u8>, u64)>,
}

impl Elementary {
    fn new(pid: u16) -> Self {
        Elementary {
            pid,
            continuity: ContinuityCheck::default(),
            pes: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuity {
    Next,
    /// The same counter again: a duplicate packet (§2.4.3.3 allows one), to be ignored.
    Repeat,
    /// Packets were lost.
    Gap,
}

/// continuity_counter per PID (§2.4.3.3).
#[derive(Debug, Default)]
struct ContinuityCheck {
    last: Option<u8>,
}

impl ContinuityCheck {
    fn check(&mut self, packet: &ReceivedPacket) -> Continuity {
        if !packet.has_payload {
            return Continuity::Next;
        }
        let verdict = match self.last {
            _ if packet.discontinuity => Continuity::Next,
            None => Continuity::Next,
            Some(last) if packet.continuity_counter == (last + 1) & 0x0F => Continuity::Next,
            Some(last) if packet.continuity_counter == last => Continuity::Repeat,
            Some(_) => Continuity::Gap,
        };
        self.last = Some(packet.continuity_counter);
        verdict
    }
}

/// A PSI section being collected from the packets of one PID (§2.4.4.1: pointer_field, then
/// sections that may span packets).
#[derive(Debug, Default)]
struct SectionAssembly {
    continuity: ContinuityCheck,
    /// Bytes of the section in progress; empty when none is.
    data: Vec<u8>,
}

impl SectionAssembly {
    /// The sections completed by one packet's payload.
    fn push(&mut self, unit_start: bool, payload: &[u8]) -> Vec<Vec<u8>> {
        let mut sections = Vec::new();
        if !unit_start {
            if !self.data.is_empty() {
                self.data.extend_from_slice(payload);
                self.take_complete(&mut sections);
            }
            return sections;
        }
        let Some((&pointer, tail)) = payload.split_first() else {
            return sections;
        };
        let (previous_tail, mut rest) = tail.split_at(usize::from(pointer).min(tail.len()));
        if !self.data.is_empty() {
            self.data.extend_from_slice(previous_tail);
            self.take_complete(&mut sections);
            self.data.clear();
        }
        // Only a packet with payload_unit_start begins sections; several may follow each other
        // until stuffing (0xFF where a table_id would be).
        loop {
            match rest.first() {
                None | Some(0xFF) => return sections,
                Some(_) => {}
            }
            match psi::section_total_len(rest) {
                Some(total) if total > MAX_SECTION_LEN => return sections,
                Some(total) if total <= rest.len() => {
                    sections.push(rest[..total].to_vec());
                    rest = &rest[total..];
                }
                _ => {
                    self.data = rest.to_vec();
                    return sections;
                }
            }
        }
    }

    /// Moves the section in progress to `sections` once it is whole; forgets it if it claims to
    /// be longer than any table may be.
    fn take_complete(&mut self, sections: &mut Vec<Vec<u8>>) {
        match psi::section_total_len(&self.data) {
            Some(total) if total > MAX_SECTION_LEN => self.data.clear(),
            Some(total) if self.data.len() >= total => {
                self.data.truncate(total);
                sections.push(std::mem::take(&mut self.data));
            }
            _ => {}
        }
    }
}

/// Unwraps 33-bit timestamps onto one 90 kHz clock shared by all tracks, so that their
/// relation survives the wrap (every 26.5 hours).
#[derive(Debug, Default)]
struct Unwrapper {
    /// The last unwrapped DTS: the reference for the next.
    last: Option<u64>,
}

impl Unwrapper {
    /// (pts, dts) of a PES, unwrapped; `None` without PTS. DTS defaults to PTS (§2.4.3.7).
    fn timestamps(&mut self, header: &ReceivedPesHeader) -> Option<(u64, u64)> {
        let pts = header.pts?;
        let dts = header.dts.unwrap_or(pts);
        let dts = match self.last {
            Some(last) => nearest(last, dts),
            None => dts,
        };
        self.last = Some(dts);
        Some((nearest(dts, pts), dts))
    }
}

/// The value congruent to `ts` modulo 2^33 nearest to `reference` (never below zero).
fn nearest(reference: u64, ts: u64) -> u64 {
    const WRAP: u64 = TIMESTAMP_MASK + 1;
    let base = (reference & !TIMESTAMP_MASK) | (ts & TIMESTAMP_MASK);
    [base.checked_sub(WRAP), Some(base), base.checked_add(WRAP)]
        .into_iter()
        .flatten()
        .min_by_key(|candidate| candidate.abs_diff(reference))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests;
