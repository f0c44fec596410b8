//! What the cores ask the runtime to do: outputs as data.
//!
//! The runtime drains them with `take_actions()` and executes them. Ordering rules:
//! - Persistence actions (`PersistHardState`, `PersistEntries`, `InstallSnapshot`) carry a
//!   sequence number and must be made durable **in order**; when the write with sequence `s` is
//!   durable (and every earlier one), the runtime calls `persisted(s)`.
//! - `Send` may go out immediately: the core itself holds back every message that promises
//!   something not yet durable (a vote, an append acknowledgement) until the matching
//!   `persisted` call (persistence before promises, docs/architecture.md).
//! - `Replicate` and `Apply` are latest-value signals: only the newest matters.

use crate::entries::Entries;
use crate::membership::Membership;
use crate::message::Message;
use crate::types::{HardState, Index, NodeId, Role, SnapshotMeta, Term};

/// One unit of work for the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "model", derive(Hash))]
pub enum Action {
    /// Make `hard_state` durable, then call `persisted(seq)`.
    PersistHardState {
        /// Sequence number of this write.
        seq: u64,
        /// The state to write.
        hard_state: HardState,
    },
    /// Remove entries from `truncate_from` on (if set), append `entries`, make it durable, then
    /// call `persisted(seq)`.
    PersistEntries {
        /// Sequence number of this write.
        seq: u64,
        /// First index to discard before appending.
        truncate_from: Option<Index>,
        /// Entries to append; consecutive. Shared with the message they came in (a follower) or
        /// with what the replicators send (a leader), not copied.
        entries: Entries,
    },
    /// Send a message to another node of the group.
    Send(Message),
    /// Leader only: the log or the commit index changed; wake the replicators (latest value).
    Replicate {
        /// The leader's term (the replicators' epoch).
        term: Term,
        /// First index still in the log; a follower that needs an earlier one gets a snapshot.
        first_index: Index,
        /// Last index of the leader's log.
        last_index: Index,
        /// The leader's commit index.
        commit: Index,
    },
    /// Entries up to `index` are committed and durable here: apply them to the state machine,
    /// then report `applied(index)`.
    Apply {
        /// Apply up to and including this index.
        index: Index,
    },
    /// A linearizable read may now be served: query the state machine (it has applied `index`).
    ReadReady {
        /// The caller's context given to `read_index`.
        ctx: u64,
        /// The read index that was confirmed.
        index: Index,
    },
    /// A pending read cannot be served by this node any more (it lost leadership).
    ReadAborted {
        /// The caller's context.
        ctx: u64,
        /// The leader this node now believes in, if any.
        leader: Option<NodeId>,
    },
    /// Role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The known leader.
        leader: Option<NodeId>,
    },
    /// The effective membership changed (a configuration entry was appended or truncated, or a
    /// snapshot installed one). A leader reconciles its replicators with
    /// [`crate::PartitionCore::replication_peers`].
    MembershipChanged {
        /// The new membership.
        membership: Membership,
    },
    /// Leader only: the nodes it replicates to changed without a configuration change — a node
    /// the configuration removed was told so and is let go (see
    /// [`crate::PartitionCore::replication_peers`]). The runtime reconciles its replicators.
    PeersChanged,
    /// This node is no longer a member of the group: a committed configuration (at `index`)
    /// excludes it. A leader that removed itself knows it when the configuration commits; any
    /// other node is told by the leader ([`crate::MessageBody::Removed`]), which keeps
    /// replicating to it until it holds that configuration; if that leader lost office first,
    /// by a later one that hears from it (the node campaigns with its old configuration, or
    /// asks: [`crate::MessageBody::RemovalQuery`]). (A node cannot tell on its own: a node
    /// that joins again replays the configurations of its earlier membership.) The
    /// runtime stops hosting the group; the core does nothing useful any more.
    Removed {
        /// Index of the committed configuration entry that removed this node.
        index: Index,
    },
    /// A snapshot chunk arrived from `from`; store it (the runtime assembles chunks).
    SnapshotChunk {
        /// The sending leader.
        from: NodeId,
        /// The snapshot the chunk belongs to.
        meta: SnapshotMeta,
        /// Byte offset of `data`.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
        /// True on the last chunk.
        done: bool,
    },
    /// Install the assembled snapshot: restore the state machine from it, make the snapshot
    /// and (when `discard_log`) the emptied log durable, then call `persisted(seq)`. When
    /// `discard_log` is false, entries after `meta.index` are kept (Figure 13, step 6).
    InstallSnapshot {
        /// Sequence number of this write.
        seq: u64,
        /// The snapshot to install.
        meta: SnapshotMeta,
        /// Drop the whole log (it conflicts with the snapshot) instead of keeping its suffix.
        discard_log: bool,
    },
    /// Drop the assembled snapshot at `index`: it is stale.
    DiscardSnapshot {
        /// The snapshot's index.
        index: Index,
    },
    /// Take a snapshot of the state machine at its applied index `index`, then call
    /// `snapshot_taken`.
    TakeSnapshot {
        /// The applied index the snapshot must cover.
        index: Index,
    },
    /// Entries up to `index` may be removed from storage (covered by a snapshot).
    CompactLog {
        /// Last index that may be removed.
        index: Index,
    },
}
