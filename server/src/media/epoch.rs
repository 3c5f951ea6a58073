//! One input's stretch of a [`MediaSource`](super::MediaSource)'s life.
//!
//! A source's input can be switched while viewers watch (a backend's `config` override,
//! CONF-01/03). Each input gets an [`Epoch`]: its own feed (pulled or pushed, with its own
//! local segment numbers from 0) mapped onto the source's one sequence of segment numbers at
//! `first`. Switching ends the current epoch at the number of segments it completed and starts
//! the next one there, so the global numbering, the HLS media sequence and every viewer's
//! cursor run on unbroken:
//!
//! ```text
//!   global:   0 1 2 3 4 5 | 6 7 8 9 …          (6 carries EXT-X-DISCONTINUITY)
//!   epoch 0:  0 1 2 3 4 5 | (6, cut short, is never listed)
//!   epoch 1:              | 0 1 2 3 …          first = 6
//! ```
//!
//! The new epoch's timestamps start where the old clock stood at the switch, so timestamps keep
//! increasing for everyone: segment viewers see a forward gap shorter than one segment, access
//! unit viewers (RTMP, RTSP) see none.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::access_unit::{CLOCK_HZ, duration_to_ticks};
use super::file::FileMedia;
use super::pull::{Producer, PulledSegments};
use super::push::PushSegments;
use super::window::{INITIAL_SEGMENTS, Schedule, Timeline};
use super::{Codecs, fake};

/// Where a source's segments come from. A closed set: each kind of input is one variant.
#[derive(Debug)]
pub enum Feed {
    /// `fake://` and `file://`: generated on demand from stream time; never ends.
    Pulled(PulledSegments),
    /// `publish://`: what the current publisher pushes; stays for the next one. Boxed: its
    /// state is several times the size of the pulled one's.
    Push(Box<PushSegments>),
}

/// An input that was read and checked, ready to start a source or to switch one to.
#[derive(Debug, Clone)]
pub struct PreparedInput {
    pub(super) input: String,
    pub(super) kind: InputKind,
}

#[derive(Debug, Clone)]
pub(super) enum InputKind {
    Fake,
    Publish,
    File(Arc<FileMedia>),
}

impl PreparedInput {
    /// The input URL as configured.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl Feed {
    /// The feed of a prepared input whose stream time starts passing at `origin`, with
    /// `lead_segments` pretended already complete, timestamps moved `shift` ticks later
    /// (pulled) or starting at `push_start` (pushed).
    pub(super) fn new(
        kind: &InputKind,
        segment_duration: Duration,
        origin: Instant,
        lead_segments: u64,
        shift: u64,
        push_start: Option<u64>,
    ) -> Feed {
        match kind {
            InputKind::Fake => {
                let frames = (duration_to_ticks(segment_duration) + fake::FRAME_TICKS / 2) / fake::FRAME_TICKS;
                let segment_ticks = frames.max(1) * fake::FRAME_TICKS;
                let timeline = Timeline::new(origin, Schedule::uniform(segment_ticks), lead_segments);
                Feed::Pulled(PulledSegments::new(timeline, Producer::Fake, shift))
            }
            InputKind::File(file) => {
                let timeline = Timeline::new(origin, file.schedule(), lead_segments);
                Feed::Pulled(PulledSegments::new(timeline, Producer::File(file.clone()), shift))
            }
            InputKind::Publish => Feed::Push(Box::new(match push_start {
                Some(start) => PushSegments::starting_at(segment_duration, start),
                None => PushSegments::new(segment_duration),
            })),
        }
    }

    /// The feed of the first input of a source: a pulled one already has
    /// [`INITIAL_SEGMENTS`] to show.
    pub(super) fn first(kind: &InputKind, segment_duration: Duration) -> Feed {
        Feed::new(kind, segment_duration, Instant::now(), INITIAL_SEGMENTS, 0, None)
    }

    /// Segments complete so far (local numbers below this exist or existed).
    pub fn complete(&self) -> u64 {
        match self {
            Feed::Pulled(pulled) => pulled.window().newest().map_or(0, |n| n + 1),
            Feed::Push(pushed) => pushed.window().newest().map_or(0, |n| n + 1),
        }
    }

    /// The timestamp this feed's clock stands at: where a successor continues.
    pub fn now_ticks(&self, now: Instant) -> u64 {
        match self {
            Feed::Pulled(pulled) => pulled.pts_at(pulled.timeline().stream_ticks(now)),
            Feed::Push(pushed) => pushed.next_ticks(),
        }
    }

    pub fn codecs(&self) -> Codecs {
        match self {
            Feed::Pulled(pulled) => pulled.codecs(),
            Feed::Push(pushed) => pushed.codecs(),
        }
    }

    pub fn segment(&self, local: u64) -> Option<Bytes> {
        match self {
            Feed::Pulled(pulled) => pulled.segment(local),
            Feed::Push(pushed) => pushed.segment(local),
        }
    }

    /// (duration in seconds, EXT-X-DISCONTINUITY of its own, the feed's own tags through it)
    /// of a complete segment.
    pub fn segment_info(&self, local: u64) -> Option<(f64, bool, u64)> {
        match self {
            Feed::Pulled(pulled) => {
                let range = pulled.timeline().segment_range(local);
                Some(((range.end - range.start) as f64 / CLOCK_HZ as f64, false, 0))
            }
            Feed::Push(pushed) => pushed.segment_info(local),
        }
    }

    /// The target duration this feed needs, in whole seconds.
    pub fn target_seconds(&self) -> u64 {
        match self {
            Feed::Pulled(pulled) => (pulled.timeline().segment_seconds().ceil() as u64).max(1),
            Feed::Push(pushed) => pushed.target_seconds(),
        }
    }

    /// Waits until local segment `local` may be complete; `false` if it never will (a
    /// `publish://` feed without media for [`PUSH_IDLE_TIMEOUT`](super::PUSH_IDLE_TIMEOUT)).
    pub async fn wait_for_segment(&self, local: u64, input: &str) -> bool {
        match self {
            Feed::Pulled(pulled) => {
                let Some(ready) = pulled.timeline().complete_at(local) else {
                    tracing::warn!(input = %crate::redact::Url(input), local, "segment time out of range");
                    return false;
                };
                tokio::time::sleep_until(ready).await;
                true
            }
            Feed::Push(pushed) => pushed.wait_for(|state| state.next_sequence() > local).await,
        }
    }
}

/// One input's part of a source's life (see the module documentation).
pub struct Epoch {
    pub input: String,
    pub feed: Feed,
    /// The global number of this epoch's local segment 0.
    pub first: u64,
    /// EXT-X-DISCONTINUITY tags of the segments before `first`.
    pub tags_before: u64,
    /// The first segment follows another input's: it carries a tag.
    pub tagged: bool,
    /// Set once, when the input is switched: the global number where this epoch ends (its
    /// segments from there on are never shown) and the epoch that follows.
    next: OnceLock<(u64, Arc<Epoch>)>,
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the successor: a chain of them would print the source's whole history.
        f.debug_struct("Epoch")
            .field("input", &self.input)
            .field("first", &self.first)
            .field("end", &self.end())
            .field("feed", &self.feed)
            .finish()
    }
}

impl Epoch {
    pub fn new(input: String, feed: Feed, first: u64, tags_before: u64, tagged: bool) -> Epoch {
        Epoch {
            input,
            feed,
            first,
            tags_before,
            tagged,
            next: OnceLock::new(),
        }
    }

    /// The global end, once switched away from.
    pub fn end(&self) -> Option<u64> {
        self.next.get().map(|(end, _)| *end)
    }

    /// The local number where this epoch stops, once switched away from.
    pub fn local_end(&self) -> Option<u64> {
        self.end().map(|end| end - self.first)
    }

    pub fn successor(&self) -> Option<&Arc<Epoch>> {
        self.next.get().map(|(_, next)| next)
    }

    /// Ends this epoch at global `end` and names its successor. Only the first call counts.
    pub fn replace(&self, end: u64, next: Arc<Epoch>) {
        if self.next.set((end, next)).is_err() {
            tracing::warn!(
                input = %crate::redact::Url(&self.input),
                "an epoch was replaced twice; the second switch is ignored"
            );
        }
    }

    /// Global segments complete in this epoch, stopping at its end.
    pub fn global_complete(&self) -> u64 {
        let complete = self.first.saturating_add(self.feed.complete());
        self.end().map_or(complete, |end| complete.min(end))
    }

    /// Whether global segment `sequence` is one of this epoch's complete ones.
    pub fn holds(&self, sequence: u64) -> bool {
        sequence >= self.first && sequence < self.global_complete()
    }

    /// Discontinuity tags up to and including global segment `sequence` of this epoch.
    pub fn tags_through(&self, sequence: u64) -> u64 {
        let local = sequence - self.first;
        let own = self.feed.segment_info(local).map_or(0, |(_, _, tags)| tags);
        self.tags_before + u64::from(self.tagged) + own
    }
}
