//! Node configuration: timing, channel capacities and the protocol template for every group.

use std::time::Duration;

use raft_core::NodeId;

use crate::error::Error;

/// Settings of a [`crate::Node`]. Every channel capacity (I2 in docs/architecture.md) is here.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (non-zero, unique in the cluster).
    pub node_id: NodeId,
    /// Protocol settings used for every group this node hosts (`id` and `external_timers` are
    /// set by the node; `election_ticks` and `heartbeat_ticks` come from the durations below).
    /// `lease_reads` is on by default: `Node::read_lease` is then served from the leader's
    /// lease, which lasts `election_ticks - 1 - lease_margin_ticks` ticks of `tick_interval`
    /// from the heartbeat round that confirmed it (400 ms with the defaults: 10 ticks of 50 ms,
    /// less one for a tick's granularity and one, `lease_margin_ticks`, for clock drift). Turn
    /// it off if the nodes' clocks may run more than a tenth apart in rate; lease reads are
    /// then ReadIndex reads.
    ///
    /// Snapshots are on: each group asks its state machine for one once
    /// `raft.snapshot_threshold` entries (100,000 by default) were applied since the last, and
    /// then drops its log up to `raft.compact_trailing` entries (10,000) behind it, so the log
    /// stays bounded. A snapshot is streamed: written by `StateMachine::snapshot` straight into
    /// storage, sent to a follower that needs it chunk by chunk, and restored from storage as
    /// it is read; neither side holds it whole in memory. Set the threshold to 0 to turn them
    /// off (the log then grows forever).
    pub raft: raft_core::Config,
    /// How often a leader's heartbeat actor sends coalesced heartbeats to each peer node.
    pub heartbeat_interval: Duration,
    /// Minimum election timeout; each follower group waits a random time in `[min, 2 * min)`
    /// without hearing from its leader before campaigning. Also the check-quorum window.
    pub election_timeout: Duration,
    /// Period of the partition actors' protocol tick (leader lease, transfer deadline,
    /// replicator retransmission). Must be below `election_timeout`.
    pub tick_interval: Duration,
    /// I6: a partition actor that has not woken up for this long, although the heartbeat
    /// actor's liveness probe has waited for it for at least half as long, is stalled: its node
    /// stops vouching for it (its heartbeats stop, so followers elect someone else) and the
    /// stall is reported. Idle partitions are probed every half of it. Must exceed
    /// `election_timeout`; make it larger than any pause you want to tolerate without an
    /// election (a partition blocked in a handler for less than this is never reported, nor
    /// is any pause shorter than half of it).
    pub stall_timeout: Duration,
    /// How long a leader's replicator holds back an AppendEntries that would only tell its
    /// peer a new commit index. New entries sent meanwhile carry the commit index anyway, so
    /// under steady writes this message is never sent: each write then costs one message and
    /// one answer per follower instead of two of each. A follower learns of a commit this
    /// much later when writes stop, which delays its apply and reads served through it by as
    /// much. `Duration::ZERO` sends at once. Must be below `heartbeat_interval`.
    pub commit_notify_delay: Duration,
    /// How long `propose` and `read` wait for an answer before returning `Timeout` (measured
    /// in quarters by one timer per node, so up to a quarter longer).
    pub request_timeout: Duration,
    /// How long `Node::add_learner` waits, once the learner's configuration committed, for the
    /// learner's log to come within `raft.learner_catchup_lag` entries of the leader's before
    /// it answers `LearnerLagging` (the learner stays in the configuration).
    pub learner_catchup_timeout: Duration,
    /// Proposals and reads queued per group. When full, callers get `Overloaded` at once.
    pub client_queue: usize,
    /// Raft messages queued per group from the network. When full, messages are dropped and
    /// counted (Raft retransmits).
    pub raft_queue: usize,
    /// Internal notifications queued per group (replicator progress, snapshots, timers).
    /// Senders use `try_send` and retry later when full.
    pub control_queue: usize,
    /// Requests queued for the storage thread. Storage requests are never dropped: a
    /// partition that finds it full stops taking client work until it drains.
    pub storage_queue: usize,
    /// Responses queued from the network per replicator.
    pub replicator_queue: usize,
    /// Updates queued for the heartbeat actor.
    pub heartbeat_queue: usize,
    /// Notifications queued from the groups to the node's registry (a group's members and
    /// their addresses, a group that learned it was removed). A group that finds it full tries
    /// again on its next tick.
    pub registry_queue: usize,
    /// Most proposals folded into one append.
    pub max_batch: usize,
    /// Most bytes of proposals a group's leader holds appended but not yet committed
    /// (default 64 MiB; the idea of etcd's `MaxUncommittedEntriesSize`). Past it, proposals
    /// are refused with `Overloaded` until commits catch up, so a leader that cannot commit
    /// (no quorum, slow followers) does not take an unbounded log into memory and storage.
    /// One proposal is always accepted when nothing is uncommitted, however large.
    pub max_uncommitted_bytes: u64,
    /// Most heartbeat claims held per peer node for groups this node does not host (default
    /// 65,536). A peer's claim on a group not (yet) registered here is kept, so a group that
    /// registers later is covered at once; beyond this many, such claims are dropped and
    /// counted (`HeartbeatMetrics::foreign_claims_dropped`), so a peer's frames cannot grow this
    /// node's memory without bound. Claims on hosted groups are always held.
    pub max_foreign_claims: usize,
    /// Most bytes of recent log entries a group keeps in memory for its replicators and apply
    /// actor (default 8 MiB per group; the newest batch is kept whole). Older entries are read
    /// from storage. The tail is also trimmed when the log is compacted.
    pub tail_bytes: u64,
    /// How long `shutdown` waits for actors before giving up on them (I10).
    pub shutdown_timeout: Duration,
    /// Most client sessions a group keeps (default 100,000). Opening one more evicts the
    /// session used least recently, by the log index of its last request, so every replica
    /// evicts the same session at the same entry; a later request under an evicted session is
    /// answered [`Error::SessionExpired`] and never applied. The cap travels in each
    /// session-opening entry (the proposing leader's value applies), so replicas configured
    /// differently still agree.
    ///
    /// Cost, measured by opening 1,000,000 sessions through the apply path, each then applying
    /// one request with a one-byte response (the test `a_million_sessions` in
    /// `group/apply.rs`):
    /// - memory: about 180 bytes per session held — 183 estimated from the sizes of the
    ///   table's two `BTreeMap`s (session id → session, 40 bytes; last use → id) and the
    ///   response's allocation, and the process's resident memory grew by 166 MB for
    ///   1,000,000 sessions and by 17.9 MB for the 100,000 the default cap keeps (after
    ///   evicting 900,000). A larger response adds its length, rounded up to 16 bytes.
    /// - snapshots: 12 bytes per session held (ids and indices as variable-length integers,
    ///   below 2^21 here, plus the response): 12.0 MB at a cap of 1,000,000, 1.2 MB at the
    ///   default cap; evicted sessions cost nothing.
    pub max_sessions: usize,
    /// Simulation only, broken on purpose: every node answers reads from its local state
    /// machine without ReadIndex. Exists to prove the simulation's checkers can fail.
    #[cfg(feature = "fault-injection")]
    pub broken_local_reads: bool,
}

impl NodeConfig {
    /// Defaults for node `node_id`: 50 ms heartbeats, 500 ms election timeout.
    pub fn new(node_id: NodeId) -> Self {
        NodeConfig {
            node_id,
            raft: raft_core::Config {
                lease_reads: true,
                ..raft_core::Config::new(node_id)
            },
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(500),
            tick_interval: Duration::from_millis(50),
            stall_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            commit_notify_delay: Duration::from_millis(1),
            learner_catchup_timeout: Duration::from_secs(30),
            client_queue: 4096,
            raft_queue: 4096,
            control_queue: 1024,
            storage_queue: 8192,
            replicator_queue: 1024,
            heartbeat_queue: 8192,
            registry_queue: 1024,
            max_batch: 512,
            max_uncommitted_bytes: 64 << 20,
            max_foreign_claims: 1 << 16,
            tail_bytes: 8 << 20,
            shutdown_timeout: Duration::from_secs(2),
            max_sessions: 100_000,
            #[cfg(feature = "fault-injection")]
            broken_local_reads: false,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.node_id == 0 {
            return bad("node_id", "0 is reserved");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat_interval", "must be positive");
        }
        if self.election_timeout <= self.heartbeat_interval * 2 {
            return bad("election_timeout", "must exceed twice heartbeat_interval");
        }
        if self.tick_interval.is_zero() || self.tick_interval >= self.election_timeout {
            return bad(
                "tick_interval",
                "must be positive and below election_timeout",
            );
        }
        if self.stall_timeout <= self.election_timeout {
            return bad("stall_timeout", "must exceed election_timeout");
        }
        if self.commit_notify_delay >= self.heartbeat_interval {
            return bad("commit_notify_delay", "must be below heartbeat_interval");
        }
        if self.max_uncommitted_bytes == 0 {
            return bad("max_uncommitted_bytes", "must be positive");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        if self.learner_catchup_timeout.is_zero() {
            return bad("learner_catchup_timeout", "must be positive");
        }
        for (field, v) in [
            ("client_queue", self.client_queue),
            ("raft_queue", self.raft_queue),
            ("control_queue", self.control_queue),
            ("storage_queue", self.storage_queue),
            ("replicator_queue", self.replicator_queue),
            ("heartbeat_queue", self.heartbeat_queue),
            ("registry_queue", self.registry_queue),
            ("max_batch", self.max_batch),
            ("max_sessions", self.max_sessions),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1");
            }
        }
        self.group_config().validate().map_err(|e| Error::Config {
            field: e.field,
            reason: e.reason,
        })?;
        Ok(())
    }

    /// The protocol config of every group on this node.
    pub(crate) fn group_config(&self) -> raft_core::Config {
        let ticks =
            |d: Duration| (d.as_micros() / self.tick_interval.as_micros().max(1)).max(1) as u32;
        raft_core::Config {
            id: self.node_id,
            external_timers: true,
            election_ticks: ticks(self.election_timeout).max(2),
            heartbeat_ticks: ticks(self.heartbeat_interval)
                .clamp(1, ticks(self.election_timeout).max(2) - 1),
            ..self.raft.clone()
        }
    }
}
