//! `--transport tcp`: one process per node on loopback TCP (this binary's hidden `node`
//! mode), each serving its groups with `raft_service::Server`; the clients in the benchmark
//! process are `raft_service::Client`s, so finding leaders, following hints and retrying are
//! the library's.
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
use std::collections::btree_map::Entry;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use raft_actor::{HeartbeatExecutor, Node, NodeAddrs, StorageMode, WireMsg};
use raft_core::{GroupId, Membership, NodeId};
use raft_net::rpc::{RpcClientConfig, RpcServerConfig};
use raft_net::{Listeners, PeerAddrs, TcpConfig, TcpTransport};
use raft_service::{Client, ClientConfig, Server, ServerConfig};
use raft_storage::{MemStore, SyncMode, Wal, WalConfig};

use crate::cli::{StorageKind, SyncKind};
use crate::sm::BenchSm;
use crate::sys;

/// Cluster id of benchmark clusters.
const CLUSTER: u64 = 0xbe4c;
/// Root clients per node a load client starts from; each holds one connection to every node,
/// which its forks share (calls are pipelined over it).
const CONNECTIONS: usize = 4;
/// Largest client RPC frame, both ways: a `--payload` of 16 MiB, or the status of a million
/// groups (about 20 bytes each), with room to spare.
const MAX_FRAME: usize = 64 << 20;
/// Calls in flight per client connection.
const IN_FLIGHT: usize = 8192;

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
    /// Put every node's addresses in each group's configuration, so that a node that does
    /// not lead answers with the leader's client address. Write runs set it; idle runs, which
    /// have no clients, leave their groups' configurations without addresses.
    #[arg(long)]
    pub leader_hints: bool,
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

/// The configuration every group starts with: every node a voter, and with `hints` every
/// node's addresses (its client address included).
fn membership(peers: &BTreeMap<NodeId, Addrs>, hints: bool) -> Membership {
    let mut m = Membership::new(peers.keys().copied());
    if hints {
        for (id, a) in peers {
            m.set_addrs(
                *id,
                NodeAddrs {
                    data: a.raft.data,
                    heartbeat: a.raft.heartbeat,
                    client: Some(a.rpc),
                },
            );
        }
    }
    m
}

/// How a node serves the benchmark's clients.
fn server_config() -> ServerConfig {
    ServerConfig {
        rpc: RpcServerConfig {
            max_frame_size: MAX_FRAME,
            max_in_flight: IN_FLIGHT,
            ..RpcServerConfig::default()
        },
    }
}

/// A client of `servers` (it tries the first one first), with jitter from `seed`.
fn client_config(servers: Vec<SocketAddr>, seed: u64) -> ClientConfig {
    let mut cfg = ClientConfig::new(servers);
    cfg.rpc = RpcClientConfig {
        max_frame_size: MAX_FRAME,
        max_in_flight: IN_FLIGHT,
        queue_capacity: IN_FLIGHT,
        ..RpcClientConfig::default()
    };
    cfg.request_timeout = Duration::from_secs(10);
    cfg.seed = Some(seed);
    cfg
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
    let membership = membership(&peers, args.leader_hints);
    for g in 1..=args.groups {
        node.add_partition(g, membership.clone(), BenchSm::default())
            .await?;
    }
    let server = Server::serve(node.clone(), rpc_listener, server_config())?;
    println!("ready");
    // Stop when the parent closes our stdin (or dies).
    stdin_closed.await?;
    server.shutdown().await;
    node.shutdown().await;
    Ok(())
}

/// The parent's view of the node processes.
pub struct RemoteCluster {
    children: Children,
    /// Node `i`'s client address (node ids count from 1).
    addrs: Vec<SocketAddr>,
    /// Asks the nodes for their status.
    admin: Client<BenchSm>,
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
    /// start-up exchange); with `leader_hints`, see [`NodeArgs::leader_hints`].
    pub async fn start(
        n: u64,
        groups: u64,
        storage: StorageKind,
        sync: SyncKind,
        dir: &std::path::Path,
        leader_hints: bool,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locate raft-bench")?;
        let storage_arg = format!("{storage:?}").to_lowercase();
        let sync_arg = format!("{sync:?}").to_lowercase();
        // Killed if starting fails.
        let mut children = Children(Vec::new());
        for id in 1..=n {
            let mut cmd = Command::new(&exe);
            cmd.arg("node")
                .args(["--id", &id.to_string()])
                .args(["--groups", &groups.to_string()])
                .args(["--storage", &storage_arg])
                .args(["--sync", &sync_arg])
                .arg("--data-dir")
                .arg(dir);
            if leader_hints {
                cmd.arg("--leader-hints");
            }
            let child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("start node {id}"))?;
            children.0.push(child);
        }
        let bind_limit = Duration::from_secs(30);
        let mut outs = Vec::new();
        let mut peers = BTreeMap::new();
        for (id, child) in (1..).zip(children.0.iter_mut()) {
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
        for (id, child) in (1..).zip(children.0.iter_mut()) {
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
        let addrs: Vec<SocketAddr> = peers.values().map(|a| a.rpc).collect();
        let admin = Client::new(client_config(addrs.clone(), CLUSTER))?;
        Ok(RemoteCluster {
            children,
            addrs,
            admin,
        })
    }

    /// Per node: the groups it leads and the sum over groups of terms it led (`None`: no
    /// answer).
    pub async fn statuses(&mut self) -> Vec<Option<(Vec<GroupId>, u64)>> {
        statuses(&mut self.admin, &self.addrs).await
    }

    /// One load client per entry of `first`: see [`clients`].
    pub async fn clients(&self, first: &[usize]) -> anyhow::Result<Vec<Client<BenchSm>>> {
        clients(&self.addrs, first).await
    }

    /// Resource use of each node process (node id, usage).
    pub fn usage(&self) -> Vec<(NodeId, Option<sys::Usage>)> {
        self.children
            .0
            .iter()
            .enumerate()
            .map(|(i, c)| (i as NodeId + 1, sys::usage(&c.id().to_string())))
            .collect()
    }

    /// Stops the node processes: closes their stdin, waits a little, then kills.
    pub async fn shutdown(mut self) {
        for c in &mut self.children.0 {
            drop(c.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children.0 {
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

/// The node processes: those still running when this is dropped are killed, so nodes never
/// outlive the benchmark, a failed start included.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
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

/// Per server of `addrs`: the groups its node leads and the sum over groups of terms it led
/// (`None`: no answer), from `Client::node_status`.
async fn statuses(
    admin: &mut Client<BenchSm>,
    addrs: &[SocketAddr],
) -> Vec<Option<(Vec<GroupId>, u64)>> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        out.push(admin.node_status(*addr).await.ok().map(|s| {
            let terms = s.groups.iter().map(|g| g.leader_terms).sum();
            (s.leads().collect(), terms)
        }));
    }
    out
}

/// One client per entry of `first`, for the servers `addrs`: client `i` is a fork of one of
/// [`CONNECTIONS`] root clients whose server list starts at `addrs[first[i]]` (its group's
/// leader when the run starts), so its first call goes there, as a client that knew its
/// leader would; afterwards the client finds leaders itself. Each root connects to every
/// server, and its forks share those connections.
async fn clients(addrs: &[SocketAddr], first: &[usize]) -> anyhow::Result<Vec<Client<BenchSm>>> {
    let mut roots: BTreeMap<usize, Vec<Client<BenchSm>>> = BTreeMap::new();
    let mut out = Vec::with_capacity(first.len());
    for (i, &node) in first.iter().enumerate() {
        let node = node % addrs.len().max(1);
        let list = match roots.entry(node) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(root_clients(addrs, node).await?),
        };
        let root = list.get_mut(i % CONNECTIONS).context("root client")?;
        out.push(root.fork());
    }
    Ok(out)
}

/// [`CONNECTIONS`] clients of `addrs` that try `addrs[first]` first, each connected to every
/// server.
async fn root_clients(addrs: &[SocketAddr], first: usize) -> anyhow::Result<Vec<Client<BenchSm>>> {
    let servers: Vec<SocketAddr> = addrs
        .iter()
        .cycle()
        .skip(first)
        .take(addrs.len())
        .copied()
        .collect();
    let mut roots = Vec::with_capacity(CONNECTIONS);
    for k in 0..CONNECTIONS {
        let seed = (CLUSTER << 32) | (first * CONNECTIONS + k) as u64;
        let mut root = Client::new(client_config(servers.clone(), seed))?;
        let connected = root.connect_all().await;
        if connected < addrs.len() {
            bail!("connected to {connected} of {} nodes", addrs.len());
        }
        roots.push(root);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft_service::local::LocalCluster;

    use super::*;
    use crate::sm::Write;

    #[test]
    fn leader_hints_put_every_address_in_the_configuration() {
        let peers = parse_peers(
            "1=127.0.0.1:1/127.0.0.1:2/127.0.0.1:3,2=127.0.0.1:4/127.0.0.1:5/127.0.0.1:6",
        )
        .unwrap();
        assert_eq!(
            format_peers(&peers),
            "1=127.0.0.1:1/127.0.0.1:2/127.0.0.1:3,2=127.0.0.1:4/127.0.0.1:5/127.0.0.1:6"
        );
        let plain = membership(&peers, false);
        assert_eq!(plain.voters.len(), 2);
        assert!(plain.addrs.is_empty());
        let hinted = membership(&peers, true);
        assert_eq!(hinted.voters, plain.voters);
        let two = hinted.addrs_of(2).expect("node 2's addresses");
        assert_eq!(two.data, "127.0.0.1:4".parse().unwrap());
        assert_eq!(two.heartbeat, "127.0.0.1:5".parse().unwrap());
        assert_eq!(two.client, Some("127.0.0.1:6".parse().unwrap()));
    }

    /// The load clients over raft-service: the ones given the leader go straight to it, the
    /// ones given a follower follow its hint once, and every write applies exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_clients_find_the_leader_and_every_write_applies_once() {
        let cluster = LocalCluster::start(3, 1, |_| BenchSm::default())
            .await
            .unwrap();
        let addrs = cluster.addrs();
        let mut admin = Client::new(client_config(addrs.clone(), 1)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (leader, terms_before) = loop {
            let s = statuses(&mut admin, &addrs).await;
            let terms: u64 = s.iter().flatten().map(|s| s.1).sum();
            if let Some(i) = s
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.0 == [1]))
            {
                break (i, terms);
            }
            assert!(Instant::now() < deadline, "no leader: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let follower = (leader + 1) % addrs.len();
        let first = [leader, leader, leader, leader, follower, follower];
        let tasks: Vec<_> = clients(&addrs, &first)
            .await
            .unwrap()
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    for _ in 0..25 {
                        let w = Write::Payload(Bytes::from_static(b"sixteen byte pay"));
                        c.propose(1, w).await.unwrap();
                    }
                    c.retries()
                })
            })
            .collect();
        let mut retries = Vec::new();
        for t in tasks {
            retries.push(t.await.unwrap());
        }
        // The state machine counts its writes: each applied once.
        assert_eq!(admin.read(1, ()).await.unwrap(), 150);
        let terms_after: u64 = statuses(&mut admin, &addrs)
            .await
            .iter()
            .flatten()
            .map(|s| s.1)
            .sum();
        if terms_after == terms_before {
            // No election meanwhile.
            assert_eq!(retries, [0, 0, 0, 0, 1, 1]);
        }
        // A server that does not answer has no status.
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = gone.local_addr().unwrap();
        assert_eq!(statuses(&mut admin, &[gone]).await, [None]);
        cluster.shutdown().await;
    }
}
