//! Running the checker and summarising what it found.

use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model};

use crate::{Bounds, COVERAGE, PROPERTIES, RaftModel};

/// What one run of the checker found.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The bounds of the run.
    pub bounds: Bounds,
    /// Every state within the bounds was explored (no `RAFT_MODEL_MAX_STATES` cut the run
    /// short).
    pub complete: bool,
    /// Distinct states visited.
    pub states: usize,
    /// Deepest path explored.
    pub depth: usize,
    /// Number of properties checked.
    pub properties: usize,
    /// Wall time of the run (reported, never asserted).
    pub elapsed: Duration,
    /// Each violated property with its counterexample: the events from the initial state.
    pub violations: Vec<(&'static str, Vec<String>)>,
    /// The coverage goals ([`COVERAGE`]) that were not reached.
    pub not_covered: Vec<&'static str>,
}

impl Summary {
    /// The one-line result: `model check: N states, depth D, bounds (...), properties: K,
    /// violations: V`.
    pub fn line(&self) -> String {
        format!(
            "model check: {} states{}, depth {}, bounds ({}), properties: {}, violations: {}",
            self.states,
            if self.complete { "" } else { " (cut short)" },
            self.depth,
            self.bounds,
            self.properties,
            self.violations.len()
        )
    }

    /// The counterexamples, one event a line, for a reader (or a unit test to replay).
    pub fn counterexamples(&self) -> String {
        let mut s = String::new();
        for (name, events) in &self.violations {
            s.push_str(&format!("counterexample for \"{name}\":\n"));
            for (i, e) in events.iter().enumerate() {
                s.push_str(&format!("  {:>3}. {e}\n", i + 1));
            }
        }
        s
    }
}

/// Explores every state of `model` breadth-first with `threads` threads and summarises. With
/// `stop_at_first`, the run ends at the first violation (a broken variant's test).
pub fn check(model: RaftModel, threads: usize, stop_at_first: bool) -> Summary {
    let bounds = model.bounds;
    let start = Instant::now();
    let mut builder = model.clone().checker().threads(threads);
    let target: Option<usize> = std::env::var("RAFT_MODEL_MAX_STATES")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Some(n) = target {
        builder = builder.target_state_count(n);
    }
    if stop_at_first {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    let mut violations = Vec::new();
    for name in PROPERTIES {
        if let Some(path) = checker.discovery(name) {
            let events = path
                .into_vec()
                .iter()
                .filter_map(|(s, a)| a.as_ref().map(|a| model.describe(s, a)))
                .collect();
            violations.push((name, events));
        }
    }
    let not_covered = COVERAGE
        .into_iter()
        .filter(|name| checker.discovery(name).is_none())
        .collect();
    Summary {
        complete: target.is_none_or(|t| checker.state_count() < t),
        bounds,
        not_covered,
        states: checker.unique_state_count(),
        depth: checker.max_depth(),
        properties: PROPERTIES.len(),
        elapsed: start.elapsed(),
        violations,
    }
}
