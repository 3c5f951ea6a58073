//! The live window: which segments exist at a given moment, which the playlist lists and which
//! can still be fetched.
//!
//! Segment `k` covers stream time `[k·D, (k+1)·D)` and exists once stream time has passed its
//! end. Everything here is arithmetic on Tokio's clock, so tests drive it with paused time.

use std::ops::Range;
use std::sync::Arc;

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

/// Where segments are cut in stream time (90 kHz ticks, 0 = the first segment's start).
///
/// A closed set: a generated source cuts at a fixed length; a looped file cuts at its own
/// keyframes, the same way on every pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Segment `k` covers `[k·D, (k+1)·D)`.
    Uniform { segment_ticks: u64 },
    /// One pass is cut at `bounds` (`0 = b₀ < b₁ < … < bₘ`, the pass's length); pass `p`
    /// repeats them shifted by `p·bₘ`. Segment `p·m + i` covers `[p·bₘ + bᵢ, p·bₘ + bᵢ₊₁)`.
    Looped { bounds: Arc<[u64]> },
}

impl Schedule {
    pub fn uniform(segment_ticks: u64) -> Schedule {
        Schedule::Uniform {
            segment_ticks: segment_ticks.max(1),
        }
    }

    /// A looped schedule from the segment lengths of one pass; `None` if there are none or one
    /// is 0.
    pub fn looped(lengths: &[u64]) -> Option<Schedule> {
        if lengths.is_empty() || lengths.contains(&0) {
            return None;
        }
        let mut bounds = Vec::with_capacity(lengths.len() + 1);
        bounds.push(0u64);
        for length in lengths {
            let last = *bounds.last()?;
            bounds.push(last.checked_add(*length)?);
        }
        Some(Schedule::Looped { bounds: bounds.into() })
    }

    /// The stream time a segment covers.
    pub fn segment_range(&self, sequence: u64) -> Range<u64> {
        match self {
            Schedule::Uniform { segment_ticks } => {
                let start = sequence.saturating_mul(*segment_ticks);
                start..start.saturating_add(*segment_ticks)
            }
            Schedule::Looped { bounds } => {
                let (per_pass, period) = pass(bounds);
                let pass_start = (sequence / per_pass).saturating_mul(period);
                let i = (sequence % per_pass) as usize;
                pass_start.saturating_add(bounds[i])..pass_start.saturating_add(bounds[i + 1])
            }
        }
    }

    /// How many segments have ended by stream time `ticks`.
    pub fn complete_by(&self, ticks: u64) -> u64 {
        match self {
            Schedule::Uniform { segment_ticks } => ticks / segment_ticks,
            Schedule::Looped { bounds } => {
                let (per_pass, period) = pass(bounds);
                let in_pass = ticks % period;
                let ended = bounds[1..].partition_point(|&b| b <= in_pass) as u64;
                (ticks / period).saturating_mul(per_pass).saturating_add(ended)
            }
        }
    }

    /// The longest segment, in ticks.
    pub fn longest_ticks(&self) -> u64 {
        match self {
            Schedule::Uniform { segment_ticks } => *segment_ticks,
            Schedule::Looped { bounds } => bounds.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(1),
        }
    }
}

/// (segments per pass, ticks per pass) of a looped schedule; the constructor guarantees at
/// least one segment of at least one tick.
fn pass(bounds: &[u64]) -> (u64, u64) {
    let per_pass = (bounds.len() as u64).saturating_sub(1).max(1);
    let period = bounds.last().copied().unwrap_or(1).max(1);
    (per_pass, period)
}

/// The clock of a stream whose segments follow wall time from a start instant.
#[derive(Debug, Clone)]
pub struct Timeline {
    origin: Instant,
    /// Stream time already passed at `origin` (see [`INITIAL_SEGMENTS`]).
    lead_ticks: u64,
    schedule: Schedule,
}

impl Timeline {
    /// A timeline of uniform segments starting now with [`INITIAL_SEGMENTS`] already complete.
    /// `segment_ticks` must not be 0.
    #[cfg(test)]
    pub fn start(segment_ticks: u64) -> Self {
        Self::start_at(Instant::now(), segment_ticks)
    }

    #[cfg(test)]
    pub fn start_at(origin: Instant, segment_ticks: u64) -> Self {
        Self::new(origin, Schedule::uniform(segment_ticks), INITIAL_SEGMENTS)
    }

    /// A timeline whose stream time passes `origin` with `lead_segments` already complete.
    pub fn new(origin: Instant, schedule: Schedule, lead_segments: u64) -> Self {
        let lead_ticks = match lead_segments.checked_sub(1) {
            Some(last) => schedule.segment_range(last).end,
            None => 0,
        };
        Timeline {
            origin,
            lead_ticks,
            schedule,
        }
    }

    /// Segment duration in seconds, as playlists write it; the longest for a looped schedule.
    pub fn segment_seconds(&self) -> f64 {
        self.schedule.longest_ticks() as f64 / CLOCK_HZ as f64
    }

    /// Stream time (90 kHz ticks) at `at`.
    pub fn stream_ticks(&self, at: Instant) -> u64 {
        let since_origin = at.saturating_duration_since(self.origin);
        self.lead_ticks.saturating_add(duration_to_ticks(since_origin))
    }

    pub fn window_at(&self, at: Instant) -> Window {
        Window::with_complete(self.schedule.complete_by(self.stream_ticks(at)))
    }

    pub fn window(&self) -> Window {
        self.window_at(Instant::now())
    }

    /// The stream time a segment covers.
    pub fn segment_range(&self, sequence: u64) -> Range<u64> {
        self.schedule.segment_range(sequence)
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

    #[test]
    fn a_looped_schedule_repeats_its_cuts() {
        let schedule = Schedule::looped(&[10, 20, 5]).expect("valid lengths");
        let ranges: Vec<_> = (0..7).map(|k| schedule.segment_range(k)).collect();
        assert_eq!(ranges, [0..10, 10..30, 30..35, 35..45, 45..65, 65..70, 70..80]);
        for (ticks, complete) in [
            (0, 0),
            (9, 0),
            (10, 1),
            (29, 1),
            (30, 2),
            (35, 3),
            (44, 3),
            (45, 4),
            (70, 6),
        ] {
            assert_eq!(schedule.complete_by(ticks), complete, "at {ticks}");
        }
        assert_eq!(schedule.longest_ticks(), 20);
        assert_eq!(schedule.complete_by(u64::MAX), u64::MAX / 35 * 3 + 1, "no overflow");
        let far = schedule.segment_range(u64::MAX);
        assert!(far.start <= far.end);
        assert_eq!(Schedule::looped(&[]), None);
        assert_eq!(Schedule::looped(&[3, 0]), None);
        assert_eq!(Schedule::looped(&[u64::MAX, 1]), None);
    }

    #[test]
    fn every_segment_completes_exactly_at_its_end() {
        let schedule = Schedule::looped(&[7, 1, 12]).expect("valid lengths");
        for sequence in 0..50 {
            let range = schedule.segment_range(sequence);
            assert_eq!(schedule.complete_by(range.end), sequence + 1);
            assert_eq!(schedule.complete_by(range.end - 1), sequence);
        }
    }
}
