//! Incident 2, second half (real time, noted as such): with the data runtime saturated — busy
//! CPU tasks and an `apply` that blocks for 2 s at a time — for 30 s, heartbeats keep flowing
//! on their own executor and no election happens (I5).
//!
//! The test also asserts that writes made progress meanwhile, and runs its negative control
//! every time, after the main run: the same load with the heartbeat actor on the data runtime,
//! where elections must happen (otherwise the test could not tell the two apart).
//!
//! `RAFT_SATURATION_SECS=N` changes the main run's duration (default 30; the control runs a
//! third of it, at least 10 s).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raft_actor::{Node, NodeConfig, SnapshotMeta, StateMachine, WireMsg};
use raft_core::{Membership, Role};
use raft_net::{MemConfig, MemNetwork};
use raft_storage::MemStore;
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Slow {
    value: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
enum Cmd {
    Add(i64),
    /// Blocks the applying thread (a badly behaved state machine).
    Block(u64),
}

impl StateMachine for Slow {
    type Command = Cmd;
    type Query = ();
    type Response = i64;

    fn apply(&mut self, _index: u64, command: Cmd) -> i64 {
        match command {
            Cmd::Add(n) => self.value += n,
            Cmd::Block(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
        self.value
    }

    fn query(&self, _q: ()) -> i64 {
        self.value
    }

    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.value.to_le_bytes())
    }
    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut bytes = [0u8; 8];
        data.read_exact(&mut bytes)?;
        self.value = i64::from_le_bytes(bytes);
        Ok(())
    }
}

/// What one run saw.
struct Outcome {
    /// Proposals acknowledged during the run.
    writes: u64,
    /// Of them, the increments (the rest block apply).
    added: i64,
    /// The counter's value read from the leader after the run.
    value: i64,
    /// Some node's term moved (an election happened).
    term_moved: bool,
    /// Some node reported a stall.
    stalled: bool,
    /// The first leader still leads.
    still_leader: bool,
}

/// Three nodes under the load for `secs`; with `shared`, the heartbeat actor runs on the data
/// runtime (the negative control) instead of its own thread.
async fn run(secs: u64, shared: bool) -> Outcome {
    let ids = [1, 2, 3];
    let transports = MemNetwork::<WireMsg>::direct(&ids, &MemConfig::default()).unwrap();
    let mut nodes = Vec::new();
    for (id, (t, inbound)) in ids.iter().zip(transports) {
        let mut cfg = NodeConfig::new(*id);
        cfg.raft.seed = 5;
        // Production defaults: heartbeat actor on its own thread, storage on its own thread.
        let mut builder = Node::<Slow>::builder(cfg)
            .transport(t, inbound)
            .storage(MemStore::new());
        if shared {
            // Negative control: heartbeats on the data runtime. Elections must then happen.
            builder = builder.heartbeat_executor(raft_actor::HeartbeatExecutor::Current);
        }
        let node = builder.start().await.unwrap();
        node.add_partition(1, Membership::new(ids), Slow::default())
            .await
            .unwrap();
        nodes.push(node);
    }
    // Wait for the first leader.
    let (leader, term) = 'found: loop {
        for n in &nodes {
            let m = n.group_metrics(1).await.unwrap();
            if m.role == Role::Leader {
                break 'found (n.clone(), m.term);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stop = Arc::new(AtomicBool::new(false));
    // Busy CPU tasks on the data runtime (they yield only every 20 ms).
    let mut busy = Vec::new();
    for _ in 0..2 {
        let stop = stop.clone();
        busy.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(20) {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Writes, with an apply that blocks for 2 s every few seconds.
    let start = Instant::now();
    let mut writes = 0;
    let mut added = 0;
    let mut last_block = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let cmd = if last_block.elapsed() > Duration::from_secs(3) {
            last_block = Instant::now();
            Cmd::Block(2000)
        } else {
            Cmd::Add(1)
        };
        let add = matches!(cmd, Cmd::Add(_));
        if leader.propose(1, cmd).await.is_ok() {
            writes += 1;
            added += i64::from(add);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.await.unwrap();
    }
    let mut outcome = Outcome {
        writes,
        added,
        value: 0,
        term_moved: false,
        stalled: false,
        still_leader: false,
    };
    for n in &nodes {
        let m = n.group_metrics(1).await.unwrap();
        if m.term != term {
            eprintln!("node {}: term moved from {term} to {}", n.id(), m.term);
            outcome.term_moved = true;
        }
        outcome.stalled |= m.stalled;
    }
    outcome.still_leader = leader.group_metrics(1).await.unwrap().role == Role::Leader;
    // Whoever leads now answers the read.
    for n in &nodes {
        if let Ok(v) = n.read(1, ()).await {
            outcome.value = v;
            break;
        }
    }
    for n in &nodes {
        n.shutdown().await;
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_data_runtime_causes_no_elections() {
    let secs: u64 = std::env::var("RAFT_SATURATION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let o = run(secs, false).await;
    eprintln!(
        "saturation: {secs} s, {} writes, value {}, term moved: {}",
        o.writes, o.value, o.term_moved
    );
    assert!(!o.term_moved, "an election happened under saturation");
    assert!(!o.stalled, "a node reported a stall");
    assert!(o.still_leader, "the first leader lost office");
    // Progress: the load blocks apply for 2 s in every 3, so writes go through in the gaps;
    // at least one per second of the run (in practice far more), and every acknowledged
    // write is in the state.
    assert!(o.writes >= secs, "only {} writes in {secs} s", o.writes);
    assert!(
        o.value >= o.added,
        "value {} below the {} acknowledged increments",
        o.value,
        o.added
    );

    // The negative control, part of the test: heartbeats on the saturated data runtime must
    // lose elections, or the assertions above could not fail.
    let control_secs = (secs / 3).max(10);
    let c = run(control_secs, true).await;
    eprintln!(
        "negative control (heartbeats on the data runtime): {control_secs} s, term moved: {}",
        c.term_moved
    );
    assert!(
        c.term_moved,
        "the negative control saw no election: the test cannot tell the difference"
    );
}
