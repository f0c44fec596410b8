//! Keys to groups.
//!
//! A key belongs to shard `fnv1a64(key) % groups`, and shard `s` is Raft group
//! [`FIRST_DATA_GROUP`]` + s`. The hash is 64-bit FNV-1a over the key's bytes, written here
//! (a dozen lines, no dependency): it is stable across versions, platforms and processes,
//! which the placement needs, since every client and server must send a key to the same
//! group for the cluster's whole life. `groups` is fixed when the cluster is created; changing
//! it would move almost every key, and is not supported.
//!
//! Group ids: [`META_GROUP`] (1) holds the placement; shards are groups 2, 3, ...
//! (`raft-actor` keeps group 0 for its heartbeat frames).

use raft_actor::GroupId;

/// The metadata group: the placement (nodes, their addresses, each shard's replicas).
pub const META_GROUP: GroupId = 1;

/// The group of shard 0; shard `s` is group `FIRST_DATA_GROUP + s`.
pub const FIRST_DATA_GROUP: GroupId = 2;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The shard of `key` among `groups` shards (`groups` 0 is taken as 1).
pub fn shard_of(key: &[u8], groups: u32) -> u32 {
    (fnv1a64(key) % u64::from(groups.max(1))) as u32
}

/// The Raft group of shard `shard`.
pub fn group_of_shard(shard: u32) -> GroupId {
    FIRST_DATA_GROUP + GroupId::from(shard)
}

/// The shard a data group holds, if `group` is one of the `groups` data groups.
pub fn shard_of_group(group: GroupId, groups: u32) -> Option<u32> {
    let shard = group.checked_sub(FIRST_DATA_GROUP)?;
    (shard < u64::from(groups)).then_some(shard as u32)
}

/// The Raft group holding `key` in a cluster of `groups` shards.
pub fn group_of(key: &[u8], groups: u32) -> GroupId {
    group_of_shard(shard_of(key, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_spread_over_every_group_and_map_back() {
        let mut seen = vec![0u32; 64];
        for i in 0..6400u32 {
            let key = format!("key-{i}");
            let shard = shard_of(key.as_bytes(), 64);
            seen[shard as usize] += 1;
            let g = group_of(key.as_bytes(), 64);
            assert_eq!(shard_of_group(g, 64), Some(shard));
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(shard_of_group(META_GROUP, 64), None);
        assert_eq!(shard_of_group(FIRST_DATA_GROUP + 64, 64), None);
        assert_eq!(shard_of(b"x", 0), 0);
    }
}
