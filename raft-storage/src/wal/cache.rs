//! A bounded cache of recent entries, shared by all groups of the node, so that replicating
//! fresh entries to followers rarely reads a segment.
//!
//! Per group it holds a consecutive run of entries (normally the log's tail). Eviction is by
//! insertion order across all groups, oldest first, until both bounds hold. Invariant: each
//! cached entry's latest `(group, index)` pair is in `order`, and when that pair reaches the
//! front the entry is its group's first cached one, so eviction always pops a run's front and
//! runs stay consecutive.

use std::collections::{HashMap, VecDeque};

use raft_core::{Entry, GroupId, Index};

#[derive(Debug)]
pub(crate) struct EntryCache {
    max_entries: usize,
    max_bytes: u64,
    runs: HashMap<GroupId, VecDeque<Entry>>,
    /// Insertion order; may hold stale pairs (truncated or removed entries), bounded below.
    order: VecDeque<(GroupId, Index)>,
    entries: usize,
    bytes: u64,
}

impl EntryCache {
    pub fn new(max_entries: usize, max_bytes: u64) -> Self {
        EntryCache {
            max_entries,
            max_bytes,
            runs: HashMap::new(),
            order: VecDeque::new(),
            entries: 0,
            bytes: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.max_entries > 0 && self.max_bytes > 0
    }

    fn forget(entries: &mut usize, bytes: &mut u64, e: &Entry) {
        *entries -= 1;
        *bytes -= e.size_hint();
    }

    /// Caches `entry` as the newest of its group, dropping cached entries it replaces or that
    /// would no longer be consecutive with it.
    pub fn insert(&mut self, group: GroupId, entry: &Entry) {
        if !self.enabled() || entry.size_hint() > self.max_bytes {
            self.truncate(group, entry.index);
            return;
        }
        let run = self.runs.entry(group).or_default();
        while run.back().is_some_and(|b| b.index >= entry.index) {
            if let Some(e) = run.pop_back() {
                Self::forget(&mut self.entries, &mut self.bytes, &e);
            }
        }
        if run.back().is_some_and(|b| b.index + 1 != entry.index) {
            for e in run.drain(..) {
                Self::forget(&mut self.entries, &mut self.bytes, &e);
            }
        }
        run.push_back(entry.clone());
        self.entries += 1;
        self.bytes += entry.size_hint();
        self.order.push_back((group, entry.index));
        while self.entries > self.max_entries
            || self.bytes > self.max_bytes
            || self.order.len() > 2 * self.max_entries + 1024
        {
            if !self.evict_one() {
                break;
            }
        }
    }

    fn evict_one(&mut self) -> bool {
        let Some((group, index)) = self.order.pop_front() else {
            return false;
        };
        if let Some(run) = self.runs.get_mut(&group) {
            if run.front().is_some_and(|f| f.index == index) {
                if let Some(e) = run.pop_front() {
                    Self::forget(&mut self.entries, &mut self.bytes, &e);
                }
            }
            if run.is_empty() {
                self.runs.remove(&group);
            }
        }
        true
    }

    /// Drops cached entries of `group` from `from` on.
    pub fn truncate(&mut self, group: GroupId, from: Index) {
        if let Some(run) = self.runs.get_mut(&group) {
            while run.back().is_some_and(|b| b.index >= from) {
                if let Some(e) = run.pop_back() {
                    Self::forget(&mut self.entries, &mut self.bytes, &e);
                }
            }
        }
    }

    /// Drops cached entries of `group` up to `upto`.
    pub fn compact(&mut self, group: GroupId, upto: Index) {
        if let Some(run) = self.runs.get_mut(&group) {
            while run.front().is_some_and(|f| f.index <= upto) {
                if let Some(e) = run.pop_front() {
                    Self::forget(&mut self.entries, &mut self.bytes, &e);
                }
            }
        }
    }

    /// Drops every cached entry of `group`.
    pub fn remove(&mut self, group: GroupId) {
        if let Some(run) = self.runs.remove(&group) {
            for e in &run {
                Self::forget(&mut self.entries, &mut self.bytes, e);
            }
        }
    }

    /// The cached entry `index` of `group`.
    pub fn get(&self, group: GroupId, index: Index) -> Option<&Entry> {
        let run = self.runs.get(&group)?;
        let first = run.front()?.index;
        if index < first {
            return None;
        }
        run.get((index - first) as usize)
    }

    /// Entries currently cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::EntryPayload;

    fn e(index: Index, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Normal(vec![0; 8].into()),
        }
    }

    #[test]
    fn bounded_consecutive_and_replacing() {
        let mut c = EntryCache::new(4, u64::MAX);
        for i in 1..=3 {
            c.insert(1, &e(i, 1));
        }
        for i in 1..=3 {
            c.insert(2, &e(i, 1));
        }
        assert_eq!(c.len(), 4);
        assert!(c.get(1, 1).is_none() && c.get(1, 2).is_none());
        assert_eq!(c.get(1, 3).unwrap().index, 3);
        // A conflicting append replaces the tail.
        c.insert(2, &e(2, 5));
        assert_eq!(c.get(2, 2).unwrap().term, 5);
        assert!(c.get(2, 3).is_none());
        c.compact(2, 1);
        assert!(c.get(2, 1).is_none());
        c.remove(1);
        assert!(c.get(1, 3).is_none());
        for i in 3..1000 {
            c.insert(2, &e(i, 5));
            assert!(c.len() <= 4);
            assert!(c.order.len() <= 2 * 4 + 1024);
        }
        assert_eq!(c.get(2, 999).unwrap().index, 999);
    }
}
