//! Incident 2, second half (real time, noted as such): with the data runtime saturated — busy
//! CPU tasks and an `apply` that blocks for 2 s at a time — for 30 s, heartbeats keep flowing
//! on their own executor and no election happens (I5).
//!
//! `RAFT_SATURATION_SECS=N` changes the duration (default 30). `RAFT_SATURATION_SHARED_HEARTBEAT=1`
//! runs the negative control: heartbeats on the data runtime, where elections must happen.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_data_runtime_causes_no_elections() {
    let secs: u64 = std::env::var("RAFT_SATURATION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let shared = std::env::var("RAFT_SATURATION_SHARED_HEARTBEAT").is_ok();
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
    let mut last_block = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let cmd = if last_block.elapsed() > Duration::from_secs(3) {
            last_block = Instant::now();
            Cmd::Block(2000)
        } else {
            Cmd::Add(1)
        };
        if leader.propose(1, cmd).await.is_ok() {
            writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.await.unwrap();
    }
    if shared {
        let moved = nodes[0].group_metrics(1).await.unwrap().term != term;
        eprintln!("negative control (heartbeats on the data runtime): term moved: {moved}");
        assert!(
            moved,
            "the negative control saw no election: the test cannot tell the difference"
        );
        return;
    }
    for n in &nodes {
        let m = n.group_metrics(1).await.unwrap();
        assert_eq!(
            m.term,
            term,
            "node {}: term moved from {term} to {} (an election happened)",
            n.id(),
            m.term
        );
        assert!(!m.stalled, "node {} reported a stall", n.id());
    }
    assert_eq!(leader.group_metrics(1).await.unwrap().role, Role::Leader);
    eprintln!("saturation: {secs} s, {writes} writes, term {term} unchanged on all nodes");
    for n in &nodes {
        n.shutdown().await;
    }
}
