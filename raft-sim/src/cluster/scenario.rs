//! The scenario knobs at work: the hung follower (the NebulaGraph raftex deadlock), the
//! lagging follower (braft on arm64), forced leader transfers (NebulaGraph, Apache Kvrocks
//! master switching) and leader pauses and isolations (the MIT 6.824 Lab 2B flakes), each
//! judged as it goes.

use std::time::Duration;

use raft_core::{NodeId, Term};
use raft_net::Lane;

use raft_core::rng::SplitMix64;

use super::{GROUP, Harness, LeaderPauses, LossyChurn};

/// State of the forced-transfer scenario.
#[derive(Default)]
struct Forced {
    next_at: Duration,
    /// A transfer was started from this term; it must finish by the deadline.
    pending: Option<(Term, Duration)>,
    k: usize,
}

/// One episode of the leader-pause scenario.
struct Episode {
    leader: NodeId,
    term: Term,
    /// The highest term any node had when the episode began.
    max_term: Term,
    isolate: bool,
    /// 0: paused (or acks cut); 1: isolated (isolating episodes only).
    stage: u8,
    next_at: Duration,
}

/// The leader-pause scenario.
#[derive(Default)]
struct Pauses {
    next_at: Duration,
    count: u64,
    active: Option<Episode>,
}

/// The lossy-churn scenario.
struct Churn {
    started: bool,
    /// The leader to cut off next, and when.
    target: Option<(Term, NodeId)>,
    next_cut: Duration,
    /// Nodes cut off, oldest first.
    cut: Vec<NodeId>,
    rng: SplitMix64,
}

/// The state of the scenario knobs during the fault phase.
pub(super) struct Scenario {
    forced: Forced,
    pauses: Pauses,
    churn: Churn,
}

impl Scenario {
    /// Nothing started yet; the first leader pause comes 2 s into the run. `seed` shapes the
    /// lossy-churn cuts.
    pub(super) fn new(seed: u64) -> Self {
        Scenario {
            churn: Churn {
                started: false,
                target: None,
                next_cut: Duration::ZERO,
                cut: Vec::new(),
                rng: SplitMix64::new(SplitMix64::derive(seed, &[0xC4u64])),
            },
            forced: Forced::default(),
            pauses: Pauses {
                next_at: Duration::from_secs(2),
                ..Default::default()
            },
        }
    }
}

impl<W: super::Workload> Harness<W> {
    /// One step of the scenario knobs.
    pub(super) async fn scenario_step(&mut self, scenario: &mut Scenario) {
        let Scenario {
            forced,
            pauses,
            churn,
        } = scenario;
        let now = self.elapsed();
        if self.cfg.hung_follower && self.hung.is_none() && self.report.victim.is_none() {
            if let Some((_, leader)) = self.leader {
                // The highest-numbered follower: never the leader, whose hung data lane would
                // leave a leader that heartbeats but cannot commit.
                let v = self
                    .ids
                    .iter()
                    .copied()
                    .rev()
                    .find(|&n| n != leader)
                    .unwrap_or(leader);
                self.hung = Some(v);
                self.report.victim = Some(v);
                self.trace
                    .event(|| format!("scenario: n{v}'s data lane hangs both ways"));
                self.standing_partitions().await;
            }
        }
        if let Some(lf) = self.cfg.lagging_follower {
            if now >= lf.from && now < lf.until && self.lagging.is_none() {
                if let Some((_, leader)) = self.leader {
                    let v = self
                        .ids
                        .iter()
                        .copied()
                        .find(|&n| n != leader)
                        .unwrap_or(leader);
                    self.lagging = Some(v);
                    self.report.victim = Some(v);
                    self.trace.event(|| format!("scenario: n{v} cut off"));
                    self.standing_partitions().await;
                }
            } else if now >= lf.until && self.lagging.is_some() {
                self.lagging = None;
                self.trace.line("scenario: lagging follower reconnected");
                self.heal().await;
            }
        }
        if let Some(period) = self.cfg.forced_transfers {
            self.forced_step(forced, period).await;
        }
        if let Some(lp) = self.cfg.leader_pauses {
            self.pause_step(pauses, lp).await;
        }
        if let Some(lc) = self.cfg.lossy_churn {
            self.churn_step(churn, lc).await;
        }
    }

    /// Lossy churn: the network lossy from the start; the leader cut off at random intervals,
    /// the oldest cut-off node reconnected when a cut would leave fewer than `min_up` nodes.
    async fn churn_step(&mut self, c: &mut Churn, lc: LossyChurn) {
        let now = self.elapsed();
        if !c.started {
            c.started = true;
            let _ = self.net.set_faults(lc.faults).await;
            self.trace
                .event(|| format!("scenario: lossy network {:?}", lc.faults));
        }
        let Some((term, leader)) = self.leader else {
            return;
        };
        if c.cut.contains(&leader) {
            // The newest leader known is already cut off: no newer one yet.
            return;
        }
        // Each leader is cut off a random 0 to `cut_every` after it was first seen.
        if c.target != Some((term, leader)) {
            c.target = Some((term, leader));
            let wait = c.rng.below(lc.cut_every.as_millis() as u64 + 1);
            c.next_cut = now + Duration::from_millis(wait);
        }
        if now < c.next_cut {
            return;
        }
        let nodes = self.ids.len() as u64;
        if nodes - c.cut.len() as u64 <= lc.min_up {
            let back = c.rng.below(c.cut.len() as u64) as usize;
            let back = c.cut.remove(back);
            self.trace
                .event(|| format!("scenario: n{back} reconnected"));
            let _ = self.net.heal().await;
            for &n in &c.cut {
                let _ = self.net.isolate(n).await;
            }
        }
        self.trace
            .event(|| format!("scenario: leader n{leader} (term {term}) cut off"));
        let _ = self.net.isolate(leader).await;
        c.cut.push(leader);
    }

    /// After lossy churn: every node reconnected, the network still lossy; the time to the
    /// first commit.
    pub(super) async fn stable_phase(&mut self, lc: LossyChurn) {
        let _ = self.net.heal().await;
        self.trace
            .line("scenario: every node reconnected, the network still lossy");
        let stable = tokio::time::Instant::now();
        let mut k = 0usize;
        while stable.elapsed() < lc.stable_bound {
            let current: Vec<&super::SimNode<W>> = self.nodes.values().collect();
            let n = current[k % current.len()];
            k += 1;
            if n.propose(GROUP, self.workload.probe()).await.is_ok() {
                let took = stable.elapsed();
                self.report.first_commit_when_stable = Some(took);
                self.trace
                    .event(|| format!("scenario: first commit {took:?} after a stable majority"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Notes a forced election still pending when the faults end (the bound is not judged).
    pub(super) fn scenario_end(&self, scenario: &Scenario) {
        if let Some((before, _)) = scenario.forced.pending {
            self.trace
                .event(|| format!("forced election from term {before} still pending at the end"));
        }
    }

    /// Forced transfers: one at a time, each checked to complete within the bound.
    async fn forced_step(&mut self, f: &mut Forced, period: Duration) {
        let now = self.elapsed();
        if let Some((before, deadline)) = f.pending {
            if self.leader.is_some_and(|(t, _)| t > before) {
                f.pending = None;
                self.report.forced_elections += 1;
                f.next_at = now + period;
            } else if now > deadline {
                self.violate(format!(
                    "forced election: no leader of a term after {before} within {:?}",
                    self.cfg.forced_election_bound
                ));
                f.pending = None;
                f.next_at = now + period;
            }
            return;
        }
        if now < f.next_at {
            return;
        }
        let Some((term, leader)) = self.leader else {
            return;
        };
        let candidates: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|&n| {
                n != leader
                    && Some(n) != self.hung
                    && Some(n) != self.lagging
                    && !self.down.contains_key(&n)
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let target = candidates[f.k % candidates.len()];
        f.k += 1;
        let Some(node) = self.nodes.get(&leader) else {
            return;
        };
        match node.transfer_leader(GROUP, target).await {
            Ok(()) => {
                self.trace.event(|| {
                    format!("scenario: forced transfer n{leader} -> n{target} (term {term})")
                });
                f.pending = Some((term, now + self.cfg.forced_election_bound));
            }
            Err(e) => {
                self.trace
                    .event(|| format!("scenario: transfer n{leader} -> n{target} refused: {e}"));
            }
        }
    }

    /// Leader pauses: a pause alone must not change the term; an isolation must.
    async fn pause_step(&mut self, p: &mut Pauses, lp: LeaderPauses) {
        let now = self.elapsed();
        if let Some(ep) = &mut p.active {
            if now < ep.next_at {
                return;
            }
            if !ep.isolate {
                self.report.pauses += 1;
                if self.max_term > ep.max_term {
                    self.report.pause_elections += 1;
                    let (leader, t0, t1) = (ep.leader, ep.max_term, self.max_term);
                    self.trace.event(|| {
                        format!("scenario: pause of n{leader} was followed by term {t1} (was {t0})")
                    });
                }
                p.active = None;
            } else if ep.stage == 0 {
                ep.stage = 1;
                ep.next_at = now + lp.isolation.unwrap_or_default();
                let leader = ep.leader;
                self.trace.event(|| format!("scenario: n{leader} isolated"));
                let _ = self.net.isolate(leader).await;
            } else {
                let (leader, term) = (ep.leader, ep.term);
                p.active = None;
                let took_over = self.leader.is_some_and(|(t, n)| t > term && n != leader);
                self.report.isolations += 1;
                if took_over {
                    self.report.isolation_takeovers += 1;
                }
                self.trace.event(|| {
                    format!(
                        "scenario: n{leader} reconnected; another leader took over: {took_over}"
                    )
                });
                self.heal().await;
            }
            return;
        }
        if now < p.next_at {
            return;
        }
        let Some((term, leader)) = self.leader else {
            return;
        };
        p.next_at = now + lp.every;
        p.count += 1;
        let isolate = lp.isolation.is_some() && p.count % 2 == 0;
        if isolate {
            self.trace.event(|| {
                format!("scenario: acknowledgements to leader n{leader} (term {term}) lost")
            });
            for &f in self.ids.iter().filter(|&&n| n != leader) {
                let _ = self.net.partition_lane(f, leader, Lane::Data).await;
            }
        } else {
            self.trace.event(|| {
                format!(
                    "scenario: leader n{leader} (term {term}) paused for {:?}",
                    lp.pause
                )
            });
            if let Some(n) = self.nodes.get(&leader) {
                let _ = n.freeze_partition(GROUP, lp.pause);
            }
        }
        p.active = Some(Episode {
            leader,
            term,
            max_term: self.max_term,
            isolate,
            stage: 0,
            // A pause is judged after it ended plus an election timeout's worth of heartbeats.
            next_at: now + lp.pause + Duration::from_millis(if isolate { 0 } else { 1000 }),
        });
    }
}
