//! `kv-server`: one node of a sharded KV cluster.
//!
//! ```text
//! kv-server --id 1 --peers 1=127.0.0.1:7100/127.0.0.1:7102,2=...,5=... \
//!     --groups 64 --replicas 3 --data-dir /tmp/kv/1
//! kv-server --id 6 --raft 127.0.0.1:7150 --listen 127.0.0.1:7152 --join 127.0.0.1:7102 \
//!     --data-dir /tmp/kv/6
//! ```
//! The first form creates (or restarts a node of) the cluster `--peers` describes: every
//! node gets the same `--peers`, `--groups` and `--replicas`. The second starts a node that
//! joins a running cluster through any node's client address; it holds no replica until
//! `kv move-replica` gives it some.
//! Runs until SIGINT or SIGTERM. Exit codes: 0 after a clean stop, 1 if it could not start,
//! 2 for bad arguments.

// A binary: its status lines are for the user (logs go to stderr through `tracing`).
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use kv::addrs::{Peers, parse_node_addrs, parse_servers, resolve};
use kv::{KvServer, ServerConfig};

/// One node of a sharded, replicated KV cluster (Raft over TCP, durable WAL).
#[derive(Parser, Debug)]
#[command(name = "kv-server", version, about, long_about = None)]
struct Args {
    /// This node's id (one of the ids in --peers when creating).
    #[arg(long)]
    id: u64,
    /// Every node of a new cluster: ID=HOST:PORT/CLIENT_HOST:CLIENT_PORT,... HOST:PORT is the
    /// node's Raft data address (heartbeats on PORT+1), the other its client address.
    #[arg(long, required_unless_present = "join", conflicts_with_all = ["join", "raft", "listen"],
          value_parser = |s: &str| s.parse::<Peers>().map_err(|e| e.to_string()))]
    peers: Option<Peers>,
    /// Join a running cluster through these client addresses (comma-separated; any node will
    /// do). Needs --raft and --listen.
    #[arg(long, requires_all = ["raft", "listen"],
          value_parser = |s: &str| parse_servers(s).map(ServerList).map_err(|e| e.to_string()))]
    join: Option<ServerList>,
    /// This node's Raft data address when joining (heartbeats on its port + 1).
    #[arg(long, value_parser = resolve)]
    raft: Option<SocketAddr>,
    /// This node's client address when joining.
    #[arg(long, value_parser = resolve)]
    listen: Option<SocketAddr>,
    /// Data groups (shards) of a new cluster; fixed once created.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    groups: u32,
    /// Replicas per group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    replicas: u32,
    /// Directory of this node's write-ahead log (created if missing; reused on restart).
    #[arg(long)]
    data_dir: PathBuf,
    /// Raft election timeout in milliseconds (heartbeats every tenth of it).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    election_timeout_ms: u64,
    /// Log filter when RUST_LOG is not set (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log: String,
}

/// The parsed `--join` list.
#[derive(Clone, Debug)]
struct ServerList(Vec<SocketAddr>);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => Args::command()
            .error(clap::error::ErrorKind::ValueValidation, format!("{e:#}"))
            .exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let server = match KvServer::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kv-server: error: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "kv-server node {} ready: clients on {}, data in {}",
        args.id,
        server.client_addr(),
        args.data_dir.display()
    );
    wait_for_signal().await;
    println!("kv-server node {}: stopping", args.id);
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// The server's configuration from the arguments.
fn config(args: &Args) -> anyhow::Result<ServerConfig> {
    let (peers, join) = match (&args.peers, &args.join, args.raft, args.listen) {
        (Some(peers), _, _, _) => (peers.clone(), Vec::new()),
        (None, Some(join), Some(raft), Some(listen)) => {
            let me = parse_node_addrs(&format!("{raft}/{listen}"))
                .map_err(anyhow::Error::msg)
                .context("--raft/--listen")?;
            (Peers([(args.id, me)].into()), join.0.clone())
        }
        _ => anyhow::bail!("give --peers to create a cluster, or --join with --raft and --listen"),
    };
    anyhow::ensure!(
        peers.0.contains_key(&args.id),
        "--id {} is not one of the ids in --peers",
        args.id
    );
    let mut config = ServerConfig::new(args.id, peers, &args.data_dir);
    config.join = join;
    config.groups = args.groups;
    config.replicas = args.replicas;
    config.node.election_timeout = Duration::from_millis(args.election_timeout_ms);
    config.node.heartbeat_interval = Duration::from_millis(args.election_timeout_ms / 10);
    config.node.tick_interval = config.node.heartbeat_interval;
    Ok(config)
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                biased;
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
