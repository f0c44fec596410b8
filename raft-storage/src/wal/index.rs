//! The in-memory index: for every group, its hard state, snapshot pointer and where each of its
//! entries lies (segment, offset, length, term). Built by replaying records at open and kept
//! current by applying the same records as they are written, so the live state and the
//! recovered state cannot drift apart: both come from [`LogIndex::apply`].
//!
//! It also counts, per segment, how many live entries still lie there: a segment whose count
//! is zero holds nothing a reader could ask for (see `mod.rs` for when it may be deleted).

use std::collections::{BTreeMap, VecDeque};

use raft_core::{GroupId, HardState, Index, SnapshotMeta, Term};

use super::record::{CheckpointRec, Record};

/// Segment id standing for "a segment before the first one replayed": entries a checkpoint
/// says exist but whose segment is gone. Recovery fails if any survives the replay.
pub(crate) const PHANTOM_SEGMENT: u64 = u64::MAX;

/// Where one entry lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Segment id.
    pub segment: u64,
    /// Byte offset of the record in the segment (segments are at most 2 GiB plus a record).
    pub offset: u32,
    /// Length of the whole record (header and body).
    pub len: u32,
    /// The entry's term, so `term()` needs no read.
    pub term: Term,
}

/// One group's state.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupIndex {
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    /// Sequence number of the snapshot file, if a snapshot was ever saved.
    pub snapshot_file: Option<u64>,
    /// Index of `locs[0]`; meaningless while `locs` is empty.
    pub first: Index,
    /// Consecutive entries.
    pub locs: VecDeque<Loc>,
}

impl GroupIndex {
    /// First index held (the one after the snapshot when no entry is held).
    pub fn first_index(&self) -> Index {
        if self.locs.is_empty() {
            self.snapshot.index + 1
        } else {
            self.first
        }
    }

    /// Last index held (the snapshot's when no entry is held).
    pub fn last_index(&self) -> Index {
        if self.locs.is_empty() {
            self.snapshot.index
        } else {
            self.first + self.locs.len() as u64 - 1
        }
    }

    /// Where entry `index` lies, if held.
    pub fn loc(&self, index: Index) -> Option<&Loc> {
        if self.locs.is_empty() || index < self.first {
            return None;
        }
        self.locs.get((index - self.first) as usize)
    }
}

/// Every group's index plus per-segment live-entry counts.
#[derive(Debug, Default)]
pub(crate) struct LogIndex {
    pub groups: BTreeMap<GroupId, GroupIndex>,
    /// Segment id -> number of live entries lying in it (absent = 0).
    pub live: BTreeMap<u64, u64>,
}

impl LogIndex {
    fn unref(live: &mut BTreeMap<u64, u64>, segment: u64) {
        if let Some(n) = live.get_mut(&segment) {
            *n -= 1;
            if *n == 0 {
                live.remove(&segment);
            }
        }
    }

    fn pop_back_from(live: &mut BTreeMap<u64, u64>, g: &mut GroupIndex, from: Index) {
        while !g.locs.is_empty() && g.last_index() >= from {
            if let Some(l) = g.locs.pop_back() {
                Self::unref(live, l.segment);
            }
        }
    }

    fn clear(live: &mut BTreeMap<u64, u64>, g: &mut GroupIndex) {
        for l in g.locs.drain(..) {
            Self::unref(live, l.segment);
        }
    }

    /// Live entries lying in `segment`.
    pub fn live_in(&self, segment: u64) -> u64 {
        self.live.get(&segment).copied().unwrap_or(0)
    }

    /// Applies one record. `at` is where an entry record lies (required for entries).
    /// Returns the snapshot file sequence the record made unreferenced, if any. An error means
    /// the record contradicts the state (a gap, an inconsistent checkpoint): on replay that is
    /// corruption; when writing it is a bug, caught before anything is promised.
    pub fn apply(
        &mut self,
        rec: &Record,
        at: Option<(u64, u32, u32)>,
    ) -> Result<Option<u64>, String> {
        let live = &mut self.live;
        match rec {
            Record::SegmentHeader(_) | Record::CheckpointEnd(_) => Ok(None),
            Record::Entry { group, index, term } => {
                let (segment, offset, len) =
                    at.ok_or_else(|| "entry record without a position".to_string())?;
                let g = self.groups.entry(*group).or_default();
                let (first, last) = (g.first_index(), g.last_index());
                let ok = if g.locs.is_empty() {
                    *index == last + 1
                } else {
                    (first..=last + 1).contains(index)
                };
                if !ok {
                    return Err(format!(
                        "group {group}: entry {index} does not follow the log (first {first}, last {last})"
                    ));
                }
                Self::pop_back_from(live, g, *index);
                if g.locs.is_empty() {
                    g.first = *index;
                }
                g.locs.push_back(Loc {
                    segment,
                    offset,
                    len,
                    term: *term,
                });
                *live.entry(segment).or_default() += 1;
                Ok(None)
            }
            Record::HardState(r) => {
                self.groups.entry(r.group).or_default().hard_state = r.hard_state;
                Ok(None)
            }
            Record::Truncate(r) => {
                let g = self.groups.entry(r.group).or_default();
                Self::pop_back_from(live, g, r.from);
                Ok(None)
            }
            Record::Snapshot(r) => {
                let g = self.groups.entry(r.group).or_default();
                if r.discard_log {
                    Self::clear(live, g);
                }
                g.snapshot = r.meta.clone();
                let old = g.snapshot_file.replace(r.file);
                Ok(old.filter(|&o| o != r.file))
            }
            Record::Compact(r) => {
                if let Some(g) = self.groups.get_mut(&r.group) {
                    while !g.locs.is_empty() && g.first <= r.index {
                        if let Some(l) = g.locs.pop_front() {
                            Self::unref(live, l.segment);
                        }
                        g.first += 1;
                    }
                }
                Ok(None)
            }
            Record::RemoveGroup(r) => Ok(self.groups.remove(&r.group).and_then(|mut g| {
                Self::clear(live, &mut g);
                g.snapshot_file
            })),
            Record::Checkpoint(c) => self.apply_checkpoint(c).map(|()| None),
        }
    }

    /// The checkpoint record describing `group` now.
    pub fn checkpoint(&self, group: GroupId, g: &GroupIndex) -> CheckpointRec {
        CheckpointRec {
            group,
            hard_state: g.hard_state,
            snapshot: g.snapshot.clone(),
            snapshot_file: g.snapshot_file,
            first: g.first_index(),
            count: g.locs.len() as u64,
        }
    }

    fn apply_checkpoint(&mut self, c: &CheckpointRec) -> Result<(), String> {
        if let Some(g) = self.groups.get(&c.group) {
            // Replayed from an older segment: the checkpoint must agree with what we rebuilt.
            let mine = self.checkpoint(c.group, g);
            if mine != *c {
                return Err(format!(
                    "group {}: checkpoint {c:?} disagrees with the replayed state {mine:?}",
                    c.group
                ));
            }
            return Ok(());
        }
        // The segments before this one are gone: the group's entries lay there. They must be
        // compacted or truncated away by later records (checked at the end of recovery).
        let g = GroupIndex {
            hard_state: c.hard_state,
            snapshot: c.snapshot.clone(),
            snapshot_file: c.snapshot_file,
            first: c.first,
            locs: (0..c.count)
                .map(|_| Loc {
                    segment: PHANTOM_SEGMENT,
                    offset: 0,
                    len: 0,
                    term: 0,
                })
                .collect(),
        };
        if c.count > 0 {
            *self.live.entry(PHANTOM_SEGMENT).or_default() += c.count;
        }
        self.groups.insert(c.group, g);
        Ok(())
    }
}
