//! What the counter's client port speaks: [`Request`] and [`Response`], carried by
//! `raft_net::rpc` (one connection per client and server, calls pipelined).

use raft_actor::RequestId;
use raft_core::NodeId;
use serde::{Deserialize, Serialize};

/// A client's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Open a client session (answered [`Response::Session`] with its id). A client opens one
    /// before its first increment, and a new one after [`Response::SessionExpired`].
    OpenSession,
    /// Add `n` under the client session `id` (`id.client` from [`Request::OpenSession`],
    /// `id.seq` counting from 1). A retry must carry the same `id`: it is then applied once,
    /// and answered with the first application's value.
    Incr {
        /// The client session and sequence number.
        id: RequestId,
        /// The amount to add.
        n: i64,
    },
    /// A linearizable read of the value (Raft ReadIndex at the leader).
    Get,
    /// This server's view of the group (any server answers; no Raft round).
    Status,
}

/// A server's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The value after the increment, or the value read.
    Value(i64),
    /// This server does not lead the group. `addr` is the leader's client address when the
    /// server knows it; the client should retry there.
    NotLeader {
        /// The leader this server believes in, if any (an election may be running).
        leader: Option<NodeId>,
        /// That leader's client address, if this server knows it.
        addr: Option<String>,
    },
    /// The request failed for a reason other than leadership. With `retryable` the client
    /// should back off and retry (overload, timeout, shutting down); otherwise retrying will
    /// not help.
    Unavailable {
        /// The server's error, for humans.
        reason: String,
        /// Whether retrying (with the same session id) makes sense.
        retryable: bool,
    },
    /// Answer to [`Request::Status`].
    Status(Status),
    /// Answer to [`Request::OpenSession`]: the new session's id.
    Session(u64),
    /// The increment's session was evicted from the group's session table (it keeps the
    /// most recently used ones): this attempt was not applied, an earlier attempt may have
    /// been. Open a new session for further increments.
    SessionExpired,
}

/// A server's view of the group, for `counter-client status` and tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The answering server.
    pub node: NodeId,
    /// Its role: `Leader`, `Follower`, `Candidate` or `PreCandidate`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
}

impl Status {
    /// Whether the answering server leads the group.
    pub fn is_leader(&self) -> bool {
        self.role == "Leader"
    }
}
