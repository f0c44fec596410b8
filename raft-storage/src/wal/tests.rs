//! Unit tests of the WAL: round trip, rotation, compaction deleting segments, recovery of many
//! groups, truncation and snapshot records across reopen, poisoning.

use std::path::Path;

use raft_core::{Entry, EntryPayload, HardState, Index, Membership, SnapshotMeta, Term};

use super::*;

fn e(index: Index, term: Term, group: GroupId) -> Entry {
    let len = (index * 7 + group) % 40;
    Entry {
        index,
        term,
        payload: EntryPayload::Normal(
            (0..len)
                .map(|b| (b + index + group) as u8)
                .collect::<Vec<u8>>()
                .into(),
        ),
    }
}

fn cfg(dir: &Path) -> WalConfig {
    WalConfig {
        segment_bytes: 4096,
        ..WalConfig::new(dir)
    }
}

fn reopen(wal: Wal) -> Wal {
    let c = wal.config().clone();
    drop(wal);
    Wal::open(c).unwrap()
}

fn all(w: &Wal, g: GroupId) -> Vec<Entry> {
    w.recover(g).unwrap().map(|r| r.entries).unwrap_or_default()
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(WalConfig::new(dir.path())).unwrap();
    let hs = HardState {
        term: 3,
        vote: Some(2),
        commit: 1,
    };
    let es: Vec<_> = (1..=5).map(|i| e(i, 3, 1)).collect();
    w.append(1, None, &es).unwrap();
    w.save_hard_state(1, hs).unwrap();
    assert_eq!(w.entries(1, 2, 4, u64::MAX).unwrap(), es[1..4].to_vec());
    w.sync().unwrap();
    let w = reopen(w);
    assert_eq!(w.groups(), vec![1]);
    let r = w.recover(1).unwrap().unwrap();
    assert_eq!(r.hard_state, hs);
    assert_eq!(r.entries, es);
    assert_eq!(w.term(1, 5).unwrap(), Some(3));
    assert_eq!(w.term(1, 6).unwrap(), None);
    // Fresh after reopen: served from disk.
    assert_eq!(w.entries(1, 1, 5, 1).unwrap(), es[..1].to_vec());
    assert!(w.stats().disk_reads > 0);
    assert!(w.recovery_report().torn_tail.is_none());
}

#[test]
fn unsynced_writes_are_readable_and_cache_serves_fresh_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(WalConfig::new(dir.path())).unwrap();
    let es: Vec<_> = (1..=100).map(|i| e(i, 1, 9)).collect();
    w.append(9, None, &es).unwrap();
    assert_eq!(w.entries(9, 1, 100, u64::MAX).unwrap(), es);
    assert_eq!(w.stats().disk_reads, 0);
    assert_eq!(w.stats().cache_hits, 100);

    // Without a cache, reads come from the buffer and the file.
    let dir2 = tempfile::tempdir().unwrap();
    let mut w2 = Wal::open(WalConfig {
        cache_entries: 0,
        buffer_bytes: 100,
        ..cfg(dir2.path())
    })
    .unwrap();
    w2.append(9, None, &es).unwrap();
    assert_eq!(w2.entries(9, 1, 100, u64::MAX).unwrap(), es);
    assert_eq!(w2.stats().disk_reads, 100);
}

#[test]
fn rotation_keeps_everything_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(WalConfig {
        cache_entries: 0,
        ..cfg(dir.path())
    })
    .unwrap();
    for i in 1..=500 {
        w.append(1, None, &[e(i, 1, 1)]).unwrap();
        w.append(2, None, &[e(i, 1, 2)]).unwrap();
    }
    w.sync().unwrap();
    assert!(w.segment_ids().len() > 5, "segments: {:?}", w.segment_ids());
    assert!(w.stats().rotations > 5);
    let expect1: Vec<_> = (1..=500).map(|i| e(i, 1, 1)).collect();
    assert_eq!(all(&w, 1), expect1);
    let w = reopen(w);
    assert_eq!(all(&w, 1), expect1);
    assert_eq!(
        all(&w, 2),
        (1..=500).map(|i| e(i, 1, 2)).collect::<Vec<_>>()
    );
}

#[test]
fn compaction_deletes_segments_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    let hs = HardState {
        term: 1,
        vote: Some(1),
        commit: 0,
    };
    // Group 7 is written once and never again: its hard state lives only in the first
    // segment, so deleting that segment must not lose it (checkpoints carry it forward).
    w.save_hard_state(7, hs).unwrap();
    for i in 1..=600 {
        w.append(1, None, &[e(i, 1, 1)]).unwrap();
    }
    w.sync().unwrap();
    let before = w.segment_ids();
    assert!(before.len() > 5);
    let meta = SnapshotMeta {
        index: 590,
        term: 1,
        membership: Membership::new([1, 2, 3]),
    };
    w.save_snapshot(1, &meta, b"state at 590", false).unwrap();
    w.compact(1, 590).unwrap();
    // Deletion waits for the sync that makes the compaction durable.
    assert_eq!(w.segment_ids().first(), before.first());
    w.sync().unwrap();
    let after = w.segment_ids();
    assert!(after.len() < 3, "{before:?} -> {after:?}");
    assert!(w.stats().segments_deleted as usize >= before.len() - 2);
    let w = reopen(w);
    assert_eq!(w.recover(7).unwrap().unwrap().hard_state, hs);
    let r = w.recover(1).unwrap().unwrap();
    assert_eq!(r.snapshot, meta);
    assert_eq!(
        r.entries,
        (591..=600).map(|i| e(i, 1, 1)).collect::<Vec<_>>()
    );
    assert_eq!(
        w.snapshot(1).unwrap(),
        Some((meta, b"state at 590".to_vec()))
    );
    assert_eq!(w.term(1, 590).unwrap(), Some(1));
}

#[test]
fn a_lagging_group_pins_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    w.append(2, None, &[e(1, 1, 2)]).unwrap();
    for i in 1..=600 {
        w.append(1, None, &[e(i, 1, 1)]).unwrap();
    }
    w.compact(1, 600).unwrap();
    w.sync().unwrap();
    // Group 2's only entry lies in the first segment: nothing can be deleted.
    assert_eq!(w.segment_ids().first(), Some(&1));
    w.compact(2, 1).unwrap();
    w.sync().unwrap();
    assert_ne!(w.segment_ids().first(), Some(&1));
    let w = reopen(w);
    assert!(all(&w, 2).is_empty());
    assert_eq!(w.recover(2).unwrap().unwrap().snapshot.index, 0);
}

#[test]
fn recovery_of_many_interleaved_groups() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(WalConfig {
        segment_bytes: 64 << 10,
        ..WalConfig::new(dir.path())
    })
    .unwrap();
    for round in 1..=30u64 {
        for g in 1..=100u64 {
            w.append(g, None, &[e(round, 1 + round / 10, g)]).unwrap();
            if round % 7 == g % 7 {
                w.save_hard_state(
                    g,
                    HardState {
                        term: 1 + round / 10,
                        vote: Some(g % 3),
                        commit: round - 1,
                    },
                )
                .unwrap();
            }
        }
        w.sync().unwrap();
    }
    let w = reopen(w);
    assert_eq!(w.groups(), (1..=100).collect::<Vec<_>>());
    for g in 1..=100u64 {
        let r = w.recover(g).unwrap().unwrap();
        assert_eq!(
            r.entries,
            (1..=30).map(|i| e(i, 1 + i / 10, g)).collect::<Vec<_>>(),
            "group {g}"
        );
        let last_hs_round = (1..=30u64).rev().find(|r| r % 7 == g % 7).unwrap();
        assert_eq!(r.hard_state.commit, last_hs_round - 1, "group {g}");
    }
}

#[test]
fn truncations_are_honoured_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    w.append(1, None, &(1..=10).map(|i| e(i, 1, 1)).collect::<Vec<_>>())
        .unwrap();
    // A conflicting append from a new leader (truncation implied by the first entry).
    w.append(1, Some(6), &[e(6, 2, 1), e(7, 2, 1)]).unwrap();
    // A bare truncation.
    w.append(2, None, &(1..=5).map(|i| e(i, 1, 2)).collect::<Vec<_>>())
        .unwrap();
    w.append(2, Some(3), &[]).unwrap();
    // An empty append creates a group.
    w.append(3, None, &[]).unwrap();
    w.sync().unwrap();
    let w = reopen(w);
    let mut expect: Vec<_> = (1..=5).map(|i| e(i, 1, 1)).collect();
    expect.extend([e(6, 2, 1), e(7, 2, 1)]);
    assert_eq!(all(&w, 1), expect);
    assert_eq!(all(&w, 2), (1..=2).map(|i| e(i, 1, 2)).collect::<Vec<_>>());
    assert_eq!(w.groups(), vec![1, 2, 3]);
    assert!(w.recover(3).unwrap().unwrap().entries.is_empty());
}

#[test]
fn snapshot_with_discard_log_and_group_removal() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    w.append(1, None, &(1..=10).map(|i| e(i, 1, 1)).collect::<Vec<_>>())
        .unwrap();
    let m1 = SnapshotMeta {
        index: 5,
        term: 1,
        membership: Membership::new([1]),
    };
    w.save_snapshot(1, &m1, b"five", false).unwrap();
    w.sync().unwrap();
    // Installing a leader's snapshot: the log is dropped and continues after it.
    let m2 = SnapshotMeta {
        index: 50,
        term: 4,
        membership: Membership::new([1, 2]),
    };
    w.save_snapshot(1, &m2, b"fifty", true).unwrap();
    w.append(1, None, &[e(51, 4, 1)]).unwrap();
    w.append(2, None, &[e(1, 1, 2)]).unwrap();
    w.save_snapshot(
        2,
        &SnapshotMeta {
            index: 1,
            term: 1,
            ..Default::default()
        },
        b"g2",
        false,
    )
    .unwrap();
    w.sync().unwrap();
    let snaps = |d: &Path| {
        let mut v: Vec<_> = fs::read_dir(d)
            .unwrap()
            .filter_map(|d| d.unwrap().file_name().into_string().ok())
            .filter(|n| n.starts_with("snap-"))
            .collect();
        v.sort();
        v
    };
    // The replaced snapshot of group 1 is gone once its successor is durable.
    assert_eq!(snaps(dir.path()).len(), 2, "{:?}", snaps(dir.path()));
    w.remove_group(2).unwrap();
    w.sync().unwrap();
    assert_eq!(snaps(dir.path()).len(), 1);
    let w = reopen(w);
    assert_eq!(w.groups(), vec![1]);
    let r = w.recover(1).unwrap().unwrap();
    assert_eq!(r.snapshot, m2);
    assert_eq!(r.entries, vec![e(51, 4, 1)]);
    assert_eq!(w.snapshot(1).unwrap(), Some((m2, b"fifty".to_vec())));
    assert_eq!(w.term(1, 50).unwrap(), Some(4));
}

#[test]
fn a_snapshot_whose_record_was_not_synced_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    w.append(1, None, &[e(1, 1, 1)]).unwrap();
    w.sync().unwrap();
    let m = SnapshotMeta {
        index: 1,
        term: 1,
        ..Default::default()
    };
    w.save_snapshot(1, &m, b"x", false).unwrap();
    // Crash before sync: the file is durable, its record is not.
    drop(w);
    let w = Wal::open(cfg(dir.path())).unwrap();
    assert_eq!(w.snapshot(1).unwrap(), None);
    assert_eq!(w.recovery_report().removed_snapshot_files, 1);
}

#[test]
fn failed_sync_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    w.append(1, None, &[e(1, 1, 1)]).unwrap();
    w.fail_next_sync = true;
    assert!(matches!(w.sync(), Err(StorageError::Io { .. })));
    assert!(w.poisoned().is_some());
    assert!(matches!(
        w.append(1, None, &[e(2, 1, 1)]),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(matches!(w.sync(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(
        w.save_hard_state(1, HardState::default()),
        Err(StorageError::Poisoned { .. })
    ));
    // Reads still work.
    assert_eq!(all(&w, 1), vec![e(1, 1, 1)]);
}

#[test]
fn io_errors_are_returned_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Wal::open(WalConfig::new(&file)),
        Err(StorageError::Io { .. })
    ));
    assert!(matches!(
        Wal::open(WalConfig::new(file.join("below"))),
        Err(StorageError::Io { .. })
    ));
}

#[test]
fn invalid_requests_do_not_poison() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    w.append(1, None, &[e(1, 1, 1)]).unwrap();
    assert!(matches!(
        w.append(1, None, &[e(3, 1, 1)]),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        w.append(1, None, &[e(2, 1, 1), e(4, 1, 1)]),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        w.entries(1, 1, 2, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    w.append(1, None, &[e(2, 1, 1)]).unwrap();
    w.sync().unwrap();
    assert_eq!(all(&reopen(w), 1).len(), 2);
}

#[test]
fn many_groups_with_tiny_segments_still_make_progress() {
    // 300 groups' checkpoint alone is larger than a 4 KiB segment: rotation must not loop.
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(cfg(dir.path())).unwrap();
    for g in 1..=300 {
        w.append(g, None, &[e(1, 1, g)]).unwrap();
    }
    for g in 1..=300 {
        w.append(g, None, &[e(2, 1, g)]).unwrap();
    }
    w.sync().unwrap();
    let segments = w.segment_ids().len();
    assert!(segments < 40, "{segments} segments");
    let w = reopen(w);
    for g in [1, 150, 300] {
        assert_eq!(all(&w, g), vec![e(1, 1, g), e(2, 1, g)]);
    }
}
