//! Media: the synthetic `fake://` source (H.264 + silent AAC), `publish://` sources fed by a
//! [`Publisher`], MPEG-TS packaging (and reading, [`TsIngest`]) and the live HLS segment window.
//!
//! Producing media and packaging it are kept apart: a producer yields [`AccessUnit`]s, and the
//! segmenter and [`ts::TsMuxer`] turn any such sequence into segments. The `fake://` generator
//! is pulled on demand (see `pull`); publishers (RTMP, RTSP, TS ingest) push into the same
//! packager (see `push`). Viewers read the segments ([`MediaSource::segment`], [`LiveTs`]) or
//! the access units in them ([`AuFeed`]).

pub mod aac;
pub mod access_unit;
pub mod avc;
mod fake;
mod feed;
pub mod h264;
mod live;
mod playlist;
mod pull;
mod push;
mod segmenter;
pub mod ts;
mod window;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use access_unit::{AccessUnit, CLOCK_HZ, Track};
pub use avc::AvcParams;
pub use feed::AuFeed;
pub use live::LiveTs;
pub use push::PUSH_IDLE_TIMEOUT;
pub use ts::TsIngest;

use access_unit::duration_to_ticks;
use pull::PulledSegments;
use push::PushSegments;
use window::{Timeline, Window};

/// Segment duration of a source started with [`MediaSource::start`]; for `publish://` sources
/// the target: segments are cut at the first keyframe after it.
pub const DEFAULT_SEGMENT_DURATION: Duration = Duration::from_secs(1);

/// Width and height of the `fake://` picture.
pub const FAKE_VIDEO_SIZE: (u32, u32) = (fake::WIDTH, fake::HEIGHT);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("unsupported input `{0}`")]
    UnsupportedInput(String),
}

/// One segment of the live window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentInfo {
    pub sequence: u64,
    /// Seconds.
    pub duration: f64,
    /// The segment follows a break (a new publisher, a new track set): EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
}

/// A live stream's media, shared by every viewer of that stream.
#[derive(Debug)]
pub struct MediaSource {
    input: String,
    feed: Feed,
}

/// Where a source's segments come from. A closed set: each kind of input is one variant.
#[derive(Debug)]
enum Feed {
    /// `fake://`: generated on demand from stream time; never ends.
    Fake(PulledSegments),
    /// `publish://`: what the current publisher pushes; stays for the next one. Boxed: its
    /// state is several times the size of the fake's.
    Push(Box<PushSegments>),
}

fn has_scheme(input: &str, scheme: &str) -> bool {
    input
        .get(..scheme.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
}

impl MediaSource {
    /// Starts the source for an input URL such as `fake://fake` or `publish://`, with
    /// [`DEFAULT_SEGMENT_DURATION`].
    pub fn start(input: &str) -> Result<Arc<MediaSource>, MediaError> {
        Self::start_with_segment_duration(input, DEFAULT_SEGMENT_DURATION)
    }

    /// Starts the source with another segment duration (tests and fast conformance runs).
    /// For `fake://` the duration is rounded to whole video frames (100 ms), at least one, so
    /// that every segment starts with a keyframe; for `publish://` it is the target that
    /// segments reach before they are cut at the next keyframe.
    pub fn start_with_segment_duration(
        input: &str,
        segment_duration: Duration,
    ) -> Result<Arc<MediaSource>, MediaError> {
        let feed = if has_scheme(input, "fake://") {
            let frames = (duration_to_ticks(segment_duration) + fake::FRAME_TICKS / 2) / fake::FRAME_TICKS;
            let segment_ticks = frames.max(1) * fake::FRAME_TICKS;
            let timeline = Timeline::start(segment_ticks);
            tracing::debug!(input, segment_ticks, "fake media source started");
            Feed::Fake(PulledSegments::new(
                timeline,
                fake::access_units,
                fake::PTS_OFFSET,
                Some(fake::AUDIO),
            ))
        } else if has_scheme(input, "publish://") {
            tracing::debug!(input, ?segment_duration, "publish media source started");
            Feed::Push(Box::new(PushSegments::new(segment_duration)))
        } else {
            return Err(MediaError::UnsupportedInput(input.to_string()));
        };
        Ok(Arc::new(MediaSource {
            input: input.to_string(),
            feed,
        }))
    }

    pub fn input(&self) -> &str {
        &self.input
    }

    /// The current live window, oldest first. Empty for a `publish://` source until its first
    /// segment is complete.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        match &self.feed {
            Feed::Fake(pulled) => {
                let duration = pulled.timeline().segment_seconds();
                pulled
                    .window()
                    .listed()
                    .map(|sequence| SegmentInfo {
                        sequence,
                        duration,
                        discontinuity: false,
                    })
                    .collect()
            }
            Feed::Push(pushed) => pushed.listed().0,
        }
    }

    /// The bytes of one segment of the window (a complete TS file starting with PAT/PMT and a
    /// keyframe). Segments that recently left the window can still be fetched (RFC 8216 §6.2.2).
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        match &self.feed {
            Feed::Fake(pulled) => pulled.segment(sequence),
            Feed::Push(pushed) => pushed.segment(sequence),
        }
    }

    /// An HLS media playlist of the current window; `uri_query` (e.g. `?token=abc`) is appended
    /// to every segment URI, which is `segment-<sequence>.ts`.
    pub fn playlist(&self, uri_query: &str) -> String {
        let (segments, discontinuity_sequence, min_target) = match &self.feed {
            Feed::Fake(pulled) => (self.segments(), 0, pulled.timeline().segment_seconds().ceil() as u64),
            Feed::Push(pushed) => pushed.listed(),
        };
        playlist::media_playlist(&segments, discontinuity_sequence, min_target, uri_query, self.ended())
    }

    /// A continuous MPEG-TS feed starting at the newest keyframe, for HTTP MPEG-TS viewers.
    pub fn live_ts(self: &Arc<Self>) -> LiveTs {
        LiveTs::new(Arc::clone(self))
    }

    /// Whether the source has stopped producing for good; its window then stays as it was.
    /// Neither kind does today: a `publish://` source waits for its next publisher, so its
    /// playlist never gets EXT-X-ENDLIST (which could not be taken back).
    pub(crate) fn ended(&self) -> bool {
        match &self.feed {
            Feed::Fake(_) | Feed::Push(_) => false,
        }
    }

    fn window(&self) -> Window {
        match &self.feed {
            Feed::Fake(pulled) => pulled.window(),
            Feed::Push(pushed) => pushed.window(),
        }
    }

    /// Waits until segment `sequence` may be complete; `false` if it never will (a
    /// `publish://` source without media for [`PUSH_IDLE_TIMEOUT`]).
    async fn wait_for_segment(&self, sequence: u64) -> bool {
        match &self.feed {
            Feed::Fake(pulled) => {
                let Some(ready) = pulled.timeline().complete_at(sequence) else {
                    tracing::warn!(input = self.input, sequence, "segment time out of range");
                    return false;
                };
                tokio::time::sleep_until(ready).await;
                true
            }
            Feed::Push(pushed) => pushed.wait_for(|state| state.next_sequence() > sequence).await,
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
    /// The codec parameters of the source; `None` parts are not known yet (a publisher that
    /// has not sent its configuration). `fake://`: the parameter sets of its picture and
    /// AAC-LC 48 kHz mono. `publish://`: what the current publisher set, or what was read from
    /// its first keyframe (in-band SPS/PPS) or ADTS-framed audio; reset when a new publisher
    /// attaches.
    pub fn codecs(&self) -> Codecs {
        match &self.feed {
            Feed::Fake(_) => fake::codecs(),
            Feed::Push(pushed) => pushed.codecs(),
        }
    }

    /// Access units in real time, starting at the newest keyframe, for RTMP and RTSP viewers.
    pub fn subscribe(self: &Arc<Self>) -> AuFeed {
        AuFeed::new(Arc::clone(self))
    }

    /// The one publisher of a `publish://` source. After it is dropped, another may attach.
    pub fn publisher(self: &Arc<Self>) -> Result<Publisher, PublishError> {
        match &self.feed {
            Feed::Push(pushed) => {
                pushed.attach()?;
                Ok(Publisher {
                    source: Arc::clone(self),
                })
            }
            Feed::Fake(_) => Err(PublishError::NotPublishable(self.input.clone())),
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
/// new publisher before their feeds end.
#[derive(Debug)]
pub struct Publisher {
    source: Arc<MediaSource>,
}

impl Publisher {
    fn pushed(&self) -> Option<&PushSegments> {
        match &self.source.feed {
            Feed::Push(pushed) => Some(pushed),
            Feed::Fake(_) => None,
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
