//! An MPEG-TS muxer (ISO/IEC 13818-1) for one program: H.264 video and optional AAC audio.
//!
//! Written here rather than borrowed so that every byte is ours to explain: the conformance
//! suite checks real clients against it, and the reader crate used in tests (`mpeg2ts`) stays an
//! independent witness.

mod continuity;
mod crc;
mod demux;
mod packet;
mod pes;
mod psi;

pub use continuity::ContinuityRewriter;
pub use demux::{RESYNC_LIMIT, TsIngest};
pub use packet::{PACKET_SIZE, SYNC_BYTE};

use super::aac::AacConfig;
use super::access_unit::{AccessUnit, Track};
use super::h264;
use packet::{Continuity, FirstPacket};
use pes::{AUDIO_STREAM_ID, PesHeaderError, VIDEO_STREAM_ID, pes_header};
use psi::EsEntry;

pub const PAT_PID: u16 = 0x0000;
/// The PIDs ffmpeg's muxer uses; nothing depends on them but familiarity in captures.
pub const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x0100;
pub const AUDIO_PID: u16 = 0x0101;
pub const PROGRAM_NUMBER: u16 = 1;
const TRANSPORT_STREAM_ID: u16 = 1;

/// stream_type values (ISO/IEC 13818-1 Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1B;
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;

/// How far the PCR trails the DTS of the video PES it rides on: 100 ms, so a decoder that follows
/// the PCR holds each picture before it is due (the T-STD model of ISO/IEC 13818-1 §2.4.2).
const PCR_LEAD_TICKS: u64 = 9_000;

/// Why an access unit could not be muxed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("audio access unit for a stream without an audio track")]
    NoAudioTrack,
    #[error("video access unit for a stream without a video track")]
    NoVideoTrack,
    #[error("AAC frame of {0} bytes does not fit an ADTS frame")]
    AdtsFrameTooLong(usize),
    #[error("audio PES payload of {0} bytes exceeds PES_packet_length")]
    PesTooLong(usize),
}

impl From<PesHeaderError> for MuxError {
    fn from(error: PesHeaderError) -> Self {
        match error {
            PesHeaderError::TooLong { payload_len } => MuxError::PesTooLong(payload_len),
        }
    }
}

/// Muxer state that must carry from one segment to the next: the continuity counters.
///
/// Muxing consecutive segments with one `TsMuxer` makes their concatenation a valid stream, which
/// both HLS clients (ffmpeg feeds all segments to one demuxer) and the continuous feed rely on.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    video: bool,
    audio: Option<AacConfig>,
    /// PMT version_number: bumped whenever the track set changes.
    pmt_version: u8,
    pat: Continuity,
    pmt: Continuity,
    video_cc: Continuity,
    audio_cc: Continuity,
}

impl TsMuxer {
    /// A muxer for H.264 video plus, if configured, AAC audio.
    pub fn new(audio: Option<AacConfig>) -> Self {
        Self::with_tracks(true, audio)
    }

    /// A muxer for any track set, audio-only included (the PCR then rides on the audio PID).
    pub fn with_tracks(video: bool, audio: Option<AacConfig>) -> Self {
        TsMuxer {
            video,
            audio,
            pmt_version: 0,
            pat: Continuity::default(),
            pmt: Continuity::default(),
            video_cc: Continuity::default(),
            audio_cc: Continuity::default(),
        }
    }

    /// Changes the tracks, keeping the continuity counters so that the output still continues
    /// what was written before. A change in which tracks exist bumps the PMT version (taking
    /// effect with the next [`write_tables`](Self::write_tables)); a new AAC configuration only
    /// changes the ADTS headers of the following frames.
    pub fn set_tracks(&mut self, video: bool, audio: Option<AacConfig>) {
        if (video, audio.is_some()) != (self.video, self.audio.is_some()) {
            self.pmt_version = (self.pmt_version + 1) & 0x1F;
        }
        self.video = video;
        self.audio = audio;
    }

    /// Whether the tables announce a video track, and the audio configuration if any.
    pub fn tracks(&self) -> (bool, Option<AacConfig>) {
        (self.video, self.audio)
    }

    /// The PID whose packets carry the PCR: video if there is one.
    fn pcr_pid(&self) -> u16 {
        if self.video || self.audio.is_none() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// Writes the PAT and the PMT, one packet each. Every segment starts with them so that a
    /// reader can start there (RFC 8216 §3.4 requires both in each TS segment without EXT-X-MAP).
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let pat = psi::pat_section(TRANSPORT_STREAM_ID, PROGRAM_NUMBER, PMT_PID);
        packet::write_section(out, PAT_PID, &mut self.pat, &pat);

        let mut streams = Vec::with_capacity(2);
        if self.video {
            streams.push(EsEntry {
                stream_type: STREAM_TYPE_H264,
                pid: VIDEO_PID,
            });
        }
        if self.audio.is_some() {
            streams.push(EsEntry {
                stream_type: STREAM_TYPE_AAC_ADTS,
                pid: AUDIO_PID,
            });
        }
        let pmt = psi::pmt_section(PROGRAM_NUMBER, self.pmt_version, self.pcr_pid(), &streams);
        packet::write_section(out, PMT_PID, &mut self.pmt, &pmt);
    }

    /// Writes one access unit as one PES packet.
    ///
    /// Video gets an access unit delimiter if it lacks one (ISO/IEC 13818-1 §2.14.1), a PCR and,
    /// on keyframes, random_access_indicator. Audio gets its ADTS header, and the PCR when there
    /// is no video track.
    pub fn write_access_unit(&mut self, au: &AccessUnit, out: &mut Vec<u8>) -> Result<(), MuxError> {
        match au.track {
            Track::Video => {
                if !self.video {
                    return Err(MuxError::NoVideoTrack);
                }
                let delimiter: &[u8] = if h264::starts_with_access_unit_delimiter(&au.data) {
                    &[]
                } else {
                    &h264::ACCESS_UNIT_DELIMITER
                };
                let payload_len = delimiter.len() + au.data.len();
                let (header, header_len) = pes_header(VIDEO_STREAM_ID, au.pts, au.dts, payload_len)?;
                let first = FirstPacket {
                    pcr: Some(au.dts.saturating_sub(PCR_LEAD_TICKS)),
                    random_access: au.keyframe,
                };
                let parts = [&header[..header_len], delimiter, &au.data[..]];
                packet::write_payload_unit(out, VIDEO_PID, &mut self.video_cc, first, &parts);
            }
            Track::Audio => {
                let config = self.audio.ok_or(MuxError::NoAudioTrack)?;
                let adts = config
                    .adts_header(au.data.len())
                    .ok_or(MuxError::AdtsFrameTooLong(au.data.len()))?;
                let payload_len = adts.len() + au.data.len();
                let (header, header_len) = pes_header(AUDIO_STREAM_ID, au.pts, au.dts, payload_len)?;
                // Every AAC frame is a random access point (no inter-frame prediction in LC).
                let pcr = (self.pcr_pid() == AUDIO_PID).then(|| au.dts.saturating_sub(PCR_LEAD_TICKS));
                let first = FirstPacket {
                    pcr,
                    random_access: true,
                };
                let parts = [&header[..header_len], &adts[..], &au.data[..]];
                packet::write_payload_unit(out, AUDIO_PID, &mut self.audio_cc, first, &parts);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
