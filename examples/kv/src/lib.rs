//! A sharded, replicated key-value service on raft-actor and raft-service: many Raft groups
//! per node, which is what the framework is built for (heartbeats coalesced per peer, idle
//! groups that arm no timer, one WAL shared by every group).
//!
//! - **Keys and replicas.** A key belongs to one of G shards (FNV-1a of its bytes modulo G,
//!   [`hash`]); G is fixed when the cluster is created (default 64). Shard `s` is Raft group
//!   `2 + s`, replicated on R nodes (default 3) of the N ≥ R in the cluster.
//! - **Placement is state too** ([`placement`]): which nodes exist, their addresses and each
//!   shard's replicas live in the metadata group (group 1), whose voters are the nodes the
//!   cluster was created with. Every server reads it and hosts exactly the shards it gives it
//!   ([`server`]); a server asked for a group it does not host answers with the hosts'
//!   addresses (`raft_service::ServiceError::NotHosted`), which the client follows.
//! - **One state machine type** ([`machine`]): a `Node<S>` hosts groups of one type, so
//!   [`KvMachine`] is an enum, `Meta` (the placement) or `Data` (a shard's `BTreeMap`); a
//!   request of the wrong kind or for a key of another shard is refused, not applied.
//! - **Operations** ([`client`]): put, get, delete, compare-and-swap, and multi-get within a
//!   group; reads are linearizable, lease or stale (`raft_service::ReadKind`), writes apply
//!   exactly once (the service client's sessions).
//! - **Admin** ([`admin`]): status, leader transfer, replica moves through learner → caught
//!   up → voter → old replica removed.
//!
//! The binaries `kv-server` and `kv` only parse arguments and call into these modules; see
//! the crate's `README.md` for a cluster of processes.

pub mod addrs;
pub mod admin;
pub mod bench;
pub mod client;
pub mod error;
pub mod hash;
pub mod machine;
pub mod placement;
pub mod server;

pub use admin::{ClusterStatus, MoveReport, RebalanceReport};
pub use client::{CasOutcome, KvClient};
pub use error::{AddrError, KvError, ServerError};
pub use hash::{META_GROUP, group_of};
pub use machine::{KvCommand, KvMachine, KvQuery, KvResponse};
pub use placement::{MetaCommand, Placement, PlacementError};
pub use raft_service::{ClientConfig, ReadKind};
pub use server::{KvServer, ServerConfig};
