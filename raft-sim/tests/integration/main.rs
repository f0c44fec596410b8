//! raft-sim's integration tests, in one binary. Run one file's tests with a filter, e.g.
//! `cargo test -p raft-sim --test integration -- sim_incidents::`.
//!
//! - `sim` — the seeded runs (`RAFT_SIM_SEEDS`, `RAFT_SIM_SECS`), replay of one seed
//!   (`RAFT_SIM_SEED`, `RAFT_SIM_TRACE`), the broken variant, determinism.
//! - `sim_incidents` — one simulation per incident.
//! - `linearizability` — the history checker on known and randomized histories.
//! - `liveness` — commits under loss and leader churn (`RAFT_LIVENESS_SEEDS`, `RAFT_LIVENESS_SECS`).
//! - `custom_machine` — the simulation running a key-value store of its own through
//!   `raft_sim::Workload`, and a broken store it must catch.

mod custom_machine;
mod linearizability;
mod liveness;
mod sim;
mod sim_incidents;
