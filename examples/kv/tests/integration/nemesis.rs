//! The KV under the nemesis (raft-nemesis): five `kv-server` processes with their WALs, 64
//! groups x 3 replicas, each node in a network namespace of its own (or behind TCP proxies
//! where namespaces are unavailable). Six clients put, get and compare-and-swap on a few dozen
//! keys while the nemesis partitions the network (aimed at the metadata group's leader, which
//! also leads a share of the data groups), pauses nodes with SIGSTOP for 100 ms to 5 s, kills
//! and restarts them and storms leader transfers of the metadata group. Replica moves are
//! the process test's (`processes.rs`); here membership stays fixed.
//!
//! Afterwards every key's history, with a final linearizable read of every key, must be
//! linearizable (so every acknowledged write is present), and no server may have exited on
//! its own. It prints `nemesis[kv]: S s, N ops, P partitions, Q pauses, K kills, M membership
//! changes, violations: V`. `RAFT_NEMESIS_SECS` sets the seconds of faults (default 30); a
//! failing run keeps every process's log and data and the history, and prints where.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::common::{CasRegisters, Op, SERVER_BIN};
use super::workload::{KEYS, client_config, key_per_group, load, perform, record};
use kv::{KvClient, KvMachine, META_GROUP};
use raft_actor::NodeId;
use raft_nemesis::{Cluster, Fault, Nemesis, Net, Proc, RunDir, Settings, summary};
use raft_service::Client;
use raft_sim::linearizability::{CheckBudget, check};
use tokio::sync::watch;
use tokio::time::Instant;

const GROUPS: u32 = 64;
const REPLICAS: u32 = 3;
const NODES: u64 = 5;
const CLIENTS: u64 = 6;

/// The KV as the nemesis sees it: the metadata group's leader, and transfers of it.
struct KvCluster {
    service: Client<KvMachine>,
}

impl Cluster for KvCluster {
    async fn leader(&mut self, net: &Net) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for addr in net.client_addrs().into_values() {
            if let Ok(s) = self.service.status(addr, META_GROUP).await {
                if s.is_leader && best.is_none_or(|(t, _)| s.term > t) {
                    best = Some((s.term, s.node));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    async fn transfer_leader(&mut self, to: NodeId) -> Result<(), String> {
        self.service
            .transfer_leader(META_GROUP, to)
            .await
            .map_err(|e| e.to_string())
    }

    async fn replace(
        &mut self,
        _net: &mut Net,
        _procs: &mut BTreeMap<NodeId, Proc>,
        _old: NodeId,
        _new: NodeId,
    ) -> Result<(), String> {
        Err("membership faults are not part of the KV's nemesis run".into())
    }
}

/// The command line of node `id`.
fn args(id: NodeId, net: &Net, dir: &std::path::Path) -> Vec<String> {
    let me = net.addrs(id).expect("known node");
    vec![
        "--id".into(),
        id.to_string(),
        "--peers".into(),
        me.peers_arg(),
        "--groups".into(),
        GROUPS.to_string(),
        "--replicas".into(),
        REPLICAS.to_string(),
        "--data-dir".into(),
        dir.join(format!("node-{id}")).display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_under_the_nemesis_stays_linearizable() {
    let duration = raft_nemesis::duration_from_env(30);
    let mut run = RunDir::new("kv").expect("run directory");
    let ids: Vec<NodeId> = (1..=NODES).collect();
    let net = Net::create(&ids).expect("network");
    eprintln!("nemesis: {} ({})", net.mode(), run.path().display());
    let mut procs = BTreeMap::new();
    for id in &ids {
        let log = run.path().join(format!("node-{id}.log"));
        let mut p = Proc::new(*id, SERVER_BIN, args(*id, &net, run.path()), log);
        p.start(&net).expect("server starts");
        procs.insert(*id, p);
    }
    let servers: Vec<SocketAddr> = net.client_addrs().into_values().collect();
    let mut client = KvClient::new(client_config(servers.clone(), 11)).expect("client");

    // Ready once every group takes a write.
    let started = Instant::now();
    while let Err(e) = client.refresh().await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no placement within 60 s: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (group, key) in key_per_group(GROUPS) {
        let mut tries = 0;
        while let Err(e) = client.put(key.as_bytes(), b"ready".to_vec()).await {
            tries += 1;
            assert!(tries < 6, "group {group} takes no write: {e}");
        }
    }

    let (events_tx, events_rx) = flume::bounded(1_000_000);
    let recorder = tokio::spawn(record(events_rx));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for who in 1..=CLIENTS {
        tasks.push(tokio::spawn(load(
            client.fork(),
            who,
            events_tx.clone(),
            stop_rx.clone(),
        )));
    }

    let mut status_config = client_config(servers.clone(), 12);
    status_config.attempt_timeout = Duration::from_millis(300);
    status_config.request_timeout = Duration::from_secs(3);
    let mut cluster = KvCluster {
        service: Client::new(status_config).expect("service client"),
    };
    let mut settings = Settings::new(duration, 0x4B56_0001);
    settings.faults = Fault::ALL
        .into_iter()
        .filter(|f| *f != Fault::Membership)
        .collect();
    let faults_began = Instant::now();
    let mut nemesis = Nemesis::new(net, procs, settings);
    let outcome = nemesis.run(&mut cluster).await;
    for line in nemesis.log() {
        eprintln!("  {line}");
    }
    let tally = outcome.expect("the nemesis ran its schedule");
    let _ = stop_tx.send(true);
    let (mut ops, mut acked) = (0, 0);
    for t in tasks {
        let (n, a) = t.await.expect("client task");
        ops += n;
        acked += a;
    }

    // Final linearizable reads of every key (the network is whole again), in the history too.
    let mut reader = client.fork();
    let mut unread = Vec::new();
    for (i, k) in (0..KEYS).enumerate() {
        let op = Op::Get(format!("key-{k}"));
        if perform(&mut reader, &events_tx, 1000, i as u64, op)
            .await
            .is_none()
        {
            unread.push(k);
        }
    }
    drop(events_tx);
    let history = recorder.await.expect("recorder").into_history();
    let _ = std::fs::write(
        run.path().join("history.txt"),
        history
            .iter()
            .map(|op| format!("{op:?}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let secs = faults_began.elapsed().as_secs_f64();
    let mut violations = Vec::new();
    let verdict = check(&CasRegisters, &history, CheckBudget::default());
    if !verdict.is_linearizable() {
        violations.push(format!("linearizability: {verdict}"));
    }
    for (id, status) in nemesis.crashed() {
        violations.push(format!("n{id} exited on its own: {status}"));
    }
    eprintln!(
        "{acked} of the clients' {ops} operations acknowledged; final reads failed for {unread:?}"
    );
    eprintln!(
        "{}",
        summary(
            "kv",
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
    assert!(unread.is_empty(), "final reads failed for keys {unread:?}");
    assert!(acked > 100, "too few operations acknowledged: {acked}");
    assert!(
        tally.partitions > 0 && tally.pauses > 0 && tally.kills > 0,
        "{tally:?}"
    );
}
