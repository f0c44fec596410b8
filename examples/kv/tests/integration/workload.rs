//! The clients' workload shared by the process tests: put, get and compare-and-swap on a few
//! dozen keys, every operation recorded for the linearizability checker.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::common::{Op, Out};
use kv::{ClientConfig, KvClient, KvError, ReadKind};
use raft_actor::GroupId;
use raft_net::SplitMix64;
use raft_sim::linearizability::HistoryRecorder;
use tokio::sync::watch;

/// Keys the clients work on.
pub const KEYS: u64 = 32;

/// What clients tell the recorder; operations are keyed by `(client, op number)`.
pub enum Event {
    Invoke(u64, u64, Op),
    Return(u64, u64, Out),
    /// The operation certainly had no effect.
    Failed(u64, u64),
    /// It may or may not have taken effect.
    Unknown(u64, u64),
}

/// The recorder: owns the history and stamps events in arrival order. A client sends
/// `Invoke` before its request leaves and `Return` after the answer came, so each recorded
/// interval contains the real one.
pub async fn record(events: flume::Receiver<Event>) -> HistoryRecorder<Op, Out> {
    let mut rec = HistoryRecorder::new();
    let mut ids = HashMap::new();
    while let Ok(ev) = events.recv_async().await {
        match ev {
            Event::Invoke(c, n, op) => {
                ids.insert((c, n), rec.invoke(c, op));
            }
            Event::Return(c, n, out) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.complete(id, out);
                }
            }
            Event::Failed(c, n) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.fail(id);
                }
            }
            Event::Unknown(c, n) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.timeout(id);
                }
            }
        }
    }
    rec
}

pub fn client_config(servers: Vec<SocketAddr>, seed: u64) -> ClientConfig {
    let mut c = ClientConfig::new(servers);
    c.attempt_timeout = Duration::from_millis(700);
    c.request_timeout = Duration::from_secs(8);
    c.backoff_max = Duration::from_millis(200);
    c.seed = Some(seed);
    c
}

pub fn text(v: Option<Vec<u8>>) -> Option<String> {
    v.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Performs `op`, reporting it to the recorder.
pub async fn perform(
    client: &mut KvClient,
    events: &flume::Sender<Event>,
    who: u64,
    n: u64,
    op: Op,
) -> Option<Out> {
    let _ = events.send(Event::Invoke(who, n, op.clone()));
    let result: Result<Out, KvError> = match &op {
        Op::Put(k, v) => client
            .put(k.as_bytes(), v.as_bytes())
            .await
            .map(|()| Out::Ok),
        Op::Get(k) => client
            .get(k.as_bytes(), ReadKind::Linearizable)
            .await
            .map(|v| Out::Value(text(v))),
        Op::Cas(k, e, new) => client
            .cas(
                k.as_bytes(),
                e.clone().map(String::into_bytes),
                new.clone().map(String::into_bytes),
            )
            .await
            .map(|o| Out::Cas {
                swapped: o.swapped,
                current: text(o.current),
            }),
    };
    match result {
        Ok(out) => {
            let _ = events.send(Event::Return(who, n, out.clone()));
            Some(out)
        }
        Err(e) if e.is_in_doubt() => {
            let _ = events.send(Event::Unknown(who, n));
            None
        }
        Err(_) => {
            let _ = events.send(Event::Failed(who, n));
            None
        }
    }
}

/// One client's loop: random operations on random keys until `stop`.
pub async fn load(
    mut client: KvClient,
    who: u64,
    events: flume::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) -> (u64, u64) {
    let mut rng = SplitMix64::new(0x6B76 + who);
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let (mut n, mut acked) = (0u64, 0u64);
    while !*stop.borrow_and_update() {
        n += 1;
        let key = format!("key-{}", rng.below(KEYS));
        let value = format!("c{who}-{n}");
        let op = match rng.below(100) {
            0..40 => Op::Put(key.clone(), value),
            40..75 => Op::Get(key.clone()),
            _ => Op::Cas(key.clone(), seen.get(&key).cloned().flatten(), Some(value)),
        };
        match perform(&mut client, &events, who, n, op).await {
            Some(out) => {
                acked += 1;
                match out {
                    Out::Value(v) | Out::Cas { current: v, .. } => {
                        seen.insert(key, v);
                    }
                    Out::Ok => {}
                }
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    (n, acked)
}

/// A key of every group, found by hashing candidates.
pub fn key_per_group(groups: u32) -> BTreeMap<GroupId, String> {
    let mut keys = BTreeMap::new();
    for i in 0.. {
        if keys.len() == groups as usize {
            break;
        }
        let k = format!("ready-{i}");
        keys.entry(kv::group_of(k.as_bytes(), groups)).or_insert(k);
    }
    keys
}
