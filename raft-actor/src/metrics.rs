//! Metrics: counters updated by the actors (atomics, the only shared mutable state DESIGN.md I1
//! allows) and point-in-time snapshots returned by `Node::metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use raft_core::{GroupId, Index, Membership, NodeId, PartitionCore, Role, Term};

/// Counters of one group, shared by its actors.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Current term (mirrored after every partition step).
    pub term: AtomicU64,
    /// Commit index.
    pub commit: AtomicU64,
    /// Applied index.
    pub applied: AtomicU64,
    /// Times this node's heartbeat actor told the group to campaign.
    pub elections_started: AtomicU64,
    /// Terms in which this node led the group.
    pub leader_terms: AtomicU64,
    /// True while the heartbeat actor considers the partition actor stalled (I6).
    pub stalled: AtomicBool,
    /// Stalls detected so far.
    pub stalls: AtomicU64,
    /// Wake-ups observed by this group's replicators.
    pub replicator_wakeups: AtomicU64,
    /// Replicate signals published by the partition.
    pub replicate_signals: AtomicU64,
    /// Messages the group could not queue (network or replicator queues full).
    pub dropped_messages: AtomicU64,
    /// Partition loop iterations (progress marker).
    pub alive_ticks: AtomicU64,
    /// Snapshots sent to lagging followers by this node's replicators.
    pub snapshots_sent: AtomicU64,
    /// Snapshots installed here from a leader.
    pub snapshots_installed: AtomicU64,
    /// Snapshots taken here by the state machine.
    pub snapshots_taken: AtomicU64,
}

impl GroupStats {
    pub(crate) fn update(&self, core: &PartitionCore) {
        self.term.store(core.term(), Ordering::Relaxed);
        self.commit.store(core.commit_index(), Ordering::Relaxed);
    }

    pub(crate) fn record_alive(&self) {
        self.alive_ticks.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of one group's state on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetrics {
    /// The group.
    pub group: GroupId,
    /// This node's role in it.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: Index,
    /// Applied index (as the partition knows it).
    pub applied: Index,
    /// Last log index.
    pub last_index: Index,
    /// The effective membership (empty when built from counters only).
    pub membership: Membership,
    /// Leader only: each peer's match index.
    pub matched: BTreeMap<NodeId, Index>,
    /// Leader only: how far each peer is behind the last index.
    pub lag: BTreeMap<NodeId, Index>,
    /// Requests queued from clients.
    pub client_queue: usize,
    /// Raft messages queued from the network.
    pub raft_queue: usize,
    /// Internal notifications queued.
    pub control_queue: usize,
    /// The heartbeat actor considers the partition actor stalled (I6).
    pub stalled: bool,
    /// Elections this node started for the group.
    pub elections_started: u64,
    /// Terms this node led the group.
    pub leader_terms: u64,
    /// Wake-ups observed by replicators.
    pub replicator_wakeups: u64,
    /// Replicate signals published.
    pub replicate_signals: u64,
    /// Messages dropped because a queue was full.
    pub dropped_messages: u64,
    /// Snapshots sent to lagging followers.
    pub snapshots_sent: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Snapshots taken locally.
    pub snapshots_taken: u64,
    /// The partition actor answered the metrics request (false: built from counters only).
    pub responsive: bool,
}

impl GroupMetrics {
    /// Metrics from counters alone, for a partition actor that did not answer.
    pub(crate) fn from_stats(group: GroupId, s: &GroupStats) -> GroupMetrics {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GroupMetrics {
            group,
            role: Role::Follower,
            term: l(&s.term),
            leader: None,
            commit: l(&s.commit),
            applied: l(&s.applied),
            last_index: 0,
            membership: Membership::default(),
            matched: BTreeMap::new(),
            lag: BTreeMap::new(),
            client_queue: 0,
            raft_queue: 0,
            control_queue: 0,
            stalled: s.stalled.load(Ordering::Relaxed),
            elections_started: l(&s.elections_started),
            leader_terms: l(&s.leader_terms),
            replicator_wakeups: l(&s.replicator_wakeups),
            replicate_signals: l(&s.replicate_signals),
            dropped_messages: l(&s.dropped_messages),
            snapshots_sent: l(&s.snapshots_sent),
            snapshots_installed: l(&s.snapshots_installed),
            snapshots_taken: l(&s.snapshots_taken),
            responsive: false,
        }
    }
}

/// A snapshot of a node.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    /// The node.
    pub node: NodeId,
    /// Each group's metrics (groups whose actor did not answer in time are missing).
    pub groups: Vec<GroupMetrics>,
    /// Raft messages dropped at the router because their group is unknown here.
    pub unknown_group_drops: u64,
    /// The transport's per-peer counters.
    pub transport: raft_net::MetricsSnapshot,
}
