//! The simulated state machine: a counter that reports every command it applies to the run's
//! checkers and its trace.

use raft_actor::StateMachine;
use raft_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::trace::Tracer;

/// A counter state machine that reports every applied command to the simulation.
pub struct SimCounter {
    node: NodeId,
    value: i64,
    applied: flume::Sender<Applied>,
    trace: Tracer,
}

/// One applied command, as seen by one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The node that applied it.
    pub node: NodeId,
    /// Its log index.
    pub index: u64,
    /// The command.
    pub command: CounterCmd,
}

/// Commands of [`SimCounter`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CounterCmd {
    /// Adds `n`; answers the new value.
    Add(i64),
}

impl SimCounter {
    /// Node `node`'s counter, starting at 0, reporting on `applied` and to `trace`.
    pub(super) fn new(node: NodeId, applied: flume::Sender<Applied>, trace: Tracer) -> Self {
        SimCounter {
            node,
            value: 0,
            applied,
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
        // The checker's queue is large; a full queue is reported as a checker failure.
        let _ = self.applied.try_send(Applied {
            node: self.node,
            index,
            command,
        });
        self.value
    }

    fn query(&self, _q: ()) -> i64 {
        self.value
    }

    fn snapshot(&self) -> Vec<u8> {
        self.value.to_le_bytes().to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| "counter snapshot is not 8 bytes".to_string())?;
        self.value = i64::from_le_bytes(bytes);
        self.trace
            .event(|| format!("n{} restores a snapshot: value {}", self.node, self.value));
        Ok(())
    }
}
