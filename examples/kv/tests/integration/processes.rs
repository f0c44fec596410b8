//! Real processes: five `kv-server`s over loopback TCP with their WALs, 64 groups x 3
//! replicas. Clients put, get and compare-and-swap on a few dozen keys while one node is
//! SIGKILLed and restarted, two replicas move, a sixth node joins and the replicas are
//! rebalanced onto it (while node 4 is SIGKILLed and restarted), and a node (a metadata
//! voter) is removed after its replicas moved. Afterwards every key's history,
//! final linearizable reads included, must be linearizable (so every acknowledged write is
//! present), checked by `raft_sim::linearizability` against a compare-and-swap register.

use super::common;

use std::time::Duration;

use super::workload::{KEYS, client_config, key_per_group, load, perform, record};
use common::{CasRegisters, Op, ServerProc, assert_all_running, loopback_peers};
use kv::{KvClient, KvMachine, KvQuery, KvResponse, MetaCommand};
use raft_actor::{GroupId, NodeId};
use raft_sim::linearizability::{CheckBudget, CheckResult, check};
use tokio::sync::watch;
use tokio::time::Instant;

const GROUPS: u32 = 64;
const REPLICAS: u32 = 3;
const NODES: usize = 5;
const CLIENTS: u64 = 6;

/// A data group on `from` but not on `to`.
async fn movable(admin: &mut KvClient, from: NodeId, to: NodeId) -> GroupId {
    let p = admin.refresh().await.expect("placement");
    p.data_groups()
        .find(|(_, s)| s.replicas.contains(&from) && !s.hosts().contains(&to))
        .map(|(g, _)| g)
        .expect("a group to move")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_to_six_to_five_processes_stay_linearizable_through_kills_and_moves() {
    // The servers' WALs and logs; KV_TEST_KEEP=1 keeps them after the test.
    let tmp = tempfile::tempdir().expect("temp dir");
    eprintln!("servers' data and logs in {}", tmp.path().display());
    let (dir, _tmp) = if std::env::var_os("KV_TEST_KEEP").is_some() {
        (tmp.keep(), None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };
    let mut peers = loopback_peers(NODES + 1);
    let (sixth, sixth_addrs) = peers.0.pop_last().expect("six nodes' addresses");
    let mut procs: Vec<ServerProc> = peers
        .0
        .keys()
        .map(|id| ServerProc::create(*id, &peers, GROUPS, REPLICAS, dir.as_path()))
        .collect();
    let servers = peers.client_addrs();
    let mut client = KvClient::new(client_config(servers.clone(), 1)).expect("client");

    // Ready once every group takes a write (the placement read, every shard hosted and led).
    let started = Instant::now();
    loop {
        match client.refresh().await {
            Ok(_) => break,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("waiting for the placement: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no placement within 60 s: {e}"),
        }
    }
    for (group, key) in key_per_group(GROUPS) {
        let mut tries = 0;
        while let Err(e) = client.put(key.as_bytes(), b"ready".to_vec()).await {
            tries += 1;
            assert!(tries < 6, "group {group} takes no write: {e}");
        }
    }
    eprintln!("64 groups ready after {:?}", started.elapsed());

    // A service client that knows only node 1, asking for a group node 1 does not host, is
    // redirected to its hosts.
    let p = client.placement().await.expect("placement");
    let (group, _) = p
        .data_groups()
        .find(|(_, s)| !s.hosts().contains(&1))
        .expect("a group without node 1");
    let key = key_per_group(GROUPS).remove(&group).expect("its key");
    let mut only_node_1 =
        raft_service::Client::<KvMachine>::new(client_config(vec![servers[0]], 3)).expect("client");
    let read = only_node_1
        .read(group, KvQuery::Get(key.into_bytes()))
        .await
        .expect("redirected read");
    assert_eq!(read, KvResponse::Value(Some(b"ready".to_vec())));
    assert!(
        only_node_1.servers().len() > 1,
        "the redirect named the hosts"
    );
    assert_all_running(&mut procs);

    let (events_tx, events_rx) = flume::bounded(100_000);
    let recorder = tokio::spawn(record(events_rx));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for who in 1..=CLIENTS {
        let fork = client.fork();
        tasks.push(tokio::spawn(load(
            fork,
            who,
            events_tx.clone(),
            stop_rx.clone(),
        )));
    }

    // Faults and admin under load: node 2 killed and restarted, then replicas moved.
    // Membership changes wait for a learner to catch up and for joint consensus: longer
    // attempts than the clients'.
    let mut admin_config = client_config(servers.clone(), 2);
    admin_config.attempt_timeout = Duration::from_secs(5);
    admin_config.request_timeout = Duration::from_secs(15);
    let mut admin = KvClient::new(admin_config).expect("admin client");
    tokio::time::sleep(Duration::from_secs(2)).await;
    procs[1].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    procs[1].start();
    let mut moved = 0;
    for (from, to) in [(1, 4), (3, 2)] {
        let group = movable(&mut admin, from, to).await;
        let report = admin
            .move_replica(group, from, to, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("moving group {group} from {from} to {to}: {e}"));
        moved += 1;
        let p = admin.refresh().await.expect("placement");
        let shard = p.shard(group).expect("shard");
        assert!(shard.replicas.contains(&to) && !shard.replicas.contains(&from));
        assert_eq!(shard.replicas.len(), REPLICAS as usize);
        eprintln!(
            "moved group {group} from {from} to {to} (v{})",
            report.version
        );
    }

    // A sixth node joins through the running servers, and the replicas spread onto it.
    let join_args = vec![
        "--id".into(),
        sixth.to_string(),
        "--raft".into(),
        sixth_addrs.data.to_string(),
        "--listen".into(),
        sixth_addrs.client.expect("client address").to_string(),
        "--join".into(),
        servers[0].to_string(),
        "--data-dir".into(),
        dir.as_path()
            .join(format!("node-{sixth}"))
            .display()
            .to_string(),
    ];
    procs.push(ServerProc::spawn(sixth, join_args, dir.as_path()));
    let joined = Instant::now();
    while !admin
        .refresh()
        .await
        .is_ok_and(|p| p.nodes.contains_key(&sixth))
    {
        assert!(
            joined.elapsed() < Duration::from_secs(30),
            "node {sixth} never joined"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A move an admin began and did not finish: rebalancing finishes it first.
    let interrupted = movable(&mut admin, 5, sixth).await;
    admin
        .change_placement(MetaCommand::BeginMove {
            group: interrupted,
            from: 5,
            to: sixth,
        })
        .await
        .expect("begin a move");
    // Node 4 is SIGKILLed while the rebalance runs, and restarted: moves to and from it
    // wait (each step retried until its deadline) and go on once it is back.
    let mut rebalancer = admin.fork();
    let rebalance =
        tokio::spawn(async move { rebalancer.rebalance(4, Duration::from_secs(45)).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    procs[3].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    procs[3].start();
    let rebalanced = rebalance.await.expect("rebalance task").expect("rebalance");
    assert!(
        rebalanced
            .moves
            .iter()
            .any(|m| (m.group, m.from, m.to) == (interrupted, 5, sixth)),
        "the interrupted move was finished: {rebalanced:?}"
    );
    moved += rebalanced.moves.len();
    let p = admin.refresh().await.expect("placement");
    let loads = p.loads();
    eprintln!(
        "rebalanced onto node {sixth}: {} moves, {} leader transfers, loads {loads:?}",
        rebalanced.moves.len(),
        rebalanced.transfers
    );
    assert!(rebalanced.moves.len() >= 30, "{rebalanced:?}");
    assert!(loads.values().all(|n| *n == 32), "{loads:?}");

    // Node 3 (a metadata voter) leaves: its replicas move first.
    let removed = admin
        .remove_node(3, 4, Duration::from_secs(30))
        .await
        .expect("remove node 3");
    moved += removed.moves.len();
    let p = admin.refresh().await.expect("placement");
    assert!(!p.nodes.contains_key(&3) && !p.meta_voters.contains(&3));
    assert!(
        p.shards
            .iter()
            .all(|s| s.replicas.len() == REPLICAS as usize && !s.replicas.contains(&3))
    );
    eprintln!("node 3 removed: {} moves", removed.moves.len());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let mut ops = 0;
    let mut acked = 0;
    for t in tasks {
        let (n, a) = t.await.expect("client task");
        ops += n;
        acked += a;
    }

    // Final linearizable reads of every key, in the history too.
    let mut reader = client.fork();
    for (i, k) in (0..KEYS).enumerate() {
        let op = Op::Get(format!("key-{k}"));
        let out = perform(&mut reader, &events_tx, 1000, i as u64, op).await;
        assert!(out.is_some(), "final read of key-{k} failed");
    }
    drop(events_tx);
    let history = recorder.await.expect("recorder").into_history();
    let result = check(&CasRegisters, &history, CheckBudget::default());
    let violations = usize::from(!result.is_linearizable());
    assert_all_running(&mut procs);
    eprintln!("{acked} of the clients' {ops} operations acknowledged");
    eprintln!(
        "kv: {GROUPS} groups x {REPLICAS} replicas on {NODES} -> {} -> {NODES} nodes, {ops} ops, {moved} replicas moved, violations: {violations}",
        NODES + 1
    );
    assert!(
        matches!(result, CheckResult::Linearizable),
        "history of {} operations: {result}",
        history.len()
    );
    assert!(acked > 100, "too few operations acknowledged: {acked}");
    for p in &mut procs {
        p.kill();
    }
}
