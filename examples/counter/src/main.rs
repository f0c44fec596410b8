//! The replicated counter example (issue 7). Placeholder until raft-actor lands.

fn main() {
    eprintln!("counter: not implemented yet (issue 7)");
}
