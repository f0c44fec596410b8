//! Metrics: counters updated by the actors (atomics: with the mailbox primitives, the only
//! shared mutable state there is; see I1 in docs/architecture.md) and point-in-time snapshots
//! returned by `Node::metrics`.

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
    /// Replicator wake-ups that brought a value the replicator already held: a change it was
    /// woken for twice (I9; braft's incident 5). Always 0 unless the wake-up path is broken.
    pub replicator_stale_wakeups: AtomicU64,
    /// Replicate signals published by the partition.
    pub replicate_signals: AtomicU64,
    /// Messages the group could not queue (network or replicator queues full).
    pub dropped_messages: AtomicU64,
    /// Partition actor wake-ups: every event its loop handled. The heartbeat actor samples it
    /// as proof of progress (I6); on an idle group it moves only with the heartbeat actor's
    /// probes.
    pub partition_wakeups: AtomicU64,
    /// When the partition actor last woke up: microseconds since the node's heartbeat epoch.
    /// With `partition_wakeups`, what the heartbeat actor's probes read (I6).
    pub last_wakeup_us: AtomicU64,
    /// Replicator actor wake-ups (loop iterations) of this group's replicators: signals, acks,
    /// storage reads and retransmission ticks. Zero while the group is idle.
    pub replicator_loops: AtomicU64,
    /// AppendEntries sent by this node's replicators (probes and commit-only ones included).
    pub appends_sent: AtomicU64,
    /// Answers to this node's replication that reached a replicator through the partition
    /// actor instead of straight from the router (the router did not yet know the replicator,
    /// as just after an election).
    pub acks_forwarded: AtomicU64,
    /// Snapshots sent to lagging followers by this node's replicators.
    pub snapshots_sent: AtomicU64,
    /// Snapshots installed here from a leader.
    pub snapshots_installed: AtomicU64,
    /// Snapshots taken here by the state machine.
    pub snapshots_taken: AtomicU64,
    /// Client sessions the group holds here (gauge, set by the apply actor).
    pub sessions: AtomicU64,
    /// Client sessions evicted so far (replicated with the table: the same on every replica
    /// at the same applied index).
    pub sessions_evicted: AtomicU64,
    /// A digest of the whole session table (order-independent, kept up to date per change):
    /// replicas that applied the same index hold the same digest.
    pub session_digest: AtomicU64,
}

impl GroupStats {
    pub(crate) fn update(&self, core: &PartitionCore) {
        self.term.store(core.term(), Ordering::Relaxed);
        self.commit.store(core.commit_index(), Ordering::Relaxed);
    }

    /// One more partition wake-up, at `stamp` (the I6 progress marker).
    pub(crate) fn record_wakeup(&self, stamp: u64) {
        self.partition_wakeups.fetch_add(1, Ordering::Relaxed);
        self.last_wakeup_us.store(stamp, Ordering::Relaxed);
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
    /// Bytes of log entries the partition keeps in memory (its tail; `NodeConfig::tail_bytes`).
    pub tail_bytes: u64,
    /// Wake-ups observed by replicators.
    pub replicator_wakeups: u64,
    /// Replicator wake-ups for a change the replicator had already seen (woken twice for one
    /// change, I9): always 0 unless the wake-up path is broken.
    pub replicator_stale_wakeups: u64,
    /// Replicate signals published.
    pub replicate_signals: u64,
    /// Messages dropped because a queue was full.
    pub dropped_messages: u64,
    /// AppendEntries sent to followers (probes and commit-only ones included).
    pub appends_sent: u64,
    /// Answers forwarded to a replicator by the partition (see [`GroupStats::acks_forwarded`]).
    pub acks_forwarded: u64,
    /// Snapshots sent to lagging followers.
    pub snapshots_sent: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Snapshots taken locally.
    pub snapshots_taken: u64,
    /// Partition actor wake-ups so far (see [`GroupStats::partition_wakeups`]).
    pub partition_wakeups: u64,
    /// Replicator wake-ups so far (see [`GroupStats::replicator_loops`]).
    pub replicator_loops: u64,
    /// Client sessions held (see [`GroupStats::sessions`]).
    pub sessions: u64,
    /// Client sessions evicted so far (see [`GroupStats::sessions_evicted`]).
    pub sessions_evicted: u64,
    /// Digest of the session table (see [`GroupStats::session_digest`]).
    pub session_digest: u64,
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
            tail_bytes: 0,
            stalled: s.stalled.load(Ordering::Relaxed),
            elections_started: l(&s.elections_started),
            leader_terms: l(&s.leader_terms),
            replicator_wakeups: l(&s.replicator_wakeups),
            replicator_stale_wakeups: l(&s.replicator_stale_wakeups),
            replicate_signals: l(&s.replicate_signals),
            dropped_messages: l(&s.dropped_messages),
            appends_sent: l(&s.appends_sent),
            acks_forwarded: l(&s.acks_forwarded),
            snapshots_sent: l(&s.snapshots_sent),
            snapshots_installed: l(&s.snapshots_installed),
            snapshots_taken: l(&s.snapshots_taken),
            partition_wakeups: l(&s.partition_wakeups),
            replicator_loops: l(&s.replicator_loops),
            sessions: l(&s.sessions),
            sessions_evicted: l(&s.sessions_evicted),
            session_digest: l(&s.session_digest),
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
    /// The heartbeat actor's counters.
    pub heartbeat: HeartbeatMetrics,
}

/// Counters of a node's heartbeat actor, shared with [`crate::Node::metrics`].
#[derive(Debug, Default)]
pub(crate) struct HeartbeatStats {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) full_frames_sent: AtomicU64,
    pub(crate) claims_sent: AtomicU64,
    pub(crate) acks_received: AtomicU64,
    pub(crate) frames_ignored: AtomicU64,
    pub(crate) probes_sent: AtomicU64,
    pub(crate) election_timeouts: AtomicU64,
    pub(crate) quorum_lost: AtomicU64,
    pub(crate) armed_election_timers: AtomicU64,
    pub(crate) foreign_claims_dropped: AtomicU64,
}

impl HeartbeatStats {
    pub(crate) fn snapshot(&self) -> HeartbeatMetrics {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HeartbeatMetrics {
            frames_sent: l(&self.frames_sent),
            full_frames_sent: l(&self.full_frames_sent),
            claims_sent: l(&self.claims_sent),
            acks_received: l(&self.acks_received),
            frames_ignored: l(&self.frames_ignored),
            probes_sent: l(&self.probes_sent),
            election_timeouts: l(&self.election_timeouts),
            quorum_lost: l(&self.quorum_lost),
            armed_election_timers: l(&self.armed_election_timers),
            foreign_claims_dropped: l(&self.foreign_claims_dropped),
        }
    }
}

/// A snapshot of the heartbeat actor's counters (totals since the node started, except the
/// gauge `armed_election_timers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatMetrics {
    /// Peers' claims on groups this node does not host that were not stored, past
    /// `NodeConfig::max_foreign_claims` per peer.
    pub foreign_claims_dropped: u64,
    /// Heartbeat frames sent (one per peer node per interval while there is anything to say).
    pub frames_sent: u64,
    /// Of those, frames carrying the full list of claims (the rest carry changes only).
    pub full_frames_sent: u64,
    /// Claims carried in all frames: entries of full lists plus changes. Flat while the
    /// groups' leadership is stable, however many groups there are.
    pub claims_sent: u64,
    /// Acks received for this node's frames.
    pub acks_received: u64,
    /// Frames received that did not apply to the claims held (lost or reordered frames).
    pub frames_ignored: u64,
    /// Liveness probes sent to partition actors (I6).
    pub probes_sent: u64,
    /// Election timeouts delivered to partitions.
    pub election_timeouts: u64,
    /// Check-quorum failures delivered to partitions.
    pub quorum_lost: u64,
    /// Gauge: groups whose election timer runs, because no live claim covers them.
    pub armed_election_timers: u64,
}
