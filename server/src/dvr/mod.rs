//! DVR: streams with `dvr ROOT DEPTH;` are recorded segment by segment on disk
//! ([`archive`]), and the archive is read back as an HLS playlist and as MP4 / MPEG-TS
//! exports ([`export`], [`mp4`]). Viewer access goes through the one admission path with
//! `dvr=true` (DVR-01/02); `allowed_dvr_ranges` ([`ranges`]) bounds what a session may read
//! (ADV-02). The HTTP side is `crate::http::dvr`.
//!
//! The recorder polls every stream with a `dvr` setting ([`Dvr::run_recorder`]): it starts the
//! stream's media if nobody watches (recording does not wait for viewers) and writes each
//! newly completed segment with its wall-clock start. Each archive is kept within its depth,
//! its `storage_limit` and its `disk_usage_limit` ([`archive`], [`disk`]).

pub mod archive;
pub mod disk;
pub mod export;
pub mod mp4;
pub mod ranges;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

pub use archive::{Archive, ArchivedSegment, Limits};
pub use disk::{DiskProbe, DiskUsage};
pub use ranges::{AllowedRanges, TimeRange};

use crate::config::DvrConfig;
use crate::streams::Streams;

/// How often the recorder looks for new segments: well under a segment, so that the wall
/// clock given to a segment is close to when it completed.
pub const RECORD_INTERVAL: Duration = Duration::from_millis(250);

pub(crate) fn unix_millis_now() -> i64 {
    crate::history::unix_millis(SystemTime::now())
}

/// The archives of the server's streams, by stream name.
#[derive(Debug)]
pub struct Dvr {
    streams: Arc<Streams>,
    archives: Mutex<HashMap<String, Arc<Archive>>>,
    /// Streams whose archive could not be opened, so the failure is logged once.
    failed: Mutex<HashMap<String, PathBuf>>,
    /// Reads how full a filesystem is (`disk_usage_limit`).
    disk: Arc<dyn DiskProbe>,
}

impl Dvr {
    pub fn new(streams: Arc<Streams>) -> Arc<Dvr> {
        Dvr::with_disk_probe(streams, Arc::new(disk::Statvfs))
    }

    /// [`new`](Self::new) with another reader of the filesystem's fill (tests).
    pub fn with_disk_probe(streams: Arc<Streams>, disk: Arc<dyn DiskProbe>) -> Arc<Dvr> {
        Arc::new(Dvr {
            streams,
            archives: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            disk,
        })
    }

    /// Where the archive of `stream` lives: `ROOT/NAME`, ROOT relative to the media root.
    /// `None` for a name that could climb out of ROOT.
    pub fn dir_of(&self, stream: &str, config: &DvrConfig) -> Option<PathBuf> {
        let name = Path::new(stream);
        if name.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        let root = Path::new(&config.root);
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            self.streams.media_root().path().join(root)
        };
        Some(root.join(name))
    }

    /// The archive of `stream` with `config`, opened on first use (and reopened if the
    /// stream's `dvr` setting changed).
    pub async fn archive(&self, stream: &str, config: &DvrConfig) -> Option<Arc<Archive>> {
        let dir = self.dir_of(stream, config)?;
        let limits = Limits::of(config);
        if let Some(archive) = self.lock_archives().get(stream)
            && archive.dir() == dir
            && archive.limits() == limits
        {
            return Some(archive.clone());
        }
        match Archive::open_limited(dir.clone(), limits, self.disk.clone()).await {
            Ok(archive) => {
                self.failed.lock().unwrap_or_else(|e| e.into_inner()).remove(stream);
                let mut archives = self.lock_archives();
                // Another task may have opened it meanwhile; keep the first.
                let kept = archives.entry(stream.to_string()).or_insert(archive.clone());
                if kept.dir() != dir || kept.limits() != limits {
                    *kept = archive;
                }
                Some(kept.clone())
            }
            Err(e) => {
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                if failed.get(stream) != Some(&dir) {
                    tracing::warn!(stream, dir = %dir.display(), error = %e, "dvr: cannot open the archive");
                    failed.insert(stream.to_string(), dir);
                }
                None
            }
        }
    }

    fn lock_archives(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Archive>>> {
        self.archives.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass of the recorder over every stream with a `dvr` setting; archives of streams
    /// that no longer record are still pruned to their limits.
    pub async fn record_once(&self) {
        let now = unix_millis_now();
        let mut recording = Vec::new();
        for stream in self.streams.list() {
            let Some(config) = stream.effective().dvr.clone() else {
                continue;
            };
            let Some(archive) = self.archive(stream.name(), &config).await else {
                continue;
            };
            recording.push(stream.name().to_string());
            match stream.media() {
                Ok(media) => {
                    archive.record(&media, now).await;
                }
                Err(e) => tracing::debug!(stream = stream.name(), error = %e, "dvr: stream has no media to record"),
            }
        }
        let idle: Vec<(String, Arc<Archive>)> = self
            .lock_archives()
            .iter()
            .filter(|(name, _)| !recording.contains(name))
            .map(|(name, a)| (name.clone(), a.clone()))
            .collect();
        for (name, archive) in idle {
            archive.prune(now).await;
            // Nothing left of a stream that no longer records: forget it (its directory and
            // index stay, and are read again if the stream comes back).
            if archive.segments().is_empty() {
                let mut archives = self.lock_archives();
                if archives.get(&name).is_some_and(|a| Arc::ptr_eq(a, &archive)) {
                    archives.remove(&name);
                }
            }
        }
    }

    /// Records until `shutdown` is cancelled.
    pub async fn run_recorder(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(RECORD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.record_once().await,
            }
        }
    }
}

#[cfg(test)]
mod tests;
