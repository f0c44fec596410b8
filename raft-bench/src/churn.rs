//! `raft-bench churn`: liveness under loss and leader churn, in real time.
//!
//! N nodes (default 5) in this process over the in-memory transport with its seeded faults:
//! 10 % of messages lost, each delayed 0–27 ms, 40 % held back up to 2 s more. Each leader is
//! cut off from every other node a random 0–500 ms after it is first seen leading; before a
//! cut would leave fewer than 3 nodes connected, a cut-off node (chosen at random) comes back.
//! Clients keep proposing, each to the node it last heard leads. After `--duration` seconds
//! every node is reconnected, the network staying lossy, and the time to the next
//! acknowledged write is measured. The same schedule runs deterministically in the simulation
//! (`raft_sim::LossyChurn`, test `liveness.rs`).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use raft_actor::{Error, Node, StorageMode, WireMsg};
use raft_core::rng::SplitMix64;
use raft_core::{Membership, NodeId, Role, Term};
use raft_net::{Faults, MemConfig, MemNetwork};
use raft_storage::MemStore;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::local::node_config;
use crate::sm::{BenchSm, Write};

/// Flags of the churn scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct ChurnArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5)]
    pub nodes: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: u64,
    /// Seconds of churn.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Longest time a leader leads before it is cut off, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub cut_every_ms: u64,
    /// Nodes kept connected.
    #[arg(long, default_value_t = 3)]
    pub min_up: u64,
    /// Seeds the network's faults and the cuts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
}

impl ChurnArgs {
    /// Checks the flags.
    pub fn validate(&self) -> Result<(), crate::cli::BadFlags> {
        let bad = |m: String| Err(crate::cli::BadFlags(m));
        if self.nodes < 3 {
            return bad(format!("--nodes must be at least 3, got {}", self.nodes));
        }
        if self.min_up < self.nodes / 2 + 1 || self.min_up > self.nodes {
            return bad(format!(
                "--min-up must be a majority of --nodes and at most --nodes, got {}",
                self.min_up
            ));
        }
        if !(self.duration.is_finite() && self.duration > 0.0) {
            return bad(format!(
                "--duration must be positive, got {}",
                self.duration
            ));
        }
        if self.clients == 0 {
            return bad("--clients must be at least 1".into());
        }
        Ok(())
    }
}

/// What a churn run measured.
#[derive(Debug, Serialize)]
pub struct ChurnReport {
    /// Seconds of churn.
    pub seconds: f64,
    /// Distinct terms in which a leader was seen.
    pub leader_terms: u64,
    /// Leaders cut off.
    pub cuts: u64,
    /// How far the highest commit index moved during the churn (entries of every kind).
    pub committed_entries: u64,
    /// Writes acknowledged to clients during the churn.
    pub acknowledged_writes: u64,
    /// `committed_entries` per minute.
    pub committed_per_minute: f64,
    /// `acknowledged_writes` per minute.
    pub acknowledged_per_minute: f64,
    /// From every node reconnected (the network still lossy) to the next acknowledged write,
    /// in milliseconds; `None` if none came within 20 s.
    pub first_commit_when_stable_ms: Option<u64>,
}

impl ChurnReport {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "churn: {:.0} s, {} leader terms, {} cuts; {} entries committed ({:.0}/min), {} writes \
             acknowledged ({:.0}/min); first commit {} after a stable majority",
            self.seconds,
            self.leader_terms,
            self.cuts,
            self.committed_entries,
            self.committed_per_minute,
            self.acknowledged_writes,
            self.acknowledged_per_minute,
            self.first_commit_when_stable_ms
                .map_or("never (20 s)".to_string(), |ms| format!("{ms} ms")),
        )
    }
}

const GROUP: u64 = 1;

/// The network of the scenario.
pub fn lossy() -> Faults {
    Faults {
        drop_probability: 0.10,
        duplicate_probability: 0.0,
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(27),
        reorder_probability: 0.40,
        reorder_window: Duration::from_millis(2000),
    }
}

/// Runs the scenario.
pub async fn run(args: &ChurnArgs) -> anyhow::Result<ChurnReport> {
    let ids: Vec<NodeId> = (1..=args.nodes).collect();
    let (net, transports) =
        MemNetwork::<WireMsg>::with_faults(&ids, &MemConfig::default(), args.seed)
            .context("in-memory network")?;
    let mut nodes = Vec::new();
    for (id, (t, inbound)) in ids.iter().zip(transports) {
        let node = Node::<BenchSm>::builder(node_config(*id, 1))
            .transport(t, inbound)
            .storage(MemStore::new())
            .storage_mode(StorageMode::Task)
            .start()
            .await
            .context("start node")?;
        node.add_partition(
            GROUP,
            Membership::new(ids.iter().copied()),
            BenchSm::default(),
        )
        .await
        .context("add the group")?;
        nodes.push(node);
    }
    net.set_faults(lossy()).await.context("set faults")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (acks_tx, acks_rx) = flume::bounded::<Instant>(1 << 20);
    let mut clients = Vec::new();
    for c in 0..args.clients {
        clients.push(tokio::spawn(client(
            nodes.clone(),
            c,
            acks_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(acks_tx);

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.duration);
    let commit_at_start = max_commit(&nodes).await;
    let mut rng = SplitMix64::new(SplitMix64::derive(args.seed, &[0xC4]));
    let mut cut: Vec<NodeId> = Vec::new();
    let mut target: Option<(Term, NodeId, Instant)> = None;
    let mut terms = std::collections::BTreeSet::new();
    let mut cuts = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let Some((term, leader)) = newest_leader(&nodes).await else {
            continue;
        };
        terms.insert(term);
        if cut.contains(&leader) {
            continue;
        }
        let due = match target {
            Some((t, l, at)) if t == term && l == leader => at,
            _ => {
                let at = Instant::now() + Duration::from_millis(rng.below(args.cut_every_ms + 1));
                target = Some((term, leader, at));
                at
            }
        };
        if Instant::now() < due {
            continue;
        }
        if args.nodes - cut.len() as u64 <= args.min_up && !cut.is_empty() {
            let back = cut.remove(rng.below(cut.len() as u64) as usize);
            tracing::debug!(node = back, "reconnected");
            net.heal().await.context("heal")?;
            for &n in &cut {
                net.isolate(n).await.context("isolate")?;
            }
        }
        net.isolate(leader).await.context("isolate")?;
        cut.push(leader);
        cuts += 1;
    }
    let churn_end = Instant::now();
    let committed = max_commit(&nodes).await.saturating_sub(commit_at_start);
    let acked = acks_rx.drain().filter(|at| *at <= churn_end).count() as u64;

    // Every node back, the network still lossy: the next acknowledged write.
    net.heal().await.context("heal")?;
    let stable = Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match acks_rx.recv_async().await {
                Ok(at) if at >= stable => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    stop_tx.send_replace(true);
    for c in clients {
        let _ = c.await;
    }
    net.set_faults(Faults::default())
        .await
        .context("clear faults")?;
    for node in &nodes {
        node.shutdown().await;
    }
    let seconds = churn_end.duration_since(started).as_secs_f64();
    Ok(ChurnReport {
        seconds,
        leader_terms: terms.len() as u64,
        cuts,
        committed_entries: committed,
        acknowledged_writes: acked,
        committed_per_minute: committed as f64 * 60.0 / seconds,
        acknowledged_per_minute: acked as f64 * 60.0 / seconds,
        first_commit_when_stable_ms: first.map(|at| at.duration_since(stable).as_millis() as u64),
    })
}

/// The leader of the newest term any node reports.
async fn newest_leader(nodes: &[Node<BenchSm>]) -> Option<(Term, NodeId)> {
    let mut best = None;
    for n in nodes {
        if let Ok(m) = n.group_metrics(GROUP).await {
            if m.role == Role::Leader && best.is_none_or(|(t, _)| m.term > t) {
                best = Some((m.term, n.id()));
            }
        }
    }
    best
}

async fn max_commit(nodes: &[Node<BenchSm>]) -> u64 {
    let mut best = 0;
    for n in nodes {
        if let Ok(m) = n.group_metrics(GROUP).await {
            best = best.max(m.commit);
        }
    }
    best
}

/// Proposes one write after another to the node it believes leads, following hints and
/// moving on from nodes that time out; reports each acknowledged write's time.
async fn client(
    nodes: Vec<Node<BenchSm>>,
    index: u64,
    acks: flume::Sender<Instant>,
    mut stop: watch::Receiver<bool>,
) {
    let payload = Bytes::from(vec![0u8; 16]);
    let mut at = (index as usize) % nodes.len();
    while !*stop.borrow_and_update() {
        let attempt = nodes[at].propose(GROUP, Write::Payload(payload.clone()));
        let outcome = tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = tokio::time::timeout(Duration::from_millis(1000), attempt) => r,
        };
        match outcome {
            Ok(Ok(_)) => {
                let _ = acks.try_send(Instant::now());
            }
            Ok(Err(Error::NotLeader {
                leader: Some(l), ..
            })) => {
                at = nodes
                    .iter()
                    .position(|n| n.id() == l)
                    .unwrap_or((at + 1) % nodes.len());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => {
                at = (at + 1) % nodes.len();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
