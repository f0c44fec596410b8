//! raft-net's integration tests, in one binary (one link instead of one per file). Run one
//! file's tests with a filter, e.g. `cargo test -p raft-net --test integration -- tcp_mesh::`.
//! Two files stay binaries of their own: `heartbeat_lane` bounds real-time delays, so it runs
//! alone, and `bad_input` captures the process's log through a global subscriber.

mod common;
mod frame_fuzz;
mod mem;
mod rpc;
mod rpc_tls;
mod runtime_peers;
mod tcp_mesh;
mod tls;
