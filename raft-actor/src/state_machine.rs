//! The user's state machine and the framework's client-session layer.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a user implements to replicate a service. Commands arrive in log order, exactly once
/// per client request (the framework drops duplicates of a `(client, sequence)` pair).
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

    /// Applies a committed command at log `index`.
    fn apply(&mut self, index: u64, command: Self::Command) -> Self::Response;

    /// Answers a query against the current state (linearizable when called through
    /// `Node::read`).
    fn query(&self, query: Self::Query) -> Self::Response;

    /// Serializes the whole state.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// Identifies a client request for exactly-once application: a retry carries the same pair.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub struct RequestId {
    /// A client's unique id (e.g. random 64 bits chosen at client start).
    pub client: u64,
    /// Increases by one per new request of this client; retries reuse it.
    pub seq: u64,
}
