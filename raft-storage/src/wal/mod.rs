//! [`Wal`]: a [`LogStore`] on a segmented write-ahead log shared by every group of a node.
//!
//! # Why one log for all groups
//! A node hosts many Raft groups. Giving each its own file would cost one `fdatasync` per group
//! per batch; one shared log lets a single `fdatasync` make the appends of all groups durable
//! at once (group commit: `append`, `save_hard_state`, ... only buffer; [`LogStore::sync`]
//! writes the buffer with one `write` and syncs once). raft-actor's storage thread reports
//! `persisted` only after `sync` returns (persistence before promises, docs/architecture.md).
//!
//! # Layout of this module
//! - [`config`] — [`WalConfig`], [`SyncMode`] and their validation.
//! - `record` — the record framing (length, CRC32C, kind, postcard body) and record kinds.
//! - `segment` — segment files, the write buffer, positioned reads.
//! - `index` — the in-memory index (group → index → segment, offset, length, term), hard
//!   states, snapshot pointers, live-entry counts per segment.
//! - `cache` — the bounded cache of recent entries.
//! - `snapshot` — snapshot files (temp name, fsync, rename, directory fsync).
//! - [`recovery`] — replay at open, torn-tail truncation, [`RecoveryReport`].
//! - [`stats`] — [`WalStats`].
//!
//! # Keeping old segments deletable
//! Each new segment starts with a header and a *checkpoint*: one record per live group holding
//! its hard state, snapshot pointer and log bounds, then an end marker. So no hard state or
//! snapshot pointer lives only in an old segment, and a prefix of old segments can be deleted
//! as soon as no live entry lies in it and the segment after it has a complete checkpoint.
//! Deletion happens only inside `sync`, after the records that made those segments obsolete
//! are durable, and is followed by a directory fsync.
//!
//! # Syncs that record no file size
//! The segment being written is kept zero-filled ahead of its records
//! ([`WalConfig::preallocate_bytes`], 4 MiB by default), so a `sync` mostly overwrites blocks
//! the file already has and `fdatasync` writes the data alone, without a journal commit for
//! a new file size. A finished segment is cut back to its last record
//! when the next one starts; recovery takes zeros after the records for unused space.
//!
//! # Failures
//! Any I/O error while writing, syncing or recovering is returned as [`StorageError::Io`] and
//! *poisons* the `Wal`: every later write or sync returns [`StorageError::Poisoned`] (after a
//! failed fsync the kernel may have dropped the dirty pages, so retrying could report data
//! durable that is not; etcd and PostgreSQL stop for the same reason). Reads keep working.
//! Restarting the node recovers from whatever is durable.

mod cache;
pub mod config;
mod index;
mod record;
pub mod recovery;
mod segment;
mod snapshot;
pub mod stats;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use raft_core::{Entry, GroupId, HardState, Index, SnapshotMeta, Term};
use serde::Serialize;

use crate::snapshot::{SnapshotReader, SnapshotSink, StagedSnapshot};
use crate::store::{LogStore, Recovered, StorageError};
use cache::EntryCache;
pub use config::{SyncMode, WalConfig};
use index::{GroupIndex, LogIndex};
use record::{
    CheckpointEndRec, CompactRec, FORMAT_VERSION, HardStateRec, Kind, MAX_BODY_LEN, Record,
    RemoveRec, SEGMENT_MAGIC, SegmentHeader, SnapshotRec, TruncateRec,
};
pub use recovery::{RecoveryReport, TornTail};
use segment::Segments;
pub use stats::WalStats;

/// Largest batch read from a segment with one `pread` when serving `entries`.
const READ_RUN_BYTES: u64 = 1 << 20;

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { op, source }
}

/// A durable [`LogStore`] for every group of a node. See the [module docs](self).
///
/// Owned by one thread (raft-actor's storage thread); all methods are synchronous. Dropping a
/// `Wal` does not flush: writes made after the last successful `sync` may or may not survive,
/// exactly as after a crash.
#[derive(Debug)]
pub struct Wal {
    config: WalConfig,
    segments: Segments,
    index: LogIndex,
    cache: EntryCache,
    /// Sequence number for the next snapshot file (never reused on this node).
    next_snapshot_seq: u64,
    /// Snapshot files to delete after the next successful `sync` (their successors' records,
    /// or the group's removal, become durable with it).
    doomed_snapshots: Vec<(GroupId, u64)>,
    /// Records were written since the last successful sync.
    dirty: bool,
    /// Set by the first I/O failure; refuses writes from then on.
    poisoned: Option<String>,
    stats: WalStats,
    cache_hits: Cell<u64>,
    disk_reads: Cell<u64>,
    report: RecoveryReport,
    /// Test hook: the next `sync` fails as if `fdatasync` returned EIO.
    #[cfg(test)]
    fail_next_sync: bool,
    /// The directory's lock file, held (`flock`, exclusive) for as long as this `Wal` lives.
    /// Declared last so it is released after every segment file is closed.
    _lock: fs::File,
}

/// The lock file's name inside a WAL directory.
pub const LOCK_FILE: &str = "LOCK";

/// How long `Wal::open` keeps trying for a lock held elsewhere before it gives up.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes the exclusive lock of the WAL directory `dir` (creating its lock file), or fails with
/// [`StorageError::Locked`] when another open store holds it. The lock is an advisory `flock`:
/// the kernel releases it when the holder's last descriptor closes, also when the process
/// dies, so a killed node restarts without clearing anything by hand.
///
/// A lock held elsewhere is tried again for up to [`LOCK_PATIENCE`]. The descriptor is
/// close-on-exec, but a process that forks a child holds a copy of it until the child execs:
/// a store dropped and opened again while another thread of the process starts a child can
/// find its own lock still held for that instant.
fn lock_dir(dir: &Path) -> Result<fs::File, StorageError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io("open WAL lock file"))?;
    let began = std::time::Instant::now();
    loop {
        // Through the trait by name: std's inherent `File::try_lock` (Rust 1.89) is above our
        // MSRV.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(file),
            Err(fs4::TryLockError::WouldBlock) if began.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(fs4::TryLockError::Error(source)) => {
                return Err(StorageError::Io {
                    op: "lock WAL directory",
                    source,
                });
            }
        }
    }
}

impl Wal {
    /// Opens (or creates) the log in `config.dir`: validates the config, replays every segment
    /// to rebuild each group's index and hard state, truncates a torn tail of the last segment
    /// (reported in [`Wal::recovery_report`] and with `tracing::warn!`), deletes unreferenced
    /// snapshot files, and starts a fresh segment. The directory's lock file ([`LOCK_FILE`]) is
    /// held until the `Wal` is dropped, so a second `open` of the same directory, in this
    /// process or another, fails with [`StorageError::Locked`] instead of corrupting the log.
    ///
    /// Errors: [`StorageError::Config`] for a bad config, [`StorageError::Io`] for file errors,
    /// [`StorageError::Corrupt`] for damage that is not a torn tail (naming file and offset).
    pub fn open(config: WalConfig) -> Result<Wal, StorageError> {
        config.validate()?;
        if config.sync == SyncMode::Never {
            tracing::warn!(
                dir = %config.dir.display(),
                "WAL opened with sync = Never: NOTHING IS FSYNCED; a power loss or kernel crash \
                 loses acknowledged writes. Only for benchmarks and tests."
            );
        }
        let durable = config.sync == SyncMode::Always;
        fs::create_dir_all(&config.dir).map_err(io("create WAL directory"))?;
        // Before reading anything: a second writer must not even replay a log being written.
        let lock = lock_dir(&config.dir)?;
        let replayed = recovery::replay(&config.dir, durable)?;

        // Snapshot files: the records are the authority.
        let referenced: BTreeSet<(GroupId, u64)> = replayed
            .index
            .groups
            .iter()
            .filter_map(|(g, gi)| gi.snapshot_file.map(|s| (*g, s)))
            .collect();
        for (g, s) in &referenced {
            if !snapshot::path(&config.dir, *g, *s).exists() {
                return Err(StorageError::Corrupt(format!(
                    "group {g}: snapshot file {} is referenced by the log but missing",
                    snapshot::file_name(*g, *s)
                )));
            }
        }
        let next_snapshot_seq = replayed
            .snapshots
            .iter()
            .chain(referenced.iter())
            .map(|(_, s)| *s + 1)
            .max()
            .unwrap_or(1);

        let mut segments = Segments::new(
            config.dir.clone(),
            config.preallocate_bytes.min(config.segment_bytes),
        );
        for (id, (path, checkpointed)) in &replayed.segments {
            segments
                .add_existing(*id, path.clone(), *checkpointed)
                .map_err(io("open segment"))?;
        }
        let next_id = replayed.segments.keys().next_back().map_or(1, |l| l + 1);
        let mut report = replayed.report;
        let mut wal = Wal {
            cache: EntryCache::new(config.cache_entries, config.cache_bytes),
            config,
            segments,
            index: replayed.index,
            next_snapshot_seq,
            doomed_snapshots: Vec::new(),
            dirty: false,
            poisoned: None,
            stats: WalStats::default(),
            cache_hits: Cell::new(0),
            disk_reads: Cell::new(0),
            report: RecoveryReport::default(),
            #[cfg(test)]
            fail_next_sync: false,
            _lock: lock,
        };
        // Never append after a recovered tail: a fresh segment with a full checkpoint.
        wal.start_segment(next_id)?;
        wal.segments.flush().map_err(io("write segment"))?;
        if durable {
            wal.segments
                .sync_current()
                .map_err(io("fdatasync segment"))?;
            wal.stats.fsyncs += 1;
        }
        wal.dirty = false;

        let mut removed = 0;
        for (g, s) in &replayed.snapshots {
            if !referenced.contains(&(*g, *s)) {
                fs::remove_file(snapshot::path(&wal.config.dir, *g, *s))
                    .map_err(io("remove orphan snapshot"))?;
                removed += 1;
            }
        }
        for t in &replayed.temps {
            fs::remove_file(t).map_err(io("remove snapshot temp file"))?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "WAL: removed snapshot files no record points to");
        }
        report.removed_snapshot_files = removed;
        wal.report = report;
        wal.collect_garbage();
        tracing::info!(
            dir = %wal.config.dir.display(),
            segments = wal.report.segments,
            records = wal.report.records,
            groups = wal.report.groups,
            "WAL opened"
        );
        Ok(wal)
    }

    /// What recovery found at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        WalStats {
            cache_hits: self.cache_hits.get(),
            disk_reads: self.disk_reads.get(),
            ..self.stats
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// Ids of the segment files currently on disk, oldest first.
    pub fn segment_ids(&self) -> Vec<u64> {
        self.segments.files.keys().copied().collect()
    }

    /// Why the `Wal` refuses writes, if it does.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn durable(&self) -> bool {
        self.config.sync == SyncMode::Always
    }

    /// Runs a write operation; an I/O error or internal inconsistency poisons the `Wal`.
    fn write_op<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned {
                reason: reason.clone(),
            });
        }
        let r = f(self);
        if let Err(e @ (StorageError::Io { .. } | StorageError::Corrupt(_))) = &r {
            tracing::error!(error = %e, dir = %self.config.dir.display(), "WAL write failed; refusing further writes");
            self.poisoned = Some(e.to_string());
        }
        r
    }

    /// Frames one record into the current segment's buffer, rotating first if the segment is
    /// full. Returns (segment, offset, length).
    fn put<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        body: &T,
    ) -> Result<(u64, u32, u32), StorageError> {
        let pos = self.segments.position();
        let data = pos - self.segments.data_start;
        // Offsets are u32: whatever the checkpoint's size, stay well below 4 GiB.
        if data > 0 && (data >= self.config.segment_bytes || pos >= 3 << 30) {
            self.rotate()?;
        }
        self.put_here(kind, body)
    }

    fn put_here<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        body: &T,
    ) -> Result<(u64, u32, u32), StorageError> {
        let offset = self.segments.position();
        let len = record::encode(&mut self.segments.buf, kind, body)?;
        self.dirty = true;
        self.stats.records += 1;
        self.stats.bytes += u64::from(len);
        if self.segments.buf.len() >= self.config.buffer_bytes {
            self.segments.flush().map_err(io("write segment"))?;
        }
        Ok((self.segments.current, offset as u32, len))
    }

    /// Writes a record and applies it to the index; returns a snapshot file it orphaned.
    fn log<T: Serialize + ?Sized>(
        &mut self,
        kind: Kind,
        body: &T,
        rec: &Record,
    ) -> Result<Option<u64>, StorageError> {
        let at = self.put(kind, body)?;
        let at = (kind == Kind::Entry).then_some(at);
        self.index.apply(rec, at).map_err(|e| {
            StorageError::Corrupt(format!("internal inconsistency while writing: {e}"))
        })
    }

    /// Finishes the current segment (durably in `Always` mode) and starts the next.
    fn rotate(&mut self) -> Result<(), StorageError> {
        self.segments.flush().map_err(io("write segment"))?;
        // A finished segment ends at its last record (the sync below makes that durable; if
        // it does not land, recovery takes the zeros for what they are).
        self.segments
            .trim_current()
            .map_err(io("trim segment before rotation"))?;
        if self.durable() {
            self.segments
                .sync_current()
                .map_err(io("fdatasync segment before rotation"))?;
            self.stats.fsyncs += 1;
        }
        self.start_segment(self.segments.current + 1)
    }

    /// Creates segment `id` and writes its header and a checkpoint of every group.
    fn start_segment(&mut self, id: u64) -> Result<(), StorageError> {
        self.segments.create(id).map_err(io("create segment"))?;
        if self.durable() {
            segment::sync_dir(self.dir()).map_err(io("fsync WAL directory"))?;
            self.stats.fsyncs += 1;
        }
        self.stats.rotations += 1;
        let header = SegmentHeader {
            magic: SEGMENT_MAGIC,
            version: FORMAT_VERSION,
            segment: id,
        };
        self.put_here(Kind::SegmentHeader, &header)?;
        let checkpoints: Vec<_> = self
            .index
            .groups
            .iter()
            .map(|(g, gi)| self.index.checkpoint(*g, gi))
            .collect();
        for c in &checkpoints {
            self.put_here(Kind::Checkpoint, c)?;
        }
        self.put_here(
            Kind::CheckpointEnd,
            &CheckpointEndRec {
                groups: checkpoints.len() as u64,
            },
        )?;
        self.segments.mark_checkpointed();
        tracing::debug!(
            segment = id,
            groups = checkpoints.len(),
            "WAL: started segment"
        );
        Ok(())
    }

    /// Deletes obsolete segments and replaced snapshot files. Called only right after a
    /// successful sync, so the records that made them obsolete are durable. Failures here are
    /// logged and retried at the next sync: keeping a file too long loses nothing.
    fn collect_garbage(&mut self) {
        // The newest segment `cut` such that every older segment holds no live entry and `cut`
        // has a complete checkpoint: everything before it can go.
        let mut cut = None;
        for (i, (id, seg)) in self.segments.files.iter().enumerate() {
            if i > 0 && seg.checkpointed {
                cut = Some(*id);
            }
            if self.index.live_in(*id) > 0 {
                break;
            }
        }
        let mut deleted = 0;
        if let Some(cut) = cut {
            let old: Vec<u64> = self
                .segments
                .files
                .range(..cut)
                .map(|(id, _)| *id)
                .collect();
            for id in old {
                match self.segments.remove(id) {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::warn!(segment = id, error = %e, "WAL: cannot delete an obsolete segment; will retry");
                        break;
                    }
                }
            }
        }
        let doomed = std::mem::take(&mut self.doomed_snapshots);
        for (g, s) in doomed {
            let p = snapshot::path(&self.config.dir, g, s);
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %p.display(), error = %e, "WAL: cannot delete a replaced snapshot; will retry");
                    self.doomed_snapshots.push((g, s));
                }
            }
        }
        if deleted > 0 {
            self.stats.segments_deleted += deleted;
            tracing::debug!(deleted, "WAL: deleted obsolete segments");
            if self.durable() {
                match segment::sync_dir(self.dir()) {
                    Ok(()) => self.stats.fsyncs += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL: fsync of the directory after deleting segments failed")
                    }
                }
            }
        }
    }

    fn do_append(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        let g = self.index.groups.get(&group);
        let last = g.map_or(0, GroupIndex::last_index);
        let (last_after, pops) = crate::store::end_after_truncate(
            g.filter(|g| !g.locs.is_empty())
                .map(|g| (g.first, g.last_index())),
            g.map_or(0, |g| g.snapshot.index),
            truncate_from,
        );
        if let Some(first) = entries.first() {
            if first.index != last_after + 1 {
                return Err(StorageError::Invalid(format!(
                    "group {group}: append at {} but the log ends at {last_after}",
                    first.index
                )));
            }
            for w in entries.windows(2) {
                if w[1].index != w[0].index + 1 {
                    return Err(StorageError::Invalid(format!(
                        "group {group}: appended entries are not consecutive ({} then {})",
                        w[0].index, w[1].index
                    )));
                }
            }
            if let Some(big) = entries
                .iter()
                .find(|e| e.size_hint() > u64::from(MAX_BODY_LEN) - 1024)
            {
                return Err(StorageError::Invalid(format!(
                    "group {group}: entry {} is too large",
                    big.index
                )));
            }
        }
        // A truncation is implied by the first entry's record when that entry lands where the
        // truncation starts; otherwise (nothing to append, or a log that starts past the
        // snapshot) it needs its own record. A new group gets a record so that it exists.
        // Truncating from `t` leaves the entries below `t` (or none if `t <= first`); an entry
        // record at `i` leaves those below `i`: the same when `i == t > first` or `i == first`.
        let implied = match (entries.first(), g, truncate_from) {
            (Some(e), Some(g), Some(t)) if !g.locs.is_empty() => {
                (t > g.first && e.index == t) || e.index == g.first
            }
            _ => false,
        };
        let from = truncate_from.unwrap_or(last + 1);
        if (pops && !implied) || (g.is_none() && entries.is_empty()) {
            let rec = TruncateRec { group, from };
            self.log(Kind::Truncate, &rec, &Record::Truncate(rec.clone()))?;
            self.cache.truncate(group, from);
        }
        for e in entries {
            self.log(
                Kind::Entry,
                &(group, e),
                &Record::Entry {
                    group,
                    index: e.index,
                    term: e.term,
                },
            )?;
            self.cache.insert(group, e);
        }
        if !entries.is_empty() {
            self.stats.appends += 1;
            self.stats.entries += entries.len() as u64;
        }
        Ok(())
    }

    fn do_install_snapshot(
        &mut self,
        group: GroupId,
        staged: StagedSnapshot,
        discard_log: bool,
    ) -> Result<(), StorageError> {
        let (meta, file) = staged.into_token::<snapshot::Staged>().map_err(|s| {
            StorageError::Invalid(format!(
                "group {group}: snapshot at {} was not staged by this WAL",
                s.meta().index
            ))
        })?;
        if file.group != group || file.dir != self.config.dir {
            return Err(StorageError::Invalid(format!(
                "group {group}: snapshot staged for group {} in {}",
                file.group,
                file.dir.display()
            )));
        }
        let seq = file.seq;
        file.place(self.durable())?;
        if self.durable() {
            self.stats.fsyncs += 2;
        }
        let rec = SnapshotRec {
            group,
            meta,
            file: seq,
            discard_log,
        };
        let old = self.log(Kind::Snapshot, &rec, &Record::Snapshot(rec.clone()))?;
        if discard_log {
            self.cache.remove(group);
        }
        if let Some(old) = old {
            self.doomed_snapshots.push((group, old));
        }
        Ok(())
    }

    fn do_sync(&mut self) -> Result<(), StorageError> {
        self.stats.syncs += 1;
        if !self.dirty {
            return Ok(());
        }
        self.segments.flush().map_err(io("write segment"))?;
        if self.durable() {
            #[cfg(test)]
            if std::mem::take(&mut self.fail_next_sync) {
                return Err(StorageError::Io {
                    op: "fdatasync segment",
                    source: std::io::Error::from_raw_os_error(5),
                });
            }
            self.segments
                .sync_current()
                .map_err(io("fdatasync segment"))?;
            self.stats.fsyncs += 1;
        }
        self.dirty = false;
        self.collect_garbage();
        Ok(())
    }

    fn group(&self, group: GroupId) -> Option<&GroupIndex> {
        self.index.groups.get(&group)
    }

    /// Reads entries `from..=to` of `group` (which must hold them), honouring `max_bytes`.
    fn read_entries(
        &self,
        group: GroupId,
        g: &GroupIndex,
        from: Index,
        to: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut i = from;
        // Appends `e`; false once `max_bytes` is reached.
        let mut take = |out: &mut Vec<Entry>, e: Entry| -> bool {
            if !out.is_empty() && bytes + e.size_hint() > max_bytes {
                return false;
            }
            bytes += e.size_hint();
            out.push(e);
            true
        };
        while i <= to {
            if let Some(e) = self.cache.get(group, i) {
                self.cache_hits.set(self.cache_hits.get() + 1);
                if !take(&mut out, e.clone()) {
                    break;
                }
                i += 1;
                continue;
            }
            // A run of entries lying back to back in one segment, read with one pread.
            let first = *g.loc(i).ok_or_else(|| {
                StorageError::Corrupt(format!("group {group}: index lost entry {i}"))
            })?;
            let mut end = i;
            let mut run_len = u64::from(first.len);
            while end < to && run_len < READ_RUN_BYTES && self.cache.get(group, end + 1).is_none() {
                let (Some(a), Some(b)) = (g.loc(end), g.loc(end + 1)) else {
                    break;
                };
                if b.segment != a.segment
                    || u64::from(b.offset) != u64::from(a.offset) + u64::from(a.len)
                {
                    break;
                }
                run_len += u64::from(b.len);
                end += 1;
            }
            let data =
                self.segments
                    .read(first.segment, u64::from(first.offset), run_len as usize)?;
            let mut off = 0;
            let mut full = false;
            for idx in i..=end {
                let bad = |why: String| {
                    StorageError::Corrupt(format!(
                        "group {group} entry {idx}: record in segment {} at offset {}: {why}",
                        first.segment,
                        u64::from(first.offset) + off as u64
                    ))
                };
                let frame = record::parse_frame(&data, off).map_err(|e| bad(e.to_string()))?;
                let (rg, e) = record::decode_entry(&frame).map_err(|e| bad(e.to_string()))?;
                if rg != group || e.index != idx {
                    return Err(bad(format!("holds group {rg} entry {}", e.index)));
                }
                off += frame.total;
                self.disk_reads.set(self.disk_reads.get() + 1);
                if !take(&mut out, e) {
                    full = true;
                    break;
                }
            }
            if full {
                break;
            }
            i = end + 1;
        }
        Ok(out)
    }
}

impl LogStore for Wal {
    fn groups(&self) -> Vec<GroupId> {
        self.index.groups.keys().copied().collect()
    }

    fn recover(&self, group: GroupId) -> Result<Option<Recovered>, StorageError> {
        let Some(g) = self.group(group) else {
            return Ok(None);
        };
        let entries = if g.locs.is_empty() {
            Vec::new()
        } else {
            self.read_entries(group, g, g.first_index(), g.last_index(), u64::MAX)?
        };
        Ok(Some(Recovered {
            hard_state: g.hard_state,
            snapshot: g.snapshot.clone(),
            entries,
        }))
    }

    fn append(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        self.write_op(|w| w.do_append(group, truncate_from, entries))
    }

    fn save_hard_state(
        &mut self,
        group: GroupId,
        hard_state: HardState,
    ) -> Result<(), StorageError> {
        self.write_op(|w| {
            if w.group(group).is_some_and(|g| g.hard_state == hard_state) {
                return Ok(());
            }
            let rec = HardStateRec { group, hard_state };
            w.log(Kind::HardState, &rec, &Record::HardState(rec.clone()))
                .map(drop)
        })
    }

    fn snapshot_sink(&mut self, group: GroupId) -> Result<Box<dyn SnapshotSink>, StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned {
                reason: reason.clone(),
            });
        }
        let seq = self.next_snapshot_seq;
        self.next_snapshot_seq += 1;
        let sink = snapshot::WalSink::create(self.dir(), group, seq, self.durable())?;
        Ok(Box::new(sink))
    }

    fn install_snapshot(
        &mut self,
        group: GroupId,
        staged: StagedSnapshot,
        discard_log: bool,
    ) -> Result<(), StorageError> {
        self.write_op(|w| w.do_install_snapshot(group, staged, discard_log))
    }

    fn compact(&mut self, group: GroupId, index: Index) -> Result<(), StorageError> {
        self.write_op(|w| {
            if !w
                .group(group)
                .is_some_and(|g| !g.locs.is_empty() && g.first <= index)
            {
                return Ok(());
            }
            let rec = CompactRec { group, index };
            w.log(Kind::Compact, &rec, &Record::Compact(rec.clone()))?;
            w.cache.compact(group, index);
            Ok(())
        })
    }

    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError> {
        self.write_op(|w| {
            if w.group(group).is_none() {
                return Ok(());
            }
            let rec = RemoveRec { group };
            if let Some(old) = w.log(Kind::RemoveGroup, &rec, &Record::RemoveGroup(rec.clone()))? {
                w.doomed_snapshots.push((group, old));
            }
            w.cache.remove(group);
            Ok(())
        })
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.write_op(Self::do_sync)
    }

    fn entries(
        &self,
        group: GroupId,
        from: Index,
        to: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let g = self.group(group);
        let (first, last) = g.map_or((1, 0), |g| (g.first_index(), g.last_index()));
        if from < first || to > last || from > to {
            return Err(StorageError::Unavailable {
                group,
                from,
                to,
                first,
                last,
            });
        }
        let g = g.ok_or(StorageError::Unavailable {
            group,
            from,
            to,
            first,
            last,
        })?;
        self.read_entries(group, g, from, to, max_bytes)
    }

    fn term(&self, group: GroupId, index: Index) -> Result<Option<Term>, StorageError> {
        let Some(g) = self.group(group) else {
            return Ok(None);
        };
        if index == g.snapshot.index {
            return Ok(Some(g.snapshot.term));
        }
        Ok(g.loc(index).map(|l| l.term))
    }

    fn snapshot_reader(
        &self,
        group: GroupId,
    ) -> Result<Option<(SnapshotMeta, SnapshotReader)>, StorageError> {
        let Some(g) = self.group(group).filter(|g| g.snapshot.index > 0) else {
            return Ok(None);
        };
        let seq = g.snapshot_file.ok_or_else(|| {
            StorageError::Corrupt(format!("group {group}: snapshot without a file"))
        })?;
        let (meta, reader) = snapshot::open(self.dir(), group, seq)?;
        if meta != g.snapshot {
            return Err(StorageError::Corrupt(format!(
                "group {group}: snapshot file {} holds {meta:?}, the log says {:?}",
                snapshot::file_name(group, seq),
                g.snapshot
            )));
        }
        Ok(Some((meta, reader)))
    }
}

#[cfg(test)]
mod tests;
