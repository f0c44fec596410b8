//! A counter for the documentation's examples (hidden from the docs).

use std::io::{self, Read, Write};

use raft_actor::{SnapshotMeta, StateMachine};
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
    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.0.to_le_bytes())
    }
    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut bytes = [0u8; 8];
        data.read_exact(&mut bytes)?;
        self.0 = i64::from_le_bytes(bytes);
        Ok(())
    }
}
