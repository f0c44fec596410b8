//! The leader side of coalesced heartbeats: what this node claims to one peer node, what that
//! peer has acknowledged, and which frame to send it next.
//!
//! Claims are versioned with one counter per heartbeat session (shared by all peers, so a
//! version names one moment). For each peer the actor keeps the claims as they are now, the
//! version the peer last acknowledged holding, and every change since then. A frame is then
//! the changes since the acknowledged version (nothing at all when the group set is quiet),
//! or the full list when the peer holds nothing usable.

use std::collections::{BTreeMap, BTreeSet};

use raft_core::{GroupId, Term};
use tokio::time::Instant;

use crate::wire::{Claims, HeartbeatAck, HeartbeatFrame};

/// One claim: this node leads `group` in `term`; announced at version `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Claim {
    term: Term,
    since: u64,
}

/// What this node claims to one peer node, and what the peer acknowledged.
#[derive(Debug, Default)]
pub(super) struct Outbound {
    /// The claims as they are now.
    claims: BTreeMap<GroupId, Claim>,
    /// Every change of `claims` made after version `tracked_from`: the group's claim now
    /// (`None`: withdrawn) and the version of the change.
    changes: BTreeMap<GroupId, (Option<Term>, u64)>,
    /// `changes` is complete from this version on; `None` until the first full list is sent.
    tracked_from: Option<u64>,
    /// The version the peer holds, as far as its acks tell. Invariant: when `Some(a)`,
    /// `tracked_from == Some(a)`, so the changes since `a` are all known.
    acked: Option<u64>,
    /// When the latest ack arrived.
    last_ack: Option<Instant>,
    /// The peer acked within the check-quorum window at the last look (`refresh_fresh`).
    fresh: bool,
    /// Claims the peer does not accept, as of its latest ack.
    rejected: BTreeSet<GroupId>,
}

impl Outbound {
    /// The current claim for `group`, if any.
    pub(super) fn claim(&self, group: GroupId) -> Option<Term> {
        self.claims.get(&group).map(|c| c.term)
    }

    /// Sets this node's claim for `group` (`None`: withdrawn) as of `version`.
    pub(super) fn set(&mut self, group: GroupId, term: Option<Term>, version: u64) {
        match term {
            Some(term) => {
                self.claims.insert(
                    group,
                    Claim {
                        term,
                        since: version,
                    },
                );
            }
            None => {
                self.claims.remove(&group);
            }
        }
        if self.tracked_from.is_some() {
            self.changes.insert(group, (term, version));
        }
    }

    /// The frame to send now, or `None` when the peer is known to hold an empty list already.
    pub(super) fn frame(&mut self, session: u64, version: u64) -> Option<HeartbeatFrame> {
        if self.claims.is_empty() && self.acked.is_some() && self.changes.is_empty() {
            return None;
        }
        let claims = match self.acked {
            // Changes are never more than the full list would be: a long burst of changes
            // (elections) is cheaper sent whole.
            Some(base) if self.changes.len() <= self.claims.len() => {
                let mut set = Vec::new();
                let mut unset = Vec::new();
                for (&group, &(term, _)) in &self.changes {
                    match term {
                        Some(t) => set.push((group, t)),
                        None => unset.push(group),
                    }
                }
                Claims::Changes { base, set, unset }
            }
            _ => {
                if self.tracked_from.is_none() {
                    // The peer will hold this version (or a later one) once a full list
                    // arrives: from here on every change is kept until it acknowledges one.
                    self.changes.clear();
                    self.tracked_from = Some(version);
                }
                Claims::Full(self.claims.iter().map(|(g, c)| (*g, c.term)).collect())
            }
        };
        Some(HeartbeatFrame {
            session,
            version,
            // Numbered by the actor as it sends the frame.
            seq: 0,
            claims,
        })
    }

    /// An ack from the peer, for this session. Returns true if what it says about the claims
    /// changed (check-quorum must look again).
    pub(super) fn on_ack(&mut self, ack: HeartbeatAck, version: u64, now: Instant) -> bool {
        self.last_ack = Some(now);
        let mut changed = false;
        match ack.version {
            None => {
                // The peer holds nothing of this session (it restarted, or no full list
                // reached it yet): send the full list.
                changed = self.acked.is_some();
                self.acked = None;
                self.tracked_from = None;
                self.changes.clear();
            }
            Some(held) if held > version => {} // not a version of this session
            Some(held) => {
                // Usable only if every change since `held` is known; a late ack of an older
                // version than one already acknowledged says nothing new.
                let usable = self.tracked_from.is_some_and(|t| held >= t)
                    && self.acked.is_none_or(|a| held > a);
                if usable {
                    self.acked = Some(held);
                    self.tracked_from = Some(held);
                    self.changes.retain(|_, (_, at)| *at > held);
                    changed = true;
                }
            }
        }
        let rejected: BTreeSet<GroupId> = ack.rejected.into_iter().collect();
        if rejected != self.rejected {
            self.rejected = rejected;
            changed = true;
        }
        changed
    }

    /// Recomputes whether the peer acked within `window`. Returns true if that changed.
    pub(super) fn refresh_fresh(&mut self, now: Instant, window: std::time::Duration) -> bool {
        let fresh = self
            .last_ack
            .is_some_and(|t| now.duration_since(t) < window);
        let changed = fresh != self.fresh;
        self.fresh = fresh;
        changed
    }

    /// The peer acked within the check-quorum window at the last look.
    pub(super) fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Check-quorum: the peer counts for `group` if it acked recently, holds the current claim
    /// and accepts it.
    pub(super) fn counts_for(&self, group: GroupId) -> bool {
        self.fresh
            && !self.rejected.contains(&group)
            && match (self.claims.get(&group), self.acked) {
                (Some(c), Some(a)) => a >= c.since,
                _ => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ack(version: Option<u64>, rejected: Vec<GroupId>) -> HeartbeatAck {
        HeartbeatAck {
            session: 7,
            version,
            rejected,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn full_list_first_then_only_changes_since_the_acked_version() {
        let now = Instant::now();
        let window = Duration::from_millis(500);
        let mut o = Outbound::default();
        o.set(1, Some(3), 1);
        o.set(2, Some(4), 2);
        let f = o.frame(7, 2).unwrap();
        assert_eq!(f.claims, Claims::Full(vec![(1, 3), (2, 4)]));
        // A change before the peer acknowledged: still full lists, and the change is kept.
        o.set(3, Some(5), 3);
        assert!(matches!(o.frame(7, 3).unwrap().claims, Claims::Full(_)));
        assert!(o.on_ack(ack(Some(2), vec![]), 3, now));
        o.refresh_fresh(now, window);
        assert!(o.counts_for(1) && o.counts_for(2));
        assert!(!o.counts_for(3), "announced after the acked version");
        assert_eq!(
            o.frame(7, 3).unwrap().claims,
            Claims::Changes {
                base: 2,
                set: vec![(3, 5)],
                unset: vec![]
            }
        );
        assert!(o.on_ack(ack(Some(3), vec![]), 3, now));
        assert!(o.counts_for(3));
        // Quiet: an empty change frame.
        let quiet = Claims::Changes {
            base: 3,
            set: vec![],
            unset: vec![],
        };
        assert_eq!(o.frame(7, 3).unwrap().claims, quiet);
        assert!(!o.on_ack(ack(Some(3), vec![]), 3, now), "nothing new");
        // A late ack of an older version changes nothing.
        assert!(!o.on_ack(ack(Some(2), vec![]), 3, now));
        // Withdrawn claims and rejections.
        o.set(1, None, 4);
        assert_eq!(
            o.frame(7, 4).unwrap().claims,
            Claims::Changes {
                base: 3,
                set: vec![],
                unset: vec![1]
            }
        );
        assert!(o.on_ack(ack(Some(4), vec![2]), 4, now));
        assert!(!o.counts_for(2), "rejected");
        assert!(o.counts_for(3));
        // Silence past the window.
        assert!(o.refresh_fresh(now + window, window));
        assert!(!o.counts_for(3));
        // The peer lost everything (restart): full list again.
        assert!(o.on_ack(ack(None, vec![]), 4, now + window));
        assert_eq!(
            o.frame(7, 4).unwrap().claims,
            Claims::Full(vec![(2, 4), (3, 5)])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_holds_an_empty_list_gets_no_frames() {
        let now = Instant::now();
        let mut o = Outbound::default();
        o.set(1, Some(1), 1);
        o.frame(7, 1);
        o.set(1, None, 2);
        o.on_ack(ack(Some(1), vec![]), 2, now);
        assert!(o.frame(7, 2).is_some(), "the withdrawal must go out");
        o.on_ack(ack(Some(2), vec![]), 2, now);
        assert!(o.frame(7, 2).is_none());
    }
}
