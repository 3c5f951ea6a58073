//! The test pattern: a bar sweeping across a picture of any (even) size, H.264 encoded once per
//! size with less-avc, and silent AAC-LC beside it.
//!
//! It is the `fake://` source's picture (64x48, see `fake`) and the media the conformance suite
//! makes itself: what its RTMP and HTTP MPEG-TS publishers send, and the clip it puts in a
//! target's media folder (160x120). One encoder, so that a picture size seen by a player says
//! which source it came from and nothing else.
//!
//! less-avc writes every macroblock as I_PCM (raw samples): encoding costs a copy of the frame,
//! every picture is an IDR picture (a keyframe), and a frame is as large as the raw picture
//! (about 31 KB at 160x120), so patterns are small and slow (10 frames a second in clips).

use std::ops::Range;

use bytes::Bytes;
use less_avc::BitDepth;
use less_avc::LessEncoder;
use less_avc::ycbcr_image::{DataPlane, Planes, YCbCrImage};

use super::Codecs;
use super::aac::{self, AacConfig};
use super::access_unit::{AccessUnit, CLOCK_HZ, Track};
use super::avc::AvcParams;

/// The audio beside the pattern: AAC-LC, 48 kHz, mono, silence.
pub const AUDIO: AacConfig = AacConfig::LC_48K_MONO;
/// One AAC frame (1024 samples at 48 kHz) in 90 kHz ticks: exactly 1920.
pub const AUDIO_FRAME_TICKS: u64 = aac::SAMPLES_PER_FRAME * CLOCK_HZ / 48_000;

/// The largest side a pattern may have (a 4K-wide frame is 12 MB of I_PCM already).
pub const MAX_SIDE: u32 = 4096;

const BAR_WIDTH: usize = 8;
const BAR_STEP: usize = 4;
/// Luma and chroma values. None is 0, so two zero bytes never meet in the slice data and
/// less-avc has no emulation prevention bytes to insert: every frame of a size has one length.
const BACKGROUND_Y: u8 = 60;
const BAR_Y: u8 = 220;
const NEUTRAL_C: u8 = 128;
const BAR_COLOURS: [(u8, u8); 2] = [(90, 240), (240, 110)];

/// Why a pattern of some size cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a test pattern of {0}x{1} cannot be made: sides must be even and between 16 and {MAX_SIDE}")]
    Size(u32, u32),
    #[error("encoding a {0}x{1} test pattern failed: {2}")]
    Encoder(u32, u32, String),
}

/// One cycle of the pattern at one size: two sweeps of the bar, the second in another colour.
/// Frame `n` of the endless sequence is cycle frame `n % len`.
#[derive(Debug, Clone)]
pub struct Pattern {
    width: u32,
    height: u32,
    /// Annex B access units: SPS, PPS, IDR slice each, so any frame is a place to start.
    frames: Vec<Bytes>,
    params: AvcParams,
}

impl Pattern {
    /// Encodes the cycle of a `width`×`height` pattern. Sides need not be multiples of 16: the
    /// SPS crops the padding away.
    pub fn new(width: u32, height: u32) -> Result<Pattern, PatternError> {
        let side_ok = |s: u32| (16..=MAX_SIDE).contains(&s) && s.is_multiple_of(2);
        if !side_ok(width) || !side_ok(height) {
            return Err(PatternError::Size(width, height));
        }
        let encoder_error = |e: less_avc::Error| PatternError::Encoder(width, height, e.to_string());
        let cycle = 2 * (width as usize).div_ceil(BAR_STEP);
        let mut frames = Vec::with_capacity(cycle);
        let mut encoder: Option<(LessEncoder, Vec<u8>)> = None;
        for index in 0..cycle {
            let planes = draw(width as usize, height as usize, index);
            let (padded_w, _) = padded(width as usize, height as usize);
            let plane = |data, stride| DataPlane {
                data,
                stride,
                bit_depth: BitDepth::Depth8,
            };
            let image = YCbCrImage {
                planes: Planes::YCbCr((
                    plane(&planes.0, padded_w),
                    plane(&planes.1, padded_w / 2),
                    plane(&planes.2, padded_w / 2),
                )),
                width,
                height,
            };
            let (slice, parameter_sets) = match encoder.as_mut() {
                Some((encoder, parameter_sets)) => {
                    (encoder.encode(&image).map_err(encoder_error)?, parameter_sets.clone())
                }
                None => {
                    let (initial, new_encoder) = LessEncoder::new(&image).map_err(encoder_error)?;
                    let parameter_sets = [initial.sps.to_annex_b_data(), initial.pps.to_annex_b_data()].concat();
                    encoder = Some((new_encoder, parameter_sets.clone()));
                    (initial.frame, parameter_sets)
                }
            };
            let mut access_unit = parameter_sets;
            access_unit.extend_from_slice(&slice.to_annex_b_data());
            frames.push(Bytes::from(access_unit));
        }
        let params = AvcParams::from_annex_b(&frames[0])
            .ok_or_else(|| PatternError::Encoder(width, height, "no parameter sets in the first frame".into()))?;
        Ok(Pattern {
            width,
            height,
            frames,
            params,
        })
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Frames in one cycle.
    pub fn cycle_len(&self) -> u64 {
        self.frames.len() as u64
    }

    /// Frame `n` of the endless sequence: one H.264 access unit (SPS, PPS, IDR slice; Annex B).
    pub fn frame(&self, n: u64) -> Bytes {
        // In range: the remainder is below the cycle's length, which is never 0.
        self.frames[(n % self.cycle_len()) as usize].clone()
    }

    /// The parameter sets every frame starts with.
    pub fn params(&self) -> &AvcParams {
        &self.params
    }

    /// The codecs of [`units`](Self::units): this pattern's H.264 and [`AUDIO`].
    pub fn codecs(&self) -> Codecs {
        Codecs {
            video: Some(self.params.clone()),
            audio: Some(AUDIO),
        }
    }

    /// Every access unit whose timestamp (90 kHz, frame 0 at 0) falls in `range`, at `fps`
    /// frames a second with silent audio beside them, in decoding order; video first where
    /// video and audio share a timestamp, so a range that starts on a frame starts with a
    /// keyframe. `fps` must divide 90 000 for frames to keep exact timestamps.
    pub fn units(&self, fps: u64, range: Range<u64>) -> Vec<AccessUnit> {
        let frame_ticks = CLOCK_HZ / fps.clamp(1, CLOCK_HZ);
        let video = frames_in(&range, frame_ticks).map(|n| AccessUnit {
            track: Track::Video,
            pts: n * frame_ticks,
            dts: n * frame_ticks,
            keyframe: true,
            data: self.frame(n),
        });
        let silence = Bytes::from_static(&aac::SILENT_MONO_FRAME);
        let audio = frames_in(&range, AUDIO_FRAME_TICKS).map(move |n| AccessUnit {
            track: Track::Audio,
            pts: n * AUDIO_FRAME_TICKS,
            dts: n * AUDIO_FRAME_TICKS,
            keyframe: true,
            data: silence.clone(),
        });
        let mut units: Vec<AccessUnit> = video.chain(audio).collect();
        // Stable: equal timestamps keep video before audio.
        units.sort_by_key(|au| au.dts);
        units
    }
}

/// Indices of the frames of length `frame_ticks` that start inside `range`.
fn frames_in(range: &Range<u64>, frame_ticks: u64) -> Range<u64> {
    range.start.div_ceil(frame_ticks)..range.end.div_ceil(frame_ticks)
}

/// The picture padded to whole macroblocks: less-avc reads the padding from the planes.
fn padded(width: usize, height: usize) -> (usize, usize) {
    (width.div_ceil(16) * 16, height.div_ceil(16) * 16)
}

/// The planes (padded to whole macroblocks) of cycle frame `index`: a vertical bar `BAR_STEP`
/// pixels further right each frame.
fn draw(width: usize, height: usize, index: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (padded_w, padded_h) = padded(width, height);
    let sweep_frames = width.div_ceil(BAR_STEP);
    let left = (index % sweep_frames) * BAR_STEP;
    let (bar_cb, bar_cr) = BAR_COLOURS[(index / sweep_frames) % BAR_COLOURS.len()];
    let in_bar = |x: usize| (left..left + BAR_WIDTH).contains(&x);

    let y = (0..padded_h)
        .flat_map(|_| (0..padded_w).map(|x| if in_bar(x) { BAR_Y } else { BACKGROUND_Y }))
        .collect();
    let chroma = |bar| -> Vec<u8> {
        (0..padded_h / 2)
            .flat_map(|_| (0..padded_w / 2).map(move |x| if in_bar(2 * x) { bar } else { NEUTRAL_C }))
            .collect()
    };
    (y, chroma(bar_cb), chroma(bar_cr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264::{nal_type, nal_unit_type, nal_units};

    #[test]
    fn any_even_size_encodes_and_the_sps_says_that_size() {
        for (w, h) in [(64, 48), (160, 120), (16, 16), (18, 22), (320, 180)] {
            let pattern = Pattern::new(w, h).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(pattern.params().dimensions(), Some((w, h)), "{w}x{h}");
            for n in 0..pattern.cycle_len() {
                let types: Vec<_> = nal_units(&pattern.frame(n)).filter_map(nal_unit_type).collect();
                assert_eq!(types, vec![nal_type::SPS, nal_type::PPS, nal_type::IDR_SLICE]);
            }
        }
    }

    #[test]
    fn odd_tiny_and_huge_sizes_are_errors_naming_the_size() {
        for (w, h) in [(161, 120), (160, 0), (8, 8), (MAX_SIDE + 2, 16)] {
            let e = Pattern::new(w, h).expect_err("refused");
            assert!(e.to_string().contains(&format!("{w}x{h}")), "{e}");
        }
    }

    #[test]
    fn the_picture_moves_and_the_cycle_repeats() {
        let p = Pattern::new(160, 120).unwrap();
        assert_eq!(p.cycle_len(), 80);
        assert_ne!(p.frame(0), p.frame(1));
        assert_ne!(p.frame(0), p.frame(40), "the second sweep has another colour");
        assert_eq!(p.frame(3), p.frame(83));
    }

    #[test]
    fn units_tile_time_with_video_first_and_silent_audio() {
        let p = Pattern::new(32, 32).unwrap();
        let whole = p.units(10, 0..2 * CLOCK_HZ);
        let halves = [p.units(10, 0..CLOCK_HZ), p.units(10, CLOCK_HZ..2 * CLOCK_HZ)].concat();
        assert_eq!(whole, halves);
        assert_eq!(whole.iter().filter(|u| u.track == Track::Video).count(), 20);
        // 46.875 AAC frames a second: 94 start in the first two seconds.
        assert_eq!(whole.iter().filter(|u| u.track == Track::Audio).count(), 94);
        assert_eq!(whole[0].track, Track::Video);
        assert!(whole.iter().all(|u| u.keyframe));
        assert!(whole.windows(2).all(|w| w[0].dts <= w[1].dts));
    }
}
