//! Idle mode: many groups, no writes; what does keeping them alive cost?

use std::time::{Duration, Instant};

use serde::Serialize;

use std::sync::Arc;

use crate::cli::{IdleArgs, OutputKind, StorageKind, SyncKind, TransportKind};

use crate::load::Target;
use crate::local::LocalCluster;
use crate::sys;
use crate::tcp::RemoteCluster;

/// One node's cost while idle.
#[derive(Clone, Debug, Serialize)]
pub struct NodeIdle {
    /// Node id (0 when all nodes share this process and are measured together).
    pub node: u64,
    /// CPU as a percentage of one core over the measured phase.
    pub cpu_percent_of_core: f64,
    /// Resident memory at the end, bytes.
    pub rss_bytes: u64,
}

/// The idle report.
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    /// The machine.
    pub machine: String,
    /// Nodes.
    pub nodes: u64,
    /// Groups.
    pub groups: u64,
    /// Transport.
    pub transport: TransportKind,
    /// Seconds from start until every group had a leader.
    pub elect_secs: f64,
    /// Seconds measured.
    pub measured_secs: f64,
    /// Per node (or one entry for all in-process nodes, divided per node).
    pub per_node: Vec<NodeIdle>,
    /// Leader changes during the measured phase.
    pub leader_changes: u64,
}

/// Runs idle mode.
pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    let people = args.output == OutputKind::Table;
    let report = measure(&args, people).await?;
    match args.output {
        OutputKind::Table => {
            println!("machine      {}", report.machine);
            println!(
                "run          idle: {} nodes, {} groups, transport={:?}",
                report.nodes, report.groups, report.transport
            );
            println!(
                "elections    every group led after {:.1} s; {} leader changes while measured",
                report.elect_secs, report.leader_changes
            );
            for n in &report.per_node {
                let who = if n.node == 0 {
                    "per node (process / nodes)".to_string()
                } else {
                    format!("node {}", n.node)
                };
                println!(
                    "{who:<26} {:.2}% of a core, RSS {:.1} MiB",
                    n.cpu_percent_of_core,
                    n.rss_bytes as f64 / (1024.0 * 1024.0)
                );
            }
        }
        OutputKind::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

/// Starts the cluster, waits for every group to elect, warms up, then measures.
async fn measure(args: &IdleArgs, people: bool) -> anyhow::Result<IdleReport> {
    if people {
        eprintln!(
            "starting {} nodes ({:?} transport) with {} groups each ...",
            args.nodes, args.transport, args.groups
        );
    }
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!("raft-bench-idle-{}", std::process::id()));
    let (n, g) = (args.nodes, args.groups);
    let (mem, always) = (StorageKind::Mem, SyncKind::Always);
    // No clients: the groups' configurations need no addresses (no leader hints).
    let mut target = match args.transport {
        TransportKind::Mem => Target::Local(Arc::new(
            LocalCluster::start(n, g, mem, always, &dir).await?,
        )),
        TransportKind::Tcp => Target::Remote(Box::new(
            RemoteCluster::start(n, g, mem, always, &dir, false).await?,
        )),
    };
    target.leaders(g, Duration::from_secs(300)).await?;
    let elect_secs = start.elapsed().as_secs_f64();
    if people {
        eprintln!(
            "all groups led after {elect_secs:.1} s; warming up {:.0} s, measuring {:.0} s ...",
            args.warmup, args.duration
        );
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let terms_before = target.leader_terms().await;
    let a = target.usage();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let b = target.usage();
    let measured_secs = t.elapsed().as_secs_f64();
    let terms_after = target.leader_terms().await;
    let per_node = match &target {
        // One process for every node: its cost divided evenly.
        Target::Local(_) => crate::tcp::usage_delta(&a, &b)
            .into_iter()
            .map(|(_, cpu, rss, _)| NodeIdle {
                node: 0,
                cpu_percent_of_core: cpu / measured_secs / n as f64 * 100.0,
                rss_bytes: rss / n,
            })
            .collect(),
        Target::Remote(_) => crate::tcp::usage_delta(&a, &b)
            .into_iter()
            .map(|(node, cpu, rss, _)| NodeIdle {
                node,
                cpu_percent_of_core: cpu / measured_secs * 100.0,
                rss_bytes: rss,
            })
            .collect(),
    };
    target.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(IdleReport {
        machine: sys::machine(),
        nodes: n,
        groups: g,
        transport: args.transport,
        elect_secs,
        measured_secs,
        per_node,
        leader_changes: terms_after.saturating_sub(terms_before),
    })
}
