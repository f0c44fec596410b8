//! `LeaderState`: the part of a partition core that exists only while it leads — what it knows
//! of each peer, the ReadIndex rounds and reads waiting on them, and a leader transfer under way.
//!
//! The quorum questions a leader asks (how far a quorum holds the log, whether a quorum was
//! heard from, which reads a quorum confirmed) are answered here from this part and the
//! membership alone, so the handlers that ask them show what they depend on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::membership::Membership;
use crate::quorum::{committed_index, has_quorum};
use crate::types::{Index, NodeId};

/// What the leader knows of one peer.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "model", derive(Hash))]
struct PeerProgress {
    /// Highest index known replicated (and durable) on the peer. Invariant: <= last index.
    matched: Index,
    /// Heard from since the last check-quorum period.
    active: bool,
    /// Highest ReadIndex round the peer acknowledged.
    read_ack: u64,
}

/// A node a configuration removed, still replicated to until it holds the configuration's
/// entry, then told it was removed ([`crate::MessageBody::Removed`]): one this leader's log
/// removes, or one a committed configuration had removed before this leader was elected and
/// that it heard from ([`LeaderState::retire`]).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "model", derive(Hash))]
struct Retiring {
    /// Index of the configuration entry that removed it.
    index: Index,
    /// Ticks since that entry committed.
    ticks: u32,
    /// Removal notices sent to it.
    notices: u32,
}

/// A leader transfer under way.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "model", derive(Hash))]
struct Transfer {
    /// The voter that is to take over.
    target: NodeId,
    /// Ticks since the transfer started.
    elapsed: u32,
    /// TimeoutNow went out to the target.
    timeout_now_sent: bool,
}

/// A read waiting for confirmation.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "model", derive(Hash))]
pub(crate) struct PendingRead {
    /// The caller's identifier of the read.
    pub(crate) ctx: u64,
    /// The read index: the state machine must have applied this far before the read is served.
    pub(crate) index: Index,
    /// The ReadIndex round that must be confirmed by a quorum (0: none needed).
    pub(crate) seq: u64,
}

/// State that exists only while leading. The fields are private: the handlers ask and tell it
/// through the methods below.
///
/// Invariants: `progress` holds exactly the other nodes of the effective membership and the
/// retiring nodes (kept by `sync_peers` and `tick_retiring`); no retiring node is in the
/// effective membership; a peer's `matched` never decreases and never passes the leader's last index
/// (the caller clamps); `pending_reads` is in registration order, so their rounds and indices
/// never decrease; at most one TimeoutNow goes out per transfer.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct LeaderState {
    progress: BTreeMap<NodeId, PeerProgress>,
    /// Nodes removed by a configuration entry, still replicated to until they know it.
    retiring: BTreeMap<NodeId, Retiring>,
    heartbeat_elapsed: u32,
    /// Index of this term's no-op: reads wait until it commits.
    noop_index: Index,
    transfer: Option<Transfer>,
    read_seq: u64,
    pending_reads: VecDeque<PendingRead>,
    /// The leader's own clock for its lease: ticks since it took office.
    now: u64,
    /// How long a lease lasts from the round that confirmed it, in ticks (0: leases are off).
    lease_ticks: u64,
    /// ReadIndex rounds not yet confirmed, oldest first, at most one per tick: the first round
    /// started in a tick and that tick. A quorum that confirms a round at least as new as
    /// `(seq, at)` heard from this leader at or after tick `at`. Rounds older than a lease are
    /// dropped: they can no longer give a lease that still holds.
    rounds: VecDeque<(u64, u64)>,
    /// The tick of the newest confirmed round: the lease runs from there.
    lease_from: Option<u64>,
    /// A TimeoutNow went out in this term: its target may be elected without waiting for any
    /// lease, so this leader serves no lease read again.
    lease_revoked: bool,
    /// Lease reads waiting for the state machine to apply their index: `(ctx, index)`, indices
    /// never decreasing (each is the commit index when the read came).
    lease_reads: VecDeque<(u64, Index)>,
}

impl LeaderState {
    /// The state of a new leader: every other node of `membership` a peer, presumed active, and
    /// the `departing` nodes retiring (removed by the configuration entry at `config_index`);
    /// its leases last `lease_ticks` (0: no leases).
    pub(crate) fn new(
        me: NodeId,
        membership: &Membership,
        departing: &BTreeSet<NodeId>,
        config_index: Index,
        lease_ticks: u32,
    ) -> Self {
        let mut lead = LeaderState {
            lease_ticks: u64::from(lease_ticks),
            ..LeaderState::default()
        };
        lead.sync_peers(me, membership, departing, config_index);
        lead
    }

    /// The index of this term's no-op.
    pub(crate) fn noop_index(&self) -> Index {
        self.noop_index
    }

    /// Records the index of this term's no-op; reads wait until it commits.
    pub(crate) fn set_noop_index(&mut self, index: Index) {
        self.noop_index = index;
    }

    /// The acknowledged match index of `peer`, if it is one.
    pub(crate) fn matched_of(&self, peer: NodeId) -> Option<Index> {
        self.progress.get(&peer).map(|p| p.matched)
    }

    /// Each peer's acknowledged match index.
    pub(crate) fn matched(&self) -> BTreeMap<NodeId, Index> {
        self.progress
            .iter()
            .map(|(id, p)| (*id, p.matched))
            .collect()
    }

    /// `peer` was heard from (for check-quorum).
    pub(crate) fn mark_active(&mut self, peer: NodeId) {
        if let Some(p) = self.progress.get_mut(&peer) {
            p.active = true;
        }
    }

    /// `peer` holds the log up to `matched` (already clamped at the leader's last index); it was
    /// heard from. Returns `None` for a node outside the configuration, otherwise whether its
    /// match index advanced.
    pub(crate) fn record_match(&mut self, peer: NodeId, matched: Index) -> Option<bool> {
        let p = self.progress.get_mut(&peer)?;
        p.active = true;
        if matched > p.matched {
            p.matched = matched;
            Some(true)
        } else {
            Some(false)
        }
    }

    /// `peer` acknowledged a heartbeat of ReadIndex round `read_seq`; it was heard from.
    /// Returns true if that confirms a round it had not confirmed before.
    pub(crate) fn record_heartbeat_ack(&mut self, peer: NodeId, read_seq: u64) -> bool {
        let Some(p) = self.progress.get_mut(&peer) else {
            return false;
        };
        p.active = true;
        if read_seq > p.read_ack {
            p.read_ack = read_seq;
            true
        } else {
            false
        }
    }

    /// The latest ReadIndex round, carried by every heartbeat.
    pub(crate) fn read_seq(&self) -> u64 {
        self.read_seq
    }

    /// True while a leader transfer is under way (proposals are refused meanwhile).
    pub(crate) fn transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// Starts a transfer to `target`. Returns false if one to the same target is already under
    /// way (it keeps its deadline); a transfer to another target replaces it.
    pub(crate) fn start_transfer(&mut self, target: NodeId) -> bool {
        if self.transfer.as_ref().is_some_and(|t| t.target == target) {
            return false;
        }
        self.transfer = Some(Transfer {
            target,
            elapsed: 0,
            timeout_now_sent: false,
        });
        true
    }

    /// Drops the transfer under way, if any.
    pub(crate) fn abort_transfer(&mut self) {
        self.transfer = None;
    }

    /// Takes every pending read, ReadIndex and lease (leadership is lost); returns their
    /// contexts, in order.
    pub(crate) fn drain_reads(&mut self) -> Vec<u64> {
        let mut ctxs: Vec<u64> = self.pending_reads.drain(..).map(|r| r.ctx).collect();
        ctxs.extend(self.lease_reads.drain(..).map(|(ctx, _)| ctx));
        ctxs
    }

    /// Reads waiting, of both kinds.
    pub(crate) fn reads_waiting(&self) -> usize {
        self.pending_reads.len() + self.lease_reads.len()
    }

    /// Adds peers that joined the configuration `membership`; the `departing` nodes (which it
    /// no longer has) stay peers as retiring nodes, removed by the entry at `config_index`,
    /// until [`LeaderState::tick_retiring`] lets them go. Returns whether the set of peers
    /// changed. A lease confirmed by the former configuration ends: the next round confirms
    /// one with the new.
    pub(crate) fn sync_peers(
        &mut self,
        me: NodeId,
        membership: &Membership,
        departing: &BTreeSet<NodeId>,
        config_index: Index,
    ) -> bool {
        self.lease_from = None;
        self.rounds.clear();
        let all = membership.all_nodes();
        let before = self.progress.len();
        self.retiring.retain(|id, _| !all.contains(id));
        for &id in departing {
            if id != me && !all.contains(&id) {
                self.retiring.entry(id).or_insert(Retiring {
                    index: config_index,
                    ticks: 0,
                    notices: 0,
                });
            }
        }
        let retiring = &self.retiring;
        self.progress
            .retain(|id, _| all.contains(id) || retiring.contains_key(id));
        let mut changed = self.progress.len() != before;
        for id in all.into_iter().chain(self.retiring.keys().copied()) {
            if id != me && !self.progress.contains_key(&id) {
                self.progress.insert(
                    id,
                    PeerProgress {
                        active: true,
                        ..Default::default()
                    },
                );
                changed = true;
            }
        }
        changed
    }

    /// Makes `id` a retiring peer, removed by the configuration entry at `index` (committed):
    /// replicated to until it holds that entry, then told, as [`LeaderState::sync_peers`]
    /// does for the nodes a configuration change removes. For a node that no configuration
    /// of this leader names any more (the caller checks). Returns false, changing nothing,
    /// if `id` is this node or a peer already.
    pub(crate) fn retire(&mut self, me: NodeId, id: NodeId, index: Index) -> bool {
        if id == me || self.progress.contains_key(&id) {
            return false;
        }
        self.retiring.insert(
            id,
            Retiring {
                index,
                ticks: 0,
                notices: 0,
            },
        );
        self.progress.insert(
            id,
            PeerProgress {
                active: true,
                ..Default::default()
            },
        );
        true
    }

    /// Every node this leader replicates to: the members and the retiring nodes.
    pub(crate) fn peers(&self) -> BTreeSet<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// True while a removed node is still being told of its removal.
    pub(crate) fn has_retiring(&self) -> bool {
        !self.retiring.is_empty()
    }

    /// The index of the configuration entry that removed `id`, while it is retiring.
    pub(crate) fn retiring_index(&self, id: NodeId) -> Option<Index> {
        self.retiring.get(&id).map(|r| r.index)
    }

    /// One tick for the retiring nodes, the commit index being `commit`. Returns the removal
    /// notices to send — `(node, index of the entry that removed it)` for each retiring node
    /// that holds that entry once it committed, one per tick — and whether any node was let
    /// go: once it was sent `election_ticks` notices, or four election timeouts after the
    /// commit if it never acknowledged the entry (it is unreachable; it then stays idle, a
    /// non-member, until its operator removes the group).
    pub(crate) fn tick_retiring(
        &mut self,
        commit: Index,
        election_ticks: u32,
    ) -> (Vec<(NodeId, Index)>, bool) {
        if self.retiring.is_empty() {
            return (Vec::new(), false);
        }
        let progress = &self.progress;
        let mut notices = Vec::new();
        let mut gone = Vec::new();
        for (&id, r) in self.retiring.iter_mut() {
            if commit < r.index {
                continue;
            }
            r.ticks = r.ticks.saturating_add(1);
            if progress.get(&id).is_some_and(|p| p.matched >= r.index) {
                notices.push((id, r.index));
                r.notices = r.notices.saturating_add(1);
            }
            if r.notices >= election_ticks || r.ticks >= election_ticks.saturating_mul(4) {
                gone.push(id);
            }
        }
        for id in &gone {
            self.retiring.remove(id);
            self.progress.remove(id);
        }
        (notices, !gone.is_empty())
    }

    /// The highest index a quorum of `membership` holds. This node (`me`) counts only up to
    /// `durable`, its own durable index; a peer counts up to its acknowledged match.
    pub(crate) fn quorum_matched(
        &self,
        me: NodeId,
        durable: Index,
        membership: &Membership,
    ) -> Index {
        committed_index(membership, |id| {
            if id == me {
                durable
            } else {
                self.progress.get(&id).map_or(0, |p| p.matched)
            }
        })
    }

    /// True if the peers heard from since the last check, plus this node (`me`), form a quorum.
    /// Resets the activity marks for the next period.
    pub(crate) fn check_quorum(&mut self, me: NodeId, membership: &Membership) -> bool {
        let progress = &self.progress;
        let ok = has_quorum(membership, |n| {
            n == me || progress.get(&n).is_some_and(|p| p.active)
        });
        for p in self.progress.values_mut() {
            p.active = false;
        }
        ok
    }

    /// Model checking only (see `PartitionCore::model_canonical_timers`, external timers and
    /// no lease reads): the heartbeat counter and the lease clock back to zero, and every peer
    /// marked active (read only by the core's own check-quorum): nothing reads them then.
    #[cfg(feature = "model")]
    pub(crate) fn canonicalize_timers(&mut self) {
        self.heartbeat_elapsed = 0;
        for p in self.progress.values_mut() {
            p.active = true;
        }
        if self.lease_ticks == 0 {
            self.now = 0;
        }
    }

    /// Advances the leader's own timers by one tick. Returns whether a heartbeat round is due,
    /// and the target of a leader transfer that has just run out of time (it is dropped: a
    /// transfer that cannot finish within an election timeout would block proposals for good).
    pub(crate) fn tick(
        &mut self,
        heartbeat_ticks: u32,
        election_ticks: u32,
    ) -> (bool, Option<NodeId>) {
        self.now += 1;
        self.heartbeat_elapsed += 1;
        let heartbeat_due = self.heartbeat_elapsed >= heartbeat_ticks;
        if heartbeat_due {
            self.heartbeat_elapsed = 0;
        }
        let mut expired = None;
        if let Some(transfer) = self.transfer.as_mut() {
            transfer.elapsed += 1;
            if transfer.elapsed >= election_ticks {
                expired = Some(transfer.target);
                self.transfer = None;
            }
        }
        (heartbeat_due, expired)
    }

    /// The commit index `peer` may be told in a heartbeat: `commit` capped at what the peer is
    /// known to hold, so a follower never learns a commit index past entries it may lack.
    pub(crate) fn heartbeat_commit(&self, peer: NodeId, commit: Index) -> Option<Index> {
        self.progress.get(&peer).map(|p| commit.min(p.matched))
    }

    /// [`LeaderState::heartbeat_commit`] for every peer.
    pub(crate) fn heartbeat_commits(&self, commit: Index) -> Vec<(NodeId, Index)> {
        self.progress
            .iter()
            .map(|(id, p)| (*id, commit.min(p.matched)))
            .collect()
    }

    /// The target of the transfer under way, once its log has caught up to `last` and it has
    /// not been told yet; it is marked as told. TimeoutNow goes out at most once per transfer.
    pub(crate) fn take_timeout_now(&mut self, last: Index) -> Option<NodeId> {
        let t = self.transfer.as_mut()?;
        if t.timeout_now_sent || self.progress.get(&t.target).map_or(0, |p| p.matched) < last {
            return None;
        }
        t.timeout_now_sent = true;
        self.lease_revoked = true;
        Some(t.target)
    }

    /// The voter of `membership` that holds the most of the log: the quickest successor when
    /// this leader leaves the configuration.
    pub(crate) fn best_successor(&self, membership: &Membership) -> Option<NodeId> {
        self.progress
            .iter()
            .filter(|(id, _)| membership.voters.contains(id))
            .max_by_key(|(_, p)| p.matched)
            .map(|(id, _)| *id)
    }

    /// Registers a ReadIndex request at `commit` (or at this term's no-op, if that is later:
    /// until it commits the leader may not know the latest commit). With a single voter no
    /// round is needed; otherwise a new round starts. Returns whether a heartbeat round must
    /// go out to confirm it, or `None` if `limit` reads are already waiting.
    pub(crate) fn register_read(
        &mut self,
        ctx: u64,
        commit: Index,
        single_voter: bool,
        limit: usize,
    ) -> Option<bool> {
        if self.reads_waiting() >= limit {
            return None;
        }
        let index = commit.max(self.noop_index);
        let seq = if single_voter { 0 } else { self.start_round() };
        self.pending_reads
            .push_back(PendingRead { ctx, index, seq });
        Some(!single_voter)
    }

    /// Takes the reads that are ready, in order: their round is confirmed by a quorum of
    /// `membership`, this term's no-op has committed, and the state machine has applied their
    /// index. Reads are served in order, so the first one that is not ready stops the rest.
    pub(crate) fn take_ready_reads(
        &mut self,
        me: NodeId,
        membership: &Membership,
        commit: Index,
        applied: Index,
    ) -> Vec<PendingRead> {
        if self.pending_reads.is_empty() || commit < self.noop_index {
            return Vec::new();
        }
        let confirmed = self.confirmed_read_seq(me, membership);
        let mut ready = Vec::new();
        while let Some(r) = self.pending_reads.front() {
            if r.seq > confirmed || r.index > applied {
                break;
            }
            ready.extend(self.pending_reads.pop_front());
        }
        ready
    }

    /// Starts a new ReadIndex round at the current tick; returns its number. The caller sends
    /// the heartbeats that carry it.
    fn start_round(&mut self) -> u64 {
        self.read_seq += 1;
        if self.lease_ticks > 0 && self.rounds.back().is_none_or(|&(_, at)| at < self.now) {
            self.rounds.push_back((self.read_seq, self.now));
            while self
                .rounds
                .front()
                .is_some_and(|&(_, at)| at + self.lease_ticks <= self.now)
            {
                self.rounds.pop_front();
            }
        }
        self.read_seq
    }

    /// Moves the lease forward to the newest round a quorum of `membership` confirmed.
    pub(crate) fn confirm_lease(&mut self, me: NodeId, membership: &Membership) {
        let Some(&(first, _)) = self.rounds.front() else {
            return;
        };
        let confirmed = self.confirmed_read_seq(me, membership);
        if confirmed < first {
            return;
        }
        while let Some(&(seq, at)) = self.rounds.front() {
            if seq > confirmed {
                break;
            }
            self.lease_from = Some(self.lease_from.map_or(at, |from| from.max(at)));
            self.rounds.pop_front();
        }
    }

    /// True while the lease holds: a round started less than `lease_ticks` ago was confirmed
    /// by a quorum, no transfer is under way and none was started in this term. (Whether an
    /// entry of this term has committed is the caller's question.)
    pub(crate) fn lease_holds(&self) -> bool {
        !self.lease_revoked
            && self.transfer.is_none()
            && self
                .lease_from
                .is_some_and(|from| self.now < from + self.lease_ticks)
    }

    /// Starts a round to renew the lease when less than half of it is left and no round went
    /// out in this tick yet; returns whether it did (the caller sends the heartbeats).
    pub(crate) fn renew_lease(&mut self) -> bool {
        let Some(from) = self.lease_from else {
            return false;
        };
        let left = (from + self.lease_ticks).saturating_sub(self.now);
        if left * 2 > self.lease_ticks || self.rounds.back().is_some_and(|&(_, at)| at == self.now)
        {
            return false;
        }
        self.start_round();
        true
    }

    /// Registers a lease read at `index` (the commit index now), or `false` if `limit` reads
    /// are waiting already.
    pub(crate) fn register_lease_read(&mut self, ctx: u64, index: Index, limit: usize) -> bool {
        if self.reads_waiting() >= limit {
            return false;
        }
        self.lease_reads.push_back((ctx, index));
        true
    }

    /// Takes the lease reads whose index the state machine has applied, in order.
    pub(crate) fn take_ready_lease_reads(&mut self, applied: Index) -> Vec<(u64, Index)> {
        let mut ready = Vec::new();
        while self
            .lease_reads
            .front()
            .is_some_and(|&(_, index)| index <= applied)
        {
            ready.extend(self.lease_reads.pop_front());
        }
        ready
    }

    /// The highest ReadIndex round a quorum confirmed; this node (`me`) confirms its own latest.
    fn confirmed_read_seq(&self, me: NodeId, membership: &Membership) -> u64 {
        committed_index(membership, |id| {
            if id == me {
                self.read_seq
            } else {
                self.progress.get(&id).map_or(0, |p| p.read_ack)
            }
        })
    }
}
