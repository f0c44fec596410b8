//! The membership test: three `counter-server` processes (TCP, WAL) under continuous writes
//! through the service client; two fresh processes start empty, join as learners and are
//! promoted (3 → 5 voters); then two of the original nodes are removed (5 → 3). No process is
//! restarted to learn an address, and every acknowledged write is present at the end.

use super::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ServerProc;
use counter::addrs::{Peers, free_loopback_peers};
use counter::{ClientConfig, Counter, CounterClient, GROUP, Query};
use raft_core::NodeId;
use raft_service::Client;
use tokio::sync::watch;

/// A server process that joins the cluster through `seed`.
fn spawn_joiner(id: NodeId, all: &Peers, seed: SocketAddr, dir: &std::path::Path) -> ServerProc {
    let me = all.0[&id];
    let args = vec![
        "--id".into(),
        id.to_string(),
        "--raft".into(),
        me.raft.data.to_string(),
        "--join".into(),
        seed.to_string(),
        "--data-dir".into(),
        dir.join(format!("node-{id}")).display().to_string(),
        "--listen".into(),
        me.client.expect("client address").to_string(),
    ];
    ServerProc::spawn_with_args(id, args, dir)
}

/// Polls the group's voters (through any server) until they are `want`, within `limit`.
async fn wait_for_voters(
    admin: &mut Client<Counter>,
    want: &BTreeSet<NodeId>,
    limit: Duration,
) -> BTreeSet<NodeId> {
    let deadline = Instant::now() + limit;
    let mut last = BTreeSet::new();
    while Instant::now() < deadline {
        if let Ok(m) = admin.members(GROUP).await {
            if !m.is_joint() {
                last = m.voters.clone();
                if &last == want {
                    return last;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The summary line is the test's report (shown with --nocapture).
#[allow(clippy::print_stdout)]
async fn three_to_five_to_three_voters_under_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = free_loopback_peers(5).expect("free ports");
    let first: Peers = Peers(
        all.0
            .iter()
            .filter(|(id, _)| **id <= 3)
            .map(|(k, v)| (*k, *v))
            .collect(),
    );
    let client_addr = |id: NodeId| all.0[&id].client.expect("client address");
    let mut procs = ServerProc::spawn_all(&first, dir);

    // Continuous writes through the service client, which knows only the first three servers.
    let (stop_tx, stop) = watch::channel(false);
    let writer_servers: Vec<SocketAddr> = (1..=3).map(client_addr).collect();
    let writer = tokio::spawn(async move {
        let mut config = ClientConfig::new(writer_servers);
        config.request_timeout = Duration::from_secs(20);
        let mut client = CounterClient::new(config).expect("client");
        let mut stop = stop;
        let (mut acked, mut in_doubt) = (Vec::new(), 0u64);
        while !*stop.borrow_and_update() {
            match client.incr(1).await {
                Ok(v) => acked.push(v),
                Err(e) => {
                    eprintln!("write failed: {e}");
                    in_doubt += u64::from(e.is_in_doubt());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (acked, in_doubt)
    });

    let mut admin = Client::<Counter>::new(ClientConfig::new((1..=3).map(client_addr))).unwrap();
    let three: BTreeSet<NodeId> = (1..=3).collect();
    assert_eq!(
        wait_for_voters(&mut admin, &three, Duration::from_secs(30)).await,
        three
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Two fresh processes join through node 1's client address and are promoted.
    for id in [4, 5] {
        procs.push(spawn_joiner(id, &all, client_addr(1), dir));
    }
    let five: BTreeSet<NodeId> = (1..=5).collect();
    let seen = wait_for_voters(&mut admin, &five, Duration::from_secs(60)).await;
    assert_eq!(seen, five, "nodes 4 and 5 joined as voters");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Two of the original nodes are removed.
    for id in [1, 2] {
        admin.remove_node(GROUP, id).await.expect("remove node");
    }
    let rest: BTreeSet<NodeId> = [3, 4, 5].into();
    assert_eq!(
        wait_for_voters(&mut admin, &rest, Duration::from_secs(30)).await,
        rest
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_tx.send_replace(true);
    let (acked, in_doubt) = writer.await.unwrap();

    // Every acknowledged write is present: the values they returned are distinct and none is
    // above the final value; with in-doubt writes at most applied once, the value is bounded.
    let mut reader = Client::<Counter>::new(ClientConfig::new([3, 4, 5].map(client_addr))).unwrap();
    let value = reader.read(GROUP, Query::Get).await.expect("final read");
    let distinct: BTreeSet<i64> = acked.iter().copied().collect();
    let lost = (acked.len() - distinct.len()) + distinct.iter().filter(|v| **v > value).count();
    let n = acked.len() as i64;
    assert!(n > 0, "writes were acknowledged");
    assert!(
        value >= n && value <= n + in_doubt as i64,
        "value {value}, acknowledged {n}, in doubt {in_doubt}"
    );
    assert_eq!(lost, 0);
    common::assert_all_running(&mut procs);
    println!("membership: 3 -> 5 -> 3 voters, {n} writes acknowledged, {lost} lost");
}
