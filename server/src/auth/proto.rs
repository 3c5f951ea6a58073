//! Protocol names as the backend sees them (`proto`, table T8).

use std::fmt;

/// The protocol of a play or publish session. The wire names are the vendor's (T8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Hls,
    Dash,
    /// HTTP MPEG-TS.
    Tshttp,
    Rtmp,
    Rtsp,
    /// Management API playback (admin tools).
    Api,
    /// A DVR export downloaded as MP4 (`archive-FROM-DUR.mp4`).
    Mp4,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Hls => "hls",
            Proto::Dash => "dash",
            Proto::Tshttp => "tshttp",
            Proto::Rtmp => "rtmp",
            Proto::Rtsp => "rtsp",
            Proto::Api => "api",
            Proto::Mp4 => "mp4",
        }
    }

    /// Persistent-connection protocols close their session when the connection ends and are
    /// re-checked in the background (SESS-07, TIME-05); the others are re-checked lazily.
    pub fn is_persistent(self) -> bool {
        matches!(self, Proto::Tshttp | Proto::Rtmp | Proto::Rtsp | Proto::Mp4)
    }

    /// The key of this protocol in a stream's `protocols` switch set.
    pub fn switch_name(self) -> Option<&'static str> {
        match self {
            Proto::Hls => Some("hls"),
            Proto::Dash => Some("dash"),
            Proto::Tshttp => Some("mpegts"),
            Proto::Rtmp => Some("rtmp"),
            Proto::Rtsp => Some("rtsp"),
            Proto::Api | Proto::Mp4 => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
