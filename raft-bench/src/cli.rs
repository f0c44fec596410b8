//! Command-line flags and their validation.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Commit latency, throughput and idle cost of raft-actor clusters.
///
/// With no flags: 3 nodes in this process, one group, 64 clients for 8 s, plus the machine's
/// floors (loopback round trip, fdatasync of a 4 KiB append), printed as a table.
#[derive(Debug, Parser)]
#[command(name = "raft-bench", version, about, long_about)]
pub struct Cli {
    /// What to run (default: the write benchmark).
    #[command(subcommand)]
    pub mode: Option<Mode>,
    /// Write-benchmark flags (also accepted after `write`).
    #[command(flatten)]
    pub write: WriteArgs,
}

/// The benchmark modes.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Clients propose writes and measure commit latency (the default).
    Write(WriteArgs),
    /// Many groups with no writes: CPU% and RSS per node after warm-up.
    Idle(IdleArgs),
    /// Liveness under loss and leader churn: commits per minute while each leader is cut off
    /// within 500 ms on a lossy network, then the time to a commit once a majority is stable.
    Churn(crate::churn::ChurnArgs),
    /// Internal: one node process of a `--transport tcp` run.
    #[command(hide = true)]
    Node(crate::tcp::NodeArgs),
}

/// Where the nodes talk to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// All nodes in this process over in-memory channels.
    Mem,
    /// One process per node on loopback TCP; clients in this process over loopback TCP.
    Tcp,
}

/// Where each node keeps its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// In memory (no durability).
    Mem,
    /// The durable write-ahead log, one per node, in a temporary directory.
    Wal,
}

/// When the WAL syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncKind {
    /// fdatasync before an append is acknowledged (durable).
    Always,
    /// Never sync (the OS page cache only; a crash of the machine loses data).
    Never,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputKind {
    /// For people.
    Table,
    /// One JSON object, for scripts.
    Json,
}

/// Flags of the write benchmark.
#[derive(Clone, Debug, clap::Args)]
pub struct WriteArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Raft groups; each group has every node as a voter. Client `i` writes to group `i % G`.
    #[arg(long, default_value_t = 1)]
    pub groups: u64,
    /// Concurrent clients, each with one write in flight.
    #[arg(long, default_value_t = 64)]
    pub clients: u64,
    /// Bytes of payload per write.
    #[arg(long, default_value_t = 16)]
    pub payload: usize,
    /// Seconds of measurement (after warm-up). Ignored when `--ops` is given.
    #[arg(long, default_value_t = 8.0)]
    pub duration: f64,
    /// Stop after this many measured writes instead of after `--duration`.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Seconds of writes before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Node-to-node transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Mem)]
    pub transport: TransportKind,
    /// Log storage.
    #[arg(long, value_enum, default_value_t = StorageKind::Mem)]
    pub storage: StorageKind,
    /// WAL sync policy (with `--storage wal`).
    #[arg(long, value_enum, default_value_t = SyncKind::Always)]
    pub sync: SyncKind,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputKind::Table)]
    pub output: OutputKind,
    /// Write an SVG plot of the latency distribution to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the HDR percentile distribution (text) to this file.
    #[arg(long)]
    pub hdr: Option<PathBuf>,
    /// Directory for WAL files and floor measurements (default: the system temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip measuring the machine's floors.
    #[arg(long)]
    pub no_floors: bool,
    /// Worker threads of the data runtime when the nodes run in this process (`--transport
    /// mem`); default: one per core. One worker needs no cross-thread wake-up along a write's
    /// chain of actors, which a single client's latency feels most; many clients need the
    /// cores. (Over TCP each node process runs one worker.)
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Flags of the idle benchmark.
#[derive(Clone, Debug, clap::Args)]
pub struct IdleArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Raft groups, every node a voter of each.
    #[arg(long, default_value_t = 10_000)]
    pub groups: u64,
    /// Seconds to wait after every group has a leader, before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Node-to-node transport (`tcp`: one process per node, measured per process).
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub transport: TransportKind,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputKind::Table)]
    pub output: OutputKind,
}

/// A flag combination that parses but makes no sense.
#[derive(Debug)]
pub struct BadFlags(pub String);

impl WriteArgs {
    /// Checks ranges and combinations clap cannot express.
    pub fn validate(&self) -> Result<(), BadFlags> {
        check_nodes_groups(self.nodes, self.groups)?;
        if self.clients == 0 || self.clients > 1_000_000 {
            return Err(BadFlags("--clients must be between 1 and 1000000".into()));
        }
        if self.payload > 16 << 20 {
            return Err(BadFlags("--payload must be at most 16 MiB".into()));
        }
        check_secs("--duration", self.duration)?;
        if !(self.warmup.is_finite() && self.warmup >= 0.0 && self.warmup <= 3600.0) {
            return Err(BadFlags(
                "--warmup must be between 0 and 3600 seconds".into(),
            ));
        }
        if self.ops == Some(0) {
            return Err(BadFlags("--ops must be at least 1".into()));
        }
        if let Some(w) = self.workers {
            if self.transport != TransportKind::Mem {
                return Err(BadFlags("--workers applies to --transport mem only".into()));
            }
            if !(1..=256).contains(&w) {
                return Err(BadFlags("--workers must be between 1 and 256".into()));
            }
        }
        if self.storage == StorageKind::Mem && self.sync != SyncKind::Always {
            return Err(BadFlags("--sync applies to --storage wal only".into()));
        }
        Ok(())
    }
}

impl IdleArgs {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), BadFlags> {
        check_nodes_groups(self.nodes, self.groups)?;
        check_secs("--duration", self.duration)?;
        check_secs("--warmup", self.warmup.max(0.001))
    }
}

fn check_nodes_groups(nodes: u64, groups: u64) -> Result<(), BadFlags> {
    if !(1..=9).contains(&nodes) {
        return Err(BadFlags("--nodes must be between 1 and 9".into()));
    }
    if !(1..=1_000_000).contains(&groups) {
        return Err(BadFlags("--groups must be between 1 and 1000000".into()));
    }
    Ok(())
}

fn check_secs(flag: &str, secs: f64) -> Result<(), BadFlags> {
    if secs.is_finite() && secs > 0.0 && secs <= 24.0 * 3600.0 {
        Ok(())
    } else {
        Err(BadFlags(format!(
            "{flag} must be a positive number of seconds (at most a day)"
        )))
    }
}
