//! The continuous MPEG-TS feed for HTTP MPEG-TS viewers.
//!
//! A viewer is a cursor over the segment sequence: it starts at the newest segment (which
//! starts with PAT, PMT and a keyframe), then sends each segment once it is complete. Since the
//! HTTP body pulls chunks, a slow client simply asks later; when its next segment has left the
//! playlist window it jumps to the newest one, like a live HLS client would.
//!
//! When the stream's input is switched, the feed goes on with the new input's first segment:
//! new PAT/PMT, a keyframe with the new parameter sets, and timestamps that continue forward
//! (a gap shorter than one segment).
//!
//! A jump is a real gap in the timestamps and is left visible: continuity counters are
//! renumbered (see [`ContinuityRewriter`]) but PTS/DTS jump forward. Decoders carry on; ffmpeg
//! only warns ("DTS discontinuity", a warning, not an error) if the gap lands inside its initial
//! stream probing and exceeds 1000 average frame durations (about 21 s for the audio track).

use std::sync::Arc;

use bytes::Bytes;

use super::MediaSource;
use super::ts::ContinuityRewriter;

/// A viewer's position in the continuous TS feed.
#[derive(Debug)]
pub struct LiveTs {
    source: Arc<MediaSource>,
    /// The segment to send next; `None` until the first chunk picked a starting point.
    next: Option<u64>,
    /// Keeps this viewer's continuity counters unbroken across skips.
    continuity: ContinuityRewriter,
}

impl LiveTs {
    pub(super) fn new(source: Arc<MediaSource>) -> Self {
        LiveTs {
            source,
            next: None,
            continuity: ContinuityRewriter::new(),
        }
    }

    /// The next chunk of TS bytes (one segment), waiting until it exists; `None` when the
    /// source has ended (for a `publish://` source: no media for
    /// [`PUSH_IDLE_TIMEOUT`](super::PUSH_IDLE_TIMEOUT); a later call may find a new publication). Cancel-safe: a chunk is only consumed when it is returned, so the
    /// caller may race this against a shutdown signal.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let window = self.source.window();
            let newest = window.newest();
            let next = match (self.next, newest) {
                (None, Some(newest)) => newest,
                (Some(next), Some(newest)) if next < window.listed().start => {
                    tracing::debug!(
                        input = %crate::redact::Url(&self.source.input()),
                        from = next,
                        to = newest,
                        "live TS viewer fell behind the window; skipping ahead"
                    );
                    newest
                }
                (Some(next), _) => next,
                (None, None) => 0,
            };
            self.next = Some(next);
            if newest.is_some_and(|newest| next <= newest) {
                if let Some(data) = self.source.segment(next) {
                    self.next = Some(next + 1);
                    return Some(self.continuity.rewrite(&data));
                }
                // It left the window since `window` was read (look again), or it cannot be
                // had at all (a publisher's segment that was never kept): go past it.
                if next >= self.source.window().listed().start {
                    tracing::debug!(input = %crate::redact::Url(&self.source.input()), sequence = next, "segment missing; skipped");
                    self.next = Some(next + 1);
                }
                continue;
            }
            if self.source.ended() || !self.source.wait_for_segment(next).await {
                return None;
            }
        }
    }
}
