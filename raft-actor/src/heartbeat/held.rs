//! The follower side of coalesced heartbeats: the claims one peer node made to this node, as of
//! the version this node holds, and which of them it accepts.
//!
//! An accepted claim *covers* its group: while the peer's frames keep arriving, the group's
//! election timer needs no attention at all (it is parked), however many groups there are.
//! When the peer falls silent for an election timeout, or withdraws a claim, the groups it
//! covered get their timers back, counted from the last frame that covered them.

use std::collections::{BTreeMap, BTreeSet};

use raft_core::{GroupId, Term};
use tokio::time::Instant;

use crate::wire::{Claims, HeartbeatFrame};

/// What one peer node claims to this node.
#[derive(Debug)]
pub(super) struct Held {
    /// The peer's heartbeat session these claims belong to.
    session: u64,
    /// The version held (`None`: nothing of this session yet).
    version: Option<u64>,
    /// Group → the term the peer claims to lead it in.
    claims: BTreeMap<GroupId, Term>,
    /// Claims not accepted here (a newer local term, or this node's own leadership).
    /// Invariant: a subset of `claims`' keys.
    rejected: BTreeSet<GroupId>,
    /// When the last applicable frame arrived (it renewed every claim at once).
    pub(super) last_heard: Instant,
    /// The highest frame number received in this session.
    newest_seq: u64,
    /// A frame arrived within an election timeout: accepted claims cover their groups.
    pub(super) live: bool,
    /// Claims on groups this node does not host that were not stored: `claims` was at its
    /// bound (see [`Held::apply`]).
    pub(super) dropped_foreign: u64,
}

/// What applying a frame did.
pub(super) enum Applied {
    /// The frame applied: these groups' claims changed (new, new term, or withdrawn), each
    /// with whether its former claim was accepted.
    Changed(Vec<(GroupId, bool)>),
    /// The frame does not apply to the version held (lost or reordered frames); it renews
    /// nothing, and the ack tells the peer what is held.
    Ignored,
}

impl Held {
    pub(super) fn new(session: u64, now: Instant) -> Self {
        Held {
            session,
            version: None,
            claims: BTreeMap::new(),
            rejected: BTreeSet::new(),
            last_heard: now,
            newest_seq: 0,
            live: false,
            dropped_foreign: 0,
        }
    }

    /// Notes frame number `seq` of this session; false if a later frame was received before
    /// (this one was held back in the network, and says nothing about the sender now).
    pub(super) fn note_seq(&mut self, seq: u64) -> bool {
        if seq > self.newest_seq {
            self.newest_seq = seq;
            true
        } else {
            false
        }
    }

    /// The session of the claims held.
    pub(super) fn session(&self) -> u64 {
        self.session
    }

    /// The version held.
    pub(super) fn version(&self) -> Option<u64> {
        self.version
    }

    /// A new session of the peer (it restarted): forgets everything. Returns the groups whose
    /// claims were dropped, each with whether its claim was accepted.
    pub(super) fn reset(&mut self, session: u64) -> Vec<(GroupId, bool)> {
        self.session = session;
        self.version = None;
        self.newest_seq = 0;
        let rejected = std::mem::take(&mut self.rejected);
        std::mem::take(&mut self.claims)
            .into_keys()
            .map(|g| (g, !rejected.contains(&g)))
            .collect()
    }

    /// Applies `frame` (of this session). `accepts(group, term)` says whether this node accepts
    /// the peer as the group's leader in that term. Does not touch `last_heard` / `live`.
    ///
    /// Bounded: a new claim on a group that `hosted` says this node does not host is stored
    /// only while fewer than `limit` claims are held (the caller passes the hosted groups'
    /// count plus `max_foreign_claims`); past it, it is dropped and counted in
    /// `dropped_foreign`. Claims on hosted groups are always stored.
    pub(super) fn apply(
        &mut self,
        frame: HeartbeatFrame,
        accepts: impl Fn(GroupId, Term) -> bool,
        hosted: impl Fn(GroupId) -> bool,
        limit: usize,
    ) -> Applied {
        let v = frame.version;
        let changes: Vec<(GroupId, Option<Term>)> = match frame.claims {
            Claims::Full(list) if self.version.is_none_or(|h| h <= v) => {
                let new: BTreeMap<GroupId, Term> = list.into_iter().collect();
                let mut changes: Vec<(GroupId, Option<Term>)> = self
                    .claims
                    .keys()
                    .filter(|g| !new.contains_key(g))
                    .map(|g| (*g, None))
                    .collect();
                changes.extend(
                    new.iter()
                        .filter(|(g, t)| self.claims.get(g) != Some(t))
                        .map(|(g, t)| (*g, Some(*t))),
                );
                changes
            }
            Claims::Changes { base, set, unset }
                if self.version.is_some_and(|h| base <= h && h <= v) =>
            {
                let mut changes: Vec<(GroupId, Option<Term>)> =
                    unset.into_iter().map(|g| (g, None)).collect();
                changes.extend(set.into_iter().map(|(g, t)| (g, Some(t))));
                changes
            }
            _ => return Applied::Ignored,
        };
        self.version = Some(v);
        let mut changed = Vec::with_capacity(changes.len());
        for (group, claim) in changes {
            if self.claims.get(&group).copied() == claim {
                continue;
            }
            let was_accepted = self.accepted(group);
            match claim {
                Some(_)
                    if !self.claims.contains_key(&group)
                        && self.claims.len() >= limit
                        && !hosted(group) =>
                {
                    self.dropped_foreign += 1;
                    continue;
                }
                Some(term) => {
                    self.claims.insert(group, term);
                    if accepts(group, term) {
                        self.rejected.remove(&group);
                    } else {
                        self.rejected.insert(group);
                    }
                }
                None => {
                    self.claims.remove(&group);
                    self.rejected.remove(&group);
                }
            }
            changed.push((group, was_accepted));
        }
        Applied::Changed(changed)
    }

    /// Re-evaluates acceptance of the claim on `group` (its local state changed). Returns
    /// true if acceptance changed.
    pub(super) fn reaccept(
        &mut self,
        group: GroupId,
        accepts: impl Fn(GroupId, Term) -> bool,
    ) -> bool {
        let Some(&term) = self.claims.get(&group) else {
            return false;
        };
        if accepts(group, term) {
            self.rejected.remove(&group)
        } else {
            self.rejected.insert(group)
        }
    }

    /// True if the peer's claim on `group` is held and accepted (whether or not it is live).
    pub(super) fn accepted(&self, group: GroupId) -> bool {
        self.claims.contains_key(&group) && !self.rejected.contains(&group)
    }

    /// True if the claim on `group` covers it: accepted and the peer is live.
    pub(super) fn covers(&self, group: GroupId) -> bool {
        self.live && self.accepted(group)
    }

    /// Every accepted claim's group.
    pub(super) fn accepted_groups(&self) -> Vec<GroupId> {
        self.claims
            .keys()
            .filter(|g| !self.rejected.contains(g))
            .copied()
            .collect()
    }

    /// The claims not accepted, for the ack.
    pub(super) fn rejected(&self) -> Vec<GroupId> {
        self.rejected.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(version: u64, claims: Claims) -> HeartbeatFrame {
        HeartbeatFrame {
            session: 1,
            version,
            seq: version,
            claims,
        }
    }

    fn changed(a: Applied) -> Vec<GroupId> {
        match a {
            Applied::Changed(v) => v.into_iter().map(|(g, _)| g).collect(),
            Applied::Ignored => panic!("ignored"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn full_lists_and_changes_apply_only_to_the_versions_they_fit() {
        let mut h = Held::new(1, Instant::now());
        let all = |_: GroupId, _: Term| true;
        // Changes need a base.
        let ch = |base, set: Vec<(GroupId, Term)>, unset: Vec<GroupId>| Claims::Changes {
            base,
            set,
            unset,
        };
        assert!(matches!(
            h.apply(frame(3, ch(2, vec![], vec![])), all, |_| true, usize::MAX),
            Applied::Ignored
        ));
        assert_eq!(
            changed(h.apply(
                frame(3, Claims::Full(vec![(1, 2), (2, 2)])),
                all,
                |_| true,
                usize::MAX
            )),
            vec![1, 2]
        );
        assert_eq!(h.version(), Some(3));
        // Cumulative changes from an older base still apply; an older full list does not.
        assert_eq!(
            changed(h.apply(
                frame(5, ch(2, vec![(1, 3)], vec![2])),
                all,
                |_| true,
                usize::MAX
            )),
            vec![2, 1]
        );
        assert!(matches!(
            h.apply(frame(4, Claims::Full(vec![])), all, |_| true, usize::MAX),
            Applied::Ignored
        ));
        assert!(matches!(
            h.apply(frame(9, ch(6, vec![], vec![])), all, |_| true, usize::MAX),
            Applied::Ignored
        ));
        assert!(h.accepted(1) && !h.accepted(2));
        // Acceptance follows the local state.
        assert!(h.reaccept(1, |_, t| t > 3));
        assert_eq!(h.rejected(), vec![1]);
        assert!(!h.reaccept(1, |_, t| t > 3));
        // A full list withdraws what it does not name.
        assert_eq!(
            changed(h.apply(
                frame(6, Claims::Full(vec![(5, 1)])),
                all,
                |_| true,
                usize::MAX
            )),
            vec![1, 5]
        );
        assert_eq!(h.accepted_groups(), vec![5]);
        assert!(h.rejected().is_empty());
        assert_eq!(h.reset(2), vec![(5, true)]);
        assert_eq!((h.session(), h.version()), (2, None));
    }

    /// Issue 30, 3c: claims on groups this node does not host are bounded; claims on hosted
    /// groups are always held. Without the bound all ten foreign claims were stored.
    #[tokio::test(start_paused = true)]
    async fn claims_for_groups_not_hosted_are_bounded() {
        let mut h = Held::new(1, Instant::now());
        let all = |_: GroupId, _: Term| true;
        // Hosts groups 1 and 2; room for 2 + 3 claims.
        let hosted = |g: GroupId| g <= 2;
        let list: Vec<(GroupId, Term)> = (3..=12).map(|g| (g, 1)).chain([(1, 1), (2, 1)]).collect();
        changed(h.apply(frame(1, Claims::Full(list)), all, hosted, 5));
        assert!(
            h.accepted(1) && h.accepted(2),
            "hosted claims are always held"
        );
        assert_eq!(h.accepted_groups().len(), 5);
        assert_eq!(h.dropped_foreign, 7);
        // More foreign claims by changes: dropped too; a hosted one still goes in.
        let ch = Claims::Changes {
            base: 1,
            set: vec![(20, 1), (21, 1)],
            unset: vec![],
        };
        changed(h.apply(frame(2, ch), all, |g| g <= 2 || g == 21, 5));
        assert!(!h.accepted(20) && h.accepted(21));
        assert_eq!(h.dropped_foreign, 8);
        // Withdrawing makes room again.
        let ch = Claims::Changes {
            base: 2,
            set: vec![(30, 1)],
            unset: vec![3, 4],
        };
        changed(h.apply(frame(3, ch), all, hosted, 5));
        assert!(h.accepted(30));
    }
}
