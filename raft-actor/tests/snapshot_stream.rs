//! A streamed snapshot installs on a new node without either side holding the state twice.
//!
//! Two processes (this test binary run again as a child, one per node) over TCP, each with its
//! own WAL: the leader builds a state of `RAFT_SNAPSHOT_STATE_MIB` MiB (256 by default; set
//! 1024 for the 1 GiB run) from small commands, takes a snapshot (its log is then compacted
//! away), and adds a fresh node as a learner. The learner can only catch up by installing the
//! snapshot. Each process reports its peak resident memory (`VmHWM`), and the test checks
//! that each is under 1.5 times the state and that both states agree.
//!
//! ```text
//! cargo test -p raft-actor --test snapshot_stream -- --nocapture
//! RAFT_SNAPSHOT_STATE_MIB=1024 cargo test -p raft-actor --test snapshot_stream -- --nocapture
//! ```

// The child processes talk to the parent over their stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use raft_actor::raft_core::rng::SplitMix64;
use raft_actor::raft_net::Listeners;
use raft_actor::{
    HeartbeatExecutor, Membership, Node, NodeAddrs, NodeConfig, PeerAddrs, SnapshotMeta,
    StateMachine, TcpConfig, TcpTransport, Wal, WalConfig, WireMsg,
};
use serde::{Deserialize, Serialize};

const GROUP: u64 = 1;
const CLUSTER: u64 = 77;
const MIB: u64 = 1 << 20;
/// Bytes each command adds to the state.
const VALUE_BYTES: u32 = 1 << 20;
const ROLE: &str = "RAFT_SNAPSHOT_TEST_ROLE";

/// A state of large values, made by small commands: each names a key, a length and a seed,
/// and the value is generated from the seed.
#[derive(Default)]
struct Blobs {
    values: BTreeMap<u32, Vec<u8>>,
    bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct Fill {
    key: u32,
    len: u32,
    seed: u64,
}

fn generate(len: u32, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut v = vec![0u8; len as usize];
    for chunk in v.chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    v
}

impl Blobs {
    /// A digest of every value (order-independent of how the state was built).
    fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in &self.values {
            h = (h ^ u64::from(*k)).wrapping_mul(0x100_0000_01b3);
            for w in v.chunks(8) {
                let mut b = [0u8; 8];
                b[..w.len()].copy_from_slice(w);
                h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }
}

impl StateMachine for Blobs {
    type Command = Fill;
    type Query = ();
    /// Bytes held and the digest.
    type Response = (u64, u64);

    fn apply(&mut self, _index: u64, c: Fill) -> (u64, u64) {
        let v = generate(c.len, c.seed);
        self.bytes += v.len() as u64;
        if let Some(old) = self.values.insert(c.key, v) {
            self.bytes -= old.len() as u64;
        }
        (self.bytes, 0)
    }

    fn query(&self, _q: ()) -> (u64, u64) {
        (self.bytes, self.digest())
    }

    /// Records of `key u32 | len u32 | bytes`, streamed.
    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        for (k, v) in &self.values {
            out.write_all(&k.to_le_bytes())?;
            out.write_all(&(v.len() as u32).to_le_bytes())?;
            out.write_all(v)?;
        }
        Ok(())
    }

    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut values = BTreeMap::new();
        let mut bytes = 0;
        let mut head = [0u8; 8];
        while data.read(&mut head[..1])? == 1 {
            data.read_exact(&mut head[1..])?;
            let key = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            let mut v = vec![0u8; len as usize];
            data.read_exact(&mut v)?;
            bytes += u64::from(len);
            values.insert(key, v);
        }
        *self = Blobs { values, bytes };
        Ok(())
    }
}

fn state_mib() -> u64 {
    std::env::var("RAFT_SNAPSHOT_STATE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Peak resident memory of this process, from `/proc/self/status`.
fn peak_rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("bad VmHWM line {line:?}"))?
        .parse()?;
    Ok(kib * 1024)
}

fn node_addrs(a: PeerAddrs) -> NodeAddrs {
    NodeAddrs {
        data: a.data,
        heartbeat: a.heartbeat,
        client: None,
    }
}

fn parse_addrs(line: &str) -> anyhow::Result<PeerAddrs> {
    let mut it = line.split_whitespace().skip(1);
    let (Some(d), Some(h)) = (it.next(), it.next()) else {
        anyhow::bail!("bad address line {line:?}");
    };
    Ok(PeerAddrs {
        data: d.parse()?,
        heartbeat: h.parse()?,
    })
}

fn config(id: u64) -> NodeConfig {
    let mut c = NodeConfig::new(id);
    // One snapshot, once the whole state is built; nothing kept behind it, so a new node
    // can only catch up by installing it.
    c.raft.snapshot_threshold = state_mib();
    c.raft.compact_trailing = 0;
    c.request_timeout = Duration::from_secs(120);
    c.learner_catchup_timeout = Duration::from_secs(600);
    c
}

/// Binds node `id`'s listeners, tells the parent their addresses, reads the other node's
/// from `stdin`, and starts the node on TCP with a WAL in `dir`. Returns the node, its
/// addresses and the other node's.
async fn start(
    id: u64,
    dir: &std::path::Path,
    stdin: &mut impl BufRead,
) -> anyhow::Result<(Node<Blobs>, PeerAddrs, PeerAddrs)> {
    let listeners = Listeners::bind_loopback()?;
    let me = listeners.local_addrs()?;
    println!("ADDRS {} {}", me.data, me.heartbeat);
    let other = parse_addrs(&read_line(stdin)?)?;
    let (transport, inbound) =
        TcpTransport::<WireMsg>::start(TcpConfig::new(id, CLUSTER, BTreeMap::new()), listeners)?;
    let heartbeat = HeartbeatExecutor::Handle(transport.heartbeat_runtime());
    let node = Node::builder(config(id))
        .transport(transport, inbound)
        .storage(Wal::open(WalConfig::new(dir))?)
        .heartbeat_executor(heartbeat)
        .start()
        .await?;
    Ok((node, me, other))
}

fn read_line(lines: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    if lines.read_line(&mut line)? == 0 {
        anyhow::bail!("the other side closed");
    }
    Ok(line.trim().to_string())
}

/// Node 1: builds the state, snapshots, adds node 2 (whose addresses come on stdin) and waits
/// for it to catch up.
async fn leader() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut stdin = io::stdin().lock();
    let (node, me, learner) = start(1, dir.path(), &mut stdin).await?;
    let members = Membership::new([1]).with_addrs(1, node_addrs(me));
    node.add_partition(GROUP, members, Blobs::default()).await?;
    while node.group_metrics(GROUP).await?.role != raft_actor::Role::Leader {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entries = state_mib() * MIB / u64::from(VALUE_BYTES);
    let mut applied = (0, 0);
    for key in 0..entries {
        let fill = Fill {
            key: key as u32,
            len: VALUE_BYTES,
            seed: key,
        };
        applied = node.propose(GROUP, fill).await?;
    }
    // The snapshot is asked for at the last of them; wait until it is taken and compacted.
    for _ in 0..6000 {
        let m = node.group_metrics(GROUP).await?;
        if m.snapshots_taken > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = node.group_metrics(GROUP).await?;
    anyhow::ensure!(m.snapshots_taken > 0, "no snapshot taken: {m:?}");
    node.add_learner(GROUP, 2, Some(node_addrs(learner)))
        .await?;
    let m = node.group_metrics(GROUP).await?;
    let (bytes, digest) = node.read(GROUP, ()).await?;
    anyhow::ensure!(bytes == applied.0, "{bytes} != {}", applied.0);
    println!(
        "DONE {} {bytes} {digest} {} {}",
        peak_rss()?,
        m.snapshots_sent,
        m.snapshots_taken
    );
    // Stay up until the parent has the learner's report.
    let _ = read_line(&mut stdin);
    node.shutdown().await;
    Ok(())
}

/// Node 2: starts empty, joins (the leader's addresses come on stdin), and reports once it
/// holds the whole state.
async fn learner() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut stdin = io::stdin().lock();
    let (node, _, leader) = start(2, dir.path(), &mut stdin).await?;
    let known = Membership::new([1]).with_addrs(1, node_addrs(leader));
    node.join_partition_with(GROUP, Blobs::default(), known)
        .await?;
    let want = state_mib() * MIB;
    loop {
        if let Ok(stale) = node.read_stale(GROUP, ()).await {
            if stale.response.0 == want {
                let m = node.group_metrics(GROUP).await?;
                println!(
                    "DONE {} {} {} {}",
                    peak_rss()?,
                    stale.response.0,
                    stale.response.1,
                    m.snapshots_installed
                );
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = read_line(&mut stdin);
    node.shutdown().await;
    Ok(())
}

/// The child's entry point: runs only when the parent starts this binary with `ROLE` set.
#[test]
fn child_node() -> anyhow::Result<()> {
    let Ok(role) = std::env::var(ROLE) else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match role.as_str() {
        "leader" => rt.block_on(leader()),
        "learner" => rt.block_on(learner()),
        other => anyhow::bail!("unknown role {other}"),
    }
}

/// A child process and its pipes; killed when dropped.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(role: &str) -> anyhow::Result<Proc> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "child_node",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        Ok(Proc {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// The text from `tag` on in the next line holding it (the test harness prints its own
    /// text too, on the same lines).
    fn expect(&mut self, tag: &str) -> anyhow::Result<String> {
        loop {
            let line = read_line(&mut self.stdout)?;
            if let Some(at) = line.find(tag) {
                return Ok(line[at..].to_string());
            }
        }
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")?;
        Ok(self.stdin.flush()?)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `DONE peak bytes digest count` → (peak, bytes, digest, count).
fn parse_done(line: &str) -> anyhow::Result<(u64, u64, u64, u64)> {
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(f.len() >= 4, "bad report {line:?}");
    Ok((f[0], f[1], f[2], f[3]))
}

#[test]
fn a_streamed_snapshot_installs_with_each_side_under_one_and_a_half_times_the_state()
-> anyhow::Result<()> {
    if std::env::var(ROLE).is_ok() {
        return Ok(());
    }
    let state = state_mib() * MIB;
    let mut learner = Proc::spawn("learner")?;
    let mut leader = Proc::spawn("leader")?;
    let learner_addrs = learner.expect("ADDRS")?;
    let leader_addrs = leader.expect("ADDRS")?;
    leader.send(&learner_addrs)?;
    learner.send(&leader_addrs)?;
    let (leader_peak, leader_bytes, leader_digest, sent) = parse_done(&leader.expect("DONE")?)?;
    let (learner_peak, learner_bytes, learner_digest, installed) =
        parse_done(&learner.expect("DONE")?)?;
    leader.send("BYE")?;
    learner.send("BYE")?;
    let mib = |b: u64| b as f64 / MIB as f64;
    println!(
        "streamed snapshot: state {:.0} MiB; leader peak RSS {:.1} MiB ({:.2}x the state), \
         learner peak RSS {:.1} MiB ({:.2}x); {sent} snapshot(s) sent, {installed} installed",
        mib(state),
        mib(leader_peak),
        leader_peak as f64 / state as f64,
        mib(learner_peak),
        learner_peak as f64 / state as f64,
    );
    assert_eq!(leader_bytes, state);
    assert_eq!(learner_bytes, state);
    assert_eq!(learner_digest, leader_digest, "the learner's state differs");
    assert!(sent >= 1 && installed >= 1, "not caught up by a snapshot");
    assert!(
        (leader_peak as f64) < 1.5 * state as f64,
        "leader peak RSS {leader_peak} bytes for a state of {state}"
    );
    assert!(
        (learner_peak as f64) < 1.5 * state as f64,
        "learner peak RSS {learner_peak} bytes for a state of {state}"
    );
    Ok(())
}
