//! Torn-write tests: damage at the tail of the last segment (truncation, flipped bytes,
//! garbage) is cut off and reported; damage anywhere else is a fatal `Corrupt` error naming the
//! segment file and offset. Zeros after the records (preallocated space) are cut off as unused
//! space in any segment, and are not damage.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use raft_core::{Entry, EntryPayload, GroupId, Index};
use raft_storage::{LogStore, StorageError, SyncMode, Wal, WalConfig};

fn e(index: Index, group: GroupId) -> Entry {
    Entry {
        index,
        term: 1,
        payload: EntryPayload::Normal(
            vec![(index as u8) ^ (group as u8); 20 + index as usize % 13].into(),
        ),
    }
}

/// Files that end at their last record (no preallocation), so damage can be placed by length.
fn config(dir: &Path) -> WalConfig {
    WalConfig {
        sync: SyncMode::Never,
        preallocate_bytes: 0,
        ..WalConfig::new(dir)
    }
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v.pop().unwrap()
}

fn len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

/// Writes 3 groups × 10 entries (synced: batch A), then entry 11 of group 1 (batch B).
/// Returns the segment holding them and the byte range of batch B's record.
fn build(dir: &Path) -> (PathBuf, u64, u64) {
    let mut w = Wal::open(config(dir)).unwrap();
    for i in 1..=10 {
        for g in 1..=3 {
            w.append(g, None, &[e(i, g)]).unwrap();
        }
    }
    w.sync().unwrap();
    let seg = last_segment(dir);
    let a = len(&seg);
    w.append(1, None, &[e(11, 1)]).unwrap();
    w.sync().unwrap();
    let b = len(&seg);
    (seg, a, b)
}

/// Reopens the log (which starts a newer segment) and writes entry 11 of group 2 there, so
/// the segment `build` wrote is no longer the last.
fn write_in_a_newer_segment(dir: &Path) {
    let mut w = Wal::open(config(dir)).unwrap();
    w.append(2, None, &[e(11, 2)]).unwrap();
    w.sync().unwrap();
}

fn entries(w: &Wal, g: GroupId) -> Vec<Entry> {
    w.recover(g).unwrap().unwrap().entries
}

/// Batch A is intact; group 1 has entry 11 only if `with_b`.
fn check(w: &Wal, with_b: bool) {
    let n1 = if with_b { 11 } else { 10 };
    assert_eq!(entries(w, 1), (1..=n1).map(|i| e(i, 1)).collect::<Vec<_>>());
    for g in 2..=3 {
        assert_eq!(entries(w, g), (1..=10).map(|i| e(i, g)).collect::<Vec<_>>());
    }
}

fn corrupt_message(r: Result<Wal, StorageError>) -> String {
    match r {
        Err(StorageError::Corrupt(m)) => m,
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("expected Corrupt, the WAL opened"),
    }
}

#[test]
fn every_truncation_of_the_last_record_is_cut_and_reported() {
    let probe = tempfile::tempdir().unwrap();
    let (_, a, b) = build(probe.path());
    for keep in a..b {
        let dir = tempfile::tempdir().unwrap();
        let (seg, _, _) = build(dir.path());
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let w = Wal::open(config(dir.path())).unwrap();
        check(&w, false);
        if keep > a {
            let torn = w.recovery_report().torn_tail.clone().expect("a report");
            assert_eq!(torn.segment, seg);
            assert_eq!(torn.offset, a);
            assert_eq!(torn.dropped_bytes, keep - a);
        }
        assert_eq!(len(&seg), a, "the tail is gone from the file");
        // Reopening again finds a clean log, and writing goes on.
        drop(w);
        let mut w = Wal::open(config(dir.path())).unwrap();
        assert!(w.recovery_report().torn_tail.is_none());
        w.append(1, None, &[e(11, 1)]).unwrap();
        w.sync().unwrap();
        drop(w);
        check(&Wal::open(config(dir.path())).unwrap(), true);
    }
}

#[test]
fn every_flipped_byte_of_the_last_record_is_cut_and_reported() {
    let probe = tempfile::tempdir().unwrap();
    let (_, a, b) = build(probe.path());
    for at in a..b {
        let dir = tempfile::tempdir().unwrap();
        let (seg, _, _) = build(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        bytes[at as usize] ^= 0x04;
        fs::write(&seg, bytes).unwrap();
        let w = Wal::open(config(dir.path())).unwrap();
        check(&w, false);
        let torn = w.recovery_report().torn_tail.clone().expect("a report");
        assert_eq!(
            (torn.segment, torn.offset, torn.dropped_bytes),
            (seg, a, b - a)
        );
    }
}

#[test]
fn a_garbage_tail_is_cut_and_reported() {
    let garbage: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let (seg, _, b) = build(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&garbage);
    fs::write(&seg, bytes).unwrap();
    let w = Wal::open(config(dir.path())).unwrap();
    check(&w, true);
    let torn = w.recovery_report().torn_tail.clone().expect("a report");
    assert_eq!((torn.offset, torn.dropped_bytes), (b, garbage.len() as u64));
    assert_eq!(w.recovery_report().unused_tail_bytes, 0);
    assert_eq!(len(&seg), b);
}

#[test]
fn a_zero_filled_tail_is_unused_space_in_any_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _, b) = build(dir.path());
    // Reopening starts a newer segment: zeros now end a segment that is not the last, as
    // when its cut at rotation did not reach the disk.
    write_in_a_newer_segment(dir.path());
    let last = last_segment(dir.path());
    assert_ne!(last, first);
    let last_len = len(&last);
    for seg in [&first, &last] {
        let mut bytes = fs::read(seg).unwrap();
        bytes.extend_from_slice(&[0u8; 5000]);
        fs::write(seg, bytes).unwrap();
    }
    let w = Wal::open(config(dir.path())).unwrap();
    for (g, n) in [(1, 11), (2, 11), (3, 10)] {
        assert_eq!(entries(&w, g), (1..=n).map(|i| e(i, g)).collect::<Vec<_>>());
    }
    let report = w.recovery_report();
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(report.unused_tail_bytes, 10_000);
    assert_eq!((len(&first), len(&last)), (b, last_len));
}

#[test]
fn an_older_segment_of_zeros_only_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _, _) = build(dir.path());
    write_in_a_newer_segment(dir.path());
    // Its header was synced before the next segment began: all zeros is damage, not space.
    fs::write(&first, vec![0u8; 4096]).unwrap();
    let msg = corrupt_message(Wal::open(config(dir.path())));
    assert!(msg.contains("not the last segment"), "{msg}");
}

/// With preallocation (the default): every segment's file is zero-filled ahead of its
/// records; finished segments are cut back to their records at rotation; a reopen finds no
/// torn tail, only unused space at the end of the last segment, and every entry.
#[test]
fn preallocated_segments_recover_every_entry_and_report_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || WalConfig {
        sync: SyncMode::Always,
        segment_bytes: 8 << 10,
        preallocate_bytes: 32 << 10,
        ..WalConfig::new(dir.path())
    };
    let mut w = Wal::open(cfg()).unwrap();
    for i in 1..=200 {
        for g in 1..=3 {
            w.append(g, None, &[e(i, g)]).unwrap();
        }
        if i % 10 == 0 {
            w.sync().unwrap();
        }
    }
    w.sync().unwrap();
    assert!(w.stats().rotations >= 3, "{:?}", w.stats());
    drop(w);
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    let last = segs.pop().unwrap();
    // Finished segments end at a record (within one record of the segment size); the one
    // being written is zero-filled ahead of its records (the reopen below cuts that off).
    let last_len = len(&last);
    for s in &segs {
        assert!(
            len(s) < (8 << 10) + 1024,
            "{} keeps its preallocation",
            s.display()
        );
    }
    let w = Wal::open(cfg()).unwrap();
    let report = w.recovery_report().clone();
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert!(report.unused_tail_bytes > 0, "{report:?}");
    assert!(len(&last) < last_len, "the zeros were cut");
    for g in 1..=3 {
        assert_eq!(
            entries(&w, g),
            (1..=200).map(|i| e(i, g)).collect::<Vec<_>>()
        );
    }
    // The cut-back last segment is read as finished when a later one exists.
    drop(w);
    let w = Wal::open(cfg()).unwrap();
    assert_eq!(w.recovery_report().torn_tail, None);
    assert_eq!(entries(&w, 1).len(), 200);
}

#[test]
fn a_flipped_byte_mid_segment_is_fatal_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, a, _) = build(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    // Inside the last record of batch A: valid records follow it.
    bytes[a as usize - 5] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let msg = corrupt_message(Wal::open(config(dir.path())));
    let name = seg.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "{msg}");
    assert!(msg.contains("offset"), "{msg}");
    assert!(msg.contains("middle"), "{msg}");
    // Nothing was truncated: the damage is left for an operator to inspect.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_fatal() {
    for damage in ["flip", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let (seg, _, b) = build(dir.path());
        // Reopening starts a newer segment, so `seg` is no longer the last.
        write_in_a_newer_segment(dir.path());
        assert_ne!(last_segment(dir.path()), seg);
        if damage == "flip" {
            let mut bytes = fs::read(&seg).unwrap();
            bytes[b as usize - 1] ^= 0x80;
            fs::write(&seg, bytes).unwrap();
        } else {
            OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(b - 3)
                .unwrap();
        }
        let msg = corrupt_message(Wal::open(config(dir.path())));
        assert!(
            msg.contains(seg.file_name().unwrap().to_str().unwrap()),
            "{msg}"
        );
        assert!(msg.contains("not the last segment"), "{msg}");
    }
}

#[test]
fn a_missing_segment_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(WalConfig {
        segment_bytes: 4096,
        ..config(dir.path())
    })
    .unwrap();
    for i in 1..=1000 {
        w.append(1, None, &[e(i, 1)]).unwrap();
    }
    w.sync().unwrap();
    let ids = w.segment_ids();
    drop(w);
    assert!(ids.len() > 3);
    let middle = fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap() == format!("{:020}.wal", ids[1]))
        .unwrap();
    fs::remove_file(middle).unwrap();
    let msg = corrupt_message(Wal::open(config(dir.path())));
    assert!(msg.contains("missing"), "{msg}");
}
