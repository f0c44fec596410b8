//! Real processes: five `kv-server`s over loopback TCP with their WALs, 64 groups x 3
//! replicas. Clients put, get and compare-and-swap on a few dozen keys while one node is
//! SIGKILLed and restarted, two replicas move, a sixth node joins and the replicas are
//! rebalanced onto it (while node 4 is SIGKILLed and restarted), and a node (a metadata
//! voter) is removed after its replicas moved. Afterwards every key's history,
//! final linearizable reads included, must be linearizable (so every acknowledged write is
//! present), checked by `raft_sim::linearizability` against a compare-and-swap register.

use super::common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use common::{CasRegisters, Op, Out, ServerProc, assert_all_running, loopback_peers};
use kv::{ClientConfig, KvClient, KvError, KvMachine, KvQuery, KvResponse, MetaCommand, ReadKind};
use raft_actor::{GroupId, NodeId};
use raft_net::SplitMix64;
use raft_sim::linearizability::{CheckBudget, CheckResult, HistoryRecorder, check};
use tokio::sync::watch;
use tokio::time::Instant;

const GROUPS: u32 = 64;
const REPLICAS: u32 = 3;
const NODES: usize = 5;
const CLIENTS: u64 = 6;
const KEYS: u64 = 32;

/// What clients tell the recorder; operations are keyed by `(client, op number)`.
enum Event {
    Invoke(u64, u64, Op),
    Return(u64, u64, Out),
    /// The operation certainly had no effect.
    Failed(u64, u64),
    /// It may or may not have taken effect.
    Unknown(u64, u64),
}

/// The recorder: owns the history and stamps events in arrival order. A client sends
/// `Invoke` before its request leaves and `Return` after the answer came, so each recorded
/// interval contains the real one.
async fn record(events: flume::Receiver<Event>) -> HistoryRecorder<Op, Out> {
    let mut rec = HistoryRecorder::new();
    let mut ids = HashMap::new();
    while let Ok(ev) = events.recv_async().await {
        match ev {
            Event::Invoke(c, n, op) => {
                ids.insert((c, n), rec.invoke(c, op));
            }
            Event::Return(c, n, out) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.complete(id, out);
                }
            }
            Event::Failed(c, n) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.fail(id);
                }
            }
            Event::Unknown(c, n) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.timeout(id);
                }
            }
        }
    }
    rec
}

fn client_config(servers: Vec<SocketAddr>, seed: u64) -> ClientConfig {
    let mut c = ClientConfig::new(servers);
    c.attempt_timeout = Duration::from_millis(700);
    c.request_timeout = Duration::from_secs(8);
    c.backoff_max = Duration::from_millis(200);
    c.seed = Some(seed);
    c
}

fn text(v: Option<Vec<u8>>) -> Option<String> {
    v.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Performs `op`, reporting it to the recorder.
async fn perform(
    client: &mut KvClient,
    events: &flume::Sender<Event>,
    who: u64,
    n: u64,
    op: Op,
) -> Option<Out> {
    let _ = events.send(Event::Invoke(who, n, op.clone()));
    let result: Result<Out, KvError> = match &op {
        Op::Put(k, v) => client
            .put(k.as_bytes(), v.as_bytes())
            .await
            .map(|()| Out::Ok),
        Op::Get(k) => client
            .get(k.as_bytes(), ReadKind::Linearizable)
            .await
            .map(|v| Out::Value(text(v))),
        Op::Cas(k, e, new) => client
            .cas(
                k.as_bytes(),
                e.clone().map(String::into_bytes),
                new.clone().map(String::into_bytes),
            )
            .await
            .map(|o| Out::Cas {
                swapped: o.swapped,
                current: text(o.current),
            }),
    };
    match result {
        Ok(out) => {
            let _ = events.send(Event::Return(who, n, out.clone()));
            Some(out)
        }
        Err(e) if e.is_in_doubt() => {
            let _ = events.send(Event::Unknown(who, n));
            None
        }
        Err(_) => {
            let _ = events.send(Event::Failed(who, n));
            None
        }
    }
}

/// One client's loop: random operations on random keys until `stop`.
async fn load(
    mut client: KvClient,
    who: u64,
    events: flume::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) -> (u64, u64) {
    let mut rng = SplitMix64::new(0x6B76 + who);
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let (mut n, mut acked) = (0u64, 0u64);
    while !*stop.borrow_and_update() {
        n += 1;
        let key = format!("key-{}", rng.below(KEYS));
        let value = format!("c{who}-{n}");
        let op = match rng.below(100) {
            0..40 => Op::Put(key.clone(), value),
            40..75 => Op::Get(key.clone()),
            _ => Op::Cas(key.clone(), seen.get(&key).cloned().flatten(), Some(value)),
        };
        match perform(&mut client, &events, who, n, op).await {
            Some(out) => {
                acked += 1;
                match out {
                    Out::Value(v) | Out::Cas { current: v, .. } => {
                        seen.insert(key, v);
                    }
                    Out::Ok => {}
                }
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    (n, acked)
}

/// A key of every group, found by hashing candidates.
fn key_per_group(groups: u32) -> BTreeMap<GroupId, String> {
    let mut keys = BTreeMap::new();
    for i in 0.. {
        if keys.len() == groups as usize {
            break;
        }
        let k = format!("ready-{i}");
        keys.entry(kv::group_of(k.as_bytes(), groups)).or_insert(k);
    }
    keys
}

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
