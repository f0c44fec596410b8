//! # raft-storage: where a node's Raft state lives
//!
//! One [`LogStore`] holds the log, hard state and snapshots of **every** group on a node, so a
//! single `sync` makes many groups' appends durable at once (group commit). `raft-actor` owns a
//! store on a dedicated storage thread (never on a tokio worker) and is the only caller; the
//! trait is synchronous for that reason.
//!
//! What it is not: a state machine store. The user's state machine lives in memory (or wherever
//! the user keeps it); this crate stores what Raft needs to rebuild it: entries and snapshots.
//!
//! ## Layout
//! - [`store`] — the [`LogStore`] trait, [`Recovered`] and [`StorageError`].
//! - [`snapshot`] — snapshots as streams: [`SnapshotSink`], [`StagedSnapshot`],
//!   [`SnapshotReader`].
//! - [`mem`] — [`MemStore`], an in-memory store (tests and benchmarks; loses everything on exit).
//! - [`wal`] — [`Wal`], the durable store: one segmented write-ahead log for all groups, group
//!   commit, crash recovery, snapshot files (configured by [`WalConfig`]).

pub mod mem;
pub mod snapshot;
pub mod store;
pub mod wal;

pub use mem::MemStore;
pub use snapshot::{MemSink, SharedBytes, SnapshotReader, SnapshotSink, StagedSnapshot};
pub use store::{LogStore, Recovered, StorageError};
pub use wal::{RecoveryReport, SyncMode, TornTail, Wal, WalConfig, WalStats};
