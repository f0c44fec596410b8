//! A cluster of in-process nodes, each served on its own loopback port.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use raft_actor::{MemConfig, MemNetwork, MemStore, Membership, Node, NodeConfig, NodeId};
use raft_actor::{SnapshotMeta, StateMachine, WireMsg};
use raft_service::{Client, ClientConfig, Server, ServerConfig};
use serde::{Deserialize, Serialize};

/// The group every test uses.
pub const G: u64 = 1;

/// A counter that also counts how many commands it applied.
#[derive(Default)]
pub struct Counter {
    value: i64,
    applied: u64,
}

/// The counter's commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Cmd {
    /// Add to the value.
    Add(i64),
}

/// The counter's queries.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum Query {
    /// The value.
    Value,
    /// Commands applied so far.
    Applied,
}

impl StateMachine for Counter {
    type Command = Cmd;
    type Query = Query;
    type Response = i64;

    fn apply(&mut self, _index: u64, Cmd::Add(n): Cmd) -> i64 {
        self.value += n;
        self.applied += 1;
        self.value
    }
    fn query(&self, q: Query) -> i64 {
        match q {
            Query::Value => self.value,
            Query::Applied => self.applied as i64,
        }
    }
    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        postcard::to_io(&(self.value, self.applied), out).map_err(io::Error::other)?;
        Ok(())
    }
    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        let (value, applied) = postcard::from_bytes(&bytes).map_err(io::Error::other)?;
        self.value = value;
        self.applied = applied;
        Ok(())
    }
}

/// Nodes and their servers.
pub struct Cluster {
    pub nodes: Vec<Node<Counter>>,
    pub servers: Vec<Server>,
}

impl Cluster {
    /// `n` nodes hosting group `G`, each served on 127.0.0.1:0.
    pub async fn start(n: u64) -> anyhow::Result<Cluster> {
        Self::start_with(n, ServerConfig::default()).await
    }

    /// As [`Cluster::start`], each server with `server`'s settings.
    pub async fn start_with(n: u64, server: ServerConfig) -> anyhow::Result<Cluster> {
        let ids: Vec<NodeId> = (1..=n).collect();
        let network = MemNetwork::<WireMsg>::direct(&ids, &MemConfig::default())?;
        let (mut nodes, mut servers) = (Vec::new(), Vec::new());
        for (&id, (transport, inbound)) in ids.iter().zip(network) {
            let node = Node::<Counter>::builder(NodeConfig::new(id))
                .transport(transport, inbound)
                .storage(MemStore::new())
                .start()
                .await?;
            node.add_partition(G, Membership::new(ids.iter().copied()), Counter::default())
                .await?;
            servers.push(Server::bind(node.clone(), "127.0.0.1:0", server.clone()).await?);
            nodes.push(node);
        }
        Ok(Cluster { nodes, servers })
    }

    /// Every server's client address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.local_addr()).collect()
    }

    /// A client that knows every server, with short pauses.
    pub fn client(&self) -> anyhow::Result<Client<Counter>> {
        Ok(Client::new(config(self.addrs()))?)
    }

    /// The index of the node leading `G`, waiting for one (bounded).
    pub async fn leader(&self) -> anyhow::Result<usize> {
        for _ in 0..200 {
            for (i, n) in self.nodes.iter().enumerate() {
                if let Ok(m) = n.group_metrics(G).await {
                    if m.role == raft_actor::Role::Leader {
                        return Ok(i);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("no leader within 10 s")
    }

    /// Stops node `i` and its server.
    pub async fn stop(&self, i: usize) {
        self.servers[i].shutdown().await;
        self.nodes[i].shutdown().await;
    }

    /// Stops everything.
    pub async fn shutdown(&self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Client settings for tests: the given servers, short pauses, a seeded jitter.
pub fn config(servers: Vec<SocketAddr>) -> ClientConfig {
    let mut c = ClientConfig::new(servers);
    c.backoff_min = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(100);
    c.request_timeout = Duration::from_secs(20);
    c.seed = Some(7);
    c
}
