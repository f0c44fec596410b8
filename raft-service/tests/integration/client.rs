//! The client's retry rule against real servers.

use std::time::Duration;

use raft_service::{Client, ClientError, ReadKind};

use crate::common::{Cluster, Cmd, Counter, G, Query, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_apply_once_across_a_leader_stop() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let mut client = c.client()?;
    let mut last_index = 0;
    for i in 1..=20 {
        let a = client.propose(G, Cmd::Add(1)).await?;
        assert_eq!(a.response, i);
        assert!(a.index > last_index, "indexes go forward");
        last_index = a.index;
    }
    let leader = c.leader().await?;
    c.stop(leader).await;
    for i in 21..=40 {
        let a = client.propose(G, Cmd::Add(1)).await?;
        assert_eq!(a.response, i, "every write applied exactly once");
    }
    assert_eq!(client.read(G, Query::Value).await?, 40);
    assert_eq!(client.read(G, Query::Applied).await?, 40);
    assert_ne!(client.leader(G), Some(c.servers[leader].local_addr()));
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_write_concurrently_over_shared_connections() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let mut client = c.client()?;
    client.propose(G, Cmd::Add(0)).await?;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut fork = client.fork();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                fork.propose(G, Cmd::Add(2)).await?;
            }
            Ok::<_, ClientError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(client.read(G, Query::Value).await?, 8 * 25 * 2);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_asked_at_a_follower_leads_the_client_to_the_leader() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let leader = c.leader().await?;
    // A client that tries the followers first: members is the leader's answer, and the
    // write after it goes straight to the leader, found by the members call.
    let addrs = c.addrs();
    let servers = [(leader + 1) % 3, (leader + 2) % 3, leader].map(|i| addrs[i]);
    let mut client = Client::<Counter>::new(config(servers.to_vec()))?;
    let members = client.members(G).await?;
    assert_eq!(members.voters.len(), 3);
    let hops = client.retries();
    client.propose(G, Cmd::Add(1)).await?;
    assert_eq!(client.retries(), hops, "the write went to a follower first");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_members_and_stale_reads_from_any_server() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let mut client = c.client()?;
    client.propose(G, Cmd::Add(3)).await?;
    let members = client.members(G).await?;
    assert_eq!(members.voters.len(), 3);
    let mut leaders = 0;
    for addr in c.addrs() {
        let s = client.status(addr, G).await?;
        assert_eq!(s.group, G);
        assert!(s.membership.voters.contains(&s.node));
        leaders += usize::from(s.is_leader);
    }
    assert_eq!(leaders, 1);
    let r = client.read_with(G, ReadKind::Stale, Query::Value).await?;
    assert!(
        r.response == 0 || r.response == 3,
        "a stale read sees some applied state"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_fails_at_once_and_is_not_in_doubt() -> anyhow::Result<()> {
    let c = Cluster::start(3).await?;
    let mut client = c.client()?;
    client.propose(G, Cmd::Add(1)).await?;
    let e = client
        .transfer_leader(G, 99)
        .await
        .expect_err("node 99 is not a member");
    assert!(matches!(e, ClientError::Refused { .. }), "{e}");
    assert!(!e.is_in_doubt());
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_server_gives_up_not_in_doubt() -> anyhow::Result<()> {
    // A port nothing listens on: bind one, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut cfg = config(vec![addr]);
    cfg.request_timeout = Duration::from_millis(500);
    let mut client = Client::<Counter>::new(cfg)?;
    let e = client
        .read(G, Query::Value)
        .await
        .expect_err("nobody listens");
    match &e {
        ClientError::GaveUp {
            attempts, in_doubt, ..
        } => {
            assert!(*attempts > 1, "it retried");
            assert!(!in_doubt, "a read is never in doubt");
        }
        other => panic!("expected GaveUp, got {other}"),
    }
    Ok(())
}

/// A node that does not host the group: with a redirect, its server names the hosts and the
/// client, given only that server, follows it to the group; without one, it answers
/// `Unavailable` and a client that knows no other server gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_leads_the_client_to_the_hosts_of_a_group() -> anyhow::Result<()> {
    use std::sync::Arc;

    use raft_actor::{MemConfig, MemNetwork, MemStore, Node, NodeConfig, WireMsg};
    use raft_service::{Redirect, Server, ServerConfig};

    let c = Cluster::start(3).await?;
    // Node 9, alone on its own network, hosts nothing.
    let (transport, inbound) = MemNetwork::<WireMsg>::direct(&[9], &MemConfig::default())?
        .pop()
        .expect("one node");
    let outsider = Node::<Counter>::builder(NodeConfig::new(9))
        .transport(transport, inbound)
        .storage(MemStore::new())
        .start()
        .await?;
    let hosts = c.addrs();
    let redirect: Redirect = Arc::new(move |g| if g == G { hosts.clone() } else { Vec::new() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirecting = Server::serve_with_redirect(
        outsider.clone(),
        listener,
        ServerConfig::default(),
        redirect,
    )?;
    let plain = Server::bind(outsider.clone(), "127.0.0.1:0", ServerConfig::default()).await?;

    let mut client = Client::<Counter>::new(config(vec![redirecting.local_addr()]))?;
    assert_eq!(client.propose(G, Cmd::Add(3)).await?.response, 3);
    assert_eq!(client.read(G, Query::Value).await?, 3);
    assert!(
        c.addrs()
            .contains(&client.leader(G).expect("a leader found"))
    );
    // A group the redirect does not know: not hosted, no hosts, unavailable until the deadline.
    let mut cfg = config(vec![redirecting.local_addr()]);
    cfg.request_timeout = Duration::from_millis(300);
    let mut lost = Client::<Counter>::new(cfg.clone())?;
    assert!(matches!(
        lost.read(G + 1, Query::Value).await,
        Err(ClientError::GaveUp { .. })
    ));
    // Without a redirect the same node cannot send the client anywhere.
    cfg.servers = vec![plain.local_addr()];
    let mut plain_client = Client::<Counter>::new(cfg)?;
    assert!(matches!(
        plain_client.read(G, Query::Value).await,
        Err(ClientError::GaveUp { .. })
    ));
    redirecting.shutdown().await;
    plain.shutdown().await;
    outsider.shutdown().await;
    c.shutdown().await;
    Ok(())
}
