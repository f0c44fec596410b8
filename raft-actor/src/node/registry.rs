//! The registry actor: owns the node's table of groups. It adds a group (recovering it from
//! storage), removes one, and stops the node; after every change it publishes an immutable
//! copy of the table (latest value) to the API and the router.
//!
//! It also hears from the groups (`ToRegistry`, queue `registry_queue`): the nodes each one
//! talks to, which keep the transport's peers in step with the configurations (the
//! [`PeerBook`]), and a group whose node learned it was removed from it. Such a group leaves
//! the table as a tombstone (calls for it answer `Removed`) and its storage is purged: the
//! committed configuration no longer needs it, and a node added back later joins afresh, like
//! any new node (with `join_partition`).
//!
//! Adding a group recovers it from storage, which may take long (a large log, a hung disk):
//! that runs as a task of its own, which hands the started group back on the `started` queue,
//! so the registry never awaits storage while it handles a message (I3) and a shutdown is
//! handled at once, also while an add is under way (I10).

use std::collections::BTreeMap;
use std::sync::Arc;

use raft_core::{GroupId, Membership};
use tokio::sync::{oneshot, watch};
use tracing::{Instrument, info, info_span};

use super::peers::PeerBook;
use super::shutdown::{self, HeartbeatThread, ShutdownReport};
use super::table::GroupMap;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::group::messages::{Control, ToRegistry};
use crate::group::{self, GroupHandle};
use crate::heartbeat::HeartbeatHandle;
use crate::kill::Kill;
use crate::metrics::GroupStats;
use crate::state_machine::StateMachine;
use crate::storage::{StorageControl, StorageHandle, StorageRequest};
use crate::wire::Net;

/// One group in the node's table.
pub(super) struct GroupEntry<S: StateMachine> {
    pub(super) handle: GroupHandle<S>,
    pub(super) stats: Arc<GroupStats>,
    /// Which start of the group this is (a group removed and added again is another).
    pub(super) incarnation: u64,
    /// This node was removed from the group: the entry is a tombstone, so calls for the group
    /// answer `Removed` until it is added again or removed with `remove_partition`.
    pub(super) removed: bool,
    /// The group stopped after a fatal error: calls for it answer this error until it is
    /// removed with `remove_partition` (and may then be added again).
    pub(super) failed: Option<Error>,
}

impl<S: StateMachine> Clone for GroupEntry<S> {
    fn clone(&self) -> Self {
        GroupEntry {
            handle: self.handle.clone(),
            stats: self.stats.clone(),
            incarnation: self.incarnation,
            removed: self.removed,
            failed: self.failed.clone(),
        }
    }
}

/// The table of groups as the registry publishes it: an immutable copy per change.
pub(super) type Table<S> = Arc<GroupMap<GroupEntry<S>>>;

/// What the API asks of the registry. Rare control-path messages (adding a group holds two
/// configurations and a state machine), queued a few at a time: their size costs nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum RegistryMsg<S: StateMachine> {
    Add {
        group: GroupId,
        membership: Option<Membership>,
        /// A joining node: the group's membership as the caller knows it, whose addressed
        /// members become transport peers before the leader contacts this node.
        known: Option<Membership>,
        sm: S,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Remove {
        group: GroupId,
        purge: bool,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Shutdown {
        reply: oneshot::Sender<ShutdownReport>,
    },
    /// Simulation: die at once, like a killed process.
    #[cfg(feature = "fault-injection")]
    Crash,
    /// Test hook: stall the storage actor's syncs (a hung disk).
    #[cfg(feature = "fault-injection")]
    StallStorage(std::time::Duration),
}

/// A group started by its own task (recovered from storage and spawned), handed back to the
/// registry.
struct Started<S: StateMachine> {
    group: GroupId,
    incarnation: u64,
    stats: Arc<GroupStats>,
    result: Result<GroupHandle<S>, Error>,
}

/// An add under way.
struct Pending {
    incarnation: u64,
    reply: oneshot::Sender<Result<(), Error>>,
    /// Removed while it started (with this `purge`): stopped as soon as it has started.
    cancelled: Option<bool>,
    /// What the group told the registry before its start task handed it over (its actors
    /// run from the moment they are spawned): handled once it is in the table.
    early: Vec<ToRegistry>,
}

/// Room in the queue of started groups; a start task waits for room (it is no actor).
const STARTED_QUEUE: usize = 64;

/// Owns the table of groups and publishes immutable copies of it (latest value) to the API and
/// the router. It awaits nothing while handling a message: a group starts in a task of its own.
struct Registry<S: StateMachine> {
    cfg: Arc<NodeConfig>,
    net: Net,
    storage: StorageHandle,
    heartbeat: HeartbeatHandle,
    table: GroupMap<GroupEntry<S>>,
    table_tx: watch::Sender<Table<S>>,
    rx: flume::Receiver<RegistryMsg<S>>,
    /// What the groups tell the registry, and the sender each group gets a clone of.
    signals: flume::Receiver<ToRegistry>,
    signals_tx: flume::Sender<ToRegistry>,
    /// The transport's peers as the groups' configurations name them.
    peers: PeerBook,
    /// The incarnation of the next group started.
    next_incarnation: u64,
    /// Dropping it kills every task of the node: after the grace period of a shutdown, or at
    /// once for a simulated crash.
    switch: Option<crate::kill::KillSwitch>,
    kill: Kill,
    /// For shutdown: stops the storage actor and tells when it ended.
    storage_control: Option<StorageControl>,
    /// For shutdown: the heartbeat executor's own thread, if it has one.
    heartbeat_thread: Option<HeartbeatThread>,
    /// Adds under way, by group.
    pending: BTreeMap<GroupId, Pending>,
    started: flume::Receiver<Started<S>>,
    started_tx: flume::Sender<Started<S>>,
}

/// What the registry starts from.
pub(super) struct Parts {
    pub(super) cfg: Arc<NodeConfig>,
    pub(super) net: Net,
    pub(super) storage: StorageHandle,
    pub(super) storage_control: StorageControl,
    pub(super) heartbeat: HeartbeatHandle,
    pub(super) heartbeat_thread: Option<HeartbeatThread>,
    /// The node's kill switch, dropped to end every task of the node.
    pub(super) switch: crate::kill::KillSwitch,
    pub(super) kill: Kill,
}

/// Spawns the registry; returns its queue (bounded: an API call waits for room, no actor
/// sends to it) and the published table.
pub(super) fn spawn<S: StateMachine>(
    parts: Parts,
) -> (flume::Sender<RegistryMsg<S>>, watch::Receiver<Table<S>>) {
    let (table_tx, table_rx) = watch::channel(Arc::new(GroupMap::default()));
    let (tx, rx) = flume::bounded(64);
    let (signals_tx, signals) = flume::bounded(parts.cfg.registry_queue);
    let node = parts.cfg.node_id;
    let (started_tx, started) = flume::bounded(STARTED_QUEUE);
    let registry = Registry {
        storage_control: Some(parts.storage_control),
        heartbeat_thread: parts.heartbeat_thread,
        pending: BTreeMap::new(),
        started,
        started_tx,
        signals,
        signals_tx,
        peers: PeerBook::new(node),
        next_incarnation: 1,
        cfg: parts.cfg,
        net: parts.net,
        storage: parts.storage,
        heartbeat: parts.heartbeat,
        table: GroupMap::default(),
        table_tx,
        rx,
        switch: Some(parts.switch),
        kill: parts.kill.clone(),
    };
    parts
        .kill
        .spawn(registry.run().instrument(info_span!("registry", node)));
    (tx, table_rx)
}

impl<S: StateMachine> Registry<S> {
    async fn run(mut self) {
        loop {
            // Biased (I11): the groups' news first; there is little of it.
            let msg = tokio::select! {
                biased;
                Ok(signal) = self.signals.recv_async() => {
                    self.on_signal(signal);
                    continue;
                }
                Ok(started) = self.started.recv_async() => {
                    self.on_started(started);
                    continue;
                }
                msg = self.rx.recv_async() => msg,
            };
            let Ok(msg) = msg else { break };
            match msg {
                RegistryMsg::Add {
                    group,
                    membership,
                    known,
                    sm,
                    reply,
                } => self.add(group, membership, known, sm, reply),
                RegistryMsg::Remove {
                    group,
                    purge,
                    reply,
                } => {
                    if let Some(p) = self.pending.get_mut(&group) {
                        // Stopped once it has started.
                        p.cancelled = Some(purge);
                        let _ = reply.send(Ok(()));
                        continue;
                    }
                    let r = match self.table.remove(group) {
                        // A tombstone: the group already stopped and its storage is gone.
                        Some(e) if e.removed => {
                            self.publish();
                            Ok(())
                        }
                        Some(e) => {
                            let _ = e.handle.control.try_send(Control::Shutdown);
                            let _ = self
                                .storage
                                .try_send(StorageRequest::Unregister { group, purge });
                            self.peers.drop_group(&self.net, group);
                            self.publish();
                            Ok(())
                        }
                        None => Err(Error::UnknownGroup(group)),
                    };
                    let _ = reply.send(r);
                }
                RegistryMsg::Shutdown { reply } => {
                    self.shutdown(Some(reply));
                    return;
                }
                #[cfg(feature = "fault-injection")]
                RegistryMsg::StallStorage(d) => {
                    let _ = self.storage.try_send(StorageRequest::Stall(d));
                }
                #[cfg(feature = "fault-injection")]
                RegistryMsg::Crash => {
                    // Every task of the node ends at its next poll; nothing is flushed.
                    self.switch = None;
                    return;
                }
            }
        }
        self.shutdown(None);
    }

    /// True if `incarnation` is the running start of `group` (news from a stopped one is
    /// stale).
    fn is_current(&self, group: GroupId, incarnation: u64) -> bool {
        self.table
            .get(group)
            .is_some_and(|e| e.incarnation == incarnation && !e.removed && e.failed.is_none())
    }

    /// News from a group: its peers, or its removal.
    fn on_signal(&mut self, signal: ToRegistry) {
        // From a group still being added: kept until it joins the table.
        let (group, incarnation) = match &signal {
            ToRegistry::Peers {
                group, incarnation, ..
            }
            | ToRegistry::Failed {
                group, incarnation, ..
            }
            | ToRegistry::Removed {
                group, incarnation, ..
            } => (*group, *incarnation),
        };
        if let Some(p) = self.pending.get_mut(&group) {
            if p.incarnation == incarnation {
                p.early.push(signal);
            }
            return;
        }
        match signal {
            ToRegistry::Peers {
                group,
                incarnation,
                nodes,
            } => {
                if self.is_current(group, incarnation) {
                    self.peers.set_group(&self.net, group, nodes);
                }
            }
            ToRegistry::Failed {
                group,
                incarnation,
                error,
            } => {
                if !self.is_current(group, incarnation) {
                    return;
                }
                tracing::error!(group, %error, "group stopped after a fatal error; calls for it answer that error until it is removed");
                if let Some(e) = self.table.get(group).cloned() {
                    self.table.insert(
                        group,
                        GroupEntry {
                            failed: Some(error),
                            ..e
                        },
                    );
                }
                self.publish();
            }
            ToRegistry::Removed {
                group,
                incarnation,
                index,
            } => {
                if !self.is_current(group, incarnation) {
                    return;
                }
                info!(
                    group,
                    index,
                    "removed from the group: it leaves the node's table and its storage is purged"
                );
                if let Some(e) = self.table.get(group).cloned() {
                    self.table.insert(group, GroupEntry { removed: true, ..e });
                }
                self.peers.drop_group(&self.net, group);
                self.publish();
                // Not to be lost, so sent by a task that waits for room (I3: not the registry).
                let storage = self.storage.clone();
                self.kill.spawn(async move {
                    let _ = storage
                        .send(StorageRequest::Unregister { group, purge: true })
                        .await;
                });
            }
        }
    }

    /// Starts adding a group: checks the request, then recovers and spawns the group in a task
    /// of its own, which hands it back on `started` (see `on_started`, which answers `reply`).
    fn add(
        &mut self,
        group: GroupId,
        membership: Option<Membership>,
        known: Option<Membership>,
        sm: S,
        reply: oneshot::Sender<Result<(), Error>>,
    ) {
        if self.pending.contains_key(&group) || self.table.get(group).is_some_and(|e| !e.removed) {
            let _ = reply.send(Err(Error::GroupExists(group)));
            return;
        }
        for m in membership.iter().chain(known.iter()) {
            if let Err(e) = m.validate() {
                let _ = reply.send(Err(Error::Raft {
                    group,
                    source: e.into(),
                }));
                return;
            }
        }
        let stats = Arc::new(GroupStats::default());
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        let wiring = group::Wiring {
            cfg: (*self.cfg).clone(),
            group,
            net: self.net.clone(),
            storage: self.storage.clone(),
            heartbeat: self.heartbeat.clone(),
            stats: stats.clone(),
            kill: self.kill.clone(),
            registry: self.signals_tx.clone(),
            incarnation,
        };
        if let Some(m) = &known {
            let nodes = m
                .all_nodes()
                .into_iter()
                .map(|id| (id, m.addrs_of(id).copied()))
                .collect();
            self.peers.set_group(&self.net, group, nodes);
        }
        self.pending.insert(
            group,
            Pending {
                incarnation,
                reply,
                cancelled: None,
                early: Vec::new(),
            },
        );
        let started = self.started_tx.clone();
        self.kill.spawn(async move {
            // Awaits storage: this task is no actor, and nothing waits on it.
            let result = group::start(wiring, membership, sm).await;
            let _ = started
                .send_async(Started {
                    group,
                    incarnation,
                    stats,
                    result,
                })
                .await;
        });
    }

    /// A group's start task is done: the group joins the table, or its add fails.
    fn on_started(&mut self, started: Started<S>) {
        let Started {
            group,
            incarnation,
            stats,
            result,
        } = started;
        let Some(pending) = self
            .pending
            .remove(&group)
            .filter(|p| p.incarnation == incarnation)
        else {
            return;
        };
        match (result, pending.cancelled) {
            (Ok(handle), None) => {
                self.table.insert(
                    group,
                    GroupEntry {
                        handle,
                        stats,
                        incarnation,
                        removed: false,
                        failed: None,
                    },
                );
                self.publish();
                let _ = pending.reply.send(Ok(()));
                for signal in pending.early {
                    self.on_signal(signal);
                }
            }
            (Ok(handle), Some(purge)) => {
                // Removed while it started.
                let _ = handle.control.try_send(Control::Shutdown);
                let _ = self
                    .storage
                    .try_send(StorageRequest::Unregister { group, purge });
                self.peers.drop_group(&self.net, group);
                let _ = pending.reply.send(Err(Error::Stopped));
            }
            (Err(e), _) => {
                self.peers.drop_group(&self.net, group);
                let _ = pending.reply.send(Err(e));
            }
        }
    }

    fn publish(&self) {
        self.table_tx.send_replace(Arc::new(self.table.clone()));
    }

    /// I10: every actor is told to stop; nothing here waits. Adds under way are answered
    /// `Stopped`; the rest (waiting, within `shutdown_timeout`, for the transport, storage and
    /// heartbeat to end and for every task, then aborting what is left) is done by a task of
    /// its own outside the kill switch, which answers `reply` with its report.
    fn shutdown(&mut self, reply: Option<oneshot::Sender<ShutdownReport>>) {
        for e in self.table.values() {
            let _ = e.handle.control.try_send(Control::Shutdown);
        }
        self.table.clear();
        self.publish();
        let mut adds_abandoned = Vec::new();
        for (group, p) in std::mem::take(&mut self.pending) {
            adds_abandoned.push(group);
            let _ = p.reply.send(Err(Error::Stopped));
        }
        self.heartbeat.shutdown();
        let Some(storage_control) = self.storage_control.take() else {
            return;
        };
        let finish = shutdown::Finish {
            timeout: self.cfg.shutdown_timeout,
            net: self.net.clone(),
            storage: self.storage.clone(),
            storage_control,
            heartbeat: self.heartbeat_thread.take(),
            switch: self.switch.take(),
            adds_abandoned,
        };
        tokio::spawn(async move {
            let report = shutdown::finish(finish).await;
            if let Some(reply) = reply {
                let _ = reply.send(report);
            }
        });
    }
}
