//! The KV's integration tests, in one binary. Run one file's tests with a filter, e.g.
//! `cargo test -p kv --test integration -- processes::`.

mod cli;
mod common;
mod nemesis;
mod processes;
mod workload;
