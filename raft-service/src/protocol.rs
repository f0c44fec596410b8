//! What a client and a server say to each other: one [`Request`] and one [`Answer`] per call,
//! carried by raft-net's RPC (length-prefixed postcard frames, calls pipelined over one
//! connection).
//!
//! The types are generic over the state machine's command, query and response types, so the
//! same protocol serves any [`raft_actor::StateMachine`].

use std::marker::PhantomData;
use std::net::SocketAddr;

use raft_actor::{GroupId, Index, Membership, NodeAddrs, NodeId, RequestId, Term};
use serde::{Deserialize, Serialize};

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadKind {
    /// Reflects every write acknowledged before the read began (ReadIndex at the leader).
    #[default]
    Linearizable,
    /// Served by the leader without a round of heartbeats while its check-quorum lease holds;
    /// as fresh as a linearizable read unless clocks drift more than the lease's margin.
    Lease,
    /// Served by whichever node is asked, from what it has applied; the answer says which
    /// index it reflects.
    Stale,
}

/// A client's call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<C, Q> {
    /// Replicate and apply `command` in `group`. With a session id a retry applies at most
    /// once and is answered with the first application's response.
    Propose {
        /// The group.
        group: GroupId,
        /// The client session and sequence number, if any.
        session: Option<RequestId>,
        /// The command, encoded by the client: the server puts these bytes into the log
        /// without decoding them.
        command: Encoded<C>,
    },
    /// Answer `query` against `group`'s state.
    Read {
        /// The group.
        group: GroupId,
        /// How fresh the answer must be.
        kind: ReadKind,
        /// The query.
        query: Q,
    },
    /// Open a client session in `group` (a replicated entry; answered with its id).
    OpenSession {
        /// The group.
        group: GroupId,
    },
    /// An administrative call.
    Admin(Admin),
}

/// A command as its postcard encoding. A server forwards it into the log as it is
/// (`raft_actor::Node::propose_encoded`), so a write costs no decode and re-encode on the
/// leader; a command that does not decode is answered with an error when it applies, and
/// changes nothing.
pub struct Encoded<C> {
    bytes: Vec<u8>,
    _command: PhantomData<fn() -> C>,
}

impl<C: Serialize> Encoded<C> {
    /// Encodes `command`.
    pub fn new(command: &C) -> Result<Self, postcard::Error> {
        Ok(Encoded {
            bytes: postcard::to_allocvec(command)?,
            _command: PhantomData,
        })
    }
}

impl<C> Encoded<C> {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<C: serde::de::DeserializeOwned> Encoded<C> {
    /// Decodes the command.
    pub fn decode(&self) -> Result<C, postcard::Error> {
        postcard::from_bytes(&self.bytes)
    }
}

impl<C> Clone for Encoded<C> {
    fn clone(&self) -> Self {
        Encoded {
            bytes: self.bytes.clone(),
            _command: PhantomData,
        }
    }
}

impl<C> std::fmt::Debug for Encoded<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.bytes.len())
    }
}

impl<C> PartialEq for Encoded<C> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<C> Eq for Encoded<C> {}

impl<C> Serialize for Encoded<C> {
    fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de, C> Deserialize<'de> for Encoded<C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an encoded command")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        Ok(Encoded {
            bytes: d.deserialize_byte_buf(Bytes)?,
            _command: PhantomData,
        })
    }
}

/// Administrative calls. Those that change the group go to its leader (others answer
/// `NotLeader` with the leader's address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// The answering node's view of `group` (any node answers).
    Status {
        /// The group.
        group: GroupId,
    },
    /// The answering node's view of every group it hosts (any node answers).
    Node,
    /// The group's current configuration with every member's addresses (any node answers).
    Members {
        /// The group.
        group: GroupId,
    },
    /// Add node `id` as a learner, wait until it has caught up, then (with `voter`) make it
    /// a voter. Answered once the final configuration has committed.
    AddNode {
        /// The group.
        group: GroupId,
        /// The new node.
        id: NodeId,
        /// Where it listens.
        addrs: NodeAddrs,
        /// Promote it to voter once caught up.
        voter: bool,
    },
    /// Remove node `id` (voter or learner). Answered once the final configuration has
    /// committed.
    RemoveNode {
        /// The group.
        group: GroupId,
        /// The node to remove.
        id: NodeId,
    },
    /// Hand leadership of `group` to `to`.
    TransferLeader {
        /// The group.
        group: GroupId,
        /// The new leader.
        to: NodeId,
    },
}

/// A server's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer<R> {
    /// A command was applied at `index`.
    Applied {
        /// The log index of the command's entry.
        index: Index,
        /// The state machine's response.
        response: R,
    },
    /// A query's answer.
    Read {
        /// For a stale read: the applied index the answer reflects.
        applied: Option<Index>,
        /// The state machine's response.
        response: R,
    },
    /// A session was opened.
    Session {
        /// Its id (use it as `RequestId::client`).
        client: u64,
    },
    /// Answer to [`Admin::Status`].
    Status(GroupStatus),
    /// Answer to [`Admin::Node`].
    Node(NodeStatus),
    /// Answer to [`Admin::Members`].
    Members(Membership),
    /// A membership change or leader transfer was done; `index` is the configuration entry's
    /// index (0 for a transfer).
    Done {
        /// The final configuration's index.
        index: Index,
    },
    /// The call failed.
    Error(ServiceError),
}

impl<R> Answer<R> {
    /// The answer's name and, for an error, the error: for messages about an answer that
    /// was not the one expected.
    pub fn describe(&self) -> String {
        match self {
            Answer::Applied { index, .. } => format!("Applied at {index}"),
            Answer::Read { .. } => "Read".into(),
            Answer::Session { client } => format!("Session {client}"),
            Answer::Status(s) => format!("Status of node {}", s.node),
            Answer::Node(n) => format!("Node status of node {}", n.node),
            Answer::Members(_) => "Members".into(),
            Answer::Done { index } => format!("Done at {index}"),
            Answer::Error(e) => format!("Error: {e}"),
        }
    }
}

/// One node's view of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The answering node.
    pub node: NodeId,
    /// The group.
    pub group: GroupId,
    /// Whether the answering node leads the group.
    pub is_leader: bool,
    /// Its role, for humans: `Leader`, `Follower`, `Candidate`, `PreCandidate`, `Learner`.
    pub role: String,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: Index,
    /// Its applied index.
    pub applied: Index,
    /// Its last log index.
    pub last_index: Index,
    /// Leader only: how many entries each member is behind.
    pub lag: Vec<(NodeId, Index)>,
    /// The configuration it knows.
    pub membership: Membership,
}

/// One node's view of every group it hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The answering node.
    pub node: NodeId,
    /// Its groups, in id order.
    pub groups: Vec<GroupSummary>,
}

impl NodeStatus {
    /// The groups this node leads.
    pub fn leads(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.iter().filter(|g| g.is_leader).map(|g| g.group)
    }
}

/// One group in a [`NodeStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group.
    pub group: GroupId,
    /// Whether the node leads it.
    pub is_leader: bool,
    /// The node's current term in it.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: Index,
    /// Its applied index.
    pub applied: Index,
    /// Terms in which this node led the group (elections it won).
    pub leader_terms: u64,
    /// Leader only: the most entries any member is behind.
    pub max_lag: Index,
    /// False when the group's actor did not answer (stalled); the figures are then its
    /// counters'.
    pub responsive: bool,
}

/// Why a call failed, as the server saw it. The client's retry rule reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    /// The answering node does not lead the group; `addr` is the leader's client address
    /// when known. Nothing was applied.
    #[error("node {node} does not lead group {group} (leader: {leader:?} at {addr:?})")]
    NotLeader {
        /// The answering node.
        node: NodeId,
        /// The group.
        group: GroupId,
        /// The leader it believes in.
        leader: Option<NodeId>,
        /// That leader's client address.
        addr: Option<SocketAddr>,
    },
    /// The node cannot take the call now (queue full, shutting down, group not hosted yet,
    /// a membership change in progress); nothing was applied. Retry, perhaps elsewhere.
    #[error("group {group} unavailable: {reason}")]
    Unavailable {
        /// The group.
        group: GroupId,
        /// Why, for humans.
        reason: String,
    },
    /// No answer within the server's request timeout: a write may or may not have been
    /// applied (retry it with the same session id to apply it exactly once).
    #[error("group {group} timed out: {reason}")]
    Timeout {
        /// The group.
        group: GroupId,
        /// What timed out, for humans.
        reason: String,
    },
    /// The session was evicted or never opened here: the write was not applied. Open a new
    /// session; whether the earlier attempt was applied is unknown.
    #[error("session {client} of group {group} has expired")]
    SessionExpired {
        /// The group.
        group: GroupId,
        /// The session id.
        client: u64,
    },
    /// The call is invalid and retrying will not help (bad membership, unknown transfer
    /// target, a command the state machine's codec refuses, ...).
    #[error("refused: {reason}")]
    Refused {
        /// Why, for humans.
        reason: String,
    },
    /// The answering node does not host the group; `hosts` are the client addresses of nodes
    /// that do, as the server's redirect ([`crate::server::Redirect`]) knows them. Nothing was
    /// applied. Only servers given a redirect answer this (a sharded service, where not every
    /// node hosts every group); others answer [`ServiceError::Unavailable`].
    #[error("node {node} does not host group {group} (hosts: {hosts:?})")]
    NotHosted {
        /// The answering node.
        node: NodeId,
        /// The group.
        group: GroupId,
        /// Client addresses of the nodes hosting it.
        hosts: Vec<SocketAddr>,
    },
}

impl ServiceError {
    /// True when retrying (perhaps at another server) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ServiceError::NotLeader { .. }
                | ServiceError::NotHosted { .. }
                | ServiceError::Unavailable { .. }
                | ServiceError::Timeout { .. }
        )
    }

    /// True when a write that failed this way may nevertheless have been applied.
    pub fn maybe_applied(&self) -> bool {
        matches!(self, ServiceError::Timeout { .. })
    }
}
