//! Segments made on demand for a producer that can generate any stretch of stream time.
//!
//! Nothing runs while nobody watches: a segment's bytes are made on its first request and kept
//! while it is retained. Segments are always muxed in sequence order through one [`TsMuxer`],
//! so consecutive segments continue each other's continuity counters; segments nobody asked
//! for before they left the window are skipped, which no viewer can notice.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tokio::time::Instant;

use super::aac::AacConfig;
use super::access_unit::AccessUnit;
use super::segmenter::{Segment, mux_segment};
use super::ts::TsMuxer;
use super::window::{Timeline, Window};

/// Makes the access units whose timestamps fall in a range of stream time (90 kHz ticks).
pub type Producer = fn(Range<u64>) -> Vec<AccessUnit>;

#[derive(Debug)]
pub struct PulledSegments {
    timeline: Timeline,
    producer: Producer,
    /// The timestamp of stream time 0 in the producer's access units.
    pts_offset: u64,
    audio: Option<AacConfig>,
    state: Mutex<PullState>,
}

#[derive(Debug)]
struct PullState {
    muxer: TsMuxer,
    /// The sequence the muxer's counters continue into.
    next_sequence: u64,
    /// Muxed segments still retained, ascending and without gaps from the retained start up to
    /// `next_sequence`.
    cache: VecDeque<Segment>,
}

impl PulledSegments {
    pub fn new(timeline: Timeline, producer: Producer, pts_offset: u64, audio: Option<AacConfig>) -> Self {
        let state = PullState {
            muxer: TsMuxer::new(audio),
            next_sequence: 0,
            cache: VecDeque::new(),
        };
        PulledSegments {
            timeline,
            producer,
            pts_offset,
            audio,
            state: Mutex::new(state),
        }
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub fn window(&self) -> Window {
        self.timeline.window()
    }

    /// The bytes of a retained segment, muxing it (and any older retained segment not yet made)
    /// first; `None` if the segment is not complete yet or no longer retained.
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let retained = self.window().retained();
        if !retained.contains(&sequence) {
            return None;
        }
        // A panic elsewhere while holding the lock cannot leave the cache inconsistent (each
        // push is one step), so a poisoned lock is still good to use.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.cache.front().is_some_and(|s| s.sequence < retained.start) {
            state.cache.pop_front();
        }
        if let Some(found) = state.cache.iter().find(|s| s.sequence == sequence) {
            return Some(found.data.clone());
        }
        if sequence < state.next_sequence {
            // Unreachable while the cache invariant holds; a lone segment with fresh counters is
            // still a valid answer.
            tracing::warn!(sequence, "retained segment missing from cache; muxing it alone");
            return Some(self.mux(&mut TsMuxer::new(self.audio), sequence));
        }
        let first = state.next_sequence.max(retained.start);
        for next in first..=sequence {
            let data = self.mux(&mut state.muxer, next);
            state.cache.push_back(Segment { sequence: next, data });
        }
        state.next_sequence = sequence + 1;
        state.cache.back().map(|s| s.data.clone())
    }

    /// The access units of segment `sequence`, made afresh (the producer is cheap).
    pub fn units(&self, sequence: u64) -> Vec<AccessUnit> {
        (self.producer)(self.timeline.segment_range(sequence))
    }

    /// When stream time reaches a unit's dts: the moment a live encoder would have it.
    pub fn release_at(&self, unit: &AccessUnit) -> Option<Instant> {
        self.timeline.instant_at(unit.dts.saturating_sub(self.pts_offset))
    }

    fn mux(&self, muxer: &mut TsMuxer, sequence: u64) -> Bytes {
        let units = self.units(sequence);
        let data = mux_segment(muxer, &units);
        tracing::trace!(sequence, bytes = data.len(), "segment muxed");
        data
    }
}
