//! Idle mode: many groups, no writes; what does keeping them alive cost?

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{IdleArgs, OutputKind, StorageKind, SyncKind, TransportKind};
use crate::local::LocalCluster;
use crate::sys;

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
    let report = match args.transport {
        TransportKind::Mem => idle_local(&args, people).await?,
        TransportKind::Tcp => idle_tcp(&args, people).await?,
    };
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

async fn idle_local(args: &IdleArgs, people: bool) -> anyhow::Result<IdleReport> {
    if people {
        eprintln!(
            "starting {} in-process nodes with {} groups ...",
            args.nodes, args.groups
        );
    }
    let start = Instant::now();
    let dir = std::env::temp_dir();
    let cluster = LocalCluster::start(
        args.nodes,
        args.groups,
        StorageKind::Mem,
        SyncKind::Always,
        &dir,
    )
    .await?;
    cluster
        .leaders(args.groups, Duration::from_secs(300))
        .await?;
    let elect_secs = start.elapsed().as_secs_f64();
    if people {
        eprintln!(
            "all groups led after {elect_secs:.1} s; warming up {:.0} s, measuring {:.0} s ...",
            args.warmup, args.duration
        );
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let terms_before = cluster.leader_terms().await;
    let a = sys::usage("self").unwrap_or_default();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let b = sys::usage("self").unwrap_or_default();
    let measured_secs = t.elapsed().as_secs_f64();
    let terms_after = cluster.leader_terms().await;
    let nodes = args.nodes as f64;
    let report = IdleReport {
        machine: sys::machine(),
        nodes: args.nodes,
        groups: args.groups,
        transport: TransportKind::Mem,
        elect_secs,
        measured_secs,
        per_node: vec![NodeIdle {
            node: 0,
            cpu_percent_of_core: (b.cpu_secs - a.cpu_secs) / measured_secs / nodes * 100.0,
            rss_bytes: (b.rss_bytes as f64 / nodes) as u64,
        }],
        leader_changes: terms_after.saturating_sub(terms_before),
    };
    cluster.shutdown().await;
    Ok(report)
}

async fn idle_tcp(args: &IdleArgs, people: bool) -> anyhow::Result<IdleReport> {
    if people {
        eprintln!(
            "starting {} node processes with {} groups each ...",
            args.nodes, args.groups
        );
    }
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!("raft-bench-idle-{}", std::process::id()));
    let cluster = crate::tcp::RemoteCluster::start(
        args.nodes,
        args.groups,
        StorageKind::Mem,
        SyncKind::Always,
        &dir,
    )
    .await?;
    cluster
        .leaders(args.groups, Duration::from_secs(300))
        .await?;
    let elect_secs = start.elapsed().as_secs_f64();
    if people {
        eprintln!(
            "all groups led after {elect_secs:.1} s; warming up {:.0} s, measuring {:.0} s ...",
            args.warmup, args.duration
        );
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let terms_before = cluster.leader_terms().await;
    let a = cluster.usage();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let b = cluster.usage();
    let measured_secs = t.elapsed().as_secs_f64();
    let terms_after = cluster.leader_terms().await;
    let per_node = crate::tcp::usage_delta(&a, &b)
        .into_iter()
        .map(|(node, cpu, rss, _)| NodeIdle {
            node,
            cpu_percent_of_core: cpu / measured_secs * 100.0,
            rss_bytes: rss,
        })
        .collect();
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(IdleReport {
        machine: sys::machine(),
        nodes: args.nodes,
        groups: args.groups,
        transport: TransportKind::Tcp,
        elect_secs,
        measured_secs,
        per_node,
        leader_changes: terms_after.saturating_sub(terms_before),
    })
}
