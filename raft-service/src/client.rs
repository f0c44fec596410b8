//! The client side: [`Client`] finds the leader of each group, follows hints, retries with
//! jittered backoff under a deadline, and stamps session ids so that retried writes apply
//! exactly once.
//!
//! # Retry rule
//!
//! A call goes to the server believed to lead its group (for a stale read: to any server).
//! Then, by answer:
//! - a result: done, and that server is remembered as the group's leader;
//! - `NotLeader` with the leader's address: retry there at once (too many hints in a row, or
//!   a hint naming the same server, back off first);
//! - `NotHosted` (a sharded service's node that does not host the group) with the hosts'
//!   addresses: retry at the first of them other than this server, as for a leader hint;
//! - `NotLeader` without an address, `Unavailable`, `Timeout`, or a failed connection or
//!   call: try the next known server after a jittered, doubling pause;
//! - `Refused` or `SessionExpired`: fail at once.
//!
//! Every attempt of one write carries the same [`RequestId`] (the group's session and the
//! next sequence number), so however many attempts reach a leader the write applies once and
//! every attempt is answered with that application's response. A write that gets no definite
//! answer before [`ClientConfig::request_timeout`] fails with [`ClientError::GaveUp`], whose
//! `in_doubt` says whether it may have been applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use raft_actor::{GroupId, Index, Membership, NodeAddrs, NodeId, RequestId, StateMachine};
use raft_net::{RpcClient, RpcClientConfig, RpcError, SplitMix64};
use tokio::time::Instant;
use tracing::debug;

use crate::protocol::{
    Admin, Answer, Encoded, GroupStatus, NodeStatus, ReadKind, Request, ServiceError,
};
use crate::server::{AnswerOf, RequestOf};

/// How a [`Client`] finds servers and how patient it is.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Servers to start from. Any one is enough: hints lead to the others.
    pub servers: Vec<SocketAddr>,
    /// Connection settings (one connection per server, shared by [`Client::fork`]s), TLS
    /// included (`rpc.tls`, plaintext when `None`): every server, those learnt from leader
    /// hints too, is reached with them, so with TLS each server's certificate must name the
    /// address the client reaches it at, or the name set with
    /// `RpcTlsClient::with_server_name`. A TLS failure is not in doubt and is retried on the
    /// other servers like an unreachable one, until `request_timeout`.
    pub rpc: RpcClientConfig,
    /// Bound on one attempt at one server (a dead leader costs at most this).
    pub attempt_timeout: Duration,
    /// Bound on a whole call, retries included.
    pub request_timeout: Duration,
    /// First pause between failed attempts; it doubles per failure, with jitter.
    pub backoff_min: Duration,
    /// Cap of the pause.
    pub backoff_max: Duration,
    /// Seed of the backoff jitter (`None`: a random one).
    pub seed: Option<u64>,
}

impl ClientConfig {
    /// Defaults for `servers`: 2 s per attempt, 30 s per call, pauses of 10..500 ms.
    pub fn new(servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        ClientConfig {
            servers: servers.into_iter().collect(),
            rpc: RpcClientConfig::default(),
            attempt_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            seed: None,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ClientError> {
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

/// A call failed for good.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No server gave a definite answer before the deadline. With `in_doubt` the call was a
    /// write that may have been applied (once); otherwise it was certainly not applied.
    #[error(
        "no answer after {attempts} attempts in {elapsed_ms} ms (in doubt: {in_doubt}); last error: {last}"
    )]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed_ms: u64,
        /// The last failure seen.
        last: String,
        /// Whether a write may have been applied.
        in_doubt: bool,
    },
    /// A server refused the call in a way retrying cannot fix. Nothing was applied.
    #[error("server {server} refused the call: {reason}")]
    Refused {
        /// The server.
        server: SocketAddr,
        /// Its reason.
        reason: String,
    },
    /// The group's session expired (evicted): this attempt was not applied. With `in_doubt`
    /// an earlier attempt of the same write may have been. The next write opens a new session.
    #[error("session {client} of group {group} expired (in doubt: {in_doubt})")]
    SessionExpired {
        /// The group.
        group: GroupId,
        /// The expired session.
        client: u64,
        /// Whether an earlier attempt may have been applied.
        in_doubt: bool,
    },
    /// A server answered with something this client does not expect.
    #[error("unexpected answer from {server}: {answer}")]
    Protocol {
        /// The server.
        server: SocketAddr,
        /// The answer, for humans.
        answer: String,
    },
    /// The client configuration is invalid.
    #[error("invalid client config: {0}")]
    Config(String),
    /// A command could not be encoded (nothing was sent).
    #[error("cannot encode the command: {0}")]
    Codec(String),
}

impl ClientError {
    /// True when the failed call was a write that may nevertheless have been applied.
    pub fn is_in_doubt(&self) -> bool {
        match self {
            ClientError::GaveUp { in_doubt, .. } | ClientError::SessionExpired { in_doubt, .. } => {
                *in_doubt
            }
            _ => false,
        }
    }
}

/// A write's result: where it sits in the log and what the state machine answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied<R> {
    /// The log index of the write's entry.
    pub index: Index,
    /// The state machine's response.
    pub response: R,
}

/// A read's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult<R> {
    /// For a stale read: the applied index the answer reflects.
    pub applied: Option<Index>,
    /// The state machine's response.
    pub response: R,
}

/// A session in one group: its id and the next sequence number.
#[derive(Clone, Copy, Debug)]
struct Session {
    client: u64,
    next_seq: u64,
}

/// Which server a call goes to first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The group's leader (proposals, linearizable and lease reads, membership changes).
    Leader(GroupId),
    /// Whichever server answers (stale reads, members).
    Any,
}

/// A client of servers built with [`crate::Server`], for state machine `S`.
///
/// Calls are sequential (`&mut self`): one write per session at a time, as exactly-once
/// needs. For concurrency, [`Client::fork`] more clients: forks share connections (calls are
/// pipelined over them) and each has its own sessions.
pub struct Client<S: StateMachine> {
    config: ClientConfig,
    /// Known servers: the configured ones, then any address learnt from a hint.
    servers: Vec<SocketAddr>,
    /// Where each group's leader was last found.
    leaders: BTreeMap<GroupId, SocketAddr>,
    /// The server an `Any` call tries first.
    any: SocketAddr,
    conns: BTreeMap<SocketAddr, RpcClient<RequestOf<S>, AnswerOf<S>>>,
    sessions: BTreeMap<GroupId, Session>,
    rng: SplitMix64,
    /// Attempts beyond the first, over every call.
    retries: u64,
}

impl<S: StateMachine> std::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers)
            .field("leaders", &self.leaders)
            .finish_non_exhaustive()
    }
}

/// A random 64-bit number from the standard library's OS-seeded hasher keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

impl<S: StateMachine> Client<S> {
    /// A client that starts from one server (`ClientConfig::new([addr])`).
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// use raft_service::Client;
    ///
    /// // Any one server is enough: the others are found through leader hints.
    /// let mut client = Client::<Counter>::connect(cluster.addrs()[2])?;
    /// assert_eq!(client.propose(1, Add(1)).await?.response, 1);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        Self::new(ClientConfig::new([addr]))
    }

    /// A client with explicit settings. Connections open on first use.
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// use std::time::Duration;
    /// use raft_service::{Client, ClientConfig};
    ///
    /// let mut config = ClientConfig::new(cluster.addrs());
    /// config.request_timeout = Duration::from_secs(5);
    /// let mut client = Client::<Counter>::new(config)?;
    /// client.propose(1, Add(1)).await?;
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let seed = config.seed.unwrap_or_else(random_u64);
        Ok(Client {
            any: config.servers[0],
            servers: config.servers.clone(),
            leaders: BTreeMap::new(),
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            rng: SplitMix64::new(seed),
            retries: 0,
            config,
        })
    }

    /// Opens a connection to every known server that has none, so that [`Client::fork`]s
    /// made afterwards share them. Returns how many servers are connected; unreachable ones
    /// are skipped (calls retry them later).
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// assert_eq!(client.connect_all().await, 3);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn connect_all(&mut self) -> usize {
        let deadline = Instant::now() + self.config.attempt_timeout;
        let mut connected = 0;
        for server in self.servers.clone() {
            if self.conn(server, deadline).await.is_ok() {
                connected += 1;
            }
        }
        connected
    }

    /// Attempts beyond the first one of each call, over this client's life: leader hints
    /// followed, and retries after failures.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Another client sharing this one's connections and leader knowledge, with sessions of
    /// its own. Use one fork per concurrent task.
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// client.connect_all().await;
    /// let tasks: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let mut fork = client.fork();
    ///         tokio::spawn(async move { fork.propose(1, Add(1)).await })
    ///     })
    ///     .collect();
    /// for t in tasks {
    ///     t.await??;
    /// }
    /// assert_eq!(client.read(1, ()).await?, 4);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn fork(&mut self) -> Self {
        let seed = self.rng.next_u64();
        Client {
            config: self.config.clone(),
            servers: self.servers.clone(),
            leaders: self.leaders.clone(),
            any: self.any,
            conns: self.conns.clone(),
            sessions: BTreeMap::new(),
            rng: SplitMix64::new(seed),
            retries: 0,
        }
    }

    /// The servers this client knows (configured, then learnt from hints).
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Where `group`'s leader was last found.
    pub fn leader(&self, group: GroupId) -> Option<SocketAddr> {
        self.leaders.get(&group).copied()
    }

    /// Sends `group`'s next leader-bound call to `server` first (and adds it to the known
    /// servers): for a caller that knows where the group lives, such as a sharded service's
    /// client routing by its placement. Hints and redirects are followed from there as usual.
    pub fn prefer(&mut self, group: GroupId, server: SocketAddr) {
        if !self.servers.contains(&server) {
            self.servers.push(server);
        }
        self.leaders.insert(group, server);
    }

    /// Applies `command` in `group` exactly once (under this client's session in the group,
    /// opened on first use) and returns its index and response.
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// let first = client.propose(1, Add(5)).await?;
    /// let second = client.propose(1, Add(5)).await?;
    /// assert_eq!((first.response, second.response), (5, 10));
    /// assert!(second.index > first.index);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn propose(
        &mut self,
        group: GroupId,
        command: S::Command,
    ) -> Result<Applied<S::Response>, ClientError> {
        let started = Instant::now();
        let deadline = started + self.config.request_timeout;
        let session = self.session(group, deadline).await?;
        let id = RequestId {
            client: session.client,
            seq: session.next_seq,
        };
        // Used up even if the write fails: a later write must not be mistaken for a retry.
        if let Some(s) = self.sessions.get_mut(&group) {
            s.next_seq += 1;
        }
        let command = Encoded::new(&command).map_err(|e| ClientError::Codec(e.to_string()))?;
        let req = Request::Propose {
            group,
            session: Some(id),
            command,
        };
        match self
            .call(&req, Route::Leader(group), true, started, deadline)
            .await
        {
            Ok(Answer::Applied { index, response }) => Ok(Applied { index, response }),
            Ok(other) => Err(self.unexpected(group, other)),
            Err(ClientError::SessionExpired {
                group, in_doubt, ..
            }) => {
                self.sessions.remove(&group);
                Err(ClientError::SessionExpired {
                    group,
                    client: id.client,
                    in_doubt,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A linearizable read of `group`: reflects every write acknowledged before it began.
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// client.propose(1, Add(3)).await?;
    /// assert_eq!(client.read(1, ()).await?, 3);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn read(
        &mut self,
        group: GroupId,
        query: S::Query,
    ) -> Result<S::Response, ClientError> {
        Ok(self
            .read_with(group, ReadKind::Linearizable, query)
            .await?
            .response)
    }

    /// A read of the given kind; see [`ReadKind`].
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// use raft_service::ReadKind;
    ///
    /// let mut client = cluster.client()?;
    /// client.propose(1, Add(3)).await?;
    /// let lease = client.read_with(1, ReadKind::Lease, ()).await?;
    /// assert_eq!(lease.response, 3);
    /// // Any node answers a stale read, from what it has applied so far.
    /// let stale = client.read_with(1, ReadKind::Stale, ()).await?;
    /// assert!(stale.response <= 3);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn read_with(
        &mut self,
        group: GroupId,
        kind: ReadKind,
        query: S::Query,
    ) -> Result<ReadResult<S::Response>, ClientError> {
        let started = Instant::now();
        let deadline = started + self.config.request_timeout;
        let route = match kind {
            ReadKind::Stale => Route::Any,
            _ => Route::Leader(group),
        };
        let req = Request::Read { group, kind, query };
        match self.call(&req, route, false, started, deadline).await? {
            Answer::Read { applied, response } => Ok(ReadResult { applied, response }),
            other => Err(self.unexpected(group, other)),
        }
    }

    /// One server's view of `group` (a single attempt at `server`).
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// client.propose(1, Add(1)).await?; // a leader exists
    /// let mut leaders = 0;
    /// for addr in cluster.addrs() {
    ///     let status = client.status(addr, 1).await?;
    ///     leaders += usize::from(status.is_leader);
    /// }
    /// assert_eq!(leaders, 1);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn status(
        &mut self,
        server: SocketAddr,
        group: GroupId,
    ) -> Result<GroupStatus, ClientError> {
        match self.single(server, Admin::Status { group }).await? {
            Answer::Status(s) => Ok(s),
            other => Err(ClientError::Protocol {
                server,
                answer: other.describe(),
            }),
        }
    }

    /// One attempt of an admin call at `server`; an error answer is `Refused`.
    async fn single(
        &mut self,
        server: SocketAddr,
        call: Admin,
    ) -> Result<AnswerOf<S>, ClientError> {
        let started = Instant::now();
        let deadline = started + self.config.attempt_timeout;
        match self.attempt(server, &Request::Admin(call), deadline).await {
            Ok(Answer::Error(e)) => Err(ClientError::Refused {
                server,
                reason: e.to_string(),
            }),
            Ok(answer) => Ok(answer),
            Err(e) => Err(ClientError::GaveUp {
                attempts: 1,
                elapsed_ms: started.elapsed().as_millis() as u64,
                last: e.to_string(),
                in_doubt: false,
            }),
        }
    }

    /// `server`'s view of every group it hosts (a single attempt at `server`).
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// let status = client.node_status(cluster.addrs()[0]).await?;
    /// assert_eq!(status.node, 1);
    /// assert_eq!(status.groups.len(), 1);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn node_status(&mut self, server: SocketAddr) -> Result<NodeStatus, ClientError> {
        match self.single(server, Admin::Node).await? {
            Answer::Node(s) => Ok(s),
            other => Err(ClientError::Protocol {
                server,
                answer: other.describe(),
            }),
        }
    }

    /// `group`'s configuration with every member's addresses, as its leader knows it (the
    /// latest configuration in its log).
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// let members = client.members(1).await?;
    /// assert_eq!(members.voters.len(), 3);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn members(&mut self, group: GroupId) -> Result<Membership, ClientError> {
        match self
            .admin(Admin::Members { group }, Route::Leader(group))
            .await?
        {
            Answer::Members(m) => Ok(m),
            other => Err(self.unexpected(group, other)),
        }
    }

    /// Adds node `id` to `group` as a learner, waits until it has caught up and, with `voter`,
    /// promotes it. Returns the final configuration's index once it has committed.
    pub async fn add_node(
        &mut self,
        group: GroupId,
        id: NodeId,
        addrs: NodeAddrs,
        voter: bool,
    ) -> Result<Index, ClientError> {
        let call = Admin::AddNode {
            group,
            id,
            addrs,
            voter,
        };
        self.done(group, call).await
    }

    /// Removes node `id` from `group`; returns the final configuration's index once it has
    /// committed.
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// client.propose(1, Add(1)).await?;
    /// client.remove_node(1, 3).await?;
    /// assert_eq!(client.members(1).await?.voters.len(), 2);
    /// assert_eq!(client.propose(1, Add(1)).await?.response, 2);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn remove_node(&mut self, group: GroupId, id: NodeId) -> Result<Index, ClientError> {
        self.done(group, Admin::RemoveNode { group, id }).await
    }

    /// Hands leadership of `group` to `to` (returns once the transfer has started).
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// # use raft_service::local::LocalCluster;
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let cluster = LocalCluster::start(3, 1, |_| Counter::default()).await?;
    /// let mut client = cluster.client()?;
    /// client.propose(1, Add(1)).await?;
    /// let leader = client.node_status(client.leader(1).unwrap()).await?.node;
    /// let to = if leader == 1 { 2 } else { 1 };
    /// client.transfer_leader(1, to).await?;
    /// // Writes find the new leader.
    /// assert_eq!(client.propose(1, Add(1)).await?.response, 2);
    /// # cluster.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn transfer_leader(&mut self, group: GroupId, to: NodeId) -> Result<(), ClientError> {
        self.done(group, Admin::TransferLeader { group, to })
            .await
            .map(|_| ())
    }

    async fn done(&mut self, group: GroupId, call: Admin) -> Result<Index, ClientError> {
        match self.admin(call, Route::Leader(group)).await? {
            Answer::Done { index } => Ok(index),
            other => Err(self.unexpected(group, other)),
        }
    }

    async fn admin(&mut self, call: Admin, route: Route) -> Result<AnswerOf<S>, ClientError> {
        let started = Instant::now();
        let deadline = started + self.config.request_timeout;
        self.call(&Request::Admin(call), route, true, started, deadline)
            .await
    }

    /// This client's session in `group`, opened if there is none.
    async fn session(&mut self, group: GroupId, deadline: Instant) -> Result<Session, ClientError> {
        if let Some(s) = self.sessions.get(&group) {
            return Ok(*s);
        }
        let req = Request::OpenSession { group };
        let started = Instant::now();
        match self
            .call(&req, Route::Leader(group), false, started, deadline)
            .await?
        {
            Answer::Session { client } => {
                let s = Session {
                    client,
                    next_seq: 1,
                };
                self.sessions.insert(group, s);
                Ok(s)
            }
            other => Err(self.unexpected(group, other)),
        }
    }

    fn unexpected(&self, group: GroupId, answer: AnswerOf<S>) -> ClientError {
        ClientError::Protocol {
            server: self.leaders.get(&group).copied().unwrap_or(self.any),
            answer: answer.describe(),
        }
    }

    /// Sends `req` until a definite answer; see the module docs for the rule. `write`: the
    /// call changes state, so a lost attempt leaves it in doubt.
    async fn call(
        &mut self,
        req: &RequestOf<S>,
        route: Route,
        write: bool,
        started: Instant,
        deadline: Instant,
    ) -> Result<AnswerOf<S>, ClientError> {
        let mut attempts = 0u32;
        let mut failures = 0u32;
        let mut hints_in_a_row = 0usize;
        let mut in_doubt = false;
        let mut last = String::from("no attempt made");
        loop {
            if Instant::now() >= deadline {
                return Err(ClientError::GaveUp {
                    attempts,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last,
                    in_doubt: write && in_doubt,
                });
            }
            attempts += 1;
            if attempts > 1 {
                self.retries += 1;
            }
            let server = self.target(route);
            match self.attempt(server, req, deadline).await {
                Ok(Answer::Error(e)) => {
                    last = format!("{server}: {e}");
                    in_doubt |= e.maybe_applied();
                    match e {
                        ServiceError::NotLeader {
                            addr: Some(hint), ..
                        } if hint != server && hints_in_a_row < 2 * self.servers.len() + 2 => {
                            hints_in_a_row += 1;
                            if !self.servers.contains(&hint) {
                                self.servers.push(hint);
                            }
                            if let Route::Leader(g) = route {
                                self.leaders.insert(g, hint);
                            }
                            debug!(%server, leader = %hint, "following the leader hint");
                            continue;
                        }
                        ServiceError::NotHosted { hosts, .. }
                            if hints_in_a_row < 2 * self.servers.len() + 2
                                && hosts.iter().any(|h| *h != server) =>
                        {
                            hints_in_a_row += 1;
                            for h in &hosts {
                                if !self.servers.contains(h) {
                                    self.servers.push(*h);
                                }
                            }
                            // The first host other than this server; a leader hint may follow.
                            let next = hosts
                                .iter()
                                .copied()
                                .find(|h| *h != server)
                                .unwrap_or(server);
                            match route {
                                Route::Leader(g) => {
                                    self.leaders.insert(g, next);
                                }
                                Route::Any => self.any = next,
                            }
                            debug!(%server, host = %next, "following the redirect");
                            continue;
                        }
                        ServiceError::SessionExpired { group, client } => {
                            return Err(ClientError::SessionExpired {
                                group,
                                client,
                                in_doubt: write && in_doubt,
                            });
                        }
                        ServiceError::Refused { reason } => {
                            return Err(ClientError::Refused { server, reason });
                        }
                        _ => self.rotate(route, server),
                    }
                }
                Ok(answer) => {
                    match route {
                        Route::Leader(g) => {
                            self.leaders.insert(g, server);
                        }
                        Route::Any => self.any = server,
                    }
                    return Ok(answer);
                }
                Err(e) => {
                    // A request that may have reached the server may have been applied.
                    in_doubt |= e.maybe_delivered();
                    last = format!("{server}: {e}");
                    self.rotate(route, server);
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

    /// One attempt at one server; `Err` is a transport failure.
    async fn attempt(
        &mut self,
        server: SocketAddr,
        req: &RequestOf<S>,
        deadline: Instant,
    ) -> Result<AnswerOf<S>, RpcError> {
        let conn = self.conn(server, deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = self
            .config
            .attempt_timeout
            .min(left)
            .max(Duration::from_millis(1));
        let answer = conn.call_timeout(req, limit).await;
        if let Err(RpcError::ConnectionLost { .. } | RpcError::Closed | RpcError::Tls { .. }) =
            &answer
        {
            self.conns.remove(&server);
        }
        answer
    }

    /// The server a call on `route` tries next.
    fn target(&self, route: Route) -> SocketAddr {
        match route {
            Route::Leader(g) => self.leaders.get(&g).copied().unwrap_or(self.any),
            Route::Any => self.any,
        }
    }

    /// Moves `route` on to the server after `failed`, in list order.
    fn rotate(&mut self, route: Route, failed: SocketAddr) {
        let i = self.servers.iter().position(|s| *s == failed).unwrap_or(0);
        let next = self.servers[(i + 1) % self.servers.len()];
        match route {
            Route::Leader(g) => {
                self.leaders.insert(g, next);
            }
            Route::Any => self.any = next,
        }
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
    ) -> Result<RpcClient<RequestOf<S>, AnswerOf<S>>, RpcError> {
        if let Some(c) = self.conns.get(&server) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            self.conns.remove(&server);
        }
        let mut rpc = self.config.rpc.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        rpc.connect_timeout = rpc.connect_timeout.min(left).max(Duration::from_millis(1));
        let c = RpcClient::connect(server, rpc).await?;
        self.conns.insert(server, c.clone());
        Ok(c)
    }
}
