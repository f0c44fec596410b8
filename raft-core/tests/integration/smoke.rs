//! Smoke test: the harness elects, replicates and applies.

use super::common;
use common::*;
use raft_core::Role;

#[test]
fn three_nodes_elect_and_replicate() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"x").unwrap();
    c.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(c.commands(id), vec![b"x".to_vec()], "node {id}");
    }
    assert_eq!(c.core(2).role(), Role::Follower);
    c.check().unwrap();
}
