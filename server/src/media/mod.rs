//! Media: the synthetic `fake://` source (H.264 + silent AAC), MPEG-TS packaging and the live
//! HLS segment window. (Stub: being written.)

use std::sync::Arc;

use bytes::Bytes;

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
}

impl MediaSource {
    /// Starts the source for an input URL such as `fake://fake`.
    pub fn start(input: &str) -> Result<Arc<MediaSource>, MediaError> {
        if !input.starts_with("fake://") {
            return Err(MediaError::UnsupportedInput(input.to_string()));
        }
        Ok(Arc::new(MediaSource { input: input.to_string() }))
    }

    pub fn input(&self) -> &str {
        &self.input
    }

    /// The current live window, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        Vec::new()
    }

    /// The bytes of one segment of the window (a complete TS file starting with PAT/PMT and a keyframe).
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let _ = sequence;
        None
    }

    /// An HLS media playlist of the current window; `uri_query` (e.g. `?token=abc`) is appended
    /// to every segment URI, which is `segment-<sequence>.ts`.
    pub fn playlist(&self, uri_query: &str) -> String {
        let _ = uri_query;
        String::from("#EXTM3U\n")
    }

    /// A continuous MPEG-TS feed starting at the newest keyframe, for HTTP MPEG-TS viewers.
    pub fn live_ts(self: &Arc<Self>) -> LiveTs {
        LiveTs { _source: Arc::clone(self) }
    }
}

/// A viewer's position in the continuous TS feed.
#[derive(Debug)]
pub struct LiveTs {
    _source: Arc<MediaSource>,
}

impl LiveTs {
    /// The next chunk of TS bytes, waiting until it exists; `None` when the source has ended.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        None
    }
}
