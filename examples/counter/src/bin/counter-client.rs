//! `counter-client`: talks to a counter cluster.
//!
//! ```text
//! counter-client --servers 127.0.0.1:7102,127.0.0.1:7112,127.0.0.1:7122 incr 5
//! counter-client --servers ... get
//! counter-client --servers ... watch
//! counter-client --servers ... status
//! ```
//! Exit codes: 0 success, 1 the request failed (after retries), 2 bad arguments.

// A binary: printing the value is its job.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use counter::addrs::parse_servers;
use counter::{ClientConfig, CounterClient};

/// Client of a replicated counter cluster: follows the leader, retries, applies each
/// increment exactly once.
#[derive(Parser, Debug)]
#[command(name = "counter-client", version, about, long_about = None)]
struct Args {
    /// The servers' client addresses, comma-separated (their --listen). One reachable server
    /// is enough when the servers know each other's client addresses.
    #[arg(long, value_parser = |s: &str| parse_servers(s).map(ServerList).map_err(|e| e.to_string()))]
    servers: ServerList,
    /// Give up on a request after this many seconds of retrying.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_secs: u64,
    #[command(subcommand)]
    command: Cmd,
}

/// The parsed `--servers` list (one clap value holding every address).
#[derive(Clone, Debug)]
struct ServerList(Vec<SocketAddr>);

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Add N (default 1) exactly once and print the new value.
    Incr {
        /// The amount (may be negative).
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        n: i64,
    },
    /// Print the value (a linearizable read at the leader).
    Get,
    /// Print the value whenever it changes, until interrupted.
    Watch {
        /// Polling interval in milliseconds.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
        interval_ms: u64,
    },
    /// Print each server's role, term, leader and commit index.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Quiet unless RUST_LOG asks (e.g. RUST_LOG=raft_service=debug shows every retry).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let servers: Vec<SocketAddr> = args.servers.0.clone();
    let mut config = ClientConfig::new(servers.clone());
    config.request_timeout = Duration::from_secs(args.timeout_secs);
    let mut client = match CounterClient::new(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("counter-client: error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command {
        Cmd::Incr { n } => client.incr(n).await.map(|v| println!("{v}")),
        Cmd::Get => client.get().await.map(|v| println!("{v}")),
        Cmd::Watch { interval_ms } => {
            client
                .watch(Duration::from_millis(interval_ms), |v| {
                    println!("{v}");
                    ControlFlow::Continue(())
                })
                .await
        }
        Cmd::Status => {
            let mut failed = None;
            for s in servers {
                match client.status(s).await {
                    Ok(st) => println!(
                        "{s}: node {} {} term {} leader {} commit {} applied {}",
                        st.node,
                        st.role,
                        st.term,
                        st.leader.map_or("none".into(), |l| l.to_string()),
                        st.commit,
                        st.applied
                    ),
                    Err(e) => {
                        println!("{s}: unreachable ({e})");
                        failed = Some(e);
                    }
                }
            }
            failed.map_or(Ok(()), Err)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("counter-client: error: {e}");
            ExitCode::from(1)
        }
    }
}
