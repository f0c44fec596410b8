//! What a run does: [`SimConfig`], with the random fault schedule's classes and the scenario
//! knobs of the incident tests ([`LeaderPauses`], [`LaggingFollower`]).

use std::time::Duration;

/// What a simulation run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: same seed, same run.
    pub seed: u64,
    /// Number of nodes (all voters).
    pub nodes: u64,
    /// Concurrent clients.
    pub clients: u64,
    /// Longest pause of a client between two operations (each pause is 1 ms to this, by seed).
    /// Under paused time a commit takes no simulated time, so clients must pause a little or
    /// the clock freezes.
    pub client_think: Duration,
    /// Simulated time with faults before healing.
    pub duration: Duration,
    /// Simulated time allowed for the group to commit again after healing.
    pub liveness_bound: Duration,
    /// The seeded random fault schedule (on by default): partitions (both ways, one way,
    /// bridges), partition-actor pauses, transfer storms, membership churn, and the classes
    /// below. Off, only the scenario knobs inject faults.
    pub random_faults: bool,
    /// Random schedule: also probabilistic message loss, duplication, delay and reordering.
    pub network_faults: bool,
    /// Random schedule: crash nodes (losing unsynced writes) and restart them from their
    /// durable state.
    pub crashes: bool,
    /// Random schedule: stall a node's disk (no sync completes) for 0.5–5 s.
    pub disk_stalls: bool,
    /// Broken on purpose: serve reads locally without ReadIndex (the checkers must catch it).
    pub broken_local_reads: bool,
    /// Scenario: every period, ask the leader to hand over to the next node (round robin over
    /// the nodes that may lead), and check that every forced election completes: a leader of a
    /// newer term within [`SimConfig::forced_election_bound`].
    pub forced_transfers: Option<Duration>,
    /// Bound on each forced election.
    pub forced_election_bound: Duration,
    /// Scenario (the NebulaGraph raftex deadlock): one follower's data lane hangs both ways for the whole run while
    /// its heartbeats still flow. It is never a transfer target.
    pub hung_follower: bool,
    /// Scenario (the MIT 6.824 Lab 2B flakes): periodic stop-the-world pauses of the leader.
    pub leader_pauses: Option<LeaderPauses>,
    /// Scenario (braft on arm64): one follower cut off for a window, long enough to be compacted
    /// past when snapshots are on.
    pub lagging_follower: Option<LaggingFollower>,
    /// Scenario (liveness under loss and churn): a lossy, reordering network on which the
    /// leader is cut off again and again; measures commits and the recovery once a majority
    /// is stable (see [`LossyChurn`]).
    pub lossy_churn: Option<LossyChurn>,
    /// Snapshots: take one when the log grows this many entries past the last, keeping this
    /// many trailing entries (`None`: never).
    pub snapshots: Option<(u64, u64)>,
    /// Each group's client queue (`NodeConfig::client_queue`); small values make overload
    /// visible (the InfluxDB client pool). `None`: the default.
    pub client_queue: Option<usize>,
    /// Each group's cap on client sessions (`NodeConfig::max_sessions`). `None` (the default):
    /// twice the number of clients, plus two. Clients open a new session every 8 to 40
    /// commands, so that cap makes the table evict all the time, mostly abandoned sessions,
    /// and now and then the live one of a client that could not get through for long (it then
    /// sees `SessionExpired`: its command stays in doubt). A cap near the number of clients
    /// evicts live sessions all the time: many commands in doubt, histories beyond the
    /// linearizability checker's budget.
    pub max_sessions: Option<usize>,
    /// Record the event trace in [`SimReport::trace`](super::SimReport::trace).
    pub trace: bool,
}

/// Periodic stop-the-world pauses of the leader (the MIT 6.824 Lab 2B flakes).
#[derive(Clone, Copy, Debug)]
pub struct LeaderPauses {
    /// Time between the starts of two episodes.
    pub every: Duration,
    /// How long the leader's partition actor is frozen. A pause alone must cause no election:
    /// heartbeats run on their own executor, so a busy or frozen partition actor never delays
    /// them.
    pub pause: Duration,
    /// Every other episode, the leader instead loses leadership with entries in flight: the
    /// followers' acknowledgements stop reaching it for `pause`, then it is isolated for
    /// `isolation`. Its followers hold its last entries; the next leader must commit them
    /// through its own no-op, and clients retry with their session ids.
    pub isolation: Option<Duration>,
}

/// Liveness under loss and churn: for the whole fault phase the network drops, delays and
/// holds back messages ([`LossyChurn::faults`]), and at random intervals of up to
/// [`LossyChurn::cut_every`] the current leader is cut off from every other node; a cut-off
/// node is reconnected when that keeps at least [`LossyChurn::min_up`] nodes connected. At
/// the end of the fault phase every node is reconnected while the network stays lossy, and
/// the time to the first commit is measured
/// ([`SimReport::first_commit_when_stable`](super::SimReport::first_commit_when_stable)).
#[derive(Clone, Copy, Debug)]
pub struct LossyChurn {
    /// The network's loss, delay and holding back, for the whole fault phase and the stable
    /// phase after it.
    pub faults: raft_net::Faults,
    /// Longest time a leader leads before it is cut off (each wait is uniform from 0 to this,
    /// counted from when the harness first sees it lead).
    pub cut_every: Duration,
    /// Nodes kept connected: before a cut would leave fewer, a cut-off node is reconnected.
    pub min_up: u64,
    /// How long the stable phase waits for a commit.
    pub stable_bound: Duration,
}

impl LossyChurn {
    /// The schedule of the reference test: 10 % loss, 0–27 ms of delay, 40 % of messages
    /// held back up to 2 s more, the leader cut off every 0–500 ms, at least 3 nodes up.
    pub fn reference() -> Self {
        LossyChurn {
            faults: raft_net::Faults {
                drop_probability: 0.10,
                duplicate_probability: 0.0,
                min_delay: Duration::ZERO,
                max_delay: Duration::from_millis(27),
                reorder_probability: 0.40,
                reorder_window: Duration::from_millis(2000),
            },
            cut_every: Duration::from_millis(500),
            min_up: 3,
            stable_bound: Duration::from_secs(20),
        }
    }
}

/// A follower cut off from `from` to `until` of the run (simulated time).
#[derive(Clone, Copy, Debug)]
pub struct LaggingFollower {
    /// When it is cut off.
    pub from: Duration,
    /// When it is reconnected.
    pub until: Duration,
}

impl SimConfig {
    /// Defaults for `seed`: 3 or 5 nodes (by seed), 4 clients, 60 s of random faults, at most
    /// 10 client sessions per group (twice the clients, plus two).
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: if seed % 2 == 0 { 3 } else { 5 },
            clients: 4,
            client_think: Duration::from_millis(20),
            duration: Duration::from_secs(60),
            liveness_bound: Duration::from_secs(20),
            random_faults: true,
            network_faults: true,
            crashes: true,
            disk_stalls: true,
            broken_local_reads: false,
            forced_transfers: None,
            forced_election_bound: Duration::from_secs(2),
            hung_follower: false,
            leader_pauses: None,
            lagging_follower: None,
            lossy_churn: None,
            snapshots: None,
            client_queue: None,
            max_sessions: None,
            trace: false,
        }
    }

    /// A scenario with no random faults: `nodes` nodes, the seed only shapes clients and
    /// timers. Set the scenario knobs on the result.
    pub fn scenario(seed: u64, nodes: u64, duration: Duration) -> Self {
        SimConfig {
            nodes,
            duration,
            random_faults: false,
            network_faults: false,
            crashes: false,
            disk_stalls: false,
            ..SimConfig::new(seed)
        }
    }
}
