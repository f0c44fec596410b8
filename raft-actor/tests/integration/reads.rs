//! The three kinds of read (ReadIndex, lease, stale) and the proposal's index
//! (`propose_indexed`, `submit`), on paused time over the in-memory network.

use super::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, Cmd, Counter, Query, config};
use raft_actor::{Error, Index, Node, Role};
use raft_core::Membership;
use raft_net::Lane;
use tokio::time::Instant;

const G: u64 = 1;

/// Data-lane frames `node` has sent to its peers.
async fn data_frames_sent(node: &Node<Counter>) -> u64 {
    let m = node.metrics().await;
    m.transport
        .peers
        .iter()
        .filter(|(peer, _)| **peer != node.id())
        .map(|(_, s)| s.lane(Lane::Data).frames_sent)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_stale_read_on_a_follower_and_a_learner_reflects_the_applied_index_it_reports() {
    let c = Cluster::start(&[1, 2, 3, 4], config).await;
    for id in 1..=3 {
        c.nodes[&id]
            .add_partition(G, Membership::new([1, 2, 3]), Counter::default())
            .await
            .unwrap();
    }
    c.nodes[&4]
        .join_partition(G, Counter::default())
        .await
        .unwrap();
    let leader = c.leader(G).await;
    let l = &c.nodes[&leader];
    l.add_learner(G, 4, None).await.unwrap();
    // Each write's index and the value it left: what a state that applied up to an index holds.
    let mut after: BTreeMap<Index, i64> = BTreeMap::new();
    let mut lagged = 0;
    let mut last = 0;
    for _ in 0..40 {
        let (index, value) = l.propose_indexed(G, None, Cmd::Add(1)).await.unwrap();
        after.insert(index, value);
        last = index;
        for (&id, n) in &c.nodes {
            let stale = n.read_stale(G, Query::Get).await.unwrap();
            let commit = l.group_metrics(G).await.unwrap().commit;
            assert!(
                stale.applied <= commit,
                "node {id} reports applied {} past the leader's commit {commit}",
                stale.applied
            );
            let expected = after
                .range(..=stale.applied)
                .next_back()
                .map_or(0, |(_, v)| *v);
            assert_eq!(
                stale.response, expected,
                "node {id}: the answer does not match applied index {}",
                stale.applied
            );
            if stale.applied < index {
                lagged += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("{lagged} stale reads reflected an index before the latest write");
    // Followers and the learner catch up: a stale read there eventually reflects every write.
    for (&id, n) in &c.nodes {
        let mut caught_up = false;
        for _ in 0..100 {
            let stale = n.read_stale(G, Query::Get).await.unwrap();
            if stale.applied >= last {
                assert_eq!(stale.response, 40);
                caught_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(caught_up, "node {id} never applied index {last}");
    }
    let follower = c.nodes.values().find(|n| n.id() != leader).unwrap();
    for r in [
        follower.read(G, Query::Get).await,
        follower.read_lease(G, Query::Get).await,
    ] {
        assert_eq!(
            r,
            Err(Error::NotLeader {
                group: G,
                leader: Some(leader),
                leader_addr: None,
            })
        );
    }
    assert_eq!(
        c.nodes[&4].read_lease(G, Query::Get).await,
        Err(Error::NotLeader {
            group: G,
            leader: Some(leader),
            leader_addr: None,
        }),
        "a learner serves stale reads only"
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn lease_reads_see_every_write_and_take_no_round_while_the_lease_holds() {
    let c = Cluster::start(&[1, 2, 3], config).await;
    c.add_group(G).await;
    let leader = c.leader(G).await;
    let l = &c.nodes[&leader];
    let g = l.group(G).unwrap();
    for k in 1..=10 {
        assert_eq!(l.propose(G, Cmd::Add(1)).await, Ok(k));
        assert_eq!(l.read_lease(G, Query::Get).await, Ok(k), "after write {k}");
        assert_eq!(g.read_lease(Query::Get).await, Ok(k));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A lease read after an idle stretch takes a round (the lease ran out), which gives a new
    // lease; the next ones, 1 ms apart, take none until the lease's second half, where one
    // round renews it.
    assert_eq!(l.read_lease(G, Query::Get).await, Ok(10));
    let before = data_frames_sent(l).await;
    for _ in 0..100 {
        assert_eq!(l.read_lease(G, Query::Get).await, Ok(10));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let lease_frames = data_frames_sent(l).await - before;
    let before = data_frames_sent(l).await;
    for _ in 0..100 {
        assert_eq!(l.read(G, Query::Get).await, Ok(10));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let read_index_frames = data_frames_sent(l).await - before;
    eprintln!(
        "100 reads: {lease_frames} data frames as lease reads, {read_index_frames} as ReadIndex"
    );
    assert!(
        lease_frames <= 4,
        "{lease_frames} frames for 100 lease reads"
    );
    assert!(read_index_frames >= 200, "{read_index_frames} frames");
    c.shutdown().await;
}

/// The focused lease test: a leader holding a lease is cut off from its followers' data lanes,
/// and from one of them entirely. That one campaigns; the other, which no longer hears the old
/// leader's rounds, votes for it. The old leader keeps hearing the second follower on the
/// heartbeat lane, so check-quorum does not make it step down at once: only its lease protects
/// its lease reads. The lease runs out before the new leader can be elected, so the old leader
/// serves no lease read from then on (they fall back to ReadIndex, which cannot complete), and
/// every lease read it served reflects every write acknowledged before the read began. (With a
/// lease as long as two election timeouts, this test fails.)
#[tokio::test(start_paused = true)]
async fn an_isolated_leader_serves_no_lease_read_once_another_can_be_elected() {
    let ids = [1, 2, 3];
    let c = Cluster::start_with_faults(&ids, config, 5).await;
    c.add_group(G).await;
    let old = c.leader(G).await;
    let net = c.net.as_ref().unwrap();
    assert_eq!(c.nodes[&old].propose(G, Cmd::Add(1)).await, Ok(1));
    assert_eq!(c.nodes[&old].read_lease(G, Query::Get).await, Ok(1));
    // Lease reads at the old leader every 2 ms from now on, each on its own task.
    let (tx, rx) = flume::unbounded();
    let reader = {
        let node = c.nodes[&old].clone();
        tokio::spawn(async move {
            let mut reads = Vec::new();
            for _ in 0..1500 {
                let (node, tx) = (node.clone(), tx.clone());
                reads.push(tokio::spawn(async move {
                    let call = Instant::now();
                    let r = node.read_lease(G, Query::Get).await;
                    let _ = tx.send((call, Instant::now(), r));
                }));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            for r in reads {
                let _ = r.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let others: Vec<u64> = ids.iter().copied().filter(|&n| n != old).collect();
    let isolated_at = Instant::now();
    net.partition(old, others[0]).await.unwrap();
    net.partition_lane(old, others[1], Lane::Data)
        .await
        .unwrap();
    net.partition_lane(others[1], old, Lane::Data)
        .await
        .unwrap();
    // The others elect a new leader; poll every millisecond for when it happens.
    let mut new = None;
    while new.is_none() {
        for &n in &others {
            if c.nodes[&n].group_metrics(G).await.unwrap().role == Role::Leader {
                new = Some(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            isolated_at.elapsed() < Duration::from_secs(10),
            "no new leader"
        );
    }
    let new = new.unwrap();
    let elected_at = Instant::now() - Duration::from_millis(1);
    let written = c.nodes[&new].propose(G, Cmd::Add(1)).await.unwrap();
    assert_eq!(written, 2);
    let acked_at = Instant::now();
    reader.await.unwrap();
    drop(c);
    let mut served_after_isolation = 0;
    let mut last_served = None;
    for (call, ret, r) in rx.drain() {
        let Ok(v) = r else {
            continue;
        };
        if call > acked_at {
            assert!(
                v >= 2,
                "a lease read begun after write 2 was acknowledged saw {v}"
            );
        }
        assert!(
            call < elected_at,
            "a lease read begun {:?} after the isolation, once node {new} led (elected {:?} \
             after), was served",
            call - isolated_at,
            elected_at - isolated_at
        );
        if call >= isolated_at {
            served_after_isolation += 1;
            last_served = last_served.max(Some(ret - isolated_at));
        }
    }
    eprintln!(
        "cut off: {served_after_isolation} lease reads served, the last {last_served:?} after \
         the isolation; node {new} led {:?} after it",
        elected_at - isolated_at
    );
    assert!(
        served_after_isolation > 0,
        "the lease served nothing after the isolation: the test shows nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_proposal_answers_its_index_and_submit_reports_it_before_the_outcome() {
    let ids = [1, 2, 3];
    let c = Cluster::start_with_faults(&ids, config, 9).await;
    c.add_group(G).await;
    let leader = c.leader(G).await;
    let l = &c.nodes[&leader];
    let g = l.group(G).unwrap();
    // Indices increase and are those `apply` was called with (Counter records them in order).
    let mut indices = Vec::new();
    for k in 0..20 {
        let (index, value) = if k % 2 == 0 {
            l.propose_indexed(G, None, Cmd::Add(1)).await.unwrap()
        } else {
            g.propose_indexed(None, Cmd::Add(1)).await.unwrap()
        };
        assert_eq!(value, k + 1);
        assert!(indices.last().is_none_or(|&last| index > last));
        indices.push(index);
    }
    for (k, &index) in indices.iter().enumerate() {
        assert_eq!(
            l.read(G, Query::AppliedAt(k)).await,
            Ok(index as i64),
            "the {k}-th apply"
        );
    }
    // Under a session, a retry answers the index its first application took effect at.
    let client = g.open_session().await.unwrap();
    let id = raft_actor::RequestId { client, seq: 1 };
    let first = l.propose_indexed(G, Some(id), Cmd::Add(1)).await.unwrap();
    assert_eq!(l.propose_indexed(G, Some(id), Cmd::Add(1)).await, Ok(first));
    assert_eq!(l.read(G, Query::Applies).await, Ok(21));

    // `submit` answers once the leader appended the entry; here the followers' answers cannot
    // reach it, so nothing commits until the network heals.
    let term = l.group_metrics(G).await.unwrap().term;
    let last = l.group_metrics(G).await.unwrap().last_index;
    let net = c.net.as_ref().unwrap();
    for &f in ids.iter().filter(|&&n| n != leader) {
        net.partition_lane(f, leader, Lane::Data).await.unwrap();
    }
    let submitted = l.submit(G, None, Cmd::Add(1)).await.unwrap();
    assert_eq!((submitted.index, submitted.term), (last + 1, term));
    let via_group = g.submit(None, Cmd::Add(1)).await.unwrap();
    assert_eq!(via_group.index, last + 2);
    let outcome = tokio::spawn(submitted.outcome_indexed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!outcome.is_finished(), "nothing can commit yet");
    net.heal().await.unwrap();
    assert_eq!(outcome.await.unwrap(), Ok((last + 1, 22)));
    assert_eq!(via_group.outcome().await, Ok(23));
    assert_eq!(l.read(G, Query::AppliedAt(21)).await, Ok((last + 1) as i64));
    // Refusals come from `submit` itself.
    let follower = c.nodes.values().find(|n| n.id() != leader).unwrap();
    assert!(matches!(
        follower.submit(G, None, Cmd::Add(1)).await,
        Err(Error::NotLeader { .. })
    ));
    c.shutdown().await;
}
