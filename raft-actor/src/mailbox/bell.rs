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

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

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
