//! `raft-bench`: commit latency, throughput and idle cost of raft-actor clusters.
//!
//! Modes: `write` (the default) runs clients against a cluster and reports throughput, latency
//! percentiles, leader changes, CPU and memory, next to the machine's floors measured in the
//! same run; `idle` runs many groups without writes and reports CPU% and RSS per node.
//! `raft-bench --help` lists the flags.

// A benchmark's results are its output: this binary prints them to stdout.
#![allow(clippy::print_stdout)]

mod cli;
mod floors;
mod idle;
mod load;
mod local;
mod report;
mod sm;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Mode, OutputKind, StorageKind, TransportKind, WriteArgs};
use report::{FloorRatio, Percentiles, Resources, RunConfig, WriteReport};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let checked = match &cli.mode {
        None => cli.write.validate(),
        Some(Mode::Write(args)) => args.validate(),
        Some(Mode::Idle(args)) => args.validate(),
    };
    if let Err(cli::BadFlags(msg)) = checked {
        eprintln!("error: {msg}\n\nFor more information, try '--help'.");
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAFT_BENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-data")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.mode {
            None => write(cli.write).await,
            Some(Mode::Write(args)) => write(args).await,
            Some(Mode::Idle(args)) => idle::run(args).await,
        }
    });
    // Node threads may still be winding down; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The directory for WAL files and the fdatasync floor.
fn work_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("raft-bench-{}", std::process::id())))
}

async fn write(args: WriteArgs) -> anyhow::Result<()> {
    let people = args.output == OutputKind::Table;
    let dir = work_dir(&args.data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let result = write_in(&args, &dir, people).await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result?;
    match args.output {
        OutputKind::Table => print!("{}", report.0.table()),
        OutputKind::Json => println!("{}", serde_json::to_string_pretty(&report.0)?),
    }
    if let Some(path) = &args.hdr {
        report::write_hdr(path, &report.1).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let c = &report.0.config;
        let title = format!(
            "commit latency: {} nodes, {} clients, {:?}/{:?}",
            c.nodes, c.clients, c.transport, c.storage
        );
        report::write_svg(path, &report.1, &title)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

async fn write_in(
    args: &WriteArgs,
    dir: &std::path::Path,
    people: bool,
) -> anyhow::Result<(WriteReport, hdrhistogram::Histogram<u64>)> {
    let floors = if args.no_floors {
        None
    } else {
        if people {
            eprintln!("measuring floors (loopback round trip, fdatasync of 4 KiB) ...");
        }
        Some(floors::measure(dir).await?)
    };
    let config = RunConfig {
        nodes: args.nodes,
        groups: args.groups,
        clients: args.clients,
        payload: args.payload,
        transport: args.transport,
        storage: args.storage,
        sync: (args.storage == StorageKind::Wal).then_some(args.sync),
    };
    if people {
        eprintln!(
            "starting {} nodes with {} groups ({:?} transport, {:?} storage) ...",
            args.nodes, args.groups, args.transport, args.storage
        );
    }
    let cluster = match args.transport {
        TransportKind::Mem => Arc::new(
            local::LocalCluster::start(args.nodes, args.groups, args.storage, args.sync, dir)
                .await?,
        ),
        TransportKind::Tcp => anyhow::bail!("--transport tcp is not available yet"),
    };
    let leaders = cluster
        .leaders(args.groups, Duration::from_secs(60))
        .await?;
    let terms_before = cluster.leader_terms().await;
    if people {
        eprintln!(
            "running {} clients: {:.1} s warm-up, then {} ...",
            args.clients,
            args.warmup,
            args.ops.map_or_else(
                || format!("{:.1} s measured", args.duration),
                |n| format!("{n} measured writes")
            )
        );
    }
    let plan = load::Plan {
        clients: args.clients,
        groups: args.groups,
        payload: args.payload,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        ops: args.ops,
        progress: people && (args.duration > 10.0 || args.ops.is_some()),
    };
    let warmup = plan.warmup;
    let cpu_start = Instant::now();
    let usage_before = sys::usage("self");
    let load_task = tokio::spawn(load::run(
        load::Target::Local(cluster.clone()),
        leaders,
        plan,
    ));
    // CPU is measured over the measured phase only: start after the warm-up.
    tokio::time::sleep(warmup).await;
    let usage_start = sys::usage("self").or(usage_before);
    let measured_from = Instant::now();
    let result = load_task.await??;
    let usage_end = sys::usage("self");
    let wall = measured_from.elapsed().as_secs_f64().max(1e-9);
    let _ = cpu_start;
    let terms_after = cluster.leader_terms().await;
    let resources = match (usage_start, usage_end) {
        (Some(a), Some(b)) => Resources {
            cpu_secs: b.cpu_secs - a.cpu_secs,
            cpu_percent_of_core: (b.cpu_secs - a.cpu_secs) / wall * 100.0,
            peak_rss_bytes: b.peak_rss_bytes,
            scope: "whole process: all nodes and clients".into(),
        },
        _ => Resources {
            scope: "unavailable (no /proc)".into(),
            ..Resources::default()
        },
    };
    if let Ok(c) = Arc::try_unwrap(cluster) {
        c.shutdown().await;
    }
    let latency = Percentiles::of(&result.latency);
    let floor_ratio = floors.as_ref().map(|f| {
        let (floor, floor_us) = WriteReport::pick_floor(&config, f);
        FloorRatio {
            floor,
            floor_us,
            p50_ratio: if floor_us > 0.0 {
                latency.p50 / floor_us
            } else {
                0.0
            },
        }
    });
    let report = WriteReport {
        machine: sys::machine(),
        config,
        ops: result.ops,
        elapsed_secs: result.elapsed,
        throughput: result.ops as f64 / result.elapsed.max(1e-9),
        latency_us: latency,
        leader_changes: terms_after.saturating_sub(terms_before),
        retries: result.retries,
        failures: result.failures,
        first_failure: result.first_failure,
        resources,
        floors,
        floor_ratio,
    };
    Ok((report, result.latency))
}
