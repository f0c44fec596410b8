//! The storage actor: one per node, owning the node's [`LogStore`].
//!
//! Runs on a dedicated OS thread in production (file I/O and fsync never block a tokio worker),
//! or as a task in simulation. It drains every queued request, applies the writes of all
//! groups, calls `sync` **once** (group commit), and only then publishes each group's
//! persisted sequence number (I7). Reads are answered on one-shot channels.
//!
//! Edges: partitions, replicators and apply actors → storage: bounded `storage_queue`, sent with
//! `try_send` (a partition that finds it full stops taking client work). Storage → partition:
//! a position cell per group (the persisted sequence and a sticky error; latest value, never
//! blocks). Storage → readers: one-shot replies.

use std::collections::BTreeMap;
use std::sync::Arc;

use raft_core::{Entry, GroupId, HardState, Index, SnapshotMeta, Term};
use raft_storage::{
    LogStore, Recovered, SnapshotReader, SnapshotSink, StagedSnapshot, StorageError,
};
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::mailbox::count::{QueueCount, Taker};

/// A write to make durable, tagged with the core's sequence number.
#[derive(Debug)]
pub(crate) enum WriteOp {
    HardState(HardState),
    Entries {
        truncate_from: Option<Index>,
        /// Shared with the group's log tail (and on a leader with its AppendEntries).
        entries: raft_core::Entries,
    },
    /// A snapshot the apply actor wrote (through a sink it asked for with
    /// `StorageRequest::SnapshotSink`).
    Snapshot {
        staged: StagedSnapshot,
        discard_log: bool,
    },
    /// A group's first configuration, as a snapshot at index 0 with no bytes.
    InitialConfig(SnapshotMeta),
    /// A chunk of a snapshot arriving from the leader, written to the group's incoming sink
    /// (offset 0 opens a new one, dropping any other).
    SnapshotChunk {
        offset: u64,
        data: Vec<u8>,
    },
    /// The incoming snapshot is complete: finish it and make it the group's.
    InstallIncoming {
        meta: SnapshotMeta,
        discard_log: bool,
    },
    /// The incoming snapshot is stale: drop it.
    DiscardIncoming,
    Compact(Index),
}

/// The answer to a read for an AppendEntries: the term at `prev_index` and the entries.
pub(crate) type AppendRead = Result<(Term, Vec<Entry>), StorageError>;

/// The answer to a snapshot read: the latest snapshot's metadata and a reader of its bytes,
/// if any.
pub(crate) type SnapshotRead = Result<Option<(SnapshotMeta, SnapshotReader)>, StorageError>;

/// The answer to a request for a snapshot sink.
pub(crate) type SinkReply = Result<Box<dyn SnapshotSink>, StorageError>;

/// Requests to the storage actor.
pub(crate) enum StorageRequest {
    /// Registers a group's persisted-notification channel.
    Register {
        group: GroupId,
        persisted: crate::mailbox::position::PositionTx,
    },
    /// Forgets a group (its state stays on disk unless `purge`).
    Unregister { group: GroupId, purge: bool },
    /// A write; `seq` 0 means "not tracked by the core" (compaction, local snapshots).
    Write {
        group: GroupId,
        seq: u64,
        op: WriteOp,
    },
    /// Entries `prev_index + 1 ..= to` plus the term at `prev_index`.
    ReadForAppend {
        group: GroupId,
        prev_index: Index,
        to: Index,
        max_bytes: u64,
        reply: oneshot::Sender<AppendRead>,
    },
    /// Entries `from ..= to` (for the apply actor).
    Read {
        group: GroupId,
        from: Index,
        to: Index,
        max_bytes: u64,
        reply: oneshot::Sender<Result<Vec<Entry>, StorageError>>,
    },
    /// The latest snapshot of a group.
    ReadSnapshot {
        group: GroupId,
        reply: oneshot::Sender<SnapshotRead>,
    },
    /// A sink to write a snapshot of a group into (the apply actor writes it, then sends
    /// `WriteOp::Snapshot`).
    SnapshotSink {
        group: GroupId,
        reply: oneshot::Sender<SinkReply>,
    },
    /// What the store holds for a group (at start-up or when a group is added).
    Recover {
        group: GroupId,
        reply: oneshot::Sender<Result<Option<Recovered>, StorageError>>,
    },
    /// Test hook (simulated disk stall): no sync completes for this long, counted from when
    /// the actor takes the request; writes and reads queue behind the stalled sync.
    #[cfg(feature = "fault-injection")]
    Stall(std::time::Duration),
    /// Stop the actor.
    Shutdown,
}

/// Cheap handle to the storage actor.
#[derive(Clone)]
pub(crate) struct StorageHandle {
    tx: flume::Sender<StorageRequest>,
    /// The queue's capacity, kept here: flume's `capacity()` takes the channel's lock, and
    /// every partition asks after each event whether it may take client requests.
    cap: usize,
    /// Requests sent and not yet taken by the actor, for the same reason: flume's `len()` takes
    /// the channel's lock too, which every partition and the storage thread then contend on.
    queued: Arc<QueueCount>,
}

impl StorageHandle {
    /// Queues a request without waiting. Fails (handing the request back, boxed) when the queue
    /// is full or the actor is gone.
    pub(crate) fn try_send(&self, req: StorageRequest) -> Result<(), Box<StorageRequest>> {
        self.queued
            .try_send(&self.tx, req)
            .map_err(|e| Box::new(e.into_inner()))
    }

    /// Room left in the queue (for backpressure decisions).
    pub(crate) fn has_room(&self, needed: usize) -> bool {
        self.cap.saturating_sub(self.queued.get()) >= needed
    }

    /// Queues a request, waiting for room (used outside any actor's message handling:
    /// registration and recovery at group start).
    pub(crate) async fn send(&self, req: StorageRequest) -> Result<(), ()> {
        self.queued.send_async(&self.tx, req).await.map_err(|_| ())
    }
}

/// How the storage actor is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageMode {
    /// On a dedicated OS thread (production).
    Thread,
    /// As a task on the current tokio runtime (deterministic simulation, paused-time tests).
    Task,
}

/// What the storage actor reports when it ends.
#[derive(Debug, Default)]
pub(crate) struct StorageExit {
    /// Groups with writes that were applied to the store but never synced: the actor was told
    /// to stop while a sync was stalled (a hung disk). Nothing of theirs was acknowledged.
    pub(crate) unsynced: Vec<GroupId>,
}

/// The node's hold on its storage actor, for shutdown: a signal that stops it even in the
/// middle of a stalled sync, its report when it ends, and its thread to join.
pub(crate) struct StorageControl {
    /// Stops the actor: between batches, or at once while a sync is stalled.
    pub(crate) stop: flume::Sender<()>,
    /// One report when the actor ends (dropped unsent if its thread panicked).
    pub(crate) done: flume::Receiver<StorageExit>,
    /// The storage thread (`StorageMode::Thread`).
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

/// A handle whose requests go to the returned receiver instead of an actor (unit tests).
#[cfg(test)]
pub(crate) fn detached(capacity: usize) -> (StorageHandle, flume::Receiver<StorageRequest>) {
    let (tx, rx) = flume::bounded(capacity);
    let handle = StorageHandle {
        tx,
        cap: capacity,
        queued: Arc::new(QueueCount::default()),
    };
    (handle, rx)
}

/// Starts the storage actor over `store`.
pub(crate) fn spawn<S: LogStore>(
    store: S,
    capacity: usize,
    mode: StorageMode,
    kill: &crate::kill::Kill,
    sync_delay: std::time::Duration,
) -> std::io::Result<(StorageHandle, StorageControl)> {
    let (tx, rx) = flume::bounded(capacity);
    let queued = Arc::new(QueueCount::default());
    let (stop_tx, stop) = flume::bounded(1);
    let (done_tx, done) = flume::bounded(1);
    let actor = StorageActor {
        store,
        rx,
        queued: Taker::new(queued.clone()),
        groups: BTreeMap::new(),
        incoming: BTreeMap::new(),
        failed: None,
        stalled_until: None,
        stop,
        done: done_tx,
    };
    let thread = match mode {
        StorageMode::Thread => Some(
            std::thread::Builder::new()
                .name("raft-storage".into())
                .spawn(move || actor.run_blocking())?,
        ),
        StorageMode::Task => {
            kill.spawn(actor.run_async(sync_delay));
            None
        }
    };
    Ok((
        StorageHandle {
            tx,
            cap: capacity,
            queued,
        },
        StorageControl {
            stop: stop_tx,
            done,
            thread,
        },
    ))
}

struct StorageActor<S> {
    store: S,
    rx: flume::Receiver<StorageRequest>,
    /// The handles' count of queued requests, lowered as each is taken. After `rx`: dropped
    /// after it, it wakes handles waiting in `send` to find the actor gone.
    queued: Taker,
    groups: BTreeMap<GroupId, (crate::mailbox::position::PositionTx, u64)>,
    /// Snapshots arriving from leaders, chunk by chunk: the sink and the next offset.
    incoming: BTreeMap<GroupId, (Box<dyn SnapshotSink>, u64)>,
    failed: Option<Arc<str>>,
    /// A stalled disk (`StorageRequest::Stall`): no sync completes before this instant.
    stalled_until: Option<tokio::time::Instant>,
    /// Shutdown's signal to stop now, also in the middle of a stalled sync.
    stop: flume::Receiver<()>,
    /// Where the actor reports that it ended (and what it abandoned).
    done: flume::Sender<StorageExit>,
}

/// What a batch wrote, awaiting its sync.
struct Batch {
    wrote: bool,
    dirty: BTreeMap<GroupId, u64>,
    go_on: bool,
}

/// Most requests folded into one group commit.
const MAX_BATCH: usize = 4096;

impl<S: LogStore> StorageActor<S> {
    fn run_blocking(mut self) {
        let mut exit = StorageExit::default();
        while let Ok(first) = self.rx.recv() {
            match self.handle_batch(first) {
                Ok(true) if self.stop.try_recv().is_err() => {}
                Ok(_) => break,
                Err(abandoned) => {
                    exit = abandoned;
                    break;
                }
            }
        }
        self.finish(exit);
    }

    /// Ends the actor: the store is dropped (closing its files and releasing its lock) before
    /// the report goes out, so whoever reads the report may open the store again.
    fn finish(self, exit: StorageExit) {
        let StorageActor { store, done, .. } = self;
        drop(store);
        if !exit.unsynced.is_empty() {
            warn!(groups = ?exit.unsynced, "storage stopped during a stalled sync: these groups' last writes were never synced (none was acknowledged)");
        }
        let _ = done.try_send(exit);
    }

    /// The report of a batch given up at shutdown before its sync.
    fn abandoned(dirty: &BTreeMap<GroupId, u64>) -> StorageExit {
        StorageExit {
            unsynced: dirty.keys().copied().collect(),
        }
    }

    /// The task form (simulation). `sync_delay` models fsync latency: writes are applied,
    /// then the task waits, then syncs — so a crash (`Node::crash`) during the wait loses the
    /// unsynced writes, as a real crash would.
    async fn run_async(mut self, sync_delay: std::time::Duration) {
        let mut exit = StorageExit::default();
        while let Ok(first) = self.rx.recv_async().await {
            let batch = self.write_batch(first);
            if batch.wrote && !sync_delay.is_zero() {
                tokio::time::sleep(sync_delay).await;
            }
            if let Some(until) = self.stalled_until.take() {
                if batch.wrote {
                    let stopped = tokio::select! {
                        biased;
                        r = self.stop.recv_async() => r.is_ok(),
                        () = tokio::time::sleep_until(until) => false,
                    };
                    if stopped {
                        exit = Self::abandoned(&batch.dirty);
                        break;
                    }
                } else {
                    self.stalled_until = Some(until);
                }
            }
            self.sync_and_publish(batch.wrote, &batch.dirty);
            if !batch.go_on || self.stop.try_recv().is_ok() {
                break;
            }
            // Let other tasks run between group commits, as a thread would.
            tokio::task::yield_now().await;
        }
        self.finish(exit);
    }

    /// Handles `first` and everything queued behind it, with one sync. Returns whether to go
    /// on (false on shutdown), or what was abandoned when told to stop during a stalled sync.
    fn handle_batch(&mut self, first: StorageRequest) -> Result<bool, StorageExit> {
        let batch = self.write_batch(first);
        if let Some(until) = self.stalled_until.take() {
            if batch.wrote {
                // The hung disk: no sync before `until`, unless shutdown stops the actor first
                // (a stop received).
                if self.stop.recv_deadline(until.into_std()).is_ok() {
                    return Err(Self::abandoned(&batch.dirty));
                }
            } else {
                self.stalled_until = Some(until);
            }
        }
        self.sync_and_publish(batch.wrote, &batch.dirty);
        Ok(batch.go_on)
    }

    /// The first phase of a group commit: applies `first` and everything queued behind it to
    /// the store (not yet durable) and answers reads.
    fn write_batch(&mut self, first: StorageRequest) -> Batch {
        let mut dirty: BTreeMap<GroupId, u64> = BTreeMap::new();
        let mut wrote = false;
        let mut next = Some(first);
        let mut count = 0;
        while let Some(req) = next.take() {
            self.queued.taken();
            count += 1;
            match req {
                StorageRequest::Shutdown => {
                    return Batch {
                        wrote,
                        dirty,
                        go_on: false,
                    };
                }
                StorageRequest::Write { group, seq, op } => {
                    wrote = true;
                    if self.failed.is_none() {
                        if let Err(e) = self.write(group, op) {
                            self.fail(format!("group {group}: {e}"));
                        }
                    }
                    if seq > 0 {
                        let s = dirty.entry(group).or_default();
                        *s = (*s).max(seq);
                    }
                }
                other => self.handle_other(other),
            }
            if count < MAX_BATCH {
                next = self.rx.try_recv().ok();
            }
        }
        Batch {
            wrote,
            dirty,
            go_on: true,
        }
    }

    fn write(&mut self, group: GroupId, op: WriteOp) -> Result<(), StorageError> {
        match op {
            WriteOp::HardState(hs) => self.store.save_hard_state(group, hs),
            WriteOp::Entries {
                truncate_from,
                entries,
            } => self.store.append_shared(group, truncate_from, &entries),
            WriteOp::Snapshot {
                staged,
                discard_log,
            } => self.store.install_snapshot(group, staged, discard_log),
            WriteOp::InitialConfig(meta) => self.store.save_snapshot(group, &meta, &[], false),
            WriteOp::SnapshotChunk { offset, data } => self.write_chunk(group, offset, &data),
            WriteOp::InstallIncoming { meta, discard_log } => {
                let (sink, _) = self.incoming.remove(&group).ok_or_else(|| {
                    StorageError::Invalid(format!(
                        "group {group}: snapshot at {} installed but never received",
                        meta.index
                    ))
                })?;
                let staged = sink.finish(&meta)?;
                self.store.install_snapshot(group, staged, discard_log)
            }
            WriteOp::DiscardIncoming => {
                self.incoming.remove(&group);
                Ok(())
            }
            WriteOp::Compact(index) => self.store.compact(group, index),
        }
    }

    /// Writes a chunk of an incoming snapshot; offset 0 starts it. raft-core checked the
    /// order, so a gap here is a bug, reported as one.
    fn write_chunk(
        &mut self,
        group: GroupId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StorageError> {
        use std::io::Write as _;
        if offset == 0 {
            let sink = self.store.snapshot_sink(group)?;
            self.incoming.insert(group, (sink, 0));
        }
        let Some((sink, next)) = self.incoming.get_mut(&group) else {
            return Err(StorageError::Invalid(format!(
                "group {group}: snapshot chunk at {offset} with no transfer under way"
            )));
        };
        if *next != offset {
            return Err(StorageError::Invalid(format!(
                "group {group}: snapshot chunk at {offset}, expected {next}"
            )));
        }
        sink.write_all(data).map_err(|source| StorageError::Io {
            op: "write incoming snapshot",
            source,
        })?;
        *next += data.len() as u64;
        Ok(())
    }

    fn handle_other(&mut self, req: StorageRequest) {
        match req {
            StorageRequest::Register { group, persisted } => {
                if let Some(err) = &self.failed {
                    persisted.fail(err.clone());
                }
                self.groups.insert(group, (persisted, 0));
            }
            StorageRequest::Unregister { group, purge } => {
                self.groups.remove(&group);
                self.incoming.remove(&group);
                if purge {
                    if let Err(e) = self.store.remove_group(group) {
                        warn!(group, error = %e, "could not remove a group's storage");
                    }
                }
            }
            StorageRequest::ReadForAppend {
                group,
                prev_index,
                to,
                max_bytes,
                reply,
            } => {
                let result = self.read_for_append(group, prev_index, to, max_bytes);
                let _ = reply.send(result);
            }
            StorageRequest::Read {
                group,
                from,
                to,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.store.entries(group, from, to, max_bytes));
            }
            StorageRequest::ReadSnapshot { group, reply } => {
                let _ = reply.send(self.store.snapshot_reader(group));
            }
            StorageRequest::SnapshotSink { group, reply } => {
                let _ = reply.send(self.store.snapshot_sink(group));
            }
            StorageRequest::Recover { group, reply } => {
                let _ = reply.send(self.store.recover(group));
            }
            #[cfg(feature = "fault-injection")]
            StorageRequest::Stall(duration) => {
                warn!(?duration, "storage stalled (test hook)");
                let until = tokio::time::Instant::now() + duration;
                self.stalled_until = Some(self.stalled_until.map_or(until, |u| u.max(until)));
            }
            StorageRequest::Write { .. } | StorageRequest::Shutdown => {}
        }
    }

    fn read_for_append(
        &self,
        group: GroupId,
        prev_index: Index,
        to: Index,
        max_bytes: u64,
    ) -> AppendRead {
        let prev_term = self
            .store
            .term(group, prev_index)?
            .ok_or(StorageError::Unavailable {
                group,
                from: prev_index,
                to: prev_index,
                first: 0,
                last: 0,
            })?;
        let entries = if to > prev_index {
            self.store.entries(group, prev_index + 1, to, max_bytes)?
        } else {
            Vec::new()
        };
        Ok((prev_term, entries))
    }

    fn sync_and_publish(&mut self, wrote: bool, dirty: &BTreeMap<GroupId, u64>) {
        if wrote && self.failed.is_none() {
            if let Err(e) = self.store.sync() {
                self.fail(format!("sync: {e}"));
            }
        }
        if self.failed.is_some() {
            return; // fail() already told every group
        }
        for (group, seq) in dirty {
            if let Some((tx, last)) = self.groups.get_mut(group) {
                if *seq > *last {
                    *last = *seq;
                    tx.publish(*seq);
                }
            }
        }
    }

    /// A storage error is fatal: tell every group, never retry silently.
    fn fail(&mut self, message: String) {
        error!(error = %message, "storage failed; stopping every group on this node");
        let err: Arc<str> = Arc::from(message);
        self.failed = Some(err.clone());
        for (tx, _) in self.groups.values() {
            tx.fail(err.clone());
        }
    }
}
