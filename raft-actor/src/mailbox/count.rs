//! A lock-free count of the messages in a flume queue.
//!
//! # Contract
//!
//! Senders count before they queue and take the count back if the queue refuses or the send
//! is cancelled before the message was queued; the receiver lowers it for each message it
//! takes. So the count never reads below the number of messages queued, and reading it is an
//! atomic load instead of flume's locked `len()`.

use std::future::Future;

use super::sync::{AtomicUsize, Ordering};

/// The sending side of the queue a [`QueueCount`] counts: flume's `Sender`, and under
/// `cfg(raft_loom)` also the model's stand-in (see [`super::sync`]).
pub(crate) trait Queue<T> {
    /// Queues `value` if there is room.
    fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>>;
    /// Queues `value`, waiting for room.
    fn send_async(&self, value: T) -> impl Future<Output = Result<(), flume::SendError<T>>> + '_
    where
        T: 'static;
}

impl<T> Queue<T> for flume::Sender<T> {
    fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>> {
        flume::Sender::try_send(self, value)
    }
    fn send_async(&self, value: T) -> impl Future<Output = Result<(), flume::SendError<T>>> + '_
    where
        T: 'static,
    {
        flume::Sender::send_async(self, value)
    }
}

#[cfg(raft_loom)]
impl<T> Queue<T> for super::sync::flume::Sender<T> {
    fn try_send(&self, value: T) -> Result<(), flume::TrySendError<T>> {
        super::sync::flume::Sender::try_send(self, value)
    }
    fn send_async(&self, value: T) -> impl Future<Output = Result<(), flume::SendError<T>>> + '_
    where
        T: 'static,
    {
        super::sync::flume::Sender::send_async(self, value)
    }
}

/// The number of messages in a flume queue, kept beside it so that reading it is an atomic
/// load instead of flume's locked `len()`. Senders count before they queue and take the count
/// back if the queue refuses; the receiver lowers it for each message it takes; so it never
/// reads below the number queued. Used by the inboxes and by the storage actor's queue.
#[derive(Default)]
pub(crate) struct QueueCount(AtomicUsize);

impl QueueCount {
    /// Counts `value` and queues it on `tx` without waiting; gives it back (uncounted) when the
    /// queue is full or its receiver is gone.
    pub(crate) fn try_send<T>(
        &self,
        tx: &impl Queue<T>,
        value: T,
    ) -> Result<(), flume::TrySendError<T>> {
        self.0.fetch_add(1, Ordering::AcqRel);
        tx.try_send(value).inspect_err(|_| {
            self.0.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Counts `value` and queues it on `tx`, waiting for room. The count is taken back if the
    /// send fails or is cancelled while it waits.
    pub(crate) async fn send_async<T: 'static>(
        &self,
        tx: &impl Queue<T>,
        value: T,
    ) -> Result<(), flume::SendError<T>> {
        /// Lowers the count on drop unless the send completed.
        struct Raised<'a>(&'a AtomicUsize, bool);
        impl Drop for Raised<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        self.0.fetch_add(1, Ordering::AcqRel);
        let mut raised = Raised(&self.0, false);
        tx.send_async(value).await?;
        raised.1 = true;
        Ok(())
    }

    /// The receiver took one message.
    pub(crate) fn taken(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    /// Messages queued, or about to be (never below the number queued).
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(raft_loom)))]
mod tests {
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

    #[tokio::test(start_paused = true)]
    async fn send_async_waits_for_room_and_counts_once() {
        let count = Arc::new(QueueCount::default());
        let (tx, rx) = flume::bounded(1);
        count.try_send(&tx, 1).unwrap();
        let sender = tokio::spawn({
            let count = count.clone();
            async move { count.send_async(&tx, 2).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished(), "the queue is full");
        assert_eq!(rx.try_recv(), Ok(1));
        count.taken();
        let sent = tokio::time::timeout(Duration::from_secs(1), sender)
            .await
            .expect("the take woke the sender")
            .unwrap();
        assert!(sent);
        assert_eq!(count.get(), 1);
        assert_eq!(rx.try_recv(), Ok(2));
        count.taken();
        assert_eq!(count.get(), 0);
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

    /// Race (a): a `send_async` that finds the queue full is polled once and then cancelled
    /// (dropped), while the receiver takes a message (which can move the blocked message into
    /// the queue). Whatever the interleaving, the count ends equal to what is queued — zero
    /// once everything is taken — and the message is delivered at most once.
    #[test]
    fn a_cancelled_blocked_send_leaves_the_count_exact() {
        model(|| {
            let count = Arc::new(QueueCount::default());
            let (tx, rx) = flume::bounded::<u32>(1);
            count.try_send(&tx, 1).unwrap();
            let sender = thread::spawn({
                let count = count.clone();
                move || {
                    let mut send = pin!(count.send_async(&tx, 2));
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
