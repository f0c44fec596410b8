//! Issue 30, item 3: the bounds a review found missing. Each test here failed on the code
//! before its fix (see the commit that added it).

use super::common;

use std::time::Duration;

use common::{Cmd, Counter};
use raft_actor::{Error, Node, NodeConfig, WireMsg};
use raft_core::Membership;
use raft_net::{MemConfig, MemNetwork};
use raft_storage::{Wal, WalConfig};

/// One node on the WAL in `dir`, on its own threads (storage thread, heartbeat executor), as
/// in production.
async fn wal_node(dir: &std::path::Path, shutdown_timeout: Duration) -> Node<Counter> {
    let (t, inbound) = MemNetwork::<WireMsg>::direct(&[1], &MemConfig::default())
        .expect("network")
        .pop()
        .expect("one transport");
    let mut cfg = NodeConfig::new(1);
    cfg.shutdown_timeout = shutdown_timeout;
    Node::<Counter>::builder(cfg)
        .transport(t, inbound)
        .storage(Wal::open(WalConfig::new(dir)).expect("open wal"))
        .start()
        .await
        .expect("start")
}

/// Proposes until the single node has elected itself and applied one command.
async fn first_write(node: &Node<Counter>) {
    for _ in 0..100 {
        if node.propose(1, Cmd::Add(1)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the single node never committed");
}

/// A shutdown with nothing in its way ends every actor on its own: nothing aborted or given
/// up, both threads joined, and the WAL's directory free to open again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_stops_everything_and_releases_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let node = wal_node(dir.path(), Duration::from_secs(2)).await;
    node.add_partition(1, Membership::new([1]), Counter::default())
        .await
        .unwrap();
    first_write(&node).await;
    let report = node.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    Wal::open(WalConfig::new(dir.path())).expect("the WAL is released");
    assert!(node.shutdown().await.already_stopped);
}

/// Item 3 (a): a hung disk does not hold up shutdown. The disk stalls under a write, and an
/// `add_partition` (which recovers the group from storage) queues behind the stalled sync:
/// the registry used to await that recovery while handling the add, so it never saw the
/// shutdown, and the storage thread slept on with the WAL open. Now the shutdown ends within
/// its timeout, answers the add `Stopped`, stops the storage thread in its stall (joined),
/// reports what it abandoned, and the same directory opens again at once.
#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_hung_disk_ends_within_its_timeout_and_releases_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(1);
    let node = wal_node(dir.path(), timeout).await;
    node.add_partition(1, Membership::new([1]), Counter::default())
        .await
        .unwrap();
    first_write(&node).await;

    // The disk hangs for far longer than the test.
    node.stall_storage(Duration::from_secs(3600)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n = node.clone();
    let write = tokio::spawn(async move { n.propose(1, Cmd::Add(1)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = node.clone();
    let add = tokio::spawn(async move {
        n.add_partition(2, Membership::new([1]), Counter::default())
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!add.is_finished(), "the add should wait on the hung disk");

    let start = std::time::Instant::now();
    let report = node.shutdown().await;
    let took = start.elapsed();
    // The bound is the timeout; the margin is for joining threads on a loaded machine.
    assert!(
        took < timeout + Duration::from_millis(900),
        "shutdown took {took:?}"
    );
    assert!(
        report.storage_stopped,
        "storage thread not joined: {report:?}"
    );
    assert!(
        report.heartbeat_stopped,
        "heartbeat thread not joined: {report:?}"
    );
    assert_eq!(report.adds_abandoned, vec![2], "{report:?}");
    assert_eq!(report.unsynced_groups, vec![1], "{report:?}");
    assert!(!report.is_clean());

    // Callers are answered, not left hanging on the disk.
    let r = tokio::time::timeout(Duration::from_secs(5), add)
        .await
        .expect("the add is answered")
        .unwrap();
    assert!(matches!(r, Err(Error::Stopped)), "{r:?}");
    let r = tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .expect("the write is answered")
        .unwrap();
    assert!(
        r.is_err(),
        "a write that never synced was acknowledged: {r:?}"
    );

    // The WAL is released: a new node opens the same directory and recovers the first write.
    let node = wal_node(dir.path(), timeout).await;
    node.add_partition(1, Membership::new([1]), Counter::default())
        .await
        .unwrap();
    let mut value = None;
    for _ in 0..100 {
        if let Ok(v) = node.read(1, common::Query::Get).await {
            value = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let value = value.expect("the restarted node serves reads");
    assert!(value >= 1, "the acknowledged write was lost: {value}");
    assert!(node.shutdown().await.is_clean());
}

/// Item 3 (e): `Node::metrics` answers within its one-second timeout however many groups are
/// stalled. It used to ask each group in turn and wait up to a second for each: with 20
/// frozen partitions, 20 seconds.
#[cfg(feature = "fault-injection")]
#[tokio::test(start_paused = true)]
async fn metrics_answer_within_a_second_with_every_group_stalled() {
    let c = common::Cluster::start(&[1, 2, 3], common::config).await;
    const GROUPS: u64 = 20;
    for g in 1..=GROUPS {
        c.add_group(g).await;
    }
    let node = &c.nodes[&1];
    for g in 1..=GROUPS {
        node.freeze_partition(g, Duration::from_secs(120)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = tokio::time::Instant::now();
    let m = node.metrics().await;
    let took = start.elapsed();
    assert_eq!(m.groups.len(), GROUPS as usize);
    assert!(m.groups.iter().all(|g| !g.responsive), "{:?}", m.groups);
    // Paused time: the wait is exactly the timeout, not one per group.
    assert!(took <= Duration::from_millis(1010), "metrics took {took:?}");
    // A responsive node answers at once.
    let start = tokio::time::Instant::now();
    let m = c.nodes[&2].metrics().await;
    assert!(m.groups.iter().all(|g| g.responsive));
    assert!(start.elapsed() < Duration::from_millis(100));
    c.shutdown().await;
}

/// Item 3 (b): a leader that cannot commit holds at most `max_uncommitted_bytes` of proposals;
/// past it, callers get `Overloaded` at once, and once commits catch up proposals are taken
/// again. Before the cap, every one of these proposals was appended (and waited, in doubt).
#[tokio::test(start_paused = true)]
async fn uncommitted_proposals_are_capped_in_bytes() {
    const CAP: u64 = 4096;
    let c = common::Cluster::start_with_faults(
        &[1, 2, 3],
        |id| {
            let mut cfg = common::config(id);
            cfg.max_uncommitted_bytes = CAP;
            cfg
        },
        5,
    )
    .await;
    c.add_group(1).await;
    let leader = c.leader(1).await;
    assert_eq!(c.propose(1, Cmd::Add(1)).await.unwrap(), 1);
    // Cut the leader's data lane to both followers: heartbeats go on (it keeps leading), but
    // nothing more commits.
    let net = c.net.as_ref().unwrap();
    for &peer in c.nodes.keys().filter(|&&id| id != leader) {
        net.partition_lane(leader, peer, raft_net::Lane::Data)
            .await
            .unwrap();
        net.partition_lane(peer, leader, raft_net::Lane::Data)
            .await
            .unwrap();
    }
    let node = c.nodes[&leader].clone();
    // 20 proposals of 1000 bytes (commands that do not decode: they are only payload).
    let mut calls = Vec::new();
    for _ in 0..20 {
        let n = node.clone();
        calls.push(tokio::spawn(async move {
            n.propose_encoded(1, None, &[0xFF; 1000]).await
        }));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let overloaded = calls.iter().filter(|c| c.is_finished()).count();
    let mut refused = 0;
    let mut waiting = Vec::new();
    for call in calls {
        if call.is_finished() {
            let r = call.await.unwrap();
            assert!(matches!(r, Err(Error::Overloaded { group: 1 })), "{r:?}");
            refused += 1;
        } else {
            waiting.push(call);
        }
    }
    assert_eq!(refused, overloaded);
    // Four fit under 4096 bytes (each payload is the 1000 bytes and a few of framing).
    assert_eq!(waiting.len(), 4, "{refused} refused");
    assert_eq!(
        c.nodes[&leader].group_metrics(1).await.unwrap().role,
        raft_core::Role::Leader
    );
    // Healed: the four commit (answered, as the commands do not decode, with a codec error),
    // and the leader takes proposals again.
    net.heal().await.unwrap();
    for call in waiting {
        let r = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("answered after healing")
            .unwrap();
        assert!(matches!(r, Err(Error::Codec(_))), "{r:?}");
    }
    assert_eq!(c.propose(1, Cmd::Add(1)).await.unwrap(), 2);
    c.shutdown().await;
}

/// Item 3 (d): the in-memory log tail is bounded in bytes by `NodeConfig::tail_bytes`. A
/// follower is cut off while the others commit, so the leader's tail fills to its bound.
#[tokio::test(start_paused = true)]
async fn the_log_tail_is_bounded_in_bytes() {
    const TAIL: u64 = 16 << 10;
    let c = common::Cluster::start_with_faults(
        &[1, 2, 3],
        |id| {
            let mut cfg = common::config(id);
            cfg.tail_bytes = TAIL;
            cfg
        },
        7,
    )
    .await;
    c.add_group(1).await;
    let leader = c.leader(1).await;
    let lagger = *c.nodes.keys().find(|&&id| id != leader).unwrap();
    let net = c.net.as_ref().unwrap();
    net.isolate(lagger).await.unwrap();
    let node = c.nodes[&leader].clone();
    // 100 entries of about 1 KiB: six times what the tail may hold.
    let mut max_seen = 0;
    for _ in 0..100 {
        let r = node.propose_encoded(1, None, &[0xFF; 1000]).await;
        assert!(matches!(r, Err(Error::Codec(_))), "{r:?}");
        let m = node.group_metrics(1).await.unwrap();
        max_seen = max_seen.max(m.tail_bytes);
    }
    // Filled to the bound, not past it (the newest batch is kept whole: an entry of slack).
    assert!(max_seen >= TAIL / 2, "the tail held only {max_seen} bytes");
    assert!(max_seen <= TAIL + 2048, "tail held {max_seen} bytes");
    c.shutdown().await;
}
