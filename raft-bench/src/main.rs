//! `raft-bench`: commit latency, throughput and idle cost of raft-actor clusters.
//!
//! Modes: `write` (the default) runs clients against a cluster and reports throughput, latency
//! percentiles, leader changes, CPU and memory, next to the machine's floors measured in the
//! same run; `idle` runs many groups without writes and reports CPU% and RSS per node.
//! `raft-bench --help` lists the flags.

// A benchmark's results are its output: this binary prints them to stdout.
#![allow(clippy::print_stdout)]

mod churn;
mod cli;
mod floors;
mod idle;
mod load;
mod local;
mod report;
mod sm;
mod sys;
mod tcp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Mode, OutputKind, StorageKind, TransportKind, WriteArgs};
use report::{FloorRatio, Percentiles, Resources, RunConfig, WriteReport};

/// The allocator of the benchmark and of its node processes. A benchmark measures the library,
/// and with thousands of clients glibc's malloc and free become a large share of the process
/// (arena locks and consolidation across the worker threads); mimalloc's per-thread heaps
/// avoid that. Libraries never choose the allocator: an application does, as this binary does
/// here. The report names it (`allocator`), and the README compares with openraft's benchmark
/// built the same way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `GLOBAL` is, for the report.
pub const ALLOCATOR: &str = "mimalloc";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let checked = match &cli.mode {
        None => cli.write.validate(),
        Some(Mode::Write(args)) => args.validate(),
        Some(Mode::Idle(args)) => args.validate(),
        Some(Mode::Churn(args)) => args.validate(),
        Some(Mode::Node(_)) => Ok(()),
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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let (workers, io) = data_runtime(&cli);
    if let Some(w) = workers {
        builder.worker_threads(w);
    }
    if io {
        builder.enable_all();
    } else {
        builder.enable_time();
    }
    let runtime = match builder.thread_name("bench-data").build() {
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
            Some(Mode::Churn(args)) => churn_mode(&args).await,
            Some(Mode::Node(args)) => tcp::run_node(args).await,
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

/// This process's data runtime: its worker threads (`None`: one per core) and whether it needs
/// an I/O driver.
///
/// - A node process of a TCP run: `--threads` workers (heartbeats have their own thread).
/// - A cluster in this process over the in-memory transport does no I/O on the data runtime
///   (the loopback floor has a runtime of its own). Without an I/O driver, a parked worker
///   sleeps on a futex rather than in epoll, and waking it for the next actor of a write's
///   chain skips an eventfd write and an epoll round, a visible share of the CPU when a single
///   client keeps one write in flight. Workers: `--workers`.
/// - Over TCP this process only runs the clients (the nodes are processes of their own, one
///   data worker each): one worker here too. With two, a reply read on one worker wakes a
///   client parked on the other, more than two context switches per write instead of one.
fn data_runtime(cli: &Cli) -> (Option<usize>, bool) {
    let write = |args: &WriteArgs| match args.transport {
        TransportKind::Mem => (args.workers, false),
        TransportKind::Tcp => (Some(1), true),
    };
    match &cli.mode {
        None => write(&cli.write),
        Some(Mode::Write(args)) => write(args),
        Some(Mode::Idle(args)) => (None, args.transport == TransportKind::Tcp),
        Some(Mode::Churn(_)) => (None, false),
        Some(Mode::Node(args)) => (Some(args.threads.max(1)), true),
    }
}

/// The worker count a write run's nodes get (each node process's over TCP).
fn node_workers(args: &WriteArgs) -> usize {
    match args.transport {
        TransportKind::Tcp => 1,
        TransportKind::Mem => args.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
    }
}

/// The directory for WAL files and the fdatasync floor.
fn work_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("raft-bench-{}", std::process::id())))
}

async fn churn_mode(args: &churn::ChurnArgs) -> anyhow::Result<()> {
    let report = churn::run(args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.line());
    }
    Ok(())
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
        Some(floors::measure(dir, args.nodes as usize).await?)
    };
    let config = RunConfig {
        nodes: args.nodes,
        groups: args.groups,
        clients: args.clients,
        payload: args.payload,
        transport: args.transport,
        storage: args.storage,
        sync: (args.storage == StorageKind::Wal).then_some(args.sync),
        workers: node_workers(args),
    };
    if people {
        eprintln!(
            "starting {} nodes with {} groups ({:?} transport, {:?} storage) ...",
            args.nodes, args.groups, args.transport, args.storage
        );
    }
    let (nodes, groups) = (args.nodes, args.groups);
    let mut target = match args.transport {
        TransportKind::Mem => load::Target::Local(Arc::new(
            local::LocalCluster::start(nodes, groups, args.storage, args.sync, dir).await?,
        )),
        TransportKind::Tcp => load::Target::Remote(Box::new(
            tcp::RemoteCluster::start(nodes, groups, args.storage, args.sync, dir, true).await?,
        )),
    };
    let leaders = target.leaders(args.groups, Duration::from_secs(60)).await?;
    let writers = target.writers(args.clients, args.groups, &leaders).await?;
    let terms_before = target.leader_terms().await;
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
    let load_task = tokio::spawn(load::run(writers, plan));
    // CPU is measured over the measured phase only: start after the warm-up.
    tokio::time::sleep(warmup).await;
    let usage_start = target.usage();
    let measured_from = Instant::now();
    let result = load_task.await??;
    let usage_end = target.usage();
    let wall = measured_from.elapsed().as_secs_f64().max(1e-9);
    let terms_after = target.leader_terms().await;
    let resources = resources(&target, &usage_start, &usage_end, wall);
    target.shutdown().await;
    let latency = Percentiles::of(&result.latency);
    let floor_ratio = floors.as_ref().map(|f| {
        let (floor, floor_us) = WriteReport::pick_floor(&config, f);
        let ratio = |us: f64| if us > 0.0 { latency.p50 / us } else { 0.0 };
        let shared = WriteReport::shared_disk_floor(&config, f);
        FloorRatio {
            floor,
            floor_us,
            p50_ratio: ratio(floor_us),
            shared_disk_floor_us: shared,
            shared_disk_p50_ratio: shared.map(ratio),
        }
    });
    let report = WriteReport {
        machine: sys::machine(),
        allocator: ALLOCATOR.into(),
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

fn resources(
    target: &load::Target,
    start: &[(u64, Option<sys::Usage>)],
    end: &[(u64, Option<sys::Usage>)],
    wall: f64,
) -> Resources {
    if start.iter().chain(end).any(|(_, u)| u.is_none()) {
        return Resources {
            scope: "unavailable (no /proc)".into(),
            ..Resources::default()
        };
    }
    let deltas = tcp::usage_delta(start, end);
    let cpu_secs: f64 = deltas.iter().map(|d| d.1).sum();
    Resources {
        cpu_secs,
        cpu_percent_of_core: cpu_secs / wall * 100.0,
        peak_rss_bytes: deltas.iter().map(|d| d.3).max().unwrap_or(0),
        scope: match target {
            load::Target::Local(_) => "whole process: all nodes and clients".into(),
            load::Target::Remote(_) => format!(
                "the {} node processes (CPU summed, largest peak RSS)",
                deltas.len()
            ),
        },
    }
}
