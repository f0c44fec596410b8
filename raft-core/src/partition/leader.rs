//! The leader: proposals (batched into one append), progress from replicators, the commit rule
//! (Raft paper, 5.3 and 5.4.2), heartbeats, leader transfer (thesis 3.10) and membership changes
//! through joint consensus (paper, section 6).

use tracing::{info, warn};

use super::PartitionCore;
use super::lead_state::LeaderState;
use crate::action::Action;
use crate::error::{Error, MembershipError};
use crate::membership::{Membership, NodeAddrs};
use crate::message::MessageBody;
use crate::types::{Entry, EntryPayload, Index, NodeId, Role, Term};

/// Where a batch of proposals landed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// The leader's term: the proposal succeeded only if the entry at each index still has this
    /// term when it is applied.
    pub term: Term,
    /// Index of the first command.
    pub first_index: Index,
    /// Index of the last command.
    pub last_index: Index,
}

impl PartitionCore {
    pub(crate) fn become_leader(&mut self) {
        info!(
            group = self.group,
            term = self.ballot.term(),
            "became leader"
        );
        self.lead = Some(LeaderState::new(
            self.id,
            self.members.effective(),
            &self.members.departing(),
            self.members.latest_index(),
            self.cfg.lease_ticks(),
        ));
        self.election.clear_votes();
        self.election.restart();
        let id = self.id;
        self.role = Role::Leader;
        self.leader = Some(id);
        self.emit(Action::RoleChanged {
            role: Role::Leader,
            term: self.ballot.term(),
            leader: Some(id),
        });
        // No-op on election (docs/architecture.md): an entry of the new term, so earlier-term
        // entries can commit (paper, 5.4.2).
        let (_, noop) = self.append_local(vec![EntryPayload::Noop]);
        if let Some(lead) = self.lead.as_mut() {
            lead.set_noop_index(noop);
        }
        self.broadcast_heartbeat();
        self.maybe_commit();
    }

    fn check_can_propose(&self) -> Result<(), Error> {
        match &self.lead {
            None => Err(Error::NotLeader {
                leader: self.leader,
            }),
            Some(l) if l.transferring() => Err(Error::TransferInProgress),
            Some(_) => Ok(()),
        }
    }

    /// Proposes commands; all of them go into one append (batching). Returns where they landed.
    /// The caller learns the outcome when the entries are applied: success if the entry applied
    /// at each index has `Proposed::term`.
    pub fn propose<C: Into<bytes::Bytes>>(&mut self, commands: Vec<C>) -> Result<Proposed, Error> {
        self.check_can_propose()?;
        if commands.is_empty() {
            let last = self.log.last_index();
            return Ok(Proposed {
                term: self.ballot.term(),
                first_index: last + 1,
                last_index: last,
            });
        }
        let payloads = commands
            .into_iter()
            .map(|c| EntryPayload::Normal(c.into()))
            .collect();
        let (first_index, last_index) = self.append_local(payloads);
        Ok(Proposed {
            term: self.ballot.term(),
            first_index,
            last_index,
        })
    }

    /// Appends entries of the current term to the leader's own log.
    fn append_local(&mut self, payloads: Vec<EntryPayload>) -> (Index, Index) {
        let first = self.log.last_index() + 1;
        let mut entries = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let index = self.log.last_index() + 1;
            self.log.push(self.ballot.term());
            if let EntryPayload::Membership(m) = &payload {
                self.push_config(index, m.clone());
            }
            entries.push(Entry {
                index,
                term: self.ballot.term(),
                payload,
            });
        }
        let last = self.log.last_index();
        self.persist_entries(None, entries.into());
        self.mark_replicate();
        (first, last)
    }

    /// A replicator reports that `peer` holds the log up to `matched` (durably). `term` is the
    /// epoch the replicator was started for; reports from an older epoch are ignored, since no
    /// actor waits on a reply and late reports are normal (docs/architecture.md).
    pub fn progress(&mut self, peer: NodeId, term: Term, matched: Index) {
        if self.role != Role::Leader || term != self.ballot.term() {
            return;
        }
        let last = self.log.last_index();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let Some(advanced) = lead.record_match(peer, matched.min(last)) else {
            warn!(
                group = self.group,
                peer, "progress from a peer outside the configuration; ignored"
            );
            return;
        };
        if matched > last {
            warn!(
                group = self.group,
                peer, matched, last, "progress past the end of the log; clamped"
            );
        }
        if advanced {
            self.maybe_commit();
        }
        self.maybe_send_timeout_now();
    }

    /// The commit rule: the highest index a quorum holds, if it is of the current term
    /// (paper, 5.4.2 and Figure 8). The leader counts itself only up to its own durable index.
    pub(crate) fn maybe_commit(&mut self) {
        let Some(lead) = self.lead.as_ref() else {
            return;
        };
        let quorum =
            lead.quorum_matched(self.id, self.log.durable_index(), self.members.effective());
        if quorum <= self.log.commit() || quorum == Index::MAX {
            return;
        }
        #[cfg(not(feature = "model-bugs"))]
        let counts_replicas_of_earlier_terms = false;
        #[cfg(feature = "model-bugs")]
        let counts_replicas_of_earlier_terms = self.bug == super::Bug::CommitPreviousTerm;
        if self.log.term(quorum) != Some(self.ballot.term()) && !counts_replicas_of_earlier_terms {
            // Figure 8: never count replicas for an entry of an earlier term.
            return;
        }
        self.log.advance_commit(quorum);
        self.fold_committed_configs();
        self.mark_replicate();
        self.maybe_apply();
        self.release_reads();
        self.after_config_commit();
    }

    /// Finishes membership changes once their entry commits: leave joint consensus, and step
    /// down if this leader is no longer a voter (paper, section 6).
    fn after_config_commit(&mut self) {
        if self.role != Role::Leader || self.members.latest_index() > self.log.commit() {
            return;
        }
        if self.members.effective().is_joint() {
            let next = self.members.effective().leave_joint();
            info!(
                group = self.group,
                ?next,
                "joint configuration committed; leaving joint consensus"
            );
            self.append_local(vec![EntryPayload::Membership(next)]);
        } else if !self.members.effective().is_voter(self.id) {
            info!(
                group = self.group,
                "removed from the configuration; stepping down"
            );
            // Hand over quickly: the most up-to-date voter campaigns at once.
            let best = self
                .lead
                .as_ref()
                .and_then(|l| l.best_successor(self.members.effective()));
            if let Some(to) = best {
                let msg = self.message(to, MessageBody::TimeoutNow);
                self.send(msg);
            }
            let term = self.ballot.term();
            self.become_follower(term, None);
            if !self.members.effective().contains(self.id) {
                let index = self.members.latest_index();
                self.mark_removed(index);
            }
        }
    }

    /// Sends a heartbeat to every peer, carrying the current ReadIndex round.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let Some(lead) = self.lead.as_ref() else {
            return;
        };
        let read_seq = lead.read_seq();
        for (to, commit) in lead.heartbeat_commits(self.log.commit()) {
            let msg = self.message(to, MessageBody::Heartbeat { commit, read_seq });
            self.send(msg);
        }
    }

    /// Per-peer commit index safe to put in a heartbeat (capped at the peer's match), for a
    /// runtime that sends coalesced heartbeats itself.
    pub fn heartbeat_commit(&self, peer: NodeId) -> Option<Index> {
        self.lead
            .as_ref()?
            .heartbeat_commit(peer, self.log.commit())
    }

    /// Starts a leader transfer to `target` (thesis 3.10): proposals are refused meanwhile; once
    /// the target's log is caught up it receives TimeoutNow. Aborted after an election timeout.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id {
            return Ok(());
        }
        if !self.members.effective().is_voter(target) {
            return Err(Error::Transfer {
                target,
                reason: "not a voter of the current configuration",
            });
        }
        let Some(lead) = self.lead.as_mut() else {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        };
        if !lead.start_transfer(target) {
            return Ok(());
        }
        info!(group = self.group, target, "leader transfer started");
        self.mark_replicate();
        self.maybe_send_timeout_now();
        Ok(())
    }

    /// Aborts a leader transfer (the runtime's own deadline expired).
    pub fn abort_transfer(&mut self) {
        if let Some(lead) = self.lead.as_mut() {
            lead.abort_transfer();
        }
    }

    fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let Some(to) = self.lead.as_mut().and_then(|l| l.take_timeout_now(last)) else {
            return;
        };
        let msg = self.message(to, MessageBody::TimeoutNow);
        self.send(msg);
    }

    /// Proposes a new configuration (simple: voters and learners, and addresses). Changes of
    /// voters go through a joint configuration that the leader leaves on its own once it
    /// commits; the change is over when the final configuration commits. Returns the index of
    /// the first entry appended (the joint one when voters change).
    ///
    /// Addresses the target does not give are kept from the current configuration for the
    /// nodes that stay; those of removed nodes are dropped.
    ///
    /// Refused, with nothing appended:
    /// - [`MembershipError::ChangeInProgress`] while an earlier change is unfinished (its entry
    ///   is uncommitted or the group is in joint consensus), or while a node of the target is
    ///   one an earlier change removed and that is still being told so;
    /// - [`MembershipError::NotLearner`] for a new voter that is not a learner of the current
    ///   configuration, and [`MembershipError::NotCaughtUp`] for a learner whose log is more
    ///   than [`Config::learner_catchup_lag`](crate::Config::learner_catchup_lag) entries
    ///   behind the leader's last index or lacks the latest committed configuration: add
    ///   learners, let them catch up, then promote them;
    /// - [`MembershipError::Unchanged`], [`MembershipError::JointTarget`] and the structural
    ///   errors of [`Membership::validate`].
    ///
    /// Turning a voter directly into a learner takes two changes (remove it, then add it as a
    /// learner).
    pub fn change_membership(&mut self, target: Membership) -> Result<Index, Error> {
        self.check_can_propose()?;
        if target.is_joint() {
            return Err(MembershipError::JointTarget.into());
        }
        target.validate()?;
        let pending = self.members.latest_index();
        if self.members.effective().is_joint() || pending > self.log.commit() {
            return Err(MembershipError::ChangeInProgress { index: pending }.into());
        }
        let current = self.members.effective();
        let target = current.carry_addrs_into(&target);
        if &target == current {
            return Err(MembershipError::Unchanged.into());
        }
        self.check_arrivals(&target)?;
        let current = self.members.effective();
        let next = if target.voters == current.voters {
            target
        } else {
            if let Some(&id) = target
                .learners
                .iter()
                .find(|id| current.voters.contains(id))
            {
                return Err(MembershipError::LearnerIsVoter(id).into());
            }
            current.enter_joint(&target)
        };
        info!(group = self.group, ?next, "proposing membership change");
        let (index, _) = self.append_local(vec![EntryPayload::Membership(next)]);
        Ok(index)
    }

    /// The leader's checks of the nodes `target` brings in: no node still retiring from an
    /// earlier removal, and every new voter a learner whose log is caught up.
    fn check_arrivals(&self, target: &Membership) -> Result<(), Error> {
        let Some(lead) = self.lead.as_ref() else {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        };
        if let Some(index) = target
            .all_nodes()
            .into_iter()
            .find_map(|id| lead.retiring_index(id))
        {
            return Err(MembershipError::ChangeInProgress { index }.into());
        }
        let current = self.members.effective();
        let last = self.log.last_index();
        // Within the lag, and holding the latest committed configuration: a learner that was
        // never heard from is not caught up, however short the log.
        let floor = last
            .saturating_sub(self.cfg.learner_catchup_lag)
            .max(self.members.committed().0);
        for &id in target
            .voters
            .iter()
            .filter(|&&id| id != self.id && !current.voters.contains(&id))
        {
            if !current.is_learner(id) {
                return Err(MembershipError::NotLearner(id).into());
            }
            let matched = lead.matched_of(id).unwrap_or(0);
            if matched < floor {
                return Err(MembershipError::NotCaughtUp {
                    node: id,
                    matched,
                    last,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Leader: `from` was heard from and this leader does not replicate to it. If neither the
    /// committed configuration (from an entry or a snapshot: index above 0) nor the latest one
    /// names it, it is a removed node that may not have been told: the leader that committed
    /// its removal can have lost office first, and no later leader replicates to it. It
    /// becomes a retiring peer (replicated to until it holds the committed configuration's
    /// entry, then told, [`MessageBody::Removed`]), which it can only act on once its own log
    /// holds that configuration (`handle_removed`). A node the leader is adding (in the latest
    /// configuration) or removing (a retiring peer already) is left alone.
    pub(crate) fn tell_if_removed(&mut self, from: NodeId) {
        if self.members.effective().contains(from) {
            return; // The common case, first: a member.
        }
        let (index, committed) = self.members.committed();
        if index == 0 || committed.contains(from) {
            return;
        }
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if lead.retire(self.id, from, index) {
            info!(
                group = self.group,
                node = from,
                index,
                "heard from a node the committed configuration removed; telling it"
            );
            self.emit(Action::PeersChanged);
        }
    }

    /// Adds `id` as a learner (receives the log, does not vote), reachable at `addrs` if given
    /// (they replace any it had). Refused like [`PartitionCore::change_membership`]; a node
    /// already a learner with these addresses gives [`MembershipError::Unchanged`].
    pub fn add_learner(&mut self, id: NodeId, addrs: Option<NodeAddrs>) -> Result<Index, Error> {
        let mut target = self.members.effective().leave_joint();
        if target.is_voter(id) {
            return Err(MembershipError::LearnerIsVoter(id).into());
        }
        target.learners.insert(id);
        if let Some(addrs) = addrs {
            target.set_addrs(id, addrs);
        }
        self.change_membership(target)
    }
}
