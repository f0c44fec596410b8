//! The client's retry and exactly-once path against real servers in this process: a proxy in
//! front of the leader applies an increment and then loses the reply (optionally moving the
//! leadership away first); the client retries with the same session id and the increment is
//! counted once. Also: a follower's hint leads the client to the leader, and increments under
//! repeated leader transfers are each counted once.

use super::common;

use std::time::Duration;

use common::{InProc, client};
use counter::{Counter, GROUP, Query};
use raft_core::NodeId;
use raft_net::{RpcClient, RpcClientConfig, RpcServer, RpcServerConfig};
use raft_service::{Answer, AnswerOf, ReadKind, Request, RequestOf, ServiceError};
use tokio::net::TcpListener;

/// A proxy forwarding every request to `target`. For each token in `lose` it drops one
/// increment's reply after the target applied it (the handler never answers); if `transfer` is
/// set it first hands the leadership of `target`'s node to that node.
type Rpc = RpcClient<RequestOf<Counter>, AnswerOf<Counter>>;

async fn lossy_proxy(
    target: Rpc,
    lose: flume::Receiver<()>,
    transfer: Option<(raft_actor::Node<counter::Counter>, NodeId)>,
) -> RpcServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    RpcServer::serve(
        listener,
        RpcServerConfig::default(),
        move |req: RequestOf<Counter>| {
            let target = target.clone();
            let lose = lose.clone();
            let transfer = transfer.clone();
            async move {
                let is_incr = matches!(req, Request::Propose { .. });
                let answer = target.call(&req).await.unwrap_or_else(|e| {
                    Answer::Error(ServiceError::Unavailable {
                        group: GROUP,
                        reason: e.to_string(),
                    })
                });
                if is_incr && matches!(answer, Answer::Applied { .. }) && lose.try_recv().is_ok() {
                    if let Some((node, to)) = transfer {
                        let _ = node.transfer_leader(GROUP, to).await;
                    }
                    // The reply is lost: the client's attempt times out.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                answer
            }
        },
    )
    .unwrap()
}

async fn rpc_to(addr: std::net::SocketAddr) -> Rpc {
    RpcClient::connect(addr, RpcClientConfig::default())
        .await
        .unwrap()
}

/// A linearizable read of the counter.
fn get() -> RequestOf<Counter> {
    Request::Read {
        group: GROUP,
        kind: ReadKind::Linearizable,
        query: Query::Get,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reply_is_retried_and_applied_once() {
    let cluster = InProc::start(3).await;
    let leader = cluster.leader().await;
    let leader_addr = cluster.server(leader).client_addr();
    let (lose_tx, lose) = flume::bounded(16);
    let proxy = lossy_proxy(rpc_to(leader_addr).await, lose, None).await;
    // Only the proxy: every retry goes through it again (and reaches the same leader).
    let mut c = client(vec![proxy.local_addr()]);
    let mut expected = 0;
    for n in [5, 7, 11] {
        lose_tx.send(()).unwrap();
        expected += n;
        assert_eq!(
            c.incr(n).await.unwrap(),
            expected,
            "retry answered with the first value"
        );
        assert!(lose_tx.is_empty(), "the reply was lost once");
    }
    let mut direct = client(cluster.client_addrs());
    assert_eq!(
        direct.get().await.unwrap(),
        expected,
        "each increment applied once"
    );
    proxy.shutdown().await;
    cluster.shutdown().await;
}

/// The reply is lost and the leadership moves before the client retries: the retry reaches
/// the new leader (through the old one's hint), whose session table, replicated through the
/// log, answers it without applying it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reply_then_leader_change_is_applied_once() {
    let cluster = InProc::start(3).await;
    let leader = cluster.leader().await;
    let other = cluster
        .servers
        .iter()
        .map(|s| s.id())
        .find(|id| *id != leader)
        .unwrap();
    let node = cluster.server(leader).node().clone();
    let (lose_tx, lose) = flume::bounded(16);
    let proxy = lossy_proxy(
        rpc_to(cluster.server(leader).client_addr()).await,
        lose,
        Some((node, other)),
    )
    .await;
    let mut servers = vec![proxy.local_addr()];
    servers.extend(cluster.client_addrs());
    let mut c = client(servers);
    assert_eq!(c.incr(1).await.unwrap(), 1);
    lose_tx.send(()).unwrap();
    assert_eq!(c.incr(10).await.unwrap(), 11);
    assert!(lose_tx.is_empty());
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader, "the leadership moved mid-call");
    let mut direct = client(cluster.client_addrs());
    assert_eq!(direct.get().await.unwrap(), 11);
    assert_eq!(c.incr(1).await.unwrap(), 12);
    proxy.shutdown().await;
    cluster.shutdown().await;
}

/// A client that knows only a follower is sent to the leader by the follower's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_hint_leads_to_the_leader() {
    let cluster = InProc::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.servers.iter().find(|s| s.id() != leader).unwrap();
    let mut direct = rpc_to(follower.client_addr()).await;
    match direct.call(&get()).await.unwrap() {
        Answer::Error(ServiceError::NotLeader {
            leader: l, addr, ..
        }) => {
            assert_eq!(l, Some(leader));
            assert_eq!(addr, Some(cluster.server(leader).client_addr()));
        }
        other => panic!("expected NotLeader, got {}", other.describe()),
    }
    let mut c = client(vec![follower.client_addr()]);
    assert_eq!(c.incr(3).await.unwrap(), 3);
    assert!(c.servers().contains(&cluster.server(leader).client_addr()));
    direct = rpc_to(cluster.server(leader).client_addr()).await;
    assert_eq!(
        direct.call(&get()).await.unwrap(),
        Answer::Read {
            applied: None,
            response: 3
        }
    );
    cluster.shutdown().await;
}

/// Three clients increment while the leadership is transferred six times: every
/// acknowledged increment is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_across_leader_transfers_are_exact() {
    let cluster = InProc::start(3).await;
    let addrs = cluster.client_addrs();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut c = client(addrs.clone());
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut in_doubt) = (0i64, 0i64);
            while !*stop.borrow_and_update() {
                match c.incr(1).await {
                    Ok(_) => acked += 1,
                    Err(_) => in_doubt += 1,
                }
            }
            (acked, in_doubt)
        }));
    }
    let ids: Vec<NodeId> = cluster.servers.iter().map(|s| s.id()).collect();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let leader = cluster.leader().await;
        let to = ids[(ids.iter().position(|i| *i == leader).unwrap() + 1 + round % 2) % 3];
        let _ = cluster
            .server(leader)
            .node()
            .transfer_leader(GROUP, to)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop_tx.send_replace(true);
    let (mut acked, mut in_doubt) = (0, 0);
    for t in tasks {
        let (a, d) = t.await.unwrap();
        acked += a;
        in_doubt += d;
    }
    let value = client(addrs).get().await.unwrap();
    eprintln!("acked {acked}, in doubt {in_doubt}, value {value}");
    assert!(acked > 0);
    assert!(
        value >= acked && value <= acked + in_doubt,
        "value {value}, acked {acked}, in doubt {in_doubt}"
    );
    cluster.shutdown().await;
}
