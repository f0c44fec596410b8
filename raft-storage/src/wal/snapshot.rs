//! Snapshot files: one per group, `snap-<group>-<seq>.snap`, next to the segments.
//!
//! A snapshot is streamed into `<name>.tmp` by a [`WalSink`] (from any thread: the sink owns
//! its file), which at `finish` appends the trailer and fsyncs. Installing it renames the file
//! to `<name>`, fsyncs the directory, and only then appends a
//! [`super::record::Kind::Snapshot`] record naming `seq` to the log. The WAL is the authority:
//! at open, a snapshot file no record points to (left by a crash between the rename and the
//! next `sync`, or a replaced one whose removal did not happen) is deleted, like leftover
//! temporary files, and the previous file of a group is removed only after the `sync` that
//! made the record naming its successor durable. A reader holds its file open, so it reads on
//! after its snapshot is replaced and the file unlinked.
//!
//! ```text
//! "RAFTSNP2" | data | meta (postcard SnapshotMeta) | meta_len: u32 LE | data_len: u64 LE
//!            | crc32c of everything before: u32 LE
//! ```
//! The data comes first because its length is known only at the end; the metadata is given at
//! `finish` (a state machine's snapshot covers what was applied when it was written). Files of
//! the earlier layout, `"RAFTSNP1" | meta_len | meta | data_len | data | crc32c`, are read too.
//! `seq` is unique per node (never reused), so a file name always means one content.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft_core::{GroupId, SnapshotMeta};

use super::segment::sync_dir;
use crate::snapshot::{SnapshotReader, SnapshotSink, StagedSnapshot};
use crate::store::StorageError;

const MAGIC: &[u8; 8] = b"RAFTSNP2";
const MAGIC_V1: &[u8; 8] = b"RAFTSNP1";
/// `meta_len | data_len | crc`.
const TRAILER: u64 = 4 + 8 + 4;

/// File name of snapshot `seq` of `group`.
pub(crate) fn file_name(group: GroupId, seq: u64) -> String {
    format!("snap-{group:020}-{seq:020}.snap")
}

/// `(group, seq)` if `name` is a snapshot file name.
pub(crate) fn parse_name(name: &str) -> Option<(GroupId, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (g, s) = rest.split_once('-')?;
    Some((g.parse().ok()?, s.parse().ok()?))
}

/// Path of snapshot `seq` of `group` in `dir`.
pub(crate) fn path(dir: &Path, group: GroupId, seq: u64) -> PathBuf {
    dir.join(file_name(group, seq))
}

fn io(op: &'static str) -> impl FnOnce(io::Error) -> StorageError {
    move |source| StorageError::Io { op, source }
}

/// A snapshot being written to its temporary file.
pub(crate) struct WalSink {
    /// `None` once finished.
    file: Option<BufWriter<File>>,
    staged: Staged,
    crc: u32,
    len: u64,
    durable: bool,
}

/// A written snapshot file awaiting installation (the staged token); removed when dropped
/// still armed.
pub(crate) struct Staged {
    pub(crate) tmp: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) group: GroupId,
    pub(crate) seq: u64,
    armed: bool,
}

impl Staged {
    /// Renames the file to its final name (and fsyncs the directory when `durable`); from
    /// then on the file is the WAL's to keep or delete.
    pub(crate) fn place(mut self, durable: bool) -> Result<(), StorageError> {
        let final_path = path(&self.dir, self.group, self.seq);
        fs::rename(&self.tmp, &final_path).map_err(io("rename snapshot"))?;
        self.armed = false;
        if durable {
            sync_dir(&self.dir).map_err(io("fsync directory after snapshot rename"))?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl WalSink {
    /// Starts snapshot `seq` of `group` in `dir`.
    pub(crate) fn create(
        dir: &Path,
        group: GroupId,
        seq: u64,
        durable: bool,
    ) -> Result<WalSink, StorageError> {
        let tmp = path(dir, group, seq).with_extension("snap.tmp");
        let file = File::create(&tmp).map_err(io("create snapshot temp file"))?;
        let staged = Staged {
            tmp,
            dir: dir.to_path_buf(),
            group,
            seq,
            armed: true,
        };
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(MAGIC).map_err(io("write snapshot"))?;
        Ok(WalSink {
            file: Some(file),
            staged,
            crc: crc32c::crc32c(MAGIC),
            len: 0,
            durable,
        })
    }
}

impl Write for WalSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("snapshot sink already finished"))?;
        let n = file.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl SnapshotSink for WalSink {
    fn written(&self) -> u64 {
        self.len
    }

    fn finish(mut self: Box<Self>, meta: &SnapshotMeta) -> Result<StagedSnapshot, StorageError> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StorageError::Invalid("snapshot sink finished twice".into()))?;
        let meta_bytes = postcard::to_stdvec(meta)
            .map_err(|e| StorageError::Invalid(format!("cannot encode snapshot metadata: {e}")))?;
        let mut tail = meta_bytes;
        tail.extend_from_slice(&(tail.len() as u32).to_le_bytes());
        tail.extend_from_slice(&self.len.to_le_bytes());
        let crc = crc32c::crc32c_append(self.crc, &tail);
        tail.extend_from_slice(&crc.to_le_bytes());
        file.write_all(&tail).map_err(io("write snapshot"))?;
        let file = file.into_inner().map_err(|e| StorageError::Io {
            op: "write snapshot",
            source: e.into_error(),
        })?;
        if self.durable {
            file.sync_all().map_err(io("fsync snapshot"))?;
        }
        let staged = std::mem::replace(
            &mut self.staged,
            Staged {
                tmp: PathBuf::new(),
                dir: PathBuf::new(),
                group: 0,
                seq: 0,
                armed: false,
            },
        );
        Ok(StagedSnapshot::new(
            meta.clone(),
            self.len,
            Box::new(staged),
        ))
    }
}

/// Opens snapshot `seq` of `group`: its metadata and a reader of its data (checked against
/// the file's CRC32C when read through).
pub(crate) fn open(
    dir: &Path,
    group: GroupId,
    seq: u64,
) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
    let p = path(dir, group, seq);
    let corrupt =
        |why: &str| StorageError::Corrupt(format!("snapshot file {}: {why}", p.display()));
    let mut f = File::open(&p).map_err(io("open snapshot"))?;
    let size = f.metadata().map_err(io("stat snapshot"))?.len();
    let mut magic = [0u8; 8];
    if size < 8 + TRAILER {
        return Err(corrupt("too short"));
    }
    f.read_exact(&mut magic).map_err(io("read snapshot"))?;
    if &magic == MAGIC_V1 {
        return open_v1(f, size, &corrupt);
    }
    if &magic != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let mut trailer = [0u8; TRAILER as usize];
    f.seek(SeekFrom::Start(size - TRAILER))
        .and_then(|_| f.read_exact(&mut trailer))
        .map_err(io("read snapshot"))?;
    let meta_len = u64::from(u32::from_le_bytes(
        trailer[0..4].try_into().unwrap_or_default(),
    ));
    let data_len = u64::from_le_bytes(trailer[4..12].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(trailer[12..16].try_into().unwrap_or_default());
    if 8u64
        .checked_add(data_len)
        .and_then(|n| n.checked_add(meta_len))
        .and_then(|n| n.checked_add(TRAILER))
        != Some(size)
    {
        return Err(corrupt("lengths disagree with the file's size"));
    }
    let mut meta_bytes = vec![0u8; meta_len as usize];
    f.seek(SeekFrom::Start(8 + data_len))
        .and_then(|_| f.read_exact(&mut meta_bytes))
        .map_err(io("read snapshot"))?;
    let meta: SnapshotMeta =
        postcard::from_bytes(&meta_bytes).map_err(|e| corrupt(&format!("metadata: {e}")))?;
    let mut suffix = meta_bytes;
    suffix.extend_from_slice(&trailer[..12]);
    f.seek(SeekFrom::Start(8)).map_err(io("read snapshot"))?;
    let reader = SnapshotReader::new(f, data_len).with_crc32c(crc32c::crc32c(MAGIC), suffix, crc);
    Ok((meta, reader))
}

/// The earlier layout: metadata first, the data's length before the data.
fn open_v1(
    mut f: File,
    size: u64,
    corrupt: &dyn Fn(&str) -> StorageError,
) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
    let mut len4 = [0u8; 4];
    f.read_exact(&mut len4).map_err(io("read snapshot"))?;
    let meta_len = u64::from(u32::from_le_bytes(len4));
    if 12 + meta_len + 8 + 4 > size {
        return Err(corrupt("bad metadata length"));
    }
    let mut meta_bytes = vec![0u8; meta_len as usize];
    let mut len8 = [0u8; 8];
    f.read_exact(&mut meta_bytes)
        .and_then(|()| f.read_exact(&mut len8))
        .map_err(io("read snapshot"))?;
    let data_len = u64::from_le_bytes(len8);
    if 12 + meta_len + 8 + data_len + 4 != size {
        return Err(corrupt("data length mismatch"));
    }
    let meta: SnapshotMeta =
        postcard::from_bytes(&meta_bytes).map_err(|e| corrupt(&format!("metadata: {e}")))?;
    let mut crc4 = [0u8; 4];
    f.seek(SeekFrom::Start(size - 4))
        .and_then(|_| f.read_exact(&mut crc4))
        .map_err(io("read snapshot"))?;
    let mut prefix = MAGIC_V1.to_vec();
    prefix.extend_from_slice(&len4);
    prefix.extend_from_slice(&meta_bytes);
    prefix.extend_from_slice(&len8);
    f.seek(SeekFrom::Start(prefix.len() as u64))
        .map_err(io("read snapshot"))?;
    let reader = SnapshotReader::new(f, data_len).with_crc32c(
        crc32c::crc32c(&prefix),
        Vec::new(),
        u32::from_le_bytes(crc4),
    );
    Ok((meta, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            index: 10,
            term: 2,
            ..Default::default()
        }
    }

    fn write(dir: &Path, seq: u64, data: &[u8]) {
        let mut sink = Box::new(WalSink::create(dir, 3, seq, true).unwrap());
        for part in data.chunks(3) {
            sink.write_all(part).unwrap();
        }
        let staged = sink.finish(&meta()).unwrap();
        let (_, staged) = staged.into_token::<Staged>().unwrap();
        staged.place(true).unwrap();
    }

    #[test]
    fn names_and_round_trip() {
        assert_eq!(parse_name(&file_name(7, 9)), Some((7, 9)));
        assert_eq!(parse_name("snap-1-2.snap.tmp"), None);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, b"hello, snapshot");
        let (m, r) = open(dir.path(), 3, 1).unwrap();
        assert_eq!(
            (m, r.read_all().unwrap()),
            (meta(), b"hello, snapshot".to_vec())
        );
        // One flipped data bit: the metadata still opens, reading the data through fails.
        let p = path(dir.path(), 3, 1);
        let mut b = fs::read(&p).unwrap();
        b[9] ^= 1;
        fs::write(&p, &b).unwrap();
        let (_, r) = open(dir.path(), 3, 1).unwrap();
        assert_eq!(r.read_all().unwrap_err().kind(), io::ErrorKind::InvalidData);
        // A truncated file does not open.
        fs::write(&p, &b[..b.len() - 1]).unwrap();
        assert!(matches!(
            open(dir.path(), 3, 1),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn an_unfinished_or_uninstalled_snapshot_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Box::new(WalSink::create(dir.path(), 3, 1, false).unwrap());
        sink.write_all(b"abc").unwrap();
        drop(sink);
        let mut sink = Box::new(WalSink::create(dir.path(), 3, 2, false).unwrap());
        sink.write_all(b"abc").unwrap();
        drop(sink.finish(&meta()).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn files_of_the_earlier_layout_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let meta_bytes = postcard::to_stdvec(&meta()).unwrap();
        let mut b = MAGIC_V1.to_vec();
        b.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
        b.extend_from_slice(&meta_bytes);
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(b"hello");
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        fs::write(path(dir.path(), 3, 1), &b).unwrap();
        let (m, r) = open(dir.path(), 3, 1).unwrap();
        assert_eq!((m, r.read_all().unwrap()), (meta(), b"hello".to_vec()));
    }
}
