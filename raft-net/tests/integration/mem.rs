//! The in-memory transport: direct delivery, and seeded fault injection on paused time.

use super::common;

use std::time::Duration;

use common::{Msg, collect};
use raft_net::{ConfigError, Faults, Lane, MemConfig, MemNetwork, NetError, SendError, Transport};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(5);

fn ping_numbers(got: &[raft_net::Envelope<Msg>]) -> Vec<u64> {
    got.iter()
        .map(|e| match e.msg {
            Msg::Ping(i) => i,
            _ => u64::MAX,
        })
        .collect()
}

#[tokio::test]
async fn direct_mode_delivers_on_both_lanes_and_to_self() {
    let nodes = MemNetwork::<Msg>::direct(&[1, 2, 3], &MemConfig::default()).unwrap();
    for (t, _) in &nodes {
        for to in 1..=3 {
            for lane in Lane::ALL {
                for i in 0..10 {
                    t.send(to, lane, 4, Msg::Ping(i)).unwrap();
                }
            }
        }
        assert_eq!(
            t.send(9, Lane::Data, 0, Msg::Ping(0)),
            Err(SendError::UnknownPeer(9))
        );
    }
    for (t, inbound) in &nodes {
        for lane in Lane::ALL {
            let got = collect(inbound.lane(lane), 30, WAIT).await;
            assert_eq!(got.len(), 30);
            for from in 1..=3 {
                let from_one: Vec<_> = got.iter().filter(|e| e.from == from).cloned().collect();
                assert_eq!(ping_numbers(&from_one), (0..10).collect::<Vec<_>>());
            }
        }
        let m = t.metrics();
        assert_eq!(m.peer(t.node_id()).data.frames_received, 10);
        t.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn partitions_both_ways_one_way_isolate_and_heal() {
    let (net, nodes) =
        MemNetwork::<Msg>::with_faults(&[1, 2, 3], &MemConfig::default(), 1).unwrap();
    let (t1, in1) = &nodes[0];
    let (t2, in2) = &nodes[1];
    let (t3, in3) = &nodes[2];

    net.partition(1, 2).await.unwrap();
    t1.send(2, Lane::Data, 0, Msg::Ping(1)).unwrap();
    t2.send(1, Lane::Heartbeat, 0, Msg::Ping(2)).unwrap();
    t1.send(3, Lane::Data, 0, Msg::Ping(3)).unwrap();
    assert_eq!(collect(&in3.data, 1, WAIT).await.len(), 1);
    assert!(collect(&in2.data, 1, WAIT).await.is_empty());
    assert!(collect(&in1.heartbeat, 1, WAIT).await.is_empty());
    assert_eq!(t1.metrics().peer(2).data.dropped_by_fault, 1);

    net.heal().await.unwrap();
    net.partition_one_way(1, 2).await.unwrap();
    t1.send(2, Lane::Data, 0, Msg::Ping(4)).unwrap();
    t2.send(1, Lane::Data, 0, Msg::Ping(5)).unwrap();
    assert!(collect(&in2.data, 1, WAIT).await.is_empty());
    assert_eq!(ping_numbers(&collect(&in1.data, 1, WAIT).await), [5]);

    net.heal().await.unwrap();
    net.isolate(3).await.unwrap();
    t3.send(1, Lane::Data, 0, Msg::Ping(6)).unwrap();
    t1.send(3, Lane::Data, 0, Msg::Ping(7)).unwrap();
    t3.send(3, Lane::Data, 0, Msg::Ping(8)).unwrap(); // self-delivery ignores the network
    t1.send(2, Lane::Data, 0, Msg::Ping(9)).unwrap();
    assert_eq!(ping_numbers(&collect(&in2.data, 1, WAIT).await), [9]);
    assert_eq!(ping_numbers(&collect(&in3.data, 2, WAIT).await), [8]);
    assert!(collect(&in1.data, 1, WAIT).await.is_empty());

    net.heal().await.unwrap();
    t3.send(1, Lane::Data, 0, Msg::Ping(10)).unwrap();
    assert_eq!(ping_numbers(&collect(&in1.data, 1, WAIT).await), [10]);
}

/// Sends 500 numbered messages 1 → 2 under `faults` and returns what arrived, in order.
async fn run(seed: u64, faults: Faults) -> Vec<u64> {
    let (net, nodes) =
        MemNetwork::<Msg>::with_faults(&[1, 2], &MemConfig::default(), seed).unwrap();
    net.set_faults(faults).await.unwrap();
    for i in 0..500 {
        nodes[0].0.send(2, Lane::Data, 0, Msg::Ping(i)).unwrap();
    }
    ping_numbers(&collect(&nodes[1].1.data, 2000, Duration::from_secs(10)).await)
}

#[tokio::test(start_paused = true)]
async fn drop_probability_is_seeded_and_deterministic() {
    let lossy = Faults {
        drop_probability: 0.3,
        ..Faults::default()
    };
    let a = run(7, lossy).await;
    let b = run(7, lossy).await;
    let c = run(8, lossy).await;
    assert_eq!(a, b, "same seed, same losses");
    assert_ne!(a, c, "another seed, other losses");
    assert!((250..450).contains(&a.len()), "{}", a.len());
    assert!(a.windows(2).all(|w| w[0] < w[1]), "loss alone keeps order");
}

#[tokio::test(start_paused = true)]
async fn duplicate_delay_and_reorder() {
    let dup = run(
        1,
        Faults {
            duplicate_probability: 1.0,
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(dup.len(), 1000, "every message twice");

    let reordered = run(
        2,
        Faults {
            reorder_probability: 0.5,
            reorder_window: Duration::from_millis(100),
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(reordered.len(), 500);
    assert!(reordered.windows(2).any(|w| w[0] > w[1]), "some overtaking");
    let mut sorted = reordered.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..500).collect::<Vec<_>>(),
        "nothing lost or duplicated"
    );
    assert_eq!(
        reordered,
        run(
            2,
            Faults {
                reorder_probability: 0.5,
                reorder_window: Duration::from_millis(100),
                ..Faults::default()
            }
        )
        .await,
        "same seed, same order"
    );

    // A fixed 50 ms delay, measured on the paused clock.
    let (net, nodes) = MemNetwork::<Msg>::with_faults(&[1, 2], &MemConfig::default(), 3).unwrap();
    let fixed = Duration::from_millis(50);
    net.set_faults(Faults {
        min_delay: fixed,
        max_delay: fixed,
        ..Faults::default()
    })
    .await
    .unwrap();
    let sent = Instant::now();
    nodes[0]
        .0
        .send(2, Lane::Heartbeat, 0, Msg::Ping(1))
        .unwrap();
    assert_eq!(collect(&nodes[1].1.heartbeat, 1, WAIT).await.len(), 1);
    let took = sent.elapsed();
    assert!(
        took >= fixed && took < fixed + Duration::from_millis(2),
        "{took:?}"
    );
}

/// Both transports are usable as trait objects.
#[tokio::test]
async fn transports_are_object_safe() {
    let mut nodes = MemNetwork::<Msg>::direct(&[1, 2], &MemConfig::default()).unwrap();
    let (t, inbound) = nodes.remove(0);
    let dynamic: std::sync::Arc<dyn Transport<Msg>> = std::sync::Arc::new(t);
    dynamic.send(1, Lane::Data, 3, Msg::Ping(1)).unwrap();
    assert_eq!(inbound.data.recv_async().await.unwrap().group, 3);
    fn _tcp_too(t: raft_net::TcpTransport<Msg>) -> Box<dyn Transport<Msg>> {
        Box::new(t)
    }
}

#[tokio::test(start_paused = true)]
async fn restart_and_shutdown() {
    let (net, nodes) = MemNetwork::<Msg>::with_faults(&[1, 2], &MemConfig::default(), 4).unwrap();
    let (t1, _in1) = &nodes[0];
    let (t2, old_in2) = &nodes[1];
    t2.shutdown().await;
    t1.send(2, Lane::Data, 0, Msg::Ping(1)).unwrap();
    assert!(collect(&old_in2.data, 1, WAIT).await.is_empty());
    assert_eq!(t1.metrics().peer(2).data.dropped_disconnected, 1);

    let (_t2, in2) = net.restart(2).await.unwrap();
    t1.send(2, Lane::Data, 0, Msg::Ping(2)).unwrap();
    assert_eq!(ping_numbers(&collect(&in2.data, 1, WAIT).await), [2]);
    assert!(old_in2.data.try_recv().is_err());

    let bad = Faults {
        drop_probability: 1.5,
        ..Faults::default()
    };
    assert!(matches!(
        net.set_faults(bad).await,
        Err(NetError::Config(ConfigError::Invalid {
            field: "drop_probability",
            ..
        }))
    ));
}
