//! The network the server processes run on, and the faults it can be given.
//!
//! Two modes, chosen by [`Net::create`]:
//!
//! - **Network namespaces** (Linux, as root). Each node runs in a namespace of its own with
//!   one interface, `eth0`, joined to a bridge in the test's namespace by a veth pair. Every
//!   node has its own address on the bridge's /24 and uses the same ports; the test's clients
//!   reach the nodes through the bridge's address. Faults are made outside the processes:
//!   - a link between two nodes is cut by giving each of them a permanent neighbour entry for
//!     the other that points at a hardware address no interface has, so frames to it are
//!     dropped silently, as on a broken link (the kernels these tests run on have no netem,
//!     no nftables and no bridge VLAN filtering, which rules out the other ways of cutting one
//!     pair of nodes on a shared bridge);
//!   - a node is disconnected from everything, clients included, by taking the bridge end of
//!     its veth pair down.
//! - **TCP proxies** (anywhere). Every node listens on loopback; node `a` reaches node `b`
//!   through a proxy of its own for that link (a Raft data port and the heartbeat port after
//!   it), so each direction of each link can be stalled. A stalled proxy stops moving bytes
//!   and holds new connections without connecting them, which the processes see as a silent
//!   network. Clients connect to the nodes directly, so [`Net::disconnect`] is the same as
//!   [`Net::isolate`] here.
//!
//! Either way the processes are unmodified: no hook inside them is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use raft_core::NodeId;
use tracing::{debug, warn};

use crate::proxy::Proxy;

/// Which kind of network a run used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each node in its own network namespace, joined to a bridge by a veth pair.
    Netns,
    /// Every node on loopback, each link through a fault-injecting TCP proxy.
    Proxy,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Netns => "network namespaces",
            Mode::Proxy => "TCP proxies",
        })
    }
}

/// A failure to set up or change the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command that shapes the network failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its standard error, or why it could not run.
        detail: String,
    },
    /// No free loopback port could be bound.
    #[error("no free loopback port: {0}")]
    Port(#[source] std::io::Error),
    /// The node is not part of this network.
    #[error("node {0} is not part of this network")]
    UnknownNode(NodeId),
    /// Node ids must fit in the last byte of an address (1 to 250).
    #[error("node id {0} is out of range (1 to 250)")]
    BadId(NodeId),
}

/// The addresses one node is started with.
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    /// Where this node listens for Raft data (its heartbeat listener is on the next port).
    pub raft: SocketAddr,
    /// Where this node listens for clients.
    pub client: SocketAddr,
    /// How this node reaches every other node: each peer's Raft data address as seen from
    /// here (a proxy in proxy mode), and the peer's client address, which is what leader
    /// hints carry to clients.
    pub peers: BTreeMap<NodeId, (SocketAddr, SocketAddr)>,
}

impl NodeAddrs {
    /// The peers as `ID=RAFT/CLIENT,...`, the `--peers` argument of the example servers
    /// (`counter-server`, `kv-server`).
    pub fn peers_arg(&self) -> String {
        self.peers
            .iter()
            .map(|(id, (raft, client))| format!("{id}={raft}/{client}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Fixed ports in namespace mode (every node has an address of its own).
const RAFT_PORT: u16 = 7000;
const CLIENT_PORT: u16 = 7002;
/// A hardware address no interface has: frames sent to it reach nobody.
const NOWHERE_MAC: &str = "02:00:5e:00:de:ad";

/// Distinguishes the networks of one test process (several tests can run at once).
static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// The network of one run. Dropping it tears the network down (stop the processes first).
pub struct Net {
    mode: Mode,
    nodes: BTreeMap<NodeId, NodeAddrs>,
    /// Pairs of nodes whose link is cut, `(low, high)`.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Nodes disconnected from everything.
    down: BTreeSet<NodeId>,
    kind: Kind,
}

enum Kind {
    Netns {
        /// Unique per run: names the bridge, veths and namespaces.
        tag: String,
        /// The first three octets of the /24.
        prefix: [u8; 3],
        bridge: String,
    },
    Proxy {
        /// The proxy node `a` uses to reach node `b`, by `(a, b)`.
        links: BTreeMap<(NodeId, NodeId), Proxy>,
        /// Each node's own listening addresses (Raft data, client).
        real: BTreeMap<NodeId, (SocketAddr, SocketAddr)>,
    },
}

impl Net {
    /// A network for `ids`: namespaces when `ip netns` works here (and `RAFT_NEMESIS_MODE` is
    /// not `proxy`), TCP proxies otherwise. Logs which mode it chose and why.
    pub fn create(ids: &[NodeId]) -> Result<Net, NetError> {
        for id in ids {
            if !(1..=250).contains(id) {
                return Err(NetError::BadId(*id));
            }
        }
        let forced = std::env::var("RAFT_NEMESIS_MODE").ok();
        if forced.as_deref() != Some("proxy") {
            match Net::netns(ids) {
                Ok(net) => return Ok(net),
                Err(e) => {
                    if forced.as_deref() == Some("netns") {
                        return Err(e);
                    }
                    warn!(error = %e, "network namespaces unavailable; using TCP proxies");
                }
            }
        }
        Net::proxies(ids)
    }

    /// Which mode this network runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The addresses node `id` is started with.
    pub fn addrs(&self, id: NodeId) -> Result<&NodeAddrs, NetError> {
        self.nodes.get(&id).ok_or(NetError::UnknownNode(id))
    }

    /// Every node's client address, by id.
    pub fn client_addrs(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.nodes.iter().map(|(id, a)| (*id, a.client)).collect()
    }

    /// The node ids of this network.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// A command that runs `program` as node `id`: inside its namespace in namespace mode.
    pub fn command(&self, id: NodeId, program: &str) -> Result<Command, NetError> {
        if !self.nodes.contains_key(&id) {
            return Err(NetError::UnknownNode(id));
        }
        Ok(match &self.kind {
            Kind::Netns { tag, .. } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns_name(tag, id), program]);
                c
            }
            Kind::Proxy { .. } => Command::new(program),
        })
    }

    /// Adds node `id` to a running network (a node that will join the cluster). Every node
    /// already running learns its address from the cluster, not from its command line.
    pub fn add_node(&mut self, id: NodeId) -> Result<&NodeAddrs, NetError> {
        if !(1..=250).contains(&id) {
            return Err(NetError::BadId(id));
        }
        if self.nodes.contains_key(&id) {
            return self.addrs(id);
        }
        match &mut self.kind {
            Kind::Netns {
                tag,
                prefix,
                bridge,
            } => {
                let (tag, prefix, bridge) = (tag.clone(), *prefix, bridge.clone());
                add_namespace(&tag, prefix, &bridge, id)?;
            }
            Kind::Proxy { real, .. } => {
                let raft = free_port_pair()?;
                let client = free_port()?;
                real.insert(id, (raft, client));
            }
        }
        let mut ids = self.ids();
        ids.push(id);
        self.rebuild(&ids)?;
        self.addrs(id)
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&mut self, a: NodeId, b: NodeId) -> Result<(), NetError> {
        self.known(a)?;
        self.known(b)?;
        if a == b || !self.cut.insert(ordered(a, b)) {
            return Ok(());
        }
        match &self.kind {
            Kind::Netns { tag, prefix, .. } => {
                for (from, to) in [(a, b), (b, a)] {
                    ip(&[
                        "-n",
                        &ns_name(tag, from),
                        "neigh",
                        "replace",
                        &node_ip(*prefix, to).to_string(),
                        "lladdr",
                        NOWHERE_MAC,
                        "dev",
                        "eth0",
                        "nud",
                        "permanent",
                    ])?;
                }
            }
            Kind::Proxy { links, .. } => {
                for key in [(a, b), (b, a)] {
                    if let Some(p) = links.get(&key) {
                        p.set_stalled(true);
                    }
                }
            }
        }
        debug!(a, b, "link cut");
        Ok(())
    }

    /// Cuts `id` off from every other node; clients can still reach it.
    pub fn isolate(&mut self, id: NodeId) -> Result<(), NetError> {
        for other in self.ids() {
            if other != id {
                self.cut(id, other)?;
            }
        }
        Ok(())
    }

    /// Splits the nodes into `side` and the rest: every link across is cut.
    pub fn split(&mut self, side: &BTreeSet<NodeId>) -> Result<(), NetError> {
        let ids = self.ids();
        for a in side {
            for b in &ids {
                if !side.contains(b) {
                    self.cut(*a, *b)?;
                }
            }
        }
        Ok(())
    }

    /// Disconnects `id` from everything, clients included (namespace mode: its veth goes
    /// down; proxy mode: as [`Net::isolate`]).
    pub fn disconnect(&mut self, id: NodeId) -> Result<(), NetError> {
        self.known(id)?;
        match &self.kind {
            Kind::Netns { tag, .. } => {
                if self.down.insert(id) {
                    ip(&["link", "set", &veth_name(tag, id), "down"])?;
                }
                Ok(())
            }
            Kind::Proxy { .. } => self.isolate(id),
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) -> Result<(), NetError> {
        let cut = std::mem::take(&mut self.cut);
        let down = std::mem::take(&mut self.down);
        match &self.kind {
            Kind::Netns { tag, prefix, .. } => {
                for (a, b) in cut {
                    for (from, to) in [(a, b), (b, a)] {
                        ip(&[
                            "-n",
                            &ns_name(tag, from),
                            "neigh",
                            "del",
                            &node_ip(*prefix, to).to_string(),
                            "dev",
                            "eth0",
                        ])?;
                    }
                }
                for id in &down {
                    ip(&["link", "set", &veth_name(tag, *id), "up"])?;
                }
                if !down.is_empty() {
                    // Neighbours that went unanswered while a node was away are in a failed
                    // state that is probed again only after a while: forget them, as a
                    // restored network would soon.
                    for id in self.nodes.keys() {
                        ip(&["-n", &ns_name(tag, *id), "neigh", "flush", "dev", "eth0"])?;
                    }
                }
            }
            Kind::Proxy { links, .. } => {
                for p in links.values() {
                    p.set_stalled(false);
                }
            }
        }
        debug!("network healed");
        Ok(())
    }

    /// The pairs whose link is cut now, and the nodes disconnected from everything.
    pub fn faults(&self) -> (Vec<(NodeId, NodeId)>, Vec<NodeId>) {
        (
            self.cut.iter().copied().collect(),
            self.down.iter().copied().collect(),
        )
    }

    fn known(&self, id: NodeId) -> Result<(), NetError> {
        if self.nodes.contains_key(&id) {
            Ok(())
        } else {
            Err(NetError::UnknownNode(id))
        }
    }

    fn netns(ids: &[NodeId]) -> Result<Net, NetError> {
        let k = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Short: interface names have at most 15 bytes ("nv" + tag + id).
        let tag = format!("{:x}{k:x}", pid & 0xffff);
        let prefix = [10, 100 + ((pid >> 8) % 100) as u8, (pid as u8) ^ (k as u8)];
        let bridge = format!("nb{tag}");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        let mut net = Net {
            mode: Mode::Netns,
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            kind: Kind::Netns {
                tag: tag.clone(),
                prefix,
                bridge: bridge.clone(),
            },
        };
        // From here on, dropping `net` removes what was made.
        ip(&[
            "addr",
            "add",
            &format!("{}.{}.{}.254/24", prefix[0], prefix[1], prefix[2]),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for id in ids {
            add_namespace(&tag, prefix, &bridge, *id)?;
        }
        net.rebuild(ids)?;
        Ok(net)
    }

    fn proxies(ids: &[NodeId]) -> Result<Net, NetError> {
        let mut real = BTreeMap::new();
        for id in ids {
            real.insert(*id, (free_port_pair()?, free_port()?));
        }
        let mut net = Net {
            mode: Mode::Proxy,
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            kind: Kind::Proxy {
                links: BTreeMap::new(),
                real,
            },
        };
        net.rebuild(ids)?;
        Ok(net)
    }

    /// Recomputes every node's addresses for the node set `ids` (and starts the proxies of
    /// new links in proxy mode).
    fn rebuild(&mut self, ids: &[NodeId]) -> Result<(), NetError> {
        let mut nodes = BTreeMap::new();
        match &mut self.kind {
            Kind::Netns { prefix, .. } => {
                for id in ids {
                    let at = IpAddr::V4(node_ip(*prefix, *id));
                    nodes.insert(
                        *id,
                        NodeAddrs {
                            raft: SocketAddr::new(at, RAFT_PORT),
                            client: SocketAddr::new(at, CLIENT_PORT),
                            peers: BTreeMap::new(),
                        },
                    );
                }
                let all: Vec<(NodeId, SocketAddr, SocketAddr)> =
                    nodes.iter().map(|(i, a)| (*i, a.raft, a.client)).collect();
                for a in nodes.values_mut() {
                    a.peers = all.iter().map(|(i, r, c)| (*i, (*r, *c))).collect();
                }
            }
            Kind::Proxy { links, real } => {
                for a in ids {
                    let (raft, client) = real[a];
                    let mut peers = BTreeMap::new();
                    for b in ids {
                        let (b_raft, b_client) = real[b];
                        if a == b {
                            peers.insert(*b, (raft, client));
                            continue;
                        }
                        let proxy = match links.entry((*a, *b)) {
                            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::btree_map::Entry::Vacant(e) => {
                                e.insert(Proxy::start(b_raft)?)
                            }
                        };
                        peers.insert(*b, (proxy.addr(), b_client));
                    }
                    nodes.insert(
                        *a,
                        NodeAddrs {
                            raft,
                            client,
                            peers,
                        },
                    );
                }
            }
        }
        self.nodes = nodes;
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Kind::Netns { tag, bridge, .. } = &self.kind {
            for id in self.nodes.keys() {
                let _ = ip(&["link", "del", &veth_name(tag, *id)]);
                let _ = ip(&["netns", "del", &ns_name(tag, *id)]);
            }
            let _ = ip(&["link", "del", bridge]);
        }
    }
}

fn ordered(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

fn ns_name(tag: &str, id: NodeId) -> String {
    format!("nemesis-{tag}-{id}")
}

fn veth_name(tag: &str, id: NodeId) -> String {
    format!("nv{tag}{id}")
}

fn node_ip(prefix: [u8; 3], id: NodeId) -> Ipv4Addr {
    Ipv4Addr::new(prefix[0], prefix[1], prefix[2], id as u8)
}

/// Makes node `id`'s namespace and joins it to the bridge.
fn add_namespace(tag: &str, prefix: [u8; 3], bridge: &str, id: NodeId) -> Result<(), NetError> {
    let ns = ns_name(tag, id);
    let veth = veth_name(tag, id);
    ip(&["netns", "add", &ns])?;
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    ip(&["link", "set", &veth, "master", bridge])?;
    ip(&["link", "set", &veth, "up"])?;
    let addr = format!("{}/24", node_ip(prefix, id));
    ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Runs `ip` with `args`.
fn ip(args: &[&str]) -> Result<(), NetError> {
    let command = format!("ip {}", args.join(" "));
    match Command::new("ip").args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(NetError::Command {
            command,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(NetError::Command {
            command,
            detail: e.to_string(),
        }),
    }
}

/// A free loopback port (probed, then released for the process that will bind it).
fn free_port() -> Result<SocketAddr, NetError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(NetError::Port)?;
    l.local_addr().map_err(NetError::Port)
}

/// A free loopback port whose successor is free too (a Raft data port and its heartbeat port).
pub(crate) fn free_port_pair() -> Result<SocketAddr, NetError> {
    let mut last = None;
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").map_err(NetError::Port)?;
        let a = l.local_addr().map_err(NetError::Port)?;
        let Some(next) = a.port().checked_add(1) else {
            continue;
        };
        match TcpListener::bind(SocketAddr::new(a.ip(), next)) {
            Ok(_) => return Ok(a),
            Err(e) => last = Some(e),
        }
    }
    Err(NetError::Port(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "no two adjacent free ports")
    })))
}
