//! `PartitionCore`: one Raft group's protocol state on one node.
//!
//! The state is held in owned parts, each in its own file with its invariants:
//! - `log_state.rs` — `LogState`: the log's terms, the commit index (one writer), and the
//!   durable, announced and applied indices;
//! - `lead_state.rs` — `LeaderState` (fields private): peer progress, ReadIndex rounds, a leader
//!   transfer, the quorum questions asked of them, the leader's timers and heartbeat contents;
//! - `parts.rs` — the ballot (term, vote), the election timer and votes, local snapshots, the
//!   membership history, persistence gating and the action buffer.
//!
//! The handlers, one concern per file, and the parts they read or write (besides the role, and
//! `ballot` for the term every message carries):
//! - `mod.rs` — construction, inputs that are not messages, persistence gating and the output:
//!   `log`, `persist`, `out`, `members`;
//! - `election.rs` — ticks, pre-vote, votes, role transitions, check-quorum, TimeoutNow:
//!   `election`, `members`, `log` (up-to-dateness), `lead` (created and dropped);
//! - `follower.rs` — AppendEntries, heartbeats and snapshot installation on the receiving side:
//!   `log`, `members`, `snapshots`;
//! - `leader.rs` — proposals, progress, the commit rule, heartbeats, leader transfer, membership
//!   changes: `lead`, `log`, `members`;
//! - `read.rs` — ReadIndex and lease reads: `lead`, `log` (commit and applied), `members`;
//! - `snapshot.rs` — snapshot and compaction decisions on the local side: `snapshots`, `log`;
//! - `step.rs` — the message dispatcher: the role and leader, `election` (the timer), `lead`
//!   (peer activity).

mod election;
mod follower;
mod lead_state;
mod leader;
mod log_state;
#[cfg(feature = "model")]
mod model;
mod parts;
mod read;
mod snapshot;
mod step;

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, info, warn};

use crate::action::Action;
use crate::config::Config;
use crate::entries::Entries;
use crate::error::Error;
use crate::log_meta::LogTerms;
use crate::membership::Membership;
use crate::message::{Message, MessageBody};
use crate::rng::SplitMix64;
use crate::types::{
    Entry, EntryPayload, GroupId, HardState, Index, NodeId, Role, SnapshotMeta, Term,
};

pub(crate) use lead_state::LeaderState;
pub use leader::Proposed;
use log_state::LogState;
#[cfg(feature = "model-bugs")]
pub use model::Bug;
use parts::{Ballot, Durable, Election, Gated, Members, Output, Persistence, Snapshots};

/// Everything a partition core needs to start: what storage recovered, or a fresh group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialState {
    /// Durable term, vote and (informational) commit index.
    pub hard_state: HardState,
    /// The latest durable snapshot (index 0 with the initial membership for a new group).
    pub snapshot: SnapshotMeta,
    /// Terms of the durable log entries; entries up to `log.snapshot_index()` are compacted.
    pub log: LogTerms,
    /// Configuration entries found in the durable log after the snapshot, ascending by index.
    pub config_entries: Vec<(Index, Membership)>,
}

impl InitialState {
    /// A brand-new group with the given initial membership and an empty log.
    pub fn bootstrap(membership: Membership) -> Self {
        InitialState {
            hard_state: HardState::default(),
            snapshot: SnapshotMeta {
                index: 0,
                term: 0,
                membership,
            },
            log: LogTerms::new(0, 0),
            config_entries: Vec::new(),
        }
    }

    /// A node joining an existing group: it knows nothing and waits for a leader to send it the
    /// log or a snapshot. It never campaigns until a configuration makes it a voter.
    pub fn joining() -> Self {
        InitialState::bootstrap(Membership::default())
    }

    /// Rebuilds the state from a recovered snapshot and the durable entries that follow it
    /// (entries kept behind the snapshot for lagging followers may precede it).
    pub fn recover(
        hard_state: HardState,
        snapshot: SnapshotMeta,
        entries: &[Entry],
    ) -> Result<Self, Error> {
        let (start_index, start_term, kept) = match (entries.first(), entries.last()) {
            (Some(first), _) if first.index > snapshot.index + 1 => {
                return Err(Error::InvalidState(
                    "gap between the snapshot and the first entry",
                ));
            }
            (Some(_), Some(last)) if last.index > snapshot.index => {
                let first = &entries[0];
                if first.index == snapshot.index + 1 {
                    (snapshot.index, snapshot.term, entries)
                } else {
                    // Trailing entries kept behind the snapshot. The term of the entry before
                    // the first one is unknown; it is only consulted for indices the whole
                    // group has committed, where the follower skips the check.
                    (first.index - 1, first.term, entries)
                }
            }
            // No entries, or all of them covered by the snapshot.
            _ => (snapshot.index, snapshot.term, &entries[..0]),
        };
        let log = LogTerms::from_entries(
            start_index,
            start_term,
            kept.iter().map(|e| (e.index, e.term)),
        )
        .ok_or(Error::InvalidState(
            "log entries are not consecutive or terms decrease",
        ))?;
        if log.term(snapshot.index) != Some(snapshot.term) {
            return Err(Error::InvalidState(
                "the log disagrees with the snapshot's term",
            ));
        }
        let after: Vec<Entry> = kept
            .iter()
            .filter(|e| e.index > snapshot.index)
            .cloned()
            .collect();
        Ok(InitialState {
            hard_state,
            config_entries: config_entries(&after),
            snapshot,
            log,
        })
    }
}

fn config_entries(entries: &[Entry]) -> Vec<(Index, Membership)> {
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some((e.index, m.clone())),
            _ => None,
        })
        .collect()
}

/// The protocol state of one Raft group on one node. See the crate docs for the contract.
///
/// The state is split into owned parts, one concern each, so that what a handler reads and
/// writes is visible from the parts it touches:
/// - `ballot` — term and vote (durable);
/// - `log` — the log's terms and the commit, durable, announced and applied indices;
/// - `members` — the membership history and the effective configuration;
/// - `snapshots` — the latest snapshot, an outstanding request, one being received;
/// - `election` — the election timer and the votes of an election under way;
/// - `lead` — what only a leader has: peer progress, ReadIndex rounds, a transfer;
/// - `persist` — sequence numbers of storage writes and what waits for them;
/// - `out` — the actions for the runtime.
#[derive(Debug)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub struct PartitionCore {
    pub(crate) cfg: Config,
    pub(crate) group: GroupId,
    pub(crate) id: NodeId,

    /// Term and vote; mirrors what storage holds once persisted.
    pub(crate) ballot: Ballot,
    /// The log's terms, and the commit, durable, announced and applied indices.
    pub(crate) log: LogState,

    // Volatile state.
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,

    /// The membership history and the effective configuration.
    pub(crate) members: Members,
    /// Snapshots on the local side.
    pub(crate) snapshots: Snapshots,
    /// Election timer and votes.
    pub(crate) election: Election,
    /// Leader-only state; `Some` exactly while leading.
    pub(crate) lead: Option<LeaderState>,
    /// This node learned it was removed from the group (told once, [`Action::Removed`]).
    removed: bool,
    /// This node has held a committed configuration that names it (since this core was
    /// created). Once its own log leaves it out it is `stranded` and asks whether it was
    /// removed; a node that joins does not, while no configuration has named it yet.
    was_member: bool,
    /// Persistence gating.
    persist: Persistence,
    /// The actions for the runtime.
    out: Output,
    /// A deliberately broken rule (model checking only; `Bug::None` unless a test sets one).
    #[cfg(feature = "model-bugs")]
    pub(crate) bug: model::Bug,
    /// With `Bug::ConfigAtCommit`: configuration entries appended and not yet in effect.
    #[cfg(feature = "model-bugs")]
    pub(crate) deferred_configs: Vec<(Index, Membership)>,
}

/// Read-only summary of a core, for metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// The vote cast in this term.
    pub vote: Option<NodeId>,
    /// The leader this node follows (itself when leader).
    pub leader: Option<NodeId>,
    /// First index still in the log.
    pub first_index: Index,
    /// Last log index.
    pub last_index: Index,
    /// Term of the last entry.
    pub last_term: Term,
    /// Commit index.
    pub commit: Index,
    /// Applied index, as reported by the runtime.
    pub applied: Index,
    /// Highest index durable here.
    pub durable_index: Index,
    /// The effective membership.
    pub membership: Membership,
    /// Leader only: each peer's acknowledged match index.
    pub matched: BTreeMap<NodeId, Index>,
}

impl PartitionCore {
    /// Creates the core of `group` on node `cfg.id` from recovered (or bootstrap) state.
    pub fn new(cfg: Config, group: GroupId, init: InitialState) -> Result<Self, Error> {
        cfg.validate()?;
        init.snapshot.membership.validate().or_else(|e| {
            // An empty membership is allowed: a joining node learns it from the leader.
            if init.snapshot.membership == Membership::default() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let log = init.log;
        if init.snapshot.index > log.last_index() {
            return Err(Error::InvalidState(
                "the snapshot is past the end of the log",
            ));
        }
        if log
            .term(init.snapshot.index)
            .is_some_and(|t| t != init.snapshot.term)
        {
            return Err(Error::InvalidState(
                "the log disagrees with the snapshot's term",
            ));
        }
        if init.hard_state.term < log.last_term() {
            return Err(Error::InvalidState(
                "the hard state's term is behind the log",
            ));
        }
        if init.config_entries.windows(2).any(|w| w[0].0 >= w[1].0)
            || init
                .config_entries
                .iter()
                .any(|(i, _)| *i <= init.snapshot.index || *i > log.last_index())
        {
            return Err(Error::InvalidState(
                "configuration entries are out of range or order",
            ));
        }
        let seed = SplitMix64::derive(cfg.seed, &[cfg.id, group]);
        let log = LogState::new(log, init.hard_state.commit, init.snapshot.index);
        let mut core = PartitionCore {
            id: cfg.id,
            group,
            ballot: Ballot::new(init.hard_state.term, init.hard_state.vote),
            role: Role::Follower,
            leader: None,
            members: Members::new(
                init.snapshot.index,
                init.snapshot.membership.clone(),
                init.config_entries,
            ),
            snapshots: Snapshots {
                meta: init.snapshot,
                requested: false,
                not_before: 0,
                incoming: None,
            },
            election: Election::new(seed, cfg.election_ticks),
            persist: Persistence::default(),
            lead: None,
            removed: false,
            was_member: false,
            out: Output::default(),
            log,
            cfg,
            #[cfg(feature = "model-bugs")]
            bug: model::Bug::None,
            #[cfg(feature = "model-bugs")]
            deferred_configs: Vec::new(),
        };
        core.fold_committed_configs();
        core.reset_election_timer();
        core.maybe_apply();
        Ok(core)
    }

    /// Drains the actions produced so far. Call after every input.
    pub fn take_actions(&mut self) -> Vec<Action> {
        // The mark is cleared whatever the role: a leader that stepped down owes no Replicate.
        if self.out.take_replicate() && self.role == Role::Leader {
            self.out.push(Action::Replicate {
                term: self.ballot.term(),
                first_index: self.log.first_index(),
                last_index: self.log.last_index(),
                commit: self.log.commit(),
            });
        }
        self.out.take()
    }

    /// True if actions are waiting to be taken.
    pub fn has_actions(&self) -> bool {
        self.out.is_pending()
    }

    /// Storage reports that every persistence action up to and including `seq` is durable.
    pub fn persisted(&mut self, seq: u64) {
        match self.persist.persisted(seq) {
            Durable::Known => return,
            Durable::NeverIssued { issued } => {
                warn!(
                    group = self.group,
                    seq, issued, "persisted() for a sequence never issued; ignored"
                );
                return;
            }
            Durable::Advanced => {}
        }
        while let Some(gated) = self.persist.pop_durable() {
            self.release(gated);
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.maybe_apply();
    }

    /// The runtime applied every entry up to `index` to the state machine.
    pub fn applied(&mut self, index: Index) {
        if index <= self.log.applied() {
            return;
        }
        if index > self.log.commit() {
            warn!(
                group = self.group,
                index,
                commit = self.log.commit(),
                "applied() past the commit index; clamped"
            );
        }
        self.log.record_applied(index);
        self.release_reads();
        self.maybe_request_snapshot();
    }

    /// A summary of the core's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role(),
            term: self.ballot.term(),
            vote: self.ballot.vote(),
            leader: self.leader,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            commit: self.log.commit(),
            applied: self.log.applied(),
            durable_index: self.log.durable_index(),
            membership: self.members.effective().clone(),
            matched: self
                .lead
                .as_ref()
                .map(LeaderState::matched)
                .unwrap_or_default(),
        }
    }

    /// The current role. A follower that is not a voter reports [`Role::Learner`].
    pub fn role(&self) -> Role {
        if self.role == Role::Follower && !self.members.effective().is_voter(self.id) {
            Role::Learner
        } else {
            self.role
        }
    }

    /// The election timer: `(ticks elapsed, randomized timeout)`.
    pub fn election_timer(&self) -> (u32, u32) {
        (self.election.elapsed(), self.election.randomized_timeout())
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.ballot.term()
    }

    /// The leader this node believes in.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The commit index.
    pub fn commit_index(&self) -> Index {
        self.log.commit()
    }

    /// The log's term index (terms of every entry, no payloads).
    pub fn log(&self) -> &LogTerms {
        self.log.terms()
    }

    /// The effective membership: the latest configuration in the log, committed or not.
    pub fn membership(&self) -> &Membership {
        self.members.effective()
    }

    /// The latest committed configuration and the index of its entry (0 for the initial one).
    pub fn committed_membership(&self) -> (Index, &Membership) {
        self.members.committed()
    }

    /// Index of the latest configuration entry in the log, committed or not.
    pub fn latest_config_index(&self) -> Index {
        self.members.latest_index()
    }

    /// Leader only: every node it replicates to — the other members, and the nodes a
    /// configuration removed that are still being told so (they get the log until they hold
    /// the removing entry and its commit). Empty unless leading.
    pub fn replication_peers(&self) -> BTreeSet<NodeId> {
        self.lead
            .as_ref()
            .map(LeaderState::peers)
            .unwrap_or_default()
    }

    /// Leader only: the highest index `peer` is known to hold.
    pub fn peer_matched(&self, peer: NodeId) -> Option<Index> {
        self.lead.as_ref()?.matched_of(peer)
    }

    /// True once this node learned it was removed from the group ([`Action::Removed`]).
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// The latest snapshot this node holds.
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshots.meta
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The group this core runs.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The current hard state.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.ballot.term(),
            vote: self.ballot.vote(),
            commit: self.log.commit(),
        }
    }

    // ---- helpers shared by the other files ----

    pub(crate) fn emit(&mut self, action: Action) {
        self.out.push(action);
    }

    pub(crate) fn mark_replicate(&mut self) {
        if self.role == Role::Leader {
            self.out.mark_replicate();
        }
    }

    /// Writes the hard state; messages sent afterwards wait for it.
    pub(crate) fn persist_hard_state(&mut self) {
        let seq = self.persist.next_hard_state_seq();
        let hard_state = self.hard_state();
        self.out.push(Action::PersistHardState { seq, hard_state });
    }

    /// Persists entries (after an optional truncation) and returns the write's sequence.
    pub(crate) fn persist_entries(
        &mut self,
        truncate_from: Option<Index>,
        entries: Entries,
    ) -> u64 {
        let seq = self.persist.next_seq();
        let last = entries.last().map(|e| e.index);
        self.out.push(Action::PersistEntries {
            seq,
            truncate_from,
            entries,
        });
        if let Some(last) = last {
            self.gate(seq, Gated::Entries { last });
        }
        seq
    }

    pub(crate) fn next_persist_seq(&mut self) -> u64 {
        self.persist.next_seq()
    }

    pub(crate) fn gate_entries(&mut self, seq: u64, last: Index) {
        self.gate(seq, Gated::Entries { last });
    }

    /// The candidate's own vote counts once the latest hard state is durable.
    pub(crate) fn gate_self_vote(&mut self) {
        let (seq, term) = (self.persist.hard_state_seq(), self.ballot.term());
        self.gate(seq, Gated::SelfVote { term });
    }

    fn gate(&mut self, seq: u64, item: Gated) {
        if let Some(item) = self.persist.gate(seq, item) {
            self.release(item);
        }
    }

    fn release(&mut self, item: Gated) {
        match item {
            Gated::Send { term, msg } => {
                if term == self.ballot.term() {
                    self.out.push(Action::Send(msg));
                } else {
                    debug!(
                        group = self.group,
                        kind = msg.kind(),
                        "dropped a held-back message from an older term"
                    );
                }
            }
            Gated::Entries { last } => self.log.mark_durable(last),
            Gated::SelfVote { term } => {
                if term == self.ballot.term() && self.role == Role::Candidate {
                    self.record_vote(self.id, true);
                }
            }
        }
    }

    /// Sends `msg` once everything written so far is durable (acknowledgements, votes).
    pub(crate) fn send_when_durable(&mut self, msg: Message) {
        let (seq, term) = (self.persist.last_seq(), self.ballot.term());
        self.gate(seq, Gated::Send { term, msg });
    }

    /// Sends `msg` once the latest hard state (term, vote) is durable; other pending writes
    /// do not hold it back.
    pub(crate) fn send(&mut self, msg: Message) {
        let (seq, term) = (self.persist.hard_state_seq(), self.ballot.term());
        self.gate(seq, Gated::Send { term, msg });
    }

    pub(crate) fn message(&self, to: NodeId, body: MessageBody) -> Message {
        Message {
            from: self.id,
            to,
            term: self.ballot.term(),
            body,
        }
    }

    /// Log truncation from `index` on: pending durability marks past it are capped, and
    /// configuration entries past it are forgotten.
    pub(crate) fn truncate_log(&mut self, index: Index) {
        #[cfg(feature = "model-bugs")]
        self.deferred_configs.retain(|(i, _)| *i < index);
        self.log.truncate_from(index);
        self.persist.cap_entries(index - 1);
        if let Some(effective) = self.members.truncate_from(index) {
            self.membership_changed(effective);
        }
    }

    /// Records an appended configuration entry.
    pub(crate) fn push_config(&mut self, index: Index, membership: Membership) {
        #[cfg(feature = "model-bugs")]
        if self.bug == model::Bug::ConfigAtCommit && index > self.log.commit() {
            self.deferred_configs.push((index, membership));
            return;
        }
        if let Some(effective) = self.members.push(index, membership) {
            self.membership_changed(effective);
        }
    }

    /// The effective membership changed: a leader tracks the new peers (the nodes it removes
    /// stay peers until they know), and the runtime hears.
    pub(crate) fn membership_changed(&mut self, effective: Membership) {
        let mut peers_changed = false;
        if let Some(lead) = self.lead.as_mut() {
            let departing = self.members.departing();
            peers_changed =
                lead.sync_peers(self.id, &effective, &departing, self.members.latest_index());
        }
        self.emit(Action::MembershipChanged {
            membership: effective,
        });
        if peers_changed {
            self.emit(Action::PeersChanged);
        }
    }

    /// Configuration entries at or below the commit index become the base.
    pub(crate) fn fold_committed_configs(&mut self) {
        #[cfg(feature = "model-bugs")]
        {
            let commit = self.log.commit();
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_configs)
                .into_iter()
                .partition(|(i, _)| *i <= commit);
            self.deferred_configs = later;
            for (index, membership) in now {
                self.push_config(index, membership);
            }
        }
        self.members.fold_committed(self.log.commit());
        self.note_committed_membership();
    }

    /// Notes whether the committed configuration names this node (see `was_member`).
    pub(crate) fn note_committed_membership(&mut self) {
        if self.members.committed().1.contains(self.id) {
            self.was_member = true;
        }
    }

    /// True while this node, not told it was removed, holds a configuration (its latest,
    /// committed or not) that leaves it out, after a committed one named it: it may have been
    /// removed by a leader that lost office before telling it. It then asks the voters
    /// (`MessageBody::RemovalQuery`) once an election timeout, until a leader tells it or a
    /// configuration names it again.
    pub(crate) fn stranded(&self) -> bool {
        self.was_member
            && !self.removed
            && self.role != Role::Leader
            && !self.members.effective().contains(self.id)
    }

    /// Asks the voters of the latest configuration whether this node was removed.
    pub(crate) fn ask_whether_removed(&mut self) {
        let m = self.members.effective();
        let voters: Vec<NodeId> = m
            .all_nodes()
            .into_iter()
            .filter(|&n| n != self.id && m.is_voter(n))
            .collect();
        debug!(
            group = self.group,
            ?voters,
            "the latest configuration leaves this node out and nobody told it; asking"
        );
        for to in voters {
            let msg = self.message(to, MessageBody::RemovalQuery);
            self.send(msg);
        }
    }

    /// This node learned that the committed configuration at `index` removed it: the runtime
    /// hears, once.
    pub(crate) fn mark_removed(&mut self, index: Index) {
        if self.removed {
            return;
        }
        self.removed = true;
        info!(
            group = self.group,
            index, "removed from the group by the committed configuration at this index"
        );
        self.emit(Action::Removed { index });
    }

    /// Announces newly applicable entries: committed and durable here.
    pub(crate) fn maybe_apply(&mut self) {
        if let Some(target) = self.log.take_apply_target() {
            self.out.apply(target);
        }
    }

    /// Raises the commit index (follower side, from the leader), capped at the end of the log.
    pub(crate) fn advance_commit_to(&mut self, index: Index) {
        if index > self.log.commit() {
            self.log.advance_commit(index);
            self.fold_committed_configs();
            self.maybe_apply();
        }
    }
}
