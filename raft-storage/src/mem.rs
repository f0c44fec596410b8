//! `MemStore`: every group's log in memory. For tests and benchmarks; `sync` is a no-op, so
//! nothing survives the process.

use std::collections::{BTreeMap, VecDeque};

use raft_core::{Entry, GroupId, HardState, Index, SnapshotMeta, Term};

use crate::store::{LogStore, Recovered, StorageError};

#[derive(Debug, Default, Clone)]
struct GroupLog {
    hard_state: HardState,
    snapshot: SnapshotMeta,
    snapshot_data: Vec<u8>,
    /// Consecutive entries; `entries[0].index` is the first held.
    entries: VecDeque<Entry>,
}

impl GroupLog {
    fn first_index(&self) -> Index {
        self.entries
            .front()
            .map_or(self.snapshot.index + 1, |e| e.index)
    }

    fn last_index(&self) -> Index {
        self.entries.back().map_or(self.snapshot.index, |e| e.index)
    }

    fn get(&self, index: Index) -> Option<&Entry> {
        let first = self.entries.front()?.index;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }
}

/// An in-memory [`LogStore`].
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    groups: BTreeMap<GroupId, GroupLog>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl LogStore for MemStore {
    fn groups(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    fn recover(&self, group: GroupId) -> Result<Option<Recovered>, StorageError> {
        Ok(self.groups.get(&group).map(|g| Recovered {
            hard_state: g.hard_state,
            snapshot: g.snapshot.clone(),
            entries: g.entries.iter().cloned().collect(),
        }))
    }

    fn append(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        let g = self.groups.entry(group).or_default();
        if let Some(t) = truncate_from {
            while g.entries.back().is_some_and(|e| e.index >= t) {
                g.entries.pop_back();
            }
        }
        if let Some(first) = entries.first() {
            let expected = g.last_index() + 1;
            if first.index != expected {
                return Err(StorageError::Invalid(format!(
                    "group {group}: append at {} but the log ends at {}",
                    first.index,
                    expected - 1
                )));
            }
        }
        g.entries.extend(entries.iter().cloned());
        Ok(())
    }

    fn save_hard_state(
        &mut self,
        group: GroupId,
        hard_state: HardState,
    ) -> Result<(), StorageError> {
        self.groups.entry(group).or_default().hard_state = hard_state;
        Ok(())
    }

    fn save_snapshot(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &[u8],
        discard_log: bool,
    ) -> Result<(), StorageError> {
        let g = self.groups.entry(group).or_default();
        if discard_log {
            g.entries.clear();
        }
        g.snapshot = meta.clone();
        g.snapshot_data = data.to_vec();
        Ok(())
    }

    fn compact(&mut self, group: GroupId, index: Index) -> Result<(), StorageError> {
        if let Some(g) = self.groups.get_mut(&group) {
            while g.entries.front().is_some_and(|e| e.index <= index) {
                g.entries.pop_front();
            }
        }
        Ok(())
    }

    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError> {
        self.groups.remove(&group);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn entries(
        &self,
        group: GroupId,
        from: Index,
        to: Index,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let g = self.groups.get(&group);
        let (first, last) = g.map_or((1, 0), |g| (g.first_index(), g.last_index()));
        if from < first || to > last || from > to {
            return Err(StorageError::Unavailable {
                group,
                from,
                to,
                first,
                last,
            });
        }
        let g = g.ok_or(StorageError::Unavailable {
            group,
            from,
            to,
            first,
            last,
        })?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for i in from..=to {
            let Some(e) = g.get(i) else { break };
            if !out.is_empty() && bytes + e.size_hint() > max_bytes {
                break;
            }
            bytes += e.size_hint();
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, group: GroupId, index: Index) -> Result<Option<Term>, StorageError> {
        let Some(g) = self.groups.get(&group) else {
            return Ok(None);
        };
        if index == g.snapshot.index {
            return Ok(Some(g.snapshot.term));
        }
        Ok(g.get(index).map(|e| e.term))
    }

    fn snapshot(&self, group: GroupId) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        Ok(self
            .groups
            .get(&group)
            .filter(|g| g.snapshot.index > 0)
            .map(|g| (g.snapshot.clone(), g.snapshot_data.clone())))
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
            payload: EntryPayload::Normal(vec![index as u8].into()),
        }
    }

    #[test]
    fn append_truncate_compact_read() {
        let mut s = MemStore::new();
        s.append(1, None, &[e(1, 1), e(2, 1), e(3, 1)]).unwrap();
        s.append(1, Some(3), &[e(3, 2), e(4, 2)]).unwrap();
        assert_eq!(s.term(1, 3).unwrap(), Some(2));
        assert!(s.append(1, None, &[e(9, 2)]).is_err());
        s.compact(1, 2).unwrap();
        assert!(matches!(
            s.entries(1, 1, 3, u64::MAX),
            Err(StorageError::Unavailable { .. })
        ));
        assert_eq!(s.entries(1, 3, 4, u64::MAX).unwrap().len(), 2);
        assert_eq!(s.entries(1, 3, 4, 1).unwrap().len(), 1);
        let r = s.recover(1).unwrap().unwrap();
        assert_eq!(r.entries.first().unwrap().index, 3);
    }
}
