//! The counter's integration tests, in one binary (one link instead of one per file). Run one
//! file's tests with a filter, e.g. `cargo test -p counter --test integration -- processes::`.

mod client_retry;
mod common;
mod membership;
mod nemesis;
mod processes;
