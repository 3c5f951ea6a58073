//! The fake source's picture: the test pattern (see [`crate::media::pattern`]) at 64x48,
//! encoded once per process (a [`OnceLock`]) and then reused with new timestamps by every stream.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::media::pattern::Pattern;

/// Picture size: 4x3 macroblocks, so no cropping is needed.
pub const WIDTH: u32 = 64;
pub const HEIGHT: u32 = 48;

/// Frames in one cycle: two sweeps of the bar, the second in another colour.
#[cfg(test)]
pub const CYCLE_FRAMES: u64 = 32;

static PATTERN: OnceLock<Pattern> = OnceLock::new();

/// Frame `n` of the endless sequence: one H.264 access unit (SPS, PPS, IDR slice; Annex B).
pub fn frame(n: u64) -> Bytes {
    PATTERN
        .get_or_init(|| Pattern::new(WIDTH, HEIGHT).expect("64x48 is a size the pattern supports (tested)"))
        .frame(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264::{nal_type, nal_unit_type, nal_units};

    #[test]
    fn every_frame_is_parameter_sets_then_an_idr_slice() {
        for n in 0..CYCLE_FRAMES {
            let types: Vec<_> = nal_units(&frame(n)).filter_map(nal_unit_type).collect();
            assert_eq!(types, vec![nal_type::SPS, nal_type::PPS, nal_type::IDR_SLICE]);
        }
    }

    #[test]
    fn the_cycle_is_the_patterns_at_this_size() {
        let pattern = Pattern::new(WIDTH, HEIGHT).unwrap();
        assert_eq!(pattern.cycle_len(), CYCLE_FRAMES);
    }

    #[test]
    fn the_picture_changes_and_the_cycle_repeats() {
        assert_ne!(frame(0), frame(1));
        assert_ne!(frame(0), frame(CYCLE_FRAMES / 2), "second sweep has another colour");
        assert_eq!(frame(3), frame(3 + CYCLE_FRAMES));
    }

    #[test]
    fn frames_are_tiny_and_equal_in_size() {
        let size = frame(0).len();
        // 12 macroblocks of 384 PCM bytes plus headers.
        assert!((4_608..5_000).contains(&size), "frame is {size} bytes");
        assert!((0..CYCLE_FRAMES).all(|n| frame(n).len() == size));
    }
}
