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

mod link;
mod listener;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
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
use crate::shutdown::{Shutdown, done_channel, supervise};
use crate::transport::{
    Envelope, GroupId, Inbound, InboundSenders, Lane, NodeId, Transport, inbound_channels,
};

use link::{Link, LinkSettings};
use listener::{ListenerSettings, ListenerTask};

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

/// Send queues of one peer.
#[derive(Debug)]
struct PeerQueues {
    heartbeat: flume::Sender<Bytes>,
    data: flume::Sender<Bytes>,
    bulk: flume::Sender<Bytes>,
}

struct Inner<M> {
    node_id: NodeId,
    max_frame_size: usize,
    large_frame_threshold: usize,
    /// Fixed at start: the send path reads it without any lock.
    peers: BTreeMap<NodeId, PeerQueues>,
    local: InboundSenders<M>,
    metrics: Arc<Metrics>,
    shutdown_tx: watch::Sender<bool>,
    stopped_rx: watch::Receiver<bool>,
    shutdown_timeout: std::time::Duration,
    heartbeat_runtime: Handle,
    local_addrs: PeerAddrs,
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
        let peer_ids: BTreeSet<NodeId> =
            config.peers.keys().copied().filter(|p| *p != me).collect();
        let metrics = Arc::new(Metrics::new(me, peer_ids.iter().copied()));
        let (local, inbound) = inbound_channels(
            config.inbound_heartbeat_capacity,
            config.inbound_data_capacity,
        );
        let shutdown_rx = shutdown_tx.subscribe();
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (done, done_rx) = done_channel();
        let shutdown = Shutdown::new(shutdown_rx);

        let link_settings = Arc::new(LinkSettings {
            cluster_id: config.cluster_id,
            write_batch_bytes: config.write_batch_bytes,
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
            connect_timeout: config.connect_timeout,
            handshake_timeout: config.handshake_timeout,
            write_timeout: config.write_timeout,
            tls: config.tls.clone(),
        });
        let mut peers = BTreeMap::new();
        for (&peer, addrs) in config.peers.iter().filter(|(p, _)| **p != me) {
            let counters = metrics
                .peer(peer)
                .cloned()
                .ok_or_else(|| io::Error::other("metrics missing a peer"))?;
            let (hb_tx, hb_rx) = flume::bounded(config.heartbeat_queue_capacity);
            let (data_tx, data_rx) = flume::bounded(config.data_queue_capacity);
            let (bulk_tx, bulk_rx) = flume::bounded(config.bulk_queue_capacity);
            let link = |lane, addr, small, bulk| Link {
                local: me,
                peer,
                lane,
                addr,
                small,
                bulk,
                counters: counters.clone(),
                settings: link_settings.clone(),
                shutdown: shutdown.clone(),
                _done: done.clone(),
            };
            heartbeat_runtime.spawn(link(Lane::Heartbeat, addrs.heartbeat, hb_rx, None).run());
            data_runtime.spawn(link(Lane::Data, addrs.data, data_rx, Some(bulk_rx)).run());
            peers.insert(
                peer,
                PeerQueues {
                    heartbeat: hb_tx,
                    data: data_tx,
                    bulk: bulk_tx,
                },
            );
        }

        let listener_settings = |lane| {
            Arc::new(ListenerSettings {
                identity: ListenerIdentity {
                    cluster_id: config.cluster_id,
                    node_id: me,
                    lane,
                    peers: peer_ids.clone(),
                },
                max_frame_size: config.max_frame_size,
                handshake_timeout: config.handshake_timeout,
                tls: config.tls.clone(),
                max_connections: config.max_inbound_connections,
            })
        };
        let listener_task = |lane, listener| ListenerTask::<M> {
            listener,
            settings: listener_settings(lane),
            inbound: local.lane(lane).clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            done: done.clone(),
        };
        heartbeat_runtime.spawn(listener_task(Lane::Heartbeat, listeners.heartbeat).run());
        data_runtime.spawn(listener_task(Lane::Data, listeners.data).run());
        // Only tasks hold guards: once they have all ended, the supervisor reports `stopped`.
        drop(done);
        data_runtime.spawn(supervise(done_rx, stopped_tx));

        let inner = Inner {
            node_id: me,
            max_frame_size: config.max_frame_size,
            large_frame_threshold: config.large_frame_threshold,
            peers,
            local,
            metrics,
            shutdown_tx,
            stopped_rx,
            shutdown_timeout: config.shutdown_timeout,
            heartbeat_runtime,
            local_addrs,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            inbound,
        ))
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

    /// The configured peers (this node excluded).
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.inner.peers.keys().copied()
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
        let (Some(queues), Some(counters)) = (inner.peers.get(&to), inner.metrics.peer(to)) else {
            return Err(SendError::UnknownPeer(to));
        };
        let counters = counters.lane(lane);
        let frame = match encode_message(group, &msg, inner.max_frame_size) {
            Ok(f) => f,
            Err(e) => {
                bump(&counters.dropped_too_large, 1);
                return Err(e);
            }
        };
        let queue = match lane {
            Lane::Heartbeat => &queues.heartbeat,
            Lane::Data if frame.len() > inner.large_frame_threshold => &queues.bulk,
            Lane::Data => &queues.data,
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
        self.inner.metrics.snapshot()
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
