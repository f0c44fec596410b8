//! [`NodeBuilder`]: collects a node's transport, store and executors, then starts its actors.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use raft_net::{Inbound, Transport};
use raft_storage::LogStore;
use tracing::{Instrument, info, info_span};

use super::shutdown::HeartbeatThread;
use super::{Node, NodeShared, registry, router};
use crate::config::NodeConfig;
use crate::error::Error;
use crate::heartbeat;
use crate::kill::Kill;
use crate::mailbox::deadline::Deadlines;
use crate::state_machine::StateMachine;
use crate::storage::{self, StorageControl, StorageHandle, StorageMode};
use crate::wire::{Net, WireMsg};

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

type StoreStarter = Box<
    dyn FnOnce(
            usize,
            StorageMode,
            &Kill,
            Duration,
        ) -> std::io::Result<(StorageHandle, StorageControl)>
        + Send,
>;

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
    /// A builder with the production defaults: storage on its own thread, the heartbeat
    /// actor on its own executor.
    pub(super) fn new(cfg: NodeConfig) -> Self {
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
        let (storage, storage_control) = start_store(
            self.cfg.storage_queue,
            self.storage_mode,
            &kill,
            self.sync_delay,
        )
        .map_err(|e| Error::Storage(format!("could not start the storage thread: {e}")))?;
        let (hb, hb_actor) = heartbeat::new(&self.cfg, net.clone(), inbound.heartbeat.clone());
        let hb_stats = hb.stats().clone();
        let span = info_span!("heartbeat", node = self.cfg.node_id);
        let heartbeat_thread = match self.heartbeat {
            HeartbeatExecutor::Dedicated => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Storage(format!("heartbeat runtime: {e}")))?;
                // Disconnected when the thread is done with its runtime (shutdown joins it).
                let (done_tx, done) = flume::bounded::<()>(1);
                let thread = std::thread::Builder::new()
                    .name("raft-heartbeat".into())
                    .spawn({
                        let kill = kill.clone();
                        move || {
                            rt.block_on(kill.run(hb_actor.run().instrument(span)));
                            drop(rt);
                            drop(done_tx);
                        }
                    })
                    .map_err(|e| Error::Storage(format!("heartbeat thread: {e}")))?;
                Some(HeartbeatThread { thread, done })
            }
            HeartbeatExecutor::Handle(h) => {
                let kill = kill.clone();
                h.spawn(async move { kill.run(hb_actor.run().instrument(span)).await });
                None
            }
            HeartbeatExecutor::Current => {
                kill.spawn(hb_actor.run().instrument(span));
                None
            }
        };
        let cfg = Arc::new(self.cfg);
        let (reg_tx, table_rx) = registry::spawn(registry::Parts {
            cfg: cfg.clone(),
            net: net.clone(),
            storage,
            storage_control,
            heartbeat: hb,
            heartbeat_thread,
            switch,
            kill: kill.clone(),
        });
        let unknown = Arc::new(AtomicU64::new(0));
        router::spawn(
            &kill,
            cfg.node_id,
            inbound.data,
            table_rx.clone(),
            unknown.clone(),
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
