//! `--transport tcp`: one process per node on loopback TCP (this binary's hidden `node`
//! mode), clients in the benchmark process talking to the nodes over `raft_net::rpc`.
//!
//! Start-up, over each node's standard input and output:
//! 1. the node binds its three listeners on loopback port 0 and prints `bound DATA/HEARTBEAT/RPC`;
//! 2. once every node has, the parent writes each of them one line with every node's addresses
//!    (`ID=DATA/HEARTBEAT/RPC,...`);
//! 3. the node starts its transport and groups and prints `ready`.
//!
//! No port is picked before it is bound, so no other socket can take it in between. The parent
//! measures the children's CPU and memory from `/proc`. A node stops when its standard input
//! closes, so nodes never outlive the benchmark.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
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
    /// This node's id. Every node's addresses come on standard input (see the module docs).
    #[arg(long)]
    pub id: NodeId,
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

/// A node's three addresses, written `DATA/HEARTBEAT/RPC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addrs {
    raft: PeerAddrs,
    rpc: SocketAddr,
}

impl std::fmt::Display for Addrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.raft.data, self.raft.heartbeat, self.rpc)
    }
}

impl std::str::FromStr for Addrs {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let addrs: Vec<SocketAddr> = s
            .split('/')
            .map(|a| a.parse().with_context(|| format!("bad address {a:?}")))
            .collect::<anyhow::Result<_>>()?;
        let [data, heartbeat, rpc] = addrs[..] else {
            bail!("expected three addresses");
        };
        Ok(Addrs {
            raft: PeerAddrs { data, heartbeat },
            rpc,
        })
    }
}

/// Parses `ID=DATA/HEARTBEAT/RPC,...`.
fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<NodeId, Addrs>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (id, addrs) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("peer {part:?}: expected ID=DATA/HEARTBEAT/RPC"))?;
        out.insert(
            id.parse()
                .with_context(|| format!("peer {part:?}: bad id"))?,
            addrs.parse().with_context(|| format!("peer {part:?}"))?,
        );
    }
    Ok(out)
}

fn format_peers(peers: &BTreeMap<NodeId, Addrs>) -> String {
    peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
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

/// What a node prints before its bound addresses.
const BOUND: &str = "bound ";

/// Runs one node process until its standard input closes.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let listeners = Listeners::bind_loopback().context("bind raft listeners")?;
    let rpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind rpc listener")?;
    let bound = Addrs {
        raft: listeners.local_addrs().context("raft listener addresses")?,
        rpc: rpc_listener.local_addr().context("rpc listener address")?,
    };
    println!("{BOUND}{bound}");
    // One thread reads standard input: the first line is the peer list, and its end is the
    // signal to stop.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let stdin_closed = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut first_tx = Some(first_tx);
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(tx) = first_tx.take() {
                let _ = tx.send(std::mem::take(&mut line));
            }
            line.clear();
        }
    });
    let line = first_rx
        .await
        .map_err(|_| anyhow!("standard input closed before the peer list came"))?;
    let peers = parse_peers(line.trim())?;
    let me = peers
        .get(&args.id)
        .ok_or_else(|| anyhow!("node {} is not in the peer list", args.id))?;
    if *me != bound {
        bail!(
            "the peer list gives node {} addresses it did not bind",
            args.id
        );
    }
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
    stdin_closed.await?;
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

/// Reads one line of a node's standard output, within `limit`; the reader is handed back for
/// the next line.
async fn read_line(
    node: NodeId,
    mut out: BufReader<ChildStdout>,
    limit: Duration,
) -> anyhow::Result<(BufReader<ChildStdout>, String)> {
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        (out, line)
    });
    let (out, line) = tokio::time::timeout(limit, read)
        .await
        .map_err(|_| anyhow!("node {node} did not start within {limit:?}"))??;
    if line.is_empty() {
        bail!("node {node} failed to start (see its error above)");
    }
    Ok((out, line.trim().to_owned()))
}

impl RemoteCluster {
    /// Starts `n` node processes hosting `groups` groups each (see the module docs for the
    /// start-up exchange).
    pub async fn start(
        n: u64,
        groups: u64,
        storage: StorageKind,
        sync: SyncKind,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locate raft-bench")?;
        let storage_arg = format!("{storage:?}").to_lowercase();
        let sync_arg = format!("{sync:?}").to_lowercase();
        let mut cluster = RemoteCluster {
            children: Vec::new(),
            clients: Vec::new(),
            next: AtomicUsize::new(0),
        };
        for id in 1..=n {
            let child = Command::new(&exe)
                .arg("node")
                .args(["--id", &id.to_string()])
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
            cluster.children.push(child);
        }
        let bind_limit = Duration::from_secs(30);
        let mut outs = Vec::new();
        let mut peers = BTreeMap::new();
        for (id, child) in (1..).zip(cluster.children.iter_mut()) {
            let out = BufReader::new(child.stdout.take().context("node stdout")?);
            let (out, line) = read_line(id, out, bind_limit).await?;
            let addrs = line
                .strip_prefix(BOUND)
                .ok_or_else(|| anyhow!("node {id} printed {line:?} instead of its addresses"))?;
            let addrs: Addrs = addrs
                .parse()
                .with_context(|| format!("node {id}'s addresses {addrs:?}"))?;
            peers.insert(id, addrs);
            outs.push(out);
        }
        let list = format_peers(&peers);
        for (id, child) in (1..).zip(cluster.children.iter_mut()) {
            let stdin = child.stdin.as_mut().context("node stdin")?;
            writeln!(stdin, "{list}")
                .and_then(|()| stdin.flush())
                .with_context(|| format!("send node {id} its peers"))?;
        }
        // Adding groups takes time: allow a minute plus a second per hundred groups.
        let limit = Duration::from_secs(60 + groups / 100);
        for (id, out) in (1..).zip(outs) {
            let (_, line) = read_line(id, out, limit).await?;
            if line != "ready" {
                bail!("node {id} printed {line:?} instead of ready");
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
