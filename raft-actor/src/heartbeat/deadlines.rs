//! A set of per-group deadlines in one ordered structure: 10,000 groups cost one timer (the
//! heartbeat actor's interval), not 10,000.

use std::collections::{BTreeMap, BTreeSet};

use raft_core::GroupId;
use tokio::time::Instant;

/// At most one deadline per group, ordered by time then group (deterministic, I11).
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    queue: BTreeSet<(Instant, GroupId)>,
    /// Invariant: `at[g] == t` exactly when `(t, g)` is in `queue`.
    at: BTreeMap<GroupId, Instant>,
}

impl Deadlines {
    /// Sets (`Some`) or clears (`None`) the deadline of `group`.
    pub(super) fn set(&mut self, group: GroupId, when: Option<Instant>) {
        let old = match when {
            Some(t) => self.at.insert(group, t),
            None => self.at.remove(&group),
        };
        if old == when {
            return;
        }
        if let Some(t) = old {
            self.queue.remove(&(t, group));
        }
        if let Some(t) = when {
            self.queue.insert((t, group));
        }
    }

    /// Removes and returns every group whose deadline is at or before `now`, earliest first.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<GroupId> {
        let mut due = Vec::new();
        while let Some(&(t, group)) = self.queue.first() {
            if t > now {
                break;
            }
            self.queue.pop_first();
            self.at.remove(&group);
            due.push(group);
        }
        due
    }

    /// Number of groups with a deadline.
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn due_deadlines_come_out_in_order_and_moves_replace() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        let mut d = Deadlines::default();
        d.set(3, Some(ms(30)));
        d.set(1, Some(ms(10)));
        d.set(2, Some(ms(10)));
        d.set(3, Some(ms(5)));
        d.set(4, Some(ms(50)));
        d.set(4, None);
        assert_eq!(d.len(), 3);
        assert_eq!(d.take_due(ms(9)), vec![3]);
        assert_eq!(d.take_due(ms(10)), vec![1, 2]);
        assert!(d.take_due(ms(1000)).is_empty());
        assert_eq!(d.len(), 0);
    }
}
