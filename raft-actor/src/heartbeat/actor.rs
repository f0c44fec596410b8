//! The heartbeat actor itself: its view of every group hosted here, its loop, and the leader-
//! and follower-side bookkeeping of claims, acks, election timers and probes (see the module
//! docs of [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raft_core::rng::SplitMix64;
use raft_core::{GroupId, Membership, NodeId, Role, Term, quorum};
use raft_net::{Envelope, Lane};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::claims::Outbound;
use super::deadlines::Deadlines;
use super::held::{Applied, Held};
use super::micros_since;
use crate::config::NodeConfig;
use crate::group::messages::{Control, HbUpdate};
use crate::mailbox::inbox::InboxTx;
use crate::metrics::{GroupStats, HeartbeatStats};
use crate::wire::{Claims, HeartbeatAck, HeartbeatFrame, Net, WireMsg};

/// The actor's view of one group hosted here.
struct Group {
    control: InboxTx<Control>,
    stats: Arc<GroupStats>,
    role: Role,
    term: Term,
    membership: Membership,
    members: BTreeSet<NodeId>,
    /// Follower side: the last contact with a leader that is no longer covering the group
    /// (a live claim covers it from then on).
    last_contact: Instant,
    /// This group's randomized election timeout.
    timeout: Duration,
    /// Leader side: when it became leader, or when check-quorum last fired.
    leader_since: Instant,
    /// I6: the partition is considered stalled (see the module docs).
    stalled: bool,
    /// I6: when the probe not yet answered was sent (a wake-up stamp).
    probe_sent: Option<u64>,
}

pub(crate) struct HeartbeatActor {
    me: NodeId,
    interval: Duration,
    election: Duration,
    stall: Duration,
    /// I6: how often each partition is probed.
    probe_period: Duration,
    /// The origin of wake-up stamps.
    epoch: Instant,
    net: Net,
    inbound: flume::Receiver<Envelope<WireMsg>>,
    rx: flume::Receiver<HbUpdate>,
    groups: BTreeMap<GroupId, Group>,
    /// Claims held per peer on groups not hosted here, at most (`NodeConfig`).
    max_foreign_claims: usize,
    /// Groups this node claims to lead: leader here and not stalled. Check-quorum's domain.
    leading: BTreeSet<GroupId>,
    /// Leader side, per peer node.
    out: BTreeMap<NodeId, Outbound>,
    /// Follower side, per peer node.
    held: BTreeMap<NodeId, Held>,
    /// Election timers of the groups no live claim covers (voters, not leading here).
    elections: Deadlines,
    /// When to look at each group's probe next.
    probes: Deadlines,
    session: u64,
    /// The version of this node's claims (all peers share the counter).
    version: u64,
    /// Frames sent in this session (each frame carries its number).
    frame_seq: u64,
    /// Something check-quorum depends on changed since it last looked.
    quorum_dirty: bool,
    /// The earliest end of a grace period of a leader that lacks a quorum.
    quorum_recheck: Option<Instant>,
    rng: SplitMix64,
    stats: Arc<HeartbeatStats>,
}

impl HeartbeatActor {
    /// The actor of node `cfg.node_id`, taking updates on `rx` and frames on `inbound`.
    pub(super) fn new(
        cfg: &NodeConfig,
        net: Net,
        inbound: flume::Receiver<Envelope<WireMsg>>,
        rx: flume::Receiver<HbUpdate>,
        seed: u64,
        epoch: Instant,
        stats: Arc<HeartbeatStats>,
    ) -> Self {
        HeartbeatActor {
            me: cfg.node_id,
            interval: cfg.heartbeat_interval,
            election: cfg.election_timeout,
            stall: cfg.stall_timeout,
            max_foreign_claims: cfg.max_foreign_claims,
            probe_period: cfg.stall_timeout / 2,
            epoch,
            net,
            inbound,
            rx,
            groups: BTreeMap::new(),
            leading: BTreeSet::new(),
            out: BTreeMap::new(),
            held: BTreeMap::new(),
            elections: Deadlines::default(),
            probes: Deadlines::default(),
            session: super::session_id(seed),
            version: 0,
            frame_seq: 0,
            quorum_dirty: false,
            quorum_recheck: None,
            rng: SplitMix64::new(seed),
            stats,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                u = self.rx.recv_async() => match u {
                    Ok(HbUpdate::Shutdown) | Err(_) => break,
                    Ok(u) => self.on_update(u),
                },
                env = self.inbound.recv_async() => match env {
                    Ok(env) => self.on_inbound(env),
                    Err(_) => break,
                },
                _ = ticker.tick() => self.on_interval(),
            }
        }
        debug!(node = self.me, "heartbeat actor stopped");
    }

    /// A random election timeout in `[election, 2 * election)`, in whole milliseconds (tokio's
    /// timers fire on millisecond ticks, so finer thresholds buy nothing and would let the
    /// paused clock's sub-millisecond offset from the timer wheel decide comparisons).
    fn random_timeout(&mut self) -> Duration {
        let base = self.election.as_millis().max(1) as u64;
        Duration::from_millis(base + self.rng.below(base))
    }

    /// A random offset in `[0, period)`, so groups registered together are probed apart.
    fn spread(&mut self, period: Duration) -> Duration {
        let ms = period.as_millis().max(1) as u64;
        Duration::from_millis(self.rng.below(ms))
    }

    fn on_update(&mut self, u: HbUpdate) {
        let now = Instant::now();
        match u {
            HbUpdate::Register {
                group,
                control,
                stats,
            } => {
                if self.groups.contains_key(&group) {
                    self.forget(group);
                }
                let timeout = self.random_timeout();
                let first_probe = now + self.spread(self.probe_period);
                self.groups.insert(
                    group,
                    Group {
                        control,
                        stats,
                        role: Role::Follower,
                        term: 0,
                        membership: Membership::default(),
                        members: BTreeSet::new(),
                        last_contact: now,
                        timeout,
                        leader_since: now,
                        stalled: false,
                        probe_sent: None,
                    },
                );
                self.probes.set(group, Some(first_probe));
                self.reaccept(group);
            }
            HbUpdate::Unregister { group } => self.forget(group),
            HbUpdate::Role {
                group,
                role,
                term,
                voters,
                voters_outgoing,
                members,
            } => {
                let timeout = self.random_timeout();
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                let became_leader = role == Role::Leader && g.role != Role::Leader;
                if became_leader {
                    g.leader_since = now;
                }
                if role != Role::Leader && (g.role == Role::Leader || term != g.term) {
                    g.last_contact = now;
                    g.timeout = timeout;
                }
                g.role = role;
                g.term = term;
                g.membership = Membership {
                    voters,
                    voters_outgoing,
                    learners: BTreeSet::new(),
                    addrs: Default::default(),
                };
                g.members = members;
                if role == Role::Leader {
                    // Its quorum may be made of other peers now.
                    self.quorum_dirty = true;
                }
                self.reclaim(group);
                self.reaccept(group);
            }
            HbUpdate::Contact { group, term } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    if term >= g.term && g.role != Role::Leader {
                        g.last_contact = now;
                        self.refresh_timer(group);
                    }
                }
            }
            HbUpdate::Shutdown => {}
        }
    }

    /// Drops a group: its claims are withdrawn, its timers and probes cleared.
    fn forget(&mut self, group: GroupId) {
        if self.groups.remove(&group).is_none() {
            return;
        }
        self.reclaim(group);
        self.elections.set(group, None);
        self.probes.set(group, None);
        // Claims others make on it are judged again, as on any group not registered here.
        self.reaccept(group);
    }

    // ---- leader side ----

    /// Brings this node's claims on `group` in line with its state: claimed to every other
    /// member while it leads here and is not stalled, withdrawn otherwise.
    fn reclaim(&mut self, group: GroupId) {
        let me = self.me;
        let (claim, peers) = match self.groups.get(&group) {
            Some(g) if g.role == Role::Leader && !g.stalled => (Some(g.term), g.members.clone()),
            _ => (None, BTreeSet::new()),
        };
        if claim.is_some() {
            for &p in &peers {
                if p != me {
                    self.out.entry(p).or_default();
                }
            }
            self.leading.insert(group);
        } else {
            self.leading.remove(&group);
        }
        let mut bumped = false;
        for (peer, o) in self.out.iter_mut() {
            let want = if peers.contains(peer) { claim } else { None };
            if o.claim(group) != want {
                if !bumped {
                    self.version += 1;
                    bumped = true;
                }
                o.set(group, want, self.version);
            }
        }
        if bumped {
            self.quorum_dirty = true;
        }
    }

    fn send_frames(&mut self) {
        for (&peer, o) in self.out.iter_mut() {
            let Some(mut frame) = o.frame(self.session, self.version) else {
                continue;
            };
            self.frame_seq += 1;
            frame.seq = self.frame_seq;
            let claims = match &frame.claims {
                Claims::Full(list) => {
                    self.stats.full_frames_sent.fetch_add(1, Ordering::Relaxed);
                    list.len()
                }
                Claims::Changes { set, unset, .. } => set.len() + unset.len(),
            };
            self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            self.stats
                .claims_sent
                .fetch_add(claims as u64, Ordering::Relaxed);
            let _ = self
                .net
                .send(peer, Lane::Heartbeat, 0, WireMsg::Heartbeat(frame));
        }
    }

    fn on_ack(&mut self, from: NodeId, ack: HeartbeatAck, now: Instant) {
        if ack.session != self.session {
            return; // an answer to a former run of this node
        }
        self.stats.acks_received.fetch_add(1, Ordering::Relaxed);
        if let Some(o) = self.out.get_mut(&from) {
            if o.on_ack(ack, self.version, now) {
                self.quorum_dirty = true;
            }
        }
    }

    /// Check-quorum over the groups this node leads, when anything it depends on changed or a
    /// grace period ended.
    fn check_quorum(&mut self, now: Instant) {
        let mut reachable = Vec::new();
        for (&peer, o) in self.out.iter_mut() {
            if o.refresh_fresh(now, self.election) {
                self.quorum_dirty = true;
                if o.is_fresh() {
                    reachable.push(peer);
                }
            }
        }
        for peer in reachable {
            self.peer_reachable(peer);
        }
        if !self.quorum_dirty && self.quorum_recheck.is_none_or(|t| t > now) {
            return;
        }
        self.quorum_dirty = false;
        self.quorum_recheck = None;
        let me = self.me;
        for &group in &self.leading {
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            let out = &self.out;
            let ok = quorum::has_quorum(&g.membership, |n| {
                n == me || out.get(&n).is_some_and(|o| o.counts_for(group))
            });
            if ok {
                continue;
            }
            if now.duration_since(g.leader_since) >= self.election {
                warn!(
                    group,
                    term = g.term,
                    "check-quorum: no quorum contact within an election timeout"
                );
                self.stats.quorum_lost.fetch_add(1, Ordering::Relaxed);
                let _ = g.control.try_send(Control::QuorumLost);
                g.leader_since = now;
            }
            let end = g.leader_since + self.election;
            self.quorum_recheck = Some(self.quorum_recheck.map_or(end, |t| t.min(end)));
        }
    }

    /// `peer` acks again after a silence: the replicators of every group led here with it as a
    /// member retry what they sent into the silence now, not after their timeouts (a lost
    /// snapshot chunk waits 20 probe periods).
    fn peer_reachable(&mut self, peer: NodeId) {
        debug!(peer, "peer acks heartbeats again");
        for &group in &self.leading {
            if let Some(g) = self.groups.get(&group) {
                if g.members.contains(&peer) {
                    let _ = g.control.try_send(Control::PeerReachable(peer));
                }
            }
        }
    }

    // ---- follower side ----

    /// Whether this node accepts `term` as a claim to lead `group` (the rule heartbeats always
    /// followed: not older than the local term, and not this node's own leadership).
    ///
    /// A claim on a group not registered here is accepted: this node is alive and answering,
    /// and a partition registers with this actor only on its first tick, so a node starting
    /// thousands of groups answers a new leader's votes and appends before it knows the group
    /// here. Rejecting those claims made leaders whose followers were all still registering
    /// step down by check-quorum (about 300 of 10,000 groups starting in one process). When
    /// the group registers, the claim is judged again by its term.
    fn accepts(groups: &BTreeMap<GroupId, Group>, group: GroupId, term: Term) -> bool {
        groups
            .get(&group)
            .is_none_or(|g| term >= g.term && !(g.role == Role::Leader && term == g.term))
    }

    /// True if a live claim covers `group`.
    fn covered(&self, group: GroupId) -> bool {
        self.held.values().any(|h| h.covers(group))
    }

    /// The group's last contact is at least `at` (a claim that covered it until then ends).
    fn fold_contact(&mut self, group: GroupId, at: Instant) {
        if let Some(g) = self.groups.get_mut(&group) {
            g.last_contact = g.last_contact.max(at);
        }
    }

    /// Arms or parks the group's election timer: armed for a voter that does not lead here
    /// and is not covered by a live claim.
    fn refresh_timer(&mut self, group: GroupId) {
        let me = self.me;
        let want = match self.groups.get(&group) {
            Some(g) if g.role != Role::Leader && g.membership.is_voter(me) => {
                Some(g.last_contact + g.timeout)
            }
            _ => None,
        };
        let want = want.filter(|_| !self.covered(group));
        self.elections.set(group, want);
    }

    /// The group's local state changed: re-decides which claims on it are accepted.
    fn reaccept(&mut self, group: GroupId) {
        let mut folds = Vec::new();
        for h in self.held.values_mut() {
            let covered = h.covers(group);
            let groups = &self.groups;
            if h.reaccept(group, |g, t| Self::accepts(groups, g, t)) && covered {
                folds.push(h.last_heard);
            }
        }
        for at in folds {
            self.fold_contact(group, at);
        }
        self.refresh_timer(group);
    }

    fn on_frame(&mut self, from: NodeId, frame: HeartbeatFrame, now: Instant) {
        let session = frame.session;
        let h = self
            .held
            .entry(from)
            .or_insert_with(|| Held::new(session, now));
        let (heard, was_live) = (h.last_heard, h.live);
        // Groups whose claim changed, and those of them the claim covered until now.
        let mut touched = Vec::new();
        let mut ended = Vec::new();
        let mut note = |group: GroupId, was_accepted: bool| {
            touched.push(group);
            if was_live && was_accepted {
                ended.push(group);
            }
        };
        if h.session() != session {
            for (group, was_accepted) in h.reset(session) {
                note(group, was_accepted);
            }
        }
        // A frame older than one already received renews nothing (it was held back).
        let fresh = h.note_seq(frame.seq);
        let groups = &self.groups;
        let limit = groups.len().saturating_add(self.max_foreign_claims);
        let dropped = h.dropped_foreign;
        let applied = h.apply(
            frame,
            |g, t| Self::accepts(groups, g, t),
            |g| groups.contains_key(&g),
            limit,
        );
        if h.dropped_foreign > dropped {
            self.stats
                .foreign_claims_dropped
                .fetch_add(h.dropped_foreign - dropped, Ordering::Relaxed);
        }
        let applied = match applied {
            Applied::Changed(changed) => {
                for (group, was_accepted) in changed {
                    note(group, was_accepted);
                }
                if fresh {
                    h.last_heard = now;
                    if !h.live {
                        h.live = true;
                        touched.extend(h.accepted_groups());
                    }
                }
                true
            }
            Applied::Ignored => false,
        };
        let (version, rejected) = (h.version(), h.rejected());
        if !applied {
            self.stats.frames_ignored.fetch_add(1, Ordering::Relaxed);
        }
        for group in ended {
            self.fold_contact(group, heard);
        }
        self.ack(from, session, version, rejected);
        touched.sort_unstable();
        touched.dedup();
        for group in touched {
            self.refresh_timer(group);
        }
    }

    fn ack(&self, to: NodeId, session: u64, version: Option<u64>, rejected: Vec<GroupId>) {
        let ack = HeartbeatAck {
            session,
            version,
            rejected,
        };
        let _ = self
            .net
            .send(to, Lane::Heartbeat, 0, WireMsg::HeartbeatAck(ack));
    }

    /// A peer silent for an election timeout no longer covers its groups: their timers run,
    /// counted from its last frame.
    fn check_silence(&mut self, now: Instant) {
        let mut ended = Vec::new();
        for (&peer, h) in self.held.iter_mut() {
            if h.live && now.duration_since(h.last_heard) >= self.election {
                h.live = false;
                debug!(peer, "no heartbeat frame for an election timeout");
                ended.push((h.last_heard, h.accepted_groups()));
            }
        }
        for (heard, groups) in ended {
            for g in groups {
                self.fold_contact(g, heard);
                self.refresh_timer(g);
            }
        }
    }

    fn fire_elections(&mut self, now: Instant) {
        for group in self.elections.take_due(now) {
            let timeout = self.random_timeout();
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            debug!(group, "election timeout");
            if g.control.try_send(Control::ElectionTimeout).is_ok() {
                self.stats.election_timeouts.fetch_add(1, Ordering::Relaxed);
                g.last_contact = now;
                g.timeout = timeout;
            }
            // Re-armed: one timeout later, or at once (next interval) if it did not fit.
            self.refresh_timer(group);
        }
    }

    // ---- honesty (I6) ----

    fn check_probes(&mut self, now: Instant) {
        let now_us = micros_since(self.epoch, now);
        let period = self.probe_period;
        // A probe must have waited this long before its partition can be called stalled.
        let patience = self.stall / 2;
        for group in self.probes.take_due(now) {
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            let woke = g.stats.last_wakeup_us.load(Ordering::Relaxed);
            let mut reclaim = false;
            if g.probe_sent.is_some_and(|sent| woke >= sent) {
                g.probe_sent = None;
                if g.stalled {
                    info!(
                        group,
                        "partition actor progressing again; vouching for it again"
                    );
                    g.stalled = false;
                    g.stats.stalled.store(false, Ordering::Relaxed);
                    reclaim = true;
                }
            }
            let next = match g.probe_sent {
                None => {
                    // A probe that does not fit the control queue counts as sent: a partition
                    // that does not drain its queue is not making progress either.
                    let _ = g.control.try_send(Control::Probe);
                    self.stats.probes_sent.fetch_add(1, Ordering::Relaxed);
                    g.probe_sent = Some(now_us);
                    now + period
                }
                Some(sent) => {
                    let last = self.epoch + Duration::from_micros(woke);
                    let sent_at = self.epoch + Duration::from_micros(sent);
                    let due = (last + self.stall).max(sent_at + patience);
                    if now < due {
                        due
                    } else {
                        if !g.stalled {
                            g.stalled = true;
                            g.stats.stalled.store(true, Ordering::Relaxed);
                            g.stats.stalls.fetch_add(1, Ordering::Relaxed);
                            let silent = now.duration_since(last);
                            warn!(
                                group,
                                ?silent,
                                "partition actor stalled; no longer vouching for it"
                            );
                            reclaim = true;
                        }
                        now + period
                    }
                }
            };
            self.probes.set(group, Some(next));
            if reclaim {
                self.reclaim(group);
            }
        }
    }

    // ---- events ----

    fn on_inbound(&mut self, env: Envelope<WireMsg>) {
        let now = Instant::now();
        match env.msg {
            WireMsg::Heartbeat(frame) => self.on_frame(env.from, frame, now),
            WireMsg::HeartbeatAck(ack) => self.on_ack(env.from, ack, now),
            WireMsg::Raft(_) => {
                warn!(
                    from = env.from,
                    "raft message on the heartbeat lane; dropped"
                );
            }
        }
    }

    fn on_interval(&mut self) {
        let now = Instant::now();
        self.check_probes(now);
        self.send_frames();
        self.check_quorum(now);
        self.check_silence(now);
        self.fire_elections(now);
        self.stats
            .armed_election_timers
            .store(self.elections.len() as u64, Ordering::Relaxed);
    }
}
