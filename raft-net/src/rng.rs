//! The seeded generator behind reconnect-backoff jitter and fault injection: raft-core's
//! [`SplitMix64`], so the transport and the protocol draw from one implementation and a seed
//! means the same thing in both (no unseeded randomness; determinism, docs/architecture.md).

pub use raft_core::rng::SplitMix64;
