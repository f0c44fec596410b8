//! The transport abstraction raft-actor programs against: ids, lanes, envelopes, the
//! [`Transport`] trait and the inbound channels.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::PeerAddrs;
use crate::error::SendError;
use crate::metrics::MetricsSnapshot;

/// A node of the cluster: this node and each of its peers has one.
pub type NodeId = u64;

/// A Raft group (partition). Many groups share one connection per ordered node pair; the group
/// id travels in every message frame so the receiver can route it.
pub type GroupId = u64;

/// The cluster a node belongs to. A `u64` chosen by the operator (e.g. random at cluster
/// creation): a node refuses connections carrying another cluster's id, so two clusters that
/// share hosts or addresses cannot exchange messages by accident.
pub type ClusterId = u64;

/// Which of the two per-peer lanes a message travels on.
///
/// Each lane has its own connection, its own send queue and its own inbound channel, so a data
/// lane clogged by snapshot chunks never delays heartbeats (heartbeats on their own executor,
/// docs/architecture.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    /// Small coalesced heartbeats and their acks. On TCP its I/O runs on a dedicated
    /// single-thread runtime, never behind data frames.
    Heartbeat,
    /// AppendEntries, votes, snapshot chunks: everything else, in order (see the crate docs for
    /// how large frames are scheduled).
    Data,
}

impl Lane {
    /// Both lanes, heartbeat first.
    pub const ALL: [Lane; 2] = [Lane::Heartbeat, Lane::Data];
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lane::Heartbeat => f.write_str("heartbeat"),
            Lane::Data => f.write_str("data"),
        }
    }
}

/// One received message with its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<M> {
    /// The node that sent it (authenticated by the handshake, and by TLS when enabled).
    pub from: NodeId,
    /// The Raft group it is addressed to.
    pub group: GroupId,
    /// The payload.
    pub msg: M,
}

/// The receiving ends of a transport: one bounded channel per lane, shared by all peers.
///
/// Policy when a channel is full: the message is dropped and counted in
/// `LaneStats::dropped_inbound_full` of the sending peer; the socket reader never waits for the
/// consumer (bounded channels, docs/architecture.md: network queues drop and count; Raft
/// retransmits). A slow consumer
/// therefore loses messages rather than stalling every peer's connection.
#[derive(Debug)]
pub struct Inbound<M> {
    /// Heartbeat-lane messages. Consume them on the heartbeat executor.
    pub heartbeat: flume::Receiver<Envelope<M>>,
    /// Data-lane messages, in order per sending peer (see the crate docs on large frames).
    pub data: flume::Receiver<Envelope<M>>,
}

impl<M> Inbound<M> {
    /// The receiver for `lane`.
    pub fn lane(&self, lane: Lane) -> &flume::Receiver<Envelope<M>> {
        match lane {
            Lane::Heartbeat => &self.heartbeat,
            Lane::Data => &self.data,
        }
    }
}

/// The sending halves matching an [`Inbound`]; used for local delivery and by readers.
#[derive(Debug)]
pub(crate) struct InboundSenders<M> {
    pub(crate) heartbeat: flume::Sender<Envelope<M>>,
    pub(crate) data: flume::Sender<Envelope<M>>,
}

impl<M> Clone for InboundSenders<M> {
    fn clone(&self) -> Self {
        Self {
            heartbeat: self.heartbeat.clone(),
            data: self.data.clone(),
        }
    }
}

impl<M> InboundSenders<M> {
    pub(crate) fn lane(&self, lane: Lane) -> &flume::Sender<Envelope<M>> {
        match lane {
            Lane::Heartbeat => &self.heartbeat,
            Lane::Data => &self.data,
        }
    }
}

/// Creates the bounded inbound channels of one node.
pub(crate) fn inbound_channels<M>(
    heartbeat_capacity: usize,
    data_capacity: usize,
) -> (InboundSenders<M>, Inbound<M>) {
    let (hb_tx, hb_rx) = flume::bounded(heartbeat_capacity);
    let (data_tx, data_rx) = flume::bounded(data_capacity);
    (
        InboundSenders {
            heartbeat: hb_tx,
            data: data_tx,
        },
        Inbound {
            heartbeat: hb_rx,
            data: data_rx,
        },
    )
}

/// What raft-actor needs from a network: implemented by [`crate::TcpTransport`] and
/// [`crate::MemTransport`].
///
/// Receiving is not a method: each constructor returns an [`Inbound`] next to the transport.
#[async_trait]
pub trait Transport<M>: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> NodeId;

    /// Queues `msg` for `to` on `lane`, tagged with `group`. Never blocks and never awaits.
    ///
    /// A message to this node itself is delivered to the local [`Inbound`] without the network.
    /// When the per-peer, per-lane queue is full the message is dropped, counted and an error
    /// returned; Raft's retransmission recovers. `Ok` means "queued", not "delivered": while a
    /// peer is unreachable its link discards what is queued between redial attempts (counted
    /// as `dropped_disconnected`), so queues hold fresh messages when it comes back.
    fn send(&self, to: NodeId, lane: Lane, group: GroupId, msg: M) -> Result<(), SendError>;

    /// A point-in-time copy of the per-peer counters.
    fn metrics(&self) -> MetricsSnapshot;

    /// Adds `id` as a peer reachable at `addrs`, or moves an existing peer to new addresses,
    /// at runtime. Idempotent. Never blocks and never awaits, like [`Transport::send`].
    /// Transports whose peers need no address (the in-memory one) accept every call and do
    /// nothing; [`crate::TcpTransport`] starts dialing `id` and accepts its handshakes, and
    /// refuses a peer beyond `TcpConfig::max_peers` with [`crate::NetError::TooManyPeers`].
    fn add_peer(&self, id: NodeId, addrs: PeerAddrs) -> Result<(), crate::NetError> {
        let _ = (id, addrs);
        Ok(())
    }

    /// Forgets peer `id` at runtime: its connections close, what is queued for it is dropped,
    /// sends to it fail with [`SendError::UnknownPeer`], and its handshakes are refused until
    /// it is added again. Unknown ids are ignored. Never blocks and never awaits. The default
    /// (the in-memory transport) does nothing.
    fn remove_peer(&self, id: NodeId) {
        let _ = id;
    }

    /// Stops every task of this transport and closes its connections. Completes within the
    /// configured shutdown bound even when peers are unreachable (shutdown as a message,
    /// docs/architecture.md). Idempotent.
    async fn shutdown(&self);
}
