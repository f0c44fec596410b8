//! Capped exponential backoff with jitter for reconnect attempts.
//!
//! The n-th consecutive failure waits a random time in `[base/2, base]` where
//! `base = min(backoff_max, backoff_min * 2^n)`. The wait never exceeds `backoff_max`, so a
//! peer that comes back is reconnected to within the cap (plus one connect attempt). Jitter keeps
//! the links of a restarted cluster from reconnecting in lock-step.

use std::time::Duration;

use crate::rng::SplitMix64;

/// Reconnect delay generator owned by one link task.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// Consecutive failures since the last success; capped so the shift cannot overflow.
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff between `min` and `max`, jittered by a generator seeded with `seed`.
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The delay before the next attempt; grows on each call until reset.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let base = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let base_ns = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.between(base_ns / 2, base_ns))
    }

    /// Forget past failures after a successful connection.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_capped() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(200);
        let mut b = Backoff::new(min, max, 3);
        let first = b.next_delay();
        assert!(first >= min / 2 && first <= min);
        for _ in 0..100 {
            assert!(b.next_delay() <= max);
        }
        let late = b.next_delay();
        assert!(late >= max / 2, "{late:?}");
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
