//! The smaller owned parts of a partition core: the ballot (term and vote), the election
//! bookkeeping, the local snapshot state, the membership history, persistence gating and the
//! action buffer. Each holds one concern's data; the handlers borrow the parts they need.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::action::Action;
use crate::membership::Membership;
use crate::message::Message;
use crate::rng::SplitMix64;
use crate::types::{Index, NodeId, SnapshotMeta, Term};

/// The durable ballot: the current term and the vote cast in it (Raft paper, Figure 2).
///
/// Invariants (election safety rests on them): the term never decreases, and a vote once cast
/// in a term is never changed within it; moving to a newer term clears it.
#[derive(Debug)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub(crate) struct Ballot {
    term: Term,
    vote: Option<NodeId>,
}

impl Ballot {
    /// The ballot as recovered from storage.
    pub(crate) fn new(term: Term, vote: Option<NodeId>) -> Self {
        Ballot { term, vote }
    }

    /// The current term.
    pub(crate) fn term(&self) -> Term {
        self.term
    }

    /// The node voted for in the current term, if any.
    pub(crate) fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// Moves to `term` with no vote cast in it, if it is newer. Returns whether it was.
    pub(crate) fn enter_term(&mut self, term: Term) -> bool {
        if term <= self.term {
            return false;
        }
        self.term = term;
        self.vote = None;
        true
    }

    /// Casts the current term's vote for `candidate`; a vote already cast for another node in
    /// this term stands (callers grant only when no other vote was cast).
    pub(crate) fn cast_vote(&mut self, candidate: NodeId) {
        debug_assert!(
            self.vote.is_none_or(|v| v == candidate),
            "a second vote in one term"
        );
        if self.vote.is_none() {
            self.vote = Some(candidate);
        }
    }
}

/// Election bookkeeping: the election timer (in ticks), its jitter source and the votes of the
/// (pre-)election under way.
///
/// Invariants: a node's first answer in a round is the one counted (a duplicate or reordered
/// response changes nothing); the jitter is drawn only when the timer is reset, so the sequence
/// of timeouts depends on the seed and the inputs alone (determinism, docs/architecture.md).
#[derive(Debug)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub(crate) struct Election {
    /// Ticks since the timer was last reset (or since the leader was last heard from).
    elapsed: u32,
    /// The timeout for this round: the configured base plus seeded jitter.
    randomized_timeout: u32,
    /// Seeded per node and group, so runs are reproducible.
    rng: SplitMix64,
    /// Votes received in the current (pre-)election.
    votes: BTreeMap<NodeId, bool>,
    /// Ticks since the core was created (saturating): a node that has just started keeps
    /// out of elections for an election timeout when leases are on.
    since_start: u32,
    /// An election timeout came while this node still owed a leader its lease: it campaigns
    /// once the lease is over, unless the leader is heard from again first.
    deferred: bool,
    /// The current election was started by TimeoutNow (a leader transfer): its vote requests,
    /// sent again, say so too.
    transfer: bool,
    /// The newest ReadIndex round heard from a leader: (term, round).
    newest_round: (Term, u64),
    /// The furthest AppendEntries heard from a leader: (term, last index, commit index).
    newest_append: (Term, Index, Index),
    /// Messages from a leader that were news (see `PartitionCore::leader_contacts`).
    contacts: u64,
}

impl Election {
    /// A timer that has not run yet; `reset` draws its first timeout.
    pub(crate) fn new(seed: u64, election_ticks: u32) -> Self {
        Election {
            elapsed: 0,
            randomized_timeout: election_ticks,
            rng: SplitMix64::new(seed),
            votes: BTreeMap::new(),
            since_start: 0,
            deferred: false,
            transfer: false,
            newest_round: (0, 0),
            newest_append: (0, 0, 0),
            contacts: 0,
        }
    }

    /// Model checking only (see `PartitionCore::model_canonical_timers`): the generator back
    /// at `seed`, the timeout at its base, the tick counts capped at the base, the count of
    /// leader contacts at zero.
    #[cfg(feature = "model")]
    pub(crate) fn canonicalize(&mut self, seed: u64, election_ticks: u32) {
        self.rng = SplitMix64::new(seed);
        self.randomized_timeout = election_ticks;
        self.elapsed = self.elapsed.min(election_ticks);
        self.since_start = self.since_start.min(election_ticks);
        // Read only by a runtime, as the difference across one step.
        self.contacts = 0;
    }

    /// Restarts the timer with a fresh timeout in `[base, 2 * base)`.
    pub(crate) fn reset(&mut self, election_ticks: u32) {
        self.elapsed = 0;
        let base = u64::from(election_ticks);
        self.randomized_timeout = (base + self.rng.below(base)) as u32;
    }

    /// One tick passed.
    pub(crate) fn tick(&mut self) {
        self.elapsed = self.elapsed.saturating_add(1);
        self.since_start = self.since_start.saturating_add(1);
    }

    /// Ticks since the core was created (saturating).
    pub(crate) fn since_start(&self) -> u32 {
        self.since_start
    }

    /// True while an election timeout waits for a lease to end.
    pub(crate) fn deferred(&self) -> bool {
        self.deferred
    }

    /// Marks (or clears) an election timeout waiting for a lease to end.
    pub(crate) fn set_deferred(&mut self, deferred: bool) {
        self.deferred = deferred;
    }

    /// Ticks since the timer was last reset or restarted.
    pub(crate) fn elapsed(&self) -> u32 {
        self.elapsed
    }

    /// The timeout of the current round.
    pub(crate) fn randomized_timeout(&self) -> u32 {
        self.randomized_timeout
    }

    /// True once the current round's timeout has passed.
    pub(crate) fn timed_out(&self) -> bool {
        self.elapsed >= self.randomized_timeout
    }

    /// Restarts the count of ticks without drawing a new timeout (the leader was heard from,
    /// or a leader's check-quorum period begins).
    pub(crate) fn restart(&mut self) {
        self.elapsed = 0;
        self.deferred = false;
    }

    /// Forgets the votes of the previous round.
    pub(crate) fn clear_votes(&mut self) {
        self.votes.clear();
    }

    /// Notes a leader's heartbeat of ReadIndex round `round` in `term`: true unless a later
    /// round of that term (or a later term) was heard before. Round 0 (none) is always new.
    pub(crate) fn note_round(&mut self, term: Term, round: u64) -> bool {
        if round == 0 {
            return true;
        }
        if (term, round) > self.newest_round {
            self.newest_round = (term, round);
            true
        } else {
            false
        }
    }

    /// Notes a leader's AppendEntries of `term` reaching `last` with commit index `commit`:
    /// true if it reaches further, or carries a higher commit index, than every earlier one of
    /// its term (or its term is newer).
    pub(crate) fn note_append(&mut self, term: Term, last: Index, commit: Index) -> bool {
        let (t, l, c) = self.newest_append;
        if term > t {
            self.newest_append = (term, last, commit);
            return true;
        }
        if term < t || (last <= l && commit <= c) {
            return false;
        }
        self.newest_append = (term, last.max(l), commit.max(c));
        true
    }

    /// Counts a message from a leader that was news.
    pub(crate) fn contact(&mut self) {
        self.contacts += 1;
    }

    /// Messages from a leader that were news so far.
    pub(crate) fn contacts(&self) -> u64 {
        self.contacts
    }

    /// Whether `from` answered in this round.
    pub(crate) fn answered(&self, from: NodeId) -> bool {
        self.votes.contains_key(&from)
    }

    /// Marks whether the current election came from a leader transfer.
    pub(crate) fn set_transfer(&mut self, transfer: bool) {
        self.transfer = transfer;
    }

    /// Whether the current election came from a leader transfer.
    pub(crate) fn transfer(&self) -> bool {
        self.transfer
    }

    /// Counts `from`'s answer, unless it already answered in this round; returns the votes so far.
    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool) -> &BTreeMap<NodeId, bool> {
        self.votes.entry(from).or_insert(granted);
        &self.votes
    }
}

/// Snapshots on the local side: the latest one held, whether one was asked of the state
/// machine, and the one being received from a leader.
#[derive(Debug)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub(crate) struct Snapshots {
    /// The latest snapshot this node holds.
    pub(crate) meta: SnapshotMeta,
    /// A `TakeSnapshot` is outstanding.
    pub(crate) requested: bool,
    /// After a snapshot that was not taken: none is asked for before this applied index.
    pub(crate) not_before: Index,
    /// The snapshot being received from a leader: its meta and the next expected offset.
    pub(crate) incoming: Option<(SnapshotMeta, u64)>,
}

impl Snapshots {
    /// Asks for a snapshot once `threshold` entries were applied since the last one (`0`:
    /// never), unless one is already asked for. Returns the index to snapshot at.
    pub(crate) fn request_due(&mut self, applied: Index, threshold: u64) -> Option<Index> {
        if threshold == 0 || self.requested || applied < self.not_before {
            return None;
        }
        if applied.saturating_sub(self.meta.index) >= threshold {
            self.requested = true;
            Some(applied)
        } else {
            None
        }
    }

    /// The snapshot asked for was not taken: ask again once `threshold` more entries are
    /// applied (not at once: a state machine that cannot write one would be asked on every
    /// entry).
    pub(crate) fn not_taken(&mut self, applied: Index, threshold: u64) {
        self.requested = false;
        self.not_before = applied.saturating_add(threshold);
    }

    /// A chunk of `len` bytes at `offset` of the snapshot `meta` arrived. Chunks come in order:
    /// offset 0 starts a transfer (a leader may restart one at any time), any other offset must
    /// continue the transfer under way. Returns the offset expected next, or, for a chunk out of
    /// order, `Err` with the offset that was expected (the transfer is then dropped).
    pub(crate) fn accept_chunk(
        &mut self,
        meta: &SnapshotMeta,
        offset: u64,
        len: u64,
        done: bool,
    ) -> Result<u64, u64> {
        let expected = match &self.incoming {
            _ if offset == 0 => 0,
            Some((m, next)) if m == meta => *next,
            _ => u64::MAX,
        };
        if offset != expected {
            self.incoming = None;
            return Err(expected);
        }
        let next_offset = offset.saturating_add(len);
        self.incoming = (!done).then(|| (meta.clone(), next_offset));
        Ok(next_offset)
    }
}

/// The membership history: `base` is in effect at `base_index` (committed); `configs` are the
/// later configuration entries, in log order. The effective membership is the last of them
/// (Raft paper, section 6: a node uses the latest configuration in its log, committed or not).
///
/// Invariant: `effective` is the membership of the last entry of `configs`, or `base` when there
/// is none; `configs` is ascending by index and every index in it is past `base_index`.
#[derive(Debug)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub(crate) struct Members {
    base_index: Index,
    base: Membership,
    configs: Vec<(Index, Membership)>,
    effective: Membership,
}

impl Members {
    /// The history as recovered: `base` at `base_index`, then `configs`.
    pub(crate) fn new(
        base_index: Index,
        base: Membership,
        configs: Vec<(Index, Membership)>,
    ) -> Self {
        let effective = configs.last().map_or_else(|| base.clone(), |c| c.1.clone());
        Members {
            base_index,
            base,
            configs,
            effective,
        }
    }

    /// The effective membership.
    pub(crate) fn effective(&self) -> &Membership {
        &self.effective
    }

    /// The latest committed configuration and its index.
    pub(crate) fn committed(&self) -> (Index, &Membership) {
        (self.base_index, &self.base)
    }

    /// Index of the latest configuration entry (committed or not).
    pub(crate) fn latest_index(&self) -> Index {
        self.configs.last().map_or(self.base_index, |c| c.0)
    }

    /// The nodes of the committed configuration and of the later configuration entries that
    /// the effective configuration no longer has: the nodes a leader is removing.
    pub(crate) fn departing(&self) -> BTreeSet<NodeId> {
        let mut all = self.base.all_nodes();
        for (_, m) in &self.configs {
            all.extend(m.all_nodes());
        }
        let effective = self.effective.all_nodes();
        all.retain(|id| !effective.contains(id));
        all
    }

    /// Records an appended configuration entry. Returns the new effective membership if it
    /// changed.
    pub(crate) fn push(&mut self, index: Index, membership: Membership) -> Option<Membership> {
        self.configs.push((index, membership));
        self.refresh()
    }

    /// Forgets configuration entries from `index` on (the log was truncated there). Returns the
    /// new effective membership if it changed.
    pub(crate) fn truncate_from(&mut self, index: Index) -> Option<Membership> {
        if self.configs.last().is_some_and(|(i, _)| *i >= index) {
            self.configs.retain(|(i, _)| *i < index);
            self.refresh()
        } else {
            None
        }
    }

    /// Configuration entries at or below `commit` become the base.
    pub(crate) fn fold_committed(&mut self, commit: Index) {
        while self.configs.first().is_some_and(|(i, _)| *i <= commit) {
            let (index, membership) = self.configs.remove(0);
            self.base_index = index;
            self.base = membership;
        }
    }

    /// A snapshot at `index` with `membership` was installed. With `retain` the log after it is
    /// kept, and so are its configuration entries. Returns the new effective membership if it
    /// changed.
    pub(crate) fn install_snapshot(
        &mut self,
        index: Index,
        membership: Membership,
        retain: bool,
    ) -> Option<Membership> {
        if retain {
            self.configs.retain(|(i, _)| *i > index);
        } else {
            self.configs.clear();
        }
        self.base_index = index;
        self.base = membership;
        self.refresh()
    }

    fn refresh(&mut self) -> Option<Membership> {
        let effective = self
            .configs
            .last()
            .map_or_else(|| self.base.clone(), |c| c.1.clone());
        if effective == self.effective {
            return None;
        }
        self.effective = effective.clone();
        Some(effective)
    }
}

/// Something held back until a persistence sequence number is durable: persistence before
/// promises (docs/architecture.md).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "model", derive(Hash))]
pub(crate) enum Gated {
    /// A message that promises durable state; dropped if the term changed meanwhile.
    Send { term: Term, msg: Message },
    /// Entries up to `last` are durable once this fires.
    Entries { last: Index },
    /// The candidate's own vote counts once its term and vote are durable.
    SelfVote { term: Term },
}

/// Persistence gating: the sequence numbers of the writes issued to storage, how far storage
/// reported them durable, and what waits for them.
///
/// Invariants: `persisted_seq <= persist_seq`; `hard_state_seq <= persist_seq`; `gated` is
/// sorted by sequence number and holds only numbers past `persisted_seq`.
#[derive(Debug, Default)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub(crate) struct Persistence {
    persist_seq: u64,
    persisted_seq: u64,
    hard_state_seq: u64,
    gated: VecDeque<(u64, Gated)>,
}

/// What storage's report of a durable sequence number means.
pub(crate) enum Durable {
    /// Already known; nothing to do.
    Known,
    /// Never issued; the report is wrong.
    NeverIssued {
        /// The last sequence number issued.
        issued: u64,
    },
    /// New: the gated items it releases can be taken with [`Persistence::pop_durable`].
    Advanced,
}

impl Persistence {
    /// Issues the next sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.persist_seq += 1;
        self.persist_seq
    }

    /// Issues the next sequence number, for a write of the hard state.
    pub(crate) fn next_hard_state_seq(&mut self) -> u64 {
        self.hard_state_seq = self.next_seq();
        self.hard_state_seq
    }

    /// The last sequence number issued.
    pub(crate) fn last_seq(&self) -> u64 {
        self.persist_seq
    }

    /// The sequence number of the latest hard-state write.
    pub(crate) fn hard_state_seq(&self) -> u64 {
        self.hard_state_seq
    }

    /// True if the write numbered `seq` is durable.
    pub(crate) fn is_durable(&self, seq: u64) -> bool {
        seq <= self.persisted_seq
    }

    /// Storage reports every write up to `seq` durable.
    pub(crate) fn persisted(&mut self, seq: u64) -> Durable {
        if seq <= self.persisted_seq {
            Durable::Known
        } else if seq > self.persist_seq {
            Durable::NeverIssued {
                issued: self.persist_seq,
            }
        } else {
            self.persisted_seq = seq;
            Durable::Advanced
        }
    }

    /// Holds `item` until `seq` is durable; hands it back if it already is.
    pub(crate) fn gate(&mut self, seq: u64, item: Gated) -> Option<Gated> {
        if self.is_durable(seq) {
            return Some(item);
        }
        let pos = self.gated.partition_point(|(s, _)| *s <= seq);
        self.gated.insert(pos, (seq, item));
        None
    }

    /// The next held item whose write is durable, in sequence order.
    pub(crate) fn pop_durable(&mut self) -> Option<Gated> {
        if self
            .gated
            .front()
            .is_some_and(|(s, _)| *s <= self.persisted_seq)
        {
            self.gated.pop_front().map(|(_, item)| item)
        } else {
            None
        }
    }

    /// The log was truncated after `last`: pending durability marks past it are capped.
    pub(crate) fn cap_entries(&mut self, last: Index) {
        for (_, g) in self.gated.iter_mut() {
            if let Gated::Entries { last: l } = g {
                *l = (*l).min(last);
            }
        }
    }
}

/// The actions produced since the runtime last took them. A leader's `Replicate` is coalesced:
/// one per batch of inputs, with the log's state at the time it is taken.
#[derive(Debug, Default)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub(crate) struct Output {
    actions: Vec<Action>,
    replicate_dirty: bool,
}

impl Output {
    /// Queues an action.
    pub(crate) fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// The log or commit index changed: the replicators need a fresh `Replicate`.
    pub(crate) fn mark_replicate(&mut self) {
        self.replicate_dirty = true;
    }

    /// Clears the `Replicate` mark; returns whether it was set.
    pub(crate) fn take_replicate(&mut self) -> bool {
        std::mem::take(&mut self.replicate_dirty)
    }

    /// Drains the queued actions.
    pub(crate) fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// True if anything waits to be taken.
    pub(crate) fn is_pending(&self) -> bool {
        !self.actions.is_empty() || self.replicate_dirty
    }

    /// Announces that entries up to `index` may be applied. Only the latest value matters, so
    /// an `Apply` already queued in this batch is raised instead of adding another.
    pub(crate) fn apply(&mut self, index: Index) {
        if let Some(Action::Apply { index: queued }) = self
            .actions
            .iter_mut()
            .rev()
            .find(|a| matches!(a, Action::Apply { .. }))
        {
            *queued = index;
        } else {
            self.actions.push(Action::Apply { index });
        }
    }
}
