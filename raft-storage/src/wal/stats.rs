//! [`WalStats`]: counters of what a [`crate::Wal`] did, for benchmarks and metrics.

/// Counters since [`crate::Wal::open`]. Plain numbers: the `Wal` belongs to one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `append` calls that carried at least one entry.
    pub appends: u64,
    /// Entries written.
    pub entries: u64,
    /// Records written (entries, hard states, marks, headers, checkpoints).
    pub records: u64,
    /// Bytes of records written.
    pub bytes: u64,
    /// `sync` calls.
    pub syncs: u64,
    /// `fsync`/`fdatasync` calls on segments, snapshot files and the directory. With group
    /// commit this stays far below `appends`.
    pub fsyncs: u64,
    /// Segments started (including the one started at open).
    pub rotations: u64,
    /// Segments deleted because every group had compacted past them.
    pub segments_deleted: u64,
    /// Entries served from the in-memory cache.
    pub cache_hits: u64,
    /// Entries read from segment files.
    pub disk_reads: u64,
}
