//! The partition actor: one per Raft group on a node. It owns the group's `PartitionCore` and
//! executes its actions. It never awaits another actor while handling a message (I3):
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
use std::net::SocketAddr;
use std::sync::Arc;

use raft_core::{
    Action, Index, Membership, MembershipError, Message, MessageBody, NodeAddrs, NodeId,
    PartitionCore, Role, Term,
};
use raft_net::Lane;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::messages::{
    Answer, Appended, ApplyMsg, ClientReq, Control, HbUpdate, QueryReply, ReplicateSignal, Reply,
    ToRegistry, ToReplicator, Waiter,
};
use super::tail::{Tail, TailView};
use super::ticks::Ticks;
use super::{AckRoutes, ReplicatorLink, Wiring};
use crate::error::Error;
use crate::mailbox::bell::Bell;
use crate::mailbox::gather::Gather;
use crate::mailbox::inbox::{InboxRx, InboxTx};
use crate::mailbox::latest::LatestTx;
use crate::mailbox::position::PositionRx;
use crate::metrics::GroupMetrics;
use crate::state_machine::StateMachine;
use crate::storage::{StorageRequest, WriteOp};
use crate::wire::WireMsg;

/// What woke the partition actor.
enum Event<S: StateMachine> {
    Control(Control),
    Persisted,
    Applied,
    Raft(Message),
    Tick,
    Client(ClientReq<S>),
}

/// A read waiting for its ReadIndex to be confirmed (or its lease read index to apply), then
/// handed to the apply actor.
struct PendingRead<S: StateMachine> {
    query: S::Query,
    reply: QueryReply<S::Response>,
}

/// A proposal taken from the client queue, waiting to go into the next append.
struct Proposed<S: StateMachine> {
    payload: Vec<u8>,
    reply: Reply<Answer<S::Response>>,
    appended: Option<Appended>,
}

/// A membership call (`change_membership`, `add_learner`) waiting for its outcome: the final
/// configuration committed (and, for a learner, its log caught up), or a typed error.
struct MemberWaiter {
    /// Index of the call's first entry (the joint one when voters change).
    index: Index,
    /// `add_learner`: the learner, whose log must also come within the lag.
    learner: Option<NodeId>,
    /// When the call gives up.
    deadline: Instant,
    reply: Reply<Index>,
}

/// The partition's channel ends, built by [`super::spawn`].
pub(crate) struct Inputs<S: StateMachine> {
    /// Rung by every input below.
    pub(crate) bell: Bell,
    pub(crate) client_rx: InboxRx<ClientReq<S>>,
    pub(crate) raft_rx: InboxRx<Message>,
    pub(crate) control_rx: InboxRx<Control>,
    /// Handed to the replicators it spawns.
    pub(crate) control_tx: InboxTx<Control>,
    pub(crate) persisted_rx: PositionRx,
    pub(crate) applied_rx: PositionRx,
    pub(crate) apply_tx: InboxTx<ApplyMsg<S>>,
    pub(crate) apply_cap: usize,
    pub(crate) commit_tx: LatestTx<(Index, TailView)>,
    pub(crate) acks_tx: watch::Sender<AckRoutes>,
}

/// Drives one group's `PartitionCore`.
pub(crate) struct PartitionActor<S: StateMachine> {
    w: Wiring,
    core: PartitionCore,
    client_rx: InboxRx<ClientReq<S>>,
    raft_rx: InboxRx<Message>,
    control_rx: InboxRx<Control>,
    control_tx: InboxTx<Control>,
    /// Rung by every input below: the actor waits on it alone (see [`crate::mailbox::inbox`]).
    bell: Bell,
    persisted_rx: PositionRx,
    applied_rx: PositionRx,
    apply_tx: InboxTx<ApplyMsg<S>>,
    /// `apply_tx`'s capacity (flume's `capacity()` takes the channel's lock).
    apply_cap: usize,
    commit_tx: LatestTx<(Index, TailView)>,
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
    /// Membership calls waiting for their outcome.
    member_waits: Vec<MemberWaiter>,
    /// The registry must hear the nodes this group talks to (retried on ticks until it does).
    peers_dirty: bool,
    /// The index of the committed configuration the registry was last told about.
    peers_committed: Index,
    /// The committed configuration that removed this node from the group, once it knows.
    removed: Option<Index>,
    fatal: Option<Error>,
    /// Proposals this leader appended and has not seen commit (`max_uncommitted_bytes`).
    uncommitted: Uncommitted,
    /// Test hook (`Control::Freeze`): the actor takes no input before this instant.
    #[cfg(feature = "fault-injection")]
    frozen_until: Option<Instant>,
}

/// The proposals a leader appended in its term and has not yet seen commit, and their bytes:
/// the bound `NodeConfig::max_uncommitted_bytes` is checked against it.
#[derive(Default)]
struct Uncommitted {
    term: Term,
    /// (index, payload bytes), in index order.
    entries: VecDeque<(Index, u64)>,
    bytes: u64,
}

impl Uncommitted {
    /// Forgets what committed by `commit`, and everything of another term than `term` (a
    /// new leadership starts from nothing).
    fn settle(&mut self, term: Term, commit: Index) {
        if self.term != term {
            *self = Uncommitted {
                term,
                ..Uncommitted::default()
            };
        }
        while let Some(&(index, bytes)) = self.entries.front() {
            if index > commit {
                break;
            }
            self.bytes -= bytes;
            self.entries.pop_front();
        }
    }

    /// Whether `len` more bytes fit under `cap` (one proposal always fits when nothing is
    /// uncommitted).
    fn fits(&self, len: u64, cap: u64) -> bool {
        self.bytes == 0 || self.bytes.saturating_add(len) <= cap
    }

    fn add(&mut self, index: Index, len: u64) {
        self.entries.push_back((index, len));
        self.bytes += len;
    }
}

impl<S: StateMachine> PartitionActor<S> {
    /// The actor over `core` with its channel ends; `hb_registered` says whether the heartbeat
    /// actor took the group's registration (retried on ticks until it does).
    pub(crate) fn new(
        w: Wiring,
        core: PartitionCore,
        inputs: Inputs<S>,
        tail: Tail,
        hb_registered: bool,
    ) -> Self {
        PartitionActor {
            core,
            client_rx: inputs.client_rx,
            raft_rx: inputs.raft_rx,
            control_rx: inputs.control_rx,
            control_tx: inputs.control_tx,
            bell: inputs.bell,
            persisted_rx: inputs.persisted_rx,
            applied_rx: inputs.applied_rx,
            apply_tx: inputs.apply_tx,
            apply_cap: inputs.apply_cap,
            commit_tx: inputs.commit_tx,
            tail,
            last_signal: ReplicateSignal::default(),
            replicators: BTreeMap::new(),
            acks_tx: inputs.acks_tx,
            backlog: VecDeque::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            hb_dirty: true,
            hb_registered,
            leader_contact: None,
            contact_reported: None,
            ticks: Ticks::new(w.cfg.tick_interval),
            max_catch_up: u64::from(w.cfg.group_config().election_ticks) * 2 + 2,
            member_waits: Vec::new(),
            peers_dirty: true,
            peers_committed: 0,
            removed: None,
            fatal: None,
            uncommitted: Uncommitted::default(),
            #[cfg(feature = "fault-injection")]
            frozen_until: None,
            w,
        }
    }

    pub(crate) async fn run(mut self) {
        let wake = tokio::time::sleep_until(self.ticks.next());
        tokio::pin!(wake);
        let mut armed = false;
        let mut gather = Gather::default();
        self.publish_role();
        // What the core decided while it was built (a recovered group may learn at once that
        // it was removed).
        self.drive();
        self.report_peers();
        let mut accept_clients = self.can_accept_clients();
        while self.removed.is_none() {
            #[cfg(feature = "fault-injection")]
            if let Some(until) = self.frozen_until.take() {
                // Frozen (test hook): only the timer wakes the actor.
                tokio::time::sleep_until(until).await;
            }
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
                Event::Control(c) => self.handle_control(c),
                Event::Persisted => {
                    let (seq, error) = self.persisted_rx.take();
                    if let Some(err) = error {
                        self.fatal(Error::Storage(err.to_string()));
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
            self.settle_member_waits(now);
            self.report_peers();
            if self.fatal.is_some() || self.removed.is_some() {
                break;
            }
            self.report_contact(now, false);
            accept_clients = self.can_accept_clients();
            armed = self.needs_tick(accept_clients);
            if armed && wake.deadline() != self.ticks.next() {
                wake.as_mut().reset(self.ticks.next());
            }
        }
        if let Some(index) = self.removed {
            self.leave_group(index).await;
        } else if let Some(error) = self.fatal.clone() {
            let msg = ToRegistry::Failed {
                group: self.w.group,
                incarnation: self.w.incarnation,
                error,
            };
            self.tell_registry(msg).await;
        }
        self.stop();
    }

    /// This node was removed from the group: tells the registry, which drops the group from
    /// the node's table and purges its storage, then returns (the actor stops). Tries again
    /// every tick while the registry's queue is full; a shutdown meanwhile ends it too.
    async fn leave_group(&mut self, index: Index) {
        let group = self.w.group;
        warn!(
            group,
            index, "this node was removed from the group's configuration; stopping the group"
        );
        let msg = ToRegistry::Removed {
            group,
            incarnation: self.w.incarnation,
            index,
        };
        self.tell_registry(msg).await;
    }

    /// Sends the registry news of this group's end, trying again every tick while its queue
    /// is full; a shutdown meanwhile ends the wait.
    async fn tell_registry(&mut self, msg: ToRegistry) {
        let mut msg = msg;
        loop {
            match self.w.registry.try_send(msg) {
                Ok(()) | Err(flume::TrySendError::Disconnected(_)) => return,
                Err(flume::TrySendError::Full(m)) => msg = m,
            }
            while let Ok(c) = self.control_rx.try_recv() {
                if matches!(c, Control::Shutdown) {
                    return;
                }
            }
            tokio::time::sleep(self.w.cfg.tick_interval).await;
        }
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
            || self.peers_dirty
            || !self.member_waits.is_empty()
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
        self.report_peers();
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
        let data = matches!(
            m.body,
            MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. }
        );
        let contacts = self.core.leader_contacts();
        let term = m.term;
        self.core.step(m);
        // Contact on the data lane, if the message was news to the core (one held back in
        // the network is not evidence that the leader is alive now). Reported to the
        // heartbeat actor at most once per tick interval (hot path).
        if data && self.core.leader_contacts() > contacts && term >= self.core.term() {
            self.leader_contact = self.leader_contact.max(Some(term));
        }
    }

    /// Takes one request and as many queued proposals as fit in a batch; returns how many
    /// requests it took.
    fn on_client_batch(&mut self, first: ClientReq<S>) -> usize {
        let mut taken = 0;
        let mut proposals: Vec<Proposed<S>> = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            taken += 1;
            match req {
                ClientReq::Propose {
                    payload,
                    reply,
                    appended,
                } => proposals.push(Proposed {
                    payload,
                    reply,
                    appended,
                }),
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

    fn flush_proposals(&mut self, proposals: Vec<Proposed<S>>) {
        if proposals.is_empty() {
            return;
        }
        let group = self.w.group;
        let mut payloads = Vec::with_capacity(proposals.len());
        let mut replies = Vec::with_capacity(proposals.len());
        // The bound on uncommitted bytes (leaders only: a follower's refusal says NotLeader).
        let leading = self.core.role() == Role::Leader;
        if leading {
            self.uncommitted
                .settle(self.core.term(), self.core.commit_index());
        }
        let (cap, mut adding) = (self.w.cfg.max_uncommitted_bytes, 0u64);
        let mut sizes = Vec::with_capacity(proposals.len());
        for p in proposals {
            let len = p.payload.len() as u64;
            if leading && !self.uncommitted.fits(adding.saturating_add(len), cap) {
                let _ = p.reply.send(Err(Error::Overloaded { group }));
                continue;
            }
            adding += len;
            sizes.push(len);
            payloads.push(p.payload);
            replies.push((p.reply, p.appended));
        }
        if payloads.is_empty() {
            return;
        }
        match self.core.propose(payloads) {
            Ok(p) => {
                for (i, len) in sizes.into_iter().enumerate() {
                    self.uncommitted.add(p.first_index + i as Index, len);
                }
                let waiters: Vec<Waiter<S>> = replies
                    .into_iter()
                    .enumerate()
                    .map(|(i, (reply, appended))| {
                        let index = p.first_index + i as Index;
                        if let Some(appended) = appended {
                            let _ = appended.send((index, p.term));
                        }
                        Waiter {
                            index,
                            term: p.term,
                            reply,
                        }
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
                let err = self.error(e);
                for (reply, _) in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    fn on_client_other(&mut self, req: ClientReq<S>) {
        match req {
            ClientReq::Propose { .. } => {}
            ClientReq::Read { query, reply } => self.read(query, reply, false),
            ClientReq::ReadLease { query, reply } => self.read(query, reply, true),
            ClientReq::ReadStale { query, reply } => self.query_now(query, reply),
            ClientReq::Transfer { to, reply } => {
                let r = self.core.transfer_leader(to);
                let _ = reply.send(r.map_err(|e| self.error(e)));
            }
            ClientReq::ChangeMembership { target, reply } => {
                let r = self.core.change_membership(target);
                self.wait_for_membership(r, None, reply);
            }
            ClientReq::AddLearner { id, addrs, reply } => {
                let r = self.core.add_learner(id, addrs);
                self.wait_for_membership(r, Some(id), reply);
            }
        }
    }

    /// A linearizable read: ReadIndex, or under the leader's lease with `lease`. The core
    /// answers with `ReadReady` or `ReadAborted` (see `execute`).
    fn read(&mut self, query: S::Query, reply: QueryReply<S::Response>, lease: bool) {
        #[cfg(feature = "fault-injection")]
        if self.w.cfg.broken_local_reads {
            // Broken on purpose (simulation only): no ReadIndex, a local answer.
            self.query_now(query, reply);
            return;
        }
        let ctx = self.next_read;
        self.next_read += 1;
        let asked = if lease {
            self.core.read_lease(ctx)
        } else {
            self.core.read_index(ctx)
        };
        match asked {
            Ok(()) => {
                self.reads.insert(ctx, PendingRead { query, reply });
            }
            Err(e) => {
                let _ = reply.send(Err(self.error(e)));
            }
        }
    }

    /// Hands `query` to the apply actor to answer from whatever it has applied now.
    fn query_now(&mut self, query: S::Query, reply: QueryReply<S::Response>) {
        if let Err(e) = self.apply_tx.try_send(ApplyMsg::Query {
            index: 0,
            query,
            reply,
        }) {
            if let ApplyMsg::Query { reply, .. } = e.into_inner() {
                let _ = reply.send(Err(Error::Overloaded {
                    group: self.w.group,
                }));
            }
        }
    }

    /// A protocol error as the API answers it: a `NotLeader` carries the leader's client
    /// address when the configuration has it.
    fn error(&self, e: raft_core::Error) -> Error {
        match Error::raft(self.w.group, e) {
            Error::NotLeader { group, leader, .. } => Error::NotLeader {
                group,
                leader,
                leader_addr: self.leader_addr(leader),
            },
            other => other,
        }
    }

    /// The client address of `leader` in the group's configuration.
    fn leader_addr(&self, leader: Option<NodeId>) -> Option<SocketAddr> {
        self.core
            .membership()
            .addrs_of(leader?)
            .and_then(|a| a.client)
    }

    /// Registers a membership call the core accepted (its first entry at the returned index)
    /// to be answered by [`PartitionActor::settle_member_waits`]. A call that asks for what is
    /// already in effect (`Unchanged`: a retry after an unknown outcome, say) waits for the
    /// latest configuration to commit instead, so retries are idempotent. Refusals are
    /// answered at once.
    fn wait_for_membership(
        &mut self,
        r: Result<Index, raft_core::Error>,
        learner: Option<NodeId>,
        reply: Reply<Index>,
    ) {
        let index = match r {
            Ok(index) => index,
            Err(raft_core::Error::Membership(MembershipError::Unchanged)) => {
                self.core.latest_config_index()
            }
            Err(e) => {
                let _ = reply.send(Err(self.error(e)));
                return;
            }
        };
        let patience = if learner.is_some() {
            self.w.cfg.learner_catchup_timeout
        } else {
            self.w.cfg.request_timeout
        };
        self.member_waits.push(MemberWaiter {
            index,
            learner,
            deadline: Instant::now() + patience,
            reply,
        });
    }

    /// Answers the membership calls whose outcome is known: `Ok` with the final
    /// configuration's index once it committed and is not joint (for a learner: with its
    /// entry's index, once it also holds the log within `learner_catchup_lag` entries of this
    /// leader's last index); `ChangeOutcomeUnknown` if this node stopped leading before that,
    /// or the deadline passed before the configuration committed; `LearnerLagging` if the
    /// learner was added but did not catch up in time.
    fn settle_member_waits(&mut self, now: Instant) {
        if self.member_waits.is_empty() {
            return;
        }
        let group = self.w.group;
        let (committed_index, committed) = self.core.committed_membership();
        let settled = !committed.is_joint();
        let leading = self.core.role() == Role::Leader;
        let last = self.core.log().last_index();
        let floor = last.saturating_sub(self.w.cfg.raft.learner_catchup_lag);
        let mut waiting = Vec::with_capacity(self.member_waits.len());
        for w in std::mem::take(&mut self.member_waits) {
            let done = settled && committed_index >= w.index;
            let outcome = match w.learner {
                None if done => Some(Ok(committed_index)),
                Some(node) if done && leading => {
                    // Within the lag, and holding its own configuration entry: a learner
                    // never heard from is not caught up, however short the log.
                    let matched = self.core.peer_matched(node).unwrap_or(0);
                    if matched >= floor.max(w.index) {
                        Some(Ok(w.index))
                    } else if now >= w.deadline {
                        Some(Err(Error::LearnerLagging {
                            group,
                            node,
                            matched,
                            leader_last: last,
                        }))
                    } else {
                        None
                    }
                }
                _ if !leading || now >= w.deadline => Some(Err(Error::ChangeOutcomeUnknown {
                    group,
                    index: w.index,
                })),
                _ => None,
            };
            match outcome {
                Some(r) => {
                    let _ = w.reply.send(r);
                }
                None => waiting.push(w),
            }
        }
        self.member_waits = waiting;
    }

    /// Tells the registry the nodes this group talks to, with their addresses where the
    /// configuration has them (the registry keeps the transport's peers in step). A joining
    /// group with no configuration yet says nothing, so what the registry was told when it
    /// joined stays.
    ///
    /// A node stays a peer until a committed configuration leaves it out, not only the latest
    /// one: a leader that removes itself must still hear its followers' acks to commit its
    /// removal, and a removed node must still be reachable to be told.
    fn report_peers(&mut self) {
        let (committed_index, _) = self.core.committed_membership();
        if committed_index != self.peers_committed {
            self.peers_dirty = true;
        }
        if !self.peers_dirty {
            return;
        }
        let m = self.core.membership();
        if *m == Membership::default() {
            self.peers_dirty = false;
            return;
        }
        let me = self.w.cfg.node_id;
        let (_, committed) = self.core.committed_membership();
        let mut nodes: BTreeMap<NodeId, Option<NodeAddrs>> = m
            .all_nodes()
            .into_iter()
            .filter(|&n| n != me)
            .map(|n| (n, m.addrs_of(n).copied()))
            .collect();
        for n in committed.all_nodes() {
            if n != me {
                let addrs = committed.addrs_of(n).copied();
                let entry = nodes.entry(n).or_insert(addrs);
                if entry.is_none() {
                    *entry = addrs;
                }
            }
        }
        for p in self.core.replication_peers() {
            nodes.entry(p).or_insert(None);
        }
        let msg = ToRegistry::Peers {
            group: self.w.group,
            incarnation: self.w.incarnation,
            nodes,
        };
        self.peers_dirty = matches!(
            self.w.registry.try_send(msg),
            Err(flume::TrySendError::Full(_))
        );
        if !self.peers_dirty {
            self.peers_committed = committed_index;
        }
    }

    fn handle_control(&mut self, c: Control) {
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
            Control::SnapshotFailed => self.core.snapshot_not_taken(),
            Control::Fatal(error) => self.fatal(error),
            #[cfg(feature = "fault-injection")]
            Control::Freeze(d) => {
                warn!(
                    group = self.w.group,
                    ?d,
                    "test hook: partition actor frozen"
                );
                // A state, not a sleep in this handler: the run loop takes no input until
                // then (simulates a stuck partition, I6).
                self.frozen_until = Some(Instant::now() + d);
            }
            Control::Status(reply) => {
                let _ = reply.send(self.metrics());
            }
            Control::Membership(reply) => {
                let _ = reply.send(self.core.membership().clone());
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
                    let leader_addr = self.leader_addr(leader);
                    let _ = r.reply.send(Err(Error::NotLeader {
                        group,
                        leader,
                        leader_addr,
                    }));
                }
            }
            Action::RoleChanged { role, term, leader } => self.on_role_changed(role, term, leader),
            Action::MembershipChanged { .. } => {
                if self.core.role() == Role::Leader {
                    self.sync_replicators();
                }
                self.publish_role();
                self.peers_dirty = true;
            }
            Action::PeersChanged => {
                if self.core.role() == Role::Leader {
                    self.sync_replicators();
                }
                self.peers_dirty = true;
            }
            Action::Removed { index } => self.removed = Some(index),
            Action::SnapshotChunk { offset, data, .. } => {
                self.store(StorageRequest::Write {
                    group,
                    seq: 0,
                    op: WriteOp::SnapshotChunk { offset, data },
                });
            }
            Action::InstallSnapshot {
                seq,
                meta,
                discard_log,
            } => {
                if discard_log {
                    self.tail.clear();
                }
                // Storage finishes the snapshot (its chunks went ahead of this); the apply
                // actor then restores from what storage holds.
                self.store(StorageRequest::Write {
                    group,
                    seq,
                    op: WriteOp::InstallIncoming {
                        meta: meta.clone(),
                        discard_log,
                    },
                });
                if self.apply_tx.try_send(ApplyMsg::Restore { meta }).is_err() {
                    self.fatal(Error::GroupFailed {
                        group,
                        reason: "apply queue full while installing a snapshot".into(),
                    });
                }
            }
            Action::DiscardSnapshot { .. } => self.store(StorageRequest::Write {
                group,
                seq: 0,
                op: WriteOp::DiscardIncoming,
            }),
            Action::TakeSnapshot { .. } => {
                if self.apply_tx.try_send(ApplyMsg::TakeSnapshot).is_err() {
                    debug!(
                        group,
                        "apply queue full; snapshot request dropped (asked again later)"
                    );
                    self.core.snapshot_not_taken();
                }
            }
            Action::CompactLog { index } => {
                // Compacted entries are served from the snapshot, not the tail.
                self.tail.trim_through(index);
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

    /// Keeps one replicator per node the core replicates to while leading: the members, and
    /// the nodes a configuration removed until they know it.
    fn sync_replicators(&mut self) {
        let peers = self.core.replication_peers();
        let before = self.replicators.len();
        self.replicators.retain(|p, _| peers.contains(p));
        let mut changed = self.replicators.len() != before;
        let term = self.core.term();
        let last = self.core.log().last_index();
        for peer in peers {
            if self.replicators.contains_key(&peer) {
                continue;
            }
            let link = super::spawn_replicator(&self.w, peer, term, last, self.control_tx.clone());
            // A new replicator starts from the current bounds.
            link.signal.send(self.signal(term, last));
            self.replicators.insert(peer, link);
            changed = true;
        }
        if changed {
            self.publish_ack_routes();
        }
        self.publish_signal(self.signal(term, last));
    }

    /// The log bounds, commit index and tail the replicators of epoch `term` work from.
    fn signal(&self, term: Term, last: Index) -> ReplicateSignal {
        ReplicateSignal {
            term,
            first_index: self.core.log().first_index(),
            last_index: last,
            commit: self.core.commit_index(),
            tail: self.tail.view(),
        }
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
            tail_bytes: self.tail.bytes(),
            responsive: true,
            // Counters: the same as a non-responsive group's.
            ..GroupMetrics::from_stats(self.w.group, &self.w.stats)
        }
    }

    fn fatal(&mut self, error: Error) {
        error!(group = self.w.group, %error, "group stopped after a fatal error");
        self.fatal.get_or_insert(error);
    }

    /// Ends the actor: answers everything pending with `Stopped` (`Removed` when this node
    /// was removed from the group) and releases its peers.
    fn stop(mut self) {
        let group = self.w.group;
        let gone = if self.removed.is_some() {
            Error::Removed { group }
        } else {
            self.fatal.clone().unwrap_or(Error::Stopped)
        };
        self.replicators.clear();
        self.publish_ack_routes();
        let _ = self.apply_tx.try_send(ApplyMsg::Shutdown);
        self.w.heartbeat.unregister(group);
        for (_, r) in std::mem::take(&mut self.reads) {
            let _ = r.reply.send(Err(gone.clone()));
        }
        for w in std::mem::take(&mut self.member_waits) {
            let _ = w.reply.send(Err(gone.clone()));
        }
        while let Ok(req) = self.client_rx.try_recv() {
            match req {
                ClientReq::Propose { reply, .. } => {
                    let _ = reply.send(Err(gone.clone()));
                }
                ClientReq::Read { reply, .. }
                | ClientReq::ReadLease { reply, .. }
                | ClientReq::ReadStale { reply, .. } => {
                    let _ = reply.send(Err(gone.clone()));
                }
                ClientReq::Transfer { reply, .. } => {
                    let _ = reply.send(Err(gone.clone()));
                }
                ClientReq::ChangeMembership { reply, .. } | ClientReq::AddLearner { reply, .. } => {
                    let _ = reply.send(Err(gone.clone()));
                }
            }
        }
        info!(group, "partition actor stopped");
    }
}
