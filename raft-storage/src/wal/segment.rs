//! Segment files: `<id:020>.wal`, ids consecutive from 1. The newest one (`current`) is written
//! through an in-memory buffer; older ones are only read (by offset, with `pread`) and, once
//! obsolete, deleted whole.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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
}

impl Segments {
    /// No segments yet in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Segments {
            dir,
            files: BTreeMap::new(),
            current: 0,
            buf: Vec::new(),
            flushed: 0,
            data_start: 0,
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
        Ok(())
    }

    /// Hands the buffer to the OS with one `write`.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let seg = self
            .files
            .get_mut(&self.current)
            .ok_or_else(|| io::Error::other("no current segment"))?;
        seg.file.write_all(&self.buf)?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
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
        let mut s = Segments::new(dir.path().to_path_buf());
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
