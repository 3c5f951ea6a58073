//! A publisher's timestamps mapped onto the source's own clock.
//!
//! Publishers start anywhere (RTMP at 0, a TS upload at whatever its muxer picked) and a new
//! publisher starts over, yet the window, the TS muxer and every viewer need one timeline that
//! only goes forward. So each publication is rebased: its first unit lands just after what the
//! previous publication left (or at [`START_TICKS`] for the first), and the rest keep their
//! distance from it, preserving the publisher's audio/video sync.
//!
//! Within a publication each track must move forward. A unit at or before the previous one of
//! its track is late (or a duplicate) and is dropped; a jump of [`JUMP_TICKS`] or more either
//! way is taken as the publisher's clock restarting, and that track alone is rebased to continue
//! where it was.

use crate::media::access_unit::{CLOCK_HZ, Track};

/// Where the first publication's first unit lands: 1.4 s, as ffmpeg's TS muxer starts, which
/// keeps the PCR (100 ms before the DTS) clear of zero.
pub const START_TICKS: u64 = 126_000;

/// A timestamp jump this large (10 s) is a restarted clock, not a gap in the media.
pub const JUMP_TICKS: u64 = 10 * CLOCK_HZ;

/// Left between two publications, so that units of the new one that arrive a little out of
/// order across tracks still land after the old one's: 100 ms.
const PUBLICATION_GAP_TICKS: u64 = CLOCK_HZ / 10;

/// The frame durations assumed until a track has shown its own: 30 fps video, AAC at 48 kHz.
const DEFAULT_VIDEO_FRAME: u64 = CLOCK_HZ / 30;
const DEFAULT_AUDIO_FRAME: u64 = 1_920;

#[derive(Debug, Default)]
pub struct Timestamps {
    video: TrackClock,
    audio: TrackClock,
    /// Whether the publication in progress has set its offset yet.
    started: bool,
    /// Where the first publication's first unit lands; [`START_TICKS`] when `None`.
    first_start: Option<u64>,
}

#[derive(Debug, Default)]
struct TrackClock {
    /// Output = input + offset.
    offset: i128,
    last_dts: Option<u64>,
    /// The last step between two units: the expected frame duration.
    last_step: Option<u64>,
    /// No unit of this track yet in the publication in progress.
    fresh: bool,
}

impl TrackClock {
    fn frame_ticks(&self, track: Track) -> u64 {
        self.last_step.unwrap_or(match track {
            Track::Video => DEFAULT_VIDEO_FRAME,
            Track::Audio => DEFAULT_AUDIO_FRAME,
        })
    }

    /// Where this track's next unit is expected.
    fn next_dts(&self, track: Track) -> Option<u64> {
        self.last_dts.map(|last| last.saturating_add(self.frame_ticks(track)))
    }
}

impl Timestamps {
    /// A clock whose first publication starts at `start` instead of [`START_TICKS`]: a source
    /// that replaced another continues its timestamps.
    pub fn starting_at(start: u64) -> Self {
        Timestamps {
            first_start: Some(start),
            ..Timestamps::default()
        }
    }

    /// Where the next unit of either track would land: just after the latest one so far, or
    /// the start of the clock when nothing was mapped yet.
    pub fn next_ticks(&self) -> u64 {
        [self.video.next_dts(Track::Video), self.audio.next_dts(Track::Audio)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.first_start.unwrap_or(START_TICKS))
    }

    /// The next unit starts a new publication.
    pub fn new_publication(&mut self) {
        self.started = false;
        self.video.fresh = true;
        self.audio.fresh = true;
    }

    /// The expected duration of one frame of `track` (its last step, or a default).
    pub fn frame_ticks(&self, track: Track) -> u64 {
        self.clock(track).frame_ticks(track)
    }

    fn clock(&self, track: Track) -> &TrackClock {
        match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        }
    }

    /// The (pts, dts) a unit gets on the source's clock, or `None` if it must be dropped
    /// (late, duplicate, or mapped below zero).
    pub fn map(&mut self, track: Track, pts: u64, dts: u64) -> Option<(u64, u64)> {
        if !self.started {
            let target = [self.video.next_dts(Track::Video), self.audio.next_dts(Track::Audio)]
                .into_iter()
                .flatten()
                .max()
                .map_or(self.first_start.unwrap_or(START_TICKS), |next| {
                    next.saturating_add(PUBLICATION_GAP_TICKS)
                });
            let offset = i128::from(target) - i128::from(dts);
            self.video.offset = offset;
            self.audio.offset = offset;
            self.started = true;
        }
        let clock = match track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        };
        let mut out = i128::from(dts) + clock.offset;
        let mut rebased = false;
        if let Some(last) = clock.last_dts {
            let last_wide = i128::from(last);
            let jumped = (out - last_wide).unsigned_abs() >= u128::from(JUMP_TICKS);
            if jumped && !clock.fresh {
                let continue_at = last.saturating_add(clock.frame_ticks(track));
                tracing::debug!(
                    ?track,
                    from = last,
                    input_dts = dts,
                    "publisher timestamps jumped; rebasing the track"
                );
                clock.offset = i128::from(continue_at) - i128::from(dts);
                out = i128::from(continue_at);
                rebased = true;
            } else if out <= last_wide {
                tracing::debug!(?track, last, dts = out, "late or duplicate access unit dropped");
                return None;
            }
        }
        let Ok(out_dts) = u64::try_from(out) else {
            tracing::debug!(?track, dts, "access unit before the start of the timeline dropped");
            return None;
        };
        // PTS below DTS is not a valid stream; a PTS that maps below zero is no better.
        let out_pts = u64::try_from(i128::from(pts) + clock.offset)
            .unwrap_or(out_dts)
            .max(out_dts);
        if let Some(last) = clock.last_dts
            && !rebased
            && !clock.fresh
        {
            clock.last_step = Some(out_dts - last);
        }
        clock.last_dts = Some(out_dts);
        clock.fresh = false;
        Some((out_pts, out_dts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Track = Track::Video;
    const A: Track = Track::Audio;

    fn publication() -> Timestamps {
        let mut timestamps = Timestamps::default();
        timestamps.new_publication();
        timestamps
    }

    #[test]
    fn the_first_publication_starts_at_the_start_and_keeps_sync() {
        let mut ts = publication();
        assert_eq!(
            ts.map(V, 5_000_000 + 3_000, 5_000_000),
            Some((START_TICKS + 3_000, START_TICKS))
        );
        assert_eq!(
            ts.map(A, 5_000_500, 5_000_500),
            Some((START_TICKS + 500, START_TICKS + 500))
        );
        assert_eq!(
            ts.map(V, 5_003_600, 5_003_600),
            Some((START_TICKS + 3_600, START_TICKS + 3_600))
        );
    }

    #[test]
    fn late_and_duplicate_units_are_dropped_per_track() {
        let mut ts = publication();
        ts.map(V, 0, 0).expect("first");
        ts.map(V, 3_000, 3_000).expect("second");
        assert_eq!(ts.map(V, 3_000, 3_000), None, "duplicate");
        assert_eq!(ts.map(V, 1_000, 1_000), None, "late");
        assert!(ts.map(A, 1_000, 1_000).is_some(), "the other track has its own order");
        assert!(ts.map(V, 6_000, 6_000).is_some());
    }

    #[test]
    fn a_new_publication_continues_after_the_old_one() {
        let mut ts = publication();
        for n in 0..10 {
            ts.map(V, n * 3_000, n * 3_000).expect("in order");
        }
        let last = START_TICKS + 9 * 3_000;
        ts.new_publication();
        // RTMP starts again at 0.
        let (_, dts) = ts.map(V, 0, 0).expect("new publication");
        assert_eq!(dts, last + 3_000 + PUBLICATION_GAP_TICKS);
        let (_, audio) = ts.map(A, 0, 0).expect("audio of the new publication");
        assert_eq!(audio, dts, "sync kept across tracks");
    }

    #[test]
    fn a_track_whose_clock_restarts_is_rebased() {
        let mut ts = publication();
        for n in 0..5 {
            ts.map(A, n * 1_920, n * 1_920).expect("in order");
        }
        let (_, dts) = ts.map(A, 50 * CLOCK_HZ, 50 * CLOCK_HZ).expect("forward jump rebased");
        assert_eq!(dts, START_TICKS + 5 * 1_920);
        let (_, back) = ts.map(A, 7, 7).expect("backward jump rebased");
        assert_eq!(back, dts + 1_920);
        let (_, next) = ts.map(A, 7 + 1_920, 7 + 1_920).expect("and continues");
        assert_eq!(next, back + 1_920);
    }

    #[test]
    fn pts_never_below_dts_nor_negative() {
        let mut ts = publication();
        assert_eq!(ts.map(V, 0, 10), Some((START_TICKS, START_TICKS)));
        let (pts, dts) = ts.map(V, u64::MAX, 3_010).expect("maps");
        assert!(pts >= dts);
    }
}
