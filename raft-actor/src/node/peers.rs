//! The node's book of transport peers: which nodes the groups hosted here talk to, and which
//! of them this node added to the transport from the addresses in a group's configuration.
//!
//! Owned by the registry actor (no locks, I1 in docs/architecture.md). Every group tells the
//! registry its nodes whenever its configuration changes (appended, truncated, restored from a
//! snapshot or recovered); the book counts, per node, the groups that name it. A node whose
//! addresses a group's configuration gives is added to the transport (`Transport::add_peer`,
//! again if its addresses change); once no group of this node names it any more it is removed
//! (`Transport::remove_peer`). Nodes the book never added — the transport's own static peers,
//! or any peer of a transport that needs no address — are never removed by it.

use std::collections::BTreeMap;

use raft_core::{GroupId, NodeAddrs, NodeId};
use raft_net::PeerAddrs;
use tracing::{info, warn};

use crate::wire::Net;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    /// This node: never a peer of itself.
    me: NodeId,
    /// The nodes each group names (itself excluded), with the transport addresses its
    /// configuration gives.
    by_group: BTreeMap<GroupId, BTreeMap<NodeId, Option<PeerAddrs>>>,
    /// How many groups name each node.
    refs: BTreeMap<NodeId, usize>,
    /// The peers this book added to the transport, at these addresses.
    added: BTreeMap<NodeId, PeerAddrs>,
}

impl PeerBook {
    /// An empty book for node `me`.
    pub(crate) fn new(me: NodeId) -> Self {
        PeerBook {
            me,
            ..Default::default()
        }
    }

    /// `group` now names `nodes` (replacing what it named before): adds the nodes with
    /// addresses to the transport (or moves them), and removes those no group names any more.
    pub(crate) fn set_group(
        &mut self,
        net: &Net,
        group: GroupId,
        nodes: BTreeMap<NodeId, Option<NodeAddrs>>,
    ) {
        let me = self.me;
        let nodes: BTreeMap<NodeId, Option<PeerAddrs>> = nodes
            .into_iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, a)| {
                let lanes = a.map(|a| PeerAddrs {
                    data: a.data,
                    heartbeat: a.heartbeat,
                });
                (id, lanes)
            })
            .collect();
        for (&id, addrs) in &nodes {
            let Some(addrs) = addrs else { continue };
            if self.added.get(&id) == Some(addrs) {
                continue;
            }
            match net.add_peer(id, *addrs) {
                Ok(()) => {
                    info!(
                        group,
                        peer = id,
                        ?addrs,
                        "transport peer added from the membership"
                    );
                    self.added.insert(id, *addrs);
                }
                Err(e) => warn!(group, peer = id, error = %e, "transport refused a peer"),
            }
        }
        for &id in nodes.keys() {
            *self.refs.entry(id).or_default() += 1;
        }
        if let Some(old) = self.by_group.insert(group, nodes) {
            self.release(net, old.into_keys());
        }
    }

    /// `group` is gone from this node: its nodes lose one reference each.
    pub(crate) fn drop_group(&mut self, net: &Net, group: GroupId) {
        if let Some(old) = self.by_group.remove(&group) {
            self.release(net, old.into_keys());
        }
    }

    fn release(&mut self, net: &Net, ids: impl Iterator<Item = NodeId>) {
        for id in ids {
            let Some(n) = self.refs.get_mut(&id) else {
                continue;
            };
            *n -= 1;
            if *n > 0 {
                continue;
            }
            self.refs.remove(&id);
            if self.added.remove(&id).is_some() {
                info!(
                    peer = id,
                    "no group of this node names the peer any more; removed"
                );
                net.remove_peer(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use raft_net::{GroupId, Lane, MetricsSnapshot, SendError, Transport};

    use super::*;
    use crate::wire::WireMsg;

    /// A transport that records peer calls in a queue the test reads (no shared lock).
    struct Recording {
        calls: flume::Sender<(NodeId, Option<PeerAddrs>)>,
    }

    #[async_trait]
    impl Transport<WireMsg> for Recording {
        fn node_id(&self) -> NodeId {
            1
        }
        fn send(&self, _: NodeId, _: Lane, _: GroupId, _: WireMsg) -> Result<(), SendError> {
            Ok(())
        }
        fn metrics(&self) -> MetricsSnapshot {
            MetricsSnapshot::default()
        }
        fn add_peer(&self, id: NodeId, addrs: PeerAddrs) -> Result<(), raft_net::NetError> {
            let _ = self.calls.send((id, Some(addrs)));
            Ok(())
        }
        fn remove_peer(&self, id: NodeId) {
            let _ = self.calls.send((id, None));
        }
        async fn shutdown(&self) {}
    }

    fn addrs(n: u16) -> NodeAddrs {
        NodeAddrs {
            data: ([127, 0, 0, 1], n).into(),
            heartbeat: ([127, 0, 0, 1], n + 1).into(),
            client: None,
        }
    }

    fn lanes(n: u16) -> PeerAddrs {
        PeerAddrs {
            data: ([127, 0, 0, 1], n).into(),
            heartbeat: ([127, 0, 0, 1], n + 1).into(),
        }
    }

    #[test]
    fn peers_follow_the_groups_that_name_them() {
        let (tx, rx) = flume::unbounded();
        let net: Net = Arc::new(Recording { calls: tx });
        let mut book = PeerBook::new(1);
        let calls = || rx.try_iter().collect::<Vec<_>>();
        // Group 10 names 1 (itself, skipped), 2 with addresses and 3 without.
        book.set_group(
            &net,
            10,
            [(1, Some(addrs(100))), (2, Some(addrs(200))), (3, None)].into(),
        );
        assert_eq!(calls(), vec![(2, Some(lanes(200)))]);
        // Group 11 names 2 too, at the same addresses: nothing to do.
        book.set_group(&net, 11, [(2, Some(addrs(200)))].into());
        assert!(calls().is_empty());
        // Group 10 drops 2 and moves nowhere; 11 still names it.
        book.set_group(&net, 10, [(3, None)].into());
        assert!(calls().is_empty());
        // Group 11 moves 2 to new addresses.
        book.set_group(&net, 11, [(2, Some(addrs(300)))].into());
        assert_eq!(calls(), vec![(2, Some(lanes(300)))]);
        // Group 11 leaves: no group names 2 any more.
        book.drop_group(&net, 11);
        assert_eq!(calls(), vec![(2, None)]);
        // 3 was never added by the book: never removed by it.
        book.drop_group(&net, 10);
        assert!(calls().is_empty());
    }
}
