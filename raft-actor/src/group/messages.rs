//! The messages a group's actors exchange, and the entry format proposals travel in. Every
//! actor file imports its messages from here, so no actor file imports another.

use std::collections::{BTreeMap, BTreeSet};

use raft_core::{
    GroupId, Index, Membership, Message, MessageBody, NodeAddrs, NodeId, Role, SnapshotMeta, Term,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::tail::TailView;
use crate::error::Error;
use crate::mailbox::inbox::InboxTx;
use crate::metrics::{GroupMetrics, GroupStats};
use crate::state_machine::{RequestId, StateMachine};

/// A reply channel for a client request.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A read's reply: the applied index the answer reflects, and the answer.
pub(crate) type QueryReply<R> = Reply<(Index, R)>;

/// What a proposal's entry gave when it applied: its index and outcome.
#[derive(Debug)]
pub(crate) struct Answer<R> {
    /// The log index the request took effect at: its entry's, or for a retry answered from
    /// the session table, the entry that first applied it.
    pub(crate) index: Index,
    pub(crate) outcome: Outcome<R>,
}

impl<R> Answer<R> {
    /// The state machine's response with its index; a session-opening entry has none.
    pub(crate) fn into_indexed(self) -> Result<(Index, R), Error> {
        match self.outcome {
            Outcome::Response(r) => Ok((self.index, r)),
            Outcome::SessionOpened => Err(Error::Codec(
                "the entry opened a session; it has no command response".into(),
            )),
        }
    }
}

/// What applying a proposal's entry did.
#[derive(Debug)]
pub(crate) enum Outcome<R> {
    /// The state machine's response to the command.
    Response(R),
    /// The entry opened a client session; its id is the entry's index.
    SessionOpened,
}

/// Where a proposal landed in the leader's log: `(index, term)`, sent as soon as it is
/// appended (for `Node::submit`).
pub(crate) type Appended = oneshot::Sender<(Index, Term)>;

/// Requests from `Node` API callers. Queue: `client_queue` per group, `try_send` (full →
/// `Overloaded`).
pub(crate) enum ClientReq<S: StateMachine> {
    Propose {
        payload: Vec<u8>,
        reply: Reply<Answer<S::Response>>,
        /// Told the entry's index and term once it is appended (dropped on refusal).
        appended: Option<Appended>,
    },
    /// A linearizable read (ReadIndex).
    Read {
        query: S::Query,
        reply: QueryReply<S::Response>,
    },
    /// A read under the leader's lease (ReadIndex when the lease does not hold).
    ReadLease {
        query: S::Query,
        reply: QueryReply<S::Response>,
    },
    /// A read of the local applied state, on any node.
    ReadStale {
        query: S::Query,
        reply: QueryReply<S::Response>,
    },
    Transfer {
        to: NodeId,
        reply: Reply<()>,
    },
    ChangeMembership {
        target: Membership,
        reply: Reply<Index>,
    },
    AddLearner {
        id: NodeId,
        addrs: Option<NodeAddrs>,
        reply: Reply<Index>,
    },
}

/// Internal notifications. Queue: `control_queue`, `try_send` by every sender; senders that
/// find it full retry on their next tick, so nothing waits.
pub(crate) enum Control {
    /// A replicator's peer acknowledged up to `matched` in epoch `term`.
    Progress {
        peer: NodeId,
        term: Term,
        matched: Index,
    },
    /// A replicator saw a message with a newer term: step it into the core.
    Step(Message),
    /// The heartbeat actor's election timer fired.
    ElectionTimeout,
    /// The heartbeat actor saw no quorum contact within an election timeout.
    QuorumLost,
    /// The heartbeat actor asks for proof of progress (I6): handling any message bumps
    /// `GroupStats::partition_wakeups`, which is the answer.
    Probe,
    /// The heartbeat actor hears this peer node again after a silence of an election timeout:
    /// its replicator retries what was probably lost at once.
    PeerReachable(NodeId),
    /// The apply actor took a snapshot.
    SnapshotTaken(SnapshotMeta),
    /// The apply actor could not take the snapshot it was asked for (asked again later).
    SnapshotFailed,
    /// The apply actor hit an error the group cannot go on after (a snapshot that does not
    /// restore): the group stops with it.
    Fatal(Error),
    /// Test hook (I6): stop processing anything for this long.
    #[cfg(feature = "fault-injection")]
    Freeze(std::time::Duration),
    /// Metrics request.
    Status(oneshot::Sender<GroupMetrics>),
    /// The group's effective configuration, addresses included.
    Membership(oneshot::Sender<Membership>),
    /// Stop the actor (I10: shutdown is a message).
    Shutdown,
}

/// What the partition publishes to its replicators: the leader's log bounds and commit index,
/// and the log's in-memory tail (so fresh entries are sent without a storage read).
#[derive(Clone, Debug, Default)]
pub(crate) struct ReplicateSignal {
    pub(crate) term: Term,
    pub(crate) first_index: Index,
    pub(crate) last_index: Index,
    pub(crate) commit: Index,
    pub(crate) tail: TailView,
}

/// Two signals are the same change when their bounds are: a leader's tail only changes when
/// its last index does.
impl PartialEq for ReplicateSignal {
    fn eq(&self, other: &Self) -> bool {
        (self.term, self.first_index, self.last_index, self.commit)
            == (
                other.term,
                other.first_index,
                other.last_index,
                other.commit,
            )
    }
}

/// What the partition forwards to a replicator (queue `replicator_queue`, `try_send`: dropped
/// and counted when full).
pub(crate) enum ToReplicator {
    /// An answer from the peer (AppendResponse, SnapshotResponse).
    Response(Message),
    /// The heartbeat actor hears the peer again after a silence: retry what waits for it now.
    PeerReachable,
}

impl ToReplicator {
    /// Whether `m` is a peer's answer to replication (AppendResponse, SnapshotResponse): what
    /// the leader's replicator of that peer takes.
    pub(crate) fn takes(m: &Message) -> bool {
        matches!(
            m.body,
            MessageBody::AppendResponse(_) | MessageBody::SnapshotResponse { .. }
        )
    }
}

/// What precedes the command in a log entry's bytes. Its first two variants encode as
/// postcard encodes `Option<RequestId>` (0: none, 1: the id), the format before sessions were
/// opened by entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Header {
    /// A command outside any session.
    Plain,
    /// A command under a client session.
    Session(RequestId),
    /// Opens a client session (no command follows): its id is the entry's index. The table
    /// keeps at most `max_sessions`, the proposing node's cap, evicting the least recently
    /// used.
    OpenSession {
        /// The cap on the group's session table.
        max_sessions: u64,
    },
}

/// A log entry's command bytes: the postcard encoding of its [`Header`], followed directly by
/// the postcard encoding of the command (one allocation to encode, none to split).
pub(crate) struct Proposal;

impl Proposal {
    /// Encodes `id` and `command` into one buffer.
    pub(crate) fn encode<C: Serialize>(
        id: Option<RequestId>,
        command: &C,
    ) -> Result<Vec<u8>, postcard::Error> {
        let header = id.map_or(Header::Plain, Header::Session);
        let head = postcard::to_extend(&header, Vec::with_capacity(32))?;
        postcard::to_extend(command, head)
    }

    /// As [`Proposal::encode`], with the command already encoded (postcard of the command).
    pub(crate) fn encode_raw(
        id: Option<RequestId>,
        command: &[u8],
    ) -> Result<Vec<u8>, postcard::Error> {
        let header = id.map_or(Header::Plain, Header::Session);
        let mut bytes = postcard::to_extend(&header, Vec::with_capacity(16 + command.len()))?;
        bytes.extend_from_slice(command);
        Ok(bytes)
    }

    /// The bytes of an entry that opens a session in a table capped at `max_sessions`.
    pub(crate) fn open_session(max_sessions: usize) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(&Header::OpenSession {
            max_sessions: max_sessions as u64,
        })
    }

    /// Splits entry bytes into the header and the command's bytes.
    pub(crate) fn split(bytes: &[u8]) -> Result<(Header, &[u8]), postcard::Error> {
        postcard::take_from_bytes::<Header>(bytes)
    }
}

/// A proposal waiting for its entry to apply.
pub(crate) struct Waiter<S: StateMachine> {
    pub(crate) index: Index,
    pub(crate) term: Term,
    pub(crate) reply: Reply<Answer<S::Response>>,
}

/// Messages to the apply actor.
pub(crate) enum ApplyMsg<S: StateMachine> {
    Waiters(Vec<Waiter<S>>),
    /// Answer `query` once the state machine has applied `index` (0: at once), with the
    /// applied index it reflects.
    Query {
        index: Index,
        query: S::Query,
        reply: QueryReply<S::Response>,
    },
    /// Restore the state machine from the snapshot storage holds (installed as `meta`).
    Restore {
        meta: SnapshotMeta,
    },
    /// Take a snapshot of what is applied (at least what the partition saw applied).
    TakeSnapshot,
    Shutdown,
}

/// What partition actors tell the node's heartbeat actor (queue `heartbeat_queue`,
/// `try_send`: retried on a tick armed for it).
pub(crate) enum HbUpdate {
    Register {
        group: GroupId,
        control: InboxTx<Control>,
        stats: std::sync::Arc<GroupStats>,
    },
    Unregister {
        group: GroupId,
    },
    Role {
        group: GroupId,
        role: Role,
        term: Term,
        voters: BTreeSet<NodeId>,
        voters_outgoing: BTreeSet<NodeId>,
        members: BTreeSet<NodeId>,
    },
    /// The partition accepted an append or snapshot from its leader at `term`.
    Contact {
        group: GroupId,
        term: Term,
    },
    Shutdown,
}

/// What a group's partition tells the node's registry, which owns the node-wide view of the
/// transport's peers and the table of groups. Queue: `registry_queue`, `try_send`; a partition
/// that finds it full tries again on a tick armed for it.
pub(crate) enum ToRegistry {
    /// The nodes the group talks to (its effective configuration's members and, on a leader,
    /// the removed nodes it is still telling), with their addresses where the configuration
    /// has them. Replaces what the group said before.
    Peers {
        group: GroupId,
        /// Which start of the group this is (a group removed and added again is another).
        incarnation: u64,
        nodes: BTreeMap<NodeId, Option<NodeAddrs>>,
    },
    /// This node learned it was removed from the group (by the committed configuration at
    /// `index`); the partition stops once this is sent.
    Removed {
        group: GroupId,
        incarnation: u64,
        index: Index,
    },
    /// The group stopped after a fatal error; calls for it answer `error` from now on.
    Failed {
        group: GroupId,
        incarnation: u64,
        error: Error,
    },
}
