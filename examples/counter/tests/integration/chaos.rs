//! Real-process chaos (issue 6): three `counter-server` processes on loopback TCP with their
//! WALs; several clients increment (and read) with retries while the leader is SIGKILLed and
//! restarted every few seconds. Afterwards:
//!
//! - exactly-once: the final count is at least the number of acknowledged increments and at
//!   most that plus the increments still in doubt (their clients gave up);
//! - linearizability: the recorded client history (invoke and return of every increment and
//!   read) passes `raft_sim::linearizability::check` against a counter model.
//!
//! Runs for `RAFT_CHAOS_SECS` seconds of chaos (default 20); CI keeps the default, longer runs
//! are `RAFT_CHAOS_SECS=300 cargo test -p counter --test integration -- chaos:: --nocapture`.

use super::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ServerProc, leader_of};
use counter::addrs::free_loopback_peers;
use counter::{ClientConfig, CounterClient};
use raft_core::NodeId;
use raft_net::SplitMix64;
use raft_sim::linearizability::{
    CheckBudget, CheckResult, Counter as CounterModel, CounterInput, HistoryRecorder, check,
};
use tokio::sync::watch;

const CLIENTS: u64 = 4;
/// Time a leader gets under load before it is killed.
const UP: Duration = Duration::from_millis(2500);
/// Time a killed node stays down.
const DOWN: Duration = Duration::from_millis(1000);

/// What clients tell the history recorder. Keys are `(client, op number)`.
enum Event {
    Invoke(u64, u64, CounterInput),
    Return(u64, u64, i64),
    /// The client gave up: the operation may or may not have taken effect.
    Unknown(u64, u64),
}

/// The recorder actor: owns the history, stamps events in arrival order. A client sends
/// `Invoke` before its request leaves and `Return` after the answer arrived, so an operation's
/// recorded interval contains its real one, and "A returned before B was invoked" in the
/// record implies it in reality.
async fn record(events: flume::Receiver<Event>) -> HistoryRecorder<CounterInput, i64> {
    let mut rec = HistoryRecorder::new();
    let mut ids = HashMap::new();
    while let Ok(ev) = events.recv_async().await {
        match ev {
            Event::Invoke(c, n, input) => {
                ids.insert((c, n), rec.invoke(c, input));
            }
            Event::Return(c, n, v) => {
                if let Some(id) = ids.remove(&(c, n)) {
                    rec.complete(id, v);
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

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    acked: u64,
    in_doubt: u64,
    reads: u64,
    failed_reads: u64,
}

fn chaos_client(servers: Vec<SocketAddr>, client: u64) -> CounterClient {
    let mut c = ClientConfig::new(servers);
    // A killed leader costs an attempt at most this long.
    c.attempt_timeout = Duration::from_millis(1000);
    c.request_timeout = Duration::from_secs(20);
    c.seed = Some(0xC4A0_5000 + client);
    CounterClient::new(c).expect("client")
}

async fn run_client(
    mut client: CounterClient,
    index: u64,
    events: flume::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut rng = SplitMix64::new(index + 1);
    let mut tally = Tally::default();
    let mut n = 0u64;
    while !*stop.borrow_and_update() {
        n += 1;
        let read = rng.chance(0.25);
        let input = if read {
            CounterInput::Get
        } else {
            CounterInput::Add(1)
        };
        let _ = events.send_async(Event::Invoke(index, n, input)).await;
        let result = if read {
            client.get().await
        } else {
            client.incr(1).await
        };
        match result {
            Ok(v) => {
                let _ = events.send_async(Event::Return(index, n, v)).await;
                if read {
                    tally.reads += 1;
                } else {
                    tally.acked += 1;
                }
            }
            Err(e) => {
                eprintln!("client {index}: op {n} gave up: {e}");
                let _ = events.send_async(Event::Unknown(index, n)).await;
                if read {
                    tally.failed_reads += 1;
                } else {
                    tally.in_doubt += 1;
                }
            }
        }
        // Keeps the history to a few thousand operations, which the checker handles quickly.
        tokio::time::sleep(Duration::from_millis(rng.between(5, 15))).await;
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_chaos_is_exactly_once_and_linearizable() {
    let secs: u64 = std::env::var("RAFT_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let peers = free_loopback_peers(3).unwrap();
    let mut procs = ServerProc::spawn_all(&peers, dir.path());
    let servers: Vec<(NodeId, SocketAddr)> = common::client_addrs(&peers);
    let addrs: Vec<SocketAddr> = servers.iter().map(|(_, a)| *a).collect();

    let (events_tx, events_rx) = flume::bounded(100_000);
    let recorder = tokio::spawn(record(events_rx));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(tokio::spawn(run_client(
            chaos_client(addrs.clone(), i),
            i,
            events_tx.clone(),
            stop_rx.clone(),
        )));
    }

    let mut observer = chaos_client(addrs.clone(), 99);
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut kills = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(UP).await;
        match leader_of(&mut observer, &servers).await {
            Some(leader) => {
                let p = procs.iter_mut().find(|p| p.id == leader).unwrap();
                p.kill();
                kills.push((started.elapsed().as_secs_f64(), leader));
                tokio::time::sleep(DOWN).await;
                p.start();
            }
            None => eprintln!(
                "{:.1} s: no leader right now; not killing",
                started.elapsed().as_secs_f64()
            ),
        }
    }
    stop_tx.send_replace(true);
    let mut tally = Tally::default();
    for c in clients {
        let t = c.await.unwrap();
        tally.acked += t.acked;
        tally.in_doubt += t.in_doubt;
        tally.reads += t.reads;
        tally.failed_reads += t.failed_reads;
    }

    // The final read is part of the history too.
    let mut last = chaos_client(addrs.clone(), CLIENTS);
    let _ = events_tx
        .send_async(Event::Invoke(CLIENTS, 1, CounterInput::Get))
        .await;
    let final_value = last.get().await.expect("final read");
    let _ = events_tx
        .send_async(Event::Return(CLIENTS, 1, final_value))
        .await;
    drop(events_tx);
    let history = recorder.await.unwrap().into_history();
    common::assert_all_running(&mut procs);

    eprintln!(
        "chaos: {secs} s, {} leader kills {:?}; acknowledged increments {}, in doubt {}, \
         reads {} (failed {}), final count {final_value}",
        kills.len(),
        kills
            .iter()
            .map(|(t, id)| format!("{t:.1}s:n{id}"))
            .collect::<Vec<_>>(),
        tally.acked,
        tally.in_doubt,
        tally.reads,
        tally.failed_reads,
    );
    assert!(
        kills.len() as u64 >= secs / 6,
        "too few leader kills: {kills:?}"
    );
    assert!(tally.acked > 0, "no increment acknowledged");
    let final_value = final_value as u64;
    assert!(
        final_value >= tally.acked && final_value <= tally.acked + tally.in_doubt,
        "exactly-once violated: final {final_value}, acknowledged {}, in doubt {}",
        tally.acked,
        tally.in_doubt
    );

    let checked = Instant::now();
    let verdict = check(&CounterModel::default(), &history, CheckBudget::default());
    eprintln!(
        "linearizability: {} operations, verdict {verdict} in {:.2} s",
        history.len(),
        checked.elapsed().as_secs_f64()
    );
    assert!(verdict.is_linearizable(), "{verdict}");

    // Negative control: the checker must reject the same history with the final read one
    // lower (every acknowledged increment returned before that read began).
    let mut broken = history;
    let read = broken
        .iter_mut()
        .rev()
        .find(|op| op.client == CLIENTS)
        .expect("the final read");
    if let Some((_, v)) = &mut read.ret {
        *v -= 1;
    }
    let verdict = check(&CounterModel::default(), &broken, CheckBudget::default());
    assert!(
        matches!(verdict, CheckResult::NotLinearizable { .. }),
        "the checker accepted a read that missed an increment: {verdict}"
    );
}
