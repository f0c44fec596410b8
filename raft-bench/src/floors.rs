//! The machine's floors, measured in the same run as the benchmark: what no replication
//! protocol on this machine could beat.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Medians of repeated measurements, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Floors {
    /// One round trip of a 64-byte message between two tokio tasks over a bounded channel.
    pub in_process_hop_us: f64,
    /// One round trip of a 64-byte message over loopback TCP (TCP_NODELAY) between two threads
    /// that each block on their socket, as netperf's TCP_RR does between two processes: the
    /// other side is woken once per one-way trip, as on every hop between the node processes
    /// of a TCP run. The floor of TCP runs.
    pub loopback_rtt_us: f64,
    /// The same between two tasks of one two-worker tokio runtime. Reported, not compared
    /// with: the ends often share a worker, which then never sleeps, so no wake-up is in the
    /// figure (which therefore swings from one run to the next with where the ends land), and
    /// no hop between node processes avoids its wake-up.
    pub loopback_rtt_one_runtime_us: f64,
    /// Appending 4 KiB to a file and `fdatasync`ing it.
    pub fdatasync_4k_us: f64,
    /// The same with one writer per node doing it at once, each on its own file in the same
    /// directory: what a node's fsync costs while the others sync too, as they do when every
    /// node of a local cluster writes its WAL to the same disk (many disks serialize
    /// concurrent syncs through one journal).
    pub fdatasync_4k_shared_us: f64,
}

/// Measures the floors (about a second); `writers` is the node count (the shared-disk fsync).
pub async fn measure(dir: &Path, writers: usize) -> anyhow::Result<Floors> {
    Ok(Floors {
        in_process_hop_us: in_process_hop().await,
        loopback_rtt_us: tokio::task::spawn_blocking(loopback_rtt_between_threads)
            .await
            .context("loopback thread")?
            .context("loopback round trip between threads")?,
        loopback_rtt_one_runtime_us: loopback_rtt_on_own_runtime()
            .await
            .context("loopback round trip on one runtime")?,
        fdatasync_4k_us: fdatasync_4k_concurrently(dir, 1).await?,
        fdatasync_4k_shared_us: fdatasync_4k_concurrently(dir, writers.max(1)).await?,
    })
}

/// The median over `writers` threads, each appending and syncing its own file at once.
async fn fdatasync_4k_concurrently(dir: &Path, writers: usize) -> anyhow::Result<f64> {
    let handles: Vec<_> = (0..writers)
        .map(|i| {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || fdatasync_4k(&dir, i))
        })
        .collect();
    let mut medians = Vec::with_capacity(writers);
    for h in handles {
        medians.push(
            h.await
                .context("fdatasync task")?
                .context("fdatasync of 4 KiB appends")?,
        );
    }
    medians.sort_by(f64::total_cmp);
    Ok(medians[medians.len() / 2])
}

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

async fn in_process_hop() -> f64 {
    let (to_echo, echo_in) = flume::bounded::<[u8; 64]>(1);
    let (echo_out, back) = flume::bounded::<[u8; 64]>(1);
    let echo = tokio::spawn(async move {
        while let Ok(m) = echo_in.recv_async().await {
            if echo_out.send_async(m).await.is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(5000);
    for i in 0..5000u32 {
        let start = Instant::now();
        let mut msg = [0u8; 64];
        msg[..4].copy_from_slice(&i.to_le_bytes());
        if to_echo.send_async(msg).await.is_err() || back.recv_async().await.is_err() {
            break;
        }
        samples.push(start.elapsed());
    }
    drop(to_echo);
    let _ = echo.await;
    median_us(samples)
}

/// Round trips measured, after as many again of warm-up.
const ROUND_TRIPS: usize = 2000;

/// The loopback round trip between an echo thread and this one, both blocking on their
/// sockets.
fn loopback_rtt_between_threads() -> anyhow::Result<f64> {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::Builder::new().name("rtt-echo".into()).spawn(
        move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            let mut buf = [0u8; 64];
            loop {
                match s.read_exact(&mut buf) {
                    Ok(()) => s.write_all(&buf)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        },
    )?;
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut buf = [7u8; 64];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..2 * ROUND_TRIPS {
        let start = Instant::now();
        c.write_all(&buf)?;
        c.read_exact(&mut buf)?;
        if i >= ROUND_TRIPS {
            samples.push(start.elapsed());
        }
    }
    drop(c);
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok(median_us(samples))
}

/// The loopback round trip, measured on a runtime of its own shaped like the data runtime
/// (two workers: the ends may run on either), which unlike the data runtime of an in-process
/// run has an I/O driver.
async fn loopback_rtt_on_own_runtime() -> anyhow::Result<f64> {
    tokio::task::spawn_blocking(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("loopback runtime")?
            .block_on(loopback_rtt())
    })
    .await
    .context("loopback thread")?
}

async fn loopback_rtt() -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            match s.read_exact(&mut buf).await {
                Ok(_) => s.write_all(&buf).await?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let mut buf = [7u8; 64];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        c.write_all(&buf).await?;
        c.read_exact(&mut buf).await?;
        samples.push(start.elapsed());
    }
    drop(c);
    server.await??;
    Ok(median_us(samples))
}

fn fdatasync_4k(dir: &Path, writer: usize) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        "raft-bench-fsync-{}-{writer}.tmp",
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let block = [0x5au8; 4096];
        let mut samples = Vec::with_capacity(200);
        for _ in 0..200 {
            let start = Instant::now();
            f.write_all(&block)?;
            f.sync_data()?;
            samples.push(start.elapsed());
        }
        Ok::<_, std::io::Error>(median_us(samples))
    })();
    let _ = std::fs::remove_file(&path);
    Ok(result?)
}
