//! The built-in workload: [`SimCounter`], a counter that traces what it applies, driven by
//! [`CounterWorkload`]'s increments and reads and checked against the
//! [`Counter`](crate::linearizability::Counter) model, plus exactly-once.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use raft_actor::{SnapshotMeta, StateMachine};
use raft_core::NodeId;
use raft_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use super::workload::{Op, Recorded, Workload};
use crate::linearizability::{Counter, CounterInput};
use crate::trace::Tracer;

/// A counter state machine that writes every command it applies, and every snapshot it
/// restores, to the run's trace.
pub struct SimCounter {
    node: NodeId,
    value: i64,
    trace: Tracer,
}

/// Commands of [`SimCounter`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CounterCmd {
    /// Adds `n`; answers the new value.
    Add(i64),
}

impl SimCounter {
    /// Node `node`'s counter, starting at 0, tracing to `trace`.
    pub fn new(node: NodeId, trace: Tracer) -> Self {
        SimCounter {
            node,
            value: 0,
            trace,
        }
    }
}

impl StateMachine for SimCounter {
    type Command = CounterCmd;
    type Query = ();
    type Response = i64;

    fn apply(&mut self, index: u64, command: CounterCmd) -> i64 {
        let CounterCmd::Add(n) = command;
        self.value += n;
        self.trace
            .event(|| format!("n{} applies #{index} add {n} -> {}", self.node, self.value));
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
        self.trace
            .event(|| format!("n{} restores a snapshot: value {}", self.node, self.value));
        Ok(())
    }
}

/// The workload [`crate::run`] runs: clients increment a [`SimCounter`] by one (four times in
/// five) or read it. Besides linearizability against a [`Counter`] model, its
/// [`Workload::check_history`] checks exactly-once: the values acknowledged increments
/// returned are distinct (two increments that both returned `n` mean one was applied twice or
/// lost). The liveness and wake-up-audit probes add 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterWorkload;

impl Workload for CounterWorkload {
    type Machine = SimCounter;
    type Model = Counter;

    fn machine(&self, node: NodeId, trace: &Tracer) -> SimCounter {
        SimCounter::new(node, trace.clone())
    }

    fn next_op(&mut self, _client: u64, rng: &mut SplitMix64) -> Op<SimCounter> {
        if rng.below(5) == 0 {
            Op::Query(())
        } else {
            Op::Command(CounterCmd::Add(1))
        }
    }

    fn probe(&self) -> CounterCmd {
        CounterCmd::Add(0)
    }

    fn model(&self) -> Counter {
        Counter { initial: 0 }
    }

    fn input(&self, op: &Op<SimCounter>) -> CounterInput {
        match op {
            Op::Command(CounterCmd::Add(n)) => CounterInput::Add(*n),
            Op::Query(()) => CounterInput::Get,
        }
    }

    fn output(&self, _op: &Op<SimCounter>, response: &i64) -> i64 {
        *response
    }

    fn check_history(&self, history: &[Recorded<SimCounter>]) -> Vec<String> {
        let mut found = Vec::new();
        let mut seen: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for r in history {
            let (Op::Command(_), Some((_, value))) = (&r.op, &r.ret) else {
                continue;
            };
            if let Some(prev) = seen.insert(*value, (r.client, r.seq)) {
                found.push(format!(
                    "exactly-once: increments {prev:?} and {:?} both returned {value}",
                    (r.client, r.seq)
                ));
            }
        }
        found
    }

    fn describe(&self, op: &Op<SimCounter>) -> String {
        match op {
            Op::Command(_) => "add".into(),
            Op::Query(()) => "read".into(),
        }
    }
}
