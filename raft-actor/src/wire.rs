//! What travels between nodes: Raft messages on the data lane, coalesced heartbeats on the
//! heartbeat lane.

use raft_core::{GroupId, Message, Term};
use serde::{Deserialize, Serialize};

/// The transport's message type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMsg {
    /// A Raft message of the envelope's group (data lane).
    Raft(Message),
    /// One frame per peer node per interval: every group the sender leads with that peer as a
    /// member, with the sender's term (heartbeat lane, envelope group 0).
    Heartbeats(Vec<(GroupId, Term)>),
    /// Acknowledgements of `Heartbeats`: the groups for which the receiver accepts the sender
    /// as leader at that term.
    HeartbeatAcks(Vec<(GroupId, Term)>),
}
