//! A node-wide kill switch: every task of a node runs under it, and dropping the switch's only
//! sender ends them all at their next poll, without any cleanup — a process crash, for the
//! simulation (`Node::crash`). Built on a flume channel's disconnection, which wakes receivers
//! in a fixed order, so a crash replays identically from its seed.

use std::future::Future;

/// The receiving side, cloned into every task of a node.
#[derive(Clone)]
pub(crate) struct Kill {
    rx: flume::Receiver<()>,
}

/// The sending side: dropping it kills the node's tasks.
pub(crate) struct KillSwitch {
    _tx: flume::Sender<()>,
}

/// A new switch and its receiving side.
pub(crate) fn new() -> (KillSwitch, Kill) {
    let (tx, rx) = flume::bounded(1);
    (KillSwitch { _tx: tx }, Kill { rx })
}

impl Kill {
    /// Spawns `fut` on the current runtime; it stops when the switch is dropped.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let rx = self.rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = rx.recv_async() => {}
                () = fut => {}
            }
        });
    }

    /// Runs `fut` until it ends or the switch is dropped (for a task the caller spawns itself).
    pub(crate) async fn run<F: Future<Output = ()>>(&self, fut: F) {
        tokio::select! {
            biased;
            _ = self.rx.recv_async() => {}
            () = fut => {}
        }
    }
}
