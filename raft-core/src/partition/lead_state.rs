//! `LeaderState`: the part of a partition core that exists only while it leads — what it knows
//! of each peer, the ReadIndex rounds and reads waiting on them, and a leader transfer under way.
//!
//! The quorum questions a leader asks (how far a quorum holds the log, whether a quorum was
//! heard from, which reads a quorum confirmed) are answered here from this part and the
//! membership alone, so the handlers that ask them show what they depend on.

use std::collections::{BTreeMap, VecDeque};

use crate::membership::Membership;
use crate::quorum::{committed_index, has_quorum};
use crate::types::{Index, NodeId};

/// What the leader knows of one peer.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerProgress {
    /// Highest index known replicated (and durable) on the peer. Invariant: <= last index.
    pub(crate) matched: Index,
    /// Heard from since the last check-quorum period.
    pub(crate) active: bool,
    /// Highest ReadIndex round the peer acknowledged.
    pub(crate) read_ack: u64,
}

/// A leader transfer under way.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    pub(crate) elapsed: u32,
    pub(crate) timeout_now_sent: bool,
}

/// A read waiting for confirmation.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub(crate) ctx: u64,
    pub(crate) index: Index,
    pub(crate) seq: u64,
}

/// State that exists only while leading.
#[derive(Clone, Debug, Default)]
pub struct LeaderState {
    pub(crate) progress: BTreeMap<NodeId, PeerProgress>,
    pub(crate) heartbeat_elapsed: u32,
    /// Index of this term's no-op: reads wait until it commits.
    pub(crate) noop_index: Index,
    pub(crate) transfer: Option<Transfer>,
    pub(crate) read_seq: u64,
    pub(crate) pending_reads: VecDeque<PendingRead>,
}

impl LeaderState {
    /// Adds peers that joined the configuration and forgets those that left.
    pub(crate) fn sync_peers(&mut self, me: NodeId, membership: &Membership) {
        let all = membership.all_nodes();
        self.progress.retain(|id, _| all.contains(id));
        for id in all {
            if id != me {
                self.progress.entry(id).or_insert(PeerProgress {
                    active: true,
                    ..Default::default()
                });
            }
        }
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

    /// The highest ReadIndex round a quorum confirmed; this node (`me`) confirms its own latest.
    pub(crate) fn confirmed_read_seq(&self, me: NodeId, membership: &Membership) -> u64 {
        committed_index(membership, |id| {
            if id == me {
                self.read_seq
            } else {
                self.progress.get(&id).map_or(0, |p| p.read_ack)
            }
        })
    }
}
