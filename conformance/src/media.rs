//! The suite's test media, made in-process from the reference server's own parts, so a run needs
//! no program outside it:
//!
//! * the picture: the test pattern (`usher_server::media::pattern`: a bar sweeping across the
//!   frame, H.264 by less-avc, every frame an IDR picture) with silent AAC-LC beside it, at
//!   [`FRAME_RATE`];
//! * MPEG-TS: the server's muxer (`usher_server::media::ts::TsMuxer`), for the HTTP MPEG-TS
//!   publisher's upload and `.ts` clips;
//! * MP4: the server's progressive writer (`usher_server::dvr::mp4::progressive`), for the clip
//!   a case plays from a target's media folder (`file://`);
//! * RTMP: the server's FLV tag builders (`usher_server::rtmp::flv`), sent live by the suite's
//!   RTMP publisher ([`push_rtmp`]).
//!
//! The picture size tells sources apart: the suite's clip and publishers are 160x120 by
//! default, the `fake://` source of the reference server 64x48.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use usher_server::dvr::mp4;
use usher_server::media::avc;
use usher_server::media::pattern::{self, Pattern};
use usher_server::media::ts::TsMuxer;
use usher_server::media::{AccessUnit, CLOCK_HZ, Track};
use usher_server::rtmp::flv;

use crate::clients::rtmp::RtmpPublisher;

/// A picture size, `(width, height)`.
pub type Size = (u32, u32);

/// The size of the suite's publishers' picture.
pub const PUBLISH_SIZE: Size = (160, 120);

/// Frames a second of everything made here. Low on purpose: I_PCM frames are raw pictures
/// (about 31 KB at 160x120) and a run has many streams going at once on few cores. Every frame
/// is a keyframe.
pub const FRAME_RATE: u64 = 10;

/// Where the timestamps of a TS clip (and of the suite's HTTP MPEG-TS source) start: 1.4 s,
/// like ffmpeg's muxer, so the first PCR (100 ms before the first DTS) stays clear of zero.
pub(crate) const TS_START: u64 = 126_000;

/// The pattern at `size`, encoded once per process and size.
pub fn pattern(size: Size) -> Result<Arc<Pattern>, String> {
    static MADE: Mutex<Option<HashMap<Size, Arc<Pattern>>>> = Mutex::new(None);
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let made = made.get_or_insert_with(HashMap::new);
    if let Some(p) = made.get(&size) {
        return Ok(p.clone());
    }
    let p = Arc::new(Pattern::new(size.0, size.1).map_err(|e| e.to_string())?);
    made.insert(size, p.clone());
    Ok(p)
}

/// `seconds` of the pattern at `size` with silent audio, timestamps (90 kHz) from 0.
pub fn clip_units(size: Size, seconds: u32) -> Result<(Arc<Pattern>, Vec<AccessUnit>), String> {
    let p = pattern(size)?;
    let units = p.units(FRAME_RATE, 0..u64::from(seconds) * CLOCK_HZ);
    Ok((p, units))
}

/// A progressive MP4 clip (`ftyp`, `moov`, `mdat`): `seconds` of the pattern at `size`.
pub fn mp4_clip(size: Size, seconds: u32) -> Result<Bytes, String> {
    let (p, units) = clip_units(size, seconds)?;
    let codecs = p.codecs();
    mp4::progressive(codecs.video, codecs.audio, &units)
        .ok_or_else(|| format!("no MP4 clip of {seconds} s: nothing to write"))
}

/// An MPEG-TS clip: `seconds` of the pattern at `size`, PAT and PMT in front of every second.
pub fn ts_clip(size: Size, seconds: u32) -> Result<Bytes, String> {
    let (_, units) = clip_units(size, seconds)?;
    let mut muxer = TsMuxer::new(Some(pattern::AUDIO));
    let mut out = Vec::new();
    for u in &units {
        if u.track == Track::Video && u.dts.is_multiple_of(CLOCK_HZ) {
            muxer.write_tables(&mut out);
        }
        let shifted = AccessUnit {
            pts: u.pts + TS_START,
            dts: u.dts + TS_START,
            ..u.clone()
        };
        muxer
            .write_access_unit(&shifted, &mut out)
            .map_err(|e| format!("muxing the TS clip: {e}"))?;
    }
    Ok(Bytes::from(out))
}

/// Writes a clip of `seconds` at `size` to `path`: MPEG-TS when the name ends in `.ts`, MP4
/// otherwise. The file appears whole or not at all (written aside, then renamed).
pub async fn write_clip(path: &Path, size: Size, seconds: u32) -> Result<(), String> {
    let is_ts = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ts"));
    let bytes = if is_ts {
        ts_clip(size, seconds)?
    } else {
        mp4_clip(size, seconds)?
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    tokio::fs::write(&partial, &bytes)
        .await
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|e| format!("cannot move {} to {}: {e}", partial.display(), path.display()))
}

/// 90 kHz ticks in RTMP milliseconds.
fn millis(ticks: u64) -> u32 {
    u32::try_from(ticks * 1000 / CLOCK_HZ).unwrap_or(u32::MAX)
}

/// Publishes `seconds` of the pattern at `size` live (at its own pace, like `ffmpeg -re`) over
/// an accepted RTMP publication: the AVC and AAC sequence headers, then each frame when it is
/// due. Ends with the publication (`FCUnpublish`, `deleteStream`), or early with the error of
/// the first write that fails (the server closed the connection).
pub async fn push_rtmp(mut publisher: RtmpPublisher, size: Size, seconds: u32) -> Result<(), String> {
    let (p, units) = clip_units(size, seconds)?;
    publisher.send_video(flv::avc_sequence_header(p.params()), 0).await?;
    let asc = pattern::AUDIO.audio_specific_config();
    publisher.send_audio(flv::aac_sequence_header(&asc), 0).await?;
    let started = tokio::time::Instant::now();
    for u in &units {
        tokio::time::sleep_until(started + Duration::from_millis(u64::from(millis(u.dts)))).await;
        match u.track {
            Track::Video => {
                let avcc = avc::annex_b_to_avcc(&avc::strip_parameter_sets(&u.data));
                let composition = i32::try_from(millis(u.pts) - millis(u.dts)).unwrap_or(0);
                publisher
                    .send_video(flv::avc_nalu_tag(u.keyframe, composition, &avcc), millis(u.dts))
                    .await?;
            }
            Track::Audio => publisher.send_audio(flv::aac_raw_tag(&u.data), millis(u.dts)).await?,
        }
    }
    publisher.finish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use usher_server::media::{AvcParams, TsIngest};

    use super::*;

    #[test]
    fn the_mp4_clip_reads_back_through_the_servers_reader_at_its_size() {
        let file = mp4_clip((160, 120), 4).unwrap();
        let read = usher_server::media::mp4::read(&file).unwrap_or_else(|e| panic!("{e}"));
        let video = read.codecs.video.expect("a video track");
        assert_eq!(video.dimensions(), Some((160, 120)));
        assert!(read.codecs.audio.is_some(), "an audio track");
        assert_eq!(read.end, 4 * CLOCK_HZ);
        let frames = read.units.iter().filter(|u| u.track == Track::Video).count();
        assert_eq!(frames as u64, 4 * FRAME_RATE);
    }

    #[test]
    fn the_ts_clip_demuxes_to_keyframes_of_its_size_and_audio() {
        let file = ts_clip((160, 120), 3).unwrap();
        assert_eq!(file.len() % 188, 0);
        let mut ingest = TsIngest::new();
        let mut units = ingest.push(&file).expect("a readable TS");
        units.extend(ingest.finish());
        let video: Vec<_> = units.iter().filter(|u| u.track == Track::Video).collect();
        assert_eq!(video.len() as u64, 3 * FRAME_RATE);
        assert!(video.iter().all(|u| u.keyframe));
        assert_eq!(
            AvcParams::from_annex_b(&video[0].data).and_then(|p| p.dimensions()),
            Some((160, 120))
        );
        assert!(units.iter().any(|u| u.track == Track::Audio));
        assert_eq!(video[0].dts, TS_START);
    }

    #[test]
    fn a_size_the_pattern_cannot_have_is_an_error_naming_it() {
        let e = mp4_clip((161, 120), 1).expect_err("odd width");
        assert!(e.contains("161x120"), "{e}");
    }

    #[tokio::test]
    async fn clips_are_written_whole_by_extension() {
        let dir = std::env::temp_dir().join(format!("usher-media-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, first_box) in [("c.mp4", Some(&b"ftyp"[..])), ("c.ts", None)] {
            let path = dir.join(name);
            write_clip(&path, (64, 48), 1).await.unwrap();
            let bytes = std::fs::read(&path).unwrap();
            match first_box {
                Some(kind) => assert_eq!(&bytes[4..8], kind, "{name}"),
                None => assert_eq!(bytes[0], 0x47, "{name}: a TS sync byte"),
            }
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no partial file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
