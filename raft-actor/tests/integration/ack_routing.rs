//! Followers' answers to AppendEntries go from the router straight to the leader's replicator
//! of that follower, not through the partition actor (one hop fewer per answer). The partition
//! forwards only what arrives before the router knows the replicators (just after an
//! election), and the router learns a new leader's replicators after a leader change.

use super::common;

use std::time::Duration;

use common::{Cluster, Cmd, config};
use raft_actor::GroupMetrics;
use raft_core::NodeId;

const GROUP: u64 = 1;
const WRITES: u64 = 100;

async fn metrics(cluster: &Cluster, id: NodeId) -> GroupMetrics {
    cluster.nodes[&id]
        .group_metrics(GROUP)
        .await
        .expect("metrics")
}

/// Writes `WRITES` times one after another at the current leader; returns the leader and how
/// many AppendEntries it sent and how many answers its partition forwarded meanwhile.
async fn sequential_writes(cluster: &Cluster) -> (NodeId, u64, u64) {
    // Settle the election's (or transfer's) own traffic before counting.
    cluster.propose(GROUP, Cmd::Add(1)).await.expect("write");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let leader = cluster.leader(GROUP).await;
    let before = metrics(cluster, leader).await;
    for _ in 0..WRITES {
        cluster.propose(GROUP, Cmd::Add(1)).await.expect("write");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let after = metrics(cluster, leader).await;
    assert_eq!(after.role, raft_core::Role::Leader, "leadership moved");
    (
        leader,
        after.appends_sent - before.appends_sent,
        after.acks_forwarded - before.acks_forwarded,
    )
}

/// Every write was answered by both followers (at least 2 answers per write), and none of
/// the answers went through the partition.
fn assert_routed(sent: u64, forwarded: u64) {
    assert!(
        sent >= 2 * WRITES,
        "{sent} AppendEntries for {WRITES} writes"
    );
    assert_eq!(
        forwarded, 0,
        "{forwarded} of ~{sent} answers went through the partition"
    );
}

#[tokio::test(start_paused = true)]
async fn answers_reach_the_replicators_without_the_partition() {
    let cluster = Cluster::start(&[1, 2, 3], config).await;
    cluster.add_group(GROUP).await;
    let (first, sent, forwarded) = sequential_writes(&cluster).await;
    assert_routed(sent, forwarded);

    // A new leader's replicators are routed to as well.
    let to = *cluster.nodes.keys().find(|&&id| id != first).expect("peer");
    cluster.nodes[&first]
        .transfer_leader(GROUP, to)
        .await
        .expect("transfer");
    let mut led = false;
    for _ in 0..100 {
        if metrics(&cluster, to).await.role == raft_core::Role::Leader {
            led = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(led, "node {to} did not take over");
    let (second, sent, forwarded) = sequential_writes(&cluster).await;
    assert_eq!(second, to);
    assert_routed(sent, forwarded);
    // The whole history applied exactly once on every node.
    let applied = metrics(&cluster, second).await.applied;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for &id in cluster.nodes.keys() {
        assert_eq!(metrics(&cluster, id).await.applied, applied, "node {id}");
    }
    assert_eq!(
        cluster.propose(GROUP, Cmd::Add(0)).await.expect("read"),
        2 * (WRITES as i64 + 1)
    );
    cluster.shutdown().await;
}
