//! The partition core's view of its log: the term of every entry, without the payloads.
//!
//! Payloads live in storage (another thread, another actor); the protocol only needs terms to
//! check log matching, find conflicts and compare up-to-dateness. Terms change rarely, so they
//! are kept as runs: `(first index of the run, term)`, a few dozen bytes for millions of entries.

use serde::{Deserialize, Serialize};

use crate::types::{Index, Term};

/// Terms of the log entries after the snapshot, as runs of equal terms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "model", derive(Hash))]
pub struct LogTerms {
    /// Index covered by the latest snapshot (0 if none). Entries up to here are compacted.
    snapshot_index: Index,
    /// Term of the entry at `snapshot_index`.
    snapshot_term: Term,
    /// `(first_index, term)` runs, strictly increasing in both. Invariant: the first run starts
    /// at `snapshot_index + 1` when non-empty.
    runs: Vec<(Index, Term)>,
    /// Index of the last entry. Invariant: `last_index >= snapshot_index`.
    last_index: Index,
}

impl LogTerms {
    /// An empty log whose prefix up to `snapshot_index` is covered by a snapshot.
    pub fn new(snapshot_index: Index, snapshot_term: Term) -> Self {
        LogTerms {
            snapshot_index,
            snapshot_term,
            runs: Vec::new(),
            last_index: snapshot_index,
        }
    }

    /// Rebuilds the view from `(index, term)` pairs of consecutive entries after the snapshot.
    /// Returns `None` if the pairs are not consecutive or terms decrease.
    pub fn from_entries(
        snapshot_index: Index,
        snapshot_term: Term,
        entries: impl IntoIterator<Item = (Index, Term)>,
    ) -> Option<Self> {
        let mut log = LogTerms::new(snapshot_index, snapshot_term);
        for (index, term) in entries {
            if index != log.last_index + 1 || term < log.last_term() {
                return None;
            }
            log.push(term);
        }
        Some(log)
    }

    /// Index of the first entry still in the log (`snapshot_index + 1`).
    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }

    /// Index of the last entry (or the snapshot index when the log is empty).
    pub fn last_index(&self) -> Index {
        self.last_index
    }

    /// Term of the last entry (or the snapshot's term when the log is empty).
    pub fn last_term(&self) -> Term {
        self.runs.last().map_or(self.snapshot_term, |r| r.1)
    }

    /// Index covered by the snapshot.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// Term of the snapshot's last entry.
    pub fn snapshot_term(&self) -> Term {
        self.snapshot_term
    }

    /// Term of the entry at `index`; `None` if it was compacted away or is past the end.
    /// The snapshot index itself answers with the snapshot term.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index {
            return None;
        }
        let pos = self.runs.partition_point(|&(start, _)| start <= index);
        // pos >= 1 because the first run starts at snapshot_index + 1 <= index.
        Some(self.runs[pos - 1].1)
    }

    /// First index of the run containing `index` (for the follower's conflict hint).
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        if index <= self.snapshot_index || index > self.last_index {
            return self.first_index();
        }
        let pos = self.runs.partition_point(|&(start, _)| start <= index);
        self.runs[pos - 1].0
    }

    /// Appends one entry of `term` at `last_index + 1`.
    pub fn push(&mut self, term: Term) {
        self.last_index += 1;
        match self.runs.last() {
            Some(&(_, t)) if t == term => {}
            _ => self.runs.push((self.last_index, term)),
        }
    }

    /// Removes every entry from `index` on. `index` must be past the snapshot.
    pub fn truncate_from(&mut self, index: Index) {
        debug_assert!(index > self.snapshot_index);
        let index = index.max(self.snapshot_index + 1);
        if index > self.last_index {
            return;
        }
        self.runs.retain(|&(start, _)| start < index);
        self.last_index = index - 1;
    }

    /// Forgets entries up to and including `index` (log compaction). `index` must be a known
    /// entry; the snapshot term becomes that entry's term.
    pub fn compact_to(&mut self, index: Index) {
        if index <= self.snapshot_index {
            return;
        }
        let Some(term) = self.term(index) else { return };
        self.runs.retain(|&(start, _)| start > index);
        if index < self.last_index {
            let next_run = self.runs.first().map(|r| r.0);
            if next_run != Some(index + 1) {
                self.runs.insert(0, (index + 1, term));
            }
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Replaces the whole log by a snapshot at `(index, term)` with no entries after it.
    pub fn reset_to_snapshot(&mut self, index: Index, term: Term) {
        *self = LogTerms::new(index, term);
    }

    /// True if a log ending at `(last_index, last_term)` is at least as up to date as this one
    /// (Raft paper, 5.4.1).
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(terms: &[Term]) -> LogTerms {
        let mut l = LogTerms::new(0, 0);
        for &t in terms {
            l.push(t);
        }
        l
    }

    #[test]
    fn terms_are_found_by_run() {
        let l = log(&[1, 1, 1, 4, 4, 5, 5, 6]);
        assert_eq!(l.term(0), Some(0));
        assert_eq!(l.term(3), Some(1));
        assert_eq!(l.term(4), Some(4));
        assert_eq!(l.term(8), Some(6));
        assert_eq!(l.term(9), None);
        assert_eq!(l.first_index_of_term_at(5), 4);
        assert_eq!(l.last_term(), 6);
    }

    #[test]
    fn truncate_then_append() {
        let mut l = log(&[1, 1, 2, 2, 3]);
        l.truncate_from(4);
        assert_eq!(l.last_index(), 3);
        assert_eq!(l.term(3), Some(2));
        l.push(4);
        assert_eq!(l.term(4), Some(4));
        l.truncate_from(3);
        assert_eq!(l.last_term(), 1);
    }

    #[test]
    fn compaction_keeps_later_terms() {
        let mut l = log(&[1, 1, 2, 2, 3]);
        l.compact_to(3);
        assert_eq!(l.first_index(), 4);
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(4), Some(2));
        assert_eq!(l.term(5), Some(3));
        assert_eq!(l.term(2), None);
        l.compact_to(5);
        assert_eq!(l.last_index(), 5);
        assert_eq!(l.last_term(), 3);
        l.push(3);
        assert_eq!(l.term(6), Some(3));
    }

    #[test]
    fn from_entries_rejects_gaps() {
        assert!(LogTerms::from_entries(0, 0, [(1, 1), (3, 1)]).is_none());
        assert!(LogTerms::from_entries(0, 0, [(1, 2), (2, 1)]).is_none());
        let l = LogTerms::from_entries(5, 2, [(6, 2), (7, 3)]).unwrap();
        assert_eq!(l.term(7), Some(3));
    }
}
