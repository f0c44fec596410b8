//! What travels between nodes: Raft messages on the data lane, coalesced heartbeats on the
//! heartbeat lane.
//!
//! ## Heartbeat frames carry changes, not lists
//!
//! Every `heartbeat_interval` a node sends each peer node one [`HeartbeatFrame`]. Its *claims*
//! — the groups the sender leads (and vouches for, I6) with the receiver as a member,
//! each with the sender's term — are versioned: a frame either carries the whole list
//! ([`Claims::Full`]) or only what changed since a version the receiver acknowledged
//! ([`Claims::Changes`], empty when nothing changed). With 10,000 idle groups a frame is a few
//! bytes, and the receiver does no per-group work: a frame it can apply renews every claim it
//! holds from that sender at once. The receiver answers each frame with a [`HeartbeatAck`]
//! naming the version it now holds and the claims it does not accept (it knows a newer term);
//! the sender's check-quorum counts a peer for a group only if its latest ack holds the claim
//! and does not reject it.

use raft_core::{GroupId, Message, Term};
use serde::{Deserialize, Serialize};

/// The transport's message type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMsg {
    /// A Raft message of the envelope's group (data lane).
    Raft(Message),
    /// One frame per peer node per heartbeat interval (heartbeat lane, envelope group 0).
    Heartbeat(HeartbeatFrame),
    /// The answer to a [`WireMsg::Heartbeat`] (heartbeat lane, envelope group 0).
    HeartbeatAck(HeartbeatAck),
}

/// A coalesced heartbeat: "I am alive, and I still lead what I claimed".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatFrame {
    /// Identifies the sender's heartbeat actor for as long as it runs. Versions are numbered
    /// per session, so a restarted sender is never confused with its former self.
    pub session: u64,
    /// The version of the claims the receiver holds once it applies this frame.
    pub version: u64,
    /// The frame's number in the session (every frame the sender sends counts). A frame
    /// numbered below one already received was held back in the network: it is not news that
    /// the sender is alive, and renews nothing (a leader cut off with frames still in flight
    /// would otherwise keep its followers from electing another for as long as the network
    /// holds frames back).
    pub seq: u64,
    /// How the receiver gets there.
    pub claims: Claims,
}

/// The claims carried by a [`HeartbeatFrame`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claims {
    /// Every group the sender leads with the receiver as a member, with its term. Replaces
    /// whatever the receiver held (unless it already holds a newer version).
    Full(Vec<(GroupId, Term)>),
    /// Changes since version `base`: the claims that are new or have a new term (`set`) and
    /// the groups no longer claimed (`unset`). Applies to a receiver holding any version from
    /// `base` to the frame's version (each change says what a group's claim now is, so
    /// applying one twice changes nothing); any other receiver ignores it and its ack asks for
    /// more.
    Changes {
        /// The oldest version the changes apply to.
        base: u64,
        /// New or changed claims.
        set: Vec<(GroupId, Term)>,
        /// Groups no longer claimed.
        unset: Vec<GroupId>,
    },
}

/// The answer to a [`HeartbeatFrame`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The session of the frame answered.
    pub session: u64,
    /// The version of the sender's claims the receiver holds (`None`: nothing of this session,
    /// send the full list).
    pub version: Option<u64>,
    /// Claimed groups the receiver does not accept: it knows a newer term, or does not host the
    /// group. The sender's check-quorum does not count the receiver for them.
    pub rejected: Vec<GroupId>,
}

/// The transport every actor of a node sends through, carrying [`WireMsg`]s.
pub(crate) type Net = std::sync::Arc<dyn raft_net::Transport<WireMsg>>;
