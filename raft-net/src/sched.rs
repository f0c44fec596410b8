//! A scheduling helper shared by this crate's writers and raft-actor's actors.

use std::task::Poll;

/// Lets every task that is runnable now run once before the caller goes on.
///
/// The task wakes itself and returns `Pending` once. tokio queues a task that woke itself
/// behind the tasks already runnable (not in its "LIFO slot"), so the producers that are
/// ready get to queue their items first and the caller then takes them as one batch.
///
/// `tokio::task::yield_now` has the same aim, but also holds the task until the runtime next
/// polls its I/O driver: with nothing else runnable (one client) that is one more
/// `epoll_wait` on every hop of a commit.
pub async fn yield_to_runnable() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}
