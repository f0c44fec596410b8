//! `MemStore`: every group's log in memory. For tests and benchmarks; `sync` is a no-op, so
//! nothing survives the process.

use std::collections::{BTreeMap, VecDeque};

use raft_core::{Entries, Entry, GroupId, HardState, Index, SnapshotMeta, Term};

use crate::snapshot::{MemSink, SharedBytes, SnapshotReader, SnapshotSink, StagedSnapshot};
use crate::store::{LogStore, Recovered, StorageError, end_after_truncate};

#[derive(Debug, Default, Clone)]
struct GroupLog {
    hard_state: HardState,
    snapshot: SnapshotMeta,
    snapshot_data: SharedBytes,
    /// Consecutive entries, oldest first, as the shared batches they were appended in (none
    /// empty): keeping a batch costs one reference count, not a copy of each entry.
    chunks: VecDeque<Entries>,
}

impl GroupLog {
    fn first_index(&self) -> Index {
        self.chunks
            .front()
            .map_or(self.snapshot.index + 1, |c| c[0].index)
    }

    fn last_index(&self) -> Index {
        self.chunks
            .back()
            .and_then(|c| c.last())
            .map_or(self.snapshot.index, |e| e.index)
    }

    /// The chunk holding `index` and the entry's position in it.
    fn locate(&self, index: Index) -> Option<(usize, usize)> {
        let c = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.index < index));
        let chunk = self.chunks.get(c)?;
        let first = chunk.first()?.index;
        (index >= first).then(|| (c, (index - first) as usize))
    }

    fn get(&self, index: Index) -> Option<&Entry> {
        let (c, i) = self.locate(index)?;
        self.chunks[c].get(i)
    }

    /// Entries from `index` on, in order.
    fn iter_from(&self, index: Index) -> impl Iterator<Item = &Entry> {
        let (c, i) = self.locate(index).unwrap_or((self.chunks.len(), 0));
        self.chunks
            .iter()
            .skip(c)
            .enumerate()
            .flat_map(move |(k, chunk)| chunk.iter().skip(if k == 0 { i } else { 0 }))
    }

    /// Drops entries at `index` and after.
    fn truncate(&mut self, index: Index) {
        while let Some(back) = self.chunks.back_mut() {
            let first = back[0].index;
            if first >= index {
                self.chunks.pop_back();
            } else {
                back.truncate((index - first) as usize);
                break;
            }
        }
    }

    /// Drops entries at `index` and before.
    fn compact(&mut self, index: Index) {
        while let Some(front) = self.chunks.front_mut() {
            let first = front[0].index;
            if front.last().is_some_and(|e| e.index <= index) {
                self.chunks.pop_front();
            } else {
                front.skip_front(index.saturating_add(1).saturating_sub(first) as usize);
                break;
            }
        }
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
            entries: g.chunks.iter().flat_map(|c| c.iter().cloned()).collect(),
        }))
    }

    fn append(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        self.append_shared(group, truncate_from, &entries.iter().cloned().collect())
    }

    fn append_shared(
        &mut self,
        group: GroupId,
        truncate_from: Option<Index>,
        entries: &Entries,
    ) -> Result<(), StorageError> {
        let g = self.groups.entry(group).or_default();
        if let Some(first) = entries.first() {
            let held = (!g.chunks.is_empty()).then(|| (g.first_index(), g.last_index()));
            let expected = end_after_truncate(held, g.snapshot.index, truncate_from).0 + 1;
            if first.index != expected {
                return Err(StorageError::Invalid(format!(
                    "group {group}: append at {} but the log ends at {}",
                    first.index,
                    expected - 1
                )));
            }
        }
        if let Some(t) = truncate_from {
            g.truncate(t);
        }
        if !entries.is_empty() {
            g.chunks.push_back(entries.clone());
        }
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

    fn snapshot_sink(&mut self, _group: GroupId) -> Result<Box<dyn SnapshotSink>, StorageError> {
        Ok(Box::new(MemSink::new()))
    }

    fn install_snapshot(
        &mut self,
        group: GroupId,
        staged: StagedSnapshot,
        discard_log: bool,
    ) -> Result<(), StorageError> {
        let (meta, bytes) = staged.into_token::<SharedBytes>().map_err(|s| {
            StorageError::Invalid(format!(
                "group {group}: snapshot at {} was not staged by a MemStore",
                s.meta().index
            ))
        })?;
        let g = self.groups.entry(group).or_default();
        if discard_log {
            g.chunks.clear();
        }
        g.snapshot = meta;
        g.snapshot_data = *bytes;
        Ok(())
    }

    fn compact(&mut self, group: GroupId, index: Index) -> Result<(), StorageError> {
        if let Some(g) = self.groups.get_mut(&group) {
            g.compact(index);
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
        for e in g.iter_from(from).take_while(|e| e.index <= to) {
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

    fn snapshot_reader(
        &self,
        group: GroupId,
    ) -> Result<Option<(SnapshotMeta, SnapshotReader)>, StorageError> {
        Ok(self
            .groups
            .get(&group)
            .filter(|g| g.snapshot.index > 0)
            .map(|g| {
                let bytes = g.snapshot_data.clone();
                let len = bytes.0.len() as u64;
                (
                    g.snapshot.clone(),
                    SnapshotReader::new(std::io::Cursor::new(bytes), len),
                )
            }))
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

    #[test]
    fn shared_batches_are_kept_not_copied_and_cut_at_any_entry() {
        let mut s = MemStore::new();
        let a: Entries = (1..=4).map(|i| e(i, 1)).collect();
        let b: Entries = (5..=8).map(|i| e(i, 1)).collect();
        s.append_shared(1, None, &a).unwrap();
        s.append_shared(1, None, &b).unwrap();
        let g = &s.groups[&1];
        assert!(g.chunks[0].shares_buffer_with(&a) && g.chunks[1].shares_buffer_with(&b));
        let idx = |v: Vec<Entry>| v.iter().map(|e| e.index).collect::<Vec<_>>();
        assert_eq!(idx(s.entries(1, 3, 6, u64::MAX).unwrap()), [3, 4, 5, 6]);
        // Truncate inside the second batch, then inside the first.
        s.append_shared(1, Some(7), &(7..=7).map(|i| e(i, 2)).collect())
            .unwrap();
        assert_eq!(
            (s.term(1, 6).unwrap(), s.term(1, 7).unwrap()),
            (Some(1), Some(2))
        );
        s.append(1, Some(3), &[e(3, 3)]).unwrap();
        assert_eq!(idx(s.entries(1, 1, 3, u64::MAX).unwrap()), [1, 2, 3]);
        assert_eq!(s.term(1, 4).unwrap(), None);
        // A bad append changes nothing.
        assert!(s.append(1, Some(2), &[e(4, 3)]).is_err());
        assert_eq!(s.term(1, 3).unwrap(), Some(3));
        // Compact inside a batch, then past everything.
        s.compact(1, 1).unwrap();
        assert_eq!(idx(s.entries(1, 2, 3, u64::MAX).unwrap()), [2, 3]);
        assert!(s.entries(1, 1, 3, u64::MAX).is_err());
        s.compact(1, 3).unwrap();
        assert!(s.groups[&1].chunks.is_empty());
        assert_eq!(s.term(1, 3).unwrap(), None);
    }
}
