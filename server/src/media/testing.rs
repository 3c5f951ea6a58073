//! Test media made in-process: small H.264 pictures of any size (less-avc, I_PCM) and clips of
//! them with silent AAC, as access units or as an MPEG-TS file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use less_avc::BitDepth;
use less_avc::LessEncoder;
use less_avc::ycbcr_image::{DataPlane, Planes, YCbCrImage};

use super::aac::{self, AacConfig};
use super::access_unit::{AccessUnit, CLOCK_HZ, Track};
use super::avc::AvcParams;
use super::mp4::FileUnits;
use super::segmenter::mux_segment;
use super::ts::TsMuxer;
use super::{Codecs, fake};

/// One picture (SPS, PPS, IDR slice; Annex B) of `width`×`height` (multiples of 16) in one grey.
pub fn picture(width: u32, height: u32, luma: u8) -> Bytes {
    let (w, h) = (width as usize, height as usize);
    let y = vec![luma; w * h];
    let c = vec![128u8; w * h / 4];
    let plane = |data, stride| DataPlane {
        data,
        stride,
        bit_depth: BitDepth::Depth8,
    };
    let image = YCbCrImage {
        planes: Planes::YCbCr((plane(&y, w), plane(&c, w / 2), plane(&c, w / 2))),
        width,
        height,
    };
    let (initial, _) = LessEncoder::new(&image).expect("a plain 8-bit 4:2:0 picture encodes");
    Bytes::from(
        [
            initial.sps.to_annex_b_data(),
            initial.pps.to_annex_b_data(),
            initial.frame.to_annex_b_data(),
        ]
        .concat(),
    )
}

/// A clip: `frames` pictures at `fps`, flagged keyframe every `gop` frames, and silent AAC-LC
/// 48 kHz mono over the same time; timestamps from 0.
pub fn clip(width: u32, height: u32, fps: u64, frames: u64, gop: u64) -> FileUnits {
    let frame_ticks = CLOCK_HZ / fps;
    let frame = picture(width, height, 100);
    let mut units: Vec<AccessUnit> = (0..frames)
        .map(|n| AccessUnit {
            track: Track::Video,
            pts: n * frame_ticks,
            dts: n * frame_ticks,
            keyframe: n % gop == 0,
            data: frame.clone(),
        })
        .collect();
    let end = frames * frame_ticks;
    let audio = (0..)
        .map(|n| n * fake::AUDIO_FRAME_TICKS)
        .take_while(|&t| t < end)
        .map(|t| AccessUnit {
            track: Track::Audio,
            pts: t,
            dts: t,
            keyframe: true,
            data: Bytes::from_static(&aac::SILENT_MONO_FRAME),
        });
    units.extend(audio);
    units.sort_by_key(|u| (u.dts, u.track == Track::Audio));
    FileUnits {
        codecs: Codecs {
            video: AvcParams::from_annex_b(&frame),
            audio: Some(AacConfig::LC_48K_MONO),
        },
        units,
        presentation_start: 0,
        end,
    }
}

/// The clip as an MPEG-TS file, starting at 1.4 s like ffmpeg's.
pub fn clip_ts(width: u32, height: u32, fps: u64, frames: u64) -> Vec<u8> {
    let clip = clip(width, height, fps, frames, 1);
    let units: Vec<AccessUnit> = clip
        .units
        .into_iter()
        .map(|u| AccessUnit {
            pts: u.pts + fake::PTS_OFFSET,
            dts: u.dts + fake::PTS_OFFSET,
            ..u
        })
        .collect();
    let mut muxer = TsMuxer::new(Some(AacConfig::LC_48K_MONO));
    mux_segment(&mut muxer, &units).to_vec()
}

/// A directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "usher-media-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
