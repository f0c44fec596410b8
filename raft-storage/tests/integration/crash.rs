//! Crash test with real processes: a child process (this test binary, re-executed with
//! `RAFT_WAL_CHILD=<dir>`) writes to a `Wal` with `SyncMode::Always` under load and is killed
//! with SIGKILL at random moments. After every kill the parent reopens the log and checks that
//! every entry the child reported persisted (it prints `P <group> <index> <term> .` after each
//! `sync` returns, and flushes) is present and intact, that each group's log has no gap, that
//! every entry's bytes are the ones written, and that hard state and snapshots are consistent.
//!
//! Kills: 200 by default; `RAFT_WAL_KILLS=N` runs N (e.g. `RAFT_WAL_KILLS=2000 cargo test -p
//! raft-storage --release --test integration -- crash:: --nocapture`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raft_core::{Entry, EntryPayload, GroupId, HardState, Index, SnapshotMeta, Term};
use raft_storage::{LogStore, SyncMode, Wal, WalConfig};

const GROUPS: u64 = 8;

/// The project's seeded generator (splitmix64).
use raft_core::rng::SplitMix64 as Rng;

/// The bytes of entry (group, index, term): anything else on disk is corruption.
fn payload(group: GroupId, index: Index, term: Term) -> Vec<u8> {
    let mut r = Rng::new(group.wrapping_mul(1_000_003) ^ (index << 16) ^ (term << 48));
    let n = r.below(200);
    (0..n).map(|_| r.next_u64() as u8).collect()
}

fn entry(group: GroupId, index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        payload: EntryPayload::Normal(payload(group, index, term).into()),
    }
}

fn snapshot_data(group: GroupId, index: Index) -> Vec<u8> {
    format!("snapshot of group {group} at {index}").into_bytes()
}

fn config(dir: &Path) -> WalConfig {
    WalConfig {
        segment_bytes: 64 << 10,
        sync: SyncMode::Always,
        cache_entries: 256,
        ..WalConfig::new(dir)
    }
}

/// The child: writes forever; reports after each sync.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("RAFT_WAL_CHILD") else {
        return;
    };
    let seed: u64 = std::env::var("RAFT_WAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    let mut w = Wal::open(config(Path::new(&dir))).expect("child: open");
    let mut out = std::io::stdout().lock();
    let (mut last, mut term, mut synced) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for g in 1..=GROUPS {
        let (l, t) = match w.recover(g).expect("child: recover") {
            Some(r) => {
                let l = r.entries.last().map_or(r.snapshot.index, |e| e.index);
                let t = r
                    .entries
                    .last()
                    .map_or(r.snapshot.term, |e| e.term)
                    .max(r.hard_state.term);
                (l, t)
            }
            None => {
                w.save_hard_state(
                    g,
                    HardState {
                        term: 1,
                        vote: Some(1),
                        commit: 0,
                    },
                )
                .unwrap();
                (0, 1)
            }
        };
        last.insert(g, l);
        term.insert(g, t);
        synced.insert(g, l);
    }
    w.sync().expect("child: sync");
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    loop {
        let mut touched = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let g = 1 + rng.below(GROUPS);
            touched.push(g);
            let (l, t, s) = (last[&g], term[&g], synced[&g]);
            match rng.below(100) {
                // Rewrite unsynced entries in a new term (a follower's conflicting append).
                0..10 if l > s => {
                    let from = s + 1 + rng.below(l - s);
                    let nt = t + 1;
                    w.save_hard_state(
                        g,
                        HardState {
                            term: nt,
                            vote: Some(2),
                            commit: s,
                        },
                    )
                    .unwrap();
                    let es: Vec<_> = (from..from + 1 + rng.below(4))
                        .map(|i| entry(g, i, nt))
                        .collect();
                    w.append(g, Some(from), &es).unwrap();
                    last.insert(g, es.last().unwrap().index);
                    term.insert(g, nt);
                }
                // A bare truncation of unsynced entries.
                10..15 if l > s => {
                    let from = s + 1 + rng.below(l - s);
                    w.append(g, Some(from), &[]).unwrap();
                    last.insert(g, from - 1);
                }
                15..25 => {
                    w.save_hard_state(
                        g,
                        HardState {
                            term: t,
                            vote: Some(1),
                            commit: s,
                        },
                    )
                    .unwrap();
                }
                // A local snapshot, then compaction behind it.
                25..30 if s > 20 => {
                    let idx = s - 10;
                    let Some(it) = w.term(g, idx).unwrap() else {
                        continue;
                    };
                    let meta = SnapshotMeta {
                        index: idx,
                        term: it,
                        ..Default::default()
                    };
                    w.save_snapshot(g, &meta, &snapshot_data(g, idx), false)
                        .unwrap();
                    w.compact(g, idx - rng.below(5)).unwrap();
                }
                // Rarely, a leader's snapshot past the log's end replaces the log.
                30 => {
                    let idx = l + 3;
                    let meta = SnapshotMeta {
                        index: idx,
                        term: t,
                        ..Default::default()
                    };
                    w.save_snapshot(g, &meta, &snapshot_data(g, idx), true)
                        .unwrap();
                    last.insert(g, idx);
                }
                _ => {
                    let es: Vec<_> = (l + 1..l + 2 + rng.below(5))
                        .map(|i| entry(g, i, t))
                        .collect();
                    w.append(g, None, &es).unwrap();
                    last.insert(g, es.last().unwrap().index);
                }
            }
        }
        w.sync().expect("child: sync");
        touched.sort_unstable();
        touched.dedup();
        for g in touched {
            let l = last[&g];
            synced.insert(g, l);
            let t = w.term(g, l).unwrap().expect("child: term of last");
            writeln!(out, "P {g} {l} {t} .").unwrap();
        }
        out.flush().unwrap();
    }
}

/// Reopens the log and checks it against everything reported so far.
/// Returns whether recovery cut a torn tail.
fn verify(dir: &Path, reported: &BTreeMap<GroupId, (Index, Term)>, round: usize) -> bool {
    let w = Wal::open(config(dir)).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    for g in 1..=GROUPS {
        let ctx = format!("round {round} group {g}");
        let Some(r) = w.recover(g).unwrap_or_else(|e| panic!("{ctx}: {e}")) else {
            assert!(
                !reported.contains_key(&g),
                "{ctx}: reported entries but the group is gone"
            );
            continue;
        };
        for (k, e) in r.entries.iter().enumerate() {
            assert_eq!(
                e.index,
                r.entries[0].index + k as u64,
                "{ctx}: gap in the log"
            );
            assert_eq!(
                *e,
                entry(g, e.index, e.term),
                "{ctx}: entry {} is not what was written",
                e.index
            );
            assert!(
                e.term <= r.hard_state.term,
                "{ctx}: entry {} has a term above the hard state",
                e.index
            );
        }
        for p in r.entries.windows(2) {
            assert!(
                p[0].term <= p[1].term,
                "{ctx}: terms go down at {}",
                p[1].index
            );
        }
        if let Some(first) = r.entries.first() {
            assert!(
                first.index <= r.snapshot.index + 1,
                "{ctx}: gap between snapshot and log"
            );
        }
        if r.snapshot.index > 0 {
            let (meta, data) = w.snapshot(g).unwrap().expect("snapshot");
            assert_eq!(meta, r.snapshot);
            assert_eq!(data, snapshot_data(g, meta.index), "{ctx}: snapshot data");
        }
        if let Some(&(idx, t)) = reported.get(&g) {
            let last = r.entries.last().map_or(r.snapshot.index, |e| e.index);
            assert!(
                last >= idx,
                "{ctx}: reported {idx} persisted, the log ends at {last}"
            );
            match r.entries.iter().find(|e| e.index == idx) {
                Some(e) => assert_eq!(e.term, t, "{ctx}: reported entry {idx} changed term"),
                None => assert!(
                    idx <= r.snapshot.index,
                    "{ctx}: reported entry {idx} is missing"
                ),
            }
        }
    }
    w.recovery_report().torn_tail.is_some()
}

#[test]
fn killed_writer_loses_nothing_it_reported() {
    if std::env::var("RAFT_WAL_CHILD").is_ok() {
        return;
    }
    let kills: usize = std::env::var("RAFT_WAL_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(0x5EED);
    let mut reported: BTreeMap<GroupId, (Index, Term)> = BTreeMap::new();
    let start = Instant::now();
    let (mut lines_seen, mut torn_tails) = (0usize, 0usize);
    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("RAFT_WAL_CHILD", dir.path())
            .env("RAFT_WAL_SEED", (round as u64 + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            // Only whole lines count: a line cut by the kill has no newline.
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
                if tx.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
        });
        let mut early = Vec::new();
        if rng.below(10) == 0 {
            // Kill during start-up or recovery.
            std::thread::sleep(Duration::from_millis(rng.below(6)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                match line {
                    Ok(l) if l.trim_end().ends_with("READY") => break,
                    Ok(l) => early.push(l),
                    Err(e) => panic!("round {round}: child never got ready: {e:?}"),
                }
            }
            std::thread::sleep(Duration::from_millis(2 + rng.below(29)));
        }
        child.kill().expect("SIGKILL child");
        let status = child.wait().unwrap();
        reader.join().unwrap();
        for l in early.into_iter().chain(rx.try_iter()) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let ["P", g, i, t, "."] = f[..] {
                let (g, i, t) = (g.parse().unwrap(), i.parse().unwrap(), t.parse().unwrap());
                reported.insert(g, (i, t));
                lines_seen += 1;
            }
        }
        assert!(
            !status.success(),
            "round {round}: the child exited by itself: {status:?}"
        );
        torn_tails += usize::from(verify(dir.path(), &reported, round));
    }
    let total: u64 = reported.values().map(|(i, _)| i).sum();
    eprintln!(
        "crash test: {kills} SIGKILLs in {:.1?}; {lines_seen} persisted reports checked; \
         highest reported indices sum to {total}; torn tails cut: {torn_tails}",
        start.elapsed()
    );
    assert!(
        lines_seen > kills / 4,
        "the child reported too little: {lines_seen} reports"
    );
}
