//! Results: one serializable report, printed as a table or JSON, plus optional files.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{StorageKind, SyncKind, TransportKind};
use crate::floors::Floors;

/// Latency percentiles, microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// The configuration a write run used.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// Nodes.
    pub nodes: u64,
    /// Groups.
    pub groups: u64,
    /// Clients.
    pub clients: u64,
    /// Payload bytes.
    pub payload: usize,
    /// Node-to-node transport.
    pub transport: TransportKind,
    /// Log storage.
    pub storage: StorageKind,
    /// WAL sync policy (`null` with memory storage).
    pub sync: Option<SyncKind>,
    /// Worker threads of the data runtime the nodes ran on (of each node process over TCP).
    pub workers: usize,
}

/// The floor a run's latency is compared with.
#[derive(Clone, Debug, Serialize)]
pub struct FloorRatio {
    /// Which floor applies (e.g. `"fdatasync_4k + loopback_rtt"`).
    pub floor: String,
    /// Its value, microseconds.
    pub floor_us: f64,
    /// p50 commit latency divided by the floor.
    pub p50_ratio: f64,
    /// Durable runs: the floor again with the fsync measured while every node syncs at once
    /// (`fdatasync_4k_shared`), since this run's nodes share one disk.
    pub shared_disk_floor_us: Option<f64>,
    /// p50 commit latency divided by `shared_disk_floor_us`.
    pub shared_disk_p50_ratio: Option<f64>,
}

/// Resource use of the node processes during the measured phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Resources {
    /// CPU seconds used by the nodes (in-process runs: the whole process, clients included).
    pub cpu_secs: f64,
    /// CPU used as a percentage of one core, averaged over the measured phase.
    pub cpu_percent_of_core: f64,
    /// Peak resident memory, bytes (in-process: the whole process; tcp: the largest node).
    pub peak_rss_bytes: u64,
    /// What was measured.
    pub scope: String,
}

/// Everything a write run reports.
#[derive(Clone, Debug, Serialize)]
pub struct WriteReport {
    /// The machine.
    pub machine: String,
    /// The benchmark's memory allocator.
    pub allocator: String,
    /// What was run.
    pub config: RunConfig,
    /// Measured writes.
    pub ops: u64,
    /// Seconds of the measured phase.
    pub elapsed_secs: f64,
    /// Committed writes per second.
    pub throughput: f64,
    /// Commit latency seen by clients, microseconds.
    pub latency_us: Percentiles,
    /// Terms in which some node became leader of some group during the run (warm-up included).
    pub leader_changes: u64,
    /// Attempts retried (`NotLeader`, `Overloaded`, `Timeout`).
    pub retries: u64,
    /// Attempts that failed for good.
    pub failures: u64,
    /// The first failure's message.
    pub first_failure: Option<String>,
    /// CPU and memory.
    pub resources: Resources,
    /// The machine's floors, measured in this run (`null` with `--no-floors`).
    pub floors: Option<Floors>,
    /// p50 latency against the floor that applies.
    pub floor_ratio: Option<FloorRatio>,
}

impl WriteReport {
    /// The floor that applies to this configuration, with its name.
    pub fn pick_floor(config: &RunConfig, floors: &Floors) -> (String, f64) {
        let durable = config.storage == StorageKind::Wal && config.sync == Some(SyncKind::Always);
        match (config.transport, durable) {
            (TransportKind::Tcp, true) => (
                "fdatasync_4k + loopback_rtt".into(),
                floors.fdatasync_4k_us + floors.loopback_rtt_us,
            ),
            (TransportKind::Tcp, false) => ("loopback_rtt".into(), floors.loopback_rtt_us),
            (TransportKind::Mem, true) => ("fdatasync_4k".into(), floors.fdatasync_4k_us),
            (TransportKind::Mem, false) => ("in_process_hop".into(), floors.in_process_hop_us),
        }
    }

    /// Durable runs: the floor with the fsync the nodes get when they all sync at once.
    pub fn shared_disk_floor(config: &RunConfig, floors: &Floors) -> Option<f64> {
        let durable = config.storage == StorageKind::Wal && config.sync == Some(SyncKind::Always);
        match (config.transport, durable) {
            (TransportKind::Tcp, true) => {
                Some(floors.fdatasync_4k_shared_us + floors.loopback_rtt_us)
            }
            (TransportKind::Mem, true) => Some(floors.fdatasync_4k_shared_us),
            (_, false) => None,
        }
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let c = &self.config;
        let l = &self.latency_us;
        let mut out = String::new();
        let sync = c
            .sync
            .map_or(String::new(), |s| format!(" sync={s:?}").to_lowercase());
        let _ = writeln!(
            out,
            "machine      {} (allocator: {})",
            self.machine, self.allocator
        );
        let _ = writeln!(
            out,
            "run          {} nodes, {} groups, {} clients, {} B payload, transport={:?}, storage={:?}{sync}, {} data worker(s)",
            c.nodes, c.groups, c.clients, c.payload, c.transport, c.storage, c.workers
        );
        let _ = writeln!(
            out,
            "throughput   {:.0} writes/s ({} writes in {:.2} s)",
            self.throughput, self.ops, self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "latency µs   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        let _ = writeln!(
            out,
            "leadership   {} leader changes; {} retries, {} failures",
            self.leader_changes, self.retries, self.failures
        );
        if let Some(f) = &self.first_failure {
            let _ = writeln!(out, "first error  {f}");
        }
        let r = &self.resources;
        let _ = writeln!(
            out,
            "resources    {:.1} CPU s ({:.0}% of a core), peak RSS {:.1} MiB ({})",
            r.cpu_secs,
            r.cpu_percent_of_core,
            r.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            r.scope
        );
        if let Some(f) = &self.floors {
            let _ = writeln!(
                out,
                "floors µs    in-process hop {:.1}, loopback RTT {:.1} ({:.1} within one \
                 runtime), fdatasync 4 KiB {:.1} ({:.1} with every node syncing at once)",
                f.in_process_hop_us,
                f.loopback_rtt_us,
                f.loopback_rtt_one_runtime_us,
                f.fdatasync_4k_us,
                f.fdatasync_4k_shared_us
            );
        }
        if let Some(r) = &self.floor_ratio {
            let _ = writeln!(
                out,
                "vs floor     p50 = {:.2} × {} ({:.1} µs)",
                r.p50_ratio, r.floor, r.floor_us
            );
            if let (Some(us), Some(ratio)) = (r.shared_disk_floor_us, r.shared_disk_p50_ratio) {
                let _ = writeln!(
                    out,
                    "             p50 = {ratio:.2} × the same with the shared-disk fsync ({us:.1} µs)"
                );
            }
        }
        out
    }
}

/// Writes the percentile distribution as text (HdrHistogram's `.hgrm` layout), microseconds.
pub fn write_hdr(path: &Path, h: &Histogram<u64>) -> std::io::Result<()> {
    let mut out = String::from("       Value   Percentile   TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(1) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".into()
        };
        let _ = writeln!(
            out,
            "{:12.3} {:12.6} {:12} {:>14}",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration(),
            inv
        );
    }
    let _ = writeln!(
        out,
        "#[Mean = {:.3}, StdDeviation = {:.3}]\n#[Max = {:.3}, Total count = {}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    );
    std::fs::write(path, out)
}

/// Writes an SVG plot of latency (log scale) against percentile (log scale of 1/(1-q)).
pub fn write_svg(path: &Path, h: &Histogram<u64>, title: &str) -> std::io::Result<()> {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const PAD: f64 = 60.0;
    // x: "nines" = log10(1 / (1 - q)), from 0 (p0) to 4 (p99.99).
    let max_nines = 4.0;
    let points: Vec<(f64, f64)> = (0..=400)
        .map(|i| {
            let nines = f64::from(i) / 100.0;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q.min(1.0)) as f64 / 1000.0)
        })
        .collect();
    let lo = points.first().map_or(1.0, |p| p.1).max(0.001);
    let hi = (h.max() as f64 / 1000.0).max(lo * 10.0);
    let (llo, lhi) = (lo.log10().floor(), hi.log10().ceil());
    let x = |n: f64| PAD + n / max_nines * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - (v.max(lo).log10() - llo) / (lhi - llo) * (H - 2.0 * PAD);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        escape(title)
    );
    for (n, label) in [
        (0.0, "p0"),
        (1.0, "p90"),
        (2.0, "p99"),
        (3.0, "p99.9"),
        (4.0, "p99.99"),
    ] {
        let _ = writeln!(
            svg,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{label}</text>",
            x(n),
            PAD,
            H - PAD,
            H - PAD + 18.0
        );
    }
    let mut decade = llo;
    while decade <= lhi {
        let v = 10f64.powf(decade);
        let _ = writeln!(
            svg,
            "<line x1=\"{PAD}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{0}\" text-anchor=\"end\">{3} µs</text>",
            y(v),
            W - PAD,
            PAD - 6.0,
            v
        );
        decade += 1.0;
    }
    let path_data: Vec<String> = points
        .iter()
        .map(|(n, v)| format!("{:.1},{:.1}", x(*n), y(*v)))
        .collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n</svg>",
        path_data.join(" ")
    );
    std::fs::write(path, svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
