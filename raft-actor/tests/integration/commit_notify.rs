//! `NodeConfig::commit_notify_delay`: under steady writes a leader's replicators send one
//! AppendEntries per write and follower, the commit index riding on the next one; when writes
//! stop, followers still learn the commit within the delay (well before any heartbeat).

use super::common;

use std::time::Duration;

use common::{Cluster, Cmd, config};
use raft_core::NodeId;

const GROUP: u64 = 1;
const WRITES: u64 = 100;

/// The delay under test: long enough for a lone client's pause (tokio's timers round up to
/// the millisecond), below the heartbeat interval (50 ms).
const DELAY: Duration = Duration::from_millis(20);

fn delayed(id: NodeId) -> raft_actor::NodeConfig {
    let mut c = config(id);
    c.commit_notify_delay = DELAY;
    c
}

/// The group's metrics on node `id`.
async fn metrics(cluster: &Cluster, id: NodeId) -> raft_actor::GroupMetrics {
    cluster.nodes[&id]
        .group_metrics(GROUP)
        .await
        .expect("metrics")
}

/// Writes `WRITES` times, one after another with a 1 ms pause between them (a lone client),
/// and returns the AppendEntries the leader sent meanwhile and the leader's id.
async fn appends_for_sequential_writes(cluster: &Cluster) -> (u64, NodeId) {
    cluster.add_group(GROUP).await;
    let leader = cluster.leader(GROUP).await;
    // Let the election's own traffic settle before counting.
    cluster
        .propose(GROUP, Cmd::Add(1))
        .await
        .expect("first write");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = metrics(cluster, leader).await.appends_sent;
    for _ in 0..WRITES {
        cluster.propose(GROUP, Cmd::Add(1)).await.expect("write");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let after = metrics(cluster, leader).await.appends_sent;
    (after - before, leader)
}

#[tokio::test(start_paused = true)]
async fn steady_writes_send_one_append_per_write_and_follower() {
    let cluster = Cluster::start(&[1, 2, 3], delayed).await;
    let (sent, leader) = appends_for_sequential_writes(&cluster).await;
    let followers = 2;
    assert!(
        sent <= WRITES * followers + 10,
        "{sent} AppendEntries for {WRITES} writes to {followers} followers"
    );
    // When writes stop, the followers learn the last commit within the delay (and a timer's
    // rounding): before the next heartbeat (50 ms) could tell them.
    let commit = metrics(&cluster, leader).await.commit;
    tokio::time::sleep(DELAY + Duration::from_millis(5)).await;
    for &id in cluster.nodes.keys() {
        let m = metrics(&cluster, id).await;
        assert_eq!(
            m.applied, commit,
            "node {id} applied {} of {commit}",
            m.applied
        );
    }
    cluster.shutdown().await;
}

/// The control: sending the commit index at once doubles the messages of a lone client.
#[tokio::test(start_paused = true)]
async fn without_the_delay_each_write_costs_two_appends_per_follower() {
    let cluster = Cluster::start(&[1, 2, 3], |id| {
        let mut c = config(id);
        c.commit_notify_delay = Duration::ZERO;
        c
    })
    .await;
    let (sent, _) = appends_for_sequential_writes(&cluster).await;
    assert!(
        sent >= WRITES * 2 * 2 - 10,
        "{sent} AppendEntries for {WRITES} writes to 2 followers"
    );
    cluster.shutdown().await;
}
