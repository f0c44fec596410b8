//! The TCP transport: the handle raft-actor holds, and how it starts its tasks.
//!
//! Per peer and lane there is one outbound link task (dial, handshake, write) and one bounded
//! queue; per lane one listener that spawns a reader task per accepted connection. Heartbeat
//! tasks (links, listener, readers) run on the heartbeat runtime, a dedicated single-thread
//! runtime owned by the transport or passed in by the caller; data tasks on the runtime that
//! called `start`. A CPU-saturated data runtime therefore cannot delay heartbeat I/O.
//!
//! ```text
//! send() ──try_send──▶ [queue peer×lane] ──▶ Link task ──TCP──▶ peer's listener ──▶ reader task
//!   │ (to == self)                                                                   │ try_send
//!   └──────────────────────try_send─────────────────────────▶ Inbound.{heartbeat,data} ◀┘
//! ```
//! Every edge is a `try_send` or a task-owned socket: no task awaits a bounded send, so no
//! wait cycle exists.
//!
//! Peers come and go at runtime ([`Transport::add_peer`], [`Transport::remove_peer`]): each
//! peer id has a slot in a fixed-capacity table (`tcp/peers.rs`) holding its queues, counters
//! and state, made on its first add (which also starts its two links) and kept until the
//! transport stops. The send path finds the slot and checks its state without a lock.

mod link;
mod listener;
mod peers;

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::warn;

use crate::config::{PeerAddrs, TcpConfig};
use crate::error::{NetError, SendError};
use crate::frame::encode_message;
use crate::handshake::ListenerIdentity;
use crate::metrics::{Metrics, MetricsSnapshot, bump};
use crate::shutdown::{DoneGuard, Shutdown, WeakDoneGuard, done_channel, supervise};
use crate::transport::{
    Envelope, GroupId, Inbound, InboundSenders, Lane, NodeId, Transport, inbound_channels,
};
use crate::warn_limit::WarnLimiter;

use link::{Link, LinkSettings};
use listener::{ListenerSettings, ListenerTask};
use peers::{Entry, PeerSlot, PeerTable, QueueCapacities, SlotQueues, TableFull};

/// The two bound listening sockets of a node, one per lane.
///
/// Bound before the transport starts so that ports chosen by the OS (`:0`) are known and can be
/// put in the other nodes' peer maps.
#[derive(Debug)]
pub struct Listeners {
    data: std::net::TcpListener,
    heartbeat: std::net::TcpListener,
}

impl Listeners {
    /// Binds both listeners (non-blocking, ready for tokio).
    pub fn bind(addrs: PeerAddrs) -> io::Result<Self> {
        let data = std::net::TcpListener::bind(addrs.data)?;
        let heartbeat = std::net::TcpListener::bind(addrs.heartbeat)?;
        data.set_nonblocking(true)?;
        heartbeat.set_nonblocking(true)?;
        Ok(Self { data, heartbeat })
    }

    /// Binds both listeners on `127.0.0.1` with OS-chosen ports.
    pub fn bind_loopback() -> io::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(PeerAddrs {
            data: any,
            heartbeat: any,
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> io::Result<PeerAddrs> {
        Ok(PeerAddrs {
            data: self.data.local_addr()?,
            heartbeat: self.heartbeat.local_addr()?,
        })
    }
}

struct Inner<M> {
    node_id: NodeId,
    max_frame_size: usize,
    large_frame_threshold: usize,
    /// Every peer ever added; the send path reads it without any lock (`tcp/peers.rs`).
    table: Arc<PeerTable>,
    /// What starting a new peer's links takes.
    links: LinkStarter,
    local: InboundSenders<M>,
    /// This node's own (self-delivery) and global counters; per-peer ones are in `table`.
    metrics: Arc<Metrics>,
    shutdown_tx: watch::Sender<bool>,
    stopped_rx: watch::Receiver<bool>,
    shutdown_timeout: std::time::Duration,
    heartbeat_runtime: Handle,
    local_addrs: PeerAddrs,
    /// The rate limit of both listeners' warning lines.
    warn: Arc<WarnLimiter>,
}

/// The TCP transport. Cheap to clone; all clones drive the same connections. When the last
/// clone is dropped the transport's tasks stop, as on [`Transport::shutdown`].
pub struct TcpTransport<M> {
    inner: Arc<Inner<M>>,
}

impl<M> Clone for TcpTransport<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M> std::fmt::Debug for TcpTransport<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node_id", &self.inner.node_id)
            .field("local_addrs", &self.inner.local_addrs)
            .finish_non_exhaustive()
    }
}

impl<M> TcpTransport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// Starts the transport with its own heartbeat runtime (a dedicated OS thread running a
    /// single-thread tokio runtime, stopped by shutdown). Data-lane tasks run on the current
    /// runtime, so call this from inside the data runtime.
    pub fn start(config: TcpConfig, listeners: Listeners) -> Result<(Self, Inbound<M>), NetError> {
        config.validate()?;
        let data_runtime = Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // The runtime is built, run and dropped on its own thread: dropping a runtime inside
        // an async context would panic, and this thread is the heartbeat executor anyway.
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let mut stop = Shutdown::new(shutdown_rx);
        let grace = config.shutdown_timeout;
        std::thread::Builder::new()
            .name(format!("raft-net-heartbeat-{}", config.node_id))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(stop.wait());
                runtime.shutdown_timeout(grace);
            })?;
        // Blocks only for the thread's start-up, once, at construction.
        let heartbeat_runtime = handle_rx
            .recv()
            .map_err(|_| io::Error::other("heartbeat runtime thread exited"))??;
        Self::start_inner(
            config,
            listeners,
            data_runtime,
            heartbeat_runtime,
            shutdown_tx,
        )
    }

    /// Starts the transport with heartbeat I/O on `heartbeat_runtime`, a runtime the caller
    /// owns (raft-actor's heartbeat executor, where its HeartbeatActor also runs). It should be
    /// a dedicated single-thread runtime that never runs data-path work.
    pub fn start_with_heartbeat_runtime(
        config: TcpConfig,
        listeners: Listeners,
        heartbeat_runtime: Handle,
    ) -> Result<(Self, Inbound<M>), NetError> {
        config.validate()?;
        let data_runtime = Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let (shutdown_tx, _) = watch::channel(false);
        Self::start_inner(
            config,
            listeners,
            data_runtime,
            heartbeat_runtime,
            shutdown_tx,
        )
    }

    fn start_inner(
        config: TcpConfig,
        listeners: Listeners,
        data_runtime: Handle,
        heartbeat_runtime: Handle,
        shutdown_tx: watch::Sender<bool>,
    ) -> Result<(Self, Inbound<M>), NetError> {
        let local_addrs = listeners.local_addrs()?;
        let me = config.node_id;
        let metrics = Arc::new(Metrics::new(me, std::iter::empty()));
        let table = Arc::new(PeerTable::new(config.max_peers));
        let (local, inbound) = inbound_channels(
            config.inbound_heartbeat_capacity,
            config.inbound_data_capacity,
        );
        let shutdown_rx = shutdown_tx.subscribe();
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (done, done_rx) = done_channel();
        let shutdown = Shutdown::new(shutdown_rx);

        let links = LinkStarter {
            settings: Arc::new(LinkSettings {
                cluster_id: config.cluster_id,
                write_batch_bytes: config.write_batch_bytes,
                backoff_min: config.backoff_min,
                backoff_max: config.backoff_max,
                connect_timeout: config.connect_timeout,
                handshake_timeout: config.handshake_timeout,
                write_timeout: config.write_timeout,
                tls: config.tls.clone(),
            }),
            capacities: QueueCapacities {
                heartbeat: config.heartbeat_queue_capacity,
                data: config.data_queue_capacity,
                bulk: config.bulk_queue_capacity,
            },
            data_runtime: data_runtime.clone(),
            heartbeat_runtime: heartbeat_runtime.clone(),
            shutdown: shutdown.clone(),
            done: done.downgrade(),
        };

        let inner = Inner {
            node_id: me,
            max_frame_size: config.max_frame_size,
            large_frame_threshold: config.large_frame_threshold,
            table,
            links,
            local,
            metrics,
            shutdown_tx,
            stopped_rx,
            shutdown_timeout: config.shutdown_timeout,
            heartbeat_runtime,
            local_addrs,
            warn: Arc::new(WarnLimiter::new(config.warn_interval)),
        };
        // The configured peers are the first add_peer calls (their count was validated),
        // made before the listeners start so that no hello of theirs can arrive first.
        for (&peer, &addrs) in &config.peers {
            inner.add_peer(peer, addrs)?;
        }
        let listener_settings = |lane| {
            Arc::new(ListenerSettings {
                identity: ListenerIdentity {
                    cluster_id: config.cluster_id,
                    node_id: me,
                    lane,
                    peers: BTreeSet::new(),
                },
                table: inner.table.clone(),
                max_frame_size: config.max_frame_size,
                handshake_timeout: config.handshake_timeout,
                tls: config.tls.clone(),
                max_connections: config.max_inbound_connections,
                warn: inner.warn.clone(),
            })
        };
        let listener_task = |lane, listener| ListenerTask::<M> {
            listener,
            settings: listener_settings(lane),
            inbound: inner.local.lane(lane).clone(),
            metrics: inner.metrics.clone(),
            shutdown: shutdown.clone(),
            done: done.clone(),
        };
        inner
            .heartbeat_runtime
            .spawn(listener_task(Lane::Heartbeat, listeners.heartbeat).run());
        data_runtime.spawn(listener_task(Lane::Data, listeners.data).run());

        // Only tasks hold guards: once they have all ended, the supervisor reports `stopped`.
        drop(done);
        data_runtime.spawn(supervise(done_rx, stopped_tx));
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            inbound,
        ))
    }
}

/// What starting the link tasks of a new peer takes.
struct LinkStarter {
    settings: Arc<LinkSettings>,
    capacities: QueueCapacities,
    data_runtime: Handle,
    heartbeat_runtime: Handle,
    shutdown: Shutdown,
    /// Makes a guard for each new link, so shutdown waits for it too, without itself keeping
    /// the supervisor waiting.
    done: WeakDoneGuard,
}

impl<M> Inner<M> {
    /// `Transport::add_peer`: finds or makes `id`'s slot (starting its links if new), then
    /// activates it at `addrs`.
    fn add_peer(&self, id: NodeId, addrs: PeerAddrs) -> Result<(), NetError> {
        if id == self.node_id {
            return Ok(()); // Like an entry for this node in `TcpConfig::peers`: ignored.
        }
        if *self.shutdown_tx.borrow() {
            return Err(NetError::Stopped);
        }
        let slot = match self.table.get(id) {
            Some(slot) => slot,
            None => {
                // Links of a new slot need a guard; none can be had once every task ended.
                let done = self.links.done.upgrade().ok_or(NetError::Stopped)?;
                let caps = self.links.capacities;
                match self.table.get_or_insert(id, || PeerSlot::new(id, caps)) {
                    Err(TableFull) => {
                        return Err(NetError::TooManyPeers {
                            max: self.table.max_peers(),
                        });
                    }
                    Ok(Entry::Existing(slot)) => slot,
                    Ok(Entry::New(slot, queues)) => {
                        self.start_links(slot, queues, done);
                        slot
                    }
                }
            }
        };
        slot.activate(addrs);
        Ok(())
    }

    /// Spawns the heartbeat link (on the heartbeat runtime) and the data link of a new slot.
    fn start_links(&self, slot: &PeerSlot, queues: SlotQueues, done: DoneGuard) {
        let l = &self.links;
        let link = |lane, small, bulk| Link {
            local: self.node_id,
            peer: slot.id,
            lane,
            small,
            bulk,
            counters: slot.counters.clone(),
            settings: l.settings.clone(),
            shutdown: l.shutdown.clone(),
            _done: done.clone(),
        };
        l.heartbeat_runtime
            .spawn(link(Lane::Heartbeat, queues.heartbeat, None).run(slot.watch()));
        l.data_runtime
            .spawn(link(Lane::Data, queues.data, Some(queues.bulk)).run(slot.watch()));
    }
}

impl<M> TcpTransport<M> {
    /// The addresses this node listens on.
    pub fn local_addrs(&self) -> PeerAddrs {
        self.inner.local_addrs
    }

    /// The heartbeat runtime: spawn heartbeat-path work (raft-actor's HeartbeatActor) here so
    /// it shares an executor with heartbeat I/O and never with the data path.
    pub fn heartbeat_runtime(&self) -> Handle {
        self.inner.heartbeat_runtime.clone()
    }

    /// The active peers (this node excluded), in increasing id order: those of
    /// `TcpConfig::peers` and of later `add_peer` calls, minus those removed since.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let mut ids: Vec<NodeId> = self
            .inner
            .table
            .slots()
            .filter(|slot| slot.is_active())
            .map(|slot| slot.id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
    }
}

#[async_trait]
impl<M> Transport<M> for TcpTransport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    fn send(&self, to: NodeId, lane: Lane, group: GroupId, msg: M) -> Result<(), SendError> {
        let inner = &*self.inner;
        if to == inner.node_id {
            return deliver_local(
                &inner.local,
                &inner.metrics,
                inner.node_id,
                lane,
                group,
                msg,
            );
        }
        let Some(slot) = inner.table.get(to).filter(|slot| slot.is_active()) else {
            return Err(SendError::UnknownPeer(to));
        };
        let counters = slot.counters.lane(lane);
        let frame = match encode_message(group, &msg, inner.max_frame_size) {
            Ok(f) => f,
            Err(e) => {
                bump(&counters.dropped_too_large, 1);
                return Err(e);
            }
        };
        let queue = match lane {
            Lane::Heartbeat => &slot.heartbeat,
            Lane::Data if frame.len() > inner.large_frame_threshold => &slot.bulk,
            Lane::Data => &slot.data,
        };
        match queue.try_send(frame) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(_)) => {
                bump(&counters.dropped_queue_full, 1);
                Err(SendError::QueueFull { to, lane })
            }
            Err(flume::TrySendError::Disconnected(_)) => {
                bump(&counters.dropped_disconnected, 1);
                Err(SendError::Closed)
            }
        }
    }

    fn metrics(&self) -> MetricsSnapshot {
        let peers = self.inner.table.slots().map(|s| (s.id, &*s.counters));
        let mut snapshot = self.inner.metrics.snapshot_with(peers);
        snapshot.warnings_suppressed = self.inner.warn.suppressed();
        snapshot
    }

    /// Adds `id` at `addrs`, or moves it there: see the trait. A new id gets a slot (its
    /// queues, counters and two link tasks) that is kept until the transport stops; a known
    /// id, removed or not, reuses its slot. With new addresses, each lane whose address
    /// changed closes its connection and dials the new one at once; what is queued is kept.
    /// Adding this node itself is ignored.
    ///
    /// Errors: [`NetError::TooManyPeers`] when `id` would be the `max_peers + 1`-th distinct
    /// id; [`NetError::Stopped`] after shutdown.
    fn add_peer(&self, id: NodeId, addrs: PeerAddrs) -> Result<(), NetError> {
        self.inner.add_peer(id, addrs)
    }

    /// Removes `id`: from now on `send` to it fails with [`SendError::UnknownPeer`] and its
    /// handshakes are refused. Its links close their connections, drop what is queued
    /// (counted as `dropped_removed`) and stop dialing; its established inbound connections
    /// are closed at once (each reader watches its peer's state). Its counters are kept, and
    /// adding it again reuses its slot. Unknown ids and repeated removals are ignored.
    fn remove_peer(&self, id: NodeId) {
        if let Some(slot) = self.inner.table.get(id) {
            slot.deactivate();
        }
    }

    async fn shutdown(&self) {
        self.inner.shutdown_tx.send_replace(true);
        let mut stopped = self.inner.stopped_rx.clone();
        let wait = stopped.wait_for(|s| *s);
        if tokio::time::timeout(self.inner.shutdown_timeout, wait)
            .await
            .is_err()
        {
            warn!(
                node = self.inner.node_id,
                "transport tasks did not stop within shutdown_timeout"
            );
        }
    }
}

/// Delivers a self-addressed message straight into the local inbound channel.
pub(crate) fn deliver_local<M>(
    local: &InboundSenders<M>,
    metrics: &Metrics,
    me: NodeId,
    lane: Lane,
    group: GroupId,
    msg: M,
) -> Result<(), SendError> {
    let counters = metrics.peer(me).map(|c| c.lane(lane));
    match local.lane(lane).try_send(Envelope {
        from: me,
        group,
        msg,
    }) {
        Ok(()) => {
            if let Some(c) = counters {
                bump(&c.frames_sent, 1);
                bump(&c.frames_received, 1);
            }
            Ok(())
        }
        Err(flume::TrySendError::Full(_)) => {
            if let Some(c) = counters {
                bump(&c.dropped_inbound_full, 1);
            }
            Err(SendError::QueueFull { to: me, lane })
        }
        Err(flume::TrySendError::Disconnected(_)) => Err(SendError::Closed),
    }
}
