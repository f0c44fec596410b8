//! The replicator actor: one per (group, peer) while this node leads the group, for one
//! leadership term (its epoch).
//!
//! It owns a `ReplicatorCore` and its own wake-up state (incident 5: no shared wait records).
//! Woken by the partition's latest-value signal on every log or commit change, it
//! reads the entries to send from storage — the read's answer is just another event of its
//! loop, never awaited while something else waits — pipelines AppendEntries over the data lane,
//! streams snapshots in chunks (one chunk in flight), and reports progress to the partition
//! tagged with its epoch. It ends when the signal's term changes or the partition drops its
//! queue (I4: role changes never wait for it).
//!
//! Its retransmission tick is armed only while something waits on it (an unanswered probe,
//! window or snapshot, an unreported ack, a read to retry): a replicator of an idle group
//! sleeps until the next log change (see [`super::ticks`]).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use raft_core::{
    Entries, GroupId, Index, Message, MessageBody, NodeId, Plan, ReplState, ReplicatorCore,
    SnapshotMeta, SnapshotStatus, Term,
};
use raft_net::Lane;
use raft_storage::SnapshotReader;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::Wiring;
use super::messages::{Control, ReplicateSignal, ToReplicator};
use super::ticks::Ticks;
use crate::mailbox::bell::Bell;
use crate::mailbox::inbox::{InboxRx, InboxTx};
use crate::mailbox::latest::LatestRx;
use crate::metrics::GroupStats;
use crate::storage::{AppendRead, SnapshotRead, StorageHandle, StorageRequest};
use crate::wire::{Net, WireMsg};

/// A replicator's queued inputs and the bell their senders ring.
pub(crate) struct Inputs {
    pub(crate) bell: Bell,
    pub(crate) responses: InboxRx<ToReplicator>,
    pub(crate) signal: LatestRx<ReplicateSignal>,
}

/// What the replicator's loop takes next.
enum Event {
    Signal(ReplicateSignal),
    Input(ToReplicator),
    Read(ReadResult),
    CommitDue,
    Tick,
    /// The partition dropped this epoch's channels.
    Stop,
}

/// Bytes per snapshot chunk: below raft-net's large-frame threshold would starve nothing, but
/// chunks are large frames on purpose so the transport schedules them behind small ones.
const CHUNK_BYTES: usize = 256 * 1024;

/// Most AppendEntries sent from the tail before the replicator looks at its inputs again.
const MAX_BURST: usize = 64;

/// What planning did.
enum Planned {
    /// Sent from the tail; plan again.
    Sent,
    /// Waiting for storage.
    Read(Pending),
    /// Nothing to send now (window full, up to date, or storage busy).
    Nothing,
}

/// An outstanding storage read.
enum Pending {
    Append {
        prev_index: Index,
        commit: Index,
        rx: oneshot::Receiver<AppendRead>,
    },
    Snapshot {
        rx: oneshot::Receiver<SnapshotRead>,
    },
}

/// A snapshot being streamed: read from storage one chunk at a time.
struct Outgoing {
    meta: SnapshotMeta,
    reader: SnapshotReader,
}

pub(crate) struct ReplicatorActor {
    group: GroupId,
    me: NodeId,
    peer: NodeId,
    epoch: Term,
    core: ReplicatorCore,
    view: ReplicateSignal,
    /// Rung by `responses` and `signal` (see [`crate::mailbox::inbox`]).
    bell: Bell,
    responses: InboxRx<ToReplicator>,
    signal: LatestRx<ReplicateSignal>,
    control: InboxTx<Control>,
    storage: StorageHandle,
    net: Net,
    stats: Arc<GroupStats>,
    max_msg_bytes: u64,
    tick: std::time::Duration,
    unreported: Option<Index>,
    outgoing: Option<Outgoing>,
    /// A read failed: plan nothing until the next tick or signal (no hot retry loop).
    hold: bool,
    /// The storage queue was full when a read was due: plan again on the next tick.
    retry: bool,
    /// `NodeConfig::commit_notify_delay`.
    commit_delay: std::time::Duration,
    /// A commit-only AppendEntries is held back until then (see `commit_notify_delay`).
    commit_due: Option<Instant>,
}

impl ReplicatorActor {
    pub(crate) fn new(
        w: &Wiring,
        peer: NodeId,
        epoch: Term,
        last_index: Index,
        inputs: Inputs,
        control: InboxTx<Control>,
    ) -> Self {
        let Inputs {
            bell,
            responses,
            signal,
        } = inputs;
        let cfg = w.cfg.group_config();
        ReplicatorActor {
            group: w.group,
            me: w.cfg.node_id,
            peer,
            epoch,
            core: ReplicatorCore::new(&cfg, peer, epoch, last_index),
            view: ReplicateSignal {
                term: epoch,
                ..Default::default()
            },
            bell,
            responses,
            signal,
            control,
            storage: w.storage.clone(),
            net: w.net.clone(),
            stats: w.stats.clone(),
            max_msg_bytes: cfg.max_msg_bytes,
            tick: w.cfg.tick_interval,
            unreported: None,
            outgoing: None,
            hold: false,
            retry: false,
            commit_delay: w.cfg.commit_notify_delay,
            commit_due: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut ticks = Ticks::new(self.tick);
        let wake = tokio::time::sleep_until(ticks.next());
        tokio::pin!(wake);
        let commit_wake = tokio::time::sleep_until(ticks.next());
        tokio::pin!(commit_wake);
        let mut pending: Option<Pending> = None;
        loop {
            // Bounded: after a burst of sends, take events (acks, signals) before sending more.
            let mut burst = 0;
            while pending.is_none() && !self.hold && burst < MAX_BURST {
                match self.plan() {
                    Planned::Sent => burst += 1,
                    Planned::Read(p) => pending = Some(p),
                    Planned::Nothing => break,
                }
            }
            let armed = self.needs_tick();
            if armed {
                ticks.elapsed(Instant::now());
                if wake.deadline() != ticks.next() {
                    wake.as_mut().reset(ticks.next());
                }
            }
            match self.commit_due {
                Some(due) if commit_wake.deadline() != due => commit_wake.as_mut().reset(due),
                _ => {}
            }
            // Queued input first, in the old `select!` order; the bell, the read and the
            // timers only when there is none (see `crate::mailbox::inbox`).
            let event = loop {
                if let Some(e) = self.try_event() {
                    break e;
                }
                tokio::select! {
                    biased;
                    () = self.bell.rung() => {}
                    read = wait(&mut pending) => break Event::Read(read),
                    // Plan again: the held-back commit index goes out now unless new entries
                    // took it.
                    _ = &mut commit_wake, if self.commit_due.is_some() => break Event::CommitDue,
                    _ = &mut wake, if armed => break Event::Tick,
                }
            };
            match event {
                Event::Stop => break,
                Event::Signal(s) => {
                    if s.term != self.epoch {
                        break;
                    }
                    self.stats
                        .replicator_wakeups
                        .fetch_add(1, Ordering::Relaxed);
                    if s == self.view {
                        // Woken for a change already seen (I9 audit).
                        self.stats
                            .replicator_stale_wakeups
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.view = s;
                    self.hold = false;
                }
                Event::Input(ToReplicator::Response(m)) => self.on_response(m),
                Event::Input(ToReplicator::PeerReachable) => self.on_peer_reachable(),
                Event::Read(read) => {
                    let p = pending.take();
                    self.on_read(p, read);
                }
                Event::CommitDue => {}
                Event::Tick => {
                    self.hold = false;
                    self.retry = false;
                    self.core.tick();
                    self.report(None);
                }
            }
            self.stats.replicator_loops.fetch_add(1, Ordering::Relaxed);
            // A replicator that always finds input yields when its cooperative budget is spent.
            tokio::task::consume_budget().await;
        }
        debug!(
            group = self.group,
            peer = self.peer,
            epoch = self.epoch,
            "replicator stopped"
        );
    }

    /// A queued log/commit signal, else a queued response, without waiting.
    fn try_event(&mut self) -> Option<Event> {
        use flume::TryRecvError::{Disconnected, Empty};
        match self.signal.try_recv() {
            Ok(s) => return Some(Event::Signal(s)),
            Err(Disconnected) => return Some(Event::Stop),
            Err(Empty) => {}
        }
        match self.responses.try_recv() {
            Ok(m) => Some(Event::Input(m)),
            Err(Disconnected) => Some(Event::Stop),
            Err(Empty) => None,
        }
    }

    /// True while a tick has something to do: retransmission timers of the core, an ack to
    /// report, a read to retry.
    fn needs_tick(&self) -> bool {
        self.core.needs_ticks() || self.unreported.is_some() || self.hold || self.retry
    }

    /// Sends what the core wants to send next from the log's tail, or asks storage for it.
    fn plan(&mut self) -> Planned {
        self.retry = false;
        let v = &self.view;
        let plan = self.core.next_plan(v.first_index, v.last_index, v.commit);
        // An append that only carries a new commit index waits for `commit_notify_delay`.
        let commit_only = plan.is_some_and(|p| self.core.only_commit(&p));
        if !commit_only {
            self.commit_due = None;
        } else if !self.commit_delay.is_zero() {
            let now = Instant::now();
            match self.commit_due {
                Some(due) if now >= due => self.commit_due = None,
                Some(_) => return Planned::Nothing,
                None => {
                    self.commit_due = Some(now + self.commit_delay);
                    return Planned::Nothing;
                }
            }
        }
        let Some(plan) = plan else {
            return Planned::Nothing;
        };
        match plan {
            Plan::Append { prev_index, to, .. } => {
                if let Some((prev_term, entries)) = v.tail.read(prev_index, to, self.max_msg_bytes)
                {
                    let commit = v.commit;
                    self.send_append(prev_index, prev_term, entries, commit);
                    return Planned::Sent;
                }
                let (reply, rx) = oneshot::channel();
                let req = StorageRequest::ReadForAppend {
                    group: self.group,
                    prev_index,
                    to,
                    max_bytes: self.max_msg_bytes,
                    reply,
                };
                // A full storage queue: try again on the next tick.
                if self.storage.try_send(req).is_err() {
                    self.retry = true;
                    return Planned::Nothing;
                }
                Planned::Read(Pending::Append {
                    prev_index,
                    commit: v.commit,
                    rx,
                })
            }
            Plan::Snapshot => {
                let (reply, rx) = oneshot::channel();
                let req = StorageRequest::ReadSnapshot {
                    group: self.group,
                    reply,
                };
                if self.storage.try_send(req).is_err() {
                    self.retry = true;
                    return Planned::Nothing;
                }
                Planned::Read(Pending::Snapshot { rx })
            }
        }
    }

    fn send_append(&mut self, prev_index: Index, prev_term: Term, entries: Entries, commit: Index) {
        let bytes: u64 = entries.iter().map(|e| e.size_hint()).sum();
        let last_sent = prev_index + entries.len() as Index;
        let body = MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            commit,
        };
        self.stats.appends_sent.fetch_add(1, Ordering::Relaxed);
        self.send(body);
        self.core.sent(prev_index, last_sent, bytes, commit);
    }

    fn on_read(&mut self, pending: Option<Pending>, read: ReadResult) {
        match (pending, read) {
            (
                Some(Pending::Append {
                    prev_index, commit, ..
                }),
                ReadResult::Append(Ok((prev_term, entries))),
            ) => self.send_append(prev_index, prev_term, entries.into(), commit),
            (_, ReadResult::Append(Err(e))) => {
                // Compacted meanwhile, or the group is going away: plan again from the new view.
                debug!(group = self.group, peer = self.peer, error = %e, "read for append failed");
                self.hold = true;
            }
            (_, ReadResult::Snapshot(Ok(Some((meta, reader))))) => {
                self.core.snapshot_sent(meta.index);
                self.stats.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                let mut out = Outgoing { meta, reader };
                if self.send_chunk(&mut out, 0) {
                    self.outgoing = Some(out);
                }
            }
            (_, ReadResult::Snapshot(Ok(None))) => {
                warn!(
                    group = self.group,
                    peer = self.peer,
                    "peer needs a snapshot but none exists yet"
                );
                self.hold = true;
            }
            (_, ReadResult::Snapshot(Err(e))) => {
                warn!(group = self.group, peer = self.peer, error = %e, "snapshot read failed");
                self.hold = true;
            }
            _ => self.hold = true,
        }
    }

    /// Sends the chunk at `offset`, read from storage; false (and the transfer dropped, to be
    /// started again when the core probes) if it cannot be read.
    fn send_chunk(&mut self, out: &mut Outgoing, offset: u64) -> bool {
        let start = offset.min(out.reader.len());
        let size = (out.reader.len() - start).min(CHUNK_BYTES as u64) as usize;
        let mut data = vec![0u8; size];
        let read = out
            .reader
            .seek(SeekFrom::Start(start))
            .and_then(|_| out.reader.read_exact(&mut data));
        if let Err(e) = read {
            warn!(
                group = self.group,
                peer = self.peer,
                index = out.meta.index,
                offset = start,
                error = %e,
                "snapshot could not be read for sending; the transfer starts again later"
            );
            self.hold = true;
            return false;
        }
        let body = MessageBody::InstallSnapshot {
            meta: out.meta.clone(),
            offset: start,
            data,
            done: start + size as u64 == out.reader.len(),
        };
        self.send(body);
        true
    }

    fn send(&self, body: MessageBody) {
        let msg = Message {
            from: self.me,
            to: self.peer,
            term: self.epoch,
            body,
        };
        if self
            .net
            .send(self.peer, Lane::Data, self.group, WireMsg::Raft(msg))
            .is_err()
        {
            self.stats.dropped_messages.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_peer_reachable(&mut self) {
        let sending_snapshot = matches!(self.core.state(), ReplState::Snapshot { .. });
        if self.core.peer_reachable() {
            debug!(
                group = self.group,
                peer = self.peer,
                "peer reachable again; retrying now"
            );
            if sending_snapshot {
                self.outgoing = None;
            }
            self.hold = false;
        }
    }

    fn on_response(&mut self, m: Message) {
        let outcome = match &m.body {
            MessageBody::AppendResponse(r) => self.core.on_append_response(m.term, r),
            MessageBody::SnapshotResponse { index, status } => {
                if let SnapshotStatus::ChunkReceived { next_offset } = status {
                    if let Some(mut out) = self.outgoing.take() {
                        let keep =
                            out.meta.index != *index || self.send_chunk(&mut out, *next_offset);
                        if keep {
                            self.outgoing = Some(out);
                        }
                    }
                }
                if matches!(status, SnapshotStatus::Installed | SnapshotStatus::Rejected) {
                    self.outgoing = None;
                }
                self.core.on_snapshot_response(m.term, *index, *status)
            }
            _ => return,
        };
        if outcome.higher_term.is_some() {
            // The partition steps down; it will end this replicator.
            let _ = self.control.try_send(Control::Step(m));
            return;
        }
        self.report(outcome.progress);
    }

    /// Reports progress; if the partition's queue is full, keeps it for the next tick.
    fn report(&mut self, matched: Option<Index>) {
        if let Some(m) = matched {
            self.unreported = Some(self.unreported.map_or(m, |u| u.max(m)));
        }
        if let Some(matched) = self.unreported {
            let msg = Control::Progress {
                peer: self.peer,
                term: self.epoch,
                matched,
            };
            if self.control.try_send(msg).is_ok() {
                self.unreported = None;
            }
        }
    }
}

/// The answer of an outstanding read.
enum ReadResult {
    Append(AppendRead),
    Snapshot(SnapshotRead),
    /// Storage dropped the request (shutting down).
    Dropped,
}

/// Waits for the outstanding read, or forever if there is none.
async fn wait(pending: &mut Option<Pending>) -> ReadResult {
    match pending {
        Some(Pending::Append { rx, .. }) => {
            rx.await.map_or(ReadResult::Dropped, ReadResult::Append)
        }
        Some(Pending::Snapshot { rx }) => {
            rx.await.map_or(ReadResult::Dropped, ReadResult::Snapshot)
        }
        None => std::future::pending().await,
    }
}
