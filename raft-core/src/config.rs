//! Protocol configuration of one partition core, with validation.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::types::NodeId;

/// Settings of a [`crate::PartitionCore`] and its [`crate::ReplicatorCore`]s.
///
/// Time is measured in ticks: the runtime calls `tick()` at a fixed interval (the core never
/// reads a clock). All defaults assume a tick of about 100 ms... or whatever the runtime picks;
/// only ratios between the tick counts matter to the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct Config {
    /// This node's id. Must not be 0.
    pub id: NodeId,
    /// Minimum election timeout in ticks. A follower that hears nothing from a leader for a
    /// randomized time in `[election_ticks, 2 * election_ticks)` campaigns. Must exceed
    /// `heartbeat_ticks`, or followers would campaign between two heartbeats.
    pub election_ticks: u32,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round before a real election, so a node that was partitioned away does not
    /// bump everyone's term when it comes back (Raft thesis, 9.6). On by default.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout steps down, and a
    /// follower that hears from its leader ignores vote requests (leader lease). On by default.
    pub check_quorum: bool,
    /// Most AppendEntries messages in flight to one peer (pipelining window). At the limit the
    /// replicator waits for acknowledgements.
    pub max_inflight_msgs: usize,
    /// Most bytes of entries in flight to one peer. At the limit the replicator waits; a single
    /// message may exceed it so that an oversized entry can still be sent alone.
    pub max_inflight_bytes: u64,
    /// Most entries in one AppendEntries message.
    pub max_entries_per_msg: usize,
    /// Soft cap on the bytes of entries in one AppendEntries message.
    pub max_msg_bytes: u64,
    /// Most reads waiting for ReadIndex confirmation; more are refused with
    /// [`crate::Error::ReadsOverloaded`] (backpressure instead of unbounded memory).
    pub max_pending_reads: usize,
    /// Ask the state machine for a snapshot after this many entries were applied since the last
    /// one. 0 disables automatic snapshots.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot, so a slightly lagging follower catches up by
    /// append rather than by a whole snapshot.
    pub compact_trailing: u64,
    /// A replicator in probe state re-sends its probe after this many ticks without an answer;
    /// one in replicate state with unanswered messages falls back to probing after four times
    /// as long (messages may have been lost). The default, 1 tick (50 ms with raft-actor's
    /// defaults), lets a new leader reach its followers within its first few hundred
    /// milliseconds on a lossy network (with 2, commits under 10 % loss and frequent leader
    /// changes were 2.5 times rarer); on links whose round trip is longer than a tick, raise it,
    /// or every probe is sent twice.
    pub probe_ticks: u32,
    /// A (pre-)candidate sends its vote requests again, to the voters that have not answered
    /// yet, every this many ticks of its round (0: only once per round). On a lossy network a
    /// round then fails only if every attempt with some voter is lost, not the first one:
    /// under 10 % loss with 40 % of messages held back up to 2 s, elections went from taking
    /// seconds to taking about a round. A voter asked twice by the candidate it voted for
    /// answers again without writing its vote again.
    pub vote_retry_ticks: u32,
    /// A learner may be promoted to voter only while its log is at most this many entries
    /// behind the leader's last index, and holds the latest committed configuration
    /// (`change_membership` refuses others with [`crate::MembershipError::NotCaughtUp`]).
    /// raft-actor's `add_learner` also waits until the learner is this close.
    pub learner_catchup_lag: u64,
    /// The runtime runs election timers, heartbeats and check-quorum itself (raft-actor's
    /// heartbeat actor, on its own executor, so a busy data path cannot cause elections) and
    /// calls `election_timeout()` / `quorum_lost()`. `tick()` then only ages the leader lease
    /// and the leader-transfer deadline. Off by default: `tick()` does everything.
    pub external_timers: bool,
    /// Leader leases for reads ([`PartitionCore::read_lease`](crate::PartitionCore::read_lease)),
    /// with `check_quorum`. Off by default. When on:
    /// - a leader serves a lease read without a heartbeat round while its lease holds: a quorum
    ///   (itself included) acknowledged a ReadIndex round the leader started at its own tick
    ///   `t`, and it is not yet at tick `t + election_ticks - 1 - lease_margin_ticks`;
    /// - a follower that heard from its leader within `election_ticks` of its own ticks neither
    ///   votes for another node (this is `check_quorum`'s rule already) nor campaigns: an
    ///   election timeout that comes meanwhile waits until then (leader transfers excepted);
    /// - a node that has just started neither votes nor campaigns for its first
    ///   `election_ticks` ticks: it may have acknowledged a leader's round before it restarted.
    ///
    /// Together these mean that no other leader can be elected while a lease holds, provided no
    /// node's ticks run faster than the leader's by more than the margin. Every node of a group
    /// must use the same `election_ticks` and `lease_reads`.
    pub lease_reads: bool,
    /// Ticks taken off a lease for clock drift between nodes (see `lease_reads`); the lease
    /// lasts `election_ticks - 1 - lease_margin_ticks` ticks from the round that confirmed it
    /// (the 1 is for a tick's granularity: a follower counts whole ticks from whenever in a
    /// tick it heard the round). A lease of 0 ticks never holds: every lease read is then a
    /// ReadIndex read.
    pub lease_margin_ticks: u32,
    /// Seed for the randomized election timeout (mixed with the node id so nodes differ). The
    /// same seed and the same inputs give the same outputs (determinism, docs/architecture.md).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 256,
            max_inflight_bytes: 16 << 20,
            max_entries_per_msg: 1024,
            max_msg_bytes: 1 << 20,
            max_pending_reads: 65_536,
            snapshot_threshold: 100_000,
            compact_trailing: 10_000,
            probe_ticks: 1,
            vote_retry_ticks: 2,
            learner_catchup_lag: 1000,
            external_timers: false,
            lease_reads: false,
            lease_margin_ticks: 1,
            seed: 0,
        }
    }
}

impl Config {
    /// How many ticks a leader's lease lasts from the round that confirmed it (0 with
    /// `lease_reads` or `check_quorum` off): `election_ticks - 1 - lease_margin_ticks`.
    pub fn lease_ticks(&self) -> u32 {
        if !(self.lease_reads && self.check_quorum) {
            return 0;
        }
        self.election_ticks
            .saturating_sub(1)
            .saturating_sub(self.lease_margin_ticks)
    }

    /// A default configuration for node `id`.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            ..Default::default()
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        if self.id == 0 {
            return bad("id", "node id 0 is reserved for \"no node\"");
        }
        if self.heartbeat_ticks == 0 {
            return bad("heartbeat_ticks", "must be at least 1");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError {
                field: "election_ticks",
                reason: format!(
                    "must be greater than heartbeat_ticks ({}), got {}",
                    self.heartbeat_ticks, self.election_ticks
                ),
            });
        }
        if self.election_ticks > 1_000_000 {
            return bad("election_ticks", "must be at most 1,000,000");
        }
        if self.max_inflight_msgs == 0 {
            return bad("max_inflight_msgs", "must be at least 1");
        }
        if self.max_inflight_bytes == 0 {
            return bad("max_inflight_bytes", "must be at least 1");
        }
        if self.max_entries_per_msg == 0 {
            return bad("max_entries_per_msg", "must be at least 1");
        }
        if self.max_msg_bytes == 0 {
            return bad("max_msg_bytes", "must be at least 1");
        }
        if self.max_pending_reads == 0 {
            return bad("max_pending_reads", "must be at least 1");
        }
        if self.probe_ticks == 0 {
            return bad("probe_ticks", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::new(3).validate(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("id", Box::new(|c| c.id = 0)),
            ("heartbeat_ticks", Box::new(|c| c.heartbeat_ticks = 0)),
            ("election_ticks", Box::new(|c| c.election_ticks = 2)),
            ("election_ticks", Box::new(|c| c.election_ticks = u32::MAX)),
            ("max_inflight_msgs", Box::new(|c| c.max_inflight_msgs = 0)),
            ("max_inflight_bytes", Box::new(|c| c.max_inflight_bytes = 0)),
            (
                "max_entries_per_msg",
                Box::new(|c| c.max_entries_per_msg = 0),
            ),
            ("max_msg_bytes", Box::new(|c| c.max_msg_bytes = 0)),
            ("max_pending_reads", Box::new(|c| c.max_pending_reads = 0)),
            ("probe_ticks", Box::new(|c| c.probe_ticks = 0)),
        ];
        for (field, mutate) in cases {
            let mut c = Config::new(1);
            mutate(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().contains(field));
        }
    }
}
