//! What a run found: [`SimReport`].

use raft_core::NodeId;

use crate::checkers::WakeupAudit;

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Client operations acknowledged.
    pub acked: u64,
    /// Client commands acknowledged during the fault phase (the commits a client saw while
    /// the faults went on).
    pub commands_acked_under_faults: u64,
    /// Proposals (client commands and session openings) committed by the end of the fault
    /// phase, counted in the final logs up to the highest commit index any node reported
    /// then (with snapshots off; compacted entries are not counted).
    pub proposals_committed_under_faults: u64,
    /// Scenario `lossy_churn`: simulated time from every node being reconnected (the network
    /// still lossy) to the first commit; `None` if none came within its bound.
    pub first_commit_when_stable: Option<std::time::Duration>,
    /// Client operations that ended without a known outcome.
    pub in_doubt: u64,
    /// Attempts answered `Overloaded` (backpressure).
    pub overloaded: u64,
    /// Attempts answered with another error (retried).
    pub errors: u64,
    /// Commands answered `SessionExpired` (their session was evicted; outcome unknown).
    pub sessions_expired: u64,
    /// Sessions evicted from the group's table by the end (the most any node reported).
    pub sessions_evicted: u64,
    /// Pairs of nodes whose session tables were compared at the same applied index at the
    /// end (each must match).
    pub session_tables_compared: u64,
    /// Distinct leader terms observed.
    pub leader_terms: u64,
    /// Faults injected.
    pub faults: u64,
    /// Membership calls of the fault schedule that succeeded (a learner added and caught up, a
    /// change whose final configuration committed).
    pub membership_changes: u64,
    /// Node crashes (each followed by a restart from durable state).
    pub crashes: u64,
    /// Disk stalls injected.
    pub disk_stalls: u64,
    /// Forced elections that completed (scenario `forced_transfers`).
    pub forced_elections: u64,
    /// Leader pauses without isolation that were judged (scenario `leader_pauses`; an episode
    /// still running when the faults end is not counted).
    pub pauses: u64,
    /// Pauses after which another term had begun: each is an election a pause caused (with no
    /// forced transfers in the same run, which begin terms of their own).
    pub pause_elections: u64,
    /// Leaders that lost leadership with entries in flight, episodes completed (scenario
    /// `leader_pauses`).
    pub isolations: u64,
    /// Isolations after which another node led a newer term.
    pub isolation_takeovers: u64,
    /// The hung or lagging follower of the scenario, if any.
    pub victim: Option<NodeId>,
    /// Largest lag of the lagging follower the leader reported.
    pub max_victim_lag: u64,
    /// The lagging follower had applied everything the leader committed by the end.
    pub victim_caught_up: bool,
    /// Times any node reported a stalled partition actor (the heartbeat actor probes every
    /// partition actor and reports one that does not answer in time).
    pub stalls_seen: u64,
    /// Largest client, raft and control queue lengths any node reported.
    pub max_queues: (usize, usize, usize),
    /// Snapshots installed from a leader, over every node's final incarnation.
    pub snapshots_installed: u64,
    /// Snapshots taken, over every node's final incarnation.
    pub snapshots_taken: u64,
    /// The audit of the quiet window at the end: one replicator wake-up per log change.
    pub wakeup_audit: Option<WakeupAudit>,
    /// Entries checked by leader completeness.
    pub committed_checked: u64,
    /// Hash of the run's observable events (applied commands, client results): equal for equal
    /// seeds (same seed, same inputs, same run).
    pub trace_hash: u64,
    /// Hash of the applied commands alone (node, index, command), in delivery order.
    pub applied_hash: u64,
    /// Applied (node, index) pairs in delivery order (for diagnosing replay differences).
    pub applied_order: Vec<(NodeId, u64)>,
    /// Hash of the client history alone (client, request, result), in client order.
    pub history_hash: u64,
    /// The linearizability check ran out of budget (neither proven nor refuted).
    pub linearizability_unknown: bool,
    /// The event trace, one line per event (with [`SimConfig::trace`](super::SimConfig::trace)).
    pub trace: Vec<String>,
    /// Safety or liveness violations found.
    pub violations: Vec<String>,
}
