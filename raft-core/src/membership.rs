//! Cluster membership: voters, learners and the joint configuration used while voters change.
//!
//! A change of voters goes through joint consensus (Raft paper, section 6): the leader first
//! appends a *joint* configuration (`voters` = new set, `voters_outgoing` = old set) in which every
//! decision needs a majority of both sets, and once that entry commits it appends the final
//! configuration. Learners receive the log but never count toward a quorum.
//!
//! A configuration may also carry the network addresses of its members ([`NodeAddrs`]), so
//! they travel with the configuration entries and snapshots: every node that holds the
//! configuration knows how to reach the others, and a node that joins learns them from the
//! log. Clusters whose transport needs no address (in memory) leave them out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::MembershipError;
use crate::types::NodeId;

/// Where a member can be reached: the two lanes of the Raft transport and, optionally, the
/// service's own client listener (what a `NotLeader` answer points clients to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAddrs {
    /// The Raft transport's data-lane listener.
    pub data: SocketAddr,
    /// The Raft transport's heartbeat-lane listener.
    pub heartbeat: SocketAddr,
    /// The service's client listener, if it has one.
    pub client: Option<SocketAddr>,
}

/// A configuration of the group. `BTreeSet`s and `BTreeMap`s keep iteration order
/// deterministic (determinism, docs/architecture.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct Membership {
    /// The voters of the (incoming) configuration.
    pub voters: BTreeSet<NodeId>,
    /// The voters of the outgoing configuration while in joint consensus; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Nodes that receive the log but do not vote.
    pub learners: BTreeSet<NodeId>,
    /// The addresses of the members that have them; every key is a node of this configuration
    /// ([`Membership::validate`] refuses others). In-memory clusters may have none.
    pub addrs: BTreeMap<NodeId, NodeAddrs>,
}

impl Membership {
    /// A simple configuration with the given voters and no learners.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            ..Default::default()
        }
    }

    /// A simple configuration with voters and learners.
    pub fn with_learners(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
            ..Default::default()
        }
    }

    /// This configuration with `addrs` as the addresses of member `id` (builder style).
    pub fn with_addrs(mut self, id: NodeId, addrs: NodeAddrs) -> Self {
        self.set_addrs(id, addrs);
        self
    }

    /// Sets the addresses of member `id`, replacing any it had. [`Membership::validate`]
    /// refuses addresses of a node that is not a member.
    pub fn set_addrs(&mut self, id: NodeId, addrs: NodeAddrs) {
        self.addrs.insert(id, addrs);
    }

    /// The addresses of `id`, if the configuration has them.
    pub fn addrs_of(&self, id: NodeId) -> Option<&NodeAddrs> {
        self.addrs.get(&id)
    }

    /// True while in the joint configuration C(old,new).
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// True if `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// True if `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// True if `id` appears anywhere in the configuration.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every node of the configuration (voters of both halves and learners), in order.
    pub fn all_nodes(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// Number of distinct nodes in the configuration.
    pub fn node_count(&self) -> usize {
        self.all_nodes().len()
    }

    /// Checks the structural rules every configuration obeys.
    pub fn validate(&self) -> Result<(), MembershipError> {
        if self.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if self.all_nodes().contains(&0) {
            return Err(MembershipError::ReservedNodeId);
        }
        if let Some(&id) = self.learners.iter().find(|id| self.is_voter(**id)) {
            return Err(MembershipError::LearnerIsVoter(id));
        }
        if let Some(&id) = self.addrs.keys().find(|id| !self.contains(**id)) {
            return Err(MembershipError::AddrsOfNonMember(id));
        }
        Ok(())
    }

    /// The joint configuration that moves from `self` to `target` (both simple). Learners of
    /// the result are the target's learners; nodes in `target.voters` stop being learners.
    /// Addresses: the target's where it gives them, else those `self` had, for every node of
    /// the result (the outgoing voters keep theirs until the joint phase ends).
    pub fn enter_joint(&self, target: &Membership) -> Membership {
        let mut joint = Membership {
            voters: target.voters.clone(),
            voters_outgoing: self.voters.clone(),
            learners: target.learners.clone(),
            addrs: BTreeMap::new(),
        };
        joint.addrs = merged_addrs(&joint, &target.addrs, &self.addrs);
        joint
    }

    /// The configuration that leaves joint consensus: the incoming half only. Addresses of the
    /// nodes that leave are dropped.
    pub fn leave_joint(&self) -> Membership {
        let mut simple = Membership {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
            addrs: BTreeMap::new(),
        };
        simple.addrs = merged_addrs(&simple, &self.addrs, &BTreeMap::new());
        simple
    }

    /// `target` with the addresses `self` has for the nodes that stay and that `target` does
    /// not give: changing the voters or learners keeps the addresses of the nodes still
    /// present and drops those of the nodes removed.
    pub fn carry_addrs_into(&self, target: &Membership) -> Membership {
        let mut next = target.clone();
        next.addrs = merged_addrs(target, &target.addrs, &self.addrs);
        next
    }
}

/// The addresses of every node of `m`: from `first` where it has them, else from `second`.
fn merged_addrs(
    m: &Membership,
    first: &BTreeMap<NodeId, NodeAddrs>,
    second: &BTreeMap<NodeId, NodeAddrs>,
) -> BTreeMap<NodeId, NodeAddrs> {
    m.all_nodes()
        .into_iter()
        .filter_map(|id| first.get(&id).or_else(|| second.get(&id)).map(|a| (id, *a)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> NodeAddrs {
        NodeAddrs {
            data: ([10, 0, 0, 1], n).into(),
            heartbeat: ([10, 0, 0, 1], n + 1).into(),
            client: None,
        }
    }

    #[test]
    fn addresses_of_a_non_member_are_refused() {
        let m = Membership::new([1, 2]).with_addrs(2, addrs(2));
        assert_eq!(m.validate(), Ok(()));
        assert_eq!(
            m.with_addrs(3, addrs(3)).validate(),
            Err(MembershipError::AddrsOfNonMember(3))
        );
    }

    #[test]
    fn changes_keep_the_addresses_of_staying_nodes_and_drop_those_of_removed_ones() {
        let old = Membership::new([1, 2, 3])
            .with_addrs(1, addrs(10))
            .with_addrs(3, addrs(30));
        // The target moves node 1 and names no address for 3; 4 arrives with its own.
        let target = Membership::new([1, 2, 4])
            .with_addrs(1, addrs(11))
            .with_addrs(4, addrs(40));
        let joint = old.enter_joint(&target);
        assert_eq!(
            joint.addrs,
            [(1, addrs(11)), (3, addrs(30)), (4, addrs(40))].into()
        );
        assert_eq!(joint.validate(), Ok(()));
        let simple = joint.leave_joint();
        assert_eq!(simple.addrs, [(1, addrs(11)), (4, addrs(40))].into());
        let carried = old.carry_addrs_into(&Membership::with_learners([1, 2, 3], [5]));
        assert_eq!(carried.addrs, [(1, addrs(10)), (3, addrs(30))].into());
    }
}
