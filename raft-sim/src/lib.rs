//! raft-sim: deterministic simulation support: everything a user needs to test a cluster
//! under faults, reproducibly from a seed.
//!
//! - [`cluster`] — a seeded simulation of a cluster running a counter, with a fault schedule,
//!   scenario knobs for the incidents of DESIGN.md, and checkers.
//! - [`checkers`] — log matching, leader completeness and the replicator wake-up audit, on
//!   durable logs.
//! - [`linearizability`] — a Wing–Gong style checker for client histories.
//! - [`store`] — a store whose unsynced writes die in a simulated crash.
//! - [`trace`] — the run's human-readable event trace.

pub mod checkers;
pub mod cluster;
pub mod linearizability;
pub mod store;
pub mod trace;

mod directory;

pub use cluster::{
    Applied, CounterCmd, LaggingFollower, LeaderPauses, SimConfig, SimCounter, SimReport, run,
};
