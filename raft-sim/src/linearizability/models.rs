//! Sequential models for [`super::check`]: a read/write [`Register`], a [`Counter`] and a
//! key-value store ([`Kv`]) partitioned by key. A model of your own implements
//! [`Model`] the same way.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use super::{Model, Operation};

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
