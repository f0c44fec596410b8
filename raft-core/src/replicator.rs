//! `ReplicatorCore`: a leader's view of one peer — what to send it next.
//!
//! One per (group, peer) on a leader, created for one leadership term (its epoch). States, as in
//! etcd-raft's `Progress`:
//! - **Probe**: the peer's log position is unknown; send one message at a time and wait for the
//!   answer (or a timeout) before the next, backing off with the peer's conflict hint.
//! - **Replicate**: the peer is in sync; pipeline messages optimistically, up to a window
//!   limited by count and bytes (the in-flight list).
//! - **Snapshot**: the entries the peer needs were compacted; a snapshot is being sent and
//!   nothing else goes out until it is answered.
//!
//! The runtime asks [`ReplicatorCore::next_plan`] what to send, reads those entries from its
//! storage, sends them, and reports back with [`ReplicatorCore::sent`]. Answers go to
//! [`ReplicatorCore::on_append_response`] / [`ReplicatorCore::on_snapshot_response`], whose
//! [`Outcome`] tells it what to report to the partition (`progress`, or a newer term).

use std::collections::VecDeque;

use tracing::debug;

use crate::config::Config;
use crate::message::{AppendResponse, SnapshotStatus};
use crate::types::{Index, NodeId, Term};

/// The replication state of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "model", derive(Hash))]
pub enum ReplState {
    /// Position unknown: one message at a time.
    Probe,
    /// In sync: pipelined messages within the window.
    Replicate,
    /// Sending the snapshot at `index`.
    Snapshot {
        /// Index of the snapshot being sent.
        index: Index,
    },
}

/// What to send next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// AppendEntries with `prev_index` and the entries `from..=to` (empty when `to < from`: a
    /// probe that only checks `prev_index`). The runtime may send fewer entries (say, to stay
    /// under a byte limit) and reports the last one it sent to `sent`.
    Append {
        /// Index of the entry before the first one sent.
        prev_index: Index,
        /// First entry to send.
        from: Index,
        /// Last entry to send at most.
        to: Index,
    },
    /// The peer needs entries that were compacted: send the latest snapshot.
    Snapshot,
}

/// What an acknowledgement changed, for the runtime to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The peer's match index advanced to this: report `PartitionCore::progress`.
    pub progress: Option<Index>,
    /// The peer has a newer term: the leader must step down (step the message into the
    /// partition core).
    pub higher_term: Option<Term>,
    /// The answer belonged to this epoch and counts as contact with the peer.
    pub heard: bool,
}

/// One leader's replication state for one peer.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct ReplicatorCore {
    peer: NodeId,
    term: Term,
    state: ReplState,
    /// Highest index known replicated on the peer. Invariant: `matched < next`.
    matched: Index,
    /// Next index to send.
    next: Index,
    /// Highest commit index told to the peer (to send a commit-only update when it moves).
    sent_commit: Index,
    /// Messages in flight in Replicate state: (last index, bytes), ascending.
    inflight: VecDeque<(Index, u64)>,
    inflight_bytes: u64,
    /// Probe state: a probe is out and unanswered.
    probe_sent: bool,
    /// Ticks since the last answer while something is outstanding.
    idle_ticks: u32,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
    max_entries_per_msg: u64,
    probe_ticks: u32,
}

impl ReplicatorCore {
    /// A replicator for `peer`, started when this node became leader in `term` with its log
    /// ending at `last_index`. It starts by probing at `last_index + 1`.
    pub fn new(cfg: &Config, peer: NodeId, term: Term, last_index: Index) -> Self {
        ReplicatorCore {
            peer,
            term,
            state: ReplState::Probe,
            matched: 0,
            next: last_index + 1,
            sent_commit: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            probe_sent: false,
            idle_ticks: 0,
            max_inflight_msgs: cfg.max_inflight_msgs,
            max_inflight_bytes: cfg.max_inflight_bytes,
            max_entries_per_msg: cfg.max_entries_per_msg as u64,
            probe_ticks: cfg.probe_ticks,
        }
    }

    /// The peer.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The leadership term (epoch) this replicator serves.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Current state.
    pub fn state(&self) -> ReplState {
        self.state
    }

    /// Highest index known replicated on the peer.
    pub fn matched(&self) -> Index {
        self.matched
    }

    /// Next index to send.
    pub fn next_index(&self) -> Index {
        self.next
    }

    /// Messages in flight.
    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes in flight.
    pub fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes
    }

    /// True if the window is full (by count or bytes).
    pub fn window_full(&self) -> bool {
        self.inflight.len() >= self.max_inflight_msgs
            || self.inflight_bytes >= self.max_inflight_bytes
    }

    /// What to send next given the leader's log bounds and commit index, or `None` to wait
    /// (window full, probe outstanding, snapshot in progress, or nothing new). When there are no
    /// new entries but the peer could learn a higher commit index, the plan is an empty append
    /// at the peer's match index (as etcd-raft does), so followers apply without waiting for
    /// the next heartbeat.
    pub fn next_plan(&self, first_index: Index, last_index: Index, commit: Index) -> Option<Plan> {
        let send_from = |next: Index| {
            if next < first_index {
                return Plan::Snapshot;
            }
            let to = last_index.min(next.saturating_add(self.max_entries_per_msg - 1));
            Plan::Append {
                prev_index: next - 1,
                from: next,
                to,
            }
        };
        match self.state {
            ReplState::Snapshot { .. } => None,
            ReplState::Probe => {
                if self.probe_sent || (self.matched >= last_index && self.matched + 1 == self.next)
                {
                    None
                } else {
                    Some(send_from(self.next))
                }
            }
            ReplState::Replicate => {
                if self.next <= last_index && !self.window_full() {
                    Some(send_from(self.next))
                } else if commit.min(self.matched) > self.sent_commit
                    && self.matched >= first_index.saturating_sub(1)
                {
                    let m = self.matched;
                    Some(Plan::Append {
                        prev_index: m,
                        from: m + 1,
                        to: m,
                    })
                } else {
                    None
                }
            }
        }
    }

    /// True when `plan` (from [`Self::next_plan`]) sends no entries and only tells the peer a
    /// newer commit index. Such an append may wait a little: the next one that carries entries
    /// tells the commit index too. A probe is never one.
    pub fn only_commit(&self, plan: &Plan) -> bool {
        self.state == ReplState::Replicate
            && matches!(*plan, Plan::Append { prev_index, from, to }
                if to < from && prev_index == self.matched)
    }

    /// The runtime sent AppendEntries with entries up to `last_sent` (`prev_index` when empty),
    /// `bytes` of entries in all, carrying commit index `commit`.
    pub fn sent(&mut self, prev_index: Index, last_sent: Index, bytes: u64, commit: Index) {
        self.sent_commit = self.sent_commit.max(commit.min(last_sent));
        match self.state {
            ReplState::Probe => {
                self.probe_sent = true;
                self.idle_ticks = 0;
            }
            ReplState::Replicate => {
                if last_sent > prev_index {
                    if self.inflight.is_empty() {
                        self.idle_ticks = 0;
                    }
                    self.next = last_sent + 1;
                    self.inflight.push_back((last_sent, bytes));
                    self.inflight_bytes += bytes;
                }
            }
            ReplState::Snapshot { .. } => {}
        }
    }

    /// The runtime started sending the snapshot at `index`.
    pub fn snapshot_sent(&mut self, index: Index) {
        debug!(peer = self.peer, index, "sending snapshot");
        self.state = ReplState::Snapshot { index };
        self.clear_inflight();
        self.idle_ticks = 0;
    }

    /// The term rules for an answer sent in `term`: `Err` with what to report if it is from
    /// another epoch (a newer term, or a stale answer), `Ok` with a heard-from outcome if not.
    fn answer_in_epoch(&mut self, term: Term) -> Result<Outcome, Outcome> {
        if term > self.term {
            return Err(Outcome {
                higher_term: Some(term),
                ..Default::default()
            });
        }
        if term < self.term {
            return Err(Outcome::default());
        }
        self.idle_ticks = 0;
        Ok(Outcome {
            heard: true,
            ..Default::default()
        })
    }

    /// An AppendEntries answer from the peer, sent in the peer's `term`.
    pub fn on_append_response(&mut self, term: Term, resp: &AppendResponse) -> Outcome {
        let mut out = match self.answer_in_epoch(term) {
            Ok(out) => out,
            Err(out) => return out,
        };
        match *resp {
            AppendResponse::Success { match_index } => {
                if match_index > self.matched {
                    self.matched = match_index;
                    out.progress = Some(match_index);
                }
                self.next = self.next.max(self.matched + 1);
                self.free_inflight(self.matched);
                match self.state {
                    ReplState::Probe => {
                        self.probe_sent = false;
                        self.become_replicate();
                    }
                    ReplState::Snapshot { index } if self.matched >= index => {
                        self.become_replicate()
                    }
                    _ => {}
                }
            }
            AppendResponse::Reject {
                rejected_index,
                last_index,
                hint,
            } => {
                if rejected_index < self.matched {
                    return out; // stale: we already know the peer matches further
                }
                if last_index < self.matched {
                    // The peer lacks entries it acknowledged: its log was wiped (its storage
                    // lost, or its group purged and joined again while this leader still
                    // replicated to it). The match index never goes back, so probing again now
                    // would be refused the same way, at once, over and over; the unanswered
                    // message is retried on its timer instead.
                    debug!(
                        peer = self.peer,
                        last_index,
                        matched = self.matched,
                        "peer lost entries it acknowledged; retrying on the timer"
                    );
                    return out;
                }
                if self.state == ReplState::Probe && rejected_index + 1 != self.next {
                    return out; // an answer to an older probe
                }
                if matches!(self.state, ReplState::Snapshot { .. }) {
                    return out;
                }
                let mut next = rejected_index.min(last_index.saturating_add(1));
                if let Some(h) = hint {
                    next = next.min(h.first_index);
                }
                self.next = next.max(self.matched + 1);
                debug!(
                    peer = self.peer,
                    rejected_index,
                    next = self.next,
                    "rejected; probing back"
                );
                self.become_probe();
            }
        }
        out
    }

    /// A snapshot answer from the peer.
    pub fn on_snapshot_response(
        &mut self,
        term: Term,
        index: Index,
        status: SnapshotStatus,
    ) -> Outcome {
        let mut out = match self.answer_in_epoch(term) {
            Ok(out) => out,
            Err(out) => return out,
        };
        let ReplState::Snapshot { index: sending } = self.state else {
            return out;
        };
        if index != sending {
            return out;
        }
        match status {
            SnapshotStatus::ChunkReceived { .. } => {}
            SnapshotStatus::Installed => {
                if index > self.matched {
                    self.matched = index;
                    out.progress = Some(index);
                }
                self.next = self.matched + 1;
                self.become_probe();
            }
            SnapshotStatus::Rejected => {
                self.next = self.matched + 1;
                self.become_probe();
            }
        }
        out
    }

    /// True while a tick can change something: a probe, a pipelined window or a snapshot is
    /// waiting for an answer (the retransmission timers below). Otherwise `tick` does nothing,
    /// so a runtime may stop ticking an idle replicator; every wait starts its count afresh.
    pub fn needs_ticks(&self) -> bool {
        match self.state {
            ReplState::Probe => self.probe_sent,
            ReplState::Replicate => !self.inflight.is_empty(),
            ReplState::Snapshot { .. } => true,
        }
    }

    /// The peer is reachable again after a silence (the runtime's failure detector says so):
    /// whatever is still waiting for an answer was most likely lost on the way, so it is
    /// retried now instead of after its timeout — a probe is re-sent, an unanswered window or
    /// snapshot falls back to probing from the match index. Returns true if there may be
    /// something to send now. Nothing changes when nothing waits.
    pub fn peer_reachable(&mut self) -> bool {
        match self.state {
            ReplState::Probe if self.probe_sent => {
                self.probe_sent = false;
                self.idle_ticks = 0;
                true
            }
            ReplState::Replicate if !self.inflight.is_empty() => {
                self.next = self.matched + 1;
                self.become_probe();
                true
            }
            ReplState::Snapshot { .. } => {
                debug!(
                    peer = self.peer,
                    "peer reachable again; restarting from a probe"
                );
                self.next = self.matched + 1;
                self.become_probe();
                true
            }
            _ => false,
        }
    }

    /// One tick: re-probe after silence, and fall back to probing when a pipelined window went
    /// unanswered (messages were lost). Returns true if there may be something to send now.
    pub fn tick(&mut self) -> bool {
        match self.state {
            ReplState::Probe if self.probe_sent => {
                self.idle_ticks += 1;
                if self.idle_ticks >= self.probe_ticks {
                    self.probe_sent = false;
                    self.idle_ticks = 0;
                    return true;
                }
                false
            }
            ReplState::Replicate if !self.inflight.is_empty() => {
                self.idle_ticks += 1;
                if self.idle_ticks >= 4 * self.probe_ticks {
                    debug!(
                        peer = self.peer,
                        "no answer to the pipelined window; probing"
                    );
                    self.next = self.matched + 1;
                    self.become_probe();
                    return true;
                }
                false
            }
            ReplState::Snapshot { .. } => {
                self.idle_ticks += 1;
                if self.idle_ticks >= 20 * self.probe_ticks {
                    debug!(peer = self.peer, "snapshot transfer went silent; probing");
                    self.next = self.matched + 1;
                    self.become_probe();
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    fn become_probe(&mut self) {
        self.state = ReplState::Probe;
        self.probe_sent = false;
        self.idle_ticks = 0;
        self.clear_inflight();
    }

    fn become_replicate(&mut self) {
        self.state = ReplState::Replicate;
        self.next = self.matched + 1;
        self.idle_ticks = 0;
        self.clear_inflight();
    }

    fn free_inflight(&mut self, upto: Index) {
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > upto {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}
