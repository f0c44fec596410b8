//! Segment files: `<id:020>.wal`, ids consecutive from 1. The newest one (`current`) is written
//! through an in-memory buffer; older ones are only read (by offset, with `pread`) and, once
//! obsolete, deleted whole.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::store::StorageError;

/// File name of segment `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:020}.wal")
}

/// The id if `name` is a segment file name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let id = name.strip_suffix(".wal")?;
    if id.len() != 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Makes renames, creations and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub file: File,
    /// It holds a complete checkpoint (or is segment 1, which needs none): replay may start
    /// here once every older segment is gone.
    pub checkpointed: bool,
}

/// All segments of the directory, and the write buffer of the newest.
#[derive(Debug)]
pub(crate) struct Segments {
    dir: PathBuf,
    pub files: BTreeMap<u64, Segment>,
    /// Id of the segment being written (0 before the first is created).
    pub current: u64,
    /// Records not yet handed to the OS.
    pub buf: Vec<u8>,
    /// Bytes of `current` already written to its file.
    pub flushed: u64,
    /// Where `current`'s header and checkpoint end: the checkpoint does not count toward
    /// the segment size, so a node with many groups still puts records in every segment.
    pub data_start: u64,
    /// Zero-filled bytes kept ahead of the records in `current` (0: none).
    preallocate: u64,
    /// Length of `current`'s file: records written plus zeros ahead of them.
    allocated: u64,
}

/// Zeros written at a time when a segment is extended.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

impl Segments {
    /// No segments yet in `dir`; the current segment will be kept zero-filled `preallocate`
    /// bytes ahead of its records (see [`crate::WalConfig::preallocate_bytes`]).
    pub fn new(dir: PathBuf, preallocate: u64) -> Self {
        Segments {
            dir,
            files: BTreeMap::new(),
            current: 0,
            buf: Vec::new(),
            flushed: 0,
            data_start: 0,
            preallocate,
            allocated: 0,
        }
    }

    /// Registers an existing, finished segment for reading.
    pub fn add_existing(&mut self, id: u64, path: PathBuf, checkpointed: bool) -> io::Result<()> {
        let file = File::open(&path)?;
        self.files.insert(
            id,
            Segment {
                path,
                file,
                checkpointed,
            },
        );
        Ok(())
    }

    /// Offset in `current` where the next record goes.
    pub fn position(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Creates segment `id` and makes it current. The buffer must be flushed.
    pub fn create(&mut self, id: u64) -> io::Result<()> {
        debug_assert!(self.buf.is_empty());
        let path = self.dir.join(file_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        self.files.insert(
            id,
            Segment {
                path,
                file,
                checkpointed: false,
            },
        );
        self.current = id;
        self.flushed = 0;
        self.allocated = 0;
        Ok(())
    }

    /// Hands the buffer to the OS with one `write` (and, when the records reach the end of
    /// the zero-filled space, extends it first, one `write` per 64 KiB of zeros).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let seg = self
            .files
            .get_mut(&self.current)
            .ok_or_else(|| io::Error::other("no current segment"))?;
        let end = self.flushed + self.buf.len() as u64;
        if self.preallocate > 0 && end > self.allocated {
            // Zeros from the records' new end on: the bytes before it are written next.
            let target = end + self.preallocate;
            let mut at = end;
            while at < target {
                let n = (target - at).min(ZEROS.len() as u64) as usize;
                seg.file.write_all_at(&ZEROS[..n], at)?;
                at += n as u64;
            }
            self.allocated = target;
        }
        seg.file.write_all_at(&self.buf, self.flushed)?;
        self.flushed = end;
        self.allocated = self.allocated.max(end);
        self.buf.clear();
        Ok(())
    }

    /// Cuts the zero-filled space off the current segment, leaving its records (the buffer
    /// must be flushed). Durable with the next `sync_current`.
    pub fn trim_current(&mut self) -> io::Result<()> {
        debug_assert!(self.buf.is_empty());
        if self.allocated <= self.flushed {
            return Ok(());
        }
        let seg = self
            .files
            .get(&self.current)
            .ok_or_else(|| io::Error::other("no current segment"))?;
        seg.file.set_len(self.flushed)?;
        self.allocated = self.flushed;
        Ok(())
    }

    /// `fdatasync` of the current segment.
    pub fn sync_current(&self) -> io::Result<()> {
        let seg = self
            .files
            .get(&self.current)
            .ok_or_else(|| io::Error::other("no current segment"))?;
        seg.file.sync_data()
    }

    /// Marks the current segment as holding a complete checkpoint.
    pub fn mark_checkpointed(&mut self) {
        self.data_start = self.position();
        if let Some(s) = self.files.get_mut(&self.current) {
            s.checkpointed = true;
        }
    }

    /// Deletes segment `id` (never the current one).
    pub fn remove(&mut self, id: u64) -> io::Result<()> {
        debug_assert_ne!(id, self.current);
        if let Some(seg) = self.files.remove(&id) {
            fs::remove_file(&seg.path)?;
        }
        Ok(())
    }

    /// `len` bytes at `offset` of segment `id`, wherever they are (file or buffer).
    pub fn read(&self, id: u64, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let seg = self.files.get(&id).ok_or_else(|| {
            StorageError::Corrupt(format!("segment {id} is needed for a read but is gone"))
        })?;
        let mut out = vec![0; len];
        let end = offset + len as u64;
        // Part on file.
        let on_file = if id == self.current {
            end.min(self.flushed).saturating_sub(offset)
        } else {
            len as u64
        };
        if on_file > 0 {
            seg.file
                .read_exact_at(&mut out[..on_file as usize], offset)
                .map_err(|source| StorageError::Io {
                    op: "read segment",
                    source,
                })?;
        }
        // Part still in the buffer.
        if (on_file as usize) < len {
            let from = (offset + on_file - self.flushed) as usize;
            let rest = len - on_file as usize;
            let src = self.buf.get(from..from + rest).ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "read of segment {id} at {offset}+{len} beyond its end"
                ))
            })?;
            out[on_file as usize..].copy_from_slice(src);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("42.wal"), None);
        assert_eq!(parse_name("0000000000000000004x.wal"), None);
    }

    #[test]
    fn reads_span_file_and_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path().to_path_buf(), 0);
        s.create(1).unwrap();
        s.buf.extend_from_slice(b"hello ");
        s.flush().unwrap();
        s.buf.extend_from_slice(b"world");
        assert_eq!(s.read(1, 3, 6).unwrap(), b"lo wor");
        assert_eq!(s.read(1, 6, 5).unwrap(), b"world");
        assert!(s.read(1, 8, 10).is_err());
        assert!(s.read(2, 0, 1).is_err());
    }
}
