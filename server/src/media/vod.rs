//! VOD files: a file under a `vod` location's storage, served whole as an HLS playlist with
//! EXT-X-ENDLIST and its segments.
//!
//! The file is cut exactly as a `file://` live input is (see `file`), played once: segment `n`
//! is the file's `n`-th keyframe-aligned piece. All segments are muxed up front through one
//! muxer, so that their concatenation is one valid stream (continuity counters run on), which
//! HLS clients that feed every segment to one demuxer rely on.

use std::time::Duration;

use bytes::Bytes;

use super::access_unit::CLOCK_HZ;
use super::file::{FileError, FileMedia, MediaRoot};
use super::segmenter::mux_segment;
use super::ts::TsMuxer;
use super::{SegmentInfo, playlist};

/// A VOD file ready to serve.
#[derive(Debug)]
pub struct VodMedia {
    segments: Vec<(f64, Bytes)>,
}

impl VodMedia {
    /// Resolves `relative` under `root` (never leaving it), reads and cuts the file.
    /// `display` names the file in errors (the requested VOD path).
    pub fn load(root: &MediaRoot, display: &str, relative: &str, target: Duration) -> Result<VodMedia, FileError> {
        let file = root.load(display, relative, target)?;
        Ok(Self::from_file(&file))
    }

    /// One pass of `file`, muxed.
    pub fn from_file(file: &FileMedia) -> VodMedia {
        let codecs = file.codecs();
        let mut muxer = TsMuxer::with_tracks(codecs.video.is_some(), codecs.audio);
        let segments = (0..file.segment_count())
            .map(|n| {
                let duration = file.length(n as usize).unwrap_or(0) as f64 / CLOCK_HZ as f64;
                (duration, mux_segment(&mut muxer, &file.units(n)))
            })
            .collect();
        VodMedia { segments }
    }

    pub fn segment_count(&self) -> u64 {
        self.segments.len() as u64
    }

    /// The bytes of segment `sequence` (a complete TS file starting with PAT/PMT and a keyframe).
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let index = usize::try_from(sequence).ok()?;
        self.segments.get(index).map(|(_, data)| data.clone())
    }

    /// The whole file as one playlist: every segment, `#EXT-X-PLAYLIST-TYPE:VOD` and
    /// EXT-X-ENDLIST (RFC 8216 §4.3.3.5). `uri_query` is appended to every segment URI.
    pub fn playlist(&self, uri_query: &str) -> String {
        let infos: Vec<SegmentInfo> = self
            .segments
            .iter()
            .enumerate()
            .map(|(sequence, (duration, _))| SegmentInfo {
                sequence: sequence as u64,
                duration: *duration,
                discontinuity: false,
            })
            .collect();
        let text = playlist::media_playlist(&infos, 0, 1, uri_query, true);
        text.replacen("#EXT-X-VERSION:3\n", "#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n", 1)
    }
}
