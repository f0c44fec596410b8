//! A latest-value channel: the sender never blocks and replaces any value the receiver has not
//! read yet; the receiver takes the newest value. A sender made by [`ringing`] also rings the
//! receiving actor's bell (see [`super::inbox`]).
//!
//! Built on a one-slot flume channel (flume channels are multi-consumer, so the sender keeps a
//! receiving handle to evict an unread value). `tokio::sync::watch` would do the same job, but
//! with several receivers it picks their wake-up slots with the runtime's unseeded random
//! generator, so two runs of one simulation seed would wake replicators in different orders
//! (I11, determinism). Here each receiver has its own channel and wake-ups are first-in
//! first-out.
//!
//! [`super::position`] is the same idea for a single `u64` with a sticky error: no queue, an
//! atomic.
//!
//! # Contract
//!
//! - One sender, one receiver. [`LatestTx::send`] never blocks: it evicts an unread value and
//!   queues the new one, then raises `fresh` and rings. It reports `false` once the receiver
//!   is gone.
//! - [`LatestRx::try_recv`] answers `Empty` without flume's lock only when `fresh` was down
//!   (it lowers it before looking) and `closed` is not set; otherwise it asks the queue. A
//!   value queued after the receiver lowered `fresh` raises it again and rings, so it is seen
//!   at the next look.
//! - Dropping the sender sets `closed` (`Release`, after its last value was queued) and then
//!   rings; a look that finds `closed` (`Acquire`) asks the queue, which still holds that last
//!   value: it is received before `Disconnected`. Unlike the position cell's first
//!   `has_changed`, the order of the two flag loads here does not matter: either load finding
//!   its flag up sends the look to the queue. The loom models check a sender dropped right
//!   after its last value, and a receiver dropped while the sender sends.

use super::bell::{Bell, RingOnDrop};
use super::sync::{Arc, AtomicBool, Ordering, flume};

/// Sending half.
pub(crate) struct LatestTx<T> {
    tx: flume::Sender<T>,
    evict: flume::Receiver<T>,
    flags: Arc<Flags>,
    /// Rings the receiving actor's bell on each value and when dropped (last field: after
    /// `tx` is gone).
    ring: Option<RingOnDrop>,
}

/// Receiving half.
pub(crate) struct LatestRx<T> {
    rx: flume::Receiver<T>,
    flags: Arc<Flags>,
}

/// What lets the receiver find nothing without flume's lock (as [`super::inbox`]'s queues do):
/// its actor looks on every turn of its loop, and the slot is empty most of the time.
#[derive(Default)]
struct Flags {
    /// Raised after each value is queued, lowered by the receiver just before it looks: a
    /// value queued after the receiver's last look has raised it again, so a look that finds
    /// it down may answer "nothing" at once. (Up with nothing queued costs one locked look.)
    fresh: AtomicBool,
    /// Set when the sender is dropped.
    closed: AtomicBool,
}

impl<T> Drop for LatestTx<T> {
    fn drop(&mut self) {
        self.flags.closed.store(true, Ordering::Release);
    }
}

/// A new latest-value channel.
pub(crate) fn channel<T>() -> (LatestTx<T>, LatestRx<T>) {
    let (tx, rx) = flume::bounded(1);
    let flags = Arc::new(Flags::default());
    (
        LatestTx {
            tx,
            evict: rx.clone(),
            flags: flags.clone(),
            ring: None,
        },
        LatestRx { rx, flags },
    )
}

/// A latest-value channel whose sender rings `bell` (see [`super::inbox`]); the receiver
/// looks with [`LatestRx::try_recv`].
pub(crate) fn ringing<T>(bell: &Bell) -> (LatestTx<T>, LatestRx<T>) {
    let (mut tx, rx) = channel();
    tx.ring = Some(RingOnDrop::new(bell));
    (tx, rx)
}

impl<T> LatestTx<T> {
    /// Publishes `value`, replacing an unread one. Returns false once the receiver is gone.
    pub(crate) fn send(&self, mut value: T) -> bool {
        // Our own `evict` handle counts as a receiver.
        if self.tx.receiver_count() <= 1 {
            return false;
        }
        loop {
            match self.tx.try_send(value) {
                Ok(()) => {
                    self.flags.fresh.store(true, Ordering::Release);
                    if let Some(r) = &self.ring {
                        r.ring();
                    }
                    return true;
                }
                Err(flume::TrySendError::Full(v)) => {
                    let _ = self.evict.try_recv();
                    value = v;
                }
                Err(flume::TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

impl<T> LatestRx<T> {
    /// The newest value if one is waiting; `Disconnected` once the sender is gone.
    pub(crate) fn try_recv(&self) -> Result<T, flume::TryRecvError> {
        if !self.flags.fresh.swap(false, Ordering::AcqRel)
            && !self.flags.closed.load(Ordering::Acquire)
        {
            return Err(flume::TryRecvError::Empty);
        }
        self.rx.try_recv()
    }

    /// The newest value; `Err` once the sender is gone.
    #[cfg(all(test, not(raft_loom)))]
    pub(crate) async fn recv(&self) -> Result<T, flume::RecvError> {
        self.rx.recv_async().await
    }
}

#[cfg(all(test, not(raft_loom)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn newest_value_wins_and_sender_never_blocks() {
        let (tx, rx) = channel();
        for i in 0..10 {
            assert!(tx.send(i));
        }
        assert_eq!(rx.recv().await, Ok(9));
        assert!(tx.send(10));
        assert_eq!(rx.recv().await, Ok(10));
        drop(rx);
        assert!(!tx.send(11));
    }

    #[tokio::test]
    async fn receiver_ends_when_sender_drops() {
        let (tx, rx) = channel::<u8>();
        drop(tx);
        assert!(rx.recv().await.is_err());
    }

    #[test]
    fn try_recv_sees_each_newest_value_once_then_the_close() {
        let (tx, rx) = channel();
        assert_eq!(rx.try_recv(), Err(flume::TryRecvError::Empty));
        assert!(tx.send(1));
        assert!(tx.send(2));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(flume::TryRecvError::Empty));
        assert!(tx.send(3));
        drop(tx);
        // The value sent before the drop is still delivered, then the close shows.
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(flume::TryRecvError::Disconnected));
    }
}

#[cfg(all(test, raft_loom))]
mod loom_tests {
    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::mailbox::sync::model;

    /// The sender publishes two values and is dropped right after the last: in every
    /// interleaving the receiver (looking on each ring) ends with the last value, sees values
    /// only in order, and sees the close after it.
    #[test]
    fn the_last_value_before_the_drop_is_received() {
        model(|| {
            let bell = Bell::new();
            let (tx, rx) = ringing::<u32>(&bell);
            let sender = thread::spawn(move || {
                assert!(tx.send(1));
                assert!(tx.send(2));
                drop(tx);
            });
            let mut last = 0;
            loop {
                match rx.try_recv() {
                    Ok(v) => {
                        assert!(v > last, "{v} after {last}");
                        last = v;
                    }
                    Err(::flume::TryRecvError::Empty) => block_on(bell.rung()),
                    Err(::flume::TryRecvError::Disconnected) => break,
                }
            }
            assert_eq!(last, 2, "the last value was lost");
            sender.join().unwrap();
        });
    }

    /// A receiver dropped while the sender publishes: the send reports it (or succeeds), and
    /// never blocks.
    #[test]
    fn a_send_after_the_receiver_is_gone_reports_it() {
        model(|| {
            let (tx, rx) = channel::<u32>();
            let receiver = thread::spawn(move || drop(rx));
            let _ = tx.send(1);
            receiver.join().unwrap();
            assert!(!tx.send(2));
        });
    }
}
