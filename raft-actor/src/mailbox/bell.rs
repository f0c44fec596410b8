//! The doorbell an actor waits on: any number of ringers, exactly one waiter.
//!
//! An actor with several inputs could await all of them at once with `select!`, but every such
//! wait registers a waker with each queue and every wake-up unregisters them all again. Instead
//! each input's senders ring one shared [`Bell`] after publishing, and the actor takes whatever
//! is ready in its own priority order; it waits on the bell (one registration) only when every
//! input is empty.
//!
//! The bell has exactly one waiter, the actor that owns the inputs, so it is a flag and an
//! [`AtomicWaker`] rather than `tokio::sync::Notify`, whose waiter list sits behind a lock that
//! every wait entered and left takes: here a wait is two atomic swaps and a waker compare, and
//! of many rings made before the actor looks only the first wakes it.
//!
//! # Contract
//!
//! - A ring made while nobody waits is kept as a flag: a ring between the actor's last look at
//!   its inputs and its wait is never lost; at worst it costs one look that finds nothing.
//! - Many rings before the waiter looks add up to one wake-up, not one per ring.
//! - [`RingOnDrop`] rings when dropped, so an input whose senders are all gone is seen at the
//!   actor's next look.
//! - A ring orders what the ringer did before it before what the waiter does after the wait
//!   returns (the flag is swapped with `AcqRel` on both sides): a value published, even
//!   `Relaxed`, before a ring is seen by the waiter's next look. The loom models check this with
//!   one and with two ringers, and with a `RingOnDrop` dropped right after a publish.

use std::future::poll_fn;
use std::task::Poll;

use super::sync::{Arc, AtomicBool, AtomicWaker, Ordering};

/// The wake-up an actor's input queues share. Any number of ringers, one waiter.
#[derive(Clone, Default)]
pub(crate) struct Bell(Arc<BellState>);

#[derive(Default)]
struct BellState {
    /// A ring the waiter has not yet taken.
    rung: AtomicBool,
    /// The waiter's waker, while it waits.
    waker: AtomicWaker,
}

impl Bell {
    /// A new bell.
    pub(crate) fn new() -> Bell {
        Bell::default()
    }

    /// Wakes the actor (or lets its next wait return at once).
    pub(crate) fn ring(&self) {
        // Only the ring that raises the flag wakes: a later ringer that finds it raised knows
        // the wake of the one that raised it comes after the flag, so the waiter sees it
        // either at its second look or when woken.
        if !self.0.rung.swap(true, Ordering::AcqRel) {
            self.0.waker.wake();
        }
    }

    /// Waits for a ring made since the previous wait returned. Only the bell's one waiter
    /// calls this.
    pub(crate) async fn rung(&self) {
        poll_fn(|cx| {
            if self.0.rung.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.0.waker.register(cx.waker());
            // A ring between the first look and the registration woke nobody: look again.
            if self.0.rung.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Rings its bell when dropped. The last field of a sender, so it runs after the queue's
/// sender is gone; `InboxTx` clones share one, so it runs when the last of them is dropped.
pub(crate) struct RingOnDrop(Bell);

impl RingOnDrop {
    /// Will ring `bell` when dropped (and on every [`RingOnDrop::ring`]).
    pub(crate) fn new(bell: &Bell) -> RingOnDrop {
        RingOnDrop(bell.clone())
    }

    /// Rings the bell.
    pub(crate) fn ring(&self) {
        self.0.ring();
    }
}

impl Drop for RingOnDrop {
    fn drop(&mut self) {
        self.0.ring();
    }
}

#[cfg(all(test, not(raft_loom)))]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether a wait on `bell` returns within a (paused-clock) moment.
    async fn wakes(bell: &Bell) -> bool {
        tokio::time::timeout(Duration::from_millis(10), bell.rung())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_ring_before_the_wait_is_kept() {
        let bell = Bell::new();
        bell.ring();
        assert!(wakes(&bell).await, "a ring made before the wait wakes it");
        assert!(!wakes(&bell).await, "and is taken by it");
    }

    #[tokio::test(start_paused = true)]
    async fn many_rings_before_the_wait_add_up_to_one_wake() {
        let bell = Bell::new();
        for _ in 0..5 {
            bell.clone().ring();
        }
        assert!(wakes(&bell).await);
        assert!(!wakes(&bell).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ring_during_the_wait_wakes_the_waiter() {
        let bell = Bell::new();
        let waiter = tokio::spawn({
            let bell = bell.clone();
            async move { bell.rung().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "nothing rang yet");
        bell.ring();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the ring woke the waiter")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn ring_on_drop_rings_on_each_ring_and_when_dropped() {
        let bell = Bell::new();
        let ring = RingOnDrop::new(&bell);
        assert!(!wakes(&bell).await, "making it does not ring");
        ring.ring();
        assert!(wakes(&bell).await);
        drop(ring);
        assert!(wakes(&bell).await, "dropping it rings");
    }
}

#[cfg(all(test, raft_loom))]
mod loom_tests {
    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::mailbox::sync::{AtomicUsize, model};

    /// One ringer publishes (`Relaxed`: only the bell orders it) and rings; the waiter looks,
    /// and waits on the bell while it finds nothing. In every interleaving the wait ends (loom
    /// reports a deadlock otherwise) and the look after it sees the value.
    #[test]
    fn a_value_published_before_a_ring_is_seen_after_the_wait() {
        model(|| {
            let bell = Bell::new();
            let value = Arc::new(AtomicUsize::new(0));
            let ringer = thread::spawn({
                let (bell, value) = (bell.clone(), value.clone());
                move || {
                    value.store(1, Ordering::Relaxed);
                    bell.ring();
                }
            });
            while value.load(Ordering::Relaxed) == 0 {
                block_on(bell.rung());
            }
            ringer.join().unwrap();
        });
    }

    /// Two ringers: the rings may add up to one wake-up, but the waiter sees both values.
    #[test]
    fn rings_from_two_ringers_are_never_lost() {
        model(|| {
            let bell = Bell::new();
            let value = Arc::new(AtomicUsize::new(0));
            let ringers: Vec<_> = [1, 2]
                .into_iter()
                .map(|bit| {
                    let (bell, value) = (bell.clone(), value.clone());
                    thread::spawn(move || {
                        value.fetch_or(bit, Ordering::Relaxed);
                        bell.ring();
                    })
                })
                .collect();
            while value.load(Ordering::Relaxed) != 3 {
                block_on(bell.rung());
            }
            for ringer in ringers {
                ringer.join().unwrap();
            }
        });
    }

    /// A `RingOnDrop` dropped right after its owner's last publish wakes the waiter to see it.
    #[test]
    fn a_ring_on_drop_after_the_last_publish_wakes_the_waiter() {
        model(|| {
            let bell = Bell::new();
            let value = Arc::new(AtomicUsize::new(0));
            let ring = RingOnDrop::new(&bell);
            let sender = thread::spawn({
                let value = value.clone();
                move || {
                    value.store(1, Ordering::Relaxed);
                    drop(ring);
                }
            });
            while value.load(Ordering::Relaxed) == 0 {
                block_on(bell.rung());
            }
            sender.join().unwrap();
        });
    }
}
