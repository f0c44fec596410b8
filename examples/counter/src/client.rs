//! The counter client: follows leader hints and retries until a definite answer, with a
//! session id so each increment applies exactly once.
//!
//! # Retry rule
//!
//! A request goes to the server believed to lead. Then, by answer:
//! - a value: done (the server remembered as leader);
//! - `NotLeader` with the leader's address: retry there at once (a hint to the same server, or
//!   too many hints in a row, backs off first);
//! - `NotLeader` without an address, a retryable `Unavailable`, or a failed connection or
//!   call: try the next server after a jittered, doubling pause;
//! - a non-retryable `Unavailable`: fail with [`ClientError::Refused`].
//!
//! Before its first increment the client opens a session (`Request::OpenSession`, a replicated
//! entry whose index is the session's id). Every attempt of one increment carries the same
//! [`RequestId`] (`client` the session, `seq` increasing per increment), so however many
//! attempts reach a leader, the increment is applied once and every attempt is answered with
//! that application's value. A request that gets no definite answer within
//! [`ClientConfig::request_timeout`] fails with [`ClientError::GaveUp`]: for an increment the
//! outcome is then unknown (applied once, or not at all). So does an increment whose session
//! the servers evicted meanwhile ([`ClientError::SessionExpired`]; they keep the most recently
//! used sessions, `NodeConfig::max_sessions`); the next increment opens a new session.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use raft_actor::RequestId;
use raft_net::{RpcClient, RpcClientConfig, SplitMix64};
use tokio::time::Instant;
use tracing::debug;

use crate::addrs::resolve;
use crate::error::ClientError;
use crate::protocol::{Request, Response, Status};

/// How a [`CounterClient`] finds servers and how patient it is.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The servers' client addresses. Any one of them is enough to find the leader if the
    /// servers were given each other's client addresses (`--peers ID=RAFT/CLIENT`).
    pub servers: Vec<SocketAddr>,
    /// The connection settings (one connection per server, reused).
    pub rpc: RpcClientConfig,
    /// Bound on one attempt at one server (a killed leader costs at most this).
    pub attempt_timeout: Duration,
    /// Bound on a whole request, retries included.
    pub request_timeout: Duration,
    /// First pause between failed attempts; it doubles per failure, with jitter.
    pub backoff_min: Duration,
    /// Cap of the pause.
    pub backoff_max: Duration,
}

impl ClientConfig {
    /// Defaults for `servers`: 2 s per attempt, 30 s per request, pauses of 10..500 ms.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Self {
            servers,
            rpc: RpcClientConfig::default(),
            attempt_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
        }
    }

    fn validate(&self) -> Result<(), ClientError> {
        let bad = |s: &str| Err(ClientError::Config(s.to_string()));
        if self.servers.is_empty() {
            return bad("no servers given");
        }
        if self.attempt_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad("backoff_min must be positive and at most backoff_max");
        }
        self.rpc
            .validate()
            .map_err(|e| ClientError::Config(e.to_string()))
    }
}

/// One client session. Requests are sequential (`&mut self`), as the session table requires:
/// one outstanding increment per session. Run several clients for concurrency.
pub struct CounterClient {
    config: ClientConfig,
    /// The session increments go under, once opened.
    session: Option<u64>,
    next_seq: u64,
    /// Known servers: the configured ones, then any address learnt from a hint.
    servers: Vec<SocketAddr>,
    /// Where the next request goes first.
    target: SocketAddr,
    conns: BTreeMap<SocketAddr, RpcClient<Request, Response>>,
    rng: SplitMix64,
}

impl std::fmt::Debug for CounterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterClient")
            .field("session", &self.session)
            .field("next_seq", &self.next_seq)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A random 64-bit number from the OS-seeded hasher keys of the standard library.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

impl CounterClient {
    /// A client whose retry jitter is randomly seeded. It opens its session with its first
    /// increment.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Self::with_seed(config, random_u64())
    }

    /// A client whose retry jitter is seeded with `seed` (tests).
    pub fn with_seed(config: ClientConfig, seed: u64) -> Result<Self, ClientError> {
        config.validate()?;
        let servers = config.servers.clone();
        Ok(Self {
            target: servers[0],
            servers,
            session: None,
            next_seq: 1,
            conns: BTreeMap::new(),
            rng: SplitMix64::new(seed),
            config,
        })
    }

    /// This client's session id, once its first increment opened one.
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// Adds `n` exactly once; returns the value right after this increment. Opens a session
    /// first if the client has none.
    pub async fn incr(&mut self, n: i64) -> Result<i64, ClientError> {
        let session = match self.session {
            Some(s) => s,
            None => self.open_session().await?,
        };
        let id = RequestId {
            client: session,
            seq: self.next_seq,
        };
        // Used up even if the request fails: a later increment must not be mistaken for a
        // retry of this one.
        self.next_seq += 1;
        match self.request(&Request::Incr { id, n }).await? {
            Response::Value(v) => Ok(v),
            Response::SessionExpired => {
                self.session = None;
                Err(ClientError::SessionExpired { session })
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// Opens a new session (a replicated entry at the leader); the next increments go under
    /// it. Returns its id.
    pub async fn open_session(&mut self) -> Result<u64, ClientError> {
        match self.request(&Request::OpenSession).await? {
            Response::Session(id) => {
                self.session = Some(id);
                self.next_seq = 1;
                Ok(id)
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// A linearizable read of the value.
    pub async fn get(&mut self) -> Result<i64, ClientError> {
        match self.request(&Request::Get).await? {
            Response::Value(v) => Ok(v),
            other => Err(self.unexpected(other)),
        }
    }

    /// An answer of the wrong kind from the server that gave it (the current target).
    fn unexpected(&self, answer: Response) -> ClientError {
        ClientError::Protocol {
            server: self.target,
            answer: format!("{answer:?}"),
        }
    }

    /// Polls the value every `interval` and calls `on_change` with each new value (the first
    /// one included) until it returns `ControlFlow::Break`. Read failures are retried as
    /// every request is; one that gives up ends the watch with its error.
    pub async fn watch(
        &mut self,
        interval: Duration,
        mut on_change: impl FnMut(i64) -> ControlFlow<()>,
    ) -> Result<(), ClientError> {
        let mut last = None;
        loop {
            let v = self.get().await?;
            if last != Some(v) {
                last = Some(v);
                if on_change(v).is_break() {
                    return Ok(());
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// One server's view of the group (a single attempt).
    pub async fn status(&mut self, server: SocketAddr) -> Result<Status, ClientError> {
        let deadline = Instant::now() + self.config.attempt_timeout;
        let conn = self
            .conn(server, deadline)
            .await
            .map_err(|last| ClientError::GaveUp {
                attempts: 1,
                elapsed_ms: 0,
                last,
            })?;
        match conn
            .call_timeout(&Request::Status, self.config.attempt_timeout)
            .await
        {
            Ok(Response::Status(s)) => Ok(s),
            Ok(Response::Unavailable { reason, .. }) => {
                Err(ClientError::Refused { server, reason })
            }
            Ok(other) => Err(ClientError::Protocol {
                server,
                answer: format!("{other:?}"),
            }),
            Err(e) => {
                self.conns.remove(&server);
                Err(ClientError::GaveUp {
                    attempts: 1,
                    elapsed_ms: 0,
                    last: e.to_string(),
                })
            }
        }
    }

    /// The configured servers (and any learnt from hints).
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Sends `req` until a definite answer (a value, a session, or an expired session); see
    /// the module docs for the rule.
    async fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let started = Instant::now();
        let deadline = started + self.config.request_timeout;
        let mut attempts = 0u32;
        let mut failures = 0u32;
        let mut hints_in_a_row = 0usize;
        let mut last = String::from("no attempt made");
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::GaveUp {
                    attempts,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last,
                });
            }
            attempts += 1;
            let server = self.target;
            let answer = match self.conn(server, deadline).await {
                Err(e) => Err(e),
                Ok(conn) => {
                    let limit = self.config.attempt_timeout.min(deadline - now);
                    conn.call_timeout(req, limit).await.map_err(|e| {
                        if matches!(
                            e,
                            raft_net::RpcError::ConnectionLost { .. } | raft_net::RpcError::Closed
                        ) {
                            self.conns.remove(&server);
                        }
                        e.to_string()
                    })
                }
            };
            match answer {
                Ok(
                    definite @ (Response::Value(_)
                    | Response::Session(_)
                    | Response::SessionExpired),
                ) => return Ok(definite),
                Ok(Response::NotLeader {
                    addr: Some(addr),
                    leader,
                }) => {
                    last = format!("{server} is not the leader (hint: node {leader:?} at {addr})");
                    let hinted = resolve(&addr).ok();
                    hints_in_a_row += 1;
                    match hinted {
                        Some(h) if h != server && hints_in_a_row <= 2 * self.servers.len() => {
                            if !self.servers.contains(&h) {
                                self.servers.push(h);
                            }
                            self.target = h;
                            debug!(%server, leader = %h, "following the leader hint");
                            continue;
                        }
                        _ => self.rotate(server),
                    }
                }
                Ok(Response::NotLeader { addr: None, leader }) => {
                    last = format!("{server} is not the leader (leader: {leader:?})");
                    self.rotate(server);
                }
                Ok(Response::Unavailable {
                    reason,
                    retryable: true,
                }) => {
                    last = format!("{server}: {reason}");
                    self.rotate(server);
                }
                Ok(Response::Unavailable {
                    reason,
                    retryable: false,
                }) => return Err(ClientError::Refused { server, reason }),
                Ok(other @ Response::Status(_)) => {
                    return Err(ClientError::Protocol {
                        server,
                        answer: format!("{other:?}"),
                    });
                }
                Err(e) => {
                    last = format!("{server}: {e}");
                    self.rotate(server);
                }
            }
            hints_in_a_row = 0;
            failures += 1;
            let pause = self
                .backoff(failures)
                .min(deadline.saturating_duration_since(Instant::now()));
            debug!(%server, attempt = attempts, %last, ?pause, "retrying");
            tokio::time::sleep(pause).await;
        }
    }

    /// The next server after `failed`, in list order.
    fn rotate(&mut self, failed: SocketAddr) {
        let i = self.servers.iter().position(|s| *s == failed).unwrap_or(0);
        self.target = self.servers[(i + 1) % self.servers.len()];
    }

    /// Doubling pause with jitter in `[pause/2, pause]`.
    fn backoff(&mut self, failures: u32) -> Duration {
        let base = self.config.backoff_min.as_micros() as u64;
        let cap = self.config.backoff_max.as_micros() as u64;
        let pause = base
            .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
            .min(cap);
        Duration::from_micros(self.rng.between(pause / 2, pause.max(1)))
    }

    /// The open connection to `server`, or a new one.
    async fn conn(
        &mut self,
        server: SocketAddr,
        deadline: Instant,
    ) -> Result<RpcClient<Request, Response>, String> {
        if let Some(c) = self.conns.get(&server) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            self.conns.remove(&server);
        }
        let mut rpc = self.config.rpc.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        rpc.connect_timeout = rpc.connect_timeout.min(left).max(Duration::from_millis(1));
        let c = RpcClient::connect(server, rpc)
            .await
            .map_err(|e| e.to_string())?;
        self.conns.insert(server, c.clone());
        Ok(c)
    }
}
