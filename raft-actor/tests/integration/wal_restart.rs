//! Issue 5: a 3-node cluster on the durable WAL survives a full-cluster restart with every
//! acknowledged proposal present (real threads and files, paused time not used).

use super::common;

use std::time::Duration;

use common::{Cmd, Counter, Query, leader_among};
use raft_actor::{Node, NodeConfig};

/// The three nodes on their WALs in `dirs`, hosting group 1.
async fn start(dirs: &[tempfile::TempDir]) -> Vec<Node<Counter>> {
    common::start_on_wal(dirs, 1, |id| {
        let mut cfg = NodeConfig::new(id);
        cfg.raft.seed = 11;
        cfg
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cluster_restart_keeps_every_acknowledged_write() {
    if std::env::var("WAL_DEBUG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_writer(std::io::stderr)
            .try_init();
    }
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = start(&dirs).await;
    let l = leader_among(&nodes, 1).await;
    let mut acked = 0;
    for _ in 0..200 {
        if l.propose(1, Cmd::Add(1)).await.is_ok() {
            acked += 1;
        }
    }
    assert_eq!(acked, 200);
    eprintln!("phase 1 done");
    for n in &nodes {
        n.shutdown().await;
    }
    drop(nodes);
    // Give the storage threads a moment to close their files.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let nodes = start(&dirs).await;
    let l = leader_among(&nodes, 1).await;
    // The new leader's no-op commits the recovered log; the read sees all 200.
    let mut value = None;
    for _ in 0..50 {
        match l.read(1, Query::Get).await {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        value,
        Some(200),
        "acknowledged writes lost across a full restart"
    );
    assert_eq!(l.propose(1, Cmd::Add(1)).await.unwrap(), 201);
    for n in &nodes {
        n.shutdown().await;
    }
}
