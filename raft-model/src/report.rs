//! Running the checker and summarising what it found.

use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model};

use crate::{Bounds, COVERAGE, Event, PROPERTIES, RaftModel};

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
    /// Each violated property with its counterexample: the events from the initial state to
    /// the first state that violates it, each with a readable description.
    pub violations: Vec<(&'static str, Vec<(Event, String)>)>,
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

    /// The counterexamples, one event a line: a Rust expression a unit test can paste and
    /// replay with [`RaftModel::replay`], then the step's number and what happens in words.
    pub fn counterexamples(&self) -> String {
        let mut s = String::new();
        for (name, events) in &self.violations {
            s.push_str(&format!(
                "counterexample for \"{name}\" ({} events; replay with RaftModel::replay):\n",
                events.len()
            ));
            for (i, (e, words)) in events.iter().enumerate() {
                s.push_str(&format!("    {}, // {:>2}. {words}\n", e.literal(), i + 1));
            }
        }
        s
    }
}

/// Explores every state of `model` breadth-first with `threads` threads and summarises. With
/// `stop_at_first`, the run ends at the first violation (a broken variant's test).
pub fn check(model: RaftModel, threads: usize, stop_at_first: bool) -> Summary {
    let target: Option<usize> = std::env::var("RAFT_MODEL_MAX_STATES")
        .ok()
        .and_then(|v| v.parse().ok());
    check_up_to(model, threads, stop_at_first, target)
}

/// [`check`], cut short once `max_states` states were generated (breadth-first: every state
/// up to some depth is explored, and part of the next depth).
pub fn check_up_to(
    model: RaftModel,
    threads: usize,
    stop_at_first: bool,
    max_states: Option<usize>,
) -> Summary {
    let bounds = model.bounds;
    let start = Instant::now();
    let mut builder = model.clone().checker().threads(threads);
    let target = max_states;
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
            let mut events: Vec<(Event, String)> = path
                .into_vec()
                .iter()
                .filter_map(|(s, a)| a.as_ref().map(|a| (a.clone(), model.describe(s, a))))
                .collect();
            // The checker may report a path that runs on past the violation: cut it at the
            // first state that violates the property.
            let plain: Vec<Event> = events.iter().map(|(e, _)| e.clone()).collect();
            if let Ok((taken, Some(_))) = model.replay(&plain) {
                events.truncate(taken);
            }
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
