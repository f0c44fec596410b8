//! A load generator: clients writing and reading random keys of the whole key space (so every
//! group is busy) for a while, with throughput and latency percentiles. `kv bench` runs it.

use std::time::Duration;

use hdrhistogram::Histogram;
use raft_net::SplitMix64;
use tokio::time::Instant;

use crate::client::KvClient;
use crate::error::KvError;
use raft_service::ReadKind;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Concurrent clients (each a fork of the given client, one call at a time).
    pub clients: usize,
    /// How long to run.
    pub duration: Duration,
    /// Distinct keys (`bench-0` ...).
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Percentage of operations that are puts; the rest are gets.
    pub write_percent: u64,
    /// How fresh the gets are.
    pub read: ReadKind,
    /// Seed of the key and operation choice.
    pub seed: u64,
}

impl Default for BenchConfig {
    /// 16 clients for 10 s over 10,000 keys, 64-byte values, half puts, linearizable gets.
    fn default() -> Self {
        BenchConfig {
            clients: 16,
            duration: Duration::from_secs(10),
            keys: 10_000,
            value_size: 64,
            write_percent: 50,
            read: ReadKind::Linearizable,
            seed: 1,
        }
    }
}

/// Latency percentiles of one kind of operation, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Operations that succeeded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// The groups the keys spread over.
    pub groups: u32,
    /// Clients.
    pub clients: usize,
    /// Time actually run.
    pub elapsed: Duration,
    /// Puts.
    pub writes: Latency,
    /// Gets.
    pub reads: Latency,
    /// Operations that failed.
    pub errors: u64,
}

impl BenchReport {
    /// Successful operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        (self.writes.count + self.reads.count) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line for humans.
    pub fn render(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let line = |name: &str, l: &Latency| {
            format!(
                "{name} {} (p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms)",
                l.count,
                ms(l.p50_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            )
        };
        format!(
            "kv bench: {} clients, {} groups, {:.1} s: {:.0} ops/s; {}; {}; errors {}",
            self.clients,
            self.groups,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            line("puts", &self.writes),
            line("gets", &self.reads),
            self.errors
        )
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits: constant bounds, which the crate accepts (no
    // input reaches this).
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant bounds are valid")
}

fn latency(h: &Histogram<u64>) -> Latency {
    Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

/// Runs the load through forks of `client` and measures it.
pub async fn run(client: &mut KvClient, config: &BenchConfig) -> Result<BenchReport, KvError> {
    let groups = client.refresh().await?.groups;
    let started = Instant::now();
    let until = started + config.duration;
    let mut tasks = Vec::new();
    for i in 0..config.clients.max(1) {
        let mut fork = client.fork();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SplitMix64::new(SplitMix64::derive(config.seed, &[i as u64]));
            let (mut writes, mut reads, mut errors) = (histogram(), histogram(), 0u64);
            let value = vec![b'v'; config.value_size];
            while Instant::now() < until {
                let key = format!("bench-{}", rng.below(config.keys.max(1)));
                let write = rng.below(100) < config.write_percent;
                let t = Instant::now();
                let ok = if write {
                    fork.put(key, value.clone()).await.is_ok()
                } else {
                    fork.get(key.as_bytes(), config.read).await.is_ok()
                };
                let us = (t.elapsed().as_micros() as u64).max(1);
                match (ok, write) {
                    (true, true) => writes.saturating_record(us),
                    (true, false) => reads.saturating_record(us),
                    (false, _) => errors += 1,
                }
            }
            (writes, reads, errors)
        }));
    }
    let (mut writes, mut reads, mut errors) = (histogram(), histogram(), 0);
    for t in tasks {
        let (w, r, e) = t
            .await
            .map_err(|e| KvError::Admin(format!("a bench client failed: {e}")))?;
        let _ = writes.add(&w);
        let _ = reads.add(&r);
        errors += e;
    }
    Ok(BenchReport {
        groups,
        clients: config.clients.max(1),
        elapsed: started.elapsed(),
        writes: latency(&writes),
        reads: latency(&reads),
        errors,
    })
}
