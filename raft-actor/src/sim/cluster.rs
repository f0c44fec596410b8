//! A seeded, deterministic simulation of a cluster running a replicated counter.
//!
//! Everything runs on one current-thread tokio runtime with paused time (storage and heartbeat
//! actors as tasks), over the in-memory network with seeded faults, so the same seed gives the
//! same run. A fault schedule partitions nodes (both ways and one way), drops, duplicates and
//! delays messages, pauses partition actors (the stop-the-world pause of incident 2) and forces
//! leader transfers, while clients increment and read with sessions and retries. Checkers:
//! election safety (one leader per term, from every node's metrics), state-machine safety
//! (every node applies the same command at each index), linearizability of the client
//! history, and liveness once the faults heal. A failing seed prints the command replaying it.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use raft_core::rng::SplitMix64;
use raft_core::{GroupId, Membership, NodeId, Role};
use raft_net::{Faults, MemConfig, MemNetwork};
use raft_storage::MemStore;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::node::Node;
use crate::state_machine::{RequestId, StateMachine};
use crate::wire::WireMsg;
use crate::{NodeConfig, StorageMode};

/// A counter state machine that reports every applied command to the simulation.
pub struct SimCounter {
    node: NodeId,
    value: i64,
    applied: flume::Sender<Applied>,
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
    /// Simulated time with faults before healing.
    pub duration: Duration,
    /// Simulated time allowed for the group to commit again after healing.
    pub liveness_bound: Duration,
    /// Also inject probabilistic message loss, duplication, delay and reordering (on by
    /// default). Partitions (both ways, one way, bridges), partition-actor pauses and transfer
    /// storms are always on.
    pub network_faults: bool,
    /// Broken on purpose: serve reads locally without ReadIndex (the checkers must catch it).
    pub broken_local_reads: bool,
    /// Crash nodes (losing unsynced writes) and restart them from their durable state.
    pub crashes: bool,
}

impl SimConfig {
    /// Defaults for `seed`: 3 or 5 nodes (by seed), 4 clients, 60 s of faults.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: if seed % 2 == 0 { 3 } else { 5 },
            clients: 4,
            duration: Duration::from_secs(60),
            liveness_bound: Duration::from_secs(20),
            network_faults: true,
            broken_local_reads: false,
            crashes: true,
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
    /// Distinct leader terms observed.
    pub leader_terms: u64,
    /// Faults injected.
    pub faults: u64,
    /// Membership changes accepted by a leader during the run.
    pub membership_changes: u64,
    /// Node crashes (each followed by a restart from durable state).
    pub crashes: u64,
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

async fn run_async(cfg: SimConfig) -> SimReport {
    let mut report = SimReport {
        seed: cfg.seed,
        ..Default::default()
    };
    let ids: Vec<NodeId> = (1..=cfg.nodes).collect();
    let mem = MemConfig::default();
    let (net, transports) = match MemNetwork::<WireMsg>::with_faults(&ids, &mem, cfg.seed) {
        Ok(x) => x,
        Err(e) => {
            report.violations.push(format!("network: {e}"));
            return report;
        }
    };
    let (applied_tx, applied_rx) = flume::bounded::<Applied>(1 << 20);
    let mut disks: BTreeMap<NodeId, Disk> = BTreeMap::new();
    let mut nodes: BTreeMap<NodeId, Node<SimCounter>> = BTreeMap::new();
    for (id, (t, inbound)) in ids.iter().zip(transports) {
        let disk = disks.entry(*id).or_insert_with(Disk::new);
        match start_node(&cfg, *id, &ids, t, inbound, disk, &applied_tx).await {
            Ok(node) => {
                nodes.insert(*id, node);
            }
            Err(e) => {
                report.violations.push(e);
                return report;
            }
        }
    }
    let nodes_v: Vec<Node<SimCounter>> = nodes.values().cloned().collect();

    // Clients.
    let stop = tokio::sync::watch::channel(false);
    let epoch = tokio::time::Instant::now();
    let mut clients = Vec::new();
    // Each client learns the current node handles (after crashes) through a latest-value
    // channel it polls between operations.
    let mut directories = Vec::new();
    for c in 0..cfg.clients {
        let mut nodes = nodes_v.clone();
        let (dir_tx, dir_rx) = crate::latest::channel::<Vec<Node<SimCounter>>>();
        directories.push(dir_tx);
        let mut stop_rx = stop.1.clone();
        let seed = SplitMix64::derive(cfg.seed, &[0xC11E, c]);
        clients.push(tokio::spawn(async move {
            let mut rng = SplitMix64::new(seed);
            let mut outcomes = Vec::new();
            let mut seq = 0;
            let mut at = (rng.below(nodes.len() as u64)) as usize;
            let now = move || epoch.elapsed().as_nanos() as u64;
            while !*stop_rx.borrow_and_update() {
                tokio::time::sleep(Duration::from_millis(1 + rng.below(20))).await;
                if let Some(current) = dir_rx.try_latest() {
                    nodes = current;
                }
                if rng.below(5) == 0 {
                    // Reads go to any node: a correct one answers only as a confirmed leader.
                    let call = now();
                    let target = rng.below(nodes.len() as u64) as usize;
                    if let Ok(v) = nodes[target].read(GROUP, ()).await {
                        outcomes.push(Outcome::Read {
                            client: c,
                            value: v,
                            call,
                            ret: now(),
                        });
                    }
                    continue;
                }
                let call = now();
                seq += 1;
                let id = RequestId { client: c + 1, seq };
                let mut answered = false;
                // Retry the same request (same session id) until it is answered or the run ends.
                while !*stop_rx.borrow() {
                    match nodes[at % nodes.len()]
                        .propose_with_id(GROUP, id, CounterCmd::Add(1))
                        .await
                    {
                        Ok(v) => {
                            outcomes.push(Outcome::Added {
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
                            at = next_node(&nodes, at, &e);
                            tokio::time::sleep(Duration::from_millis(5 + rng.below(20))).await;
                        }
                    }
                }
                if !answered {
                    outcomes.push(Outcome::InDoubt {
                        client: c,
                        seq,
                        call,
                    });
                }
            }
            outcomes
        }));
    }

    // Fault schedule and election-safety observer.
    let mut rng = SplitMix64::new(SplitMix64::derive(cfg.seed, &[0xFA17]));
    let mut leaders: BTreeMap<u64, NodeId> = BTreeMap::new();
    let start = tokio::time::Instant::now();
    let mut next_fault = Duration::from_millis(500);
    let mut down: BTreeMap<NodeId, Duration> = BTreeMap::new();
    while start.elapsed() < cfg.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        observe_leaders(&nodes, &mut leaders, &mut report).await;
        // Restart crashed nodes whose time has come.
        let due: Vec<NodeId> = down
            .iter()
            .filter(|(_, at)| **at <= start.elapsed())
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            down.remove(&id);
            if let Err(e) = restart(&cfg, id, &ids, &net, &mut disks, &mut nodes, &applied_tx).await
            {
                report.violations.push(e);
            }
            let current: Vec<Node<SimCounter>> = nodes.values().cloned().collect();
            for d in &directories {
                d.send(current.clone());
            }
        }
        if start.elapsed() >= next_fault {
            next_fault = start.elapsed() + Duration::from_millis(300 + rng.below(1500));
            report.faults += 1;
            // A crash (kill -9) of a running node, keeping a majority up; it restarts later
            // from what its disk had synced.
            if cfg.crashes && rng.below(6) == 0 && (down.len() as u64) < (cfg.nodes - 1) / 2 {
                let running: Vec<NodeId> = nodes.keys().copied().collect();
                let id = running[rng.below(running.len() as u64) as usize];
                if let Some(n) = nodes.remove(&id) {
                    n.crash();
                    report.crashes += 1;
                    down.insert(
                        id,
                        start.elapsed() + Duration::from_millis(200 + rng.below(2000)),
                    );
                }
                continue;
            }
            if inject(&mut rng, &net, &nodes, &ids, cfg.network_faults).await {
                report.membership_changes += 1;
            }
        }
    }
    // Bring every node back, heal, and check liveness: a fresh write commits within the bound.
    for id in std::mem::take(&mut down).into_keys() {
        if let Err(e) = restart(&cfg, id, &ids, &net, &mut disks, &mut nodes, &applied_tx).await {
            report.violations.push(e);
        }
    }
    let _ = net.heal().await;
    let _ = net.set_faults(Faults::default()).await;
    let healed = tokio::time::Instant::now();
    let mut live = false;
    let mut k = 0usize;
    while healed.elapsed() < cfg.liveness_bound {
        observe_leaders(&nodes, &mut leaders, &mut report).await;
        let current: Vec<&Node<SimCounter>> = nodes.values().collect();
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
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !live {
        report.violations.push(format!(
            "liveness: no commit within {:?} after healing",
            cfg.liveness_bound
        ));
    }
    let _ = stop.0.send(true);
    let mut history = Vec::new();
    for c in clients {
        match c.await {
            Ok(o) => history.extend(o),
            Err(e) => report.violations.push(format!("client task failed: {e}")),
        }
    }
    report.leader_terms = leaders.len() as u64;
    check_history(&history, &mut report);
    // Let followers apply everything, then compare what every node applied.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in nodes.values() {
        n.shutdown().await;
    }
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
    // Timestamps are left out: they carry the real-time sub-millisecond phase between the
    // paused clock and tokio's timer wheel, not behaviour.
    for o in &history {
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
    report
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
async fn start_node(
    cfg: &SimConfig,
    id: NodeId,
    ids: &[NodeId],
    t: raft_net::MemTransport<WireMsg>,
    inbound: raft_net::transport::Inbound<WireMsg>,
    disk: &mut Disk,
    applied: &flume::Sender<Applied>,
) -> Result<Node<SimCounter>, String> {
    disk.settle()?;
    let mut nc = NodeConfig::new(id);
    nc.raft.seed = cfg.seed;
    nc.request_timeout = Duration::from_secs(2);
    nc.broken_local_reads = cfg.broken_local_reads;
    let store = super::store::SimStore::new(disk.image.clone(), disk.tx.clone());
    let node = Node::<SimCounter>::builder(nc)
        .transport(t, inbound)
        .storage(store)
        .storage_mode(StorageMode::Task)
        .storage_sync_delay(Duration::from_millis(1))
        .heartbeat_executor(crate::HeartbeatExecutor::Current)
        .start()
        .await
        .map_err(|e| format!("node {id}: start: {e}"))?;
    let sm = SimCounter {
        node: id,
        value: 0,
        applied: applied.clone(),
    };
    node.add_partition(GROUP, Membership::new(ids.iter().copied()), sm)
        .await
        .map_err(|e| format!("node {id}: add_partition: {e}"))?;
    Ok(node)
}

/// Restarts a crashed node from what its disk synced.
async fn restart(
    cfg: &SimConfig,
    id: NodeId,
    ids: &[NodeId],
    net: &MemNetwork<WireMsg>,
    disks: &mut BTreeMap<NodeId, Disk>,
    nodes: &mut BTreeMap<NodeId, Node<SimCounter>>,
    applied: &flume::Sender<Applied>,
) -> Result<(), String> {
    let (t, inbound) = net
        .restart(id)
        .await
        .map_err(|e| format!("node {id}: network restart: {e}"))?;
    let disk = disks.entry(id).or_insert_with(Disk::new);
    let node = start_node(cfg, id, ids, t, inbound, disk, applied).await?;
    nodes.insert(id, node);
    Ok(())
}

fn next_node(nodes: &[Node<SimCounter>], at: usize, e: &Error) -> usize {
    match e {
        Error::NotLeader {
            leader: Some(l), ..
        } => nodes.iter().position(|n| n.id() == *l).unwrap_or(at + 1),
        _ => at + 1,
    }
}

/// Records each node's (term, leader) view; two leaders in one term is a violation.
async fn observe_leaders(
    nodes: &BTreeMap<NodeId, Node<SimCounter>>,
    leaders: &mut BTreeMap<u64, NodeId>,
    report: &mut SimReport,
) {
    for (&id, n) in nodes {
        let Ok(m) = n.group_metrics(GROUP).await else {
            continue;
        };
        if m.responsive && m.role == Role::Leader {
            match leaders.get(&m.term) {
                Some(&other) if other != id => report.violations.push(format!(
                    "election safety: nodes {other} and {id} both lead term {}",
                    m.term
                )),
                Some(_) => {}
                None => {
                    leaders.insert(m.term, id);
                }
            }
        }
    }
}

/// Injects one fault chosen by the seed.
async fn inject(
    rng: &mut SplitMix64,
    net: &MemNetwork<WireMsg>,
    nodes: &BTreeMap<NodeId, Node<SimCounter>>,
    ids: &[NodeId],
    network_faults: bool,
) -> bool {
    let pick = |rng: &mut SplitMix64| ids[rng.below(ids.len() as u64) as usize];
    match rng.below(10) {
        0 => {
            let _ = net.isolate(pick(rng)).await;
        }
        1 => {
            let (a, b) = (pick(rng), pick(rng));
            if a != b {
                let _ = net.partition_one_way(a, b).await;
            }
        }
        2 => {
            // A "bridge": two nodes cannot talk to each other but both reach a third.
            let (a, b) = (pick(rng), pick(rng));
            if a != b {
                let _ = net.partition(a, b).await;
            }
        }
        3 if network_faults => {
            let faults = Faults {
                drop_probability: rng.below(20) as f64 / 100.0,
                duplicate_probability: rng.below(10) as f64 / 100.0,
                min_delay: Duration::ZERO,
                max_delay: Duration::from_millis(rng.below(30)),
                reorder_probability: rng.below(20) as f64 / 100.0,
                reorder_window: Duration::from_millis(20),
            };
            let _ = net.set_faults(faults).await;
        }
        4 => {
            // A stop-the-world pause of one node's partition actor (incident 2).
            let pause = Duration::from_millis(200 + rng.below(2000));
            if let Some(n) = nodes.get(&pick(rng)) {
                let _ = n.freeze_partition(GROUP, pause);
            }
        }
        5 => {
            // A leader-transfer storm: several transfers in a row.
            for _ in 0..3 {
                let target = pick(rng);
                for n in nodes.values() {
                    let _ = n.transfer_leader(GROUP, target).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        6 => {
            // A membership change at whichever node leads: remove a voter, or give a removed
            // node back as a learner, or promote a learner (joint consensus under load).
            for n in nodes.values() {
                let Ok(m) = n.group_metrics(GROUP).await else {
                    continue;
                };
                if m.role != Role::Leader {
                    continue;
                }
                return change_membership(rng, n, ids).await.unwrap_or(false);
            }
        }
        _ => {
            let _ = net.heal().await;
            if rng.below(2) == 0 {
                let _ = net.set_faults(Faults::default()).await;
            }
        }
    }
    false
}

/// One step of membership churn, never below three voters.
async fn change_membership(
    rng: &mut SplitMix64,
    leader: &Node<SimCounter>,
    ids: &[NodeId],
) -> Result<bool, Error> {
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
        return Ok(false);
    }
    leader.change_membership(GROUP, next).await.map(|_| true)
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
