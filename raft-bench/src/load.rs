//! The client side: `C` clients, each with one write in flight, measured with hdrhistogram.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use raft_core::GroupId;
use raft_service::Client;

use crate::local::LocalCluster;
use crate::sm::{BenchSm, Write};
use crate::tcp::RemoteCluster;

/// The cluster the clients write to.
pub enum Target {
    /// In-process nodes.
    Local(Arc<LocalCluster>),
    /// Node processes over loopback TCP.
    Remote(Box<RemoteCluster>),
}

impl Target {
    /// Per node: the groups it leads and the sum over groups of terms it led.
    async fn statuses(&mut self) -> Vec<Option<(Vec<GroupId>, u64)>> {
        match self {
            Target::Local(c) => c.statuses().await,
            Target::Remote(c) => c.statuses().await,
        }
    }

    /// For each group `1..=groups`, the index of its leader's node; waits up to `timeout`.
    pub async fn leaders(&mut self, groups: u64, timeout: Duration) -> anyhow::Result<Vec<usize>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = vec![None; usize::try_from(groups)?];
            for (idx, status) in self.statuses().await.into_iter().enumerate() {
                for g in status.map(|s| s.0).unwrap_or_default() {
                    if let Some(slot) = leaders.get_mut(usize::try_from(g)? - 1) {
                        *slot = Some(idx);
                    }
                }
            }
            let found = leaders.iter().filter(|l| l.is_some()).count();
            if found == leaders.len() {
                return Ok(leaders.into_iter().map(|l| l.unwrap_or(0)).collect());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "only {found} of {groups} groups elected a leader within {timeout:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sum over nodes and groups of terms in which a node was leader (each is one change of
    /// leadership).
    pub async fn leader_terms(&mut self) -> u64 {
        self.statuses()
            .await
            .into_iter()
            .map(|s| s.map_or(0, |s| s.1))
            .sum()
    }

    /// CPU and memory of the nodes: this process (node 0), or each node process.
    pub fn usage(&self) -> Vec<(u64, Option<crate::sys::Usage>)> {
        match self {
            Target::Local(_) => vec![(0, crate::sys::usage("self"))],
            Target::Remote(c) => c.usage(),
        }
    }

    /// Stops the nodes (once every client is done with them).
    pub async fn shutdown(self) {
        match self {
            Target::Local(c) => {
                if let Ok(c) = Arc::try_unwrap(c) {
                    c.shutdown().await;
                }
            }
            Target::Remote(c) => (*c).shutdown().await,
        }
    }

    /// One writer per client `0..clients`; client `i` writes to group `i % groups + 1`, whose
    /// leader is node `leaders[g - 1]` as the run starts.
    pub async fn writers(
        &self,
        clients: u64,
        groups: u64,
        leaders: &[usize],
    ) -> anyhow::Result<Vec<Writer>> {
        let first = (0..clients)
            .map(|i| {
                let g = usize::try_from(i % groups)?;
                Ok(leaders.get(g).copied().unwrap_or(0))
            })
            .collect::<anyhow::Result<Vec<usize>>>()?;
        Ok(match self {
            Target::Local(c) => first
                .into_iter()
                .map(|leader| Writer::Local {
                    cluster: c.clone(),
                    leader,
                    retries: 0,
                })
                .collect(),
            Target::Remote(c) => c
                .clients(&first)
                .await?
                .into_iter()
                .map(|c| Writer::Remote(Box::new(c)))
                .collect(),
        })
    }
}

/// One client's way to the cluster.
pub enum Writer {
    /// Proposes on node `leader` of the in-process cluster, following `NotLeader` hints.
    Local {
        /// The nodes.
        cluster: Arc<LocalCluster>,
        /// The node believed to lead the client's group.
        leader: usize,
        /// Attempts answered `NotLeader`, `Overloaded` or `Timeout`.
        retries: u64,
    },
    /// A raft-service client of the node processes (a fork sharing its root's connections):
    /// it finds the leader, follows hints and retries, under a session per group.
    Remote(Box<Client<BenchSm>>),
}

/// What one attempt at a write came to.
enum Attempt {
    /// Committed.
    Done,
    /// Not yet (redirected, overloaded or timed out): try again.
    Again,
    /// Failed for good (after the client's own retries, for a remote writer).
    Failed(String),
}

impl Writer {
    async fn attempt(&mut self, group: GroupId, payload: &Bytes) -> Attempt {
        match self {
            Writer::Local {
                cluster,
                leader,
                retries,
            } => {
                let n = cluster.nodes.len();
                match cluster.propose(*leader, group, payload).await {
                    Ok(_) => Attempt::Done,
                    Err(raft_actor::Error::NotLeader { leader: hint, .. }) => {
                        *retries += 1;
                        let hint = hint.and_then(|l| usize::try_from(l).ok()?.checked_sub(1));
                        *leader = match hint {
                            Some(h) if h < n => h,
                            _ => {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                (*leader + 1) % n
                            }
                        };
                        Attempt::Again
                    }
                    Err(e) if e.is_retryable() => {
                        *retries += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Attempt::Again
                    }
                    Err(e) => {
                        *leader = (*leader + 1) % n;
                        Attempt::Failed(e.to_string())
                    }
                }
            }
            // Boxed: a write over TCP is tens of microseconds, and its larger future would
            // otherwise set the size of every client task, in-process ones included.
            Writer::Remote(client) => {
                match Box::pin(client.propose(group, Write::Payload(payload.clone()))).await {
                    Ok(_) => Attempt::Done,
                    Err(e) => Attempt::Failed(e.to_string()),
                }
            }
        }
    }

    /// Attempts beyond the first of each write so far (hints followed, retries after
    /// refusals and failures).
    fn retries(&self) -> u64 {
        match self {
            Writer::Local { retries, .. } => *retries,
            Writer::Remote(client) => client.retries(),
        }
    }
}

/// What the clients measured.
pub struct LoadResult {
    /// Commit latency of every measured write, nanoseconds (from first attempt to success).
    pub latency: Histogram<u64>,
    /// Measured writes.
    pub ops: u64,
    /// Seconds of the measured phase.
    pub elapsed: f64,
    /// Attempts beyond the first of each write: hints followed and retries after `NotLeader`,
    /// `Overloaded`, `Timeout` or a lost connection.
    pub retries: u64,
    /// Attempts that failed for good (then retried after a pause).
    pub failures: u64,
    /// The first such failure, for the report.
    pub first_failure: Option<String>,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one client counted (its latency samples go to the collector). Kept small: it lives in
/// the client's task, and at 4096 clients the tasks' state is what the cache holds.
#[derive(Default)]
struct Tally {
    ops: u64,
    retries: u64,
    failures: u64,
    first_failure: Option<String>,
}

struct Shared {
    phase: AtomicU8,
    measured: AtomicU64,
}

/// How long to run and what to send.
pub struct Plan {
    /// Clients.
    pub clients: u64,
    /// Groups (client `i` writes to group `i % groups + 1`).
    pub groups: u64,
    /// Payload bytes per write.
    pub payload: usize,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Measured phase length (upper bound when `ops` is set).
    pub duration: Duration,
    /// Stop after this many measured writes.
    pub ops: Option<u64>,
    /// Print progress to stderr every few seconds.
    pub progress: bool,
}

/// Runs one client per writer (see [`Target::writers`]).
pub async fn run(writers: Vec<Writer>, plan: Plan) -> anyhow::Result<LoadResult> {
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(WARMUP),
        measured: AtomicU64::new(0),
    });
    // Clients batch their samples to one collector: a histogram per client would cost
    // hundreds of KiB each at 4096 clients.
    let (samples_tx, samples_rx) = flume::bounded::<Vec<u64>>(256);
    let collector = tokio::spawn(async move {
        let mut h = new_histogram();
        while let Ok(batch) = samples_rx.recv_async().await {
            for ns in batch {
                let _ = h.record(ns.clamp(1, 100_000_000_000));
            }
        }
        h
    });
    // One body for the whole run, made `'static` so that cloning it into each write takes no
    // reference count: with thousands of clients the count updates on per-client `Bytes` are
    // cold cache lines on the hot path. It is `plan.payload` bytes, leaked once per run.
    let body: &'static [u8] = Box::leak(
        (0..plan.payload)
            .map(|i| i as u8)
            .collect::<Vec<u8>>()
            .into_boxed_slice(),
    );
    let mut tasks = Vec::new();
    for (client, writer) in (0..plan.clients).zip(writers) {
        let group = client % plan.groups + 1;
        tasks.push(tokio::spawn(client_loop(
            writer,
            shared.clone(),
            group,
            Bytes::from_static(body),
            plan.ops,
            samples_tx.clone(),
        )));
    }
    drop(samples_tx);
    tokio::time::sleep(plan.warmup).await;
    shared.phase.store(MEASURE, Ordering::SeqCst);
    let start = Instant::now();
    let mut last_report = start;
    loop {
        let elapsed = start.elapsed();
        let done = shared.measured.load(Ordering::Relaxed);
        if plan.ops.is_some_and(|ops| done >= ops)
            || (plan.ops.is_none() && elapsed >= plan.duration)
        {
            break;
        }
        if plan.progress && last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  {:>5.1} s: {done} writes, {:.0} writes/s",
                elapsed.as_secs_f64(),
                done as f64 / elapsed.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shared.phase.store(STOP, Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();
    let mut result = LoadResult {
        latency: Histogram::new(1)?,
        ops: 0,
        elapsed,
        retries: 0,
        failures: 0,
        first_failure: None,
    };
    for task in tasks {
        let r = task.await?;
        result.ops += r.ops;
        result.retries += r.retries;
        result.failures += r.failures;
        if result.first_failure.is_none() {
            result.first_failure = r.first_failure;
        }
    }
    result.latency = collector.await?;
    Ok(result)
}

/// Nanoseconds from 1 ns to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant bounds are valid")
}

async fn client_loop(
    mut writer: Writer,
    shared: Arc<Shared>,
    group: GroupId,
    body: Bytes,
    ops: Option<u64>,
    samples: flume::Sender<Vec<u64>>,
) -> Tally {
    // Small per-client buffers: at 4096 clients, 1024 samples each would be 32 MiB of buffers
    // and a cache miss on every push.
    const BATCH: usize = 64;
    // Without `--ops` the shared count only feeds the progress line: add to it in steps, not
    // with a contended atomic add per write.
    let count_step = if ops.is_some() { 1 } else { 64 };
    let mut uncounted = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    let mut result = Tally::default();
    // One clock read per write: a write starts when the previous one ended.
    let mut start = Instant::now();
    loop {
        let phase = shared.phase.load(Ordering::Relaxed);
        if phase == STOP {
            break;
        }
        loop {
            match writer.attempt(group, &body).await {
                Attempt::Done => break,
                Attempt::Again => {}
                Attempt::Failed(e) => {
                    result.failures += 1;
                    result.first_failure.get_or_insert(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if shared.phase.load(Ordering::Relaxed) == STOP {
                let _ = samples.send_async(batch).await;
                result.retries = writer.retries();
                return result;
            }
        }
        let end = Instant::now();
        let took = end.duration_since(start);
        start = end;
        if phase == MEASURE {
            batch.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                let _ = samples.send_async(full).await;
            }
            result.ops += 1;
            uncounted += 1;
            if uncounted == count_step {
                let total = shared.measured.fetch_add(uncounted, Ordering::Relaxed) + uncounted;
                uncounted = 0;
                if ops.is_some_and(|ops| total >= ops) {
                    break;
                }
            }
        }
    }
    let _ = samples.send_async(batch).await;
    result.retries = writer.retries();
    result
}
