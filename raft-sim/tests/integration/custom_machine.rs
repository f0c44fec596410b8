//! The simulation runs a state machine that is not its counter: a key-value store of its own,
//! through [`raft_sim::Workload`], checked against the [`Kv`] model.
//!
//! - The store holds every invariant under the default random faults, with snapshots on so
//!   that crashed nodes restore the store's own snapshot format.
//! - A negative control: a store that acknowledges some writes without applying them (the same
//!   on every node, so only the client history can show it) is caught by the linearizability
//!   checker.
//! - Two runs of one seed of the store are identical.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use raft_actor::{SnapshotMeta, StateMachine};
use raft_core::NodeId;
use raft_core::rng::SplitMix64;
use raft_sim::linearizability::{Kv, KvInput, KvOutput};
use raft_sim::trace::Tracer;
use raft_sim::{Op, SimConfig, SimReport, Workload, run_with};
use serde::{Deserialize, Serialize};

/// Keys the clients use: 0 to `KEYS - 1`.
const KEYS: u64 = 3;

/// The key of the harness's own writes (liveness, wake-up audit): no client reads it, and the
/// [`Kv`] model checks each key on its own, so these writes are invisible to the model.
const PROBE_KEY: u8 = u8::MAX;

/// A command of [`Store`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Put {
    /// Sets the key's value; answers `None`.
    Put(u8, u64),
}

/// A key-value store; a query reads a key.
struct Store {
    node: NodeId,
    map: BTreeMap<u8, u64>,
    /// Broken on purpose: a put at a log index divisible by this is answered but not applied.
    lose_every: Option<u64>,
    trace: Tracer,
}

impl StateMachine for Store {
    type Command = Put;
    type Query = u8;
    type Response = Option<u64>;

    fn apply(&mut self, index: u64, command: Put) -> Option<u64> {
        let Put::Put(k, v) = command;
        if self.lose_every.is_some_and(|n| index % n == 0) {
            self.trace
                .event(|| format!("n{} loses #{index} put {k} = {v}", self.node));
            return None;
        }
        self.map.insert(k, v);
        None
    }

    fn query(&self, key: u8) -> Option<u64> {
        self.map.get(&key).copied()
    }

    /// One 9-byte record per key, streamed.
    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        for (k, v) in &self.map {
            out.write_all(&[*k])?;
            out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    }

    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut map = BTreeMap::new();
        let mut record = [0u8; 9];
        // A record starts with its key byte; the end of the data may come only before one.
        while data.read(&mut record[..1])? == 1 {
            data.read_exact(&mut record[1..])?;
            let mut v = [0; 8];
            v.copy_from_slice(&record[1..]);
            map.insert(record[0], u64::from_le_bytes(v));
        }
        self.map = map;
        Ok(())
    }
}

/// Clients read a random key one time in three, else write a value no other write uses to a
/// random key. Each client has its own clone: `writes` counts that client's writes.
#[derive(Clone)]
struct StoreWorkload {
    writes: u64,
    lose_every: Option<u64>,
}

impl StoreWorkload {
    fn new(lose_every: Option<u64>) -> Self {
        StoreWorkload {
            writes: 0,
            lose_every,
        }
    }
}

impl Workload for StoreWorkload {
    type Machine = Store;
    type Model = Kv<u8, u64>;

    fn machine(&self, node: NodeId, trace: &Tracer) -> Store {
        Store {
            node,
            map: BTreeMap::new(),
            lose_every: self.lose_every,
            trace: trace.clone(),
        }
    }

    fn next_op(&mut self, client: u64, rng: &mut SplitMix64) -> Op<Store> {
        let key = rng.below(KEYS) as u8;
        if rng.below(3) == 0 {
            return Op::Query(key);
        }
        self.writes += 1;
        Op::Command(Put::Put(key, self.writes * 1000 + client))
    }

    fn probe(&self) -> Put {
        Put::Put(PROBE_KEY, 0)
    }

    fn model(&self) -> Kv<u8, u64> {
        Kv::new()
    }

    fn input(&self, op: &Op<Store>) -> KvInput<u8, u64> {
        match op {
            Op::Command(Put::Put(k, v)) => KvInput::Put(*k, *v),
            Op::Query(k) => KvInput::Get(*k),
        }
    }

    fn output(&self, op: &Op<Store>, response: &Option<u64>) -> KvOutput<u64> {
        match op {
            Op::Command(_) => KvOutput::Ok,
            Op::Query(_) => KvOutput::Value(*response),
        }
    }
}

/// Seed `seed` with the default random faults for 10 simulated seconds, snapshots every 100
/// entries.
fn config(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.duration = Duration::from_secs(10);
    c.snapshots = Some((100, 10));
    c
}

#[test]
fn a_key_value_store_holds_every_invariant() {
    let mut reports: Vec<SimReport> = Vec::new();
    for seed in 0..4 {
        let r = run_with(config(seed), StoreWorkload::new(None));
        eprintln!(
            "seed {seed}: {} operations acknowledged ({} in doubt), {} faults, {} crashes, \
             {} snapshots taken, {} installed, violations {:?}",
            r.acked,
            r.in_doubt,
            r.faults,
            r.crashes,
            r.snapshots_taken,
            r.snapshots_installed,
            r.violations
        );
        reports.push(r);
    }
    for r in &reports {
        assert!(
            r.violations.is_empty(),
            "seed {}: {:?}",
            r.seed,
            r.violations
        );
        assert!(
            r.acked > 100,
            "seed {}: only {} acknowledged",
            r.seed,
            r.acked
        );
        assert!(
            !r.linearizability_unknown,
            "seed {}: beyond the budget",
            r.seed
        );
    }
    assert!(
        reports.iter().any(|r| r.crashes > 0) && reports.iter().any(|r| r.snapshots_taken > 0),
        "no crash or no snapshot in any seed: the store's restart path was not exercised"
    );
}

#[test]
fn a_store_that_loses_acknowledged_writes_is_caught() {
    let caught: Vec<SimReport> = (0..4)
        .map(|seed| run_with(config(seed), StoreWorkload::new(Some(7))))
        .filter(|r| {
            r.violations
                .iter()
                .any(|v| v.starts_with("linearizability:"))
        })
        .collect();
    eprintln!("lost writes: caught by {} of 4 seeds", caught.len());
    if let Some(r) = caught.first() {
        eprintln!("  e.g. seed {}: {}", r.seed, r.violations[0]);
    }
    assert!(
        !caught.is_empty(),
        "no seed caught acknowledged writes that were lost"
    );
}

#[test]
fn the_same_seed_runs_the_store_the_same_way() {
    let mut c = config(5);
    c.trace = true;
    let a = run_with(c.clone(), StoreWorkload::new(None));
    let b = run_with(c, StoreWorkload::new(None));
    assert!(a.acked > 0);
    assert_eq!(a.trace, b.trace, "two runs of seed 5 differ");
    assert_eq!(
        (a.history_hash, a.applied_hash, a.trace_hash),
        (b.history_hash, b.applied_hash, b.trace_hash)
    );
}
