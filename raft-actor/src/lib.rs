//! # raft-actor: the actor runtime and the `Node` API
//!
//! Runs [`raft_core`]'s pure state machines as actors that own their state and talk over
//! bounded channels. There are no shared locks: state belongs to one actor; what actors share
//! is immutable (`Arc`), a mailbox primitive (bells, queue counts, latest-value and position
//! cells, each with its contract written down and model-checked), or a metric counter. The
//! design and its invariants are described in `docs/architecture.md`.
//!
//! ## Layout
//! - [`node`] — [`Node`] (the API: proposals, the three kinds of read, client sessions),
//!   [`NodeBuilder`], the registry actor (the table of groups) and the router (network →
//!   partitions and replicators).
//! - `group` — one Raft group: the one place that builds its channels (`group::spawn`), the
//!   messages its actors exchange, and the actors themselves:
//!   - `group::partition` — drives the group's `PartitionCore`;
//!   - `group::replicator` — one per peer while leading: drives a `ReplicatorCore`;
//!   - `group::apply` — the user's [`StateMachine`], snapshots;
//!   - `group::sessions` — the client-session table: bounded, replicated, in snapshots;
//!   - `group::tail` — recent entries shared read-only; `group::ticks` — on-demand ticks.
//! - `mailbox` — the concurrency primitives the actors talk through: bell, queue count,
//!   inbox, latest-value cell, position cell, request deadlines, batch gathering.
//! - `heartbeat` — one actor per node on its own executor: coalesced heartbeats that carry
//!   only changes, election timers, check-quorum, stall detection by probing partitions.
//! - `storage` — one actor per node on its own OS thread around a
//!   [`raft_storage::LogStore`]: group commit, one sync for every group.
//! - `kill` — the node's kill switch: every task of a node runs under it.
//! - [`config`] — [`NodeConfig`]: every timeout and channel capacity.
//! - [`error`] — [`Error`].
//! - [`metrics`] — counters and snapshots.
//! - [`wire`] — [`WireMsg`], what crosses the network.
//! - [`state_machine`] — the [`StateMachine`] trait and [`RequestId`].
//!
//! Every actor runs inside a `tracing` span with its node and group; the partition span records
//! the term and role on every role change, and replicator spans carry their peer and term.
//!
//! ## Channel edges
//!
//! Every channel between the actors, its capacity (a [`NodeConfig`] field) and what happens
//! when it is full, is listed in one table beside the code that builds a group's channels
//! (`group/mod.rs`), and in `docs/architecture.md`. No actor awaits a send on a bounded
//! channel while handling a message, so no cycle of full queues can deadlock.

pub mod config;
pub mod error;
pub mod metrics;
pub mod node;
pub mod state_machine;
pub mod wire;

mod group;
mod heartbeat;
mod kill;
mod mailbox;
mod storage;

pub use config::NodeConfig;
pub use error::Error;
pub use metrics::{GroupMetrics, HeartbeatMetrics, NodeMetrics};
pub use node::{GroupClient, HeartbeatExecutor, Node, NodeBuilder, Stale, Submitted};
pub use state_machine::{RequestId, StateMachine};
pub use storage::StorageMode;
pub use wire::WireMsg;

// What a service names most, so that it can depend on this crate alone.
pub use raft_core::{GroupId, Index, Membership, NodeAddrs, NodeId, Role, SnapshotMeta, Term};
pub use raft_net::{MemConfig, MemNetwork, PeerAddrs, TcpConfig, TcpTransport, TlsConfig};
pub use raft_storage::{LogStore, MemStore, SyncMode, Wal, WalConfig};
/// The crates this one is built on, for everything not re-exported above by name.
pub use {raft_core, raft_net, raft_storage};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
