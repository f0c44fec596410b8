//! An in-process cluster: every node in this process, over in-memory channels.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use raft_actor::{Error, GroupClient, Node, NodeConfig, StorageMode, WireMsg};
use raft_core::{GroupId, Membership, NodeId, Role};
use raft_net::{MemConfig, MemNetwork};
use raft_storage::{MemStore, SyncMode, Wal, WalConfig};

use crate::cli::{StorageKind, SyncKind};
use crate::sm::{BenchSm, Write};

/// What every node of a run uses.
pub fn node_config(id: NodeId, groups: u64) -> NodeConfig {
    let mut cfg = NodeConfig::new(id);
    cfg.raft.seed = 0x9e37_79b9 ^ id;
    // Keep memory bounded on long runs: snapshot the (tiny) state machine every 100k entries.
    cfg.raft.snapshot_threshold = 100_000;
    // Many groups: give each node's shared queues room for one message per group.
    let per_group = usize::try_from(groups)
        .unwrap_or(usize::MAX)
        .saturating_mul(4);
    cfg.heartbeat_queue = cfg.heartbeat_queue.max(per_group);
    cfg.storage_queue = cfg.storage_queue.max(per_group);
    cfg
}

/// The nodes of an in-process run.
pub struct LocalCluster {
    /// Node `i` has id `i + 1`.
    pub nodes: Vec<Node<BenchSm>>,
    /// `groups[i][g - 1]`: node `i`'s handle on group `g`, looked up once (as a service
    /// holding a handle per group would; openraft's benchmark calls its `Raft` directly too).
    groups: Vec<Vec<GroupClient<BenchSm>>>,
}

impl LocalCluster {
    /// Starts `n` nodes, each hosting `groups` groups with every node a voter.
    pub async fn start(
        n: u64,
        groups: u64,
        storage: StorageKind,
        sync: SyncKind,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let ids: Vec<NodeId> = (1..=n).collect();
        let net_cfg = MemConfig {
            inbound_data_capacity: 65_536,
            inbound_heartbeat_capacity: 65_536.max(usize::try_from(groups)? * 2),
            ..MemConfig::default()
        };
        let transports =
            MemNetwork::<WireMsg>::direct(&ids, &net_cfg).context("in-memory network")?;
        let mut nodes = Vec::new();
        for (id, (t, inbound)) in ids.iter().zip(transports) {
            let builder = Node::<BenchSm>::builder(node_config(*id, groups)).transport(t, inbound);
            let builder = match storage {
                // Memory storage never blocks: run it as a task, not a thread of its own.
                StorageKind::Mem => builder
                    .storage(MemStore::new())
                    .storage_mode(StorageMode::Task),
                StorageKind::Wal => {
                    let mut wal_cfg = WalConfig::new(dir.join(format!("node-{id}")));
                    wal_cfg.sync = match sync {
                        SyncKind::Always => SyncMode::Always,
                        SyncKind::Never => SyncMode::Never,
                    };
                    builder.storage(Wal::open(wal_cfg).context("open WAL")?)
                }
            };
            nodes.push(builder.start().await.context("start node")?);
        }
        let membership = Membership::new(ids.iter().copied());
        for g in 1..=groups {
            for node in &nodes {
                node.add_partition(g, membership.clone(), BenchSm::default())
                    .await
                    .with_context(|| format!("add group {g}"))?;
            }
        }
        let groups = nodes
            .iter()
            .map(|node| (1..=groups).map(|g| node.group(g)).collect())
            .collect::<Result<_, _>>()
            .context("look up the groups")?;
        Ok(LocalCluster { nodes, groups })
    }

    /// Proposes on node `idx`.
    pub async fn propose(&self, idx: usize, group: GroupId, payload: &Bytes) -> Result<u64, Error> {
        let handle = group
            .checked_sub(1)
            .and_then(|g| usize::try_from(g).ok())
            .and_then(|g| self.groups.get(idx)?.get(g));
        match handle {
            Some(h) => h.propose(Write::Payload(payload.clone())).await,
            None => Err(Error::UnknownGroup(group)),
        }
    }

    /// Per node: the groups it leads and the sum over groups of terms it led.
    pub async fn statuses(&self) -> Vec<Option<(Vec<GroupId>, u64)>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            let groups = node.metrics().await.groups;
            out.push(Some((
                groups
                    .iter()
                    .filter(|g| g.role == Role::Leader)
                    .map(|g| g.group)
                    .collect(),
                groups.iter().map(|g| g.leader_terms).sum(),
            )));
        }
        out
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }
}
