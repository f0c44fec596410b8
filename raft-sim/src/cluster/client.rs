//! The client driver: tasks that issue the workload's commands (under client sessions, retried
//! until answered) and queries (ReadIndex or lease reads at random nodes), recording what they
//! saw for the history checks. Each client opens a session before its first command and a new
//! one every 8 to 40 commands (a client that restarts, or a new one), so the group's session
//! table keeps filling and evicting.

use std::time::Duration;

use raft_actor::{Error, Node, RequestId, StateMachine};
use raft_core::rng::SplitMix64;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::directory::{self, DirectoryRx};
use super::workload::{Op, Recorded, Workload};
use super::{GROUP, Harness, SimNode};
use crate::trace::Tracer;

/// The client history of a run of `W`: each client's operations in the order it issued them,
/// client after client.
pub(super) type History<W> = Vec<Recorded<<W as Workload>::Machine>>;

/// What one client task hands back.
struct ClientResult<W: Workload> {
    outcomes: History<W>,
    overloaded: u64,
    errors: u64,
    /// Requests answered `SessionExpired`.
    expired: u64,
}

/// What the harness tells its clients: run.
const RUN: u8 = 0;
/// Start no new operation; keep retrying the current one until it is answered.
const FINISH: u8 = 1;
/// Give up on the current operation (it stays in doubt).
const GIVE_UP: u8 = 2;

/// The running clients, held by the run until it ends.
pub(super) struct Clients<W: Workload> {
    /// [`RUN`], [`FINISH`] or [`GIVE_UP`]. The run keeps a receiver too, so every send lands.
    stop: (watch::Sender<u8>, watch::Receiver<u8>),
    tasks: Vec<JoinHandle<ClientResult<W>>>,
    /// The node handles the clients started with, kept alive for the whole run.
    _first_directory: Vec<SimNode<W>>,
}

/// One client's task and everything it needs.
struct Client<W: Workload> {
    /// Its number; its session id is `c + 1`.
    c: u64,
    seed: u64,
    /// This client's copy of the workload: it picks the operations.
    workload: W,
    nodes: Vec<SimNode<W>>,
    /// Newer node handles (after crashes), polled between operations.
    directory: DirectoryRx<Vec<SimNode<W>>>,
    stop: watch::Receiver<u8>,
    /// Time zero of the history's timestamps.
    epoch: tokio::time::Instant,
    /// Longest pause between two operations.
    think: Duration,
    trace: Tracer,
}

impl<W: Workload> Harness<W> {
    /// Starts [`SimConfig::clients`](super::SimConfig::clients) clients. Each learns the current
    /// node handles (after crashes) through a latest-value slot it polls between operations.
    pub(super) fn spawn_clients(&mut self) -> Clients<W> {
        let stop = watch::channel(RUN);
        let epoch = tokio::time::Instant::now();
        let first: Vec<SimNode<W>> = self.nodes.values().cloned().collect();
        let mut tasks = Vec::new();
        for c in 0..self.cfg.clients {
            let (dir_tx, dir_rx) = directory::channel::<Vec<SimNode<W>>>();
            self.directories.push(dir_tx);
            let seed = SplitMix64::derive(self.cfg.seed, &[0xC11E, c]);
            let client = Client {
                c,
                seed,
                workload: self.workload.clone(),
                nodes: first.clone(),
                directory: dir_rx,
                stop: stop.1.clone(),
                epoch,
                think: self.cfg.client_think,
                trace: self.trace.clone(),
            };
            tasks.push(tokio::spawn(client.run()));
        }
        Clients {
            stop,
            tasks,
            _first_directory: first,
        }
    }

    /// Clients finish their current operation (the cluster is healed) or, past the liveness
    /// bound, give up on it. Returns every client's outcomes, client by client.
    pub(super) async fn collect_history(&mut self, clients: &mut Clients<W>) -> History<W> {
        let stop = &clients.stop.0;
        let _ = stop.send(FINISH);
        let give_up_at = tokio::time::Instant::now() + self.cfg.liveness_bound;
        let mut history = Vec::new();
        for mut c in std::mem::take(&mut clients.tasks) {
            let joined = match tokio::time::timeout_at(give_up_at, &mut c).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = stop.send(GIVE_UP);
                    c.await
                }
            };
            match joined {
                Ok(r) => {
                    history.extend(r.outcomes);
                    self.report.overloaded += r.overloaded;
                    self.report.errors += r.errors;
                    self.report.sessions_expired += r.expired;
                }
                Err(e) => self.violate(format!("client task failed: {e}")),
            }
        }
        history
    }
}

impl<W: Workload> Client<W> {
    /// Issues the workload's operations until told to stop (`stop`: [`RUN`], [`FINISH`],
    /// [`GIVE_UP`]).
    async fn run(self) -> ClientResult<W> {
        let Client {
            c,
            seed,
            mut workload,
            mut nodes,
            directory,
            stop,
            epoch,
            think,
            trace,
        } = self;
        let mut rng = SplitMix64::new(seed);
        let mut out = ClientResult {
            outcomes: Vec::new(),
            overloaded: 0,
            errors: 0,
            expired: 0,
        };
        // The client's command count (the history's `seq`), its session and the session's
        // sequence number, and how many commands it still sends under that session.
        let mut count = 0;
        let mut session: Option<u64> = None;
        let mut seq = 0;
        let mut session_left = 0;
        let mut at = rng.below(nodes.len() as u64) as usize;
        let think_ms = (think.as_millis() as u64).max(1);
        let now = move || epoch.elapsed().as_nanos() as u64;
        while *stop.borrow() == RUN {
            tokio::time::sleep(Duration::from_millis(1 + rng.below(think_ms))).await;
            if let Some(current) = directory.try_latest() {
                nodes = current;
            }
            let command = match workload.next_op(c, &mut rng) {
                Op::Query(query) => {
                    // Reads go to any node: a correct one answers only as a confirmed leader
                    // (or one whose lease holds).
                    let call = now();
                    let target = &nodes[rng.below(nodes.len() as u64) as usize];
                    let lease = rng.below(2) == 0;
                    let read = if lease {
                        target.read_lease(GROUP, query.clone()).await
                    } else {
                        target.read(GROUP, query.clone()).await
                    };
                    match read {
                        Ok(v) => {
                            let op = Op::Query(query);
                            trace.event(|| {
                                format!(
                                    "c{c} {}{} at n{} -> {v:?}",
                                    if lease { "lease " } else { "" },
                                    workload.describe(&op),
                                    target.id()
                                )
                            });
                            out.outcomes.push(Recorded {
                                client: c,
                                seq: 0,
                                op,
                                call,
                                ret: Some((now(), v)),
                            });
                        }
                        Err(e) => {
                            if matches!(e, Error::Overloaded { .. }) {
                                out.overloaded += 1;
                            }
                        }
                    }
                    continue;
                }
                Op::Command(command) => command,
            };
            if session_left == 0 {
                session = None;
            }
            let call = now();
            count += 1;
            let op = Op::Command(command.clone());
            let mut ret = None;
            // Retry the same request (same session id) until it is answered or the harness gives
            // up on it.
            while *stop.borrow() != GIVE_UP {
                let target = &nodes[at % nodes.len()];
                let Some(client) = session else {
                    match target.open_session(GROUP).await {
                        Ok(id) => {
                            trace.event(|| format!("c{c} opens session {id} at n{}", target.id()));
                            session = Some(id);
                            seq = 0;
                            session_left = 8 + rng.below(33);
                        }
                        Err(e) => {
                            at = next_node(&nodes, at, &e);
                            tokio::time::sleep(Duration::from_millis(5 + rng.below(20))).await;
                        }
                    }
                    continue;
                };
                let id = RequestId {
                    client,
                    seq: seq + 1,
                };
                match target.propose_with_id(GROUP, id, command.clone()).await {
                    Ok(v) => {
                        trace.event(|| {
                            format!(
                                "c{c} {} #{count} ({client}/{}) at n{} -> {v:?}",
                                workload.describe(&op),
                                id.seq,
                                target.id()
                            )
                        });
                        ret = Some((now(), v));
                        break;
                    }
                    Err(Error::SessionExpired { .. }) => {
                        // Not applied by this attempt, perhaps by an earlier one: in doubt. The
                        // next command opens a new session.
                        trace.event(|| {
                            format!(
                                "c{c} {} #{count}: session {client} expired",
                                workload.describe(&op)
                            )
                        });
                        out.expired += 1;
                        session = None;
                        break;
                    }
                    Err(e) => {
                        trace.event(|| {
                            format!(
                                "c{c} {} #{count} at n{}: {e}",
                                workload.describe(&op),
                                target.id()
                            )
                        });
                        if matches!(e, Error::Overloaded { .. }) {
                            out.overloaded += 1;
                        } else {
                            out.errors += 1;
                        }
                        at = next_node(&nodes, at, &e);
                        tokio::time::sleep(Duration::from_millis(5 + rng.below(20))).await;
                    }
                }
            }
            if session.is_some() {
                seq += 1;
                session_left -= 1;
            }
            if ret.is_none() {
                trace.event(|| format!("c{c} {} #{count} in doubt", workload.describe(&op)));
            }
            out.outcomes.push(Recorded {
                client: c,
                seq: count,
                op,
                call,
                ret,
            });
        }
        out
    }
}

/// The node to try next after `e` at `nodes[at]`: the leader it names, else the next one.
fn next_node<S: StateMachine>(nodes: &[Node<S>], at: usize, e: &Error) -> usize {
    match e {
        Error::NotLeader {
            leader: Some(l), ..
        } => nodes.iter().position(|n| n.id() == *l).unwrap_or(at + 1),
        _ => at + 1,
    }
}
