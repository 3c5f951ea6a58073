//! `file://` inputs: a media file under the server's media root, read once into memory, cut at
//! its keyframes and played as a live stream in a loop.
//!
//! Each pass over the file continues the timeline of the one before: pass `p` is the file's
//! access units shifted by `p` file lengths, so timestamps only go forward and every segment
//! starts with a keyframe (see [`Schedule::Looped`]). The same cut serves VOD playback, where the
//! file plays once (see `vod`).
//!
//! A file is MP4 (see [`mp4`](super::mp4)) or MPEG-TS (read with [`TsIngest`]), told apart by
//! its first bytes. Paths never leave the media root: see [`MediaRoot`].

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::access_unit::{AccessUnit, Track, duration_to_ticks};
use super::avc::AvcParams;
use super::h264::{self, nal_type};
use super::ts::{PACKET_SIZE, SYNC_BYTE};
use super::window::Schedule;
use super::{Codecs, TsIngest, fake, mp4};

/// Files larger than this are refused rather than read into memory: 512 MiB.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Where `file://` paths are resolved when the configuration names no `media_root`: `media`
/// under the server's working directory.
pub const DEFAULT_MEDIA_ROOT: &str = "media";

/// Why a file input cannot play. The message names the input as configured, never more of
/// the server's file system than that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input}: {reason}")]
pub struct FileError {
    /// The input as written (`file://vod/bunny.mp4`) or the VOD path requested.
    pub input: String,
    pub reason: FileProblem,
}

/// What is wrong with a file input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// Absolute, with `..`, empty, or resolving (through a symlink) outside the root.
    OutsideRoot(String),
    NotFound,
    /// The file exists but cannot be read (permissions, a directory, I/O error).
    Unreadable(String),
    TooLarge(u64),
    /// The bytes are not a playable MP4 or MPEG-TS file.
    Unparsable(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::OutsideRoot(why) => write!(f, "refused: {why}"),
            FileProblem::NotFound => f.write_str("no such file under the media root"),
            FileProblem::Unreadable(why) => write!(f, "cannot be read: {why}"),
            FileProblem::TooLarge(size) => write!(
                f,
                "the file is {size} bytes, more than the {MAX_FILE_BYTES} this server reads into memory"
            ),
            FileProblem::Unparsable(why) => write!(f, "not a playable file: {why}"),
        }
    }
}

/// The directory `file://` paths are relative to. Nothing outside it is ever opened: absolute
/// paths and `..` are refused before the file system is asked, and the resolved path (symlinks
/// followed) must still lie inside the resolved root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRoot(PathBuf);

impl Default for MediaRoot {
    fn default() -> Self {
        MediaRoot(PathBuf::from(DEFAULT_MEDIA_ROOT))
    }
}

impl MediaRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        MediaRoot(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The file a relative path names under the root. The path is taken as it is: its
    /// %-escapes were decoded once already, where it was read (a `file://` input by
    /// [`file_input_path`], a VOD request with its URL, `crate::names`). Decoding again here
    /// would let a name the backend allowed (`vods/%70remium.mp4`) open another file
    /// (`vods/premium.mp4`).
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, FileProblem> {
        if relative.is_empty() {
            return Err(FileProblem::OutsideRoot("the path is empty".into()));
        }
        if relative.contains('\0') {
            return Err(FileProblem::OutsideRoot("the path contains a NUL byte".into()));
        }
        if relative.starts_with(['/', '\\']) || relative.get(1..2) == Some(":") {
            return Err(FileProblem::OutsideRoot(
                "the path is absolute; it must be relative to the media root".into(),
            ));
        }
        if relative.split(['/', '\\']).any(|part| part == "..") {
            return Err(FileProblem::OutsideRoot(
                "the path contains '..'; it must stay under the media root".into(),
            ));
        }
        let joined = self.0.join(relative);
        if !joined.strip_prefix(&self.0).is_ok_and(|rest| {
            rest.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        }) {
            return Err(FileProblem::OutsideRoot("the path leaves the media root".into()));
        }
        let root = std::fs::canonicalize(&self.0).map_err(|e| {
            tracing::warn!(root = %self.0.display(), error = %e, "media root cannot be resolved");
            FileProblem::Unreadable("the media root does not exist or cannot be read".into())
        })?;
        let resolved = match std::fs::canonicalize(&joined) {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileProblem::NotFound),
            Err(e) => return Err(FileProblem::Unreadable(e.kind().to_string())),
        };
        if !resolved.starts_with(&root) {
            return Err(FileProblem::OutsideRoot(
                "the path resolves (through a link) outside the media root".into(),
            ));
        }
        Ok(resolved)
    }

    /// Resolves, reads and parses the file of a `file://` input.
    pub fn load(
        &self,
        input: &str,
        relative: &str,
        segment_target: std::time::Duration,
    ) -> Result<FileMedia, FileError> {
        let fail = |reason| FileError {
            input: input.to_string(),
            reason,
        };
        let path = self.resolve(relative).map_err(fail)?;
        let data = blocking(|| read_limited(&path)).map_err(fail)?;
        let units = read_units(&data).map_err(|why| fail(FileProblem::Unparsable(why)))?;
        FileMedia::new(units, duration_to_ticks(segment_target)).map_err(|why| fail(FileProblem::Unparsable(why)))
    }
}

/// The path of a `file://PATH` input (`input` with or without the scheme), its %-escapes
/// decoded: the one place an input's path is decoded before [`MediaRoot::resolve`].
pub fn file_input_path(input: &str) -> std::borrow::Cow<'_, str> {
    let raw = match input.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("file://") => &input[7..],
        _ => input,
    };
    percent_encoding::percent_decode_str(raw).decode_utf8_lossy()
}

/// Runs file I/O off the async worker when the runtime has other workers to carry on with;
/// on a current-thread runtime (tests) it simply runs.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, FileProblem> {
    let metadata = std::fs::metadata(path).map_err(|e| FileProblem::Unreadable(e.kind().to_string()))?;
    if !metadata.is_file() {
        return Err(FileProblem::Unreadable("not a regular file".into()));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(FileProblem::TooLarge(metadata.len()));
    }
    std::fs::read(path).map_err(|e| FileProblem::Unreadable(e.kind().to_string()))
}

/// Access units of an MP4 or MPEG-TS file, on a clock where the presentation starts at
/// `presentation_start`.
pub fn read_units(data: &[u8]) -> Result<mp4::FileUnits, String> {
    if data.is_empty() {
        return Err("the file is empty".into());
    }
    if mp4::looks_like_mp4(data) {
        return mp4::read(data).map_err(|e| e.to_string());
    }
    if data[0] == SYNC_BYTE && data.get(PACKET_SIZE).is_none_or(|&b| b == SYNC_BYTE) {
        return read_ts(data);
    }
    Err("neither MP4 (no ftyp/moov box at the start) nor MPEG-TS (no 0x47 sync byte every 188 bytes)".into())
}

fn read_ts(data: &[u8]) -> Result<mp4::FileUnits, String> {
    let mut ingest = TsIngest::new();
    let mut units = ingest.push(data).map_err(|e| e.to_string())?;
    units.extend(ingest.finish());
    let mut codecs = ingest.codecs().clone();
    if codecs.video.is_none() {
        codecs.video = units
            .iter()
            .filter(|u| u.track == Track::Video)
            .find_map(|u| AvcParams::from_annex_b(&u.data));
    }
    units.sort_by_key(|u| (u.dts, u.track == Track::Audio));
    let Some(first) = units.iter().map(|u| u.dts.min(u.pts)).min() else {
        return Err("MPEG-TS without H.264 or AAC access units".into());
    };
    // The end of the main track: its last dts plus its last step.
    let main = if units.iter().any(|u| u.track == Track::Video) {
        Track::Video
    } else {
        Track::Audio
    };
    let dts: Vec<u64> = units.iter().filter(|u| u.track == main).map(|u| u.dts).collect();
    let step = match dts.as_slice() {
        [.., a, b] => b - a,
        _ => 1,
    };
    let end = dts.last().map_or(0, |last| last + step.max(1)) - first;
    for unit in &mut units {
        unit.pts -= first;
        unit.dts -= first;
        if unit.track == Track::Audio {
            unit.keyframe = true;
        }
    }
    Ok(mp4::FileUnits {
        codecs,
        units,
        presentation_start: 0,
        end,
    })
}

/// A file cut into segments at its keyframes, ready to be played in a loop (live) or once (VOD).
#[derive(Debug)]
pub struct FileMedia {
    codecs: Codecs,
    /// The units of each segment of one pass, on stream time (0 = the first keyframe), in
    /// decoding order with video first at equal times.
    segments: Vec<Arc<[AccessUnit]>>,
    /// Length of each segment in 90 kHz ticks; they add up to `period`.
    lengths: Vec<u64>,
    period: u64,
}

impl FileMedia {
    /// Cuts `file` into segments of at least `target_ticks` (at the first keyframe after the
    /// target, like the `publish://` segmenter; audio-only files at the first frame after it).
    ///
    /// The presentation starts at the first video keyframe (or first audio frame): what comes
    /// before it, and what lasts past the end of the main track, is left out so that one pass
    /// follows the other without overlap. Video without parameter sets is an error.
    pub fn new(file: mp4::FileUnits, target_ticks: u64) -> Result<FileMedia, String> {
        let mp4::FileUnits {
            mut codecs,
            units,
            presentation_start,
            end,
        } = file;
        let has_video = units.iter().any(|u| u.track == Track::Video);
        if has_video && codecs.video.is_none() {
            return Err("the H.264 track has no SPS/PPS".into());
        }
        if !has_video {
            codecs.video = None;
        }
        if !units.iter().any(|u| u.track == Track::Audio) {
            codecs.audio = None;
        }
        let start = units
            .iter()
            .filter(|u| u.pts >= presentation_start)
            .find(|u| {
                if has_video {
                    u.track == Track::Video && u.keyframe
                } else {
                    true
                }
            })
            .map(|u| u.dts)
            .ok_or_else(|| {
                if has_video {
                    "the H.264 track has no keyframe".to_string()
                } else {
                    "the file has no access units".to_string()
                }
            })?;
        if end <= start {
            return Err("the file's media lasts no time".into());
        }
        let period = end - start;
        let target = target_ticks.max(1);
        let mut segments: Vec<Vec<AccessUnit>> = Vec::new();
        let mut starts: Vec<u64> = Vec::new();
        for mut unit in units.into_iter().filter(|u| u.dts >= start && u.dts < end) {
            unit.dts -= start;
            unit.pts = unit.pts.saturating_sub(start).max(unit.dts);
            let cut = match starts.last() {
                None => true,
                Some(&open) => {
                    let cuts_here = if has_video {
                        unit.track == Track::Video && unit.keyframe
                    } else {
                        true
                    };
                    cuts_here && unit.dts - open >= target
                }
            };
            if cut {
                starts.push(unit.dts);
                segments.push(Vec::new());
            }
            if let Some(segment) = segments.last_mut() {
                segment.push(unit);
            }
        }
        let mut lengths: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        if let Some(&last) = starts.last() {
            lengths.push(period - last);
        }
        if lengths.is_empty() || lengths.contains(&0) {
            return Err("the file's media lasts no time".into());
        }
        if let Some(video) = &codecs.video {
            let prefix = video.to_annex_b();
            for segment in &mut segments {
                for unit in segment.iter_mut().filter(|u| u.track == Track::Video && u.keyframe) {
                    if !has_parameter_sets(&unit.data) {
                        unit.data = Bytes::from([&prefix[..], &unit.data[..]].concat());
                    }
                }
            }
        }
        tracing::debug!(segments = lengths.len(), period, "file input cut into segments");
        Ok(FileMedia {
            codecs,
            segments: segments.into_iter().map(Arc::from).collect(),
            lengths,
            period,
        })
    }

    pub fn codecs(&self) -> &Codecs {
        &self.codecs
    }

    /// Segments in one pass.
    pub fn segment_count(&self) -> u64 {
        self.lengths.len() as u64
    }

    /// The length of one pass in 90 kHz ticks.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// Length of segment `index` of a pass, in 90 kHz ticks.
    pub fn length(&self, index: usize) -> Option<u64> {
        self.lengths.get(index).copied()
    }

    /// Where the loop cuts.
    pub fn schedule(&self) -> Schedule {
        // The constructor guarantees non-empty, non-zero lengths.
        Schedule::looped(&self.lengths).unwrap_or_else(|| Schedule::uniform(self.period.max(1)))
    }

    /// The access units of segment `sequence` of the endless loop, presenting stream time `t`
    /// at `t + fake::PTS_OFFSET` like the `fake://` generator.
    pub fn units(&self, sequence: u64) -> Vec<AccessUnit> {
        let count = self.segment_count().max(1);
        let pass = sequence / count;
        let shift = pass.saturating_mul(self.period).saturating_add(fake::PTS_OFFSET);
        let Some(segment) = self.segments.get((sequence % count) as usize) else {
            return Vec::new();
        };
        segment
            .iter()
            .map(|unit| AccessUnit {
                pts: unit.pts.saturating_add(shift),
                dts: unit.dts.saturating_add(shift),
                ..unit.clone()
            })
            .collect()
    }
}

fn has_parameter_sets(annex_b: &[u8]) -> bool {
    h264::nal_units(annex_b).any(|nal| h264::nal_unit_type(nal) == Some(nal_type::SPS))
}

#[cfg(test)]
mod tests;
