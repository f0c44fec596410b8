//! Cluster membership: voters, learners and the joint configuration used while voters change.
//!
//! A change of voters goes through joint consensus (Raft paper, section 6): the leader first
//! appends a *joint* configuration (`voters` = new set, `voters_outgoing` = old set) in which every
//! decision needs a majority of both sets, and once that entry commits it appends the final
//! configuration. Learners receive the log but never count toward a quorum.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::MembershipError;
use crate::types::NodeId;

/// A configuration of the group. `BTreeSet`s keep iteration order deterministic (determinism,
/// docs/architecture.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The voters of the (incoming) configuration.
    pub voters: BTreeSet<NodeId>,
    /// The voters of the outgoing configuration while in joint consensus; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Nodes that receive the log but do not vote.
    pub learners: BTreeSet<NodeId>,
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
            voters_outgoing: BTreeSet::new(),
            learners: learners.into_iter().collect(),
        }
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
        Ok(())
    }

    /// The joint configuration that moves from `self` to `target` (both simple). Learners of
    /// the result are the target's learners; nodes in `target.voters` stop being learners.
    pub fn enter_joint(&self, target: &Membership) -> Membership {
        Membership {
            voters: target.voters.clone(),
            voters_outgoing: self.voters.clone(),
            learners: target.learners.clone(),
        }
    }

    /// The configuration that leaves joint consensus: the incoming half only.
    pub fn leave_joint(&self) -> Membership {
        Membership {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }
}
