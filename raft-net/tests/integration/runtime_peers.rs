//! Peers added, removed and moved at runtime (`Transport::add_peer`, `remove_peer`) over real
//! loopback TCP: a node joins a running mesh, a removed peer is cut off and comes back, a peer
//! moves to new addresses, and the table's capacity is a typed error.

use super::common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use common::{Msg, Node, bind_all, config, eventually, mesh};
use raft_net::frame::{FrameDecoder, FrameKind, encode_frame};
use raft_net::handshake::{Hello, HelloAck};
use raft_net::{
    ConfigError, Envelope, Lane, NetError, NodeId, PeerAddrs, SendError, TcpTransport, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const GENEROUS: Duration = Duration::from_secs(20);

/// Sends probes (`Stamp`) from `from` to `to` on `lane` every 10 ms until one arrives on
/// `rx`; false if none did within the bound. Later probes may still arrive after it.
async fn reach(
    from: &TcpTransport<Msg>,
    to: NodeId,
    rx: &flume::Receiver<Envelope<Msg>>,
    lane: Lane,
) -> bool {
    let deadline = tokio::time::Instant::now() + GENEROUS;
    let mut seq = 0;
    while tokio::time::Instant::now() < deadline {
        seq += 1;
        let _ = from.send(to, lane, 0, Msg::Stamp { seq, sent_ns: 0 });
        let wait = tokio::time::timeout(Duration::from_millis(10), rx.recv_async());
        if let Ok(Ok(e)) = wait.await {
            if e.from == from.node_id() {
                return true;
            }
        }
    }
    false
}

/// The `Ping` numbers from `from` among the next messages on `rx`, until `count` arrived or
/// the bound passed; probes and other senders' messages are skipped.
async fn pings_from(rx: &flume::Receiver<Envelope<Msg>>, from: NodeId, count: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + GENEROUS;
    while out.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv_async()).await {
            Ok(Ok(Envelope {
                from: f,
                msg: Msg::Ping(i),
                ..
            })) if f == from => out.push(i),
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    out
}

/// `a` reaches `b` on both lanes, then 50 numbered messages per lane arrive in order.
async fn exchange(a: &Node, b: &Node) {
    let (ta, _) = a;
    let (tb, inb) = b;
    for lane in Lane::ALL {
        assert!(
            reach(ta, tb.node_id(), inb.lane(lane), lane).await,
            "{} cannot reach {} on the {lane} lane",
            ta.node_id(),
            tb.node_id()
        );
        for i in 0..50 {
            ta.send(tb.node_id(), lane, 7, Msg::Ping(i)).unwrap();
        }
        assert_eq!(
            pings_from(inb.lane(lane), ta.node_id(), 50).await,
            (0..50).collect::<Vec<_>>(),
            "{} -> {} on the {lane} lane",
            ta.node_id(),
            tb.node_id()
        );
    }
}

fn without(addrs: &BTreeMap<NodeId, PeerAddrs>, id: NodeId) -> BTreeMap<NodeId, PeerAddrs> {
    let mut a = addrs.clone();
    a.remove(&id);
    a
}

/// Three nodes run with only each other as peers; a fourth starts knowing all four. Until
/// the three add it, its handshakes are refused on both lanes and sends to it fail
/// `UnknownPeer`; once added, messages flow both ways on both lanes, and its counters appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_at_runtime_joins_the_mesh() {
    let (mut listeners, addrs) = bind_all(&[1, 2, 3, 4]);
    let l4 = listeners.pop().unwrap();
    let three = without(&addrs, 4);
    let nodes: Vec<Node> = [1, 2, 3]
        .into_iter()
        .zip(listeners)
        .map(|(id, l)| TcpTransport::start(config(id, &three), l).unwrap())
        .collect();
    let fourth: Node = TcpTransport::start(config(4, &addrs), l4).unwrap();
    let (t4, in4) = &fourth;

    // Node 4 dials the three, and each refuses it, on both lanes.
    let refused = || {
        let m = t4.metrics();
        [1, 2, 3].iter().all(|p| {
            let s = m.peer(*p);
            s.heartbeat.rejected_handshakes > 0 && s.data.rejected_handshakes > 0
        })
    };
    assert!(eventually(GENEROUS, refused).await, "{:?}", t4.metrics());
    for (t, _) in &nodes {
        assert!(t.metrics().rejected_handshakes >= 2, "{:?}", t.metrics());
        for lane in Lane::ALL {
            assert_eq!(
                t.send(4, lane, 0, Msg::Ping(0)),
                Err(SendError::UnknownPeer(4))
            );
        }
        assert!(!t.peers().any(|p| p == 4));
    }
    assert!(in4.data.is_empty() && in4.heartbeat.is_empty());
    for (t, inbound) in &nodes {
        assert!(
            inbound.data.try_iter().all(|e| e.from != 4),
            "node {} received from node 4 before adding it",
            t.node_id()
        );
    }

    for (t, _) in &nodes {
        t.add_peer(4, addrs[&4]).unwrap();
        // Idempotent.
        t.add_peer(4, addrs[&4]).unwrap();
        assert_eq!(t.peers().collect::<Vec<_>>(), {
            let mut p: Vec<NodeId> = [1, 2, 3, 4]
                .into_iter()
                .filter(|p| *p != t.node_id())
                .collect();
            p.sort_unstable();
            p
        });
    }
    for node in &nodes {
        exchange(node, &fourth).await;
        exchange(&fourth, node).await;
    }
    for (t, _) in &nodes {
        let s = t.metrics().peer(4);
        assert!(
            s.data.frames_sent >= 50 && s.heartbeat.frames_sent >= 50,
            "{s:?}"
        );
        assert!(s.data.frames_received >= 50, "{s:?}");
    }
    for (t, _) in nodes.iter().chain([&fourth]) {
        t.shutdown().await;
    }
}

/// Node 1 removes node 2: sends fail, node 1 closes its inbound connections from node 2 (node
/// 2's links see them end and are then refused), and repeated or unknown removals change
/// nothing. Added again, both directions work on both lanes, and the counters kept their
/// history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_peer_is_cut_off_and_can_come_back() {
    let nodes = mesh(&[1, 2], |_| {});
    let (t1, _) = &nodes[0];
    let (t2, _) = &nodes[1];
    exchange(&nodes[0], &nodes[1]).await;
    exchange(&nodes[1], &nodes[0]).await;
    let addrs2 = t2.local_addrs();

    t1.remove_peer(2);
    for lane in Lane::ALL {
        assert_eq!(
            t1.send(2, lane, 0, Msg::Ping(0)),
            Err(SendError::UnknownPeer(2))
        );
    }
    assert_eq!(t1.peers().count(), 0);
    // Node 2's connections into node 1 were closed by node 1 (node 2 was idle: nothing it
    // sent ended them), and its redials are refused.
    let cut_off = || {
        let s = t2.metrics().peer(1);
        s.data.disconnects >= 1
            && s.heartbeat.disconnects >= 1
            && s.data.rejected_handshakes >= 1
            && s.heartbeat.rejected_handshakes >= 1
    };
    assert!(eventually(GENEROUS, cut_off).await, "{:?}", t2.metrics());
    t1.remove_peer(2);
    t1.remove_peer(99);
    assert!(t1.metrics().peers.contains_key(&2), "counters are kept");

    t1.add_peer(2, addrs2).unwrap();
    assert_eq!(t1.peers().collect::<Vec<_>>(), vec![2]);
    exchange(&nodes[0], &nodes[1]).await;
    exchange(&nodes[1], &nodes[0]).await;
    assert!(t1.metrics().peer(2).data.reconnects >= 1);
    for (t, _) in &nodes {
        t.shutdown().await;
    }
}

/// A fake peer on both lanes: accepts, reads the hello, answers with an ack (when `ack`) and
/// then reads until the connection ends, reporting `(lane, event)` on `events`.
async fn fake_peer(
    id: NodeId,
    ack: bool,
    events: flume::Sender<(Lane, &'static str)>,
) -> PeerAddrs {
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let heartbeat = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = PeerAddrs {
        data: data.local_addr().unwrap(),
        heartbeat: heartbeat.local_addr().unwrap(),
    };
    for (lane, l) in [(Lane::Data, data), (Lane::Heartbeat, heartbeat)] {
        let events = events.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let events = events.clone();
                tokio::spawn(async move {
                    let _ = events.send_async((lane, "accepted")).await;
                    let mut buf = BytesMut::new();
                    let dec = FrameDecoder::new(1 << 20);
                    if ack {
                        let hello = loop {
                            if let Ok(Some(f)) = dec.decode(&mut buf) {
                                break f;
                            }
                            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                                let _ = events.send_async((lane, "closed")).await;
                                return;
                            }
                        };
                        let _: Hello = hello.decode_body(FrameKind::Hello).unwrap();
                        let ack = encode_frame(FrameKind::HelloAck, &HelloAck { node_id: id });
                        s.write_all(&ack.unwrap()).await.unwrap();
                        let _ = events.send_async((lane, "acked")).await;
                    }
                    loop {
                        match s.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => buf.clear(),
                        }
                    }
                    let _ = events.send_async((lane, "closed")).await;
                });
            }
        });
    }
    addrs
}

/// Waits for `event` on both lanes; other events are collected into `seen`.
async fn both_lanes(
    events: &flume::Receiver<(Lane, &'static str)>,
    event: &str,
    seen: &mut Vec<(Lane, &'static str)>,
) -> bool {
    let mut lanes = Vec::new();
    let deadline = tokio::time::Instant::now() + GENEROUS;
    while lanes.len() < 2 {
        match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Ok(Ok((lane, e))) if e == event && !lanes.contains(&lane) => lanes.push(lane),
            Ok(Ok(other)) => seen.push(other),
            _ => return false,
        }
    }
    true
}

/// Removing a peer closes node 1's outbound connections to it and stops the dialing; what
/// is queued for a peer whose handshake hangs is dropped and counted as `dropped_removed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_closes_the_links_and_drops_what_is_queued() {
    let (ev2_tx, ev2) = flume::bounded(1024);
    let (ev3_tx, ev3) = flume::bounded(1024);
    let (mut listeners, mut addrs) = bind_all(&[1]);
    addrs.insert(2, fake_peer(2, true, ev2_tx).await);
    // Node 3 accepts and never answers the hello: node 1's links to it wait in their
    // handshake (a minute) while what is sent to it queues up.
    addrs.insert(3, fake_peer(3, false, ev3_tx).await);
    let mut c1 = config(1, &addrs);
    c1.handshake_timeout = Duration::from_secs(60);
    let (t1, _in1) = TcpTransport::<Msg>::start(c1, listeners.pop().unwrap()).unwrap();
    let mut seen = Vec::new();

    assert!(both_lanes(&ev2, "acked", &mut seen).await, "{seen:?}");
    assert!(both_lanes(&ev3, "accepted", &mut seen).await, "{seen:?}");
    for lane in Lane::ALL {
        for i in 0..10 {
            t1.send(3, lane, 0, Msg::Ping(i)).unwrap();
        }
    }

    t1.remove_peer(2);
    t1.remove_peer(3);
    assert!(both_lanes(&ev2, "closed", &mut seen).await, "{seen:?}");
    assert!(both_lanes(&ev3, "closed", &mut seen).await, "{seen:?}");
    let dropped = || {
        let s = t1.metrics().peer(3);
        s.data.dropped_removed == 10 && s.heartbeat.dropped_removed == 10
    };
    assert!(eventually(GENEROUS, dropped).await, "{:?}", t1.metrics());
    // No redial: several backoff caps later, neither fake saw a new connection.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        ev2.is_empty() && ev3.is_empty(),
        "{:?} {:?}",
        ev2.drain().collect::<Vec<_>>(),
        ev3.drain().collect::<Vec<_>>()
    );
    let s = t1.metrics().peer(3);
    assert_eq!(s.data.connects + s.heartbeat.connects, 0);
    t1.shutdown().await;
}

/// Node 2 moves: node 1 re-adds it with the addresses of a new process of node 2. Node 1's
/// links close the old connections and dial the new addresses; what is sent after the move
/// reaches only the new process. Adding it again with the same addresses changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_adding_with_new_addresses_moves_the_links() {
    let (mut listeners, addrs) = bind_all(&[1, 2, 22]);
    let lb = listeners.pop().unwrap();
    let la = listeners.pop().unwrap();
    let l1 = listeners.pop().unwrap();
    let a = without(&addrs, 22);
    let b: BTreeMap<NodeId, PeerAddrs> = [(1, addrs[&1]), (2, addrs[&22])].into_iter().collect();
    let n1: Node = TcpTransport::start(config(1, &a), l1).unwrap();
    let n2a: Node = TcpTransport::start(config(2, &a), la).unwrap();
    let n2b: Node = TcpTransport::start(config(2, &b), lb).unwrap();
    exchange(&n1, &n2a).await;

    n1.0.add_peer(2, addrs[&22]).unwrap();
    for lane in Lane::ALL {
        assert!(reach(&n1.0, 2, n2b.1.lane(lane), lane).await, "{lane}");
    }
    // Both links have moved: from now on nothing can reach the old process.
    let _ = n2a.1.data.drain();
    let _ = n2a.1.heartbeat.drain();
    let connects = n1.0.metrics().peer(2);
    n1.0.add_peer(2, addrs[&22]).unwrap();
    exchange(&n1, &n2b).await;
    exchange(&n2b, &n1).await;
    for lane in Lane::ALL {
        assert!(
            n2a.1.lane(lane).try_iter().all(|e| e.from != 1),
            "a message reached the old address on the {lane} lane"
        );
        let now = *n1.0.metrics().peer(2).lane(lane);
        assert_eq!(
            now.connects,
            connects.lane(lane).connects,
            "{lane}: redialed"
        );
    }
    for (t, _) in [&n1, &n2a, &n2b] {
        t.shutdown().await;
    }
}

/// `max_peers` bounds the distinct ids ever added: beyond it `add_peer` fails with a typed
/// error, removed ids keep their slot (re-adding and re-addressing them works), a config
/// listing more peers is refused, and add_peer after shutdown is `Stopped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_peers_is_a_typed_error() {
    let (mut listeners, addrs) = bind_all(&[1, 2, 3, 4]);
    let l1 = listeners.remove(0);
    drop(listeners); // Nobody answers at 2, 3, 4: the links just back off.
    let mut c = config(1, &without(&addrs, 4));
    c.max_peers = 2;

    let mut too_small = c.clone();
    too_small.max_peers = 1;
    let refused = TcpTransport::<Msg>::start(too_small, common::bind_all(&[1]).0.remove(0));
    assert!(
        matches!(
            refused,
            Err(NetError::Config(ConfigError::Invalid {
                field: "peers",
                ..
            }))
        ),
        "{refused:?}"
    );

    let (t1, _in1) = TcpTransport::<Msg>::start(c, l1).unwrap();
    assert_eq!(t1.peers().collect::<Vec<_>>(), vec![2, 3]);
    assert!(matches!(
        t1.add_peer(4, addrs[&4]),
        Err(NetError::TooManyPeers { max: 2 })
    ));
    t1.remove_peer(3);
    assert!(matches!(
        t1.add_peer(4, addrs[&4]),
        Err(NetError::TooManyPeers { max: 2 })
    ));
    assert_eq!(
        t1.send(4, Lane::Data, 0, Msg::Ping(0)),
        Err(SendError::UnknownPeer(4))
    );
    t1.add_peer(3, addrs[&3]).unwrap();
    t1.add_peer(2, addrs[&4]).unwrap();
    t1.add_peer(1, addrs[&1]).unwrap(); // This node itself: ignored.
    assert_eq!(t1.peers().collect::<Vec<_>>(), vec![2, 3]);
    t1.send(3, Lane::Data, 0, Msg::Ping(0)).unwrap();
    t1.shutdown().await;
    assert!(matches!(t1.add_peer(3, addrs[&3]), Err(NetError::Stopped)));
}
