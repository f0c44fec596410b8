//! An actor's input queues behind one doorbell.
//!
//! An actor with several inputs could await all of them at once with `select!`, but every such
//! wait registers a waker with each queue and every wake-up unregisters them all again: with
//! flume that is an allocation, a lock and a scan per queue per wake-up, which profiled as a
//! quarter of the CPU of a 1-client in-process run. Here each queue's senders ring one shared
//! [`Bell`] after queueing, and the actor takes whatever is queued with `try_recv` in its own
//! priority order; it waits on the bell (one registration) only when every queue is empty.
//!
//! The last sender of a queue rings when dropped, after letting go of the queue, so the actor
//! sees a queue whose senders are all gone at its next look. (Only the last: a registry that
//! clones and drops handles to thousands of groups must not wake them all.) `tokio::sync::Notify` keeps a permit when nobody waits:
//! a ring between the actor's last look and its wait is never lost, at worst it costs one look
//! that finds nothing.
//!
//! State an actor only needs the newest value of comes through [`crate::latest`] instead.

use std::sync::Arc;

use tokio::sync::Notify;

/// The wake-up an actor's input queues share.
#[derive(Clone, Default)]
pub(crate) struct Bell(Arc<Notify>);

impl Bell {
    /// A new bell.
    pub(crate) fn new() -> Bell {
        Bell::default()
    }

    /// Wakes the actor (or lets its next wait return at once).
    pub(crate) fn ring(&self) {
        self.0.notify_one();
    }

    /// Waits for a ring made since the previous wait returned.
    pub(crate) async fn rung(&self) {
        self.0.notified().await;
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

/// The sending half of a bounded queue that rings the actor's bell.
pub(crate) struct InboxTx<T> {
    tx: flume::Sender<T>,
    ring: Arc<RingOnDrop>,
}

impl<T> Clone for InboxTx<T> {
    fn clone(&self) -> Self {
        InboxTx {
            tx: self.tx.clone(),
            ring: self.ring.clone(),
        }
    }
}

impl<T> InboxTx<T> {
    /// Queues `value` without waiting and rings; gives it back when the queue is full or the
    /// actor is gone.
    pub(crate) fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>> {
        self.tx.try_send(value)?;
        self.ring.ring();
        Ok(())
    }

    /// Messages queued (takes the queue's lock).
    pub(crate) fn len(&self) -> usize {
        self.tx.len()
    }
}

/// A bounded queue (`cap` messages) whose senders ring `bell`.
pub(crate) fn bounded<T>(cap: usize, bell: &Bell) -> (InboxTx<T>, flume::Receiver<T>) {
    let (tx, rx) = flume::bounded(cap);
    let ring = Arc::new(RingOnDrop::new(bell));
    (InboxTx { tx, ring }, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_ring_before_the_wait_is_kept() {
        let bell = Bell::new();
        let (tx, rx) = bounded(4, &bell);
        tx.try_send(1).unwrap();
        // The actor waits only after sending: the permit makes the wait return at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), bell.rung())
            .await
            .expect("a ring made before the wait wakes it");
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_last_sender_wakes_the_actor_to_see_the_disconnect() {
        let bell = Bell::new();
        let (tx, rx) = bounded::<u8>(4, &bell);
        let waiter = tokio::spawn({
            let bell = bell.clone();
            async move {
                loop {
                    match rx.try_recv() {
                        Err(flume::TryRecvError::Disconnected) => return true,
                        Ok(_) => return false,
                        Err(flume::TryRecvError::Empty) => bell.rung().await,
                    }
                }
            }
        });
        tokio::task::yield_now().await;
        drop(tx);
        let seen = tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("the drop rang the bell")
            .unwrap();
        assert!(seen);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_clone_does_not_ring() {
        let bell = Bell::new();
        let (tx, _rx) = bounded::<u8>(4, &bell);
        drop(tx.clone());
        let woken = tokio::time::timeout(std::time::Duration::from_millis(10), bell.rung()).await;
        assert!(woken.is_err(), "only the last sender's drop rings");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_gives_the_value_back_and_rings_add_up_to_one_wake() {
        let bell = Bell::new();
        let (tx, rx) = bounded(1, &bell);
        tx.try_send(1).unwrap();
        assert!(matches!(tx.try_send(2), Err(flume::TrySendError::Full(2))));
        bell.rung().await;
        assert_eq!(rx.try_recv(), Ok(1));
        // Rings while nobody waits leave one permit, not one per ring: the second wait
        // has nothing to return.
        let second = tokio::time::timeout(std::time::Duration::from_millis(10), bell.rung()).await;
        assert!(second.is_err());
    }
}
