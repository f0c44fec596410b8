//! A position cell: a `u64` that only the newest value of matters (a durable sequence number,
//! an applied index) and a sticky error, published with an atomic store and a ring of the
//! receiving actor's bell.
//!
//! # Contract
//!
//! - One sender, one receiver. [`PositionTx::publish`] replaces the value (`Release`);
//!   [`PositionTx::fail`] records an error, of which the first stays for good; both ring the
//!   bell after the store, so a receiver that waits on its bell after finding no change is
//!   woken for the next one.
//! - [`PositionRx::has_changed`] reports a value other than the last taken, or an error not yet
//!   taken; [`PositionRx::take`] returns the newest value and the error. Values in between may
//!   be skipped, but none is seen out of order.
//! - Dropping the sender closes the cell and then rings. Everything published before the drop
//!   is seen before the close: `has_changed` loads the closed flag *before* the value and the
//!   error, so when it reports `Closed` it has looked at them after the sender's last store.
//!   (It used to load the flag after them: a final publish and drop between its loads read as
//!   `Closed` with the last value never seen. The loom test
//!   `the_last_value_before_the_drop_is_seen` finds that interleaving.)

use std::sync::Arc;

use super::bell::{Bell, RingOnDrop};
use super::sync::{self, AtomicBool, AtomicU64, OnceLock, Ordering};

/// The sending half of a [`position`] cell: a `u64` that only the newest value of matters (a
/// durable sequence number, an applied index) and a sticky error, ringing the receiving
/// actor's bell on every update.
///
/// It replaces a `tokio::sync::watch` channel there: a watch send wakes its waiters through
/// eight internal notifiers, each behind a lock, even when nobody waits, and the actor never
/// awaits the channel (it waits on its bell). Here an update is an atomic store and one ring.
pub(crate) struct PositionTx {
    shared: sync::Arc<PositionShared>,
    /// Dropped after `Drop::drop` marked the cell closed: the ring makes the actor look.
    ring: RingOnDrop,
}

struct PositionShared {
    value: AtomicU64,
    /// Set at most once; never cleared.
    error: OnceLock<Arc<str>>,
    closed: AtomicBool,
}

impl PositionTx {
    /// Replaces the value and rings.
    pub(crate) fn publish(&self, value: u64) {
        self.shared.value.store(value, Ordering::Release);
        self.ring.ring();
    }

    /// Records a fatal error (the first one stays) and rings.
    pub(crate) fn fail(&self, error: Arc<str>) {
        let _ = self.shared.error.set(error);
        self.ring.ring();
    }
}

impl Drop for PositionTx {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

/// The receiving half of a [`position`] cell.
pub(crate) struct PositionRx {
    shared: sync::Arc<PositionShared>,
    seen: u64,
    error_seen: bool,
}

/// The sender of a [`position`] cell is gone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

impl PositionRx {
    /// Whether a value or an error arrived since the last [`PositionRx::take`]; `Err` once the
    /// sender is gone and everything it published was taken.
    pub(crate) fn has_changed(&self) -> Result<bool, Closed> {
        // `closed` first: the sender's last publish comes before its drop sets it, so once it
        // is seen set (Acquire, pairing with the drop's Release) the loads below see that
        // publish. Loaded after them, a publish and drop between the loads would read as a
        // close with the last value never seen.
        let closed = self.shared.closed.load(Ordering::Acquire);
        if self.shared.value.load(Ordering::Acquire) != self.seen
            || (!self.error_seen && self.shared.error.get().is_some())
        {
            return Ok(true);
        }
        if closed { Err(Closed) } else { Ok(false) }
    }

    /// The newest value and the error, if one was recorded; marks both seen.
    pub(crate) fn take(&mut self) -> (u64, Option<Arc<str>>) {
        self.seen = self.shared.value.load(Ordering::Acquire);
        let error = self.shared.error.get().cloned();
        self.error_seen = error.is_some();
        (self.seen, error)
    }
}

/// A position cell starting at `init` whose sender rings `bell`.
pub(crate) fn position(init: u64, bell: &Bell) -> (PositionTx, PositionRx) {
    let shared = sync::Arc::new(PositionShared {
        value: AtomicU64::new(init),
        error: OnceLock::new(),
        closed: AtomicBool::new(false),
    });
    let rx = PositionRx {
        shared: shared.clone(),
        seen: init,
        error_seen: false,
    };
    (
        PositionTx {
            shared,
            ring: RingOnDrop::new(bell),
        },
        rx,
    )
}

#[cfg(all(test, not(raft_loom)))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_position_update_rings_and_shows_as_changed() {
        let bell = Bell::new();
        let (tx, mut rx) = position(0, &bell);
        assert_eq!(rx.has_changed(), Ok(false));
        tx.publish(7);
        tx.publish(9);
        tokio::time::timeout(std::time::Duration::from_secs(1), bell.rung())
            .await
            .expect("the update rang");
        assert_eq!(rx.has_changed(), Ok(true));
        assert_eq!(rx.take(), (9, None), "only the newest value is kept");
        assert_eq!(rx.has_changed(), Ok(false));
        // Publishing the value already seen is no change.
        tx.publish(9);
        assert_eq!(rx.has_changed(), Ok(false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_position_error_is_sticky_and_the_first_one_stays() {
        let bell = Bell::new();
        let (tx, mut rx) = position(3, &bell);
        tx.fail(Arc::from("disk full"));
        tx.fail(Arc::from("second"));
        assert_eq!(rx.has_changed(), Ok(true));
        assert_eq!(rx.take(), (3, Some(Arc::from("disk full"))));
        assert_eq!(rx.has_changed(), Ok(false));
        assert_eq!(rx.take().1.as_deref(), Some("disk full"));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_position_sender_rings_and_closes_after_the_last_value() {
        let bell = Bell::new();
        let (tx, mut rx) = position(0, &bell);
        tx.publish(5);
        drop(tx);
        tokio::time::timeout(std::time::Duration::from_secs(1), bell.rung())
            .await
            .expect("the drop rang");
        // The last value is still delivered before the close shows.
        assert_eq!(rx.has_changed(), Ok(true));
        assert_eq!(rx.take().0, 5);
        assert_eq!(rx.has_changed(), Err(Closed));
    }
}

#[cfg(all(test, raft_loom))]
mod loom_tests {
    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::mailbox::sync::model;

    /// What the partition's loop does with a position cell: take each change, wait on the
    /// bell when there is none, stop at the close. Returns every `take`, in order.
    fn receive_all(bell: &Bell, rx: &mut PositionRx) -> Vec<(u64, Option<Arc<str>>)> {
        receive_all_with(bell, rx, PositionRx::has_changed)
    }

    /// [`receive_all`] with `has_changed` for [`PositionRx::has_changed`].
    fn receive_all_with(
        bell: &Bell,
        rx: &mut PositionRx,
        has_changed: fn(&PositionRx) -> Result<bool, Closed>,
    ) -> Vec<(u64, Option<Arc<str>>)> {
        let mut taken = Vec::new();
        loop {
            match has_changed(rx) {
                Ok(true) => taken.push(rx.take()),
                Ok(false) => block_on(bell.rung()),
                Err(Closed) => return taken,
            }
        }
    }

    /// `has_changed` as it was before the fix of race (b): the value and the error loaded
    /// before the closed flag. Kept to show the model finds the race.
    fn old_has_changed(rx: &PositionRx) -> Result<bool, Closed> {
        if rx.shared.value.load(Ordering::Acquire) != rx.seen
            || (!rx.error_seen && rx.shared.error.get().is_some())
        {
            return Ok(true);
        }
        if rx.shared.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        Ok(false)
    }

    /// The model finds race (b) in the old `has_changed`: it loads the value (unchanged), the
    /// sender publishes and is dropped, and the closed flag loaded next reads as the end.
    #[test]
    #[should_panic(expected = "took []")]
    fn the_old_has_changed_loses_the_last_value() {
        model(|| last_value_then_drop(old_has_changed));
    }

    /// One model run: the sender publishes 5 and is dropped right after; the receiver, looking
    /// with `has_changed`, must take 5 before it sees the close.
    fn last_value_then_drop(has_changed: fn(&PositionRx) -> Result<bool, Closed>) {
        let bell = Bell::new();
        let (tx, mut rx) = position(0, &bell);
        let sender = thread::spawn(move || {
            tx.publish(5);
            drop(tx);
        });
        let taken = receive_all_with(&bell, &mut rx, has_changed);
        assert_eq!(taken.last(), Some(&(5, None)), "took {taken:?}");
        sender.join().unwrap();
    }

    /// Race (b): the sender publishes a final value and is dropped right after. In every
    /// interleaving the receiver takes that value before it sees the close.
    #[test]
    fn the_last_value_before_the_drop_is_seen() {
        model(|| last_value_then_drop(PositionRx::has_changed));
    }

    /// The same with a sticky error: recorded, then the sender dropped; the receiver sees the
    /// error before the close.
    #[test]
    fn an_error_before_the_drop_is_seen() {
        model(|| {
            let bell = Bell::new();
            let (tx, mut rx) = position(0, &bell);
            let sender = thread::spawn(move || {
                tx.fail(Arc::from("disk"));
                drop(tx);
            });
            let taken = receive_all(&bell, &mut rx);
            assert_eq!(
                taken.last().and_then(|t| t.1.as_deref()),
                Some("disk"),
                "took {taken:?}"
            );
            sender.join().unwrap();
        });
    }

    /// Two values: the receiver may skip the first but never goes backwards, and ends at the
    /// last.
    #[test]
    fn values_are_seen_in_order_ending_with_the_last() {
        model(|| {
            let bell = Bell::new();
            let (tx, mut rx) = position(0, &bell);
            let sender = thread::spawn(move || {
                tx.publish(1);
                tx.publish(2);
            });
            let taken: Vec<u64> = receive_all(&bell, &mut rx)
                .into_iter()
                .map(|t| t.0)
                .collect();
            assert!(taken == [2] || taken == [1, 2], "took {taken:?}");
            sender.join().unwrap();
        });
    }
}
