//! Linearizability checking of client histories: a Wing–Gong / Lowe search with memoization,
//! the approach Porcupine takes.
//!
//! A *history* is what clients saw: for every operation, who issued it, its input, when it was
//! invoked and, if it returned, when and with what output ([`Operation`]). The history is
//! *linearizable* when every operation can be given a single instant between its invocation and
//! its return at which it takes effect, such that running the operations one at a time in the
//! order of those instants, on a sequential [`Model`] of the service, produces exactly the
//! outputs the clients saw. That is the correctness condition a Raft-replicated state machine
//! promises its clients (Raft paper, section 8).
//!
//! # The search
//!
//! Wing and Gong's algorithm builds a linearization one operation at a time and backtracks when
//! it is stuck. Lowe's refinement ("just-in-time linearization") keeps the history as a list of
//! call and return events sorted by time and only ever considers, as the next operation to
//! linearize, an operation whose *call* comes before the first *return* still in the list: any
//! later operation was invoked after some pending operation had already returned, so it cannot
//! go first. Linearizing an operation steps the model and removes both of its events from the
//! list; reaching a return event means that operation's deadline has passed without it being
//! placed, so the search backtracks to its last choice.
//!
//! Two different orders often reach the same point: the same *set* of operations linearized
//! and the same model state. Everything after that point is then identical, so the search
//! remembers every `(set, state)` pair it has reached (the set is a bitset) and never expands
//! one twice. This memoization is what makes the check practical: with moderate concurrency
//! the number of distinct pairs stays close to the length of the history.
//!
//! A [`Model`] may also split a history into independent parts (P-compositionality: a key-value
//! store is linearizable exactly when each key's sub-history is). Each part is checked on its
//! own, which turns one exponential search into many small ones; [`Kv`] partitions by key.
//!
//! # Operations that never returned
//!
//! A client that crashed or timed out does not know whether its request took effect: Raft may
//! have committed it, or it may have been lost with a deposed leader, or it may still be in
//! flight and commit much later. Such an operation is recorded with `ret: None` and the checker
//! treats it as an operation whose return lies after the end of the history:
//! - it may take effect at any point after its call (so it is a candidate from its call
//!   onwards, and never forces a backtrack: it has no return event), and
//! - it may never take effect at all (the search succeeds once every *completed* operation is
//!   placed, whatever became of the unreturned ones).
//!
//! Its output is unknown, so the model steps it with [`Model::step_unobserved`]. An unreturned
//! operation that would not change the state (a read) is skipped outright: placing it can only
//! shrink what may follow, never enable anything.
//!
//! An operation known *not* to have taken effect (the service answered with a definite
//! rejection) must not appear in the history at all: [`HistoryRecorder::fail`] drops it.
//!
//! # Bounds
//!
//! Checking linearizability is NP-complete in general, so every check runs under a
//! [`CheckBudget`] of search steps and answers [`CheckResult::Unknown`] rather than running for
//! ever. The budget counts steps, not wall time, so the verdict on a history is the same on
//! every machine.

use std::collections::HashSet;
use std::fmt::{self, Debug};
use std::hash::Hash;

pub mod models;

pub use models::{
    Counter, CounterInput, Kv, KvInput, KvOutput, Register, RegisterInput, RegisterOutput,
};

/// One client operation as the client saw it.
///
/// Timestamps are logical: only their order matters. Operation `a` precedes operation `b` (so
/// `a` must be linearized first) exactly when `a.ret < b.call`; equal timestamps mean the two
/// overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that issued the operation (used in explanations only: the checker does not
    /// assume that a client's operations are sequential, the timestamps say so).
    pub client: u64,
    /// What the client asked for.
    pub input: I,
    /// When the client invoked the operation.
    pub call: u64,
    /// When the operation returned and what it returned, or `None` if the client never learned
    /// the outcome (crash, timeout): it may have taken effect at any time after `call`, or never.
    /// Invariant: `call < ret.0`.
    pub ret: Option<(u64, O)>,
}

impl<I, O> Operation<I, O> {
    /// Whether the client saw this operation return.
    pub fn is_complete(&self) -> bool {
        self.ret.is_some()
    }
}

/// A sequential specification of the service under test.
///
/// Models must be deterministic in the sense that matters here: `step` decides from the state,
/// the input and the observed output alone whether the output was legal.
pub trait Model {
    /// The state of the sequential object. Hashed and compared to memoize the search, so keep
    /// it small (a partitioned model only ever holds one partition's state).
    type State: Clone + Eq + Hash + Debug;
    /// An operation's input.
    type Input: Debug;
    /// An operation's output.
    type Output: PartialEq + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`: `Some(next)` if returning `output` is legal in `state`, else
    /// `None`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Applies an operation whose output nobody saw (it never returned): every state it could
    /// lead to from `state`. A deterministic object returns exactly one state; an empty vector
    /// means the operation cannot take effect in `state`.
    fn step_unobserved(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State>;

    /// Splits a history into independent sub-histories, as lists of indices into `history`, so
    /// that the whole is linearizable exactly when every part is (P-compositionality). The
    /// default keeps the history whole. Every index must appear in exactly one part.
    fn partition(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        vec![(0..history.len()).collect()]
    }
}

/// How much work one [`check`] may do before it gives up with [`CheckResult::Unknown`].
///
/// One step is one event visited by the search (about one model step). The memo table grows by
/// at most one entry per step, so the budget bounds memory as well as time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckBudget {
    /// The maximum number of search steps over all partitions.
    pub max_steps: u64,
}

impl CheckBudget {
    /// A budget of `max_steps` search steps.
    pub fn steps(max_steps: u64) -> Self {
        Self { max_steps }
    }

    /// No limit: the check runs until it has an answer (tests of small histories only).
    pub fn unlimited() -> Self {
        Self {
            max_steps: u64::MAX,
        }
    }
}

impl Default for CheckBudget {
    /// Ten million steps: far more than a history of a few thousand operations with moderate
    /// concurrency needs, and still a bound on the time and memory of a check that cannot
    /// decide.
    fn default() -> Self {
        Self::steps(10_000_000)
    }
}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Some order of the operations is legal for the model.
    Linearizable,
    /// No order is.
    NotLinearizable {
        /// Names the earliest operation that no linearization can place (its index in the
        /// history, client, input, output, call and return) and the model states it could have
        /// seen.
        explanation: String,
    },
    /// The budget ran out before the search had an answer.
    Unknown {
        /// How far the search got.
        reason: String,
    },
}

impl CheckResult {
    /// Whether the verdict is [`CheckResult::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Self::Linearizable)
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Linearizable => f.write_str("linearizable"),
            Self::NotLinearizable { explanation } => write!(f, "not linearizable: {explanation}"),
            Self::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// Checks whether `history` is linearizable with respect to `model`.
///
/// Partitions the history with [`Model::partition`], checks every part (sharing one budget), and
/// reports the failing operation that returned earliest if any part fails.
///
/// # Panics
///
/// If an operation returns before it is called (`ret.0 <= call`), or if the model's partition
/// names an index outside the history.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: CheckBudget,
) -> CheckResult {
    for (i, op) in history.iter().enumerate() {
        if let Some((ret, _)) = &op.ret {
            assert!(
                op.call < *ret,
                "malformed history: operation #{i} returns at {ret}, not after its call at {}",
                op.call
            );
        }
    }
    let parts = model.partition(history);
    let mut remaining = budget.max_steps;
    let mut earliest_failure: Option<Frontier<M::State>> = None;
    for (checked, part) in parts.iter().enumerate() {
        match Search::new(model, history, part).run(&mut remaining) {
            Outcome::Linearizable => {}
            Outcome::Stuck(frontier) => {
                let ret = |f: &Frontier<M::State>| history[f.op].ret.as_ref().map(|r| r.0);
                if earliest_failure
                    .as_ref()
                    .is_none_or(|best| ret(&frontier) < ret(best))
                {
                    earliest_failure = Some(frontier);
                }
            }
            Outcome::OutOfBudget { linearized } => {
                if earliest_failure.is_some() {
                    break;
                }
                return CheckResult::Unknown {
                    reason: format!(
                        "step budget of {} exhausted in partition {} of {} ({} operations, \
                         {linearized} linearized when it stopped); {checked} partitions \
                         checked before it",
                        budget.max_steps,
                        checked + 1,
                        parts.len(),
                        part.len(),
                    ),
                };
            }
        }
    }
    match earliest_failure {
        None => CheckResult::Linearizable,
        Some(frontier) => CheckResult::NotLinearizable {
            explanation: explain(history, &frontier),
        },
    }
}

/// Describes the operation the search could not get past.
fn explain<I: Debug, O: Debug, S: Debug>(history: &[Operation<I, O>], f: &Frontier<S>) -> String {
    let op = &history[f.op];
    let (ret, output) = match &op.ret {
        Some((ret, output)) => (ret.to_string(), format!("{output:?}")),
        None => ("none".to_owned(), "nothing".to_owned()),
    };
    format!(
        "operation #{} (client {}, {:?}, call {}, ret {ret}) returned {output}, and no \
         linearization can place it: with {} operations placed before it in every legal \
         order, the model was in one of the states {:?} (at most {} shown)",
        f.op, op.client, op.input, op.call, f.placed, f.states, MAX_FRONTIER_STATES,
    )
}

/// How many distinct model states an explanation lists.
const MAX_FRONTIER_STATES: usize = 3;

/// The point past which the search could not get: the return event latest in time at which it
/// ever had to backtrack.
struct Frontier<S> {
    /// Index (in the whole history) of the operation whose return blocked the search.
    op: usize,
    /// Position of that return event in the sorted event list.
    position: usize,
    /// How many operations were linearized when the search first got there.
    placed: usize,
    /// Distinct states the model was in there (at most [`MAX_FRONTIER_STATES`]).
    states: Vec<S>,
}

/// The end of one partition's search.
enum Outcome<S> {
    Linearizable,
    Stuck(Frontier<S>),
    OutOfBudget { linearized: usize },
}

/// A fixed-size set of operation indices, hashed into the memo table.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// "No entry": the end of the event list.
const NIL: usize = usize::MAX;

/// One event in the time-sorted list.
#[derive(Clone, Copy)]
struct Event {
    /// Local index of the operation (into `Search::ops`).
    op: usize,
    is_call: bool,
}

/// A choice the search made and may undo.
struct Choice<S> {
    /// Local index of the linearized operation.
    op: usize,
    /// Which of its possible next states was taken (several only for unreturned operations of
    /// a non-deterministic model).
    alternative: usize,
    /// The model state before it.
    before: S,
}

/// The search over one partition.
///
/// The event list is a doubly linked list over `events` (sorted by time, calls before returns
/// at equal times so that touching intervals overlap) with a head sentinel at index
/// `events.len()`. Linearizing an operation unlinks its events; backtracking relinks them in
/// reverse order, which restores the list exactly because choices are undone last-in first-out.
struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    /// Local operation index → index in `history`.
    ops: &'a [usize],
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Local operation index → position of its call event in `events`.
    call_at: Vec<usize>,
    /// Local operation index → position of its return event, if it returned.
    ret_at: Vec<Option<usize>>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, history: &'a [Operation<M::Input, M::Output>], ops: &'a [usize]) -> Self {
        // (time, 0 for a call or 1 for a return, local op): calls sort before returns.
        let mut keyed = Vec::with_capacity(ops.len() * 2);
        for (local, &global) in ops.iter().enumerate() {
            let op = &history[global];
            keyed.push((op.call, 0u8, local));
            if let Some((ret, _)) = &op.ret {
                keyed.push((*ret, 1u8, local));
            }
        }
        keyed.sort_unstable();
        let events: Vec<Event> = keyed
            .iter()
            .map(|&(_, kind, op)| Event {
                op,
                is_call: kind == 0,
            })
            .collect();
        let mut call_at = vec![0; ops.len()];
        let mut ret_at = vec![None; ops.len()];
        for (position, event) in events.iter().enumerate() {
            if event.is_call {
                call_at[event.op] = position;
            } else {
                ret_at[event.op] = Some(position);
            }
        }
        let head = events.len();
        // Position p links to p + 1; the head sentinel links to position 0.
        let mut next: Vec<usize> = (1..=events.len()).collect();
        next.push(if events.is_empty() { NIL } else { 0 });
        if let Some(last) = events.len().checked_sub(1) {
            next[last] = NIL;
        }
        let mut prev: Vec<usize> = (0..events.len())
            .map(|p| if p == 0 { head } else { p - 1 })
            .collect();
        prev.push(NIL);
        Self {
            model,
            history,
            ops,
            events,
            next,
            prev,
            call_at,
            ret_at,
        }
    }

    fn head(&self) -> usize {
        self.events.len()
    }

    fn unlink(&mut self, p: usize) {
        let (before, after) = (self.prev[p], self.next[p]);
        self.next[before] = after;
        if after != NIL {
            self.prev[after] = before;
        }
    }

    fn relink(&mut self, p: usize) {
        let (before, after) = (self.prev[p], self.next[p]);
        self.next[before] = p;
        if after != NIL {
            self.prev[after] = p;
        }
    }

    /// Removes an operation's events from the list (it has been linearized).
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_at[op]);
        if let Some(r) = self.ret_at[op] {
            self.unlink(r);
        }
    }

    /// Undoes [`Self::lift`]; must be called in the reverse order of the lifts.
    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.ret_at[op] {
            self.relink(r);
        }
        self.relink(self.call_at[op]);
    }

    /// The states `op` can lead to from `state`.
    fn successors(&self, state: &M::State, op: usize) -> Vec<M::State> {
        let operation = &self.history[self.ops[op]];
        match &operation.ret {
            Some((_, output)) => self
                .model
                .step(state, &operation.input, output)
                .into_iter()
                .collect(),
            // A transition that leaves the state as it was is skipped: from (set + op, state)
            // the search can reach nothing that it cannot reach from (set, state), because an
            // unreturned operation has no return event to unblock.
            None => {
                let mut next = self.model.step_unobserved(state, &operation.input);
                next.retain(|s| s != state);
                next
            }
        }
    }

    fn run(mut self, remaining: &mut u64) -> Outcome<M::State> {
        let n = self.ops.len();
        let mut returns_left = self.ret_at.iter().flatten().count();
        let mut state = self.model.init();
        let mut linearized = Bitset::new(n);
        let mut seen: HashSet<(Bitset, M::State)> = HashSet::new();
        let mut choices: Vec<Choice<M::State>> = Vec::new();
        let mut frontier: Option<Frontier<M::State>> = None;
        let mut cursor = self.next[self.head()];
        let mut first_alternative = 0;
        'search: loop {
            if returns_left == 0 {
                return Outcome::Linearizable;
            }
            if *remaining == 0 {
                return Outcome::OutOfBudget {
                    linearized: choices.len(),
                };
            }
            *remaining -= 1;
            // While a return event is left, the walk meets one before the end of the list.
            let event = (cursor != NIL).then(|| self.events[cursor]);
            match event {
                Some(Event { op, is_call: true }) => {
                    let alternatives = self.successors(&state, op);
                    for (alternative, after) in alternatives.into_iter().enumerate() {
                        if alternative < first_alternative {
                            continue;
                        }
                        linearized.set(op);
                        if seen.insert((linearized.clone(), after.clone())) {
                            let before = std::mem::replace(&mut state, after);
                            choices.push(Choice {
                                op,
                                alternative,
                                before,
                            });
                            self.lift(op);
                            if self.ret_at[op].is_some() {
                                returns_left -= 1;
                            }
                            cursor = self.next[self.head()];
                            first_alternative = 0;
                            continue 'search;
                        }
                        linearized.clear(op);
                    }
                    cursor = self.next[cursor];
                    first_alternative = 0;
                }
                blocked => {
                    // The deadline of a pending operation: nothing later may go first.
                    if let Some(Event { op, .. }) = blocked {
                        self.note_frontier(&mut frontier, cursor, op, choices.len(), &state);
                    }
                    let Some(choice) = choices.pop() else {
                        return match frontier {
                            Some(frontier) => Outcome::Stuck(frontier),
                            // Unreachable: the first event is a call or a return, and either
                            // leads here only through a return.
                            None => Outcome::Linearizable,
                        };
                    };
                    state = choice.before;
                    linearized.clear(choice.op);
                    self.unlift(choice.op);
                    if self.ret_at[choice.op].is_some() {
                        returns_left += 1;
                    }
                    cursor = self.call_at[choice.op];
                    first_alternative = choice.alternative + 1;
                }
            }
        }
    }

    /// Records that the search was blocked at the return event at `position`.
    fn note_frontier(
        &self,
        frontier: &mut Option<Frontier<M::State>>,
        position: usize,
        op: usize,
        placed: usize,
        state: &M::State,
    ) {
        match frontier {
            Some(f) if f.position > position => {}
            Some(f) if f.position == position => {
                if f.states.len() < MAX_FRONTIER_STATES && !f.states.contains(state) {
                    f.states.push(state.clone());
                }
            }
            _ => {
                *frontier = Some(Frontier {
                    op: self.ops[op],
                    position,
                    placed,
                    states: vec![state.clone()],
                });
            }
        }
    }
}

/// Identifies an operation in a [`HistoryRecorder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(usize);

/// What became of a recorded operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Invoked, no outcome recorded yet (kept as unreturned if the history is taken now).
    Pending,
    /// Returned, or timed out with an unknown outcome.
    Resolved,
    /// Definitely did not take effect: left out of the history.
    Failed,
}

/// Builds a history while clients run, handing out logical timestamps from one counter so that
/// every event gets a distinct, increasing time.
///
/// It is a plain value owned by whoever drives the clients (the simulation's single-threaded
/// executor), not a shared object.
#[derive(Clone, Debug)]
pub struct HistoryRecorder<I, O> {
    clock: u64,
    ops: Vec<(Operation<I, O>, Status)>,
}

impl<I, O> Default for HistoryRecorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> HistoryRecorder<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self {
            clock: 0,
            ops: Vec::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn pending(&mut self, id: OpId, what: &str) -> &mut Operation<I, O> {
        let (op, status) = &mut self.ops[id.0];
        assert!(
            *status == Status::Pending,
            "{what} of operation {id:?}, which already has an outcome ({status:?})"
        );
        op
    }

    /// Records that `client` invoked an operation now.
    pub fn invoke(&mut self, client: u64, input: I) -> OpId {
        let call = self.tick();
        self.ops.push((
            Operation {
                client,
                input,
                call,
                ret: None,
            },
            Status::Pending,
        ));
        OpId(self.ops.len() - 1)
    }

    /// Records that the operation returned `output` now.
    ///
    /// # Panics
    ///
    /// If the operation already has an outcome.
    pub fn complete(&mut self, id: OpId, output: O) {
        let ret = self.tick();
        self.pending(id, "completion").ret = Some((ret, output));
        self.ops[id.0].1 = Status::Resolved;
    }

    /// Records that the operation definitely did not take effect (for example the leader
    /// rejected it before appending it): it is left out of the history, as if never invoked.
    ///
    /// # Panics
    ///
    /// If the operation already has an outcome.
    pub fn fail(&mut self, id: OpId) {
        self.pending(id, "failure");
        self.ops[id.0].1 = Status::Failed;
    }

    /// Records that the client gave up on the operation without learning its outcome: it stays
    /// in the history as unreturned, and may or may not have taken effect.
    ///
    /// # Panics
    ///
    /// If the operation already has an outcome.
    pub fn timeout(&mut self, id: OpId) {
        self.pending(id, "timeout");
        self.ops[id.0].1 = Status::Resolved;
    }

    /// The history so far, in invocation order. Operations still pending appear unreturned.
    pub fn history(&self) -> Vec<Operation<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.ops
            .iter()
            .filter(|(_, status)| *status != Status::Failed)
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// Like [`Self::history`], without cloning.
    pub fn into_history(self) -> Vec<Operation<I, O>> {
        self.ops
            .into_iter()
            .filter(|(_, status)| *status != Status::Failed)
            .map(|(op, _)| op)
            .collect()
    }
}
