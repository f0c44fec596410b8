//! The server side: serves one [`Node`]'s groups to clients over raft-net's RPC.
//!
//! Every request is turned into one `Node` call and every [`raft_actor::Error`] into a
//! [`ServiceError`] the client's retry rule can act on. Requests that must reach the leader
//! (proposals, linearizable and lease reads, membership changes) are answered
//! [`ServiceError::NotLeader`] by other nodes, with the leader's client address when the
//! configuration knows it; stale reads and status are answered by any node.

use std::net::SocketAddr;

use raft_actor::{Error, GroupId, Node, StateMachine};
use raft_net::{NetError, RpcServer, RpcServerConfig, RpcServerStats};
use tokio::net::{TcpListener, ToSocketAddrs};
use tracing::info;

use crate::calls;
use crate::protocol::{
    Admin, Answer, GroupStatus, GroupSummary, NodeStatus, Request, ServiceError,
};

/// The request type a server of state machine `S` decodes.
pub type RequestOf<S> = Request<<S as StateMachine>::Command, <S as StateMachine>::Query>;
/// The answer type a server of state machine `S` encodes.
pub type AnswerOf<S> = Answer<<S as StateMachine>::Response>;

/// A [`StateMachine`] a [`Server`] can serve: one whose command, query and response types
/// are `Sync` too (a request's future holds them across awaits, and the RPC server runs
/// request futures on any worker thread).
///
/// Implemented for every such state machine; there is nothing to implement. It names the
/// bounds once for [`Server::serve`], [`Server::bind`] and
/// [`LocalCluster`](crate::local::LocalCluster), and generic code that serves a state machine
/// can ask for `S: Servable` instead of repeating them.
pub trait Servable: StateMachine<Command: Sync, Query: Sync, Response: Sync> {}

impl<S> Servable for S where S: StateMachine<Command: Sync, Query: Sync, Response: Sync> {}

/// Settings of a [`Server`].
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// The client listener's limits (frame size, requests in flight per connection,
    /// connections, timeouts) and its TLS: `rpc.tls` is `None` (plaintext) by default; with
    /// an `RpcTlsServer` every client connection completes a TLS handshake first, mutual if
    /// it was given a client CA.
    pub rpc: RpcServerConfig,
}

/// A running server: a client listener in front of a [`Node`]. Stopping it closes the
/// listener and its connections; the node keeps running.
pub struct Server {
    rpc: RpcServer,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.rpc.local_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Serves `node` on `listener` (on the current tokio runtime).
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// use raft_actor::{MemConfig, MemNetwork, MemStore, Membership, Node, NodeConfig, WireMsg};
    /// use raft_service::{Client, Server, ServerConfig};
    ///
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// // A one-node cluster, served on a listener the caller bound.
    /// let (transport, inbound) = MemNetwork::<WireMsg>::direct(&[1], &MemConfig::default())?
    ///     .pop()
    ///     .expect("one node");
    /// let node = Node::<Counter>::builder(NodeConfig::new(1))
    ///     .transport(transport, inbound)
    ///     .storage(MemStore::new())
    ///     .start()
    ///     .await?;
    /// node.add_partition(1, Membership::new([1]), Counter::default()).await?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let server = Server::serve(node.clone(), listener, ServerConfig::default())?;
    /// let mut client = Client::<Counter>::connect(server.local_addr())?;
    /// assert_eq!(client.propose(1, Add(7)).await?.response, 7);
    /// server.shutdown().await;
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn serve<S: Servable>(
        node: Node<S>,
        listener: TcpListener,
        config: ServerConfig,
    ) -> Result<Self, NetError> {
        let id = node.id();
        let handler = Handler { node };
        let tls = match &config.rpc.tls {
            None => "off",
            Some(t) if t.requires_client_cert() => "mutual",
            Some(_) => "server",
        };
        let rpc = RpcServer::serve(listener, config.rpc, move |req: RequestOf<S>| {
            let h = handler.clone();
            async move { h.handle(req).await }
        })?;
        info!(node = id, addr = %rpc.local_addr(), tls, "serving clients");
        Ok(Server { rpc })
    }

    /// Binds `addr` and serves `node` there; see [`Server::serve`].
    ///
    /// ```
    /// # use raft_service::doc_support::{Add, Counter};
    /// use raft_actor::{MemConfig, MemNetwork, MemStore, Membership, Node, NodeConfig, WireMsg};
    /// use raft_service::{Server, ServerConfig};
    ///
    /// # #[tokio::main] async fn main() -> anyhow::Result<()> {
    /// # let (transport, inbound) = MemNetwork::<WireMsg>::direct(&[1], &MemConfig::default())?
    /// #     .pop()
    /// #     .expect("one node");
    /// # let node = Node::<Counter>::builder(NodeConfig::new(1))
    /// #     .transport(transport, inbound)
    /// #     .storage(MemStore::new())
    /// #     .start()
    /// #     .await?;
    /// let server = Server::bind(node.clone(), "127.0.0.1:0", ServerConfig::default()).await?;
    /// assert!(server.local_addr().ip().is_loopback());
    /// assert_eq!(server.stats().accepted, 0);
    /// server.shutdown().await;
    /// # node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn bind<S: Servable>(
        node: Node<S>,
        addr: impl ToSocketAddrs,
        config: ServerConfig,
    ) -> Result<Self, NetError> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(node, listener, config)
    }

    /// The address clients connect to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.rpc.local_addr()
    }

    /// The listener's counters: connections, refusals, bad frames, failed TLS handshakes.
    pub fn stats(&self) -> RpcServerStats {
        self.rpc.stats()
    }

    /// Closes the listener and every client connection (bounded by the RPC server's
    /// shutdown timeout). The node is not stopped.
    pub async fn shutdown(&self) {
        self.rpc.shutdown().await;
    }
}

/// The request handler; cloned per request (one `Arc` inside).
struct Handler<S: StateMachine> {
    node: Node<S>,
}

impl<S: StateMachine> Clone for Handler<S> {
    fn clone(&self) -> Self {
        Handler {
            node: self.node.clone(),
        }
    }
}

impl<S: StateMachine> Handler<S> {
    async fn handle(&self, req: RequestOf<S>) -> AnswerOf<S> {
        let node = &self.node;
        match req {
            Request::Propose {
                group,
                session,
                command,
            } => match calls::propose(node, group, session, command.as_bytes()).await {
                Ok((index, response)) => Answer::Applied { index, response },
                Err(e) => self.failed(group, e),
            },
            Request::Read { group, kind, query } => {
                match calls::read(node, group, kind, query).await {
                    Ok((applied, response)) => Answer::Read { applied, response },
                    Err(e) => self.failed(group, e),
                }
            }
            Request::OpenSession { group } => match calls::open_session(node, group).await {
                Ok(client) => Answer::Session { client },
                Err(e) => self.failed(group, e),
            },
            Request::Admin(admin) => self.admin(admin).await,
        }
    }

    async fn admin(&self, admin: Admin) -> AnswerOf<S> {
        let node = &self.node;
        match admin {
            Admin::Status { group } => match node.group_metrics(group).await {
                Ok(m) => Answer::Status(GroupStatus {
                    node: node.id(),
                    group,
                    is_leader: m.role == raft_actor::Role::Leader,
                    role: format!("{:?}", m.role),
                    term: m.term,
                    leader: m.leader,
                    commit: m.commit,
                    applied: m.applied,
                    last_index: m.last_index,
                    lag: m.lag.into_iter().collect(),
                    membership: m.membership,
                }),
                Err(e) => self.failed(group, e),
            },
            Admin::Node => {
                let m = node.metrics().await;
                Answer::Node(NodeStatus {
                    node: m.node,
                    groups: m
                        .groups
                        .into_iter()
                        .map(|g| GroupSummary {
                            group: g.group,
                            is_leader: g.role == raft_actor::Role::Leader,
                            term: g.term,
                            leader: g.leader,
                            commit: g.commit,
                            applied: g.applied,
                            leader_terms: g.leader_terms,
                            max_lag: g.lag.values().copied().max().unwrap_or(0),
                            responsive: g.responsive,
                        })
                        .collect(),
                })
            }
            Admin::Members { group } => match calls::members(node, group).await {
                Ok(m) => Answer::Members(m),
                Err(e) => self.failed(group, e),
            },
            Admin::AddNode {
                group,
                id,
                addrs,
                voter,
            } => match calls::add_node(node, group, id, addrs, voter).await {
                Ok(index) => Answer::Done { index },
                Err(e) => self.failed(group, e),
            },
            Admin::RemoveNode { group, id } => match calls::remove_node(node, group, id).await {
                Ok(index) => Answer::Done { index },
                Err(e) => self.failed(group, e),
            },
            Admin::TransferLeader { group, to } => match node.transfer_leader(group, to).await {
                Ok(()) => Answer::Done { index: 0 },
                Err(e) => self.failed(group, e),
            },
        }
    }

    fn failed(&self, group: GroupId, e: Error) -> AnswerOf<S> {
        Answer::Error(to_service_error(self.node.id(), group, e))
    }
}

/// Maps a node's error to what the client's retry rule reads.
pub(crate) fn to_service_error(node: raft_actor::NodeId, group: GroupId, e: Error) -> ServiceError {
    let addr = calls::leader_addr(&e);
    match e {
        Error::NotLeader { leader, .. } => ServiceError::NotLeader {
            node,
            group,
            leader,
            addr,
        },
        Error::SessionExpired { client, .. } => ServiceError::SessionExpired { group, client },
        Error::Timeout { .. } | Error::ChangeOutcomeUnknown { .. } => ServiceError::Timeout {
            group,
            reason: e.to_string(),
        },
        // Another server may help: this one is busy, stopping, or does not host the group yet.
        Error::Overloaded { .. } | Error::Stopped | Error::Storage(_) | Error::UnknownGroup(_) => {
            ServiceError::Unavailable {
                group,
                reason: e.to_string(),
            }
        }
        e if e.is_retryable() => ServiceError::Unavailable {
            group,
            reason: e.to_string(),
        },
        e => ServiceError::Refused {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generic code written against the bounds `serve` and `bind` spelled out before
    /// [`Servable`] compiles as it did: the blanket impl covers it.
    #[allow(dead_code)]
    async fn the_spelled_out_bounds_still_serve<S: StateMachine>(
        node: Node<S>,
        listener: TcpListener,
    ) -> Result<Server, NetError>
    where
        S::Command: Sync,
        S::Query: Sync,
        S::Response: Sync,
    {
        let served = Server::serve(node.clone(), listener, ServerConfig::default())?;
        served.shutdown().await;
        Server::bind(node, "127.0.0.1:0", ServerConfig::default()).await
    }
}
