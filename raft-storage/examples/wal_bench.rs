//! WAL group-commit benchmark: appends/s and fsyncs/s with 1 group and with 1,000 groups
//! writing concurrently (one entry per group per batch, interleaved, then one `sync` per
//! batch), `SyncMode::Always`, in a temporary directory.
//!
//! ```text
//! cargo run --release -p raft-storage --example wal_bench
//! ```
//! With one group every append waits for its own fdatasync; with 1,000 groups one fdatasync
//! covers 1,000 appends: that is group commit.

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use raft_core::{Entry, EntryPayload};
use raft_storage::{LogStore, SyncMode, Wal, WalConfig};

const PAYLOAD: usize = 128;

fn run(groups: u64, budget: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut wal = Wal::open(WalConfig {
        sync: SyncMode::Always,
        ..WalConfig::new(dir.path())
    })?;
    let payload = vec![0xA5u8; PAYLOAD];
    let mut next = vec![1u64; groups as usize + 1];
    let before = wal.stats();
    let start = Instant::now();
    let mut batches = 0u64;
    let mut latency_max = Duration::ZERO;
    while start.elapsed() < budget {
        for g in 1..=groups {
            let i = next[g as usize];
            let e = Entry {
                index: i,
                term: 1,
                payload: EntryPayload::Normal(payload.clone().into()),
            };
            wal.append(g, None, std::slice::from_ref(&e))?;
            next[g as usize] = i + 1;
        }
        let t = Instant::now();
        wal.sync()?;
        latency_max = latency_max.max(t.elapsed());
        batches += 1;
        // Keep the disk footprint small on long runs: compact everything but the tail.
        if batches % 256 == 0 {
            for g in 1..=groups {
                wal.compact(g, next[g as usize] - 2)?;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = wal.stats();
    let appends = s.appends - before.appends;
    let fsyncs = s.fsyncs - before.fsyncs;
    println!(
        "{groups:>5} group(s): {appends:>9} appends, {fsyncs:>6} fsyncs, {batches:>6} batches in {secs:.2} s \
         => {:>10.0} appends/s, {:>7.0} fsyncs/s, {:>7.1} appends per fsync, {:>6.1} MB/s, \
         slowest sync {:.2} ms, segments deleted {}",
        appends as f64 / secs,
        fsyncs as f64 / secs,
        appends as f64 / fsyncs.max(1) as f64,
        (s.bytes - before.bytes) as f64 / secs / 1e6,
        latency_max.as_secs_f64() * 1e3,
        s.segments_deleted,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    println!("WAL benchmark: {PAYLOAD}-byte entries, sync = Always, one sync per batch");
    run(1, Duration::from_secs(4))?;
    run(1000, Duration::from_secs(6))?;
    Ok(())
}
