//! `step`: the single entry point for messages from other nodes.

use tracing::{debug, warn};

use super::PartitionCore;
use crate::message::{Message, MessageBody};
use crate::types::Role;

impl PartitionCore {
    /// Feeds a message from another node of the group into the core.
    ///
    /// Bad input never panics: a message for another node, from node 0 or from this node, with
    /// malformed entries or out-of-range indices, is dropped or refused with a log line.
    ///
    /// `AppendResponse` and `SnapshotResponse` belong to the peer's [`crate::ReplicatorCore`];
    /// here they only apply the term rules (a newer term makes a leader step down).
    pub fn step(&mut self, m: Message) {
        if m.to != self.id {
            warn!(
                group = self.group,
                to = m.to,
                from = m.from,
                "message addressed to another node; dropped"
            );
            return;
        }
        if m.from == self.id || m.from == 0 {
            warn!(
                group = self.group,
                from = m.from,
                kind = m.kind(),
                "message with an invalid sender; dropped"
            );
            return;
        }
        let from = m.from;
        if self.role == Role::Leader {
            // Whatever its term: a removed node that was never told campaigns with a stale
            // configuration, or asks (`RemovalQuery`).
            self.tell_if_removed(from);
        }
        if matches!(m.body, MessageBody::RemovalQuery) {
            return; // Asked, and answered above if this node leads: it changes nothing else.
        }
        if !self.check_term(&m) {
            return;
        }
        match m.body {
            MessageBody::RequestVote {
                pre_vote,
                last_index,
                last_term,
                ..
            } => {
                self.handle_vote_request(from, m.term, pre_vote, last_index, last_term);
            }
            MessageBody::VoteResponse { pre_vote, granted } => {
                self.handle_vote_response(from, m.term, pre_vote, granted);
            }
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                if self.accept_leader(from) {
                    self.handle_append(from, prev_index, prev_term, entries, commit);
                }
            }
            MessageBody::Heartbeat { commit, read_seq } => {
                if self.accept_leader(from) {
                    self.handle_heartbeat(from, commit, read_seq);
                }
            }
            MessageBody::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                if self.accept_leader(from) {
                    self.handle_snapshot_chunk(from, meta, offset, data, done);
                }
            }
            MessageBody::HeartbeatResponse { read_seq } => {
                self.handle_heartbeat_response(from, read_seq)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::Removed { index } => {
                if self.accept_leader(from) {
                    self.handle_removed(from, index);
                }
            }
            MessageBody::RemovalQuery => {} // Handled before the term rules.
            MessageBody::AppendResponse(_) | MessageBody::SnapshotResponse { .. } => {
                // Handled by the peer's replicator; the term rules above were all we needed.
                if let Some(lead) = self.lead.as_mut() {
                    lead.mark_active(from);
                }
            }
        }
    }

    /// A message from the leader of the current term: follow it. Returns false if it cannot be
    /// (two leaders in one term would break election safety; the message is dropped).
    fn accept_leader(&mut self, from: u64) -> bool {
        match self.role {
            Role::Leader => {
                warn!(
                    group = self.group,
                    from,
                    term = self.ballot.term(),
                    "another leader claims this term; message dropped"
                );
                false
            }
            Role::Candidate | Role::PreCandidate => {
                let term = self.ballot.term();
                self.become_follower(term, Some(from));
                true
            }
            Role::Follower | Role::Learner => {
                if self.leader != Some(from) {
                    if self.leader.is_some() {
                        debug!(
                            group = self.group,
                            from, "leader changed within a term? keeping the newcomer"
                        );
                    }
                    let term = self.ballot.term();
                    self.become_follower(term, Some(from));
                }
                self.election.restart();
                true
            }
        }
    }
}
