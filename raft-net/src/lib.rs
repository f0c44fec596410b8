//! Wire format, handshake and transports for raft-actor.
//!
//! What this crate is not: it knows nothing about Raft. It moves any serde message type `M`,
//! tagged with a Raft group id, between nodes, on two lanes per peer, and never blocks a sender.
//!
//! # Layout
//!
//! - [`transport`]: ids ([`NodeId`], [`GroupId`], [`ClusterId`]), [`Lane`], [`Envelope`],
//!   [`Inbound`] and the [`Transport`] trait raft-actor programs against.
//! - [`frame`]: the wire format: length-prefixed postcard frames with a protocol version, and
//!   the decoder that checks a frame before decoding it.
//! - `conn`: turns a byte stream into frames (read buffer + decoder), cancel-safe.
//! - [`handshake`]: the hello exchange (cluster id, node ids, version, lane) and its checks.
//! - [`config`]: [`TcpConfig`], [`MemConfig`], [`PeerAddrs`] and their validation.
//! - [`error`]: [`NetError`] and its parts [`SendError`], [`ConfigError`], [`FrameError`],
//!   [`HandshakeError`].
//! - [`metrics`]: per-peer, per-lane counters and [`MetricsSnapshot`].
//! - [`tls`]: optional mutual TLS between nodes ([`TlsConfig`], rustls with the ring
//!   provider) and [`TlsSource`], where the RPC's certificates and keys come from.
//! - [`tcp`]: [`TcpTransport`] and [`Listeners`]; `tcp/peers.rs` is the table of peers
//!   (added and removed at runtime), `tcp/link.rs` owns one outbound connection (dial,
//!   handshake, batched writes, reconnect, following its peer's address), `tcp/listener.rs`
//!   accepts and reads.
//! - [`rpc`]: client-facing request/response: [`RpcServer`] (concurrent handlers with a
//!   per-connection in-flight limit; bounded connections, frame and idle timeouts) and
//!   [`RpcClient`] (many callers pipelined over one connection), on the same frames with their
//!   own kinds, in plaintext or over TLS ([`RpcTlsServer`], [`RpcTlsClient`]).
//! - [`mem`]: [`MemNetwork`] and [`MemTransport`], in-memory, with seeded fault injection.
//! - [`rng`]: [`SplitMix64`], the seeded generator behind jitter and faults (raft-core's,
//!   re-exported).
//! - `backoff`: capped exponential reconnect backoff with jitter.
//! - `shutdown`: shutdown signal and task-completion tracking (shutdown as a message,
//!   docs/architecture.md).
//! - `warn_limit`: at most one warning line per interval for lines a flood of bad connections
//!   could cause, the rest counted.
//!
//! # Policies
//!
//! - **Sending never blocks** ([`Transport::send`]): bounded per-peer, per-lane queues filled
//!   with `try_send`; full queue or dead peer: dropped and counted (bounded channels,
//!   docs/architecture.md).
//! - **Receiving never blocks the socket**: each lane has one bounded inbound channel; when full
//!   the message is dropped and counted against its sender.
//! - **Heartbeat lane**: its own connection, queue, listener and runtime (heartbeats on their
//!   own executor, docs/architecture.md).
//! - **Large frames**: on the data lane, frames above `large_frame_threshold` go to a separate
//!   bulk queue; the writer sends at most one large frame per batch of small frames, so a small
//!   frame waits behind at most one large frame. Order is kept within each class; a small frame
//!   may overtake an earlier large one.
//! - **Runtime peers**: [`Transport::add_peer`] adds a peer (or moves it to new addresses)
//!   and [`Transport::remove_peer`] removes one while the transport runs; `TcpConfig::peers`
//!   are only the first adds. Only an active peer can be sent to and can connect. Removal
//!   closes its connections both ways (inbound ones at once, not at their next frame) and drops
//!   and counts what is queued for it. The send path finds a peer in a fixed-capacity table
//!   (`TcpConfig::max_peers`; beyond it, [`NetError::TooManyPeers`]) without a lock; each
//!   peer's slot, queues and counters are kept after removal, so a re-add reuses them and
//!   metrics cover peers added at any time.
//! - **Hostile input**: a frame's length is checked before any allocation; before the
//!   handshake completes the limit is [`frame::HANDSHAKE_MAX_FRAME`]; a bad frame or handshake
//!   closes that connection only, with a `tracing` warning naming the peer and the reason. The
//!   lines anyone who reaches a port can cause, one per connection (the TCP listeners' refused
//!   connections, refused handshakes and failed accepts; the RPC server's bad frames, timeouts,
//!   refusals and failed TLS handshakes), are rate-limited: at most one per `warn_interval`
//!   (`TcpConfig`, `RpcServerConfig`), each saying how many were held back, all of them
//!   counted (`MetricsSnapshot::warnings_suppressed`, `RpcServerStats::warnings_suppressed`).
//! - **TLS**: plaintext is the default, for loopback and trusted networks. Between nodes, TLS
//!   is mutual (`TcpConfig::tls`): only holders of the cluster's certificates connect. The RPC
//!   (`RpcServerConfig::tls`, `RpcClientConfig::tls`) authenticates the server by default
//!   (its certificate must name the address the client dials, or a name the client is told)
//!   and clients too when the server is given a client CA. A server's TLS handshake is
//!   bounded by `tls_handshake_timeout` and holds one of its `max_connections` while under
//!   way; one that fails or times out closes that connection only, with a rate-limited
//!   warning, and is counted (`RpcServerStats::closed_tls_handshake`). The client's failures
//!   are [`RpcError::Tls`], never "maybe delivered": the server processed nothing on that
//!   connection. A plaintext client of a TLS server gets it too (the server's TLS alert is
//!   recognised), not a hang. A TLS connection's session is owned by one pump task, which
//!   writes and reads it within one poll and passes bytes to the reader and writer tasks over
//!   two bounded channels: no lock; plaintext connections split the socket, sharing nothing.
//! - **What RPC clients can hold**: [`RpcServer`] serves at most `max_connections` (more are
//!   closed at accept), closes a connection whose request frame is not complete
//!   `frame_timeout` after its first byte or that did nothing for `idle_timeout`, and writes at
//!   most one warning line per `warn_interval` for all its connections; every such close and
//!   every line held back is counted in [`RpcServerStats`]. A TLS handshake counts against
//!   `max_connections` and has `tls_handshake_timeout`. A client whose connection was closed
//!   gets [`RpcError::Closed`] (not sent; retry on a new client).

pub mod config;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mem;
pub mod metrics;
pub mod rng;
pub mod rpc;
pub mod sched;
pub mod tcp;
pub mod tls;
pub mod transport;

mod backoff;
mod conn;
mod duplex;
mod shutdown;
mod warn_limit;

pub use config::{MemConfig, PeerAddrs, TcpConfig};
pub use error::{ConfigError, FrameError, HandshakeError, NetError, RpcError, SendError};
pub use mem::{Faults, MemNetwork, MemNode, MemTransport};
pub use metrics::{LaneStats, MetricsSnapshot, PeerStats};
pub use rng::SplitMix64;
pub use rpc::{
    RpcClient, RpcClientConfig, RpcServer, RpcServerConfig, RpcServerStats, RpcTlsClient,
    RpcTlsServer,
};
pub use tcp::{Listeners, TcpTransport};
pub use tls::{TlsConfig, TlsSource};
pub use transport::{ClusterId, Envelope, GroupId, Inbound, Lane, NodeId, Transport};
