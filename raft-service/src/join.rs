//! Joining a running cluster: a node started empty, knowing only its own addresses and one
//! member's client address, becomes a member of a group without anyone restarting.

use raft_actor::{GroupId, Index, NodeAddrs, StateMachine};

use crate::client::{Client, ClientError};

/// Why [`join`] failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The cluster could not be asked, or refused (see [`ClientError::is_in_doubt`]: an
    /// addition whose outcome is unknown can simply be asked for again).
    #[error("asking the cluster: {0}")]
    Cluster(#[from] ClientError),
    /// This node could not host the group.
    #[error("hosting the group: {0}")]
    Node(#[from] raft_actor::Error),
}

/// Makes `node` a member of `group`, served by the cluster `client` reaches (any one member's
/// client address is enough):
///
/// 1. it asks the cluster for the group's configuration, with every member's addresses;
/// 2. `node` hosts the group as a joining node, with those members as its transport's peers,
///    so it can answer the leader before the log reaches it;
/// 3. it asks the leader to add `node` at `me`: as a learner, answered once it has caught up,
///    then with `voter` promoted, answered once the final configuration has committed.
///
/// If `node`'s storage already holds the group (a restart), the group is recovered from it,
/// and asking again to be added changes nothing: joining is safe to repeat. Returns the index
/// of the configuration entry that made `node` a member (0 if it already was one).
pub async fn join<S: StateMachine>(
    node: &raft_actor::Node<S>,
    group: GroupId,
    sm: S,
    me: NodeAddrs,
    voter: bool,
    client: &mut Client<S>,
) -> Result<Index, JoinError> {
    let members = client.members(group).await?;
    node.join_partition_with(group, sm, members).await?;
    Ok(client.add_node(group, node.id(), me, voter).await?)
}
