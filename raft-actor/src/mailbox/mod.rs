//! The concurrency primitives the actors talk through. They are the only places outside
//! metric counters where atomics are shared between tasks, so each states its contract in its
//! own docs and is tested on its own: unit tests in each file, and loom models
//! (`loom_tests`, beside the unit tests) of the bell, the count, the inbox, the latest-value
//! channel and the position cell, which run every interleaving of a sender and a receiver —
//! a send cancelled while it waits, a sender dropped right after its last publish — within a
//! bound of 3 preemptions. They build only with `--cfg raft_loom`; see [`sync`] for why that
//! cfg, what is modelled and the command.
//!
//! - [`bell`] — [`Bell`](bell::Bell): the one wake-up an actor waits on; any number of
//!   ringers, one waiter, rings never lost.
//! - [`count`] — [`QueueCount`](count::QueueCount): a lock-free count of a flume queue's
//!   messages that never reads below the number queued and is exact once sends are done
//!   (cancelled ones too), and the wait of `send_async` for room.
//! - [`inbox`] — a bounded queue whose senders ring the receiving actor's bell.
//! - [`latest`] — a latest-value channel: the sender never blocks, the receiver takes the
//!   newest value.
//! - [`position`] — a latest-value `u64` with a sticky error, as one atomic.
//! - [`deadline`] — request deadlines without a timer per request.
//! - [`gather`] — when an actor yields once to gather a batch.
//! - [`sync`] — the atomics, `Arc`, wakers and queues the primitives above are built from,
//!   swapped for loom's instrumented ones (and loom-visible stand-ins) under `cfg(raft_loom)`.

pub(crate) mod bell;
pub(crate) mod count;
pub(crate) mod deadline;
pub(crate) mod gather;
pub(crate) mod inbox;
pub(crate) mod latest;
pub(crate) mod position;
pub(crate) mod sync;
