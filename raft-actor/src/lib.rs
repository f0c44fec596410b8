//! # raft-actor: the actor runtime and the `Node` API
//!
//! Runs [`raft_core`]'s pure state machines as actors that own their state and talk over
//! bounded channels. No shared locks (DESIGN.md I1): state belongs to one actor; the only shared
//! values are immutable (`Arc`), latest-value cells (`latest`: one-slot channels and atomic
//! positions; the routing tables are `watch` channels) and metric counters.
//!
//! ## Layout
//! - [`node`] — [`Node`] (the API), [`NodeBuilder`], the registry actor (table of groups) and
//!   the router (network → partitions).
//! - `partition` — the partition actor: drives one group's `PartitionCore`.
//! - `replicator` — one actor per (group, peer) while leading: drives a `ReplicatorCore`.
//! - `apply` — one actor per group: the user's [`StateMachine`], client sessions, snapshots.
//! - `storage` — one actor per node around a [`raft_storage::LogStore`]: group commit.
//! - `heartbeat` — one actor per node on its own executor: coalesced heartbeats that carry
//!   only changes, election timers, check-quorum, stall detection by probing partitions.
//! - `ticks` — on-demand protocol ticks: an idle group's actors arm no timer at all.
//!
//! Every actor runs inside a `tracing` span with its node and group; the partition span records
//! the term and role on every role change, and replicator spans carry their peer and term.
//! - [`config`] — [`NodeConfig`]: every timeout and channel capacity.
//! - [`error`] — [`Error`].
//! - [`metrics`] — counters and snapshots.
//! - [`wire`] — [`WireMsg`], what crosses the network.
//! - [`state_machine`] — the [`StateMachine`] trait and [`RequestId`].
//!
//! ## Channel edges (DESIGN.md I2)
//!
//! Every edge, its capacity (a [`NodeConfig`] field) and what happens when it is full:
//!
//! | from → to | channel | capacity | when full |
//! | --- | --- | --- | --- |
//! | API → partition | flume | `client_queue` | `try_send`: caller gets `Overloaded` |
//! | router → partition | flume | `raft_queue` | `try_send`: dropped and counted (Raft retransmits) |
//! | router → replicator (a peer's answers to this leader's AppendEntries and snapshot chunks, routed by the partition's published replicator queues) | flume | `replicator_queue` | `try_send`: dropped and counted (the replicator retransmits) |
//! | replicator / apply → partition | flume | `control_queue` | `try_send`: progress kept and re-sent on a tick armed for it |
//! | partition → each replicator (log/commit signal) | one-slot flume (`latest`) | latest value | the unread value is replaced; never blocks |
//! | partition → replicator ("peer reachable again", and answers that came before the router knew the replicator) | flume | `replicator_queue` | `try_send`: dropped and counted (a lost nudge leaves the retry to the replicator's own timeout) |
//! | partition → apply (waiters, reads) | flume | `client_queue + max_batch + 64` | room checked before the partition takes client work |
//! | partition → apply (commit index and log tail) | one-slot flume (`latest`) | latest value | the unread value is replaced; never blocks |
//! | apply → partition (applied index) | atomic position (`mailbox::position`) | latest value | never full |
//! | partition / replicator / apply → storage | flume | `storage_queue` | partition: kept in its backlog, no client work until drained; readers: retry next tick |
//! | storage → partition (persisted sequence, sticky error) | atomic position (`mailbox::position`) | latest value | never full |
//! | storage → readers | one-shot | 1 | never full |
//! | partition → heartbeat | flume | `heartbeat_queue` | `try_send`: role updates and contact reports retried on a tick armed for them |
//! | heartbeat → partition (timers, probes) | flume | `control_queue` | `try_send`: a timer fires again at the next interval; a probe that does not fit counts as unanswered (I6) |
//! | actors → transport | raft-net queues | per peer and lane | dropped and counted |
//! | API → registry (add/remove group, shutdown) | flume | 64 | the API call waits (not an actor) |
//! | transport → router (data lane) | flume | raft-net inbound capacity | dropped and counted by raft-net |
//! | transport → heartbeat actor (heartbeat lane) | flume | raft-net inbound capacity | dropped and counted by raft-net |
//!
//! **No bounded cycle can deadlock:** no actor ever awaits a send on a bounded channel while
//! handling a message — every edge above is `try_send`, a latest value or a one-shot — so a full
//! queue never makes its sender wait, and no cycle of waiting senders can form. Replies
//! (storage reads, metrics) are separate events of the receiving actor's loop (I3); the only
//! awaited replies are at the API boundary and in the registry's group start, which no actor
//! waits on.

pub mod config;
pub mod error;
pub mod metrics;
pub mod node;
pub mod state_machine;
pub mod wire;

mod apply;
mod heartbeat;
mod kill;
mod mailbox;
pub(crate) mod partition;
mod replicator;
mod storage;
mod table;
mod tail;
mod ticks;

pub use config::NodeConfig;
pub use error::Error;
pub use metrics::{GroupMetrics, HeartbeatMetrics, NodeMetrics};
pub use node::{GroupClient, HeartbeatExecutor, Node, NodeBuilder};
pub use state_machine::{RequestId, StateMachine};
pub use storage::StorageMode;
pub use wire::WireMsg;
