//! A tiny seeded generator (SplitMix64) for election timeouts.
//!
//! Hand-written rather than a dependency: twelve lines, and its output must never change between
//! versions, or recorded simulation seeds would stop replaying (DESIGN.md I11).

/// SplitMix64: fast, statistically fine for jitter, fully determined by its seed.
#[derive(Clone, Debug)]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_are_not_shifted_copies() {
        // Regression: with `seed ^ id * GOLDEN`, node 3's draws were node 1's shifted by two.
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
