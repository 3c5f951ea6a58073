//! One stream's archive on disk: a TS file per segment under `ROOT/NAME/`, named by the
//! segment's wall-clock start in unix milliseconds (`1700000000123.ts`), and an append-only
//! index (`index.log`, one line per segment: `START_MS DURATION_MS DISCONTINUITY FILE`).
//!
//! The index is read when the archive opens, so an archive outlives a restart; lines whose file
//! is gone or that are past the depth are dropped then. The index is rewritten (to a temporary
//! file, then renamed) once enough of its lines are stale, so it stays bounded without being
//! rewritten on every segment.
//!
//! Three limits ([`Limits`]) delete the oldest segments:
//! * the depth: segments that ended longer ago than it (all of them, if nothing was recorded
//!   for a whole depth);
//!
//! and the two size limits, which never delete the newest segment:
//! * `storage_limit`: before a segment is written, older ones go until the archive plus the
//!   new segment fit in the limit (a segment larger than the limit on its own is still
//!   written, and is then the whole archive);
//! * `disk_usage_limit`: after each segment (and each pass over an idle archive), when the
//!   filesystem holding the archive is fuller than the percentage, older segments go until the
//!   bytes they free bring it down to the limit, or only the newest is left.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::disk::{DiskProbe, DiskUsage};
use super::ranges::TimeRange;
use crate::config::DvrConfig;
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
    /// Size of the file (what the storage limit counts).
    pub bytes: u64,
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
    /// Sum of the segments' `bytes`.
    bytes: u64,
    cursor: Cursor,
    stale_lines: usize,
    /// The filesystem is over `disk_usage_limit` with only the newest segment left: said once
    /// until it is under again.
    disk_full_said: bool,
    /// statvfs failed: said once until it works again.
    probe_failed_said: bool,
}

impl State {
    fn insert(&mut self, segment: ArchivedSegment) {
        self.bytes += segment.bytes;
        if let Some(old) = self.segments.insert(segment.start_ms, segment) {
            self.bytes -= old.bytes;
        }
    }

    /// Takes the oldest segment out, unless it is the last one.
    fn take_oldest(&mut self) -> Option<ArchivedSegment> {
        if self.segments.len() < 2 {
            return None;
        }
        let (_, s) = self.segments.pop_first()?;
        self.bytes -= s.bytes;
        Some(s)
    }

    /// Takes out every segment that ended at or before `cutoff`, the newest excepted.
    fn take_expired(&mut self, cutoff: i64) -> Vec<ArchivedSegment> {
        let mut gone = Vec::new();
        while self
            .segments
            .first_key_value()
            .is_some_and(|(_, s)| s.start_ms + s.duration_ms <= cutoff)
        {
            // The newest is past the depth too: it goes like the rest (nothing was recorded
            // for a whole depth), so the depth alone may empty an archive.
            let Some((_, s)) = self.segments.pop_first() else { break };
            self.bytes -= s.bytes;
            gone.push(s);
        }
        gone
    }

    /// Takes out the oldest segments until the archive plus `incoming` bytes fit in `limit`.
    /// With nothing incoming the newest stays whatever its size; with a segment incoming every
    /// older one may go, since the incoming one is then the newest.
    fn take_for_storage(&mut self, limit: u64, incoming: u64) -> Vec<ArchivedSegment> {
        let keep = usize::from(incoming == 0);
        let mut gone = Vec::new();
        while self.bytes.saturating_add(incoming) > limit && self.segments.len() > keep {
            let Some((_, s)) = self.segments.pop_first() else { break };
            self.bytes -= s.bytes;
            gone.push(s);
        }
        gone
    }

    /// Takes out the oldest segments, the newest excepted, until they add up to `excess`.
    fn take_bytes(&mut self, excess: u64) -> Vec<ArchivedSegment> {
        let mut gone = Vec::new();
        let mut freed = 0u64;
        while freed < excess {
            let Some(s) = self.take_oldest() else { break };
            freed = freed.saturating_add(s.bytes);
            gone.push(s);
        }
        gone
    }
}

/// What bounds one archive (`dvr ROOT DEPTH [SIZE] [PERCENT%]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Segments that ended longer ago are deleted.
    pub depth: Duration,
    /// Most bytes the archive's segment files may take.
    pub storage_limit: Option<u64>,
    /// Most percent of the filesystem under the archive that may be in use before this
    /// archive gives up its oldest segments.
    pub disk_usage_limit: Option<u8>,
}

impl Limits {
    /// The depth alone.
    pub fn depth(depth: Duration) -> Limits {
        Limits {
            depth,
            storage_limit: None,
            disk_usage_limit: None,
        }
    }

    pub fn of(config: &DvrConfig) -> Limits {
        Limits {
            depth: config.depth,
            storage_limit: config.storage_limit,
            disk_usage_limit: config.disk_usage_limit,
        }
    }
}

/// The archive of one stream.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    limits: Limits,
    disk: Arc<dyn DiskProbe>,
    state: Mutex<State>,
    /// Serializes writers (the recorder) against index rewrites.
    writing: tokio::sync::Mutex<()>,
}

impl Archive {
    /// Opens (creating the directory) and loads the index, bounded by the depth alone.
    pub async fn open(dir: PathBuf, depth: Duration) -> io::Result<Arc<Archive>> {
        Archive::open_limited(dir, Limits::depth(depth), Arc::new(super::disk::Statvfs)).await
    }

    /// Opens (creating the directory) and loads the index; `disk` reads the filesystem's fill
    /// for `limits.disk_usage_limit`. What the index holds beyond the limits is deleted at once.
    pub async fn open_limited(dir: PathBuf, limits: Limits, disk: Arc<dyn DiskProbe>) -> io::Result<Arc<Archive>> {
        tokio::fs::create_dir_all(&dir).await?;
        let mut segments = BTreeMap::new();
        let mut lines = 0usize;
        match tokio::fs::read_to_string(dir.join(INDEX)).await {
            Ok(text) => {
                for line in text.lines() {
                    lines += 1;
                    if let Some(mut segment) = parse_line(&dir, line)
                        && let Ok(meta) = tokio::fs::metadata(&segment.path).await
                    {
                        segment.bytes = meta.len();
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
        let bytes = segments.values().map(|s: &ArchivedSegment| s.bytes).sum();
        tracing::info!(
            dir = %dir.display(),
            segments = segments.len(),
            bytes,
            depth_secs = limits.depth.as_secs(),
            storage_limit = limits.storage_limit,
            disk_usage_limit = limits.disk_usage_limit,
            "dvr archive opened"
        );
        let stale_lines = lines - segments.len();
        let archive = Arc::new(Archive {
            dir,
            limits,
            disk,
            state: Mutex::new(State {
                segments,
                bytes,
                cursor: Cursor {
                    last_end_ms,
                    ..Cursor::default()
                },
                stale_lines,
                ..State::default()
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
        self.limits.depth
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes of the segment files the archive holds.
    pub fn bytes(&self) -> u64 {
        self.state().bytes
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
                bytes: bytes.len() as u64,
            };
            if let Some(limit) = self.limits.storage_limit {
                let gone = self.state().take_for_storage(limit, segment.bytes);
                if !gone.is_empty() {
                    tracing::debug!(dir = %self.dir.display(), deleted = gone.len(), storage_limit = limit, "dvr: oldest segments deleted to stay within the storage limit");
                }
                self.delete(gone).await;
            }
            if let Err(e) = self.write_segment(&segment, &bytes).await {
                tracing::warn!(dir = %self.dir.display(), error = %e, "dvr: cannot write a segment; it is not archived");
                continue;
            }
            last_end_ms = start_ms + duration_ms;
            written += 1;
            let mut state = self.state();
            state.cursor.last_sequence = Some(info.sequence);
            state.cursor.last_end_ms = last_end_ms;
            state.insert(segment);
        }
        {
            let mut state = self.state();
            if state.cursor.last_sequence.is_none_or(|l| l < newest.sequence) {
                state.cursor.last_sequence = Some(newest.sequence);
            }
        }
        self.prune_locked(now_ms).await;
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

    /// Deletes what is past the limits at `now_ms` (see the module's doc); rewrites the index
    /// when enough of its lines are stale.
    pub async fn prune(&self, now_ms: i64) {
        let _writing = self.writing.lock().await;
        self.prune_locked(now_ms).await;
    }

    /// [`prune`](Self::prune) with the writing lock held.
    async fn prune_locked(&self, now_ms: i64) {
        let cutoff = now_ms - i64::try_from(self.limits.depth.as_millis()).unwrap_or(i64::MAX);
        let expired = self.state().take_expired(cutoff);
        self.delete(expired).await;
        if let Some(limit) = self.limits.storage_limit {
            // A limit lowered since the archive was written (the index is read at open).
            let gone = self.state().take_for_storage(limit, 0);
            self.delete(gone).await;
        }
        if let Some(limit) = self.limits.disk_usage_limit {
            self.keep_disk_under(limit).await;
        }
        let rewrite = {
            let mut state = self.state();
            let rewrite = state.stale_lines > STALE_LINES.max(state.segments.len() / 10);
            if rewrite {
                state.stale_lines = 0;
            }
            rewrite.then(|| state.segments.values().map(index_line).collect::<String>())
        };
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

    /// Reads the fill of the filesystem and deletes the oldest segments (the newest excepted)
    /// whose bytes bring it down to `limit` percent.
    async fn keep_disk_under(&self, limit: u8) {
        let (disk, dir) = (self.disk.clone(), self.dir.clone());
        let read = tokio::task::spawn_blocking(move || disk.usage(&dir))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        let usage: DiskUsage = match read {
            Ok(usage) => {
                self.state().probe_failed_said = false;
                usage
            }
            Err(e) => {
                let mut state = self.state();
                if !state.probe_failed_said {
                    state.probe_failed_said = true;
                    tracing::warn!(dir = %self.dir.display(), error = %e, disk_usage_limit = limit, "dvr: cannot read how full the disk is; the disk usage limit is not applied until it can");
                }
                return;
            }
        };
        let excess = usage.excess_over(limit);
        let (gone, still_over) = {
            let mut state = self.state();
            let gone = state.take_bytes(excess);
            let freed: u64 = gone.iter().map(|s| s.bytes).sum();
            let still_over = freed < excess;
            let say = still_over && !state.disk_full_said;
            state.disk_full_said = still_over;
            (gone, say)
        };
        if !gone.is_empty() {
            tracing::info!(
                dir = %self.dir.display(),
                used_percent = usage.percent(),
                disk_usage_limit = limit,
                deleted = gone.len(),
                "dvr: the disk is fuller than the limit; the oldest segments of this archive are deleted"
            );
        }
        if still_over {
            tracing::warn!(
                dir = %self.dir.display(),
                used_percent = usage.percent(),
                disk_usage_limit = limit,
                "dvr: the disk stays fuller than the limit with only the newest segment of this archive left"
            );
        }
        self.delete(gone).await;
    }

    /// Deletes the files of segments already taken out of the state.
    async fn delete(&self, gone: Vec<ArchivedSegment>) {
        if gone.is_empty() {
            return;
        }
        self.state().stale_lines += gone.len();
        for segment in &gone {
            if let Err(e) = tokio::fs::remove_file(&segment.path).await
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %segment.path.display(), error = %e, "dvr: cannot delete an old segment");
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
        bytes: 0,
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
            bytes: 0,
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
