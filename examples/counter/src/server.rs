//! A counter server: one Raft node (TCP transport between servers, the WAL on disk) hosting
//! the counter group, plus the client port (`raft_net::rpc`).
//!
//! The client port's handler turns each [`Request`] into a `Node` call and each
//! `raft_actor::Error` into a [`Response`] the client can act on: `NotLeader` carries the
//! leader's client address when `--peers` lists it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use raft_actor::{Error, HeartbeatExecutor, Node, NodeConfig, WireMsg};
use raft_core::{Membership, NodeId};
use raft_net::{Listeners, RpcServer, RpcServerConfig, TcpConfig, TcpTransport};
use raft_storage::{Wal, WalConfig};
use tokio::net::TcpListener;
use tracing::info;

use crate::addrs::Peers;
use crate::error::ServerError;
use crate::machine::{Command, Counter, GROUP, Query};
use crate::protocol::{Request, Response, Status};

/// The cluster id counter servers put in their Raft handshakes: a server of another
/// application (or a typo in a port) is refused instead of joining.
pub const CLUSTER_ID: u64 = 0xC0FF_EEC0;

/// How to run one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node (must be in `peers`).
    pub id: NodeId,
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
    pub rpc: RpcServerConfig,
}

impl ServerConfig {
    /// Defaults for node `id`.
    pub fn new(id: NodeId, peers: Peers, data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            id,
            peers,
            data_dir: data_dir.into(),
            listen,
            node: NodeConfig::new(id),
            rpc: RpcServerConfig::default(),
        }
    }
}

/// A running counter server.
pub struct CounterServer {
    id: NodeId,
    node: Node<Counter>,
    rpc: RpcServer,
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
        let net = TcpConfig::new(id, CLUSTER_ID, config.peers.raft_addrs());
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
        let voters = Membership::new(config.peers.0.keys().copied());
        if let Err(e) = node.add_partition(GROUP, voters, Counter::default()).await {
            node.shutdown().await;
            return Err(e.into());
        }
        let handler = Handler {
            node: node.clone(),
            client_addrs: Arc::new(config.peers.client_addrs()),
        };
        let rpc = match RpcServer::serve(client_listener, config.rpc.clone(), move |req| {
            let h = handler.clone();
            async move { h.handle(req).await }
        }) {
            Ok(rpc) => rpc,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        info!(node = id, client = %rpc.local_addr(), raft = %me.raft.data, "counter server started");
        Ok(Self { id, node, rpc })
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
        self.rpc.local_addr()
    }

    /// Closes the client port, then stops the node (bounded: shutdown as a message,
    /// docs/architecture.md).
    pub async fn shutdown(&self) {
        self.rpc.shutdown().await;
        self.node.shutdown().await;
    }
}

/// The client port's request handler; cloned per request (two `Arc`s inside).
#[derive(Clone)]
struct Handler {
    node: Node<Counter>,
    client_addrs: Arc<BTreeMap<NodeId, SocketAddr>>,
}

impl Handler {
    async fn handle(&self, req: Request) -> Response {
        match req {
            Request::Incr { id, n } => {
                let r = self.node.propose_with_id(GROUP, id, Command::Incr(n)).await;
                self.answer(r)
            }
            Request::Get => {
                let r = self.node.read(GROUP, Query::Get).await;
                self.answer(r)
            }
            Request::Status => match self.node.group_metrics(GROUP).await {
                Ok(m) => Response::Status(Status {
                    node: self.node.id(),
                    role: format!("{:?}", m.role),
                    term: m.term,
                    leader: m.leader,
                    commit: m.commit,
                    applied: m.applied,
                }),
                Err(e) => self.answer(Err(e)),
            },
        }
    }

    fn answer(&self, r: Result<i64, Error>) -> Response {
        match r {
            Ok(v) => Response::Value(v),
            Err(Error::NotLeader {
                leader,
                leader_addr,
                ..
            }) => Response::NotLeader {
                leader,
                // The group's configuration knows it when its members were given addresses;
                // otherwise the static peer list does.
                addr: leader_addr
                    .or_else(|| leader.and_then(|l| self.client_addrs.get(&l).copied()))
                    .map(|a| a.to_string()),
            },
            Err(e) => {
                // Stopped / storage failure / group not hosted yet: another server can help.
                let retryable = e.is_retryable()
                    || matches!(
                        e,
                        Error::Stopped | Error::Storage(_) | Error::UnknownGroup(_)
                    );
                Response::Unavailable {
                    reason: e.to_string(),
                    retryable,
                }
            }
        }
    }
}
