//! A lock-free count of the messages in a flume queue, and the wait for room in it.
//!
//! # Contract
//!
//! - Senders count a message before they queue it and take the count back if the queue
//!   refuses it; the receiver lowers the count ([`QueueCount::taken`]) for each message it
//!   takes. So the count never reads below the number of messages queued, and reading it is an
//!   atomic load instead of flume's locked `len()`.
//! - The count is exact whenever no send is under way, cancelled sends included: a message is
//!   counted once, and the count is taken back once if, and only if, the message was not
//!   queued.
//! - [`QueueCount::send_async`] never leaves its message inside flume while it waits. It
//!   queues with `try_send`; on a full queue it waits for room — the receiver's next
//!   [`QueueCount::taken`], or its going ([`QueueCount::receiver_gone`]) — and tries again. A
//!   cancelled `send_async` is therefore cancelled while the message is still its own and not
//!   counted, and the message is dropped with it.
//!
//!   It used to await flume's own `send_async`, which parks the message in the channel while
//!   it waits. When the receiver takes a message, flume moves a parked one into the queue; a
//!   future cancelled after that had queued its message, yet its drop guard took the count
//!   back, and the receiver's `taken` lowered it again: the `usize` wrapped, and the storage
//!   queue's `has_room` read false for ever. (The loom test
//!   `a_cancelled_blocked_send_leaves_the_count_exact` finds that interleaving.)
//! - A sender waiting for room is woken by the first `taken` or `receiver_gone` after it
//!   found the queue full: it registers ([`Notify::notified`], and the `waiting` count the
//!   receiver checks) before it tries the queue a second time, so room made between the two
//!   tries is not missed. The receiver takes a message (under the queue's lock) before it
//!   loads `waiting`, the sender raises `waiting` before it takes that lock to try again:
//!   either the try finds the room, or the receiver finds the waiter.
//! - A receiver that never has senders waiting pays one atomic load per message taken.

use std::pin::pin;

use super::sync::{AtomicUsize, Notify, Ordering};

/// The sending side of the queue a [`QueueCount`] counts: flume's `Sender`, and under
/// `cfg(raft_loom)` also the model's stand-in (see [`super::sync`]).
pub(crate) trait Queue<T> {
    /// Queues `value` if there is room.
    fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>>;
}

impl<T> Queue<T> for flume::Sender<T> {
    fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>> {
        flume::Sender::try_send(self, value)
    }
}

#[cfg(raft_loom)]
impl<T> Queue<T> for super::sync::flume::Sender<T> {
    fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>> {
        super::sync::flume::Sender::try_send(self, value)
    }
}

/// The number of messages in a flume queue, kept beside it so that reading it is an atomic
/// load instead of flume's locked `len()`, and the senders waiting for room in it. Used by the
/// inboxes and by the storage actor's queue; see the module docs for the contract.
#[derive(Default)]
pub(crate) struct QueueCount {
    /// Messages queued, or about to be.
    count: AtomicUsize,
    /// Senders in [`QueueCount::send_async`] waiting for room.
    waiting: AtomicUsize,
    /// Rung for them by the receiver.
    room: Notify,
}

/// One waiting sender, counted in `QueueCount::waiting` while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiting: &'a AtomicUsize) -> Waiting<'a> {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl QueueCount {
    /// Counts `value` and queues it on `tx` without waiting; gives it back (uncounted) when the
    /// queue is full or its receiver is gone.
    pub(crate) fn try_send<T>(
        &self,
        tx: &impl Queue<T>,
        value: T,
    ) -> Result<(), flume::TrySendError<T>> {
        self.count.fetch_add(1, Ordering::AcqRel);
        tx.try_send(value).inspect_err(|_| {
            self.count.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Counts `value` and queues it on `tx`, waiting for room; gives it back (uncounted) when
    /// the receiver is gone. Cancelling it drops `value` unqueued and leaves the count exact
    /// (see the module docs).
    pub(crate) async fn send_async<T>(
        &self,
        tx: &impl Queue<T>,
        mut value: T,
    ) -> Result<(), flume::SendError<T>> {
        loop {
            match self.try_send(tx, value) {
                Ok(()) => return Ok(()),
                Err(flume::TrySendError::Disconnected(v)) => return Err(flume::SendError(v)),
                Err(flume::TrySendError::Full(v)) => value = v,
            }
            // Full: register for the receiver's next take, then look again, so a take between
            // the two looks is not missed.
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            let waiting = Waiting::new(&self.waiting);
            match self.try_send(tx, value) {
                Ok(()) => return Ok(()),
                Err(flume::TrySendError::Disconnected(v)) => return Err(flume::SendError(v)),
                Err(flume::TrySendError::Full(v)) => value = v,
            }
            // Cancelled here, the message is ours and uncounted: it is dropped, unqueued.
            room.await;
            drop(waiting);
        }
    }

    /// The receiver took one message: lowers the count and wakes senders waiting for room.
    pub(crate) fn taken(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.wake_waiting();
    }

    /// The receiver is gone (call after dropping it): wakes senders waiting for room, to find
    /// the queue disconnected.
    pub(crate) fn receiver_gone(&self) {
        self.wake_waiting();
    }

    fn wake_waiting(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Messages queued, or about to be (never below the number queued).
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// The receiver's hold on a shared [`QueueCount`]: [`QueueCount::taken`] for each message,
/// and [`QueueCount::receiver_gone`] when dropped. Declare it after the queue's receiver in
/// the struct that owns both, so that it drops after the receiver is gone.
pub(crate) struct Taker(std::sync::Arc<QueueCount>);

impl Taker {
    /// The receiving side of `count`.
    pub(crate) fn new(count: std::sync::Arc<QueueCount>) -> Taker {
        Taker(count)
    }

    /// The receiver took one message.
    pub(crate) fn taken(&self) {
        self.0.taken();
    }
}

impl Drop for Taker {
    fn drop(&mut self) {
        self.0.receiver_gone();
    }
}

#[cfg(all(test, not(raft_loom)))]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Waker};
    use std::time::Duration;

    use super::*;

    #[test]
    fn try_send_counts_what_is_queued_and_not_what_is_refused() {
        let count = QueueCount::default();
        let (tx, rx) = flume::bounded(1);
        count.try_send(&tx, 1).unwrap();
        assert_eq!(count.get(), 1);
        assert!(matches!(
            count.try_send(&tx, 2),
            Err(flume::TrySendError::Full(2))
        ));
        assert_eq!(count.get(), 1, "a refused message is not counted");
        assert_eq!(rx.try_recv(), Ok(1));
        count.taken();
        assert_eq!(count.get(), 0);
        drop(rx);
        assert!(matches!(
            count.try_send(&tx, 3),
            Err(flume::TrySendError::Disconnected(3))
        ));
        assert_eq!(count.get(), 0);
    }

    /// A one-slot queue holding 1 and a task whose `send_async(2)` waits for room in it.
    async fn a_send_blocked_on_a_full_queue() -> (
        Arc<QueueCount>,
        flume::Receiver<u32>,
        tokio::task::JoinHandle<Result<(), flume::SendError<u32>>>,
    ) {
        let count = Arc::new(QueueCount::default());
        let (tx, rx) = flume::bounded(1);
        count.try_send(&tx, 1).unwrap();
        let sender = tokio::spawn({
            let count = count.clone();
            async move { count.send_async(&tx, 2).await }
        });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished(), "the queue is full");
        (count, rx, sender)
    }

    #[tokio::test(start_paused = true)]
    async fn send_async_waits_for_room_and_counts_once() {
        let (count, rx, sender) = a_send_blocked_on_a_full_queue().await;
        assert_eq!(rx.try_recv(), Ok(1));
        count.taken();
        let sent = tokio::time::timeout(Duration::from_secs(1), sender)
            .await
            .expect("the take woke the sender")
            .unwrap();
        assert_eq!(sent, Ok(()));
        assert_eq!(count.get(), 1);
        assert_eq!(rx.try_recv(), Ok(2));
        count.taken();
        assert_eq!(count.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_send_async_fails_when_the_receiver_goes() {
        let (count, rx, sender) = a_send_blocked_on_a_full_queue().await;
        let taker = Taker::new(count.clone());
        drop(rx);
        drop(taker);
        let sent = tokio::time::timeout(Duration::from_secs(1), sender)
            .await
            .expect("the receiver's going woke the sender")
            .unwrap();
        assert_eq!(sent, Err(flume::SendError(2)));
        assert_eq!(count.get(), 1, "only the message left in the dropped queue");
    }

    /// Race (a), deterministically: the receiver makes room while a `send_async` waits, and
    /// the send is cancelled before it is polled again.
    #[test]
    fn a_send_async_cancelled_after_the_receiver_made_room_leaves_the_count_exact() {
        let count = QueueCount::default();
        let (tx, rx) = flume::bounded(1);
        count.try_send(&tx, 1).unwrap();
        {
            let mut send = pin!(count.send_async(&tx, 2));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(
                send.as_mut().poll(&mut cx).is_pending(),
                "the queue is full"
            );
            assert_eq!(rx.try_recv(), Ok(1));
            count.taken();
            // Cancelled here, without another poll.
        }
        while rx.try_recv().is_ok() {
            count.taken();
        }
        assert_eq!(count.get(), 0, "the count after taking everything");
    }
}

#[cfg(all(test, raft_loom))]
mod loom_tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use loom::future::block_on;
    use loom::thread;

    use super::*;
    use crate::mailbox::sync::{Arc, flume, model};

    /// Takes every message queued now, lowering the count for each.
    fn drain(count: &QueueCount, rx: &flume::Receiver<u32>) -> Vec<u32> {
        let mut got = Vec::new();
        while let Ok(v) = rx.try_recv() {
            count.taken();
            got.push(v);
        }
        got
    }

    /// The `send_async` this module had before the fix of race (a): count, then await the
    /// queue's own `send_async` (which leaves the message pending in the queue while it waits),
    /// and take the count back on drop unless it completed. Kept to show the model finds the
    /// race: see `the_old_send_async_loses_count_when_cancelled`.
    async fn old_send_async(
        count: &QueueCount,
        tx: &flume::Sender<u32>,
        value: u32,
    ) -> Result<(), ::flume::SendError<u32>> {
        struct Raised<'a>(&'a AtomicUsize, bool);
        impl Drop for Raised<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        count.count.fetch_add(1, Ordering::AcqRel);
        let mut raised = Raised(&count.count, false);
        tx.send_async(value).await?;
        raised.1 = true;
        Ok(())
    }

    /// The scenario of `a_cancelled_blocked_send_leaves_the_count_exact`, sending with
    /// `send`: one queued message, a send to the full queue polled once and cancelled while
    /// the receiver takes; then everything is taken and the count must be zero.
    fn cancel_a_blocked_send<F>(send: fn(Arc<QueueCount>, flume::Sender<u32>) -> F)
    where
        F: Future<Output = ()> + 'static,
    {
        let count = Arc::new(QueueCount::default());
        let (tx, rx) = flume::bounded::<u32>(1);
        count.try_send(&tx, 1).unwrap();
        let sender = thread::spawn({
            let count = count.clone();
            move || {
                let mut send = pin!(send(count, tx));
                let mut cx = Context::from_waker(Waker::noop());
                // Polled once, then cancelled whether or not it is done.
                let _ = send.as_mut().poll(&mut cx);
            }
        });
        let mut got = drain(&count, &rx);
        sender.join().unwrap();
        got.extend(drain(&count, &rx));
        assert_eq!(
            count.get(),
            0,
            "count after taking everything (got {got:?})"
        );
        assert!(got == [1] || got == [1, 2], "got {got:?}");
    }

    /// The model finds race (a) in the old `send_async`: the receiver's take moves the blocked
    /// message into the queue, the cancelled future's guard takes the count back, and the
    /// receiver's `taken` for that message takes it back again.
    #[test]
    #[should_panic(expected = "count after taking everything (got [1, 2])")]
    fn the_old_send_async_loses_count_when_cancelled() {
        model(|| {
            cancel_a_blocked_send(|count, tx| async move {
                let _ = old_send_async(&count, &tx, 2).await;
            })
        });
    }

    /// Race (a): a `send_async` that finds the queue full is polled once and then cancelled
    /// (dropped), while the receiver takes a message. Whatever the interleaving, the count
    /// ends equal to what is queued — zero once everything is taken — and the message is
    /// delivered at most once.
    #[test]
    fn a_cancelled_blocked_send_leaves_the_count_exact() {
        model(|| {
            cancel_a_blocked_send(|count, tx| async move {
                let _ = count.send_async(&tx, 2).await;
            })
        });
    }

    /// A `send_async` blocked on a full queue whose receiver is dropped (and the count told):
    /// it wakes and gives the message back, in every interleaving.
    #[test]
    fn a_blocked_send_fails_when_the_receiver_goes() {
        model(|| {
            let count = Arc::new(QueueCount::default());
            let (tx, rx) = flume::bounded::<u32>(1);
            count.try_send(&tx, 1).unwrap();
            let sender = thread::spawn({
                let count = count.clone();
                move || block_on(count.send_async(&tx, 2))
            });
            drop(rx);
            count.receiver_gone();
            assert_eq!(sender.join().unwrap(), Err(::flume::SendError(2)));
            assert_eq!(count.get(), 1, "only the message left in the dropped queue");
        });
    }

    /// A `send_async` blocked on a full queue completes once the receiver makes room (loom
    /// reports a deadlock if its wake-up can be lost), and the count ends exact.
    #[test]
    fn a_blocked_send_completes_when_the_receiver_takes() {
        model(|| {
            let count = Arc::new(QueueCount::default());
            let (tx, rx) = flume::bounded::<u32>(1);
            count.try_send(&tx, 1).unwrap();
            let sender = thread::spawn({
                let count = count.clone();
                move || block_on(count.send_async(&tx, 2)).unwrap()
            });
            let mut got = Vec::new();
            while got.len() < 2 {
                match rx.try_recv() {
                    Ok(v) => {
                        count.taken();
                        got.push(v);
                    }
                    Err(_) => thread::yield_now(),
                }
            }
            sender.join().unwrap();
            assert_eq!(got, [1, 2]);
            assert_eq!(count.get(), 0);
        });
    }

    /// `try_send` against a concurrent receiver: the count is never below what the receiver
    /// can take (a take never finds it at zero) and ends at zero.
    #[test]
    fn try_send_counts_each_message_once() {
        model(|| {
            let count = Arc::new(QueueCount::default());
            let (tx, rx) = flume::bounded::<u32>(1);
            let sender = thread::spawn({
                let count = count.clone();
                move || {
                    let first = count.try_send(&tx, 1).is_ok();
                    let second = count.try_send(&tx, 2).is_ok();
                    usize::from(first) + usize::from(second)
                }
            });
            let mut got = 0;
            loop {
                match rx.try_recv() {
                    Ok(_) => {
                        assert!(count.get() >= 1, "a queued message was not counted");
                        count.taken();
                        got += 1;
                    }
                    Err(::flume::TryRecvError::Empty) => thread::yield_now(),
                    Err(::flume::TryRecvError::Disconnected) => break,
                }
            }
            assert_eq!(got, sender.join().unwrap());
            assert_eq!(count.get(), 0);
        });
    }
}
