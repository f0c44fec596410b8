//! Recovery: replay every segment in order into a fresh in-memory index.
//!
//! Zeros are not damage: a segment's file is zero-filled ahead of its records
//! ([`crate::WalConfig::preallocate_bytes`]), and a segment whose records end before its file
//! does (the last one, or an older one whose cut at rotation did not reach the disk) holds
//! only zeros after them. That space is cut off, counted in
//! [`RecoveryReport::unused_tail_bytes`] and not reported as a torn tail.
//!
//! Damage is judged by where it is:
//! - in the **last** segment, a bad record (short, bad CRC, undecodable) with no
//!   valid record anywhere after it is a torn tail: the file is truncated there (and the
//!   truncation fsynced), and a [`TornTail`] is reported and logged with `tracing::warn!`;
//! - anywhere else, or when a valid record follows the damage, it is
//!   [`StorageError::Corrupt`] naming the segment file and offset. Nothing is skipped.
//!
//! The distinction costs one scan of the bytes after the damage, done only when damage is
//! found. Limit: a power loss that persists later pages of an unsynced write but not earlier
//! ones looks like mid-segment corruption and stops the node; an operator can then truncate
//! the segment at the reported offset by hand. Failing loudly is preferred to guessing.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use raft_core::GroupId;

use super::index::{LogIndex, PHANTOM_SEGMENT};
use super::record::{self, FORMAT_VERSION, Kind, Record, SEGMENT_MAGIC};
use super::{segment, snapshot};
use crate::store::StorageError;

/// What [`crate::Wal::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files replayed.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// Groups recovered.
    pub groups: usize,
    /// The torn tail cut off the last segment, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Zero-filled bytes cut off the ends of segments: space preallocated and never used.
    pub unused_tail_bytes: u64,
    /// Snapshot files (and temporary files) deleted because no record points to them.
    pub removed_snapshot_files: usize,
}

/// A torn or corrupt tail record cut off the last segment at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the first bad record began; the file now ends here.
    pub offset: u64,
    /// How many bytes were cut.
    pub dropped_bytes: u64,
    /// What was wrong with the record at `offset`.
    pub reason: String,
}

/// The outcome of replaying a directory.
pub(crate) struct Replayed {
    pub index: LogIndex,
    /// Surviving non-empty segments: id -> (path, has a complete checkpoint or is segment 1).
    pub segments: BTreeMap<u64, (PathBuf, bool)>,
    /// Snapshot files found: (group, seq).
    pub snapshots: Vec<(GroupId, u64)>,
    /// Leftover temporary snapshot files.
    pub temps: Vec<PathBuf>,
    pub report: RecoveryReport,
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { op, source }
}

/// Replays the segments of `dir`. Truncates a torn tail of the last segment and deletes the
/// last segment if nothing valid is left in it (both made durable when `durable`).
pub(crate) fn replay(dir: &Path, durable: bool) -> Result<Replayed, StorageError> {
    let mut ids = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut temps = Vec::new();
    for dent in fs::read_dir(dir).map_err(io("list WAL directory"))? {
        let dent = dent.map_err(io("list WAL directory"))?;
        let name = dent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = segment::parse_name(name) {
            ids.insert(id, dent.path());
        } else if let Some(gs) = snapshot::parse_name(name) {
            snapshots.push(gs);
        } else if name.starts_with("snap-") && name.ends_with(".snap.tmp") {
            temps.push(dent.path());
        }
    }
    let list: Vec<(u64, PathBuf)> = ids.into_iter().collect();
    for w in list.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(StorageError::Corrupt(format!(
                "segment files are not consecutive: {} is followed by {}; a segment is missing",
                w[0].1.display(),
                w[1].1.display()
            )));
        }
    }

    let mut index = LogIndex::default();
    let mut report = RecoveryReport::default();
    let mut segments = BTreeMap::new();
    for (i, (id, path)) in list.iter().enumerate() {
        let is_last = i + 1 == list.len();
        let data = fs::read(path).map_err(io("read segment"))?;
        let Scanned {
            valid_len,
            checkpointed,
            records,
            unused_tail,
        } = replay_segment(&mut index, *id, path, &data, is_last)?;
        report.segments += 1;
        report.records += records;
        if i == 0 && *id != 1 && !checkpointed {
            return Err(StorageError::Corrupt(format!(
                "{} is the oldest segment but holds no complete checkpoint: older segments are missing",
                path.display()
            )));
        }
        if valid_len < data.len() && unused_tail {
            tracing::debug!(
                segment = %path.display(),
                offset = valid_len,
                bytes = data.len() - valid_len,
                "WAL: cutting the unused zero-filled end of a segment"
            );
            truncate(path, valid_len as u64, durable)?;
            report.unused_tail_bytes += (data.len() - valid_len) as u64;
        } else if valid_len < data.len() {
            let reason = record::parse_frame(&data, valid_len)
                .and_then(|f| record::decode(&f).map(|_| ()))
                .err()
                .map_or_else(String::new, |e| e.to_string());
            tracing::warn!(
                segment = %path.display(),
                offset = valid_len,
                dropped_bytes = data.len() - valid_len,
                %reason,
                "WAL: torn or corrupt tail record in the last segment (an interrupted write); truncating it"
            );
            truncate(path, valid_len as u64, durable)?;
            report.torn_tail = Some(TornTail {
                segment: path.clone(),
                offset: valid_len as u64,
                dropped_bytes: (data.len() - valid_len) as u64,
                reason,
            });
        }
        if valid_len == 0 {
            // Only the last segment can get here: it was created but its header never landed.
            fs::remove_file(path).map_err(io("remove empty segment"))?;
            if durable {
                segment::sync_dir(dir).map_err(io("fsync WAL directory"))?;
            }
        } else {
            segments.insert(*id, (path.clone(), *id == 1 || checkpointed));
        }
    }

    if index.live_in(PHANTOM_SEGMENT) > 0 {
        let lost: Vec<String> = index
            .groups
            .iter()
            .filter(|(_, g)| g.locs.iter().any(|l| l.segment == PHANTOM_SEGMENT))
            .map(|(id, g)| format!("group {id} (entries from {})", g.first))
            .collect();
        return Err(StorageError::Corrupt(format!(
            "live entries lie in segments older than the oldest present one: {}",
            lost.join(", ")
        )));
    }
    report.groups = index.groups.len();
    Ok(Replayed {
        index,
        segments,
        snapshots,
        temps,
        report,
    })
}

/// True if every byte is zero: unused preallocated space.
fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Cuts the segment file at `len` (durably when `durable`).
fn truncate(path: &Path, len: u64, durable: bool) -> Result<(), StorageError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("open segment to truncate"))?;
    f.set_len(len).map_err(io("truncate segment"))?;
    if durable {
        f.sync_all().map_err(io("fsync truncated segment"))?;
    }
    Ok(())
}

/// What replaying one segment found.
struct Scanned {
    /// Bytes of valid records.
    valid_len: usize,
    /// A complete checkpoint was seen.
    checkpointed: bool,
    /// Records replayed.
    records: u64,
    /// Everything after `valid_len` is zeros: unused space, not damage.
    unused_tail: bool,
}

/// Replays one segment.
fn replay_segment(
    index: &mut LogIndex,
    id: u64,
    path: &Path,
    data: &[u8],
    is_last: bool,
) -> Result<Scanned, StorageError> {
    let corrupt = |off: usize, why: String| {
        StorageError::Corrupt(format!("segment {} at offset {off}: {why}", path.display()))
    };
    let mut off = 0;
    let mut checkpoints = 0u64;
    let mut checkpointed = false;
    let mut records = 0;
    while off < data.len() {
        let parsed =
            record::parse_frame(data, off).and_then(|f| Ok((record::decode(&f)?, f.kind, f.total)));
        let (rec, kind, total) = match parsed {
            Ok(p) => p,
            // Every segment but the last was synced with its header before the next began.
            Err(_) if is_zero(&data[off..]) && (off > 0 || is_last) => {
                // The records end here; the rest is zero-filled space (see the module docs).
                return Ok(Scanned {
                    valid_len: off,
                    checkpointed,
                    records,
                    unused_tail: true,
                });
            }
            Err(why) => {
                if !is_last {
                    return Err(corrupt(
                        off,
                        format!(
                            "{why}; this is not the last segment, so it cannot be a torn write"
                        ),
                    ));
                }
                if let Some(next) =
                    (off + 1..data.len()).find(|&p| record::valid_record_at(data, p))
                {
                    return Err(corrupt(
                        off,
                        format!(
                            "{why}, yet a valid record follows at offset {next}: corruption in the middle of the segment"
                        ),
                    ));
                }
                return Ok(Scanned {
                    valid_len: off,
                    checkpointed,
                    records,
                    unused_tail: false,
                });
            }
        };
        match &rec {
            Record::SegmentHeader(h) => {
                if off != 0 {
                    return Err(corrupt(
                        off,
                        "segment header in the middle of a segment".into(),
                    ));
                }
                if h.magic != SEGMENT_MAGIC || h.version != FORMAT_VERSION || h.segment != id {
                    return Err(corrupt(
                        off,
                        format!(
                            "bad segment header {h:?} (expected segment {id}, version {FORMAT_VERSION})"
                        ),
                    ));
                }
            }
            _ if off == 0 => {
                return Err(corrupt(
                    0,
                    format!("segment starts with a {kind:?} record, not a header"),
                ));
            }
            Record::Checkpoint(_) => checkpoints += 1,
            Record::CheckpointEnd(end) => {
                if end.groups != checkpoints {
                    return Err(corrupt(
                        off,
                        format!(
                            "checkpoint end counts {} groups, {checkpoints} were read",
                            end.groups
                        ),
                    ));
                }
                checkpointed = true;
            }
            _ => {}
        }
        let at = (kind == Kind::Entry).then_some((id, off as u32, total as u32));
        index.apply(&rec, at).map_err(|e| corrupt(off, e))?;
        off += total;
        records += 1;
    }
    Ok(Scanned {
        valid_len: off,
        checkpointed,
        records,
        unused_tail: false,
    })
}
