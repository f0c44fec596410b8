//! On-demand protocol ticks (quiescence): an actor arms a timer only while something it owns
//! has a tick-driven deadline, so an idle group's actors never wake up on their own.
//!
//! Ticks keep a fixed phase: tick `k` is due at `start + k * interval`, whether or not the timer
//! was armed. When the timer is off, the ticks that elapse meanwhile are not lost: the actor
//! delivers them in a burst ([`Ticks::elapsed`]) before its next input, so tick-counted state
//! (the follower's leader lease) reads the same as if every tick had been delivered on time.

use std::time::Duration;

use tokio::time::Instant;

/// A tick counter with a fixed phase.
#[derive(Debug)]
pub(crate) struct Ticks {
    start: Instant,
    interval: Duration,
    /// Ticks counted so far.
    counted: u64,
}

impl Ticks {
    /// Tick 0 is now.
    pub(crate) fn new(interval: Duration) -> Self {
        Ticks {
            start: Instant::now(),
            interval: interval.max(Duration::from_nanos(1)),
            counted: 0,
        }
    }

    /// Ticks due at `now` and not counted before (counts them).
    pub(crate) fn elapsed(&mut self, now: Instant) -> u64 {
        let due = (now.saturating_duration_since(self.start).as_nanos() / self.interval.as_nanos())
            as u64;
        let n = due.saturating_sub(self.counted);
        self.counted = self.counted.max(due);
        n
    }

    /// When the next uncounted tick is due.
    pub(crate) fn next(&self) -> Instant {
        let nanos = self.interval.as_nanos() * (u128::from(self.counted) + 1);
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_keep_their_phase_and_are_never_lost() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Ticks::new(ms(50));
        assert_eq!(t.elapsed(t0 + ms(49)), 0);
        assert_eq!(t.next(), t0 + ms(50));
        assert_eq!(t.elapsed(t0 + ms(50)), 1);
        assert_eq!(t.next(), t0 + ms(100));
        // An idle stretch: the timer was off, the ticks are counted at the next input.
        assert_eq!(t.elapsed(t0 + ms(1_020)), 19);
        assert_eq!(t.next(), t0 + ms(1_050));
        assert_eq!(t.elapsed(t0 + ms(1_020)), 0);
    }
}
