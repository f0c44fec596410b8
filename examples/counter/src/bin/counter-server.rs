//! `counter-server`: one node of a replicated counter cluster.
//!
//! ```text
//! counter-server --id 1 --peers 1=127.0.0.1:7100/127.0.0.1:7102,2=...,3=... \
//!     --data-dir /tmp/counter/1 --listen 127.0.0.1:7102
//! counter-server --id 4 --raft 127.0.0.1:7130 --join 127.0.0.1:7102 \
//!     --data-dir /tmp/counter/4 --listen 127.0.0.1:7132
//! ```
//! The first form starts (or restarts) a node of the cluster `--peers` describes; the second
//! starts a node that joins a running cluster through any member's client address and is
//! added as a voter once it has caught up.
//! Runs until SIGINT or SIGTERM. Exit codes: 0 after a clean stop, 1 if it could not start,
//! 2 for bad arguments.

// A binary: its status lines are for the user (logs go to stderr through `tracing`).
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use counter::addrs::{Peers, parse_servers, resolve};
use counter::{CounterServer, ServerConfig};

/// One node of a replicated counter cluster (Raft over TCP, durable WAL).
#[derive(Parser, Debug)]
#[command(name = "counter-server", version, about, long_about = None)]
struct Args {
    /// This node's id: one of the ids in --peers.
    #[arg(long)]
    id: u64,
    /// Every node of a new cluster: ID=HOST:PORT[/CLIENT_HOST:CLIENT_PORT],... HOST:PORT is the
    /// node's Raft data address; its Raft heartbeat address is HOST:PORT+1. The optional
    /// client address lets followers point clients at the leader.
    #[arg(long, required_unless_present = "join", conflicts_with_all = ["join", "raft"],
          value_parser = |s: &str| s.parse::<Peers>().map_err(|e| e.to_string()))]
    peers: Option<Peers>,
    /// Join a running cluster through these client addresses (any one member will do),
    /// comma-separated, instead of starting one with --peers. Needs --raft.
    #[arg(long, requires = "raft", value_parser = |s: &str| parse_servers(s).map(ServerList).map_err(|e| e.to_string()))]
    join: Option<ServerList>,
    /// This node's Raft data address when joining (heartbeat on its port + 1).
    #[arg(long, value_parser = resolve)]
    raft: Option<SocketAddr>,
    /// Directory of this node's write-ahead log (created if missing; reused on restart).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for clients (counter-client --servers).
    #[arg(long, value_parser = resolve)]
    listen: SocketAddr,
    /// Raft election timeout in milliseconds (heartbeats every tenth of it).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    election_timeout_ms: u64,
    /// Log filter when RUST_LOG is not set (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log: String,
}

/// The parsed `--join` list (one clap value holding every address).
#[derive(Clone, Debug)]
struct ServerList(Vec<SocketAddr>);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (peers, join) = match (&args.peers, &args.join, args.raft) {
        (Some(peers), _, _) => (peers.clone(), Vec::new()),
        (None, Some(join), Some(raft)) => {
            match format!("{}={raft}/{}", args.id, args.listen).parse::<Peers>() {
                Ok(me) => (me, join.0.clone()),
                Err(e) => Args::command()
                    .error(
                        clap::error::ErrorKind::ValueValidation,
                        format!("--raft: {e}"),
                    )
                    .exit(),
            }
        }
        _ => Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "give --peers to start a cluster, or --join with --raft to join one",
            )
            .exit(),
    };
    if !peers.0.contains_key(&args.id) {
        Args::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "--id {} is not one of the ids in --peers ({})",
                    args.id,
                    peers
                        .0
                        .keys()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .exit();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let mut config = ServerConfig::new(args.id, peers.clone(), &args.data_dir, args.listen);
    config.join = join;
    config.node.election_timeout = Duration::from_millis(args.election_timeout_ms);
    config.node.heartbeat_interval = Duration::from_millis(args.election_timeout_ms / 10);
    config.node.tick_interval = config.node.heartbeat_interval;
    let server = match CounterServer::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("counter-server: error: {e}");
            return ExitCode::from(1);
        }
    };
    let me = peers.0[&args.id];
    println!(
        "counter-server node {} ready: clients on {}, raft on {} (heartbeat {}), data in {}",
        args.id,
        server.client_addr(),
        me.raft.data,
        me.raft.heartbeat,
        args.data_dir.display()
    );
    wait_for_signal().await;
    println!("counter-server node {}: stopping", args.id);
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
