//! A lock-free count of the messages in a flume queue.
//!
//! # Contract
//!
//! Senders count before they queue and take the count back if the queue refuses or the send
//! is cancelled before the message was queued; the receiver lowers it for each message it
//! takes. So the count never reads below the number of messages queued, and reading it is an
//! atomic load instead of flume's locked `len()`.

use std::sync::atomic::{AtomicUsize, Ordering};

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
        tx: &flume::Sender<T>,
        value: T,
    ) -> Result<(), flume::TrySendError<T>> {
        self.0.fetch_add(1, Ordering::AcqRel);
        tx.try_send(value).inspect_err(|_| {
            self.0.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Counts `value` and queues it on `tx`, waiting for room. The count is taken back if the
    /// send fails or is cancelled while it waits.
    pub(crate) async fn send_async<T>(
        &self,
        tx: &flume::Sender<T>,
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
