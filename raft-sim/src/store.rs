//! `SimStore`: a store whose synced writes survive a simulated crash and whose unsynced writes
//! do not.
//!
//! Writes go to a live in-memory copy (reads see them at once, as the `LogStore` contract
//! asks) and are queued; `sync` ships the queued operations to the "disk", a channel the
//! simulation drains into the node's durable image. A crash drops the live copy and the queue:
//! exactly the unsynced writes are lost. The node restarts from the durable image.

use raft_core::{Entry, GroupId, HardState, Index, SnapshotMeta, Term};
use raft_storage::{
    LogStore, MemStore, Recovered, SharedBytes, SnapshotReader, SnapshotSink, StagedSnapshot,
    StorageError,
};

/// One durable operation, in the order it was synced.
#[derive(Clone, Debug)]
pub enum DiskOp {
    /// `append(group, truncate_from, entries)`.
    Append(GroupId, Option<Index>, Vec<Entry>),
    /// `save_hard_state`.
    HardState(GroupId, HardState),
    /// `install_snapshot`: the snapshot's metadata and bytes, and `discard_log`.
    Snapshot(GroupId, SnapshotMeta, SharedBytes, bool),
    /// `compact`.
    Compact(GroupId, Index),
    /// `remove_group`.
    Remove(GroupId),
}

/// Applies a synced operation to a durable image.
pub fn apply(disk: &mut MemStore, op: DiskOp) -> Result<(), StorageError> {
    match op {
        DiskOp::Append(g, t, e) => disk.append(g, t, &e),
        DiskOp::HardState(g, hs) => disk.save_hard_state(g, hs),
        DiskOp::Snapshot(g, m, d, discard) => disk.save_snapshot(g, &m, d.as_ref(), discard),
        DiskOp::Compact(g, i) => disk.compact(g, i),
        DiskOp::Remove(g) => disk.remove_group(g),
    }
}

/// A `LogStore` for simulations: see the module docs.
pub struct SimStore {
    live: MemStore,
    unsynced: Vec<DiskOp>,
    disk: flume::Sender<DiskOp>,
}

impl SimStore {
    /// A store starting from `image` (what survived), shipping synced operations to `disk`.
    pub fn new(image: MemStore, disk: flume::Sender<DiskOp>) -> Self {
        SimStore {
            live: image,
            unsynced: Vec::new(),
            disk,
        }
    }
}

impl LogStore for SimStore {
    fn groups(&self) -> Vec<GroupId> {
        self.live.groups()
    }

    fn recover(&self, group: GroupId) -> Result<Option<Recovered>, StorageError> {
        self.live.recover(group)
    }

    fn append(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        self.live.append(group, truncate_from, entries)?;
        self.unsynced
            .push(DiskOp::Append(group, truncate_from, entries.to_vec()));
        Ok(())
    }

    fn save_hard_state(
        &mut self,
        group: GroupId,
        hard_state: HardState,
    ) -> Result<(), StorageError> {
        self.live.save_hard_state(group, hard_state)?;
        self.unsynced.push(DiskOp::HardState(group, hard_state));
        Ok(())
    }

    fn snapshot_sink(&mut self, group: GroupId) -> Result<Box<dyn SnapshotSink>, StorageError> {
        self.live.snapshot_sink(group)
    }

    fn install_snapshot(
        &mut self,
        group: GroupId,
        staged: StagedSnapshot,
        discard_log: bool,
    ) -> Result<(), StorageError> {
        let bytes = staged.token::<SharedBytes>().cloned().unwrap_or_default();
        let meta = staged.meta().clone();
        self.live.install_snapshot(group, staged, discard_log)?;
        self.unsynced
            .push(DiskOp::Snapshot(group, meta, bytes, discard_log));
        Ok(())
    }

    fn compact(&mut self, group: GroupId, index: Index) -> Result<(), StorageError> {
        self.live.compact(group, index)?;
        self.unsynced.push(DiskOp::Compact(group, index));
        Ok(())
    }

    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError> {
        self.live.remove_group(group)?;
        self.unsynced.push(DiskOp::Remove(group));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        for op in self.unsynced.drain(..) {
            self.disk
                .try_send(op)
                .map_err(|_| StorageError::Invalid("simulated disk is full or gone".into()))?;
        }
        Ok(())
    }

    fn entries(
        &self,
        group: GroupId,
        from: Index,
        to: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.live.entries(group, from, to, max_bytes)
    }

    fn term(&self, group: GroupId, index: Index) -> Result<Option<Term>, StorageError> {
        self.live.term(group, index)
    }

    fn snapshot_reader(
        &self,
        group: GroupId,
    ) -> Result<Option<(SnapshotMeta, SnapshotReader)>, StorageError> {
        self.live.snapshot_reader(group)
    }
}
