//! Rate limit for warning lines that hostile or broken peers can cause, one per connection:
//! at most one line per interval for everything sharing a limiter, each line saying how many
//! were held back since the previous one.
//!
//! A flood of bad connections (say 15,000 clients that each send half a frame and vanish)
//! would otherwise write 15,000 lines. The counts keep what the lines no longer say: every
//! held-back line is counted, and the total is in the server's stats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Shared by every task of one server (in an `Arc`); see the module docs.
///
/// Contract of its atomics: `next` is a deadline, the others are counters; no other data is
/// published through them, so every access is `Relaxed`. The compare-exchange on `next` lets
/// exactly one caller print per interval, whatever the ordering (the read-modify-write
/// operations on one atomic are totally ordered). `held` may be read and reset by the printer
/// while another caller increments it, so a held-back line can be reported by the line after
/// the one it followed; the total (`suppressed`) is exact.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    interval: u64,
    start: Instant,
    /// Nanoseconds after `start` before which no line is printed.
    next: AtomicU64,
    /// Lines held back since the last printed one.
    held: AtomicU64,
    /// Lines held back in total.
    suppressed: AtomicU64,
}

impl WarnLimiter {
    /// At most one line per `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval: nanos(interval),
            start: Instant::now(),
            next: AtomicU64::new(0),
            held: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to print a line now: `Some(held)` says yes, and how many lines were held back
    /// since the last one printed (put it in the line); `None` says no (the line is counted).
    pub(crate) fn permit(&self) -> Option<u64> {
        let now = nanos(self.start.elapsed());
        let next = self.next.load(Ordering::Relaxed);
        if now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Lines held back since start.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_and_the_rest_counted() {
        let l = WarnLimiter::new(Duration::from_secs(1));
        assert_eq!(l.permit(), Some(0));
        for _ in 0..5 {
            assert_eq!(l.permit(), None);
        }
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(l.permit(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            l.permit(),
            Some(6),
            "the next line reports the six held back"
        );
        assert_eq!(l.permit(), None);
        assert_eq!(l.suppressed(), 7);
    }
}
