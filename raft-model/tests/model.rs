//! The model check of raft-core (issue 33): the CI bound, and the broken variants it must
//! catch. `RAFT_MODEL_BOUND=deep` runs the deeper bound.

#![allow(clippy::print_stdout)]

use raft_model::report::check;
use raft_model::{Bounds, RaftModel, Variant};

#[test]
fn real_code_has_no_violation_within_the_bounds() {
    let summary = check(RaftModel::new(Bounds::from_env()), 2, false);
    println!("{}", summary.line());
    println!("elapsed: {:.1?}", summary.elapsed);
    assert!(
        summary.violations.is_empty(),
        "{}",
        summary.counterexamples()
    );
    if !summary.not_covered.is_empty() {
        println!("not reached within the bounds: {:?}", summary.not_covered);
    }
    // The least a useful bound must reach. TODO(issue 33): a CI bound in which entries commit.
    assert!(
        !summary.not_covered.contains(&"a leader is elected"),
        "the bounds are too small to elect a leader"
    );
}

#[test]
fn acknowledging_before_persistence_is_found() {
    let model = RaftModel {
        bounds: Bounds::ci(),
        variant: Variant::AckBeforePersist,
    };
    let summary = check(model, 2, true);
    println!("{}", summary.line());
    print!("{}", summary.counterexamples());
    assert!(
        summary
            .violations
            .iter()
            .any(|(name, _)| *name == "persistence before promises"),
        "the broken variant went unnoticed: {}",
        summary.line()
    );
}
