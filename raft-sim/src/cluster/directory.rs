//! The directory of node handles each client polls: a latest-value slot. The harness publishes
//! the current handles after every restart and never waits; a client takes the newest ones
//! between operations, if any arrived, and never waits either.
//!
//! One slot per client, each a one-place flume channel: publishing evicts an unread value
//! through a receiving handle the sender keeps. Nobody awaits the slot, so it wakes no task and
//! cannot change the order in which the runtime runs them.

/// The publishing half.
pub(super) struct DirectoryTx<T> {
    tx: flume::Sender<T>,
    /// Takes back an unread value to make room for a newer one.
    evict: flume::Receiver<T>,
}

/// The polling half.
pub(super) struct DirectoryRx<T> {
    rx: flume::Receiver<T>,
}

/// A new, empty slot.
pub(super) fn channel<T>() -> (DirectoryTx<T>, DirectoryRx<T>) {
    let (tx, rx) = flume::bounded(1);
    (
        DirectoryTx {
            tx,
            evict: rx.clone(),
        },
        DirectoryRx { rx },
    )
}

impl<T> DirectoryTx<T> {
    /// Publishes `value`, replacing an unread one. Does nothing once the client is gone.
    pub(super) fn send(&self, mut value: T) {
        // The sender's own `evict` handle counts as a receiver.
        if self.tx.receiver_count() <= 1 {
            return;
        }
        loop {
            match self.tx.try_send(value) {
                Ok(()) => return,
                Err(flume::TrySendError::Full(v)) => {
                    let _ = self.evict.try_recv();
                    value = v;
                }
                Err(flume::TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

impl<T> DirectoryRx<T> {
    /// The newest value if one arrived since the last look.
    pub(super) fn try_latest(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_value_wins_and_is_taken_once() {
        let (tx, rx) = channel();
        assert_eq!(rx.try_latest(), None);
        for i in 0..10 {
            tx.send(i);
        }
        assert_eq!(rx.try_latest(), Some(9));
        assert_eq!(rx.try_latest(), None);
        tx.send(10);
        assert_eq!(rx.try_latest(), Some(10));
    }

    #[test]
    fn publishing_to_a_gone_client_keeps_nothing() {
        let (tx, rx) = channel();
        drop(rx);
        tx.send(1);
        assert!(tx.evict.is_empty());
    }
}
