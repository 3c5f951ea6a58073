//! Archive exports, produced a segment at a time so a long export never sits in memory:
//!
//! - [`TsExport`]: the archived TS files one after the other, continuity counters renumbered
//!   so the concatenation is one continuous transport stream per PID.
//! - [`Mp4Export`]: the same TS read back into access units with the server's own demuxer
//!   ([`TsIngest`]) and written as fragmented MP4 ([`Fmp4Writer`]), one fragment per segment.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;

use super::archive::ArchivedSegment;
use super::mp4::Fmp4Writer;
use crate::media::ts::{ContinuityRewriter, TsIngest};
use crate::media::{AccessUnit, Track};

/// Reads the next segment file; a file deleted meanwhile (pruned) is skipped.
async fn next_file(segments: &mut VecDeque<ArchivedSegment>) -> Option<io::Result<Vec<u8>>> {
    while let Some(segment) = segments.pop_front() {
        match tokio::fs::read(&segment.path).await {
            Ok(bytes) => return Some(Ok(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(file = %segment.path.display(), "dvr export: segment pruned meanwhile; skipped");
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// The archived TS of a range, continuity fixed.
#[derive(Debug)]
pub struct TsExport {
    segments: VecDeque<ArchivedSegment>,
    continuity: ContinuityRewriter,
}

impl TsExport {
    pub fn new(segments: Vec<ArchivedSegment>) -> TsExport {
        TsExport {
            segments: segments.into(),
            continuity: ContinuityRewriter::new(),
        }
    }

    /// The next chunk (one segment), or `None` at the end.
    pub async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        let bytes = match next_file(&mut self.segments).await? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(self.continuity.rewrite(&bytes)))
    }
}

/// The archived range as a fragmented MP4 file.
#[derive(Debug)]
pub struct Mp4Export {
    segments: VecDeque<ArchivedSegment>,
    continuity: ContinuityRewriter,
    ingest: TsIngest,
    writer: Option<Fmp4Writer>,
    /// Units read before the track parameters were known.
    pending: Vec<AccessUnit>,
    /// Announced in the file header.
    duration_ms: u64,
    finished: bool,
    /// The first video keyframe has been written.
    started_video: bool,
}

impl Mp4Export {
    pub fn new(segments: Vec<ArchivedSegment>) -> Mp4Export {
        let duration_ms = segments.iter().map(|s| u64::try_from(s.duration_ms).unwrap_or(0)).sum();
        Mp4Export {
            segments: segments.into(),
            continuity: ContinuityRewriter::new(),
            ingest: TsIngest::new(),
            writer: None,
            pending: Vec::new(),
            duration_ms,
            finished: false,
            started_video: false,
        }
    }

    /// The next chunk: the header with the first fragment, then a fragment per segment.
    pub async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.finished {
                return None;
            }
            let units = match next_file(&mut self.segments).await {
                Some(Ok(bytes)) => {
                    let ts = self.continuity.rewrite(&bytes);
                    match self.ingest.push(&ts) {
                        Ok(units) => units,
                        Err(e) => {
                            // Our own recordings: a failure here is a damaged file on disk.
                            tracing::warn!(error = %e, "dvr export: archived TS cannot be read; export cut short");
                            self.finished = true;
                            self.ingest.finish()
                        }
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.finished = true;
                    self.ingest.finish()
                }
            };
            self.pending.extend(units);
            if self.writer.is_none() {
                let codecs = self.ingest.codecs().clone();
                // Wait for the video parameters if video is coming (its first keyframe brings
                // them), unless the input has ended.
                let video_seen = self.pending.iter().any(|u| u.track == Track::Video);
                if codecs.video.is_none() && video_seen && !self.finished {
                    continue;
                }
                let Some(writer) = Fmp4Writer::new(codecs.video, codecs.audio) else {
                    if self.finished {
                        return None;
                    }
                    continue;
                };
                let mut out = writer.init(self.duration_ms).to_vec();
                self.writer = Some(writer);
                let units = self.take_pending();
                if let Some(fragment) = self.writer.as_mut().and_then(|w| w.fragment(&units)) {
                    out.extend_from_slice(&fragment);
                }
                return Some(Ok(Bytes::from(out)));
            }
            let units = self.take_pending();
            if let Some(fragment) = self.writer.as_mut().and_then(|w| w.fragment(&units)) {
                return Some(Ok(fragment));
            }
        }
    }

    /// Pending units; until the first video keyframe has been written, what precedes it is
    /// dropped (a file must start decodable).
    fn take_pending(&mut self) -> Vec<AccessUnit> {
        let mut units = std::mem::take(&mut self.pending);
        if self.started_video || !self.writer.as_ref().is_some_and(Fmp4Writer::has_video) {
            return units;
        }
        match units.iter().position(|u| u.track == Track::Video && u.keyframe) {
            Some(first_key) => {
                units.drain(..first_key);
                self.started_video = true;
            }
            None => units.retain(|u| u.track != Track::Video),
        }
        units
    }
}
