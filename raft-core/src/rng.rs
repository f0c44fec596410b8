//! A tiny seeded generator (SplitMix64): election jitter here, reconnect-backoff jitter and fault
//! injection in raft-net, and the simulation's choices in raft-actor. One implementation for the
//! whole workspace, so a seed means the same thing everywhere.
//!
//! Hand-written rather than a dependency: a dozen lines, and its output must never change between
//! versions, or recorded simulation seeds would stop replaying (determinism,
//! docs/architecture.md). SplitMix64 passes BigCrush on its 64-bit outputs, far more than jitter
//! and coin flips need.

/// SplitMix64: fast, statistically fine for jitter, fully determined by its seed.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A seed for one member of a family (say, one node of a cluster) derived from a shared
    /// seed. Each input goes through the mixer: XOR-ing ids into the seed would start the
    /// generators a few increments apart, so their outputs would be the same sequence shifted
    /// by a few draws, and nodes' "random" election timeouts would march in lockstep.
    pub fn derive(seed: u64, parts: &[u64]) -> u64 {
        let mut state = SplitMix64::new(seed).next_u64();
        for &part in parts {
            state = SplitMix64::new(state ^ part).next_u64();
        }
        state
    }

    /// A value in `[0, bound)`; `bound` must be non-zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// A float uniformly distributed in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (values outside `[0, 1]` are clamped). Draws nothing when
    /// `p <= 0`, so a disabled fault leaves the sequence untouched.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }

    /// A value uniformly distributed in `[lo, hi]` (inclusive); `lo` when `hi <= lo`, without
    /// drawing.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        // Modulo bias is at most span / 2^64: irrelevant for jitter and fault injection.
        lo + self.next_u64() % (span + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_pinned() {
        // Recorded seeds replay only while these stay: the reference SplitMix64 sequence.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(g.next_u64(), 0x06C4_5D18_8009_454F);
        let mut g = SplitMix64::new(0xF00D);
        let draws: Vec<u64> = (0..3).map(|_| g.between(10, 20)).collect();
        assert_eq!(draws, [19, 12, 14]);
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn between_stays_in_range() {
        let mut r = SplitMix64::new(1);
        for _ in 0..10_000 {
            let v = r.between(10, 20);
            assert!((10..=20).contains(&v));
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        assert_eq!(r.between(5, 5), 5);
        assert_eq!(r.between(9, 3), 9);
    }

    #[test]
    fn derived_seeds_are_not_shifted_copies() {
        // Seeds made by XOR-ing ids in (say `seed ^ id * GOLDEN`) start generators a few
        // increments apart, so one node's draws are another's shifted; `derive` must not.
        let draws = |id: u64| {
            let mut g = SplitMix64::new(SplitMix64::derive(197, &[id, 1]));
            (0..64).map(|_| g.below(6)).collect::<Vec<_>>()
        };
        let (a, b) = (draws(1), draws(3));
        for shift in 0..16 {
            assert_ne!(a[shift..shift + 32], b[..32], "shift {shift}");
            assert_ne!(b[shift..shift + 32], a[..32], "shift {shift}");
        }
    }
}
