//! Errors of the counter library. Binaries turn them into messages and exit codes.

use raft_core::NodeId;

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

/// A counter server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// This server's `--id` is not in `--peers`.
    #[error("node id {0} is not in the peer list")]
    NotInPeers(NodeId),
    /// Binding a listener failed (address in use, no permission, ...).
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind {
        /// Which listener: `raft data`, `raft heartbeat` or `client`.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The write-ahead log could not be opened (permissions, corruption).
    #[error("cannot open the write-ahead log in {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The storage error.
        #[source]
        source: raft_storage::StorageError,
    },
    /// The Raft transport or client server failed to start.
    #[error("network: {0}")]
    Net(#[from] raft_net::NetError),
    /// The Raft node failed to start or to host the counter group.
    #[error("raft: {0}")]
    Raft(#[from] raft_actor::Error),
    /// Joining the running cluster failed.
    #[error("joining the cluster: {0}")]
    Join(#[source] raft_service::JoinError),
}
