//! A counter for the documentation's examples (hidden from the docs).

use raft_actor::StateMachine;
use serde::{Deserialize, Serialize};

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(i64);

/// Adds to the counter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Add(pub i64);

impl StateMachine for Counter {
    type Command = Add;
    type Query = ();
    type Response = i64;
    fn apply(&mut self, _index: u64, Add(n): Add) -> i64 {
        self.0 = self.0.wrapping_add(n);
        self.0
    }
    fn query(&self, _: ()) -> i64 {
        self.0
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = i64::from_le_bytes(bytes.try_into().map_err(|_| "not an i64")?);
        Ok(())
    }
}
