//! raft-actor's integration tests, in one binary (one link and one instantiation of the
//! generic node per test state machine instead of one per file). Run one file's tests with a
//! filter, e.g. `cargo test -p raft-actor --all-features --test integration -- incidents::`.
//! `saturation` stays a binary of its own: it saturates the CPU in real time, so it runs alone.

mod ack_routing;
mod api;
mod basic;
mod bounds;
mod commit_notify;
mod common;
mod incidents;
mod membership;
mod quiescence;
mod reads;
mod sessions;
mod wal_restart;
