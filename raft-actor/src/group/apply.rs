//! The apply actor: one per group. Applies committed entries to the user's state machine in
//! log order, answers proposals (with the index they applied at) and reads (with the applied
//! index they reflect), keeps the client-session table that makes retried requests apply
//! exactly once (`super::sessions`: bounded, replicated, inside snapshots), and takes and
//! restores snapshots.
//!
//! A slow `apply` delays only this actor: heartbeats run elsewhere (I5).
//!
//! Edges: partition → apply: bounded queue (`client_queue + max_batch + 64`), `try_send`, with
//! room checked before the partition takes client work; commit index and log tail by a
//! latest-value cell. Apply → partition: applied index by a position cell, snapshots by
//! `try_send` on the control queue. Apply → storage: `try_send` reads whose answers are events
//! of this loop. All of these channels are built in [`super::spawn`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;

use raft_core::{Entry, EntryPayload, GroupId, Index, Membership, SnapshotMeta, Term};
use raft_storage::{SnapshotReader, SnapshotSink, StagedSnapshot, StorageError};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::messages::{Answer, ApplyMsg, Control, Header, Outcome, Proposal, QueryReply, Waiter};
use super::sessions::{Check, Sessions};
use super::tail::{TailRange, TailView};
use crate::error::Error;
use crate::mailbox::bell::Bell;
use crate::mailbox::inbox::{InboxRx, InboxTx};
use crate::mailbox::latest::LatestRx;
use crate::mailbox::position::PositionTx;
use crate::metrics::GroupStats;
use crate::state_machine::StateMachine;
use crate::storage::{SinkReply, SnapshotRead, StorageHandle, StorageRequest, WriteOp};

/// Where the next entries to apply come from.
enum Next {
    /// Held in memory: apply now.
    Ready(TailRange),
    /// Asked from storage.
    Read(oneshot::Receiver<ReadReply>),
    /// Nothing to apply (or storage is busy: the next commit change retries).
    Nothing,
}

/// What the partition sends its apply actor, behind one bell (see [`crate::mailbox::inbox`]).
pub(crate) struct ApplyInputs<S: StateMachine> {
    pub(crate) rx: InboxRx<ApplyMsg<S>>,
    pub(crate) commit_rx: LatestRx<(Index, TailView)>,
    pub(crate) bell: Bell,
}

/// A snapshot's bytes: the framework's part first, then the user's.
///
/// ```text
/// sessions_len: u64 LE | session table (postcard) | what StateMachine::snapshot wrote
/// ```
/// The session table is bounded (`NodeConfig::max_sessions`), so it is encoded in memory; the
/// user's state is streamed.
const SESSIONS_LEN: usize = 8;

/// Buffer between a snapshot being restored and the state machine's reads.
const RESTORE_BUFFER: usize = 256 << 10;

/// An outstanding request to storage; one at a time.
enum Pending {
    /// Entries to apply.
    Entries(oneshot::Receiver<ReadReply>),
    /// A sink to write the snapshot asked for into.
    Sink(oneshot::Receiver<SinkReply>),
    /// The snapshot to restore.
    Snapshot(oneshot::Receiver<SnapshotRead>),
}

/// A finished [`Pending`].
enum Done {
    Entries(ReadReply),
    Sink(SinkReply),
    Snapshot(SnapshotRead),
    /// Storage is gone.
    Gone,
}

impl Pending {
    /// The answer, if it has come.
    fn try_take(&mut self) -> Option<Done> {
        fn now<T>(rx: &mut oneshot::Receiver<T>, f: fn(T) -> Done) -> Option<Done> {
            match rx.try_recv() {
                Ok(v) => Some(f(v)),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => Some(Done::Gone),
            }
        }
        match self {
            Pending::Entries(rx) => now(rx, Done::Entries),
            Pending::Sink(rx) => now(rx, Done::Sink),
            Pending::Snapshot(rx) => now(rx, Done::Snapshot),
        }
    }
}

/// Waits for the pending answer (forever if there is none).
async fn wait(pending: &mut Option<Pending>) -> Done {
    match pending {
        Some(Pending::Entries(rx)) => rx.await.map_or(Done::Gone, Done::Entries),
        Some(Pending::Sink(rx)) => rx.await.map_or(Done::Gone, Done::Sink),
        Some(Pending::Snapshot(rx)) => rx.await.map_or(Done::Gone, Done::Snapshot),
        None => std::future::pending().await,
    }
}

/// Resolves at `at`, never without one.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Most entries read from storage per batch.
const READ_BATCH: Index = 1024;
const READ_BYTES: u64 = 4 << 20;
/// How long after a storage read that could not be served yet (entries not readable, an
/// installed snapshot not yet stored) the apply actor asks again. A timer, not a sleep: the
/// actor keeps taking messages meanwhile.
const RETRY: std::time::Duration = std::time::Duration::from_millis(5);

type ReadReply = Result<Vec<Entry>, StorageError>;

pub(crate) struct ApplyActor<S: StateMachine> {
    group: GroupId,
    sm: S,
    applied: Index,
    applied_term: Term,
    membership: Membership,
    sessions: Sessions,
    /// In index order. Proposals arrive in index order; only a new leadership can bring one
    /// at an index already waited on (the older proposal was overwritten).
    waiters: VecDeque<Waiter<S>>,
    queries: Vec<(Index, S::Query, QueryReply<S::Response>)>,
    rx: InboxRx<ApplyMsg<S>>,
    /// The newest commit index and log tail the partition published.
    commit_rx: LatestRx<(Index, TailView)>,
    /// The last value taken from `commit_rx`.
    commit: (Index, TailView),
    /// Rung by the senders of `rx` and `commit_rx` (see [`crate::mailbox::inbox`]).
    bell: Bell,
    applied_tx: PositionTx,
    control: InboxTx<Control>,
    storage: StorageHandle,
    stats: Arc<GroupStats>,
    /// A snapshot to hand to storage and the partition once the queues have room.
    unsent_snapshot: Option<StagedSnapshot>,
    /// The partition asked for a snapshot; a sink is asked of storage when it has room.
    want_snapshot: bool,
    /// The partition installed this snapshot: restore from storage before applying on.
    want_restore: Option<SnapshotMeta>,
    /// A fatal error: the actor tells the partition and stops.
    failed: Option<Error>,
    /// No storage request before this instant (a read that could not be served yet is
    /// asked again when it passes).
    retry_at: Option<tokio::time::Instant>,
}

impl<S: StateMachine> ApplyActor<S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        group: GroupId,
        sm: S,
        from: SnapshotMeta,
        snapshot: Option<SnapshotReader>,
        inputs: ApplyInputs<S>,
        applied_tx: PositionTx,
        control: InboxTx<Control>,
        storage: StorageHandle,
        stats: Arc<GroupStats>,
    ) -> Result<Self, Error> {
        let mut actor = ApplyActor {
            group,
            sm,
            applied: from.index,
            applied_term: from.term,
            membership: from.membership.clone(),
            sessions: Sessions::default(),
            waiters: VecDeque::new(),
            queries: Vec::new(),
            rx: inputs.rx,
            commit_rx: inputs.commit_rx,
            commit: (from.index, TailView::default()),
            bell: inputs.bell,
            applied_tx,
            control,
            storage,
            stats,
            unsent_snapshot: None,
            want_snapshot: false,
            want_restore: None,
            failed: None,
            retry_at: None,
        };
        if let Some(reader) = snapshot {
            actor.restore(&from, reader)?;
        }
        Ok(actor)
    }

    pub(crate) async fn run(mut self) {
        use flume::TryRecvError::{Disconnected, Empty};
        let mut pending: Option<Pending> = None;
        'run: loop {
            if let Some(error) = self.failed.take() {
                self.report_fatal(error).await;
                break;
            }
            match self.commit_rx.try_recv() {
                Ok(c) => self.commit = c,
                Err(Disconnected) => break,
                Err(Empty) => {}
            }
            while pending.is_none() && !self.backing_off() {
                if let Some(p) = self.request_snapshot_work() {
                    pending = Some(p);
                    break;
                }
                match self.request_entries() {
                    Next::Ready(entries) => {
                        // Register every waiter sent before this commit index was published.
                        while let Ok(m) = self.rx.try_recv() {
                            if matches!(m, ApplyMsg::Shutdown) {
                                break 'run;
                            }
                            self.on_msg(m);
                        }
                        let before = self.applied;
                        self.apply_entries(entries.iter());
                        if self.applied == before {
                            // Nothing applied (cannot happen with a consistent view): never
                            // spin; the next commit change tries again.
                            break;
                        }
                    }
                    Next::Read(rx) => pending = Some(Pending::Entries(rx)),
                    Next::Nothing => break,
                }
            }
            // A storage answer that has come is taken before more messages: under a steady
            // stream of them the wait below, where it is also taken, might not come for long.
            if let Some(done) = pending.as_mut().and_then(Pending::try_take) {
                pending = None;
                if !self.on_done(done) {
                    break;
                }
                continue;
            }
            match self.rx.try_recv() {
                Ok(ApplyMsg::Shutdown) | Err(Disconnected) => break,
                Ok(m) => {
                    self.on_msg(m);
                    self.flush_snapshot();
                    // A busy actor finds input at every look: give the worker back when the
                    // cooperative budget runs out.
                    tokio::task::consume_budget().await;
                    continue;
                }
                Err(Empty) => {}
            }
            // Nothing queued: wait for a ring (a message or a commit), the storage answer, or
            // the time to ask storage again.
            let retry = self.retry_at;
            tokio::select! {
                biased;
                () = self.bell.rung() => {}
                done = wait(&mut pending) => {
                    pending = None;
                    if !self.on_done(done) {
                        break;
                    }
                }
                () = until(retry) => self.retry_at = None,
            }
            self.flush_snapshot();
        }
        for w in std::mem::take(&mut self.waiters) {
            let _ = w.reply.send(Err(Error::Stopped));
        }
        for (_, _, reply) in std::mem::take(&mut self.queries) {
            let _ = reply.send(Err(Error::Stopped));
        }
    }

    /// Whether storage is not to be asked yet (a retry timer runs); clears a timer that ran
    /// out.
    fn backing_off(&mut self) -> bool {
        match self.retry_at {
            Some(t) if t > tokio::time::Instant::now() => true,
            Some(_) => {
                self.retry_at = None;
                false
            }
            None => false,
        }
    }

    /// Asks storage again after [`RETRY`], taking messages meanwhile.
    fn retry_later(&mut self) {
        self.retry_at = Some(tokio::time::Instant::now() + RETRY);
    }

    /// Acts on a storage answer; false when storage is gone.
    fn on_done(&mut self, done: Done) -> bool {
        match done {
            Done::Entries(Ok(entries)) => self.apply_entries(entries.iter()),
            Done::Entries(Err(e)) => {
                debug!(group = self.group, error = %e, "entries not readable yet");
                // Not a hot loop: a snapshot restore or the next commit resolves it.
                self.retry_later();
            }
            Done::Sink(Ok(sink)) => self.take_snapshot(sink),
            Done::Sink(Err(e)) => {
                warn!(group = self.group, error = %e, "no snapshot taken: storage could not open one");
                self.snapshot_failed();
            }
            Done::Snapshot(read) => self.on_snapshot_read(read),
            Done::Gone => return false,
        }
        true
    }

    /// The next request a snapshot needs, if storage has room for it: the restore of an
    /// installed snapshot first, then a sink for one asked for.
    fn request_snapshot_work(&mut self) -> Option<Pending> {
        let group = self.group;
        if self.want_restore.is_some() {
            let (reply, rx) = oneshot::channel();
            let req = StorageRequest::ReadSnapshot { group, reply };
            return self
                .storage
                .try_send(req)
                .ok()
                .map(|()| Pending::Snapshot(rx));
        }
        if self.want_snapshot && self.unsent_snapshot.is_none() {
            let (reply, rx) = oneshot::channel();
            let req = StorageRequest::SnapshotSink { group, reply };
            return self.storage.try_send(req).ok().map(|()| Pending::Sink(rx));
        }
        None
    }

    /// Storage answered the read of the snapshot to restore.
    fn on_snapshot_read(&mut self, read: SnapshotRead) {
        let Some(want) = self.want_restore.clone() else {
            return;
        };
        let fail = |reason: String| Error::SnapshotRestore {
            group: self.group,
            index: want.index,
            reason,
        };
        match read {
            Ok(Some((meta, reader))) if meta.index >= want.index => {
                self.want_restore = None;
                if meta.index <= self.applied {
                    debug!(
                        group = self.group,
                        index = meta.index,
                        applied = self.applied,
                        "snapshot already covered by what was applied; not restored"
                    );
                    return;
                }
                match self.restore(&meta, reader) {
                    Ok(()) => {
                        self.stats
                            .snapshots_installed
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => self.failed = Some(e),
                }
            }
            Ok(_) => {
                // Storage has not taken the write that installs it yet (it waits in the
                // partition's backlog): read again shortly.
                self.retry_later();
            }
            Err(e) => self.failed = Some(fail(format!("storage: {e}"))),
        }
    }

    /// Tells the partition of a fatal error (it stops the group and reports it), waiting a
    /// tick at a time while its control queue is full.
    async fn report_fatal(&mut self, error: Error) {
        error!(group = self.group, %error, "apply actor stopped");
        let mut msg = Control::Fatal(error);
        loop {
            match self.control.try_send(msg) {
                Ok(()) => return,
                Err(flume::TrySendError::Disconnected(_)) => return,
                Err(flume::TrySendError::Full(m)) => msg = m,
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The next committed entries to apply: from the log's in-memory tail when it holds them,
    /// else a read from storage.
    fn request_entries(&mut self) -> Next {
        let (commit, tail) = (self.commit.0, self.commit.1.clone());
        if commit <= self.applied {
            return Next::Nothing;
        }
        let from = self.applied + 1;
        let to = commit.min(self.applied + READ_BATCH);
        if let Some(entries) = tail.range(from, to) {
            return Next::Ready(entries);
        }
        let (reply, rx) = oneshot::channel();
        let req = StorageRequest::Read {
            group: self.group,
            from,
            to,
            max_bytes: READ_BYTES,
            reply,
        };
        match self.storage.try_send(req) {
            Ok(()) => Next::Read(rx),
            Err(_) => Next::Nothing,
        }
    }

    fn on_msg(&mut self, m: ApplyMsg<S>) {
        match m {
            ApplyMsg::Waiters(ws) => {
                for w in ws {
                    if w.index <= self.applied {
                        // Already applied (and answered through the session table if retried).
                        let _ = w.reply.send(Err(Error::Timeout { group: self.group }));
                    } else {
                        self.add_waiter(w);
                    }
                }
            }
            ApplyMsg::Query {
                index,
                query,
                reply,
            } => {
                if index <= self.applied {
                    let _ = reply.send(Ok((self.applied, self.sm.query(query))));
                } else {
                    self.queries.push((index, query, reply));
                }
            }
            ApplyMsg::Restore { meta } => {
                if self
                    .want_restore
                    .as_ref()
                    .is_none_or(|w| w.index < meta.index)
                {
                    self.want_restore = Some(meta);
                }
            }
            ApplyMsg::TakeSnapshot => self.want_snapshot = true,
            ApplyMsg::Shutdown => {}
        }
    }

    /// Registers a proposal's waiter, keeping index order. A waiter already at that index
    /// belongs to an overwritten proposal: it is told to retry.
    fn add_waiter(&mut self, w: Waiter<S>) {
        if self.waiters.back().is_none_or(|last| last.index < w.index) {
            self.waiters.push_back(w);
            return;
        }
        let at = self.waiters.partition_point(|x| x.index < w.index);
        match self.waiters.get_mut(at) {
            Some(old) if old.index == w.index => {
                let old = std::mem::replace(old, w);
                let _ = old.reply.send(Err(Error::NotLeader {
                    group: self.group,
                    leader: None,
                    leader_addr: None,
                }));
            }
            _ => self.waiters.insert(at, w),
        }
    }

    fn apply_entries<'a>(&mut self, entries: impl Iterator<Item = &'a Entry>) {
        for e in entries {
            if e.index != self.applied + 1 {
                continue;
            }
            let mut response = match &e.payload {
                EntryPayload::Normal(bytes) => self.apply_command(e.index, bytes),
                EntryPayload::Membership(m) => {
                    self.membership = m.clone();
                    None
                }
                EntryPayload::Noop => None,
            };
            self.applied = e.index;
            self.applied_term = e.term;
            // Answer the proposal waiting on this index, if it is the same entry (at most one
            // waiter has this index: the response moves to it).
            while self.waiters.front().is_some_and(|w| w.index <= e.index) {
                let Some(w) = self.waiters.pop_front() else {
                    break;
                };
                let result = if w.index == e.index && w.term == e.term {
                    response
                        .take()
                        .unwrap_or_else(|| Err(Error::Codec("entry has no response".into())))
                } else {
                    // Another leader's entry took this place: the proposal was lost. Retry.
                    Err(Error::NotLeader {
                        group: self.group,
                        leader: None,
                        leader_addr: None,
                    })
                };
                let _ = w.reply.send(result);
            }
        }
        self.applied_tx.publish(self.applied);
        self.publish_stats();
        let ready: Vec<_> = {
            let applied = self.applied;
            let (ready, later) = std::mem::take(&mut self.queries)
                .into_iter()
                .partition(|(i, _, _)| *i <= applied);
            self.queries = later;
            ready
        };
        for (_, q, reply) in ready {
            let _ = reply.send(Ok((self.applied, self.sm.query(q))));
        }
    }

    /// The applied index and the session table's figures, for metrics (and the simulation's
    /// check that replicas hold the same table).
    fn publish_stats(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.applied.store(self.applied, Relaxed);
        self.stats
            .sessions
            .store(self.sessions.len() as u64, Relaxed);
        self.stats
            .sessions_evicted
            .store(self.sessions.evicted(), Relaxed);
        self.stats
            .session_digest
            .store(self.sessions.digest(), Relaxed);
    }

    /// Applies one entry's command, or opens a session, or answers from the session table (a
    /// retry, or an expired session).
    fn apply_command(
        &mut self,
        index: Index,
        bytes: &[u8],
    ) -> Option<Result<Answer<S::Response>, Error>> {
        let (header, command) = match Proposal::split(bytes) {
            Ok(p) => p,
            Err(e) => {
                warn!(group = self.group, index, error = %e, "undecodable proposal skipped");
                return Some(Err(Error::Codec(e.to_string())));
            }
        };
        let id = match header {
            Header::Plain => None,
            Header::OpenSession { max_sessions } => {
                self.sessions.open(index, max_sessions);
                return Some(Ok(Answer {
                    index,
                    outcome: Outcome::SessionOpened,
                }));
            }
            Header::Session(id) => match self.sessions.check(id, index) {
                Check::Apply => Some(id),
                Check::Retry {
                    applied_at,
                    response,
                } => {
                    // A retry of an applied request: exactly once, same answer.
                    return Some(
                        postcard::from_bytes(response)
                            .map(|r| Answer {
                                index: applied_at,
                                outcome: Outcome::Response(r),
                            })
                            .map_err(|e| Error::Codec(e.to_string())),
                    );
                }
                Check::Expired => {
                    debug!(
                        group = self.group,
                        index,
                        client = id.client,
                        "request under an expired session not applied"
                    );
                    return Some(Err(Error::SessionExpired {
                        group: self.group,
                        client: id.client,
                    }));
                }
            },
        };
        let command: S::Command = match postcard::from_bytes(command) {
            Ok(c) => c,
            Err(e) => {
                warn!(group = self.group, index, error = %e, "undecodable command skipped");
                return Some(Err(Error::Codec(e.to_string())));
            }
        };
        let response = self.sm.apply(index, command);
        if let Some(id) = id {
            // Recorded even when the response cannot be encoded: a retry must not apply the
            // command again (it is answered with a codec error instead).
            let bytes = postcard::to_allocvec(&response).unwrap_or_else(|e| {
                warn!(group = self.group, error = %e, "response not cacheable");
                Vec::new()
            });
            self.sessions.record(id, index, bytes);
        }
        Some(Ok(Answer {
            index,
            outcome: Outcome::Response(response),
        }))
    }

    /// Writes the snapshot asked for into `sink`: the session table, then the state
    /// machine's state, streamed.
    fn take_snapshot(&mut self, mut sink: Box<dyn SnapshotSink>) {
        self.want_snapshot = false;
        let meta = SnapshotMeta {
            index: self.applied,
            term: self.applied_term,
            membership: self.membership.clone(),
        };
        let written = postcard::to_allocvec(&self.sessions)
            .map_err(io::Error::other)
            .and_then(|sessions| {
                sink.write_all(&(sessions.len() as u64).to_le_bytes())?;
                sink.write_all(&sessions)
            })
            .and_then(|()| self.sm.snapshot(&mut sink))
            .and_then(|()| sink.flush());
        if let Err(e) = written {
            error!(group = self.group, index = meta.index, error = %e, "snapshot not taken: writing it failed");
            self.snapshot_failed();
            return;
        }
        match sink.finish(&meta) {
            Ok(staged) => {
                debug!(
                    group = self.group,
                    index = meta.index,
                    bytes = staged.len(),
                    "snapshot written"
                );
                self.stats
                    .snapshots_taken
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.unsent_snapshot = Some(staged);
                self.flush_snapshot();
            }
            Err(e) => {
                error!(group = self.group, index = meta.index, error = %e, "snapshot not taken: finishing it failed");
                self.snapshot_failed();
            }
        }
    }

    /// The snapshot asked for was not taken: the partition asks again later.
    fn snapshot_failed(&mut self) {
        self.want_snapshot = false;
        if self.control.try_send(Control::SnapshotFailed).is_err() {
            debug!(
                group = self.group,
                "control queue full; a failed snapshot not reported"
            );
        }
    }

    /// Stores a taken snapshot, then tells the partition (which may then compact the log).
    fn flush_snapshot(&mut self) {
        let Some(staged) = self.unsent_snapshot.take() else {
            return;
        };
        if !self.storage.has_room(1) {
            self.unsent_snapshot = Some(staged);
            return;
        }
        let meta = staged.meta().clone();
        let write = WriteOp::Snapshot {
            staged,
            discard_log: false,
        };
        if let Err(req) = self.storage.try_send(StorageRequest::Write {
            group: self.group,
            seq: 0,
            op: write,
        }) {
            if let StorageRequest::Write {
                op: WriteOp::Snapshot { staged, .. },
                ..
            } = *req
            {
                self.unsent_snapshot = Some(staged);
            }
            return;
        }
        if self.control.try_send(Control::SnapshotTaken(meta)).is_err() {
            debug!(
                group = self.group,
                "control queue full; snapshot stored but not reported"
            );
        }
    }

    /// Replaces the state with the snapshot `meta` read from `reader`: the session table,
    /// then the state machine's part, streamed. The rest of the bytes are read through, so a
    /// store that checksums them checks the sum.
    fn restore(&mut self, meta: &SnapshotMeta, reader: SnapshotReader) -> Result<(), Error> {
        let fail = |reason: String| Error::SnapshotRestore {
            group: self.group,
            index: meta.index,
            reason,
        };
        let total = reader.len();
        let mut data = io::BufReader::with_capacity(RESTORE_BUFFER, reader);
        let mut len = [0u8; SESSIONS_LEN];
        data.read_exact(&mut len)
            .map_err(|e| fail(format!("reading the session table: {e}")))?;
        let len = u64::from_le_bytes(len);
        if len > total {
            return Err(fail(format!(
                "a session table of {len} bytes in a snapshot of {total}"
            )));
        }
        let mut table = vec![0u8; len as usize];
        data.read_exact(&mut table)
            .map_err(|e| fail(format!("reading the session table: {e}")))?;
        let sessions =
            postcard::from_bytes(&table).map_err(|e| fail(format!("the session table: {e}")))?;
        drop(table);
        self.sm
            .restore(meta, &mut data)
            .map_err(|e| fail(format!("the state machine: {e}")))?;
        io::copy(&mut data, &mut io::sink())
            .map_err(|e| fail(format!("reading the snapshot through: {e}")))?;
        self.sessions = sessions;
        self.applied = meta.index;
        self.applied_term = meta.term;
        self.membership = meta.membership.clone();
        // Proposals at or below the snapshot were decided elsewhere; their fate is unknown here.
        let decided = self.waiters.partition_point(|w| w.index <= meta.index);
        for w in self.waiters.drain(..decided).collect::<Vec<_>>() {
            let _ = w.reply.send(Err(Error::Timeout { group: self.group }));
        }
        self.applied_tx.publish(self.applied);
        self.publish_stats();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::messages::Header;
    use crate::mailbox::{inbox, latest, position};
    use crate::state_machine::RequestId;

    /// A state machine with no state: every command answers a one-byte response.
    struct Nothing;

    impl StateMachine for Nothing {
        type Command = ();
        type Query = ();
        type Response = u8;
        fn apply(&mut self, _index: u64, _command: ()) -> u8 {
            7
        }
        fn query(&self, _query: ()) -> u8 {
            7
        }
        fn snapshot(&self, _out: &mut dyn Write) -> io::Result<()> {
            Ok(())
        }
        fn restore(&mut self, _meta: &SnapshotMeta, _data: &mut dyn Read) -> io::Result<()> {
            Ok(())
        }
    }

    /// Issue 30, 3f: a storage read that cannot be served yet is asked again on a timer, and
    /// the actor takes messages meanwhile (it used to sleep 5 ms in the handler, answering
    /// nothing while it slept).
    #[tokio::test(start_paused = true)]
    async fn a_read_error_is_retried_on_a_timer_while_messages_are_still_taken() {
        let (actor, requests, apply_tx, commit_tx) = actor_with_inputs();
        tokio::spawn(actor.run());
        // Committed entries the (empty) tail lacks: the actor reads them from storage.
        commit_tx.send((3, TailView::default()));
        let Ok(StorageRequest::Read { reply, .. }) = requests.recv_async().await else {
            panic!("expected a read");
        };
        let failed_at = tokio::time::Instant::now();
        let _ = reply.send(Err(StorageError::Invalid("not readable yet".into())));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // A query is answered at once, with no time passing.
        let (tx, answer) = oneshot::channel();
        assert!(
            apply_tx
                .try_send(ApplyMsg::Query {
                    index: 0,
                    query: (),
                    reply: tx,
                })
                .is_ok()
        );
        let (applied, response) = answer.await.expect("answered").expect("ok");
        assert_eq!((applied, response), (0, 7));
        assert_eq!(
            failed_at.elapsed(),
            std::time::Duration::ZERO,
            "the query waited"
        );
        // The read is asked again once the retry timer runs out, not before.
        let Ok(StorageRequest::Read { .. }) = requests.recv_async().await else {
            panic!("expected the read again");
        };
        assert!(
            failed_at.elapsed() >= RETRY,
            "retried after {:?}",
            failed_at.elapsed()
        );
    }

    /// An apply actor over `Nothing`, with storage requests going to the returned receiver.
    fn actor() -> (ApplyActor<Nothing>, flume::Receiver<StorageRequest>) {
        let (actor, requests, _apply_tx, _commit_tx) = actor_with_inputs();
        (actor, requests)
    }

    /// An actor, its storage requests, and the senders of its inbox and commit position.
    type TestActor = (
        ApplyActor<Nothing>,
        flume::Receiver<StorageRequest>,
        InboxTx<ApplyMsg<Nothing>>,
        latest::LatestTx<(Index, TailView)>,
    );

    /// [`actor`], with the senders of its inbox and of its commit position too.
    fn actor_with_inputs() -> TestActor {
        let bell = Bell::new();
        let (apply_tx, rx) = inbox::bounded(16, &bell);
        let (commit_tx, commit_rx) = latest::ringing(&bell);
        let partition_bell = Bell::new();
        let (applied_tx, _applied_rx) = position::position(0, &partition_bell);
        let (control, _control_rx) = inbox::bounded(16, &partition_bell);
        let (storage, requests) = crate::storage::detached(16);
        let actor = ApplyActor::new(
            1,
            Nothing,
            SnapshotMeta::default(),
            None,
            ApplyInputs {
                rx,
                commit_rx,
                bell,
            },
            applied_tx,
            control,
            storage,
            Arc::new(GroupStats::default()),
        )
        .expect("actor");
        (actor, requests, apply_tx, commit_tx)
    }

    fn entry(index: Index, header: Header, command: bool) -> Entry {
        let mut bytes = postcard::to_allocvec(&header).expect("header");
        if command {
            bytes = postcard::to_extend(&(), bytes).expect("command");
        }
        Entry {
            index,
            term: 1,
            payload: EntryPayload::Normal(bytes.into()),
        }
    }

    /// Resident memory of this process in bytes (Linux), if known.
    fn rss() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    /// Opens `sessions` sessions through the apply path (each then applies one request, so it
    /// holds a one-byte response) in a table capped at `cap`; returns the snapshot's size.
    fn open_sessions(sessions: u64, cap: u64) -> (ApplyActor<Nothing>, usize) {
        let (mut a, requests) = actor();
        let mut index = 0;
        let mut batch = Vec::with_capacity(20_000);
        for _ in 0..sessions {
            let client = index + 1;
            batch.push(entry(
                client,
                Header::OpenSession { max_sessions: cap },
                false,
            ));
            let id = RequestId { client, seq: 1 };
            batch.push(entry(client + 1, Header::Session(id), true));
            index += 2;
            if batch.len() >= 20_000 {
                a.apply_entries(batch.iter());
                batch.clear();
            }
        }
        a.apply_entries(batch.iter());
        assert_eq!(a.applied, index);
        a.take_snapshot(Box::new(raft_storage::MemSink::new()));
        let size = match requests.try_recv() {
            Ok(StorageRequest::Write {
                op: WriteOp::Snapshot { staged, .. },
                ..
            }) => {
                assert_eq!(staged.meta().index, index);
                staged.len() as usize
            }
            _ => panic!("no snapshot stored"),
        };
        (a, size)
    }

    /// The figures quoted in `NodeConfig::max_sessions`: a million sessions opened through the
    /// apply path, under a cap of a million and under the default cap. Memory is estimated
    /// from the table's node sizes (no allocator hook: `unsafe` is forbidden), and the
    /// process's resident memory is shown beside it (meaningful when this test runs alone:
    /// `cargo test -p raft-actor --lib a_million_sessions -- --nocapture`).
    #[test]
    fn a_million_sessions() {
        const MILLION: u64 = 1_000_000;
        let default_cap = crate::config::NodeConfig::new(1).max_sessions as u64;
        let per_session = crate::group::sessions::estimated_bytes_per_session(1);
        for cap in [default_cap, MILLION] {
            let before = rss();
            let (a, snapshot) = open_sessions(MILLION, cap);
            let after = rss();
            let held = a.sessions.len() as u64;
            assert_eq!(held, cap.min(MILLION));
            assert_eq!(a.sessions.evicted(), MILLION - held);
            let rss_note = match (before, after) {
                (Some(b), Some(a)) => format!(
                    "; resident memory grew {:.1} MB ({:.0} bytes per session held)",
                    a.saturating_sub(b) as f64 / 1e6,
                    a.saturating_sub(b) as f64 / held as f64
                ),
                _ => String::new(),
            };
            eprintln!(
                "{MILLION} sessions opened, cap {cap}: {held} held, {} evicted; memory about \
                 {per_session:.0} bytes per session, {:.1} MB{rss_note}; snapshot {snapshot} \
                 bytes, {:.1} per session held",
                a.sessions.evicted(),
                per_session * held as f64 / 1e6,
                snapshot as f64 / held as f64
            );
            // Bounds on the figures quoted in the docs.
            assert!(per_session < 200.0, "{per_session}");
            assert!(snapshot as u64 <= held * 16, "{snapshot} bytes");
            // The last session opened is live, the first (under the default cap) is gone.
            let mut sessions = a.sessions;
            let last = RequestId {
                client: 2 * MILLION - 1,
                seq: 1,
            };
            assert!(matches!(
                sessions.check(last, 2 * MILLION + 1),
                Check::Retry { .. }
            ));
            let first = RequestId { client: 1, seq: 1 };
            let expected_first = if cap >= MILLION { "retry" } else { "expired" };
            let got = match sessions.check(first, 2 * MILLION + 2) {
                Check::Retry { .. } => "retry",
                Check::Expired => "expired",
                Check::Apply => "apply",
            };
            assert_eq!(got, expected_first);
        }
    }
}
