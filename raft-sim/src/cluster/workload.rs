//! What the simulated cluster runs and how its clients' history is judged: the [`Workload`]
//! trait, the operations clients issue ([`Op`]) and the history they record ([`Recorded`]).

use std::fmt::{self, Debug};
use std::hash::Hash;

use raft_actor::StateMachine;
use raft_core::NodeId;
use raft_core::rng::SplitMix64;

use crate::linearizability::Model;
use crate::trace::Tracer;

/// A state machine under test, the operations the simulation's clients issue against it, and
/// the sequential [`Model`] their history is checked against for linearizability.
///
/// [`crate::run_with`] starts every node with [`Workload::machine`] and gives each client its
/// own clone of the workload, which picks that client's operations with
/// [`Workload::next_op`]: a command is proposed under a client session and retried with the
/// same request id until it is answered (so it applies exactly once; if the session expires
/// meanwhile its outcome stays unknown), a query is a linearizable read (ReadIndex or lease)
/// at a random node. Each client opens a new session every few dozen commands, abandoning the
/// old one, so the group's session table (capped by
/// [`SimConfig::max_sessions`](crate::SimConfig::max_sessions)) keeps evicting. When the run ends, every operation a client saw
/// return, and every command whose outcome it never learned, goes through
/// [`Workload::input`] and [`Workload::output`] into a
/// [`linearizability::Operation`](crate::linearizability::Operation) history, checked against
/// [`Workload::model`].
///
/// Everything else the simulation checks needs nothing from the workload: election safety,
/// leader completeness, log matching, state-machine safety (every node applies the same
/// command at each index, compared with the command's `Eq`), liveness after healing and the
/// replicator wake-up audit. [`Workload::check_history`] adds checks of one's own on the whole
/// history; [`CounterWorkload`](crate::CounterWorkload) checks exactly-once there.
///
/// The commands must be `Clone` (a retry resends the command; the checker keeps a copy of what
/// each node applied), `Eq + Hash + Debug` (state-machine safety, the run's hashes,
/// violations); queries `Clone + Debug` (the history keeps them); responses `Hash + Debug`
/// (the history hash, the trace).
///
/// Every random choice must come from the `rng` the client hands to
/// [`Workload::next_op`]: the same seed then gives the same run.
///
/// The [crate docs](crate#your-own-state-machine) show a whole workload: a register machine
/// of one's own, checked against the [`Register`](crate::linearizability::Register) model.
pub trait Workload: Clone + Send + 'static {
    /// The state machine every node runs.
    type Machine: StateMachine<
            Command: Clone + Eq + Hash + Debug,
            Query: Clone + Debug,
            Response: Hash + Debug,
        >;
    /// The sequential specification the client history is checked against.
    type Model: Model;

    /// A fresh state machine for node `node` (at every start and restart; a restarted node
    /// then restores its last snapshot and replays its log). It may write its own lines to the
    /// run's `trace`.
    fn machine(&self, node: NodeId, trace: &Tracer) -> Self::Machine;

    /// The next operation of client `client` (numbered from 0), drawing any randomness from
    /// `rng`, the client's own seeded generator.
    fn next_op(&mut self, client: u64, rng: &mut SplitMix64) -> Op<Self::Machine>;

    /// A command the harness itself proposes, outside the client history: the liveness check
    /// after healing and the writes of the replicator wake-up audit. Its effect must be
    /// invisible to the model: a no-op (the counter adds 0), or a write no client operation
    /// can observe.
    fn probe(&self) -> <Self::Machine as StateMachine>::Command;

    /// The model in its initial state (the machine's state before any command).
    fn model(&self) -> Self::Model;

    /// The model's input for a client operation.
    fn input(&self, op: &Op<Self::Machine>) -> <Self::Model as Model>::Input;

    /// The model's output for what the machine answered to `op`.
    fn output(
        &self,
        op: &Op<Self::Machine>,
        response: &<Self::Machine as StateMachine>::Response,
    ) -> <Self::Model as Model>::Output;

    /// Checks of one's own on the whole client history, beyond linearizability: each problem
    /// found, as a violation message. The history lists each client's operations in the order
    /// it issued them, client after client. None by default.
    fn check_history(&self, history: &[Recorded<Self::Machine>]) -> Vec<String> {
        let _ = history;
        Vec::new()
    }

    /// How the trace names an operation in a client's lines (`c0 <describe> #3 at n2 -> 7`).
    /// By default the command's `Debug`, or `read` and the query's `Debug`.
    fn describe(&self, op: &Op<Self::Machine>) -> String {
        match op {
            Op::Command(c) => format!("{c:?}"),
            Op::Query(q) => format!("read {q:?}"),
        }
    }
}

/// A client operation on a state machine `S`.
pub enum Op<S: StateMachine> {
    /// A command, proposed through the log under the client's session
    /// (`Node::propose_with_id`).
    Command(S::Command),
    /// A query, answered by a linearizable read: ReadIndex (`Node::read`) or the leader's
    /// lease (`Node::read_lease`), one or the other at random.
    Query(S::Query),
}

impl<S: StateMachine<Command: Clone, Query: Clone>> Clone for Op<S> {
    fn clone(&self) -> Self {
        match self {
            Op::Command(c) => Op::Command(c.clone()),
            Op::Query(q) => Op::Query(q.clone()),
        }
    }
}

impl<S: StateMachine<Command: Debug, Query: Debug>> Debug for Op<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Command(c) => f.debug_tuple("Command").field(c).finish(),
            Op::Query(q) => f.debug_tuple("Query").field(q).finish(),
        }
    }
}

/// One operation of the client history, as the client saw it. Times are simulated
/// nanoseconds since the run began, one clock for every client.
pub struct Recorded<S: StateMachine> {
    /// The client (numbered from 0).
    pub client: u64,
    /// For a command, its number among the client's commands (1, 2, ...; retries reuse it,
    /// and it keeps counting across the client's sessions); 0 for a query.
    pub seq: u64,
    /// What the client asked.
    pub op: Op<S>,
    /// When the client issued it.
    pub call: u64,
    /// When it was answered and the answer; `None` for a command the client gave up on
    /// without learning its outcome (it may or may not have taken effect). Queries that fail
    /// change nothing and are not recorded.
    pub ret: Option<(u64, S::Response)>,
}

impl<S: StateMachine<Command: Clone, Query: Clone>> Clone for Recorded<S> {
    fn clone(&self) -> Self {
        Recorded {
            client: self.client,
            seq: self.seq,
            op: self.op.clone(),
            call: self.call,
            ret: self.ret.clone(),
        }
    }
}

impl<S: StateMachine<Command: Debug, Query: Debug, Response: Debug>> Debug for Recorded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded")
            .field("client", &self.client)
            .field("seq", &self.seq)
            .field("op", &self.op)
            .field("call", &self.call)
            .field("ret", &self.ret)
            .finish()
    }
}
