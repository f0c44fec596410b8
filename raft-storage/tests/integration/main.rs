//! raft-storage's integration tests, in one binary (one link instead of one per file). Run one
//! file's tests with a filter, e.g. `cargo test -p raft-storage --test integration -- torn::`.

mod crash;
mod lock;
mod model;
mod power;
mod torn;
