//! Parsing the address lists the binaries take: `--peers` of `counter-server` and `--servers`
//! of `counter-client`.
//!
//! # `--peers`
//!
//! `ID=HOST:PORT[/CLIENT_HOST:CLIENT_PORT],...`, one entry per node of the cluster, the same
//! string for every server:
//!
//! - `HOST:PORT` is the node's Raft **data** address. Its Raft **heartbeat** address is the same
//!   host at `PORT + 1` (the two lanes have separate listeners and connections: heartbeats on
//!   their own executor, docs/architecture.md), so a node uses two consecutive ports for Raft.
//! - `/CLIENT_HOST:CLIENT_PORT` (optional) is the node's client address (its `--listen`, as
//!   clients reach it). A server that is not the leader answers clients with the leader's client
//!   address taken from here; without it the answer names only the leader's id and the client
//!   tries its other servers.
//!
//! Example: `1=127.0.0.1:7101/127.0.0.1:7201,2=127.0.0.1:7111/127.0.0.1:7211,3=...`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use raft_core::NodeId;
use raft_net::PeerAddrs;

use crate::error::AddrError;

/// One node's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Raft data and heartbeat listeners (heartbeat = data port + 1).
    pub raft: PeerAddrs,
    /// Client address, if given.
    pub client: Option<SocketAddr>,
}

/// Every node of the cluster, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers(pub BTreeMap<NodeId, Peer>);

impl Peers {
    /// The Raft addresses of every node, as `raft_net::TcpConfig::peers` wants them.
    pub fn raft_addrs(&self) -> BTreeMap<NodeId, PeerAddrs> {
        self.0.iter().map(|(id, p)| (*id, p.raft)).collect()
    }

    /// The configuration a new cluster of these nodes starts with: every node a voter, with
    /// its addresses (so every member, and every node that joins later, learns them).
    pub fn membership(&self) -> raft_actor::Membership {
        let mut m = raft_actor::Membership::new(self.0.keys().copied());
        for (id, p) in &self.0 {
            m.set_addrs(
                *id,
                raft_actor::NodeAddrs {
                    data: p.raft.data,
                    heartbeat: p.raft.heartbeat,
                    client: p.client,
                },
            );
        }
        m
    }

    /// The `--peers` string describing these nodes.
    pub fn to_arg(&self) -> String {
        self.0
            .iter()
            .map(|(id, p)| match p.client {
                Some(c) => format!("{id}={}/{c}", p.raft.data),
                None => format!("{id}={}", p.raft.data),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
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
                .ok_or_else(|| bad("expected ID=HOST:PORT[/CLIENT_HOST:CLIENT_PORT]".into()))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| bad(format!("node id `{id}` is not a number")))?;
            if id == 0 {
                return Err(bad("node id 0 is reserved; use 1, 2, ...".into()));
            }
            let (raft, client) = match addrs.split_once('/') {
                Some((raft, client)) => (raft, Some(client)),
                None => (addrs, None),
            };
            let data = resolve(raft).map_err(bad)?;
            let heartbeat_port = data.port().checked_add(1).ok_or_else(|| {
                bad("the Raft port must be below 65535 (the heartbeat lane uses PORT + 1)".into())
            })?;
            if data.port() == 0 {
                return Err(bad("the Raft port must not be 0".into()));
            }
            let heartbeat = SocketAddr::new(data.ip(), heartbeat_port);
            let client = client.map(resolve).transpose().map_err(bad)?;
            let peer = Peer {
                raft: PeerAddrs { data, heartbeat },
                client,
            };
            if peers.insert(id, peer).is_some() {
                return Err(AddrError::DuplicateId(id));
            }
        }
        if peers.is_empty() {
            return Err(AddrError::Empty);
        }
        Ok(Peers(peers))
    }
}

/// Picks addresses for `n` nodes on 127.0.0.1 that are free right now: per node three
/// consecutive ports, Raft data `P`, Raft heartbeat `P + 1`, client `P + 2`.
///
/// Ports come from 10000..32000, below Linux's default ephemeral range, so an outgoing
/// connection cannot take a stopped node's port before it restarts. The start is random, so
/// tests running in parallel rarely probe the same ports; each triple is checked by binding
/// it (and released before returning, so a concurrent process could still take one: callers
/// that cannot tolerate that retry).
pub fn free_loopback_peers(n: usize) -> std::io::Result<Peers> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let mut port = 10_000 + (h.finish() % 2_000) as u16 * 10;
    let mut held = Vec::new();
    let mut peers = BTreeMap::new();
    let ip = std::net::Ipv4Addr::LOCALHOST;
    for _ in 0..2_200 {
        if peers.len() == n {
            return Ok(Peers(peers));
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
            peers.insert(
                peers.len() as NodeId + 1,
                Peer {
                    raft: PeerAddrs {
                        data: at(port),
                        heartbeat: at(port + 1),
                    },
                    client: Some(at(port + 2)),
                },
            );
        }
        port += 10;
    }
    if peers.len() == n {
        return Ok(Peers(peers));
    }
    Err(std::io::Error::other(
        "not enough free loopback ports in 10000..32000",
    ))
}

/// Parses a comma-separated list of `HOST:PORT` (the client's `--servers`).
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

/// Resolves `HOST:PORT` to its first address (IPv4 preferred, as on loopback clusters).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peers_with_and_without_client_addresses() {
        let p: Peers = "1=127.0.0.1:7101/127.0.0.1:7201, 2=127.0.0.1:7111"
            .parse()
            .unwrap();
        assert_eq!(p.0.len(), 2);
        assert_eq!(p.0[&1].raft.heartbeat, "127.0.0.1:7102".parse().unwrap());
        assert_eq!(p.0[&1].client, Some("127.0.0.1:7201".parse().unwrap()));
        assert_eq!(p.0[&2].client, None);
        assert_eq!(p.to_arg().parse::<Peers>().unwrap(), p);
        let l: Peers = "3=localhost:7001".parse().unwrap();
        assert!(l.0[&3].raft.data.ip().is_loopback());
    }

    #[test]
    fn bad_peers_are_typed_errors() {
        assert_eq!("".parse::<Peers>(), Err(AddrError::Empty));
        assert_eq!(
            "1=127.0.0.1:1,1=127.0.0.1:3".parse::<Peers>(),
            Err(AddrError::DuplicateId(1))
        );
        for bad in [
            "x=127.0.0.1:1",
            "0=127.0.0.1:1",
            "1127.0.0.1:1",
            "1=nohost",
            "1=127.0.0.1:65535",
            "1=127.0.0.1:0",
            "1=127.0.0.1:5/garbage",
        ] {
            assert!(
                matches!(bad.parse::<Peers>(), Err(AddrError::Entry { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_servers() {
        let s = parse_servers("127.0.0.1:1,127.0.0.1:2,127.0.0.1:1").unwrap();
        assert_eq!(s.len(), 2);
        assert!(parse_servers(" , ").is_err());
        assert!(parse_servers("127.0.0.1").is_err());
    }
}
