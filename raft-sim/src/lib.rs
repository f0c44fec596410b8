//! A deterministic, seeded simulation of a raft-actor cluster under faults, with safety and
//! linearizability checkers, for the built-in counter or your own state machine.
//!
//! # Layout
//!
//! - [`cluster`] — a seeded, deterministic simulation of a raft-actor cluster running a
//!   replicated state machine: a random fault schedule (partitions, message loss, crashes, disk
//!   stalls, pauses, transfer storms, membership churn), scenario knobs for five incidents of
//!   other Raft systems, and every checker on each run. [`run`] takes a [`SimConfig`] and
//!   returns a [`SimReport`] for the built-in counter ([`CounterWorkload`]); [`run_with`] runs
//!   your own [`raft_actor::StateMachine`] through a [`Workload`].
//! - [`checkers`] — log matching, leader completeness and the replicator wake-up audit, on
//!   nodes' durable logs.
//! - [`linearizability`] — a Wing–Gong / Lowe checker for client histories, with models of a
//!   register, a counter and a key-value store; implement its [`linearizability::Model`] to
//!   check the histories of your own [`raft_actor::StateMachine`], inside the simulation (a
//!   [`Workload`]'s model) or on histories recorded elsewhere.
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
//! One seed of the built-in counter, a few simulated seconds of random faults, and its verdict:
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
//!
//! # Your own state machine
//!
//! A [`Workload`] names the state machine every node runs, the operations the clients issue
//! and the [`linearizability::Model`] their history must be linearizable against; [`run_with`]
//! runs it under the same faults and checkers. Here, a register that clients overwrite and
//! read, checked against the [`linearizability::Register`] model:
//!
//! ```
//! use std::io::{self, Read, Write};
//! use std::time::Duration;
//!
//! use raft_actor::{SnapshotMeta, StateMachine};
//! use raft_core::NodeId;
//! use raft_core::rng::SplitMix64;
//! use raft_sim::linearizability::{Register, RegisterInput, RegisterOutput};
//! use raft_sim::trace::Tracer;
//! use raft_sim::{Op, SimConfig, Workload, run_with};
//!
//! /// The machine: one `u64`. `Some(v)` writes `v`, `None` changes nothing; both answer the
//! /// value after them, and so does a read.
//! struct Cell(u64);
//!
//! impl StateMachine for Cell {
//!     type Command = Option<u64>;
//!     type Query = ();
//!     type Response = u64;
//!
//!     fn apply(&mut self, _index: u64, write: Option<u64>) -> u64 {
//!         if let Some(v) = write {
//!             self.0 = v;
//!         }
//!         self.0
//!     }
//!     fn query(&self, _q: ()) -> u64 {
//!         self.0
//!     }
//!     fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
//!         out.write_all(&self.0.to_le_bytes())
//!     }
//!     fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
//!         let mut bytes = [0u8; 8];
//!         data.read_exact(&mut bytes)?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! /// Each client reads one time in three and otherwise writes a value nobody else writes
//! /// (distinct values keep the linearizability search small). Every client gets its own
//! /// clone, so `writes` counts that client's writes.
//! #[derive(Clone)]
//! struct CellWorkload {
//!     writes: u64,
//! }
//!
//! impl Workload for CellWorkload {
//!     type Machine = Cell;
//!     type Model = Register<u64>;
//!
//!     fn machine(&self, _node: NodeId, _trace: &Tracer) -> Cell {
//!         Cell(0)
//!     }
//!     fn next_op(&mut self, client: u64, rng: &mut SplitMix64) -> Op<Cell> {
//!         if rng.below(3) == 0 {
//!             return Op::Query(());
//!         }
//!         self.writes += 1;
//!         Op::Command(Some(self.writes * 100 + client))
//!     }
//!     fn probe(&self) -> Option<u64> {
//!         None // The harness's own writes must not show in the model: a no-op.
//!     }
//!     fn model(&self) -> Register<u64> {
//!         Register { initial: 0 }
//!     }
//!     fn input(&self, op: &Op<Cell>) -> RegisterInput<u64> {
//!         match op {
//!             Op::Command(Some(v)) => RegisterInput::Write(*v),
//!             Op::Command(None) | Op::Query(()) => RegisterInput::Read,
//!         }
//!     }
//!     fn output(&self, op: &Op<Cell>, value: &u64) -> RegisterOutput<u64> {
//!         match op {
//!             Op::Command(Some(_)) => RegisterOutput::Ok,
//!             Op::Command(None) | Op::Query(()) => RegisterOutput::Value(*value),
//!         }
//!     }
//! }
//!
//! let mut cfg = SimConfig::new(4);
//! cfg.duration = Duration::from_secs(3);
//! let report = run_with(cfg, CellWorkload { writes: 0 });
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! assert!(report.acked > 0);
//! ```

pub mod checkers;
pub mod cluster;
pub mod linearizability;
pub mod store;
pub mod trace;

pub use cluster::{
    CounterCmd, CounterWorkload, LaggingFollower, LeaderPauses, LossyChurn, Op, Recorded,
    SimConfig, SimCounter, SimReport, Workload, run, run_with,
};
