//! Admin calls on a [`KvClient`]: the cluster's status, leader transfer, and replica moves
//! (learner, caught up, voter, old replica removed: never fewer than R live replicas).

use std::collections::BTreeMap;
use std::time::Duration;

use raft_actor::{GroupId, NodeId};
use raft_service::{ClientError, NodeStatus};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::client::KvClient;
use crate::error::KvError;
use crate::placement::{MetaCommand, Placement};

/// The cluster's state: its placement and each node's view of the groups it hosts.
#[derive(Clone, Debug)]
pub struct ClusterStatus {
    /// The placement (nodes, addresses, each group's replicas).
    pub placement: Placement,
    /// Each node's status, or why it did not answer.
    pub nodes: BTreeMap<NodeId, Result<NodeStatus, String>>,
}

impl ClusterStatus {
    /// The status as text: one line per node (groups hosted, leaders held, the most entries
    /// any follower of its groups is behind), then one per group (replicas, leader, move
    /// under way).
    pub fn render(&self) -> String {
        let p = &self.placement;
        let mut out = format!(
            "placement v{}: {} groups x {} replicas on {} nodes\n",
            p.version,
            p.groups,
            p.replicas,
            p.nodes.len()
        );
        let mut leaders: BTreeMap<GroupId, NodeId> = BTreeMap::new();
        for (id, status) in &self.nodes {
            let client = p
                .nodes
                .get(id)
                .and_then(|a| a.client)
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into());
            match status {
                Ok(s) => {
                    let led: Vec<GroupId> = s.leads().collect();
                    for g in &led {
                        leaders.insert(*g, *id);
                    }
                    let lag = s.groups.iter().map(|g| g.max_lag).max().unwrap_or(0);
                    out.push_str(&format!(
                        "node {id} at {client}: {} groups hosted, {} led, max lag {lag}\n",
                        s.groups.len(),
                        led.len()
                    ));
                }
                Err(e) => out.push_str(&format!("node {id} at {client}: unreachable ({e})\n")),
            }
        }
        for (group, shard) in p.data_groups() {
            let replicas: Vec<String> = shard.replicas.iter().map(|r| r.to_string()).collect();
            let leader = leaders
                .get(&group)
                .map(|l| l.to_string())
                .unwrap_or_else(|| "?".into());
            let moving = shard
                .moving
                .map(|m| format!(", moving {} -> {}", m.from, m.to))
                .unwrap_or_default();
            out.push_str(&format!(
                "group {group}: replicas [{}], leader {leader}{moving}\n",
                replicas.join(",")
            ));
        }
        out
    }
}

/// What [`KvClient::move_replica`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveReport {
    /// The group.
    pub group: GroupId,
    /// The replica removed.
    pub from: NodeId,
    /// The replica added.
    pub to: NodeId,
    /// The placement's version once the move finished.
    pub version: u64,
}

impl KvClient {
    /// Every node's status and the placement.
    pub async fn status(&mut self) -> Result<ClusterStatus, KvError> {
        let placement = self.refresh().await?;
        let mut nodes = BTreeMap::new();
        for (id, addrs) in &placement.nodes {
            let status = match addrs.client {
                Some(addr) => self
                    .service()
                    .node_status(addr)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("no client address".into()),
            };
            nodes.insert(*id, status);
        }
        Ok(ClusterStatus {
            placement: (*placement).clone(),
            nodes,
        })
    }

    /// Hands `group`'s leadership to `to` (one of its replicas).
    pub async fn transfer_leader(&mut self, group: GroupId, to: NodeId) -> Result<(), KvError> {
        let p = self.refresh().await?;
        if !p.hosts(group).contains(&to) {
            return Err(KvError::Admin(format!(
                "node {to} does not host group {group}"
            )));
        }
        Ok(self.service().transfer_leader(group, to).await?)
    }

    /// Moves `group`'s replica on `from` to `to`: records the move in the placement, makes
    /// `to` a learner of the group (once its server hosts it) and waits until it has caught
    /// up, promotes it to voter, removes `from` from the group, and records the move as done.
    /// The group has its R replicas throughout, and R + 1 in between. Safe to call again after
    /// a failure: each step recognises that it was done. Gives up after `limit`.
    pub async fn move_replica(
        &mut self,
        group: GroupId,
        from: NodeId,
        to: NodeId,
        limit: Duration,
    ) -> Result<MoveReport, KvError> {
        let deadline = Instant::now() + limit;
        let p = self.refresh().await?;
        let addrs = *p
            .nodes
            .get(&to)
            .ok_or_else(|| KvError::Admin(format!("node {to} is not in the cluster")))?;
        info!(group, from, to, "moving a replica");
        self.change_placement(MetaCommand::BeginMove { group, from, to })
            .await?;
        // Learner, caught up, voter: retried until `to`'s server hosts the group and the
        // learner has caught up (the leader answers LearnerLagging meanwhile).
        loop {
            match self.service().add_node(group, to, addrs, true).await {
                Ok(_) => break,
                Err(e) => wait_or_fail(deadline, "adding the new replica", e).await?,
            }
        }
        loop {
            match self.service().remove_node(group, from).await {
                Ok(_) => break,
                Err(e) => wait_or_fail(deadline, "removing the old replica", e).await?,
            }
        }
        let version = self
            .change_placement(MetaCommand::FinishMove { group, from, to })
            .await?;
        info!(group, from, to, version, "replica moved");
        Ok(MoveReport {
            group,
            from,
            to,
            version,
        })
    }
}

/// After a failed step: the error once `deadline` has passed, otherwise a pause before the
/// step is tried again.
async fn wait_or_fail(deadline: Instant, what: &str, e: ClientError) -> Result<(), KvError> {
    if Instant::now() >= deadline {
        return Err(e.into());
    }
    debug!(error = %e, "{what}: retrying");
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
