//! Shared test fixtures: a counter state machine and an in-memory cluster on paused time.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use raft_actor::{Error, Node, NodeConfig, SnapshotMeta, StateMachine, WireMsg};
use raft_core::{GroupId, Membership, NodeId, Role};
use raft_net::{MemConfig, MemNetwork};
use raft_storage::{MemStore, Wal, WalConfig};
use serde::{Deserialize, Serialize};

/// A replicated counter that also records every applied index (to check order).
#[derive(Default)]
pub struct Counter {
    pub value: i64,
    pub applied: Vec<u64>,
    /// Fail every `restore` (to test what a node does with a snapshot it cannot restore).
    pub refuse_restore: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Cmd {
    Add(i64),
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Query {
    Get,
    /// The index `apply` was called with the `n`-th time (from 0), or -1.
    AppliedAt(usize),
    /// How many times `apply` was called.
    Applies,
}

impl StateMachine for Counter {
    type Command = Cmd;
    type Query = Query;
    type Response = i64;

    fn apply(&mut self, index: u64, command: Cmd) -> i64 {
        self.applied.push(index);
        match command {
            Cmd::Add(n) => self.value += n,
        }
        self.value
    }

    fn query(&self, q: Query) -> i64 {
        match q {
            Query::Get => self.value,
            Query::AppliedAt(n) => self.applied.get(n).map_or(-1, |&i| i as i64),
            Query::Applies => self.applied.len() as i64,
        }
    }

    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        postcard::to_io(&self.value, out).map_err(io::Error::other)?;
        Ok(())
    }
    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        if self.refuse_restore {
            return Err(io::Error::other("this counter refuses snapshots (test)"));
        }
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        self.value = postcard::from_bytes(&bytes).map_err(io::Error::other)?;
        Ok(())
    }
}

pub fn config(id: NodeId) -> NodeConfig {
    let mut c = NodeConfig::new(id);
    c.raft.seed = 42;
    c
}

/// Starts one node per transport, everything on the current (paused) runtime.
async fn start_nodes(
    ids: &[NodeId],
    transports: Vec<raft_net::mem::MemNode<WireMsg>>,
    cfg: impl Fn(NodeId) -> NodeConfig,
) -> BTreeMap<NodeId, Node<Counter>> {
    let mut nodes = BTreeMap::new();
    for (id, (t, inbound)) in ids.iter().zip(transports) {
        let node = Node::<Counter>::builder(cfg(*id))
            .transport(t, inbound)
            .storage(MemStore::new())
            .single_executor()
            .start()
            .await
            .expect("start");
        nodes.insert(*id, node);
    }
    nodes
}

/// A cluster of nodes on an in-memory network, all on the current (paused) runtime.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node<Counter>>,
    pub net: Option<MemNetwork<WireMsg>>,
}

impl Cluster {
    /// Nodes on a fault-free in-memory network.
    pub async fn start(ids: &[NodeId], cfg: impl Fn(NodeId) -> NodeConfig) -> Cluster {
        let transports =
            MemNetwork::<WireMsg>::direct(ids, &MemConfig::default()).expect("network");
        Cluster {
            nodes: start_nodes(ids, transports, cfg).await,
            net: None,
        }
    }

    /// Nodes on an in-memory network whose faults the test controls (`net`).
    pub async fn start_with_faults(
        ids: &[NodeId],
        cfg: impl Fn(NodeId) -> NodeConfig,
        seed: u64,
    ) -> Cluster {
        let (net, transports) =
            MemNetwork::<WireMsg>::with_faults(ids, &MemConfig::default(), seed).expect("network");
        Cluster {
            nodes: start_nodes(ids, transports, cfg).await,
            net: Some(net),
        }
    }

    pub async fn add_group(&self, group: GroupId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for node in self.nodes.values() {
            node.add_partition(
                group,
                Membership::new(ids.iter().copied()),
                Counter::default(),
            )
            .await
            .expect("add");
        }
    }

    /// Waits (in simulated time) until a node leads `group`; returns it.
    pub async fn leader(&self, group: GroupId) -> NodeId {
        leader_among(self.nodes.values(), group).await.id()
    }

    /// Proposes at the current leader, following hints and retrying on retryable errors.
    pub async fn propose(&self, group: GroupId, cmd: Cmd) -> Result<i64, Error> {
        let mut last = Error::Stopped;
        for _ in 0..100 {
            let leader = self.leader(group).await;
            match self.nodes[&leader].propose(group, cmd.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => last = e,
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(last)
    }

    /// Opens a client session at the current leader, retrying on retryable errors.
    pub async fn open_session(&self, group: GroupId) -> u64 {
        let nodes: Vec<Node<Counter>> = self.nodes.values().cloned().collect();
        open_session(&nodes, group).await
    }

    pub async fn shutdown(&self) {
        for n in self.nodes.values() {
            n.shutdown().await;
        }
    }
}

/// Opens a client session at whichever of `nodes` leads `group`, following hints and
/// retrying on retryable errors.
pub async fn open_session(nodes: &[Node<Counter>], group: GroupId) -> u64 {
    let mut at = 0usize;
    for _ in 0..1000 {
        match nodes[at % nodes.len()].open_session(group).await {
            Ok(id) => return id,
            Err(Error::NotLeader {
                leader: Some(l), ..
            }) => {
                at = nodes.iter().position(|n| n.id() == l).unwrap_or(at + 1);
            }
            Err(e) if e.is_retryable() => at += 1,
            Err(e) => panic!("open_session: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no session opened for group {group}");
}

/// Waits until one of `nodes` leads `group` (the one of the newest term, if an older leader
/// has not heard of it yet); returns it. Panics after 30 s (simulated, on paused time).
pub async fn leader_among<'a, I>(nodes: I, group: GroupId) -> Node<Counter>
where
    I: IntoIterator<Item = &'a Node<Counter>> + Clone,
{
    for _ in 0..600 {
        let mut leader: Option<(u64, &Node<Counter>)> = None;
        for n in nodes.clone() {
            if let Ok(m) = n.group_metrics(group).await {
                if m.role == Role::Leader && leader.is_none_or(|(term, _)| m.term > term) {
                    leader = Some((m.term, n));
                }
            }
        }
        if let Some((_, n)) = leader {
            return n.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader for group {group} within 30 s");
}

/// Nodes 1, 2 and 3 on an in-memory network, each with its WAL in its directory of `dirs`
/// (start again on the same directories to restart them), with settings `cfg(id)`, hosting
/// `group` with all three as voters. Real threads and files: not for paused time.
pub async fn start_on_wal(
    dirs: &[tempfile::TempDir],
    group: GroupId,
    cfg: impl Fn(NodeId) -> NodeConfig,
) -> Vec<Node<Counter>> {
    let ids = [1u64, 2, 3];
    let transports = MemNetwork::<WireMsg>::direct(&ids, &MemConfig::default()).expect("network");
    let mut nodes = Vec::new();
    for ((id, (t, inbound)), dir) in ids.iter().zip(transports).zip(dirs) {
        let wal = Wal::open(WalConfig::new(dir.path())).expect("open wal");
        let node = Node::<Counter>::builder(cfg(*id))
            .transport(t, inbound)
            .storage(wal)
            .start()
            .await
            .expect("start");
        node.add_partition(group, Membership::new(ids), Counter::default())
            .await
            .expect("add");
        nodes.push(node);
    }
    nodes
}
