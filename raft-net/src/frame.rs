//! The wire format: length-prefixed postcard frames with a protocol version.
//!
//! ```text
//! +----------------+---------+------+------------------------------+
//! | length: u32 BE | version | kind | body (postcard)              |
//! +----------------+---------+------+------------------------------+
//!                  |<------------- length bytes ----------------->|
//! ```
//!
//! - `length` counts the version byte, the kind byte and the body. It is checked against the
//!   maximum frame size from the 4 prefix bytes alone, before any buffer grows, so a hostile
//!   length (say 4 GiB) costs nothing but the closed connection.
//! - `version` is [`PROTOCOL_VERSION`]. The header layout and the [`FrameKind::Hello`],
//!   [`FrameKind::HelloAck`] and [`FrameKind::Reject`] kinds stay stable across versions so two
//!   versions can always tell each other that they disagree.
//! - `body` of a [`FrameKind::Message`] frame is postcard of `(group: u64, msg: M)`; of a
//!   [`FrameKind::Request`] or [`FrameKind::Response`] frame ([`crate::rpc`]) postcard of
//!   `(request_id: u64, payload)`; handshake bodies are the structs of [`crate::handshake`]. A body must decode exactly, with no
//!   trailing bytes.
//!
//! A partial frame is `Ok(None)` from [`FrameDecoder::decode`] (an expected condition); every
//! violation is a typed [`FrameError`] and closes the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{FrameError, SendError};
use crate::transport::GroupId;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Bytes of version + kind, counted inside the length.
pub const HEADER_LEN: usize = 2;

/// Maximum frame length accepted before a connection's handshake has completed. Handshake
/// frames are a few dozen bytes; an unauthenticated peer cannot make us buffer more than this.
pub const HANDSHAKE_MAX_FRAME: usize = 1024;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Connection opener: [`crate::handshake::Hello`].
    Hello = 1,
    /// Hello accepted: [`crate::handshake::HelloAck`].
    HelloAck = 2,
    /// Hello refused: [`crate::handshake::RejectReason`]; the connection closes after it.
    Reject = 3,
    /// A Raft message: postcard of `(group, msg)`.
    Message = 4,
    /// A client request of [`crate::rpc`]: postcard of `(request_id: u64, request)`.
    Request = 5,
    /// The answer to a [`FrameKind::Request`]: postcard of `(request_id: u64, response)`,
    /// carrying the request's id.
    Response = 6,
}

impl FrameKind {
    /// The kind for a wire byte, if known.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Hello),
            2 => Some(Self::HelloAck),
            3 => Some(Self::Reject),
            4 => Some(Self::Message),
            5 => Some(Self::Request),
            6 => Some(Self::Response),
            _ => None,
        }
    }
}

/// A frame whose length has been checked but whose body is not yet decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// Protocol version byte as received.
    pub version: u8,
    /// Kind byte as received (not yet validated).
    pub kind: u8,
    /// The body.
    pub body: Bytes,
}

impl RawFrame {
    /// Bytes this frame occupied on the wire, prefix included.
    pub fn wire_len(&self) -> usize {
        LEN_PREFIX + HEADER_LEN + self.body.len()
    }

    /// Checks the version and kind, then decodes the body as `T`.
    pub fn decode_body<T: DeserializeOwned>(&self, kind: FrameKind) -> Result<T, FrameError> {
        if self.version != PROTOCOL_VERSION {
            return Err(FrameError::UnknownVersion {
                got: self.version,
                expected: PROTOCOL_VERSION,
            });
        }
        if self.kind != kind as u8 {
            return Err(FrameError::UnexpectedKind { kind: self.kind });
        }
        decode_exact(&self.body)
    }
}

/// Decodes `bytes` as exactly one `T`: trailing bytes are an error.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the body",
            rest.len()
        )));
    }
    Ok(value)
}

/// Splits a byte stream into [`RawFrame`]s, enforcing a maximum frame length.
#[derive(Clone, Copy, Debug)]
pub struct FrameDecoder {
    /// Largest acceptable value of the length prefix.
    max_frame_size: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames whose length prefix exceeds `max_frame_size`.
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }

    /// The limit in force.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes one complete frame off the front of `buf`.
    ///
    /// `Ok(None)`: more bytes are needed (when the header is complete, `buf` has been reserved
    /// up to the frame's end, which is at most `max_frame_size + 4` bytes). Never panics,
    /// whatever `buf` holds.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<RawFrame>, FrameError> {
        if buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > self.max_frame_size {
            return Err(FrameError::Oversized {
                len: u64::from(len),
                max: self.max_frame_size,
            });
        }
        if len_usize < HEADER_LEN {
            return Err(FrameError::TooShort {
                len: u64::from(len),
            });
        }
        let total = LEN_PREFIX + len_usize;
        if buf.len() < total {
            // Checked above: `total <= max_frame_size + 4`.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(LEN_PREFIX);
        let version = frame.get_u8();
        let kind = frame.get_u8();
        Ok(Some(RawFrame {
            version,
            kind,
            body: frame.freeze(),
        }))
    }

    /// Called at end of stream: leftover bytes mean the peer stopped mid-frame.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), FrameError> {
        if buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                buffered: buf.len(),
            })
        }
    }
}

/// Encodes one frame with an explicit version (tests use this to forge other versions).
pub fn encode_frame_with_version<T: Serialize + ?Sized>(
    version: u8,
    kind: FrameKind,
    value: &T,
) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::with_capacity(64);
    out.put_u32(0);
    out.put_u8(version);
    out.put_u8(kind as u8);
    let mut out = postcard::to_extend(value, out)?;
    let len = out.len() - LEN_PREFIX;
    // A body larger than u32::MAX cannot be framed; saturate so the receiver refuses it.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Encodes one frame of the current version.
pub fn encode_frame<T: Serialize + ?Sized>(
    kind: FrameKind,
    value: &T,
) -> Result<Vec<u8>, postcard::Error> {
    encode_frame_with_version(PROTOCOL_VERSION, kind, value)
}

/// Encodes a Raft message for `group` as a [`FrameKind::Message`] frame, refusing it if its
/// length exceeds `max_frame_size` (the receiver would close the connection over it).
pub fn encode_message<M: Serialize>(
    group: GroupId,
    msg: &M,
    max_frame_size: usize,
) -> Result<Bytes, SendError> {
    let frame = encode_frame(FrameKind::Message, &(group, msg))
        .map_err(|e| SendError::Encode(e.to_string()))?;
    let size = frame.len() - LEN_PREFIX;
    if size > max_frame_size {
        return Err(SendError::FrameTooLarge {
            size,
            max: max_frame_size,
        });
    }
    Ok(Bytes::from(frame))
}

/// Decodes a [`FrameKind::Message`] frame into `(group, msg)`.
pub fn decode_message<M: DeserializeOwned>(frame: &RawFrame) -> Result<(GroupId, M), FrameError> {
    frame.decode_body::<(GroupId, M)>(FrameKind::Message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode_message(7, &String::from("hello"), 1024).unwrap();
        let mut buf = BytesMut::from(&bytes[..]);
        let dec = FrameDecoder::new(1024);
        let frame = dec.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(frame.wire_len(), bytes.len());
        let (group, msg): (u64, String) = decode_message(&frame).unwrap();
        assert_eq!((group, msg.as_str()), (7, "hello"));
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = encode_message(1, &vec![9u8; 100], 1024).unwrap();
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(dec.decode(&mut buf).unwrap(), None, "at byte {i}");
            buf.put_u8(*b);
        }
        assert!(dec.decode(&mut buf).unwrap().is_some());
        assert!(dec.finish(&buf).is_ok());
    }

    #[test]
    fn oversized_is_refused_before_allocating() {
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF][..]);
        let cap = buf.capacity();
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::Oversized {
                len: u64::from(u32::MAX),
                max: 1024
            })
        );
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn too_short_and_bad_version_and_trailing() {
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 1][..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::TooShort { len: 1 }));

        let forged = encode_frame_with_version(9, FrameKind::Message, &(1u64, 2u8)).unwrap();
        let frame = dec
            .decode(&mut BytesMut::from(&forged[..]))
            .unwrap()
            .unwrap();
        assert!(matches!(
            decode_message::<u8>(&frame),
            Err(FrameError::UnknownVersion { got: 9, .. })
        ));

        let two = encode_frame(FrameKind::Message, &(1u64, 2u8, 3u8)).unwrap();
        let frame = dec.decode(&mut BytesMut::from(&two[..])).unwrap().unwrap();
        assert!(matches!(
            decode_message::<u8>(&frame),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn too_large_to_send() {
        let err = encode_message(1, &vec![0u8; 2000], 1024).unwrap_err();
        assert!(matches!(err, SendError::FrameTooLarge { max: 1024, .. }));
    }

    #[test]
    fn truncated_at_eof() {
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 50, 1, 4, 0][..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.finish(&buf), Err(FrameError::Truncated { buffered: 7 }));
    }
}
