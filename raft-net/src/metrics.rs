//! Per-peer counters. Atomics are allowed here and only here: metric counters are the one
//! exception to no shared locks (docs/architecture.md).
//!
//! Writers (send path, link and reader tasks) bump relaxed atomics; [`MetricsSnapshot`] is a
//! plain copy for the caller. The in-memory transport's peer set is fixed when it starts, so
//! its map of counters is immutable and needs no lock. The TCP transport's peers come and go
//! at runtime: each peer's counters live in its slot of the transport's peer table (created
//! by the first `add_peer` of that id and never freed), and its snapshot adds them to the
//! node's own counters (`Metrics::snapshot_with`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::transport::{Lane, NodeId};

/// Counters of one lane towards/from one peer.
#[derive(Debug, Default)]
pub(crate) struct LaneCounters {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) write_batches: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_disconnected: AtomicU64,
    pub(crate) dropped_too_large: AtomicU64,
    pub(crate) dropped_inbound_full: AtomicU64,
    pub(crate) dropped_by_fault: AtomicU64,
    pub(crate) dropped_removed: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) rejected_handshakes: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl LaneCounters {
    fn snapshot(&self) -> LaneStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LaneStats {
            frames_sent: g(&self.frames_sent),
            bytes_sent: g(&self.bytes_sent),
            write_batches: g(&self.write_batches),
            frames_received: g(&self.frames_received),
            bytes_received: g(&self.bytes_received),
            dropped_queue_full: g(&self.dropped_queue_full),
            dropped_disconnected: g(&self.dropped_disconnected),
            dropped_too_large: g(&self.dropped_too_large),
            dropped_inbound_full: g(&self.dropped_inbound_full),
            dropped_by_fault: g(&self.dropped_by_fault),
            dropped_removed: g(&self.dropped_removed),
            connects: g(&self.connects),
            reconnects: g(&self.reconnects),
            connect_failures: g(&self.connect_failures),
            disconnects: g(&self.disconnects),
            rejected_handshakes: g(&self.rejected_handshakes),
        }
    }
}

/// Both lanes of one peer.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) heartbeat: LaneCounters,
    pub(crate) data: LaneCounters,
}

impl PeerCounters {
    pub(crate) fn lane(&self, lane: Lane) -> &LaneCounters {
        match lane {
            Lane::Heartbeat => &self.heartbeat,
            Lane::Data => &self.data,
        }
    }
}

/// Counters not attributable to a configured peer.
#[derive(Debug, Default)]
pub(crate) struct GlobalCounters {
    pub(crate) rejected_handshakes: AtomicU64,
    pub(crate) closed_bad_frames: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
}

/// All counters of one node.
#[derive(Debug)]
pub(crate) struct Metrics {
    node_id: NodeId,
    peers: BTreeMap<NodeId, Arc<PeerCounters>>,
    pub(crate) global: GlobalCounters,
}

impl Metrics {
    /// Counters for `node_id` itself and every node of `peers`.
    pub(crate) fn new(node_id: NodeId, peers: impl IntoIterator<Item = NodeId>) -> Self {
        let mut map = BTreeMap::new();
        map.insert(node_id, Arc::default());
        for p in peers {
            map.insert(p, Arc::default());
        }
        Self {
            node_id,
            peers: map,
            global: GlobalCounters::default(),
        }
    }

    /// The counters of `peer`, if configured.
    pub(crate) fn peer(&self, peer: NodeId) -> Option<&Arc<PeerCounters>> {
        self.peers.get(&peer)
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        self.snapshot_with(std::iter::empty())
    }

    /// A snapshot of these counters plus those of `more` peers (the TCP transport's peer
    /// table).
    pub(crate) fn snapshot_with<'a>(
        &'a self,
        more: impl Iterator<Item = (NodeId, &'a PeerCounters)>,
    ) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let stats = |c: &PeerCounters| PeerStats {
            heartbeat: c.heartbeat.snapshot(),
            data: c.data.snapshot(),
        };
        MetricsSnapshot {
            node_id: self.node_id,
            peers: self
                .peers
                .iter()
                .map(|(id, c)| (*id, stats(c)))
                .chain(more.map(|(id, c)| (id, stats(c))))
                .collect(),
            rejected_handshakes: g(&self.global.rejected_handshakes),
            closed_bad_frames: g(&self.global.closed_bad_frames),
            refused_connections: g(&self.global.refused_connections),
            warnings_suppressed: 0,
        }
    }
}

/// Counters of one lane with one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneStats {
    /// Frames written to the peer's socket (or handed to the in-memory router).
    pub frames_sent: u64,
    /// Bytes written, length prefixes included (0 for the in-memory transport).
    pub bytes_sent: u64,
    /// Write batches: each is one buffer of coalesced small frames (plus at most one large
    /// frame). `frames_sent / write_batches` is the batching factor.
    pub write_batches: u64,
    /// Frames received from the peer and decoded.
    pub frames_received: u64,
    /// Bytes received, length prefixes included (0 for the in-memory transport).
    pub bytes_received: u64,
    /// Messages dropped at `send` because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because the peer was unreachable (discarded while reconnecting) or the
    /// transport was shut down.
    pub dropped_disconnected: u64,
    /// Messages refused at `send` for exceeding `max_frame_size`.
    pub dropped_too_large: u64,
    /// Messages from this peer dropped because our inbound channel was full.
    pub dropped_inbound_full: u64,
    /// Messages dropped by in-memory fault injection (partition or drop probability).
    pub dropped_by_fault: u64,
    /// Messages discarded because the peer was removed (`Transport::remove_peer`): what was
    /// queued for it when its link saw the removal, and what reached its queue after.
    pub dropped_removed: u64,
    /// Successful outbound handshakes, the first included.
    pub connects: u64,
    /// Successful outbound handshakes after the first: reconnects.
    pub reconnects: u64,
    /// Failed outbound connection attempts (connect, TLS or handshake).
    pub connect_failures: u64,
    /// Established outbound connections that broke.
    pub disconnects: u64,
    /// Handshakes with this peer refused, by either side.
    pub rejected_handshakes: u64,
}

/// Both lanes of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Heartbeat lane.
    pub heartbeat: LaneStats,
    /// Data lane.
    pub data: LaneStats,
}

impl PeerStats {
    /// The stats of `lane`.
    pub fn lane(&self, lane: Lane) -> &LaneStats {
        match lane {
            Lane::Heartbeat => &self.heartbeat,
            Lane::Data => &self.data,
        }
    }
}

/// A copy of a transport's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// The node these counters belong to.
    pub node_id: NodeId,
    /// Per peer; the entry for `node_id` counts local (self-addressed) deliveries. On TCP,
    /// every peer ever added is listed, removed ones included (their counters are kept).
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Inbound handshakes refused, from any source (known peers are also counted per peer).
    pub rejected_handshakes: u64,
    /// Established inbound connections closed over a malformed, oversized, truncated or
    /// unknown-version frame.
    pub closed_bad_frames: u64,
    /// Inbound connections closed at accept because `max_inbound_connections` was reached.
    pub refused_connections: u64,
    /// The TCP listeners' warning lines held back by their rate limit
    /// (`TcpConfig::warn_interval`). Always 0 for the in-memory transport.
    pub warnings_suppressed: u64,
}

impl MetricsSnapshot {
    /// The stats of `peer` (zeros if unknown).
    pub fn peer(&self, peer: NodeId) -> PeerStats {
        self.peers.get(&peer).copied().unwrap_or_default()
    }
}
