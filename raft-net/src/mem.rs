//! The in-memory transport: the same [`Transport`] trait without sockets, for tests, the
//! deterministic simulation and the in-process benchmark.
//!
//! Two modes, chosen when the network is built:
//!
//! - [`MemNetwork::direct`]: `send` puts the message straight into the destination's bounded
//!   inbound channel. No extra task, no faults: the fastest path, for benchmarks.
//! - [`MemNetwork::with_faults`]: every message goes through a router task that owns the fault
//!   state and a seeded [`SplitMix64`]: partitions (both ways or one way), drop probability,
//!   duplication, delay and reordering, and heal. Delays use `tokio::time`, so tests can run on
//!   paused time; with the same seed and the same send order, the same faults happen.
//!
//! Fault changes are messages to the router, acknowledged on a oneshot once applied; a message
//! sent after `partition(..).await` returns is judged under the new partition. The router never
//! awaits a send (deliveries are `try_send`, dropped and counted when full), so it is never part
//! of a wait cycle. Messages carry `M` itself (no encoding), so `bytes_*` counters stay zero.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::MemConfig;
use crate::error::{ConfigError, NetError, SendError};
use crate::metrics::{Metrics, MetricsSnapshot, bump};
use crate::rng::SplitMix64;
use crate::tcp::deliver_local;
use crate::transport::{
    Envelope, GroupId, Inbound, InboundSenders, Lane, NodeId, Transport, inbound_channels,
};

/// Probabilistic faults applied by the router to every message between distinct nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop_probability: f64,
    /// Probability that a message is delivered twice (each copy delayed independently).
    pub duplicate_probability: f64,
    /// Every message is delayed by a uniformly random time in `[min_delay, max_delay]`.
    pub min_delay: Duration,
    /// Upper bound of the delay; zero means no delay.
    pub max_delay: Duration,
    /// Probability that a message is held back by an extra random time up to
    /// `reorder_window`, letting later messages overtake it.
    pub reorder_probability: f64,
    /// Extra hold-back bound for reordered messages.
    pub reorder_window: Duration,
}

impl Faults {
    /// Checks the probabilities and delay bounds; the error names the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, p) in [
            ("drop_probability", self.drop_probability),
            ("duplicate_probability", self.duplicate_probability),
            ("reorder_probability", self.reorder_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::invalid(
                    field,
                    "must be a probability in [0, 1]",
                ));
            }
        }
        if self.max_delay < self.min_delay {
            return Err(ConfigError::invalid(
                "max_delay",
                "must be at least min_delay",
            ));
        }
        Ok(())
    }
}

/// One message on its way through the router.
struct Packet<M> {
    from: NodeId,
    to: NodeId,
    lane: Lane,
    group: GroupId,
    msg: M,
}

/// A message held back until `at`; `seq` keeps equal times in send order.
struct Delayed<M> {
    at: Instant,
    seq: u64,
    packet: Packet<M>,
}

impl<M> PartialEq for Delayed<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Delayed<M> {}
impl<M> PartialOrd for Delayed<M> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Delayed<M> {
    /// Reversed so `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A change of the router's fault state.
enum Control<M> {
    /// Block messages `from → to`.
    Block { from: NodeId, to: NodeId },
    /// Block messages `from → to` on one lane only.
    BlockLane {
        from: NodeId,
        to: NodeId,
        lane: Lane,
    },
    /// Remove every partition.
    Heal,
    /// Replace the probabilistic faults.
    Set(Faults),
    /// Route `node`'s messages to new inbound channels (a restarted node).
    Register {
        node: NodeId,
        senders: InboundSenders<M>,
    },
    /// Stop delivering to `node` (its transport shut down).
    Unregister { node: NodeId },
}

/// A control message with its acknowledgement.
struct Command<M> {
    control: Control<M>,
    ack: oneshot::Sender<()>,
}

/// Every node's inbound senders and counters, for direct delivery.
type DirectTable<M> = Arc<BTreeMap<NodeId, (InboundSenders<M>, Arc<Metrics>)>>;

/// One node of an in-memory network: its transport and its inbound channels.
pub type MemNode<M> = (MemTransport<M>, Inbound<M>);

/// Where a [`MemTransport`] sends to.
enum Route<M> {
    /// Straight into the destination's inbound channels.
    Direct(DirectTable<M>),
    /// Through the fault-injecting router.
    Router {
        packets: flume::Sender<Packet<M>>,
        commands: flume::Sender<Command<M>>,
    },
}

impl<M> Clone for Route<M> {
    fn clone(&self) -> Self {
        match self {
            Route::Direct(map) => Route::Direct(map.clone()),
            Route::Router { packets, commands } => Route::Router {
                packets: packets.clone(),
                commands: commands.clone(),
            },
        }
    }
}

/// One node's in-memory transport. Cheap to clone.
pub struct MemTransport<M> {
    node_id: NodeId,
    peers: Arc<BTreeSet<NodeId>>,
    local: InboundSenders<M>,
    metrics: Arc<Metrics>,
    route: Route<M>,
}

impl<M> Clone for MemTransport<M> {
    fn clone(&self) -> Self {
        Self {
            node_id: self.node_id,
            peers: self.peers.clone(),
            local: self.local.clone(),
            metrics: self.metrics.clone(),
            route: self.route.clone(),
        }
    }
}

impl<M> std::fmt::Debug for MemTransport<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTransport")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Controls the faults of an in-memory network built with [`MemNetwork::with_faults`].
/// Cheap to clone. The router task stops once this handle and every transport are dropped.
pub struct MemNetwork<M> {
    commands: flume::Sender<Command<M>>,
    packets: flume::Sender<Packet<M>>,
    nodes: Arc<BTreeSet<NodeId>>,
    metrics: Arc<BTreeMap<NodeId, Arc<Metrics>>>,
    config: MemConfig,
}

impl<M> Clone for MemNetwork<M> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            packets: self.packets.clone(),
            nodes: self.nodes.clone(),
            metrics: self.metrics.clone(),
            config: self.config.clone(),
        }
    }
}

impl<M> std::fmt::Debug for MemNetwork<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNetwork")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

fn node_set(nodes: &[NodeId]) -> Result<BTreeSet<NodeId>, ConfigError> {
    let set: BTreeSet<NodeId> = nodes.iter().copied().collect();
    if set.len() != nodes.len() {
        return Err(ConfigError::invalid("nodes", "node ids must be distinct"));
    }
    Ok(set)
}

impl<M: Clone + Send + 'static> MemNetwork<M> {
    /// A fault-free network of `nodes` with direct delivery (no router task; for benchmarks).
    /// Returns one transport and inbound pair per node, in the order given.
    pub fn direct(nodes: &[NodeId], config: &MemConfig) -> Result<Vec<MemNode<M>>, ConfigError> {
        config.validate()?;
        let set = Arc::new(node_set(nodes)?);
        let mut table = BTreeMap::new();
        let mut inbounds = Vec::new();
        for &n in nodes {
            let (senders, inbound) = inbound_channels(
                config.inbound_heartbeat_capacity,
                config.inbound_data_capacity,
            );
            let metrics = Arc::new(Metrics::new(n, set.iter().copied()));
            table.insert(n, (senders, metrics));
            inbounds.push((n, inbound));
        }
        let table = Arc::new(table);
        Ok(inbounds
            .into_iter()
            .filter_map(|(n, inbound)| {
                let (local, metrics) = table.get(&n)?.clone();
                let t = MemTransport {
                    node_id: n,
                    peers: set.clone(),
                    local,
                    metrics,
                    route: Route::Direct(table.clone()),
                };
                Some((t, inbound))
            })
            .collect())
    }

    /// A network of `nodes` whose messages pass through a fault-injecting router seeded with
    /// `seed`. Spawns the router on the current tokio runtime.
    pub fn with_faults(
        nodes: &[NodeId],
        config: &MemConfig,
        seed: u64,
    ) -> Result<(Self, Vec<MemNode<M>>), NetError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let set = Arc::new(node_set(nodes)?);
        let (packets_tx, packets_rx) = flume::bounded(config.router_capacity);
        // Control traffic is tiny; a few slots suffice since every command awaits its ack.
        let (commands_tx, commands_rx) = flume::bounded(64);
        let mut metrics = BTreeMap::new();
        let mut routes = BTreeMap::new();
        let mut pairs = Vec::new();
        for &n in nodes {
            let (senders, inbound) = inbound_channels(
                config.inbound_heartbeat_capacity,
                config.inbound_data_capacity,
            );
            let m = Arc::new(Metrics::new(n, set.iter().copied()));
            metrics.insert(n, m.clone());
            routes.insert(n, senders.clone());
            let t = MemTransport {
                node_id: n,
                peers: set.clone(),
                local: senders,
                metrics: m,
                route: Route::Router {
                    packets: packets_tx.clone(),
                    commands: commands_tx.clone(),
                },
            };
            pairs.push((t, inbound));
        }
        let metrics = Arc::new(metrics);
        let router = Router {
            routes,
            metrics: metrics.clone(),
            blocked: BTreeSet::new(),
            blocked_lanes: BTreeSet::new(),
            faults: Faults::default(),
            rng: SplitMix64::new(seed),
            held: BinaryHeap::new(),
            seq: 0,
            max_in_flight: config.max_in_flight,
        };
        runtime.spawn(router.run(packets_rx, commands_rx));
        let net = Self {
            commands: commands_tx,
            packets: packets_tx,
            nodes: set,
            metrics,
            config: config.clone(),
        };
        Ok((net, pairs))
    }

    async fn command(&self, control: Control<M>) -> Result<(), NetError> {
        let (ack, done) = oneshot::channel();
        self.commands
            .send_async(Command { control, ack })
            .await
            .map_err(|_| NetError::Stopped)?;
        done.await.map_err(|_| NetError::Stopped)
    }

    /// Cuts `a` and `b` apart in both directions.
    pub async fn partition(&self, a: NodeId, b: NodeId) -> Result<(), NetError> {
        self.command(Control::Block { from: a, to: b }).await?;
        self.command(Control::Block { from: b, to: a }).await
    }

    /// Drops messages `from → to` only; `to → from` still flows.
    pub async fn partition_one_way(&self, from: NodeId, to: NodeId) -> Result<(), NetError> {
        self.command(Control::Block { from, to }).await
    }

    /// Drops messages `from → to` on `lane` only: e.g. a hung data connection while heartbeats
    /// still flow, the case honest heartbeats and stall detection are for
    /// (docs/architecture.md).
    pub async fn partition_lane(
        &self,
        from: NodeId,
        to: NodeId,
        lane: Lane,
    ) -> Result<(), NetError> {
        self.command(Control::BlockLane { from, to, lane }).await
    }

    /// Cuts `node` off from every other node, both ways.
    pub async fn isolate(&self, node: NodeId) -> Result<(), NetError> {
        for &other in self.nodes.iter().filter(|n| **n != node) {
            self.partition(node, other).await?;
        }
        Ok(())
    }

    /// Removes every partition (probabilistic faults stay; see [`MemNetwork::set_faults`]).
    pub async fn heal(&self) -> Result<(), NetError> {
        self.command(Control::Heal).await
    }

    /// Replaces the probabilistic faults; `Faults::default()` turns them off.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), NetError> {
        faults.validate()?;
        self.command(Control::Set(faults)).await
    }

    /// A fresh transport and inbound pair for `node` (a restarted node): messages to `node`
    /// go to the new inbound channels from now on. Counters carry over.
    pub async fn restart(&self, node: NodeId) -> Result<MemNode<M>, NetError> {
        let metrics =
            self.metrics.get(&node).cloned().ok_or_else(|| {
                ConfigError::invalid("node", format!("{node} is not in the network"))
            })?;
        let (senders, inbound) = inbound_channels(
            self.config.inbound_heartbeat_capacity,
            self.config.inbound_data_capacity,
        );
        self.command(Control::Register {
            node,
            senders: senders.clone(),
        })
        .await?;
        let t = MemTransport {
            node_id: node,
            peers: self.nodes.clone(),
            local: senders,
            metrics,
            route: Route::Router {
                packets: self.packets.clone(),
                commands: self.commands.clone(),
            },
        };
        Ok((t, inbound))
    }
}

/// The router task's state: everything fault injection needs, owned by one task.
struct Router<M> {
    routes: BTreeMap<NodeId, InboundSenders<M>>,
    metrics: Arc<BTreeMap<NodeId, Arc<Metrics>>>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    blocked_lanes: BTreeSet<(NodeId, NodeId, Lane)>,
    faults: Faults,
    rng: SplitMix64,
    held: BinaryHeap<Delayed<M>>,
    seq: u64,
    max_in_flight: usize,
}

impl<M: Clone + Send + 'static> Router<M> {
    async fn run(
        mut self,
        packets: flume::Receiver<Packet<M>>,
        commands: flume::Receiver<Command<M>>,
    ) {
        let mut commands_open = true;
        loop {
            let next_due = self.held.peek().map(|d| d.at);
            tokio::select! {
                biased;
                c = commands.recv_async(), if commands_open => match c {
                    Ok(Command { control, ack }) => {
                        self.apply(control);
                        let _ = ack.send(());
                    }
                    Err(_) => commands_open = false,
                },
                _ = sleep_until_opt(next_due) => self.release_due(),
                p = packets.recv_async() => match p {
                    Ok(p) => self.route(p),
                    // Every transport and the network handle are gone.
                    Err(_) => return,
                },
            }
        }
    }

    fn apply(&mut self, control: Control<M>) {
        match control {
            Control::Block { from, to } => {
                self.blocked.insert((from, to));
            }
            Control::BlockLane { from, to, lane } => {
                self.blocked_lanes.insert((from, to, lane));
            }
            Control::Heal => {
                self.blocked.clear();
                self.blocked_lanes.clear();
            }
            Control::Set(f) => self.faults = f,
            Control::Register { node, senders } => {
                self.routes.insert(node, senders);
            }
            Control::Unregister { node } => {
                self.routes.remove(&node);
            }
        }
    }

    fn sender_counters(&self, p: &Packet<M>) -> Option<&crate::metrics::LaneCounters> {
        let m = self.metrics.get(&p.from)?;
        Some(m.peer(p.to)?.lane(p.lane))
    }

    fn route(&mut self, p: Packet<M>) {
        if self.blocked.contains(&(p.from, p.to))
            || self.blocked_lanes.contains(&(p.from, p.to, p.lane))
            || self.rng.chance(self.faults.drop_probability)
        {
            if let Some(c) = self.sender_counters(&p) {
                bump(&c.dropped_by_fault, 1);
            }
            return;
        }
        if self.rng.chance(self.faults.duplicate_probability) {
            let copy = Packet {
                from: p.from,
                to: p.to,
                lane: p.lane,
                group: p.group,
                msg: p.msg.clone(),
            };
            self.schedule(copy);
        }
        self.schedule(p);
    }

    /// Delivers now, or holds the packet back for its random delay.
    fn schedule(&mut self, packet: Packet<M>) {
        let mut delay = self.random_between(self.faults.min_delay, self.faults.max_delay);
        if self.rng.chance(self.faults.reorder_probability) {
            delay += self.random_between(Duration::ZERO, self.faults.reorder_window);
        }
        if delay.is_zero() && self.held.is_empty() {
            self.deliver(packet);
        } else if self.held.len() >= self.max_in_flight {
            if let Some(c) = self.sender_counters(&packet) {
                bump(&c.dropped_by_fault, 1);
            }
        } else {
            self.seq += 1;
            self.held.push(Delayed {
                at: Instant::now() + delay,
                seq: self.seq,
                packet,
            });
        }
    }

    /// A random delay in whole milliseconds. Sub-millisecond delays would make runs depend on
    /// real time: tokio's timer wheel rounds deadlines to milliseconds counted from the
    /// driver's start, which sits a real-time fraction of a millisecond away from the paused
    /// clock's base, so whether two nearby deadlines share a tick would vary between runs of
    /// the same seed (determinism, docs/architecture.md).
    fn random_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = u64::try_from(lo.as_millis()).unwrap_or(u64::MAX);
        let hi_ms = u64::try_from(hi.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.between(lo_ms, hi_ms))
    }

    /// Delivers every held packet whose time has come, earliest first.
    fn release_due(&mut self) {
        let now = Instant::now();
        while self.held.peek().is_some_and(|d| d.at <= now) {
            if let Some(d) = self.held.pop() {
                self.deliver(d.packet);
            }
        }
    }

    /// Hands a packet to its destination's inbound channel; drops and counts when full.
    fn deliver(&mut self, p: Packet<M>) {
        let receiver = self.metrics.get(&p.to).and_then(|m| m.peer(p.from));
        let Some(route) = self.routes.get(&p.to) else {
            if let Some(c) = self.sender_counters(&p) {
                bump(&c.dropped_disconnected, 1);
            }
            return;
        };
        let lane = p.lane;
        let envelope = Envelope {
            from: p.from,
            group: p.group,
            msg: p.msg,
        };
        match route.lane(lane).try_send(envelope) {
            Ok(()) => {
                if let Some(c) = receiver {
                    bump(&c.lane(lane).frames_received, 1);
                }
            }
            Err(_) => {
                if let Some(c) = receiver {
                    bump(&c.lane(lane).dropped_inbound_full, 1);
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when nothing is held.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl<M: Clone + Send + 'static> Transport<M> for MemTransport<M> {
    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn send(&self, to: NodeId, lane: Lane, group: GroupId, msg: M) -> Result<(), SendError> {
        if to == self.node_id {
            return deliver_local(&self.local, &self.metrics, self.node_id, lane, group, msg);
        }
        if !self.peers.contains(&to) {
            return Err(SendError::UnknownPeer(to));
        }
        let counters = self.metrics.peer(to).map(|c| c.lane(lane));
        let result = match &self.route {
            Route::Direct(table) => {
                let Some((senders, their_metrics)) = table.get(&to) else {
                    return Err(SendError::UnknownPeer(to));
                };
                let envelope = Envelope {
                    from: self.node_id,
                    group,
                    msg,
                };
                match senders.lane(lane).try_send(envelope) {
                    Ok(()) => {
                        if let Some(c) = their_metrics.peer(self.node_id) {
                            bump(&c.lane(lane).frames_received, 1);
                        }
                        Ok(())
                    }
                    Err(flume::TrySendError::Full(_)) => {
                        if let Some(c) = their_metrics.peer(self.node_id) {
                            bump(&c.lane(lane).dropped_inbound_full, 1);
                        }
                        Err(SendError::QueueFull { to, lane })
                    }
                    Err(flume::TrySendError::Disconnected(_)) => Err(SendError::Closed),
                }
            }
            Route::Router { packets, .. } => {
                let packet = Packet {
                    from: self.node_id,
                    to,
                    lane,
                    group,
                    msg,
                };
                match packets.try_send(packet) {
                    Ok(()) => Ok(()),
                    Err(flume::TrySendError::Full(_)) => {
                        if let Some(c) = counters {
                            bump(&c.dropped_queue_full, 1);
                        }
                        Err(SendError::QueueFull { to, lane })
                    }
                    Err(flume::TrySendError::Disconnected(_)) => Err(SendError::Closed),
                }
            }
        };
        if result.is_ok() {
            if let Some(c) = counters {
                bump(&c.frames_sent, 1);
            }
        }
        result
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Direct mode: nothing runs, so nothing to stop (drop the [`Inbound`] to stop receiving).
    /// Router mode: the router stops delivering to this node, bounded by one second.
    async fn shutdown(&self) {
        if let Route::Router { commands, .. } = &self.route {
            let (ack, done) = oneshot::channel();
            let cmd = Command {
                control: Control::Unregister { node: self.node_id },
                ack,
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                if commands.send_async(cmd).await.is_ok() {
                    let _ = done.await;
                }
            })
            .await;
        }
    }
}
