//! ReadIndex (Raft thesis, 6.4): linearizable reads without writing to the log.
//!
//! 1. The leader records its commit index as the read index — but not before an entry of its
//!    own term has committed (its no-op), since until then it may not know the latest commit.
//! 2. It confirms it is still leader: a heartbeat round tagged with a sequence number must be
//!    acknowledged by a quorum after the read was registered.
//! 3. Once applied has reached the read index, the read is served (`Action::ReadReady`).

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
        let ready = lead.take_ready_reads(
            self.id,
            self.members.effective(),
            self.log.commit(),
            self.log.applied(),
        );
        for r in ready {
            self.emit(Action::ReadReady {
                ctx: r.ctx,
                index: r.index,
            });
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
