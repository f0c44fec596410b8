//! A counter server: one Raft node (TCP transport between servers, the WAL on disk) hosting
//! the counter group, plus the client port (`raft_net::rpc`).
//!
//! The client port is `raft_service::Server`: it turns each request into a `Node` call and
//! each `raft_actor::Error` into an answer the client can act on.

use std::net::SocketAddr;
use std::path::PathBuf;

use raft_actor::{HeartbeatExecutor, Node, NodeAddrs, NodeConfig, NodeId, WireMsg};
use raft_actor::{TcpConfig, TcpTransport, Wal, WalConfig};
use raft_net::Listeners;
use raft_service::{Client, ClientConfig, Server};
use tokio::net::TcpListener;
use tracing::info;

use crate::addrs::Peers;
use crate::error::ServerError;
use crate::machine::{Counter, GROUP};

/// The cluster id counter servers put in their Raft handshakes: a server of another
/// application (or a typo in a port) is refused instead of joining.
pub const CLUSTER_ID: u64 = 0xC0FF_EEC0;

/// How to run one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node (must be in `peers`).
    pub id: NodeId,
    /// Join a running cluster through these servers' client addresses (any member will do)
    /// instead of starting one: `peers` then needs only this node's own entry, and the
    /// members' addresses come from the cluster's configuration. Empty: start the cluster
    /// `peers` describes.
    pub join: Vec<SocketAddr>,
    /// Every node of the cluster (this one included) and its addresses.
    pub peers: Peers,
    /// Where this node's write-ahead log lives. Reusing it after a restart recovers the node.
    /// One server per directory.
    pub data_dir: PathBuf,
    /// The client port to bind.
    pub listen: SocketAddr,
    /// Raft timing and queue sizes (defaults: 50 ms heartbeats, 500 ms election timeout).
    pub node: NodeConfig,
    /// The client port's limits.
    pub service: raft_service::ServerConfig,
}

impl ServerConfig {
    /// Defaults for node `id`.
    pub fn new(id: NodeId, peers: Peers, data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            id,
            peers,
            join: Vec::new(),
            data_dir: data_dir.into(),
            listen,
            node: NodeConfig::new(id),
            service: raft_service::ServerConfig::default(),
        }
    }
}

/// A running counter server.
pub struct CounterServer {
    id: NodeId,
    node: Node<Counter>,
    server: Server,
}

impl CounterServer {
    /// Binds the Raft and client listeners, opens (or recovers) the WAL, starts the node and
    /// hosts the counter group. Call from inside a multi-threaded tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let id = config.id;
        let me = *config.peers.0.get(&id).ok_or(ServerError::NotInPeers(id))?;
        let listeners = Listeners::bind(me.raft).map_err(|source| ServerError::Bind {
            what: "raft (data, or heartbeat = data port + 1)",
            addr: me.raft.data,
            source,
        })?;
        let client_listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    what: "client",
                    addr: config.listen,
                    source,
                })?;
        let wal =
            Wal::open(WalConfig::new(&config.data_dir)).map_err(|source| ServerError::Storage {
                dir: config.data_dir.clone(),
                source,
            })?;
        // A joining node learns its peers from the cluster's configuration.
        let initial_peers = if config.join.is_empty() {
            config.peers.raft_addrs()
        } else {
            Default::default()
        };
        let net = TcpConfig::new(id, CLUSTER_ID, initial_peers);
        let (transport, inbound) = TcpTransport::<WireMsg>::start(net, listeners)?;
        let heartbeat = HeartbeatExecutor::Handle(transport.heartbeat_runtime());
        let mut node_config = config.node.clone();
        node_config.node_id = id;
        let node = Node::<Counter>::builder(node_config)
            .transport(transport, inbound)
            .storage(wal)
            .heartbeat_executor(heartbeat)
            .start()
            .await?;
        if config.join.is_empty() {
            if let Err(e) = node
                .add_partition(GROUP, config.peers.membership(), Counter::default())
                .await
            {
                node.shutdown().await;
                return Err(e.into());
            }
        }
        let server = match Server::serve(node.clone(), client_listener, config.service.clone()) {
            Ok(server) => server,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        if !config.join.is_empty() {
            let me = NodeAddrs {
                data: me.raft.data,
                heartbeat: me.raft.heartbeat,
                client: Some(server.local_addr()),
            };
            let joined = match Client::<Counter>::new(ClientConfig::new(config.join.clone())) {
                Ok(mut client) => {
                    raft_service::join(&node, GROUP, Counter::default(), me, true, &mut client)
                        .await
                        .map_err(ServerError::Join)
                }
                Err(e) => Err(ServerError::Join(e.into())),
            };
            if let Err(e) = joined {
                server.shutdown().await;
                node.shutdown().await;
                return Err(e);
            }
            info!(node = id, "joined the cluster as a voter");
        }
        info!(node = id, client = %server.local_addr(), raft = %me.raft.data, "counter server started");
        Ok(Self { id, node, server })
    }

    /// This server's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft node (metrics, leader transfer, ...).
    pub fn node(&self) -> &Node<Counter> {
        &self.node
    }

    /// The client port's bound address.
    pub fn client_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Closes the client port, then stops the node (bounded: shutdown as a message,
    /// docs/architecture.md).
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
        self.node.shutdown().await;
    }
}
