//! The storage contract between raft-actor's storage thread and a concrete store.

use raft_core::{Entries, Entry, GroupId, HardState, Index, SnapshotMeta, Term};
use std::io::Write as _;

use thiserror::Error;

use crate::snapshot::{SnapshotReader, SnapshotSink, StagedSnapshot};

/// Errors of a store. Every one is fatal for the groups it touches: raft-actor stops them
/// cleanly and reports the message, as etcd does after a failed fsync. Nothing is retried
/// silently, because a failed write may have left the disk in an unknown state.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An operating-system I/O error (disk full, permission denied, EIO on fsync, ...).
    #[error("storage I/O error during {op}: {source}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Data on disk is corrupt where it cannot be a torn tail (e.g. mid-segment).
    #[error("corrupt storage: {0}")]
    Corrupt(String),
    /// The caller asked for something the store does not hold (compacted or never written).
    #[error("group {group}: entries {from}..={to} are not available (first {first}, last {last})")]
    Unavailable {
        /// The group.
        group: GroupId,
        /// First index asked for.
        from: Index,
        /// Last index asked for.
        to: Index,
        /// First index held.
        first: Index,
        /// Last index held.
        last: Index,
    },
    /// A request that breaks the store's rules (e.g. an append that leaves a gap).
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// A configuration value is out of range; nothing was opened or written.
    #[error("invalid storage configuration: `{field}` {reason}")]
    Config {
        /// The offending field's name.
        field: &'static str,
        /// Why it was refused and what is accepted.
        reason: String,
    },
    /// An earlier write or sync failed, so what is on disk is unknown; the store refuses every
    /// further write (as etcd does after a failed fsync). Restart the node to recover from what
    /// is durable.
    #[error("storage is poisoned by an earlier failure and refuses writes: {reason}")]
    Poisoned {
        /// The failure that poisoned the store.
        reason: String,
    },
    /// Another open store (in this process or another) holds the directory's lock file: two
    /// writers on one log would corrupt it. A process that died releases its lock (the kernel
    /// drops a `flock` with the last descriptor), so a stale lock never blocks a restart.
    #[error("storage directory {} is locked by another open store", dir.display())]
    Locked {
        /// The directory whose lock is held.
        dir: std::path::PathBuf,
    },
}

/// What a store recovered for one group at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The durable term, vote and commit.
    pub hard_state: HardState,
    /// The latest durable snapshot's metadata (index 0 if none).
    pub snapshot: SnapshotMeta,
    /// The durable entries, consecutive (they may begin before `snapshot.index` when entries
    /// were kept behind the snapshot for lagging followers).
    pub entries: Vec<Entry>,
}

/// A node's durable Raft state for all of its groups.
///
/// Writes (`append`, `save_hard_state`, `install_snapshot`, `compact`) may be buffered; they are
/// durable only after `sync` returns `Ok`. raft-actor reports `persisted` to a group only after
/// that (persistence before promises, docs/architecture.md). Reads see every write, synced or
/// not, in order.
pub trait LogStore: Send + 'static {
    /// Every group with state in the store.
    fn groups(&self) -> Vec<GroupId>;

    /// The recovered state of `group`, or `None` if the store holds nothing for it.
    fn recover(&self, group: GroupId) -> Result<Option<Recovered>, StorageError>;

    /// Removes entries from `truncate_from` on (if set), then appends `entries` (consecutive,
    /// starting right after the log's last entry once truncated).
    fn append(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &[Entry],
    ) -> Result<(), StorageError>;

    /// [`append`](Self::append) with the entries as a shared batch ([`Entries`]): a store
    /// that keeps entries in memory may keep the batch itself instead of copying each entry.
    /// raft-actor's storage actor calls this one.
    fn append_shared(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &Entries,
    ) -> Result<(), StorageError> {
        self.append(group, truncate_from, entries)
    }

    /// Records the group's term, vote and commit.
    fn save_hard_state(
        &mut self,
        group: GroupId,
        hard_state: HardState,
    ) -> Result<(), StorageError>;

    /// Opens a sink to write a snapshot of `group` into (see [`crate::snapshot`]). The sink
    /// works on its own, from any thread; the snapshot becomes the group's only through
    /// [`install_snapshot`](Self::install_snapshot).
    fn snapshot_sink(&mut self, group: GroupId) -> Result<Box<dyn SnapshotSink>, StorageError>;

    /// Makes a finished snapshot the group's latest. With `discard_log` the whole log is
    /// dropped (it conflicts with the snapshot); otherwise only entries up to the snapshot's
    /// index may be dropped. Durable after the next `sync`, like every write.
    fn install_snapshot(
        &mut self,
        group: GroupId,
        staged: StagedSnapshot,
        discard_log: bool,
    ) -> Result<(), StorageError>;

    /// Stores a snapshot held in memory: [`snapshot_sink`](Self::snapshot_sink), the bytes,
    /// then [`install_snapshot`](Self::install_snapshot).
    fn save_snapshot(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &[u8],
        discard_log: bool,
    ) -> Result<(), StorageError> {
        let mut sink = self.snapshot_sink(group)?;
        sink.write_all(data).map_err(crate::snapshot::write_error)?;
        let staged = sink.finish(meta)?;
        self.install_snapshot(group, staged, discard_log)
    }

    /// Entries up to `index` are no longer needed (covered by a durable snapshot).
    fn compact(&mut self, group: GroupId, index: Index) -> Result<(), StorageError>;

    /// Forgets a group entirely.
    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError>;

    /// Makes every write so far durable (one fsync for all groups: group commit).
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Entries `from..=to`, stopping early after `max_bytes` (at least one entry is returned).
    fn entries(
        &self,
        group: GroupId,
        from: Index,
        to: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError>;

    /// The term of the entry at `index` (the snapshot's index answers with its term), or `None`
    /// if it is not held.
    fn term(&self, group: GroupId, index: Index) -> Result<Option<Term>, StorageError>;

    /// The latest snapshot of `group`: its metadata and a reader of its bytes. The reader
    /// stays valid after the snapshot is replaced.
    fn snapshot_reader(
        &self,
        group: GroupId,
    ) -> Result<Option<(SnapshotMeta, SnapshotReader)>, StorageError>;

    /// The latest snapshot of `group`, read into memory (tests and small snapshots; raft-actor
    /// streams through [`snapshot_reader`](Self::snapshot_reader)).
    fn snapshot(&self, group: GroupId) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let Some((meta, reader)) = self.snapshot_reader(group)? else {
            return Ok(None);
        };
        let data = reader.read_all().map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                StorageError::Corrupt(format!("group {group}: snapshot: {e}"))
            }
            _ => StorageError::Io {
                op: "read snapshot",
                source: e,
            },
        })?;
        Ok(Some((meta, data)))
    }
}

/// Where a group's log ends once the entries from `truncate_from` on are dropped, and whether
/// any are: the rule every store applies before an append (the model test holds `Wal` to
/// `MemStore`). `held` is the first and last index held, if any entry is.
pub(crate) fn end_after_truncate(
    held: Option<(Index, Index)>,
    snapshot_index: Index,
    truncate_from: Option<Index>,
) -> (Index, bool) {
    match (held, truncate_from) {
        (Some((first, last)), Some(t)) if t <= last => {
            (if t <= first { snapshot_index } else { t - 1 }, true)
        }
        (Some((_, last)), _) => (last, false),
        (None, _) => (snapshot_index, false),
    }
}
