//! The unit exchanged between media producers and the packager.
//!
//! Producers (the `fake://` generator, `file://` inputs, RTMP publishers, MPEG-TS pushed over
//! HTTP) emit [`AccessUnit`]s; the segmenter, the MPEG-TS muxer, the RTSP and RTMP players and
//! the archive consume them and know nothing about where they came from.

use std::time::Duration;

use bytes::Bytes;

/// The MPEG system clock used for every timestamp here: 90 kHz (ISO/IEC 13818-1 §2.4.3.7).
pub const CLOCK_HZ: u64 = 90_000;

/// Which elementary stream an access unit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// H.264 video.
    Video,
    /// AAC audio.
    Audio,
}

/// One decodable unit of one track: a video picture or an audio frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub track: Track,
    /// Presentation time in [`CLOCK_HZ`] ticks. Not wrapped: producers count up forever and the
    /// muxer reduces to 33 bits, so arithmetic on the way never meets the wrap.
    pub pts: u64,
    /// Decoding time in [`CLOCK_HZ`] ticks; equal to `pts` for streams without reordering.
    pub dts: u64,
    /// A random access point: an IDR picture (video) — decoding may start here.
    pub keyframe: bool,
    /// Video: one access unit as an H.264 Annex B byte stream (ISO/IEC 14496-10 Annex B), with
    /// SPS/PPS in front of every IDR so that any keyframe is a valid starting point.
    /// Audio: one raw AAC frame without ADTS header (the muxer adds it from the track config).
    pub data: Bytes,
}

/// `ticks` of [`CLOCK_HZ`] as a [`Duration`], rounded up to whole nanoseconds so that
/// [`duration_to_ticks`] gives back the same ticks.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    let nanos = (u128::from(ticks) * 1_000_000_000).div_ceil(u128::from(CLOCK_HZ));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A [`Duration`] in whole [`CLOCK_HZ`] ticks, rounded down.
pub fn duration_to_ticks(duration: Duration) -> u64 {
    let ticks = duration.as_nanos() * u128::from(CLOCK_HZ) / 1_000_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_durations_round_trip_on_whole_ticks() {
        assert_eq!(ticks_to_duration(90_000), Duration::from_secs(1));
        assert_eq!(duration_to_ticks(Duration::from_millis(100)), 9_000);
        assert_eq!(duration_to_ticks(ticks_to_duration(1_920)), 1_920);
        // Far beyond the 33-bit wrap: no overflow on the way.
        let day_ticks = 86_400 * CLOCK_HZ * 365;
        assert_eq!(duration_to_ticks(ticks_to_duration(day_ticks)), day_ticks);
    }
}
