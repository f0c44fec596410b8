//! The random fault schedule: crashes, partitions (both ways, one way, bridges), network loss,
//! duplication, delay and reordering, partition-actor pauses, transfer storms, membership churn
//! (add a learner, promote it, remove a voter, with the membership calls' semantics) and disk
//! stalls, drawn from the seed; then the heal that ends them.

use std::time::Duration;

use raft_core::rng::SplitMix64;
use raft_core::{NodeId, Role};
use raft_net::Faults;

use super::scenario::Scenario;
use super::{GROUP, Harness, SimNode};

impl<W: super::Workload> Harness<W> {
    /// The fault phase: until [`SimConfig::duration`](super::SimConfig::duration), every tick
    /// observes the cluster, restarts the crashed nodes that are due, steps the scenario knobs
    /// and, when the random schedule is on and its next fault is due, injects one.
    pub(super) async fn inject_faults(&mut self) {
        let mut rng = SplitMix64::new(SplitMix64::derive(self.cfg.seed, &[0xFA17]));
        let mut next_fault = Duration::from_millis(500);
        let mut scenario = Scenario::new(self.cfg.seed);
        let mut tick = self
            .cfg
            .forced_transfers
            .map_or(Duration::from_millis(100), |p| {
                p.min(Duration::from_millis(100))
            });
        if self.cfg.lossy_churn.is_some() {
            // Cuts come every 0-500 ms: they need a finer step.
            tick = tick.min(Duration::from_millis(10));
        }
        while self.start.elapsed() < self.cfg.duration {
            tokio::time::sleep(tick).await;
            self.observe().await;
            self.restart_due().await;
            self.scenario_step(&mut scenario).await;
            if self.cfg.random_faults && self.start.elapsed() >= next_fault {
                next_fault = self.start.elapsed() + Duration::from_millis(300 + rng.below(1500));
                self.report.faults += 1;
                self.random_fault(&mut rng).await;
            }
        }
        self.scenario_end(&scenario);
        for n in self.nodes.values() {
            if let Ok(m) = n.group_metrics(GROUP).await {
                self.fault_end_commit = self.fault_end_commit.max(m.commit);
            }
        }
        if let Some(lc) = self.cfg.lossy_churn {
            self.stable_phase(lc).await;
        }
    }

    /// Ends every fault: crashed nodes restart, standing partitions and network faults go.
    pub(super) async fn heal_everything(&mut self) {
        for id in std::mem::take(&mut self.down).into_keys() {
            self.restart(id).await;
        }
        self.hung = None;
        self.lagging = None;
        let _ = self.net.heal().await;
        let _ = self.net.set_faults(Faults::default()).await;
        self.trace.line("heal everything");
    }

    /// One fault of the random schedule.
    async fn random_fault(&mut self, rng: &mut SplitMix64) {
        // A crash (kill -9) of a running node, keeping a majority up; it restarts later from
        // what its disk had synced.
        if self.cfg.crashes
            && rng.below(6) == 0
            && (self.down.len() as u64) < (self.cfg.nodes - 1) / 2
        {
            let running: Vec<NodeId> = self.nodes.keys().copied().collect();
            let id = running[rng.below(running.len() as u64) as usize];
            if let Some(n) = self.nodes.remove(&id) {
                n.crash();
                self.report.crashes += 1;
                let back = self.elapsed() + Duration::from_millis(200 + rng.below(2000));
                self.trace
                    .event(|| format!("fault: crash n{id} (restart at {back:?})"));
                self.down.insert(id, back);
            }
            return;
        }
        let ids = self.ids.clone();
        let pick = |rng: &mut SplitMix64| ids[rng.below(ids.len() as u64) as usize];
        match rng.below(11) {
            0 => {
                let n = pick(rng);
                self.trace.event(|| format!("fault: isolate n{n}"));
                let _ = self.net.isolate(n).await;
            }
            1 => {
                let (a, b) = (pick(rng), pick(rng));
                if a != b {
                    self.trace.event(|| format!("fault: cut n{a} -> n{b}"));
                    let _ = self.net.partition_one_way(a, b).await;
                }
            }
            2 => {
                // A "bridge": two nodes cannot talk to each other but both reach a third.
                let (a, b) = (pick(rng), pick(rng));
                if a != b {
                    self.trace.event(|| format!("fault: cut n{a} <-> n{b}"));
                    let _ = self.net.partition(a, b).await;
                }
            }
            3 if self.cfg.network_faults => {
                let faults = Faults {
                    drop_probability: rng.below(20) as f64 / 100.0,
                    duplicate_probability: rng.below(10) as f64 / 100.0,
                    min_delay: Duration::ZERO,
                    max_delay: Duration::from_millis(rng.below(30)),
                    reorder_probability: rng.below(20) as f64 / 100.0,
                    reorder_window: Duration::from_millis(20),
                };
                self.trace.event(|| format!("fault: network {faults:?}"));
                let _ = self.net.set_faults(faults).await;
            }
            4 => {
                // A stop-the-world pause of one node's partition actor (the MIT 6.824 Lab 2B flakes).
                let pause = Duration::from_millis(200 + rng.below(2000));
                let n = pick(rng);
                self.trace
                    .event(|| format!("fault: pause n{n}'s partition for {pause:?}"));
                if let Some(node) = self.nodes.get(&n) {
                    let _ = node.freeze_partition(GROUP, pause);
                }
            }
            5 => {
                // A leader-transfer storm: several transfers in a row.
                for _ in 0..3 {
                    let target = pick(rng);
                    self.trace
                        .event(|| format!("fault: transfer storm to n{target}"));
                    for n in self.nodes.values() {
                        let _ = n.transfer_leader(GROUP, target).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            6 => {
                // A membership change at whichever node leads (joint consensus under load).
                let mut leader = None;
                for n in self.nodes.values() {
                    if let Ok(m) = n.group_metrics(GROUP).await {
                        if m.role == Role::Leader {
                            leader = Some(n.clone());
                            break;
                        }
                    }
                }
                if let Some(leader) = leader {
                    self.churn(rng, leader).await;
                }
            }
            7 if self.cfg.disk_stalls => {
                // A hung disk: no sync completes for a while, then it resumes.
                let n = pick(rng);
                let stall = Duration::from_millis(500 + rng.below(4500));
                self.trace
                    .event(|| format!("fault: n{n}'s disk stalls for {stall:?}"));
                if let Some(node) = self.nodes.get(&n) {
                    if node.stall_storage(stall).is_ok() {
                        self.report.disk_stalls += 1;
                    }
                }
            }
            _ => {
                self.trace.line("fault: heal partitions");
                self.heal().await;
                if rng.below(2) == 0 {
                    self.trace.line("fault: network faults off");
                    let _ = self.net.set_faults(Faults::default()).await;
                }
            }
        }
    }
}

/// One step of membership churn, never below three voters.
enum Churn {
    /// A node outside the configuration (a removed one) joins as a learner.
    AddLearner(NodeId),
    /// A learner becomes a voter (refused while it is not caught up).
    Promote(NodeId),
    /// A voter leaves (it learns so, and its group stops).
    Remove,
}

impl<W: super::Workload> Harness<W> {
    /// One step of membership churn at `leader`, with the membership calls' semantics: promote
    /// the first learner, or else give a removed node back as a learner (it hosts the group
    /// again first, as a joining node), or else remove a voter while more than three remain.
    /// The call runs on a task of its own (it resolves only once the change is over), so the
    /// schedule keeps its pace; a success is counted.
    async fn churn(&mut self, rng: &mut SplitMix64, leader: SimNode<W>) {
        let Ok(current) = leader.membership(GROUP).await else {
            return;
        };
        let mut next = current.leave_joint();
        let outsiders: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|id| !next.contains(*id))
            .collect();
        let voters: Vec<NodeId> = next.voters.iter().copied().collect();
        let step = if let Some(&id) = next.learners.iter().next() {
            next.learners.remove(&id);
            next.voters.insert(id);
            Churn::Promote(id)
        } else if let Some(&id) = outsiders.first() {
            next.learners.insert(id);
            Churn::AddLearner(id)
        } else if voters.len() > 3 {
            let id = voters[rng.below(voters.len() as u64) as usize];
            next.voters.remove(&id);
            Churn::Remove
        } else {
            return;
        };
        if let Churn::AddLearner(id) | Churn::Promote(id) = step {
            self.rejoin(id).await;
        }
        self.trace
            .event(|| format!("fault: membership change to {next:?}"));
        let trace = self.trace.clone();
        let done = self.changes_tx.clone();
        tokio::spawn(async move {
            let r = match step {
                Churn::AddLearner(id) => leader.add_learner(GROUP, id, None).await,
                Churn::Promote(_) | Churn::Remove => {
                    leader.change_membership(GROUP, next.clone()).await
                }
            };
            trace.event(|| format!("membership change to {next:?}: {r:?}"));
            if r.is_ok() {
                let _ = done.try_send(());
            }
        });
    }
}
