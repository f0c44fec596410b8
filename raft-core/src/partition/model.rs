//! Hooks for the model checker (raft-model), behind the `model` feature (and `model-bugs` for
//! the deliberately broken rules). Nothing here is compiled into a normal build.

use super::PartitionCore;
use crate::rng::SplitMix64;

impl PartitionCore {
    /// Model checking only: resets the timer state that no longer influences behaviour when
    /// [`Config::external_timers`](crate::Config::external_timers) is on and
    /// [`Config::lease_reads`](crate::Config::lease_reads) is off, so that states which differ
    /// only there are recognised as one:
    /// - the election jitter generator and the drawn timeout go back to their initial values
    ///   (the drawn timeout is read only by a stranded node's query timer, and the base timeout
    ///   is one of the values the jitter can draw);
    /// - the ticks counted since the leader was heard from, and since the start, are capped at
    ///   `election_ticks` (they are only ever compared with it, or with the capped timeout);
    /// - a leader's heartbeat counter and lease clock go to zero (the runtime sends the
    ///   heartbeats; the lease clock is read only with lease reads on).
    ///
    /// Does nothing otherwise (internal timers or lease reads: every field counts).
    pub fn model_canonical_timers(&mut self) {
        if !self.cfg.external_timers || self.cfg.lease_reads {
            return;
        }
        let seed = SplitMix64::derive(self.cfg.seed, &[self.cfg.id, self.group]);
        self.election.canonicalize(seed, self.cfg.election_ticks);
        if let Some(lead) = self.lead.as_mut() {
            lead.canonicalize_timers();
        }
    }
}

/// A deliberately broken protocol rule, for the model checker to find (issue 33, "teeth").
/// Set with [`PartitionCore::set_bug`]; every core starts with [`Bug::None`].
#[cfg(feature = "model-bugs")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Bug {
    /// The real rules.
    #[default]
    None,
    /// A vote is granted without checking that the candidate's log is at least as up to date
    /// (paper, 5.4.1).
    NoUpToDateCheck,
    /// A leader commits the highest index a quorum holds even when its entry is of an earlier
    /// term (the Figure 8 rule ignored).
    CommitPreviousTerm,
    /// A configuration entry takes effect when it commits instead of when it is appended
    /// (paper, section 6: a server uses the latest configuration in its log).
    ConfigAtCommit,
}

#[cfg(feature = "model-bugs")]
impl PartitionCore {
    /// Model checking only: breaks one protocol rule on purpose from now on.
    pub fn set_bug(&mut self, bug: Bug) {
        self.bug = bug;
    }

    /// The rule broken on purpose ([`Bug::None`] unless [`PartitionCore::set_bug`] chose one).
    pub fn bug(&self) -> Bug {
        self.bug
    }
}
