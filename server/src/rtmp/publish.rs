//! Publishing: RTMP video and audio messages from an admitted publisher into the stream's
//! [`Publisher`] as access units (PUB-03, PUB-06).
//!
//! H.264 arrives as AVCC NAL units with the parameter sets in a sequence header; the media layer
//! wants Annex B with SPS/PPS before every IDR, at 90 kHz. AAC arrives raw with its
//! AudioSpecificConfig in a sequence header, as the media layer wants it. A malformed tag is
//! logged and skipped: the publisher is admitted, and one bad frame is not worth cutting it.

use bytes::Bytes;
use rml_rtmp::time::RtmpTimestamp;

use super::flv::{self, AudioTag, VideoTag};
use crate::media::aac::AacConfig;
use crate::media::avc::{self, AvcParams};
use crate::media::h264::{self, nal_type};
use crate::media::{AccessUnit, CLOCK_HZ, Codecs, Publisher, Track};

/// Published timestamps start here rather than at 0, like the `fake://` source and ffmpeg's TS
/// muxer (1.4 s): it keeps the first PCR and negative composition offsets clear of zero.
const TIME_OFFSET_MS: i64 = 1_400;
/// Complaints about one publisher's media logged at `warn`; later ones go to `debug`.
const LOUD_COMPLAINTS: u32 = 3;

/// One admitted publisher's conversion state.
#[derive(Debug)]
pub(super) struct Ingest {
    stream: String,
    publisher: Publisher,
    codecs: Codecs,
    /// The last sequence header's parameter sets and NAL unit length size.
    avc: Option<(AvcParams, u8)>,
    clock: Clock,
    complaints: u32,
}

impl Ingest {
    pub fn new(stream: String, publisher: Publisher) -> Ingest {
        Ingest {
            stream,
            publisher,
            codecs: Codecs::default(),
            avc: None,
            clock: Clock::default(),
            complaints: 0,
        }
    }

    pub fn video(&mut self, body: &Bytes, timestamp: RtmpTimestamp) {
        let dts = self.clock.ticks(timestamp);
        match flv::parse_video(body) {
            Err(why) => self.complain(&why),
            Ok(VideoTag::SequenceHeader(record)) => match avc::parse_avc_decoder_configuration_record(&record) {
                Some((params, length_size)) => {
                    self.set_codecs(Codecs {
                        video: Some(params.clone()),
                        ..self.codecs.clone()
                    });
                    self.avc = Some((params, length_size));
                }
                None => self.complain("AVC sequence header without a whole SPS and PPS"),
            },
            Ok(VideoTag::Nalus { composition_ms, data }) => {
                let Some((params, length_size)) = &self.avc else {
                    return self.complain("AVC picture before the AVC sequence header");
                };
                let Some(annex_b) = avc::avcc_to_annex_b(&data, *length_size) else {
                    return self.complain("AVC NAL unit length runs past the end of the tag");
                };
                let Some(unit) = with_params_before_idr(annex_b, params) else {
                    return;
                };
                let pts = dts.saturating_add_signed(i64::from(composition_ms) * 90);
                self.publisher.push(AccessUnit {
                    track: Track::Video,
                    pts,
                    dts,
                    keyframe: unit.1,
                    data: unit.0,
                });
            }
            Ok(VideoTag::Nothing) => {}
        }
    }

    pub fn audio(&mut self, body: &Bytes, timestamp: RtmpTimestamp) {
        let time = self.clock.ticks(timestamp);
        match flv::parse_audio(body) {
            Err(why) => self.complain(&why),
            Ok(AudioTag::SequenceHeader(asc)) => match AacConfig::from_audio_specific_config(&asc) {
                Some(aac) => self.set_codecs(Codecs {
                    audio: Some(aac),
                    ..self.codecs.clone()
                }),
                None => self.complain("AudioSpecificConfig that ADTS cannot carry"),
            },
            Ok(AudioTag::Raw(frame)) => {
                if self.codecs.audio.is_none() {
                    return self.complain("AAC frame before the AAC sequence header");
                }
                if frame.is_empty() {
                    return;
                }
                self.publisher.push(AccessUnit {
                    track: Track::Audio,
                    pts: time,
                    dts: time,
                    keyframe: true,
                    data: frame,
                });
            }
        }
    }

    fn set_codecs(&mut self, codecs: Codecs) {
        if codecs != self.codecs {
            tracing::debug!(stream = %self.stream, ?codecs, "publisher codecs");
            self.codecs = codecs.clone();
            self.publisher.set_codecs(codecs);
        }
    }

    fn complain(&mut self, why: &str) {
        self.complaints = self.complaints.saturating_add(1);
        if self.complaints <= LOUD_COMPLAINTS {
            tracing::warn!(stream = %self.stream, "publisher media skipped: {why}");
        } else {
            tracing::debug!(stream = %self.stream, "publisher media skipped: {why}");
        }
    }
}

/// An Annex B access unit as [`AccessUnit`] wants it: when it holds an IDR picture but not its
/// own SPS and PPS, the sequence header's go in front. Returns the bytes and whether there is an
/// IDR picture; `None` for an access unit without NAL units.
fn with_params_before_idr(annex_b: Bytes, params: &AvcParams) -> Option<(Bytes, bool)> {
    let types: Vec<u8> = h264::nal_units(&annex_b).filter_map(h264::nal_unit_type).collect();
    if types.is_empty() {
        return None;
    }
    let idr = types.contains(&nal_type::IDR_SLICE);
    if !idr || (types.contains(&nal_type::SPS) && types.contains(&nal_type::PPS)) {
        return Some((annex_b, idr));
    }
    let mut with = params.to_annex_b().to_vec();
    with.extend_from_slice(&annex_b);
    Some((Bytes::from(with), true))
}

/// Turns 32-bit millisecond RTMP timestamps into 90 kHz ticks that count up for ever: each
/// timestamp is read as a signed step from the previous one, so a wrap after 49.7 days and the
/// small back-steps between interleaved audio and video both come out right.
#[derive(Debug, Default)]
struct Clock {
    last: Option<u32>,
    millis: i64,
}

impl Clock {
    fn ticks(&mut self, timestamp: RtmpTimestamp) -> u64 {
        let raw = timestamp.value;
        self.millis = match self.last {
            None => i64::from(raw),
            Some(last) => self.millis + i64::from(raw.wrapping_sub(last) as i32),
        };
        self.last = Some(raw);
        let millis = (self.millis + TIME_OFFSET_MS).max(0) as u64;
        millis * CLOCK_HZ / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_go_before_an_idr_that_lacks_them() {
        let params = AvcParams {
            sps: Bytes::from_static(&[0x67, 0x42, 0, 0x1E]),
            pps: Bytes::from_static(&[0x68, 0xCE]),
        };
        let idr = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]);
        let (out, keyframe) = with_params_before_idr(idr, &params).unwrap();
        assert!(keyframe);
        assert_eq!(
            &out[..],
            &[
                0, 0, 0, 1, 0x67, 0x42, 0, 0x1E, 0, 0, 0, 1, 0x68, 0xCE, 0, 0, 0, 1, 0x65, 0x88
            ]
        );
        let p = Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9A]);
        assert_eq!(with_params_before_idr(p.clone(), &params), Some((p, false)));
        assert_eq!(with_params_before_idr(Bytes::new(), &params), None);
    }

    #[test]
    fn clock_counts_through_the_wrap_and_back_steps() {
        let mut clock = Clock::default();
        assert_eq!(clock.ticks(RtmpTimestamp::new(0)), 126_000);
        assert_eq!(clock.ticks(RtmpTimestamp::new(40)), 126_000 + 3_600);
        assert_eq!(clock.ticks(RtmpTimestamp::new(20)), 126_000 + 1_800);
        let mut clock = Clock::default();
        let before = clock.ticks(RtmpTimestamp::new(u32::MAX - 9));
        let after = clock.ticks(RtmpTimestamp::new(10));
        assert_eq!(after - before, 20 * 90);
    }
}
