//! The live window: which segments exist at a given moment, which the playlist lists and which
//! can still be fetched.
//!
//! Segment `k` covers stream time `[k·D, (k+1)·D)` and exists once stream time has passed its
//! end. Everything here is arithmetic on Tokio's clock, so tests drive it with paused time.

use std::ops::Range;

use tokio::time::Instant;

use super::access_unit::{CLOCK_HZ, duration_to_ticks, ticks_to_duration};

/// Segments a new stream pretends to have already produced, so that its first viewer gets a
/// playable playlist at once instead of waiting three segment durations.
pub const INITIAL_SEGMENTS: u64 = 3;

/// Segments listed in the playlist once the stream has run long enough. RFC 8216 §6.2.2: a live
/// playlist must not be shorter than three target durations; five leaves slack for clients that
/// start a few segments from the end.
pub const PLAYLIST_SEGMENTS: u64 = 5;

/// Segments that stay fetchable. RFC 8216 §6.2.2: a segment removed from the playlist must stay
/// available for its own duration plus that of the longest playlist that listed it.
pub const RETAINED_SEGMENTS: u64 = PLAYLIST_SEGMENTS + 1 + PLAYLIST_SEGMENTS;

/// The state of the window at one moment: how many segments are complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    complete: u64,
}

impl Window {
    pub fn with_complete(complete: u64) -> Self {
        Window { complete }
    }

    /// The newest complete segment.
    pub fn newest(&self) -> Option<u64> {
        self.complete.checked_sub(1)
    }

    /// Sequence numbers the playlist lists, oldest first.
    pub fn listed(&self) -> Range<u64> {
        self.complete.saturating_sub(PLAYLIST_SEGMENTS)..self.complete
    }

    /// Sequence numbers that can be fetched: the listed ones and those that left recently.
    pub fn retained(&self) -> Range<u64> {
        self.complete.saturating_sub(RETAINED_SEGMENTS)..self.complete
    }
}

/// The clock of a stream whose segments follow wall time from a start instant.
#[derive(Debug, Clone)]
pub struct Timeline {
    origin: Instant,
    /// Stream time already passed at `origin` (see [`INITIAL_SEGMENTS`]).
    lead_ticks: u64,
    segment_ticks: u64,
}

impl Timeline {
    /// A timeline starting now with [`INITIAL_SEGMENTS`] already complete.
    /// `segment_ticks` must not be 0.
    pub fn start(segment_ticks: u64) -> Self {
        Self::start_at(Instant::now(), segment_ticks)
    }

    pub fn start_at(origin: Instant, segment_ticks: u64) -> Self {
        let segment_ticks = segment_ticks.max(1);
        Timeline {
            origin,
            lead_ticks: INITIAL_SEGMENTS * segment_ticks,
            segment_ticks,
        }
    }

    /// Segment duration in seconds, as playlists write it.
    pub fn segment_seconds(&self) -> f64 {
        self.segment_ticks as f64 / CLOCK_HZ as f64
    }

    /// Stream time (90 kHz ticks) at `at`.
    pub fn stream_ticks(&self, at: Instant) -> u64 {
        let since_origin = at.saturating_duration_since(self.origin);
        self.lead_ticks.saturating_add(duration_to_ticks(since_origin))
    }

    pub fn window_at(&self, at: Instant) -> Window {
        Window::with_complete(self.stream_ticks(at) / self.segment_ticks)
    }

    pub fn window(&self) -> Window {
        self.window_at(Instant::now())
    }

    /// The stream time a segment covers.
    pub fn segment_range(&self, sequence: u64) -> Range<u64> {
        let start = sequence.saturating_mul(self.segment_ticks);
        start..start.saturating_add(self.segment_ticks)
    }

    /// The first instant at which stream time has reached `ticks`; `None` if that is beyond
    /// what the clock can represent.
    pub fn instant_at(&self, ticks: u64) -> Option<Instant> {
        // Rounded up, so that `stream_ticks` of the result is at least `ticks`.
        self.origin
            .checked_add(ticks_to_duration(ticks.saturating_sub(self.lead_ticks)))
    }

    /// The first instant at which `sequence` is complete; `None` if that is beyond what the
    /// clock can represent.
    pub fn complete_at(&self, sequence: u64) -> Option<Instant> {
        self.instant_at(self.segment_range(sequence).end)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn window_ranges_grow_then_slide() {
        let window = Window::with_complete(3);
        assert_eq!(window.newest(), Some(2));
        assert_eq!(window.listed(), 0..3);
        assert_eq!(window.retained(), 0..3);

        let window = Window::with_complete(20);
        assert_eq!(window.listed(), 15..20);
        assert_eq!(window.retained(), 9..20);

        assert_eq!(Window::with_complete(0).newest(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn segments_complete_on_their_boundaries() {
        let timeline = Timeline::start(CLOCK_HZ);
        assert_eq!(timeline.window(), Window::with_complete(3), "three segments at once");

        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(timeline.window(), Window::with_complete(3));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(timeline.window(), Window::with_complete(4));

        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(timeline.window().listed(), 59..64);
    }

    #[tokio::test(start_paused = true)]
    async fn complete_at_is_the_boundary() {
        let timeline = Timeline::start(CLOCK_HZ / 3);
        for sequence in 0..10 {
            let at = timeline.complete_at(sequence).expect("representable");
            assert!(timeline.window_at(at).newest() >= Some(sequence), "{sequence}");
            let just_before = at.checked_sub(Duration::from_nanos(1)).expect("after origin");
            if sequence >= INITIAL_SEGMENTS {
                assert!(timeline.window_at(just_before).newest() < Some(sequence), "{sequence}");
            }
        }
    }
}
