//! Quorum arithmetic for simple majorities and joint configurations.
//!
//! Pure functions over a membership and a per-node value; the partition core owns the values.

use std::collections::BTreeSet;

use crate::membership::Membership;
use crate::types::{Index, NodeId};

/// Outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Not decided yet: enough voters have not answered.
    Pending,
    /// A majority (of both halves, when joint) refused.
    Lost,
    /// A majority (of both halves, when joint) granted.
    Won,
}

/// The largest index that a majority of `voters` has reached, given each voter's acknowledged
/// index. An empty voter set places no constraint (returns `Index::MAX`), which is what a joint
/// configuration's empty outgoing half must mean.
pub fn majority_index(voters: &BTreeSet<NodeId>, acked: impl Fn(NodeId) -> Index) -> Index {
    if voters.is_empty() {
        return Index::MAX;
    }
    let mut values: Vec<Index> = voters.iter().map(|&id| acked(id)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    // With n voters, a majority is n/2 + 1; the (n/2 + 1)-th highest value is reached by it.
    values[voters.len() / 2]
}

/// The largest index committed under `membership`: the smaller of the two halves' majorities.
pub fn committed_index(membership: &Membership, acked: impl Fn(NodeId) -> Index + Copy) -> Index {
    let incoming = majority_index(&membership.voters, acked);
    let outgoing = majority_index(&membership.voters_outgoing, acked);
    incoming.min(outgoing)
}

/// Counts votes of one simple voter set. `vote(id)` is `Some(true)` for granted, `Some(false)`
/// for refused, `None` for no answer yet.
pub fn majority_vote(
    voters: &BTreeSet<NodeId>,
    vote: impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let need = voters.len() / 2 + 1;
    let (mut yes, mut no) = (0, 0);
    for &id in voters {
        match vote(id) {
            Some(true) => yes += 1,
            Some(false) => no += 1,
            None => {}
        }
    }
    if yes >= need {
        VoteResult::Won
    } else if voters.len() - no < need {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// Counts votes under a possibly joint configuration: both halves must win.
pub fn joint_vote(
    membership: &Membership,
    vote: impl Fn(NodeId) -> Option<bool> + Copy,
) -> VoteResult {
    let a = majority_vote(&membership.voters, vote);
    let b = majority_vote(&membership.voters_outgoing, vote);
    match (a, b) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// True if the nodes satisfying `active` form a quorum of `membership` (both halves).
pub fn has_quorum(membership: &Membership, active: impl Fn(NodeId) -> bool + Copy) -> bool {
    joint_vote(membership, |id| Some(active(id))) == VoteResult::Won
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn majority_index_picks_the_median_reached_by_a_majority() {
        let acked = |id: NodeId| [0, 5, 3, 9, 1, 7][id as usize];
        assert_eq!(majority_index(&set(&[1, 2, 3]), acked), 5);
        assert_eq!(majority_index(&set(&[1, 2, 3, 4]), acked), 3);
        assert_eq!(majority_index(&set(&[1, 2, 3, 4, 5]), acked), 5);
        assert_eq!(majority_index(&set(&[3]), acked), 9);
        assert_eq!(majority_index(&set(&[]), acked), Index::MAX);
    }

    #[test]
    fn joint_commit_is_the_minimum_of_both_halves() {
        let m = Membership {
            voters: set(&[1, 2, 3]),
            voters_outgoing: set(&[3, 4, 5]),
            learners: set(&[]),
            addrs: Default::default(),
        };
        let acked = |id: NodeId| [0, 10, 10, 2, 1, 1][id as usize];
        assert_eq!(committed_index(&m, acked), 1);
    }

    #[test]
    fn votes_need_a_majority_of_each_half() {
        let m = Membership {
            voters: set(&[1, 2, 3]),
            voters_outgoing: set(&[4, 5, 6]),
            learners: set(&[]),
            addrs: Default::default(),
        };
        let v = |granted: &'static [NodeId], refused: &'static [NodeId]| {
            move |id: NodeId| {
                if granted.contains(&id) {
                    Some(true)
                } else if refused.contains(&id) {
                    Some(false)
                } else {
                    None
                }
            }
        };
        assert_eq!(joint_vote(&m, v(&[1, 2], &[])), VoteResult::Pending);
        assert_eq!(joint_vote(&m, v(&[1, 2, 4, 5], &[])), VoteResult::Won);
        assert_eq!(joint_vote(&m, v(&[1, 2], &[4, 5])), VoteResult::Lost);
        assert_eq!(
            majority_vote(&set(&[1, 2, 3, 4]), v(&[1], &[2, 3])),
            VoteResult::Lost
        );
        assert_eq!(
            majority_vote(&set(&[1, 2, 3, 4]), v(&[1, 2], &[3])),
            VoteResult::Pending
        );
    }
}
