//! `--transport tcp`: one process per node on loopback TCP (this binary's hidden `node`
//! mode), clients in the benchmark process talking to the nodes over `raft_net::rpc`.
//!
//! The parent picks free loopback ports, starts each node with its peers' addresses, waits for
//! each to print `ready`, and measures the children's CPU and memory from `/proc`. A node
//! stops when its standard input closes, so nodes never outlive the benchmark.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use raft_actor::{Error, HeartbeatExecutor, Node, StorageMode, WireMsg};
use raft_core::{GroupId, Membership, NodeId, Role};
use raft_net::rpc::{RpcClientConfig, RpcServerConfig};
use raft_net::{Listeners, PeerAddrs, RpcClient, RpcServer, TcpConfig, TcpTransport};
use raft_storage::{MemStore, SyncMode, Wal, WalConfig};
use serde::{Deserialize, Serialize};

use crate::cli::{StorageKind, SyncKind};
use crate::load::Attempt;
use crate::sm::{BenchSm, Payload, Write};
use crate::sys;

/// Cluster id of benchmark clusters.
const CLUSTER: u64 = 0xbe4c;
/// Client connections per node (calls are pipelined over each).
const CONNECTIONS: usize = 4;

/// Flags of the hidden `node` mode.
#[derive(Clone, Debug, clap::Args)]
pub struct NodeArgs {
    /// This node's id.
    #[arg(long)]
    pub id: NodeId,
    /// Every node: `ID=DATA_ADDR/HEARTBEAT_ADDR/RPC_ADDR`, comma-separated.
    #[arg(long)]
    pub peers: String,
    /// Groups to host.
    #[arg(long)]
    pub groups: u64,
    /// Log storage.
    #[arg(long, value_enum)]
    pub storage: StorageKind,
    /// WAL sync policy.
    #[arg(long, value_enum)]
    pub sync: SyncKind,
    /// WAL directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Worker threads of the node's data runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// A node's three addresses.
#[derive(Clone, Copy, Debug)]
struct Addrs {
    raft: PeerAddrs,
    rpc: SocketAddr,
}

fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<NodeId, Addrs>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (id, rest) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("peer {part:?}: expected ID=DATA/HEARTBEAT/RPC"))?;
        let addrs: Vec<SocketAddr> = rest
            .split('/')
            .map(|a| {
                a.parse()
                    .with_context(|| format!("peer {part:?}: bad address {a:?}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let [data, heartbeat, rpc] = addrs[..] else {
            bail!("peer {part:?}: expected three addresses");
        };
        out.insert(
            id.parse()
                .with_context(|| format!("peer {part:?}: bad id"))?,
            Addrs {
                raft: PeerAddrs { data, heartbeat },
                rpc,
            },
        );
    }
    Ok(out)
}

fn format_peers(peers: &BTreeMap<NodeId, Addrs>) -> String {
    peers
        .iter()
        .map(|(id, a)| format!("{id}={}/{}/{}", a.raft.data, a.raft.heartbeat, a.rpc))
        .collect::<Vec<_>>()
        .join(",")
}

/// A request from the benchmark to a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum BenchReq {
    /// Propose a write.
    Write {
        /// Group.
        group: GroupId,
        /// Payload.
        payload: Payload,
    },
    /// Which groups this node leads, and its leader-term count.
    Status,
}

/// A node's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum BenchResp {
    /// Committed and applied at this index.
    Done(u64),
    /// Not the leader; the leader this node believes in.
    NotLeader(Option<NodeId>),
    /// Overloaded or timed out: try again.
    Retry,
    /// Failed for good.
    Failed(String),
    /// Groups led, and the sum over groups of terms this node led.
    Status {
        /// Groups this node leads.
        leads: Vec<GroupId>,
        /// Sum of `leader_terms`.
        leader_terms: u64,
    },
}

/// Runs one node process until its standard input closes.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let peers = parse_peers(&args.peers)?;
    let me = *peers
        .get(&args.id)
        .ok_or_else(|| anyhow!("--id {} is not in --peers", args.id))?;
    let bound = async {
        let raft = Listeners::bind(me.raft).context("bind raft listeners")?;
        let rpc = tokio::net::TcpListener::bind(me.rpc)
            .await
            .context("bind rpc listener")?;
        anyhow::Ok((raft, rpc))
    };
    let (listeners, rpc_listener) = match bound.await {
        Ok(b) => b,
        Err(e) => {
            // Tells the parent to try again with other ports (see `RemoteCluster::start`).
            println!("{BIND_FAILED}");
            return Err(e);
        }
    };
    let raft_peers = peers.iter().map(|(id, a)| (*id, a.raft)).collect();
    let (transport, inbound) =
        TcpTransport::<WireMsg>::start(TcpConfig::new(args.id, CLUSTER, raft_peers), listeners)?;
    let heartbeat = HeartbeatExecutor::Handle(transport.heartbeat_runtime());
    let builder = Node::<BenchSm>::builder(crate::local::node_config(args.id, args.groups))
        .transport(transport, inbound)
        .heartbeat_executor(heartbeat);
    let builder = match args.storage {
        StorageKind::Mem => builder
            .storage(MemStore::new())
            .storage_mode(StorageMode::Task),
        StorageKind::Wal => {
            let mut cfg = WalConfig::new(args.data_dir.join(format!("node-{}", args.id)));
            cfg.sync = match args.sync {
                SyncKind::Always => SyncMode::Always,
                SyncKind::Never => SyncMode::Never,
            };
            builder.storage(Wal::open(cfg).context("open WAL")?)
        }
    };
    let node = builder.start().await?;
    let membership = Membership::new(peers.keys().copied());
    for g in 1..=args.groups {
        node.add_partition(g, membership.clone(), BenchSm::default())
            .await?;
    }
    let handler_node = node.clone();
    let server = RpcServer::serve(
        rpc_listener,
        RpcServerConfig {
            max_in_flight: 8192,
            ..RpcServerConfig::default()
        },
        move |req: BenchReq| {
            let node = handler_node.clone();
            async move { handle(&node, req).await }
        },
    )?;
    println!("ready");
    // Stop when the parent closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    })
    .await?;
    server.shutdown().await;
    node.shutdown().await;
    Ok(())
}

async fn handle(node: &Node<BenchSm>, req: BenchReq) -> BenchResp {
    match req {
        BenchReq::Write { group, payload } => {
            match node.propose(group, Write::Payload(payload.0)).await {
                Ok(index) => BenchResp::Done(index),
                Err(Error::NotLeader { leader, .. }) => BenchResp::NotLeader(leader),
                Err(e) if e.is_retryable() => BenchResp::Retry,
                Err(e) => BenchResp::Failed(e.to_string()),
            }
        }
        BenchReq::Status => {
            let m = node.metrics().await;
            BenchResp::Status {
                leads: m
                    .groups
                    .iter()
                    .filter(|g| g.role == Role::Leader)
                    .map(|g| g.group)
                    .collect(),
                leader_terms: m.groups.iter().map(|g| g.leader_terms).sum(),
            }
        }
    }
}

/// The parent's view of the node processes.
pub struct RemoteCluster {
    children: Vec<Child>,
    clients: Vec<Vec<RpcClient<BenchReq, BenchResp>>>,
    next: AtomicUsize,
}

/// What a node process prints instead of "ready" when one of its ports is taken.
const BIND_FAILED: &str = "bind-failed";

/// Attempts at starting the cluster, each on newly picked ports.
const START_ATTEMPTS: u32 = 3;

/// A node could not bind a port picked for it: between the parent's probe and the node's
/// bind, another socket (often another node's outgoing connection) took it.
#[derive(Debug)]
struct PortTaken(u64);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} could not bind a port picked for it", self.0)
    }
}

impl std::error::Error for PortTaken {}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(l.local_addr()?)
}

impl RemoteCluster {
    /// Starts `n` node processes hosting `groups` groups each. The ports are picked free
    /// and then bound by the nodes, so one can be taken in between: then the cluster is
    /// started again on other ports (and, for the WAL, in a fresh directory), up to
    /// [`START_ATTEMPTS`] times.
    pub async fn start(
        n: u64,
        groups: u64,
        storage: StorageKind,
        sync: SyncKind,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            let here = dir.join(format!("attempt-{attempt}"));
            match Self::start_once(n, groups, storage, sync, &here).await {
                Err(e) if attempt < START_ATTEMPTS && e.downcast_ref::<PortTaken>().is_some() => {
                    tracing::warn!(attempt, error = %e, "starting the node processes again on other ports");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(
        n: u64,
        groups: u64,
        storage: StorageKind,
        sync: SyncKind,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let mut peers = BTreeMap::new();
        for id in 1..=n {
            peers.insert(
                id,
                Addrs {
                    raft: PeerAddrs {
                        data: free_port()?,
                        heartbeat: free_port()?,
                    },
                    rpc: free_port()?,
                },
            );
        }
        let exe = std::env::current_exe().context("locate raft-bench")?;
        let mut children = Vec::new();
        let storage_arg = format!("{storage:?}").to_lowercase();
        let sync_arg = format!("{sync:?}").to_lowercase();
        for id in 1..=n {
            let child = Command::new(&exe)
                .arg("node")
                .args(["--id", &id.to_string()])
                .args(["--peers", &format_peers(&peers)])
                .args(["--groups", &groups.to_string()])
                .args(["--storage", &storage_arg])
                .args(["--sync", &sync_arg])
                .arg("--data-dir")
                .arg(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("start node {id}"))?;
            children.push(child);
        }
        let mut cluster = RemoteCluster {
            children,
            clients: Vec::new(),
            next: AtomicUsize::new(0),
        };
        for (i, child) in cluster.children.iter_mut().enumerate() {
            let stdout = child.stdout.take().context("node stdout")?;
            let line = tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                line
            });
            // Adding groups takes time: allow a minute plus a second per hundred groups.
            let limit = Duration::from_secs(60 + groups / 100);
            let line = tokio::time::timeout(limit, line)
                .await
                .map_err(|_| anyhow!("node {} did not start within {limit:?}", i + 1))??;
            if line.trim() == BIND_FAILED {
                return Err(PortTaken(i as u64 + 1).into());
            }
            if line.trim() != "ready" {
                bail!("node {} failed to start (see its error above)", i + 1);
            }
        }
        let cfg = RpcClientConfig {
            max_in_flight: 8192,
            queue_capacity: 8192,
            call_timeout: Duration::from_secs(10),
            ..RpcClientConfig::default()
        };
        for a in peers.values() {
            let mut conns = Vec::new();
            for _ in 0..CONNECTIONS {
                conns.push(
                    RpcClient::connect(a.rpc, cfg.clone())
                        .await
                        .with_context(|| format!("connect to {}", a.rpc))?,
                );
            }
            cluster.clients.push(conns);
        }
        Ok(cluster)
    }

    /// Nodes in the cluster.
    pub fn nodes(&self) -> usize {
        self.clients.len()
    }

    fn client(&self, idx: usize) -> Option<&RpcClient<BenchReq, BenchResp>> {
        let conns = self.clients.get(idx)?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len().max(1);
        conns.get(i)
    }

    /// One write attempt on node `idx`.
    pub async fn write(&self, idx: usize, group: GroupId, payload: &Bytes) -> Attempt {
        let Some(client) = self.client(idx) else {
            return Attempt::Failed(format!("no node {idx}"));
        };
        let req = BenchReq::Write {
            group,
            payload: Payload(payload.clone()),
        };
        match client.call(&req).await {
            Ok(BenchResp::Done(_)) => Attempt::Done,
            Ok(BenchResp::NotLeader(l)) => {
                Attempt::Redirect(l.and_then(|l| usize::try_from(l).ok()?.checked_sub(1)))
            }
            Ok(BenchResp::Retry) => Attempt::Retry,
            Ok(BenchResp::Failed(e)) => Attempt::Failed(e),
            Ok(BenchResp::Status { .. }) => Attempt::Failed("unexpected status answer".into()),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    /// Per node: the groups it leads and the sum over groups of terms it led (`None`: no
    /// answer).
    pub async fn statuses(&self) -> Vec<Option<(Vec<GroupId>, u64)>> {
        let mut out = Vec::new();
        for idx in 0..self.nodes() {
            let s = match self.client(idx) {
                Some(c) => match c.call(&BenchReq::Status).await {
                    Ok(BenchResp::Status {
                        leads,
                        leader_terms,
                    }) => Some((leads, leader_terms)),
                    _ => None,
                },
                None => None,
            };
            out.push(s);
        }
        out
    }

    /// Resource use of each node process (node id, usage).
    pub fn usage(&self) -> Vec<(NodeId, Option<sys::Usage>)> {
        self.children
            .iter()
            .enumerate()
            .map(|(i, c)| (i as NodeId + 1, sys::usage(&c.id().to_string())))
            .collect()
    }

    /// Stops the node processes: closes their stdin, waits a little, then kills.
    pub async fn shutdown(mut self) {
        self.clients.clear();
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RemoteCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Node ids paired with their processes' CPU seconds between two readings, and peak RSS.
pub fn usage_delta(
    before: &[(NodeId, Option<sys::Usage>)],
    after: &[(NodeId, Option<sys::Usage>)],
) -> Vec<(NodeId, f64, u64, u64)> {
    before
        .iter()
        .zip(after)
        .map(|((id, a), (_, b))| {
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            (*id, b.cpu_secs - a.cpu_secs, b.rss_bytes, b.peak_rss_bytes)
        })
        .collect()
}
