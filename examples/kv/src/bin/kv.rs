//! `kv`: the client and admin command line of a KV cluster.
//!
//! ```text
//! kv --servers 127.0.0.1:7102 put greeting hello        # OK
//! kv --servers 127.0.0.1:7102 get greeting              # hello
//! kv --servers 127.0.0.1:7102 get greeting --read stale # hello
//! kv --servers 127.0.0.1:7102 cas greeting --expected hello --new bye
//! kv --servers 127.0.0.1:7102 status
//! kv --servers 127.0.0.1:7102 move-replica 5 1 6
//! ```
//! Exit codes: 0 on success, 1 when the call failed, 2 for bad arguments.

// A binary: its output is for the user.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kv::addrs::parse_servers;
use kv::{ClientConfig, KvClient, ReadKind};

/// How long one replica move may take before the command gives up (it can be run again).
const MOVE_LIMIT: Duration = Duration::from_secs(120);

/// Client and admin of a sharded, replicated KV cluster.
#[derive(Parser, Debug)]
#[command(name = "kv", version, about, long_about = None)]
struct Args {
    /// Client addresses of some of the cluster's servers, comma-separated (one is enough).
    #[arg(long, value_parser = |s: &str| parse_servers(s).map(ServerList).map_err(|e| e.to_string()))]
    servers: ServerList,
    /// Give up a call after this many milliseconds (retries included).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

/// The parsed `--servers` list.
#[derive(Clone, Debug)]
struct ServerList(Vec<SocketAddr>);

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Read {
    /// Reflects every write acknowledged before it (ReadIndex at the leader).
    Linearizable,
    /// The leader's lease instead of a round of heartbeats.
    Lease,
    /// Any replica, from what it has applied.
    Stale,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Set KEY to VALUE. Prints `OK`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Print KEY's value, or `(absent)`.
    Get {
        /// The key.
        key: String,
        /// How fresh.
        #[arg(long, value_enum, default_value_t = Read::Linearizable)]
        read: Read,
    },
    /// Print the values of KEYS (all in one group), one per line.
    Mget {
        /// The keys.
        keys: Vec<String>,
        /// How fresh.
        #[arg(long, value_enum, default_value_t = Read::Linearizable)]
        read: Read,
    },
    /// Remove KEY. Prints `deleted` or `absent`.
    Delete {
        /// The key.
        key: String,
    },
    /// Set KEY to --new (or delete it with no --new) if its value is --expected (absent with no
    /// --expected). Prints `swapped` or `not swapped, current: VALUE`.
    Cas {
        /// The key.
        key: String,
        /// The value it must have (absent if not given).
        #[arg(long)]
        expected: Option<String>,
        /// The value it gets (deleted if not given).
        #[arg(long)]
        new: Option<String>,
    },
    /// Print KEY's group and the nodes hosting it.
    Where {
        /// The key.
        key: String,
    },
    /// Print every node (groups hosted, leaders held, lag) and every group's replicas.
    Status,
    /// Hand GROUP's leadership to NODE.
    TransferLeader {
        /// The group.
        group: u64,
        /// One of its replicas.
        node: u64,
    },
    /// Register node ID at RAFT_HOST:PORT/CLIENT_HOST:PORT (a `kv-server --join` does this
    /// itself). It holds no replica until `rebalance` or `move-replica` gives it some.
    AddNode {
        /// The new node's id.
        id: u64,
        /// Its addresses.
        addrs: String,
    },
    /// Spread replicas evenly over the nodes, then leaders.
    Rebalance {
        /// Moves made at a time.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Move every replica off node ID, then take it out of the cluster.
    RemoveNode {
        /// The node.
        id: u64,
        /// Moves made at a time.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Load the cluster: clients putting and getting random keys; prints throughput and
    /// latency percentiles.
    Bench {
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Distinct keys.
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        /// Bytes per value.
        #[arg(long, default_value_t = 64)]
        value_size: usize,
        /// Percentage of puts (the rest are gets).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=100))]
        write_percent: u64,
        /// How fresh the gets are.
        #[arg(long, value_enum, default_value_t = Read::Linearizable)]
        read: Read,
    },
    /// Move GROUP's replica on FROM to TO (learner, caught up, voter, FROM removed).
    MoveReplica {
        /// The group.
        group: u64,
        /// The replica to move.
        from: u64,
        /// The node to move it to.
        to: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn kind(read: Read) -> ReadKind {
    match read {
        Read::Linearizable => ReadKind::Linearizable,
        Read::Lease => ReadKind::Lease,
        Read::Stale => ReadKind::Stale,
    }
}

fn show(value: Option<Vec<u8>>) -> String {
    match value {
        Some(v) => String::from_utf8_lossy(&v).into_owned(),
        None => "(absent)".into(),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ClientConfig::new(args.servers.0);
    config.request_timeout = Duration::from_millis(args.timeout_ms.max(1));
    if matches!(
        args.command,
        Cmd::MoveReplica { .. } | Cmd::Rebalance { .. } | Cmd::RemoveNode { .. }
    ) {
        // A membership change waits for a learner to catch up and for joint consensus.
        config.attempt_timeout = Duration::from_secs(5);
        config.request_timeout = config.request_timeout.max(Duration::from_secs(15));
    }
    config.attempt_timeout = config.attempt_timeout.min(config.request_timeout);
    let mut client = KvClient::new(config)?;
    match args.command {
        Cmd::Put { key, value } => {
            client.put(key, value).await?;
            println!("OK");
        }
        Cmd::Get { key, read } => {
            println!("{}", show(client.get(key.as_bytes(), kind(read)).await?))
        }
        Cmd::Mget { keys, read } => {
            let keys: Vec<Vec<u8>> = keys.into_iter().map(String::into_bytes).collect();
            for v in client.multi_get(&keys, kind(read)).await? {
                println!("{}", show(v));
            }
        }
        Cmd::Delete { key } => {
            let existed = client.delete(key).await?;
            println!("{}", if existed { "deleted" } else { "absent" });
        }
        Cmd::Cas { key, expected, new } => {
            let out = client
                .cas(
                    key,
                    expected.map(String::into_bytes),
                    new.map(String::into_bytes),
                )
                .await?;
            if out.swapped {
                println!("swapped");
            } else {
                println!("not swapped, current: {}", show(out.current));
            }
        }
        Cmd::Where { key } => {
            let group = client.group_of(key.as_bytes()).await?;
            let p = client.placement().await?;
            let hosts: Vec<String> = p.hosts(group).iter().map(|h| h.to_string()).collect();
            println!("group {group} on nodes {}", hosts.join(","));
        }
        Cmd::Status => print!("{}", client.status().await?.render()),
        Cmd::TransferLeader { group, node } => {
            client.transfer_leader(group, node).await?;
            println!("leadership of group {group} handed to node {node}");
        }
        Cmd::AddNode { id, addrs } => {
            let addrs = kv::addrs::parse_node_addrs(&addrs).map_err(anyhow::Error::msg)?;
            let version = client.add_node(id, addrs).await?;
            println!("node {id} added (placement v{version})");
        }
        Cmd::Rebalance { parallel } => {
            let r = client.rebalance(parallel, MOVE_LIMIT).await?;
            println!(
                "rebalanced: {} replicas moved, {} leaders transferred",
                r.moves.len(),
                r.transfers
            );
        }
        Cmd::RemoveNode { id, parallel } => {
            let r = client.remove_node(id, parallel, MOVE_LIMIT).await?;
            println!(
                "node {id} removed: {} replicas moved, {} leaders transferred",
                r.moves.len(),
                r.transfers
            );
        }
        Cmd::Bench {
            clients,
            secs,
            keys,
            value_size,
            write_percent,
            read,
        } => {
            let config = kv::bench::BenchConfig {
                clients,
                duration: Duration::from_secs(secs),
                keys,
                value_size,
                write_percent,
                read: kind(read),
                ..Default::default()
            };
            println!("{}", kv::bench::run(&mut client, &config).await?.render());
        }
        Cmd::MoveReplica { group, from, to } => {
            let r = client.move_replica(group, from, to, MOVE_LIMIT).await?;
            println!(
                "group {} moved from node {} to node {} (placement v{})",
                r.group, r.from, r.to, r.version
            );
        }
    }
    Ok(())
}
