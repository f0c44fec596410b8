//! Snapshot files: one per group, `snap-<group>-<seq>.snap`, next to the segments.
//!
//! A new snapshot is written to `<name>.tmp`, fsynced, renamed to `<name>`, and the directory
//! is fsynced; only then is a [`super::record::Kind::Snapshot`] record naming `seq` appended
//! to the log. The WAL is the authority: at open, a snapshot file no record points to (left by
//! a crash between the rename and the next `sync`, or a replaced one whose removal did not
//! happen) is deleted, and the previous file of a group is removed only after the `sync` that
//! made the record naming its successor durable.
//!
//! ```text
//! "RAFTSNP1" | meta_len: u32 LE | meta (postcard SnapshotMeta) | data_len: u64 LE | data
//!            | crc32c of everything before: u32 LE
//! ```
//! `seq` is unique per node (never reused), so a file name always means one content.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use raft_core::{GroupId, SnapshotMeta};

use super::segment::sync_dir;
use crate::store::StorageError;

const MAGIC: &[u8; 8] = b"RAFTSNP1";

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

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { op, source }
}

/// Writes the snapshot durably (when `durable`): tmp file, fsync, rename, directory fsync.
pub(crate) fn write(
    dir: &Path,
    group: GroupId,
    seq: u64,
    meta: &SnapshotMeta,
    data: &[u8],
    durable: bool,
) -> Result<(), StorageError> {
    let meta_bytes = postcard::to_stdvec(meta)
        .map_err(|e| StorageError::Invalid(format!("cannot encode snapshot metadata: {e}")))?;
    let mut head = Vec::with_capacity(8 + 4 + meta_bytes.len() + 8);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    head.extend_from_slice(&meta_bytes);
    head.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), data);

    let final_path = path(dir, group, seq);
    let tmp = final_path.with_extension("snap.tmp");
    let mut f = File::create(&tmp).map_err(io("create snapshot temp file"))?;
    f.write_all(&head).map_err(io("write snapshot"))?;
    f.write_all(data).map_err(io("write snapshot"))?;
    f.write_all(&crc.to_le_bytes())
        .map_err(io("write snapshot"))?;
    if durable {
        f.sync_all().map_err(io("fsync snapshot"))?;
    }
    drop(f);
    fs::rename(&tmp, &final_path).map_err(io("rename snapshot"))?;
    if durable {
        sync_dir(dir).map_err(io("fsync directory after snapshot rename"))?;
    }
    Ok(())
}

/// Reads and checks snapshot `seq` of `group`.
pub(crate) fn read(
    dir: &Path,
    group: GroupId,
    seq: u64,
) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let p = path(dir, group, seq);
    let bytes = fs::read(&p).map_err(io("read snapshot"))?;
    let corrupt =
        |why: &str| StorageError::Corrupt(format!("snapshot file {}: {why}", p.display()));
    if bytes.len() < 8 + 4 + 8 + 4 || &bytes[..8] != MAGIC {
        return Err(corrupt("bad magic or too short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err(corrupt("CRC32C mismatch"));
    }
    let meta_len = u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize;
    let meta_end = 12usize
        .checked_add(meta_len)
        .filter(|&e| e + 8 <= body.len())
        .ok_or_else(|| corrupt("bad metadata length"))?;
    let meta: SnapshotMeta = postcard::from_bytes(&body[12..meta_end])
        .map_err(|e| corrupt(&format!("metadata: {e}")))?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&body[meta_end..meta_end + 8]);
    let data = &body[meta_end + 8..];
    if u64::from_le_bytes(len) != data.len() as u64 {
        return Err(corrupt("data length mismatch"));
    }
    Ok((meta, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_round_trip() {
        assert_eq!(parse_name(&file_name(7, 9)), Some((7, 9)));
        assert_eq!(parse_name("snap-1-2.snap.tmp"), None);
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta {
            index: 10,
            term: 2,
            ..Default::default()
        };
        write(dir.path(), 3, 1, &meta, b"hello", true).unwrap();
        assert_eq!(read(dir.path(), 3, 1).unwrap(), (meta, b"hello".to_vec()));
        let p = path(dir.path(), 3, 1);
        let mut b = fs::read(&p).unwrap();
        let n = b.len();
        b[n - 6] ^= 1;
        fs::write(&p, b).unwrap();
        assert!(matches!(
            read(dir.path(), 3, 1),
            Err(StorageError::Corrupt(_))
        ));
    }
}
