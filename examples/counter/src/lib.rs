//! A replicated counter built on raft-actor and raft-service: the state machine, a server and
//! a client that retries with session ids so each increment applies exactly once.
//!
//! What this is not: a general key-value store. It is the smallest complete service on the
//! framework, meant to be read, run and broken on purpose (see the crate's `README.md`).
//!
//! # Layout
//!
//! - [`machine`]: [`Counter`], the `StateMachine`: `Incr(n)`, `Get`, snapshot and restore.
//! - [`addrs`]: parsing `--peers` (`ID=HOST:PORT[/CLIENT_ADDR]`, heartbeat on `PORT + 1`) and
//!   `--servers`; free loopback ports for tests and the demo.
//! - [`server`]: [`CounterServer`]: TCP Raft transport + WAL + the counter group, served to
//!   clients by `raft_service::Server`.
//! - [`client`]: [`CounterClient`]: `raft_service::Client` for the counter's group (leader
//!   hints, retries, sessions).
//! - [`demo`]: `counter demo`, three nodes in one process with leader restarts.
//! - [`error`]: the error types.
//!
//! The binaries (`counter`, `counter-server`, `counter-client`) only parse arguments and call
//! into these modules.

pub mod addrs;
pub mod client;
pub mod demo;
pub mod error;
pub mod machine;
pub mod server;

pub use addrs::{Peer, Peers};
pub use client::{ClientConfig, CounterClient};
pub use error::{AddrError, ServerError};
pub use machine::{Command, Counter, GROUP, Query};
pub use raft_service::{ClientError, GroupStatus as Status};
pub use server::{CounterServer, ServerConfig};
