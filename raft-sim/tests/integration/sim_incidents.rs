//! One named test per incident (five failures of other Raft systems: the NebulaGraph raftex
//! deadlock, the MIT 6.824 Lab 2B flakes, the InfluxDB client pool, Apache Kvrocks master
//! switching, braft on arm64), each a run of the deterministic simulation
//! (`raft_sim::cluster`) under the incident's conditions, with the client history
//! recorded and checked for exactly-once and linearizability, and every checker of the
//! simulation on (election safety, leader completeness, log matching, state-machine safety,
//! the replicator wake-up audit, liveness after healing).
//!
//! A failing test prints the command that replays it; `RAFT_SIM_TRACE=path` writes the run's
//! event trace (one line per event) to `path`.

use std::time::{Duration, Instant};

use raft_sim::{LaggingFollower, LeaderPauses, SimConfig, SimReport, run};

/// Runs `cfg`, prints a summary, dumps the trace if asked, and fails on any violation.
fn run_incident(name: &str, mut cfg: SimConfig) -> SimReport {
    let trace = std::env::var("RAFT_SIM_TRACE").ok();
    cfg.trace = trace.is_some();
    let wall = Instant::now();
    let r = run(cfg);
    let took = wall.elapsed();
    if let Some(path) = &trace {
        std::fs::write(path, r.trace.join("\n") + "\n").expect("write the trace");
        eprintln!("{name}: trace of {} events in {path}", r.trace.len());
    }
    eprintln!(
        "{name}: {} operations acknowledged ({} in doubt), {} leader terms, {} forced elections, \
         {} pauses ({} followed by an election), {} isolations ({} taken over), {} overloaded \
         attempts, max queues {:?}, victim {:?} (max lag {}, caught up {}), {} snapshots \
         installed, wake-up audit {:?}, {} committed entries checked; {:.1} s wall",
        r.acked,
        r.in_doubt,
        r.leader_terms,
        r.forced_elections,
        r.pauses,
        r.pause_elections,
        r.isolations,
        r.isolation_takeovers,
        r.overloaded,
        r.max_queues,
        r.victim,
        r.max_victim_lag,
        r.victim_caught_up,
        r.snapshots_installed,
        r.wakeup_audit,
        r.committed_checked,
        took.as_secs_f64()
    );
    if !r.violations.is_empty() {
        for v in &r.violations {
            eprintln!("  violation: {v}");
        }
        eprintln!(
            "  replay: RAFT_SIM_TRACE=/tmp/{name}.trace cargo test -p raft-sim --test integration \
             -- sim_incidents::{name} --exact --nocapture"
        );
        panic!("{name}: {} violations", r.violations.len());
    }
    assert!(
        !r.linearizability_unknown,
        "{name}: the history was beyond the linearizability checker's budget"
    );
    assert!(r.wakeup_audit.is_some(), "{name}: no wake-up audit");
    r
}

/// Incident 1 (NebulaGraph raftex): 5 nodes under write load, a forced leader change every
/// 500 ms for 10 simulated minutes, one follower's replication hung (its data lane drops
/// everything both ways while its heartbeats flow). Every forced election completes within
/// 2 s (election handling never waits on replication), no node reports a stall, no
/// acknowledged write is lost and the history is linearizable.
#[test]
fn incident1_nebula_forced_leader_changes_with_a_hung_follower() {
    let mut c = SimConfig::scenario(1, 5, Duration::from_secs(600));
    c.forced_transfers = Some(Duration::from_millis(500));
    c.hung_follower = true;
    // Think time of 30 ms: load enough, and the run stays within its wall-time budget.
    c.client_think = Duration::from_millis(30);
    let r = run_incident(
        "incident1_nebula_forced_leader_changes_with_a_hung_follower",
        c,
    );
    assert!(
        r.forced_elections >= 500,
        "only {} forced elections",
        r.forced_elections
    );
    assert_eq!(r.stalls_seen, 0, "a partition actor was reported stalled");
    assert!(
        r.max_victim_lag > 1000,
        "the hung follower never fell behind (lag {})",
        r.max_victim_lag
    );
    assert!(r.acked > 10_000, "only {} operations", r.acked);
}

/// Incident 2 (MIT 6.824 Lab 2B): stop-the-world pauses of 620 ms of the leader under load.
/// A pause alone must not cost the leadership (heartbeats run on their own executor, I5).
/// Every other episode the leader instead loses leadership with entries in flight: its
/// followers' acknowledgements are lost for 620 ms, then it is cut off for 3 s. A new leader
/// takes over and commits the old leader's entries through its own no-op; clients that timed
/// out retry with their session ids and every increment applies exactly once.
#[test]
fn incident2_mit6824_leader_pauses_and_lost_leadership() {
    let mut c = SimConfig::scenario(2, 3, Duration::from_secs(300));
    c.leader_pauses = Some(LeaderPauses {
        every: Duration::from_secs(3),
        pause: Duration::from_millis(620),
        isolation: Some(Duration::from_secs(3)),
    });
    let r = run_incident("incident2_mit6824_leader_pauses_and_lost_leadership", c);
    assert!(r.pauses >= 40, "only {} pauses", r.pauses);
    assert_eq!(r.pause_elections, 0, "a pause caused an election");
    assert!(r.isolations >= 40, "only {} isolations", r.isolations);
    assert_eq!(
        r.isolation_takeovers, r.isolations,
        "a cut-off leader was not replaced"
    );
    assert!(r.errors > 0, "no client ever had to retry");
}

/// Incident 3 (InfluxDB client pool): overload must show as backpressure and errors, never as
/// unbounded queues or blocked callers. 32 clients against a client queue of 8 per group, while
/// the leader is paused every 4 s (requests pile up behind it) and leadership moves every
/// second (the role switch queued between readers): callers get `Overloaded` at once, no
/// queue ever exceeds its capacity, the group keeps committing and the history is
/// linearizable.
#[test]
fn incident3_influxdb_overload_is_backpressure() {
    let mut c = SimConfig::scenario(3, 3, Duration::from_secs(30));
    c.clients = 32;
    c.client_think = Duration::from_millis(10);
    c.client_queue = Some(8);
    c.forced_transfers = Some(Duration::from_secs(1));
    c.leader_pauses = Some(LeaderPauses {
        every: Duration::from_secs(4),
        pause: Duration::from_millis(400),
        isolation: None,
    });
    let r = run_incident("incident3_influxdb_overload_is_backpressure", c);
    assert!(r.overloaded > 0, "no caller ever saw backpressure");
    assert!(
        r.max_queues.0 <= 8,
        "a client queue held {} requests (capacity 8)",
        r.max_queues.0
    );
    assert_eq!(r.stalls_seen, 0, "a partition actor was reported stalled");
    assert!(r.acked > 5_000, "only {} operations", r.acked);
}

/// Incident 4 (Apache Kvrocks master switching): role switches are messages. A leader transfer
/// every 50 ms for three simulated minutes under writes: every forced election completes, no stall,
/// nothing acknowledged lost, the history linearizable.
#[test]
fn incident4_kvrocks_transfer_storm_under_writes() {
    let mut c = SimConfig::scenario(4, 3, Duration::from_secs(180));
    c.forced_transfers = Some(Duration::from_millis(50));
    let r = run_incident("incident4_kvrocks_transfer_storm_under_writes", c);
    assert!(
        r.forced_elections >= 1000,
        "only {} forced elections",
        r.forced_elections
    );
    assert_eq!(r.stalls_seen, 0, "a partition actor was reported stalled");
    assert!(r.acked > 10_000, "only {} operations", r.acked);
}

/// Incident 5 (braft on arm64): every replicator owns its wake-up state. A follower cut off
/// for 20 s while the leader snapshots every 50 entries is reported lagging and caught up by
/// snapshot; in the quiet window at the end each log change wakes each replicator exactly
/// once (the audit is part of every run; here it is required to have happened).
#[test]
fn incident5_braft_lagging_follower_and_exactly_once_wakeups() {
    let mut c = SimConfig::scenario(5, 3, Duration::from_secs(40));
    c.snapshots = Some((50, 5));
    c.lagging_follower = Some(LaggingFollower {
        from: Duration::from_secs(5),
        until: Duration::from_secs(25),
    });
    let r = run_incident(
        "incident5_braft_lagging_follower_and_exactly_once_wakeups",
        c,
    );
    assert!(
        r.max_victim_lag > 500,
        "the cut-off follower's lag was never reported (max {})",
        r.max_victim_lag
    );
    assert!(r.snapshots_installed >= 1, "no snapshot was installed");
    assert!(r.victim_caught_up, "the lagging follower did not catch up");
    let audit = r.wakeup_audit.expect("audited");
    assert_eq!(audit.wakeups, audit.signals * audit.replicators);
    assert!(
        audit.signals >= 20,
        "audit saw only {} signals",
        audit.signals
    );
}
