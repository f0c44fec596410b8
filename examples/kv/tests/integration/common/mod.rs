//! Helpers: `kv-server` child processes that can be SIGKILLed and restarted, and a
//! compare-and-swap register model for the linearizability checker.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kv::addrs::{Peers, free_loopback_addrs};
use raft_actor::NodeId;
use raft_sim::linearizability::{Model, Operation};

pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_kv-server");
pub const CLIENT_BIN: &str = env!("CARGO_BIN_EXE_kv");

/// `n` nodes on free loopback ports (ids 1..=n).
pub fn loopback_peers(n: usize) -> Peers {
    let addrs = free_loopback_addrs(n).expect("free ports");
    Peers(
        addrs
            .into_iter()
            .enumerate()
            .map(|(i, a)| (i as NodeId + 1, a))
            .collect(),
    )
}

/// A kv-server child process; killed (SIGKILL) when dropped.
pub struct ServerProc {
    pub id: NodeId,
    pub child: Option<Child>,
    pub args: Vec<String>,
    pub log: PathBuf,
}

impl ServerProc {
    /// Node `id` of the cluster `peers`, `groups` x `replicas`, its WAL under `data`.
    pub fn create(id: NodeId, peers: &Peers, groups: u32, replicas: u32, data: &Path) -> Self {
        let args = vec![
            "--id".into(),
            id.to_string(),
            "--peers".into(),
            peers.to_arg(),
            "--groups".into(),
            groups.to_string(),
            "--replicas".into(),
            replicas.to_string(),
            "--data-dir".into(),
            data.join(format!("node-{id}")).display().to_string(),
        ];
        Self::spawn(id, args, data)
    }

    /// Node `id`'s process with the given arguments, logging into `data`.
    pub fn spawn(id: NodeId, args: Vec<String>, data: &Path) -> Self {
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
            .env("RUST_LOG", "warn,kv=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn kv-server");
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

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every process is still running (none exited on its own).
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

/// An operation on one key of the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Put(String, String),
    Get(String),
    Cas(String, Option<String>, Option<String>),
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put(k, _) | Op::Get(k) | Op::Cas(k, _, _) => k,
        }
    }
}

/// What an [`Op`] returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Out {
    Ok,
    Value(Option<String>),
    Cas {
        swapped: bool,
        current: Option<String>,
    },
}

/// Independent compare-and-swap registers, one per key, each initially absent; histories are
/// checked per key (the KV's writes and reads each touch one key).
pub struct CasRegisters;

impl Model for CasRegisters {
    /// The one key's value (the partition holds one key).
    type State = Option<String>;
    type Input = Op;
    type Output = Out;

    fn init(&self) -> Option<String> {
        None
    }

    fn step(&self, state: &Option<String>, input: &Op, output: &Out) -> Option<Option<String>> {
        match (input, output) {
            (Op::Put(_, v), Out::Ok) => Some(Some(v.clone())),
            (Op::Get(_), Out::Value(v)) if v == state => Some(state.clone()),
            (Op::Cas(_, expected, new), Out::Cas { swapped, current }) => {
                if expected == state {
                    (*swapped && current == new).then(|| new.clone())
                } else {
                    (!*swapped && current == state).then(|| state.clone())
                }
            }
            _ => None,
        }
    }

    fn step_unobserved(&self, state: &Option<String>, input: &Op) -> Vec<Option<String>> {
        match input {
            Op::Put(_, v) => vec![Some(v.clone())],
            Op::Get(_) => vec![state.clone()],
            Op::Cas(_, expected, new) if expected == state => vec![new.clone()],
            Op::Cas(..) => vec![state.clone()],
        }
    }

    fn partition(&self, history: &[Operation<Op, Out>]) -> Vec<Vec<usize>> {
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            by_key.entry(op.input.key()).or_default().push(i);
        }
        by_key.into_values().collect()
    }
}
