//! Media: the synthetic `fake://` source (H.264 + silent AAC), MPEG-TS packaging and the live
//! HLS segment window.
//!
//! Producing media and packaging it are kept apart: a producer yields [`AccessUnit`]s, and the
//! segmenter and [`ts::TsMuxer`] turn any such sequence into segments. Today the only producer
//! is the `fake://` generator, pulled on demand (see `pull`); publishers (RTMP, TS ingest) will
//! feed the same packager.

pub mod aac;
pub mod access_unit;
mod fake;
pub mod h264;
mod live;
mod playlist;
mod pull;
mod segmenter;
pub mod ts;
mod window;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

pub use access_unit::{AccessUnit, CLOCK_HZ, Track};
pub use live::LiveTs;

use access_unit::duration_to_ticks;
use pull::PulledSegments;
use window::{Timeline, Window};

/// Segment duration of a source started with [`MediaSource::start`].
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
}

impl MediaSource {
    /// Starts the source for an input URL such as `fake://fake`, with
    /// [`DEFAULT_SEGMENT_DURATION`].
    pub fn start(input: &str) -> Result<Arc<MediaSource>, MediaError> {
        Self::start_with_segment_duration(input, DEFAULT_SEGMENT_DURATION)
    }

    /// Starts the source with another segment duration (tests and fast conformance runs).
    /// The duration is rounded to whole video frames (100 ms), at least one, so that every
    /// segment starts with a keyframe.
    pub fn start_with_segment_duration(
        input: &str,
        segment_duration: Duration,
    ) -> Result<Arc<MediaSource>, MediaError> {
        let is_fake = input
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("fake://"));
        if !is_fake {
            return Err(MediaError::UnsupportedInput(input.to_string()));
        }
        let frames = (duration_to_ticks(segment_duration) + fake::FRAME_TICKS / 2) / fake::FRAME_TICKS;
        let segment_ticks = frames.max(1) * fake::FRAME_TICKS;
        let timeline = Timeline::start(segment_ticks);
        tracing::debug!(input, segment_ticks, "fake media source started");
        let segments = PulledSegments::new(timeline, fake::access_units, Some(fake::AUDIO));
        Ok(Arc::new(MediaSource {
            input: input.to_string(),
            feed: Feed::Fake(segments),
        }))
    }

    pub fn input(&self) -> &str {
        &self.input
    }

    /// The current live window, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        match &self.feed {
            Feed::Fake(pulled) => {
                let duration = pulled.timeline().segment_seconds();
                pulled
                    .window()
                    .listed()
                    .map(|sequence| SegmentInfo { sequence, duration })
                    .collect()
            }
        }
    }

    /// The bytes of one segment of the window (a complete TS file starting with PAT/PMT and a
    /// keyframe). Segments that recently left the window can still be fetched (RFC 8216 §6.2.2).
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        match &self.feed {
            Feed::Fake(pulled) => pulled.segment(sequence),
        }
    }

    /// An HLS media playlist of the current window; `uri_query` (e.g. `?token=abc`) is appended
    /// to every segment URI, which is `segment-<sequence>.ts`.
    pub fn playlist(&self, uri_query: &str) -> String {
        playlist::media_playlist(&self.segments(), uri_query, self.ended())
    }

    /// A continuous MPEG-TS feed starting at the newest keyframe, for HTTP MPEG-TS viewers.
    pub fn live_ts(self: &Arc<Self>) -> LiveTs {
        LiveTs::new(Arc::clone(self))
    }

    /// Whether the source has stopped producing; its window then stays as it was.
    pub(crate) fn ended(&self) -> bool {
        match &self.feed {
            Feed::Fake(_) => false,
        }
    }

    fn window(&self) -> Window {
        match &self.feed {
            Feed::Fake(pulled) => pulled.window(),
        }
    }

    /// When segment `sequence` will be complete.
    fn complete_at(&self, sequence: u64) -> Option<Instant> {
        match &self.feed {
            Feed::Fake(pulled) => pulled.timeline().complete_at(sequence),
        }
    }
}

#[cfg(test)]
mod tests;

// ---- Interface for publishers and per-access-unit viewers (RTMP, RTSP, TS ingest). ----
// STUB: signatures fixed by the lead; bodies are being written in the media module.

/// H.264 parameter sets of a video track (raw NAL units, no start codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcParams {
    pub sps: Bytes,
    pub pps: Bytes,
}

/// What a protocol must announce before the first access unit (RTMP sequence headers, SDP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Codecs {
    pub video: Option<AvcParams>,
    pub audio: Option<aac::AacConfig>,
}

impl MediaSource {
    /// The codec parameters of the source; `None` parts are not known yet (a publisher that
    /// has not sent its configuration).
    pub fn codecs(&self) -> Codecs {
        Codecs::default()
    }

    /// Access units in real time, starting at the newest keyframe, for RTMP and RTSP viewers.
    pub fn subscribe(self: &Arc<Self>) -> AuFeed {
        AuFeed { _source: Arc::clone(self) }
    }

    /// The one publisher of a `publish://` source.
    pub fn publisher(self: &Arc<Self>) -> Result<Publisher, PublishError> {
        Err(PublishError::NotPublishable(self.input.clone()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("input `{0}` does not take publishers (only publish:// does)")]
    NotPublishable(String),
    #[error("a publisher is already sending to this stream")]
    Busy,
}

/// A viewer's position in the access-unit feed. Cancel-safe.
#[derive(Debug)]
pub struct AuFeed {
    _source: Arc<MediaSource>,
}

impl AuFeed {
    /// The next access unit (video and audio interleaved in decoding order), waiting for it;
    /// `None` when the source has ended.
    pub async fn next(&mut self) -> Option<AccessUnit> {
        None
    }
}

/// The sending side of a `publish://` source. Dropping it ends the publication.
#[derive(Debug)]
pub struct Publisher {
    _source: Arc<MediaSource>,
}

impl Publisher {
    /// Sets (or changes) the codec parameters; video access units after it use them.
    pub fn set_codecs(&mut self, codecs: Codecs) {
        let _ = codecs;
    }

    /// Adds one access unit (Annex B video / raw AAC audio, as [`AccessUnit`] documents).
    pub fn push(&mut self, unit: AccessUnit) {
        let _ = unit;
    }
}

/// Reads an MPEG-TS byte stream (HTTP MPEG-TS ingest) into access units. STUB.
#[derive(Debug, Default)]
pub struct TsIngest {
    codecs: Codecs,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MPEG-TS at byte {offset}: {message}")]
pub struct IngestError {
    pub offset: u64,
    pub message: String,
}

impl TsIngest {
    pub fn new() -> TsIngest {
        TsIngest::default()
    }

    /// Feeds bytes in any split; returns the access units completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<AccessUnit>, IngestError> {
        let _ = bytes;
        Ok(Vec::new())
    }

    /// The codec parameters seen so far (SPS/PPS from the video, the AAC config from ADTS).
    pub fn codecs(&self) -> &Codecs {
        &self.codecs
    }
}
