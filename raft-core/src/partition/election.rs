//! Elections: ticks, pre-vote, RequestVote, role transitions, check-quorum and TimeoutNow.
//!
//! References are to the Raft paper (Ongaro & Ousterhout, 2014) and Ongaro's thesis (2014).

use tracing::{debug, error, info, warn};

use super::PartitionCore;
use crate::action::Action;
use crate::message::{Message, MessageBody};
use crate::quorum::{VoteResult, joint_vote};
use crate::types::{NodeId, Role, Term};

impl PartitionCore {
    /// Advances logical time by one tick: election timeouts on followers and candidates;
    /// heartbeats, check-quorum and the leader-transfer deadline on the leader.
    pub fn tick(&mut self) {
        self.election.tick();
        if self.role == Role::Leader {
            self.tick_leader();
        } else if self.stranded() {
            if self.election.timed_out() {
                self.reset_election_timer();
                self.ask_whether_removed();
            }
        } else if self.election.deferred() && !self.owes_lease() {
            // An election timeout waited for the lease this node owed a leader: it is over.
            self.election.set_deferred(false);
            self.election_timeout();
        } else if !self.cfg.external_timers && self.election.timed_out() {
            self.election_timeout();
        } else if self.vote_retry_due() {
            let pre_vote = self.role == Role::PreCandidate;
            let transfer = self.election.transfer();
            self.request_votes(pre_vote, transfer, true);
        }
    }

    /// A (pre-)candidate's round has run another `vote_retry_ticks` ticks.
    fn vote_retry_due(&self) -> bool {
        let every = self.cfg.vote_retry_ticks;
        matches!(self.role, Role::PreCandidate | Role::Candidate)
            && every > 0
            && self.election.elapsed() > 0
            && self.election.elapsed() % every == 0
    }

    /// True if a `tick()` can make something happen on its own — an action, or the end of a
    /// wait — before any other input arrives. While it is false a runtime may skip ticks (an idle
    /// group then costs no timer wake-ups), provided it delivers every elapsed tick before the
    /// core's next input: the ticks that only age state (the follower's leader lease) must have
    /// happened by the time that state is consulted.
    ///
    /// With internal timers the core always needs its ticks (elections and heartbeats are
    /// tick-driven). With [`Config::external_timers`](crate::Config::external_timers) only a
    /// leader transfer under way, a removed node still being told (see
    /// [`crate::PartitionCore::replication_peers`]) and, on a node whose latest configuration
    /// leaves it out, asking whether it was removed ([`crate::MessageBody::RemovalQuery`])
    /// have tick-driven deadlines.
    pub fn needs_ticks(&self) -> bool {
        if !self.cfg.external_timers {
            return true;
        }
        let campaigning = matches!(self.role, Role::PreCandidate | Role::Candidate);
        self.election.deferred()
            || (campaigning && self.cfg.vote_retry_ticks > 0)
            || self.stranded()
            || self
                .lead
                .as_ref()
                .is_some_and(|l| l.transferring() || l.has_retiring())
    }

    /// The election timer fired (called by `tick`, or directly by a runtime that keeps its own
    /// timers). A voter that is not the leader starts a (pre-)election; others do nothing.
    pub fn election_timeout(&mut self) {
        if self.role == Role::Leader {
            return;
        }
        if self.owes_lease() {
            // With leases on, this node may have acknowledged a round that gives the leader its
            // lease (or it has just started and may have before): campaigning now could elect
            // a second leader while the first still serves lease reads. The timeout waits for
            // the lease to end (`tick`), unless the leader is heard from first.
            debug!(
                group = self.group,
                "election timeout deferred: a leader's lease may still hold"
            );
            self.election.set_deferred(true);
            return;
        }
        self.election.restart();
        if self.term_exhausted() {
            return;
        }
        if !self.members.effective().is_voter(self.id) {
            debug!(group = self.group, "election timeout ignored: not a voter");
            self.reset_election_timer();
            return;
        }
        if self.cfg.pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate(false);
        }
    }

    /// Check-quorum verdict from the runtime: this leader has not heard from a quorum within an
    /// election timeout. It steps down so a reachable majority can elect a new leader.
    pub fn quorum_lost(&mut self) {
        if self.role == Role::Leader {
            warn!(
                group = self.group,
                term = self.ballot.term(),
                "leader lost contact with a quorum; stepping down"
            );
            let term = self.ballot.term();
            self.become_follower(term, None);
        }
    }

    pub(crate) fn tick_leader(&mut self) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let (heartbeat_due, expired) = lead.tick(self.cfg.heartbeat_ticks, self.cfg.election_ticks);
        let (notices, let_go) = lead.tick_retiring(self.log.commit(), self.cfg.election_ticks);
        for (to, index) in notices {
            let msg = self.message(to, MessageBody::Removed { index });
            self.send(msg);
        }
        if let_go {
            self.emit(Action::PeersChanged);
        }
        if let Some(target) = expired {
            info!(
                group = self.group,
                target, "leader transfer timed out; aborted"
            );
        }
        if self.cfg.external_timers {
            return;
        }
        if self.election.elapsed() >= self.cfg.election_ticks {
            self.election.restart();
            if self.cfg.check_quorum && !self.check_quorum_active() {
                self.quorum_lost();
                return;
            }
        }
        if heartbeat_due {
            self.broadcast_heartbeat();
        }
    }

    /// True if the peers heard from since the last check, plus this node, form a quorum. Resets
    /// the activity marks for the next period.
    fn check_quorum_active(&mut self) -> bool {
        let Some(lead) = self.lead.as_mut() else {
            return false;
        };
        lead.check_quorum(self.id, self.members.effective())
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election.reset(self.cfg.election_ticks);
    }

    fn set_role(&mut self, role: Role, leader: Option<NodeId>) {
        let changed = self.role != role || self.leader != leader;
        self.role = role;
        self.leader = leader;
        if changed {
            self.emit(Action::RoleChanged {
                role: self.role(),
                term: self.ballot.term(),
                leader,
            });
        }
    }

    /// Becomes a follower of `leader` in `term` (Figure 2: "If RPC request or response contains
    /// term T > currentTerm: set currentTerm = T, convert to follower").
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let term_changed = self.ballot.enter_term(term);
        if term_changed {
            self.persist_hard_state();
        }
        if self.role == Role::Leader {
            self.abort_reads(leader);
            self.lead = None;
        }
        self.election.clear_votes();
        self.reset_election_timer();
        if term_changed && self.role != Role::Leader {
            // Emit even when role and leader are unchanged, so the runtime sees the new term.
            self.role = Role::Follower;
            self.leader = leader;
            self.emit(Action::RoleChanged {
                role: self.role(),
                term: self.ballot.term(),
                leader,
            });
        } else {
            self.set_role(Role::Follower, leader);
        }
    }

    fn become_pre_candidate(&mut self) {
        info!(
            group = self.group,
            term = self.ballot.term(),
            "starting pre-vote"
        );
        self.election.clear_votes();
        self.election.set_transfer(false);
        self.set_role(Role::PreCandidate, None);
        self.reset_election_timer();
        self.request_votes(true, false, false);
        self.record_vote(self.id, true);
    }

    /// Starts a real election in `term + 1` (Raft paper, 5.2). The own vote counts only once the
    /// new term and vote are durable (persistence before promises, docs/architecture.md).
    pub(crate) fn become_candidate(&mut self, transfer: bool) {
        if self.term_exhausted() {
            return;
        }
        // Cannot overflow: term_exhausted() refused the last term.
        self.ballot.enter_term(self.ballot.term() + 1);
        self.ballot.cast_vote(self.id);
        info!(
            group = self.group,
            term = self.ballot.term(),
            transfer,
            "starting election"
        );
        self.persist_hard_state();
        self.election.clear_votes();
        self.election.set_transfer(transfer);
        self.set_role(Role::Candidate, None);
        self.reset_election_timer();
        self.gate_self_vote();
        self.request_votes(false, transfer, false);
    }

    /// Asks every other voter for its vote (`retry`: only those that have not answered in
    /// this round).
    fn request_votes(&mut self, pre_vote: bool, transfer: bool, retry: bool) {
        // Callers checked term_exhausted(), so this cannot saturate in practice.
        let term = if pre_vote {
            self.ballot.term().saturating_add(1)
        } else {
            self.ballot.term()
        };
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self
            .members
            .effective()
            .all_nodes()
            .into_iter()
            .filter(|&n| n != self.id && self.members.effective().is_voter(n))
            .filter(|&n| !(retry && self.election.answered(n)))
            .collect();
        for to in voters {
            let body = MessageBody::RequestVote {
                pre_vote,
                last_index,
                last_term,
                transfer,
            };
            let msg = Message {
                from: self.id,
                to,
                term,
                body,
            };
            self.send(msg);
        }
    }

    /// Counts a vote; wins or loses the (pre-)election when decided.
    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool) {
        if !matches!(self.role, Role::PreCandidate | Role::Candidate) {
            return;
        }
        let votes = self.election.record_vote(from, granted);
        match joint_vote(self.members.effective(), |n| votes.get(&n).copied()) {
            VoteResult::Pending => {}
            VoteResult::Won if self.role == Role::PreCandidate => self.become_candidate(false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => {
                info!(
                    group = self.group,
                    term = self.ballot.term(),
                    pre_vote = (self.role == Role::PreCandidate),
                    "election lost"
                );
                let term = self.ballot.term();
                self.become_follower(term, None);
            }
        }
    }

    /// Applies the term rules to an incoming message. Returns false if the message must not be
    /// processed further.
    pub(crate) fn check_term(&mut self, m: &Message) -> bool {
        if m.term > self.ballot.term() {
            match &m.body {
                MessageBody::RequestVote {
                    pre_vote, transfer, ..
                } => {
                    if self.in_leader_lease() && !transfer {
                        debug!(
                            group = self.group,
                            from = m.from,
                            "vote request ignored: the current leader is alive (lease)"
                        );
                        return false;
                    }
                    if !pre_vote {
                        self.become_follower(m.term, None);
                    }
                    true
                }
                // A granted pre-vote carries the term the candidate proposed; it changes nothing.
                MessageBody::VoteResponse {
                    pre_vote: true,
                    granted: true,
                } => true,
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                    true
                }
                _ => {
                    self.become_follower(m.term, None);
                    true
                }
            }
        } else if m.term < self.ballot.term() {
            match &m.body {
                // A stale leader: tell it the newer term so it steps down (with pre-vote and
                // check-quorum a partitioned node no longer bumps terms, so it must learn here).
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    let reply =
                        self.message(m.from, MessageBody::HeartbeatResponse { read_seq: 0 });
                    self.send(reply);
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    let reply = self.message(
                        m.from,
                        MessageBody::VoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                    );
                    self.send(reply);
                }
                _ => debug!(
                    group = self.group,
                    from = m.from,
                    kind = m.kind(),
                    "stale message ignored"
                ),
            }
            false
        } else {
            true
        }
    }

    /// With check-quorum, a follower that heard from its leader within the minimum election
    /// timeout refuses to help depose it (Raft thesis, 4.2.3).
    fn in_leader_lease(&self) -> bool {
        (self.cfg.check_quorum
            && self.leader.is_some()
            && (self.role == Role::Leader || self.election.elapsed() < self.cfg.election_ticks))
            || self.starting_up()
    }

    /// With [`Config::lease_reads`](crate::Config::lease_reads): this node, not leading, may
    /// have acknowledged a leader's lease round within the last election timeout (it heard
    /// from its leader that recently, or it started that recently and may have before a
    /// restart). It must then neither vote for another node nor campaign.
    pub(crate) fn owes_lease(&self) -> bool {
        self.cfg.lease_ticks() > 0
            && self.role != Role::Leader
            && ((self.leader.is_some() && self.election.elapsed() < self.cfg.election_ticks)
                || self.starting_up())
    }

    /// With leases on: this node started less than an election timeout ago. A group whose
    /// only voter is this node is exempt: no other node can lead it, so no lease can be owed.
    fn starting_up(&self) -> bool {
        self.cfg.lease_ticks() > 0
            && self.election.since_start() < self.cfg.election_ticks
            && !self.sole_voter()
    }

    /// This node is the group's only voter.
    pub(crate) fn sole_voter(&self) -> bool {
        let m = self.members.effective();
        m.is_voter(self.id)
            && m.voters
                .iter()
                .chain(m.voters_outgoing.iter())
                .all(|&v| v == self.id)
    }

    /// Handles RequestVote (and pre-vote) at the current term (Raft paper, 5.2 and 5.4.1).
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_index: u64,
        last_term: Term,
    ) {
        let can_vote = self.ballot.vote() == Some(from)
            || (self.ballot.vote().is_none() && self.leader.is_none())
            || (pre_vote && term > self.ballot.term());
        let known = self.members.effective().is_voter(from);
        let up_to_date = self.log.is_up_to_date(last_index, last_term);
        #[cfg(feature = "model-bugs")]
        let up_to_date = up_to_date || self.bug == super::Bug::NoUpToDateCheck;
        let granted = can_vote && known && up_to_date;
        if !known {
            debug!(
                group = self.group,
                from = from,
                "vote request from a node that is not a voter here; refused"
            );
        }
        if pre_vote {
            // Answer in the term the candidate proposed when granting, so it can count the
            // answer; otherwise in our own term, so it learns of a newer one.
            let reply_term = if granted { term } else { self.ballot.term() };
            let body = MessageBody::VoteResponse {
                pre_vote: true,
                granted,
            };
            self.send(Message {
                from: self.id,
                to: from,
                term: reply_term,
                body,
            });
            return;
        }
        if granted {
            // Asked again by the candidate it already voted for (a retry, or a duplicate),
            // it answers again without writing the same vote again: the answer is gated behind
            // the earlier write of the vote all the same (`send`).
            let new_vote = self.ballot.vote() != Some(from);
            self.ballot.cast_vote(from);
            self.reset_election_timer();
            if new_vote {
                self.persist_hard_state();
            }
        }
        let reply = self.message(
            from,
            MessageBody::VoteResponse {
                pre_vote: false,
                granted,
            },
        );
        self.send(reply);
    }

    /// Handles a vote response at the current term (or a granted pre-vote for term + 1).
    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) {
        let expected = if pre_vote {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected {
            return;
        }
        if pre_vote && granted && Some(term) != self.ballot.term().checked_add(1) {
            return;
        }
        if !self.members.effective().is_voter(from) {
            return;
        }
        self.record_vote(from, granted);
    }

    /// TimeoutNow from the leader: campaign at once, skipping pre-vote (Raft thesis, 3.10).
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if !self.members.effective().is_voter(self.id) {
            warn!(
                group = self.group,
                from = from,
                "TimeoutNow ignored: not a voter"
            );
            return;
        }
        if self.role == Role::Leader {
            return;
        }
        info!(
            group = self.group,
            from = from,
            "TimeoutNow received; campaigning"
        );
        self.become_candidate(true);
    }

    /// A node at the largest term cannot campaign: a new term would wrap to 0 and break every
    /// term rule. Only a hostile or corrupt peer can get a node here; refuse loudly.
    fn term_exhausted(&self) -> bool {
        if self.ballot.term() == Term::MAX {
            error!(
                group = self.group,
                "term space exhausted (term = u64::MAX); refusing to campaign"
            );
            return true;
        }
        false
    }

    /// Campaigns now, as if the election timer fired. For tests and for runtimes that want to
    /// place the first leader.
    pub fn campaign(&mut self) {
        self.election_timeout();
    }
}
