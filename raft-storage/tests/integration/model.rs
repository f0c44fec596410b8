//! Model test: `Wal` and `MemStore` agree after every operation of seeded random sequences,
//! and after every reopen. `RAFT_WAL_MODEL_SEEDS=N` runs more seeds (default 40).

use raft_core::{Entry, EntryPayload, GroupId, HardState, Index, Membership, SnapshotMeta};
use raft_storage::{LogStore, MemStore, StorageError, SyncMode, Wal, WalConfig};

/// splitmix64: small, seeded, good enough to pick operations.
/// The project's seeded generator (splitmix64).
use raft_core::rng::SplitMix64 as Rng;

/// (first held, last held, snapshot index, last term) of a group in the model.
fn bounds(m: &MemStore, g: GroupId) -> (Index, Index, Index, u64) {
    match m.recover(g).unwrap() {
        None => (1, 0, 0, 0),
        Some(r) => {
            let s = r.snapshot.index;
            let first = r.entries.first().map_or(s + 1, |e| e.index);
            let last = r.entries.last().map_or(s, |e| e.index);
            let term = r
                .entries
                .last()
                .map_or(r.snapshot.term, |e| e.term)
                .max(r.hard_state.term);
            (first, last, s, term)
        }
    }
}

fn same<T: PartialEq + std::fmt::Debug>(
    what: &str,
    a: Result<T, StorageError>,
    b: Result<T, StorageError>,
) {
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
        (Err(a), Err(b)) => {
            assert_eq!(
                std::mem::discriminant(&a),
                std::mem::discriminant(&b),
                "{what}: {a} vs {b}"
            )
        }
        (a, b) => panic!("{what}: model {a:?} vs wal {b:?}"),
    }
}

fn compare(m: &MemStore, w: &Wal, rng: &mut Rng, ctx: &str) {
    assert_eq!(m.groups(), w.groups(), "{ctx}: groups");
    for g in m.groups() {
        same(&format!("{ctx}: recover({g})"), m.recover(g), w.recover(g));
        same(
            &format!("{ctx}: snapshot({g})"),
            m.snapshot(g),
            w.snapshot(g),
        );
        let (first, last, _, _) = bounds(m, g);
        for i in first.saturating_sub(2)..=last + 2 {
            same(
                &format!("{ctx}: term({g}, {i})"),
                m.term(g, i),
                w.term(g, i),
            );
        }
        for _ in 0..3 {
            let from = first.saturating_sub(1) + rng.below(last + 3 - first.min(last + 2));
            let to = from + rng.below(6);
            let max = [0, 50, 200, u64::MAX][rng.below(4) as usize];
            same(
                &format!("{ctx}: entries({g}, {from}, {to}, {max})"),
                m.entries(g, from, to, max),
                w.entries(g, from, to, max),
            );
        }
    }
    same(
        &format!("{ctx}: recover(absent)"),
        m.recover(999),
        w.recover(999),
    );
}

fn run(seed: u64, ops: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(seed);
    let config = WalConfig {
        segment_bytes: 4096,
        cache_entries: rng.below(16) as usize,
        buffer_bytes: 1 + rng.below(3000) as usize,
        sync: if rng.below(100) < 50 {
            SyncMode::Always
        } else {
            SyncMode::Never
        },
        ..WalConfig::new(dir.path())
    };
    let mut w = Wal::open(config.clone()).unwrap();
    let mut m = MemStore::new();
    for step in 0..ops {
        let g = 1 + rng.below(5);
        let (first, last, snap, term) = bounds(&m, g);
        let exists = m.recover(g).unwrap().is_some();
        let roll = rng.below(100);
        let op;
        if roll < 45 {
            let t = if exists && last >= first && rng.below(100) < 30 {
                Some(first.saturating_sub(1).max(1) + rng.below(last + 2 - first))
            } else {
                None
            };
            let last_after = match t {
                Some(t) if last >= first && t <= last => {
                    if t <= first {
                        snap
                    } else {
                        t - 1
                    }
                }
                _ => last,
            };
            let n = rng.below(5);
            let new_term = term + u64::from(t.is_some() || rng.below(100) < 10);
            let es: Vec<Entry> = (1..=n)
                .map(|k| Entry {
                    index: last_after + k,
                    term: new_term.max(1),
                    payload: match rng.below(10) {
                        0 => EntryPayload::Noop,
                        1 => EntryPayload::Membership(Membership::new([1, 2, rng.below(9)])),
                        _ => EntryPayload::Normal(
                            (0..rng.below(300))
                                .map(|_| rng.next_u64() as u8)
                                .collect::<Vec<u8>>()
                                .into(),
                        ),
                    },
                })
                .collect();
            op = format!("append({g}, {t:?}, {}..+{n})", last_after + 1);
            same(&op, m.append(g, t, &es), w.append(g, t, &es));
        } else if roll < 55 {
            let hs = HardState {
                term: term + rng.below(2),
                vote: (rng.below(100) < 50).then(|| rng.below(4)),
                commit: rng.below(last + 1),
            };
            op = format!("save_hard_state({g}, {hs:?})");
            same(&op, m.save_hard_state(g, hs), w.save_hard_state(g, hs));
        } else if roll < 63 {
            let discard = rng.below(100) < 30;
            let index = if discard {
                last + rng.below(8)
            } else {
                snap + rng.below(last + 1 - snap.min(last))
            };
            let meta = SnapshotMeta {
                index,
                term: term.max(1),
                membership: Membership::new([1, rng.below(5)]),
            };
            let data: Vec<u8> = (0..rng.below(100)).map(|_| rng.next_u64() as u8).collect();
            op = format!("save_snapshot({g}, {index}, discard {discard})");
            same(
                &op,
                m.save_snapshot(g, &meta, &data, discard),
                w.save_snapshot(g, &meta, &data, discard),
            );
        } else if roll < 73 {
            let index = first.saturating_sub(1) + rng.below(snap + 2 - first.min(snap + 1));
            let index = index.min(snap);
            op = format!("compact({g}, {index})");
            same(&op, m.compact(g, index), w.compact(g, index));
        } else if roll < 76 {
            op = format!("remove_group({g})");
            same(&op, m.remove_group(g), w.remove_group(g));
        } else if roll < 92 {
            op = "sync".into();
            same(&op, m.sync(), w.sync());
        } else if roll < 97 {
            op = "reopen".into();
            w.sync().unwrap();
            drop(w);
            w = Wal::open(config.clone()).unwrap();
            assert!(w.recovery_report().torn_tail.is_none());
        } else {
            // An append leaving a gap is refused by both, without effect.
            if !exists {
                continue;
            }
            let bad = [Entry {
                index: last + 2,
                term: term.max(1),
                payload: EntryPayload::Noop,
            }];
            op = format!("bad append({g})");
            same(&op, m.append(g, None, &bad), w.append(g, None, &bad));
        }
        compare(
            &m,
            &w,
            &mut rng,
            &format!("seed {seed} step {step} after {op}"),
        );
    }
    w.sync().unwrap();
    drop(w);
    let w = Wal::open(config).unwrap();
    compare(&m, &w, &mut rng, &format!("seed {seed} final reopen"));
}

#[test]
fn wal_agrees_with_mem_store() {
    let seeds: u64 = std::env::var("RAFT_WAL_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        run(seed, 400);
    }
}
