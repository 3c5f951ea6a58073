//! Access units one by one in real time, for viewers that packetize themselves (RTMP, RTSP).
//!
//! A viewer is a cursor (segment, index) over the same segments the window holds, so that it
//! sees exactly what HLS and TS viewers see. It starts at the start of the newest segment that
//! has begun (a keyframe), and a viewer that fell out of the playlist window skips to the start
//! of the newest one again, like [`LiveTs`](super::LiveTs).
//!
//! Latency: a `fake://` unit is released when stream time reaches its dts, one by one (a new
//! viewer gets the part of the current segment already produced at once, then real time). A
//! `publish://` unit is released as soon as the publisher pushed it, not when its segment
//! completes; units come in the order they were pushed (each track in decoding order, the
//! tracks interleaved as the publisher interleaved them: RTMP and TS muxers do so by dts, and
//! [`TsIngest`](super::TsIngest) sorts what each chunk completes).

use std::sync::Arc;

use tokio::time::Instant;

use super::access_unit::AccessUnit;
use super::pull::PulledSegments;
use super::push::{Lookup, PushSegments, PushState};
use super::{Feed, MediaSource};

/// A viewer's position in the access-unit feed. Cancel-safe.
#[derive(Debug)]
pub struct AuFeed {
    source: Arc<MediaSource>,
    /// The next unit to send: (segment sequence, index in it); `None` until the first call.
    position: Option<(u64, usize)>,
    /// The units of the fake segment `position` is in, made once per segment.
    fake_units: Option<(u64, Vec<AccessUnit>)>,
}

impl AuFeed {
    pub(super) fn new(source: Arc<MediaSource>) -> Self {
        AuFeed {
            source,
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
        let source = Arc::clone(&self.source);
        match &source.feed {
            Feed::Fake(pulled) => Some(self.next_fake(pulled).await),
            Feed::Push(pushed) => self.next_pushed(pushed).await,
        }
    }

    async fn next_fake(&mut self, pulled: &PulledSegments) -> AccessUnit {
        loop {
            let timeline = pulled.timeline();
            let now = Instant::now();
            let in_progress = timeline.window_at(now).newest().map_or(0, |newest| newest + 1);
            let (sequence, index) = *self.position.get_or_insert((in_progress, 0));
            if sequence < timeline.window_at(now).listed().start {
                tracing::debug!(
                    input = self.source.input(),
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
                return unit.clone();
            }
            tokio::time::sleep_until(release).await;
        }
    }

    async fn next_pushed(&mut self, pushed: &PushSegments) -> Option<AccessUnit> {
        loop {
            let Some((sequence, index)) = self.position else {
                match pushed.start_position() {
                    Some(start) => self.position = Some((start, 0)),
                    None => {
                        let started =
                            |state: &PushState| state.next_sequence() > 0 || state.has_unit(state.next_sequence(), 0);
                        if !pushed.wait_for(started).await {
                            return None;
                        }
                    }
                }
                continue;
            };
            match pushed.lookup(sequence, index) {
                Lookup::Unit(unit) => {
                    self.position = Some((sequence, index + 1));
                    return Some(unit);
                }
                Lookup::EndOfSegment => self.position = Some((sequence + 1, 0)),
                Lookup::Behind => {
                    tracing::debug!(
                        input = self.source.input(),
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
                        return None;
                    }
                }
            }
        }
    }
}
