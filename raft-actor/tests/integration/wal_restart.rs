//! Issue 5: a 3-node cluster on the durable WAL survives a full-cluster restart with every
//! acknowledged proposal present (real threads and files, paused time not used).

use super::common;

use std::time::Duration;

use common::{Cmd, Counter, Query};
use raft_actor::{Node, NodeConfig, WireMsg};
use raft_core::{Membership, Role};
use raft_net::{MemConfig, MemNetwork};
use raft_storage::{Wal, WalConfig};

async fn start(dirs: &[tempfile::TempDir]) -> Vec<Node<Counter>> {
    let ids = [1u64, 2, 3];
    let transports = MemNetwork::<WireMsg>::direct(&ids, &MemConfig::default()).unwrap();
    let mut nodes = Vec::new();
    for ((id, (t, inbound)), dir) in ids.iter().zip(transports).zip(dirs) {
        let wal = Wal::open(WalConfig::new(dir.path())).expect("open wal");
        let mut cfg = NodeConfig::new(*id);
        cfg.raft.seed = 11;
        let node = Node::<Counter>::builder(cfg)
            .transport(t, inbound)
            .storage(wal)
            .start()
            .await
            .unwrap();
        node.add_partition(1, Membership::new(ids), Counter::default())
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

async fn leader(nodes: &[Node<Counter>]) -> Node<Counter> {
    for _ in 0..200 {
        for n in nodes {
            if n.group_metrics(1).await.unwrap().role == Role::Leader {
                return n.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader");
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
    let l = leader(&nodes).await;
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
    let l = leader(&nodes).await;
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
