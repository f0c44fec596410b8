//! The heartbeat actor: one per node, on its own executor (I5, docs/architecture.md, incident 1). It keeps
//! every group's failure detection, and costs next to nothing when the groups are idle: its
//! work per heartbeat interval is one frame per peer node, plus only the groups whose state
//! changed or whose deadline came — never a pass over every group.
//!
//! - **Leader side** (`claims`): every `heartbeat_interval` one frame per peer node on the
//!   heartbeat lane, carrying the changes to the set of groups this node leads with that peer
//!   as a member (see [`crate::wire`]). Acks tell which claims each peer holds and accepts;
//!   check-quorum (`QuorumLost` after an election timeout without a quorum) is re-evaluated
//!   only when that, a peer's freshness or a leadership changes, or a grace period ends.
//! - **Follower side** (`held`): a frame that applies renews every claim of its sender at
//!   once. A group covered by a live claim has no election timer running; when the claim is
//!   withdrawn or its sender falls silent for an election timeout, the group's randomized timer
//!   is armed (in `deadlines`, one ordered set for all groups), counted from the last frame
//!   that covered it. Appends on the data lane (reported by the partition) count as contact
//!   too. When a timer fires the partition gets `ElectionTimeout`.
//! - **Honesty (I6)**: partitions do not report in on their own (an idle group's actors
//!   sleep). Every partition stamps each of its wake-ups into its `GroupStats` (a counter and
//!   the time), and this actor probes each one — a `Probe` control message, answered simply by
//!   waking up — every half `stall_timeout`, spread over time. A partition is stalled when it
//!   has not woken for `stall_timeout` although a probe has been waiting for it for half that:
//!   busy, not idle. Then this node stops vouching for it (its claim is withdrawn, so the
//!   followers elect another leader) and the stall is logged and shown in metrics. A stall is
//!   detected within `stall_timeout` of the last wake-up (a partition blocked inside a handler
//!   is caught exactly then); a pause shorter than `stall_timeout` that begins with a wake-up
//!   (a blocked handler) and any pause shorter than half of it are never reported.
//!
//! It never waits on the data path: updates arrive on a bounded queue (`heartbeat_queue`,
//! `try_send`; a partition whose update did not fit retries on a tick it arms for that), and
//! its own messages to partitions are `try_send` on their control queues (a timer that could
//! not be delivered fires again at the next interval, a probe that did not fit counts as
//! unanswered).

mod actor;
mod claims;
mod deadlines;
mod held;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use raft_core::rng::SplitMix64;
use raft_core::{GroupId, Term};
use raft_net::Envelope;
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::group::messages::{Control, HbUpdate};
use crate::mailbox::inbox::InboxTx;
use crate::metrics::{GroupStats, HeartbeatStats};
use crate::wire::{Net, WireMsg};

pub(crate) use actor::HeartbeatActor;

/// Cheap handle to the heartbeat actor.
#[derive(Clone)]
pub(crate) struct HeartbeatHandle {
    tx: flume::Sender<HbUpdate>,
    stats: Arc<HeartbeatStats>,
    /// The origin of wake-up stamps (`GroupStats::last_wakeup_us`).
    epoch: Instant,
}

impl HeartbeatHandle {
    /// Registers a group's timers. Returns false if the queue was full; the partition then
    /// retries (it re-registers on a tick).
    pub(crate) fn register(
        &self,
        group: GroupId,
        control: InboxTx<Control>,
        stats: Arc<GroupStats>,
    ) -> bool {
        self.tx
            .try_send(HbUpdate::Register {
                group,
                control,
                stats,
            })
            .is_ok()
    }

    pub(crate) fn unregister(&self, group: GroupId) {
        let _ = self.tx.try_send(HbUpdate::Unregister { group });
    }

    /// Returns false if the update did not fit (the caller retries on a tick).
    pub(crate) fn update(&self, u: HbUpdate) -> bool {
        self.tx.try_send(u).is_ok()
    }

    /// Returns false if the report did not fit.
    pub(crate) fn contact(&self, group: GroupId, term: Term) -> bool {
        self.tx.try_send(HbUpdate::Contact { group, term }).is_ok()
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.tx.try_send(HbUpdate::Shutdown);
    }

    /// The actor's counters.
    pub(crate) fn stats(&self) -> &Arc<HeartbeatStats> {
        &self.stats
    }

    /// `at` as a wake-up stamp: microseconds since this node's epoch.
    pub(crate) fn stamp(&self, at: Instant) -> u64 {
        micros_since(self.epoch, at)
    }
}

/// Creates the handle and the actor; the caller spawns `actor.run()` on the heartbeat executor.
pub(crate) fn new(
    cfg: &NodeConfig,
    net: Net,
    inbound: flume::Receiver<Envelope<WireMsg>>,
) -> (HeartbeatHandle, HeartbeatActor) {
    let (tx, rx) = flume::bounded(cfg.heartbeat_queue);
    let seed = SplitMix64::derive(cfg.raft.seed, &[cfg.node_id, 0x4842]);
    let stats = Arc::new(HeartbeatStats::default());
    let epoch = Instant::now();
    let actor = HeartbeatActor::new(cfg, net, inbound, rx, seed, epoch, stats.clone());
    (HeartbeatHandle { tx, stats, epoch }, actor)
}

/// A session id for this run of the actor: the seed mixed with the start instant, so a node
/// restarted with the same configuration starts a new session. The value is only ever
/// compared for equality, so it cannot make two simulation runs of one seed differ.
pub(super) fn session_id(seed: u64) -> u64 {
    let mut h = DefaultHasher::new();
    Instant::now().hash(&mut h);
    SplitMix64::derive(seed, &[0x5E55, h.finish()])
}

/// Microseconds from `epoch` to `at` (0 before it).
pub(super) fn micros_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}
