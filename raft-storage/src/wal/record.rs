//! The on-disk record: framing, kinds and bodies.
//!
//! ```text
//! offset 0       4       8     9
//!        | len   | crc   | kind | body (len bytes, postcard)
//! ```
//! - `len`: u32 little-endian, the body's length; 1 ..= [`MAX_BODY_LEN`] (a zero length is how
//!   a zero-filled tail shows up, so it is never valid).
//! - `crc`: u32 little-endian, CRC32C over `len`, `kind` and `body` (everything but itself), so
//!   a corrupt length is caught as surely as a corrupt body.
//! - `kind`: one byte, a [`Kind`]; `0` is never used.
//! - `body`: the kind's body struct encoded with postcard.
//!
//! Every segment starts with a [`Kind::SegmentHeader`] record; every segment but the first
//! one ever written continues with one [`Kind::Checkpoint`] per live group and a
//! [`Kind::CheckpointEnd`], so that older segments can be deleted without losing any group's
//! hard state, snapshot pointer or log bounds.

use raft_core::{Entry, GroupId, HardState, Index, SnapshotMeta, Term};
use serde::{Deserialize, Serialize};

use crate::store::StorageError;

/// Bytes before the body: length, CRC, kind.
pub(crate) const HEADER_LEN: usize = 9;
/// Largest body accepted on write and believed on read (1 GiB).
pub(crate) const MAX_BODY_LEN: u32 = 1 << 30;
/// `SegmentHeader::magic`: "RAFTWAL1" read as a little-endian u64.
pub(crate) const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"RAFTWAL1");
/// `SegmentHeader::version` of this format.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// First record of every segment: [`SegmentHeader`].
    SegmentHeader = 1,
    /// One log entry of one group: `(GroupId, Entry)`. An entry at an index the group already
    /// holds replaces it and everything after it (the truncation implied by a conflicting
    /// append is thereby atomic with the append).
    Entry = 2,
    /// [`HardStateRec`].
    HardState = 3,
    /// [`TruncateRec`]: drop entries from `from` on.
    Truncate = 4,
    /// [`SnapshotRec`]: the group's snapshot is now the file with sequence `file`.
    Snapshot = 5,
    /// [`CompactRec`]: drop entries up to `index`.
    Compact = 6,
    /// [`RemoveRec`]: forget the group.
    RemoveGroup = 7,
    /// [`CheckpointRec`]: a group's whole state except its entries' contents.
    Checkpoint = 8,
    /// [`CheckpointEndRec`]: the checkpoint of this segment is complete.
    CheckpointEnd = 9,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::SegmentHeader,
            2 => Kind::Entry,
            3 => Kind::HardState,
            4 => Kind::Truncate,
            5 => Kind::Snapshot,
            6 => Kind::Compact,
            7 => Kind::RemoveGroup,
            8 => Kind::Checkpoint,
            9 => Kind::CheckpointEnd,
            _ => return None,
        })
    }
}

/// Body of [`Kind::SegmentHeader`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentHeader {
    /// [`SEGMENT_MAGIC`].
    pub magic: u64,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The segment's id; must match its file name.
    pub segment: u64,
}

/// Body of [`Kind::HardState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HardStateRec {
    pub group: GroupId,
    pub hard_state: HardState,
}

/// Body of [`Kind::Truncate`]. Also written for an empty append to a new group, to create it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TruncateRec {
    pub group: GroupId,
    pub from: Index,
}

/// Body of [`Kind::Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRec {
    pub group: GroupId,
    pub meta: SnapshotMeta,
    /// Sequence number naming the snapshot file (see `snapshot.rs`).
    pub file: u64,
    /// The whole log was dropped with it.
    pub discard_log: bool,
}

/// Body of [`Kind::Compact`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompactRec {
    pub group: GroupId,
    pub index: Index,
}

/// Body of [`Kind::RemoveGroup`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RemoveRec {
    pub group: GroupId,
}

/// Body of [`Kind::Checkpoint`]: enough to rebuild a group when the segments before this one
/// are gone. Its entries (`count` of them from `first`) then live in deleted segments and must
/// all be compacted or truncated away by later records, which recovery checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CheckpointRec {
    pub group: GroupId,
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    pub snapshot_file: Option<u64>,
    pub first: Index,
    pub count: u64,
}

/// Body of [`Kind::CheckpointEnd`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CheckpointEndRec {
    /// How many checkpoint records precede it in this segment.
    pub groups: u64,
}

/// A decoded record. Entries are decoded head only (group, index, term): replay never needs
/// the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    SegmentHeader(SegmentHeader),
    Entry {
        group: GroupId,
        index: Index,
        term: Term,
    },
    HardState(HardStateRec),
    Truncate(TruncateRec),
    Snapshot(SnapshotRec),
    Compact(CompactRec),
    RemoveGroup(RemoveRec),
    Checkpoint(CheckpointRec),
    CheckpointEnd(CheckpointEndRec),
}

/// Appends one framed record to `buf`; returns its total length (header + body). On error
/// `buf` is left as it was.
pub(crate) fn encode<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    kind: Kind,
    body: &T,
) -> Result<u32, StorageError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    buf[start + 8] = kind as u8;
    let taken = std::mem::take(buf);
    *buf = match postcard::to_extend(body, taken) {
        Ok(b) => b,
        Err(e) => {
            return Err(StorageError::Invalid(format!(
                "cannot encode a {kind:?} record: {e}"
            )));
        }
    };
    let body_len = buf.len() - start - HEADER_LEN;
    if body_len > MAX_BODY_LEN as usize {
        buf.truncate(start);
        return Err(StorageError::Invalid(format!(
            "a {kind:?} record of {body_len} bytes exceeds the limit of {MAX_BODY_LEN}"
        )));
    }
    let len = (body_len as u32).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok((HEADER_LEN + body_len) as u32)
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes remain than the header or the body needs (a short write).
    Short { need: usize, have: usize },
    /// The length field is 0 (zero fill) or above [`MAX_BODY_LEN`].
    BadLength(u32),
    /// The checksum does not match.
    BadCrc { stored: u32, computed: u32 },
    /// The kind byte is not a [`Kind`].
    BadKind(u8),
    /// The checksum matched but the body does not decode as its kind.
    Undecodable(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Short { need, have } => {
                write!(f, "short record: needs {need} bytes, only {have} remain")
            }
            FrameError::BadLength(0) => write!(f, "zero length (zero-filled space)"),
            FrameError::BadLength(l) => write!(f, "impossible length {l}"),
            FrameError::BadCrc { stored, computed } => {
                write!(
                    f,
                    "CRC32C mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            FrameError::BadKind(k) => write!(f, "unknown record kind {k}"),
            FrameError::Undecodable(e) => {
                write!(f, "checksum matches but the body does not decode: {e}")
            }
        }
    }
}

/// A record whose framing checked out: its kind, body and total length.
pub(crate) struct Frame<'a> {
    pub kind: Kind,
    pub body: &'a [u8],
    pub total: usize,
}

/// Checks the framing of the record at `data[at..]`.
pub(crate) fn parse_frame(data: &[u8], at: usize) -> Result<Frame<'_>, FrameError> {
    let rest = &data[at.min(data.len())..];
    if rest.len() < HEADER_LEN {
        return Err(FrameError::Short {
            need: HEADER_LEN,
            have: rest.len(),
        });
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    if len == 0 || len > MAX_BODY_LEN {
        return Err(FrameError::BadLength(len));
    }
    let total = HEADER_LEN + len as usize;
    if rest.len() < total {
        return Err(FrameError::Short {
            need: total,
            have: rest.len(),
        });
    }
    let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&rest[..4]), &rest[8..total]);
    if stored != computed {
        return Err(FrameError::BadCrc { stored, computed });
    }
    let kind = Kind::from_u8(rest[8]).ok_or(FrameError::BadKind(rest[8]))?;
    Ok(Frame {
        kind,
        body: &rest[HEADER_LEN..total],
        total,
    })
}

fn de<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    postcard::from_bytes(body).map_err(|e| FrameError::Undecodable(e.to_string()))
}

/// Decodes a checked frame (entries head only).
pub(crate) fn decode(frame: &Frame<'_>) -> Result<Record, FrameError> {
    Ok(match frame.kind {
        Kind::SegmentHeader => Record::SegmentHeader(de(frame.body)?),
        Kind::Entry => {
            // (group, Entry { index, term, payload }) is encoded field after field, so the
            // first three varints are group, index and term.
            let ((group, index, term), _) =
                postcard::take_from_bytes::<(u64, u64, u64)>(frame.body)
                    .map_err(|e| FrameError::Undecodable(e.to_string()))?;
            Record::Entry { group, index, term }
        }
        Kind::HardState => Record::HardState(de(frame.body)?),
        Kind::Truncate => Record::Truncate(de(frame.body)?),
        Kind::Snapshot => Record::Snapshot(de(frame.body)?),
        Kind::Compact => Record::Compact(de(frame.body)?),
        Kind::RemoveGroup => Record::RemoveGroup(de(frame.body)?),
        Kind::Checkpoint => Record::Checkpoint(de(frame.body)?),
        Kind::CheckpointEnd => Record::CheckpointEnd(de(frame.body)?),
    })
}

/// Decodes a whole entry record.
pub(crate) fn decode_entry(frame: &Frame<'_>) -> Result<(GroupId, Entry), FrameError> {
    if frame.kind != Kind::Entry {
        return Err(FrameError::Undecodable(format!(
            "expected an entry, found {:?}",
            frame.kind
        )));
    }
    de(frame.body)
}

/// True if a complete, checksummed, decodable record starts at `at`. Used to tell a torn tail
/// (nothing valid after the damage) from mid-segment corruption.
pub(crate) fn valid_record_at(data: &[u8], at: usize) -> bool {
    parse_frame(data, at).is_ok_and(|f| decode(&f).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::EntryPayload;

    #[test]
    fn frame_round_trip_and_damage() {
        let entry = Entry {
            index: 7,
            term: 3,
            payload: EntryPayload::Normal(vec![1, 2, 3].into()),
        };
        let mut buf = vec![0xAA];
        let n = encode(&mut buf, Kind::Entry, &(42u64, &entry)).unwrap() as usize;
        assert_eq!(buf.len(), 1 + n);
        let f = parse_frame(&buf, 1).unwrap();
        assert_eq!(f.total, n);
        assert_eq!(
            decode(&f).unwrap(),
            Record::Entry {
                group: 42,
                index: 7,
                term: 3
            }
        );
        assert_eq!(decode_entry(&f).unwrap(), (42, entry));
        // Every single-byte flip is caught.
        for i in 1..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(!valid_record_at(&bad, 1), "flip at {i} went unnoticed");
        }
        // Every truncation is a short record.
        for cut in 1..buf.len() {
            assert!(matches!(
                parse_frame(&buf[..cut], 1),
                Err(FrameError::Short { .. })
            ));
        }
        assert_eq!(
            parse_frame(&[0; 20], 0).err(),
            Some(FrameError::BadLength(0))
        );
    }
}
