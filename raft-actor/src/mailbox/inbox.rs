//! An actor's input queues behind one doorbell.
//!
//! An actor with several inputs could await all of them at once with `select!`, but every such
//! wait registers a waker with each queue and every wake-up unregisters them all again: with
//! flume that is an allocation, a lock and a scan per queue per wake-up. Here each queue's senders ring one shared
//! [`Bell`] after queueing, and the actor takes whatever is queued with `try_recv` in its own
//! priority order; it waits on the bell (one registration) only when every queue is empty.
//!
//! The last sender of a queue rings when dropped, after letting go of the queue, so the actor
//! sees a queue whose senders are all gone at its next look. (Only the last: a registry that
//! clones and drops handles to thousands of groups must not wake them all.) A ring made while
//! nobody waits is kept as a flag: a ring between the actor's last look and its wait is never
//! lost, at worst it costs one look that finds nothing.
//!
//! The bell has exactly one waiter, the actor that owns the queues, so it is a flag and an
//! [`AtomicWaker`] rather than `tokio::sync::Notify`: Notify keeps a list of waiters behind a
//! lock that every wait entered and every wait left takes; here a wait is two atomic swaps and a waker compare, and of many rings made
//! before the actor looks only the first wakes it.
//!
//! State an actor only needs the newest value of comes through [`super::latest`] or
//! [`super::position`] instead.
//!
//! # Contract
//!
//! - Any number of senders (clones of one [`InboxTx`]), one receiver. A message queued by
//!   [`InboxTx::try_send`] rings the bell after it is queued and counted.
//! - [`InboxRx::try_recv`] answers `Empty` from two atomic loads when the count is zero and the
//!   queue is not closed; otherwise it asks the queue. The count is raised before a message is
//!   queued, and `closed` is set only after every clone has let go of the queue (the last
//!   `Arc` of the shared part goes after each clone's queue sender), so a look that finds
//!   both down really has nothing to take, and a look that finds `closed` (`Acquire`,
//!   pairing with its `Release` store) sees every message queued before the last sender went.
//! - So every message queued before the last sender is dropped is received before
//!   `Disconnected`, and the ring of that drop wakes the actor to see it. The loom models check
//!   this with one sender dropped right after its send, and with two clones.

use super::bell::{Bell, RingOnDrop};
use super::count::QueueCount;
use super::sync::{Arc, AtomicBool, Ordering, flume};

/// What a queue's senders and its receiver share besides the queue.
#[derive(Default)]
struct Gauge {
    /// Messages sent and not yet received.
    queued: QueueCount,
    /// Set when the last sender is gone.
    closed: AtomicBool,
}

/// What the clones of one queue's sender share: the gauge, and the ring for the last drop.
struct Senders {
    gauge: Arc<Gauge>,
    /// Dropped after `Drop::drop` marked the queue closed, so the actor looks and sees it.
    ring: RingOnDrop,
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.gauge.closed.store(true, Ordering::Release);
    }
}

/// The sending half of a bounded queue that rings the actor's bell.
pub(crate) struct InboxTx<T> {
    tx: flume::Sender<T>,
    senders: Arc<Senders>,
}

impl<T> Clone for InboxTx<T> {
    fn clone(&self) -> Self {
        InboxTx {
            tx: self.tx.clone(),
            senders: self.senders.clone(),
        }
    }
}

impl<T> InboxTx<T> {
    /// Queues `value` without waiting and rings; gives it back when the queue is full or the
    /// actor is gone.
    pub(crate) fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>> {
        self.senders.gauge.queued.try_send(&self.tx, value)?;
        self.senders.ring.ring();
        Ok(())
    }

    /// Messages queued, or about to be (no lock: an atomic load; never below the number
    /// queued).
    pub(crate) fn len(&self) -> usize {
        self.senders.gauge.queued.get()
    }
}

/// The receiving half of a bounded queue whose senders ring the actor's bell.
///
/// A look at an empty queue is an atomic load. The actor looks at each of its queues on every
/// event, and most are empty most of the time; flume's `try_recv` takes the channel's lock
/// even to find nothing.
pub(crate) struct InboxRx<T> {
    rx: flume::Receiver<T>,
    gauge: Arc<Gauge>,
}

impl<T> InboxRx<T> {
    /// The next message without waiting; `Disconnected` once the queue is empty and its
    /// senders are all gone.
    pub(crate) fn try_recv(&self) -> Result<T, flume::TryRecvError> {
        if self.gauge.queued.get() == 0 && !self.gauge.closed.load(Ordering::Acquire) {
            return Err(flume::TryRecvError::Empty);
        }
        let taken = self.rx.try_recv();
        if taken.is_ok() {
            self.gauge.queued.taken();
        }
        taken
    }

    /// Whether nothing is queued or being queued (an atomic load).
    pub(crate) fn is_empty(&self) -> bool {
        self.gauge.queued.get() == 0
    }

    /// Messages queued (takes the queue's lock; for metrics).
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }
}

/// A bounded queue (`cap` messages) whose senders ring `bell`.
pub(crate) fn bounded<T>(cap: usize, bell: &Bell) -> (InboxTx<T>, InboxRx<T>) {
    let (tx, rx) = flume::bounded(cap);
    let gauge = Arc::new(Gauge::default());
    let senders = Arc::new(Senders {
        gauge: gauge.clone(),
        ring: RingOnDrop::new(bell),
    });
    (InboxTx { tx, senders }, InboxRx { rx, gauge })
}

#[cfg(all(test, not(raft_loom)))]
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

#[cfg(all(test, raft_loom))]
mod loom_tests {
    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::mailbox::sync::model;

    /// What the actor's loop does with one queue: take what is queued, wait on the bell when
    /// it finds nothing, stop at the disconnect.
    fn receive_all(bell: &Bell, rx: &InboxRx<u32>) -> Vec<u32> {
        let mut got = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(v) => got.push(v),
                Err(::flume::TryRecvError::Empty) => block_on(bell.rung()),
                Err(::flume::TryRecvError::Disconnected) => return got,
            }
        }
    }

    /// The sender queues a message and is dropped right after: in every interleaving the
    /// actor receives it before it sees the disconnect, and is woken for both.
    #[test]
    fn the_last_message_before_the_drop_is_received() {
        model(|| {
            let bell = Bell::new();
            let (tx, rx) = bounded(2, &bell);
            let sender = thread::spawn(move || {
                tx.try_send(1).unwrap();
                drop(tx);
            });
            assert_eq!(receive_all(&bell, &rx), [1]);
            assert!(rx.is_empty());
            sender.join().unwrap();
        });
    }

    /// Two clones of one sender, each queueing one message and dropped: both messages arrive
    /// before the disconnect shows, whichever clone goes last.
    #[test]
    fn messages_of_two_senders_arrive_before_the_close() {
        model(|| {
            let bell = Bell::new();
            let (tx, rx) = bounded(2, &bell);
            let senders: Vec<_> = [1, 2]
                .into_iter()
                .map(|v| {
                    let tx = tx.clone();
                    thread::spawn(move || tx.try_send(v).unwrap())
                })
                .collect();
            drop(tx);
            let mut got = receive_all(&bell, &rx);
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
            for sender in senders {
                sender.join().unwrap();
            }
        });
    }
}
