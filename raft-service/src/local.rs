//! A whole cluster in one process: `n` nodes on the in-memory network, each served on its own
//! loopback port by a [`Server`]. For tests, examples and trying a state machine out; a
//! production deployment runs one node per process over TCP with the WAL.
//!
//! ```
//! # use raft_service::doc_support::{Add, Counter};
//! use raft_service::local::LocalCluster;
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
//! let mut client = cluster.client()?;
//! assert_eq!(client.propose(1, Add(2)).await?.response, 2);
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;

use raft_actor::raft_net::NetError;
use raft_actor::{GroupId, MemConfig, MemNetwork, MemStore, Membership, Node, NodeAddrs};
use raft_actor::{NodeConfig, NodeId, StateMachine, WireMsg};
use tokio::net::TcpListener;

use crate::client::{Client, ClientConfig, ClientError};
use crate::server::{Servable, Server, ServerConfig};

/// Why a [`LocalCluster`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A node or the in-memory network refused its configuration.
    #[error("node: {0}")]
    Node(#[from] raft_actor::Error),
    /// The in-memory network refused its configuration.
    #[error("network: {0}")]
    Network(#[from] raft_actor::raft_net::ConfigError),
    /// A server could not listen.
    #[error("server: {0}")]
    Net(#[from] raft_actor::raft_net::NetError),
}

/// Nodes `1..=n` hosting one group, each served on 127.0.0.1.
pub struct LocalCluster<S: StateMachine> {
    nodes: Vec<Node<S>>,
    servers: Vec<Server>,
}

impl<S: StateMachine> std::fmt::Debug for LocalCluster<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("servers", &self.addrs())
            .finish_non_exhaustive()
    }
}

impl<S: Servable> LocalCluster<S> {
    /// Starts nodes `1..=n` with default settings, each hosting `group` with every node as a
    /// voter and the state machine `make(id)`, and serves each on a loopback port.
    pub async fn start(
        n: u64,
        group: GroupId,
        make: impl FnMut(NodeId) -> S,
    ) -> Result<Self, LocalError> {
        Self::start_with(n, group, NodeConfig::new, make).await
    }

    /// As [`LocalCluster::start`], with each node's settings from `config(id)`.
    pub async fn start_with(
        n: u64,
        group: GroupId,
        mut config: impl FnMut(NodeId) -> NodeConfig,
        mut make: impl FnMut(NodeId) -> S,
    ) -> Result<Self, LocalError> {
        let ids: Vec<NodeId> = (1..=n).collect();
        let network = MemNetwork::<WireMsg>::direct(&ids, &MemConfig::default())?;
        // The client listeners first: their addresses go into the configuration, so that a
        // node that does not lead answers with the leader's client address.
        let mut listeners = Vec::new();
        for _ in &ids {
            listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(NetError::from)?,
            );
        }
        let mut members = Membership::new(ids.iter().copied());
        // The in-memory network needs no Raft addresses: they are left unspecified.
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        for (&id, l) in ids.iter().zip(&listeners) {
            let client = Some(l.local_addr().map_err(NetError::from)?);
            members.set_addrs(
                id,
                NodeAddrs {
                    data: none,
                    heartbeat: none,
                    client,
                },
            );
        }
        let mut cluster = LocalCluster {
            nodes: Vec::new(),
            servers: Vec::new(),
        };
        for ((&id, (transport, inbound)), listener) in ids.iter().zip(network).zip(listeners) {
            let started = Node::<S>::builder(config(id))
                .transport(transport, inbound)
                .storage(MemStore::new())
                .start()
                .await;
            let node = match started {
                Ok(node) => node,
                Err(e) => {
                    cluster.shutdown().await;
                    return Err(e.into());
                }
            };
            cluster.nodes.push(node.clone());
            if let Err(e) = node.add_partition(group, members.clone(), make(id)).await {
                cluster.shutdown().await;
                return Err(e.into());
            }
            match Server::serve(node, listener, ServerConfig::default()) {
                Ok(server) => cluster.servers.push(server),
                Err(e) => {
                    cluster.shutdown().await;
                    return Err(e.into());
                }
            }
        }
        Ok(cluster)
    }
}

impl<S: StateMachine> LocalCluster<S> {
    /// Every server's client address, in node id order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(Server::local_addr).collect()
    }

    /// A client that knows every server.
    pub fn client(&self) -> Result<Client<S>, ClientError> {
        Client::new(ClientConfig::new(self.addrs()))
    }

    /// Node `id`, if it is part of the cluster.
    pub fn node(&self, id: NodeId) -> Option<&Node<S>> {
        self.nodes.iter().find(|n| n.id() == id)
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> &[Node<S>] {
        &self.nodes
    }

    /// Stops node `id`'s server and node (the others keep running).
    pub async fn stop(&self, id: NodeId) {
        if let Some(i) = self.nodes.iter().position(|n| n.id() == id) {
            if let Some(s) = self.servers.get(i) {
                s.shutdown().await;
            }
            self.nodes[i].shutdown().await;
        }
    }

    /// Stops every server and node.
    pub async fn shutdown(&self) {
        for s in &self.servers {
            s.shutdown().await;
        }
        for n in &self.nodes {
            n.shutdown().await;
        }
    }
}
