//! Helpers shared by the counter's integration tests: an in-process cluster, and servers as
//! child processes (the real binaries) that can be SIGKILLed and restarted.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use counter::addrs::{Peers, free_loopback_peers};
use counter::{ClientConfig, CounterClient, CounterServer, ServerConfig, Status};
use raft_core::NodeId;

/// Servers in this process, each with its WAL under one temporary directory.
pub struct InProc {
    pub peers: Peers,
    pub servers: Vec<CounterServer>,
    pub dir: tempfile::TempDir,
}

impl InProc {
    /// `n` servers on free loopback ports. The ports are probed, then released before the
    /// servers bind them, so a test running in parallel can take one in between: then the
    /// servers started so far are stopped and the cluster starts again on other ports.
    pub async fn start(n: usize) -> InProc {
        for attempt in 1..=5 {
            let peers = free_loopback_peers(n).expect("free ports");
            let dir = tempfile::tempdir().expect("temp dir");
            let mut servers = Vec::new();
            let mut taken = None;
            for (id, p) in &peers.0 {
                let config = ServerConfig::new(
                    *id,
                    peers.clone(),
                    dir.path().join(format!("node-{id}")),
                    p.client.expect("client address"),
                );
                match CounterServer::start(config).await {
                    Ok(s) => servers.push(s),
                    Err(e @ counter::ServerError::Bind { .. }) if attempt < 5 => {
                        taken = Some(e);
                        break;
                    }
                    Err(e) => panic!("server starts: {e:?}"),
                }
            }
            match taken {
                None => {
                    return InProc {
                        peers,
                        servers,
                        dir,
                    };
                }
                Some(e) => {
                    eprintln!("attempt {attempt}: {e}; starting again on other ports");
                    for s in &servers {
                        s.shutdown().await;
                    }
                }
            }
        }
        unreachable!("the last attempt panics on a bind error")
    }

    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.client_addr()).collect()
    }

    pub fn server(&self, id: NodeId) -> &CounterServer {
        self.servers
            .iter()
            .find(|s| s.id() == id)
            .expect("known id")
    }

    /// The current leader (highest term among self-declared leaders), waiting up to 20 s.
    pub async fn leader(&self) -> NodeId {
        for _ in 0..400 {
            let mut best = None;
            for s in &self.servers {
                if let Ok(m) = s.node().group_metrics(counter::GROUP).await {
                    if m.role == raft_core::Role::Leader && best.is_none_or(|(t, _)| m.term > t) {
                        best = Some((m.term, s.id()));
                    }
                }
            }
            if let Some((_, id)) = best {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader within 20 s");
    }

    pub async fn shutdown(self) {
        for s in &self.servers {
            s.shutdown().await;
        }
    }
}

/// A client with test-friendly patience.
pub fn client(servers: Vec<SocketAddr>) -> CounterClient {
    let mut c = ClientConfig::new(servers);
    c.attempt_timeout = Duration::from_millis(500);
    CounterClient::new(c).expect("client")
}

pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_counter-server");
pub const CLIENT_BIN: &str = env!("CARGO_BIN_EXE_counter-client");
pub const DEMO_BIN: &str = env!("CARGO_BIN_EXE_counter");

/// A counter-server child process; killed (SIGKILL) when dropped.
pub struct ServerProc {
    pub id: NodeId,
    pub child: Option<Child>,
    pub args: Vec<String>,
    pub log: PathBuf,
}

impl ServerProc {
    /// The documented command line of node `id`.
    pub fn args(id: NodeId, peers: &Peers, data: &Path) -> Vec<String> {
        let client = peers.0[&id].client.expect("client address");
        vec![
            "--id".into(),
            id.to_string(),
            "--peers".into(),
            peers.to_arg(),
            "--data-dir".into(),
            data.join(format!("node-{id}")).display().to_string(),
            "--listen".into(),
            client.to_string(),
        ]
    }

    /// One server process per peer.
    pub fn spawn_all(peers: &Peers, data: &Path) -> Vec<ServerProc> {
        peers
            .0
            .keys()
            .map(|id| ServerProc::spawn(*id, peers, data))
            .collect()
    }

    pub fn spawn(id: NodeId, peers: &Peers, data: &Path) -> ServerProc {
        Self::spawn_with_args(id, Self::args(id, peers, data), data)
    }

    /// Node `id`'s process with the given arguments, logging into `data`.
    pub fn spawn_with_args(id: NodeId, args: Vec<String>, data: &Path) -> ServerProc {
        let mut p = ServerProc {
            id,
            child: None,
            args,
            log: data.join(format!("node-{id}.log")),
        };
        p.start();
        p
    }

    /// (Re)starts the process with the same arguments, appending to its log file.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(SERVER_BIN)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn counter-server");
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// Every process in `procs` is still running: none exited on its own (a killed one was
/// started again).
pub fn assert_all_running(procs: &mut [ServerProc]) {
    for p in procs {
        assert!(
            p.is_running(),
            "node {} exited on its own; see {}",
            p.id,
            p.log.display()
        );
    }
}

/// The client addresses of `peers` that have one, by node id.
pub fn client_addrs(peers: &Peers) -> Vec<(NodeId, SocketAddr)> {
    peers
        .0
        .iter()
        .filter_map(|(id, p)| p.client.map(|c| (*id, c)))
        .collect()
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asks every server for its status; the leader with the highest term, if any.
pub async fn leader_of(
    client: &mut CounterClient,
    servers: &[(NodeId, SocketAddr)],
) -> Option<NodeId> {
    let mut best: Option<Status> = None;
    for (_, addr) in servers {
        if let Ok(s) = client.status(*addr).await {
            if s.is_leader && best.as_ref().is_none_or(|b| s.term > b.term) {
                best = Some(s);
            }
        }
    }
    best.map(|s| s.node)
}
