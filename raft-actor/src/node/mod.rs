//! [`Node`]: the public API. A node hosts many Raft groups of one state-machine type.
//!
//! - `builder` — [`NodeBuilder`]: transport, store, executors; starts the node's actors.
//! - `registry` — the registry actor: the table of groups, adding (with recovery) and
//!   removing groups, shutdown.
//! - `router` — hands data-lane messages to their group's partition or replicator.
//! - `peers` — the transport's peers as the groups' configurations name them (the registry's).
//! - `table` — the group table's map type.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raft_core::{GroupId, Index, Membership, NodeAddrs, NodeId, Term};
use tokio::sync::{oneshot, watch};

use crate::config::NodeConfig;
use crate::error::Error;
use crate::group::messages::{Answer, ClientReq, Control, Outcome, Proposal, Reply};
use crate::mailbox::deadline::Deadlines;
use crate::mailbox::inbox::InboxTx;
use crate::metrics::{GroupMetrics, NodeMetrics};
use crate::state_machine::{RequestId, StateMachine};
use crate::wire::Net;

mod builder;
mod peers;
mod registry;
mod router;
mod table;

pub use builder::{HeartbeatExecutor, NodeBuilder};
use registry::{GroupEntry, RegistryMsg, Table};

/// Queues a request on a group's client queue without waiting; its answer comes on the
/// receiver.
fn submit_to<S: StateMachine, T>(
    client: &InboxTx<ClientReq<S>>,
    group: GroupId,
    make: impl FnOnce(Reply<T>) -> ClientReq<S>,
) -> Result<oneshot::Receiver<Result<T, Error>>, Error> {
    let (tx, rx) = oneshot::channel();
    client.try_send(make(tx)).map_err(|e| match e {
        flume::TrySendError::Full(_) => Error::Overloaded { group },
        flume::TrySendError::Disconnected(_) => Error::Stopped,
    })?;
    Ok(rx)
}

/// A proposal's entry bytes: the session id and the command.
fn encode_proposal<C: serde::Serialize>(
    id: Option<RequestId>,
    command: &C,
) -> Result<Vec<u8>, Error> {
    Proposal::encode(id, command).map_err(|e| Error::Codec(e.to_string()))
}

/// The receiving end of a proposal's answer.
type AnswerRx<R> = oneshot::Receiver<Result<Answer<R>, Error>>;

/// The receiving end of a read's answer: the applied index it reflects and the response.
type ReadRx<R> = oneshot::Receiver<Result<(Index, R), Error>>;

/// The answer to [`Node::read_stale`]: a response from a node's local state, and the applied
/// index that state reflects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale<R> {
    /// The state machine had applied every entry up to here, and none after, when it answered.
    pub applied: Index,
    /// The state machine's answer to the query.
    pub response: R,
}

/// A proposal the leader has appended to its log ([`Node::submit`]): where it landed, and a
/// handle on its outcome.
///
/// The entry is not committed yet: it commits and applies at `index` only if the entry found
/// there when it applies is still of `term` (a new leader may overwrite it; then
/// [`Submitted::outcome`] answers `NotLeader`, and the command was not applied there).
pub struct Submitted<R> {
    /// The log index of the proposal's entry.
    pub index: Index,
    /// The leader's term it was appended in.
    pub term: Term,
    group: GroupId,
    rx: AnswerRx<R>,
    deadlines: Deadlines,
}

impl<R> std::fmt::Debug for Submitted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitted")
            .field("group", &self.group)
            .field("index", &self.index)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

impl<R> Submitted<R> {
    /// Waits for the proposal to apply on this node and returns the state machine's response,
    /// as [`Node::propose`] does. The wait is bounded by `request_timeout` from this call
    /// ([`Error::Timeout`]: the outcome is unknown); an outcome that came meanwhile is returned
    /// at once.
    pub async fn outcome(self) -> Result<R, Error> {
        Ok(self.outcome_indexed().await?.1)
    }

    /// As [`Submitted::outcome`], with the index the command took effect at (see
    /// [`Node::propose_indexed`]).
    pub async fn outcome_indexed(self) -> Result<(Index, R), Error> {
        match self.deadlines.wait(self.rx).await {
            Some(Ok(answer)) => answer?.into_indexed(),
            Some(Err(_)) => Err(Error::Stopped),
            None => Err(Error::Timeout { group: self.group }),
        }
    }
}

/// Waits (bounded) until the proposal queued with `appended_rx` and `rx` is appended, then
/// hands out its [`Submitted`].
async fn submitted<R>(
    deadlines: &Deadlines,
    group: GroupId,
    appended_rx: oneshot::Receiver<(Index, Term)>,
    rx: AnswerRx<R>,
) -> Result<Submitted<R>, Error> {
    match deadlines.wait(appended_rx).await {
        Some(Ok((index, term))) => Ok(Submitted {
            index,
            term,
            group,
            rx,
            deadlines: deadlines.clone(),
        }),
        // Refused: the answer says why (it was sent before the appended sender was dropped).
        Some(Err(_)) => match deadlines.wait(rx).await {
            Some(Ok(Err(e))) => Err(e),
            Some(_) => Err(Error::Stopped),
            None => Err(Error::Timeout { group }),
        },
        None => Err(Error::Timeout { group }),
    }
}

/// One group of a [`Node`], looked up once ([`Node::group`]): proposes and reads like the
/// node's methods of the same names, without a lookup per request.
pub struct GroupClient<S: StateMachine> {
    node: Node<S>,
    group: GroupId,
    client: InboxTx<ClientReq<S>>,
}

impl<S: StateMachine> Clone for GroupClient<S> {
    fn clone(&self) -> Self {
        GroupClient {
            node: self.node.clone(),
            group: self.group,
            client: self.client.clone(),
        }
    }
}

impl<S: StateMachine> GroupClient<S> {
    /// The group this handle sends to.
    pub fn id(&self) -> GroupId {
        self.group
    }

    /// As [`Node::propose`].
    pub async fn propose(&self, command: S::Command) -> Result<S::Response, Error> {
        let rx = self.queue_command(None, command, None)?;
        Ok(self.node.answer(self.group, rx).await?.into_indexed()?.1)
    }

    /// As [`Node::propose_with_id`].
    pub async fn propose_with_id(
        &self,
        id: RequestId,
        command: S::Command,
    ) -> Result<S::Response, Error> {
        let rx = self.queue_command(Some(id), command, None)?;
        Ok(self.node.answer(self.group, rx).await?.into_indexed()?.1)
    }

    /// As [`Node::propose_indexed`].
    pub async fn propose_indexed(
        &self,
        id: Option<RequestId>,
        command: S::Command,
    ) -> Result<(Index, S::Response), Error> {
        let rx = self.queue_command(id, command, None)?;
        self.node.answer(self.group, rx).await?.into_indexed()
    }

    /// As [`Node::submit`].
    pub async fn submit(
        &self,
        id: Option<RequestId>,
        command: S::Command,
    ) -> Result<Submitted<S::Response>, Error> {
        let (tx, appended) = oneshot::channel();
        let rx = self.queue_command(id, command, Some(tx))?;
        submitted(&self.node.inner.deadlines, self.group, appended, rx).await
    }

    /// As [`Node::open_session`].
    pub async fn open_session(&self) -> Result<u64, Error> {
        let payload = self.node.open_session_payload()?;
        let rx = self.queue_proposal(payload, None)?;
        session_id(self.node.answer(self.group, rx).await?)
    }

    /// As [`Node::read`].
    pub async fn read(&self, query: S::Query) -> Result<S::Response, Error> {
        let rx = submit_to(&self.client, self.group, |reply| ClientReq::Read {
            query,
            reply,
        })?;
        Ok(self.node.answer(self.group, rx).await?.1)
    }

    /// As [`Node::read_lease`].
    pub async fn read_lease(&self, query: S::Query) -> Result<S::Response, Error> {
        let rx = submit_to(&self.client, self.group, |reply| ClientReq::ReadLease {
            query,
            reply,
        })?;
        Ok(self.node.answer(self.group, rx).await?.1)
    }

    /// As [`Node::read_stale`].
    pub async fn read_stale(&self, query: S::Query) -> Result<Stale<S::Response>, Error> {
        let rx: ReadRx<S::Response> = submit_to(&self.client, self.group, |reply| {
            ClientReq::ReadStale { query, reply }
        })?;
        let (applied, response) = self.node.answer(self.group, rx).await?;
        Ok(Stale { applied, response })
    }

    /// Encodes and queues a command (the synchronous half of a proposal: the command is
    /// consumed here, not held across the wait).
    fn queue_command(
        &self,
        id: Option<RequestId>,
        command: S::Command,
        appended: Option<oneshot::Sender<(Index, Term)>>,
    ) -> Result<AnswerRx<S::Response>, Error> {
        self.queue_proposal(encode_proposal(id, &command)?, appended)
    }

    fn queue_proposal(
        &self,
        payload: Vec<u8>,
        appended: Option<oneshot::Sender<(Index, Term)>>,
    ) -> Result<AnswerRx<S::Response>, Error> {
        submit_to(&self.client, self.group, |reply| ClientReq::Propose {
            payload,
            reply,
            appended,
        })
    }
}

/// The session id an opening entry's answer gives: its index.
fn session_id<R>(answer: Answer<R>) -> Result<u64, Error> {
    match answer.outcome {
        Outcome::SessionOpened => Ok(answer.index),
        Outcome::Response(_) => Err(Error::Codec(
            "a session-opening entry answered with a command response".into(),
        )),
    }
}

/// Asks a group's partition actor for its metrics; one that does not answer within a second
/// (frozen, stalled) is described from its counters instead.
async fn group_status<S: StateMachine>(group: GroupId, e: &GroupEntry<S>) -> GroupMetrics {
    let (tx, rx) = oneshot::channel();
    if e.handle.control.try_send(Control::Status(tx)).is_ok() {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), rx).await {
            return m;
        }
    }
    GroupMetrics::from_stats(group, &e.stats)
}

/// A running node: hosts many Raft groups of one state-machine type. Cheap to clone; every
/// method may be called concurrently.
pub struct Node<S: StateMachine> {
    /// Shared by every clone: a clone (one per request in a typical server) is one reference
    /// count, not one per field.
    inner: Arc<NodeShared<S>>,
}

/// What every clone of a [`Node`] refers to.
struct NodeShared<S: StateMachine> {
    cfg: Arc<NodeConfig>,
    registry: flume::Sender<RegistryMsg<S>>,
    table: watch::Receiver<Table<S>>,
    net: Net,
    unknown: Arc<AtomicU64>,
    hb_stats: Arc<crate::metrics::HeartbeatStats>,
    deadlines: Deadlines,
}

impl<S: StateMachine> Clone for Node<S> {
    fn clone(&self) -> Self {
        Node {
            inner: self.inner.clone(),
        }
    }
}

impl<S: StateMachine> Node<S> {
    /// Starts building a node.
    pub fn builder(cfg: NodeConfig) -> NodeBuilder<S> {
        NodeBuilder::new(cfg)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.cfg.node_id
    }

    /// Hosts group `group` with state machine `sm`. If storage holds the group, it is
    /// recovered; otherwise it starts with `members` as its voters (every node of a new group
    /// must be given the same set).
    pub async fn add_partition(
        &self,
        group: GroupId,
        members: Membership,
        sm: S,
    ) -> Result<(), Error> {
        self.registry_call(|reply| RegistryMsg::Add {
            group,
            membership: Some(members),
            known: None,
            sm,
            reply,
        })
        .await
    }

    /// Hosts group `group` as a joining node: it is no member yet and waits for the leader to
    /// send it the log (call [`Node::add_learner`] at the leader, then promote it with
    /// [`Node::change_membership`]). If storage holds the group, it is recovered instead.
    ///
    /// With a transport that needs addresses (TCP), the node must be able to answer the
    /// leader before the log tells it where the leader is: use
    /// [`Node::join_partition_with`].
    pub async fn join_partition(&self, group: GroupId, sm: S) -> Result<(), Error> {
        self.registry_call(|reply| RegistryMsg::Add {
            group,
            membership: None,
            known: None,
            sm,
            reply,
        })
        .await
    }

    /// As [`Node::join_partition`], with the group's membership as the caller knows it (from
    /// [`Node::membership`] at a member, say): its members with addresses become transport
    /// peers at once, so this node can answer the leader before it receives the log. It does
    /// not make this node a member: the configuration it follows is the one the leader sends.
    pub async fn join_partition_with(
        &self,
        group: GroupId,
        sm: S,
        members: Membership,
    ) -> Result<(), Error> {
        self.registry_call(|reply| RegistryMsg::Add {
            group,
            membership: None,
            known: Some(members),
            sm,
            reply,
        })
        .await
    }

    /// Stops hosting a group; with `purge` its storage is deleted too. A group this node was
    /// removed from (see [`Error::Removed`]) is forgotten (its storage is already purged).
    pub async fn remove_partition(&self, group: GroupId, purge: bool) -> Result<(), Error> {
        self.registry_call(|reply| RegistryMsg::Remove {
            group,
            purge,
            reply,
        })
        .await
    }

    async fn registry_call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> RegistryMsg<S>,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .registry
            .send_async(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    fn entry(&self, group: GroupId) -> Result<GroupEntry<S>, Error> {
        self.with_entry(group, GroupEntry::clone)
    }

    /// Runs `f` on `group`'s entry under one short borrow of the table.
    fn with_entry<R>(
        &self,
        group: GroupId,
        f: impl FnOnce(&GroupEntry<S>) -> R,
    ) -> Result<R, Error> {
        let table = self.inner.table.borrow();
        let entry = table.get(group).ok_or(Error::UnknownGroup(group))?;
        if entry.removed {
            return Err(Error::Removed { group });
        }
        if let Some(e) = &entry.failed {
            return Err(e.clone());
        }
        Ok(f(entry))
    }

    /// Sends a request to a group and waits (bounded) for its answer.
    async fn request<T>(
        &self,
        group: GroupId,
        make: impl FnOnce(Reply<T>) -> ClientReq<S>,
    ) -> Result<T, Error> {
        let rx = self.enqueue(group, make)?;
        self.answer(group, rx).await
    }

    /// Queues a request at a group without waiting; its answer comes on the receiver. Kept
    /// out of the `async` part so that a waiting request's state holds only the receiver and
    /// the deadline, not the request as well (it is a task's whole state in a client loop).
    fn enqueue<T>(
        &self,
        group: GroupId,
        make: impl FnOnce(Reply<T>) -> ClientReq<S>,
    ) -> Result<oneshot::Receiver<Result<T, Error>>, Error> {
        // Look up and send under one short borrow of the table (no handle clone per request).
        self.with_entry(group, |e| submit_to(&e.handle.client, group, make))?
    }

    /// Waits (bounded) for the answer to a request [`Node::enqueue`] queued.
    async fn answer<T>(
        &self,
        group: GroupId,
        rx: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        match self.inner.deadlines.wait(rx).await {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Stopped),
            None => Err(Error::Timeout { group }),
        }
    }

    /// Proposes a command; returns the state machine's response once it is applied here.
    /// Without a session id a retry after `Timeout` may apply twice; see
    /// [`Node::propose_with_id`].
    pub async fn propose(&self, group: GroupId, command: S::Command) -> Result<S::Response, Error> {
        let rx = self.queue_command(group, None, command, None)?;
        Ok(self.answer(group, rx).await?.into_indexed()?.1)
    }

    /// Proposes a command under a client session: retries with the same `id` apply at most once
    /// and return the first application's response (exactly-once). `id.client` must be a
    /// session opened with [`Node::open_session`], and `id.seq` must grow by one per new
    /// request of that session (one request at a time per session). A request whose session
    /// was evicted meanwhile (see [`NodeConfig::max_sessions`]) is answered
    /// [`Error::SessionExpired`] and is not applied.
    pub async fn propose_with_id(
        &self,
        group: GroupId,
        id: RequestId,
        command: S::Command,
    ) -> Result<S::Response, Error> {
        let rx = self.queue_command(group, Some(id), command, None)?;
        Ok(self.answer(group, rx).await?.into_indexed()?.1)
    }

    /// Proposes a command, under a client session if `id` is given (as
    /// [`Node::propose_with_id`]), and returns the log index it took effect at with the state
    /// machine's response: the index `StateMachine::apply` was called with for it. For a retry
    /// answered from the session table it is the index of the entry that applied the request
    /// first. Indices of successive proposals increase.
    pub async fn propose_indexed(
        &self,
        group: GroupId,
        id: Option<RequestId>,
        command: S::Command,
    ) -> Result<(Index, S::Response), Error> {
        let rx = self.queue_command(group, id, command, None)?;
        self.answer(group, rx).await?.into_indexed()
    }

    /// As [`Node::propose_indexed`], with the command already encoded: `command` is the
    /// postcard encoding of an `S::Command`, such as a server received from its client. The
    /// bytes go into the log as they are, without being decoded and encoded again here; a
    /// command that does not decode changes nothing and is answered with [`Error::Codec`] when
    /// it applies, on every replica alike.
    pub async fn propose_encoded(
        &self,
        group: GroupId,
        id: Option<RequestId>,
        command: &[u8],
    ) -> Result<(Index, S::Response), Error> {
        let payload = Proposal::encode_raw(id, command).map_err(|e| Error::Codec(e.to_string()))?;
        let rx = self.queue_proposal(group, payload, None)?;
        self.answer(group, rx).await?.into_indexed()
    }

    /// Proposes a command (under a client session if `id` is given) and returns as soon as the
    /// leader has appended it to its log, with the entry's index and term; await
    /// [`Submitted::outcome`] for the response. Both waits are bounded by `request_timeout`.
    /// Refusals (`NotLeader`, `Overloaded`, ...) come from this call.
    pub async fn submit(
        &self,
        group: GroupId,
        id: Option<RequestId>,
        command: S::Command,
    ) -> Result<Submitted<S::Response>, Error> {
        let (tx, appended) = oneshot::channel();
        let rx = self.queue_command(group, id, command, Some(tx))?;
        submitted(&self.inner.deadlines, group, appended, rx).await
    }

    /// Opens a client session at the group's leader; returns its id, the log index of the
    /// entry that opened it (ids are never reused). Use it as `RequestId::client`, with
    /// `seq` counting from 1. The group keeps at most [`NodeConfig::max_sessions`] sessions,
    /// evicting the least recently used. Retrying a failed `open_session` is safe: at worst it
    /// opens a session nobody uses, which is evicted in time.
    pub async fn open_session(&self, group: GroupId) -> Result<u64, Error> {
        let rx = self.queue_proposal(group, self.open_session_payload()?, None)?;
        session_id(self.answer(group, rx).await?)
    }

    /// The entry bytes that open a session, carrying this node's cap.
    fn open_session_payload(&self) -> Result<Vec<u8>, Error> {
        Proposal::open_session(self.inner.cfg.max_sessions).map_err(|e| Error::Codec(e.to_string()))
    }

    /// Encodes and queues a command (the synchronous half of a proposal: the command is
    /// consumed here, not held across the wait).
    fn queue_command(
        &self,
        group: GroupId,
        id: Option<RequestId>,
        command: S::Command,
        appended: Option<oneshot::Sender<(Index, Term)>>,
    ) -> Result<AnswerRx<S::Response>, Error> {
        self.queue_proposal(group, encode_proposal(id, &command)?, appended)
    }

    /// Queues a proposal's entry bytes.
    fn queue_proposal(
        &self,
        group: GroupId,
        payload: Vec<u8>,
        appended: Option<oneshot::Sender<(Index, Term)>>,
    ) -> Result<AnswerRx<S::Response>, Error> {
        self.enqueue(group, |reply| ClientReq::Propose {
            payload,
            reply,
            appended,
        })
    }

    /// A handle on one group of this node, for callers that send it many requests: it holds
    /// the group's queue, so its requests skip the lookup in the node's table (a read lock on
    /// the published table per request, a lock word every worker thread writes). It answers
    /// [`Error::Stopped`] once the group is removed or the node stops; ask for a new one if
    /// the group is added again.
    pub fn group(&self, group: GroupId) -> Result<GroupClient<S>, Error> {
        let client = self.with_entry(group, |e| e.handle.client.clone())?;
        Ok(GroupClient {
            node: self.clone(),
            group,
            client,
        })
    }

    /// A linearizable read (ReadIndex, Raft thesis 6.4): reflects every write acknowledged
    /// before it began. The leader confirms with a heartbeat round that it still leads, then
    /// answers once it has applied its commit index of when the read came. Only the leader
    /// answers; others say `NotLeader` with a hint.
    pub async fn read(&self, group: GroupId, query: S::Query) -> Result<S::Response, Error> {
        Ok(self
            .request(group, |reply| ClientReq::Read { query, reply })
            .await?
            .1)
    }

    /// A linearizable read served from the leader's lease (Raft thesis 6.4.1): like
    /// [`Node::read`], without a heartbeat round while the lease holds, so it costs no
    /// message and no round trip.
    ///
    /// The lease: once a quorum has acknowledged a heartbeat round the leader started, no
    /// other node can be elected for an election timeout (each acknowledging follower neither
    /// votes for another node nor campaigns for that long, by its own clock). The leader
    /// counts the lease by its own clock as `election_timeout` less a tick for granularity and
    /// less `raft.lease_margin_ticks` ticks of `tick_interval` for clock drift (see
    /// [`NodeConfig::raft`]), and uses it only after an entry of its own term has committed.
    /// The read is then answered once the state machine has applied the commit index of when
    /// it came.
    ///
    /// When the lease does not hold (just elected, expired after an idle stretch, a leader
    /// transfer under way, leases turned off) the read falls back to ReadIndex, and the round
    /// it starts renews the lease; a lease read in the second half of the lease renews it too,
    /// so a steady stream of lease reads rarely waits for a round. The read is never refused
    /// for want of a lease. It is linearizable provided no node's clock runs faster than the
    /// leader's by more than the margin.
    pub async fn read_lease(&self, group: GroupId, query: S::Query) -> Result<S::Response, Error> {
        Ok(self
            .request(group, |reply| ClientReq::ReadLease { query, reply })
            .await?
            .1)
    }

    /// A read of this node's local state, on any node (leader, follower or learner), without
    /// any Raft round: the answer may be stale. It comes with the applied index the state
    /// reflected: every entry up to `applied` and none after. Successive stale reads at one
    /// node never go back in time (unless the node restarts).
    pub async fn read_stale(
        &self,
        group: GroupId,
        query: S::Query,
    ) -> Result<Stale<S::Response>, Error> {
        let (applied, response) = self
            .request(group, |reply| ClientReq::ReadStale { query, reply })
            .await?;
        Ok(Stale { applied, response })
    }

    /// Asks the leader to hand leadership to `to` (returns once the transfer started).
    pub async fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<(), Error> {
        self.request(group, |reply| ClientReq::Transfer { to, reply })
            .await
    }

    /// Changes the group's configuration to `target` (voters, learners and addresses; a
    /// simple configuration) at its leader, and resolves once the **final** configuration has
    /// committed — after the joint phase when voters change — with that entry's index. The
    /// addresses `target` leaves out are kept for the nodes that stay.
    ///
    /// - A new voter must be a learner whose log is within `raft.learner_catchup_lag` entries
    ///   of the leader's ([`Node::add_learner`] waits for that): otherwise
    ///   [`Error::Raft`] with [`raft_core::MembershipError::NotLearner`] or
    ///   [`raft_core::MembershipError::NotCaughtUp`].
    /// - [`Error::ChangeInProgress`] (retryable) while an earlier change has not finished.
    /// - [`Error::ChangeOutcomeUnknown`] (retryable) if this node stops leading, or
    ///   `request_timeout` passes, before the final configuration commits: the change may or
    ///   may not take effect. Asking for a configuration that is already in effect waits for
    ///   it to commit and returns its index, so the call can simply be retried at the leader.
    /// - [`Error::NotLeader`] (with the leader's client address when the configuration has it)
    ///   at a follower.
    ///
    /// A node removed by the change learns it once the final configuration commits (the leader
    /// keeps replicating to it until it holds that entry; if the leader loses office before it
    /// has told the node, a later leader tells it when it hears from it, provided the two can
    /// still reach each other: over TCP, while another group names the node, or through static
    /// peers): it stops hosting the group and purges its storage of it; calls for the group
    /// there answer [`Error::Removed`]. A leader that removes itself steps down once the change
    /// has committed.
    pub async fn change_membership(
        &self,
        group: GroupId,
        target: Membership,
    ) -> Result<Index, Error> {
        let limit = self.inner.cfg.request_timeout * 2;
        self.membership_call(group, limit, |reply| ClientReq::ChangeMembership {
            target,
            reply,
        })
        .await
    }

    /// Adds node `id` to the group as a learner (it receives the log, does not vote), reachable
    /// at `addrs` if given (they travel in the configuration, so every member, and `id`
    /// itself, can reach the others). Resolves, with the index of the configuration entry,
    /// once that entry has committed **and** the learner holds it and is within
    /// `raft.learner_catchup_lag` entries of the leader's log: it is then ready to be promoted
    /// with [`Node::change_membership`].
    ///
    /// - [`Error::LearnerLagging`] if it did not catch up within
    ///   `NodeConfig::learner_catchup_timeout` (it stays a learner; call again to wait more).
    /// - [`Error::ChangeInProgress`], [`Error::ChangeOutcomeUnknown`] and [`Error::NotLeader`]
    ///   as for [`Node::change_membership`]. Adding a node that is already a learner (with the
    ///   same addresses) adds nothing and waits for it to catch up, so retries are safe.
    ///
    /// The node itself must host the group first ([`Node::join_partition_with`]).
    pub async fn add_learner(
        &self,
        group: GroupId,
        id: NodeId,
        addrs: Option<NodeAddrs>,
    ) -> Result<Index, Error> {
        let limit = self.inner.cfg.learner_catchup_timeout + self.inner.cfg.request_timeout;
        self.membership_call(group, limit, |reply| ClientReq::AddLearner {
            id,
            addrs,
            reply,
        })
        .await
    }

    /// Queues a membership call and waits for its outcome: the partition answers it within its
    /// own deadline; `limit` only bounds a partition that stopped answering at all.
    async fn membership_call(
        &self,
        group: GroupId,
        limit: Duration,
        make: impl FnOnce(Reply<Index>) -> ClientReq<S>,
    ) -> Result<Index, Error> {
        let rx = self.enqueue(group, make)?;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout { group }),
        }
    }

    /// The group's current configuration as this node knows it (the latest in its log,
    /// committed or not), with the members' addresses: what a service tells a node that is
    /// about to join ([`Node::join_partition_with`]).
    pub async fn membership(&self, group: GroupId) -> Result<Membership, Error> {
        let control = self.with_entry(group, |e| e.handle.control.clone())?;
        let (tx, rx) = oneshot::channel();
        control
            .try_send(Control::Membership(tx))
            .map_err(|e| match e {
                flume::TrySendError::Full(_) => Error::Overloaded { group },
                flume::TrySendError::Disconnected(_) => Error::Stopped,
            })?;
        match tokio::time::timeout(self.inner.cfg.request_timeout, rx).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout { group }),
        }
    }

    /// A snapshot of every group's state. A group whose actor does not answer within a second
    /// is reported from its counters with `responsive: false`.
    pub async fn metrics(&self) -> NodeMetrics {
        let table = self.inner.table.borrow().clone();
        let mut groups = Vec::new();
        for (group, e) in table.sorted() {
            if !e.removed {
                groups.push(group_status(group, e).await);
            }
        }
        NodeMetrics {
            node: self.inner.cfg.node_id,
            groups,
            unknown_group_drops: self.inner.unknown.load(Ordering::Relaxed),
            transport: self.inner.net.metrics(),
            heartbeat: self.inner.hb_stats.snapshot(),
        }
    }

    /// Metrics of one group.
    pub async fn group_metrics(&self, group: GroupId) -> Result<GroupMetrics, Error> {
        let e = self.entry(group)?;
        Ok(group_status(group, &e).await)
    }

    /// Simulation: kills every task of this node at once, losing whatever storage had not
    /// synced, like `kill -9`. Restart it by building a new node over the same durable store.
    #[cfg(feature = "fault-injection")]
    pub fn crash(&self) {
        let _ = self.inner.registry.try_send(RegistryMsg::Crash);
    }

    /// Test hook (I6): freezes a group's partition actor for `duration`.
    #[cfg(feature = "fault-injection")]
    pub fn freeze_partition(&self, group: GroupId, duration: Duration) -> Result<(), Error> {
        let e = self.entry(group)?;
        e.handle
            .control
            .try_send(Control::Freeze(duration))
            .map_err(|_| Error::Overloaded { group })
    }

    /// Test hook (a hung disk): for `duration` from when storage takes the request, no sync
    /// completes, so nothing new becomes durable and every request queues behind the stall.
    #[cfg(feature = "fault-injection")]
    pub fn stall_storage(&self, duration: Duration) -> Result<(), Error> {
        self.inner
            .registry
            .try_send(RegistryMsg::StallStorage(duration))
            .map_err(|_| Error::Stopped)
    }

    /// Stops every actor of the node and its transport. Completes within the configured
    /// shutdown bound even when peers are unreachable (I10).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .registry
            .try_send(RegistryMsg::Shutdown { reply: tx })
            .is_ok()
        {
            let _ = tokio::time::timeout(self.inner.cfg.shutdown_timeout * 2, rx).await;
        }
    }
}
