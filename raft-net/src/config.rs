//! Configuration of the TCP and in-memory transports, with validation that names the bad field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ConfigError;
use crate::frame::HANDSHAKE_MAX_FRAME;
use crate::tls::TlsConfig;
use crate::transport::{ClusterId, Lane, NodeId};

/// Largest `max_frame_size` accepted: 1 GiB. Anything larger is a misconfiguration (snapshots
/// travel in chunks).
pub const MAX_FRAME_SIZE_LIMIT: usize = 1 << 30;

/// Largest capacity accepted for any queue or channel: keeps a typo from reserving gigabytes.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// Largest `TcpConfig::max_peers` accepted. The peer table holds two cells per allowed peer
/// (16 bytes each), reserved at start.
pub const MAX_PEERS_LIMIT: usize = 1 << 16;

/// Where a peer listens: one address per lane (each lane has its own listener and connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddrs {
    /// Data-lane listener.
    pub data: SocketAddr,
    /// Heartbeat-lane listener.
    pub heartbeat: SocketAddr,
}

impl PeerAddrs {
    /// The address of `lane`'s listener.
    pub fn lane(&self, lane: Lane) -> SocketAddr {
        match lane {
            Lane::Heartbeat => self.heartbeat,
            Lane::Data => self.data,
        }
    }
}

/// Configuration of a [`crate::TcpTransport`]. Build with [`TcpConfig::new`], adjust fields,
/// and the transport validates it on start.
///
/// Memory bound per peer for outbound queues:
/// `data_queue_capacity * large_frame_threshold + bulk_queue_capacity * max_frame_size +
/// heartbeat_queue_capacity * max_frame_size` (heartbeat frames are small in practice).
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// This node.
    pub node_id: NodeId,
    /// The cluster; connections carrying another id are refused.
    pub cluster_id: ClusterId,
    /// The peers known at start and where they listen: starting the transport calls
    /// [`crate::Transport::add_peer`] for each. An entry for `node_id` itself is ignored.
    ///
    /// The peer set is not fixed: `add_peer` adds a node (or moves one to new addresses) and
    /// `remove_peer` forgets one, at runtime. At any moment, a node that is not an active peer
    /// (never added, or removed since) cannot connect (its handshake is refused) and cannot be
    /// sent to (`SendError::UnknownPeer`).
    pub peers: BTreeMap<NodeId, PeerAddrs>,
    /// Most distinct peer ids this transport ever holds, those of `peers` included. Each id
    /// gets a slot (its queues, link tasks and counters) the first time it is added; the slot
    /// is kept when the peer is removed, so a re-add reuses it, and removed ids still count.
    /// Beyond it, `add_peer` fails with `NetError::TooManyPeers`. The table's memory (two
    /// 16-byte cells per allowed peer) is reserved at start; a peer's queues only when added.
    pub max_peers: usize,
    /// Largest frame (version + kind + body) sent or accepted. A peer announcing more is
    /// disconnected before anything is allocated; a local message encoding to more is refused
    /// with `SendError::FrameTooLarge`. Snapshot chunks must fit.
    pub max_frame_size: usize,
    /// Data-lane frames longer than this are "large" (snapshot chunks, big AppendEntries
    /// batches) and wait in the bulk queue; the writer interleaves at most one large frame per
    /// batch of small ones so large frames cannot starve small ones. Small frames keep their
    /// order among themselves, large ones among themselves; a small frame may overtake a large
    /// one queued before it.
    pub large_frame_threshold: usize,
    /// Per-peer queue of small data-lane frames. Full: the message is dropped and counted.
    pub data_queue_capacity: usize,
    /// Per-peer queue of large data-lane frames. Full: dropped and counted. Kept small since
    /// each entry may be `max_frame_size` bytes.
    pub bulk_queue_capacity: usize,
    /// Per-peer heartbeat queue. Full: dropped and counted (a newer heartbeat follows soon).
    pub heartbeat_queue_capacity: usize,
    /// Inbound data channel (all peers). Full: the received message is dropped and counted;
    /// the socket reader never waits for the consumer.
    pub inbound_data_capacity: usize,
    /// Inbound heartbeat channel (all peers). Full: dropped and counted.
    pub inbound_heartbeat_capacity: usize,
    /// A writer coalesces queued small frames into one buffer of up to this many bytes and
    /// writes it with one call (write batching).
    pub write_batch_bytes: usize,
    /// First reconnect delay after a failure (jittered down to half of it).
    pub backoff_min: Duration,
    /// Cap of the exponential reconnect delay: a peer that comes back is reconnected to
    /// within this bound plus one connect attempt.
    pub backoff_max: Duration,
    /// Bound on establishing a TCP connection.
    pub connect_timeout: Duration,
    /// Bound on the TLS + hello exchange, on both sides. A peer that connects and says
    /// nothing is disconnected after it.
    pub handshake_timeout: Duration,
    /// A write batch not accepted by the peer's socket within this time marks the connection
    /// dead; it is closed and redialed (a peer that stopped reading).
    pub write_timeout: Duration,
    /// Bound on `Transport::shutdown` waiting for the transport's tasks to end.
    pub shutdown_timeout: Duration,
    /// Concurrent inbound connections per lane listener, handshaking or established. Further
    /// connections are closed at accept, bounding what unauthenticated peers can hold.
    pub max_inbound_connections: usize,
    /// At most one warning line per this interval for both listeners' refused connections,
    /// refused handshakes and failed accepts (what a flood of bad connections causes); each
    /// line says how many were held back before it, and
    /// `MetricsSnapshot::warnings_suppressed` counts them all.
    pub warn_interval: Duration,
    /// Mutual TLS. `None` (the default) is plaintext, meant for loopback and trusted networks.
    pub tls: Option<TlsConfig>,
}

impl TcpConfig {
    /// A configuration with defaults suited to a LAN cluster.
    pub fn new(node_id: NodeId, cluster_id: ClusterId, peers: BTreeMap<NodeId, PeerAddrs>) -> Self {
        Self {
            node_id,
            cluster_id,
            peers,
            max_peers: 1024,
            max_frame_size: 8 << 20,
            large_frame_threshold: 64 << 10,
            data_queue_capacity: 4096,
            bulk_queue_capacity: 8,
            heartbeat_queue_capacity: 256,
            inbound_data_capacity: 16 * 1024,
            inbound_heartbeat_capacity: 4096,
            write_batch_bytes: 256 << 10,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(2),
            max_inbound_connections: 512,
            warn_interval: Duration::from_secs(1),
            tls: None,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_peers == 0 || self.max_peers > MAX_PEERS_LIMIT {
            return Err(ConfigError::invalid(
                "max_peers",
                format!("must be in 1..={MAX_PEERS_LIMIT}"),
            ));
        }
        let initial = self.peers.keys().filter(|p| **p != self.node_id).count();
        if initial > self.max_peers {
            return Err(ConfigError::invalid(
                "peers",
                format!("lists {initial} peers but max_peers is {}", self.max_peers),
            ));
        }
        if self.max_frame_size < HANDSHAKE_MAX_FRAME || self.max_frame_size > MAX_FRAME_SIZE_LIMIT {
            return Err(ConfigError::invalid(
                "max_frame_size",
                format!("must be in {HANDSHAKE_MAX_FRAME}..={MAX_FRAME_SIZE_LIMIT}"),
            ));
        }
        if self.large_frame_threshold == 0 || self.large_frame_threshold > self.max_frame_size {
            return Err(ConfigError::invalid(
                "large_frame_threshold",
                "must be in 1..=max_frame_size",
            ));
        }
        capacity("data_queue_capacity", self.data_queue_capacity)?;
        capacity("bulk_queue_capacity", self.bulk_queue_capacity)?;
        capacity("heartbeat_queue_capacity", self.heartbeat_queue_capacity)?;
        capacity("inbound_data_capacity", self.inbound_data_capacity)?;
        capacity(
            "inbound_heartbeat_capacity",
            self.inbound_heartbeat_capacity,
        )?;
        capacity("max_inbound_connections", self.max_inbound_connections)?;
        if self.write_batch_bytes == 0 || self.write_batch_bytes > MAX_FRAME_SIZE_LIMIT {
            return Err(ConfigError::invalid(
                "write_batch_bytes",
                format!("must be in 1..={MAX_FRAME_SIZE_LIMIT}"),
            ));
        }
        positive("backoff_min", self.backoff_min)?;
        if self.backoff_max < self.backoff_min {
            return Err(ConfigError::invalid(
                "backoff_max",
                "must be at least backoff_min",
            ));
        }
        positive("connect_timeout", self.connect_timeout)?;
        positive("handshake_timeout", self.handshake_timeout)?;
        positive("write_timeout", self.write_timeout)?;
        positive("shutdown_timeout", self.shutdown_timeout)?;
        positive("warn_interval", self.warn_interval)?;
        Ok(())
    }
}

/// Configuration of the in-memory transport ([`crate::MemNetwork`]).
#[derive(Clone, Debug)]
pub struct MemConfig {
    /// Inbound data channel per node. Full: dropped and counted.
    pub inbound_data_capacity: usize,
    /// Inbound heartbeat channel per node. Full: dropped and counted.
    pub inbound_heartbeat_capacity: usize,
    /// Queue into the fault-injecting router (all nodes). Full: dropped and counted.
    pub router_capacity: usize,
    /// Messages held back for delay or reordering at once. Beyond it, new delayed messages are
    /// dropped and counted, so a long delay cannot grow memory without bound.
    pub max_in_flight: usize,
}

impl Default for MemConfig {
    fn default() -> Self {
        Self {
            inbound_data_capacity: 16 * 1024,
            inbound_heartbeat_capacity: 4096,
            router_capacity: 64 * 1024,
            max_in_flight: 64 * 1024,
        }
    }
}

impl MemConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        capacity("inbound_data_capacity", self.inbound_data_capacity)?;
        capacity(
            "inbound_heartbeat_capacity",
            self.inbound_heartbeat_capacity,
        )?;
        capacity("router_capacity", self.router_capacity)?;
        capacity("max_in_flight", self.max_in_flight)?;
        Ok(())
    }
}

pub(crate) fn capacity(field: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 || value > MAX_QUEUE_CAPACITY {
        return Err(ConfigError::invalid(
            field,
            format!("must be in 1..={MAX_QUEUE_CAPACITY}"),
        ));
    }
    Ok(())
}

pub(crate) fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(field, "must be greater than zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(cfg: &TcpConfig) -> &'static str {
        match cfg.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            Ok(()) => "ok",
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(field_of(&TcpConfig::new(1, 1, BTreeMap::new())), "ok");
        assert!(MemConfig::default().validate().is_ok());
    }

    #[test]
    fn names_the_bad_field() {
        let base = TcpConfig::new(1, 1, BTreeMap::new());
        let mut c = base.clone();
        c.max_frame_size = 10;
        assert_eq!(field_of(&c), "max_frame_size");
        let mut c = base.clone();
        c.large_frame_threshold = c.max_frame_size + 1;
        assert_eq!(field_of(&c), "large_frame_threshold");
        let mut c = base.clone();
        c.data_queue_capacity = 0;
        assert_eq!(field_of(&c), "data_queue_capacity");
        let mut c = base.clone();
        c.backoff_max = Duration::from_millis(1);
        assert_eq!(field_of(&c), "backoff_max");
        let mut c = base.clone();
        c.connect_timeout = Duration::ZERO;
        assert_eq!(field_of(&c), "connect_timeout");
        let mut c = base.clone();
        c.warn_interval = Duration::ZERO;
        assert_eq!(field_of(&c), "warn_interval");
        let mut c = base.clone();
        c.max_peers = 0;
        assert_eq!(field_of(&c), "max_peers");
        c.max_peers = MAX_PEERS_LIMIT + 1;
        assert_eq!(field_of(&c), "max_peers");
        let addrs = PeerAddrs {
            data: SocketAddr::from(([127, 0, 0, 1], 1)),
            heartbeat: SocketAddr::from(([127, 0, 0, 1], 2)),
        };
        let mut c = base.clone();
        c.max_peers = 2;
        // The entry for the node itself does not count.
        c.peers = [1, 2, 3].into_iter().map(|id| (id, addrs)).collect();
        assert_eq!(field_of(&c), "ok");
        c.peers.insert(4, addrs);
        assert_eq!(field_of(&c), "peers");
        let m = MemConfig {
            router_capacity: 0,
            ..MemConfig::default()
        };
        assert!(matches!(
            m.validate(),
            Err(ConfigError::Invalid {
                field: "router_capacity",
                ..
            })
        ));
    }
}
