//! Errors of raft-net.
//!
//! [`NetError`] is the crate's error. Its parts are separate enums because callers handle them
//! in different places: [`SendError`] on the hot send path (every variant means "this message
//! was dropped", which Raft tolerates), [`ConfigError`] at start-up, [`FrameError`] and
//! [`HandshakeError`] when a connection is refused or closed (logged, counted, and returned by
//! the public codec functions).

use crate::handshake::RejectReason;
use crate::transport::{ClusterId, Lane, NodeId};

/// Why a message was not queued. In every case it was dropped and counted; none is fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The destination is neither this node nor an active peer: it was never added (in
    /// `TcpConfig::peers` or by `Transport::add_peer`), or it has been removed since.
    #[error("node {0} is not a known peer")]
    UnknownPeer(NodeId),
    /// The bounded queue to that peer and lane is full (slow or dead peer).
    #[error("send queue to node {to} on the {lane} lane is full; message dropped")]
    QueueFull {
        /// Destination node.
        to: NodeId,
        /// Lane whose queue was full.
        lane: Lane,
    },
    /// The transport has been shut down.
    #[error("transport is shut down")]
    Closed,
    /// The encoded frame is larger than `max_frame_size`; the peer would refuse it.
    #[error("encoded frame of {size} bytes exceeds max_frame_size {max}")]
    FrameTooLarge {
        /// Encoded length (without the 4-byte length prefix).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The message could not be serialized.
    #[error("message could not be encoded: {0}")]
    Encode(String),
}

/// A configuration value is out of range. Names the field so the operator can fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `field` holds a value that cannot work.
    #[error("invalid config field `{field}`: {reason}")]
    Invalid {
        /// The offending field's name, as spelled in the config struct.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A frame on the wire is unacceptable. The connection that carried it is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the maximum frame size. Detected from the 4-byte
    /// prefix alone, before any buffer is grown.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    Oversized {
        /// Announced length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The length prefix is too small to hold the version and kind bytes.
    #[error("frame length {len} is shorter than the 2-byte header")]
    TooShort {
        /// Announced length.
        len: u64,
    },
    /// The frame's protocol version is not ours.
    #[error("unknown protocol version {got} (this node speaks {expected})")]
    UnknownVersion {
        /// Version byte found.
        got: u8,
        /// Version this node speaks.
        expected: u8,
    },
    /// The frame kind is unknown or not allowed at this point of the conversation.
    #[error("unexpected frame kind {kind}")]
    UnexpectedKind {
        /// Kind byte found.
        kind: u8,
    },
    /// The body does not decode as the expected type, or has trailing bytes.
    #[error("malformed frame body: {0}")]
    Malformed(String),
    /// The stream ended in the middle of a frame.
    #[error("truncated frame: stream ended with {buffered} bytes of an incomplete frame")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
}

/// A connection's handshake failed; the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer belongs to another cluster.
    #[error("wrong cluster id {got} (expected {expected})")]
    WrongCluster {
        /// Our cluster id.
        expected: ClusterId,
        /// The peer's.
        got: ClusterId,
    },
    /// The peer's node id is not an active peer of this node (never added, or removed).
    #[error("unknown node id {0}")]
    UnknownNode(NodeId),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: ours {ours}, theirs {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// Theirs.
        theirs: u8,
    },
    /// A connection for one lane reached the other lane's listener.
    #[error("wrong lane {got} (this listener serves the {expected} lane)")]
    WrongLane {
        /// The listener's lane.
        expected: Lane,
        /// The lane the peer asked for.
        got: Lane,
    },
    /// The peer addressed another node (misconfigured address map).
    #[error("hello addressed to node {got}, but this is node {expected}")]
    WrongDestination {
        /// Our id.
        expected: NodeId,
        /// The id the peer meant to reach.
        got: NodeId,
    },
    /// We dialed one node and another answered.
    #[error("expected node {expected} but node {got} answered")]
    UnexpectedPeer {
        /// The node we dialed.
        expected: NodeId,
        /// The node that answered.
        got: NodeId,
    },
    /// The remote side refused our hello.
    #[error("refused by peer: {0}")]
    Rejected(RejectReason),
    /// A handshake frame was unacceptable.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The handshake did not complete within `handshake_timeout` (or connect within
    /// `connect_timeout`).
    #[error("handshake timed out")]
    Timeout,
    /// The peer closed the connection during the handshake.
    #[error("connection closed during handshake")]
    Closed,
    /// A socket error.
    #[error("i/o error during handshake: {0}")]
    Io(String),
    /// TLS failed (certificate not trusted, no certificate, not TLS at all, ...).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

/// Why an RPC call ([`crate::rpc::RpcClient::call`]) or connect failed. Every variant says
/// whether the request may have been processed: see [`RpcError::maybe_delivered`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The TCP connection could not be established (refused, unreachable, timed out).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address dialed.
        addr: std::net::SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// TLS failed, and the server processed nothing sent on the connection. At connect: the
    /// server's certificate is not trusted or does not name the address (or name) dialed, the
    /// server does not speak TLS, or the handshake did not complete within `connect_timeout`.
    /// On the first call of a connection: the server refused this client's certificate (with
    /// TLS 1.3 a client learns that only after its side of the handshake is done), or this
    /// plaintext client reached a TLS server (it answered with a TLS alert). Later calls on
    /// that connection fail with it too, without being sent. Fix the configuration: retrying
    /// as is fails the same way.
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// The server's address.
        addr: std::net::SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// No response within the call's timeout. With `sent: false` the request never left this
    /// process (it waited for an in-flight slot or the send queue); with `sent: true` it was
    /// handed to the connection and the server may have processed it.
    #[error("rpc call timed out ({})", if *sent { "request sent; outcome unknown" } else { "request not sent" })]
    Timeout {
        /// Whether the request was handed to the connection's writer.
        sent: bool,
    },
    /// The connection failed while the call was pending: the server may or may not have
    /// processed the request.
    #[error("connection lost while the call was pending: {reason}")]
    ConnectionLost {
        /// Why the connection ended.
        reason: String,
    },
    /// The connection had already ended when the call was made (it failed, or the server
    /// closed it, e.g. after its `idle_timeout`); the request was not sent. Retrying is safe:
    /// connect a new client and call again.
    #[error("connection closed; request not sent")]
    Closed,
    /// The encoded request or response exceeds `max_frame_size`; it was not sent.
    #[error("encoded frame of {size} bytes exceeds max_frame_size {max}")]
    TooLarge {
        /// Encoded length (without the 4-byte length prefix).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The request could not be serialized; it was not sent.
    #[error("request could not be encoded: {0}")]
    Encode(String),
    /// The response arrived but does not decode as the expected type (the server speaks
    /// another protocol); the request was processed.
    #[error("response could not be decoded: {0}")]
    Decode(String),
    /// The client configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl RpcError {
    /// True when the server may have processed the request even though the call failed: a
    /// retry of a non-idempotent request must then be deduplicated (a session id).
    pub fn maybe_delivered(&self) -> bool {
        match self {
            RpcError::Timeout { sent } => *sent,
            RpcError::ConnectionLost { .. } | RpcError::Decode(_) => true,
            RpcError::Connect { .. }
            | RpcError::Tls { .. }
            | RpcError::Closed
            | RpcError::TooLarge { .. }
            | RpcError::Encode(_)
            | RpcError::Config(_) => false,
        }
    }
}

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding a listener or starting the heartbeat runtime failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS material could not be loaded.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The transport was started outside a tokio runtime.
    #[error("no tokio runtime: start the transport from inside a runtime")]
    NoRuntime,
    /// A handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A frame was unacceptable.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The component this call talks to has stopped.
    #[error("stopped")]
    Stopped,
    /// `Transport::add_peer` would give the transport more distinct peers than
    /// `TcpConfig::max_peers`. A peer's slot is never freed (removing a peer keeps its slot for
    /// a later re-add), so removed peers count too.
    #[error("too many peers: this transport holds at most {max} distinct peer ids")]
    TooManyPeers {
        /// The configured `max_peers`.
        max: usize,
    },
}
