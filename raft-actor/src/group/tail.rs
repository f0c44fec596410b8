//! The recent tail of a group's log, kept in memory by its partition actor and shared
//! read-only with its replicators and its apply actor.
//!
//! Without it, every AppendEntries a replicator sends and every batch the apply actor applies
//! starts with a read request to the storage actor: a queue hop and a copy per entry, on the
//! hot path of every write. With it, fresh entries go out and get applied straight from
//! memory; storage is read only for entries older than the tail (a lagging follower, a
//! restart).
//!
//! Sharing is by immutable snapshots ([`TailView`]): the partition builds a new view when its
//! log changes and publishes it with the replicator signal and the commit index. A view is
//! never modified, so no reader can see a half-made change (I1: no shared mutable
//! state). Entry payloads are reference-counted, so a view costs a few pointer copies.
//!
//! Correctness: a view only holds entries of this node's log as it was when the view was
//! built. Entries up to the commit index published with it are committed and never change
//! (Log Matching), and a leader never overwrites its own entries, so every reader sees the
//! same bytes storage holds.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use raft_core::{Entries, Entry, Index, Term};

/// Most chunks a read walks back through before it asks storage instead.
const MAX_HOPS: usize = 64;

/// One appended batch. Chunks link to their predecessor weakly: only the partition's [`Tail`]
/// keeps old chunks alive, so memory stays bounded however long a view is held, and a reader
/// that reaches a dropped chunk falls back to storage.
#[derive(Debug)]
struct Chunk {
    /// Term of the entry before the first one here (0 at the start of the log).
    prev_term: Term,
    /// Consecutive entries, at least one.
    entries: Entries,
    prev: Weak<Chunk>,
}

impl Chunk {
    fn first(&self) -> Index {
        self.entries.first().map_or(0, |e| e.index)
    }

    fn last(&self) -> Index {
        self.entries.last().map_or(0, |e| e.index)
    }
}

/// An immutable snapshot of the tail: the newest chunk, and through it the older ones.
#[derive(Clone, Debug, Default)]
pub(crate) struct TailView(Option<Arc<Chunk>>);

impl TailView {
    /// Last index held, if any entry is.
    #[cfg(test)]
    fn last_index(&self) -> Option<Index> {
        self.0.as_ref().map(|c| c.last())
    }

    /// The term at `prev_index` and the entries `prev_index + 1 ..= to`, cut to stay near
    /// `max_bytes` (at least one entry), if the view holds them (possibly fewer than asked,
    /// never none when some were asked).
    ///
    /// Entries within one chunk (a follower keeping up under light load is sent just the
    /// newest batch) come back as a window of that chunk, sharing it: every follower's message
    /// and the storage write hold one copy. A read spanning chunks (a replicator several
    /// batches behind, usual under heavy load) copies the entries once into a new batch.
    pub(crate) fn read(
        &self,
        prev_index: Index,
        to: Index,
        max_bytes: u64,
    ) -> Option<(Term, Entries)> {
        if prev_index > self.0.as_ref()?.last() {
            return None;
        }
        let range = TailRange {
            chunks: self.chunks_from(prev_index + 1)?,
            from: prev_index + 1,
            to,
        };
        let oldest = range.chunks.first()?;
        let prev_term = if prev_index + 1 == oldest.first() {
            oldest.prev_term
        } else {
            oldest
                .entries
                .get(usize::try_from(prev_index - oldest.first()).ok()?)?
                .term
        };
        let mut count = 0;
        let mut bytes = 0;
        for e in range.iter() {
            if count > 0 && bytes + e.size_hint() > max_bytes {
                break;
            }
            bytes += e.size_hint();
            count += 1;
        }
        // Asked for entries and holding none of them: storage has them, not this view.
        if count == 0 && to > prev_index {
            return None;
        }
        let out = match range.chunks.iter().find(|c| c.last() > prev_index) {
            None => Entries::new(),
            Some(c) => {
                let start = usize::try_from(prev_index + 1 - c.first()).ok()?;
                if start + count <= c.entries.len() {
                    c.entries.slice(start..start + count)
                } else {
                    let mut v = Vec::with_capacity(count);
                    v.extend(range.iter().take(count).cloned());
                    v.into()
                }
            }
        };
        Some((prev_term, out))
    }

    /// The entries `from ..= to`, borrowed from the view's chunks (nothing copied), if the view
    /// holds every one of them.
    pub(crate) fn range(&self, from: Index, to: Index) -> Option<TailRange> {
        if from == 0 || to < from || to > self.0.as_ref()?.last() {
            return None;
        }
        Some(TailRange {
            chunks: self.chunks_from(from)?,
            from,
            to,
        })
    }

    /// The chunks from the one holding `from` (or ending just before it) to the newest, oldest
    /// first, if the view still reaches back that far within `MAX_HOPS` chunks.
    fn chunks_from(&self, from: Index) -> Option<Vec<Arc<Chunk>>> {
        let mut cur = self.0.clone()?;
        let mut chunks = Vec::new();
        while cur.first() > from {
            if chunks.len() >= MAX_HOPS {
                return None;
            }
            let older = cur.prev.upgrade()?;
            chunks.push(cur);
            cur = older;
        }
        chunks.push(cur);
        chunks.reverse();
        Some(chunks)
    }
}

/// Consecutive entries held by a [`TailView`]: the chunks holding them and the bounds.
pub(crate) struct TailRange {
    /// Oldest first; together they hold every entry `from ..= to`.
    chunks: Vec<Arc<Chunk>>,
    from: Index,
    to: Index,
}

impl TailRange {
    /// The entries `from ..= to` in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        let (from, to) = (self.from, self.to);
        self.chunks
            .iter()
            .flat_map(move |c| {
                let skip = usize::try_from(from.saturating_sub(c.first())).unwrap_or(usize::MAX);
                c.entries.iter().skip(skip)
            })
            .take_while(move |e| e.index <= to)
    }
}

/// The partition's side: the chunks it keeps alive, newest last.
#[derive(Debug)]
pub(crate) struct Tail {
    chunks: VecDeque<Arc<Chunk>>,
    len: usize,
    /// The entries' bytes (`Entry::size_hint`).
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
}

/// The bytes of a batch of entries.
fn bytes_of(entries: &Entries) -> u64 {
    entries.iter().map(Entry::size_hint).sum()
}

impl Tail {
    /// An empty tail keeping about `max_entries` entries and `max_bytes` bytes (the newest
    /// batch is kept whole, whatever its size).
    pub(crate) fn new(max_entries: usize, max_bytes: u64) -> Self {
        Tail {
            chunks: VecDeque::new(),
            len: 0,
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// The bytes of the entries held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True if no entry is held.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Drops the batches whose entries all lie at or before `index` (compacted into a
    /// snapshot): whoever needs them reads storage.
    pub(crate) fn trim_through(&mut self, index: Index) {
        while let Some(old) = self.chunks.front() {
            if old.last() > index {
                break;
            }
            self.len -= old.entries.len();
            self.bytes -= bytes_of(&old.entries);
            self.chunks.pop_front();
        }
    }

    /// The log was changed: `entries` were written after dropping everything from
    /// `truncate_from` on. `term_at` answers the term of an index still in the log (for the
    /// entry before a batch that does not follow the tail).
    ///
    /// The tail's new chunk shares `entries` (no copy), with the storage write and with
    /// whatever else holds them.
    pub(crate) fn append(
        &mut self,
        truncate_from: Option<Index>,
        entries: Entries,
        term_at: impl Fn(Index) -> Option<Term>,
    ) {
        let first = entries.first().map(|e| e.index);
        if let Some(from) = match (truncate_from, first) {
            (Some(t), Some(f)) => Some(t.min(f)),
            (t, f) => t.or(f),
        } {
            self.truncate(from);
        }
        let Some(first) = first else {
            return;
        };
        let (prev_term, prev) = match self.chunks.back() {
            Some(last) if last.last() + 1 == first => (
                last.entries.last().map_or(0, |e| e.term),
                Arc::downgrade(last),
            ),
            _ => {
                // A gap (a snapshot, a restart): start over from this batch.
                self.clear();
                match term_at(first - 1) {
                    Some(t) => (t, Weak::new()),
                    None => return,
                }
            }
        };
        self.len += entries.len();
        self.bytes += bytes_of(&entries);
        let chunk = Arc::new(Chunk {
            prev_term,
            entries,
            prev,
        });
        self.chunks.push_back(chunk);
        while (self.len > self.max_entries || self.bytes > self.max_bytes) && self.chunks.len() > 1
        {
            if let Some(old) = self.chunks.pop_front() {
                self.len -= old.entries.len();
                self.bytes -= bytes_of(&old.entries);
            }
        }
    }

    /// Forgets everything (a snapshot replaced the log).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
        self.bytes = 0;
    }

    /// The current view.
    pub(crate) fn view(&self) -> TailView {
        TailView(self.chunks.back().cloned())
    }

    /// Drops entries at `from` and after.
    fn truncate(&mut self, from: Index) {
        while let Some(chunk) = self.chunks.back() {
            if chunk.last() < from {
                break;
            }
            let chunk = self.chunks.pop_back().expect("back() was Some");
            self.len -= chunk.entries.len();
            self.bytes -= bytes_of(&chunk.entries);
            if chunk.first() < from {
                let keep = (from - chunk.first()) as usize;
                let entries = chunk.entries.slice(0..keep);
                self.len += keep;
                self.bytes += bytes_of(&entries);
                self.chunks.push_back(Arc::new(Chunk {
                    prev_term: chunk.prev_term,
                    entries,
                    prev: chunk.prev.clone(),
                }));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::EntryPayload;

    fn e(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Normal(vec![index as u8; 10].into()),
        }
    }

    fn batch(from: Index, to: Index, term: Term) -> Entries {
        (from..=to).map(|i| e(i, term)).collect()
    }

    /// Issue 30, 3d: the tail is bounded in bytes (not only in entries), keeps its byte count
    /// exact through truncation, and drops what compaction or an idle group no longer needs.
    #[test]
    fn bounded_in_bytes_and_trimmed() {
        let size = e(1, 1).size_hint();
        // Room for about 10 entries' bytes, however many entries are allowed.
        let mut t = Tail::new(usize::MAX, 10 * size);
        for b in 0..10 {
            t.append(None, batch(b * 4 + 1, b * 4 + 4, 1), |_| Some(0));
            assert!(t.bytes() <= 10 * size, "{} bytes held", t.bytes());
        }
        assert_eq!(t.bytes(), 8 * size);
        // The oldest kept batch starts at 33: older reads go to storage.
        assert!(t.view().range(29, 32).is_none());
        assert!(t.view().range(33, 40).is_some());
        // Truncation keeps the count exact.
        t.append(Some(39), batch(39, 39, 2), |_| Some(1));
        assert_eq!(t.bytes(), 7 * size);
        // Compacted (or applied and replicated everywhere) through 36: the batch 33..=36 goes.
        t.trim_through(36);
        assert_eq!(t.bytes(), 3 * size);
        t.trim_through(39);
        assert!(t.is_empty() && t.bytes() == 0);
        // A batch that alone exceeds the bound is kept whole (it is the newest).
        t.append(None, batch(40, 60, 2), |_| Some(2));
        assert_eq!(t.bytes(), 21 * size);
    }

    #[test]
    fn reads_what_it_holds_and_nothing_else() {
        let mut t = Tail::new(100, u64::MAX);
        t.append(None, batch(1, 3, 1), |_| Some(0));
        t.append(None, batch(4, 6, 2), |_| None);
        let v = t.view();
        let (pt, es) = v.read(0, 6, u64::MAX).unwrap();
        assert_eq!(pt, 0);
        assert_eq!(
            es.iter().map(|e| e.index).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        let (pt, es) = v.read(3, 5, u64::MAX).unwrap();
        assert_eq!((pt, es.len(), es[0].index, es[0].term), (1, 2, 4, 2));
        // Asked for 7..=9 and holding none: storage must answer (an empty answer here once
        // made a replicator resend nothing forever).
        assert!(v.read(6, 9, u64::MAX).is_none());
        // A probe (nothing asked past prev) is answered with prev's term.
        let (pt, es) = v.read(6, 6, u64::MAX).unwrap();
        assert_eq!((pt, es.len()), (2, 0));
        let indexes = |r: TailRange| r.iter().map(|e| e.index).collect::<Vec<_>>();
        assert_eq!(indexes(v.range(2, 5).unwrap()), [2, 3, 4, 5]);
        assert_eq!(indexes(v.range(4, 4).unwrap()), [4]);
        assert_eq!(indexes(v.range(3, 6).unwrap()), [3, 4, 5, 6]);
        assert!(v.range(0, 2).is_none() && v.range(3, 2).is_none());
        assert!(v.range(5, 7).is_none(), "7 is not held");
        // The byte limit cuts the batch but keeps at least one entry.
        let one = e(1, 1).size_hint();
        assert_eq!(v.read(0, 6, one).unwrap().1.len(), 1);
        assert_eq!(v.read(0, 6, 3 * one).unwrap().1.len(), 3);
    }

    #[test]
    fn truncation_makes_a_new_view_and_keeps_old_ones_intact() {
        let mut t = Tail::new(100, u64::MAX);
        t.append(None, batch(1, 5, 1), |_| Some(0));
        let old = t.view();
        t.append(Some(3), batch(3, 4, 2), |_| None);
        let new = t.view();
        assert_eq!(old.range(3, 5).unwrap().iter().next().unwrap().term, 1);
        let es = new.range(1, 4).unwrap();
        assert_eq!(es.iter().map(|e| e.term).collect::<Vec<_>>(), [1, 1, 2, 2]);
        assert!(new.range(5, 5).is_none());
        assert_eq!(new.last_index(), Some(4));
    }

    #[test]
    fn old_entries_fall_off_and_gaps_restart_it() {
        let mut t = Tail::new(4, u64::MAX);
        t.append(None, batch(1, 3, 1), |_| Some(0));
        t.append(None, batch(4, 6, 1), |_| None);
        let v = t.view();
        assert!(v.read(0, 6, u64::MAX).is_none(), "1..=3 fell off");
        assert_eq!(v.read(3, 6, u64::MAX).unwrap().0, 1);
        // A gap (say a snapshot at 20): the tail restarts from the new batch.
        t.append(None, batch(21, 22, 3), |i| (i == 20).then_some(3));
        let v = t.view();
        assert!(v.read(5, 6, u64::MAX).is_none());
        assert_eq!(v.read(20, 22, u64::MAX).unwrap().1.len(), 2);
        // A gap whose base term is unknown: nothing is served.
        t.append(None, batch(40, 41, 3), |_| None);
        assert!(t.view().read(39, 41, u64::MAX).is_none());
        t.clear();
        assert!(t.view().last_index().is_none());
    }

    #[test]
    fn the_tail_and_every_read_within_a_chunk_share_the_batch() {
        let mut t = Tail::new(100, u64::MAX);
        let written = batch(1, 3, 1);
        t.append(None, written.clone(), |_| Some(0));
        let more = batch(4, 6, 1);
        t.append(None, more.clone(), |_| None);
        let v = t.view();
        // Two followers sent the newest batch: both messages and the write are one copy.
        let (a, b) = (
            v.read(3, 6, u64::MAX).unwrap().1,
            v.read(3, 6, u64::MAX).unwrap().1,
        );
        assert!(a.shares_buffer_with(&more) && b.shares_buffer_with(&more));
        // Part of one chunk, cut by the byte limit: still a window of it.
        let one = e(1, 1).size_hint();
        let (pt, cut) = v.read(1, 6, one).unwrap();
        assert_eq!((pt, cut.len(), cut[0].index), (1, 1, 2));
        assert!(cut.shares_buffer_with(&written));
        // Across chunks: a copy, with the right entries.
        let (_, across) = v.read(2, 5, u64::MAX).unwrap();
        assert_eq!(
            across.iter().map(|e| e.index).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(!across.shares_buffer_with(&written) && !across.shares_buffer_with(&more));
        // A probe at the end: prev's term, nothing to send.
        let (pt, none) = v.read(6, 6, u64::MAX).unwrap();
        assert_eq!((pt, none.len()), (1, 0));
        // A truncation keeps a window of the old chunk, not a copy.
        t.append(Some(5), Entries::new(), |_| None);
        let (_, kept) = t.view().read(3, 4, u64::MAX).unwrap();
        assert!(kept.shares_buffer_with(&more));
        assert!(t.view().read(4, 5, u64::MAX).is_none());
    }
}
