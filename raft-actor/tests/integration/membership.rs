//! Live membership on paused time: the membership calls' semantics (who may be promoted,
//! `add_learner` waits for catch-up, `change_membership` for the final configuration, typed and
//! retryable errors), a removed node stopping its group, addresses that live in the
//! configuration (through a restart and a snapshot install), and the transport's peers
//! following the configurations (a recording transport).

use super::common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use common::{Cmd, Counter, Query, config};
use raft_actor::{Error, Node, NodeAddrs, NodeConfig, WireMsg};
use raft_core::{GroupId, Membership, MembershipError, NodeId, Role};
use raft_net::{
    Lane, MemConfig, MemNetwork, MemTransport, MetricsSnapshot, PeerAddrs, SendError, Transport,
};
use raft_storage::{MemStore, Wal, WalConfig};

const G: GroupId = 1;
const G2: GroupId = 2;

fn addrs(n: NodeId) -> NodeAddrs {
    let port = 7000 + 10 * n as u16;
    NodeAddrs {
        data: ([127, 0, 0, 1], port).into(),
        heartbeat: ([127, 0, 0, 1], port + 1).into(),
        client: Some(([127, 0, 0, 1], port + 2).into()),
    }
}

fn lanes(n: NodeId) -> PeerAddrs {
    let a = addrs(n);
    PeerAddrs {
        data: a.data,
        heartbeat: a.heartbeat,
    }
}

/// Voters `ids`, each with its addresses.
fn addressed(ids: &[NodeId]) -> Membership {
    ids.iter()
        .fold(Membership::new(ids.iter().copied()), |m, &id| {
            m.with_addrs(id, addrs(id))
        })
}

/// A peer call a node's transport received.
#[derive(Debug)]
enum PeerCall {
    Add(NodeId, PeerAddrs),
    Remove(NodeId),
}

/// The in-memory transport, recording every peer call on a queue the test reads.
struct Recording {
    inner: MemTransport<WireMsg>,
    calls: flume::Sender<PeerCall>,
}

#[async_trait]
impl Transport<WireMsg> for Recording {
    fn node_id(&self) -> NodeId {
        self.inner.node_id()
    }

    fn send(&self, to: NodeId, lane: Lane, group: GroupId, msg: WireMsg) -> Result<(), SendError> {
        self.inner.send(to, lane, group, msg)
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics()
    }

    fn add_peer(&self, id: NodeId, addrs: PeerAddrs) -> Result<(), raft_net::NetError> {
        let _ = self.calls.try_send(PeerCall::Add(id, addrs));
        Ok(())
    }

    fn remove_peer(&self, id: NodeId) {
        let _ = self.calls.try_send(PeerCall::Remove(id));
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

/// Nodes on an in-memory network whose faults the test controls, each transport recording
/// its peer calls.
struct Cluster {
    nodes: BTreeMap<NodeId, Node<Counter>>,
    net: MemNetwork<WireMsg>,
    calls: BTreeMap<NodeId, flume::Receiver<PeerCall>>,
    /// Each node's transport peers as its calls so far left them.
    peers: BTreeMap<NodeId, BTreeMap<NodeId, PeerAddrs>>,
}

impl Cluster {
    async fn start(ids: &[NodeId], cfg: impl Fn(NodeId) -> NodeConfig) -> Cluster {
        let (net, transports) =
            MemNetwork::<WireMsg>::with_faults(ids, &MemConfig::default(), 5).expect("network");
        let mut nodes = BTreeMap::new();
        let mut calls = BTreeMap::new();
        for (&id, (t, inbound)) in ids.iter().zip(transports) {
            let (tx, rx) = flume::bounded(1024);
            let node = Node::<Counter>::builder(cfg(id))
                .transport(
                    Recording {
                        inner: t,
                        calls: tx,
                    },
                    inbound,
                )
                .storage(MemStore::new())
                .single_executor()
                .start()
                .await
                .expect("start");
            nodes.insert(id, node);
            calls.insert(id, rx);
        }
        Cluster {
            nodes,
            net,
            calls,
            peers: BTreeMap::new(),
        }
    }

    /// Hosts `group` on `on` with the initial configuration `m`.
    async fn bootstrap(&self, group: GroupId, on: &[NodeId], m: &Membership) {
        for id in on {
            self.nodes[id]
                .add_partition(group, m.clone(), Counter::default())
                .await
                .expect("add");
        }
    }

    /// Waits until a node leads `group`; returns it.
    async fn leader(&self, group: GroupId) -> NodeId {
        common::leader_among(self.nodes.values(), group).await.id()
    }

    async fn write(&self, group: GroupId, n: usize) {
        for _ in 0..n {
            let l = self.leader(group).await;
            self.nodes[&l]
                .propose(group, Cmd::Add(1))
                .await
                .expect("write");
        }
    }

    /// Node `id`'s transport peers after the calls it received so far.
    fn peers_of(&mut self, id: NodeId) -> BTreeMap<NodeId, PeerAddrs> {
        let peers = self.peers.entry(id).or_default();
        while let Ok(call) = self.calls[&id].try_recv() {
            match call {
                PeerCall::Add(p, a) => {
                    peers.insert(p, a);
                }
                PeerCall::Remove(p) => {
                    assert!(peers.remove(&p).is_some(), "node {id} removed unknown {p}");
                }
            }
        }
        peers.clone()
    }

    async fn shutdown(&self) {
        for n in self.nodes.values() {
            n.shutdown().await;
        }
    }
}

/// Peers `ids` at their addresses.
fn peer_set(ids: &[NodeId]) -> BTreeMap<NodeId, PeerAddrs> {
    ids.iter().map(|&id| (id, lanes(id))).collect()
}

fn small_lag(id: NodeId) -> NodeConfig {
    let mut c = config(id);
    c.raft.learner_catchup_lag = 5;
    c
}

#[tokio::test(start_paused = true)]
async fn promotion_needs_a_caught_up_learner_and_add_learner_waits_for_catch_up() {
    let c = Cluster::start(&[1, 2, 3, 4], small_lag).await;
    c.bootstrap(G, &[1, 2, 3], &Membership::new([1, 2, 3]))
        .await;
    c.nodes[&4]
        .join_partition(G, Counter::default())
        .await
        .unwrap();
    let l = c.leader(G).await;
    let leader = &c.nodes[&l];
    let all = Membership::new([1, 2, 3, 4]);
    // Not a learner: refused, typed.
    match leader.change_membership(G, all.clone()).await {
        Err(Error::Raft {
            source: raft_core::Error::Membership(MembershipError::NotLearner(4)),
            ..
        }) => {}
        other => panic!("expected NotLearner(4), got {other:?}"),
    }
    // Node 4 cut off: its learner entry commits, its log stays empty.
    c.net.isolate(4).await.unwrap();
    let adding = {
        let leader = leader.clone();
        tokio::spawn(async move { leader.add_learner(G, 4, None).await })
    };
    c.write(G, 10).await;
    match leader.change_membership(G, all.clone()).await {
        Err(Error::Raft {
            source:
                raft_core::Error::Membership(MembershipError::NotCaughtUp {
                    node: 4,
                    matched: 0,
                    ..
                }),
            ..
        }) => {}
        other => panic!("expected NotCaughtUp, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    if adding.is_finished() {
        panic!("add_learner resolved before catch-up: {:?}", adding.await);
    }
    let m = leader.membership(G).await.unwrap();
    assert_eq!(m, Membership::with_learners([1, 2, 3], [4]));
    // Healed, it catches up and the call resolves.
    c.net.heal().await.unwrap();
    let index = adding.await.unwrap().expect("the learner caught up");
    let lm = leader.group_metrics(G).await.unwrap();
    assert!(lm.commit >= index);
    assert!(lm.matched[&4] + 5 >= lm.last_index, "{lm:?}");
    // Retrying is idempotent: already a learner, already caught up.
    assert_eq!(leader.add_learner(G, 4, None).await, Ok(index));

    // The promotion resolves once the final configuration committed: the joint entry first,
    // the final one right after it.
    let before = leader.group_metrics(G).await.unwrap().last_index;
    let fin = leader.change_membership(G, all.clone()).await.unwrap();
    assert_eq!(fin, before + 2);
    let lm = leader.group_metrics(G).await.unwrap();
    assert!(
        lm.commit >= fin,
        "resolved before the final entry committed"
    );
    assert_eq!(lm.membership, all);
    assert_eq!(leader.membership(G).await.unwrap(), all);
    // Asking again for what is in effect returns the same index.
    assert_eq!(leader.change_membership(G, all).await, Ok(fin));
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn add_learner_times_out_with_a_typed_error_when_the_learner_never_catches_up() {
    let c = Cluster::start(&[1, 2, 3, 4], |id| {
        let mut c = small_lag(id);
        c.learner_catchup_timeout = Duration::from_secs(3);
        c
    })
    .await;
    c.bootstrap(G, &[1, 2, 3], &Membership::new([1, 2, 3]))
        .await;
    c.write(G, 10).await;
    c.net.isolate(4).await.unwrap();
    let l = c.leader(G).await;
    let started = tokio::time::Instant::now();
    match c.nodes[&l].add_learner(G, 4, None).await {
        Err(Error::LearnerLagging {
            group: G,
            node: 4,
            matched: 0,
            leader_last,
        }) => assert!(leader_last >= 12),
        other => panic!("expected LearnerLagging, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(3));
    // It stays a learner.
    assert_eq!(
        c.nodes[&l].membership(G).await.unwrap(),
        Membership::with_learners([1, 2, 3], [4])
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_change_during_another_is_retryable_and_a_lost_leadership_leaves_the_outcome_unknown() {
    let c = Cluster::start(&[1, 2, 3], config).await;
    c.bootstrap(G, &[1, 2, 3], &Membership::new([1, 2, 3]))
        .await;
    let l = c.leader(G).await;
    // The leader hears nobody: its change is appended but cannot commit.
    for other in [1, 2, 3].into_iter().filter(|&n| n != l) {
        c.net.partition(l, other).await.unwrap();
    }
    let leader = c.nodes[&l].clone();
    let first = {
        let leader = leader.clone();
        tokio::spawn(async move {
            leader
                .change_membership(G, Membership::with_learners([1, 2, 3], [4]))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = leader
        .change_membership(G, Membership::with_learners([1, 2, 3], [5]))
        .await;
    assert_eq!(second, Err(Error::ChangeInProgress { group: G }));
    assert!(second.unwrap_err().is_retryable());
    assert_eq!(
        leader.add_learner(G, 5, None).await,
        Err(Error::ChangeInProgress { group: G })
    );
    // Check-quorum makes it step down: the first change's outcome is unknown, not a success.
    let first = first.await.unwrap();
    match &first {
        Err(e @ Error::ChangeOutcomeUnknown { group: G, .. }) => assert!(e.is_retryable()),
        other => panic!("expected ChangeOutcomeUnknown, got {other:?}"),
    }
    assert_ne!(leader.group_metrics(G).await.unwrap().role, Role::Leader);
    c.net.heal().await.unwrap();
    c.shutdown().await;
}

/// Nodes 1 to 4 hosting `G` as voters with their addresses, five writes in: the cluster and
/// its leader.
async fn four_voters_written() -> (Cluster, NodeId) {
    let c = Cluster::start(&[1, 2, 3, 4], config).await;
    c.bootstrap(G, &[1, 2, 3, 4], &addressed(&[1, 2, 3, 4]))
        .await;
    c.write(G, 5).await;
    let l = c.leader(G).await;
    (c, l)
}

/// Polls `node` until its calls for `G` answer `Removed`, for at most `limit`: whether they do.
async fn answers_removed(node: &Node<Counter>, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if node.propose(G, Cmd::Add(1)).await == Err(Error::Removed { group: G }) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(start_paused = true)]
async fn a_removed_node_stops_its_group_purges_it_and_answers_removed() {
    let (c, l) = four_voters_written().await;
    let v = [1, 2, 3, 4].into_iter().find(|&n| n != l).unwrap();
    let rest: Vec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&n| n != v).collect();
    let fin = c.nodes[&l]
        .change_membership(G, Membership::new(rest.iter().copied()))
        .await
        .unwrap();
    // The addresses of the nodes that stay are kept, the removed node's dropped.
    assert_eq!(c.nodes[&l].membership(G).await.unwrap(), addressed(&rest));
    // The removed node learns it (the leader keeps replicating to it until it holds the
    // committed removal), stops its group and answers `Removed`.
    let victim = &c.nodes[&v];
    assert!(
        answers_removed(victim, Duration::from_secs(5)).await,
        "node {v} never learned it was removed"
    );
    assert!(Error::Removed { group: G }.is_retryable());
    assert!(matches!(
        victim.group_metrics(G).await,
        Err(Error::Removed { group: G })
    ));
    assert!(victim.metrics().await.groups.is_empty());
    // The leader lets it go once it knows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lm = c.nodes[&l].group_metrics(G).await.unwrap();
    assert!(!lm.matched.contains_key(&v), "{lm:?}");
    assert!(lm.commit >= fin);
    // Its storage of the group was purged: joining again starts from an empty log.
    victim.join_partition(G, Counter::default()).await.unwrap();
    let vm = victim.group_metrics(G).await.unwrap();
    assert_eq!((vm.last_index, vm.membership), (0, Membership::default()));
    // The group goes on without it.
    c.write(G, 3).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_node_the_removing_leader_never_told_is_told_by_the_next_leader() {
    let (c, l) = four_voters_written().await;
    let mut others = [1, 2, 3, 4].into_iter().filter(|&n| n != l);
    let (v, next) = (others.next().unwrap(), others.next().unwrap());
    let rest: Vec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&n| n != v).collect();
    // Node `v` is cut off while it is removed: the removal commits without it, and after four
    // election timeouts without an answer the leader lets it go.
    c.net.isolate(v).await.unwrap();
    c.nodes[&l]
        .change_membership(G, Membership::new(rest.iter().copied()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lm = c.nodes[&l].group_metrics(G).await.unwrap();
    assert!(!lm.matched.contains_key(&v), "{lm:?}");
    // Leadership moves: the new leader's committed configuration already leaves `v` out, so
    // it never replicates to it.
    c.nodes[&l].transfer_leader(G, next).await.unwrap();
    assert_eq!(c.leader(G).await, next);
    let nm = c.nodes[&next].group_metrics(G).await.unwrap();
    assert!(!nm.matched.contains_key(&v), "{nm:?}");
    // Reconnected, `v` campaigns with its old configuration; the new leader hears it, brings
    // it the removal and tells it: it stops its group.
    c.net.heal().await.unwrap();
    assert!(
        answers_removed(&c.nodes[&v], Duration::from_secs(20)).await,
        "node {v} never learned it was removed"
    );
    assert!(c.nodes[&v].metrics().await.groups.is_empty());
    assert_eq!(c.leader(G).await, next, "no election on the way");
    c.write(G, 3).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn not_leader_carries_the_leaders_client_address() {
    let c = Cluster::start(&[1, 2, 3], config).await;
    c.bootstrap(G, &[1, 2, 3], &addressed(&[1, 2, 3])).await;
    let l = c.leader(G).await;
    c.write(G, 1).await;
    let f = [1, 2, 3].into_iter().find(|&n| n != l).unwrap();
    assert_eq!(
        c.nodes[&f].propose(G, Cmd::Add(1)).await,
        Err(Error::NotLeader {
            group: G,
            leader: Some(l),
            leader_addr: addrs(l).client,
        })
    );
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn addresses_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let m = addressed(&[1]);
    let expected = Membership::with_learners([1], [2])
        .with_addrs(1, addrs(1))
        .with_addrs(2, addrs(2));
    let start = || async {
        let (t, inbound) = MemNetwork::<WireMsg>::direct(&[1], &MemConfig::default())
            .unwrap()
            .remove(0);
        let node = Node::<Counter>::builder(config(1))
            .transport(t, inbound)
            .storage(Wal::open(WalConfig::new(dir.path())).expect("open wal"))
            .single_executor()
            .start()
            .await
            .unwrap();
        node.add_partition(G, m.clone(), Counter::default())
            .await
            .unwrap();
        node
    };
    let node = start().await;
    for _ in 0..100 {
        if node.group_metrics(G).await.unwrap().role == Role::Leader {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The initial configuration's addresses are in the bootstrap snapshot, the learner's in a
    // configuration entry.
    node.change_membership(G, expected.clone()).await.unwrap();
    assert_eq!(node.membership(G).await.unwrap(), expected);
    node.shutdown().await;
    drop(node);
    let node = start().await;
    assert_eq!(node.membership(G).await.unwrap(), expected);
    node.shutdown().await;
}

/// Nodes 1-3 in group `G` (addressed, snapshots every 20 entries, nothing kept behind), node
/// 4 joined with `sm` and added as a learner while cut off as the log moves on: it can only
/// catch up by installing a snapshot. Returns the cluster and the `add_learner` call.
async fn learner_behind_a_snapshot(
    sm: Counter,
) -> (
    Cluster,
    tokio::task::JoinHandle<Result<raft_core::Index, Error>>,
) {
    let c = Cluster::start(&[1, 2, 3, 4], |id| {
        let mut c = small_lag(id);
        c.raft.snapshot_threshold = 20;
        c.raft.compact_trailing = 0;
        c
    })
    .await;
    c.bootstrap(G, &[1, 2, 3], &addressed(&[1, 2, 3])).await;
    c.write(G, 5).await;
    let l = c.leader(G).await;
    let known = c.nodes[&l].membership(G).await.unwrap();
    c.nodes[&4].join_partition_with(G, sm, known).await.unwrap();
    // Node 4 is cut off while it is added and while the log moves on: the learner's
    // configuration entry is compacted into a snapshot before node 4 gets anything.
    c.net.isolate(4).await.unwrap();
    let adding = {
        let leader = c.nodes[&l].clone();
        tokio::spawn(async move { leader.add_learner(G, 4, Some(addrs(4))).await })
    };
    c.write(G, 60).await;
    c.net.heal().await.unwrap();
    (c, adding)
}

#[tokio::test(start_paused = true)]
async fn addresses_travel_in_an_installed_snapshot() {
    let (c, adding) = learner_behind_a_snapshot(Counter::default()).await;
    adding.await.unwrap().expect("the learner caught up");
    let m4 = c.nodes[&4].group_metrics(G).await.unwrap();
    assert!(m4.snapshots_installed >= 1, "{m4:?}");
    let expected = [1, 2, 3, 4]
        .into_iter()
        .fold(Membership::with_learners([1, 2, 3], [4]), |m, id| {
            m.with_addrs(id, addrs(id))
        });
    assert_eq!(c.nodes[&4].membership(G).await.unwrap(), expected);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_that_does_not_restore_stops_the_group_with_a_typed_error() {
    // Node 4's state machine refuses the snapshot it can only catch up by.
    let refusing = Counter {
        refuse_restore: true,
        ..Counter::default()
    };
    let (c, adding) = learner_behind_a_snapshot(refusing).await;
    let mut seen = None;
    for _ in 0..200 {
        match c.nodes[&4].read_stale(G, Query::Get).await {
            Err(e @ Error::SnapshotRestore { .. }) => {
                seen = Some(e);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let Some(Error::SnapshotRestore {
        group,
        index,
        reason,
    }) = seen
    else {
        panic!("node 4 never reported the failed restore");
    };
    assert_eq!(group, G);
    assert!(index > 5, "{index}");
    assert!(reason.contains("refuses snapshots"), "{reason}");
    // The group stays stopped with that error: every call for it answers it, and the node
    // applied nothing past what it could not restore.
    assert!(matches!(
        c.nodes[&4].group_metrics(G).await,
        Err(Error::SnapshotRestore { .. })
    ));
    assert!(matches!(
        c.nodes[&4].propose(G, Cmd::Add(1)).await,
        Err(Error::SnapshotRestore { .. })
    ));
    adding.abort();
    // The rest of the cluster goes on.
    c.write(G, 1).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn transport_peers_follow_the_membership_across_groups() {
    let mut c = Cluster::start(&[1, 2, 3, 4], config).await;
    c.bootstrap(G, &[1, 2, 3], &addressed(&[1, 2, 3])).await;
    let l = c.leader(G).await;
    c.write(G, 1).await;
    for id in [1, 2, 3] {
        let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&n| n != id).collect();
        assert_eq!(c.peers_of(id), peer_set(&others), "node {id}");
    }
    assert!(c.peers_of(4).is_empty());
    // A joining node adds the members it was told of before the leader contacts it.
    let known = c.nodes[&l].membership(G).await.unwrap();
    c.nodes[&4]
        .join_partition_with(G, Counter::default(), known)
        .await
        .unwrap();
    assert_eq!(c.peers_of(4), peer_set(&[1, 2, 3]));
    // The members add the learner from its configuration entry.
    c.nodes[&l].add_learner(G, 4, Some(addrs(4))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in [1, 2, 3] {
        assert!(c.peers_of(id).contains_key(&4), "node {id}");
    }
    // A second group on all four nodes names 4 too.
    c.bootstrap(G2, &[1, 2, 3, 4], &addressed(&[1, 2, 3, 4]))
        .await;
    c.write(G2, 1).await;
    // 4 leaves group 1: group 2 still needs the peers, nobody removes them.
    let l = c.leader(G).await;
    c.nodes[&l]
        .change_membership(G, Membership::new([1, 2, 3]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        c.nodes[&4].group_metrics(G).await,
        Err(Error::Removed { group: G })
    ));
    for id in [1, 2, 3] {
        assert!(c.peers_of(id).contains_key(&4), "node {id}");
    }
    assert_eq!(c.peers_of(4), peer_set(&[1, 2, 3]));
    // 4 leaves group 2 as well: no group names it on 1, 2 and 3, and none names them on 4.
    let l2 = c.leader(G2).await;
    c.nodes[&l2]
        .change_membership(G2, Membership::new([1, 2, 3]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in [1, 2, 3] {
        let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&n| n != id).collect();
        assert_eq!(c.peers_of(id), peer_set(&others), "node {id}");
    }
    assert!(c.peers_of(4).is_empty());
    c.shutdown().await;
}
