//! # raft-core: the Raft protocol as pure, deterministic state machines
//!
//! What this crate is **not**: a runtime. It never touches a socket, a file, a thread or the
//! clock. Time arrives as [`PartitionCore::tick`]; randomness comes from [`Config::seed`]; the
//! same state and the same inputs always give the same outputs. `raft-actor` drives these cores
//! from actors; tests drive them directly.
//!
//! ## Layout
//! - [`types`] — ids, terms, indices, entries, hard state, snapshot metadata, roles.
//! - [`membership`] — voters, learners, joint configurations.
//! - [`quorum`] — majority and joint quorum arithmetic.
//! - [`log_meta`] — the term of every log entry, without payloads ([`LogTerms`]).
//! - [`message`] — wire messages (serde).
//! - [`config`] — [`Config`] and its validation.
//! - [`error`] — [`Error`] and friends.
//! - [`action`] — [`Action`]: the work the runtime must do.
//! - [`partition`] — [`PartitionCore`]: one group's protocol state on one node.
//! - [`replicator`] — [`ReplicatorCore`]: one leader's view of one peer (next index, window).
//! - [`rng`] — the seeded generator for election jitter.
//!
//! ## The contract
//! Inputs are methods: [`PartitionCore::step`] (a message), [`PartitionCore::tick`],
//! [`PartitionCore::propose`], [`PartitionCore::persisted`], [`PartitionCore::progress`],
//! [`PartitionCore::applied`], [`PartitionCore::read_index`], [`PartitionCore::read_lease`], ... Outputs are [`Action`]s,
//! drained with [`PartitionCore::take_actions`]. Persistence actions carry a sequence number and
//! must be made durable in order; the core holds back votes and append acknowledgements until
//! `persisted(seq)` says the state they promise is on disk (persistence before promises,
//! docs/architecture.md).
//!
//! Replication to a peer is split off into a [`ReplicatorCore`] so a runtime can run one per
//! peer (an actor each): the partition core says *what* the log is ([`Action::Replicate`]), the
//! replicator decides *what to send next* to its peer and turns acknowledgements into
//! [`PartitionCore::progress`] reports.

pub mod action;
pub mod config;
pub mod entries;
pub mod error;
pub mod log_meta;
pub mod membership;
pub mod message;
pub mod partition;
pub mod quorum;
pub mod replicator;
pub mod rng;
pub mod types;

pub use action::Action;
pub use config::Config;
pub use entries::Entries;
pub use error::{ConfigError, Error, MembershipError};
pub use log_meta::LogTerms;
pub use membership::{Membership, NodeAddrs};
pub use message::{AppendResponse, ConflictHint, Message, MessageBody, SnapshotStatus};
#[cfg(feature = "model-bugs")]
pub use partition::Bug;
pub use partition::{InitialState, PartitionCore, Proposed, Status};
pub use replicator::{Outcome, Plan, ReplState, ReplicatorCore};
pub use types::{Entry, EntryPayload, GroupId, HardState, Index, NodeId, Role, SnapshotMeta, Term};
