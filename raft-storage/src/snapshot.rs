//! Snapshots as streams: a store hands out a [`SnapshotSink`] to write a snapshot into and a
//! [`SnapshotReader`] to read one back, so a snapshot never has to be held in memory whole.
//!
//! The life of a snapshot in a store:
//! 1. [`LogStore::snapshot_sink`](crate::LogStore::snapshot_sink) opens a sink. The sink is
//!    independent of the store: it may be written from another thread while the store goes on
//!    serving appends (raft-actor writes the state machine's snapshot from the group's apply
//!    actor, and a snapshot arriving from a leader chunk by chunk from the storage thread).
//! 2. [`SnapshotSink::finish`] makes the bytes durable (when the store is) and returns a
//!    [`StagedSnapshot`]: written, but not yet the group's snapshot. Dropping a sink or a
//!    staged snapshot throws its bytes away.
//! 3. [`LogStore::install_snapshot`](crate::LogStore::install_snapshot) makes a staged snapshot
//!    the group's latest; from then on
//!    [`LogStore::snapshot_reader`](crate::LogStore::snapshot_reader) reads it.

use std::any::Any;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use raft_core::SnapshotMeta;

use crate::store::StorageError;

/// Where a snapshot's bytes are written. Obtained from
/// [`LogStore::snapshot_sink`](crate::LogStore::snapshot_sink); written with [`Write`];
/// ended with [`finish`](Self::finish). Dropped unfinished, it leaves nothing behind.
pub trait SnapshotSink: Write + Send {
    /// Bytes written so far.
    fn written(&self) -> u64;

    /// Ends the snapshot: `meta` describes what it covers. The bytes are durable when this
    /// returns (for a durable store); the result is installed with
    /// [`LogStore::install_snapshot`](crate::LogStore::install_snapshot).
    fn finish(self: Box<Self>, meta: &SnapshotMeta) -> Result<StagedSnapshot, StorageError>;
}

/// A finished snapshot, not yet the group's: what
/// [`LogStore::install_snapshot`](crate::LogStore::install_snapshot) takes. It carries a
/// store-specific token (which file, which buffer); dropping it discards the snapshot.
pub struct StagedSnapshot {
    meta: SnapshotMeta,
    len: u64,
    token: Box<dyn Any + Send>,
}

impl StagedSnapshot {
    /// A staged snapshot of `len` bytes covering `meta`, identified by the store's `token`.
    pub fn new(meta: SnapshotMeta, len: u64, token: Box<dyn Any + Send>) -> Self {
        StagedSnapshot { meta, len, token }
    }

    /// What the snapshot covers.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a snapshot of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The store's token, if it is a `T` (otherwise the staged snapshot is handed back).
    pub fn into_token<T: Any>(self) -> Result<(SnapshotMeta, Box<T>), Box<Self>> {
        let StagedSnapshot { meta, len, token } = self;
        match token.downcast::<T>() {
            Ok(t) => Ok((meta, t)),
            Err(token) => Err(Box::new(StagedSnapshot { meta, len, token })),
        }
    }

    /// The token, borrowed, if it is a `T`.
    pub fn token<T: Any>(&self) -> Option<&T> {
        self.token.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for StagedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedSnapshot")
            .field("meta", &self.meta)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What a [`SnapshotReader`] reads from.
pub trait SnapshotSource: Read + Seek + Send {}
impl<T: Read + Seek + Send> SnapshotSource for T {}

/// Reads a stored snapshot's bytes: [`Read`] for a restore from the start, [`Seek`] for a
/// sender that resends from an offset. A store that checksums its snapshots checks the sum
/// when the bytes are read through from the start to the end, and fails that last read with
/// `InvalidData` on a mismatch.
pub struct SnapshotReader {
    inner: Box<dyn SnapshotSource>,
    len: u64,
    pos: u64,
    check: Option<Check>,
}

/// A CRC32C over `prefix ‖ data ‖ suffix`, compared at the end of the data.
struct Check {
    prefix_crc: u32,
    suffix: Vec<u8>,
    expected: u32,
    /// The sum so far, while the data has been read through from offset 0 (None after a
    /// seek elsewhere: a read that did not start at the beginning cannot be checked).
    running: Option<u32>,
}

impl SnapshotReader {
    /// A reader of `len` bytes from `inner`, positioned at its start.
    pub fn new(inner: impl SnapshotSource + 'static, len: u64) -> Self {
        SnapshotReader {
            inner: Box::new(inner),
            len,
            pos: 0,
            check: None,
        }
    }

    /// Checks, when the data is read through from the start, that CRC32C over
    /// `prefix ‖ data ‖ suffix` is `expected`; `prefix_crc` is the CRC32C of `prefix`.
    pub(crate) fn with_crc32c(mut self, prefix_crc: u32, suffix: Vec<u8>, expected: u32) -> Self {
        self.check = Some(Check {
            prefix_crc,
            suffix,
            expected,
            running: Some(prefix_crc),
        });
        self
    }

    /// The snapshot's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a snapshot of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The current offset.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the rest into memory (for tests and small snapshots).
    pub fn read_all(mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len.saturating_sub(self.pos) as usize);
        self.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("snapshot ends at {} of {} bytes", self.pos, self.len),
            ));
        }
        self.pos += n as u64;
        if let Some(c) = &mut self.check {
            if let Some(sum) = c.running {
                let sum = crc32c::crc32c_append(sum, &buf[..n]);
                c.running = Some(sum);
                if self.pos == self.len && crc32c::crc32c_append(sum, &c.suffix) != c.expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "snapshot checksum (CRC32C) mismatch",
                    ));
                }
            }
        }
        Ok(n)
    }
}

impl Seek for SnapshotReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.filter(|&t| t <= self.len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the snapshot's bytes",
            )
        })?;
        if target != self.pos {
            self.inner
                .seek(SeekFrom::Current(target as i64 - self.pos as i64))?;
            self.pos = target;
            if let Some(c) = &mut self.check {
                c.running = (target == 0).then_some(c.prefix_crc);
            }
        }
        Ok(self.pos)
    }
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

/// Snapshot bytes held in memory and shared (a [`crate::MemStore`]'s snapshots).
#[derive(Clone, Debug, Default)]
pub struct SharedBytes(pub Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A sink that keeps the snapshot in memory; its staged token is a [`SharedBytes`].
#[derive(Debug, Default)]
pub struct MemSink {
    buf: Vec<u8>,
}

impl MemSink {
    /// An empty sink.
    pub fn new() -> Self {
        MemSink::default()
    }
}

impl Write for MemSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SnapshotSink for MemSink {
    fn written(&self) -> u64 {
        self.buf.len() as u64
    }

    fn finish(self: Box<Self>, meta: &SnapshotMeta) -> Result<StagedSnapshot, StorageError> {
        let len = self.buf.len() as u64;
        let bytes = SharedBytes(Arc::new(self.buf));
        Ok(StagedSnapshot::new(meta.clone(), len, Box::new(bytes)))
    }
}

/// The I/O error of a sink write, as a storage error.
pub(crate) fn write_error(source: io::Error) -> StorageError {
    StorageError::Io {
        op: "write snapshot",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn a_checked_reader_fails_on_a_bad_sum_only_when_read_through() {
        let data = b"0123456789".to_vec();
        let good = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(b"P"), &data), b"S");
        let read = |expected| {
            SnapshotReader::new(Cursor::new(data.clone()), 10).with_crc32c(
                crc32c::crc32c(b"P"),
                b"S".to_vec(),
                expected,
            )
        };
        assert_eq!(read(good).read_all().unwrap(), data);
        let err = read(good ^ 1).read_all().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A resend from the middle is not checked; back at 0 it is again.
        let mut r = read(good ^ 1);
        r.seek(SeekFrom::Start(4)).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"456789");
        r.seek(SeekFrom::Start(0)).unwrap();
        assert!(r.read_all().is_err());
        assert!(read(good).seek(SeekFrom::Start(11)).is_err());
    }

    #[test]
    fn a_short_source_is_an_unexpected_eof() {
        let mut r = SnapshotReader::new(Cursor::new(vec![1u8; 4]), 8);
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn staged_tokens_downcast() {
        let mut sink: Box<dyn SnapshotSink> = Box::new(MemSink::new());
        sink.write_all(b"abc").unwrap();
        assert_eq!(sink.written(), 3);
        let staged = sink.finish(&SnapshotMeta::default()).unwrap();
        assert_eq!(staged.len(), 3);
        assert_eq!(staged.token::<SharedBytes>().unwrap().as_ref(), b"abc");
        let staged = staged.into_token::<u32>().unwrap_err();
        let (_, bytes) = (*staged).into_token::<SharedBytes>().unwrap();
        assert_eq!(bytes.0.as_slice(), b"abc");
    }
}
