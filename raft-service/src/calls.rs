//! The `Node` calls the server makes, one function per request kind: the only place that
//! knows which `Node` method answers what.

use std::net::SocketAddr;

use raft_actor::raft_core::{self, MembershipError};
use raft_actor::{
    Error, GroupId, Index, Membership, Node, NodeAddrs, NodeId, RequestId, StateMachine,
};

use crate::protocol::ReadKind;

/// Proposes an encoded command; answers with its index and response.
pub(crate) async fn propose<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
    session: Option<RequestId>,
    command: &[u8],
) -> Result<(Index, S::Response), Error> {
    node.propose_encoded(group, session, command).await
}

/// Reads; a stale read also answers the applied index it reflects.
pub(crate) async fn read<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
    kind: ReadKind,
    query: S::Query,
) -> Result<(Option<Index>, S::Response), Error> {
    match kind {
        ReadKind::Linearizable => Ok((None, node.read(group, query).await?)),
        ReadKind::Lease => Ok((None, node.read_lease(group, query).await?)),
        ReadKind::Stale => {
            let r = node.read_stale(group, query).await?;
            Ok((Some(r.applied), r.response))
        }
    }
}

/// Opens a session.
pub(crate) async fn open_session<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
) -> Result<u64, Error> {
    node.open_session(group).await
}

/// The group's configuration with addresses, as its leader has it (the newest). A follower
/// answers `NotLeader`, so that the client, which routes this call to the leader, does not
/// take it for one.
pub(crate) async fn members<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
) -> Result<Membership, Error> {
    let m = node.group_metrics(group).await?;
    if m.role != raft_actor::Role::Leader {
        let leader_addr = m
            .leader
            .and_then(|l| m.membership.addrs_of(l))
            .and_then(|a| a.client);
        return Err(Error::NotLeader {
            group,
            leader: m.leader,
            leader_addr,
        });
    }
    node.membership(group).await
}

/// Adds a node as a learner (resolving once it has caught up) and, with `voter`, promotes
/// it (resolving once the final configuration has committed). A node that already has the
/// asked-for role is left as it is, so a retry after an unknown outcome is harmless.
pub(crate) async fn add_node<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
    id: NodeId,
    addrs: NodeAddrs,
    voter: bool,
) -> Result<Index, Error> {
    let index = match node.add_learner(group, id, Some(addrs)).await {
        Ok(index) => index,
        Err(e) if is_voter_already(&e, id) => {
            // Settled only once no change is under way: a joint configuration may still
            // fall back to the one without it.
            let current = node.membership(group).await?;
            return if current.is_voter(id) && !current.is_joint() {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Err(e) => return Err(e),
    };
    if !voter {
        return Ok(index);
    }
    // The configuration as the learner's entry left it (and any change since).
    let mut target = node.membership(group).await?.leave_joint();
    target.learners.remove(&id);
    target.voters.insert(id);
    node.change_membership(group, target).await
}

/// `add_learner`'s refusal of `id` because it is a voter already.
fn is_voter_already(e: &Error, id: NodeId) -> bool {
    matches!(
        e,
        Error::Raft {
            source: raft_core::Error::Membership(MembershipError::LearnerIsVoter(v)),
            ..
        } if *v == id
    )
}

/// Removes a node (voter or learner).
pub(crate) async fn remove_node<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
    id: NodeId,
) -> Result<Index, Error> {
    let mut target = node.membership(group).await?.leave_joint();
    target.learners.remove(&id);
    target.voters.remove(&id);
    target.addrs.remove(&id);
    node.change_membership(group, target).await
}

/// The leader's client address a `NotLeader` error carries.
pub(crate) fn leader_addr(e: &Error) -> Option<SocketAddr> {
    match e {
        Error::NotLeader { leader_addr, .. } => *leader_addr,
        _ => None,
    }
}
