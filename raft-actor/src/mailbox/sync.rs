//! The synchronization types the mailbox primitives are built from, swappable for model
//! checking.
//!
//! A normal build re-exports the real ones: `std`'s atomics, `Arc` and `OnceLock`,
//! futures-util's `AtomicWaker`, `tokio::sync::Notify` and the `flume` crate. Nothing here
//! costs anything there: every item is a plain re-export.
//!
//! Built with `RUSTFLAGS="--cfg raft_loom"`, the same names are [loom](https://docs.rs/loom)'s
//! instrumented types, so that the `loom_tests` modules beside each primitive can explore every
//! interleaving of a sender and a receiver (within a preemption bound) under the C11 memory
//! model: loom was chosen over shuttle because it is exhaustive within that bound and models
//! weak orderings (a `Relaxed` or misplaced `Acquire` load can read a stale value there),
//! whereas shuttle samples schedules and assumes sequential consistency, so an ordering race
//! can pass it. What loom cannot see into — flume's channel, `std::sync::OnceLock`,
//! `tokio::sync::Notify` — is replaced under that cfg by a minimal stand-in written here with
//! loom's own types, reproducing the behaviour the primitives rely on:
//!
//! - [`flume`]: a bounded queue whose blocked `send_async` leaves its message pending, and
//!   whose receiver moves a pending message into the queue (and wakes its sender) when it
//!   takes one, so a send future can complete without having been polled again, or be dropped
//!   after its message was queued — as flume's do.
//! - `OnceLock`: the std cell holds the value, a loom atomic flag (stored with `Release`
//!   after the value is set, loaded with `Acquire` before it is read) is the point loom sees.
//! - `Notify`: `notified()` counts from its creation; `notify_waiters()` completes every
//!   `Notified` created before it, as tokio's does.
//!
//! None of the stand-ins is compiled into a normal build. (`QueueCount::send_async` no longer
//! waits inside the queue, so only the model of its old design, kept as a `should_panic`
//! test, uses the stand-in's `send_async`.)
//!
//! What the models do not check: the stand-ins' originals themselves (flume's channel, tokio's
//! `Notify`), and futures-util's `AtomicWaker`, for which loom's mock (lock-based, so at least
//! as strongly ordered) stands in; schedules with more preemptions than the bound.
//!
//! The cfg is `raft_loom`, not the `loom` that loom's docs suggest: every crate sees a
//! `RUSTFLAGS` cfg, and tokio compiles out `tokio::net` (and `fs`, `signal`, `process`) under
//! `cfg(loom)`, which raft-net, a dependency of this crate, needs.
//!
//! Run the models with their own target directory (the flag rebuilds every dependency):
//!
//! ```text
//! RUSTFLAGS="--cfg raft_loom" CARGO_TARGET_DIR=target-loom \
//!     cargo test -p raft-actor --lib --release mailbox
//! ```
//!
//! Each model explores every interleaving with up to `MAX_PREEMPTIONS` (3) preemptions (forced
//! switches between runnable threads) unless `LOOM_MAX_PREEMPTIONS` is set.

#[cfg(not(raft_loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(raft_loom))]
pub(crate) use std::sync::OnceLock;
#[cfg(not(raft_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(raft_loom))]
pub(crate) use ::flume;
#[cfg(not(raft_loom))]
pub(crate) use futures_util::task::AtomicWaker;
#[cfg(not(raft_loom))]
pub(crate) use tokio::sync::Notify;

#[cfg(raft_loom)]
pub(crate) use loom::sync::Arc;
#[cfg(raft_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(raft_loom)]
pub(crate) use loom_shim::{AtomicWaker, Notify, OnceLock, flume};

#[cfg(raft_loom)]
mod loom_shim {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use loom::sync::Mutex;
    use loom::sync::atomic::{AtomicBool, Ordering};

    /// `loom::future::AtomicWaker` with futures-util's `register(&Waker)`.
    #[derive(Default)]
    pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

    impl AtomicWaker {
        /// Registers `waker` to be woken by the next [`AtomicWaker::wake`].
        pub(crate) fn register(&self, waker: &Waker) {
            self.0.register_by_ref(waker);
        }

        /// Wakes the registered waker, if any.
        pub(crate) fn wake(&self) {
            self.0.wake();
        }
    }

    /// `std::sync::OnceLock` with its publication made visible to loom (see the module docs).
    pub(crate) struct OnceLock<T> {
        value: std::sync::OnceLock<T>,
        set: AtomicBool,
    }

    impl<T> OnceLock<T> {
        /// An empty cell.
        pub(crate) fn new() -> OnceLock<T> {
            OnceLock {
                value: std::sync::OnceLock::new(),
                set: AtomicBool::new(false),
            }
        }

        /// Sets the value unless one was set; gives `value` back if one was. One setter at a
        /// time (all the primitives need).
        pub(crate) fn set(&self, value: T) -> Result<(), T> {
            if self.set.load(Ordering::Acquire) {
                return Err(value);
            }
            self.value.set(value)?;
            self.set.store(true, Ordering::Release);
            Ok(())
        }

        /// The value, once set.
        pub(crate) fn get(&self) -> Option<&T> {
            if self.set.load(Ordering::Acquire) {
                self.value.get()
            } else {
                None
            }
        }
    }

    /// What `Notify` waiters and notifiers share.
    #[derive(Default)]
    struct NotifyState {
        /// `notify_waiters` calls so far.
        generation: u64,
        wakers: Vec<Waker>,
    }

    /// `tokio::sync::Notify`'s `notified`/`notify_waiters` (see the module docs).
    #[derive(Default)]
    pub(crate) struct Notify(Mutex<NotifyState>);

    impl Notify {
        /// A future completed by the first `notify_waiters` after this call.
        pub(crate) fn notified(&self) -> Notified<'_> {
            let generation = self.0.lock().unwrap().generation;
            Notified {
                notify: self,
                generation,
            }
        }

        /// Completes every `Notified` created before this call.
        pub(crate) fn notify_waiters(&self) {
            let wakers = {
                let mut state = self.0.lock().unwrap();
                state.generation += 1;
                std::mem::take(&mut state.wakers)
            };
            for waker in wakers {
                waker.wake();
            }
        }
    }

    /// The future [`Notify::notified`] returns.
    pub(crate) struct Notified<'a> {
        notify: &'a Notify,
        generation: u64,
    }

    impl Notified<'_> {
        /// As tokio's: after this, a `notify_waiters` completes the future (here it already
        /// does from creation on, as in tokio).
        pub(crate) fn enable(self: Pin<&mut Self>) -> bool {
            false
        }
    }

    impl Future for Notified<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut state = self.notify.0.lock().unwrap();
            if state.generation != self.generation {
                Poll::Ready(())
            } else {
                state.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// A loom-visible stand-in for the part of the `flume` crate the primitives use; errors
    /// are flume's own types, so the primitives' signatures are the same under loom.
    pub(crate) mod flume {
        use std::collections::VecDeque;
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Poll, Waker};

        pub(crate) use ::flume::{SendError, TryRecvError, TrySendError};
        use loom::sync::{Arc, Mutex};

        /// A blocked `send_async`'s message, waiting for room.
        #[cfg_attr(not(test), allow(dead_code))]
        struct Pending<T> {
            id: u64,
            value: T,
            waker: Waker,
        }

        #[cfg_attr(not(test), allow(dead_code))]
        struct Chan<T> {
            queue: VecDeque<T>,
            cap: usize,
            /// Blocked sends, oldest first.
            pending: VecDeque<Pending<T>>,
            next_id: u64,
            senders: usize,
            receivers: usize,
        }

        type Shared<T> = Arc<Mutex<Chan<T>>>;

        /// Sending half.
        pub(crate) struct Sender<T>(Shared<T>);

        /// Receiving half.
        pub(crate) struct Receiver<T>(Shared<T>);

        /// A bounded channel of `cap` messages.
        pub(crate) fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
            let chan = Arc::new(Mutex::new(Chan {
                queue: VecDeque::new(),
                cap,
                pending: VecDeque::new(),
                next_id: 0,
                senders: 1,
                receivers: 1,
            }));
            (Sender(chan.clone()), Receiver(chan))
        }

        impl<T> Clone for Sender<T> {
            fn clone(&self) -> Self {
                self.0.lock().unwrap().senders += 1;
                Sender(self.0.clone())
            }
        }

        impl<T> Drop for Sender<T> {
            fn drop(&mut self) {
                self.0.lock().unwrap().senders -= 1;
            }
        }

        impl<T> Clone for Receiver<T> {
            fn clone(&self) -> Self {
                self.0.lock().unwrap().receivers += 1;
                Receiver(self.0.clone())
            }
        }

        impl<T> Drop for Receiver<T> {
            fn drop(&mut self) {
                let wakers: Vec<Waker> = {
                    let mut chan = self.0.lock().unwrap();
                    chan.receivers -= 1;
                    if chan.receivers > 0 {
                        return;
                    }
                    chan.pending.iter().map(|p| p.waker.clone()).collect()
                };
                // Blocked sends find the channel disconnected.
                for waker in wakers {
                    waker.wake();
                }
            }
        }

        impl<T> Sender<T> {
            /// Queues `value` if there is room.
            pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
                let mut chan = self.0.lock().unwrap();
                if chan.receivers == 0 {
                    Err(TrySendError::Disconnected(value))
                } else if chan.queue.len() >= chan.cap || !chan.pending.is_empty() {
                    Err(TrySendError::Full(value))
                } else {
                    chan.queue.push_back(value);
                    Ok(())
                }
            }

            /// Queues `value`, waiting for room.
            #[cfg_attr(not(test), allow(dead_code))]
            pub(crate) fn send_async(&self, value: T) -> SendFut<'_, T> {
                SendFut {
                    tx: self,
                    value: Some(value),
                    pending: None,
                }
            }

            /// Receivers alive.
            pub(crate) fn receiver_count(&self) -> usize {
                self.0.lock().unwrap().receivers
            }
        }

        /// The future of [`Sender::send_async`].
        #[cfg_attr(not(test), allow(dead_code))]
        pub(crate) struct SendFut<'a, T> {
            tx: &'a Sender<T>,
            /// The message while it is still the future's own.
            value: Option<T>,
            /// The id of its entry in the channel's pending sends, once blocked.
            pending: Option<u64>,
        }

        impl<T> Unpin for SendFut<'_, T> {}

        impl<T> Future for SendFut<'_, T> {
            type Output = Result<(), SendError<T>>;

            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                let this = &mut *self;
                let mut chan = this.tx.0.lock().unwrap();
                if let Some(id) = this.pending {
                    let Some(at) = chan.pending.iter().position(|p| p.id == id) else {
                        // A receiver moved the message into the queue.
                        this.pending = None;
                        return Poll::Ready(Ok(()));
                    };
                    if chan.receivers == 0 {
                        let p = chan.pending.remove(at).expect("found above");
                        this.pending = None;
                        return Poll::Ready(Err(SendError(p.value)));
                    }
                    chan.pending[at].waker = cx.waker().clone();
                    return Poll::Pending;
                }
                let value = this.value.take().expect("polled after completion");
                if chan.receivers == 0 {
                    return Poll::Ready(Err(SendError(value)));
                }
                if chan.queue.len() < chan.cap && chan.pending.is_empty() {
                    chan.queue.push_back(value);
                    return Poll::Ready(Ok(()));
                }
                let id = chan.next_id;
                chan.next_id += 1;
                chan.pending.push_back(Pending {
                    id,
                    value,
                    waker: cx.waker().clone(),
                });
                this.pending = Some(id);
                Poll::Pending
            }
        }

        impl<T> Drop for SendFut<'_, T> {
            fn drop(&mut self) {
                // Cancelled while blocked: the message goes with the future, unless a receiver
                // already moved it into the queue (then it stays there, as with flume).
                if let Some(id) = self.pending {
                    let mut chan = self.tx.0.lock().unwrap();
                    chan.pending.retain(|p| p.id != id);
                }
            }
        }

        impl<T> Receiver<T> {
            /// The oldest message without waiting; `Disconnected` once empty with every
            /// sender gone.
            pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
                let (value, woken) = {
                    let mut chan = self.0.lock().unwrap();
                    let Some(value) = chan.queue.pop_front() else {
                        return Err(if chan.senders == 0 {
                            TryRecvError::Disconnected
                        } else {
                            TryRecvError::Empty
                        });
                    };
                    // Room made: the oldest blocked send's message moves in, and its sender
                    // is woken to find it sent.
                    let woken = chan.pending.pop_front().map(|p| {
                        chan.queue.push_back(p.value);
                        p.waker
                    });
                    (value, woken)
                };
                if let Some(waker) = woken {
                    waker.wake();
                }
                Ok(value)
            }

            /// Messages queued.
            pub(crate) fn len(&self) -> usize {
                self.0.lock().unwrap().queue.len()
            }
        }
    }
}

/// Preemptions explored per interleaving by [`model`] unless `LOOM_MAX_PREEMPTIONS` says
/// otherwise: every schedule of the models here with up to this many forced switches between
/// threads (on top of the switches at blocking points, which are all explored).
#[cfg(all(test, raft_loom))]
pub(crate) const MAX_PREEMPTIONS: usize = 3;

/// Runs `f` under loom for every interleaving within [`MAX_PREEMPTIONS`], and reports on
/// stderr how many it ran (shown with `--nocapture`).
#[cfg(all(test, raft_loom))]
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(MAX_PREEMPTIONS);
    }
    // A plain std counter: it counts executions and takes no part in them.
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    builder.check({
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        }
    });
    eprintln!(
        "{}: {} interleavings explored (preemption bound {:?})",
        std::thread::current().name().unwrap_or("model"),
        runs.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound,
    );
}
