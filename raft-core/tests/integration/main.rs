//! raft-core's integration tests, in one binary (one link and one copy of the shared
//! harness instead of one per file). Run one file's tests with a filter, e.g.
//! `cargo test -p raft-core --test integration -- paper::`.

mod common;
mod features;
mod paper;
mod property;
mod smoke;
