//! Log-level checkers of the simulation, on nodes' durable logs (what [`crate::store::SimStore`]
//! synced), so they need no access to the runtime's internals.
//!
//! - [`check_log_matching`] — Raft's Log Matching Property (paper, section 5.3): if two logs
//!   hold an entry with the same index and term, the logs are identical up to that index.
//! - [`LeaderCompleteness`] — the Leader Completeness Property (section 5.4): an entry committed
//!   in term `t` is in the log of every leader of a term after `t`.
//! - [`WakeupAudit`] — one replicator wake-up per log change: every replicator is woken exactly
//!   once per log change the partition publishes.
//!
//! Each returns a description of the first violation it finds; the unit tests below feed each
//! one a bad log and see it fail.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use raft_core::{Entry, EntryPayload, Index, NodeId, Term};
use raft_storage::Recovered;

/// One node's durable log: the snapshot it starts after and the entries that follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogImage {
    /// Whose log it is.
    pub node: NodeId,
    /// Index of the latest snapshot (0: none). Entries up to it may be compacted away.
    pub snapshot_index: Index,
    /// Term of the entry at `snapshot_index`.
    pub snapshot_term: Term,
    /// Consecutive entries (they may start before `snapshot_index + 1`).
    pub entries: Vec<Entry>,
}

impl LogImage {
    /// The image of what a store recovered for a group (`None`: an empty log).
    pub fn from_recovered(node: NodeId, recovered: Option<Recovered>) -> LogImage {
        match recovered {
            None => LogImage {
                node,
                ..LogImage::default()
            },
            Some(r) => LogImage {
                node,
                snapshot_index: r.snapshot.index,
                snapshot_term: r.snapshot.term,
                entries: r.entries,
            },
        }
    }

    /// A log of entries `1..` with these terms and empty normal payloads (for tests).
    pub fn from_terms(node: NodeId, terms: &[Term]) -> LogImage {
        LogImage {
            node,
            snapshot_index: 0,
            snapshot_term: 0,
            entries: terms
                .iter()
                .enumerate()
                .map(|(i, &term)| Entry {
                    index: i as Index + 1,
                    term,
                    payload: EntryPayload::Normal(Default::default()),
                })
                .collect(),
        }
    }

    /// The entry at `index`, if the log holds it.
    pub fn get(&self, index: Index) -> Option<&Entry> {
        let first = self.entries.first()?.index;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    /// The last index the log covers (entries or snapshot).
    pub fn last_index(&self) -> Index {
        self.entries
            .last()
            .map_or(self.snapshot_index, |e| e.index.max(self.snapshot_index))
    }

    /// The term at `index`: from an entry, or from the snapshot point.
    pub fn term(&self, index: Index) -> Option<Term> {
        match self.get(index) {
            Some(e) => Some(e.term),
            None if index == self.snapshot_index => Some(self.snapshot_term),
            None => None,
        }
    }
}

/// Read access to one node's durable log, for [`LeaderCompleteness`] (which must not copy a
/// whole log at every leader it sees).
pub trait LogView {
    /// Whose log it is.
    fn node(&self) -> NodeId;
    /// The latest snapshot's index and term (`(0, 0)`: none).
    fn snapshot_point(&self) -> (Index, Term);
    /// The entry at `index`, if the log holds it.
    fn entry(&self, index: Index) -> Option<Entry>;
}

impl LogView for LogImage {
    fn node(&self) -> NodeId {
        self.node
    }

    fn snapshot_point(&self) -> (Index, Term) {
        (self.snapshot_index, self.snapshot_term)
    }

    fn entry(&self, index: Index) -> Option<Entry> {
        self.get(index).cloned()
    }
}

/// A hash of an entry's payload (so a committed log can be remembered cheaply).
fn payload_hash(e: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    match &e.payload {
        EntryPayload::Noop => 0u8.hash(&mut h),
        EntryPayload::Normal(d) => (1u8, d).hash(&mut h),
        EntryPayload::Membership(m) => (2u8, format!("{m:?}")).hash(&mut h),
    }
    h.finish()
}

/// Log Matching: finds the highest index at which both logs hold an entry of the same term
/// and checks that every entry both hold below it is identical (term and payload). Compacted
/// prefixes are skipped: a snapshot covers only committed entries, which state-machine safety
/// checks.
pub fn check_log_matching(a: &LogImage, b: &LogImage) -> Result<(), String> {
    let (Some(fa), Some(fb)) = (a.entries.first(), b.entries.first()) else {
        return Ok(());
    };
    let lo = fa.index.max(fb.index);
    let hi = a.last_index().min(b.last_index());
    // Highest index where the terms agree.
    let mut top = None;
    let mut i = hi;
    while i >= lo && i > 0 {
        if let (Some(x), Some(y)) = (a.get(i), b.get(i)) {
            if x.term == y.term {
                top = Some(i);
                break;
            }
        }
        i -= 1;
    }
    let Some(top) = top else {
        return Ok(());
    };
    for i in lo..=top {
        let (Some(x), Some(y)) = (a.get(i), b.get(i)) else {
            continue;
        };
        if x.term != y.term || payload_hash(x) != payload_hash(y) {
            return Err(format!(
                "log matching: nodes {} and {} agree on term {} at index {top} but differ at \
                 index {i} (terms {} and {}{})",
                a.node,
                b.node,
                a.get(top).map_or(0, |e| e.term),
                x.term,
                y.term,
                if x.term == y.term {
                    ", payloads differ"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

/// Leader Completeness, checked as leaders are seen.
///
/// [`LeaderCompleteness::committed`] records the prefix a leader reports as committed, as far as
/// that leader's durable log holds it (a majority of followers can commit an entry before the
/// leader's own sync; the rest is recorded at a later observation). The term the commit was
/// *observed* in bounds the term the entries were committed in from above.
/// [`LeaderCompleteness::check_leader`] then checks that a leader of a later term holds every
/// one of them (same term, same payload), or covers it by its snapshot. A candidate's own vote
/// counts only once its term and vote are durable, and the storage actor syncs in order, so a
/// leader's durable log holds every entry it had when it campaigned.
///
/// Each node's log is verified up to a watermark once, then only beyond it: committed entries
/// never leave a correct log, and a log that later lost one would break log matching against
/// the others or state-machine safety, which the run checks at the end.
#[derive(Clone, Debug, Default)]
pub struct LeaderCompleteness {
    /// index → (term, payload hash, term in which the commit was first observed).
    committed: BTreeMap<Index, (Term, u64, Term)>,
    /// node → highest index verified against `committed` while that node led.
    verified: BTreeMap<NodeId, Index>,
}

impl LeaderCompleteness {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest index recorded as committed.
    pub fn commit_index(&self) -> Index {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// Records that `leader`, leading in `term`, reports entries up to `commit` committed.
    /// Entries already recorded must agree (two committed entries at one index is a violation).
    pub fn committed(
        &mut self,
        term: Term,
        leader: &impl LogView,
        commit: Index,
    ) -> Result<(), String> {
        let from = self.commit_index() + 1;
        let (snapshot_index, _) = leader.snapshot_point();
        // The last index recorded before must agree with this leader's log if it holds it.
        if let Some((&i, &(t, h, _))) = self.committed.iter().next_back() {
            if let Some(e) = leader.entry(i) {
                if e.term != t || payload_hash(&e) != h {
                    return Err(format!(
                        "leader completeness: index {i} was committed with term {t}, but leader \
                         {} of term {term} holds term {} there",
                        leader.node(),
                        e.term
                    ));
                }
            }
        }
        for i in from..=commit {
            match leader.entry(i) {
                Some(e) => {
                    self.committed.insert(i, (e.term, payload_hash(&e), term));
                }
                // Compacted into the leader's snapshot: nothing left to remember it by.
                None if i <= snapshot_index => {}
                // Not yet durable here: a majority of followers may commit an entry before
                // the leader's own sync. A later observation records it.
                None => break,
            }
        }
        Ok(())
    }

    /// Checks that `leader`, leading in `term`, holds every entry committed as observed in an
    /// earlier term.
    pub fn check_leader(&mut self, term: Term, leader: &impl LogView) -> Result<(), String> {
        let node = leader.node();
        let (snapshot_index, snapshot_term) = leader.snapshot_point();
        let from = self.verified.get(&node).copied().unwrap_or(0) + 1;
        let mut upto = from - 1;
        for (&i, &(t, h, seen)) in self.committed.range(from..) {
            // Committed as seen in this term or later: this leader need not have it (yet).
            // Stopping here is conservative; a later leader checks the rest.
            if seen >= term {
                break;
            }
            match leader.entry(i) {
                Some(e) if e.term == t && payload_hash(&e) == h => {}
                Some(e) => {
                    return Err(format!(
                        "leader completeness: index {i} was committed with term {t} (seen in term \
                         {seen}); leader {node} of term {term} holds term {} there{}",
                        e.term,
                        if e.term == t {
                            " with another payload"
                        } else {
                            ""
                        }
                    ));
                }
                None if i < snapshot_index || (i == snapshot_index && snapshot_term == t) => {}
                None => {
                    return Err(format!(
                        "leader completeness: index {i} was committed with term {t} (seen in term \
                         {seen}); leader {node} of term {term} lacks it"
                    ));
                }
            }
            upto = i;
        }
        self.verified.insert(node, upto);
        Ok(())
    }
}

/// One replicator wake-up per log change, in a window where it is exact: one leader, unchanged membership, every replicator alive
/// throughout and each log change published one at a time. Then every replicate signal the
/// partition publishes reaches each of its replicators and wakes it exactly once, so the
/// leader's counters must move by `wakeups = signals × replicators`: fewer means a lost
/// wake-up (braft's follower that only ever got heartbeats), more means a double one.
///
/// Outside such windows the relation is not an equation — the signal is a latest value, so a
/// replicator busy with a storage read sees two quick changes as one, and replicators come
/// and go with leadership — which is why the simulation audits a quiet window rather than the
/// whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WakeupAudit {
    /// Replicate signals the leader published in the window.
    pub signals: u64,
    /// Wake-ups its replicators observed in the window.
    pub wakeups: u64,
    /// Replicators (peers of the leader) throughout the window.
    pub replicators: u64,
}

impl WakeupAudit {
    /// Checks `wakeups == signals × replicators` and that the window saw signals at all.
    pub fn check(&self) -> Result<(), String> {
        if self.signals == 0 {
            return Err("wake-up audit: no log change in the audit window".into());
        }
        if self.wakeups != self.signals * self.replicators {
            return Err(format!(
                "wake-up audit (I9): {} log-change signals to {} replicators gave {} wake-ups \
                 (expected {})",
                self.signals,
                self.replicators,
                self.wakeups,
                self.signals * self.replicators
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_logs_pass() {
        let a = LogImage::from_terms(1, &[1, 1, 2, 3, 3]);
        let b = LogImage::from_terms(2, &[1, 1, 2, 4]);
        assert_eq!(check_log_matching(&a, &b), Ok(()));
        assert_eq!(check_log_matching(&b, &a), Ok(()));
    }

    #[test]
    fn log_matching_catches_a_different_prefix() {
        // Same term at index 4, but index 2 differs: impossible in Raft.
        let a = LogImage::from_terms(1, &[1, 1, 2, 3]);
        let b = LogImage::from_terms(2, &[1, 2, 2, 3]);
        let e = check_log_matching(&a, &b).unwrap_err();
        assert!(e.contains("index 2"), "{e}");
    }

    #[test]
    fn log_matching_catches_a_different_payload() {
        let a = LogImage::from_terms(1, &[1, 1, 2]);
        let mut b = a.clone();
        b.node = 2;
        b.entries[0].payload = EntryPayload::Normal(vec![7].into());
        let e = check_log_matching(&a, &b).unwrap_err();
        assert!(e.contains("payloads differ"), "{e}");
    }

    #[test]
    fn log_matching_skips_compacted_prefixes() {
        let a = LogImage::from_terms(1, &[1, 1, 2, 3]);
        let mut b = LogImage::from_terms(2, &[9, 9, 2, 3]);
        b.entries.drain(..2);
        b.snapshot_index = 2;
        b.snapshot_term = 1;
        assert_eq!(check_log_matching(&a, &b), Ok(()));
    }

    #[test]
    fn leader_completeness_passes_a_complete_leader() {
        let mut lc = LeaderCompleteness::new();
        lc.committed(2, &LogImage::from_terms(1, &[1, 2, 2]), 3)
            .unwrap();
        assert_eq!(
            lc.check_leader(3, &LogImage::from_terms(2, &[1, 2, 2, 3])),
            Ok(())
        );
    }

    #[test]
    fn leader_completeness_catches_a_leader_missing_a_committed_entry() {
        let mut lc = LeaderCompleteness::new();
        lc.committed(2, &LogImage::from_terms(1, &[1, 2, 2]), 3)
            .unwrap();
        // A leader of term 3 whose log ends before the committed index 3.
        let e = lc
            .check_leader(3, &LogImage::from_terms(2, &[1, 2]))
            .unwrap_err();
        assert!(e.contains("lacks it"), "{e}");
        // A leader of term 4 that overwrote it.
        let e = lc
            .check_leader(4, &LogImage::from_terms(3, &[1, 2, 3]))
            .unwrap_err();
        assert!(e.contains("holds term 3"), "{e}");
    }

    #[test]
    fn leader_completeness_ignores_leaders_of_the_commit_term() {
        // Committed as seen in term 3: a (stale) leader of term 3 may not have it yet.
        let mut lc = LeaderCompleteness::new();
        lc.committed(3, &LogImage::from_terms(1, &[1, 3]), 2)
            .unwrap();
        assert_eq!(lc.check_leader(3, &LogImage::from_terms(2, &[1])), Ok(()));
    }

    #[test]
    fn conflicting_commits_are_caught() {
        let mut lc = LeaderCompleteness::new();
        lc.committed(2, &LogImage::from_terms(1, &[1, 2]), 2)
            .unwrap();
        let e = lc
            .committed(3, &LogImage::from_terms(2, &[1, 3, 3]), 3)
            .unwrap_err();
        assert!(e.contains("index 2 was committed with term 2"), "{e}");
    }

    #[test]
    fn only_the_durable_prefix_of_a_commit_is_recorded() {
        let mut lc = LeaderCompleteness::new();
        lc.committed(2, &LogImage::from_terms(1, &[1, 2]), 5)
            .unwrap();
        assert_eq!(lc.commit_index(), 2);
        lc.committed(2, &LogImage::from_terms(1, &[1, 2, 2, 2, 2]), 5)
            .unwrap();
        assert_eq!(lc.commit_index(), 5);
    }

    #[test]
    fn wakeup_audit_catches_lost_and_double_wakeups() {
        let ok = WakeupAudit {
            signals: 10,
            wakeups: 40,
            replicators: 4,
        };
        assert_eq!(ok.check(), Ok(()));
        let lost = WakeupAudit { wakeups: 39, ..ok };
        assert!(lost.check().unwrap_err().contains("gave 39 wake-ups"));
        let double = WakeupAudit { wakeups: 41, ..ok };
        assert!(double.check().is_err());
        let empty = WakeupAudit::default();
        assert!(empty.check().is_err());
    }
}
