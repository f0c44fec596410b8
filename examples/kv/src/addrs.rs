//! Parsing the address lists the binaries take: `kv-server --peers` and `kv --servers`.
//!
//! `--peers` is `ID=HOST:PORT/CLIENT_HOST:CLIENT_PORT,...`, one entry per node of a new
//! cluster, the same string for every server. `HOST:PORT` is the node's Raft data address,
//! its heartbeat address is `PORT + 1`; the client address is required (redirects and leader
//! hints name it).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use raft_actor::{NodeAddrs, NodeId};

use crate::error::AddrError;

/// Every node of a new cluster and its addresses, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers(pub BTreeMap<NodeId, NodeAddrs>);

impl Peers {
    /// The Raft addresses of every node, as `raft_net::TcpConfig::peers` wants them.
    pub fn raft_addrs(&self) -> BTreeMap<NodeId, raft_actor::PeerAddrs> {
        self.0
            .iter()
            .map(|(id, a)| {
                let peer = raft_actor::PeerAddrs {
                    data: a.data,
                    heartbeat: a.heartbeat,
                };
                (*id, peer)
            })
            .collect()
    }

    /// The metadata group's first configuration: every node a voter, with its addresses.
    pub fn membership(&self) -> raft_actor::Membership {
        let mut m = raft_actor::Membership::new(self.0.keys().copied());
        for (id, a) in &self.0 {
            m.set_addrs(*id, *a);
        }
        m
    }

    /// Every node's client address, in id order.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.0.values().filter_map(|a| a.client).collect()
    }

    /// The `--peers` string describing these nodes.
    pub fn to_arg(&self) -> String {
        self.0
            .iter()
            .map(|(id, a)| match a.client {
                Some(c) => format!("{id}={}/{c}", a.data),
                None => format!("{id}={}", a.data),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One `HOST:PORT/CLIENT_HOST:CLIENT_PORT` (the Raft heartbeat address is the data port + 1).
pub fn parse_node_addrs(s: &str) -> Result<NodeAddrs, String> {
    let (raft, client) = s
        .split_once('/')
        .ok_or_else(|| "expected HOST:PORT/CLIENT_HOST:CLIENT_PORT".to_string())?;
    let data = resolve(raft)?;
    if data.port() == 0 {
        return Err("the Raft port must not be 0".into());
    }
    let hb = data
        .port()
        .checked_add(1)
        .ok_or_else(|| "the Raft port must be below 65535 (heartbeats use PORT + 1)".to_string())?;
    Ok(NodeAddrs {
        data,
        heartbeat: SocketAddr::new(data.ip(), hb),
        client: Some(resolve(client)?),
    })
}

impl FromStr for Peers {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let mut peers = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |reason: String| AddrError::Entry {
                entry: entry.to_string(),
                reason,
            };
            let (id, addrs) = entry
                .split_once('=')
                .ok_or_else(|| bad("expected ID=HOST:PORT/CLIENT_HOST:CLIENT_PORT".into()))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| bad(format!("node id `{id}` is not a number")))?;
            if id == 0 {
                return Err(bad("node id 0 is reserved; use 1, 2, ...".into()));
            }
            let addrs = parse_node_addrs(addrs).map_err(bad)?;
            if peers.insert(id, addrs).is_some() {
                return Err(AddrError::DuplicateId(id));
            }
        }
        if peers.is_empty() {
            return Err(AddrError::Empty);
        }
        Ok(Peers(peers))
    }
}

/// Parses a comma-separated list of `HOST:PORT` (`kv --servers`, `kv-server --join`).
pub fn parse_servers(s: &str) -> Result<Vec<SocketAddr>, AddrError> {
    let mut out = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let addr = resolve(entry).map_err(|reason| AddrError::Entry {
            entry: entry.to_string(),
            reason,
        })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(AddrError::Empty);
    }
    Ok(out)
}

/// Resolves `HOST:PORT` to its first address (IPv4 preferred).
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!("`{s}` is not HOST:PORT"));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{s}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// Addresses for `n` nodes on 127.0.0.1 that are free right now: per node three consecutive
/// ports, Raft data `P`, heartbeat `P + 1`, client `P + 2`, from 10000..32000 (below Linux's
/// ephemeral range, so a stopped node's port is not taken by an outgoing connection). Each
/// triple is checked by binding it and released before returning; callers that cannot
/// tolerate a concurrent process taking one retry.
pub fn free_loopback_addrs(n: usize) -> std::io::Result<Vec<NodeAddrs>> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let mut port = 10_000 + (h.finish() % 2_000) as u16 * 10;
    let mut held = Vec::new();
    let mut out = Vec::new();
    let ip = std::net::Ipv4Addr::LOCALHOST;
    for _ in 0..2_200 {
        if out.len() == n {
            return Ok(out);
        }
        if port > 31_990 {
            port = 10_000;
        }
        let triple: std::io::Result<Vec<_>> = (0..3)
            .map(|i| std::net::TcpListener::bind((ip, port + i)))
            .collect();
        if let Ok(listeners) = triple {
            held.extend(listeners);
            let at = |p: u16| SocketAddr::from((ip, p));
            out.push(NodeAddrs {
                data: at(port),
                heartbeat: at(port + 1),
                client: Some(at(port + 2)),
            });
        }
        port += 10;
    }
    if out.len() == n {
        return Ok(out);
    }
    Err(std::io::Error::other(
        "not enough free loopback ports in 10000..32000",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peers_and_refuses_bad_ones() {
        let p: Peers = "1=127.0.0.1:7101/127.0.0.1:7201, 2=127.0.0.1:7111/127.0.0.1:7211"
            .parse()
            .unwrap();
        assert_eq!(p.0[&1].heartbeat, "127.0.0.1:7102".parse().unwrap());
        assert_eq!(p.client_addrs().len(), 2);
        assert_eq!(p.to_arg().parse::<Peers>().unwrap(), p);
        assert_eq!("".parse::<Peers>(), Err(AddrError::Empty));
        for bad in [
            "1=127.0.0.1:1",
            "x=127.0.0.1:1/127.0.0.1:2",
            "0=127.0.0.1:1/127.0.0.1:2",
            "1=127.0.0.1:65535/127.0.0.1:2",
            "1=127.0.0.1:5/garbage",
        ] {
            assert!(
                matches!(bad.parse::<Peers>(), Err(AddrError::Entry { .. })),
                "{bad}"
            );
        }
        assert!(parse_servers("127.0.0.1:1,127.0.0.1:1").unwrap().len() == 1);
        assert!(parse_servers(" ").is_err());
    }
}
