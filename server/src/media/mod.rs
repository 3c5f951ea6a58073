//! Media: the synthetic `fake://` source (H.264 + silent AAC), `file://` inputs (MP4 or
//! MPEG-TS under the media root, looped), `publish://` sources fed by a [`Publisher`], MPEG-TS
//! packaging (and reading, [`TsIngest`]), the live HLS segment window, and VOD files
//! ([`VodMedia`]).
//!
//! Producing media and packaging it are kept apart: a producer yields [`AccessUnit`]s, and the
//! segmenter and [`ts::TsMuxer`] turn any such sequence into segments. The `fake://` generator
//! and files are pulled on demand (see `pull`); publishers (RTMP, RTSP, TS ingest) push into the
//! same packager (see `push`). Viewers read the segments ([`MediaSource::segment`], [`LiveTs`])
//! or the access units in them ([`AuFeed`]). A source's input can be switched under its
//! viewers (see `epoch`).

pub mod aac;
pub mod access_unit;
pub mod avc;
mod epoch;
mod fake;
mod feed;
mod file;
pub mod h264;
mod live;
pub mod mp4;
pub mod pattern;
mod playlist;
mod pull;
mod push;
mod segmenter;
#[cfg(test)]
pub(crate) mod testing;
pub mod ts;
mod vod;
mod window;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

pub use access_unit::{AccessUnit, CLOCK_HZ, Track};
pub use avc::AvcParams;
pub use epoch::PreparedInput;
pub use feed::AuFeed;
pub use file::{DEFAULT_MEDIA_ROOT, FileError, FileMedia, FileProblem, MAX_FILE_BYTES, MediaRoot, file_input_path};
pub use live::LiveTs;
pub use push::PUSH_IDLE_TIMEOUT;
pub use ts::TsIngest;
pub use vod::VodMedia;

use epoch::{Epoch, Feed, InputKind};
use window::Window;

/// Segment duration of a source started with [`MediaSource::start`]; for `publish://` sources
/// the target: segments are cut at the first keyframe after it; for `file://` sources the
/// least length: segments are cut at the file's first keyframe after it.
pub const DEFAULT_SEGMENT_DURATION: Duration = Duration::from_secs(1);

/// Width and height of the `fake://` picture.
pub const FAKE_VIDEO_SIZE: (u32, u32) = (fake::WIDTH, fake::HEIGHT);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("unsupported input `{0}`")]
    UnsupportedInput(String),
    /// A `file://` input that cannot play; the message names the input and the problem.
    #[error("{0}")]
    File(#[from] FileError),
}

/// One segment of the live window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentInfo {
    pub sequence: u64,
    /// Seconds.
    pub duration: f64,
    /// The segment follows a break (a new publisher, a new track set, a switched input):
    /// EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
}

/// A live stream's media, shared by every viewer of that stream.
///
/// Its input can be switched while viewers watch ([`switch`](Self::switch)): viewers keep
/// their handle and their place, and go on with the new input's media (see `epoch`).
#[derive(Debug)]
pub struct MediaSource {
    root: MediaRoot,
    segment_duration: Duration,
    epochs: Mutex<Epochs>,
    /// Bumped on every switch, so that viewers waiting on the old input look again.
    switches: watch::Sender<u64>,
}

#[derive(Debug)]
struct Epochs {
    /// Oldest first; the last one is the input in force. Older ones stay while their segments
    /// are retained.
    list: VecDeque<Arc<Epoch>>,
    /// The largest target duration announced so far: it must not shrink (RFC 8216
    /// §4.3.3.1).
    target: u64,
}

impl Epochs {
    fn current(&self) -> &Arc<Epoch> {
        // Never empty: a source starts with one epoch and switching only adds.
        &self.list[self.list.len() - 1]
    }

    /// Segments complete over the source's whole life.
    fn complete(&self) -> u64 {
        self.current().global_complete()
    }

    /// Forgets replaced epochs none of whose segments are retained any more, or that never
    /// completed one (an input switched away from within its first segment). Viewers still on
    /// them hold their own handle and follow to the next.
    fn prune(&mut self) {
        let retained = Window::with_complete(self.complete()).retained();
        self.list
            .retain(|epoch| epoch.end().is_none_or(|end| end > retained.start && end > epoch.first));
    }

    fn holding(&self, sequence: u64) -> Option<&Arc<Epoch>> {
        self.list.iter().rev().find(|epoch| epoch.holds(sequence))
    }
}

fn has_scheme(input: &str, scheme: &str) -> bool {
    input
        .get(..scheme.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
}

impl MediaSource {
    /// Starts the source for an input URL such as `fake://fake` or `publish://`, with
    /// [`DEFAULT_SEGMENT_DURATION`] and the default [`MediaRoot`].
    pub fn start(input: &str) -> Result<Arc<MediaSource>, MediaError> {
        Self::start_with_segment_duration(input, DEFAULT_SEGMENT_DURATION)
    }

    /// Starts the source with another segment duration (tests and fast conformance runs).
    /// For `fake://` the duration is rounded to whole video frames (100 ms), at least one, so
    /// that every segment starts with a keyframe; for `publish://` and `file://` it is the
    /// target that segments reach before they are cut at the next keyframe.
    pub fn start_with_segment_duration(
        input: &str,
        segment_duration: Duration,
    ) -> Result<Arc<MediaSource>, MediaError> {
        Self::open(input, &MediaRoot::default(), segment_duration)
    }

    /// Starts the source with `file://` paths resolved under `root`.
    pub fn open(input: &str, root: &MediaRoot, segment_duration: Duration) -> Result<Arc<MediaSource>, MediaError> {
        let prepared = Self::prepare_input(input, root, segment_duration)?;
        Ok(Self::start_prepared(prepared, root, segment_duration))
    }

    /// Reads and checks an input without starting anything: a `file://` input is resolved
    /// under `root`, read and cut here, so that a bad one is refused before it replaces a
    /// good one.
    pub fn prepare_input(
        input: &str,
        root: &MediaRoot,
        segment_duration: Duration,
    ) -> Result<PreparedInput, MediaError> {
        let kind = if has_scheme(input, "fake://") {
            InputKind::Fake
        } else if has_scheme(input, "publish://") {
            InputKind::Publish
        } else if has_scheme(input, "file://") {
            let file = root.load(input, &file::file_input_path(input), segment_duration)?;
            InputKind::File(Arc::new(file))
        } else {
            // Only for messages and logs: an input URL may hold a password or a token.
            return Err(MediaError::UnsupportedInput(crate::redact::url(input)));
        };
        Ok(PreparedInput {
            input: input.to_string(),
            kind,
        })
    }

    /// Starts a source on a prepared input.
    pub fn start_prepared(prepared: PreparedInput, root: &MediaRoot, segment_duration: Duration) -> Arc<MediaSource> {
        let feed = Feed::first(&prepared.kind, segment_duration);
        tracing::debug!(input = %crate::redact::Url(&prepared.input), ?segment_duration, "media source started");
        let target = feed.target_seconds();
        let epoch = Arc::new(Epoch::new(prepared.input, feed, 0, 0, false));
        Arc::new(MediaSource {
            root: root.clone(),
            segment_duration,
            epochs: Mutex::new(Epochs {
                list: VecDeque::from([epoch]),
                target,
            }),
            switches: watch::Sender::new(0),
        })
    }

    /// Reads and checks an input for [`switch`](Self::switch), with this source's media root
    /// and segment duration.
    pub fn prepare(&self, input: &str) -> Result<PreparedInput, MediaError> {
        Self::prepare_input(input, &self.root, self.segment_duration)
    }

    /// Switches the source to another input for every viewer, without dropping any: the
    /// current input's segments so far stay in the window, the segment in progress is cut,
    /// and the next segment is the new input's, marked EXT-X-DISCONTINUITY, with timestamps
    /// continuing from where the old clock stood. Viewers waiting for media are woken.
    pub fn switch(&self, prepared: PreparedInput) {
        let now = Instant::now();
        {
            let mut epochs = self.lock();
            let current = epochs.current().clone();
            let end = current.global_complete();
            let continue_at = current.feed.now_ticks(now);
            let tags_before = if end > current.first {
                current.tags_through(end - 1)
            } else {
                current.tags_before
            };
            let shift = continue_at.saturating_sub(fake::PTS_OFFSET);
            let feed = Feed::new(&prepared.kind, self.segment_duration, now, 0, shift, Some(continue_at));
            epochs.target = epochs.target.max(feed.target_seconds());
            tracing::info!(
                from = %crate::redact::Url(&current.input),
                to = %crate::redact::Url(&prepared.input),
                at_segment = end,
                pts = continue_at,
                "media source switched to another input"
            );
            let next = Arc::new(Epoch::new(prepared.input, feed, end, tags_before, end > 0));
            current.replace(end, next.clone());
            epochs.list.push_back(next);
            epochs.prune();
        }
        self.switches.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, Epochs> {
        // Each change is one step under the lock: a poisoned lock is still consistent.
        self.epochs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Arc<Epoch> {
        self.lock().current().clone()
    }

    /// The input in force.
    pub fn input(&self) -> String {
        self.current().input.clone()
    }

    /// The current live window, oldest first. Empty for a `publish://` source until its first
    /// segment is complete.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.listing().0
    }

    /// The listed segments, the discontinuity sequence of the first, and the target duration.
    fn listing(&self) -> (Vec<SegmentInfo>, u64, u64) {
        let mut epochs = self.lock();
        epochs.prune();
        let listed = Window::with_complete(epochs.complete()).listed();
        let mut segments = Vec::with_capacity(listed.clone().count());
        let mut discontinuity_sequence = None;
        for sequence in listed {
            let Some(epoch) = epochs.holding(sequence) else {
                continue;
            };
            let local = sequence - epoch.first;
            let Some((duration, own_tag, _)) = epoch.feed.segment_info(local) else {
                continue;
            };
            let discontinuity = own_tag || (local == 0 && epoch.tagged);
            discontinuity_sequence.get_or_insert_with(|| epoch.tags_through(sequence) - u64::from(discontinuity));
            segments.push(SegmentInfo {
                sequence,
                duration,
                discontinuity,
            });
        }
        let needed = epochs.list.iter().map(|e| e.feed.target_seconds()).max().unwrap_or(1);
        epochs.target = epochs.target.max(needed);
        (segments, discontinuity_sequence.unwrap_or(0), epochs.target)
    }

    /// The bytes of one segment of the window (a complete TS file starting with PAT/PMT and a
    /// keyframe). Segments that recently left the window can still be fetched (RFC 8216 §6.2.2).
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let epoch = {
            let epochs = self.lock();
            if !Window::with_complete(epochs.complete()).retained().contains(&sequence) {
                return None;
            }
            epochs.holding(sequence)?.clone()
        };
        epoch.feed.segment(sequence - epoch.first)
    }

    /// An HLS media playlist of the current window; `uri_query` (e.g. `?token=abc`) is appended
    /// to every segment URI, which is `segment-<sequence>.ts`.
    pub fn playlist(&self, uri_query: &str) -> String {
        let (segments, discontinuity_sequence, target) = self.listing();
        playlist::media_playlist(&segments, discontinuity_sequence, target, uri_query, self.ended())
    }

    /// A continuous MPEG-TS feed starting at the newest keyframe, for HTTP MPEG-TS viewers.
    pub fn live_ts(self: &Arc<Self>) -> LiveTs {
        LiveTs::new(Arc::clone(self))
    }

    /// Whether the source has stopped producing for good; its window then stays as it was.
    /// No kind does today: a `publish://` source waits for its next publisher and a file
    /// loops, so the playlist never gets EXT-X-ENDLIST (which could not be taken back).
    pub(crate) fn ended(&self) -> bool {
        false
    }

    fn window(&self) -> Window {
        Window::with_complete(self.lock().complete())
    }

    /// Waits until segment `sequence` may be complete; `false` if it never will (a
    /// `publish://` source without media for [`PUSH_IDLE_TIMEOUT`]). A switch of input wakes
    /// the wait: the segment then belongs to the new input.
    async fn wait_for_segment(&self, sequence: u64) -> bool {
        loop {
            let mut switches = self.switches.subscribe();
            let current = self.current();
            let Some(local) = sequence.checked_sub(current.first) else {
                // An older input's segment: complete, or cut and never coming.
                return true;
            };
            tokio::select! {
                ready = current.feed.wait_for_segment(local, &current.input) => return ready,
                _ = switches.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;

// ---- Interface for publishers and per-access-unit viewers (RTMP, RTSP, TS ingest). ----
// Signatures fixed by the lead: the RTMP and RTSP front ends are written against them.

/// What a protocol must announce before the first access unit (RTMP sequence headers, SDP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Codecs {
    pub video: Option<AvcParams>,
    pub audio: Option<aac::AacConfig>,
}

impl MediaSource {
    /// The codec parameters of the input in force; `None` parts are not known yet (a
    /// publisher that has not sent its configuration). `fake://`: the parameter sets of its
    /// picture and AAC-LC 48 kHz mono. `file://`: the file's. `publish://`: what the current
    /// publisher set, or what was read from its first keyframe (in-band SPS/PPS) or
    /// ADTS-framed audio; reset when a new publisher attaches.
    pub fn codecs(&self) -> Codecs {
        self.current().feed.codecs()
    }

    /// Access units in real time, starting at the newest keyframe, for RTMP and RTSP viewers.
    pub fn subscribe(self: &Arc<Self>) -> AuFeed {
        AuFeed::new(Arc::clone(self))
    }

    /// The one publisher of a `publish://` source. After it is dropped, another may attach.
    pub fn publisher(self: &Arc<Self>) -> Result<Publisher, PublishError> {
        let epoch = self.current();
        match &epoch.feed {
            Feed::Push(pushed) => {
                pushed.attach()?;
                Ok(Publisher {
                    source: Arc::clone(self),
                    epoch,
                })
            }
            Feed::Pulled(_) => Err(PublishError::NotPublishable(epoch.input.clone())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("input `{0}` does not take publishers (only publish:// does)")]
    NotPublishable(String),
    #[error("a publisher is already sending to this stream")]
    Busy,
}

/// The sending side of a `publish://` source. Dropping it ends the publication: the segment in
/// progress is completed and the window stays; viewers wait up to [`PUSH_IDLE_TIMEOUT`] for a
/// new publisher before their feeds end. If the source is switched to another input, what
/// the publisher sends no longer reaches viewers.
#[derive(Debug)]
pub struct Publisher {
    source: Arc<MediaSource>,
    /// The input it publishes into.
    epoch: Arc<Epoch>,
}

impl Publisher {
    fn pushed(&self) -> Option<&push::PushSegments> {
        match &self.epoch.feed {
            Feed::Push(pushed) => Some(pushed),
            Feed::Pulled(_) => None,
        }
    }

    /// Sets (or changes) the codec parameters; video access units after it use them.
    pub fn set_codecs(&mut self, codecs: Codecs) {
        if let Some(pushed) = self.pushed() {
            pushed.set_codecs(codecs);
        }
    }

    /// Adds one access unit (Annex B video / raw AAC audio, as [`AccessUnit`] documents).
    ///
    /// Timestamps may start anywhere; they are rebased onto the source's timeline. A unit that
    /// is not after the previous one of its track is dropped (logged at debug). A keyframe
    /// without SPS/PPS gets those of [`set_codecs`](Self::set_codecs) in front; an audio frame
    /// that still has its ADTS header is stripped of it. Audio before any AAC configuration is
    /// dropped, as is video before the first keyframe.
    pub fn push(&mut self, unit: AccessUnit) {
        if let Some(pushed) = self.pushed() {
            pushed.push(unit);
        }
    }

    /// The source this publisher feeds.
    pub fn source(&self) -> &Arc<MediaSource> {
        &self.source
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(pushed) = self.pushed() {
            pushed.detach();
        }
    }
}

/// Why a TS upload cannot be read on (see [`TsIngest`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MPEG-TS at byte {offset}: {message}")]
pub struct IngestError {
    pub offset: u64,
    pub message: String,
}
