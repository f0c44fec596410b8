//! The Node API's contract: bad calls get typed errors, and shutdown is bounded (I10).

use super::common;

use std::time::Duration;

use common::{Cluster, Cmd, Counter, Query, config};
use raft_actor::{Error, Node, NodeConfig, RequestId, WireMsg};
use raft_core::{Membership, Role};
use raft_net::{MemConfig, MemNetwork};
use raft_storage::MemStore;

#[tokio::test(start_paused = true)]
async fn bad_calls_return_typed_errors() {
    let c = Cluster::start(&[1, 2, 3], config).await;
    c.add_group(1).await;
    let leader = c.leader(1).await;
    let l = &c.nodes[&leader];
    let follower = c.nodes.values().find(|n| n.id() != leader).unwrap();

    assert_eq!(
        l.propose(99, Cmd::Add(1)).await,
        Err(Error::UnknownGroup(99))
    );
    assert_eq!(l.read(99, Query::Get).await, Err(Error::UnknownGroup(99)));
    assert_eq!(l.transfer_leader(99, 2).await, Err(Error::UnknownGroup(99)));
    assert!(matches!(
        l.group_metrics(99).await,
        Err(Error::UnknownGroup(99))
    ));
    assert_eq!(
        l.remove_partition(99, false).await,
        Err(Error::UnknownGroup(99))
    );
    assert_eq!(
        l.add_partition(1, Membership::new([1, 2, 3]), Counter::default())
            .await,
        Err(Error::GroupExists(1))
    );
    // Invalid memberships.
    assert!(matches!(
        l.add_partition(5, Membership::new([]), Counter::default())
            .await,
        Err(Error::Raft { .. })
    ));
    assert!(matches!(
        l.add_partition(6, Membership::new([0, 1]), Counter::default())
            .await,
        Err(Error::Raft { .. })
    ));
    let both = Membership::with_learners([1, 2, 3], [3]);
    assert!(matches!(
        l.change_membership(1, both).await,
        Err(Error::Raft { .. })
    ));
    assert!(matches!(
        l.transfer_leader(1, 42).await,
        Err(Error::Raft { .. })
    ));
    // A follower points at the leader.
    match follower.propose(1, Cmd::Add(1)).await {
        Err(Error::NotLeader {
            group: 1,
            leader: Some(hint),
            leader_addr: None,
        }) => assert_eq!(hint, leader),
        other => panic!("expected NotLeader with a hint, got {other:?}"),
    }
    assert!(matches!(
        follower.read(1, Query::Get).await,
        Err(Error::NotLeader { .. })
    ));
    // The group still works.
    assert_eq!(l.propose(1, Cmd::Add(5)).await, Ok(5));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_node_config_names_the_field() {
    let mut cfg = NodeConfig::new(1);
    cfg.election_timeout = Duration::from_millis(10);
    let transports = MemNetwork::<WireMsg>::direct(&[1], &MemConfig::default()).unwrap();
    let (t, inbound) = transports.into_iter().next().unwrap();
    let r = Node::<Counter>::builder(cfg)
        .transport(t, inbound)
        .storage(MemStore::new())
        .single_executor()
        .start()
        .await;
    match r {
        Err(Error::Config { field, .. }) => assert_eq!(field, "election_timeout"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("accepted a bad config"),
    }
    let mut cfg = NodeConfig::new(1);
    cfg.commit_notify_delay = cfg.heartbeat_interval;
    assert!(matches!(
        cfg.validate(),
        Err(Error::Config {
            field: "commit_notify_delay",
            ..
        })
    ));
    let mut cfg = NodeConfig::new(0);
    cfg.raft.seed = 1;
    assert!(matches!(
        cfg.validate(),
        Err(Error::Config {
            field: "node_id",
            ..
        })
    ));
}

/// I10: shutdown is a message and completes within a bound even with every peer unreachable.
#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_with_peers_unreachable() {
    let c = Cluster::start_with_faults(&[1, 2, 3], config, 9).await;
    for g in 1..=20 {
        c.add_group(g).await;
    }
    let leader = c.leader(1).await;
    c.propose(1, Cmd::Add(1)).await.unwrap();
    let net = c.net.as_ref().unwrap();
    net.isolate(leader).await.unwrap();
    // Requests in flight while the node goes away.
    let n = c.nodes[&leader].clone();
    let pending = tokio::spawn(async move { n.propose(1, Cmd::Add(1)).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = tokio::time::Instant::now();
    c.nodes[&leader].shutdown().await;
    let took = start.elapsed();
    let bound = config(leader).shutdown_timeout * 2;
    assert!(took <= bound, "shutdown took {took:?} (bound {bound:?})");
    // Callers are answered, not left hanging.
    let r = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("answered")
        .unwrap();
    assert!(
        matches!(
            r,
            Err(Error::Stopped) | Err(Error::Timeout { .. }) | Err(Error::NotLeader { .. })
        ),
        "{r:?}"
    );
    assert!(c.nodes[&leader].propose(1, Cmd::Add(1)).await.is_err());
    let _ = Role::Leader;
    for (&id, n) in &c.nodes {
        if id != leader {
            n.shutdown().await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_group_handle_proposes_reads_and_answers_stopped_after_removal() {
    let c = Cluster::start(&[1, 2, 3], config).await;
    c.add_group(1).await;
    let leader = c.leader(1).await;
    let l = &c.nodes[&leader];
    assert!(matches!(l.group(99), Err(Error::UnknownGroup(99))));
    let g = l.group(1).expect("group 1 is on the leader");
    assert_eq!(g.id(), 1);
    assert_eq!(g.propose(Cmd::Add(2)).await, Ok(2));
    let session = RequestId {
        client: g.open_session().await.expect("session"),
        seq: 1,
    };
    assert_eq!(g.propose_with_id(session, Cmd::Add(3)).await, Ok(5));
    // A retry under the same session id applies once and answers the first response.
    assert_eq!(g.propose_with_id(session, Cmd::Add(3)).await, Ok(5));
    assert_eq!(g.clone().read(Query::Get).await, Ok(5));
    // The node's own methods see the same group.
    assert_eq!(l.read(1, Query::Get).await, Ok(5));
    // A follower's handle points at the leader, as the node's methods do.
    let follower = c.nodes.values().find(|n| n.id() != leader).unwrap();
    assert!(matches!(
        follower.group(1).unwrap().propose(Cmd::Add(1)).await,
        Err(Error::NotLeader { group: 1, .. })
    ));
    l.remove_partition(1, false).await.expect("remove group 1");
    assert_eq!(g.propose(Cmd::Add(1)).await, Err(Error::Stopped));
    c.shutdown().await;
}
