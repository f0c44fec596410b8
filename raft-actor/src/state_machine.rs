//! The user's state machine and the framework's client-session layer.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a user implements to replicate a service. Commands arrive in log order, exactly once
/// per client request under a session (the framework answers a retried `(client, sequence)`
/// pair from its session table instead of applying it again; see `Node::propose_with_id`).
///
/// Called from the group's apply actor only; `apply` may be slow — it delays this group's
/// replies, never its heartbeats (I5).
pub trait StateMachine: Send + 'static {
    /// A state-changing command.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// A read-only query.
    type Query: Serialize + DeserializeOwned + Send + 'static;
    /// The answer to a command or query.
    type Response: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// Applies a committed command at log `index` (the index `Node::propose_indexed` and
    /// `Node::submit` report).
    fn apply(&mut self, index: u64, command: Self::Command) -> Self::Response;

    /// Answers a query against the current state (linearizable when called through
    /// `Node::read` or `Node::read_lease`; possibly stale through `Node::read_stale`).
    fn query(&self, query: Self::Query) -> Self::Response;

    /// Serializes the whole state.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// Identifies a client request for exactly-once application: a retry carries the same pair.
/// `client` is a session opened with `Node::open_session`; a request under a session the
/// group no longer holds is refused with `Error::SessionExpired`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub struct RequestId {
    /// The client's session: the id `Node::open_session` returned (the log index of the entry
    /// that opened it).
    pub client: u64,
    /// Increases by one per new request of this session, from 1; retries reuse it. One
    /// request at a time per session: the table keeps only the last one's answer.
    pub seq: u64,
}
