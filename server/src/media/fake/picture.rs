//! The fake source's picture: a bar sweeping across a small frame, pre-encoded once.
//!
//! less-avc writes every macroblock as I_PCM (raw samples), so encoding costs a copy of the
//! frame but the output is as large as the raw picture. Frames are therefore tiny, and one cycle
//! is encoded per process (a [`OnceLock`]) and then reused with new timestamps by every stream.

use std::sync::OnceLock;

use bytes::Bytes;
use less_avc::BitDepth;
use less_avc::LessEncoder;
use less_avc::ycbcr_image::{DataPlane, Planes, YCbCrImage};

/// Picture size: 4x3 macroblocks, so no cropping is needed (less-avc pads to 16).
pub const WIDTH: u32 = 64;
pub const HEIGHT: u32 = 48;

/// Frames in one cycle: two sweeps of the bar, the second in another colour.
pub const CYCLE_FRAMES: u64 = 32;

const BAR_WIDTH: usize = 8;
const BAR_STEP: usize = 4;
/// Luma and chroma values. None is 0, so two zero bytes never meet in the slice data and less-avc
/// has no emulation prevention bytes to insert: each frame has the same size.
const BACKGROUND_Y: u8 = 60;
const BAR_Y: u8 = 220;
const NEUTRAL_C: u8 = 128;
const BAR_COLOURS: [(u8, u8); 2] = [(90, 240), (240, 110)];

static CYCLE: OnceLock<Vec<Bytes>> = OnceLock::new();

/// Frame `n` of the endless sequence: one H.264 access unit (SPS, PPS, IDR slice; Annex B).
pub fn frame(n: u64) -> Bytes {
    let cycle = CYCLE
        .get_or_init(|| encode_cycle().expect("fixed 64x48 8-bit 4:2:0 frames are a shape less-avc supports (tested)"));
    // In range: the cycle has CYCLE_FRAMES entries.
    cycle[(n % CYCLE_FRAMES) as usize].clone()
}

fn encode_cycle() -> Result<Vec<Bytes>, less_avc::Error> {
    let mut frames = Vec::new();
    let mut encoder: Option<(LessEncoder, Vec<u8>)> = None;
    for index in 0..CYCLE_FRAMES as usize {
        let (y, cb, cr) = draw(index);
        let plane = |data, stride| DataPlane {
            data,
            stride,
            bit_depth: BitDepth::Depth8,
        };
        let image = YCbCrImage {
            planes: Planes::YCbCr((
                plane(&y, WIDTH as usize),
                plane(&cb, WIDTH as usize / 2),
                plane(&cr, WIDTH as usize / 2),
            )),
            width: WIDTH,
            height: HEIGHT,
        };
        let (slice, parameter_sets) = match encoder.as_mut() {
            Some((encoder, parameter_sets)) => (encoder.encode(&image)?, parameter_sets.clone()),
            None => {
                let (initial, new_encoder) = LessEncoder::new(&image)?;
                let parameter_sets = [initial.sps.to_annex_b_data(), initial.pps.to_annex_b_data()].concat();
                encoder = Some((new_encoder, parameter_sets.clone()));
                (initial.frame, parameter_sets)
            }
        };
        // SPS and PPS before every picture: any frame is a place to start decoding.
        let mut access_unit = parameter_sets;
        access_unit.extend_from_slice(&slice.to_annex_b_data());
        frames.push(Bytes::from(access_unit));
    }
    Ok(frames)
}

/// The planes of cycle frame `index`: a vertical bar `BAR_STEP` pixels further right each frame.
fn draw(index: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (width, height) = (WIDTH as usize, HEIGHT as usize);
    let sweep_frames = width / BAR_STEP;
    let left = (index % sweep_frames) * BAR_STEP;
    let (bar_cb, bar_cr) = BAR_COLOURS[(index / sweep_frames) % BAR_COLOURS.len()];
    let in_bar = |x: usize| (left..left + BAR_WIDTH).contains(&x);

    let y = (0..height)
        .flat_map(|_| (0..width).map(|x| if in_bar(x) { BAR_Y } else { BACKGROUND_Y }))
        .collect();
    let chroma = |bar| -> Vec<u8> {
        (0..height / 2)
            .flat_map(|_| (0..width / 2).map(move |x| if in_bar(2 * x) { bar } else { NEUTRAL_C }))
            .collect()
    };
    (y, chroma(bar_cb), chroma(bar_cr))
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
