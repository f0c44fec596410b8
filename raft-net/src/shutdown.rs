//! Shutdown as a message (docs/architecture.md).
//!
//! The transport handle owns a `watch` sender; every task holds a [`Shutdown`] receiver and polls
//! it first in a `biased` select, so a task stops at its next await even when it is blocked on an
//! unreachable peer. Every task also holds a [`DoneGuard`]; a supervisor task sees the guard
//! channel close when the last task has exited and flips `stopped`, which is what
//! `Transport::shutdown` awaits (with a time bound).

use tokio::sync::{mpsc, watch};

/// A task's view of the shutdown signal.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub(crate) fn new(rx: watch::Receiver<bool>) -> Self {
        Self { rx }
    }

    /// Resolves once shutdown is requested or the transport handle is gone. Cancel-safe.
    pub(crate) async fn wait(&mut self) {
        // An error means the sender (the transport) was dropped: that is a shutdown too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Held by each task; dropped when the task ends.
#[derive(Clone, Debug)]
pub(crate) struct DoneGuard {
    _tx: mpsc::Sender<()>,
}

impl DoneGuard {
    /// A handle that does not keep the supervisor waiting, from which a guard for a task
    /// started later (a link of a peer added at runtime) can be made.
    pub(crate) fn downgrade(&self) -> WeakDoneGuard {
        WeakDoneGuard {
            tx: self._tx.downgrade(),
        }
    }
}

/// Makes [`DoneGuard`]s for tasks started after the transport, without itself counting as a
/// running task.
#[derive(Clone, Debug)]
pub(crate) struct WeakDoneGuard {
    tx: mpsc::WeakSender<()>,
}

impl WeakDoneGuard {
    /// A guard for a new task; `None` once every task has ended (the transport has stopped).
    pub(crate) fn upgrade(&self) -> Option<DoneGuard> {
        self.tx.upgrade().map(|tx| DoneGuard { _tx: tx })
    }
}

/// Creates the guard (to clone into tasks) and spawns nothing: the caller runs [`supervise`].
pub(crate) fn done_channel() -> (DoneGuard, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel(1);
    (DoneGuard { _tx: tx }, rx)
}

/// Waits until every [`DoneGuard`] is dropped, then reports `stopped`.
pub(crate) async fn supervise(mut done: mpsc::Receiver<()>, stopped: watch::Sender<bool>) {
    // Nobody sends on this channel: `recv` returns `None` once all guards are gone.
    while done.recv().await.is_some() {}
    stopped.send_replace(true);
}
