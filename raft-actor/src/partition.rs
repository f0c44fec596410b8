//! The partition actor: one per Raft group on a node. It owns the group's `PartitionCore` and
//! executes its actions. It never awaits another actor while handling a message (DESIGN.md I3):
//! every send is `try_send`, a latest-value update or a one-shot reply, and when a role changes it
//! publishes a new epoch to its replicators and moves on (I4).
//!
//! It is quiescent when its group is idle (see [`crate::ticks`]): its tick timer is armed only
//! while something has a tick-driven deadline (a leader transfer, a retry of an update the
//! heartbeat actor could not take, a storage backlog, a contact report to flush); the ticks
//! that elapse meanwhile are delivered before its next input. Its liveness (I6) is proven by
//! stamping every wake-up into its `GroupStats`; when idle, the heartbeat actor's probes wake
//! it (one wake-up per half `stall_timeout`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use raft_core::{
    Action, GroupId, Index, InitialState, Membership, Message, MessageBody, NodeId, PartitionCore,
    Role, SnapshotMeta, Term,
};
use raft_net::{Lane, Transport};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::apply::{ApplyMsg, Waiter};
use crate::config::NodeConfig;
use crate::error::Error;
use crate::heartbeat::{HbUpdate, HeartbeatHandle};
use crate::mailbox::bell::Bell;
use crate::mailbox::gather::Gather;
use crate::mailbox::inbox::{self, InboxTx};
use crate::metrics::{GroupMetrics, GroupStats};
use crate::replicator::{Inputs, ReplicateSignal, ReplicatorActor, ToReplicator};
use crate::state_machine::StateMachine;
use crate::storage::{StorageHandle, StorageRequest, WriteOp};
use crate::tail::{Tail, TailView};
use crate::ticks::Ticks;
use crate::wire::WireMsg;

/// Entries a partition keeps in memory for its replicators and apply actor (about).
const TAIL_ENTRIES: usize = 8192;

/// The transport type every actor uses.
pub(crate) type Net = Arc<dyn Transport<WireMsg>>;

/// A reply channel for a client request.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Requests from `Node` API callers. Queue: `client_queue` per group, `try_send` (full →
/// `Overloaded`).
pub(crate) enum ClientReq<S: StateMachine> {
    Propose {
        payload: Vec<u8>,
        reply: Reply<S::Response>,
    },
    Read {
        query: S::Query,
        reply: Reply<S::Response>,
    },
    Transfer {
        to: NodeId,
        reply: Reply<()>,
    },
    ChangeMembership {
        target: Membership,
        reply: Reply<Index>,
    },
    AddLearner {
        id: NodeId,
        reply: Reply<Index>,
    },
}

/// Internal notifications. Queue: `control_queue`, `try_send` by every sender; senders that
/// find it full retry on their next tick, so nothing waits.
pub(crate) enum Control {
    /// A replicator's peer acknowledged up to `matched` in epoch `term`.
    Progress {
        peer: NodeId,
        term: Term,
        matched: Index,
    },
    /// A replicator saw a message with a newer term: step it into the core.
    Step(Message),
    /// The heartbeat actor's election timer fired.
    ElectionTimeout,
    /// The heartbeat actor saw no quorum contact within an election timeout.
    QuorumLost,
    /// The heartbeat actor asks for proof of progress (I6): handling any message bumps
    /// `GroupStats::partition_wakeups`, which is the answer.
    Probe,
    /// The heartbeat actor hears this peer node again after a silence of an election timeout:
    /// its replicator retries what was probably lost at once.
    PeerReachable(NodeId),
    /// The apply actor took a snapshot.
    SnapshotTaken(SnapshotMeta),
    /// Test hook (I6): stop processing anything for this long.
    #[cfg(feature = "fault-injection")]
    Freeze(std::time::Duration),
    /// Metrics request.
    Status(oneshot::Sender<GroupMetrics>),
    /// Stop the actor (I10: shutdown is a message).
    Shutdown,
}

/// What woke the partition actor.
enum Event<S: StateMachine> {
    Control(Control),
    Persisted,
    Applied,
    Raft(Message),
    Tick,
    Client(ClientReq<S>),
}

/// Where the router sends a peer's answers to this group's AppendEntries and snapshot
/// chunks: straight to the replicator of that peer, without a hop through the partition
/// (published by the partition whenever its set of replicators changes; empty unless
/// leading).
pub(crate) type AckRoutes = Arc<BTreeMap<NodeId, InboxTx<ToReplicator>>>;

/// Handle to a partition actor: only senders (STYLE.md "actors with a handle").
pub(crate) struct PartitionHandle<S: StateMachine> {
    pub(crate) client: InboxTx<ClientReq<S>>,
    pub(crate) raft: InboxTx<Message>,
    pub(crate) control: InboxTx<Control>,
    /// The current replicators' answer queues (latest value).
    pub(crate) acks: watch::Receiver<AckRoutes>,
}

impl<S: StateMachine> Clone for PartitionHandle<S> {
    fn clone(&self) -> Self {
        PartitionHandle {
            client: self.client.clone(),
            raft: self.raft.clone(),
            control: self.control.clone(),
            acks: self.acks.clone(),
        }
    }
}

/// Everything a partition actor needs from its node.
pub(crate) struct Wiring {
    pub(crate) cfg: NodeConfig,
    pub(crate) group: GroupId,
    pub(crate) net: Net,
    pub(crate) storage: StorageHandle,
    pub(crate) heartbeat: HeartbeatHandle,
    pub(crate) stats: Arc<GroupStats>,
    /// The node's kill switch: every task of the group runs under it.
    pub(crate) kill: crate::kill::Kill,
}

/// The partition's two edges to one replicator.
struct ReplicatorLink {
    /// Acknowledgements from the peer (bounded `replicator_queue`, `try_send`: drop and count).
    acks: InboxTx<ToReplicator>,
    /// Log and commit changes (latest value).
    signal: crate::mailbox::latest::LatestTx<ReplicateSignal>,
}

/// A proposal waiting to be handed to the apply actor.
struct PendingRead<S: StateMachine> {
    query: S::Query,
    reply: Reply<S::Response>,
}

pub(crate) struct PartitionActor<S: StateMachine> {
    w: Wiring,
    core: PartitionCore,
    client_rx: inbox::InboxRx<ClientReq<S>>,
    raft_rx: inbox::InboxRx<Message>,
    control_rx: inbox::InboxRx<Control>,
    control_tx: InboxTx<Control>,
    /// Rung by every input below: the actor waits on it alone (see [`crate::mailbox::inbox`]).
    bell: Bell,
    persisted_rx: crate::mailbox::position::PositionRx,
    applied_rx: crate::mailbox::position::PositionRx,
    apply_tx: inbox::InboxTx<ApplyMsg<S>>,
    /// `apply_tx`'s capacity (flume's `capacity()` takes the channel's lock).
    apply_cap: usize,
    commit_tx: crate::mailbox::latest::LatestTx<(Index, TailView)>,
    /// Recent entries, shared read-only with replicators and the apply actor.
    tail: Tail,
    /// The last log/commit signal published to replicators.
    last_signal: ReplicateSignal,
    /// Replicators of the current leadership epoch.
    replicators: BTreeMap<NodeId, ReplicatorLink>,
    /// Publishes the replicators' answer queues to the router (see [`AckRoutes`]).
    acks_tx: watch::Sender<AckRoutes>,
    /// Storage writes that found the queue full; flushed before anything else.
    backlog: VecDeque<StorageRequest>,
    reads: BTreeMap<u64, PendingRead<S>>,
    next_read: u64,
    /// Snapshot being received: bytes so far.
    incoming_snapshot: Vec<u8>,
    /// The heartbeat actor must hear about a role/membership change it may have missed.
    hb_dirty: bool,
    /// Highest term of a leader heard from on the data lane and not yet reported to the
    /// heartbeat actor.
    leader_contact: Option<Term>,
    /// When contact was last reported: reports go out at most once per tick interval (hot
    /// path), the rest on the next tick.
    contact_reported: Option<Instant>,
    /// The protocol clock (ticks keep their phase while the timer is off).
    ticks: Ticks,
    /// Most ticks delivered at once after an idle stretch: beyond two election timeouts every
    /// tick-counted state of the core has run out anyway.
    max_catch_up: u64,
    /// Registration with the heartbeat actor went through (retried on ticks until it does).
    hb_registered: bool,
    fatal: Option<String>,
}

impl<S: StateMachine> PartitionActor<S> {
    /// Builds the actor and its apply actor, registers with storage and heartbeat actor, and
    /// spawns both on the current (data) runtime. `recovered` is what storage held.
    pub(crate) async fn spawn(
        w: Wiring,
        init: InitialState,
        state_machine: S,
        apply_from: SnapshotMeta,
        snapshot_data: Option<Vec<u8>>,
    ) -> Result<PartitionHandle<S>, Error> {
        let cfg = w.cfg.clone();
        let group = w.group;
        let core = PartitionCore::new(cfg.group_config(), group, init)
            .map_err(|e| Error::raft(group, e))?;
        let bell = Bell::new();
        let (client_tx, client_rx) = inbox::bounded(cfg.client_queue, &bell);
        let (raft_tx, raft_rx) = inbox::bounded(cfg.raft_queue, &bell);
        let (control_tx, control_rx) = inbox::bounded(cfg.control_queue, &bell);
        let (persisted_tx, persisted_rx) = crate::mailbox::position::position(0, &bell);
        let (applied_tx, applied_rx) = crate::mailbox::position::position(apply_from.index, &bell);
        let apply_bell = Bell::new();
        let (commit_tx, commit_rx) = crate::mailbox::latest::ringing(&apply_bell);
        let (acks_tx, acks_rx) = watch::channel(AckRoutes::default());
        // Apply queue: room for one waiter per queued client request, plus control traffic.
        let apply_cap = cfg.client_queue + cfg.max_batch + 64;
        let (apply_tx, apply_rx) = inbox::bounded(apply_cap, &apply_bell);
        w.storage
            .send(StorageRequest::Register {
                group,
                persisted: persisted_tx,
            })
            .await
            .map_err(|_| Error::Stopped)?;
        let apply = crate::apply::ApplyActor::new(
            group,
            state_machine,
            apply_from,
            snapshot_data,
            crate::apply::ApplyInputs {
                rx: apply_rx,
                commit_rx,
                bell: apply_bell,
            },
            applied_tx,
            control_tx.clone(),
            w.storage.clone(),
            w.stats.clone(),
        )?;
        let span = info_span!("apply", node = cfg.node_id, group);
        w.kill.spawn(apply.run().instrument(span));
        let registered = w
            .heartbeat
            .register(group, control_tx.clone(), w.stats.clone());
        let actor = PartitionActor {
            core,
            client_rx,
            raft_rx,
            control_rx,
            control_tx: control_tx.clone(),
            bell,
            persisted_rx,
            applied_rx,
            apply_tx,
            apply_cap,
            commit_tx,
            tail: Tail::new(TAIL_ENTRIES),
            last_signal: ReplicateSignal::default(),
            replicators: BTreeMap::new(),
            acks_tx,
            backlog: VecDeque::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            incoming_snapshot: Vec::new(),
            hb_dirty: true,
            hb_registered: registered,
            leader_contact: None,
            contact_reported: None,
            ticks: Ticks::new(cfg.tick_interval),
            max_catch_up: u64::from(cfg.group_config().election_ticks) * 2 + 2,
            fatal: None,
            w,
        };
        // term and role are recorded on every role change, so every log line of this actor
        // (and of its replicators, spawned inside it) says which term and role it ran in.
        let span = info_span!(
            "partition",
            node = cfg.node_id,
            group,
            term = tracing::field::Empty,
            role = tracing::field::Empty
        );
        let kill = actor.w.kill.clone();
        kill.spawn(actor.run().instrument(span));
        Ok(PartitionHandle {
            client: client_tx,
            raft: raft_tx,
            control: control_tx,
            acks: acks_rx,
        })
    }

    async fn run(mut self) {
        let wake = tokio::time::sleep_until(self.ticks.next());
        tokio::pin!(wake);
        let mut armed = false;
        let mut gather = Gather::default();
        self.publish_role();
        let mut accept_clients = self.can_accept_clients();
        loop {
            // Inputs in priority order; the bell when there are none (see `crate::mailbox::inbox`).
            let event = loop {
                if let Some(next) = self.try_event(armed && wake.is_elapsed(), accept_clients) {
                    break next;
                }
                tokio::select! {
                    biased;
                    () = self.bell.rung() => {}
                    () = &mut wake, if armed => {}
                }
            };
            let Some(event) = event else { break };
            // A busy actor finds input at every look and would never yield: it gives the
            // worker back to the runtime when its cooperative budget runs out.
            tokio::task::consume_budget().await;
            // Proof of progress for the heartbeat actor (I6).
            let now = Instant::now();
            self.w.stats.record_wakeup(self.w.heartbeat.stamp(now));
            if matches!(event, Event::Control(Control::Probe)) {
                // Nothing to do but to have run; the core sees no input, so its ticks can
                // wait for the next one.
                continue;
            }
            // The ticks that elapsed while the timer was off, before the core sees the input.
            for _ in 0..self.ticks.elapsed(now).min(self.max_catch_up) {
                self.core.tick();
            }
            match event {
                Event::Control(c) => self.handle_control(c).await,
                Event::Persisted => {
                    let (seq, error) = self.persisted_rx.take();
                    if let Some(err) = error {
                        self.fatal(format!("storage failed: {err}"));
                    } else {
                        self.core.persisted(seq);
                    }
                }
                Event::Applied => {
                    let (applied, _) = self.applied_rx.take();
                    self.core.applied(applied);
                }
                Event::Raft(m) => {
                    self.on_raft(m);
                    // Drain a batch of queued messages before acting on the results.
                    for _ in 0..256 {
                        let Ok(m) = self.raft_rx.try_recv() else {
                            break;
                        };
                        self.on_raft(m);
                    }
                }
                Event::Tick => self.on_tick(),
                Event::Client(req) => {
                    // Let the clients that are runnable now queue their requests first, so
                    // they join this batch.
                    if gather.should_yield(self.client_rx.is_empty()) {
                        raft_net::sched::yield_to_runnable().await;
                    }
                    gather.taken(self.on_client_batch(req));
                }
            }
            self.drive();
            if self.fatal.is_some() {
                break;
            }
            self.report_contact(now, false);
            accept_clients = self.can_accept_clients();
            armed = self.needs_tick(accept_clients);
            if armed && wake.deadline() != self.ticks.next() {
                wake.as_mut().reset(self.ticks.next());
            }
        }
        self.stop();
    }

    /// The next queued input in priority order without waiting: control, storage, apply,
    /// network, the tick timer (`tick_due`), then clients (while `accept_clients`).
    /// `Some(None)` means stop: shutdown was asked for or an input's senders are all gone.
    fn try_event(&mut self, tick_due: bool, accept_clients: bool) -> Option<Option<Event<S>>> {
        use flume::TryRecvError::{Disconnected, Empty};
        match self.control_rx.try_recv() {
            Ok(Control::Shutdown) | Err(Disconnected) => return Some(None),
            Ok(c) => return Some(Some(Event::Control(c))),
            Err(Empty) => {}
        }
        match self.persisted_rx.has_changed() {
            Ok(true) => return Some(Some(Event::Persisted)),
            Ok(false) => {}
            Err(_) => return Some(None),
        }
        match self.applied_rx.has_changed() {
            Ok(true) => return Some(Some(Event::Applied)),
            Ok(false) => {}
            Err(_) => return Some(None),
        }
        match self.raft_rx.try_recv() {
            Ok(m) => return Some(Some(Event::Raft(m))),
            Err(Disconnected) => return Some(None),
            Err(Empty) => {}
        }
        if tick_due {
            return Some(Some(Event::Tick));
        }
        if accept_clients {
            match self.client_rx.try_recv() {
                Ok(req) => return Some(Some(Event::Client(req))),
                Err(Disconnected) => return Some(None),
                Err(Empty) => {}
            }
        }
        None
    }

    /// True while something has a tick-driven deadline; otherwise the actor sleeps until an
    /// input arrives (an idle group costs no wake-ups but the heartbeat actor's probes).
    fn needs_tick(&self, accept_clients: bool) -> bool {
        self.core.needs_ticks()
            || !self.hb_registered
            || self.hb_dirty
            || self.leader_contact.is_some()
            || !self.backlog.is_empty()
            || !accept_clients
    }

    fn can_accept_clients(&self) -> bool {
        self.fatal.is_none()
            && self.backlog.is_empty()
            && self.w.storage.has_room(2)
            && self.apply_cap.saturating_sub(self.apply_tx.len()) > self.w.cfg.max_batch
    }

    /// The tick timer fired (it is armed only while `needs_tick`): retries what did not fit
    /// earlier. The core's ticks were delivered already.
    fn on_tick(&mut self) {
        if !self.hb_registered {
            self.hb_registered = self.w.heartbeat.register(
                self.w.group,
                self.control_tx.clone(),
                self.w.stats.clone(),
            );
            self.hb_dirty = true;
        }
        self.report_contact(Instant::now(), true);
        if self.hb_dirty {
            self.publish_role();
        }
    }

    /// Reports data-lane contact with the leader to the heartbeat actor: at once if the last
    /// report is a tick interval old (or `now_anyway`), else on the next tick.
    fn report_contact(&mut self, now: Instant, now_anyway: bool) {
        let Some(term) = self.leader_contact else {
            return;
        };
        let due = now_anyway
            || self
                .contact_reported
                .is_none_or(|t| now.duration_since(t) >= self.w.cfg.tick_interval);
        if due && self.w.heartbeat.contact(self.w.group, term) {
            self.leader_contact = None;
            self.contact_reported = Some(now);
        }
    }

    /// A Raft message from the network. Acknowledgements go to the peer's replicator (the
    /// router sends most of them there directly; these came before it knew the replicator);
    /// every message is stepped into the core for the term rules.
    fn on_raft(&mut self, m: Message) {
        if ToReplicator::takes(&m) {
            if let Some(link) = self.replicators.get(&m.from) {
                self.w
                    .stats
                    .acks_forwarded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if link
                    .acks
                    .try_send(ToReplicator::Response(m.clone()))
                    .is_err()
                {
                    self.w
                        .stats
                        .dropped_messages
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if m.term <= self.core.term() {
                return;
            }
        }
        if matches!(
            m.body,
            MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. }
        ) && m.term >= self.core.term()
        {
            // Reported to the heartbeat actor at most once per tick interval (hot path).
            self.leader_contact = self.leader_contact.max(Some(m.term));
        }
        self.core.step(m);
    }

    /// Takes one request and as many queued proposals as fit in a batch; returns how many
    /// requests it took.
    fn on_client_batch(&mut self, first: ClientReq<S>) -> usize {
        let mut taken = 0;
        let mut proposals: Vec<(Vec<u8>, Reply<S::Response>)> = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            taken += 1;
            match req {
                ClientReq::Propose { payload, reply } => proposals.push((payload, reply)),
                other => {
                    self.flush_proposals(std::mem::take(&mut proposals));
                    self.on_client_other(other);
                }
            }
            if proposals.len() < self.w.cfg.max_batch {
                next = self.client_rx.try_recv().ok();
            }
        }
        self.flush_proposals(proposals);
        taken
    }

    fn flush_proposals(&mut self, proposals: Vec<(Vec<u8>, Reply<S::Response>)>) {
        if proposals.is_empty() {
            return;
        }
        let group = self.w.group;
        let (payloads, replies): (Vec<Vec<u8>>, Vec<Reply<S::Response>>) =
            proposals.into_iter().unzip();
        match self.core.propose(payloads) {
            Ok(p) => {
                let waiters: Vec<Waiter<S>> = replies
                    .into_iter()
                    .enumerate()
                    .map(|(i, reply)| Waiter {
                        index: p.first_index + i as Index,
                        term: p.term,
                        reply,
                    })
                    .collect();
                // Room was checked before accepting client work (can_accept_clients).
                if let Err(e) = self.apply_tx.try_send(ApplyMsg::Waiters(waiters)) {
                    warn!(
                        group,
                        "apply queue full; proposals will not be answered (in doubt)"
                    );
                    if let ApplyMsg::Waiters(ws) = e.into_inner() {
                        for w in ws {
                            let _ = w.reply.send(Err(Error::Timeout { group }));
                        }
                    }
                }
            }
            Err(e) => {
                let err = Error::raft(group, e);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    fn on_client_other(&mut self, req: ClientReq<S>) {
        let group = self.w.group;
        match req {
            ClientReq::Propose { .. } => {}
            ClientReq::Read { query, reply } => {
                #[cfg(feature = "fault-injection")]
                if self.w.cfg.broken_local_reads {
                    // Broken on purpose (simulation only): no ReadIndex, a local answer.
                    let _ = self.apply_tx.try_send(ApplyMsg::Query {
                        index: 0,
                        query,
                        reply,
                    });
                    return;
                }
                let ctx = self.next_read;
                self.next_read += 1;
                match self.core.read_index(ctx) {
                    Ok(()) => {
                        self.reads.insert(ctx, PendingRead { query, reply });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::raft(group, e)));
                    }
                }
            }
            ClientReq::Transfer { to, reply } => {
                let _ = reply.send(
                    self.core
                        .transfer_leader(to)
                        .map_err(|e| Error::raft(group, e)),
                );
            }
            ClientReq::ChangeMembership { target, reply } => {
                let _ = reply.send(
                    self.core
                        .change_membership(target)
                        .map_err(|e| Error::raft(group, e)),
                );
            }
            ClientReq::AddLearner { id, reply } => {
                let _ = reply.send(self.core.add_learner(id).map_err(|e| Error::raft(group, e)));
            }
        }
    }

    async fn handle_control(&mut self, c: Control) {
        match c {
            Control::Progress {
                peer,
                term,
                matched,
            } => self.core.progress(peer, term, matched),
            Control::Step(m) => self.core.step(m),
            Control::ElectionTimeout => {
                self.w
                    .stats
                    .elections_started
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.core.election_timeout();
            }
            Control::QuorumLost => self.core.quorum_lost(),
            Control::Probe => {} // answered by the loop (it never gets here)
            Control::PeerReachable(peer) => {
                if let Some(link) = self.replicators.get(&peer) {
                    let _ = link.acks.try_send(ToReplicator::PeerReachable);
                }
            }
            Control::SnapshotTaken(meta) => {
                // The apply actor published the index the snapshot covers before taking it,
                // but control outranks the applied position: catch up first, or the core would
                // refuse a snapshot of entries it does not know are applied.
                let (applied, _) = self.applied_rx.take();
                self.core.applied(applied);
                if let Err(e) = self.core.snapshot_taken(meta) {
                    warn!(group = self.w.group, error = %e, "snapshot not used");
                }
            }
            #[cfg(feature = "fault-injection")]
            Control::Freeze(d) => {
                warn!(
                    group = self.w.group,
                    ?d,
                    "test hook: partition actor frozen"
                );
                // Deliberately blocks this actor only (simulates a stuck partition, I6).
                tokio::time::sleep(d).await;
            }
            Control::Status(reply) => {
                let _ = reply.send(self.metrics());
            }
            Control::Shutdown => {}
        }
    }

    /// Executes the core's actions.
    fn drive(&mut self) {
        self.flush_backlog();
        for _ in 0..64 {
            let actions = self.core.take_actions();
            if actions.is_empty() {
                break;
            }
            for a in actions {
                self.execute(a);
            }
        }
        self.w.stats.update(&self.core);
    }

    fn execute(&mut self, action: Action) {
        let group = self.w.group;
        match action {
            Action::PersistHardState { seq, hard_state } => self.store(StorageRequest::Write {
                group,
                seq,
                op: WriteOp::HardState(hard_state),
            }),
            Action::PersistEntries {
                seq,
                truncate_from,
                entries,
            } => {
                let core = &self.core;
                self.tail
                    .append(truncate_from, entries.clone(), |i| core.log().term(i));
                self.store(StorageRequest::Write {
                    group,
                    seq,
                    op: WriteOp::Entries {
                        truncate_from,
                        entries,
                    },
                })
            }
            Action::Send(m) => {
                let to = m.to;
                if self
                    .w
                    .net
                    .send(to, Lane::Data, group, WireMsg::Raft(m))
                    .is_err()
                {
                    self.w
                        .stats
                        .dropped_messages
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Action::Replicate {
                term,
                first_index,
                last_index,
                commit,
            } => {
                self.publish_signal(ReplicateSignal {
                    term,
                    first_index,
                    last_index,
                    commit,
                    tail: self.tail.view(),
                });
            }
            Action::Apply { index } => {
                self.commit_tx.send((index, self.tail.view()));
            }
            Action::ReadReady { ctx, index } => {
                if let Some(r) = self.reads.remove(&ctx) {
                    if let Err(e) = self.apply_tx.try_send(ApplyMsg::Query {
                        index,
                        query: r.query,
                        reply: r.reply,
                    }) {
                        if let ApplyMsg::Query { reply, .. } = e.into_inner() {
                            let _ = reply.send(Err(Error::Overloaded { group }));
                        }
                    }
                }
            }
            Action::ReadAborted { ctx, leader } => {
                if let Some(r) = self.reads.remove(&ctx) {
                    let _ = r.reply.send(Err(Error::NotLeader { group, leader }));
                }
            }
            Action::RoleChanged { role, term, leader } => self.on_role_changed(role, term, leader),
            Action::MembershipChanged { .. } => {
                if self.core.role() == Role::Leader {
                    self.sync_replicators();
                }
                self.publish_role();
            }
            Action::SnapshotChunk { offset, data, .. } => {
                if offset == 0 {
                    self.incoming_snapshot.clear();
                }
                self.incoming_snapshot.extend_from_slice(&data);
            }
            Action::InstallSnapshot {
                seq,
                meta,
                discard_log,
            } => {
                if discard_log {
                    self.tail.clear();
                }
                let data = std::mem::take(&mut self.incoming_snapshot);
                let restore = ApplyMsg::Restore {
                    meta: meta.clone(),
                    data: data.clone(),
                };
                if self.apply_tx.try_send(restore).is_err() {
                    self.fatal("apply queue full while installing a snapshot".into());
                    return;
                }
                self.store(StorageRequest::Write {
                    group,
                    seq,
                    op: WriteOp::Snapshot {
                        meta,
                        data,
                        discard_log,
                    },
                });
            }
            Action::DiscardSnapshot { .. } => self.incoming_snapshot.clear(),
            Action::TakeSnapshot { index } => {
                if self
                    .apply_tx
                    .try_send(ApplyMsg::TakeSnapshot { index })
                    .is_err()
                {
                    debug!(
                        group,
                        "apply queue full; snapshot request dropped (asked again later)"
                    );
                }
            }
            Action::CompactLog { index } => {
                self.store(StorageRequest::Write {
                    group,
                    seq: 0,
                    op: WriteOp::Compact(index),
                });
            }
        }
    }

    fn store(&mut self, req: StorageRequest) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(req);
            return;
        }
        if let Err(req) = self.w.storage.try_send(req) {
            self.backlog.push_back(*req);
        }
    }

    fn flush_backlog(&mut self) {
        while let Some(req) = self.backlog.pop_front() {
            if let Err(req) = self.w.storage.try_send(req) {
                self.backlog.push_front(*req);
                return;
            }
        }
    }

    fn on_role_changed(&mut self, role: Role, term: Term, leader: Option<NodeId>) {
        let span = tracing::Span::current();
        span.record("term", term);
        span.record("role", tracing::field::debug(role));
        info!(group = self.w.group, ?role, term, ?leader, "role changed");
        // I4: a new epoch for the replicators, then move on. Dropping their queues ends the
        // old ones; they also stop on their own when the signal's term changes.
        self.replicators.clear();
        self.publish_ack_routes();
        if role == Role::Leader {
            self.w
                .stats
                .leader_terms
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.sync_replicators();
        }
        self.publish_role();
    }

    /// Keeps one replicator per peer of the current membership while leading.
    fn sync_replicators(&mut self) {
        let me = self.w.cfg.node_id;
        let peers: Vec<NodeId> = self
            .core
            .membership()
            .all_nodes()
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        let before = self.replicators.len();
        self.replicators.retain(|p, _| peers.contains(p));
        let mut changed = self.replicators.len() != before;
        let term = self.core.term();
        let last = self.core.log().last_index();
        for peer in peers {
            if self.replicators.contains_key(&peer) {
                continue;
            }
            let bell = Bell::new();
            let (tx, rx) = inbox::bounded(self.w.cfg.replicator_queue, &bell);
            let (signal_tx, signal_rx) = crate::mailbox::latest::ringing(&bell);
            let actor = ReplicatorActor::new(
                &self.w,
                peer,
                term,
                last,
                Inputs {
                    bell,
                    responses: rx,
                    signal: signal_rx,
                },
                self.control_tx.clone(),
            );
            let span = info_span!(
                "replicator",
                node = me,
                group = self.w.group,
                peer,
                term,
                role = "leader"
            );
            self.w.kill.spawn(actor.run().instrument(span));
            let s = ReplicateSignal {
                term,
                first_index: self.core.log().first_index(),
                last_index: last,
                commit: self.core.commit_index(),
                tail: self.tail.view(),
            };
            // A new replicator starts from the current bounds.
            signal_tx.send(s);
            self.replicators.insert(
                peer,
                ReplicatorLink {
                    acks: tx,
                    signal: signal_tx,
                },
            );
            changed = true;
        }
        if changed {
            self.publish_ack_routes();
        }
        let s = ReplicateSignal {
            term,
            first_index: self.core.log().first_index(),
            last_index: last,
            commit: self.core.commit_index(),
            tail: self.tail.view(),
        };
        self.publish_signal(s);
    }

    /// Tells the router where the current replicators take their peers' answers.
    fn publish_ack_routes(&self) {
        if self.replicators.is_empty() && self.acks_tx.borrow().is_empty() {
            return;
        }
        let routes: BTreeMap<NodeId, InboxTx<ToReplicator>> = self
            .replicators
            .iter()
            .map(|(&peer, link)| (peer, link.acks.clone()))
            .collect();
        self.acks_tx.send_replace(Arc::new(routes));
    }

    /// Wakes the replicators (latest value: one wake-up per change, never a lost one, I9).
    fn publish_signal(&mut self, s: ReplicateSignal) {
        if self.last_signal == s {
            return;
        }
        self.last_signal = s.clone();
        self.w
            .stats
            .replicate_signals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for link in self.replicators.values() {
            link.signal.send(s.clone());
        }
    }

    fn publish_role(&mut self) {
        let m = self.core.membership();
        let update = HbUpdate::Role {
            group: self.w.group,
            role: self.core.role(),
            term: self.core.term(),
            voters: m.voters.clone(),
            voters_outgoing: m.voters_outgoing.clone(),
            members: m.all_nodes(),
        };
        self.hb_dirty = !self.w.heartbeat.update(update);
    }

    fn metrics(&self) -> GroupMetrics {
        let s = self.core.status();
        GroupMetrics {
            group: self.w.group,
            role: s.role,
            term: s.term,
            leader: s.leader,
            commit: s.commit,
            applied: s.applied,
            last_index: s.last_index,
            membership: s.membership.clone(),
            matched: s.matched.clone(),
            lag: s
                .matched
                .iter()
                .map(|(p, m)| (*p, s.last_index.saturating_sub(*m)))
                .collect(),
            client_queue: self.client_rx.len(),
            raft_queue: self.raft_rx.len(),
            control_queue: self.control_rx.len(),
            responsive: true,
            // Counters: the same as a non-responsive group's.
            ..GroupMetrics::from_stats(self.w.group, &self.w.stats)
        }
    }

    fn fatal(&mut self, message: String) {
        error!(group = self.w.group, %message, "group stopped after a fatal error");
        self.fatal = Some(message);
    }

    /// Ends the actor: answers everything pending with `Stopped` and releases its peers.
    fn stop(mut self) {
        let group = self.w.group;
        self.replicators.clear();
        self.publish_ack_routes();
        let _ = self.apply_tx.try_send(ApplyMsg::Shutdown);
        self.w.heartbeat.unregister(group);
        for (_, r) in std::mem::take(&mut self.reads) {
            let _ = r.reply.send(Err(Error::Stopped));
        }
        while let Ok(req) = self.client_rx.try_recv() {
            match req {
                ClientReq::Propose { reply, .. } | ClientReq::Read { reply, .. } => {
                    let _ = reply.send(Err(Error::Stopped));
                }
                ClientReq::Transfer { reply, .. } => {
                    let _ = reply.send(Err(Error::Stopped));
                }
                ClientReq::ChangeMembership { reply, .. } | ClientReq::AddLearner { reply, .. } => {
                    let _ = reply.send(Err(Error::Stopped));
                }
            }
        }
        info!(group, "partition actor stopped");
    }
}
