//! The end of a node's shutdown (I10), and its [`ShutdownReport`].
//!
//! The registry tells every actor to stop and hands the rest to [`finish`], a task of its own
//! outside the node's kill switch: it waits, within `shutdown_timeout` in all, for the
//! transport, the storage actor and the heartbeat executor to end, then for the node's tasks;
//! whatever still runs at the deadline is aborted (tasks) or left behind (a thread stuck in a
//! system call), and the report says which.

use std::time::Duration;

use raft_core::GroupId;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::kill::KillSwitch;
use crate::storage::{StorageControl, StorageHandle, StorageRequest};
use crate::wire::Net;

/// What [`Node::shutdown`](crate::Node::shutdown) did, and what it had to give up on to end
/// within `shutdown_timeout`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Groups being added (recovering from storage) when the shutdown came: their
    /// `add_partition` calls answered [`Error::Stopped`](crate::Error::Stopped).
    pub adds_abandoned: Vec<GroupId>,
    /// Groups whose last writes the storage actor had applied but not synced when it was
    /// stopped (a sync that did not complete in time: a hung disk). None of them had been
    /// acknowledged; they may or may not be on disk at the next start.
    pub unsynced_groups: Vec<GroupId>,
    /// Tasks of the node still running at the deadline, aborted.
    pub tasks_aborted: usize,
    /// The storage actor ended (its thread, if it has one, joined): its store is closed, so
    /// the same directory can be opened again.
    pub storage_stopped: bool,
    /// The heartbeat actor ended (its thread, if it has one, joined).
    pub heartbeat_stopped: bool,
    /// The transport shut down within the timeout.
    pub transport_stopped: bool,
    /// The shutdown had already been done (or the registry was gone): nothing was done.
    pub already_stopped: bool,
}

impl ShutdownReport {
    /// Everything ended on its own: no task aborted, no thread left behind, no add or write
    /// given up.
    pub fn is_clean(&self) -> bool {
        self.adds_abandoned.is_empty()
            && self.unsynced_groups.is_empty()
            && self.tasks_aborted == 0
            && self.storage_stopped
            && self.heartbeat_stopped
            && self.transport_stopped
    }
}

/// The heartbeat executor's thread (`HeartbeatExecutor::Dedicated`) and its end signal.
pub(crate) struct HeartbeatThread {
    pub(crate) thread: std::thread::JoinHandle<()>,
    /// Disconnected once the thread's runtime has been dropped.
    pub(crate) done: flume::Receiver<()>,
}

/// What `finish` needs from the registry.
pub(crate) struct Finish {
    pub(crate) timeout: Duration,
    pub(crate) net: Net,
    pub(crate) storage: StorageHandle,
    pub(crate) storage_control: StorageControl,
    pub(crate) heartbeat: Option<HeartbeatThread>,
    pub(crate) switch: Option<KillSwitch>,
    pub(crate) adds_abandoned: Vec<GroupId>,
}

/// How often the finisher looks whether the node's tasks have all ended.
const POLL: Duration = Duration::from_millis(5);

/// Waits (bounded) for the node's parts to end after they were told to stop, aborts what is
/// left, joins the threads that ended, and reports.
pub(crate) async fn finish(f: Finish) -> ShutdownReport {
    let start = Instant::now();
    let deadline = start + f.timeout;
    // Half the time for the storage actor to sync what the groups wrote last and stop by
    // itself; then it is told to stop at once, abandoning a sync that still hangs.
    let half = start + f.timeout / 2;
    let Finish {
        net,
        storage,
        storage_control,
        heartbeat,
        switch,
        adds_abandoned,
        ..
    } = f;
    let StorageControl {
        stop,
        done,
        thread: storage_thread,
    } = storage_control;

    let transport = tokio::time::timeout_at(deadline, net.shutdown());
    let storage_end = async {
        // Queued behind the groups' last writes, so they are synced first; waits for room if
        // the queue is full (this task is no actor: nothing waits on it).
        let _ = tokio::time::timeout_at(half, storage.send(StorageRequest::Shutdown)).await;
        let exit = match tokio::time::timeout_at(half, done.recv_async()).await {
            Ok(r) => Some(r),
            Err(_) => {
                let _ = stop.try_send(());
                tokio::time::timeout_at(deadline, done.recv_async())
                    .await
                    .ok()
            }
        };
        // `Err`: the actor is gone without a report (its thread panicked).
        exit.map(|r| r.unwrap_or_default())
    };
    let heartbeat_end = async {
        match &heartbeat {
            Some(h) => tokio::time::timeout_at(deadline, h.done.recv_async())
                .await
                .is_ok(),
            None => true,
        }
    };
    let (transport, storage_exit, heartbeat_ended) =
        tokio::join!(transport, storage_end, heartbeat_end);

    // The node's tasks (partitions, replicators, apply actors, router; the storage and
    // heartbeat actors when they run as tasks) were told to stop: give them the rest of the
    // time, then abort whatever still runs.
    let mut tasks_aborted = 0;
    if let Some(switch) = switch {
        while switch.live() > 0 && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        tasks_aborted = switch.live();
        drop(switch);
    }

    // Threads that reported their end are past everything but returning: join them.
    let storage_stopped = match (storage_thread, storage_exit.is_some()) {
        (Some(t), true) => t.join().is_ok(),
        (Some(_), false) => false,
        (None, ended) => ended,
    };
    let heartbeat_stopped = match heartbeat {
        Some(h) if heartbeat_ended => h.thread.join().is_ok(),
        Some(_) => false,
        None => true,
    };
    let report = ShutdownReport {
        adds_abandoned,
        unsynced_groups: storage_exit.map(|e| e.unsynced).unwrap_or_default(),
        tasks_aborted,
        storage_stopped,
        heartbeat_stopped,
        transport_stopped: transport.is_ok(),
        already_stopped: false,
    };
    if report.is_clean() {
        info!(took = ?start.elapsed(), "node shut down");
    } else {
        warn!(?report, took = ?start.elapsed(), "node shut down, abandoning what did not stop in time");
    }
    report
}
