//! `LogState`: the log part of a partition core — the term of every entry, the commit index, and
//! how far the log is durable here, announced for applying and applied.
//!
//! The fields are private so that the invariants below hold by construction; the handlers in
//! the sibling files change the log only through these methods.
//!
//! Invariants:
//! - `commit` never moves backwards, and never past the last entry known to be in the log:
//!   `commit <= terms.last_index()`. Its only writer is [`LogState::advance_commit`]; truncation
//!   never cuts below it and a snapshot reset never lands behind it.
//! - `applied <= commit`: the runtime can only apply what committed.
//! - `durable_index <= terms.last_index()`: writes are marked durable only for entries still in
//!   the log, and truncation caps it.
//! - `apply_announced` only grows between snapshot installs, and never passes `commit` or
//!   `durable_index` (an entry is applied only once it is committed *and* durable here).

use crate::log_meta::LogTerms;
use crate::types::{Index, Term};

/// The log part of a partition core. See the module docs for the invariants.
#[derive(Debug)]
#[cfg_attr(feature = "model", derive(Clone, Hash))]
pub(crate) struct LogState {
    /// Terms of the entries after the snapshot.
    terms: LogTerms,
    /// Highest index known committed.
    commit: Index,
    /// Highest index the runtime reports applied.
    applied: Index,
    /// Highest index such that the log up to it is durable here.
    durable_index: Index,
    /// Highest index announced in an `Apply` action.
    apply_announced: Index,
}

impl LogState {
    /// The log as recovered: everything in it is durable, and the snapshot is applied. The
    /// recovered commit index is only a hint; it is brought within `[snapshot_index, last]`.
    pub(crate) fn new(terms: LogTerms, commit_hint: Index, snapshot_index: Index) -> Self {
        let commit = commit_hint.clamp(snapshot_index, terms.last_index());
        LogState {
            commit,
            applied: snapshot_index,
            durable_index: terms.last_index(),
            apply_announced: snapshot_index,
            terms,
        }
    }

    /// The terms of the log.
    pub(crate) fn terms(&self) -> &LogTerms {
        &self.terms
    }

    /// Term of the entry at `index`, if it is in the log (or is the snapshot index).
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        self.terms.term(index)
    }

    /// Index of the first entry still in the log.
    pub(crate) fn first_index(&self) -> Index {
        self.terms.first_index()
    }

    /// Index of the last entry.
    pub(crate) fn last_index(&self) -> Index {
        self.terms.last_index()
    }

    /// Term of the last entry.
    pub(crate) fn last_term(&self) -> Term {
        self.terms.last_term()
    }

    /// Index covered by the log's snapshot.
    pub(crate) fn snapshot_index(&self) -> Index {
        self.terms.snapshot_index()
    }

    /// See [`LogTerms::first_index_of_term_at`].
    pub(crate) fn first_index_of_term_at(&self, index: Index) -> Index {
        self.terms.first_index_of_term_at(index)
    }

    /// See [`LogTerms::is_up_to_date`].
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        self.terms.is_up_to_date(last_index, last_term)
    }

    /// The commit index.
    pub(crate) fn commit(&self) -> Index {
        self.commit
    }

    /// The only writer of the commit index. It moves forward to `to`, but never backwards and
    /// never past the last entry in the log: a commit index is a promise that the entries up to
    /// it are in every future leader's log, and this node can only make that promise about
    /// entries it holds. Returns true if the index moved.
    pub(crate) fn advance_commit(&mut self, to: Index) -> bool {
        let to = to.min(self.terms.last_index());
        if to <= self.commit {
            return false;
        }
        self.commit = to;
        true
    }

    /// The applied index, as reported by the runtime.
    pub(crate) fn applied(&self) -> Index {
        self.applied
    }

    /// The runtime applied up to `index`; capped at the commit index.
    pub(crate) fn record_applied(&mut self, index: Index) {
        self.applied = self.applied.max(index.min(self.commit));
    }

    /// Highest index such that the log up to it is durable here.
    pub(crate) fn durable_index(&self) -> Index {
        self.durable_index
    }

    /// A write that ends at `last` is durable.
    pub(crate) fn mark_durable(&mut self, last: Index) {
        self.durable_index = self.durable_index.max(last);
    }

    /// Appends one entry of `term`.
    pub(crate) fn push(&mut self, term: Term) {
        self.terms.push(term);
    }

    /// Removes every entry from `index` on. Committed entries are never removed, so `index` is
    /// past the commit index; durability is capped at what is left.
    pub(crate) fn truncate_from(&mut self, index: Index) {
        debug_assert!(index > self.commit, "truncating committed entries");
        let index = index.max(self.commit + 1);
        self.terms.truncate_from(index);
        self.durable_index = self.durable_index.min(index - 1);
    }

    /// Forgets the entries up to and including `index` (they are in a snapshot).
    pub(crate) fn compact_to(&mut self, index: Index) {
        self.terms.compact_to(index);
    }

    /// A snapshot at `(index, term)` from the leader was installed. With `retain`, the log holds
    /// a matching entry at `index` and keeps what follows; otherwise the log is replaced by the
    /// snapshot and durable only up to it. The snapshot covers only committed entries, so the
    /// commit index moves to it and everything up to it counts as applied.
    pub(crate) fn install_snapshot(&mut self, index: Index, term: Term, retain: bool) {
        if retain {
            self.terms.compact_to(index);
        } else {
            debug_assert!(index >= self.commit, "a snapshot behind the commit index");
            self.terms.reset_to_snapshot(index, term);
        }
        self.advance_commit(index);
        self.applied = index;
        self.apply_announced = index;
        if !retain {
            self.durable_index = self.durable_index.min(index);
        }
    }

    /// The next index to announce for applying, if it moved: committed and durable here.
    pub(crate) fn take_apply_target(&mut self) -> Option<Index> {
        let target = self.commit.min(self.durable_index);
        if target > self.apply_announced {
            self.apply_announced = target;
            Some(target)
        } else {
            None
        }
    }
}
