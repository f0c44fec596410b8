//! The replicated state: one `i64` counter, its commands and its query.
//!
//! Exactly-once is not this file's concern: the framework's session table (keyed by the
//! client's `RequestId`, see `raft_actor::Node::propose_with_id`) drops retried commands before
//! they reach [`Counter::apply`], and travels inside snapshots.

use raft_actor::StateMachine;
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

    fn snapshot(&self) -> Vec<u8> {
        self.value.to_be_bytes().to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| {
            format!(
                "counter snapshot must be 8 bytes, got {} bytes",
                snapshot.len()
            )
        })?;
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
        let snap = c.snapshot();
        let mut d = Counter::default();
        d.restore(&snap).unwrap();
        assert_eq!(d, c);
        assert!(d.restore(&[1, 2, 3]).is_err());
        assert_eq!(d, c, "a failed restore leaves the state alone");
    }

    #[test]
    fn wraps_instead_of_panicking() {
        let mut c = Counter::default();
        c.apply(1, Command::Incr(i64::MAX));
        assert_eq!(c.apply(2, Command::Incr(1)), i64::MIN);
    }
}
