//! The `fake://` producer: access units of a synthetic stream, as a pure function of stream time.
//!
//! Because any stretch of the stream can be produced on demand, a fake source needs no task and
//! costs nothing while nobody watches (see [`super::pull`]).

mod picture;

use std::ops::Range;

use bytes::Bytes;

use super::Codecs;
use super::aac::{self, AacConfig};
use super::access_unit::{AccessUnit, CLOCK_HZ, Track};
use super::avc::AvcParams;

pub use picture::{HEIGHT, WIDTH};

/// Video frames per second. Low on purpose: I_PCM pictures are raw, and the conformance suite
/// runs many streams at once on two cores.
pub const FRAME_RATE: u64 = 10;
/// One video frame in 90 kHz ticks.
pub const FRAME_TICKS: u64 = CLOCK_HZ / FRAME_RATE;

/// The audio track: AAC-LC, 48 kHz, mono, silence.
pub const AUDIO: AacConfig = AacConfig::LC_48K_MONO;
const AUDIO_SAMPLE_RATE: u64 = 48_000;
/// One AAC frame (1024 samples at 48 kHz) in 90 kHz ticks: exactly 1920.
pub const AUDIO_FRAME_TICKS: u64 = aac::SAMPLES_PER_FRAME * CLOCK_HZ / AUDIO_SAMPLE_RATE;

/// Stream time 0 is presented at this timestamp. ffmpeg's muxer starts at 1.4 s too; it keeps
/// the first PCR (100 ms before the first DTS) clear of zero.
pub const PTS_OFFSET: u64 = 126_000;

/// Every access unit whose timestamp (stream time, 90 kHz) falls in `range`, in decoding order;
/// video first where video and audio share a timestamp, so a range starting on a frame
/// boundary starts with a keyframe.
pub fn access_units(range: Range<u64>) -> Vec<AccessUnit> {
    let video = frames_in(&range, FRAME_TICKS).map(|n| {
        let time = n * FRAME_TICKS + PTS_OFFSET;
        // less-avc writes only IDR pictures.
        AccessUnit {
            track: Track::Video,
            pts: time,
            dts: time,
            keyframe: true,
            data: picture::frame(n),
        }
    });
    let silence = Bytes::from_static(&aac::SILENT_MONO_FRAME);
    let audio = frames_in(&range, AUDIO_FRAME_TICKS).map(move |n| {
        let time = n * AUDIO_FRAME_TICKS + PTS_OFFSET;
        AccessUnit {
            track: Track::Audio,
            pts: time,
            dts: time,
            keyframe: true,
            data: silence.clone(),
        }
    });
    let mut units: Vec<AccessUnit> = video.chain(audio).collect();
    // Stable: equal timestamps keep video before audio.
    units.sort_by_key(|au| au.dts);
    units
}

/// The parameter sets of the pre-encoded picture and the audio configuration.
pub fn codecs() -> Codecs {
    Codecs {
        video: AvcParams::from_annex_b(&picture::frame(0)),
        audio: Some(AUDIO),
    }
}

/// Indices of the frames of length `frame_ticks` that start inside `range`.
fn frames_in(range: &Range<u64>, frame_ticks: u64) -> Range<u64> {
    range.start.div_ceil(frame_ticks)..range.end.div_ceil(frame_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_holds_ten_pictures_and_about_47_audio_frames() {
        let units = access_units(0..CLOCK_HZ);
        let video = units.iter().filter(|au| au.track == Track::Video).count();
        let audio = units.iter().filter(|au| au.track == Track::Audio).count();
        assert_eq!(video, 10);
        // 46.875 frames a second: 47 start in the first second (at 0, 1920, ... 88320).
        assert_eq!(audio, 47);
        assert_eq!(units[0].track, Track::Video);
        assert!(units[0].keyframe);
        assert_eq!(units[0].pts, PTS_OFFSET);
    }

    #[test]
    fn codecs_are_those_of_the_picture() {
        let codecs = codecs();
        let video = codecs.video.expect("every frame carries SPS and PPS");
        assert_eq!(video.dimensions(), Some((WIDTH, HEIGHT)));
        let unit = picture::frame(5);
        assert!(
            unit.starts_with(&video.to_annex_b()),
            "each frame starts with these parameter sets"
        );
        assert_eq!(codecs.audio, Some(AacConfig::LC_48K_MONO));
    }

    #[test]
    fn adjacent_ranges_tile_the_stream() {
        let whole = access_units(0..3 * CLOCK_HZ);
        let pieces: Vec<_> = (0..3)
            .flat_map(|s| access_units(s * CLOCK_HZ..(s + 1) * CLOCK_HZ))
            .collect();
        assert_eq!(whole, pieces);
        assert!(whole.windows(2).all(|w| w[0].dts <= w[1].dts));
    }
}
