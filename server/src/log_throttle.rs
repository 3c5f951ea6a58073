//! One log line per window for events that a stranger can repeat at will (a connection flood,
//! a history at its bound): the first event of a window is logged, the others are counted and
//! reported with the next line, so a flood costs the log a line per window, not one per event.

use std::time::Duration;

use tokio::time::Instant;

/// Counts events and says when one should be logged. Owned by the one task that sees the events
/// (an accept loop, the history writer), so it needs no lock.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Records one event at `now`: `Some(n)` when it is to be logged, `n` being how many were
    /// left unlogged since the last line; `None` when it only counts.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.hits(now, 1)
    }

    /// [`hit`](Self::hit) for `n` events at once (`n - 1` of them are added to the count that
    /// is reported).
    pub fn hits(&mut self, now: Instant, n: u64) -> Option<u64> {
        if n == 0 {
            return None;
        }
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += n;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::replace(&mut self.suppressed, 0) + n - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn logs_once_per_window_and_reports_what_it_held_back() {
        let mut t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.hit(start), Some(0));
        for _ in 0..999 {
            assert_eq!(t.hit(start + Duration::from_secs(1)), None);
        }
        assert_eq!(t.hit(start + Duration::from_secs(9)), None);
        assert_eq!(t.hit(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(t.hits(start + Duration::from_secs(11), 5), None);
        assert_eq!(t.hits(start + Duration::from_secs(25), 3), Some(5 + 2));
        assert_eq!(t.hits(start + Duration::from_secs(60), 0), None);
    }
}
