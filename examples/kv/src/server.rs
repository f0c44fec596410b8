//! A KV server: one Raft node (TCP between servers, the WAL on disk) hosting the metadata
//! group (if it is one of the nodes the cluster was created with) and the shards the
//! placement gives it, served to clients by `raft_service::Server` with a redirect for the
//! groups it does not host.
//!
//! # The placement task
//!
//! Each server runs one task (not an actor: it only makes `Node` and client calls, and no
//! actor waits for it) that every [`ServerConfig::reconcile_interval`]:
//! 1. reads the placement from the metadata group with a linearizable read through the
//!    service (so it never acts on an older placement than one already acted on elsewhere,
//!    as a stale read at a node that just restarted could be);
//! 2. if there is none yet and this server creates the cluster, proposes its creation
//!    ([`MetaCommand::Create`], the same from every node); if this server joins and is not in
//!    it, proposes [`MetaCommand::AddNode`];
//! 3. publishes it (a `tokio::sync::watch` latest-value cell) for the redirect, which
//!    answers a client asking for a group this node does not host with the hosts' addresses;
//! 4. hosts every shard the placement gives this node that it does not host yet — created
//!    from the placement's replicas while the shard has never moved (`epoch` 0; recovered
//!    from the WAL if it holds the shard), joined otherwise (a move's new replica: the
//!    group's leader adds it as a learner; if the group stops here as removed meanwhile —
//!    a node the shard moved away from and back can be told so by a leader that hears from
//!    it before the configuration naming it again — it is forgotten and joined again) — and
//!    stops hosting, purging its storage, every shard the placement no longer gives it (after
//!    a move's last step; the group had already removed it from its configuration).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft_actor::{Error, GroupId, HeartbeatExecutor, Node, NodeAddrs, NodeConfig, NodeId, WireMsg};
use raft_actor::{TcpConfig, TcpTransport, Wal, WalConfig};
use raft_net::Listeners;
use raft_service::{Client, ClientConfig, Redirect, Server};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::addrs::Peers;
use crate::error::ServerError;
use crate::hash::{META_GROUP, shard_of_group};
use crate::machine::{KvCommand, KvMachine, KvQuery, KvResponse};
use crate::placement::{MetaCommand, Placement, PlacementError};

/// The cluster id KV servers put in their Raft handshakes: a server of another application
/// is refused instead of joining.
pub const CLUSTER_ID: u64 = 0x4B56_5354_4F52_4531;

/// How to run one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node.
    pub id: NodeId,
    /// Creating (or restarting a node of) a cluster: every node it was created with, this one
    /// included, the same list for each. Joining: this node's own entry only.
    pub peers: Peers,
    /// Join a running cluster through these client addresses (any node will do) instead of
    /// creating one. The new node holds no replica until moves (`kv move-replica`,
    /// `kv rebalance`) give it some.
    pub join: Vec<SocketAddr>,
    /// Data groups (shards) of a new cluster; fixed once it is created.
    pub groups: u32,
    /// Replicas per group.
    pub replicas: u32,
    /// Where this node's write-ahead log lives (reused after a restart).
    pub data_dir: PathBuf,
    /// Raft timing and queue sizes.
    pub node: NodeConfig,
    /// The client port's limits.
    pub service: raft_service::ServerConfig,
    /// How often the placement task reads the placement and acts on it.
    pub reconcile_interval: Duration,
}

impl ServerConfig {
    /// Defaults for node `id` of the cluster `peers`: 64 groups x 3 replicas, the placement
    /// read every 200 ms.
    pub fn new(id: NodeId, peers: Peers, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            id,
            peers,
            join: Vec::new(),
            groups: 64,
            replicas: 3,
            data_dir: data_dir.into(),
            node: NodeConfig::new(id),
            service: raft_service::ServerConfig::default(),
            reconcile_interval: Duration::from_millis(200),
        }
    }
}

/// A running KV server.
pub struct KvServer {
    id: NodeId,
    node: Node<KvMachine>,
    server: Server,
    placement: watch::Receiver<Option<Arc<Placement>>>,
    stop: flume::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for KvServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvServer")
            .field("id", &self.id)
            .field("client_addr", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

impl KvServer {
    /// Binds the Raft and client listeners, opens (or recovers) the WAL, starts the node,
    /// hosts the metadata group (a creating node) and starts the placement task. Call from
    /// inside a multi-threaded tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let id = config.id;
        let me = *config.peers.0.get(&id).ok_or(ServerError::NotInPeers(id))?;
        let client_at = me.client.ok_or(ServerError::NotInPeers(id))?;
        let creating = config.join.is_empty();
        // Checked before anything binds: a cluster these settings cannot place never starts.
        let create = if creating {
            Some(Placement::initial(
                config.peers.0.clone(),
                config.groups,
                config.replicas,
            )?)
        } else {
            None
        };
        let raft = raft_actor::PeerAddrs {
            data: me.data,
            heartbeat: me.heartbeat,
        };
        let listeners = Listeners::bind(raft).map_err(|source| ServerError::Bind {
            what: "raft (data, or heartbeat = data port + 1)",
            addr: me.data,
            source,
        })?;
        let client_listener =
            TcpListener::bind(client_at)
                .await
                .map_err(|source| ServerError::Bind {
                    what: "client",
                    addr: client_at,
                    source,
                })?;
        let wal =
            Wal::open(WalConfig::new(&config.data_dir)).map_err(|source| ServerError::Storage {
                dir: config.data_dir.clone(),
                source,
            })?;
        let initial_peers = if creating {
            config.peers.raft_addrs()
        } else {
            Default::default()
        };
        let (transport, inbound) = TcpTransport::<WireMsg>::start(
            TcpConfig::new(id, CLUSTER_ID, initial_peers),
            listeners,
        )?;
        let heartbeat = HeartbeatExecutor::Handle(transport.heartbeat_runtime());
        let mut node_config = config.node.clone();
        node_config.node_id = id;
        let node = Node::<KvMachine>::builder(node_config)
            .transport(transport, inbound)
            .storage(wal)
            .heartbeat_executor(heartbeat)
            .start()
            .await?;
        if creating {
            if let Err(e) = node
                .add_partition(META_GROUP, config.peers.membership(), KvMachine::meta())
                .await
            {
                node.shutdown().await;
                return Err(e.into());
            }
        }
        let (publish, placement) = watch::channel(None::<Arc<Placement>>);
        let cell = placement.clone();
        let redirect: Redirect = Arc::new(move |group: GroupId| {
            cell.borrow()
                .as_ref()
                .map(|p| p.host_addrs(group))
                .unwrap_or_default()
        });
        let server = match Server::serve_with_redirect(
            node.clone(),
            client_listener,
            config.service.clone(),
            redirect,
        ) {
            Ok(server) => server,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        // The placement task's client: the cluster's nodes, or the ones to join through.
        let servers = if creating {
            config.peers.client_addrs()
        } else {
            config.join.clone()
        };
        let mut client_config = ClientConfig::new(servers);
        client_config.attempt_timeout = Duration::from_secs(1);
        client_config.request_timeout = Duration::from_secs(3);
        let client = match Client::<KvMachine>::new(client_config) {
            Ok(c) => c,
            Err(e) => {
                server.shutdown().await;
                node.shutdown().await;
                return Err(e.into());
            }
        };
        let (stop, stopped) = flume::bounded(1);
        let task = PlacementTask {
            node: node.clone(),
            me,
            create,
            client,
            hosted: BTreeSet::new(),
            creating,
            was_member: false,
            removed: false,
            publish,
            interval: config.reconcile_interval,
        };
        let task = tokio::spawn(task.run(stopped));
        info!(node = id, client = %server.local_addr(), raft = %me.data, creating, "kv server started");
        Ok(KvServer {
            id,
            node,
            server,
            placement,
            stop,
            task,
        })
    }

    /// This server's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft node (metrics, ...).
    pub fn node(&self) -> &Node<KvMachine> {
        &self.node
    }

    /// The client port's bound address.
    pub fn client_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The newest placement this server has read (`None` before the first).
    pub fn placement(&self) -> Option<Arc<Placement>> {
        self.placement.borrow().clone()
    }

    /// Stops the placement task, closes the client port, then stops the node.
    pub async fn shutdown(&self) {
        let _ = self.stop.try_send(());
        self.server.shutdown().await;
        self.node.shutdown().await;
        self.task.abort();
    }
}

/// The placement task's state (see the module docs).
struct PlacementTask {
    node: Node<KvMachine>,
    me: NodeAddrs,
    /// The placement this node proposes when the cluster has none (creating nodes; taken
    /// once the cluster has one).
    create: Option<Placement>,
    client: Client<KvMachine>,
    /// The shards this task has made the node host.
    hosted: BTreeSet<GroupId>,
    /// This node was started to create the cluster (with `peers`), not to join it.
    creating: bool,
    /// This node is in the placement, as last read.
    was_member: bool,
    /// It was in the placement and no longer is (since this process started).
    removed: bool,
    publish: watch::Sender<Option<Arc<Placement>>>,
    interval: Duration,
}

impl PlacementTask {
    async fn run(mut self, stopped: flume::Receiver<()>) {
        loop {
            tokio::select! {
                biased;
                _ = stopped.recv_async() => return,
                _ = self.step() => {}
            }
            tokio::select! {
                biased;
                _ = stopped.recv_async() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn step(&mut self) {
        let id = self.node.id();
        let placement = match self.client.read(META_GROUP, KvQuery::Placement).await {
            Ok(KvResponse::Placement(p)) => p,
            Ok(other) => {
                warn!(node = id, answer = ?other, "the metadata group answered no placement");
                return;
            }
            Err(e) => {
                debug!(node = id, error = %e, "reading the placement");
                return;
            }
        };
        let Some(placement) = placement else {
            if let Some(create) = &self.create {
                let create = KvCommand::Meta(MetaCommand::Create(create.clone()));
                if let Err(e) = self.client.propose(META_GROUP, create).await {
                    debug!(node = id, error = %e, "proposing the cluster's creation");
                }
            }
            return;
        };
        if let Some(create) = self.create.take() {
            // Checked once: the cluster's settings stand, whatever this server was given.
            if (create.groups, create.replicas) != (placement.groups, placement.replicas) {
                let e = PlacementError::AlreadyCreated {
                    groups: placement.groups,
                    replicas: placement.replicas,
                };
                warn!(node = id, error = %e, "this server was started with other settings; the cluster's stand");
            }
        }
        let member = placement.nodes.contains_key(&id);
        if !member && !self.was_member && !self.removed && !self.creating {
            // A joining node registers itself (once: a node that was a member and is no
            // longer was removed, and stays out). A node of the creating set never does:
            // if it is not in the placement, it was removed.
            let add = KvCommand::Meta(MetaCommand::AddNode { id, addrs: self.me });
            match self.client.propose(META_GROUP, add).await {
                Ok(a) => info!(node = id, answer = ?a.response, "added to the cluster"),
                Err(e) => debug!(node = id, error = %e, "adding this node to the cluster"),
            }
            return;
        }
        if member != self.was_member {
            if member {
                info!(node = id, "a member of the cluster");
            } else {
                warn!(node = id, "removed from the cluster: hosting nothing");
            }
            self.was_member = member;
            self.removed |= !member;
        }
        let newer = self
            .publish
            .borrow()
            .as_ref()
            .is_none_or(|p| p.version != placement.version);
        if newer {
            info!(node = id, version = placement.version, "placement");
            self.publish
                .send_replace(Some(Arc::new(*placement.clone())));
        }
        self.reconcile(&placement).await;
    }

    /// Whether a group this node is receiving is still hosted. A node that held the group
    /// before (a replica moved away and back) can be told it was removed by a leader that
    /// hears from it before the configuration naming it again is appended; the group then
    /// stops here. It is forgotten, so that the next pass joins it afresh.
    async fn still_hosted(&mut self, group: GroupId) -> bool {
        let id = self.node.id();
        match self.node.group_metrics(group).await {
            Err(Error::Removed { .. }) => {
                info!(node = id, group, "removed while joining; joining again");
                match self.node.remove_partition(group, true).await {
                    Ok(()) | Err(Error::UnknownGroup(_)) => {
                        self.hosted.remove(&group);
                        false
                    }
                    Err(e) => {
                        warn!(node = id, group, error = %e, "cannot forget the group");
                        true
                    }
                }
            }
            _ => true,
        }
    }

    /// Hosts what the placement gives this node, drops what it no longer does.
    async fn reconcile(&mut self, p: &Placement) {
        let id = self.node.id();
        for (group, shard) in p.data_groups() {
            let want = shard.hosts().contains(&id);
            let mut have = self.hosted.contains(&group);
            if want && have && shard.moving.is_some_and(|m| m.to == id) {
                have = self.still_hosted(group).await;
            }
            if want && !have {
                let Some(index) = shard_of_group(group, p.groups) else {
                    continue;
                };
                let sm = KvMachine::data(index, p.groups);
                let created = shard.epoch == 0 && shard.replicas.contains(&id);
                let hosted = if created {
                    self.node
                        .add_partition(group, p.membership(group), sm)
                        .await
                } else {
                    self.node
                        .join_partition_with(group, sm, p.membership(group))
                        .await
                };
                match hosted {
                    Ok(()) | Err(Error::GroupExists(_)) => {
                        debug!(node = id, group, created, "hosting");
                        self.hosted.insert(group);
                    }
                    Err(e) => warn!(node = id, group, error = %e, "cannot host the group"),
                }
            } else if !want && have {
                match self.node.remove_partition(group, true).await {
                    Ok(()) | Err(Error::UnknownGroup(_)) => {
                        info!(node = id, group, "no longer hosting");
                        self.hosted.remove(&group);
                    }
                    Err(e) => warn!(node = id, group, error = %e, "cannot stop hosting the group"),
                }
            }
        }
    }
}
