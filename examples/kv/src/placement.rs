//! The placement: which nodes exist, where they listen, and which nodes hold each shard.
//!
//! It is replicated state: the metadata group ([`crate::hash::META_GROUP`]) applies
//! [`MetaCommand`]s to it, and every server reads it from there and acts on it (hosts the
//! groups it gives the server, drops the ones it no longer does, redirects clients asking for
//! groups it does not host). Every change bumps [`Placement::version`].
//!
//! A replica moves in four steps, each of which keeps at least R live replicas:
//! 1. [`MetaCommand::BeginMove`] records the move: the new node hosts the group as a joining
//!    node (`epoch` goes up, so no one ever creates the group afresh again);
//! 2. the group's leader adds it as a learner, waits until it has caught up, makes it a voter;
//! 3. the group's leader removes the old replica;
//! 4. [`MetaCommand::FinishMove`] replaces the old replica by the new one in the placement;
//!    the old node stops hosting the group.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use raft_actor::{GroupId, Membership, NodeAddrs, NodeId};
use serde::{Deserialize, Serialize};

use crate::hash::{group_of_shard, shard_of_group};

/// Why a placement or a change of it is refused. Travels in the metadata group's responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PlacementError {
    /// Fewer nodes than replicas, or zero groups or replicas.
    #[error("{groups} groups x {replicas} replicas cannot be placed on {nodes} nodes")]
    Impossible {
        /// Groups asked for.
        groups: u32,
        /// Replicas per group asked for.
        replicas: u32,
        /// Nodes available.
        nodes: usize,
    },
    /// The cluster was created with other settings.
    #[error("the cluster already exists with {groups} groups x {replicas} replicas")]
    AlreadyCreated {
        /// Its groups.
        groups: u32,
        /// Its replicas per group.
        replicas: u32,
    },
    /// No placement yet (the cluster's metadata group has not applied its creation).
    #[error("the cluster has no placement yet")]
    NotCreated,
    /// No such data group.
    #[error("group {0} is not a data group of this cluster")]
    UnknownGroup(GroupId),
    /// No such node.
    #[error("node {0} is not a node of this cluster")]
    UnknownNode(NodeId),
    /// A node is known with other addresses.
    #[error("node {0} is already known with other addresses")]
    AddressConflict(NodeId),
    /// A move that does not fit the group's replicas.
    #[error("group {group}: cannot move a replica from {from} to {to}: {reason}")]
    BadMove {
        /// The group.
        group: GroupId,
        /// The replica to move.
        from: NodeId,
        /// Where to.
        to: NodeId,
        /// Why not.
        reason: String,
    },
    /// Another move of the group is under way.
    #[error("group {group} is already moving a replica from {from} to {to}")]
    MoveInProgress {
        /// The group.
        group: GroupId,
        /// The replica being moved.
        from: NodeId,
        /// Where to.
        to: NodeId,
    },
    /// A node still holds replicas.
    #[error("node {node} still holds replicas of {groups} groups")]
    NodeInUse {
        /// The node.
        node: NodeId,
        /// How many groups it holds or is receiving.
        groups: usize,
    },
}

/// A replica move under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The replica leaving.
    pub from: NodeId,
    /// The replica arriving.
    pub to: NodeId,
}

/// One shard's replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// The nodes holding it (R of them, outside a move).
    pub replicas: BTreeSet<NodeId>,
    /// A move under way, if any.
    pub moving: Option<Move>,
    /// Moves begun on this shard. 0: its replicas are the ones it was created with, which
    /// create the group from that configuration; later, every new replica joins it.
    pub epoch: u64,
}

impl Shard {
    /// The nodes hosting the group now: its replicas and an arriving one.
    pub fn hosts(&self) -> BTreeSet<NodeId> {
        let mut h = self.replicas.clone();
        if let Some(m) = self.moving {
            h.insert(m.to);
        }
        h
    }
}

/// The whole placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Data groups (shards), fixed at creation.
    pub groups: u32,
    /// Replicas per group.
    pub replicas: u32,
    /// Every node of the cluster and its addresses (the client address included).
    pub nodes: BTreeMap<NodeId, NodeAddrs>,
    /// The voters of the metadata group (the nodes the cluster was created with).
    pub meta_voters: BTreeSet<NodeId>,
    /// Shard `s` is `shards[s]`, held by group [`group_of_shard`]`(s)`.
    pub shards: Vec<Shard>,
    /// Bumped by every change.
    pub version: u64,
}

impl Placement {
    /// The placement of a new cluster: shard `s` on the `replicas` nodes that follow the
    /// `s % n`-th node in id order (wrapping), so each node holds `groups * replicas / n`
    /// shards, give or take one. Every node of the new cluster computes the same one.
    pub fn initial(
        nodes: BTreeMap<NodeId, NodeAddrs>,
        groups: u32,
        replicas: u32,
    ) -> Result<Placement, PlacementError> {
        let ids: Vec<NodeId> = nodes.keys().copied().collect();
        if groups == 0 || replicas == 0 || ids.len() < replicas as usize {
            return Err(PlacementError::Impossible {
                groups,
                replicas,
                nodes: ids.len(),
            });
        }
        let shards = (0..groups as usize)
            .map(|s| Shard {
                replicas: (0..replicas as usize)
                    .map(|i| ids[(s + i) % ids.len()])
                    .collect(),
                moving: None,
                epoch: 0,
            })
            .collect();
        Ok(Placement {
            groups,
            replicas,
            meta_voters: ids.iter().copied().collect(),
            nodes,
            shards,
            version: 1,
        })
    }

    /// The shard of data group `group`.
    pub fn shard(&self, group: GroupId) -> Option<&Shard> {
        shard_of_group(group, self.groups).and_then(|s| self.shards.get(s as usize))
    }

    /// Every data group and its shard, in group order.
    pub fn data_groups(&self) -> impl Iterator<Item = (GroupId, &Shard)> {
        self.shards
            .iter()
            .enumerate()
            .map(|(s, shard)| (group_of_shard(s as u32), shard))
    }

    /// The nodes hosting `group` now (the metadata group's voters for it).
    pub fn hosts(&self, group: GroupId) -> BTreeSet<NodeId> {
        if group == crate::hash::META_GROUP {
            return self.meta_voters.clone();
        }
        self.shard(group).map(Shard::hosts).unwrap_or_default()
    }

    /// The client addresses of the nodes hosting `group`.
    pub fn host_addrs(&self, group: GroupId) -> Vec<SocketAddr> {
        self.hosts(group)
            .iter()
            .filter_map(|id| self.nodes.get(id).and_then(|a| a.client))
            .collect()
    }

    /// The groups node `id` hosts or is receiving, in group order.
    pub fn groups_of(&self, id: NodeId) -> Vec<GroupId> {
        self.data_groups()
            .filter(|(_, s)| s.hosts().contains(&id))
            .map(|(g, _)| g)
            .collect()
    }

    /// The configuration of `group` as the placement has it: its replicas as voters, with
    /// their addresses (what a node creating or joining the group is given).
    pub fn membership(&self, group: GroupId) -> Membership {
        let replicas = self
            .shard(group)
            .map(|s| s.replicas.clone())
            .unwrap_or_default();
        let mut m = Membership::new(replicas.iter().copied());
        for id in &replicas {
            if let Some(a) = self.nodes.get(id) {
                m.set_addrs(*id, *a);
            }
        }
        m
    }

    /// How many replicas (arriving ones included) each node holds.
    pub fn loads(&self) -> BTreeMap<NodeId, usize> {
        let mut loads: BTreeMap<NodeId, usize> = self.nodes.keys().map(|id| (*id, 0)).collect();
        for shard in &self.shards {
            for id in shard.hosts() {
                *loads.entry(id).or_default() += 1;
            }
        }
        loads
    }

    /// The moves, as `(group, from, to)`, that spread replicas evenly over the nodes (no two
    /// nodes' counts differ by more than one, when that can be reached by moving replicas of
    /// groups that are not moving already), each group moved at most once.
    pub fn rebalance_plan(&self) -> Vec<(GroupId, NodeId, NodeId)> {
        let mut loads = self.loads();
        let mut moved = BTreeSet::new();
        let mut plan = Vec::new();
        loop {
            let mut order: Vec<(usize, NodeId)> = loads.iter().map(|(id, n)| (*n, *id)).collect();
            order.sort_unstable();
            let (Some(&(low, to)), Some(&(high, from))) = (order.first(), order.last()) else {
                return plan;
            };
            if high <= low + 1 {
                return plan;
            }
            let pick = self.data_groups().find(|(g, s)| {
                s.moving.is_none()
                    && !moved.contains(g)
                    && s.replicas.contains(&from)
                    && !s.replicas.contains(&to)
            });
            let Some((group, _)) = pick else {
                return plan;
            };
            moved.insert(group);
            plan.push((group, from, to));
            *loads.entry(from).or_default() -= 1;
            *loads.entry(to).or_default() += 1;
        }
    }

    /// The moves, as `(group, node, to)`, that take every replica off `node`, each to the
    /// least loaded node that does not host the group yet. `None` if some group cannot go
    /// anywhere (fewer other nodes than replicas) or is moving already.
    pub fn drain_plan(&self, node: NodeId) -> Option<Vec<(GroupId, NodeId, NodeId)>> {
        let mut loads = self.loads();
        loads.remove(&node);
        let mut plan = Vec::new();
        for (group, shard) in self.data_groups() {
            if !shard.hosts().contains(&node) {
                continue;
            }
            if shard.moving.is_some() {
                return None;
            }
            let to = loads
                .iter()
                .filter(|(id, _)| !shard.replicas.contains(id))
                .min_by_key(|(id, n)| (**n, **id))
                .map(|(id, _)| *id)?;
            *loads.entry(to).or_default() += 1;
            plan.push((group, node, to));
        }
        Some(plan)
    }

    /// Applies `command`; on success the placement's new version.
    pub fn apply(&mut self, command: &MetaCommand) -> Result<u64, PlacementError> {
        match command {
            MetaCommand::Create(_) => {
                return Err(PlacementError::AlreadyCreated {
                    groups: self.groups,
                    replicas: self.replicas,
                });
            }
            MetaCommand::AddNode { id, addrs } => match self.nodes.get(id) {
                Some(a) if a == addrs => return Ok(self.version),
                Some(_) => return Err(PlacementError::AddressConflict(*id)),
                None => {
                    self.nodes.insert(*id, *addrs);
                }
            },
            MetaCommand::RemoveNode { id } => {
                if !self.nodes.contains_key(id) {
                    return Ok(self.version);
                }
                let groups = self.groups_of(*id).len()
                    + usize::from(
                        self.shards
                            .iter()
                            .any(|s| s.moving.is_some_and(|m| m.from == *id || m.to == *id)),
                    );
                if groups > 0 {
                    return Err(PlacementError::NodeInUse { node: *id, groups });
                }
                self.nodes.remove(id);
                self.meta_voters.remove(id);
            }
            MetaCommand::BeginMove { group, from, to } => {
                let (group, from, to) = (*group, *from, *to);
                let bad = |reason: &str| PlacementError::BadMove {
                    group,
                    from,
                    to,
                    reason: reason.into(),
                };
                if !self.nodes.contains_key(&to) {
                    return Err(PlacementError::UnknownNode(to));
                }
                let shard = shard_of_group(group, self.groups)
                    .and_then(|s| self.shards.get_mut(s as usize))
                    .ok_or(PlacementError::UnknownGroup(group))?;
                match shard.moving {
                    Some(m) if m == (Move { from, to }) => return Ok(self.version),
                    Some(m) => {
                        return Err(PlacementError::MoveInProgress {
                            group,
                            from: m.from,
                            to: m.to,
                        });
                    }
                    None => {}
                }
                if !shard.replicas.contains(&from) {
                    return Err(bad("the source is not a replica"));
                }
                if shard.replicas.contains(&to) {
                    return Err(bad("the target is a replica already"));
                }
                shard.moving = Some(Move { from, to });
                shard.epoch += 1;
            }
            MetaCommand::FinishMove { group, from, to } => {
                let (group, from, to) = (*group, *from, *to);
                let shard = shard_of_group(group, self.groups)
                    .and_then(|s| self.shards.get_mut(s as usize))
                    .ok_or(PlacementError::UnknownGroup(group))?;
                if shard.moving != Some(Move { from, to }) {
                    // Finished already (a retry) or never begun.
                    return if shard.replicas.contains(&to) && !shard.replicas.contains(&from) {
                        Ok(self.version)
                    } else {
                        Err(PlacementError::BadMove {
                            group,
                            from,
                            to,
                            reason: "no such move under way".into(),
                        })
                    };
                }
                shard.replicas.remove(&from);
                shard.replicas.insert(to);
                shard.moving = None;
            }
        }
        self.version += 1;
        Ok(self.version)
    }
}

/// A change of the placement, applied by the metadata group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Creates the cluster's placement if there is none (every node of a new cluster proposes
    /// the same one; the first applied wins, the others are answered `AlreadyCreated`).
    Create(Placement),
    /// A node joins the cluster (it holds no replica until moves give it some).
    AddNode {
        /// Its id.
        id: NodeId,
        /// Its addresses (with its client address).
        addrs: NodeAddrs,
    },
    /// A node leaves the cluster (and the placement's list of metadata voters: the caller
    /// removes it from the metadata group's configuration first); refused while it holds
    /// replicas.
    RemoveNode {
        /// Its id.
        id: NodeId,
    },
    /// Step 1 of a move: `to` starts hosting `group` as a joining node.
    BeginMove {
        /// The data group.
        group: GroupId,
        /// The replica leaving.
        from: NodeId,
        /// The node arriving.
        to: NodeId,
    },
    /// Step 4 of a move: `to` replaces `from` (after the group's configuration did).
    FinishMove {
        /// The data group.
        group: GroupId,
        /// The replica leaving.
        from: NodeId,
        /// The node arriving.
        to: NodeId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(id: NodeId) -> NodeAddrs {
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        NodeAddrs {
            data: at(7000 + id as u16 * 10),
            heartbeat: at(7001 + id as u16 * 10),
            client: Some(at(7002 + id as u16 * 10)),
        }
    }

    fn nodes(n: u64) -> BTreeMap<NodeId, NodeAddrs> {
        (1..=n).map(|id| (id, addrs(id))).collect()
    }

    #[test]
    fn initial_placement_is_even_and_refuses_too_few_nodes() {
        let p = Placement::initial(nodes(5), 64, 3).unwrap();
        for id in 1..=5 {
            let n = p.groups_of(id).len();
            assert!((38..=39).contains(&n), "node {id} holds {n}");
        }
        assert!(p.shards.iter().all(|s| s.replicas.len() == 3));
        assert_eq!(p.host_addrs(crate::hash::META_GROUP).len(), 5);
        assert_eq!(p.membership(2).voters.len(), 3);
        assert_eq!(p.membership(2).addrs.len(), 3);
        assert!(matches!(
            Placement::initial(nodes(2), 64, 3),
            Err(PlacementError::Impossible { .. })
        ));
        assert!(Placement::initial(nodes(3), 0, 3).is_err());
    }

    #[test]
    fn a_move_adds_before_it_removes_and_retries_are_harmless() {
        let mut p = Placement::initial(nodes(3), 4, 3).unwrap();
        p.apply(&MetaCommand::AddNode {
            id: 4,
            addrs: addrs(4),
        })
        .unwrap();
        let begin = MetaCommand::BeginMove {
            group: 2,
            from: 1,
            to: 4,
        };
        let v = p.apply(&begin).unwrap();
        assert_eq!(p.apply(&begin), Ok(v), "a retried begin changes nothing");
        assert_eq!(
            p.hosts(2),
            [1, 2, 3, 4].into(),
            "both hosts during the move"
        );
        assert!(matches!(
            p.apply(&MetaCommand::BeginMove {
                group: 2,
                from: 2,
                to: 4
            }),
            Err(PlacementError::MoveInProgress { .. })
        ));
        assert!(matches!(
            p.apply(&MetaCommand::RemoveNode { id: 4 }),
            Err(PlacementError::NodeInUse { .. })
        ));
        let finish = MetaCommand::FinishMove {
            group: 2,
            from: 1,
            to: 4,
        };
        let v = p.apply(&finish).unwrap();
        assert_eq!(p.apply(&finish), Ok(v));
        assert_eq!(p.hosts(2), [2, 3, 4].into());
        assert_eq!(p.shard(2).unwrap().epoch, 1);
        assert!(matches!(
            p.apply(&MetaCommand::BeginMove {
                group: 2,
                from: 1,
                to: 2
            }),
            Err(PlacementError::BadMove { .. })
        ));
        assert!(matches!(
            p.apply(&MetaCommand::BeginMove {
                group: 99,
                from: 2,
                to: 1
            }),
            Err(PlacementError::UnknownGroup(99))
        ));
        assert_eq!(
            p.apply(&MetaCommand::AddNode {
                id: 4,
                addrs: addrs(5)
            }),
            Err(PlacementError::AddressConflict(4))
        );
    }

    /// Applies a plan's moves as the admin would (begin, finish).
    fn run(p: &mut Placement, plan: &[(GroupId, NodeId, NodeId)]) {
        for &(group, from, to) in plan {
            p.apply(&MetaCommand::BeginMove { group, from, to })
                .unwrap();
            p.apply(&MetaCommand::FinishMove { group, from, to })
                .unwrap();
        }
    }

    #[test]
    fn rebalance_fills_a_new_node_and_drain_empties_one() {
        let mut p = Placement::initial(nodes(5), 64, 3).unwrap();
        assert!(
            p.rebalance_plan().is_empty(),
            "an initial placement is balanced"
        );
        p.apply(&MetaCommand::AddNode {
            id: 6,
            addrs: addrs(6),
        })
        .unwrap();
        let plan = p.rebalance_plan();
        assert_eq!(plan.len(), 32, "{plan:?}");
        run(&mut p, &plan);
        let loads = p.loads();
        assert!(loads.values().all(|n| *n == 32), "{loads:?}");
        assert!(p.shards.iter().all(|s| s.replicas.len() == 3));
        let drain = p.drain_plan(3).unwrap();
        assert_eq!(drain.len(), 32);
        run(&mut p, &drain);
        assert_eq!(p.loads()[&3], 0);
        assert!(
            p.shards
                .iter()
                .all(|s| s.replicas.len() == 3 && !s.replicas.contains(&3))
        );
        let loads = p.loads();
        assert!(
            loads
                .iter()
                .filter(|(id, _)| **id != 3)
                .all(|(_, n)| (38..=39).contains(n))
        );
        p.apply(&MetaCommand::RemoveNode { id: 3 }).unwrap();
        assert!(!p.nodes.contains_key(&3) && !p.meta_voters.contains(&3));
        // Three nodes of three replicas: nowhere to drain to.
        let q = Placement::initial(nodes(3), 4, 3).unwrap();
        assert_eq!(q.drain_plan(1), None);
    }
}
