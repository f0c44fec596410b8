//! The `Node` calls the server makes, one function per request kind: the only place that
//! knows which `Node` method answers what.

use std::net::SocketAddr;

use raft_actor::{Error, GroupId, Index, Membership, Node, NodeId, RequestId, StateMachine};

use crate::protocol::{NodeAddrs, ReadKind};

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

/// The group's configuration with addresses.
pub(crate) async fn members<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
) -> Result<Membership, Error> {
    Ok(node.group_metrics(group).await?.membership)
}

/// Adds a node (learner, then voter).
pub(crate) async fn add_node<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
    id: NodeId,
    addrs: NodeAddrs,
    voter: bool,
) -> Result<Index, Error> {
    let _ = addrs;
    let index = node.add_learner(group, id).await?;
    if !voter {
        return Ok(index);
    }
    let mut target = node.group_metrics(group).await?.membership;
    target.learners.remove(&id);
    target.voters.insert(id);
    node.change_membership(group, target).await
}

/// Removes a node.
pub(crate) async fn remove_node<S: StateMachine>(
    node: &Node<S>,
    group: GroupId,
    id: NodeId,
) -> Result<Index, Error> {
    let mut target = node.group_metrics(group).await?.membership;
    target.learners.remove(&id);
    target.voters.remove(&id);
    node.change_membership(group, target).await
}

/// The leader's client address a `NotLeader` error carries.
pub(crate) fn leader_addr(e: &Error) -> Option<SocketAddr> {
    let _ = e;
    None
}
