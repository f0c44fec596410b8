//! A seeded, deterministic simulation of a cluster running a replicated state machine: the
//! built-in counter ([`run`]), or one's own through a [`Workload`] ([`run_with`]).
//!
//! Everything runs on one current-thread tokio runtime with paused time (storage and heartbeat
//! actors as tasks), over the in-memory network with seeded faults, so the same seed gives the
//! same run. A random fault schedule partitions nodes (both ways and one way), drops,
//! duplicates and delays messages, pauses partition actors (the stop-the-world pause of the
//! MIT 6.824 incident), stalls disks, forces leader transfers, changes membership and crashes
//! nodes, while clients issue the workload's commands (with sessions and retries) and queries. Scenario knobs of
//! [`SimConfig`] add fixed faults instead (forced transfers, a hung follower, leader pauses, a
//! lagging follower, overload), for the incident tests.
//!
//! Checkers, in every run: election safety (one leader per term, from every node's metrics);
//! leader completeness (each new leader's durable log holds everything committed before its
//! term, [`crate::checkers::LeaderCompleteness`]); log matching over every pair of final
//! durable logs; state-machine safety (every node applies the same command at each index);
//! linearizability of the client history (ReadIndex and lease reads among it) against the
//! workload's model, and the workload's own history checks (exactly-once for the counter);
//! one replicator wake-up per log change in a quiet window at the end
//! ([`crate::checkers::WakeupAudit`]); the same session table on every replica that applied
//! the same index (clients churn through sessions against a small cap, so tables evict all
//! the time); and liveness once the faults heal. With [`SimConfig::trace`] the run records a human-readable event trace.
//!
//! A run, in the order [`run`] takes its steps: start the nodes and the clients, inject faults
//! for [`SimConfig::duration`], heal everything, check liveness, collect and check the client
//! history, audit replicator wake-ups in a quiet window, then shut down and check the durable
//! logs and the applied commands.
//!
//! The parts, one concern each (private modules; their public items are re-exported here):
//! - `config` — [`SimConfig`] and the scenario knobs [`LeaderPauses`], [`LaggingFollower`],
//!   [`LossyChurn`].
//! - `workload` — [`Workload`], what a run drives and checks, with [`Op`] and [`Recorded`].
//! - `counter` — the built-in workload: [`CounterWorkload`] over [`SimCounter`].
//! - `observed` — the wrapper that reports every applied command to the checkers.
//! - `client` — the client tasks and the history they record.
//! - `directory` — the latest node handles each client polls.
//! - `faults` — the random fault schedule.
//! - `scenario` — the scenario knobs at work (forced transfers, leader pauses, victims).
//! - `checks` — observation, the checkers and their verdicts.
//! - `report` — [`SimReport`].

mod checks;
mod client;
mod config;
mod counter;
mod directory;
mod faults;
mod observed;
mod report;
mod scenario;
mod workload;

pub use config::{LaggingFollower, LeaderPauses, LossyChurn, SimConfig};
pub use counter::{CounterCmd, CounterWorkload, SimCounter};
pub use report::SimReport;
pub use workload::{Op, Recorded, Workload};

use std::collections::BTreeMap;
use std::time::Duration;

use raft_actor::{HeartbeatExecutor, Node, NodeConfig, StateMachine, StorageMode, WireMsg};
use raft_core::{GroupId, Membership, NodeId, Term};
use raft_net::{Lane, MemConfig, MemNetwork};
use raft_storage::{LogStore, MemStore};

use crate::checkers::LeaderCompleteness;
use crate::store::{DiskOp, SimStore};
use crate::trace::Tracer;
use directory::DirectoryTx;
use observed::{Applied, Observed};

/// The one group every node hosts.
const GROUP: GroupId = 1;

/// The node handle of a run of `W`.
type SimNode<W> = Node<Observed<<W as Workload>::Machine>>;

/// The command type of `W`'s machine.
type CommandOf<W> = <<W as Workload>::Machine as StateMachine>::Command;

/// Runs one seed of the built-in counter workload ([`CounterWorkload`]) on a fresh paused
/// current-thread runtime.
pub fn run(cfg: SimConfig) -> SimReport {
    run_with(cfg, CounterWorkload)
}

/// Runs one seed of `workload` on a fresh paused current-thread runtime: its state machine on
/// every node, its operations from every client, its model and history checks on the client
/// history, and every other checker of the simulation.
pub fn run_with<W: Workload>(cfg: SimConfig, workload: W) -> SimReport {
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
    rt.block_on(run_async(cfg, workload))
}

/// One run, step by step (see the module docs). Every step awaits in the order the steps are
/// listed: the trace of a seed depends on it.
async fn run_async<W: Workload>(cfg: SimConfig, workload: W) -> SimReport {
    let (trace, trace_log) = crate::trace::new(cfg.trace);
    trace.event(|| format!("run {cfg:?}"));
    let mut h = match Harness::start(cfg, workload, trace).await {
        Ok(h) => h,
        Err(report) => return report,
    };
    // Held until the run ends: the clients' stop signal and their first node handles.
    let mut clients = h.spawn_clients();
    h.inject_faults().await;
    h.heal_everything().await;
    let live = h.check_liveness().await;
    let history = h.collect_history(&mut clients).await;
    h.check_client_history(&history);
    h.audit_quiet_window(live).await;
    h.shut_down().await;
    let report = h.into_report(&history, &trace_log);
    drop(clients);
    report
}

/// Everything the fault schedule and the checkers share during a run.
struct Harness<W: Workload> {
    cfg: SimConfig,
    /// Makes the state machines, and judges the client history.
    workload: W,
    ids: Vec<NodeId>,
    net: MemNetwork<WireMsg>,
    disks: BTreeMap<NodeId, Disk>,
    nodes: BTreeMap<NodeId, SimNode<W>>,
    /// Every node's state machine reports each applied command here.
    applied_tx: flume::Sender<Applied<CommandOf<W>>>,
    applied_rx: flume::Receiver<Applied<CommandOf<W>>>,
    trace: Tracer,
    /// One per client: the current node handles, republished after every restart.
    directories: Vec<DirectoryTx<Vec<SimNode<W>>>>,
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
    /// The highest commit index any node reported when the fault phase ended.
    fault_end_commit: u64,
    /// One message per membership call of the fault schedule that succeeded (the calls run on
    /// tasks of their own).
    changes_tx: flume::Sender<()>,
    changes_rx: flume::Receiver<()>,
}

impl<W: Workload> Harness<W> {
    /// Builds the network and starts every node over an empty disk. On failure, the report
    /// that says why.
    async fn start(cfg: SimConfig, workload: W, trace: Tracer) -> Result<Self, SimReport> {
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
                return Err(report);
            }
        };
        let (applied_tx, applied_rx) = flume::bounded(1 << 22);
        let (changes_tx, changes_rx) = flume::bounded(1 << 16);
        let mut h = Harness {
            changes_tx,
            changes_rx,
            cfg,
            workload,
            ids,
            net,
            disks: BTreeMap::new(),
            nodes: BTreeMap::new(),
            applied_tx,
            applied_rx,
            trace,
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
            fault_end_commit: 0,
        };
        let ids = h.ids.clone();
        for (&id, (t, inbound)) in ids.iter().zip(transports) {
            let disk = h.disks.entry(id).or_insert_with(Disk::new);
            let sm = h.workload.machine(id, &h.trace);
            let start = Start::Bootstrap(&ids);
            match start_node(&h.cfg, id, start, t, inbound, disk, sm, &h.applied_tx).await {
                Ok(node) => {
                    h.nodes.insert(id, node);
                }
                Err(e) => {
                    h.violate(e);
                    return Err(h.report);
                }
            }
        }
        Ok(h)
    }

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
        let current: Vec<SimNode<W>> = self.nodes.values().cloned().collect();
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
        let sm = self.workload.machine(id, &self.trace);
        match start_node(
            &self.cfg,
            id,
            Start::Restart(&self.ids),
            t,
            inbound,
            disk,
            sm,
            &self.applied_tx,
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

    /// Makes running node `id` host the group again if it does not (it was removed from the
    /// group, which stopped there and purged its storage): it joins as a new node does.
    async fn rejoin(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get(&id) else {
            return;
        };
        if node.group_metrics(GROUP).await.is_ok() {
            return;
        }
        let sm = Observed::new(
            id,
            self.workload.machine(id, &self.trace),
            self.applied_tx.clone(),
        );
        let r = node.join_partition(GROUP, sm).await;
        self.trace
            .event(|| format!("n{id} joins the group again: {r:?}"));
    }
}

/// How a node starts hosting the group.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// The first start of the run: a new group with these voters.
    Bootstrap(&'a [NodeId]),
    /// After a crash: recovered from the disk if it holds the group (with these voters
    /// ignored), otherwise the node was removed from the group (its storage purged) and joins
    /// as a new node.
    Restart(&'a [NodeId]),
}

/// A node's durable image and the channel its store ships synced writes on.
struct Disk {
    image: MemStore,
    tx: flume::Sender<DiskOp>,
    rx: flume::Receiver<DiskOp>,
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
            crate::store::apply(&mut self.image, op).map_err(|e| format!("simulated disk: {e}"))?;
        }
        Ok(())
    }
}

/// Starts a node over its disk's durable image and hosts the group with state machine `sm`.
#[allow(clippy::too_many_arguments)]
async fn start_node<S: StateMachine<Command: Clone>>(
    cfg: &SimConfig,
    id: NodeId,
    start: Start<'_>,
    t: raft_net::MemTransport<WireMsg>,
    inbound: raft_net::transport::Inbound<WireMsg>,
    disk: &mut Disk,
    sm: S,
    applied: &flume::Sender<Applied<S::Command>>,
) -> Result<Node<Observed<S>>, String> {
    disk.settle()?;
    let mut nc = NodeConfig::new(id);
    nc.raft.seed = cfg.seed;
    nc.request_timeout = Duration::from_secs(2);
    // Membership calls run on tasks of their own; they end within a few seconds.
    nc.learner_catchup_timeout = Duration::from_secs(3);
    nc.broken_local_reads = cfg.broken_local_reads;
    if let Some((threshold, trailing)) = cfg.snapshots {
        nc.raft.snapshot_threshold = threshold;
        nc.raft.compact_trailing = trailing;
    }
    if let Some(q) = cfg.client_queue {
        nc.client_queue = q;
    }
    let clients = usize::try_from(cfg.clients).unwrap_or(usize::MAX);
    nc.max_sessions = cfg
        .max_sessions
        .unwrap_or(clients.saturating_mul(2).saturating_add(2));
    let store = SimStore::new(disk.image.clone(), disk.tx.clone());
    let node = Node::<Observed<S>>::builder(nc)
        .transport(t, inbound)
        .storage(store)
        .storage_mode(StorageMode::Task)
        .storage_sync_delay(Duration::from_millis(1))
        .heartbeat_executor(HeartbeatExecutor::Current)
        .start()
        .await
        .map_err(|e| format!("node {id}: start: {e}"))?;
    let sm = Observed::new(id, sm, applied.clone());
    match start {
        Start::Restart(_) if !disk.image.groups().contains(&GROUP) => node
            .join_partition(GROUP, sm)
            .await
            .map_err(|e| format!("node {id}: join_partition: {e}"))?,
        Start::Bootstrap(ids) | Start::Restart(ids) => node
            .add_partition(GROUP, Membership::new(ids.iter().copied()), sm)
            .await
            .map_err(|e| format!("node {id}: add_partition: {e}"))?,
    }
    Ok(node)
}
