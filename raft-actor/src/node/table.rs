//! The node's table of groups as the registry publishes it: an immutable map that is cheap to
//! copy after a change.
//!
//! The registry owns the table and publishes a new immutable copy (latest value) after every
//! change, so `Node::propose` and the router read it without any shared mutable state (I1 in
//! docs/architecture.md). A plain `BTreeMap` would be copied whole on every change, which
//! makes adding groups one by one quadratic. Here the groups are spread over [`SHARDS`] maps,
//! each behind its own `Arc`: a change copies the one map it touches (copy-on-write) and the
//! array of `Arc`s, so adding a group costs about `SHARDS + groups / SHARDS` pointer copies
//! instead of `groups`.

use std::collections::BTreeMap;
use std::sync::Arc;

use raft_core::GroupId;

/// Maps the groups are spread over.
const SHARDS: usize = 256;

/// A map from group id to `V`, split over [`SHARDS`] copy-on-write maps.
#[derive(Debug)]
pub(crate) struct GroupMap<V> {
    shards: Vec<Arc<BTreeMap<GroupId, V>>>,
}

impl<V> Clone for GroupMap<V> {
    /// Copies the shards' pointers, not their contents.
    fn clone(&self) -> Self {
        GroupMap {
            shards: self.shards.clone(),
        }
    }
}

impl<V> Default for GroupMap<V> {
    fn default() -> Self {
        GroupMap {
            shards: (0..SHARDS).map(|_| Arc::new(BTreeMap::new())).collect(),
        }
    }
}

/// The shard of `group`: a multiplicative hash, so ids that share a stride (all multiples of
/// 256, say) still spread evenly.
fn shard(group: GroupId) -> usize {
    // The top 8 bits of the product: 0..256 == 0..SHARDS.
    (group.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
}

impl<V: Clone> GroupMap<V> {
    /// The entry of `group`, if there is one.
    pub(crate) fn get(&self, group: GroupId) -> Option<&V> {
        self.shards[shard(group)].get(&group)
    }

    /// Whether `group` has an entry.
    #[cfg(test)]
    pub(crate) fn contains(&self, group: GroupId) -> bool {
        self.get(group).is_some()
    }

    /// Adds or replaces the entry of `group`. Copies its shard if a published copy shares it.
    pub(crate) fn insert(&mut self, group: GroupId, value: V) {
        Arc::make_mut(&mut self.shards[shard(group)]).insert(group, value);
    }

    /// Removes the entry of `group` and returns it.
    pub(crate) fn remove(&mut self, group: GroupId) -> Option<V> {
        let s = &mut self.shards[shard(group)];
        if !s.contains_key(&group) {
            return None;
        }
        Arc::make_mut(s).remove(&group)
    }

    /// Every entry, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }

    /// Every entry, by group id.
    pub(crate) fn sorted(&self) -> Vec<(GroupId, &V)> {
        let mut all: Vec<(GroupId, &V)> = self
            .shards
            .iter()
            .flat_map(|s| s.iter().map(|(&g, v)| (g, v)))
            .collect();
        all.sort_unstable_by_key(|&(g, _)| g);
        all
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) {
        *self = GroupMap::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_copy_keeps_its_contents_while_the_original_changes() {
        let mut m = GroupMap::default();
        for g in 0..1000u64 {
            m.insert(g * 256, g);
        }
        let published = m.clone();
        m.insert(7, 70);
        assert_eq!(m.remove(0), Some(0));
        assert_eq!(m.remove(0), None);
        assert_eq!(m.get(7), Some(&70));
        assert!(!m.contains(0));
        // The copy still shows the table as it was.
        assert_eq!(published.get(7), None);
        assert_eq!(published.get(0), Some(&0));
        assert_eq!(published.values().count(), 1000);
        assert_eq!(m.values().count(), 1000);
        // Sorted by id whatever the shards.
        let ids: Vec<GroupId> = m.sorted().into_iter().map(|(g, _)| g).collect();
        let mut expect: Vec<GroupId> = (1..1000u64).map(|g| g * 256).collect();
        expect.push(7);
        expect.sort_unstable();
        assert_eq!(ids, expect);
        m.clear();
        assert_eq!(m.values().count(), 0);
        assert_eq!(published.values().count(), 1000);
    }

    #[test]
    fn ids_with_a_common_stride_spread_over_the_shards() {
        let mut used = std::collections::BTreeSet::new();
        for g in 0..10_000u64 {
            used.insert(shard(g * 256));
        }
        assert!(used.len() > SHARDS * 9 / 10, "{} shards used", used.len());
        let mut used = std::collections::BTreeSet::new();
        for g in 1..=10_000u64 {
            used.insert(shard(g));
        }
        assert_eq!(used.len(), SHARDS);
    }

    #[test]
    fn a_change_copies_one_shard_only() {
        let mut m = GroupMap::default();
        for g in 0..10_000u64 {
            m.insert(g, g);
        }
        let published = m.clone();
        m.insert(10_000, 1);
        let copied = m
            .shards
            .iter()
            .zip(&published.shards)
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .count();
        assert_eq!(copied, 1);
    }
}
