//! One stream's archive on disk: a TS file per segment under `ROOT/NAME/`, named by the
//! segment's wall-clock start in unix milliseconds (`1700000000123.ts`), and an append-only
//! index (`index.log`, one line per segment: `START_MS DURATION_MS DISCONTINUITY FILE`).
//!
//! The index is read when the archive opens, so an archive outlives a restart; lines whose file
//! is gone or that are past the depth are dropped then. Segments older than the depth are
//! deleted as new ones arrive, and the index is rewritten (to a temporary file, then renamed)
//! once enough of its lines are stale, so it stays bounded without being rewritten on every
//! segment.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::ranges::TimeRange;
use crate::media::MediaSource;

const INDEX: &str = "index.log";
/// Stale index lines tolerated before the index is rewritten.
const STALE_LINES: usize = 64;
/// A recorded segment that starts this close to the previous one's end continues it.
const CONTIGUOUS_MS: i64 = 50;
/// How far the computed start of a segment may drift from the clock before it is re-anchored.
const MAX_DRIFT_MS: i64 = 2000;

/// One archived segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedSegment {
    /// Wall-clock start, unix milliseconds.
    pub start_ms: i64,
    pub duration_ms: i64,
    /// Does not continue the previous segment (a gap, a new publisher, a switched input).
    pub discontinuity: bool,
    pub path: PathBuf,
}

impl ArchivedSegment {
    pub fn range(&self) -> TimeRange {
        TimeRange {
            from: self.start_ms,
            to: self.start_ms + self.duration_ms,
        }
    }
}

/// What the recorder remembers between polls of one source.
#[derive(Debug, Default)]
struct Cursor {
    source: Weak<MediaSource>,
    last_sequence: Option<u64>,
    last_end_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    segments: BTreeMap<i64, ArchivedSegment>,
    cursor: Cursor,
    stale_lines: usize,
}

/// The archive of one stream.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    depth: Duration,
    state: Mutex<State>,
    /// Serializes writers (the recorder) against index rewrites.
    writing: tokio::sync::Mutex<()>,
}

impl Archive {
    /// Opens (creating the directory) and loads the index.
    pub async fn open(dir: PathBuf, depth: Duration) -> io::Result<Arc<Archive>> {
        tokio::fs::create_dir_all(&dir).await?;
        let mut segments = BTreeMap::new();
        let mut lines = 0usize;
        match tokio::fs::read_to_string(dir.join(INDEX)).await {
            Ok(text) => {
                for line in text.lines() {
                    lines += 1;
                    if let Some(segment) = parse_line(&dir, line)
                        && tokio::fs::try_exists(&segment.path).await.unwrap_or(false)
                    {
                        segments.insert(segment.start_ms, segment);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let last_end_ms = segments
            .values()
            .next_back()
            .map_or(0, |s: &ArchivedSegment| s.start_ms + s.duration_ms);
        tracing::info!(dir = %dir.display(), segments = segments.len(), depth_secs = depth.as_secs(), "dvr archive opened");
        let stale_lines = lines - segments.len();
        let archive = Arc::new(Archive {
            dir,
            depth,
            state: Mutex::new(State {
                segments,
                cursor: Cursor {
                    last_end_ms,
                    ..Cursor::default()
                },
                stale_lines,
            }),
            writing: tokio::sync::Mutex::new(()),
        });
        archive.prune(super::unix_millis_now()).await;
        Ok(archive)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn depth(&self) -> Duration {
        self.depth
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every archived segment, oldest first.
    pub fn segments(&self) -> Vec<ArchivedSegment> {
        self.state().segments.values().cloned().collect()
    }

    /// Segments that overlap `range`, oldest first (the archive HLS playlist).
    pub fn overlapping(&self, range: &TimeRange) -> Vec<ArchivedSegment> {
        self.state()
            .segments
            .values()
            .filter(|s| s.range().overlaps(range))
            .cloned()
            .collect()
    }

    /// Segments whose middle falls in `range`, oldest first (exports): the export is then
    /// within one segment of the asked duration.
    pub fn centred_in(&self, range: &TimeRange) -> Vec<ArchivedSegment> {
        self.state()
            .segments
            .values()
            .filter(|s| {
                let middle = s.start_ms + s.duration_ms / 2;
                range.from <= middle && middle < range.to
            })
            .cloned()
            .collect()
    }

    /// The segment that starts at `start_ms`.
    pub fn segment(&self, start_ms: i64) -> Option<ArchivedSegment> {
        self.state().segments.get(&start_ms).cloned()
    }

    /// Records the segments of `source` completed since the last call. The newest listed
    /// segment is taken to end now; consecutive segments of one source follow each other
    /// without gaps. Returns how many were written.
    pub async fn record(&self, source: &Arc<MediaSource>, now_ms: i64) -> usize {
        let _writing = self.writing.lock().await;
        let listed = source.segments();
        let Some(newest) = listed.last() else { return 0 };
        // The clock's idea of where each listed segment starts: the newest ends now.
        let mut estimates = Vec::with_capacity(listed.len());
        let mut end = now_ms;
        for s in listed.iter().rev() {
            let start = end - (s.duration * 1000.0).round() as i64;
            estimates.push((s.sequence, start));
            end = start;
        }
        let (last_sequence, mut last_end_ms) = {
            let mut state = self.state();
            let same = state.cursor.source.upgrade().is_some_and(|s| Arc::ptr_eq(&s, source));
            if !same {
                state.cursor.source = Arc::downgrade(source);
                state.cursor.last_sequence = None;
            }
            (state.cursor.last_sequence, state.cursor.last_end_ms)
        };
        if last_sequence.is_some_and(|l| l >= newest.sequence) {
            return 0;
        }
        let mut written = 0;
        let mut sequence_before = last_sequence;
        for info in listed.iter().filter(|s| last_sequence.is_none_or(|l| s.sequence > l)) {
            let estimate = estimates
                .iter()
                .find(|(seq, _)| *seq == info.sequence)
                .map_or(now_ms, |(_, start)| *start);
            let follows = sequence_before == Some(info.sequence.wrapping_sub(1)) && !info.discontinuity;
            let start_ms = if follows && (estimate - last_end_ms).abs() <= MAX_DRIFT_MS {
                last_end_ms
            } else {
                estimate.max(last_end_ms)
            };
            let duration_ms = ((info.duration * 1000.0).round() as i64).max(1);
            sequence_before = Some(info.sequence);
            let Some(bytes) = source.segment(info.sequence) else {
                tracing::debug!(
                    sequence = info.sequence,
                    "dvr: segment left the window before it was recorded"
                );
                continue;
            };
            let segment = ArchivedSegment {
                start_ms,
                duration_ms,
                discontinuity: !(follows && (start_ms - last_end_ms).abs() <= CONTIGUOUS_MS),
                path: self.dir.join(format!("{start_ms}.ts")),
            };
            if let Err(e) = self.write_segment(&segment, &bytes).await {
                tracing::warn!(dir = %self.dir.display(), error = %e, "dvr: cannot write a segment; it is not archived");
                continue;
            }
            last_end_ms = start_ms + duration_ms;
            written += 1;
            let mut state = self.state();
            state.cursor.last_sequence = Some(info.sequence);
            state.cursor.last_end_ms = last_end_ms;
            state.segments.insert(start_ms, segment);
        }
        {
            let mut state = self.state();
            if state.cursor.last_sequence.is_none_or(|l| l < newest.sequence) {
                state.cursor.last_sequence = Some(newest.sequence);
            }
        }
        drop(_writing);
        self.prune(now_ms).await;
        written
    }

    async fn write_segment(&self, segment: &ArchivedSegment, bytes: &[u8]) -> io::Result<()> {
        tokio::fs::write(&segment.path, bytes).await?;
        let mut index = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(INDEX))
            .await?;
        index.write_all(index_line(segment).as_bytes()).await?;
        index.flush().await
    }

    /// Deletes segments that ended more than the depth before `now_ms`; rewrites the index
    /// when enough of its lines are stale.
    pub async fn prune(&self, now_ms: i64) {
        let _writing = self.writing.lock().await;
        let cutoff = now_ms - i64::try_from(self.depth.as_millis()).unwrap_or(i64::MAX);
        let (old, rewrite) = {
            let mut state = self.state();
            let keep = state
                .segments
                .iter()
                .find(|(_, s)| s.start_ms + s.duration_ms > cutoff)
                .map(|(k, _)| *k)
                .unwrap_or(i64::MAX);
            let kept = state.segments.split_off(&keep);
            let old = std::mem::replace(&mut state.segments, kept);
            state.stale_lines += old.len();
            let rewrite = state.stale_lines > STALE_LINES.max(state.segments.len() / 10);
            let lines = rewrite.then(|| state.segments.values().map(index_line).collect::<String>());
            if rewrite {
                state.stale_lines = 0;
            }
            (old, lines)
        };
        for segment in old.values() {
            if let Err(e) = tokio::fs::remove_file(&segment.path).await
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %segment.path.display(), error = %e, "dvr: cannot delete an old segment");
            }
        }
        if let Some(text) = rewrite {
            let tmp = self.dir.join(format!("{INDEX}.tmp"));
            let result = async {
                tokio::fs::write(&tmp, text).await?;
                tokio::fs::rename(&tmp, self.dir.join(INDEX)).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(dir = %self.dir.display(), error = %e, "dvr: cannot rewrite the index");
            }
        }
    }
}

fn index_line(s: &ArchivedSegment) -> String {
    let file = s
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{} {} {} {file}\n",
        s.start_ms,
        s.duration_ms,
        u8::from(s.discontinuity)
    )
}

/// A line of the index; `None` for anything malformed (a torn last line after a crash).
fn parse_line(dir: &Path, line: &str) -> Option<ArchivedSegment> {
    let mut words = line.split(' ');
    let start_ms: i64 = words.next()?.parse().ok()?;
    let duration_ms: i64 = words.next()?.parse().ok()?;
    let discontinuity = match words.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let file = words.next()?;
    if words.next().is_some() || duration_ms <= 0 || file != format!("{start_ms}.ts") {
        return None;
    }
    Some(ArchivedSegment {
        start_ms,
        duration_ms,
        discontinuity,
        path: dir.join(file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lines_round_trip_and_garbage_is_skipped() {
        let dir = Path::new("/tmp/x");
        let s = ArchivedSegment {
            start_ms: 1_700_000_000_123,
            duration_ms: 1000,
            discontinuity: true,
            path: dir.join("1700000000123.ts"),
        };
        assert_eq!(parse_line(dir, index_line(&s).trim_end()), Some(s));
        for bad in [
            "",
            "1 2",
            "1 2 3 1.ts",
            "1 0 0 1.ts",
            "1 2 0 ../etc/passwd",
            "1 2 0 1.ts extra",
            "x 2 0 x.ts",
        ] {
            assert_eq!(parse_line(dir, bad), None, "{bad:?}");
        }
    }
}
