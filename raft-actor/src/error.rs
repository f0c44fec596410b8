//! Errors of the runtime. Retryable conditions (`NotLeader`, `Overloaded`, `Timeout`, a
//! membership change that is in progress or whose outcome is unknown, a group removed from this
//! node) are kept apart from fatal ones (`Storage`, `Stopped`), as openraft separates API errors
//! from fatal.

use std::net::SocketAddr;

use raft_core::{GroupId, Index, MembershipError, NodeId};
use thiserror::Error;

/// Errors returned by the [`crate::Node`] API.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// This node does not lead the group; retry at `leader` if known.
    #[error("not the leader of group {group} (leader hint: {leader:?} at {leader_addr:?})")]
    NotLeader {
        /// The group.
        group: GroupId,
        /// The leader this node believes in.
        leader: Option<NodeId>,
        /// The leader's client address ([`raft_core::NodeAddrs::client`]), when the group's
        /// configuration has it.
        leader_addr: Option<SocketAddr>,
    },
    /// The group's queue is full: back off and retry (I2).
    #[error("group {group} is overloaded; retry later")]
    Overloaded {
        /// The group.
        group: GroupId,
    },
    /// No answer within the request timeout. The request may or may not have been applied;
    /// retry with the same client session and sequence number to apply it exactly once.
    #[error("request to group {group} timed out")]
    Timeout {
        /// The group.
        group: GroupId,
    },
    /// The node or the group is shutting down (or has stopped after a fatal error).
    #[error("stopped")]
    Stopped,
    /// The node hosts no such group.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// A group with this id already exists on this node.
    #[error("group {0} already exists")]
    GroupExists(GroupId),
    /// A configuration field is invalid.
    #[error("invalid config field `{field}`: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An earlier membership change of the group has not finished (or a node it removed is
    /// still being told so): retry once it has.
    #[error("group {group}: a membership change is already in progress")]
    ChangeInProgress {
        /// The group.
        group: GroupId,
    },
    /// A membership change was accepted (its first entry is at `index`) but this node stopped
    /// leading, or the change did not finish within the request timeout, before its final
    /// configuration committed: it may or may not take effect. Retry at the leader — asking
    /// again for the configuration already in effect (or a learner already added) waits for
    /// it to commit and succeeds — or read the configuration with `Node::membership`.
    #[error("group {group}: the outcome of the membership change at index {index} is unknown")]
    ChangeOutcomeUnknown {
        /// The group.
        group: GroupId,
        /// Index of the change's first entry.
        index: Index,
    },
    /// A learner was added (its configuration committed; it stays in the configuration) but
    /// did not catch up with the leader's log within `NodeConfig::learner_catchup_timeout`.
    #[error(
        "group {group}: learner {node} did not catch up (holds up to {matched}, leader's last \
         index {leader_last})"
    )]
    LearnerLagging {
        /// The group.
        group: GroupId,
        /// The learner.
        node: NodeId,
        /// The highest index it was known to hold.
        matched: Index,
        /// The leader's last index at the time.
        leader_last: Index,
    },
    /// This node was removed from the group's configuration: it stopped hosting the group
    /// (its storage of the group was purged). Send the request to a member.
    #[error("this node was removed from group {group}")]
    Removed {
        /// The group.
        group: GroupId,
    },
    /// The protocol refused the request (invalid membership, transfer target, ...).
    #[error("group {group}: {source}")]
    Raft {
        /// The group.
        group: GroupId,
        /// The protocol error.
        #[source]
        source: raft_core::Error,
    },
    /// A command, response or snapshot could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// Storage failed; the affected groups stopped (fatal).
    #[error("storage failure: {0}")]
    Storage(String),
    /// The group stopped after a fatal error (other than storage's): calls for it answer this
    /// until it is removed with `Node::remove_partition` and added again.
    #[error("group {group} stopped after a fatal error: {reason}")]
    GroupFailed {
        /// The group.
        group: GroupId,
        /// What went wrong.
        reason: String,
    },
    /// The state machine could not restore a snapshot (`StateMachine::restore` failed, or
    /// the snapshot's bytes could not be read). The group stopped rather than go on from a
    /// state it does not have; calls for it answer this until it is removed and added again.
    #[error("group {group}: restoring the snapshot at index {index} failed: {reason}")]
    SnapshotRestore {
        /// The group.
        group: GroupId,
        /// The snapshot's index.
        index: Index,
        /// What went wrong.
        reason: String,
    },
    /// The request named a client session this group no longer holds (it was evicted to keep
    /// the table within `NodeConfig::max_sessions`, or was never opened). The request was not
    /// applied by this attempt; an earlier attempt of it may or may not have been, and retrying
    /// cannot tell. Not retryable: open a new session (`Node::open_session`) for new requests.
    #[error("client session {client} of group {group} has expired")]
    SessionExpired {
        /// The group.
        group: GroupId,
        /// The session id the request carried.
        client: u64,
    },
}

impl Error {
    /// True for errors where retrying (perhaps at another node) makes sense.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::Overloaded { .. }
                | Error::Timeout { .. }
                | Error::ChangeInProgress { .. }
                | Error::ChangeOutcomeUnknown { .. }
                | Error::Removed { .. }
        )
    }

    /// Maps a protocol error of `group`. A `NotLeader` carries no address; the partition
    /// actor, which knows the group's configuration, fills it in.
    pub(crate) fn raft(group: GroupId, e: raft_core::Error) -> Error {
        match e {
            raft_core::Error::NotLeader { leader } => Error::NotLeader {
                group,
                leader,
                leader_addr: None,
            },
            raft_core::Error::TransferInProgress | raft_core::Error::ReadsOverloaded { .. } => {
                Error::Overloaded { group }
            }
            raft_core::Error::Membership(MembershipError::ChangeInProgress { .. }) => {
                Error::ChangeInProgress { group }
            }
            source => Error::Raft { group, source },
        }
    }
}
