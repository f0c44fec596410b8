//! Deterministic simulation support (feature `sim`): everything a user needs to test a cluster
//! under faults, reproducibly from a seed.
//!
//! - [`cluster`] — a seeded simulation of a cluster running a counter, with a fault schedule
//!   and checkers.
//! - [`linearizability`] — a Wing–Gong style checker for client histories.
//! - [`store`] — a store whose unsynced writes die in a simulated crash.

pub mod cluster;
pub mod linearizability;
pub mod store;
