//! # raft-actor: the actor runtime and the `Node` API
//!
//! A three-node cluster in one process: a state machine, one Raft group on every node, a
//! write that answers with its log index, and the three kinds of read. Swap `MemNetwork` and
//! `MemStore` for [`TcpTransport`] and [`Wal`] to run each node in its own process.
//!
//! ```
//! use std::io::{self, Read, Write};
//! use std::time::Duration;
//!
//! use raft_actor::{Error, MemConfig, MemNetwork, MemStore, Membership, Node, NodeConfig};
//! use raft_actor::{SnapshotMeta, StateMachine, WireMsg};
//!
//! /// The replicated state: a counter.
//! #[derive(Default)]
//! struct Counter(i64);
//!
//! impl StateMachine for Counter {
//!     type Command = i64; // add this much
//!     type Query = ();
//!     type Response = i64;
//!
//!     fn apply(&mut self, _index: u64, add: i64) -> i64 {
//!         self.0 += add;
//!         self.0
//!     }
//!     fn query(&self, _query: ()) -> i64 {
//!         self.0
//!     }
//!     fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
//!         out.write_all(&self.0.to_le_bytes())
//!     }
//!     fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
//!         let mut bytes = [0u8; 8];
//!         data.read_exact(&mut bytes)?;
//!         self.0 = i64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! const GROUP: u64 = 7;
//! let ids = [1, 2, 3];
//! let network = MemNetwork::<WireMsg>::direct(&ids, &MemConfig::default())?;
//! let mut nodes = Vec::new();
//! for (id, (transport, inbound)) in ids.into_iter().zip(network) {
//!     let node = Node::<Counter>::builder(NodeConfig::new(id))
//!         .transport(transport, inbound)
//!         .storage(MemStore::new())
//!         .start()
//!         .await?;
//!     node.add_partition(GROUP, Membership::new(ids), Counter::default()).await?;
//!     nodes.push(node);
//! }
//!
//! // Proposals go to the leader; a follower answers NotLeader with its id.
//! let mut at = 0;
//! let (index, value) = loop {
//!     match nodes[at].propose_indexed(GROUP, None, 5).await {
//!         Ok(answer) => break answer,
//!         Err(Error::NotLeader { leader: Some(id), .. }) => at = id as usize - 1,
//!         Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(50)).await,
//!         Err(e) => return Err(e.into()),
//!     }
//! };
//! assert_eq!(value, 5);
//! let leader = &nodes[at];
//! assert_eq!(leader.read(GROUP, ()).await?, 5); // linearizable (ReadIndex)
//! assert_eq!(leader.read_lease(GROUP, ()).await?, 5); // under the leader's lease
//! // Any node answers a stale read, saying which log index its answer reflects.
//! let follower = &nodes[(at + 1) % 3];
//! let stale = loop {
//!     let stale = follower.read_stale(GROUP, ()).await?;
//!     if stale.applied >= index {
//!         break stale;
//!     }
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! };
//! assert_eq!(stale.response, 5);
//! for node in &nodes {
//!     node.shutdown().await;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! To serve a group to clients over the network, `raft-service` puts a server in front of
//! each node and gives clients a leader-following `Client`.
//!
//! Underneath, [`raft_core`]'s pure state machines run as actors that own their state and talk
//! over bounded channels. There are no shared locks: state belongs to one actor; what actors
//! share is immutable (`Arc`), a mailbox primitive (bells, queue counts, latest-value and
//! position cells, each with its contract written down and model-checked), or a metric
//! counter. The design and its invariants are described in `docs/architecture.md`.
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
pub use node::{
    GroupClient, HeartbeatExecutor, Node, NodeBuilder, ShutdownReport, Stale, Submitted,
};
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
