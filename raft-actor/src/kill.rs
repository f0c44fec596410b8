//! A node-wide kill switch: every task of a node runs under it, and dropping the switch ends
//! them all without any cleanup — a process crash for the simulation (`Node::crash`), and the
//! end of the grace period of a shutdown.
//!
//! Every task is spawned through [`Kill`], which hands the task's tokio `AbortHandle` to the
//! switch over a channel; dropping the switch aborts them in the order they were handed over,
//! so a crash replays identically from its seed. A running task pays nothing for this: no
//! extra future is polled with it (racing every task against a shared "stop" receive would
//! take that channel's lock on every poll, and make each ending task scan a waiter list as
//! long as the node has tasks).
//!
//! Handles of tasks that have ended are pruned whenever the channel holds twice as many
//! handles as were alive at the last pruning, so memory stays proportional to the live tasks.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::task::AbortHandle;

/// Fewest handles held before pruning is worth a pass.
const MIN_PRUNE: usize = 64;

struct Shared {
    /// Set by the switch's drop before it aborts what the channel holds.
    killed: AtomicBool,
    /// Handles still running at the last pruning.
    live: AtomicUsize,
}

/// The spawning side, cloned into everything that spawns a task of the node.
#[derive(Clone)]
pub(crate) struct Kill {
    tx: flume::Sender<AbortHandle>,
    /// For pruning ended tasks' handles.
    rx: flume::Receiver<AbortHandle>,
    shared: Arc<Shared>,
}

/// The switch: dropping it aborts every task spawned through its [`Kill`]s, and any spawned
/// through them later.
pub(crate) struct KillSwitch {
    /// To put back the handles `live` looked at.
    tx: flume::Sender<AbortHandle>,
    rx: flume::Receiver<AbortHandle>,
    shared: Arc<Shared>,
}

/// A new switch and its spawning side.
pub(crate) fn new() -> (KillSwitch, Kill) {
    let (tx, rx) = flume::unbounded();
    let shared = Arc::new(Shared {
        killed: AtomicBool::new(false),
        live: AtomicUsize::new(0),
    });
    (
        KillSwitch {
            tx: tx.clone(),
            rx: rx.clone(),
            shared: shared.clone(),
        },
        Kill { tx, rx, shared },
    )
}

/// Aborts every task whose handle the channel holds.
fn abort_all(rx: &flume::Receiver<AbortHandle>) {
    for h in rx.drain() {
        h.abort();
    }
}

impl KillSwitch {
    /// How many of the node's tasks are still running (for shutdown, which waits for them to
    /// end before dropping the switch). A task whose handle a concurrent pruning holds for a
    /// moment may be missed: shutdown asks again before it aborts anything.
    pub(crate) fn live(&self) -> usize {
        let held = self.rx.len();
        let mut live = 0;
        for h in self.rx.try_iter().take(held) {
            if !h.is_finished() {
                live += 1;
                // Cannot fail: `self.rx` keeps the channel open.
                let _ = self.tx.send(h);
            }
        }
        live
    }
}

impl Drop for KillSwitch {
    fn drop(&mut self) {
        // Set before draining, so a spawn racing with this drop either has its handle
        // drained here or sees the flag and aborts it itself (see `Kill::track`).
        self.shared.killed.store(true, Ordering::SeqCst);
        abort_all(&self.rx);
    }
}

impl Kill {
    /// Spawns `fut` on the current runtime; it is aborted when the switch is dropped.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = tokio::spawn(fut);
        self.track(task.abort_handle());
    }

    /// Runs `fut` as a task of the current runtime and waits for it to end or be aborted (for
    /// a runtime the caller drives itself, such as the heartbeat thread's).
    pub(crate) async fn run<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = tokio::spawn(fut);
        self.track(task.abort_handle());
        // Ended or aborted: either way the caller is done.
        let _ = task.await;
    }

    fn track(&self, handle: AbortHandle) {
        // Cannot fail: `self.rx` keeps the channel open.
        let _ = self.tx.send(handle);
        if self.shared.killed.load(Ordering::SeqCst) {
            // The switch is gone, perhaps after draining: abort what is left, this one too.
            abort_all(&self.rx);
            return;
        }
        let held = self.tx.len();
        if held >= MIN_PRUNE.max(2 * self.shared.live.load(Ordering::Relaxed)) {
            self.prune(held);
        }
    }

    /// Drops the handles of ended tasks among the `held` oldest.
    fn prune(&self, held: usize) {
        let mut live = 0;
        for h in self.rx.try_iter().take(held) {
            if !h.is_finished() {
                let _ = self.tx.send(h);
                live += 1;
            }
        }
        self.shared.live.store(live, Ordering::Relaxed);
        // Handles were out of the channel for a moment: if the switch was dropped meanwhile,
        // its drain may have missed them.
        if self.shared.killed.load(Ordering::SeqCst) {
            abort_all(&self.rx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A task that never ends by itself and reports when it is dropped.
    fn forever(dropped: flume::Sender<u32>, id: u32) -> impl Future<Output = ()> + Send {
        struct Report(flume::Sender<u32>, u32);
        impl Drop for Report {
            fn drop(&mut self) {
                let _ = self.0.send(self.1);
            }
        }
        // Made before the future, so it reports even if the task never ran.
        let report = Report(dropped, id);
        async move {
            let _report = report;
            std::future::pending::<()>().await;
        }
    }

    /// A kill switch with a `forever` task per id spawned under it; the receiver gets the ids
    /// of the tasks dropped.
    fn spawned(
        ids: std::ops::Range<u32>,
    ) -> (KillSwitch, Kill, flume::Sender<u32>, flume::Receiver<u32>) {
        let (switch, kill) = new();
        let (tx, rx) = flume::unbounded();
        for id in ids {
            kill.spawn(forever(tx.clone(), id));
        }
        (switch, kill, tx, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_switch_aborts_every_task_in_spawn_order() {
        let (switch, kill, tx, rx) = spawned(0..5);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(rx.is_empty());
        drop(switch);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rx.drain().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);

        // Spawned after the switch is gone: aborted at once.
        kill.spawn(forever(tx.clone(), 9));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rx.drain().collect::<Vec<_>>(), vec![9]);
    }

    #[tokio::test(start_paused = true)]
    async fn run_returns_when_the_switch_is_dropped() {
        let (switch, kill) = new();
        let (tx, rx) = flume::unbounded();
        let waiter = tokio::spawn(async move { kill.run(forever(tx, 1)).await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!waiter.is_finished());
        drop(switch);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("run returned")
            .expect("no panic");
        assert_eq!(rx.recv_async().await, Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn handles_of_ended_tasks_do_not_pile_up() {
        let (switch, kill, _tx, rx) = spawned(0..10);
        for _ in 0..10_000 {
            kill.spawn(async {});
            tokio::task::yield_now().await;
        }
        let held = kill.tx.len();
        assert!(
            held <= 2 * MIN_PRUNE,
            "{held} handles held for 10 live tasks"
        );
        // The live ones are still tracked.
        drop(switch);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rx.drain().count(), 10);
    }
}
