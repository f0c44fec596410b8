//! The replicated state: one `i64` counter, its commands and its query.
//!
//! Exactly-once is not this file's concern: the framework's session table (keyed by the
//! client's `RequestId`, see `raft_actor::Node::propose_with_id`) drops retried commands before
//! they reach [`Counter::apply`], and travels inside snapshots.

use std::io::{self, Read, Write};

use raft_actor::{SnapshotMeta, StateMachine};
use serde::{Deserialize, Serialize};

/// The Raft group every counter server hosts. One counter, one group.
pub const GROUP: raft_core::GroupId = 1;

/// A state-changing command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add `n` (may be negative). Arithmetic wraps at the `i64` bounds instead of
    /// overflowing, so no command can make a replica panic.
    Incr(i64),
}

/// A read-only query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// The current value.
    Get,
}

/// The counter. Both commands and queries answer with the value (after the command).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    value: i64,
}

impl Counter {
    /// The current value.
    pub fn value(&self) -> i64 {
        self.value
    }
}

impl StateMachine for Counter {
    type Command = Command;
    type Query = Query;
    type Response = i64;

    fn apply(&mut self, _index: u64, command: Command) -> i64 {
        match command {
            Command::Incr(n) => self.value = self.value.wrapping_add(n),
        }
        self.value
    }

    fn query(&self, query: Query) -> i64 {
        match query {
            Query::Get => self.value,
        }
    }

    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.value.to_be_bytes())
    }

    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut bytes = [0u8; 8];
        data.read_exact(&mut bytes)?;
        self.value = i64::from_be_bytes(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_query_snapshot_restore() {
        let mut c = Counter::default();
        assert_eq!(c.apply(1, Command::Incr(5)), 5);
        assert_eq!(c.apply(2, Command::Incr(-2)), 3);
        assert_eq!(c.query(Query::Get), 3);
        let mut snap = Vec::new();
        c.snapshot(&mut snap).unwrap();
        let mut d = Counter::default();
        let meta = SnapshotMeta::default();
        d.restore(&meta, &mut &snap[..]).unwrap();
        assert_eq!(d, c);
        assert!(d.restore(&meta, &mut &[1u8, 2, 3][..]).is_err());
        assert_eq!(d, c, "a failed restore leaves the state alone");
    }

    #[test]
    fn wraps_instead_of_panicking() {
        let mut c = Counter::default();
        c.apply(1, Command::Incr(i64::MAX));
        assert_eq!(c.apply(2, Command::Incr(1)), i64::MIN);
    }
}
