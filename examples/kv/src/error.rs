//! The library's errors. Binaries turn them into messages and exit codes.

use raft_actor::{GroupId, NodeId};
use raft_service::ClientError;

use crate::machine::Refusal;

/// An address list (`--peers`, `--servers`) could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The list holds no entry.
    #[error("the address list is empty")]
    Empty,
    /// One entry is malformed.
    #[error("bad entry `{entry}`: {reason}")]
    Entry {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two entries have the same node id.
    #[error("node id {0} appears twice")]
    DuplicateId(NodeId),
}

/// A KV server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// This server's id is not in the peer list of the cluster it creates.
    #[error("node id {0} is not in the peer list")]
    NotInPeers(NodeId),
    /// The cluster's settings cannot be placed (fewer nodes than replicas, ...).
    #[error("placement: {0}")]
    Placement(#[from] crate::placement::PlacementError),
    /// Binding a listener failed.
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The write-ahead log could not be opened.
    #[error("cannot open the write-ahead log in {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The storage error.
        #[source]
        source: raft_storage::StorageError,
    },
    /// The Raft transport or the client listener failed to start.
    #[error("network: {0}")]
    Net(#[from] raft_net::NetError),
    /// The node failed to start or to host the metadata group.
    #[error("raft: {0}")]
    Raft(#[from] raft_actor::Error),
    /// The client the server uses to read the placement could not be built.
    #[error("placement client: {0}")]
    Client(#[from] ClientError),
}

/// A KV call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The service call failed (see [`ClientError::is_in_doubt`]).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The group refused the request; nothing changed.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The cluster has no placement yet (its creation has not applied).
    #[error("the cluster has no placement yet")]
    NoPlacement,
    /// A multi-get's keys belong to different groups.
    #[error("the keys belong to groups {first} and {other}; a multi-get reads one group")]
    CrossGroup {
        /// The first key's group.
        first: GroupId,
        /// Another key's group.
        other: GroupId,
    },
    /// An admin call named something the placement does not have, or cannot do.
    #[error("{0}")]
    Admin(String),
    /// An answer of the wrong kind (a server of another version?).
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl KvError {
    /// True when the failed call was a write that may nevertheless have been applied.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, KvError::Client(e) if e.is_in_doubt())
    }
}
