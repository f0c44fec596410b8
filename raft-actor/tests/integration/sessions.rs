//! Client sessions: opened by log entries, capped with least-recently-used eviction that every
//! replica makes alike, an evicted session's retry refused and never applied again, and the
//! table kept through snapshots and restarts.

use super::common;

use std::time::Duration;

use common::{Cluster, Cmd, Counter, Query, config, leader_among};
use raft_actor::{Error, Node, NodeConfig, RequestId};

const G: u64 = 1;

fn id(client: u64, seq: u64) -> RequestId {
    RequestId { client, seq }
}

/// Every node's `(applied, sessions, evicted, digest)` once all have applied `index`.
async fn tables(nodes: &[&Node<Counter>], index: u64) -> Vec<(u64, u64, u64, u64)> {
    for _ in 0..200 {
        let mut all = Vec::new();
        for n in nodes {
            let m = n.group_metrics(G).await.unwrap();
            all.push((m.applied, m.sessions, m.sessions_evicted, m.session_digest));
        }
        if all.iter().all(|t| t.0 >= index) && all.iter().all(|t| t.0 == all[0].0) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the nodes did not all apply index {index}");
}

#[tokio::test(start_paused = true)]
async fn the_least_recently_used_session_is_evicted_alike_everywhere_and_its_retry_is_refused() {
    let c = Cluster::start(&[1, 2, 3], |n| NodeConfig {
        max_sessions: 3,
        ..config(n)
    })
    .await;
    c.add_group(G).await;
    let leader = c.leader(G).await;
    let l = &c.nodes[&leader];
    let s1 = l.open_session(G).await.unwrap();
    let s2 = l.open_session(G).await.unwrap();
    let s3 = l.open_session(G).await.unwrap();
    assert!(s1 < s2 && s2 < s3, "ids are increasing log indices");
    assert_eq!(l.propose_with_id(G, id(s1, 1), Cmd::Add(1)).await, Ok(1));
    assert_eq!(l.propose_with_id(G, id(s2, 1), Cmd::Add(1)).await, Ok(2));
    // s3 is the least recently used now: opening a fourth session evicts it.
    let s4 = l.open_session(G).await.unwrap();
    let expired = l.propose_with_id(G, id(s3, 1), Cmd::Add(1)).await;
    assert_eq!(
        expired,
        Err(Error::SessionExpired {
            group: G,
            client: s3
        })
    );
    assert!(!expired.unwrap_err().is_retryable());
    // Next in line is s1. Once it is evicted, a retry of its last request (applied once) is
    // refused, and the state machine applies nothing.
    let applies = l.read(G, Query::Applies).await.unwrap();
    let _s5 = l.open_session(G).await.unwrap();
    assert_eq!(
        l.propose_with_id(G, id(s1, 1), Cmd::Add(1)).await,
        Err(Error::SessionExpired {
            group: G,
            client: s1
        })
    );
    assert_eq!(l.read(G, Query::Applies).await, Ok(applies));
    assert_eq!(l.read(G, Query::Get).await, Ok(2));
    // s2's retry is still answered from the table; live sessions and requests without a
    // session go on as before.
    assert_eq!(l.propose_with_id(G, id(s2, 1), Cmd::Add(1)).await, Ok(2));
    assert_eq!(l.propose(G, Cmd::Add(1)).await, Ok(3));
    assert_eq!(l.propose_with_id(G, id(s4, 1), Cmd::Add(1)).await, Ok(4));
    assert_eq!(l.read(G, Query::Applies).await, Ok(applies + 2));
    // Every replica holds the same table: three sessions, two evicted, one digest.
    let commit = l.group_metrics(G).await.unwrap().commit;
    let nodes: Vec<&Node<Counter>> = c.nodes.values().collect();
    let all = tables(&nodes, commit).await;
    assert!(all.iter().all(|t| t.1 == 3 && t.2 == 2), "{all:?}");
    assert!(all.iter().all(|t| t.3 == all[0].3), "{all:?}");
    // An id that was never opened is refused the same way.
    assert!(matches!(
        l.propose_with_id(G, id(commit + 1000, 1), Cmd::Add(1))
            .await,
        Err(Error::SessionExpired { .. })
    ));
    c.shutdown().await;
}

/// The three nodes on their WALs in `dirs`, hosting `G`: snapshots every 10 entries, the
/// log compacted right behind them (the sessions a restarted node knows come from its
/// snapshot), at most 4 sessions.
async fn start_on_wal(dirs: &[tempfile::TempDir]) -> Vec<Node<Counter>> {
    common::start_on_wal(dirs, G, |id| {
        let mut cfg = NodeConfig::new(id);
        cfg.raft.seed = 12;
        cfg.raft.snapshot_threshold = 10;
        cfg.raft.compact_trailing = 0;
        cfg.max_sessions = 4;
        cfg
    })
    .await
}

/// Retries `f` at the leader of `nodes` until it answers something other than a retryable
/// error (a restarted cluster takes a moment to elect and to commit its no-op).
async fn at_leader<T, F, Fut>(nodes: &[Node<Counter>], f: F) -> Result<T, Error>
where
    F: Fn(Node<Counter>) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut last = Err(Error::Stopped);
    for _ in 0..100 {
        last = f(leader_among(nodes, G).await).await;
        match &last {
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => return last,
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_snapshots_and_a_full_restart() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = start_on_wal(&dirs).await;
    let l = leader_among(&nodes, G).await;
    let s = l.open_session(G).await.unwrap();
    assert_eq!(l.propose_with_id(G, id(s, 1), Cmd::Add(5)).await, Ok(5));
    // Four more sessions: the fifth evicts the least recently used of the others.
    for k in 0..4 {
        let other = l.open_session(G).await.unwrap();
        l.propose_with_id(G, id(other, 1), Cmd::Add(0))
            .await
            .unwrap();
        // Keep `s` the most recently used, so that it stays.
        assert_eq!(
            l.propose_with_id(G, id(s, 2 + k), Cmd::Add(1)).await,
            Ok(6 + k as i64)
        );
    }
    for _ in 0..30 {
        l.propose(G, Cmd::Add(0)).await.unwrap();
    }
    let commit = l.group_metrics(G).await.unwrap().commit;
    let refs: Vec<&Node<Counter>> = nodes.iter().collect();
    let before = tables(&refs, commit).await;
    assert!(
        before
            .iter()
            .all(|t| (t.1, t.2, t.3) == (before[0].1, 1, before[0].3))
    );
    for n in &nodes {
        assert!(n.group_metrics(G).await.unwrap().snapshots_taken > 0);
    }
    for n in &nodes {
        n.shutdown().await;
    }
    drop(nodes);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let nodes = start_on_wal(&dirs).await;
    let refs: Vec<&Node<Counter>> = nodes.iter().collect();
    let after = tables(&refs, commit).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (b.1, b.2, b.3),
            (a.1, a.2, a.3),
            "the table after the restart"
        );
    }
    // The last request of `s` is answered from the restored table, not applied again.
    let retry = at_leader(&nodes, |n| async move {
        n.propose_with_id(G, id(s, 5), Cmd::Add(1)).await
    })
    .await;
    assert_eq!(retry, Ok(9));
    let value = at_leader(&nodes, |n| async move { n.read(G, Query::Get).await }).await;
    assert_eq!(value, Ok(9));
    let next = at_leader(&nodes, |n| async move {
        n.propose_with_id(G, id(s, 6), Cmd::Add(1)).await
    })
    .await;
    assert_eq!(next, Ok(10));
    for n in &nodes {
        n.shutdown().await;
    }
}
