//! Admin calls on a [`KvClient`]: the cluster's status, leader transfer, and replica moves
//! (learner, caught up, voter, old replica removed: never fewer than R live replicas).

use std::collections::BTreeMap;
use std::time::Duration;

use raft_actor::{GroupId, NodeAddrs, NodeId};
use raft_service::{ClientError, NodeStatus};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::client::KvClient;
use crate::error::KvError;
use crate::hash::META_GROUP;
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
        self.placement_step(deadline, MetaCommand::BeginMove { group, from, to })
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
            .placement_step(deadline, MetaCommand::FinishMove { group, from, to })
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

/// What [`KvClient::rebalance`] and [`KvClient::remove_node`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebalanceReport {
    /// The replica moves made.
    pub moves: Vec<MoveReport>,
    /// Leader transfers made.
    pub transfers: usize,
}

impl KvClient {
    /// Registers node `id` at `addrs` in the placement (a server started with `--join`
    /// registers itself; this lets an operator do it first). It holds no replica until a
    /// rebalance or a move gives it some.
    pub async fn add_node(&mut self, id: NodeId, addrs: NodeAddrs) -> Result<u64, KvError> {
        self.change_placement(MetaCommand::AddNode { id, addrs })
            .await
    }

    /// Runs `plan`'s moves, `parallel` at a time (each on its own fork of this client).
    pub async fn run_moves(
        &mut self,
        plan: &[(GroupId, NodeId, NodeId)],
        parallel: usize,
        limit: Duration,
    ) -> Result<Vec<MoveReport>, KvError> {
        let mut done = Vec::new();
        for chunk in plan.chunks(parallel.max(1)) {
            let mut tasks = Vec::new();
            for &(group, from, to) in chunk {
                let mut fork = self.fork();
                tasks.push(tokio::spawn(async move {
                    fork.move_replica(group, from, to, limit).await
                }));
            }
            for t in tasks {
                let report = t
                    .await
                    .map_err(|e| KvError::Admin(format!("a move's task failed: {e}")))??;
                done.push(report);
            }
        }
        Ok(done)
    }

    /// Finishes every move the placement shows under way (one an admin started and did not
    /// finish: each step is safe to repeat).
    pub async fn finish_pending_moves(
        &mut self,
        parallel: usize,
        limit: Duration,
    ) -> Result<Vec<MoveReport>, KvError> {
        let pending: Vec<(GroupId, NodeId, NodeId)> = self
            .refresh()
            .await?
            .data_groups()
            .filter_map(|(g, s)| s.moving.map(|m| (g, m.from, m.to)))
            .collect();
        if !pending.is_empty() {
            info!(moves = pending.len(), "finishing moves under way");
        }
        self.run_moves(&pending, parallel, limit).await
    }

    /// Finishes moves under way, spreads replicas evenly over the nodes
    /// ([`Placement::rebalance_plan`], `parallel` moves at a time), then leaders
    /// ([`KvClient::balance_leaders`]).
    pub async fn rebalance(
        &mut self,
        parallel: usize,
        limit: Duration,
    ) -> Result<RebalanceReport, KvError> {
        let mut moves = self.finish_pending_moves(parallel, limit).await?;
        let plan = self.refresh().await?.rebalance_plan();
        info!(moves = plan.len(), "rebalancing");
        moves.extend(self.run_moves(&plan, parallel, limit).await?);
        let transfers = self.balance_leaders().await?;
        Ok(RebalanceReport { moves, transfers })
    }

    /// Hands leadership of groups whose leader leads more than its share (the groups over
    /// the nodes, rounded up) to a replica leading fewer. Best effort: a transfer that fails
    /// is skipped. Returns how many were asked for.
    pub async fn balance_leaders(&mut self) -> Result<usize, KvError> {
        let status = self.status().await?;
        let p = &status.placement;
        let mut leader_of: BTreeMap<GroupId, NodeId> = BTreeMap::new();
        let mut counts: BTreeMap<NodeId, usize> = p.nodes.keys().map(|id| (*id, 0)).collect();
        for (id, s) in &status.nodes {
            if let Ok(s) = s {
                for g in s.leads().filter(|g| p.shard(*g).is_some()) {
                    leader_of.insert(g, *id);
                    *counts.entry(*id).or_default() += 1;
                }
            }
        }
        let share = (p.groups as usize).div_ceil(p.nodes.len().max(1));
        let mut transfers = 0;
        for (group, leader) in leader_of {
            if counts.get(&leader).copied().unwrap_or(0) <= share {
                continue;
            }
            let Some(shard) = p.shard(group) else {
                continue;
            };
            let to = shard
                .replicas
                .iter()
                .filter(|r| **r != leader && counts.get(r).copied().unwrap_or(0) < share)
                .min_by_key(|r| (counts.get(r).copied().unwrap_or(0), **r))
                .copied();
            let Some(to) = to else { continue };
            match self.service().transfer_leader(group, to).await {
                Ok(()) => {
                    transfers += 1;
                    *counts.entry(leader).or_default() -= 1;
                    *counts.entry(to).or_default() += 1;
                }
                Err(e) => debug!(group, to, error = %e, "leader transfer skipped"),
            }
        }
        Ok(transfers)
    }

    /// Takes node `id` out of the cluster: finishes moves under way, moves each of its replicas to the least loaded
    /// node without one (`parallel` at a time; never fewer than R replicas), removes it
    /// from the metadata group if it votes there (refused if fewer than 3 voters would be
    /// left), and from the placement, then balances leaders. Its server then hosts nothing
    /// and can be stopped.
    pub async fn remove_node(
        &mut self,
        id: NodeId,
        parallel: usize,
        limit: Duration,
    ) -> Result<RebalanceReport, KvError> {
        let mut moves = self.finish_pending_moves(parallel, limit).await?;
        let p = self.refresh().await?;
        if !p.nodes.contains_key(&id) {
            return Err(KvError::Admin(format!("node {id} is not in the cluster")));
        }
        if p.meta_voters.contains(&id) && p.meta_voters.len() <= 3 {
            return Err(KvError::Admin(format!(
                "node {id} is one of the last 3 voters of the metadata group"
            )));
        }
        let plan = p.drain_plan(id).ok_or_else(|| {
            KvError::Admin(format!(
                "the replicas of node {id} cannot all move (too few other nodes, or a move under way)"
            ))
        })?;
        info!(node = id, moves = plan.len(), "removing a node");
        let deadline = Instant::now() + limit;
        moves.extend(self.run_moves(&plan, parallel, limit).await?);
        if p.meta_voters.contains(&id) {
            loop {
                match self.service().remove_node(META_GROUP, id).await {
                    Ok(_) => break,
                    Err(e) => wait_or_fail(deadline, "removing a metadata voter", e).await?,
                }
            }
        }
        self.placement_step(deadline, MetaCommand::RemoveNode { id })
            .await?;
        // The node's leaderships went to whichever replica won each election.
        let transfers = self.balance_leaders().await?;
        Ok(RebalanceReport { moves, transfers })
    }
}

impl KvClient {
    /// A placement change that is safe to repeat (each recognises that it was applied),
    /// tried again after a failure of the service call until `deadline`; a refusal ends it.
    async fn placement_step(
        &mut self,
        deadline: Instant,
        command: MetaCommand,
    ) -> Result<u64, KvError> {
        loop {
            match self.change_placement(command.clone()).await {
                Err(KvError::Client(e)) => {
                    wait_or_fail(deadline, "changing the placement", e).await?
                }
                other => return other,
            }
        }
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
