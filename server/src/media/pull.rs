//! Segments made on demand for a producer that can generate any stretch of stream time: the
//! `fake://` generator, or a `file://` input looped over and over.
//!
//! Nothing runs while nobody watches: a segment's bytes are made on its first request and kept
//! while it is retained. Segments are always muxed in sequence order through one [`TsMuxer`],
//! so consecutive segments continue each other's continuity counters; segments nobody asked
//! for before they left the window are skipped, which no viewer can notice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::time::Instant;

use super::access_unit::AccessUnit;
use super::file::FileMedia;
use super::segmenter::{Segment, live_bytes, mux_segment};
use super::ts::TsMuxer;
use super::window::{Timeline, Window};
use super::{Codecs, fake};

/// What makes the access units of a segment. Both present stream time `t` at timestamp
/// `t + fake::PTS_OFFSET`.
#[derive(Debug, Clone)]
pub enum Producer {
    /// The `fake://` generator: a pure function of stream time.
    Fake,
    /// A file read once and cut at its keyframes; pass `p` is the file again, `p` file lengths
    /// later.
    File(Arc<FileMedia>),
}

impl Producer {
    pub fn codecs(&self) -> Codecs {
        match self {
            Producer::Fake => fake::codecs(),
            Producer::File(file) => file.codecs().clone(),
        }
    }

    fn units(&self, timeline: &Timeline, sequence: u64) -> Vec<AccessUnit> {
        match self {
            Producer::Fake => fake::access_units(timeline.segment_range(sequence)),
            Producer::File(file) => file.units(sequence),
        }
    }
}

#[derive(Debug)]
pub struct PulledSegments {
    timeline: Timeline,
    producer: Producer,
    /// The timestamp of stream time 0 in the units handed out: the producer's own offset plus
    /// `shift`.
    pts_offset: u64,
    /// Added to every timestamp the producer makes, so that a source that replaced another
    /// continues its timestamps (see `switch`).
    shift: u64,
    tracks: Codecs,
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
    /// Segments of `producer` on `timeline`, every timestamp moved `shift` ticks later.
    pub fn new(timeline: Timeline, producer: Producer, shift: u64) -> Self {
        let tracks = producer.codecs();
        let state = PullState {
            muxer: muxer_for(&tracks),
            next_sequence: 0,
            cache: VecDeque::new(),
        };
        PulledSegments {
            timeline,
            producer,
            pts_offset: fake::PTS_OFFSET.saturating_add(shift),
            shift,
            tracks,
            state: Mutex::new(state),
        }
    }

    pub fn codecs(&self) -> Codecs {
        self.tracks.clone()
    }

    /// The timestamp at which stream time `ticks` is presented.
    pub fn pts_at(&self, ticks: u64) -> u64 {
        ticks.saturating_add(self.pts_offset)
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
            return Some(self.mux(&mut muxer_for(&self.tracks), sequence));
        }
        let first = state.next_sequence.max(retained.start);
        for next in first..=sequence {
            let data = live_bytes(self.mux(&mut state.muxer, next));
            state.cache.push_back(Segment { sequence: next, data });
        }
        state.next_sequence = sequence + 1;
        state.cache.back().map(|s| s.data.clone())
    }

    /// The access units of segment `sequence`, made afresh (the producer is cheap).
    pub fn units(&self, sequence: u64) -> Vec<AccessUnit> {
        let mut units = self.producer.units(&self.timeline, sequence);
        if self.shift > 0 {
            for unit in &mut units {
                unit.pts = unit.pts.saturating_add(self.shift);
                unit.dts = unit.dts.saturating_add(self.shift);
            }
        }
        units
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

fn muxer_for(tracks: &Codecs) -> TsMuxer {
    TsMuxer::with_tracks(tracks.video.is_some(), tracks.audio)
}
