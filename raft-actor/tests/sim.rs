//! Seeded simulation runs (issue 6, in progress). `RAFT_SIM_SEEDS=N` runs N seeds (default 2),
//! `RAFT_SIM_SEED=S` replays one, `RAFT_SIM_SECS=T` sets the simulated fault time per seed
//! (default 20 s in this test).

#![cfg(feature = "sim")]

use std::time::Duration;

use raft_actor::sim::cluster::{SimConfig, run};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn config(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.duration = Duration::from_secs(env_u64("RAFT_SIM_SECS").unwrap_or(20));
    c
}

#[test]
fn seeds_hold_every_invariant() {
    let seeds: Vec<u64> = match env_u64("RAFT_SIM_SEED") {
        Some(s) => vec![s],
        None => (0..env_u64("RAFT_SIM_SEEDS").unwrap_or(2)).collect(),
    };
    let mut failing = Vec::new();
    for &seed in &seeds {
        let r = run(config(seed));
        eprintln!(
            "seed {seed}: acked {} in doubt {} leader terms {} faults {} violations {}",
            r.acked,
            r.in_doubt,
            r.leader_terms,
            r.faults,
            r.violations.len()
        );
        if !r.violations.is_empty() {
            eprintln!("  first violation: {}", r.violations[0]);
            eprintln!(
                "  replay: RAFT_SIM_SEED={seed} cargo test -p raft-actor --all-features --test sim"
            );
            failing.push(seed);
        }
    }
    eprintln!("seeds: {}, violations: {}", seeds.len(), failing.len());
    assert!(failing.is_empty(), "failing seeds: {failing:?}");
}

#[test]
fn same_seed_same_run() {
    let mut c = config(3);
    c.duration = Duration::from_secs(10);
    if let Some(n) = env_u64("RAFT_SIM_CLIENTS") {
        c.clients = n;
    }
    let a = run(c.clone());
    let b = run(c);
    for (name, r) in [("a", &a), ("b", &b)] {
        eprintln!(
            "run {name}: acked {} doubt {} terms {} faults {} applied {:x} history {:x}",
            r.acked, r.in_doubt, r.leader_terms, r.faults, r.applied_hash, r.history_hash
        );
    }
    if let Some(i) = (0..a.applied_order.len().min(b.applied_order.len()))
        .find(|&i| a.applied_order[i] != b.applied_order[i])
    {
        let lo = i.saturating_sub(3);
        eprintln!(
            "applied orders differ at {i} of {}/{}: a {:?} b {:?}",
            a.applied_order.len(),
            b.applied_order.len(),
            &a.applied_order[lo..(i + 4).min(a.applied_order.len())],
            &b.applied_order[lo..(i + 4).min(b.applied_order.len())]
        );
    } else {
        eprintln!(
            "applied orders equal over the common prefix; lengths {} {}",
            a.applied_order.len(),
            b.applied_order.len()
        );
    }
    assert!(a.acked > 0);
    assert_eq!(
        a.trace_hash, b.trace_hash,
        "two runs of seed 3 differ: the simulation is not deterministic"
    );
}
