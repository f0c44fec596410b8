//! raft-service's integration tests: servers in front of in-process nodes (in-memory Raft
//! network, real loopback TCP between client and servers).

mod client;
mod common;
mod tls;
