//! The wrapper every node's state machine runs in: it reports each applied command to the
//! run's state-machine-safety check and otherwise leaves the machine alone.

use raft_actor::{SnapshotMeta, StateMachine};
use raft_core::NodeId;

/// One applied command, as seen by one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Applied<C> {
    /// The node that applied it.
    pub(super) node: NodeId,
    /// Its log index.
    pub(super) index: u64,
    /// The command.
    pub(super) command: C,
}

/// Node `node`'s state machine, reporting every command it applies on `applied`.
pub(super) struct Observed<S: StateMachine> {
    node: NodeId,
    inner: S,
    applied: flume::Sender<Applied<S::Command>>,
}

impl<S: StateMachine> Observed<S> {
    pub(super) fn new(node: NodeId, inner: S, applied: flume::Sender<Applied<S::Command>>) -> Self {
        Observed {
            node,
            inner,
            applied,
        }
    }
}

impl<S: StateMachine<Command: Clone>> StateMachine for Observed<S> {
    type Command = S::Command;
    type Query = S::Query;
    type Response = S::Response;

    fn apply(&mut self, index: u64, command: S::Command) -> S::Response {
        let report = Applied {
            node: self.node,
            index,
            command: command.clone(),
        };
        let response = self.inner.apply(index, command);
        // The checker's queue is large; a full queue is reported as a checker failure. Nobody
        // awaits it, so sending wakes no task.
        let _ = self.applied.try_send(report);
        response
    }

    fn query(&self, query: S::Query) -> S::Response {
        self.inner.query(query)
    }

    fn snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.inner.snapshot(out)
    }

    fn restore(
        &mut self,
        meta: &SnapshotMeta,
        data: &mut dyn std::io::Read,
    ) -> std::io::Result<()> {
        self.inner.restore(meta, data)
    }
}
