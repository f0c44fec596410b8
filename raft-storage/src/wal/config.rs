//! [`WalConfig`] and [`SyncMode`]: what a [`crate::Wal`] may do, checked before it touches the disk.

use std::path::PathBuf;

use crate::store::StorageError;

/// Whether [`crate::LogStore::sync`] really reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// `sync` flushes the write buffer and calls `fdatasync` on the current segment; rotation
    /// fsyncs the finished segment and the directory. The only mode that keeps persistence
    /// before promises (docs/architecture.md). The default.
    #[default]
    Always,
    /// **FOR BENCHMARKS AND TESTS ONLY. NEVER USE IN PRODUCTION.**
    ///
    /// `sync` hands the buffered bytes to the operating system and returns without any
    /// `fsync`. Data survives a killed process but **not** a power loss, a kernel crash or a
    /// VM reset: after one of those, entries this node acknowledged and votes it granted may be
    /// gone, and a cluster built on such nodes can elect two leaders for one term and lose
    /// committed writes. Every `Wal::open` in this mode logs a warning.
    Never,
}

/// Configuration of a [`crate::Wal`]. Build it with [`WalConfig::new`] and adjust the fields;
/// [`WalConfig::validate`] (called by `Wal::open`) names the first field out of range.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// The directory holding the segments (`*.wal`) and snapshot files (`snap-*.snap`) of one
    /// node. Created if missing. One `Wal` per directory: two processes writing one directory
    /// corrupt it (there is no lock file).
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it holds this many bytes after its
    /// opening checkpoint (checked before each record, so a segment exceeds it by at most one
    /// record plus the checkpoint, about 40 bytes per group). Bigger segments mean fewer
    /// files and fewer checkpoints; smaller ones free disk sooner after compaction, because a
    /// segment is deleted only as a whole. 4 KiB ..= 2 GiB; default 64 MiB.
    pub segment_bytes: u64,
    /// Durability of `sync`; see [`SyncMode`]. Default [`SyncMode::Always`].
    pub sync: SyncMode,
    /// Records are gathered in memory and written to the segment file with one `write` when
    /// this many bytes are pending, or at `sync`. Bounds the memory a burst of appends can pin
    /// between two syncs. 1 ..= 1 GiB; default 1 MiB.
    pub buffer_bytes: usize,
    /// At most this many recent entries (all groups together) are kept in memory so that
    /// replicating fresh entries rarely reads a segment. `0` disables the cache.
    /// At most 100,000,000; default 65,536.
    pub cache_entries: usize,
    /// At most this many bytes (by [`raft_core::Entry::size_hint`]) of cached entries. The
    /// oldest inserted entries are evicted first. `0` disables the cache. Default 64 MiB.
    pub cache_bytes: u64,
    /// The current segment's file is kept zero-filled up to this many bytes beyond the records
    /// written (extended in one step when the records reach its end, at most `segment_bytes`
    /// at a time), so most syncs overwrite blocks the file already has: `fdatasync` then has
    /// no file size to record, only the data, which is markedly cheaper than an append. A
    /// segment is cut back to its records when the next one starts; recovery reads an
    /// all-zero tail as unused space, not damage. `0` disables it (the file grows with every
    /// write). At most 1 GiB; default 4 MiB.
    pub preallocate_bytes: u64,
}

/// Smallest accepted [`WalConfig::segment_bytes`].
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// Largest accepted [`WalConfig::segment_bytes`]: entry positions are kept as 32-bit offsets.
pub const MAX_SEGMENT_BYTES: u64 = 2 << 30;

impl WalConfig {
    /// The defaults (64 MiB segments, [`SyncMode::Always`], 1 MiB write buffer, a cache of
    /// 65,536 entries / 64 MiB, 4 MiB preallocated ahead) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            sync: SyncMode::Always,
            buffer_bytes: 1 << 20,
            cache_entries: 1 << 16,
            cache_bytes: 64 << 20,
            preallocate_bytes: 4 << 20,
        }
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |field: &'static str, reason: String| Err(StorageError::Config { field, reason });
        if self.dir.as_os_str().is_empty() {
            return bad("dir", "must not be empty".into());
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(
                "segment_bytes",
                format!(
                    "is {}, must be within {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                    self.segment_bytes
                ),
            );
        }
        if !(1..=1 << 30).contains(&self.buffer_bytes) {
            return bad(
                "buffer_bytes",
                format!("is {}, must be within 1..=1073741824", self.buffer_bytes),
            );
        }
        if self.preallocate_bytes > 1 << 30 {
            return bad(
                "preallocate_bytes",
                format!("is {}, must be at most 1073741824", self.preallocate_bytes),
            );
        }
        if self.cache_entries > 100_000_000 {
            return bad(
                "cache_entries",
                format!("is {}, must be at most 100000000", self.cache_entries),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = WalConfig::new("/tmp/x");
        ok.validate().unwrap();
        let field = |c: WalConfig| match c.validate() {
            Err(StorageError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(
            field(WalConfig {
                dir: "".into(),
                ..ok.clone()
            }),
            "dir"
        );
        assert_eq!(
            field(WalConfig {
                segment_bytes: 100,
                ..ok.clone()
            }),
            "segment_bytes"
        );
        assert_eq!(
            field(WalConfig {
                preallocate_bytes: 2 << 30,
                ..ok.clone()
            }),
            "preallocate_bytes"
        );
        assert_eq!(
            field(WalConfig {
                segment_bytes: 3 << 30,
                ..ok.clone()
            }),
            "segment_bytes"
        );
        assert_eq!(
            field(WalConfig {
                buffer_bytes: 0,
                ..ok.clone()
            }),
            "buffer_bytes"
        );
        assert_eq!(
            field(WalConfig {
                cache_entries: usize::MAX,
                ..ok
            }),
            "cache_entries"
        );
    }
}
