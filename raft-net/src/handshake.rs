//! The handshake that opens every connection, in either lane.
//!
//! The dialing node sends [`Hello`] (cluster id, its node id, the node it means to reach, the
//! lane) in a frame carrying its protocol version. The listening node checks, in this order:
//! version, cluster id, destination, lane, and that the sender is one of its peers (for the TCP
//! transport: an active peer at that moment, see `Transport::add_peer`). It answers
//! [`HelloAck`] or a [`RejectReason`] and closes. The dialer checks that the node it meant to
//! reach answered. Each side bounds the exchange with `handshake_timeout`, and before the
//! handshake completes no frame longer than [`HANDSHAKE_MAX_FRAME`] is accepted.
//!
//! Connections are one-way after the handshake: the dialer only writes messages, the listener
//! only reads them. Each ordered node pair thus has exactly one connection per lane, and no
//! tie-breaking between simultaneous dials is needed.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::conn::{AsyncStream, ConnError, FrameReader};
use crate::error::{FrameError, HandshakeError};
use crate::frame::{FrameKind, HANDSHAKE_MAX_FRAME, PROTOCOL_VERSION, RawFrame, encode_frame};
use crate::transport::{ClusterId, Lane, NodeId};

/// First frame on every connection, sent by the dialer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The dialer's cluster.
    pub cluster_id: ClusterId,
    /// The dialer's node id.
    pub from: NodeId,
    /// The node the dialer means to reach (catches a wrong address map).
    pub to: NodeId,
    /// The lane this connection serves.
    pub lane: Lane,
}

/// The listener's acceptance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// The listener's node id, checked by the dialer.
    pub node_id: NodeId,
}

/// Why a listener refused a hello; sent to the dialer before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Cluster ids differ.
    WrongCluster,
    /// The dialer is not an active peer of the listener (never added, or removed).
    UnknownNode,
    /// Protocol versions differ.
    VersionMismatch,
    /// The hello named the other lane.
    WrongLane,
    /// The hello was addressed to another node.
    WrongDestination,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RejectReason::WrongCluster => "wrong cluster id",
            RejectReason::UnknownNode => "unknown node id",
            RejectReason::VersionMismatch => "protocol version mismatch",
            RejectReason::WrongLane => "wrong lane",
            RejectReason::WrongDestination => "wrong destination node",
        };
        f.write_str(s)
    }
}

/// What a listener knows about itself when judging a hello.
#[derive(Clone, Debug)]
pub struct ListenerIdentity {
    /// Our cluster.
    pub cluster_id: ClusterId,
    /// Our node id.
    pub node_id: NodeId,
    /// The lane this listener serves.
    pub lane: Lane,
    /// Nodes allowed to connect, for [`ListenerIdentity::check_hello`]. The TCP transport's
    /// listeners leave it empty and judge with [`ListenerIdentity::check_hello_with`] and
    /// their live peer table, since peers are added and removed at runtime.
    pub peers: BTreeSet<NodeId>,
}

impl ListenerIdentity {
    /// Judges a received hello frame: the dialer's id, or the error plus the reason to send
    /// back (`None` when the frame is not a hello at all and deserves no answer).
    pub fn check_hello(
        &self,
        frame: &RawFrame,
    ) -> Result<NodeId, (HandshakeError, Option<RejectReason>)> {
        self.check_hello_with(frame, |id| self.peers.contains(&id))
    }

    /// [`ListenerIdentity::check_hello`], with `is_peer` deciding which dialers are peers
    /// instead of the `peers` set (a dialer claiming this node's own id never is).
    pub fn check_hello_with(
        &self,
        frame: &RawFrame,
        is_peer: impl Fn(NodeId) -> bool,
    ) -> Result<NodeId, (HandshakeError, Option<RejectReason>)> {
        if frame.kind != FrameKind::Hello as u8 {
            let err = FrameError::UnexpectedKind { kind: frame.kind };
            return Err((err.into(), None));
        }
        if frame.version != PROTOCOL_VERSION {
            let err = HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: frame.version,
            };
            return Err((err, Some(RejectReason::VersionMismatch)));
        }
        let hello: Hello = frame
            .decode_body(FrameKind::Hello)
            .map_err(|e| (HandshakeError::from(e), None))?;
        if hello.cluster_id != self.cluster_id {
            let err = HandshakeError::WrongCluster {
                expected: self.cluster_id,
                got: hello.cluster_id,
            };
            return Err((err, Some(RejectReason::WrongCluster)));
        }
        if hello.to != self.node_id {
            let err = HandshakeError::WrongDestination {
                expected: self.node_id,
                got: hello.to,
            };
            return Err((err, Some(RejectReason::WrongDestination)));
        }
        if hello.lane != self.lane {
            let err = HandshakeError::WrongLane {
                expected: self.lane,
                got: hello.lane,
            };
            return Err((err, Some(RejectReason::WrongLane)));
        }
        if hello.from == self.node_id || !is_peer(hello.from) {
            let err = HandshakeError::UnknownNode(hello.from);
            return Err((err, Some(RejectReason::UnknownNode)));
        }
        Ok(hello.from)
    }
}

fn read_error(e: ConnError) -> HandshakeError {
    match e {
        ConnError::Io(e) => HandshakeError::Io(e.to_string()),
        ConnError::Frame(e) => HandshakeError::Frame(e),
    }
}

fn encode(kind: FrameKind, value: &impl Serialize) -> Result<Vec<u8>, HandshakeError> {
    // Handshake structs are fixed-size plain data; encoding cannot fail, but stay total.
    encode_frame(kind, value).map_err(|e| HandshakeError::Io(e.to_string()))
}

/// Dialer side: sends `hello`, waits for the answer, checks the responder is `hello.to`.
///
/// The caller bounds it with `handshake_timeout`.
pub(crate) async fn dial<S: AsyncStream + ?Sized>(
    stream: &mut S,
    hello: &Hello,
) -> Result<(), HandshakeError> {
    let bytes = encode(FrameKind::Hello, hello)?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))?;
    let mut reader = FrameReader::new(HANDSHAKE_MAX_FRAME);
    let frame = reader
        .read_frame(stream)
        .await
        .map_err(read_error)?
        .ok_or(HandshakeError::Closed)?;
    match FrameKind::from_u8(frame.kind) {
        Some(FrameKind::Reject) => {
            let reason: RejectReason = decode_any_version(&frame)?;
            Err(HandshakeError::Rejected(reason))
        }
        Some(FrameKind::HelloAck) => {
            if frame.version != PROTOCOL_VERSION {
                return Err(HandshakeError::VersionMismatch {
                    ours: PROTOCOL_VERSION,
                    theirs: frame.version,
                });
            }
            let ack: HelloAck = frame.decode_body(FrameKind::HelloAck)?;
            if ack.node_id != hello.to {
                return Err(HandshakeError::UnexpectedPeer {
                    expected: hello.to,
                    got: ack.node_id,
                });
            }
            Ok(())
        }
        _ => Err(FrameError::UnexpectedKind { kind: frame.kind }.into()),
    }
}

/// Reject bodies keep their layout across versions, so decode them whatever the version byte.
fn decode_any_version(frame: &RawFrame) -> Result<RejectReason, HandshakeError> {
    let (reason, _) = postcard::take_from_bytes::<RejectReason>(&frame.body)
        .map_err(|e| HandshakeError::Frame(FrameError::Malformed(e.to_string())))?;
    Ok(reason)
}

/// Listener side: reads the hello, answers, and returns the authenticated dialer id;
/// `is_peer` says which dialers are peers (see [`ListenerIdentity::check_hello_with`]).
///
/// On refusal the reason is sent (best effort) before the error is returned; the caller closes
/// the connection and logs. The caller bounds it with `handshake_timeout`.
pub(crate) async fn accept<S: AsyncStream + ?Sized>(
    stream: &mut S,
    reader: &mut FrameReader,
    me: &ListenerIdentity,
    is_peer: impl Fn(NodeId) -> bool,
) -> Result<NodeId, HandshakeError> {
    let frame = reader
        .read_frame(stream)
        .await
        .map_err(read_error)?
        .ok_or(HandshakeError::Closed)?;
    match me.check_hello_with(&frame, is_peer) {
        Ok(from) => {
            let ack = encode(
                FrameKind::HelloAck,
                &HelloAck {
                    node_id: me.node_id,
                },
            )?;
            stream
                .write_all(&ack)
                .await
                .map_err(|e| HandshakeError::Io(e.to_string()))?;
            stream
                .flush()
                .await
                .map_err(|e| HandshakeError::Io(e.to_string()))?;
            Ok(from)
        }
        Err((err, reason)) => {
            if let Some(reason) = reason {
                if let Ok(bytes) = encode(FrameKind::Reject, &reason) {
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.flush().await;
                    let _ = stream.shutdown().await;
                }
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    use crate::frame::{FrameDecoder, encode_frame_with_version};

    fn me() -> ListenerIdentity {
        ListenerIdentity {
            cluster_id: 42,
            node_id: 1,
            lane: Lane::Data,
            peers: [2, 3].into_iter().collect(),
        }
    }

    fn frame_of(version: u8, hello: &Hello) -> RawFrame {
        let bytes = encode_frame_with_version(version, FrameKind::Hello, hello).unwrap();
        FrameDecoder::new(1024)
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap()
    }

    fn hello() -> Hello {
        Hello {
            cluster_id: 42,
            from: 2,
            to: 1,
            lane: Lane::Data,
        }
    }

    #[test]
    fn accepts_a_known_peer() {
        assert_eq!(
            me().check_hello(&frame_of(PROTOCOL_VERSION, &hello())),
            Ok(2)
        );
    }

    #[test]
    fn refuses_each_mismatch_with_its_reason() {
        let cases = [
            (
                PROTOCOL_VERSION,
                Hello {
                    cluster_id: 7,
                    ..hello()
                },
                RejectReason::WrongCluster,
            ),
            (
                PROTOCOL_VERSION,
                Hello { from: 9, ..hello() },
                RejectReason::UnknownNode,
            ),
            (
                PROTOCOL_VERSION,
                Hello { from: 1, ..hello() },
                RejectReason::UnknownNode,
            ),
            (
                PROTOCOL_VERSION,
                Hello { to: 3, ..hello() },
                RejectReason::WrongDestination,
            ),
            (
                PROTOCOL_VERSION,
                Hello {
                    lane: Lane::Heartbeat,
                    ..hello()
                },
                RejectReason::WrongLane,
            ),
            (PROTOCOL_VERSION + 1, hello(), RejectReason::VersionMismatch),
        ];
        for (version, h, reason) in cases {
            let (_, got) = me().check_hello(&frame_of(version, &h)).unwrap_err();
            assert_eq!(got, Some(reason), "{h:?}");
        }
    }
}
