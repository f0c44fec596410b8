//! `Node`: the public API, its builder, the registry actor that owns the table of groups, and
//! the router that hands network messages to partitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raft_core::{GroupId, Index, InitialState, Membership, Message, NodeId, SnapshotMeta};
use raft_net::{Envelope, Inbound, Transport};
use raft_storage::LogStore;
use tokio::sync::{oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::apply::Proposal;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::heartbeat::{self, HeartbeatHandle};
use crate::kill::Kill;
use crate::mailbox::deadline::Deadlines;
use crate::mailbox::inbox::InboxTx;
use crate::metrics::{GroupMetrics, GroupStats, NodeMetrics};
use crate::partition::{ClientReq, Control, Net, PartitionActor, PartitionHandle, Reply, Wiring};
use crate::replicator::ToReplicator;
use crate::state_machine::{RequestId, StateMachine};
use crate::storage::{self, StorageHandle, StorageMode, StorageRequest, WriteOp};
use crate::table::GroupMap;
use crate::wire::WireMsg;

/// Where the heartbeat actor runs.
#[derive(Clone, Debug, Default)]
pub enum HeartbeatExecutor {
    /// Its own OS thread with a single-thread tokio runtime (production default).
    #[default]
    Dedicated,
    /// A runtime the caller provides (e.g. `TcpTransport::heartbeat_runtime()`, so heartbeat
    /// I/O and the heartbeat actor share one executor).
    Handle(tokio::runtime::Handle),
    /// The current runtime (tests and simulation, where one executor runs everything).
    Current,
}

type StoreStarter =
    Box<dyn FnOnce(usize, StorageMode, &Kill, Duration) -> std::io::Result<StorageHandle> + Send>;

/// Builds a [`Node`] hosting groups of state machine `S`.
pub struct NodeBuilder<S: StateMachine> {
    _sm: std::marker::PhantomData<fn() -> S>,
    cfg: NodeConfig,
    net: Option<(Net, Inbound<WireMsg>)>,
    store: Option<StoreStarter>,
    storage_mode: StorageMode,
    heartbeat: HeartbeatExecutor,
    sync_delay: Duration,
}

impl<S: StateMachine> NodeBuilder<S> {
    /// The transport and its inbound channels (from `TcpTransport::start` or `MemNetwork`).
    pub fn transport<T: Transport<WireMsg>>(
        mut self,
        transport: T,
        inbound: Inbound<WireMsg>,
    ) -> Self {
        self.net = Some((Arc::new(transport), inbound));
        self
    }

    /// The node's store (every group's log and hard state).
    pub fn storage<L: LogStore>(mut self, store: L) -> Self {
        self.store = Some(Box::new(move |cap, mode, kill: &Kill, delay| {
            storage::spawn(store, cap, mode, kill, delay)
        }));
        self
    }

    /// Run storage as a task on the current runtime instead of its own thread (simulation and
    /// paused-time tests: one deterministic executor).
    pub fn storage_mode(mut self, mode: StorageMode) -> Self {
        self.storage_mode = mode;
        self
    }

    /// Where the heartbeat actor runs.
    pub fn heartbeat_executor(mut self, executor: HeartbeatExecutor) -> Self {
        self.heartbeat = executor;
        self
    }

    /// Storage as a task only: wait this long between writing a batch and syncing it
    /// (simulated fsync latency, so a simulated crash can lose unsynced writes).
    pub fn storage_sync_delay(mut self, delay: Duration) -> Self {
        self.sync_delay = delay;
        self
    }

    /// Everything on the current runtime: storage as a task, heartbeat actor as a task. For
    /// deterministic tests; production keeps the defaults.
    pub fn single_executor(self) -> Self {
        self.storage_mode(StorageMode::Task)
            .heartbeat_executor(HeartbeatExecutor::Current)
    }

    /// Starts the node's actors on the current runtime (the data runtime).
    pub async fn start(self) -> Result<Node<S>, Error> {
        self.cfg.validate()?;
        let (net, inbound) = self.net.ok_or(Error::Config {
            field: "transport",
            reason: "not set".into(),
        })?;
        let start_store = self.store.ok_or(Error::Config {
            field: "storage",
            reason: "not set".into(),
        })?;
        let (switch, kill) = crate::kill::new();
        let storage = start_store(
            self.cfg.storage_queue,
            self.storage_mode,
            &kill,
            self.sync_delay,
        )
        .map_err(|e| Error::Storage(format!("could not start the storage thread: {e}")))?;
        let (hb, hb_actor) = heartbeat::new(&self.cfg, net.clone(), inbound.heartbeat.clone());
        let hb_stats = hb.stats().clone();
        let span = info_span!("heartbeat", node = self.cfg.node_id);
        match self.heartbeat {
            HeartbeatExecutor::Dedicated => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Storage(format!("heartbeat runtime: {e}")))?;
                std::thread::Builder::new()
                    .name("raft-heartbeat".into())
                    .spawn({
                        let kill = kill.clone();
                        move || rt.block_on(kill.run(hb_actor.run().instrument(span)))
                    })
                    .map_err(|e| Error::Storage(format!("heartbeat thread: {e}")))?;
            }
            HeartbeatExecutor::Handle(h) => {
                let kill = kill.clone();
                h.spawn(async move { kill.run(hb_actor.run().instrument(span)).await });
            }
            HeartbeatExecutor::Current => {
                kill.spawn(hb_actor.run().instrument(span));
            }
        }
        let (table_tx, table_rx) = watch::channel(Arc::new(GroupMap::default()));
        let (reg_tx, reg_rx) = flume::bounded(64);
        let unknown = Arc::new(AtomicU64::new(0));
        let cfg = Arc::new(self.cfg);
        let registry = Registry {
            cfg: cfg.clone(),
            net: net.clone(),
            storage,
            heartbeat: hb,
            table: GroupMap::default(),
            table_tx,
            rx: reg_rx,
            switch: Some(switch),
            kill: kill.clone(),
        };
        kill.spawn(
            registry
                .run()
                .instrument(info_span!("registry", node = cfg.node_id)),
        );
        let router = Router {
            rx: inbound.data,
            table: table_rx.clone(),
            unknown: unknown.clone(),
        };
        kill.spawn(
            router
                .run()
                .instrument(info_span!("router", node = cfg.node_id)),
        );
        let deadlines = Deadlines::start(cfg.request_timeout);
        info!(node = cfg.node_id, "node started");
        Ok(Node {
            inner: Arc::new(NodeShared {
                cfg,
                registry: reg_tx,
                table: table_rx,
                net,
                unknown,
                hb_stats,
                deadlines,
            }),
        })
    }
}

/// Queues a request on a group's client queue without waiting; its answer comes on the
/// receiver.
fn submit_to<S: StateMachine, T>(
    client: &InboxTx<ClientReq<S>>,
    group: GroupId,
    make: impl FnOnce(Reply<T>) -> ClientReq<S>,
) -> Result<oneshot::Receiver<Result<T, Error>>, Error> {
    let (tx, rx) = oneshot::channel();
    client.try_send(make(tx)).map_err(|e| match e {
        flume::TrySendError::Full(_) => Error::Overloaded { group },
        flume::TrySendError::Disconnected(_) => Error::Stopped,
    })?;
    Ok(rx)
}

/// A proposal's entry bytes: the session id and the command.
fn encode_proposal<C: serde::Serialize>(
    id: Option<RequestId>,
    command: &C,
) -> Result<Vec<u8>, Error> {
    Proposal::encode(id, command).map_err(|e| Error::Codec(e.to_string()))
}

/// One group of a [`Node`], looked up once ([`Node::group`]): proposes and reads like the
/// node's methods of the same names, without a lookup per request.
pub struct GroupClient<S: StateMachine> {
    node: Node<S>,
    group: GroupId,
    client: InboxTx<ClientReq<S>>,
}

impl<S: StateMachine> Clone for GroupClient<S> {
    fn clone(&self) -> Self {
        GroupClient {
            node: self.node.clone(),
            group: self.group,
            client: self.client.clone(),
        }
    }
}

impl<S: StateMachine> GroupClient<S> {
    /// The group this handle sends to.
    pub fn id(&self) -> GroupId {
        self.group
    }

    /// As [`Node::propose`].
    pub async fn propose(&self, command: S::Command) -> Result<S::Response, Error> {
        let rx = self.submit_proposal(None, command)?;
        self.node.answer(self.group, rx).await
    }

    /// As [`Node::propose_with_id`].
    pub async fn propose_with_id(
        &self,
        id: RequestId,
        command: S::Command,
    ) -> Result<S::Response, Error> {
        let rx = self.submit_proposal(Some(id), command)?;
        self.node.answer(self.group, rx).await
    }

    /// As [`Node::read`].
    pub async fn read(&self, query: S::Query) -> Result<S::Response, Error> {
        let rx = submit_to(&self.client, self.group, |reply| ClientReq::Read {
            query,
            reply,
        })?;
        self.node.answer(self.group, rx).await
    }

    fn submit_proposal(
        &self,
        id: Option<RequestId>,
        command: S::Command,
    ) -> Result<oneshot::Receiver<Result<S::Response, Error>>, Error> {
        let payload = encode_proposal(id, &command)?;
        submit_to(&self.client, self.group, |reply| ClientReq::Propose {
            payload,
            reply,
        })
    }
}

/// One group in the node's table.
struct GroupEntry<S: StateMachine> {
    handle: PartitionHandle<S>,
    stats: Arc<GroupStats>,
}

impl<S: StateMachine> Clone for GroupEntry<S> {
    fn clone(&self) -> Self {
        GroupEntry {
            handle: self.handle.clone(),
            stats: self.stats.clone(),
        }
    }
}

type Table<S> = Arc<GroupMap<GroupEntry<S>>>;

enum RegistryMsg<S: StateMachine> {
    Add {
        group: GroupId,
        membership: Option<Membership>,
        sm: S,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Remove {
        group: GroupId,
        purge: bool,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Simulation: die at once, like a killed process.
    #[cfg(feature = "fault-injection")]
    Crash,
    /// Test hook: stall the storage actor's syncs (a hung disk).
    #[cfg(feature = "fault-injection")]
    StallStorage(Duration),
}

/// Owns the table of groups and publishes immutable copies of it (latest value) to the API and
/// the router. Adding a group awaits storage recovery: the registry is on no path storage
/// waits on, so this cannot close a cycle.
struct Registry<S: StateMachine> {
    cfg: Arc<NodeConfig>,
    net: Net,
    storage: StorageHandle,
    heartbeat: HeartbeatHandle,
    table: GroupMap<GroupEntry<S>>,
    table_tx: watch::Sender<Table<S>>,
    rx: flume::Receiver<RegistryMsg<S>>,
    /// Dropping it kills every task of the node: after the grace period of a shutdown, or at
    /// once for a simulated crash.
    switch: Option<crate::kill::KillSwitch>,
    kill: Kill,
}

impl<S: StateMachine> Registry<S> {
    async fn run(mut self) {
        while let Ok(msg) = self.rx.recv_async().await {
            match msg {
                RegistryMsg::Add {
                    group,
                    membership,
                    sm,
                    reply,
                } => {
                    let r = self.add(group, membership, sm).await;
                    let _ = reply.send(r);
                }
                RegistryMsg::Remove {
                    group,
                    purge,
                    reply,
                } => {
                    let r = match self.table.remove(group) {
                        Some(e) => {
                            let _ = e.handle.control.try_send(Control::Shutdown);
                            let _ = self
                                .storage
                                .try_send(StorageRequest::Unregister { group, purge });
                            self.publish();
                            Ok(())
                        }
                        None => Err(Error::UnknownGroup(group)),
                    };
                    let _ = reply.send(r);
                }
                RegistryMsg::Shutdown { reply } => {
                    self.shutdown().await;
                    let _ = reply.send(());
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
        self.shutdown().await;
    }

    async fn add(
        &mut self,
        group: GroupId,
        membership: Option<Membership>,
        sm: S,
    ) -> Result<(), Error> {
        if self.table.contains(group) {
            return Err(Error::GroupExists(group));
        }
        if let Some(m) = &membership {
            m.validate().map_err(|e| Error::Raft {
                group,
                source: e.into(),
            })?;
        }
        let (tx, rx) = oneshot::channel();
        self.storage
            .send(StorageRequest::Recover { group, reply: tx })
            .await
            .map_err(|_| Error::Stopped)?;
        let recovered = rx
            .await
            .map_err(|_| Error::Stopped)?
            .map_err(|e| Error::Storage(e.to_string()))?;
        let (init, from, data) = match recovered {
            Some(r) => {
                if membership.is_some() {
                    info!(
                        group,
                        "group found in storage; recovering it (the given membership is ignored)"
                    );
                }
                let data = if r.snapshot.index > 0 {
                    let (tx, rx) = oneshot::channel();
                    self.storage
                        .send(StorageRequest::ReadSnapshot { group, reply: tx })
                        .await
                        .map_err(|_| Error::Stopped)?;
                    rx.await
                        .map_err(|_| Error::Stopped)?
                        .map_err(|e| Error::Storage(e.to_string()))?
                        .map(|(_, d)| d)
                } else {
                    None
                };
                let from = r.snapshot.clone();
                let init = InitialState::recover(r.hard_state, r.snapshot, &r.entries)
                    .map_err(|e| Error::Storage(format!("group {group}: {e}")))?;
                (init, from, data)
            }
            None => {
                let m = membership.unwrap_or_default();
                let from = SnapshotMeta {
                    index: 0,
                    term: 0,
                    membership: m.clone(),
                };
                if m != Membership::default() {
                    // The initial configuration must be durable before the group promises
                    // anything: it rides in the same group commit as the first vote. Without
                    // it a restarted group would recover with no voters.
                    let op = WriteOp::Snapshot {
                        meta: from.clone(),
                        data: Vec::new(),
                        discard_log: false,
                    };
                    self.storage
                        .send(StorageRequest::Write { group, seq: 0, op })
                        .await
                        .map_err(|_| Error::Stopped)?;
                }
                (InitialState::bootstrap(m), from, None)
            }
        };
        let stats = Arc::new(GroupStats::default());
        let wiring = Wiring {
            cfg: (*self.cfg).clone(),
            group,
            net: self.net.clone(),
            storage: self.storage.clone(),
            heartbeat: self.heartbeat.clone(),
            stats: stats.clone(),
            kill: self.kill.clone(),
        };
        let handle = PartitionActor::spawn(wiring, init, sm, from, data).await?;
        self.table.insert(group, GroupEntry { handle, stats });
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.table_tx.send_replace(Arc::new(self.table.clone()));
    }

    /// I10: every actor is told to stop; nothing here waits on a peer.
    async fn shutdown(&mut self) {
        for e in self.table.values() {
            let _ = e.handle.control.try_send(Control::Shutdown);
        }
        self.table.clear();
        self.publish();
        self.heartbeat.shutdown();
        let _ = self.storage.try_send(StorageRequest::Shutdown);
        let _ = tokio::time::timeout(self.cfg.shutdown_timeout, self.net.shutdown()).await;
        // Actors get `shutdown_timeout` to finish on their own (storage syncs, replies go
        // out); whatever is still running then is stopped by the kill switch (I10).
        if let Some(switch) = self.switch.take() {
            let grace = self.cfg.shutdown_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                drop(switch);
            });
        }
    }
}

/// Hands data-lane messages to their group's partition (drop and count when its queue is full
/// or the group is unknown: Raft retransmits, DESIGN.md I2).
struct Router<S: StateMachine> {
    rx: flume::Receiver<Envelope<WireMsg>>,
    table: watch::Receiver<Table<S>>,
    unknown: Arc<AtomicU64>,
}

impl<S: StateMachine> Router<S> {
    async fn run(mut self) {
        // The router's own copy of the table, taken again only after the registry publishes
        // a change (an atomic load per message to see that; a `borrow` per message would
        // take the channel's read lock, a cache line every `Node::propose` caller touches).
        let mut table = self.table.borrow_and_update().clone();
        while let Ok(env) = self.rx.recv_async().await {
            if self.table.has_changed().unwrap_or(false) {
                table = self.table.borrow_and_update().clone();
            }
            let WireMsg::Raft(m) = env.msg else {
                warn!(from = env.from, "heartbeat frame on the data lane; dropped");
                continue;
            };
            if m.from != env.from {
                warn!(
                    from = env.from,
                    claimed = m.from,
                    "message claims another sender; dropped"
                );
                continue;
            }
            // A peer's answer to this node's replication goes straight to the replicator of
            // that peer when there is one (one hop fewer than through the partition, which
            // only forwarded it); a replicator that sees a higher term in it tells the
            // partition.
            let sent = table.get(env.group).map(|e| deliver(e, m));
            match sent {
                Some(true) => {}
                Some(false) => {
                    debug!(group = env.group, "partition queue full; message dropped");
                }
                None => {
                    self.unknown.fetch_add(1, Ordering::Relaxed);
                    debug!(
                        group = env.group,
                        from = env.from,
                        "message for an unknown group; dropped"
                    );
                }
            }
        }
    }
}

/// Hands `m` to its group: a peer's answer to replication to the replicator of that peer if
/// there is one (dropped and counted if its queue is full), anything else to the partition.
/// False when the partition's queue is full.
fn deliver<S: StateMachine>(e: &GroupEntry<S>, m: Message) -> bool {
    if ToReplicator::takes(&m) {
        if let Some(tx) = e.handle.acks.borrow().get(&m.from) {
            if tx.try_send(ToReplicator::Response(m)).is_err() {
                e.stats.dropped_messages.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        }
    }
    e.handle.raft.try_send(m).is_ok()
}

/// Asks a group's partition actor for its metrics; one that does not answer within a second
/// (frozen, stalled) is described from its counters instead.
async fn group_status<S: StateMachine>(group: GroupId, e: &GroupEntry<S>) -> GroupMetrics {
    let (tx, rx) = oneshot::channel();
    if e.handle.control.try_send(Control::Status(tx)).is_ok() {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), rx).await {
            return m;
        }
    }
    GroupMetrics::from_stats(group, &e.stats)
}

/// A running node: hosts many Raft groups of one state-machine type. Cheap to clone; every
/// method may be called concurrently.
pub struct Node<S: StateMachine> {
    /// Shared by every clone: a clone (one per request in a typical server) is one reference
    /// count, not one per field.
    inner: Arc<NodeShared<S>>,
}

/// What every clone of a [`Node`] refers to.
struct NodeShared<S: StateMachine> {
    cfg: Arc<NodeConfig>,
    registry: flume::Sender<RegistryMsg<S>>,
    table: watch::Receiver<Table<S>>,
    net: Net,
    unknown: Arc<AtomicU64>,
    hb_stats: Arc<crate::metrics::HeartbeatStats>,
    deadlines: Deadlines,
}

impl<S: StateMachine> Clone for Node<S> {
    fn clone(&self) -> Self {
        Node {
            inner: self.inner.clone(),
        }
    }
}

impl<S: StateMachine> Node<S> {
    /// Starts building a node.
    pub fn builder(cfg: NodeConfig) -> NodeBuilder<S> {
        NodeBuilder {
            _sm: std::marker::PhantomData,
            cfg,
            net: None,
            store: None,
            storage_mode: StorageMode::Thread,
            heartbeat: HeartbeatExecutor::Dedicated,
            sync_delay: Duration::ZERO,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.cfg.node_id
    }

    /// Hosts group `group` with state machine `sm`. If storage holds the group, it is
    /// recovered; otherwise it starts with `members` as its voters (every node of a new group
    /// must be given the same set).
    pub async fn add_partition(
        &self,
        group: GroupId,
        members: Membership,
        sm: S,
    ) -> Result<(), Error> {
        self.registry_call(|reply| RegistryMsg::Add {
            group,
            membership: Some(members),
            sm,
            reply,
        })
        .await
    }

    /// Hosts group `group` as a joining node: it waits for the leader to send it the log (use
    /// `add_learner` on the leader, then promote it with `change_membership`).
    pub async fn join_partition(&self, group: GroupId, sm: S) -> Result<(), Error> {
        self.registry_call(|reply| RegistryMsg::Add {
            group,
            membership: None,
            sm,
            reply,
        })
        .await
    }

    /// Stops hosting a group; with `purge` its storage is deleted too.
    pub async fn remove_partition(&self, group: GroupId, purge: bool) -> Result<(), Error> {
        self.registry_call(|reply| RegistryMsg::Remove {
            group,
            purge,
            reply,
        })
        .await
    }

    async fn registry_call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> RegistryMsg<S>,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .registry
            .send_async(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    fn entry(&self, group: GroupId) -> Result<GroupEntry<S>, Error> {
        self.with_entry(group, GroupEntry::clone)
    }

    /// Runs `f` on `group`'s entry under one short borrow of the table.
    fn with_entry<R>(
        &self,
        group: GroupId,
        f: impl FnOnce(&GroupEntry<S>) -> R,
    ) -> Result<R, Error> {
        let table = self.inner.table.borrow();
        let entry = table.get(group).ok_or(Error::UnknownGroup(group))?;
        Ok(f(entry))
    }

    /// Sends a request to a group and waits (bounded) for its answer.
    async fn request<T>(
        &self,
        group: GroupId,
        make: impl FnOnce(Reply<T>) -> ClientReq<S>,
    ) -> Result<T, Error> {
        let rx = self.submit(group, make)?;
        self.answer(group, rx).await
    }

    /// Queues a request at a group without waiting; its answer comes on the receiver. Kept
    /// out of the `async` part so that a waiting request's state holds only the receiver and
    /// the deadline, not the request as well (it is a task's whole state in a client loop).
    fn submit<T>(
        &self,
        group: GroupId,
        make: impl FnOnce(Reply<T>) -> ClientReq<S>,
    ) -> Result<oneshot::Receiver<Result<T, Error>>, Error> {
        // Look up and send under one short borrow of the table (no handle clone per request).
        self.with_entry(group, |e| submit_to(&e.handle.client, group, make))?
    }

    /// Waits (bounded) for the answer to a request [`Node::submit`] queued.
    async fn answer<T>(
        &self,
        group: GroupId,
        rx: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        match self.inner.deadlines.wait(rx).await {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Stopped),
            None => Err(Error::Timeout { group }),
        }
    }

    /// Proposes a command; returns the state machine's response once it is applied here.
    /// Without a session id a retry after `Timeout` may apply twice; see
    /// [`Node::propose_with_id`].
    pub async fn propose(&self, group: GroupId, command: S::Command) -> Result<S::Response, Error> {
        let rx = self.submit_proposal(group, None, command)?;
        self.answer(group, rx).await
    }

    /// Proposes a command under a client session: retries with the same `id` apply at most once
    /// and return the first application's response (exactly-once).
    pub async fn propose_with_id(
        &self,
        group: GroupId,
        id: RequestId,
        command: S::Command,
    ) -> Result<S::Response, Error> {
        let rx = self.submit_proposal(group, Some(id), command)?;
        self.answer(group, rx).await
    }

    /// Encodes and queues a proposal (the synchronous half of `propose`).
    fn submit_proposal(
        &self,
        group: GroupId,
        id: Option<RequestId>,
        command: S::Command,
    ) -> Result<oneshot::Receiver<Result<S::Response, Error>>, Error> {
        let payload = encode_proposal(id, &command)?;
        self.submit(group, |reply| ClientReq::Propose { payload, reply })
    }

    /// A handle on one group of this node, for callers that send it many requests: it holds
    /// the group's queue, so its requests skip the lookup in the node's table (a read lock on
    /// the published table per request, a lock word every worker thread writes). It answers
    /// [`Error::Stopped`] once the group is removed or the node stops; ask for a new one if
    /// the group is added again.
    pub fn group(&self, group: GroupId) -> Result<GroupClient<S>, Error> {
        let client = self.with_entry(group, |e| e.handle.client.clone())?;
        Ok(GroupClient {
            node: self.clone(),
            group,
            client,
        })
    }

    /// A linearizable read (ReadIndex): reflects every write acknowledged before it began.
    pub async fn read(&self, group: GroupId, query: S::Query) -> Result<S::Response, Error> {
        self.request(group, |reply| ClientReq::Read { query, reply })
            .await
    }

    /// Asks the leader to hand leadership to `to` (returns once the transfer started).
    pub async fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<(), Error> {
        self.request(group, |reply| ClientReq::Transfer { to, reply })
            .await
    }

    /// Changes the voters and learners (joint consensus when voters change). Returns the index
    /// of the configuration entry.
    pub async fn change_membership(
        &self,
        group: GroupId,
        target: Membership,
    ) -> Result<Index, Error> {
        self.request(group, |reply| ClientReq::ChangeMembership { target, reply })
            .await
    }

    /// Adds a learner to the group.
    pub async fn add_learner(&self, group: GroupId, id: NodeId) -> Result<Index, Error> {
        self.request(group, |reply| ClientReq::AddLearner { id, reply })
            .await
    }

    /// A snapshot of every group's state. A group whose actor does not answer within a second
    /// is reported from its counters with `responsive: false`.
    pub async fn metrics(&self) -> NodeMetrics {
        let table = self.inner.table.borrow().clone();
        let mut groups = Vec::new();
        for (group, e) in table.sorted() {
            groups.push(group_status(group, e).await);
        }
        NodeMetrics {
            node: self.inner.cfg.node_id,
            groups,
            unknown_group_drops: self.inner.unknown.load(Ordering::Relaxed),
            transport: self.inner.net.metrics(),
            heartbeat: self.inner.hb_stats.snapshot(),
        }
    }

    /// Metrics of one group.
    pub async fn group_metrics(&self, group: GroupId) -> Result<GroupMetrics, Error> {
        let e = self.entry(group)?;
        Ok(group_status(group, &e).await)
    }

    /// Simulation: kills every task of this node at once, losing whatever storage had not
    /// synced, like `kill -9`. Restart it by building a new node over the same durable store.
    #[cfg(feature = "fault-injection")]
    pub fn crash(&self) {
        let _ = self.inner.registry.try_send(RegistryMsg::Crash);
    }

    /// Test hook (DESIGN.md I6): freezes a group's partition actor for `duration`.
    #[cfg(feature = "fault-injection")]
    pub fn freeze_partition(&self, group: GroupId, duration: Duration) -> Result<(), Error> {
        let e = self.entry(group)?;
        e.handle
            .control
            .try_send(Control::Freeze(duration))
            .map_err(|_| Error::Overloaded { group })
    }

    /// Test hook (a hung disk): for `duration` from when storage takes the request, no sync
    /// completes, so nothing new becomes durable and every request queues behind the stall.
    #[cfg(feature = "fault-injection")]
    pub fn stall_storage(&self, duration: Duration) -> Result<(), Error> {
        self.inner
            .registry
            .try_send(RegistryMsg::StallStorage(duration))
            .map_err(|_| Error::Stopped)
    }

    /// Stops every actor of the node and its transport. Completes within the configured
    /// shutdown bound even when peers are unreachable (DESIGN.md I10).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .registry
            .try_send(RegistryMsg::Shutdown { reply: tx })
            .is_ok()
        {
            let _ = tokio::time::timeout(self.inner.cfg.shutdown_timeout * 2, rx).await;
        }
    }
}
