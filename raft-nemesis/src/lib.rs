//! # raft-nemesis: real server processes under partitions, pauses, kills and churn
//!
//! Test support for services built on this framework (the counter's and the KV's process
//! tests). A run starts the service's real server binaries, each as one node of a [`Net`],
//! drives a client workload against them, and lets a [`Nemesis`] break things from the
//! outside while the workload runs:
//!
//! - **partitions** — the leader isolated, the leader in a minority, two halves joined by a
//!   bridge node, one link cut, one node disconnected from everything (clients too);
//! - **pauses** — SIGSTOP and SIGCONT, 100 ms to 5 s, of the leader or of a follower;
//! - **kills** — SIGKILL and a restart from the write-ahead log;
//! - **leader-transfer storms** — several transfers in quick succession;
//! - **membership** — a follower removed and a fresh node added in its place.
//!
//! Nothing inside the processes is hooked: the network is shaped with network namespaces
//! (or, where those are not available, with TCP proxies; see [`net`]) and processes are
//! signalled. The workload's history is then checked by the caller (the project's
//! linearizability checker, and exactly-once for increments), and the run prints
//! [`summary`]'s line. A run that fails keeps its [`RunDir`]: every process's log and data,
//! and the history.
//!
//! The schedule is seeded ([`Settings::seed`]): the order and targets of the faults repeat,
//! though the processes' timing does not.
//!
//! `RAFT_NEMESIS_SECS` sets a run's length ([`duration_from_env`]); `RAFT_NEMESIS_MODE=proxy`
//! forces proxy mode, `=netns` requires namespaces.

pub mod nemesis;
pub mod net;
pub mod process;
mod proxy;

pub use nemesis::{
    Cluster, Fault, Nemesis, NemesisError, RunDir, Settings, Tally, duration_from_env, summary,
};
pub use net::{Mode, Net, NetError, NodeAddrs};
pub use process::{Proc, ProcError};
