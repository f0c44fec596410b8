//! The counter under the nemesis (raft-nemesis): five `counter-server` processes with their
//! WALs, each in a network namespace of its own (or behind TCP proxies where namespaces are
//! unavailable), while four clients increment and read with retries and the nemesis
//! partitions the network (the leader isolated, the leader in a minority, a bridge, one link,
//! one node disconnected), pauses leaders and followers with SIGSTOP for 100 ms to 5 s, kills
//! and restarts nodes, storms leader transfers and replaces a follower with a fresh node.
//! Afterwards:
//!
//! - exactly-once: the final count is at least the number of acknowledged increments and at
//!   most that plus the increments still in doubt (their clients gave up);
//! - linearizability: the recorded client history (invoke and return of every increment and
//!   read) passes `raft_sim::linearizability::check` against a counter model, and the same
//!   history with the final read one lower does not (a negative control);
//! - no server process exited on its own.
//!
//! It prints `nemesis[counter]: S s, N ops, P partitions, Q pauses, K kills, M membership
//! changes, violations: V`. Runs for `RAFT_NEMESIS_SECS` seconds of faults (default 45); a
//! failing run keeps every process's log and data and the history, and prints where.

use super::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use counter::{ClientConfig, Counter, CounterClient, GROUP};
use raft_core::NodeId;
use raft_nemesis::{Cluster, Nemesis, Net, Proc, RunDir, Settings, summary};
use raft_net::SplitMix64;
use raft_service::Client;
use raft_sim::linearizability::{
    CheckBudget, CheckResult, Counter as CounterModel, CounterInput, HistoryRecorder, check,
};
use tokio::sync::watch;

const NODES: u64 = 5;
const CLIENTS: u64 = 4;

/// What clients tell the history recorder. Keys are `(client, op number)`.
#[derive(Debug)]
enum Event {
    Invoke(u64, u64, CounterInput),
    Return(u64, u64, i64),
    /// The client gave up: the operation may or may not have taken effect.
    Unknown(u64, u64),
}

/// The recorder actor: owns the history, stamps events in arrival order. A client sends
/// `Invoke` before its request leaves and `Return` after the answer arrived, so an operation's
/// recorded interval contains its real one, and "A returned before B was invoked" in the
/// record implies it in reality. Every event is also kept in order, for a failing run's files.
async fn record(
    events: flume::Receiver<Event>,
) -> (HistoryRecorder<CounterInput, i64>, Vec<String>) {
    let mut rec = HistoryRecorder::new();
    let mut ids = HashMap::new();
    let mut lines = Vec::new();
    while let Ok(ev) = events.recv_async().await {
        lines.push(format!("{ev:?}"));
        match ev {
            Event::Invoke(c, n, input) => {
                ids.insert((c, n), rec.invoke(c, input));
            }
            Event::Return(c, n, v) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.complete(id, v);
                }
            }
            Event::Unknown(c, n) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.timeout(id);
                }
            }
        }
    }
    (rec, lines)
}

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    acked: u64,
    in_doubt: u64,
    reads: u64,
    failed_reads: u64,
}

fn workload_client(servers: Vec<SocketAddr>, client: u64) -> CounterClient {
    let mut c = ClientConfig::new(servers);
    // A killed leader costs an attempt at most this long.
    c.attempt_timeout = Duration::from_millis(1000);
    c.request_timeout = Duration::from_secs(20);
    c.seed = Some(0x4E4D_5000 + client);
    CounterClient::new(c).expect("client")
}

async fn run_client(
    mut client: CounterClient,
    index: u64,
    events: flume::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut rng = SplitMix64::new(index + 1);
    let mut tally = Tally::default();
    let mut n = 0u64;
    while !*stop.borrow_and_update() {
        n += 1;
        let read = rng.chance(0.25);
        let input = if read {
            CounterInput::Get
        } else {
            CounterInput::Add(1)
        };
        let _ = events.send_async(Event::Invoke(index, n, input)).await;
        let result = if read {
            client.get().await
        } else {
            client.incr(1).await
        };
        match result {
            Ok(v) => {
                let _ = events.send_async(Event::Return(index, n, v)).await;
                if read {
                    tally.reads += 1;
                } else {
                    tally.acked += 1;
                }
            }
            Err(e) => {
                eprintln!("client {index}: op {n} gave up: {e}");
                let _ = events.send_async(Event::Unknown(index, n)).await;
                if read {
                    tally.failed_reads += 1;
                } else {
                    tally.in_doubt += 1;
                }
            }
        }
        // Keeps the history to a few thousand operations, which the checker handles quickly.
        tokio::time::sleep(Duration::from_millis(rng.between(5, 15))).await;
    }
    tally
}

/// The command line of a node of the initial cluster.
fn initial_args(id: NodeId, net: &Net, dir: &std::path::Path) -> Vec<String> {
    let me = net.addrs(id).expect("known node");
    vec![
        "--id".into(),
        id.to_string(),
        "--peers".into(),
        me.peers_arg(),
        "--data-dir".into(),
        dir.join(format!("node-{id}")).display().to_string(),
        "--listen".into(),
        me.client.to_string(),
    ]
}

/// The counter as the nemesis sees it: leader lookups and admin calls through the service.
struct CounterCluster {
    observer: CounterClient,
    admin: Client<Counter>,
    dir: std::path::PathBuf,
}

impl Cluster for CounterCluster {
    async fn leader(&mut self, net: &Net) -> Option<NodeId> {
        let servers: Vec<(NodeId, SocketAddr)> = net.client_addrs().into_iter().collect();
        common::leader_of(&mut self.observer, &servers).await
    }

    async fn transfer_leader(&mut self, to: NodeId) -> Result<(), String> {
        self.admin
            .transfer_leader(GROUP, to)
            .await
            .map_err(|e| e.to_string())
    }

    async fn replace(
        &mut self,
        net: &mut Net,
        procs: &mut BTreeMap<NodeId, Proc>,
        old: NodeId,
        new: NodeId,
    ) -> Result<(), String> {
        self.admin
            .remove_node(GROUP, old)
            .await
            .map_err(|e| format!("removing n{old}: {e}"))?;
        if let Some(mut p) = procs.remove(&old) {
            p.kill();
        }
        let seeds: Vec<String> = procs
            .keys()
            .filter_map(|id| net.addrs(*id).ok().map(|a| a.client.to_string()))
            .collect();
        let me = net.addrs(new).map_err(|e| e.to_string())?.clone();
        let args = vec![
            "--id".into(),
            new.to_string(),
            "--raft".into(),
            me.raft.to_string(),
            "--join".into(),
            seeds.join(","),
            "--data-dir".into(),
            self.dir.join(format!("node-{new}")).display().to_string(),
            "--listen".into(),
            me.client.to_string(),
        ];
        let log = self.dir.join(format!("node-{new}.log"));
        let mut p = Proc::new(new, common::SERVER_BIN, args, log);
        p.start(net).map_err(|e| e.to_string())?;
        procs.insert(new, p);
        let want: BTreeSet<NodeId> = procs.keys().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(m) = self.admin.members(GROUP).await {
                if !m.is_joint() && m.voters == want {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("n{new} not a voter within 30 s"))
    }
}

fn admin(servers: Vec<SocketAddr>) -> Client<Counter> {
    let mut c = raft_service::ClientConfig::new(servers);
    c.attempt_timeout = Duration::from_millis(500);
    c.request_timeout = Duration::from_secs(10);
    Client::new(c).expect("admin client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_under_the_nemesis_is_exactly_once_and_linearizable() {
    let duration = raft_nemesis::duration_from_env(45);
    let mut run = RunDir::new("counter").expect("run directory");
    let ids: Vec<NodeId> = (1..=NODES).collect();
    let net = Net::create(&ids).expect("network");
    eprintln!("nemesis: {} ({})", net.mode(), run.path().display());
    let mut procs = BTreeMap::new();
    for id in &ids {
        let args = initial_args(*id, &net, run.path());
        let log = run.path().join(format!("node-{id}.log"));
        let mut p = Proc::new(*id, common::SERVER_BIN, args, log);
        p.start(&net).expect("server starts");
        procs.insert(*id, p);
    }
    let addrs: Vec<SocketAddr> = net.client_addrs().into_values().collect();

    let (events_tx, events_rx) = flume::bounded(1_000_000);
    let recorder = tokio::spawn(record(events_rx));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(tokio::spawn(run_client(
            workload_client(addrs.clone(), i),
            i,
            events_tx.clone(),
            stop_rx.clone(),
        )));
    }

    let mut observer_config = ClientConfig::new(addrs.clone());
    observer_config.attempt_timeout = Duration::from_millis(300);
    observer_config.request_timeout = Duration::from_secs(1);
    let mut cluster = CounterCluster {
        observer: CounterClient::new(observer_config).expect("observer"),
        admin: admin(addrs.clone()),
        dir: run.path().to_path_buf(),
    };
    let started = Instant::now();
    let mut nemesis = Nemesis::new(net, procs, Settings::new(duration, 0x4E4D_0001));
    let outcome = nemesis.run(&mut cluster).await;
    for line in nemesis.log() {
        eprintln!("  {line}");
    }
    let tally = outcome.expect("the nemesis ran its schedule");
    stop_tx.send_replace(true);
    let mut ops = Tally::default();
    for c in clients {
        let t = c.await.unwrap();
        ops.acked += t.acked;
        ops.in_doubt += t.in_doubt;
        ops.reads += t.reads;
        ops.failed_reads += t.failed_reads;
    }

    // The final read is part of the history too (the network is whole again).
    let mut last = workload_client(nemesis.net.client_addrs().into_values().collect(), CLIENTS);
    let _ = events_tx
        .send_async(Event::Invoke(CLIENTS, 1, CounterInput::Get))
        .await;
    let final_value = last.get().await.expect("final read");
    let _ = events_tx
        .send_async(Event::Return(CLIENTS, 1, final_value))
        .await;
    drop(events_tx);
    let (recorder, lines) = recorder.await.unwrap();
    let history = recorder.into_history();
    let _ = std::fs::write(run.path().join("history.txt"), lines.join("\n"));
    let crashed = nemesis.crashed();
    let secs = started.elapsed().as_secs_f64();

    let mut violations = Vec::new();
    let final_count = final_value as u64;
    if final_count < ops.acked || final_count > ops.acked + ops.in_doubt {
        violations.push(format!(
            "exactly-once: final {final_count}, acknowledged {}, in doubt {}",
            ops.acked, ops.in_doubt
        ));
    }
    let checked = Instant::now();
    let verdict = check(&CounterModel::default(), &history, CheckBudget::default());
    eprintln!(
        "linearizability: {} operations, verdict {verdict} in {:.2} s",
        history.len(),
        checked.elapsed().as_secs_f64()
    );
    if !verdict.is_linearizable() {
        violations.push(format!("linearizability: {verdict}"));
    }
    for (id, status) in &crashed {
        violations.push(format!("n{id} exited on its own: {status}"));
    }
    eprintln!(
        "acknowledged increments {}, in doubt {}, reads {} (failed {}), final count {final_value}",
        ops.acked, ops.in_doubt, ops.reads, ops.failed_reads
    );
    eprintln!(
        "{}",
        summary(
            "counter",
            secs,
            history.len() as u64,
            &tally,
            violations.len() as u64
        )
    );
    if !violations.is_empty() {
        run.keep();
    }
    assert!(violations.is_empty(), "violations: {violations:#?}");
    assert!(ops.acked > 0, "no increment acknowledged");
    assert!(
        tally.partitions > 0 && tally.pauses > 0 && tally.kills > 0,
        "{tally:?}"
    );

    // Negative control: the checker must reject the same history with the final read one
    // lower (every acknowledged increment returned before that read began).
    let mut broken = history;
    let read = broken
        .iter_mut()
        .rev()
        .find(|op| op.client == CLIENTS)
        .expect("the final read");
    if let Some((_, v)) = &mut read.ret {
        *v -= 1;
    }
    let verdict = check(&CounterModel::default(), &broken, CheckBudget::default());
    assert!(
        matches!(verdict, CheckResult::NotLinearizable { .. }),
        "the checker accepted a read that missed an increment: {verdict}"
    );
    drop(nemesis);
}
