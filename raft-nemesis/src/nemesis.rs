//! The fault schedule: what goes wrong, when, and for how long.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft_core::NodeId;
use raft_core::rng::SplitMix64;
use tracing::{info, warn};

use crate::net::Net;
use crate::process::Proc;

/// How long past its duration a run may go on to finish its first round.
const FIRST_ROUND_GRACE: Duration = Duration::from_secs(60);

/// How long a fault aimed at the leader waits for there to be one.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// One kind of fault. A run goes through every kind in a fresh random order, round after
/// round, so a short run still sees each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The leader is cut off from every other node (clients can still reach it).
    IsolateLeader,
    /// A minority holding the leader and a majority without it.
    LeaderInMinority,
    /// Two halves joined by one node that reaches both (a "bridge"); with five nodes, the
    /// leader at one end.
    Bridge,
    /// One node cut off from one peer only: the leader and one follower.
    CutPair,
    /// A node disconnected from everything, clients included.
    Disconnect,
    /// The leader stopped with SIGSTOP for 100 ms to 5 s, then continued.
    PauseLeader,
    /// A follower stopped with SIGSTOP for 100 ms to 5 s, then continued.
    PauseFollower,
    /// A node (the leader every other time) SIGKILLed and restarted from its WAL.
    Kill,
    /// Leadership transferred several times in quick succession to random nodes.
    TransferStorm,
    /// A follower removed from the cluster and a fresh node added in its place.
    Membership,
}

impl Fault {
    /// Every kind of fault.
    pub const ALL: [Fault; 10] = [
        Fault::IsolateLeader,
        Fault::LeaderInMinority,
        Fault::Bridge,
        Fault::CutPair,
        Fault::Disconnect,
        Fault::PauseLeader,
        Fault::PauseFollower,
        Fault::Kill,
        Fault::TransferStorm,
        Fault::Membership,
    ];
}

/// What a [`Nemesis`] needs from the service under test.
#[allow(async_fn_in_trait)] // used with concrete types only, in tests
pub trait Cluster {
    /// The leader now, if there is one the service can see (the group the workload uses).
    async fn leader(&mut self, net: &Net) -> Option<NodeId>;

    /// Asks the cluster to transfer leadership to `to`.
    async fn transfer_leader(&mut self, to: NodeId) -> Result<(), String>;

    /// Removes `old` from the cluster, then adds node `new` (already in `net`, not running
    /// yet) in its place, starting its process into `procs`. Returns once the cluster has
    /// its full set of voters again, or an error saying what did not happen.
    async fn replace(
        &mut self,
        net: &mut Net,
        procs: &mut BTreeMap<NodeId, Proc>,
        old: NodeId,
        new: NodeId,
    ) -> Result<(), String>;
}

/// Counts of what a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Partitions of any shape (including a disconnected node).
    pub partitions: u64,
    /// SIGSTOP/SIGCONT pauses.
    pub pauses: u64,
    /// SIGKILLs (each followed by a restart from the WAL).
    pub kills: u64,
    /// Leadership transfers asked for.
    pub transfers: u64,
    /// Membership changes that completed (a removal and an addition count two).
    pub membership: u64,
    /// Faults put off because there was no leader to aim them at (each is tried again later
    /// in its round).
    pub skipped: u64,
}

/// The schedule's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long faults go on; the first round of faults (one of each kind, in a random order)
    /// always completes, even if that takes longer.
    pub duration: Duration,
    /// Seeds the order and the targets of the faults.
    pub seed: u64,
    /// Quiet time between two faults (range, ms).
    pub quiet_ms: (u64, u64),
    /// How long a partition is held (range, ms).
    pub partition_ms: (u64, u64),
    /// How long a pause lasts (range, ms).
    pub pause_ms: (u64, u64),
    /// How long a killed node stays down (range, ms).
    pub down_ms: (u64, u64),
    /// Which faults to use.
    pub faults: Vec<Fault>,
}

impl Settings {
    /// The defaults for a run of `duration`: every fault, partitions held 1–3 s, pauses of
    /// 100 ms to 5 s, killed nodes down 0.5–2 s, 0.5–1.5 s of quiet between faults.
    pub fn new(duration: Duration, seed: u64) -> Settings {
        Settings {
            duration,
            seed,
            quiet_ms: (500, 1500),
            partition_ms: (1000, 3000),
            pause_ms: (100, 5000),
            down_ms: (500, 2000),
            faults: Fault::ALL.to_vec(),
        }
    }
}

/// The run's duration in seconds: `RAFT_NEMESIS_SECS` if set, else `default`.
pub fn duration_from_env(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("RAFT_NEMESIS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// A failure the schedule could not recover from (the network could not be shaped, a
/// process could not be signalled or restarted).
#[derive(Debug, thiserror::Error)]
#[error("nemesis: {0}")]
pub struct NemesisError(pub String);

/// Drives faults into a [`Net`] and its processes.
pub struct Nemesis {
    /// The network.
    pub net: Net,
    /// The server processes, by node.
    pub procs: BTreeMap<NodeId, Proc>,
    settings: Settings,
    rng: SplitMix64,
    tally: Tally,
    /// What happened, one line per fault, with its time from the start.
    log: Vec<String>,
}

impl Nemesis {
    /// A nemesis over running processes.
    pub fn new(net: Net, procs: BTreeMap<NodeId, Proc>, settings: Settings) -> Nemesis {
        let rng = SplitMix64::new(settings.seed);
        Nemesis {
            net,
            procs,
            settings,
            rng,
            tally: Tally::default(),
            log: Vec::new(),
        }
    }

    /// What the run did so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// One line per fault, each with its time from the start of the run.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Runs the schedule for the configured duration, then heals everything (network,
    /// pauses, stopped processes) and returns the tally.
    pub async fn run<C: Cluster>(&mut self, cluster: &mut C) -> Result<Tally, NemesisError> {
        let started = Instant::now();
        let duration = self.settings.duration;
        let mut round: Vec<Fault> = Vec::new();
        let mut first_round_done = false;
        loop {
            let elapsed = started.elapsed();
            if round.is_empty() {
                // A round was started and every fault of it done.
                first_round_done |= !self.log.is_empty();
                round = self.settings.faults.clone();
                // Fisher-Yates, seeded.
                for i in (1..round.len()).rev() {
                    let j = self.rng.below(i as u64 + 1) as usize;
                    round.swap(i, j);
                }
            }
            // The first round always completes (each kind of fault happens at least once),
            // unless faults that need a leader find none for a minute past the duration.
            if elapsed >= duration && (first_round_done || elapsed >= duration + FIRST_ROUND_GRACE)
            {
                break;
            }
            let quiet = self.between(self.settings.quiet_ms);
            tokio::time::sleep(quiet).await;
            let Some(fault) = round.pop() else {
                break;
            };
            let at = started.elapsed().as_secs_f64();
            let what = self.inject(fault, cluster).await;
            let line = match what {
                Ok(Some(line)) => format!("{at:7.2} s {fault:?}: {line}"),
                Ok(None) => {
                    // Tried again later in the round.
                    self.tally.skipped += 1;
                    round.insert(0, fault);
                    format!("{at:7.2} s {fault:?}: skipped, no leader")
                }
                Err(e) => {
                    let _ = self.heal_all();
                    return Err(e);
                }
            };
            info!("{line}");
            self.log.push(line);
        }
        self.heal_all()?;
        Ok(self.tally)
    }

    /// Restores the network, continues paused processes and restarts stopped ones.
    pub fn heal_all(&mut self) -> Result<(), NemesisError> {
        self.net.heal().map_err(|e| NemesisError(e.to_string()))?;
        for p in self.procs.values_mut() {
            p.resume().map_err(|e| NemesisError(e.to_string()))?;
            if !p.is_running() {
                p.start(&self.net)
                    .map_err(|e| NemesisError(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Node ids whose process exited on its own (not killed by the schedule), with status.
    pub fn crashed(&mut self) -> Vec<(NodeId, String)> {
        self.procs
            .iter_mut()
            .filter_map(|(id, p)| p.exit_status().map(|s| (*id, s.to_string())))
            .collect()
    }

    fn between(&mut self, (lo, hi): (u64, u64)) -> Duration {
        Duration::from_millis(self.rng.between(lo, hi.max(lo)))
    }

    fn pick(&mut self, from: &[NodeId]) -> Option<NodeId> {
        if from.is_empty() {
            None
        } else {
            Some(from[self.rng.below(from.len() as u64) as usize])
        }
    }

    fn others(&self, not: NodeId) -> Vec<NodeId> {
        self.procs.keys().copied().filter(|id| *id != not).collect()
    }

    /// Applies one fault, holds it, and undoes it. `None` when it needed a leader and there
    /// was none.
    async fn inject<C: Cluster>(
        &mut self,
        fault: Fault,
        cluster: &mut C,
    ) -> Result<Option<String>, NemesisError> {
        let err = |e: &dyn fmt::Display| NemesisError(format!("{fault:?}: {e}"));
        let needs_leader = !matches!(
            fault,
            Fault::Disconnect | Fault::PauseFollower | Fault::Kill
        );
        // A fault aimed at the leader waits a while for one (an election may be under way).
        let mut leader = cluster.leader(&self.net).await;
        let waiting = Instant::now();
        while leader.is_none() && needs_leader && waiting.elapsed() < LEADER_WAIT {
            tokio::time::sleep(Duration::from_millis(250)).await;
            leader = cluster.leader(&self.net).await;
        }
        let Some(leader) = leader.or(if needs_leader { None } else { Some(0) }) else {
            return Ok(None);
        };
        let followers = self.others(leader);
        let line = match fault {
            Fault::IsolateLeader => {
                self.net.isolate(leader).map_err(|e| err(&e))?;
                self.hold_partition().await?;
                format!("n{leader} isolated")
            }
            Fault::LeaderInMinority => {
                let minority_size = (self.procs.len() - 1) / 2;
                let mut side = BTreeSet::from([leader]);
                let mut rest = followers.clone();
                while side.len() < minority_size.max(1) && !rest.is_empty() {
                    let i = self.rng.below(rest.len() as u64) as usize;
                    side.insert(rest.remove(i));
                }
                self.net.split(&side).map_err(|e| err(&e))?;
                self.hold_partition().await?;
                format!("{side:?} | {rest:?}")
            }
            Fault::Bridge => {
                let mut rest = followers.clone();
                let i = self.rng.below(rest.len() as u64) as usize;
                let bridge = rest.remove(i);
                let half = rest.len() / 2;
                let left: BTreeSet<NodeId> = std::iter::once(leader)
                    .chain(rest[..half].iter().copied())
                    .collect();
                let right: BTreeSet<NodeId> = rest[half..].iter().copied().collect();
                for a in &left {
                    for b in &right {
                        self.net.cut(*a, *b).map_err(|e| err(&e))?;
                    }
                }
                self.hold_partition().await?;
                format!("{left:?} - n{bridge} - {right:?}")
            }
            Fault::CutPair => {
                let Some(peer) = self.pick(&followers) else {
                    return Ok(None);
                };
                self.net.cut(leader, peer).map_err(|e| err(&e))?;
                self.hold_partition().await?;
                format!("n{leader} x n{peer}")
            }
            Fault::Disconnect => {
                let all: Vec<NodeId> = self.procs.keys().copied().collect();
                let Some(id) = self.pick(&all) else {
                    return Ok(None);
                };
                self.net.disconnect(id).map_err(|e| err(&e))?;
                self.hold_partition().await?;
                format!("n{id} disconnected")
            }
            Fault::PauseLeader | Fault::PauseFollower => {
                let id = if fault == Fault::PauseLeader {
                    leader
                } else {
                    let all: Vec<NodeId> = if leader == 0 {
                        self.procs.keys().copied().collect()
                    } else {
                        followers
                    };
                    match self.pick(&all) {
                        Some(id) => id,
                        None => return Ok(None),
                    }
                };
                let pause = self.between(self.settings.pause_ms);
                let p = self.proc(id)?;
                p.pause().map_err(|e| err(&e))?;
                tokio::time::sleep(pause).await;
                let p = self.proc(id)?;
                p.resume().map_err(|e| err(&e))?;
                self.tally.pauses += 1;
                format!("n{id} paused {} ms", pause.as_millis())
            }
            Fault::Kill => {
                let all: Vec<NodeId> = self.procs.keys().copied().collect();
                let id = if self.tally.kills % 2 == 0 && leader != 0 {
                    leader
                } else {
                    match self.pick(if leader == 0 { &all } else { &followers }) {
                        Some(id) => id,
                        None => return Ok(None),
                    }
                };
                let down = self.between(self.settings.down_ms);
                self.proc(id)?.kill();
                tokio::time::sleep(down).await;
                let net = &self.net;
                let p = self
                    .procs
                    .get_mut(&id)
                    .ok_or_else(|| NemesisError(format!("no process for n{id}")))?;
                p.start(net).map_err(|e| err(&e))?;
                self.tally.kills += 1;
                format!("n{id} killed, restarted after {} ms", down.as_millis())
            }
            Fault::TransferStorm => {
                let mut to = Vec::new();
                let all: Vec<NodeId> = self.procs.keys().copied().collect();
                for _ in 0..4 {
                    let Some(target) = self.pick(&all) else { break };
                    let outcome = cluster.transfer_leader(target).await;
                    self.tally.transfers += 1;
                    to.push(format!(
                        "n{target}{}",
                        if outcome.is_ok() { "" } else { "(refused)" }
                    ));
                    tokio::time::sleep(Duration::from_millis(self.rng.between(0, 300))).await;
                }
                format!("transfers to {}", to.join(", "))
            }
            Fault::Membership => {
                let Some(old) = self.pick(&followers) else {
                    return Ok(None);
                };
                let new = (1..=250)
                    .find(|id| !self.procs.contains_key(id) && !self.net.ids().contains(id))
                    .ok_or_else(|| NemesisError("no node id left".into()))?;
                self.net.add_node(new).map_err(|e| err(&e))?;
                match cluster
                    .replace(&mut self.net, &mut self.procs, old, new)
                    .await
                {
                    Ok(()) => {
                        self.tally.membership += 2;
                        format!("n{old} removed, n{new} added")
                    }
                    Err(e) => {
                        warn!(old, new, error = %e, "membership change did not complete");
                        format!("n{old} -> n{new} did not complete: {e}")
                    }
                }
            }
        };
        Ok(Some(line))
    }

    fn proc(&mut self, id: NodeId) -> Result<&mut Proc, NemesisError> {
        self.procs
            .get_mut(&id)
            .ok_or_else(|| NemesisError(format!("no process for n{id}")))
    }

    async fn hold_partition(&mut self) -> Result<(), NemesisError> {
        self.tally.partitions += 1;
        let hold = self.between(self.settings.partition_ms);
        tokio::time::sleep(hold).await;
        self.net.heal().map_err(|e| NemesisError(e.to_string()))
    }
}

/// The line each run prints:
/// `nemesis[WORKLOAD]: S s, N ops, P partitions, Q pauses, K kills, M membership changes,
/// violations: V`.
pub fn summary(workload: &str, secs: f64, ops: u64, tally: &Tally, violations: u64) -> String {
    format!(
        "nemesis[{workload}]: {secs:.0} s, {ops} ops, {} partitions, {} pauses, {} kills, \
         {} membership changes, violations: {violations}",
        tally.partitions, tally.pauses, tally.kills, tally.membership
    )
}

/// A run's directory: the processes' data and logs, and the history. Removed when dropped
/// after a run that passed; kept, and its path printed, when the test is failing (dropped
/// while panicking) or [`RunDir::keep`] was called.
pub struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    /// A fresh directory under the system's temporary directory, named after the workload.
    pub fn new(workload: &str) -> std::io::Result<RunDir> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("nemesis-{workload}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(RunDir { path, keep: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory after the run.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            // The test's own output, where the failure is reported.
            eprintln!(
                "nemesis: processes' logs, data and the history are kept in {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
