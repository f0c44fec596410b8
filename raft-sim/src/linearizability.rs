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

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Debug};
use std::hash::Hash;

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
    /// Ten million steps: a few seconds at most in a debug build, far more than a history of a
    /// few thousand operations with moderate concurrency needs.
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

/// A read/write register holding a `V`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Register<V> {
    /// The value before any write.
    pub initial: V,
}

/// An operation on a [`Register`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput<V> {
    /// Replace the value; returns [`RegisterOutput::Ok`].
    Write(V),
    /// Read the value; returns [`RegisterOutput::Value`].
    Read,
}

/// What a [`Register`] operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput<V> {
    /// A write was applied.
    Ok,
    /// The value a read saw.
    Value(V),
}

impl<V: Clone + Eq + Hash + Debug> Model for Register<V> {
    type State = V;
    type Input = RegisterInput<V>;
    type Output = RegisterOutput<V>;

    fn init(&self) -> V {
        self.initial.clone()
    }

    fn step(&self, state: &V, input: &Self::Input, output: &Self::Output) -> Option<V> {
        match (input, output) {
            (RegisterInput::Write(v), RegisterOutput::Ok) => Some(v.clone()),
            (RegisterInput::Read, RegisterOutput::Value(v)) if v == state => Some(state.clone()),
            _ => None,
        }
    }

    fn step_unobserved(&self, state: &V, input: &Self::Input) -> Vec<V> {
        match input {
            RegisterInput::Write(v) => vec![v.clone()],
            RegisterInput::Read => vec![state.clone()],
        }
    }
}

/// A counter: `Add(n)` returns the value after adding, `Get` returns the value.
///
/// Arithmetic wraps, so every history has a defined meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// The value before any operation.
    pub initial: i64,
}

/// An operation on a [`Counter`]; both return the counter's value as an `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterInput {
    /// Add `n` and return the new value.
    Add(i64),
    /// Return the value.
    Get,
}

impl Model for Counter {
    type State = i64;
    type Input = CounterInput;
    type Output = i64;

    fn init(&self) -> i64 {
        self.initial
    }

    fn step(&self, state: &i64, input: &CounterInput, output: &i64) -> Option<i64> {
        let next = apply_counter(*state, input);
        (next == *output).then_some(next)
    }

    fn step_unobserved(&self, state: &i64, input: &CounterInput) -> Vec<i64> {
        vec![apply_counter(*state, input)]
    }
}

/// The counter's value after `input`.
fn apply_counter(state: i64, input: &CounterInput) -> i64 {
    match input {
        CounterInput::Add(n) => state.wrapping_add(*n),
        CounterInput::Get => state,
    }
}

/// A key-value store of independent registers, each key initially absent. Histories are
/// partitioned by key, so each key is checked on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv<K, V> {
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K, V> Kv<K, V> {
    /// The model.
    pub fn new() -> Self {
        Self {
            _types: std::marker::PhantomData,
        }
    }
}

impl<K, V> Default for Kv<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// An operation on a [`Kv`] store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput<K, V> {
    /// Set the key's value; returns [`KvOutput::Ok`].
    Put(K, V),
    /// Read the key; returns [`KvOutput::Value`].
    Get(K),
}

impl<K, V> KvInput<K, V> {
    /// The key the operation touches.
    pub fn key(&self) -> &K {
        match self {
            Self::Put(k, _) | Self::Get(k) => k,
        }
    }
}

/// What a [`Kv`] operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput<V> {
    /// A put was applied.
    Ok,
    /// The value a get saw (`None`: the key was absent).
    Value(Option<V>),
}

impl<K, V> Model for Kv<K, V>
where
    K: Clone + Ord + Hash + Debug,
    V: Clone + Eq + Hash + Debug,
{
    /// The whole map; under partitioning it never holds more than one key.
    type State = BTreeMap<K, V>;
    type Input = KvInput<K, V>;
    type Output = KvOutput<V>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State> {
        match (input, output) {
            (KvInput::Put(k, v), KvOutput::Ok) => {
                let mut next = state.clone();
                next.insert(k.clone(), v.clone());
                Some(next)
            }
            (KvInput::Get(k), KvOutput::Value(v)) if state.get(k) == v.as_ref() => {
                Some(state.clone())
            }
            _ => None,
        }
    }

    fn step_unobserved(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State> {
        let mut next = state.clone();
        if let KvInput::Put(k, v) = input {
            next.insert(k.clone(), v.clone());
        }
        vec![next]
    }

    fn partition(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        let mut by_key: BTreeMap<&K, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            by_key.entry(op.input.key()).or_default().push(i);
        }
        by_key.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    type RegOp = Operation<RegisterInput<i64>, RegisterOutput<i64>>;
    type CntOp = Operation<CounterInput, i64>;
    type KvOp = Operation<KvInput<u8, i64>, KvOutput<i64>>;

    fn w(client: u64, v: i64, call: u64, ret: Option<u64>) -> RegOp {
        Operation {
            client,
            input: RegisterInput::Write(v),
            call,
            ret: ret.map(|t| (t, RegisterOutput::Ok)),
        }
    }

    fn r(client: u64, v: i64, call: u64, ret: u64) -> RegOp {
        Operation {
            client,
            input: RegisterInput::Read,
            call,
            ret: Some((ret, RegisterOutput::Value(v))),
        }
    }

    fn add(client: u64, n: i64, call: u64, ret: u64, out: i64) -> CntOp {
        Operation {
            client,
            input: CounterInput::Add(n),
            call,
            ret: Some((ret, out)),
        }
    }

    fn get(client: u64, call: u64, ret: u64, out: i64) -> CntOp {
        Operation {
            client,
            input: CounterInput::Get,
            call,
            ret: Some((ret, out)),
        }
    }

    fn put(client: u64, k: u8, v: i64, call: u64, ret: u64) -> KvOp {
        Operation {
            client,
            input: KvInput::Put(k, v),
            call,
            ret: Some((ret, KvOutput::Ok)),
        }
    }

    fn kget(client: u64, k: u8, v: Option<i64>, call: u64, ret: u64) -> KvOp {
        Operation {
            client,
            input: KvInput::Get(k),
            call,
            ret: Some((ret, KvOutput::Value(v))),
        }
    }

    fn reg() -> Register<i64> {
        Register { initial: 0 }
    }

    fn check_all<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> CheckResult {
        check(model, history, CheckBudget::unlimited())
    }

    #[track_caller]
    fn assert_not_linearizable(result: &CheckResult) -> &str {
        match result {
            CheckResult::NotLinearizable { explanation } => explanation,
            other => panic!("expected NotLinearizable, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert!(check_all(&reg(), &[]).is_linearizable());
        assert!(check_all(&Kv::<u8, i64>::new(), &[]).is_linearizable());
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            r(1, 0, 1, 2),
            w(1, 5, 3, Some(4)),
            r(2, 5, 5, 6),
            w(2, 7, 7, Some(8)),
            r(1, 7, 9, 10),
        ];
        assert_eq!(check_all(&reg(), &h), CheckResult::Linearizable);
        // The same history with a read moved out of order is not.
        let mut bad = h.clone();
        bad[4] = r(1, 5, 9, 10);
        assert_not_linearizable(&check_all(&reg(), &bad));
    }

    #[test]
    fn initial_value_is_configurable() {
        let h = vec![r(1, 42, 1, 2)];
        assert!(check_all(&Register { initial: 42 }, &h).is_linearizable());
        assert_not_linearizable(&check_all(&reg(), &h));
    }

    #[test]
    fn overlapping_writes_may_take_effect_in_either_order() {
        // W(1) and W(2) overlap; a later read may see either, and a read overlapping both
        // may also see the initial value.
        for last in [1, 2] {
            let h = vec![
                w(1, 1, 1, Some(4)),
                w(2, 2, 2, Some(5)),
                r(3, 0, 3, 6),
                r(3, last, 7, 8),
                r(4, last, 9, 10),
            ];
            assert_eq!(check_all(&reg(), &h), CheckResult::Linearizable, "{last}");
        }
        // But two later reads cannot disagree once both writes have returned.
        let h = vec![
            w(1, 1, 1, Some(4)),
            w(2, 2, 2, Some(5)),
            r(3, 1, 7, 8),
            r(4, 2, 9, 10),
        ];
        assert_not_linearizable(&check_all(&reg(), &h));
    }

    #[test]
    fn read_overlapping_a_write_sees_old_or_new() {
        for seen in [0, 1] {
            let h = vec![w(1, 1, 1, Some(4)), r(2, seen, 2, 3)];
            assert!(check_all(&reg(), &h).is_linearizable());
        }
        // Neither a value nobody wrote.
        let h = vec![w(1, 1, 1, Some(4)), r(2, 9, 2, 3)];
        assert_not_linearizable(&check_all(&reg(), &h));
    }

    #[test]
    fn incomplete_write_that_took_effect() {
        let h = vec![w(1, 1, 1, None), r(2, 1, 2, 3), r(2, 1, 4, 5)];
        assert_eq!(check_all(&reg(), &h), CheckResult::Linearizable);
    }

    #[test]
    fn incomplete_write_that_did_not_take_effect() {
        let h = vec![w(1, 1, 1, None), r(2, 0, 2, 3), r(2, 0, 4, 5)];
        assert_eq!(check_all(&reg(), &h), CheckResult::Linearizable);
    }

    #[test]
    fn incomplete_write_takes_effect_at_most_once_and_not_before_its_call() {
        // Seen, then unseen: it cannot be undone.
        let h = vec![w(1, 1, 1, None), r(2, 1, 2, 3), r(2, 0, 4, 5)];
        assert_not_linearizable(&check_all(&reg(), &h));
        // Seen before it was invoked.
        let h = vec![r(2, 1, 1, 2), w(1, 1, 3, None)];
        assert_not_linearizable(&check_all(&reg(), &h));
    }

    #[test]
    fn incomplete_write_may_take_effect_late() {
        // Invoked early, seen only after a later completed write and a read of it.
        let h = vec![
            w(1, 1, 1, None),
            w(2, 2, 2, Some(3)),
            r(3, 2, 4, 5),
            r(3, 1, 6, 7),
        ];
        assert!(check_all(&reg(), &h).is_linearizable());
    }

    #[test]
    fn stale_read_after_completed_write_is_caught_and_named() {
        let h = vec![w(1, 1, 1, Some(2)), r(1, 1, 3, 4), r(7, 0, 5, 6)];
        let result = check_all(&reg(), &h);
        let explanation = assert_not_linearizable(&result);
        assert!(explanation.contains("operation #2"), "{explanation}");
        assert!(explanation.contains("client 7"), "{explanation}");
        assert!(explanation.contains("call 5, ret 6"), "{explanation}");
        assert!(explanation.contains("Value(0)"), "{explanation}");
        assert!(explanation.contains("[1]"), "{explanation}");
    }

    #[test]
    fn explanation_names_the_earliest_violation() {
        let h = vec![
            w(1, 1, 1, Some(2)),
            r(2, 0, 3, 4), // the first violation
            w(1, 2, 5, Some(6)),
            r(3, 1, 7, 8), // a second one
        ];
        let result = check_all(&reg(), &h);
        let explanation = assert_not_linearizable(&result);
        assert!(explanation.contains("operation #1 "), "{explanation}");
        assert!(explanation.contains("client 2"), "{explanation}");
    }

    #[test]
    fn reads_observing_concurrent_writes_in_opposite_orders() {
        // W(1) and W(2) run concurrently with everything; client 3 sees 1 then 2, client 4
        // sees 2 then 1.
        let h = vec![
            w(1, 1, 1, Some(20)),
            w(2, 2, 2, Some(21)),
            r(3, 1, 3, 4),
            r(3, 2, 5, 6),
            r(4, 2, 7, 8),
            r(4, 1, 9, 10),
        ];
        assert_not_linearizable(&check_all(&reg(), &h));
        // Both in the same order is fine.
        let ok = vec![
            w(1, 1, 1, Some(20)),
            w(2, 2, 2, Some(21)),
            r(3, 1, 3, 4),
            r(4, 1, 5, 6),
            r(3, 2, 7, 8),
            r(4, 2, 9, 10),
        ];
        assert!(check_all(&reg(), &ok).is_linearizable());
    }

    #[test]
    fn counter_concurrent_adds_either_order() {
        let c = Counter::default();
        let h = vec![add(1, 1, 1, 4, 2), add(2, 1, 2, 3, 1), get(3, 5, 6, 2)];
        assert!(check_all(&c, &h).is_linearizable());
        let c5 = Counter { initial: 5 };
        let h = vec![add(1, 2, 1, 2, 7), get(1, 3, 4, 7)];
        assert!(check_all(&c5, &h).is_linearizable());
    }

    #[test]
    fn counter_skipped_value() {
        let h = vec![add(1, 1, 1, 2, 1), add(1, 1, 3, 4, 3)];
        assert_not_linearizable(&check_all(&Counter::default(), &h));
    }

    #[test]
    fn counter_duplicated_value() {
        // Two concurrent increments both claim to have produced 1: one was applied twice or
        // one was lost.
        let h = vec![add(1, 1, 1, 4, 1), add(2, 1, 2, 3, 1)];
        assert_not_linearizable(&check_all(&Counter::default(), &h));
        // A retried increment that was applied twice shows as a skipped value.
        let h = vec![add(1, 1, 1, 2, 2), get(1, 3, 4, 2)];
        assert_not_linearizable(&check_all(&Counter::default(), &h));
    }

    #[test]
    fn counter_incomplete_add() {
        // An increment that timed out may or may not be counted.
        let lost = Operation {
            client: 2,
            input: CounterInput::Add(10),
            call: 2,
            ret: None,
        };
        for seen in [1, 11] {
            let h = vec![add(1, 1, 1, 3, 1), lost.clone(), get(1, 4, 5, seen)];
            assert!(check_all(&Counter::default(), &h).is_linearizable());
        }
        let h = vec![add(1, 1, 1, 3, 1), lost, get(1, 4, 5, 21)];
        assert_not_linearizable(&check_all(&Counter::default(), &h));
    }

    #[test]
    fn kv_get_of_never_written_value() {
        let h = vec![
            put(1, 1, 10, 1, 2),
            kget(2, 1, Some(10), 3, 4),
            kget(2, 1, Some(99), 5, 6),
        ];
        let result = check_all(&Kv::new(), &h);
        let explanation = assert_not_linearizable(&result);
        assert!(explanation.contains("operation #2"), "{explanation}");
        // A value written to another key is never-written for this one.
        let h = vec![put(1, 2, 10, 1, 2), kget(2, 1, Some(10), 3, 4)];
        assert_not_linearizable(&check_all(&Kv::new(), &h));
    }

    #[test]
    fn kv_partitions_by_key() {
        let h = vec![
            put(1, 1, 10, 1, 2),
            put(1, 2, 20, 3, 4),
            kget(2, 1, Some(10), 5, 6),
            kget(2, 3, None, 7, 8),
            kget(2, 2, Some(20), 9, 10),
        ];
        let model = Kv::new();
        assert_eq!(model.partition(&h), vec![vec![0, 2], vec![1, 4], vec![3]]);
        assert!(check_all(&model, &h).is_linearizable());
        // A stale read in key 2 only is caught, and named by its index in the whole history.
        let mut bad = h.clone();
        bad.push(kget(3, 2, None, 11, 12));
        let result = check_all(&model, &bad);
        let explanation = assert_not_linearizable(&result);
        assert!(explanation.contains("operation #5"), "{explanation}");
    }

    /// A model with partitioning switched off, to show what partitioning buys.
    struct Whole<M>(M);

    impl<M: Model> Model for Whole<M> {
        type State = M::State;
        type Input = M::Input;
        type Output = M::Output;

        fn init(&self) -> M::State {
            self.0.init()
        }

        fn step(&self, s: &M::State, i: &M::Input, o: &M::Output) -> Option<M::State> {
            self.0.step(s, i, o)
        }

        fn step_unobserved(&self, s: &M::State, i: &M::Input) -> Vec<M::State> {
            self.0.step_unobserved(s, i)
        }
    }

    #[test]
    fn kv_partitioning_makes_independent_keys_cheap() {
        // 8 keys, each with 8 fully concurrent puts, then a read of each key's *first* put:
        // the search must find, per key, an order that puts it last. Per key that is a few
        // hundred configurations; as one search it mixes the keys' orders.
        let mut h = Vec::new();
        let mut t = 0;
        for key in 0..8u8 {
            for v in 0..8 {
                t += 1;
                h.push(put(v as u64, key, v, t, 1000 + t));
            }
        }
        for key in 0..8u8 {
            let call = 2000 + 2 * key as u64;
            h.push(kget(99, key, Some(0), call, call + 1));
        }
        let budget = CheckBudget::steps(1_000_000);
        assert_eq!(check(&Kv::new(), &h, budget), CheckResult::Linearizable);
        let whole = check(&Whole(Kv::new()), &h, budget);
        assert!(matches!(whole, CheckResult::Unknown { .. }), "{whole:?}");
    }

    #[test]
    fn budget_yields_unknown_on_a_pathological_history() {
        // 24 fully concurrent writes of distinct values and a concurrent read of a value nobody
        // wrote: refuting it means trying every subset of writes.
        let mut h: Vec<RegOp> = (0..24)
            .map(|v| w(v as u64, v, v as u64, Some(100)))
            .collect();
        h.push(r(99, -1, 50, 101));
        let started = Instant::now();
        let result = check(&reg(), &h, CheckBudget::steps(200_000));
        assert!(
            matches!(result, CheckResult::Unknown { .. }),
            "expected Unknown, got {result:?}"
        );
        assert!(started.elapsed().as_secs() < 10);
        // With only three writes the same refutation fits the budget.
        let mut small: Vec<RegOp> = (0..3)
            .map(|v| w(v as u64, v, v as u64, Some(100)))
            .collect();
        small.push(r(99, -1, 50, 101));
        assert_not_linearizable(&check(&reg(), &small, CheckBudget::steps(200_000)));
    }

    #[test]
    fn recorder_timestamps_and_outcomes() {
        let mut rec: HistoryRecorder<RegisterInput<i64>, RegisterOutput<i64>> =
            HistoryRecorder::new();
        let a = rec.invoke(1, RegisterInput::Write(1));
        let b = rec.invoke(2, RegisterInput::Write(2));
        let c = rec.invoke(3, RegisterInput::Read);
        let d = rec.invoke(4, RegisterInput::Read);
        rec.complete(a, RegisterOutput::Ok);
        rec.fail(b);
        rec.timeout(c);
        let h = rec.history();
        assert_eq!(
            h,
            vec![
                w(1, 1, 1, Some(5)),
                Operation {
                    client: 3,
                    input: RegisterInput::Read,
                    call: 3,
                    ret: None
                },
                // Still pending: unreturned.
                Operation {
                    client: 4,
                    input: RegisterInput::Read,
                    call: 4,
                    ret: None
                },
            ]
        );
        rec.complete(d, RegisterOutput::Value(1));
        let h = rec.clone().into_history();
        assert_eq!(h[2].ret, Some((6, RegisterOutput::Value(1))));
        assert!(check_all(&reg(), &h).is_linearizable());
    }

    #[test]
    #[should_panic(expected = "already has an outcome")]
    fn recorder_rejects_a_second_outcome() {
        let mut rec: HistoryRecorder<CounterInput, i64> = HistoryRecorder::default();
        let a = rec.invoke(1, CounterInput::Get);
        rec.timeout(a);
        rec.complete(a, 0);
    }

    #[test]
    #[should_panic(expected = "malformed history")]
    fn malformed_history_is_rejected() {
        check_all(&Counter::default(), &[get(1, 5, 5, 0)]);
    }

    #[test]
    fn large_counter_history_checks_quickly() {
        let mut rng = SplitMix64::new(0xC0FFEE);
        let history = generate(&Counter::default(), &mut rng, 2_000, 8, false);
        assert_eq!(history.len(), 2_000);
        let started = Instant::now();
        let result = check(&Counter::default(), &history, CheckBudget::default());
        let elapsed = started.elapsed();
        eprintln!("2000-op counter history, 8 clients: checked in {elapsed:?}");
        assert_eq!(result, CheckResult::Linearizable);
        assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
    }

    // ----- randomized histories, linearizable by construction -----

    use raft_core::rng::SplitMix64;

    /// What the randomized test needs beyond [`Model`]: a way to run the object, and a way to
    /// break a history so that it is certainly not linearizable.
    trait Exec: Model
    where
        Self::Input: Clone,
        Self::Output: Clone,
    {
        /// A random input; `unique` gives values never used before.
        fn random_input(&self, rng: &mut SplitMix64, unique: &mut i64) -> Self::Input;
        /// Runs `input` on `state`.
        fn execute(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);
        /// Changes one output so that no linearization exists; returns what it did.
        fn break_history(
            &self,
            history: &mut [Operation<Self::Input, Self::Output>],
            rng: &mut SplitMix64,
        ) -> String;
    }

    fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize])
    }

    /// Register reads (index, key) that can be broken, for the register and the KV store
    /// alike: `value_of(op)` is `Some((key, value))` for a completed write.
    fn break_register_like<I, O>(
        history: &mut [Operation<I, O>],
        rng: &mut SplitMix64,
        write_of: impl Fn(&Operation<I, O>) -> Option<(u8, i64)>,
        read_key: impl Fn(&Operation<I, O>) -> Option<u8>,
        set_read: impl Fn(&mut Operation<I, O>, Option<i64>),
        initial: Option<i64>,
    ) -> String {
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| history[i].ret.is_some() && read_key(&history[i]).is_some())
            .collect();
        let Some(i) = pick(rng, &reads) else {
            return "no read to break".to_owned();
        };
        let key = read_key(&history[i]);
        let (call, ret) = (history[i].call, history[i].ret.as_ref().map_or(0, |r| r.0));
        let writes: Vec<(usize, i64)> = (0..history.len())
            .filter_map(|j| match write_of(&history[j]) {
                Some((k, v)) if Some(k) == key => Some((j, v)),
                _ => None,
            })
            .collect();
        let ret_of = |j: usize| history[j].ret.as_ref().map(|r| r.0);
        // A write invoked after the read returned.
        let future: Vec<i64> = writes
            .iter()
            .filter(|&&(j, _)| history[j].call > ret)
            .map(|&(_, v)| v)
            .collect();
        // A value overwritten by a completed write that itself returned before the read began:
        // the initial value, or a completed write that returned before the overwrite began.
        let overwrites: Vec<usize> = writes
            .iter()
            .filter(|&&(j, _)| ret_of(j).is_some_and(|t| t < call))
            .map(|&(j, _)| j)
            .collect();
        let mut stale: Vec<Option<i64>> = Vec::new();
        if !overwrites.is_empty() {
            stale.push(initial);
        }
        for &(j, v) in &writes {
            if let Some(t) = ret_of(j)
                && overwrites.iter().any(|&o| t < history[o].call)
            {
                stale.push(Some(v));
            }
        }
        let (what, value) = match rng.below(3) {
            0 if !future.is_empty() => ("future", pick(rng, &future).map(Some)),
            1 if !stale.is_empty() => ("stale", pick(rng, &stale)),
            _ => ("never written", Some(Some(-7))),
        };
        let value = value.unwrap_or(Some(-7));
        set_read(&mut history[i], value);
        format!("read #{i} now returns {what} value {value:?}")
    }

    impl Exec for Register<i64> {
        fn random_input(&self, rng: &mut SplitMix64, unique: &mut i64) -> RegisterInput<i64> {
            if rng.below(2) == 0 {
                *unique += 1;
                RegisterInput::Write(*unique)
            } else {
                RegisterInput::Read
            }
        }

        fn execute(&self, state: &i64, input: &RegisterInput<i64>) -> (i64, RegisterOutput<i64>) {
            match input {
                RegisterInput::Write(v) => (*v, RegisterOutput::Ok),
                RegisterInput::Read => (*state, RegisterOutput::Value(*state)),
            }
        }

        fn break_history(&self, history: &mut [RegOp], rng: &mut SplitMix64) -> String {
            break_register_like(
                history,
                rng,
                |op| match (&op.input, &op.ret) {
                    (RegisterInput::Write(v), _) => Some((0, *v)),
                    _ => None,
                },
                |op| matches!(op.input, RegisterInput::Read).then_some(0),
                |op, v| {
                    if let Some((_, out)) = &mut op.ret {
                        *out = RegisterOutput::Value(v.unwrap_or(self.initial));
                    }
                },
                Some(self.initial),
            )
        }
    }

    impl Exec for Counter {
        fn random_input(&self, rng: &mut SplitMix64, _: &mut i64) -> CounterInput {
            if rng.below(3) == 0 {
                CounterInput::Get
            } else {
                CounterInput::Add(1 + rng.below(5) as i64)
            }
        }

        fn execute(&self, state: &i64, input: &CounterInput) -> (i64, i64) {
            let next = match input {
                CounterInput::Add(n) => state + n,
                CounterInput::Get => *state,
            };
            (next, next)
        }

        fn break_history(&self, history: &mut [CntOp], rng: &mut SplitMix64) -> String {
            // Every Add is positive, so values only grow.
            let done = |i: usize, want_add: bool| {
                history[i].ret.is_some()
                    && matches!(history[i].input, CounterInput::Add(_)) == want_add
            };
            let adds: Vec<usize> = (0..history.len()).filter(|&i| done(i, true)).collect();
            let gets: Vec<usize> = (0..history.len()).filter(|&i| done(i, false)).collect();
            let out = |i: usize| history[i].ret.as_ref().map_or(0, |r| r.1);
            let total: i64 = history
                .iter()
                .map(|op| match op.input {
                    CounterInput::Add(n) => n,
                    CounterInput::Get => 0,
                })
                .sum();
            let (i, value, what) = match rng.below(3) {
                // Two increments returning the same value.
                0 if adds.len() >= 2 => {
                    let a = pick(rng, &adds).unwrap_or(0);
                    let others: Vec<usize> = adds.iter().copied().filter(|&b| b != a).collect();
                    let b = pick(rng, &others).unwrap_or(0);
                    (a, out(b), "duplicate of an add")
                }
                // A read below an increment that finished before it began.
                1 => {
                    let pairs: Vec<(usize, usize)> = gets
                        .iter()
                        .flat_map(|&g| adds.iter().map(move |&a| (g, a)))
                        .filter(|&(g, a)| {
                            history[a]
                                .ret
                                .as_ref()
                                .is_some_and(|r| r.0 < history[g].call)
                        })
                        .collect();
                    match pick(rng, &pairs) {
                        Some((g, a)) => (g, out(a) - 1, "stale get"),
                        None => match pick(rng, &adds) {
                            Some(a) => (a, total + 1, "unreachable"),
                            None => (gets[0], -1, "negative"),
                        },
                    }
                }
                _ => {
                    let all: Vec<usize> = adds.iter().chain(&gets).copied().collect();
                    let i = pick(rng, &all).unwrap_or(0);
                    (i, total + 1 + rng.below(3) as i64, "unreachable")
                }
            };
            if let Some((_, o)) = &mut history[i].ret {
                *o = value;
            }
            format!("op #{i} now returns {what} value {value}")
        }
    }

    impl Exec for Kv<u8, i64> {
        fn random_input(&self, rng: &mut SplitMix64, unique: &mut i64) -> KvInput<u8, i64> {
            let key = rng.below(4) as u8;
            if rng.below(2) == 0 {
                *unique += 1;
                KvInput::Put(key, *unique)
            } else {
                KvInput::Get(key)
            }
        }

        fn execute(
            &self,
            state: &BTreeMap<u8, i64>,
            input: &KvInput<u8, i64>,
        ) -> (BTreeMap<u8, i64>, KvOutput<i64>) {
            match input {
                KvInput::Put(k, v) => {
                    let mut next = state.clone();
                    next.insert(*k, *v);
                    (next, KvOutput::Ok)
                }
                KvInput::Get(k) => (state.clone(), KvOutput::Value(state.get(k).copied())),
            }
        }

        fn break_history(&self, history: &mut [KvOp], rng: &mut SplitMix64) -> String {
            break_register_like(
                history,
                rng,
                |op| match op.input {
                    KvInput::Put(k, v) => Some((k, v)),
                    KvInput::Get(_) => None,
                },
                |op| match op.input {
                    KvInput::Get(k) => Some(k),
                    KvInput::Put(..) => None,
                },
                |op, v| {
                    if let Some((_, out)) = &mut op.ret {
                        *out = KvOutput::Value(v);
                    }
                },
                None,
            )
        }
    }

    /// An operation a client has invoked and not yet seen the end of.
    struct InFlight<I, O> {
        id: OpId,
        input: I,
        /// Set once it has taken effect (its linearization point).
        output: Option<O>,
    }

    /// Runs `ops` operations from `clients` clients against one sequential copy of the model,
    /// interleaving invocations, effects and returns at random: linearizable by construction,
    /// each operation taking effect between its call and its return. With `faults`, a few
    /// operations time out (before or after taking effect; some of those that time out before
    /// take effect later), and some are rejected before taking effect.
    fn generate<M>(
        model: &M,
        rng: &mut SplitMix64,
        ops: usize,
        clients: usize,
        faults: bool,
    ) -> Vec<Operation<M::Input, M::Output>>
    where
        M: Exec,
        M::Input: Clone,
        M::Output: Clone,
    {
        let mut recorder = HistoryRecorder::new();
        let mut state = model.init();
        let mut in_flight: Vec<Option<InFlight<M::Input, M::Output>>> =
            (0..clients).map(|_| None).collect();
        // Timed-out operations that will still take effect.
        let mut zombies: Vec<M::Input> = Vec::new();
        let mut invoked = 0;
        let mut timeouts = 0;
        let mut unique = 0;
        while invoked < ops || in_flight.iter().any(Option::is_some) || !zombies.is_empty() {
            if !zombies.is_empty() && rng.below(8) == 0 {
                let input = zombies.remove(0);
                state = model.execute(&state, &input).0;
                continue;
            }
            let client = rng.below(clients as u64) as usize;
            let may_time_out = faults && timeouts < 3 && rng.below(40) == 0;
            match in_flight[client].take() {
                None if invoked < ops => {
                    let input = model.random_input(rng, &mut unique);
                    let id = recorder.invoke(client as u64, input.clone());
                    invoked += 1;
                    in_flight[client] = Some(InFlight {
                        id,
                        input,
                        output: None,
                    });
                }
                None => {}
                Some(mut op) if op.output.is_none() => {
                    if may_time_out {
                        timeouts += 1;
                        recorder.timeout(op.id);
                        if rng.below(2) == 0 {
                            zombies.push(op.input);
                        }
                    } else if faults && rng.below(50) == 0 {
                        recorder.fail(op.id);
                    } else {
                        let (next, output) = model.execute(&state, &op.input);
                        state = next;
                        op.output = Some(output);
                        in_flight[client] = Some(op);
                    }
                }
                Some(op) => {
                    if may_time_out {
                        timeouts += 1;
                        recorder.timeout(op.id);
                    } else if let Some(output) = op.output {
                        recorder.complete(op.id, output);
                    }
                }
            }
        }
        recorder.into_history()
    }

    fn randomized<M>(model: &M, seed: u64, histories: usize) -> usize
    where
        M: Exec,
        M::Input: Clone,
        M::Output: Clone,
    {
        let mut rng = SplitMix64::new(seed);
        let mut ops_checked = 0;
        for round in 0..histories {
            let ops = 50 + rng.below(151) as usize;
            let clients = 2 + rng.below(5) as usize;
            let mut history = generate(model, &mut rng, ops, clients, true);
            ops_checked += history.len();
            let budget = CheckBudget::steps(5_000_000);
            let result = check(model, &history, budget);
            assert_eq!(
                result,
                CheckResult::Linearizable,
                "seed {seed:#x} round {round}: {ops} ops, {clients} clients"
            );
            let mutation = model.break_history(&mut history, &mut rng);
            let result = check(model, &history, budget);
            assert!(
                matches!(result, CheckResult::NotLinearizable { .. }),
                "seed {seed:#x} round {round}: after {mutation}: {result:?}"
            );
        }
        ops_checked
    }

    #[test]
    fn randomized_register_histories() {
        let ops = randomized(&Register { initial: 0 }, 0x5EED_0001, 80);
        eprintln!("register: 80 histories, {ops} operations");
    }

    #[test]
    fn randomized_counter_histories() {
        let ops = randomized(&Counter::default(), 0x5EED_0002, 80);
        eprintln!("counter: 80 histories, {ops} operations");
    }

    #[test]
    fn randomized_kv_histories() {
        let ops = randomized(&Kv::new(), 0x5EED_0003, 80);
        eprintln!("kv: 80 histories, {ops} operations");
    }
}
