//! The vocabulary every other module uses: ids, terms, indices, log entries, hard state and
//! snapshot metadata.

use serde::{Deserialize, Serialize};

use crate::membership::Membership;

/// Identifies a node (a process) in the cluster. `0` is reserved to mean "nobody".
pub type NodeId = u64;
/// Identifies one Raft group (a partition) among the many a node may host.
pub type GroupId = u64;
/// A Raft term: a logical clock that only moves forward.
pub type Term = u64;
/// A position in the replicated log. The first real entry has index 1; index 0 is the empty
/// prefix every log shares.
pub type Index = u64;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub enum EntryPayload {
    /// The entry a new leader appends at the start of its term (no-op on election,
    /// docs/architecture.md). It carries no command; committing it commits every earlier-term
    /// entry before it (Raft paper, 5.4.2).
    Noop,
    /// A command for the user's state machine, opaque to the protocol. Reference-counted, so
    /// the copies a leader hands to storage, replicators and its state machine share one
    /// buffer. Encoded like a `Vec<u8>`.
    Normal(bytes::Bytes),
    /// A membership configuration. It takes effect as soon as it is appended to a log, not when
    /// it commits (Raft thesis, 4.1).
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct Entry {
    /// Position in the log.
    pub index: Index,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// Approximate size on the wire, used for the replicator's in-flight byte limit.
    pub fn size_hint(&self) -> u64 {
        let body = match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Normal(data) => data.len() as u64,
            EntryPayload::Membership(m) => 8 * m.node_count() as u64 + 40 * m.addrs.len() as u64,
        };
        body + 24
    }
}

/// The state that must be durable before this node promises anything (persistence before
/// promises, docs/architecture.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, or `None`.
    pub vote: Option<NodeId>,
    /// The highest index known committed when this was written. Informational: commit is
    /// recovered from the leader after a restart, so it need not be written on every change.
    pub commit: Index,
}

/// Describes a snapshot: the state machine after applying every entry up to `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct SnapshotMeta {
    /// Last log index the snapshot covers.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// The membership in effect at `index`.
    pub membership: Membership,
}

/// The role a [`crate::PartitionCore`] plays in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub enum Role {
    /// Follows a leader; may time out and campaign if it is a voter.
    Follower,
    /// Running a pre-vote round: asking whether it could win before disturbing anyone's term.
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Accepts proposals and drives replication.
    Leader,
    /// Receives the log but neither votes nor campaigns (not a voter in the current membership).
    Learner,
}
