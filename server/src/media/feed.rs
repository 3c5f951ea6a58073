//! Access units one by one in real time, for viewers that packetize themselves (RTMP, RTSP).
//!
//! A viewer is a cursor (segment, index) over the same segments the window holds, so that it
//! sees exactly what HLS and TS viewers see. It starts at the start of the newest segment that
//! has begun (a keyframe), and a viewer that fell out of the playlist window skips to the start
//! of the newest one again, like [`LiveTs`](super::LiveTs).
//!
//! Latency: a `fake://` or `file://` unit is released when stream time reaches its dts, one by one (a new
//! viewer gets the part of the current segment already produced at once, then real time). A
//! `publish://` unit is released as soon as the publisher pushed it, not when its segment
//! completes; units come in the order they were pushed (each track in decoding order, the
//! tracks interleaved as the publisher interleaved them: RTMP and TS muxers do so by dts, and
//! [`TsIngest`](super::TsIngest) sorts what each chunk completes).

use std::sync::Arc;

use tokio::time::Instant;

use super::MediaSource;
use super::access_unit::AccessUnit;
use super::epoch::{Epoch, Feed};
use super::pull::PulledSegments;
use super::push::{Lookup, PushSegments, PushState};

/// A viewer's position in the access-unit feed. Cancel-safe.
#[derive(Debug)]
pub struct AuFeed {
    source: Arc<MediaSource>,
    /// The input `position` is in; `None` until the first call. When the source switches
    /// input, the viewer finishes what it was sent of the old one and goes on with the new
    /// one's first keyframe.
    epoch: Option<Arc<Epoch>>,
    /// The next unit to send: (segment sequence in `epoch`, index in it); `None` until the
    /// first call.
    position: Option<(u64, usize)>,
    /// The units of the pulled segment `position` is in, made once per segment.
    fake_units: Option<(u64, Vec<AccessUnit>)>,
}

/// What one look at the feed found.
enum Step {
    Unit(AccessUnit),
    /// No media for too long (`publish://`).
    Ended,
    /// The position reached the end of a switched-away input.
    EpochOver,
}

impl AuFeed {
    pub(super) fn new(source: Arc<MediaSource>) -> Self {
        AuFeed {
            source,
            epoch: None,
            position: None,
            fake_units: None,
        }
    }

    /// The next access unit (video and audio interleaved in decoding order), waiting for it;
    /// `None` when the source has ended. For a `publish://` source that is after
    /// [`PUSH_IDLE_TIMEOUT`](super::PUSH_IDLE_TIMEOUT) without media; calling again later
    /// picks up a new publication.
    ///
    /// Cancel-safe: the position only moves when a unit is returned.
    pub async fn next(&mut self) -> Option<AccessUnit> {
        if let Some(unit) = self.try_next() {
            return Some(unit);
        }
        loop {
            // Subscribed before looking, so that a switch made after the look wakes us.
            let mut switches = self.source.switches.subscribe();
            let epoch = match &self.epoch {
                Some(epoch) => epoch.clone(),
                None => {
                    let current = self.source.current();
                    self.epoch = Some(current.clone());
                    current
                }
            };
            if epoch
                .local_end()
                .is_some_and(|end| self.position.is_none_or(|(sequence, _)| sequence >= end))
            {
                self.follow(&epoch);
                continue;
            }
            let step = tokio::select! {
                step = self.step(&epoch) => step,
                _ = switches.changed() => continue,
            };
            match step {
                Step::Unit(unit) => return Some(unit),
                Step::Ended => return None,
                Step::EpochOver => self.follow(&epoch),
            }
        }
    }

    /// The next unit of a pushed input if it is there already, without waiting or subscribing
    /// to anything: the common case of a viewer keeping up with a publisher, and how a viewer
    /// takes what arrived while it was busy in one go. `None` says only "not at once"; the
    /// position moves only when a unit is returned, so [`next`](Self::next) takes it from there.
    pub fn try_next(&mut self) -> Option<AccessUnit> {
        let epoch = self.epoch.as_ref()?;
        let Feed::Push(pushed) = &epoch.feed else {
            return None;
        };
        let (mut sequence, mut index) = self.position?;
        // A unit, or the end of a finished segment and then a unit of the next one.
        for _ in 0..2 {
            if epoch.local_end().is_some_and(|end| sequence >= end) {
                return None;
            }
            match pushed.lookup(sequence, index) {
                Lookup::Unit(unit) => {
                    self.position = Some((sequence, index + 1));
                    return Some(unit);
                }
                Lookup::EndOfSegment => {
                    (sequence, index) = (sequence + 1, 0);
                    self.position = Some((sequence, index));
                }
                Lookup::Behind | Lookup::NotYet => return None,
            }
        }
        None
    }

    /// Moves on to the input that replaced `epoch`, at its start.
    fn follow(&mut self, epoch: &Epoch) {
        let Some(next) = epoch.successor() else {
            return;
        };
        tracing::debug!(
            from = %crate::redact::Url(&epoch.input),
            to = %crate::redact::Url(&next.input),
            "access-unit viewer follows the switched input"
        );
        self.epoch = Some(next.clone());
        self.position = Some((0, 0));
        self.fake_units = None;
    }

    async fn step(&mut self, epoch: &Epoch) -> Step {
        match &epoch.feed {
            Feed::Pulled(pulled) => self.next_fake(pulled, epoch).await,
            Feed::Push(pushed) => self.next_pushed(pushed, epoch).await,
        }
    }

    async fn next_fake(&mut self, pulled: &PulledSegments, epoch: &Epoch) -> Step {
        loop {
            let timeline = pulled.timeline();
            let now = Instant::now();
            let in_progress = timeline.window_at(now).newest().map_or(0, |newest| newest + 1);
            let (sequence, index) = *self.position.get_or_insert((in_progress, 0));
            if epoch.local_end().is_some_and(|end| sequence >= end) {
                return Step::EpochOver;
            }
            if sequence < timeline.window_at(now).listed().start {
                tracing::debug!(
                    input = %crate::redact::Url(&epoch.input),
                    from = sequence,
                    to = in_progress,
                    "access-unit viewer fell behind the window; skipping ahead"
                );
                self.position = Some((in_progress, 0));
                continue;
            }
            if self.fake_units.as_ref().is_none_or(|(cached, _)| *cached != sequence) {
                self.fake_units = Some((sequence, pulled.units(sequence)));
            }
            let Some(unit) = self.fake_units.as_ref().and_then(|(_, units)| units.get(index)) else {
                self.position = Some((sequence + 1, 0));
                continue;
            };
            let Some(release) = pulled.release_at(unit) else {
                // Beyond what the clock can represent: unreachable in practice, but no reason
                // to spin.
                std::future::pending::<()>().await;
                continue;
            };
            if now >= release {
                self.position = Some((sequence, index + 1));
                return Step::Unit(unit.clone());
            }
            tokio::time::sleep_until(release).await;
        }
    }

    async fn next_pushed(&mut self, pushed: &PushSegments, epoch: &Epoch) -> Step {
        loop {
            let Some((sequence, index)) = self.position else {
                match pushed.start_position() {
                    Some(start) => self.position = Some((start, 0)),
                    None => {
                        let started =
                            |state: &PushState| state.next_sequence() > 0 || state.has_unit(state.next_sequence(), 0);
                        if !pushed.wait_for(started).await {
                            return Step::Ended;
                        }
                    }
                }
                continue;
            };
            if epoch.local_end().is_some_and(|end| sequence >= end) {
                return Step::EpochOver;
            }
            match pushed.lookup(sequence, index) {
                Lookup::Unit(unit) => {
                    self.position = Some((sequence, index + 1));
                    return Step::Unit(unit);
                }
                Lookup::EndOfSegment => self.position = Some((sequence + 1, 0)),
                Lookup::Behind => {
                    tracing::debug!(
                        input = %crate::redact::Url(&epoch.input),
                        from = sequence,
                        "access-unit viewer fell behind the window; skipping ahead"
                    );
                    self.position = None;
                }
                Lookup::NotYet => {
                    if !pushed
                        .wait_for(|state| state.lookup(sequence, index) != Lookup::NotYet)
                        .await
                    {
                        return Step::Ended;
                    }
                }
            }
        }
    }
}
