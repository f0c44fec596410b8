//! ReadIndex (Raft thesis, 6.4): linearizable reads without writing to the log.
//!
//! 1. The leader records its commit index as the read index — but not before an entry of its
//!    own term has committed (its no-op), since until then it may not know the latest commit.
//! 2. It confirms it is still leader: a heartbeat round tagged with a sequence number must be
//!    acknowledged by a quorum after the read was registered.
//! 3. Once applied has reached the read index, the read is served (`Action::ReadReady`).
//!
//! Lease reads (Raft thesis, 6.4.1), with [`Config::lease_reads`](crate::Config::lease_reads):
//! step 2 is skipped while the leader's lease holds. Every confirmed round is also a promise:
//! each node that acknowledged it heard from the leader at or after the tick `t` the round
//! started, and for the next `election_ticks` of its own ticks it neither votes for another
//! node nor campaigns (`owes_lease` in `election.rs`; a node that has just started keeps out
//! as long, since it may have acknowledged one before). So until tick
//! `t + election_ticks - 1 - lease_margin_ticks` of the leader's own clock no other node can
//! be elected, and the leader's commit index (once its no-op committed) covers every write
//! acknowledged anywhere. A lease read is then served at that commit index as soon as it is
//! applied. A lease read that finds no lease is a ReadIndex read, and the round it starts
//! renews the lease; a lease read that finds less than half of the lease left starts a round
//! too, so a steady stream of lease reads keeps the lease without waiting for one. Time enters
//! only as ticks: the runtime delivers the ticks that elapsed before each input.

use super::PartitionCore;
use crate::action::Action;
use crate::error::Error;
use crate::types::{NodeId, Role};

impl PartitionCore {
    /// Asks for a linearizable read, identified by the caller's `ctx`. `Action::ReadReady` with
    /// the same `ctx` says when the state machine may be queried; `Action::ReadAborted` says the
    /// read must be retried elsewhere.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), Error> {
        let commit = self.log.commit();
        let limit = self.cfg.max_pending_reads;
        let single = self.members.effective().voters.len() <= 1
            && self.members.effective().voters_outgoing.len() <= 1;
        let Some(lead) = self.lead.as_mut() else {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        };
        let Some(round) = lead.register_read(ctx, commit, single, limit) else {
            return Err(Error::ReadsOverloaded { limit });
        };
        if round {
            self.broadcast_heartbeat();
        }
        self.release_reads();
        Ok(())
    }

    /// Asks for a read under the leader's lease, identified by the caller's `ctx`; answered like
    /// [`PartitionCore::read_index`] (`Action::ReadReady`, or `Action::ReadAborted`). While the
    /// lease holds and this term's no-op has committed, the read index is the commit index now
    /// and no heartbeat round is needed: `ReadReady` comes as soon as the state machine has
    /// applied that far. Otherwise (leases off, lease expired, a transfer under way) it is a
    /// ReadIndex read. See the module docs for why it is safe.
    pub fn read_lease(&mut self, ctx: u64) -> Result<(), Error> {
        let commit = self.log.commit();
        let limit = self.cfg.max_pending_reads;
        let single = self.sole_voter();
        let leases = self.cfg.lease_ticks() > 0;
        let Some(lead) = self.lead.as_mut() else {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        };
        if !leases || commit < lead.noop_index() || !(single || lead.lease_holds()) {
            return self.read_index(ctx);
        }
        if !lead.register_lease_read(ctx, commit, limit) {
            return Err(Error::ReadsOverloaded { limit });
        }
        if !single && lead.renew_lease() {
            self.broadcast_heartbeat();
        }
        self.release_reads();
        Ok(())
    }

    /// True while this leader may serve reads under its lease without a heartbeat round (see
    /// [`PartitionCore::read_lease`]): leases are on, this term's no-op has committed, and a
    /// quorum confirmed a round recently enough (or this node is the group's only voter).
    pub fn lease_holds(&self) -> bool {
        let Some(lead) = self.lead.as_ref() else {
            return false;
        };
        self.cfg.lease_ticks() > 0
            && self.log.commit() >= lead.noop_index()
            && (self.sole_voter() || lead.lease_holds())
    }

    /// A heartbeat acknowledgement: the peer is alive and confirms ReadIndex round `read_seq`.
    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, read_seq: u64) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if lead.record_heartbeat_ack(from, read_seq) {
            self.release_reads();
        }
    }

    /// Serves every pending read whose round a quorum confirmed, whose index committed in this
    /// term, and which the state machine has applied. Reads are in order, so stop at the first
    /// one that is not ready.
    pub(crate) fn release_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        lead.confirm_lease(self.id, self.members.effective());
        let ready = lead.take_ready_reads(
            self.id,
            self.members.effective(),
            self.log.commit(),
            self.log.applied(),
        );
        let lease_ready = lead.take_ready_lease_reads(self.log.applied());
        for r in ready {
            self.emit(Action::ReadReady {
                ctx: r.ctx,
                index: r.index,
            });
        }
        for (ctx, index) in lease_ready {
            self.emit(Action::ReadReady { ctx, index });
        }
    }

    /// Leadership is lost: every pending read must be retried at the new leader.
    pub(crate) fn abort_reads(&mut self, leader: Option<NodeId>) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let aborted = lead.drain_reads();
        for ctx in aborted {
            self.emit(Action::ReadAborted { ctx, leader });
        }
    }
}
