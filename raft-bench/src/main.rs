//! `raft-bench`: commit latency and throughput of raft-actor clusters.
//!
//! Placeholder until issue 7 lands: it says so and exits successfully.

fn main() {
    eprintln!(
        "raft-bench: not implemented yet (issue 7). The protocol core is in raft-core; \
         run `cargo test --workspace` to exercise it."
    );
}
