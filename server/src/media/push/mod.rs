//! `publish://` sources: segments made from what a publisher pushes.
//!
//! There is no clock here but the publisher's: a segment is complete when the unit that starts
//! the next one arrives (a video keyframe once the target duration has passed; for audio-only
//! streams, the first frame past it), or when the publisher leaves. Each segment is muxed as its
//! units arrive, through one [`TsMuxer`] for the life of the source, so consecutive segments
//! continue each other's continuity counters like the pulled ones do.
//!
//! Viewers wait on a [`watch`] channel that is bumped on every change; nothing runs in the
//! background, so a source without publisher or viewers costs only its retained segments.
//!
//! ```text
//!   (no publisher) --publisher()--> Publishing --Publisher dropped--> (no publisher) ...
//!                                   |  units before the first keyframe: audio waits in
//!                                   |  `pending`, video is dropped
//!                                   v
//!                        open segment --cut--> complete segment (window, LiveTs, AuFeed)
//! ```
//!
//! A publisher that leaves ends its publication, not the source: the open segment is completed,
//! the window stays as it is, and a later publisher continues the same sequence numbers and
//! timeline (see [`timestamps`]), its first segment marked with EXT-X-DISCONTINUITY. Viewers
//! waiting for media give up after [`PUSH_IDLE_TIMEOUT`] without any.

mod timestamps;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::aac::AdtsHeader;
use super::access_unit::{AccessUnit, Track, duration_to_ticks};
use super::avc::AvcParams;
use super::h264::{self, nal_type};
use super::ts::{PACKET_SIZE, TsMuxer};
use super::window::Window;
use super::{Codecs, PublishError};
use timestamps::Timestamps;

/// How long a viewer waits for media from a `publish://` source before its feed ends: with a
/// publisher attached but silent, or none attached (it left, or never came).
pub const PUSH_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A segment of a video stream that found no keyframe for this many target durations is cut
/// anyway, so that a publisher without keyframes cannot grow one segment without bound.
const MAX_SEGMENT_TARGETS: u64 = 10;

/// The segments of a `publish://` source and the publication feeding them.
#[derive(Debug)]
pub struct PushSegments {
    target_ticks: u64,
    state: Mutex<PushState>,
    /// Bumped on every change viewers may wait for: a unit, a segment, a publisher coming or
    /// going.
    changes: watch::Sender<u64>,
}

#[derive(Debug)]
pub struct PushState {
    codecs: Codecs,
    publishing: bool,
    /// When the last access unit was accepted, or a publisher came or went.
    last_activity: Instant,
    timestamps: Timestamps,
    /// A video unit was seen in the publication in progress.
    video_seen: bool,
    /// Audio received before the publication's first keyframe, waiting to see whether video
    /// comes.
    pending_audio: VecDeque<AccessUnit>,
    open: Option<OpenSegment>,
    muxer: TsMuxer,
    /// The next segment to complete gets this sequence number.
    next_sequence: u64,
    /// Completed segments still retained, ascending and without gaps.
    segments: VecDeque<PushedSegment>,
    /// EXT-X-DISCONTINUITY tags so far, to number discontinuities (RFC 8216 §4.3.3.3).
    discontinuities: u64,
    /// The next segment to open starts a new publication.
    publication_break: bool,
    /// (video, audio) of the last completed segment.
    last_tracks: Option<(bool, bool)>,
    /// The longest segment so far: the playlist's target duration never shrinks (§4.3.3.1).
    longest_ticks: u64,
}

/// The segment being filled. Its tables are written when it completes, so that an audio track
/// whose configuration arrives after the segment opened can still be announced in it.
#[derive(Debug)]
struct OpenSegment {
    start_dts: u64,
    /// Where the segment ends if nothing follows: the latest dts plus a frame.
    end_ticks: u64,
    video: bool,
    audio: bool,
    /// The first segment of a publication after another one.
    publication_break: bool,
    units: Vec<AccessUnit>,
    /// The PES packets of `units`.
    body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PushedSegment {
    pub sequence: u64,
    pub duration_ticks: u64,
    pub discontinuity: bool,
    /// Discontinuity tags up to and including this segment's.
    pub discontinuities_through: u64,
    pub data: Bytes,
    /// The access units muxed into `data`, in the order they were pushed.
    pub units: Arc<[AccessUnit]>,
}

/// Where a viewer's (segment, index) position stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Unit(AccessUnit),
    /// Past the last unit of a complete segment: go on with the next.
    EndOfSegment,
    /// Not pushed yet.
    NotYet,
    /// The segment left the playlist window.
    Behind,
}

impl PushSegments {
    pub fn new(target: Duration) -> Self {
        Self::with_timestamps(target, Timestamps::default())
    }

    /// A source whose first publication's timestamps start at `start` (90 kHz), continuing a
    /// source it replaced.
    pub fn starting_at(target: Duration, start: u64) -> Self {
        Self::with_timestamps(target, Timestamps::starting_at(start))
    }

    fn with_timestamps(target: Duration, timestamps: Timestamps) -> Self {
        let state = PushState {
            codecs: Codecs::default(),
            publishing: false,
            last_activity: Instant::now(),
            timestamps,
            video_seen: false,
            pending_audio: VecDeque::new(),
            open: None,
            muxer: TsMuxer::with_tracks(true, None),
            next_sequence: 0,
            segments: VecDeque::new(),
            discontinuities: 0,
            publication_break: false,
            last_tracks: None,
            longest_ticks: 0,
        };
        PushSegments {
            target_ticks: duration_to_ticks(target).max(1),
            state: Mutex::new(state),
            changes: watch::Sender::new(0),
        }
    }

    /// Each change is one step under the lock, so a panic elsewhere cannot leave the state half
    /// changed: a poisoned lock is still good to use.
    fn lock(&self) -> MutexGuard<'_, PushState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts a publication, unless one is in progress.
    pub fn attach(&self) -> Result<(), PublishError> {
        {
            let mut state = self.lock();
            if state.publishing {
                return Err(PublishError::Busy);
            }
            state.publishing = true;
            state.last_activity = Instant::now();
            state.codecs = Codecs::default();
            state.timestamps.new_publication();
            state.video_seen = false;
            state.pending_audio.clear();
            state.publication_break = state.next_sequence > 0 || state.open.is_some();
        }
        tracing::debug!("publisher attached");
        self.changed();
        Ok(())
    }

    /// Ends the publication in progress: its open segment is completed.
    pub fn detach(&self) {
        {
            let mut state = self.lock();
            state.complete_open(None);
            state.pending_audio.clear();
            state.publishing = false;
            state.last_activity = Instant::now();
        }
        tracing::debug!("publisher left");
        self.changed();
    }

    pub fn codecs(&self) -> Codecs {
        self.lock().codecs.clone()
    }

    pub fn set_codecs(&self, codecs: Codecs) {
        let mut state = self.lock();
        if let (Some(open), Some(audio)) = (&state.open, codecs.audio)
            && open.audio
        {
            let video = open.video;
            state.muxer.set_tracks(video, Some(audio));
        }
        state.codecs = codecs;
    }

    pub fn push(&self, unit: AccessUnit) {
        {
            let mut state = self.lock();
            if !state.publishing {
                tracing::debug!("access unit without a publication dropped");
                return;
            }
            let Some(unit) = state.prepare(unit) else {
                return;
            };
            state.last_activity = Instant::now();
            state.place(unit, self.target_ticks);
        }
        self.changed();
    }

    pub fn window(&self) -> Window {
        Window::with_complete(self.lock().next_sequence)
    }

    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let state = self.lock();
        state.find(sequence).map(|s| s.data.clone())
    }

    /// A retained segment's duration in seconds, whether it carries EXT-X-DISCONTINUITY, and
    /// the discontinuity tags up to and including its own.
    pub fn segment_info(&self, sequence: u64) -> Option<(f64, bool, u64)> {
        let state = self.lock();
        state.find(sequence).map(|s| {
            (
                ticks_to_seconds(s.duration_ticks),
                s.discontinuity,
                s.discontinuities_through,
            )
        })
    }

    /// The target duration the playlist announces, in whole seconds.
    pub fn target_seconds(&self) -> u64 {
        ticks_to_seconds(self.lock().longest_ticks).ceil().max(1.0) as u64
    }

    /// Where the next unit would land on this source's clock (90 kHz).
    pub fn next_ticks(&self) -> u64 {
        self.lock().timestamps.next_ticks()
    }

    /// Where a new viewer of access units starts: the open segment, which starts with the newest
    /// keyframe at a segment boundary, or else the newest complete one.
    pub fn start_position(&self) -> Option<u64> {
        let state = self.lock();
        if state.open.as_ref().is_some_and(|open| !open.units.is_empty()) {
            Some(state.next_sequence)
        } else {
            state.segments.back().map(|s| s.sequence)
        }
    }

    pub fn lookup(&self, sequence: u64, index: usize) -> Lookup {
        self.lock().lookup(sequence, index)
    }

    /// Waits until `ready` holds; `false` once [`PUSH_IDLE_TIMEOUT`] passed without activity.
    /// Cancel-safe: nothing is consumed.
    pub async fn wait_for(&self, ready: impl Fn(&PushState) -> bool) -> bool {
        loop {
            // Subscribed before looking, so a change made after the look wakes us.
            let mut changes = self.changes.subscribe();
            let deadline = {
                let state = self.lock();
                if ready(&state) {
                    return true;
                }
                state.last_activity + PUSH_IDLE_TIMEOUT
            };
            if Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / super::CLOCK_HZ as f64
}

impl PushState {
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    fn find(&self, sequence: u64) -> Option<&PushedSegment> {
        let first = self.segments.front()?.sequence;
        self.segments.get(usize::try_from(sequence.checked_sub(first)?).ok()?)
    }

    /// Whether the unit at (segment, index) exists (complete or open segment).
    pub fn has_unit(&self, sequence: u64, index: usize) -> bool {
        if sequence == self.next_sequence {
            return self.open.as_ref().is_some_and(|open| index < open.units.len());
        }
        self.find(sequence).is_some_and(|segment| index < segment.units.len())
    }

    pub fn lookup(&self, sequence: u64, index: usize) -> Lookup {
        if sequence >= self.next_sequence {
            let open = self.open.as_ref().filter(|_| sequence == self.next_sequence);
            return match open.and_then(|open| open.units.get(index)) {
                Some(unit) => Lookup::Unit(unit.clone()),
                None => Lookup::NotYet,
            };
        }
        if sequence < Window::with_complete(self.next_sequence).listed().start {
            return Lookup::Behind;
        }
        match self.find(sequence) {
            None => Lookup::Behind,
            Some(segment) => match segment.units.get(index) {
                Some(unit) => Lookup::Unit(unit.clone()),
                None => Lookup::EndOfSegment,
            },
        }
    }

    /// Codec bookkeeping and the timestamp mapping for one pushed unit; `None` to drop it.
    fn prepare(&mut self, mut unit: AccessUnit) -> Option<AccessUnit> {
        match unit.track {
            Track::Video => {
                let has_sps = h264::nal_units(&unit.data).any(|nal| h264::nal_unit_type(nal) == Some(nal_type::SPS));
                if has_sps {
                    if self.codecs.video.is_none()
                        && let Some(params) = AvcParams::from_annex_b(&unit.data)
                    {
                        tracing::debug!("H.264 parameter sets taken from the first keyframe");
                        self.codecs.video = Some(params);
                    }
                } else if unit.keyframe
                    && let Some(params) = &self.codecs.video
                {
                    // Every keyframe must be a place to start decoding (see AccessUnit).
                    unit.data = Bytes::from([&params.to_annex_b()[..], &unit.data[..]].concat());
                }
            }
            Track::Audio => {
                // A whole ADTS frame pushed as is: take the header off (and its config if none
                // was set). Raw AAC cannot start with the 12-bit syncword and the exact length.
                if let Some(adts) = AdtsHeader::parse(&unit.data)
                    && adts.frame_len == unit.data.len()
                {
                    if self.codecs.audio.is_none() {
                        tracing::debug!(config = ?adts.config, "AAC configuration taken from ADTS");
                        self.codecs.audio = Some(adts.config);
                    }
                    unit.data = unit.data.slice(adts.header_len..);
                }
                if self.codecs.audio.is_none() {
                    tracing::debug!("audio access unit before any AAC configuration dropped");
                    return None;
                }
            }
        }
        let (pts, dts) = self.timestamps.map(unit.track, unit.pts, unit.dts)?;
        unit.pts = pts;
        unit.dts = dts;
        Some(unit)
    }

    /// Puts a unit into the open segment, cutting or opening segments as needed.
    fn place(&mut self, unit: AccessUnit, target: u64) {
        let expects_video = self.codecs.video.is_some() || self.video_seen || unit.track == Track::Video;
        if unit.track == Track::Video {
            self.video_seen = true;
        }
        let Some(open) = &self.open else {
            match unit.track {
                Track::Video if unit.keyframe => {
                    let start = unit.dts;
                    self.open_segment(true);
                    self.append(unit);
                    // Audio that arrived before the keyframe but belongs after it.
                    let pending = std::mem::take(&mut self.pending_audio);
                    for audio in pending.into_iter().filter(|audio| audio.dts >= start) {
                        self.append(audio);
                    }
                }
                Track::Video => tracing::debug!(dts = unit.dts, "video before the first keyframe dropped"),
                Track::Audio => {
                    self.pending_audio.push_back(unit);
                    let span = |pending: &VecDeque<AccessUnit>| match (pending.front(), pending.back()) {
                        (Some(first), Some(last)) => last.dts.saturating_sub(first.dts),
                        _ => 0,
                    };
                    if !expects_video && span(&self.pending_audio) >= target {
                        // No video in sight: an audio-only stream.
                        self.open_segment(false);
                        for audio in std::mem::take(&mut self.pending_audio) {
                            self.append(audio);
                        }
                    }
                    while span(&self.pending_audio) > 2 * target {
                        self.pending_audio.pop_front();
                    }
                }
            }
            return;
        };
        let elapsed = unit.dts.saturating_sub(open.start_dts);
        let (open_video, open_audio) = (open.video, open.audio);
        match unit.track {
            Track::Video if !open_video => {
                if unit.keyframe {
                    // Video appeared in an audio-only stream: a new track set, a new segment.
                    self.complete_open(Some(unit.dts));
                    self.open_segment(true);
                    self.append(unit);
                } else {
                    tracing::debug!(dts = unit.dts, "video before the first keyframe dropped");
                }
            }
            Track::Video => {
                let forced = elapsed >= MAX_SEGMENT_TARGETS * target;
                if (unit.keyframe && elapsed >= target) || forced {
                    if forced && !unit.keyframe {
                        tracing::warn!(elapsed, "no keyframe for too long; segment cut without one");
                    }
                    self.complete_open(Some(unit.dts));
                    self.open_segment(true);
                }
                self.append(unit);
            }
            Track::Audio => {
                if !open_audio {
                    // The configuration came after the segment opened (prepare drops audio
                    // without one): from now on the segment has audio.
                    self.enable_audio();
                }
                if !open_video && elapsed >= target {
                    self.complete_open(Some(unit.dts));
                    self.open_segment(false);
                }
                self.append(unit);
            }
        }
    }

    /// Opens a segment with or without video, and with audio if its configuration is known.
    fn open_segment(&mut self, video: bool) {
        let audio = self.codecs.audio;
        self.muxer.set_tracks(video, audio);
        self.open = Some(OpenSegment {
            start_dts: 0,
            end_ticks: 0,
            video,
            audio: audio.is_some(),
            publication_break: std::mem::take(&mut self.publication_break),
            units: Vec::new(),
            body: Vec::new(),
        });
    }

    fn enable_audio(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if let Some(audio) = self.codecs.audio {
            open.audio = true;
            self.muxer.set_tracks(open.video, Some(audio));
        }
    }

    fn append(&mut self, unit: AccessUnit) {
        let frame = self.timestamps.frame_ticks(unit.track);
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if let Err(error) = self.muxer.write_access_unit(&unit, &mut open.body) {
            tracing::debug!(%error, track = ?unit.track, dts = unit.dts, "access unit left out of the segment");
            return;
        }
        if open.units.is_empty() {
            open.start_dts = unit.dts;
        }
        open.end_ticks = open.end_ticks.max(unit.dts.saturating_add(frame));
        open.units.push(unit);
    }

    /// Completes the open segment, ending where `next_start` begins (or after its last unit).
    fn complete_open(&mut self, next_start: Option<u64>) {
        let Some(open) = self.open.take() else {
            return;
        };
        if open.units.is_empty() {
            return;
        }
        let end = next_start.unwrap_or(open.end_ticks);
        let duration_ticks = end.saturating_sub(open.start_dts).max(1);
        let tracks = (open.video, open.audio);
        let discontinuity = self
            .last_tracks
            .is_some_and(|last| open.publication_break || last != tracks);
        self.last_tracks = Some(tracks);
        self.discontinuities += u64::from(discontinuity);
        let mut data = Vec::with_capacity(2 * PACKET_SIZE + open.body.len());
        self.muxer.write_tables(&mut data);
        data.extend_from_slice(&open.body);
        let segment = PushedSegment {
            sequence: self.next_sequence,
            duration_ticks,
            discontinuity,
            discontinuities_through: self.discontinuities,
            data: super::segmenter::live_bytes(Bytes::from(data)),
            units: Arc::from(open.units),
        };
        tracing::trace!(
            sequence = segment.sequence,
            duration_ticks,
            bytes = segment.data.len(),
            "pushed segment complete"
        );
        self.longest_ticks = self.longest_ticks.max(duration_ticks);
        self.segments.push_back(segment);
        self.next_sequence += 1;
        let retained = Window::with_complete(self.next_sequence).retained();
        while self.segments.front().is_some_and(|s| s.sequence < retained.start) {
            self.segments.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
