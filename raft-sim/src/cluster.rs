//! A seeded, deterministic simulation of a cluster running a replicated counter.
//!
//! Everything runs on one current-thread tokio runtime with paused time (storage and heartbeat
//! actors as tasks), over the in-memory network with seeded faults, so the same seed gives the
//! same run. A random fault schedule partitions nodes (both ways and one way), drops,
//! duplicates and delays messages, pauses partition actors (the stop-the-world pause of
//! incident 2), stalls disks, forces leader transfers, changes membership and crashes nodes,
//! while clients increment and read with sessions and retries. Scenario knobs of [`SimConfig`]
//! add fixed faults instead (forced transfers, a hung follower, leader pauses, a lagging
//! follower, overload), for the incident tests.
//!
//! Checkers, in every run: election safety (one leader per term, from every node's metrics);
//! leader completeness (each new leader's durable log holds everything committed before its
//! term, [`super::checkers::LeaderCompleteness`]); log matching over every pair of final
//! durable logs; state-machine safety (every node applies the same command at each index);
//! exactly-once and linearizability of the client history; one replicator wake-up per log
//! change in a quiet window at the end ([`super::checkers::WakeupAudit`]); and liveness once
//! the faults heal. With [`SimConfig::trace`] the run records a human-readable event trace.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use raft_core::rng::SplitMix64;
use raft_core::{Entry, GroupId, Index, Membership, NodeId, Role, Term};
use raft_net::{Faults, Lane, MemConfig, MemNetwork};
use raft_storage::{LogStore, MemStore};
use serde::{Deserialize, Serialize};

use super::checkers::{LeaderCompleteness, LogImage, LogView, WakeupAudit, check_log_matching};
use super::trace::Tracer;
use crate::directory::DirectoryTx;
use raft_actor::metrics::GroupMetrics;
use raft_actor::{Error, Node, NodeConfig, RequestId, StateMachine, StorageMode, WireMsg};

/// A counter state machine that reports every applied command to the simulation.
pub struct SimCounter {
    node: NodeId,
    value: i64,
    applied: flume::Sender<Applied>,
    trace: Tracer,
}

/// One applied command, as seen by one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The node that applied it.
    pub node: NodeId,
    /// Its log index.
    pub index: u64,
    /// The command.
    pub command: CounterCmd,
}

/// Commands of [`SimCounter`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CounterCmd {
    /// Adds `n`; answers the new value.
    Add(i64),
}

impl StateMachine for SimCounter {
    type Command = CounterCmd;
    type Query = ();
    type Response = i64;

    fn apply(&mut self, index: u64, command: CounterCmd) -> i64 {
        let CounterCmd::Add(n) = command;
        self.value += n;
        self.trace
            .event(|| format!("n{} applies #{index} add {n} -> {}", self.node, self.value));
        // The checker's queue is large; a full queue is reported as a checker failure.
        let _ = self.applied.try_send(Applied {
            node: self.node,
            index,
            command,
        });
        self.value
    }

    fn query(&self, _q: ()) -> i64 {
        self.value
    }

    fn snapshot(&self) -> Vec<u8> {
        self.value.to_le_bytes().to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| "counter snapshot is not 8 bytes".to_string())?;
        self.value = i64::from_le_bytes(bytes);
        self.trace
            .event(|| format!("n{} restores a snapshot: value {}", self.node, self.value));
        Ok(())
    }
}

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
    /// Scenario (incident 1): one follower's data lane hangs both ways for the whole run while
    /// its heartbeats still flow. It is never a transfer target.
    pub hung_follower: bool,
    /// Scenario (incident 2): periodic stop-the-world pauses of the leader.
    pub leader_pauses: Option<LeaderPauses>,
    /// Scenario (incident 5): one follower cut off for a window, long enough to be compacted
    /// past when snapshots are on.
    pub lagging_follower: Option<LaggingFollower>,
    /// Snapshots: take one when the log grows this many entries past the last, keeping this
    /// many trailing entries (`None`: never).
    pub snapshots: Option<(u64, u64)>,
    /// Each group's client queue (`NodeConfig::client_queue`); small values make overload
    /// visible (incident 3). `None`: the default.
    pub client_queue: Option<usize>,
    /// Record the event trace in [`SimReport::trace`].
    pub trace: bool,
}

/// Periodic stop-the-world pauses of the leader (incident 2).
#[derive(Clone, Copy, Debug)]
pub struct LeaderPauses {
    /// Time between the starts of two episodes.
    pub every: Duration,
    /// How long the leader's partition actor is frozen. A pause alone must cause no election
    /// (DESIGN.md I5: heartbeats run on their own executor).
    pub pause: Duration,
    /// Every other episode, the leader instead loses leadership with entries in flight: the
    /// followers' acknowledgements stop reaching it for `pause`, then it is isolated for
    /// `isolation`. Its followers hold its last entries; the next leader must commit them
    /// through its own no-op, and clients retry with their session ids.
    pub isolation: Option<Duration>,
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
    /// Defaults for `seed`: 3 or 5 nodes (by seed), 4 clients, 60 s of random faults.
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
            snapshots: None,
            client_queue: None,
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

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Client operations acknowledged.
    pub acked: u64,
    /// Client operations that ended without a known outcome.
    pub in_doubt: u64,
    /// Attempts answered `Overloaded` (backpressure).
    pub overloaded: u64,
    /// Attempts answered with another error (retried).
    pub errors: u64,
    /// Distinct leader terms observed.
    pub leader_terms: u64,
    /// Faults injected.
    pub faults: u64,
    /// Membership changes accepted by a leader during the run.
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
    /// Times any node reported a stalled partition actor (I6).
    pub stalls_seen: u64,
    /// Largest client, raft and control queue lengths any node reported.
    pub max_queues: (usize, usize, usize),
    /// Snapshots installed from a leader, over every node's final incarnation.
    pub snapshots_installed: u64,
    /// Snapshots taken, over every node's final incarnation.
    pub snapshots_taken: u64,
    /// The I9 audit of the quiet window at the end.
    pub wakeup_audit: Option<WakeupAudit>,
    /// Entries checked by leader completeness.
    pub committed_checked: u64,
    /// Hash of the run's observable events (applied commands, client results): equal for equal
    /// seeds (DESIGN.md I11).
    pub trace_hash: u64,
    /// Hash of the applied commands alone (node, index, command), in delivery order.
    pub applied_hash: u64,
    /// Applied (node, index) pairs in delivery order (for diagnosing replay differences).
    pub applied_order: Vec<(NodeId, u64)>,
    /// Hash of the client history alone (client, request, result), in client order.
    pub history_hash: u64,
    /// The linearizability check ran out of budget (neither proven nor refuted).
    pub linearizability_unknown: bool,
    /// The event trace, one line per event (with [`SimConfig::trace`]).
    pub trace: Vec<String>,
    /// Safety or liveness violations found.
    pub violations: Vec<String>,
}

const GROUP: GroupId = 1;

/// Runs one seed on a fresh paused current-thread runtime.
pub fn run(cfg: SimConfig) -> SimReport {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return SimReport {
                seed: cfg.seed,
                violations: vec![format!("runtime: {e}")],
                ..Default::default()
            };
        }
    };
    rt.block_on(run_async(cfg))
}

/// A client's view of one operation, for the history. `call` and `ret` are simulated
/// nanoseconds since the run began: one clock for every client.
#[derive(Clone, Debug)]
enum Outcome {
    Added {
        client: u64,
        seq: u64,
        value: i64,
        call: u64,
        ret: u64,
    },
    Read {
        client: u64,
        value: i64,
        call: u64,
        ret: u64,
    },
    InDoubt {
        client: u64,
        seq: u64,
        call: u64,
    },
}

/// What one client task hands back.
#[derive(Default)]
struct ClientResult {
    outcomes: Vec<Outcome>,
    overloaded: u64,
    errors: u64,
}

/// What the harness tells its clients.
const RUN: u8 = 0;
/// Start no new operation; keep retrying the current one until it is answered.
const FINISH: u8 = 1;
/// Give up on the current operation (it stays in doubt).
const GIVE_UP: u8 = 2;

/// A client: increments (with a session id, retried until answered) and reads, at random
/// nodes, until told to stop (`stop`: [`RUN`], [`FINISH`], [`GIVE_UP`]).
#[allow(clippy::too_many_arguments)]
async fn client(
    c: u64,
    seed: u64,
    mut nodes: Vec<Node<SimCounter>>,
    directory: crate::directory::DirectoryRx<Vec<Node<SimCounter>>>,
    stop: tokio::sync::watch::Receiver<u8>,
    epoch: tokio::time::Instant,
    think: Duration,
    trace: Tracer,
) -> ClientResult {
    let mut rng = SplitMix64::new(seed);
    let mut out = ClientResult::default();
    let mut seq = 0;
    let mut at = rng.below(nodes.len() as u64) as usize;
    let think_ms = (think.as_millis() as u64).max(1);
    let now = move || epoch.elapsed().as_nanos() as u64;
    while *stop.borrow() == RUN {
        tokio::time::sleep(Duration::from_millis(1 + rng.below(think_ms))).await;
        if let Some(current) = directory.try_latest() {
            nodes = current;
        }
        if rng.below(5) == 0 {
            // Reads go to any node: a correct one answers only as a confirmed leader.
            let call = now();
            let target = &nodes[rng.below(nodes.len() as u64) as usize];
            match target.read(GROUP, ()).await {
                Ok(v) => {
                    trace.event(|| format!("c{c} read at n{} -> {v}", target.id()));
                    out.outcomes.push(Outcome::Read {
                        client: c,
                        value: v,
                        call,
                        ret: now(),
                    });
                }
                Err(e) => {
                    if matches!(e, Error::Overloaded { .. }) {
                        out.overloaded += 1;
                    }
                }
            }
            continue;
        }
        let call = now();
        seq += 1;
        let id = RequestId { client: c + 1, seq };
        let mut answered = false;
        // Retry the same request (same session id) until it is answered or the harness gives
        // up on it.
        while *stop.borrow() != GIVE_UP {
            let target = &nodes[at % nodes.len()];
            match target.propose_with_id(GROUP, id, CounterCmd::Add(1)).await {
                Ok(v) => {
                    trace.event(|| format!("c{c} add #{seq} at n{} -> {v}", target.id()));
                    out.outcomes.push(Outcome::Added {
                        client: c,
                        seq,
                        value: v,
                        call,
                        ret: now(),
                    });
                    answered = true;
                    break;
                }
                Err(e) => {
                    trace.event(|| format!("c{c} add #{seq} at n{}: {e}", target.id()));
                    if matches!(e, Error::Overloaded { .. }) {
                        out.overloaded += 1;
                    } else {
                        out.errors += 1;
                    }
                    at = next_node(&nodes, at, &e);
                    tokio::time::sleep(Duration::from_millis(5 + rng.below(20))).await;
                }
            }
        }
        if !answered {
            trace.event(|| format!("c{c} add #{seq} in doubt"));
            out.outcomes.push(Outcome::InDoubt {
                client: c,
                seq,
                call,
            });
        }
    }
    out
}

/// Read access to a node's durable image for the leader-completeness checker.
struct StoreView<'a> {
    node: NodeId,
    store: &'a MemStore,
}

impl LogView for StoreView<'_> {
    fn node(&self) -> NodeId {
        self.node
    }

    fn snapshot_point(&self) -> (Index, Term) {
        match self.store.snapshot(GROUP) {
            Ok(Some((meta, _))) => (meta.index, meta.term),
            _ => (0, 0),
        }
    }

    fn entry(&self, index: Index) -> Option<Entry> {
        let mut v = self.store.entries(GROUP, index, index, u64::MAX).ok()?;
        v.pop().filter(|e| e.index == index)
    }
}

/// State of the forced-transfer scenario.
#[derive(Default)]
struct Forced {
    next_at: Duration,
    /// A transfer was started from this term; it must finish by the deadline.
    pending: Option<(Term, Duration)>,
    k: usize,
}

/// One episode of the leader-pause scenario.
struct Episode {
    leader: NodeId,
    term: Term,
    /// The highest term any node had when the episode began.
    max_term: Term,
    isolate: bool,
    /// 0: paused (or acks cut); 1: isolated (isolating episodes only).
    stage: u8,
    next_at: Duration,
}

/// The leader-pause scenario.
#[derive(Default)]
struct Pauses {
    next_at: Duration,
    count: u64,
    active: Option<Episode>,
}

/// Everything the fault schedule and the checkers share during a run.
struct Harness {
    cfg: SimConfig,
    ids: Vec<NodeId>,
    net: MemNetwork<WireMsg>,
    disks: BTreeMap<NodeId, Disk>,
    nodes: BTreeMap<NodeId, Node<SimCounter>>,
    applied_tx: flume::Sender<Applied>,
    trace: Tracer,
    directories: Vec<DirectoryTx<Vec<Node<SimCounter>>>>,
    report: SimReport,
    leaders: BTreeMap<Term, NodeId>,
    completeness: LeaderCompleteness,
    start: tokio::time::Instant,
    /// The newest leader seen at the last observation: (term, node).
    leader: Option<(Term, NodeId)>,
    /// The highest term any node reported.
    max_term: Term,
    /// Crashed nodes and when they restart.
    down: BTreeMap<NodeId, Duration>,
    /// The hung follower, while its data lane is cut.
    hung: Option<NodeId>,
    /// The lagging follower, while it is cut off.
    lagging: Option<NodeId>,
}

async fn run_async(cfg: SimConfig) -> SimReport {
    let (trace, trace_log) = super::trace::new(cfg.trace);
    let mut report = SimReport {
        seed: cfg.seed,
        ..Default::default()
    };
    trace.event(|| format!("run {cfg:?}"));
    let ids: Vec<NodeId> = (1..=cfg.nodes).collect();
    let mem = MemConfig::default();
    let (net, transports) = match MemNetwork::<WireMsg>::with_faults(&ids, &mem, cfg.seed) {
        Ok(x) => x,
        Err(e) => {
            report.violations.push(format!("network: {e}"));
            return report;
        }
    };
    let (applied_tx, applied_rx) = flume::bounded::<Applied>(1 << 22);
    let mut h = Harness {
        cfg: cfg.clone(),
        ids: ids.clone(),
        net,
        disks: BTreeMap::new(),
        nodes: BTreeMap::new(),
        applied_tx,
        trace: trace.clone(),
        directories: Vec::new(),
        report,
        leaders: BTreeMap::new(),
        completeness: LeaderCompleteness::new(),
        start: tokio::time::Instant::now(),
        leader: None,
        max_term: 0,
        down: BTreeMap::new(),
        hung: None,
        lagging: None,
    };
    for (id, (t, inbound)) in ids.iter().zip(transports) {
        let disk = h.disks.entry(*id).or_insert_with(Disk::new);
        match start_node(&cfg, *id, &ids, t, inbound, disk, &h.applied_tx, &trace).await {
            Ok(node) => {
                h.nodes.insert(*id, node);
            }
            Err(e) => {
                h.violate(e);
                return h.report;
            }
        }
    }

    // Clients. Each learns the current node handles (after crashes) through a latest-value
    // channel it polls between operations.
    let stop = tokio::sync::watch::channel(RUN);
    let epoch = tokio::time::Instant::now();
    let nodes_v: Vec<Node<SimCounter>> = h.nodes.values().cloned().collect();
    let mut clients = Vec::new();
    for c in 0..cfg.clients {
        let (dir_tx, dir_rx) = crate::directory::channel::<Vec<Node<SimCounter>>>();
        h.directories.push(dir_tx);
        let seed = SplitMix64::derive(cfg.seed, &[0xC11E, c]);
        clients.push(tokio::spawn(client(
            c,
            seed,
            nodes_v.clone(),
            dir_rx,
            stop.1.clone(),
            epoch,
            cfg.client_think,
            trace.clone(),
        )));
    }

    // The fault schedule, the scenario and the observers.
    let mut rng = SplitMix64::new(SplitMix64::derive(cfg.seed, &[0xFA17]));
    let mut next_fault = Duration::from_millis(500);
    let mut forced = Forced::default();
    let mut pauses = Pauses {
        next_at: Duration::from_secs(2),
        ..Default::default()
    };
    let tick = cfg
        .forced_transfers
        .map_or(Duration::from_millis(100), |p| {
            p.min(Duration::from_millis(100))
        });
    while h.start.elapsed() < cfg.duration {
        tokio::time::sleep(tick).await;
        h.observe().await;
        h.restart_due().await;
        h.scenario_step(&mut forced, &mut pauses).await;
        if cfg.random_faults && h.start.elapsed() >= next_fault {
            next_fault = h.start.elapsed() + Duration::from_millis(300 + rng.below(1500));
            h.report.faults += 1;
            h.random_fault(&mut rng).await;
        }
    }
    if let Some((before, _)) = forced.pending {
        h.trace
            .event(|| format!("forced election from term {before} still pending at the end"));
    }

    // Bring every node back, heal, and check liveness: a fresh write commits within the bound.
    for id in std::mem::take(&mut h.down).into_keys() {
        h.restart(id).await;
    }
    h.hung = None;
    h.lagging = None;
    let _ = h.net.heal().await;
    let _ = h.net.set_faults(Faults::default()).await;
    h.trace.line("heal everything");
    let healed = tokio::time::Instant::now();
    let mut live = false;
    let mut k = 0usize;
    while healed.elapsed() < cfg.liveness_bound {
        h.observe().await;
        let current: Vec<&Node<SimCounter>> = h.nodes.values().collect();
        let n = current[k % current.len()];
        k += 1;
        let id = RequestId {
            client: 0xFFFF,
            seq: 1,
        };
        if n.propose_with_id(GROUP, id, CounterCmd::Add(0))
            .await
            .is_ok()
        {
            live = true;
            h.trace
                .event(|| format!("liveness: a write commits at n{}", n.id()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !live {
        h.violate(format!(
            "liveness: no commit within {:?} after healing",
            cfg.liveness_bound
        ));
    }
    // Clients finish their current operation (the cluster is healed) or, past the liveness
    // bound, give up on it.
    let _ = stop.0.send(FINISH);
    let give_up_at = tokio::time::Instant::now() + cfg.liveness_bound;
    let mut history = Vec::new();
    for mut c in clients {
        let joined = match tokio::time::timeout_at(give_up_at, &mut c).await {
            Ok(r) => r,
            Err(_) => {
                let _ = stop.0.send(GIVE_UP);
                c.await
            }
        };
        match joined {
            Ok(r) => {
                history.extend(r.outcomes);
                h.report.overloaded += r.overloaded;
                h.report.errors += r.errors;
            }
            Err(e) => h.violate(format!("client task failed: {e}")),
        }
    }
    let before = h.report.violations.len();
    check_history(&history, &mut h.report);
    for v in &h.report.violations[before..] {
        h.trace.event(|| format!("VIOLATION {v}"));
    }
    // Let followers apply everything, then audit replicator wake-ups in a quiet window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.observe().await;
    if live {
        match h.wakeup_audit().await {
            Ok(audit) => {
                h.trace.event(|| format!("wake-up audit: {audit:?}"));
                if let Err(e) = audit.check() {
                    h.violate(e);
                }
                h.report.wakeup_audit = Some(audit);
            }
            Err(e) => h.violate(e),
        }
    }
    h.finish_metrics().await;
    h.report.leader_terms = h.leaders.len() as u64;
    for n in h.nodes.values() {
        n.shutdown().await;
    }
    h.check_durable_logs();
    let mut report = h.report;
    let before = report.violations.len();
    summarize_applied(&applied_rx, &history, &mut report);
    for v in &report.violations[before..] {
        trace.event(|| format!("VIOLATION {v}"));
    }
    report.trace = trace_log.drain();
    report
}

/// State-machine safety over every applied command, and the run's hashes.
fn summarize_applied(
    applied_rx: &flume::Receiver<Applied>,
    history: &[Outcome],
    report: &mut SimReport,
) {
    let mut applied: BTreeMap<u64, (NodeId, CounterCmd)> = BTreeMap::new();
    let mut hasher = DefaultHasher::new();
    let mut applied_hasher = DefaultHasher::new();
    let mut history_hasher = DefaultHasher::new();
    if applied_rx.is_full() {
        report
            .violations
            .push("checker: applied-entry queue overflowed".into());
    }
    while let Ok(a) = applied_rx.try_recv() {
        (a.node, a.index).hash(&mut applied_hasher);
        report.applied_order.push((a.node, a.index));
        a.node.hash(&mut hasher);
        a.index.hash(&mut hasher);
        a.command.hash(&mut hasher);
        match applied.get(&a.index) {
            Some((other, cmd)) if *cmd != a.command => report.violations.push(format!(
                "state-machine safety: index {} applied as {:?} on node {} but {:?} on node {}",
                a.index, cmd, other, a.command, a.node
            )),
            Some(_) => {}
            None => {
                applied.insert(a.index, (a.node, a.command));
            }
        }
    }
    // Timestamps are left out: only the order of events is hashed.
    for o in history {
        match *o {
            Outcome::Added {
                client, seq, value, ..
            } => (0u8, client, seq, value).hash(&mut history_hasher),
            Outcome::Read { client, value, .. } => {
                (1u8, client, 0u64, value).hash(&mut history_hasher)
            }
            Outcome::InDoubt { client, seq, .. } => {
                (2u8, client, seq, 0i64).hash(&mut history_hasher)
            }
        }
    }
    report.applied_hash = applied_hasher.finish();
    report.history_hash = history_hasher.finish();
    report.history_hash.hash(&mut hasher);
    report.trace_hash = hasher.finish();
}

impl Harness {
    /// Records a violation, in the trace at the time it is found too.
    fn violate(&mut self, v: String) {
        self.trace.event(|| format!("VIOLATION {v}"));
        self.report.violations.push(v);
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Tells every client the current node handles.
    fn publish_directory(&self) {
        let current: Vec<Node<SimCounter>> = self.nodes.values().cloned().collect();
        for d in &self.directories {
            d.send(current.clone());
        }
    }

    /// Restarts a crashed node from what its disk synced.
    async fn restart(&mut self, id: NodeId) {
        self.trace.event(|| format!("restart n{id}"));
        let (t, inbound) = match self.net.restart(id).await {
            Ok(x) => x,
            Err(e) => {
                self.report
                    .violations
                    .push(format!("node {id}: network restart: {e}"));
                return;
            }
        };
        let disk = self.disks.entry(id).or_insert_with(Disk::new);
        match start_node(
            &self.cfg,
            id,
            &self.ids,
            t,
            inbound,
            disk,
            &self.applied_tx,
            &self.trace,
        )
        .await
        {
            Ok(node) => {
                self.nodes.insert(id, node);
            }
            Err(e) => self.violate(e),
        }
        self.publish_directory();
    }

    async fn restart_due(&mut self) {
        let now = self.elapsed();
        let due: Vec<NodeId> = self
            .down
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.down.remove(&id);
            self.restart(id).await;
        }
    }

    /// Re-applies the scenario's standing partitions after a heal.
    async fn standing_partitions(&self) {
        if let Some(v) = self.hung {
            for &other in self.ids.iter().filter(|&&n| n != v) {
                let _ = self.net.partition_lane(v, other, Lane::Data).await;
                let _ = self.net.partition_lane(other, v, Lane::Data).await;
            }
        }
        if let Some(v) = self.lagging {
            let _ = self.net.isolate(v).await;
        }
    }

    async fn heal(&self) {
        let _ = self.net.heal().await;
        self.standing_partitions().await;
    }

    /// Reads every node's metrics: election safety, leader completeness, commits, queues,
    /// stalls and the victim's lag.
    async fn observe(&mut self) {
        let mut seen: Vec<(NodeId, GroupMetrics)> = Vec::new();
        for (&id, n) in &self.nodes {
            if let Ok(m) = n.group_metrics(GROUP).await {
                seen.push((id, m));
            }
        }
        let mut newest: Option<(Term, NodeId)> = None;
        for (id, m) in seen {
            self.max_term = self.max_term.max(m.term);
            if m.stalled {
                self.report.stalls_seen += 1;
            }
            let q = &mut self.report.max_queues;
            *q = (
                q.0.max(m.client_queue),
                q.1.max(m.raft_queue),
                q.2.max(m.control_queue),
            );
            if !(m.responsive && m.role == Role::Leader) {
                continue;
            }
            if let Some(v) = self.lagging.or(self.hung) {
                if let Some(&lag) = m.lag.get(&v) {
                    self.report.max_victim_lag = self.report.max_victim_lag.max(lag);
                }
            }
            if newest.is_none_or(|(t, _)| m.term > t) {
                newest = Some((m.term, id));
            }
            let mut found = Vec::new();
            match self.leaders.get(&m.term) {
                Some(&other) if other != id => found.push(format!(
                    "election safety: nodes {other} and {id} both lead term {}",
                    m.term
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert(m.term, id);
                    self.trace
                        .event(|| format!("n{id} leads term {} (commit {})", m.term, m.commit));
                }
            }
            let sole_leader = found.is_empty();
            if let Some(disk) = self.disks.get_mut(&id) {
                match disk.settle() {
                    Err(e) => found.push(e),
                    Ok(()) => {
                        let view = StoreView {
                            node: id,
                            store: &disk.image,
                        };
                        // Incremental: `check_leader` resumes where it stopped for this node.
                        if sole_leader {
                            if let Err(e) = self.completeness.check_leader(m.term, &view) {
                                found.push(e);
                            }
                        }
                        let before = self.completeness.commit_index();
                        if let Err(e) = self.completeness.committed(m.term, &view, m.commit) {
                            found.push(e);
                        }
                        self.report.committed_checked += self.completeness.commit_index() - before;
                    }
                }
            }
            for v in found {
                self.violate(v);
            }
        }
        if newest.is_some() {
            self.leader = newest;
        }
    }

    /// One step of the scenario knobs.
    async fn scenario_step(&mut self, forced: &mut Forced, pauses: &mut Pauses) {
        let now = self.elapsed();
        if self.cfg.hung_follower && self.hung.is_none() && self.report.victim.is_none() {
            if let Some((_, leader)) = self.leader {
                // The highest-numbered follower: never the leader, whose hung data lane would
                // leave a leader that heartbeats but cannot commit.
                let v = self
                    .ids
                    .iter()
                    .copied()
                    .rev()
                    .find(|&n| n != leader)
                    .unwrap_or(leader);
                self.hung = Some(v);
                self.report.victim = Some(v);
                self.trace
                    .event(|| format!("scenario: n{v}'s data lane hangs both ways"));
                self.standing_partitions().await;
            }
        }
        if let Some(lf) = self.cfg.lagging_follower {
            if now >= lf.from && now < lf.until && self.lagging.is_none() {
                if let Some((_, leader)) = self.leader {
                    let v = self
                        .ids
                        .iter()
                        .copied()
                        .find(|&n| n != leader)
                        .unwrap_or(leader);
                    self.lagging = Some(v);
                    self.report.victim = Some(v);
                    self.trace.event(|| format!("scenario: n{v} cut off"));
                    self.standing_partitions().await;
                }
            } else if now >= lf.until && self.lagging.is_some() {
                self.lagging = None;
                self.trace.line("scenario: lagging follower reconnected");
                self.heal().await;
            }
        }
        if let Some(period) = self.cfg.forced_transfers {
            self.forced_step(forced, period).await;
        }
        if let Some(lp) = self.cfg.leader_pauses {
            self.pause_step(pauses, lp).await;
        }
    }

    /// Forced transfers: one at a time, each checked to complete within the bound.
    async fn forced_step(&mut self, f: &mut Forced, period: Duration) {
        let now = self.elapsed();
        if let Some((before, deadline)) = f.pending {
            if self.leader.is_some_and(|(t, _)| t > before) {
                f.pending = None;
                self.report.forced_elections += 1;
                f.next_at = now + period;
            } else if now > deadline {
                self.violate(format!(
                    "forced election: no leader of a term after {before} within {:?}",
                    self.cfg.forced_election_bound
                ));
                f.pending = None;
                f.next_at = now + period;
            }
            return;
        }
        if now < f.next_at {
            return;
        }
        let Some((term, leader)) = self.leader else {
            return;
        };
        let candidates: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|&n| {
                n != leader
                    && Some(n) != self.hung
                    && Some(n) != self.lagging
                    && !self.down.contains_key(&n)
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let target = candidates[f.k % candidates.len()];
        f.k += 1;
        let Some(node) = self.nodes.get(&leader) else {
            return;
        };
        match node.transfer_leader(GROUP, target).await {
            Ok(()) => {
                self.trace.event(|| {
                    format!("scenario: forced transfer n{leader} -> n{target} (term {term})")
                });
                f.pending = Some((term, now + self.cfg.forced_election_bound));
            }
            Err(e) => {
                self.trace
                    .event(|| format!("scenario: transfer n{leader} -> n{target} refused: {e}"));
            }
        }
    }

    /// Leader pauses: a pause alone must not change the term; an isolation must.
    async fn pause_step(&mut self, p: &mut Pauses, lp: LeaderPauses) {
        let now = self.elapsed();
        if let Some(ep) = &mut p.active {
            if now < ep.next_at {
                return;
            }
            if !ep.isolate {
                self.report.pauses += 1;
                if self.max_term > ep.max_term {
                    self.report.pause_elections += 1;
                    let (leader, t0, t1) = (ep.leader, ep.max_term, self.max_term);
                    self.trace.event(|| {
                        format!("scenario: pause of n{leader} was followed by term {t1} (was {t0})")
                    });
                }
                p.active = None;
            } else if ep.stage == 0 {
                ep.stage = 1;
                ep.next_at = now + lp.isolation.unwrap_or_default();
                let leader = ep.leader;
                self.trace.event(|| format!("scenario: n{leader} isolated"));
                let _ = self.net.isolate(leader).await;
            } else {
                let (leader, term) = (ep.leader, ep.term);
                p.active = None;
                let took_over = self.leader.is_some_and(|(t, n)| t > term && n != leader);
                self.report.isolations += 1;
                if took_over {
                    self.report.isolation_takeovers += 1;
                }
                self.trace.event(|| {
                    format!(
                        "scenario: n{leader} reconnected; another leader took over: {took_over}"
                    )
                });
                self.heal().await;
            }
            return;
        }
        if now < p.next_at {
            return;
        }
        let Some((term, leader)) = self.leader else {
            return;
        };
        p.next_at = now + lp.every;
        p.count += 1;
        let isolate = lp.isolation.is_some() && p.count % 2 == 0;
        if isolate {
            self.trace.event(|| {
                format!("scenario: acknowledgements to leader n{leader} (term {term}) lost")
            });
            for &f in self.ids.iter().filter(|&&n| n != leader) {
                let _ = self.net.partition_lane(f, leader, Lane::Data).await;
            }
        } else {
            self.trace.event(|| {
                format!(
                    "scenario: leader n{leader} (term {term}) paused for {:?}",
                    lp.pause
                )
            });
            if let Some(n) = self.nodes.get(&leader) {
                let _ = n.freeze_partition(GROUP, lp.pause);
            }
        }
        p.active = Some(Episode {
            leader,
            term,
            max_term: self.max_term,
            isolate,
            stage: 0,
            // A pause is judged after it ended plus an election timeout's worth of heartbeats.
            next_at: now + lp.pause + Duration::from_millis(if isolate { 0 } else { 1000 }),
        });
    }

    /// One fault of the random schedule.
    async fn random_fault(&mut self, rng: &mut SplitMix64) {
        // A crash (kill -9) of a running node, keeping a majority up; it restarts later from
        // what its disk had synced.
        if self.cfg.crashes
            && rng.below(6) == 0
            && (self.down.len() as u64) < (self.cfg.nodes - 1) / 2
        {
            let running: Vec<NodeId> = self.nodes.keys().copied().collect();
            let id = running[rng.below(running.len() as u64) as usize];
            if let Some(n) = self.nodes.remove(&id) {
                n.crash();
                self.report.crashes += 1;
                let back = self.elapsed() + Duration::from_millis(200 + rng.below(2000));
                self.trace
                    .event(|| format!("fault: crash n{id} (restart at {back:?})"));
                self.down.insert(id, back);
            }
            return;
        }
        let ids = self.ids.clone();
        let pick = |rng: &mut SplitMix64| ids[rng.below(ids.len() as u64) as usize];
        match rng.below(11) {
            0 => {
                let n = pick(rng);
                self.trace.event(|| format!("fault: isolate n{n}"));
                let _ = self.net.isolate(n).await;
            }
            1 => {
                let (a, b) = (pick(rng), pick(rng));
                if a != b {
                    self.trace.event(|| format!("fault: cut n{a} -> n{b}"));
                    let _ = self.net.partition_one_way(a, b).await;
                }
            }
            2 => {
                // A "bridge": two nodes cannot talk to each other but both reach a third.
                let (a, b) = (pick(rng), pick(rng));
                if a != b {
                    self.trace.event(|| format!("fault: cut n{a} <-> n{b}"));
                    let _ = self.net.partition(a, b).await;
                }
            }
            3 if self.cfg.network_faults => {
                let faults = Faults {
                    drop_probability: rng.below(20) as f64 / 100.0,
                    duplicate_probability: rng.below(10) as f64 / 100.0,
                    min_delay: Duration::ZERO,
                    max_delay: Duration::from_millis(rng.below(30)),
                    reorder_probability: rng.below(20) as f64 / 100.0,
                    reorder_window: Duration::from_millis(20),
                };
                self.trace.event(|| format!("fault: network {faults:?}"));
                let _ = self.net.set_faults(faults).await;
            }
            4 => {
                // A stop-the-world pause of one node's partition actor (incident 2).
                let pause = Duration::from_millis(200 + rng.below(2000));
                let n = pick(rng);
                self.trace
                    .event(|| format!("fault: pause n{n}'s partition for {pause:?}"));
                if let Some(node) = self.nodes.get(&n) {
                    let _ = node.freeze_partition(GROUP, pause);
                }
            }
            5 => {
                // A leader-transfer storm: several transfers in a row.
                for _ in 0..3 {
                    let target = pick(rng);
                    self.trace
                        .event(|| format!("fault: transfer storm to n{target}"));
                    for n in self.nodes.values() {
                        let _ = n.transfer_leader(GROUP, target).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            6 => {
                // A membership change at whichever node leads: remove a voter, or give a
                // removed node back as a learner, or promote a learner (joint consensus under
                // load).
                for n in self.nodes.values() {
                    let Ok(m) = n.group_metrics(GROUP).await else {
                        continue;
                    };
                    if m.role != Role::Leader {
                        continue;
                    }
                    if let Ok(Some(target)) = change_membership(rng, n, &self.ids).await {
                        self.report.membership_changes += 1;
                        self.trace
                            .event(|| format!("fault: membership change to {target:?}"));
                    }
                    break;
                }
            }
            7 if self.cfg.disk_stalls => {
                // A hung disk: no sync completes for a while, then it resumes.
                let n = pick(rng);
                let stall = Duration::from_millis(500 + rng.below(4500));
                self.trace
                    .event(|| format!("fault: n{n}'s disk stalls for {stall:?}"));
                if let Some(node) = self.nodes.get(&n) {
                    if node.stall_storage(stall).is_ok() {
                        self.report.disk_stalls += 1;
                    }
                }
            }
            _ => {
                self.trace.line("fault: heal partitions");
                self.heal().await;
                if rng.below(2) == 0 {
                    self.trace.line("fault: network faults off");
                    let _ = self.net.set_faults(Faults::default()).await;
                }
            }
        }
    }

    /// The I9 audit: in a quiet window with one leader and a fixed membership, spaced writes
    /// must wake each replicator exactly once per published log change.
    async fn wakeup_audit(&mut self) -> Result<WakeupAudit, String> {
        const WRITES: u64 = 20;
        let mut seq = 0;
        for _attempt in 0..5 {
            self.observe().await;
            let Some((_, leader)) = self.leader else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let Some(node) = self.nodes.get(&leader).cloned() else {
                continue;
            };
            let Ok(m0) = node.group_metrics(GROUP).await else {
                continue;
            };
            if m0.role != Role::Leader || m0.membership.is_joint() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            for _ in 0..WRITES {
                seq += 1;
                let id = RequestId {
                    client: 0xFFFE,
                    seq,
                };
                let _ = node.propose_with_id(GROUP, id, CounterCmd::Add(0)).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Ok(m1) = node.group_metrics(GROUP).await else {
                continue;
            };
            if m1.role != Role::Leader || m1.term != m0.term || m1.membership != m0.membership {
                continue;
            }
            return Ok(WakeupAudit {
                signals: m1.replicate_signals - m0.replicate_signals,
                wakeups: m1.replicator_wakeups - m0.replicator_wakeups,
                replicators: m0.membership.all_nodes().len() as u64 - 1,
            });
        }
        Err("wake-up audit: no quiet window with a stable leader after healing".into())
    }

    /// Final per-node figures: snapshots, and whether the victim caught up.
    async fn finish_metrics(&mut self) {
        let mut commit = 0;
        let mut applied = BTreeMap::new();
        for (&id, n) in &self.nodes {
            let Ok(m) = n.group_metrics(GROUP).await else {
                continue;
            };
            self.report.snapshots_installed += m.snapshots_installed;
            self.report.snapshots_taken += m.snapshots_taken;
            if m.role == Role::Leader {
                commit = commit.max(m.commit);
            }
            applied.insert(id, m.applied);
        }
        if let Some(v) = self.report.victim {
            self.report.victim_caught_up = applied.get(&v).is_some_and(|&a| a >= commit);
        }
    }

    /// Log matching over every pair of final durable logs.
    fn check_durable_logs(&mut self) {
        let mut images = Vec::new();
        let mut found = Vec::new();
        for (&id, disk) in &mut self.disks {
            if let Err(e) = disk.settle() {
                found.push(e);
            }
            images.push(LogImage::from_recovered(
                id,
                disk.image.recover(GROUP).ok().flatten(),
            ));
        }
        for (i, a) in images.iter().enumerate() {
            for b in &images[i + 1..] {
                if let Err(e) = check_log_matching(a, b) {
                    found.push(e);
                }
            }
        }
        for v in found {
            self.violate(v);
        }
        let nodes: BTreeSet<NodeId> = self.nodes.keys().copied().collect();
        self.trace.event(|| {
            format!(
                "final durable logs of {nodes:?}: {:?}",
                images
                    .iter()
                    .map(|l| (l.node, l.snapshot_index, l.last_index()))
                    .collect::<Vec<_>>()
            )
        });
    }
}

/// A node's durable image and the channel its store ships synced writes on.
struct Disk {
    image: MemStore,
    tx: flume::Sender<super::store::DiskOp>,
    rx: flume::Receiver<super::store::DiskOp>,
}

impl Disk {
    fn new() -> Disk {
        let (tx, rx) = flume::bounded(1 << 22);
        Disk {
            image: MemStore::new(),
            tx,
            rx,
        }
    }

    /// Everything synced so far, applied to the image.
    fn settle(&mut self) -> Result<(), String> {
        while let Ok(op) = self.rx.try_recv() {
            super::store::apply(&mut self.image, op).map_err(|e| format!("simulated disk: {e}"))?;
        }
        Ok(())
    }
}

/// Starts a node over its disk's durable image and hosts the group.
#[allow(clippy::too_many_arguments)]
async fn start_node(
    cfg: &SimConfig,
    id: NodeId,
    ids: &[NodeId],
    t: raft_net::MemTransport<WireMsg>,
    inbound: raft_net::transport::Inbound<WireMsg>,
    disk: &mut Disk,
    applied: &flume::Sender<Applied>,
    trace: &Tracer,
) -> Result<Node<SimCounter>, String> {
    disk.settle()?;
    let mut nc = NodeConfig::new(id);
    nc.raft.seed = cfg.seed;
    nc.request_timeout = Duration::from_secs(2);
    nc.broken_local_reads = cfg.broken_local_reads;
    if let Some((threshold, trailing)) = cfg.snapshots {
        nc.raft.snapshot_threshold = threshold;
        nc.raft.compact_trailing = trailing;
    }
    if let Some(q) = cfg.client_queue {
        nc.client_queue = q;
    }
    let store = super::store::SimStore::new(disk.image.clone(), disk.tx.clone());
    let node = Node::<SimCounter>::builder(nc)
        .transport(t, inbound)
        .storage(store)
        .storage_mode(StorageMode::Task)
        .storage_sync_delay(Duration::from_millis(1))
        .heartbeat_executor(raft_actor::HeartbeatExecutor::Current)
        .start()
        .await
        .map_err(|e| format!("node {id}: start: {e}"))?;
    let sm = SimCounter {
        node: id,
        value: 0,
        applied: applied.clone(),
        trace: trace.clone(),
    };
    node.add_partition(GROUP, Membership::new(ids.iter().copied()), sm)
        .await
        .map_err(|e| format!("node {id}: add_partition: {e}"))?;
    Ok(node)
}

fn next_node(nodes: &[Node<SimCounter>], at: usize, e: &Error) -> usize {
    match e {
        Error::NotLeader {
            leader: Some(l), ..
        } => nodes.iter().position(|n| n.id() == *l).unwrap_or(at + 1),
        _ => at + 1,
    }
}

/// One step of membership churn, never below three voters. Returns the target asked for.
async fn change_membership(
    rng: &mut SplitMix64,
    leader: &Node<SimCounter>,
    ids: &[NodeId],
) -> Result<Option<Membership>, Error> {
    let current = leader.group_metrics(GROUP).await?.membership;
    let mut next = current.leave_joint();
    let outsiders: Vec<NodeId> = ids
        .iter()
        .copied()
        .filter(|id| !next.contains(*id))
        .collect();
    let learners: Vec<NodeId> = next.learners.iter().copied().collect();
    let voters: Vec<NodeId> = next.voters.iter().copied().collect();
    if let Some(&id) = learners.first() {
        next.learners.remove(&id);
        next.voters.insert(id);
    } else if let Some(&id) = outsiders.first() {
        next.learners.insert(id);
    } else if voters.len() > 3 {
        let id = voters[rng.below(voters.len() as u64) as usize];
        next.voters.remove(&id);
    } else {
        return Ok(None);
    }
    leader
        .change_membership(GROUP, next.clone())
        .await
        .map(|_| Some(next))
}

/// Checks the client history: counter values of acknowledged increments are distinct (each
/// applied exactly once), and the whole history is linearizable against a counter model (an
/// increment whose outcome is unknown may or may not have taken effect).
fn check_history(history: &[Outcome], report: &mut SimReport) {
    use super::linearizability::{
        CheckBudget, CheckResult, Counter, CounterInput, Operation, check,
    };
    let mut seen: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    let mut ops = Vec::with_capacity(history.len());
    for o in history {
        match *o {
            Outcome::Added {
                client,
                seq,
                value,
                call,
                ret,
            } => {
                report.acked += 1;
                if let Some(prev) = seen.insert(value, (client, seq)) {
                    report.violations.push(format!(
                        "exactly-once: increments {prev:?} and {:?} both returned {value}",
                        (client, seq)
                    ));
                }
                ops.push(Operation {
                    client,
                    input: CounterInput::Add(1),
                    call,
                    ret: Some((ret.max(call + 1), value)),
                });
            }
            Outcome::InDoubt { client, call, .. } => {
                report.in_doubt += 1;
                ops.push(Operation {
                    client,
                    input: CounterInput::Add(1),
                    call,
                    ret: None,
                });
            }
            Outcome::Read {
                client,
                value,
                call,
                ret,
            } => {
                report.acked += 1;
                ops.push(Operation {
                    client,
                    input: CounterInput::Get,
                    call,
                    ret: Some((ret.max(call + 1), value)),
                });
            }
        }
    }
    match check(&Counter { initial: 0 }, &ops, CheckBudget::default()) {
        CheckResult::Linearizable => {}
        CheckResult::NotLinearizable { explanation } => {
            report
                .violations
                .push(format!("linearizability: {explanation}"));
        }
        CheckResult::Unknown { .. } => report.linearizability_unknown = true,
    }
}
