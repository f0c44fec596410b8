//! Errors of raft-core. Every variant is something a caller can act on; the core itself never
//! panics on bad input: a bad call is refused with one of these, a bad message is dropped with a
//! log line.

use thiserror::Error;

use crate::types::{Index, NodeId};

/// Errors returned by raft-core.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A configuration field is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// This node is not the leader; retry at `leader` if known.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node believes in, if any.
        leader: Option<NodeId>,
    },
    /// A leader transfer is in progress; proposals are refused until it ends (retry shortly).
    #[error("a leader transfer is in progress")]
    TransferInProgress,
    /// A membership change was refused.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A leader transfer request was invalid.
    #[error("cannot transfer leadership to node {target}: {reason}")]
    Transfer {
        /// The requested target.
        target: NodeId,
        /// Why not.
        reason: &'static str,
    },
    /// Too many reads are waiting for confirmation; retry later (backpressure: bounded queues,
    /// docs/architecture.md).
    #[error("too many pending reads ({limit})")]
    ReadsOverloaded {
        /// The configured limit.
        limit: usize,
    },
    /// The initial state given to the core is inconsistent (e.g. a log with gaps).
    #[error("invalid initial state: {0}")]
    InvalidState(&'static str),
    /// A snapshot was offered that the core cannot use.
    #[error("snapshot at index {index} rejected: {reason}")]
    Snapshot {
        /// The snapshot's index.
        index: Index,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// A configuration field is out of range; names the field.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid config field `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a membership change was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// A configuration must have at least one voter.
    #[error("a configuration needs at least one voter")]
    NoVoters,
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved")]
    ReservedNodeId,
    /// A node cannot be both a learner and a voter.
    #[error("node {0} is listed as both learner and voter")]
    LearnerIsVoter(NodeId),
    /// Addresses were given for a node that is not in the configuration.
    #[error("addresses given for node {0}, which is not in the configuration")]
    AddrsOfNonMember(NodeId),
    /// An earlier change has not finished (it is uncommitted, the group is in joint consensus,
    /// or a node it removed is still being told so and cannot be added back yet). Retry once
    /// it has.
    #[error("a membership change is already in progress (config entry at index {index})")]
    ChangeInProgress {
        /// Index of the pending configuration entry.
        index: Index,
    },
    /// The requested configuration equals the current one.
    #[error("the requested membership equals the current one")]
    Unchanged,
    /// The target is a joint configuration: ask for the simple configuration to reach; the
    /// joint phase is the leader's business.
    #[error("the target must be a simple configuration, not a joint one")]
    JointTarget,
    /// A node would become a voter without being a learner of the current configuration first:
    /// add it as a learner, let it catch up, then promote it.
    #[error("node {0} must be a learner before it can become a voter")]
    NotLearner(NodeId),
    /// A learner would become a voter while its log is too far behind the leader's (more than
    /// `Config::learner_catchup_lag` entries, or without the latest committed configuration):
    /// promoting it could leave the group without a quorum that holds the log until it catches
    /// up.
    #[error("learner {node} is not caught up (holds up to {matched}, leader's last index {last})")]
    NotCaughtUp {
        /// The learner.
        node: NodeId,
        /// The highest index it is known to hold.
        matched: Index,
        /// The leader's last index.
        last: Index,
    },
}
