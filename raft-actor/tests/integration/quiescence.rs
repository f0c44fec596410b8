//! Idle groups are quiescent (the performance bar of docs/benchmarks.md: 10,000 idle groups per node cost at
//! most 5% of a core): once elected and caught up, a group's partition and replicator actors
//! arm no timers, heartbeat frames carry no per-group data, and the only wake-ups left are the
//! heartbeat actor's liveness probes (I6) — which still catch a stuck partition. Paused time,
//! in-memory network.

use super::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, Cmd, config};
use raft_actor::{GroupMetrics, HeartbeatMetrics, NodeConfig};
use raft_core::{GroupId, NodeId};

const GROUPS: u64 = 200;

/// Every group's metrics on every node, and every node's heartbeat counters.
async fn sample(
    c: &Cluster,
) -> (
    BTreeMap<(NodeId, GroupId), GroupMetrics>,
    Vec<HeartbeatMetrics>,
) {
    let mut groups = BTreeMap::new();
    let mut hb = Vec::new();
    for (&id, n) in &c.nodes {
        let m = n.metrics().await;
        for g in m.groups {
            groups.insert((id, g.group), g);
        }
        hb.push(m.heartbeat);
    }
    (groups, hb)
}

/// A cluster of three nodes with `GROUPS` groups, each elected and holding one committed write,
/// left alone until everything settled.
async fn idle_cluster() -> Cluster {
    let c = Cluster::start(&[1, 2, 3], config).await;
    for g in 1..=GROUPS {
        c.add_group(g).await;
    }
    for g in 1..=GROUPS {
        assert_eq!(c.propose(g, Cmd::Add(1)).await.unwrap(), 1, "group {g}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    c
}

#[tokio::test(start_paused = true)]
async fn idle_groups_cost_only_liveness_probes() {
    let c = idle_cluster().await;
    let cfg: NodeConfig = config(1);
    let (before, hb0) = sample(&c).await;
    let secs = 30u64;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (after, hb1) = sample(&c).await;

    // Ticking every `tick_interval` would be 600 wake-ups per group in 30 s. Now: one probe per
    // half stall timeout, plus the metrics request of the sample itself.
    let probes = secs * 1000 / (cfg.stall_timeout / 2).as_millis() as u64;
    let mut total = 0;
    for (key, a) in &after {
        let b = &before[key];
        assert_eq!(
            (a.term, a.role),
            (b.term, b.role),
            "{key:?}: leadership changed"
        );
        assert_eq!(
            a.replicator_loops, b.replicator_loops,
            "{key:?}: an idle group's replicators woke up"
        );
        let wakeups = a.partition_wakeups - b.partition_wakeups;
        assert!(
            wakeups <= probes + 2,
            "{key:?}: {wakeups} partition wake-ups in {secs} s (probes: {probes})"
        );
        assert!(!a.stalled, "{key:?}: idle is not stalled");
        total += wakeups;
    }
    let per_group_second = total as f64 / after.len() as f64 / secs as f64;
    for (i, (a, b)) in hb1.iter().zip(&hb0).enumerate() {
        assert_eq!(a.armed_election_timers, 0, "node {}: timers armed", i + 1);
        assert_eq!(a.election_timeouts, b.election_timeouts);
        assert_eq!(a.quorum_lost, b.quorum_lost);
        assert_eq!(
            a.claims_sent,
            b.claims_sent,
            "node {}: frames carried claims although nothing changed",
            i + 1
        );
        assert_eq!(a.full_frames_sent, b.full_frames_sent);
        // One frame per peer per interval (a node that leads nothing sends none).
        let frames = a.frames_sent - b.frames_sent;
        let intervals = secs * 1000 / cfg.heartbeat_interval.as_millis() as u64;
        assert!(
            frames <= 2 * (intervals + 1),
            "node {}: {frames} frames",
            i + 1
        );
    }
    eprintln!(
        "idle: {per_group_second:.2} partition wake-ups per group per second, 0 replicator \
         wake-ups, 0 claims in frames over {secs} s ({} groups x 3 nodes)",
        GROUPS
    );
    c.shutdown().await;
}

#[cfg(feature = "fault-injection")]
#[tokio::test(start_paused = true)]
async fn a_stuck_partition_among_idle_groups_is_caught_and_a_short_pause_is_not() {
    let c = idle_cluster().await;
    let cfg = config(1);
    let stall = cfg.stall_timeout;
    let mut leaders = BTreeMap::new();
    for g in [7, 8] {
        leaders.insert(g, c.leader(g).await);
    }
    // Group 8's leader blocks in a handler for a little less than the stall timeout: tolerated.
    c.nodes[&leaders[&8]]
        .freeze_partition(8, stall - Duration::from_millis(500))
        .unwrap();
    // Group 7's leader is stuck for good.
    c.nodes[&leaders[&7]]
        .freeze_partition(7, Duration::from_secs(600))
        .unwrap();
    let start = tokio::time::Instant::now();
    let mut replaced = None;
    while start.elapsed() < stall + cfg.election_timeout * 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (&id, n) in &c.nodes {
            if id != leaders[&7]
                && n.group_metrics(7).await.unwrap().role == raft_core::Role::Leader
            {
                replaced = Some(id);
            }
        }
        if replaced.is_some() {
            break;
        }
    }
    let took = start.elapsed();
    assert!(replaced.is_some(), "the stuck leader was not replaced");
    assert!(
        took >= stall,
        "replaced after {took:?}: before the stall timeout"
    );
    tokio::time::sleep(stall).await;
    let (groups, _) = sample(&c).await;
    for ((node, group), m) in &groups {
        let stuck = *node == leaders[&7] && *group == 7;
        assert_eq!(
            m.stalled, stuck,
            "node {node} group {group}: stalled = {}",
            m.stalled
        );
    }
    assert_eq!(
        c.nodes[&leaders[&8]].group_metrics(8).await.unwrap().role,
        raft_core::Role::Leader,
        "a pause shorter than the stall timeout cost the leadership"
    );
    eprintln!("stuck partition among {GROUPS} idle groups replaced after {took:?}");
    c.shutdown().await;
}
