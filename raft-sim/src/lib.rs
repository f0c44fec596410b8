//! # Layout
//!
//! - [`cluster`] — a seeded, deterministic simulation of a raft-actor cluster running a counter:
//!   a random fault schedule (partitions, message loss, crashes, disk stalls, pauses, transfer
//!   storms, membership churn), scenario knobs for five incidents of other Raft systems, and
//!   every checker on each run. [`run`] takes a [`SimConfig`] and returns a [`SimReport`].
//! - [`checkers`] — log matching, leader completeness and the replicator wake-up audit, on
//!   nodes' durable logs.
//! - [`linearizability`] — a Wing–Gong / Lowe checker for client histories, with models of a
//!   register, a counter and a key-value store; implement its [`linearizability::Model`] to
//!   check the histories of your own [`raft_actor::StateMachine`].
//! - [`store`] — [`store::SimStore`], a log store whose unsynced writes die in a simulated
//!   crash.
//! - [`trace`] — a run's human-readable event trace.
//!
//! The same seed gives the same run, event by event: every node, client and checker runs on
//! one current-thread tokio runtime with paused time, over raft-net's in-memory network with
//! seeded faults, and the faults reach the nodes through raft-actor's `fault-injection` hooks.
//! A failing seed is replayed with its [`SimConfig::trace`] on to read what happened.
//!
//! The incidents the scenario knobs reproduce: the NebulaGraph raftex deadlock (forced leader
//! changes with a follower whose replication hangs), the MIT 6.824 Lab 2B flakes
//! (stop-the-world pauses of the leader, and a leader that loses leadership with entries in
//! flight), the InfluxDB client pool (overload must be backpressure), Apache Kvrocks master
//! switching (transfer storms under writes) and braft on arm64 (a lagging follower caught up by
//! snapshot, and exactly one replicator wake-up per log change). `docs/architecture.md`
//! describes the invariants the checkers hold the runtime to.
//!
//! # Example
//!
//! One seed, a few simulated seconds of random faults, and its verdict:
//!
//! ```
//! use std::time::Duration;
//!
//! use raft_sim::{SimConfig, run};
//!
//! let mut cfg = SimConfig::new(7);
//! cfg.duration = Duration::from_secs(3);
//! let report = run(cfg);
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! assert!(report.acked > 0);
//! assert!(!report.linearizability_unknown);
//! ```

pub mod checkers;
pub mod cluster;
pub mod linearizability;
pub mod store;
pub mod trace;

pub use cluster::{
    CounterCmd, CounterWorkload, LaggingFollower, LeaderPauses, Op, Recorded, SimConfig,
    SimCounter, SimReport, Workload, run, run_with,
};
