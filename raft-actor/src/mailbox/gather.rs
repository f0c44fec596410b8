//! When an actor that just took one item from its queue should yield once before taking the
//! rest as a batch.
//!
//! tokio runs a task woken by the running task next (its "LIFO slot"). A partition woken by
//! the first of many ready clients would otherwise take that one request alone, then the
//! next, and so on: batches of one, each with its own storage write and replicator signal.
//! Yielding once puts the actor behind the clients already runnable, so their requests join
//! the batch. With a single client there is nothing to gather and the yield only costs a trip
//! through the scheduler, so the actor yields when the last batch held more than one item,
//! and otherwise only every [`PROBE`]th time, to notice load when it comes. The yield itself
//! is [`raft_net::sched::yield_to_runnable`].

/// Without recent batching, yield on one batch in this many.
const PROBE: u32 = 16;

/// Per-actor batching memory.
#[derive(Debug, Default)]
pub(crate) struct Gather {
    last: usize,
    calls: u32,
}

impl Gather {
    /// Whether to yield before taking a batch, given whether the queue is empty behind the
    /// item just taken.
    pub(crate) fn should_yield(&mut self, queue_empty: bool) -> bool {
        if !queue_empty {
            return false;
        }
        self.calls = self.calls.wrapping_add(1);
        self.last > 1 || self.calls % PROBE == 0
    }

    /// Records how many items the batch took.
    pub(crate) fn taken(&mut self, n: usize) {
        self.last = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_after_a_real_batch_and_probes_otherwise() {
        let mut g = Gather::default();
        // Lone requests: only every PROBE-th call yields.
        let yields = (0..PROBE * 4)
            .filter(|_| {
                let y = g.should_yield(true);
                g.taken(1);
                y
            })
            .count();
        assert_eq!(yields, 4);
        // A batch of several: the next call yields.
        g.taken(7);
        assert!(g.should_yield(true));
        // Items already queued behind: no need to yield.
        assert!(!g.should_yield(false));
    }
}
