//! A latest-value channel: the sender never blocks and replaces any value the receiver has not
//! read yet; the receiver takes the newest value. A sender made by [`ringing`] also rings the
//! receiving actor's bell (see [`crate::inbox`]).
//!
//! Built on a one-slot flume channel (flume channels are multi-consumer, so the sender keeps a
//! receiving handle to evict an unread value). `tokio::sync::watch` would do the same job, but
//! with several receivers it picks their wake-up slots with the runtime's unseeded random
//! generator, so two runs of one simulation seed would wake replicators in different orders
//! (DESIGN.md I11). Here each receiver has its own channel and wake-ups are first-in first-out.
//!
//! A [`position`] cell is the same idea for a single `u64` that only grows in meaning (a
//! durable sequence number, an applied index) with a sticky error: no queue, an atomic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Sending half.
pub(crate) struct LatestTx<T> {
    tx: flume::Sender<T>,
    evict: flume::Receiver<T>,
    flags: Arc<Flags>,
    /// Rings the receiving actor's bell on each value and when dropped (last field: after
    /// `tx` is gone).
    ring: Option<crate::inbox::RingOnDrop>,
}

/// Receiving half.
pub(crate) struct LatestRx<T> {
    rx: flume::Receiver<T>,
    flags: Arc<Flags>,
}

/// What lets the receiver find nothing without flume's lock (as [`crate::inbox`]'s queues do):
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

/// A latest-value channel whose sender rings `bell` (see [`crate::inbox`]); the receiver
/// looks with [`LatestRx::try_recv`].
pub(crate) fn ringing<T>(bell: &crate::inbox::Bell) -> (LatestTx<T>, LatestRx<T>) {
    let (mut tx, rx) = channel();
    tx.ring = Some(crate::inbox::RingOnDrop::new(bell));
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
    /// The newest value if one is waiting, without waiting.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) fn try_latest(&self) -> Option<T> {
        self.try_recv().ok()
    }

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
    #[cfg(test)]
    pub(crate) async fn recv(&self) -> Result<T, flume::RecvError> {
        self.rx.recv_async().await
    }
}

/// The sending half of a [`position`] cell: a `u64` that only the newest value of matters (a
/// durable sequence number, an applied index) and a sticky error, ringing the receiving
/// actor's bell on every update.
///
/// It replaces a `tokio::sync::watch` channel there: a watch send wakes its waiters through
/// eight internal notifiers, each behind a lock, even when nobody waits, and the actor never
/// awaits the channel (it waits on its bell). Those sends profiled as ~13% of a 1-client
/// in-process run. Here an update is an atomic store and one ring.
pub(crate) struct PositionTx {
    shared: Arc<PositionShared>,
    /// Dropped after `Drop::drop` marked the cell closed: the ring makes the actor look.
    ring: crate::inbox::RingOnDrop,
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
    shared: Arc<PositionShared>,
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
        if self.shared.value.load(Ordering::Acquire) != self.seen
            || (!self.error_seen && self.shared.error.get().is_some())
        {
            return Ok(true);
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Closed);
        }
        Ok(false)
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
pub(crate) fn position(init: u64, bell: &crate::inbox::Bell) -> (PositionTx, PositionRx) {
    let shared = Arc::new(PositionShared {
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
            ring: crate::inbox::RingOnDrop::new(bell),
        },
        rx,
    )
}

#[cfg(test)]
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

    #[tokio::test(start_paused = true)]
    async fn a_position_update_rings_and_shows_as_changed() {
        let bell = crate::inbox::Bell::new();
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
        let bell = crate::inbox::Bell::new();
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
        let bell = crate::inbox::Bell::new();
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
