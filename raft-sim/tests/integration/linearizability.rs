//! The linearizability checker against hand-written histories (each a known verdict) and
//! randomized ones: histories linearizable by construction, then broken by one changed output.

use std::collections::BTreeMap;
use std::time::Instant;

use raft_core::rng::SplitMix64;
use raft_sim::linearizability::*;

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
    let mut rec: HistoryRecorder<RegisterInput<i64>, RegisterOutput<i64>> = HistoryRecorder::new();
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
            history[i].ret.is_some() && matches!(history[i].input, CounterInput::Add(_)) == want_add
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
