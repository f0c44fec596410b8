//! Errors of the runtime. Retryable conditions (`NotLeader`, `Overloaded`, `Timeout`) are kept
//! apart from fatal ones (`Storage`, `Stopped`), as openraft separates API errors from fatal.

use raft_core::{GroupId, NodeId};
use thiserror::Error;

/// Errors returned by the [`crate::Node`] API.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// This node does not lead the group; retry at `leader` if known.
    #[error("not the leader of group {group} (leader hint: {leader:?})")]
    NotLeader {
        /// The group.
        group: GroupId,
        /// The leader this node believes in.
        leader: Option<NodeId>,
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
            Error::NotLeader { .. } | Error::Overloaded { .. } | Error::Timeout { .. }
        )
    }

    pub(crate) fn raft(group: GroupId, e: raft_core::Error) -> Error {
        match e {
            raft_core::Error::NotLeader { leader } => Error::NotLeader { group, leader },
            raft_core::Error::TransferInProgress | raft_core::Error::ReadsOverloaded { .. } => {
                Error::Overloaded { group }
            }
            source => Error::Raft { group, source },
        }
    }
}
