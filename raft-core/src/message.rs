//! Wire messages between the cores of one group on different nodes.
//!
//! Plain serde types: raft-net frames them, the cores step them. Every message carries the
//! sender's term; Raft's term rules (Figure 2, "Rules for all servers") are applied to it before
//! the body is looked at.

use serde::{Deserialize, Serialize};

use crate::entries::Entries;
use crate::types::{Index, NodeId, SnapshotMeta, Term};

/// A message of one Raft group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Intended receiver; a core ignores messages addressed to another node.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub enum MessageBody {
    /// RequestVote RPC (Raft paper, 5.2), or a pre-vote probe when `pre_vote` is set.
    RequestVote {
        /// A pre-vote: asks "would you vote for me" without anyone changing term.
        pre_vote: bool,
        /// Index of the candidate's last entry.
        last_index: Index,
        /// Term of the candidate's last entry.
        last_term: Term,
        /// Sent after a `TimeoutNow`: voters skip the leader-lease check (leader transfer).
        transfer: bool,
    },
    /// Answer to `RequestVote`.
    VoteResponse {
        /// Answers a pre-vote request.
        pre_vote: bool,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries RPC (Raft paper, 5.3).
    AppendEntries {
        /// Index of the entry preceding `entries`.
        prev_index: Index,
        /// Term of the entry at `prev_index`.
        prev_term: Term,
        /// Entries to store, consecutive from `prev_index + 1`; may be empty (a probe). Shared:
        /// the messages to every follower and the leader's own write hold one copy.
        entries: Entries,
        /// The leader's commit index.
        commit: Index,
    },
    /// Answer to `AppendEntries`.
    AppendResponse(AppendResponse),
    /// Leader heartbeat: keeps followers from campaigning, carries the commit index, and
    /// confirms leadership for ReadIndex when acknowledged.
    Heartbeat {
        /// The leader's commit index, capped at what the receiver is known to hold.
        commit: Index,
        /// ReadIndex round this heartbeat confirms (0 if none).
        read_seq: u64,
    },
    /// Answer to `Heartbeat`.
    HeartbeatResponse {
        /// The `read_seq` of the heartbeat being answered.
        read_seq: u64,
    },
    /// One chunk of a snapshot (Raft paper, section 7, Figure 13).
    InstallSnapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Byte offset of `data` within the snapshot.
        offset: u64,
        /// The chunk's bytes.
        data: Vec<u8>,
        /// True on the last chunk.
        done: bool,
    },
    /// Answer to `InstallSnapshot`.
    SnapshotResponse {
        /// The snapshot's index (identifies which snapshot is answered).
        index: Index,
        /// What happened to it.
        status: SnapshotStatus,
    },
    /// Leader transfer: "campaign now, skipping pre-vote" (Raft thesis, 3.10).
    TimeoutNow,
    /// From the leader to a node that a committed configuration removed and that holds that
    /// configuration's entry (at `index`): "you are no longer a member; stop hosting the
    /// group". Sent a few times while the leader lets the node go.
    ///
    /// The leader that committed the removal tells the node. A later leader tells a removed
    /// node it hears from (any message, a `RemovalQuery` included) when its committed and
    /// latest configurations both leave that node out: it replicates to the node until it
    /// holds the committed configuration's entry and then tells it, `index` being that entry's.
    Removed {
        /// Index of the committed configuration entry that removed the receiver (or, from a
        /// later leader, of the committed configuration that leaves it out).
        index: Index,
    },
    /// From a node whose own log holds a configuration that leaves it out, after it held a
    /// committed one that named it, to the voters of that configuration, once an election
    /// timeout until it is told: "was I removed?". A leader that does not count the sender
    /// in its configurations answers as under `Removed`; every other node ignores it. It
    /// carries the sender's term but changes no term, vote or role anywhere. (A removed node
    /// is otherwise silent: it does not campaign, so a leader elected after the removal
    /// committed, which does not replicate to it, would never hear from it.)
    RemovalQuery,
}

/// Answer to an `AppendEntries` message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub enum AppendResponse {
    /// The follower's log matches the leader's up to `match_index` (and it is durable).
    Success {
        /// Index of the last entry of the acknowledged message.
        match_index: Index,
    },
    /// The consistency check failed at `rejected_index` (the message's `prev_index`).
    Reject {
        /// The `prev_index` of the rejected message, so stale rejections can be told apart.
        rejected_index: Index,
        /// The follower's last log index.
        last_index: Index,
        /// Where the follower's log diverges, so the leader can skip a whole term at once.
        hint: Option<ConflictHint>,
    },
}

/// The follower's fast back-off hint (Raft paper, 5.3, the optimisation at the section's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct ConflictHint {
    /// Term of the follower's entry at the rejected index.
    pub term: Term,
    /// First index the follower holds with that term.
    pub first_index: Index,
}

/// Progress of a snapshot transfer, reported by the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub enum SnapshotStatus {
    /// A chunk arrived; send the one starting at `next_offset`.
    ChunkReceived {
        /// Offset of the next expected chunk.
        next_offset: u64,
    },
    /// The whole snapshot was installed and is durable.
    Installed,
    /// The snapshot was not installed (stale, or out of order); the leader should probe again.
    Rejected,
}

impl Message {
    /// Short name of the body, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::VoteResponse { .. } => "VoteResponse",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendResponse(_) => "AppendResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::SnapshotResponse { .. } => "SnapshotResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::Removed { .. } => "Removed",
            MessageBody::RemovalQuery => "RemovalQuery",
        }
    }
}
