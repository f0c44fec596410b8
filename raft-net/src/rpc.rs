//! Client-facing request/response over TCP: [`RpcServer`] and [`RpcClient`].
//!
//! Node-to-node traffic uses [`crate::TcpTransport`] (fire-and-forget, two lanes). Services
//! built on raft-actor also need the other kind of traffic: a client asks, a server answers.
//! This module is that, generic over the request and response types (any serde types), with
//! many calls pipelined over one connection.
//!
//! # Wire format
//!
//! The frames of [`crate::frame`] with two kinds: [`FrameKind::Request`] and
//! [`FrameKind::Response`]. The body of both is postcard of `(request_id: u64, payload)`; a
//! response carries the id of its request. The client picks the ids (increasing per
//! connection); the server only echoes them, so responses may come back in any order.
//!
//! # Tasks and channels
//!
//! ```text
//! client                                        server (per connection)
//! call() ──submit (bounded)──▶ writer ──TCP──▶ reader ──runs───▶ handler(req) ──┐
//!   ▲                            │ registrations (bounded)        ▲ slots        │ responses
//!   │                            ▼                                │ (semaphore)  ▼ (bounded)
//!   └──oneshot─────────────── reader ◀──TCP────────────────────── writer ◀──────┘
//! ```
//!
//! - **Client.** Callers encode their request, take an in-flight slot and queue the call for
//!   the writer task, which owns the write half: it numbers the calls, registers them with the
//!   reader task (one message per batch, always *before* writing them, so the reader knows an
//!   id before its response can arrive), and writes the whole batch with one call. The reader
//!   task owns the read half and the map of pending ids; it never awaits anything but its
//!   inputs (it only ever `send`s on one-shots), so no cycle of bounded waits exists: callers
//!   wait on the writer, the writer on the socket and on the reader, the reader on nobody.
//! - **Server.** Per connection, a reader task takes an in-flight slot, reads one request,
//!   starts the handler on it (the reader task runs every handler of its connection, so a
//!   request costs no task of its own) and loops; at `max_in_flight` unanswered requests it stops
//!   reading, so a client that sends faster than the handler answers is slowed by TCP itself
//!   (backpressure: bounded channels, docs/architecture.md). A writer task owns the write half
//!   and writes every response that is ready in one call; a slot is freed once its response is
//!   handed to the socket.
//!
//! # Failures
//!
//! Every failure is a typed [`RpcError`] for the calls it affects, never a panic:
//! - a call not answered within its timeout fails with [`RpcError::Timeout`];
//! - a lost connection fails every pending call with [`RpcError::ConnectionLost`] and later
//!   calls with [`RpcError::Closed`] (connect a new client to retry);
//! - a malformed frame, an oversized length prefix (checked before any allocation) or a frame
//!   of the wrong kind closes that one connection with a `tracing` warning naming the peer and
//!   the reason; the server keeps serving its other connections.
//!
//! # Bounds on what clients hold
//!
//! The server holds at most `max_connections` connections (more are closed at accept and
//! counted). A connection whose request frame is not complete `frame_timeout` after its first
//! byte, and one with nothing read or handled for `idle_timeout`, is closed and counted. Its
//! warning lines (bad frames, frame timeouts, refusals) are rate-limited server-wide to one
//! per `warn_interval`, each saying how many were held back; the counts are in
//! [`RpcServerStats`].
//!
//! A client whose connection the server closed (idle, shutdown) learns it when the socket
//! ends: [`RpcClient::is_closed`] turns true and later calls fail with [`RpcError::Closed`]
//! without being sent (safe to retry on a new connection; the counter example's client does
//! so). A call that raced with the close fails with [`RpcError::ConnectionLost`].
//!
//! # TLS
//!
//! Optional, off by default: [`RpcServerConfig::tls`] ([`RpcTlsServer`]: the server's
//! certificate chain and key, and optionally the CA client certificates must chain to, which
//! makes them required) and [`RpcClientConfig::tls`] ([`RpcTlsClient`]: the CA to trust, and
//! optionally the client's certificate). The client checks the server's certificate against
//! the IP address it dialed, or against a name set with [`RpcTlsClient::with_server_name`].
//! Frames, tasks and bounds are the same over TLS; only the bytes on the socket differ.
//!
//! - **Server.** The handshake runs in the connection's task before its first read, holding
//!   one of the `max_connections`, bounded by `tls_handshake_timeout`. One that fails
//!   (untrusted or missing client certificate, a plaintext client, garbage) or does not
//!   complete in time closes that connection with a rate-limited warning and is counted
//!   ([`RpcServerStats::closed_tls_handshake`]); the frame and idle timeouts start after it.
//! - **Client.** [`RpcClient::connect`] completes the handshake within `connect_timeout`. Its
//!   failures are [`RpcError::Tls`], and so are those learnt on the first read: a server that
//!   refused this client's certificate (TLS 1.3 tells a client so after its side of the
//!   handshake is done), or, for a plaintext client, a server that answered with a TLS alert.
//!   The server processed nothing on such a connection, so every call on it fails with
//!   [`RpcError::Tls`], not in doubt ([`RpcError::maybe_delivered`] is false).
//! - **Streams.** A connection is split into a read half (the reader task's) and a write half
//!   (the writer task's), boxed so one code path serves both kinds. A plain socket splits into
//!   halves that share nothing. A TLS stream cannot (reads and writes work on one session): a
//!   pump task owns it, makes progress both ways within one poll, and its halves are the ends
//!   of two bounded channels, so nothing is locked. A write is then done once the pump has it;
//!   what is queued when the write half goes is still written, within `write_timeout`.
//!
//! [`RpcError::maybe_delivered`] tells a caller whether a failed request may still have been
//! processed, which is what a client needs to know before retrying a non-idempotent request
//! (use a session id, as `raft_actor::Node::propose_with_id` does, to make retries safe).

mod client;
mod server;
mod tls;

use std::time::Duration;

use bytes::{BufMut, Bytes};
use serde::Serialize;

use crate::config::{MAX_FRAME_SIZE_LIMIT, capacity, positive};
use crate::error::{ConfigError, FrameError, RpcError};
use crate::frame::{FrameKind, HEADER_LEN, LEN_PREFIX, PROTOCOL_VERSION, RawFrame};

pub use client::RpcClient;
pub use server::{RpcServer, RpcServerStats};
pub use tls::{RpcTlsClient, RpcTlsServer};

/// Most bytes a request id takes on the wire (a postcard varint of a `u64`).
pub const MAX_ID_LEN: usize = 10;

/// Frame bytes besides the payload, counting the longest id: what a request adds.
const HEADER_LEN_WITH_ID: usize = HEADER_LEN + MAX_ID_LEN;

/// Smallest accepted `max_frame_size`: room for the header, an id and a small payload.
pub const MIN_RPC_FRAME: usize = 64;

/// Settings of an [`RpcServer`].
#[derive(Clone, Debug)]
pub struct RpcServerConfig {
    /// Largest request frame accepted (version + kind + id + payload). A client announcing more
    /// is disconnected before anything is allocated. Responses larger than this are not sent:
    /// the connection is closed instead (the client would refuse them).
    pub max_frame_size: usize,
    /// Requests of one connection being handled or answered at once. At the limit the
    /// connection's reader stops reading until a response has been written, so the client is
    /// slowed by TCP flow control. Bounds the server's memory per connection to about
    /// `max_in_flight * max_frame_size`.
    pub max_in_flight: usize,
    /// Connections served at once. Further connections are closed at accept and counted
    /// (`RpcServerStats::refused`), with a rate-limited warning. Bounds what a flood of
    /// connections can hold: at most this many sockets, each closed after `frame_timeout` if
    /// it sends part of a frame and stalls, or after `idle_timeout` if it sends nothing.
    pub max_connections: usize,
    /// Longest time from a request frame's first byte to its last. A connection whose frame
    /// takes longer (a client that sent part of a frame and stalled, or trickles it a byte at
    /// a time) is closed and counted (`RpcServerStats::closed_frame_timeout`). The clock does
    /// not run while the server itself has stopped reading (at `max_in_flight`). Large
    /// requests over slow links need it long enough for `max_frame_size` bytes.
    pub frame_timeout: Duration,
    /// A connection with no request being handled or read for this long is closed and counted
    /// (`RpcServerStats::closed_idle`). Its client sees the connection end: its next call
    /// fails with [`RpcError::Closed`] (not sent, safe to retry on a new connection), or, if
    /// it raced with the close, with [`RpcError::ConnectionLost`] (see `maybe_delivered`).
    pub idle_timeout: Duration,
    /// At most one warning line per this interval for all of the server's connections (bad
    /// frames, frame timeouts, refused connections, clients that stopped reading); each line
    /// says how many were held back before it, and `RpcServerStats::warnings_suppressed`
    /// counts them all.
    pub warn_interval: Duration,
    /// The writer gathers ready responses into one buffer of up to this many bytes and writes
    /// it with one call.
    pub write_batch_bytes: usize,
    /// A response batch not accepted by the client's socket within this time closes the
    /// connection (a client that stopped reading).
    pub write_timeout: Duration,
    /// Bound on [`RpcServer::shutdown`] waiting for the server's tasks to end.
    pub shutdown_timeout: Duration,
    /// TLS for every connection: `None` (the default) serves plaintext, meant for loopback
    /// and trusted networks. With [`RpcTlsServer`] each accepted connection completes a TLS
    /// handshake (server certificate; client certificates too when it has a client CA)
    /// before its first request is read; a client that does not is closed and counted
    /// (`RpcServerStats::closed_tls_handshake`).
    pub tls: Option<RpcTlsServer>,
    /// Bound on a connection's TLS handshake, from accept. A connection that fails its
    /// handshake, or has not completed it by then (a plaintext client that sent nothing, a
    /// client that stalls mid-handshake), is closed and counted
    /// (`RpcServerStats::closed_tls_handshake`) with a rate-limited warning. A handshake under
    /// way holds one of the `max_connections`. Unused without `tls`.
    pub tls_handshake_timeout: Duration,
}

impl Default for RpcServerConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 1 << 20,
            max_in_flight: 1024,
            max_connections: 1024,
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            warn_interval: Duration::from_secs(1),
            write_batch_bytes: 64 << 10,
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(2),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl RpcServerConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        frame_size(self.max_frame_size)?;
        capacity("max_in_flight", self.max_in_flight)?;
        capacity("max_connections", self.max_connections)?;
        positive("frame_timeout", self.frame_timeout)?;
        positive("idle_timeout", self.idle_timeout)?;
        positive("warn_interval", self.warn_interval)?;
        batch_bytes(self.write_batch_bytes)?;
        positive("write_timeout", self.write_timeout)?;
        positive("shutdown_timeout", self.shutdown_timeout)?;
        positive("tls_handshake_timeout", self.tls_handshake_timeout)?;
        Ok(())
    }
}

/// Settings of an [`RpcClient`].
#[derive(Clone, Debug)]
pub struct RpcClientConfig {
    /// Largest frame sent or accepted. A request encoding to more fails with
    /// [`RpcError::TooLarge`] without being sent; a response announcing more closes the
    /// connection. Should match the server's.
    pub max_frame_size: usize,
    /// Calls sent and not yet answered, over all callers of one client. A caller beyond it
    /// waits (within its timeout) for a slot. Bounds the reader's map of pending ids.
    pub max_in_flight: usize,
    /// Calls queued for the writer task, and batches queued from the writer to the reader.
    /// A full queue makes callers wait (within their timeout); the reader never waits.
    pub queue_capacity: usize,
    /// Default timeout of [`RpcClient::call`]: from the call until its response.
    pub call_timeout: Duration,
    /// Bound on [`RpcClient::connect`]: establishing the TCP connection and, with `tls`, the
    /// TLS handshake.
    pub connect_timeout: Duration,
    /// The writer gathers queued calls into one buffer of up to this many bytes and writes it
    /// with one call.
    pub write_batch_bytes: usize,
    /// A batch not accepted by the server's socket within this time fails the connection.
    pub write_timeout: Duration,
    /// TLS: `None` (the default) connects in plaintext. With [`RpcTlsClient`] the client
    /// verifies the server's certificate (against the CA it trusts and the address dialed,
    /// or the name it was given) and presents its own if it has one; a failed handshake is
    /// [`RpcError::Tls`]. Must match the server: a plaintext client of a TLS server, or the
    /// reverse, fails with [`RpcError::Tls`] too.
    pub tls: Option<RpcTlsClient>,
}

impl Default for RpcClientConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 1 << 20,
            max_in_flight: 4096,
            queue_capacity: 1024,
            call_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            write_batch_bytes: 64 << 10,
            write_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

impl RpcClientConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        frame_size(self.max_frame_size)?;
        capacity("max_in_flight", self.max_in_flight)?;
        capacity("queue_capacity", self.queue_capacity)?;
        positive("call_timeout", self.call_timeout)?;
        positive("connect_timeout", self.connect_timeout)?;
        batch_bytes(self.write_batch_bytes)?;
        positive("write_timeout", self.write_timeout)?;
        Ok(())
    }
}

fn frame_size(value: usize) -> Result<(), ConfigError> {
    if !(MIN_RPC_FRAME..=MAX_FRAME_SIZE_LIMIT).contains(&value) {
        return Err(ConfigError::invalid(
            "max_frame_size",
            format!("must be in {MIN_RPC_FRAME}..={MAX_FRAME_SIZE_LIMIT}"),
        ));
    }
    Ok(())
}

fn batch_bytes(value: usize) -> Result<(), ConfigError> {
    if value == 0 || value > MAX_FRAME_SIZE_LIMIT {
        return Err(ConfigError::invalid(
            "write_batch_bytes",
            format!("must be in 1..={MAX_FRAME_SIZE_LIMIT}"),
        ));
    }
    Ok(())
}

/// Appends `id` as a postcard varint (7 bits per byte, low bits first, high bit = more).
fn put_varint(out: &mut impl BufMut, mut id: u64) {
    while id >= 0x80 {
        out.put_u8((id as u8) | 0x80);
        id >>= 7;
    }
    out.put_u8(id as u8);
}

/// Bytes `id` takes as a varint.
fn varint_len(id: u64) -> usize {
    let bits = 64 - id.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends one frame whose payload is already encoded: the writer of the client uses this to
/// put its id in front of a caller's payload. `len` must have been checked by the caller.
fn put_frame(out: &mut impl BufMut, kind: FrameKind, id: u64, payload: &[u8]) {
    let len = HEADER_LEN + varint_len(id) + payload.len();
    // Checked against max_frame_size (at most 1 GiB) before it gets here.
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(kind as u8);
    put_varint(out, id);
    out.put_slice(payload);
}

/// Encodes a whole frame `(id, value)` of `kind`, refusing it above `max_frame_size`.
fn encode_rpc<T: Serialize + ?Sized>(
    kind: FrameKind,
    id: u64,
    value: &T,
    max_frame_size: usize,
) -> Result<Bytes, RpcError> {
    let mut out = Vec::with_capacity(64);
    out.put_u32(0);
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(kind as u8);
    put_varint(&mut out, id);
    let mut out = postcard::to_extend(value, out).map_err(|e| RpcError::Encode(e.to_string()))?;
    let size = out.len() - LEN_PREFIX;
    if size > max_frame_size {
        return Err(RpcError::TooLarge {
            size,
            max: max_frame_size,
        });
    }
    // size <= max_frame_size <= 1 GiB.
    let len = u32::try_from(size).unwrap_or(u32::MAX);
    out[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(Bytes::from(out))
}

/// Checks a frame's version and kind and splits its body into the request id and the
/// still-encoded payload.
fn split_frame(frame: RawFrame, kind: FrameKind) -> Result<(u64, Bytes), FrameError> {
    if frame.version != PROTOCOL_VERSION {
        return Err(FrameError::UnknownVersion {
            got: frame.version,
            expected: PROTOCOL_VERSION,
        });
    }
    if frame.kind != kind as u8 {
        return Err(FrameError::UnexpectedKind { kind: frame.kind });
    }
    let (id, rest) = postcard::take_from_bytes::<u64>(&frame.body)
        .map_err(|e| FrameError::Malformed(format!("request id: {e}")))?;
    let offset = frame.body.len() - rest.len();
    Ok((id, frame.body.slice(offset..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use bytes::BytesMut;

    #[test]
    fn varint_matches_postcard() {
        for id in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, id);
            assert_eq!(ours, postcard::to_allocvec(&id).unwrap(), "id {id}");
            assert_eq!(ours.len(), varint_len(id), "id {id}");
        }
    }

    #[test]
    fn put_frame_equals_encode_of_the_pair() {
        let payload = postcard::to_allocvec(&String::from("hello")).unwrap();
        for id in [0, 5, 1 << 40] {
            let mut ours = Vec::new();
            put_frame(&mut ours, FrameKind::Request, id, &payload);
            let theirs =
                crate::frame::encode_frame(FrameKind::Request, &(id, String::from("hello")))
                    .unwrap();
            assert_eq!(ours, theirs);
            let whole = encode_rpc(FrameKind::Request, id, "hello", 1024).unwrap();
            assert_eq!(&whole[..], &theirs[..]);
        }
    }

    #[test]
    fn split_checks_kind_version_and_id() {
        let dec = FrameDecoder::new(1024);
        let bytes = encode_rpc(FrameKind::Response, 77, &42u32, 1024).unwrap();
        let frame = dec
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap();
        let (id, body) = split_frame(frame.clone(), FrameKind::Response).unwrap();
        assert_eq!(id, 77);
        assert_eq!(crate::frame::decode_exact::<u32>(&body), Ok(42));
        assert_eq!(
            split_frame(frame.clone(), FrameKind::Request),
            Err(FrameError::UnexpectedKind { kind: 6 })
        );
        let bad_version = RawFrame {
            version: 9,
            ..frame
        };
        assert!(matches!(
            split_frame(bad_version, FrameKind::Response),
            Err(FrameError::UnknownVersion { got: 9, .. })
        ));
        let no_id = RawFrame {
            version: PROTOCOL_VERSION,
            kind: FrameKind::Response as u8,
            body: Bytes::from_static(&[0x80]),
        };
        assert!(matches!(
            split_frame(no_id, FrameKind::Response),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn too_large_is_refused() {
        let err = encode_rpc(FrameKind::Response, 1, &vec![0u8; 2000], 1024).unwrap_err();
        assert!(matches!(err, RpcError::TooLarge { max: 1024, .. }));
    }

    #[test]
    fn configs_validate() {
        assert!(RpcServerConfig::default().validate().is_ok());
        assert!(RpcClientConfig::default().validate().is_ok());
        let c = RpcClientConfig {
            max_in_flight: 0,
            ..RpcClientConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "max_in_flight",
                ..
            })
        ));
        let s = RpcServerConfig {
            max_frame_size: 10,
            ..RpcServerConfig::default()
        };
        assert!(matches!(
            s.validate(),
            Err(ConfigError::Invalid {
                field: "max_frame_size",
                ..
            })
        ));
        let field = |s: RpcServerConfig| match s.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            Ok(()) => "ok",
        };
        let d = RpcServerConfig::default;
        assert_eq!(
            field(RpcServerConfig {
                max_connections: 0,
                ..d()
            }),
            "max_connections"
        );
        assert_eq!(
            field(RpcServerConfig {
                frame_timeout: Duration::ZERO,
                ..d()
            }),
            "frame_timeout"
        );
        assert_eq!(
            field(RpcServerConfig {
                idle_timeout: Duration::ZERO,
                ..d()
            }),
            "idle_timeout"
        );
        assert_eq!(
            field(RpcServerConfig {
                warn_interval: Duration::ZERO,
                ..d()
            }),
            "warn_interval"
        );
        assert_eq!(
            field(RpcServerConfig {
                tls_handshake_timeout: Duration::ZERO,
                ..d()
            }),
            "tls_handshake_timeout"
        );
    }
}
