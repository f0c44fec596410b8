//! The user's state machine and the framework's client-session layer.

use std::io::{self, Read, Write};

use raft_core::SnapshotMeta;
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

    /// Writes the whole state to `out`, as a stream: the framework sends it to storage as it
    /// is written (and from there to followers chunk by chunk), so the state is never held
    /// twice. Any serde format with a writer API does (`postcard::to_io`, `serde_json::to_writer`,
    /// `bincode::serialize_into`), or hand-written records for a large state. `out` is not
    /// buffered by the framework beyond storage's own buffer; an error fails only this snapshot
    /// (another is asked for once `snapshot_threshold` more entries are applied).
    ///
    /// Called on the group's apply actor, which applies nothing meanwhile: the snapshot covers
    /// exactly the entries applied so far.
    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()>;

    /// Replaces the whole state with the snapshot read from `data`, which covers the log up to
    /// `meta.index` (of term `meta.term`, with the configuration `meta.membership`): the next
    /// command applied is at `meta.index + 1`. `data` yields exactly the bytes `snapshot`
    /// wrote, read from storage as they are consumed (wrap it in a `std::io::BufReader` for
    /// many small reads).
    ///
    /// An error is fatal for the group on this node: it stops, reports
    /// [`Error::SnapshotRestore`](crate::Error::SnapshotRestore) to every call for it, and is
    /// not restarted with a state it does not have.
    fn restore(&mut self, meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()>;
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
