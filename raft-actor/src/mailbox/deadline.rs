//! Request deadlines without a timer per request.
//!
//! `Node::propose` and `Node::read` must answer `Timeout` even when the actor holding the reply
//! never answers. A tokio timer per request would do that, but registering and cancelling it in
//! the runtime's timer wheel (a clock read, an insert under the driver's lock, a removal on
//! drop) is a large share of the CPU of a busy node. Instead, one task per node
//! rings a bell every quarter of `request_timeout` (at least 1 ms); a waiting request counts
//! the rings and gives up on the fifth. It has then waited more than four quarters, so the
//! timeout fires between 1 and 1.25 times `request_timeout` after the request was sent.
//!
//! The bell is really eight bells, one picked per waiter by the thread it starts on, all rung
//! together: a single `Notify` keeps its waiter list under one lock, and with every request
//! of every worker thread registering there that lock is contended.
//!
//! The ringing task is not one of the node's actors: it keeps ringing after a crash or a
//! shutdown, for as long as any `Node` handle holds the bells, so a caller is answered
//! whatever happened to the node (a request waiting at a crashed node is still answered). It
//! stops on the first ring after the last handle is gone.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

/// Rings per `request_timeout`.
const QUARTERS: u32 = 4;

/// Bells rung together; a waiter registers with the one its thread hashes to.
const SHARDS: usize = 8;

/// The node-wide bell that times out waiting requests. A clone shares the bells.
#[derive(Clone)]
pub(crate) struct Deadlines {
    bells: Arc<[Notify; SHARDS]>,
}

impl Deadlines {
    /// Starts the ringing task for `timeout` on the current runtime.
    pub(crate) fn start(timeout: Duration) -> Self {
        let bells: Arc<[Notify; SHARDS]> = Arc::new(std::array::from_fn(|_| Notify::new()));
        let period = (timeout / QUARTERS).max(Duration::from_millis(1));
        let ringer = Arc::downgrade(&bells);
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(bells) = ringer.upgrade() else {
                    return;
                };
                for b in bells.iter() {
                    b.notify_waiters();
                }
            }
        });
        Deadlines { bells }
    }

    /// Waits for `rx`; `None` once the deadline passed first.
    pub(crate) async fn wait<T>(
        &self,
        mut rx: oneshot::Receiver<T>,
    ) -> Option<Result<T, oneshot::error::RecvError>> {
        let mut rings = 0;
        let bell = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::thread::current().id().hash(&mut h);
            &self.bells[h.finish() as usize % SHARDS]
        };
        let mut rung = pin!(bell.notified());
        poll_fn(|cx| {
            if let Poll::Ready(r) = std::pin::Pin::new(&mut rx).poll(cx) {
                return Poll::Ready(Some(r));
            }
            while rung.as_mut().poll(cx).is_ready() {
                rings += 1;
                if rings > QUARTERS {
                    return Poll::Ready(None);
                }
                rung.set(bell.notified());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for an answer that never comes; asserts it timed out within 4 to 5 s.
    async fn times_out_in_4_to_5_s(d: &Deadlines) {
        let (_tx, rx) = oneshot::channel::<u32>();
        let started = tokio::time::Instant::now();
        assert!(d.wait(rx).await.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(4), "{waited:?}");
        assert!(waited <= Duration::from_secs(5), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_between_one_and_one_and_a_quarter_timeouts() {
        let d = Deadlines::start(Duration::from_secs(4));
        times_out_in_4_to_5_s(&d).await;
        // Sent in the middle of a period: still a full timeout at least.
        tokio::time::sleep(Duration::from_millis(500)).await;
        times_out_in_4_to_5_s(&d).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_before_the_deadline_is_returned() {
        let d = Deadlines::start(Duration::from_secs(4));
        let (tx, rx) = oneshot::channel::<u32>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = tx.send(7);
        });
        assert_eq!(d.wait(rx).await.map(Result::ok), Some(Some(7)));

        // A dropped sender is an answer too (the actor stopped).
        let (tx, rx) = oneshot::channel::<u32>();
        drop(tx);
        assert!(matches!(d.wait(rx).await, Some(Err(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_is_answered_after_the_node_is_killed() {
        // The reply's sender outlives the node's tasks (it sits in a queue nobody reads).
        let (switch, kill) = crate::kill::new();
        let d = Deadlines::start(Duration::from_secs(4));
        let (tx, rx) = oneshot::channel::<u32>();
        kill.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(switch);
        let (held, rx2) = oneshot::channel::<u32>();
        let waited = tokio::time::timeout(Duration::from_secs(60), d.wait(rx2)).await;
        assert!(
            matches!(waited, Ok(None)),
            "timed out although the node was killed"
        );
        drop(held);
        // The killed task dropped its sender: that is an answer too.
        assert!(matches!(d.wait(rx).await, Some(Err(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_ringer_stops_when_the_bells_are_dropped() {
        let d = Deadlines::start(Duration::from_secs(4));
        let bells = Arc::downgrade(&d.bells);
        drop(d);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The ringer held only a weak reference and has ended on its next ring.
        assert!(bells.upgrade().is_none());
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            0
        );
    }
}
