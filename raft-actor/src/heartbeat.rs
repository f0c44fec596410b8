//! The heartbeat actor: one per node, on its own executor (DESIGN.md I5, incident 1).
//!
//! - Leader side: every `heartbeat_interval` it sends **one** frame per peer node on the
//!   heartbeat lane listing every group this node leads with that peer as a member, and tracks
//!   acknowledgements for check-quorum (`QuorumLost` after an election timeout without a quorum).
//! - Follower side: heartbeats (and data-lane appends reported by the partition) reset the
//!   group's randomized election timer; when it fires the partition gets `ElectionTimeout`.
//! - Honesty (I6): a partition actor reports `alive` on every tick. If it stays silent for
//!   `stall_timeout`, this node stops vouching for the group — no more heartbeats for it, so the
//!   followers elect another leader — and the stall is logged and shown in metrics.
//!
//! It never waits on the data path: updates arrive on a bounded queue (`heartbeat_queue`,
//! `try_send`; a partition whose update did not fit retries on its next tick), and its own
//! messages to partitions are `try_send` on their control queues (a timer that could not be
//! delivered simply fires again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raft_core::rng::SplitMix64;
use raft_core::{GroupId, Membership, NodeId, Role, Term, quorum};
use raft_net::{Envelope, Lane};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::config::NodeConfig;
use crate::metrics::GroupStats;
use crate::partition::{Control, Net};
use crate::wire::WireMsg;

/// Updates from partition actors.
pub(crate) enum HbUpdate {
    Register {
        group: GroupId,
        control: flume::Sender<Control>,
        stats: Arc<GroupStats>,
    },
    Unregister {
        group: GroupId,
    },
    Role {
        group: GroupId,
        role: Role,
        term: Term,
        voters: BTreeSet<NodeId>,
        voters_outgoing: BTreeSet<NodeId>,
        members: BTreeSet<NodeId>,
    },
    Alive {
        group: GroupId,
    },
    /// The partition accepted an append or snapshot from its leader at `term`.
    Contact {
        group: GroupId,
        term: Term,
    },
    Shutdown,
}

/// Cheap handle to the heartbeat actor.
#[derive(Clone)]
pub(crate) struct HeartbeatHandle {
    tx: flume::Sender<HbUpdate>,
}

impl HeartbeatHandle {
    /// Registers a group's timers. Returns false if the queue was full; the partition then
    /// retries (it re-registers with its next role update).
    pub(crate) fn register(
        &self,
        group: GroupId,
        control: flume::Sender<Control>,
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

    /// Returns false if the update did not fit (the caller retries on its next tick).
    pub(crate) fn update(&self, u: HbUpdate) -> bool {
        self.tx.try_send(u).is_ok()
    }

    pub(crate) fn alive(&self, group: GroupId) {
        let _ = self.tx.try_send(HbUpdate::Alive { group });
    }

    pub(crate) fn contact(&self, group: GroupId, term: Term) {
        let _ = self.tx.try_send(HbUpdate::Contact { group, term });
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.tx.try_send(HbUpdate::Shutdown);
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
    let actor = HeartbeatActor {
        me: cfg.node_id,
        interval: cfg.heartbeat_interval,
        election: cfg.election_timeout,
        stall: cfg.stall_timeout,
        net,
        inbound,
        rx,
        groups: BTreeMap::new(),
        rng: SplitMix64::new(seed),
    };
    (HeartbeatHandle { tx }, actor)
}

struct GroupTimer {
    control: flume::Sender<Control>,
    stats: Arc<GroupStats>,
    role: Role,
    term: Term,
    membership: Membership,
    members: BTreeSet<NodeId>,
    last_contact: Instant,
    timeout: Duration,
    last_alive: Instant,
    leader_since: Instant,
    acks: BTreeMap<NodeId, Instant>,
    stalled: bool,
}

pub(crate) struct HeartbeatActor {
    me: NodeId,
    interval: Duration,
    election: Duration,
    stall: Duration,
    net: Net,
    inbound: flume::Receiver<Envelope<WireMsg>>,
    rx: flume::Receiver<HbUpdate>,
    groups: BTreeMap<GroupId, GroupTimer>,
    rng: SplitMix64,
}

impl HeartbeatActor {
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                u = self.rx.recv_async() => match u {
                    Ok(HbUpdate::Shutdown) | Err(_) => break,
                    Ok(u) => self.on_update(u),
                },
                env = self.inbound.recv_async() => match env {
                    Ok(env) => self.on_inbound(env),
                    Err(_) => break,
                },
                _ = ticker.tick() => self.on_interval(),
            }
        }
        debug!(node = self.me, "heartbeat actor stopped");
    }

    /// A random election timeout in `[election, 2 * election)`, in whole milliseconds (tokio's
    /// timers fire on millisecond ticks, so finer thresholds buy nothing and would let the
    /// paused clock's sub-millisecond offset from the timer wheel decide comparisons).
    fn random_timeout(&mut self) -> Duration {
        let base = self.election.as_millis().max(1) as u64;
        Duration::from_millis(base + self.rng.below(base))
    }

    fn on_update(&mut self, u: HbUpdate) {
        let now = Instant::now();
        match u {
            HbUpdate::Register {
                group,
                control,
                stats,
            } => {
                let timeout = self.random_timeout();
                self.groups.insert(
                    group,
                    GroupTimer {
                        control,
                        stats,
                        role: Role::Follower,
                        term: 0,
                        membership: Membership::default(),
                        members: BTreeSet::new(),
                        last_contact: now,
                        timeout,
                        last_alive: now,
                        leader_since: now,
                        acks: BTreeMap::new(),
                        stalled: false,
                    },
                );
            }
            HbUpdate::Unregister { group } => {
                self.groups.remove(&group);
            }
            HbUpdate::Role {
                group,
                role,
                term,
                voters,
                voters_outgoing,
                members,
            } => {
                let timeout = self.random_timeout();
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                if role == Role::Leader && g.role != Role::Leader {
                    g.leader_since = now;
                    g.acks.clear();
                }
                if role != Role::Leader && (g.role == Role::Leader || term != g.term) {
                    g.last_contact = now;
                    g.timeout = timeout;
                }
                g.role = role;
                g.term = term;
                g.membership = Membership {
                    voters,
                    voters_outgoing,
                    learners: BTreeSet::new(),
                };
                g.members = members;
            }
            HbUpdate::Alive { group } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.last_alive = now;
                    if g.stalled {
                        info!(
                            group,
                            "partition actor progressing again; vouching for it again"
                        );
                        g.stalled = false;
                        g.stats.stalled.store(false, Ordering::Relaxed);
                    }
                }
            }
            HbUpdate::Contact { group, term, .. } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    if term >= g.term && g.role != Role::Leader {
                        g.last_contact = now;
                    }
                }
            }
            HbUpdate::Shutdown => {}
        }
    }

    fn on_inbound(&mut self, env: Envelope<WireMsg>) {
        let now = Instant::now();
        match env.msg {
            WireMsg::Heartbeats(list) => {
                let mut acks = Vec::with_capacity(list.len());
                for (group, term) in list {
                    let Some(g) = self.groups.get_mut(&group) else {
                        continue;
                    };
                    if term < g.term || (g.role == Role::Leader && term == g.term) {
                        continue;
                    }
                    g.last_contact = now;
                    acks.push((group, term));
                }
                if !acks.is_empty() {
                    let _ =
                        self.net
                            .send(env.from, Lane::Heartbeat, 0, WireMsg::HeartbeatAcks(acks));
                }
            }
            WireMsg::HeartbeatAcks(list) => {
                for (group, term) in list {
                    if let Some(g) = self.groups.get_mut(&group) {
                        if g.role == Role::Leader && g.term == term {
                            g.acks.insert(env.from, now);
                        }
                    }
                }
            }
            WireMsg::Raft(_) => {
                warn!(
                    from = env.from,
                    "raft message on the heartbeat lane; dropped"
                );
            }
        }
    }

    fn on_interval(&mut self) {
        let now = Instant::now();
        let me = self.me;
        let mut batches: BTreeMap<NodeId, Vec<(GroupId, Term)>> = BTreeMap::new();
        let mut timeouts = Vec::new();
        for (&group, g) in self.groups.iter_mut() {
            // I6: stop vouching for a partition actor that stopped making progress.
            if !g.stalled && now.duration_since(g.last_alive) >= self.stall {
                g.stalled = true;
                g.stats.stalled.store(true, Ordering::Relaxed);
                g.stats.stalls.fetch_add(1, Ordering::Relaxed);
                warn!(group, silent = ?now.duration_since(g.last_alive), "partition actor stalled; no longer vouching for it");
            }
            match g.role {
                Role::Leader => {
                    if g.stalled {
                        continue;
                    }
                    for &peer in &g.members {
                        if peer != me {
                            batches.entry(peer).or_default().push((group, g.term));
                        }
                    }
                    if now.duration_since(g.leader_since) >= self.election {
                        let window = self.election;
                        let acks = &g.acks;
                        let ok = quorum::has_quorum(&g.membership, |n| {
                            n == me
                                || acks
                                    .get(&n)
                                    .is_some_and(|t| now.duration_since(*t) < window)
                        });
                        if !ok {
                            warn!(
                                group,
                                term = g.term,
                                "check-quorum: no quorum contact within an election timeout"
                            );
                            let _ = g.control.try_send(Control::QuorumLost);
                            g.leader_since = now;
                        }
                    }
                }
                _ => {
                    if g.membership.is_voter(me) && now.duration_since(g.last_contact) >= g.timeout
                    {
                        debug!(group, "election timeout");
                        if g.control.try_send(Control::ElectionTimeout).is_ok() {
                            g.last_contact = now;
                            timeouts.push(group);
                        }
                    }
                }
            }
        }
        for group in timeouts {
            let t = self.random_timeout();
            if let Some(g) = self.groups.get_mut(&group) {
                g.timeout = t;
            }
        }
        for (peer, list) in batches {
            let _ = self
                .net
                .send(peer, Lane::Heartbeat, 0, WireMsg::Heartbeats(list));
        }
    }
}
