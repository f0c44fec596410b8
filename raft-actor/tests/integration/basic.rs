//! Basic operation: elections, replication, apply order, many groups (issue 4, "Basic").

use super::common;

use std::time::Duration;

use common::{Cluster, Cmd, Query, config};
use raft_core::Role;
use raft_net::Lane;

async fn elect_commit_apply(n: u64) {
    let ids: Vec<u64> = (1..=n).collect();
    let c = Cluster::start(&ids, config).await;
    c.add_group(7).await;
    let leader = c.leader(7).await;
    let mut expected = 0;
    for i in 1..=20 {
        expected += i;
        assert_eq!(c.propose(7, Cmd::Add(i)).await.unwrap(), expected);
    }
    // Linearizable read at the leader sees every acknowledged write.
    assert_eq!(
        c.nodes[&leader].read(7, Query::Get).await.unwrap(),
        expected
    );
    // Every node applies the same entries in order.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut leaders = 0;
    for node in c.nodes.values() {
        let m = node.group_metrics(7).await.unwrap();
        assert!(m.applied >= 21, "node {} applied {}", node.id(), m.applied);
        if m.role == Role::Leader {
            leaders += 1;
        }
        eprintln!(
            "node {}: {:?} term {} commit {} applied {} elections {}",
            node.id(),
            m.role,
            m.term,
            m.commit,
            m.applied,
            m.elections_started
        );
    }
    assert_eq!(leaders, 1);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn three_nodes_elect_commit_and_apply() {
    elect_commit_apply(3).await;
}

#[tokio::test(start_paused = true)]
async fn five_nodes_elect_commit_and_apply() {
    elect_commit_apply(5).await;
}

#[tokio::test(start_paused = true)]
async fn hundred_groups_on_three_nodes_all_make_progress() {
    let c = Cluster::start(&[1, 2, 3], config).await;
    for g in 1..=100 {
        c.add_group(g).await;
    }
    for g in 1..=100 {
        assert_eq!(
            c.propose(g, Cmd::Add(g as i64)).await.unwrap(),
            g as i64,
            "group {g}"
        );
    }
    c.shutdown().await;
}

/// A hung disk (the simulation's disk-stall fault): while the leader's storage cannot sync,
/// nothing is acknowledged from it (entries are durable before they are acknowledged, I7), and
/// no election happens (heartbeats never wait on the data path, I5); when the disk resumes,
/// the waiting write completes.
#[cfg(feature = "fault-injection")]
#[tokio::test(start_paused = true)]
async fn a_stalled_disk_delays_acknowledgements_until_it_resumes() {
    let c = Cluster::start(&[1, 2, 3], config).await;
    c.add_group(1).await;
    let leader = c.leader(1).await;
    assert_eq!(c.propose(1, Cmd::Add(1)).await.unwrap(), 1);
    let term = c.nodes[&leader].group_metrics(1).await.unwrap().term;
    let stall = Duration::from_secs(3);
    c.nodes[&leader].stall_storage(stall).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = tokio::time::Instant::now();
    assert_eq!(c.nodes[&leader].propose(1, Cmd::Add(1)).await.unwrap(), 2);
    let took = start.elapsed();
    assert!(
        took >= stall - Duration::from_millis(20) && took < stall + Duration::from_secs(1),
        "acknowledged after {took:?} with a {stall:?} disk stall"
    );
    let m = c.nodes[&leader].group_metrics(1).await.unwrap();
    assert_eq!(
        (m.role, m.term),
        (Role::Leader, term),
        "the stall cost the leadership"
    );
    c.shutdown().await;
}

/// Check-quorum counts a peer whose heartbeat actor does not know the group: such a node is
/// alive and acking, and a node starting thousands of groups answers a new leader before its
/// partitions register with its heartbeat actor. Here node 3 is a voter of the group but does
/// not host it, and the heartbeat lane between the leader and node 2 is cut: the leader's
/// only acks come from node 3. It keeps leading (replicating to node 2 on the data lane)
/// instead of stepping down every election timeout, as it did when node 3 rejected the claim.
#[tokio::test(start_paused = true)]
async fn a_peer_that_does_not_know_the_group_yet_counts_for_check_quorum() {
    const G: u64 = 3;
    let ids: Vec<u64> = (1..=3).collect();
    let c = Cluster::start_with_faults(&ids, config, 5).await;
    let members = raft_core::Membership::new(ids.iter().copied());
    for n in [1, 2] {
        c.nodes[&n]
            .add_partition(G, members.clone(), common::Counter::default())
            .await
            .unwrap();
    }
    let leader = c.leader(G).await;
    let other = if leader == 1 { 2 } else { 1 };
    let term = c.nodes[&leader].group_metrics(G).await.unwrap().term;
    let net = c.net.as_ref().unwrap();
    net.partition_lane(leader, other, Lane::Heartbeat)
        .await
        .unwrap();
    net.partition_lane(other, leader, Lane::Heartbeat)
        .await
        .unwrap();
    // Ten election timeouts of writes, one every 20 ms.
    let start = tokio::time::Instant::now();
    let mut expected = 0;
    while start.elapsed() < Duration::from_secs(5) {
        expected += 1;
        let v = c.nodes[&leader]
            .propose(G, Cmd::Add(1))
            .await
            .expect("the leader keeps leading");
        assert_eq!(v, expected);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = c.nodes[&leader].group_metrics(G).await.unwrap();
    assert_eq!((m.role, m.term), (Role::Leader, term));
    assert_eq!(c.nodes[&leader].metrics().await.heartbeat.quorum_lost, 0);
}
