//! `counter demo`: three servers in this process over loopback TCP, each with its WAL in a
//! temporary directory; clients increment without pause while the leader is stopped and
//! restarted a few times; at the end the count must equal the acknowledged increments.
//!
//! The demo reports through a callback (the binary prints each line), so this library never
//! writes to stdout itself.

use std::path::PathBuf;
use std::time::Duration;

use raft_core::{NodeId, Role};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::addrs::{Peers, free_loopback_peers};
use crate::client::ClientError;
use crate::client::{ClientConfig, CounterClient};
use crate::error::ServerError;
use crate::machine::GROUP;
use crate::server::{CounterServer, ServerConfig};

/// Settings of the demo.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Servers (3 or 5 make sense).
    pub nodes: usize,
    /// Concurrent clients, each its own session, each incrementing by 1 in a loop.
    pub clients: usize,
    /// How many times the leader is stopped and restarted.
    pub rounds: usize,
    /// Time under load before each stop.
    pub up: Duration,
    /// Time a stopped leader stays down.
    pub down: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            clients: 4,
            rounds: 3,
            up: Duration::from_secs(2),
            down: Duration::from_millis(1500),
        }
    }
}

/// What the demo counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoReport {
    /// Increments acknowledged to the clients.
    pub acknowledged: u64,
    /// Increments whose clients gave up (unknown outcome: applied once or not at all).
    pub in_doubt: u64,
    /// The count read at the end.
    pub final_value: i64,
}

impl DemoReport {
    /// The exactly-once check: every acknowledged increment counted once, in-doubt ones at
    /// most once.
    pub fn is_consistent(&self) -> bool {
        let v = self.final_value;
        v >= self.acknowledged as i64 && v <= (self.acknowledged + self.in_doubt) as i64
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Invalid demo settings.
    #[error("invalid demo setting: {0}")]
    Config(&'static str),
    /// Temporary directory or port selection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A server failed to start or restart.
    #[error("server: {0}")]
    Server(#[from] ServerError),
    /// The final read failed.
    #[error("client: {0}")]
    Client(#[from] ClientError),
    /// No leader emerged in time.
    #[error("no leader elected within {0:?}")]
    NoLeader(Duration),
}

/// The demo's servers, by id; `None` while stopped.
struct Cluster {
    peers: Peers,
    dir: PathBuf,
    servers: Vec<(NodeId, Option<CounterServer>)>,
}

impl Cluster {
    async fn start_node(&mut self, id: NodeId) -> Result<(), DemoError> {
        let client = self.peers.0[&id]
            .client
            .ok_or(DemoError::Config("missing client address"))?;
        let config = ServerConfig::new(
            id,
            self.peers.clone(),
            self.dir.join(format!("node-{id}")),
            client,
        );
        // A restarted node rebinds its ports; give a just-closed socket a few tries.
        let mut tries = 0;
        let server = loop {
            match CounterServer::start(config.clone()).await {
                Ok(s) => break s,
                Err(ServerError::Bind { .. }) if tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(slot) = self.servers.iter_mut().find(|(i, _)| *i == id) {
            slot.1 = Some(server);
        }
        Ok(())
    }

    async fn leader(&self, within: Duration) -> Result<NodeId, DemoError> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let mut best = None;
            for (id, s) in &self.servers {
                let Some(s) = s else { continue };
                if let Ok(m) = s.node().group_metrics(GROUP).await {
                    if m.role == Role::Leader && best.is_none_or(|(t, _)| m.term > t) {
                        best = Some((m.term, *id));
                    }
                }
            }
            if let Some((_, id)) = best {
                return Ok(id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DemoError::NoLeader(within))
    }

    async fn stop_node(&mut self, id: NodeId) {
        if let Some(slot) = self.servers.iter_mut().find(|(i, _)| *i == id) {
            if let Some(s) = slot.1.take() {
                s.shutdown().await;
            }
        }
    }

    async fn stop_all(&mut self) {
        for (_, s) in &mut self.servers {
            if let Some(s) = s.take() {
                s.shutdown().await;
            }
        }
    }
}

/// Runs the demo, reporting progress through `say`. Returns the counts; check
/// [`DemoReport::is_consistent`].
pub async fn run(config: DemoConfig, mut say: impl FnMut(&str)) -> Result<DemoReport, DemoError> {
    if config.nodes == 0 || config.clients == 0 {
        return Err(DemoError::Config("nodes and clients must be at least 1"));
    }
    let peers = free_loopback_peers(config.nodes)?;
    let dir = std::env::temp_dir().join(format!(
        "counter-demo-{}-{}",
        std::process::id(),
        peers.0[&1].raft.data.port()
    ));
    std::fs::create_dir_all(&dir)?;
    say(&format!("data directory: {}", dir.display()));
    let mut cluster = Cluster {
        servers: peers.0.keys().map(|id| (*id, None)).collect(),
        peers: peers.clone(),
        dir: dir.clone(),
    };
    let result = drive(&mut cluster, &config, &mut say).await;
    cluster.stop_all().await;
    // Let the storage threads close their files before the directory goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn drive(
    cluster: &mut Cluster,
    config: &DemoConfig,
    say: &mut impl FnMut(&str),
) -> Result<DemoReport, DemoError> {
    let ids: Vec<NodeId> = cluster.peers.0.keys().copied().collect();
    for &id in &ids {
        cluster.start_node(id).await?;
    }
    let servers: Vec<_> = cluster
        .servers
        .iter()
        .filter_map(|(_, s)| s.as_ref().map(CounterServer::client_addr))
        .collect();
    let list = cluster
        .peers
        .0
        .iter()
        .map(|(id, p)| match p.client {
            Some(c) => format!("node {id}: raft {} client {c}", p.raft.data),
            None => format!("node {id}: raft {}", p.raft.data),
        })
        .collect::<Vec<_>>()
        .join("; ");
    say(&format!("{} nodes started ({list})", ids.len()));
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    say(&format!("node {leader} is the leader"));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = JoinSet::new();
    for _ in 0..config.clients {
        let mut client = CounterClient::new(ClientConfig::new(servers.clone()))?;
        let mut stop = stop_rx.clone();
        clients.spawn(async move {
            let (mut acked, mut in_doubt) = (0u64, 0u64);
            while !*stop.borrow_and_update() {
                match client.incr(1).await {
                    Ok(_) => acked += 1,
                    Err(_) => in_doubt += 1,
                }
            }
            (acked, in_doubt)
        });
    }
    let mut reader = CounterClient::new(ClientConfig::new(servers.clone()))?;
    for round in 1..=config.rounds {
        tokio::time::sleep(config.up).await;
        let leader = cluster.leader(Duration::from_secs(10)).await?;
        let value = reader.get().await?;
        say(&format!(
            "round {round}: count is {value}; stopping the leader, node {leader}"
        ));
        cluster.stop_node(leader).await;
        tokio::time::sleep(config.down).await;
        let next = cluster.leader(Duration::from_secs(10)).await?;
        cluster.start_node(leader).await?;
        say(&format!(
            "round {round}: node {next} took over; node {leader} restarted from its WAL"
        ));
    }
    tokio::time::sleep(config.up).await;
    stop_tx.send_replace(true);
    let (mut acknowledged, mut in_doubt) = (0, 0);
    while let Some(joined) = clients.join_next().await {
        if let Ok((a, d)) = joined {
            acknowledged += a;
            in_doubt += d;
        }
    }
    let final_value = reader.get().await?;
    Ok(DemoReport {
        acknowledged,
        in_doubt,
        final_value,
    })
}
