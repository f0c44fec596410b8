//! One test per incident of DESIGN.md that the runtime must survive, under its conditions
//! (issue 4's acceptance list). In-memory transport, paused time unless noted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Cluster, Cmd, Query, config};
use raft_actor::{Error, RequestId};
use raft_core::NodeId;
use raft_net::Lane;

const G: u64 = 1;

/// Runs a client that increments forever with a session, retrying each request until it is
/// acknowledged. Returns (acknowledged count, attempts answered with an error).
fn spawn_writer(c: &Cluster, stop: Arc<AtomicU64>) -> tokio::task::JoinHandle<(u64, u64)> {
    let nodes: Vec<_> = c.nodes.values().cloned().collect();
    tokio::spawn(async move {
        let (mut acked, mut errors) = (0u64, 0u64);
        let client = 77;
        let mut seq = 1;
        let mut at = 0usize;
        while stop.load(Ordering::Relaxed) == 0 {
            let id = RequestId { client, seq };
            match nodes[at % nodes.len()]
                .propose_with_id(G, id, Cmd::Add(1))
                .await
            {
                Ok(v) => {
                    // Exactly once: the counter equals the number of distinct requests.
                    assert_eq!(
                        v as u64, seq,
                        "request {seq} applied more or less than once"
                    );
                    acked += 1;
                    seq += 1;
                    // Under paused time a commit takes no simulated time: pace the client so
                    // the clock can move (500 writes per simulated second).
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(Error::NotLeader {
                    leader: Some(l), ..
                }) => {
                    errors += 1;
                    at = nodes.iter().position(|n| n.id() == l).unwrap_or(at + 1);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    assert!(e.is_retryable(), "unexpected error {e}");
                    errors += 1;
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        (acked, errors)
    })
}

async fn assert_no_stalls(c: &Cluster) {
    for n in c.nodes.values() {
        let m = n.group_metrics(G).await.unwrap();
        assert!(
            !m.stalled,
            "node {} reports a stalled partition actor",
            n.id()
        );
        assert!(
            m.responsive,
            "node {}'s partition actor did not answer",
            n.id()
        );
    }
}

/// Incident 1 (NebulaGraph): election handling never waits on replication. A follower's data
/// lane hangs (its messages vanish both ways; heartbeats still flow) while leadership is moved
/// every 300 ms under continuous proposals for 60 s of simulated time.
#[tokio::test(start_paused = true)]
async fn incident1_forced_elections_with_a_hung_follower_data_lane() {
    if std::env::var("INCIDENT1_DEBUG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(std::io::stderr)
            .try_init();
    }
    let ids: Vec<NodeId> = (1..=5).collect();
    let c = Cluster::start_with_faults(&ids, config, 1).await;
    c.add_group(G).await;
    let first = c.leader(G).await;
    let hung: NodeId = if first == 5 { 4 } else { 5 };
    let net = c.net.as_ref().unwrap();
    for &other in ids
        .iter()
        .filter(|&&n| n != hung && std::env::var("NO_HUNG").is_err())
    {
        net.partition_lane(hung, other, Lane::Data).await.unwrap();
        net.partition_lane(other, hung, Lane::Data).await.unwrap();
    }
    let stop = Arc::new(AtomicU64::new(0));
    if std::env::var("NO_WRITER").is_ok() {
        stop.store(1, Ordering::Relaxed);
    }
    let writer = spawn_writer(&c, stop.clone());
    let candidates: Vec<NodeId> = ids.iter().copied().filter(|&n| n != hung).collect();
    let mut changes = 0;
    let mut last_acked_probe = 0;
    let start = tokio::time::Instant::now();
    let mut k = 0;
    let secs = std::env::var("INCIDENT1_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    while start.elapsed() < Duration::from_secs(secs) {
        let leader = c.leader(G).await;
        if std::env::var("INCIDENT1_DEBUG").is_ok() {
            eprintln!("t={:?} leader {leader} changes {changes}", start.elapsed());
        }
        let target = candidates[(k + 1) % candidates.len()];
        k += 1;
        if target == leader {
            continue;
        }
        let before = c.nodes[&leader].group_metrics(G).await.unwrap().term;
        if c.nodes[&leader].transfer_leader(G, target).await.is_ok() {
            // Every forced election completes: a leader of a newer term within a bound.
            let mut done = false;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let l = c.leader(G).await;
                if c.nodes[&l].group_metrics(G).await.unwrap().term > before {
                    done = true;
                    break;
                }
            }
            assert!(
                done,
                "election after transfer {changes} did not complete within 2 s"
            );
            changes += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Commits resume after each change.
        let probe = c.propose(G, Cmd::Add(0)).await;
        assert!(probe.is_ok(), "no commit after change {changes}: {probe:?}");
        let v = probe.unwrap() as u64;
        assert!(v >= last_acked_probe, "counter went backwards");
        last_acked_probe = v;
    }
    stop.store(1, Ordering::Relaxed);
    let (acked, _errors) = writer.await.unwrap();
    assert!(changes >= 100, "only {changes} leader changes forced");
    assert!(acked > 100, "only {acked} writes acknowledged");
    assert_no_stalls(&c).await;
    let leader = c.leader(G).await;
    assert_eq!(
        c.nodes[&leader].read(G, Query::Get).await.unwrap() as u64,
        acked
    );
    eprintln!("incident 1: {changes} forced leader changes, {acked} writes acknowledged");
    c.shutdown().await;
}
