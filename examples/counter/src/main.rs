//! `counter`: the replicated counter's front door. `counter demo` runs three nodes in this
//! process, stops and restarts the leader under load, and shows the count staying exact.
//! The servers and the client are the `counter-server` and `counter-client` binaries.
//!
//! Exit codes: 0 the demo's count was exact, 1 it was not (or the demo failed), 2 bad
//! arguments.

// A binary: the demo's narration is its output.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use counter::demo::{self, DemoConfig};

/// A replicated counter on raft-actor. Servers: `counter-server`; client: `counter-client`.
#[derive(Parser, Debug)]
#[command(name = "counter", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Three nodes in this process over loopback TCP with WALs in a temporary directory;
    /// clients increment while the leader is stopped and restarted; the final count must
    /// equal the acknowledged increments.
    Demo {
        /// Concurrent clients.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
        clients: u64,
        /// Leader stop/restart rounds.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=100))]
        rounds: u64,
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
        nodes: u64,
        /// Seconds under load between leader stops.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=600))]
        up_secs: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match args.command {
        Cmd::Demo {
            clients,
            rounds,
            nodes,
            up_secs,
        } => {
            let config = DemoConfig {
                nodes: nodes as usize,
                clients: clients as usize,
                rounds: rounds as usize,
                up: Duration::from_secs(up_secs),
                ..DemoConfig::default()
            };
            let started = std::time::Instant::now();
            match demo::run(config, |line| println!("{line}")).await {
                Ok(report) => {
                    println!(
                        "acknowledged increments: {}, in doubt: {}, final count: {} ({:.1} s)",
                        report.acknowledged,
                        report.in_doubt,
                        report.final_value,
                        started.elapsed().as_secs_f64()
                    );
                    if report.final_value == report.acknowledged as i64 {
                        println!("exact: every acknowledged increment counted once");
                        ExitCode::SUCCESS
                    } else if report.is_consistent() {
                        println!(
                            "consistent: acknowledged increments counted once; {} in-doubt ones applied",
                            report.final_value - report.acknowledged as i64
                        );
                        ExitCode::SUCCESS
                    } else {
                        println!("WRONG: the count does not match the acknowledged increments");
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("counter demo: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
