//! Real loopback TCP: a 3-node mesh on both lanes, reconnection after a restart, a stalled
//! peer that must not block anyone, and bounded shutdown.

use super::common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{CLUSTER, Msg, bind_all, collect, config, eventually, mesh};
use raft_net::frame::{FrameDecoder, FrameKind, encode_frame};
use raft_net::handshake::{Hello, HelloAck};
use raft_net::{Lane, Listeners, PeerAddrs, SendError, TcpTransport, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GENEROUS: Duration = Duration::from_secs(20);

/// Every node sends 200 numbered messages to every node (itself included) on both lanes;
/// every message arrives, data-lane messages in order per sender, tagged with sender and group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_mesh_exchanges_on_both_lanes() {
    let ids = [1, 2, 3];
    let nodes = mesh(&ids, |_| {});
    const N: u64 = 200;
    for (t, _) in &nodes {
        for &to in &ids {
            for i in 0..N {
                t.send(to, Lane::Data, to * 10 + i % 3, Msg::Ping(i))
                    .unwrap();
                t.send(to, Lane::Heartbeat, 0, Msg::Ping(i)).unwrap();
            }
        }
    }
    for (me, (_, inbound)) in ids.iter().zip(&nodes) {
        for lane in Lane::ALL {
            let got = collect(inbound.lane(lane), (N as usize) * ids.len(), GENEROUS).await;
            assert_eq!(got.len(), N as usize * ids.len(), "node {me} lane {lane}");
            for &from in &ids {
                let seq: Vec<u64> = got
                    .iter()
                    .filter(|e| e.from == from)
                    .map(|e| match e.msg {
                        Msg::Ping(i) => i,
                        _ => u64::MAX,
                    })
                    .collect();
                assert_eq!(
                    seq,
                    (0..N).collect::<Vec<_>>(),
                    "node {me} from {from} {lane}"
                );
            }
            if lane == Lane::Data {
                assert!(got.iter().all(|e| e.group / 10 == *me));
            }
        }
    }
    // Only now has every node received everything from every peer, so every outbound link
    // has connected. Checked inside the loop above, a node's link to a peer checked later
    // could still be dialing although the node's own inbound was complete (seen once in CI:
    // `connects` 0).
    for (me, (t, _)) in ids.iter().zip(&nodes) {
        let m = t.metrics();
        for &peer in ids.iter().filter(|p| **p != *me) {
            let s = m.peer(peer);
            assert_eq!(s.data.frames_received, N);
            assert_eq!(s.heartbeat.frames_received, N);
            assert!(s.data.bytes_received > 0);
            assert_eq!(s.data.connects, 1);
        }
        for &peer in ids.iter().filter(|p| **p != *me) {
            let s = m.peer(peer).data;
            eprintln!(
                "node {me} -> {peer}: {} frames in {} writes",
                s.frames_sent, s.write_batches
            );
        }
    }
    for (t, _) in &nodes {
        assert_eq!(
            t.send(99, Lane::Data, 0, Msg::Ping(0)),
            Err(SendError::UnknownPeer(99))
        );
        let other = if t.node_id() == 2 { 1 } else { 2 };
        assert!(matches!(
            t.send(other, Lane::Data, 0, Msg::Blob(vec![0; 9 << 20])),
            Err(SendError::FrameTooLarge { .. })
        ));
    }
    for (t, _) in &nodes {
        t.shutdown().await;
    }
}

/// Frames queued while the connection is not yet up leave in one write call, not one each.
/// Node 2's listeners are bound but its transport starts only after node 1 has queued 500
/// frames, so node 1's handshake (and hence its writer) waits until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_batching_coalesces_queued_frames() {
    let (mut listeners, addrs) = bind_all(&[1, 2]);
    let l2 = listeners.pop().unwrap();
    let l1 = listeners.pop().unwrap();
    let (t1, _in1) = TcpTransport::<Msg>::start(config(1, &addrs), l1).unwrap();
    for i in 0..500 {
        t1.send(2, Lane::Data, 1, Msg::Ping(i)).unwrap();
    }
    let (t2, in2) = TcpTransport::<Msg>::start(config(2, &addrs), l2).unwrap();
    assert_eq!(collect(&in2.data, 500, GENEROUS).await.len(), 500);
    let s = t1.metrics().peer(2).data;
    eprintln!("500 queued frames left in {} write calls", s.write_batches);
    assert_eq!(s.frames_sent, 500);
    assert!(s.write_batches <= 5, "{s:?}");
    t1.shutdown().await;
    t2.shutdown().await;
}

/// Node 2 is shut down (listeners closed) and started again on the same ports; node 1's links
/// reconnect within the backoff cap plus one connect attempt, on both lanes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_listener_restart_within_backoff_cap() {
    let ids = [1, 2];
    let (mut listeners, addrs) = bind_all(&ids);
    let l2 = listeners.pop().unwrap();
    let l1 = listeners.pop().unwrap();
    let (t1, _in1) = TcpTransport::<Msg>::start(config(1, &addrs), l1).unwrap();
    let (t2, in2) = TcpTransport::<Msg>::start(config(2, &addrs), l2).unwrap();
    let cap = config(1, &addrs).backoff_max;

    // Both lanes are up before node 2 goes away.
    for lane in Lane::ALL {
        t1.send(2, lane, 1, Msg::Ping(0)).unwrap();
        assert_eq!(collect(in2.lane(lane), 1, GENEROUS).await.len(), 1);
    }

    t2.shutdown().await;
    drop((t2, in2));
    // Let node 1 notice and back off to the cap.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let l2 = Listeners::bind(addrs[&2]).expect("rebind the same ports");
    let restarted = Instant::now();
    let (t2, in2) = TcpTransport::<Msg>::start(config(2, &addrs), l2).unwrap();
    let mut elapsed = [Duration::MAX; 2];
    let deadline = Instant::now() + GENEROUS;
    let mut i = 0;
    while elapsed.contains(&Duration::MAX) && Instant::now() < deadline {
        i += 1;
        let _ = t1.send(2, Lane::Data, 1, Msg::Ping(i));
        let _ = t1.send(2, Lane::Heartbeat, 1, Msg::Ping(i));
        tokio::time::sleep(Duration::from_millis(5)).await;
        for (k, lane) in Lane::ALL.into_iter().enumerate() {
            if elapsed[k] == Duration::MAX && !in2.lane(lane).is_empty() {
                elapsed[k] = restarted.elapsed();
            }
        }
    }
    eprintln!(
        "reconnected after restart: heartbeat {:?}, data {:?} (backoff cap {cap:?})",
        elapsed[0], elapsed[1]
    );
    // The cap bounds the wait between attempts; allow a generous margin for a noisy machine.
    let bound = cap + Duration::from_secs(3);
    assert!(
        elapsed.iter().all(|e| *e <= bound),
        "{elapsed:?} > {bound:?}"
    );
    let m = t1.metrics().peer(2);
    assert!(
        m.data.reconnects >= 1 && m.heartbeat.reconnects >= 1,
        "{m:?}"
    );
    assert!(m.data.connect_failures >= 1, "{m:?}");
    t1.shutdown().await;
    t2.shutdown().await;
}

/// A fake peer that completes the handshake on both lanes and then never reads.
async fn stalled_peer(id: u64, hold: flume::Sender<TcpStream>) -> PeerAddrs {
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let heartbeat = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = PeerAddrs {
        data: data.local_addr().unwrap(),
        heartbeat: heartbeat.local_addr().unwrap(),
    };
    for l in [data, heartbeat] {
        let hold = hold.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = BytesMut::new();
                let dec = FrameDecoder::new(1024);
                let hello = loop {
                    if let Ok(Some(f)) = dec.decode(&mut buf) {
                        break f;
                    }
                    if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                };
                let _: Hello = hello.decode_body(FrameKind::Hello).unwrap();
                let ack = encode_frame(FrameKind::HelloAck, &HelloAck { node_id: id }).unwrap();
                s.write_all(&ack).await.unwrap();
                // Keep the socket open, never read again.
                let _ = hold.send_async(s).await;
            }
        });
    }
    addrs
}

/// A fake peer that accepts connections and never reads a byte (no handshake either).
async fn silent_peer(hold: flume::Sender<TcpStream>) -> PeerAddrs {
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let heartbeat = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = PeerAddrs {
        data: data.local_addr().unwrap(),
        heartbeat: heartbeat.local_addr().unwrap(),
    };
    for l in [data, heartbeat] {
        let hold = hold.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = hold.send_async(s).await;
            }
        });
    }
    addrs
}

/// Node 1 floods node 3 (handshakes, then never reads) and node 4 (accepts, never reads):
/// sends never block, drops are counted, and node 2 and node 1 itself keep receiving. Shutdown
/// still completes within its bound while the writer to node 3 is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_peers_block_nobody() {
    let (hold_tx, hold_rx) = flume::bounded(64);
    let (mut listeners, mut addrs) = bind_all(&[1, 2]);
    addrs.insert(3, stalled_peer(3, hold_tx.clone()).await);
    addrs.insert(4, silent_peer(hold_tx).await);
    let l2 = listeners.pop().unwrap();
    let l1 = listeners.pop().unwrap();
    let mut c1 = config(1, &addrs);
    // Room for every message to node 2 even if its writer is descheduled during the flood;
    // the bulk queue (4 frames of 128 KiB) is what overflows towards the stalled peers.
    c1.data_queue_capacity = 4096;
    c1.bulk_queue_capacity = 4;
    c1.heartbeat_queue_capacity = 16;
    c1.write_timeout = Duration::from_secs(60);
    let (t1, in1) = TcpTransport::<Msg>::start(c1, l1).unwrap();
    let (_t2, in2) = TcpTransport::<Msg>::start(config(2, &addrs), l2).unwrap();

    let blob = vec![7u8; 4 << 10];
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    const ROUNDS: u64 = 1500;
    for i in 0..ROUNDS {
        for to in [3, 4] {
            let t = Instant::now();
            let _ = t1.send(to, Lane::Data, 1, Msg::Blob(blob.clone()));
            let _ = t1.send(to, Lane::Data, 1, Msg::Blob(vec![1; 128 << 10]));
            let _ = t1.send(to, Lane::Heartbeat, 1, Msg::Ping(i));
            slowest = slowest.max(t.elapsed());
        }
        t1.send(2, Lane::Data, 1, Msg::Ping(i)).unwrap();
        t1.send(1, Lane::Data, 1, Msg::Ping(i)).unwrap();
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let flood = started.elapsed();
    eprintln!("flood of {ROUNDS} rounds took {flood:?}; slowest send round {slowest:?}");
    assert!(flood < GENEROUS, "sending blocked: {flood:?}");

    assert_eq!(
        collect(&in2.data, ROUNDS as usize, GENEROUS).await.len(),
        ROUNDS as usize
    );
    assert_eq!(
        collect(&in1.data, ROUNDS as usize, GENEROUS).await.len(),
        ROUNDS as usize
    );
    let m = t1.metrics();
    for peer in [3, 4] {
        let s = m.peer(peer);
        let dropped = s.data.dropped_queue_full + s.data.dropped_disconnected;
        assert!(dropped > 0, "peer {peer}: {s:?}");
    }
    // Tiny heartbeats to node 3 may all fit in the kernel's socket buffers; node 4 never
    // completes a handshake, so its heartbeat queue must overflow.
    let s = m.peer(4).heartbeat;
    assert!(s.dropped_queue_full + s.dropped_disconnected > 0, "{s:?}");
    assert!(
        m.peer(3).data.connects >= 1,
        "node 3 completed the handshake"
    );
    assert_eq!(m.peer(4).data.connects, 0, "node 4 never answers the hello");
    assert_eq!(m.peer(2).data.dropped_queue_full, 0);

    let t = Instant::now();
    t1.shutdown().await;
    eprintln!("shutdown with a stuck writer took {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        t1.send(2, Lane::Data, 1, Msg::Ping(0)),
        Err(SendError::Closed)
    ));
    drop(hold_rx);
}

/// Shutdown completes within its bound when no peer was ever reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_unreachable_peers() {
    let (mut listeners, addrs) = bind_all(&[1, 2, 3]);
    let l1 = listeners.remove(0);
    drop(listeners); // nodes 2 and 3 never start: connection refused, backoff.
    let (t1, _in1) = TcpTransport::<Msg>::start(config(1, &addrs), l1).unwrap();
    for i in 0..100 {
        let _ = t1.send(2, Lane::Data, 0, Msg::Ping(i));
    }
    let failing = || t1.metrics().peer(2).data.connect_failures > 0;
    assert!(eventually(GENEROUS, failing).await);
    let t = Instant::now();
    t1.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let _ = CLUSTER;
}

/// A flood of bad connections writes one warning line per `warn_interval` for both
/// listeners, not one each: 10 junk hellos on each lane and 5 connections beyond
/// `max_inbound_connections` log one line, and the 24 others are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_warnings_are_rate_limited() {
    let mut nodes = mesh(&[1], |c| {
        c.warn_interval = Duration::from_secs(3600);
        c.max_inbound_connections = 2;
        // The silent connections below hold their places for the whole test.
        c.handshake_timeout = Duration::from_secs(3600);
    });
    let (t, _inbound) = nodes.pop().unwrap();
    let addrs = t.local_addrs();
    // A length prefix of 4 GiB - 1: refused from the prefix alone.
    let junk = [0xFF, 0xFF, 0xFF, 0xFF];
    for target in [addrs.data, addrs.heartbeat] {
        for _ in 0..10 {
            let mut s = TcpStream::connect(target).await.unwrap();
            s.write_all(&junk).await.unwrap();
            let mut rest = Vec::new();
            let read = tokio::time::timeout(GENEROUS, s.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "junk hello kept open");
        }
    }
    assert!(eventually(GENEROUS, || t.metrics().rejected_handshakes == 20).await);
    // Two silent connections hold the data listener's places; five more are refused.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(addrs.data).await.unwrap());
    }
    for _ in 0..5 {
        let mut s = TcpStream::connect(addrs.data).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(GENEROUS, s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "connection beyond the cap kept open");
    }
    let m = t.metrics();
    assert_eq!(m.refused_connections, 5, "{m:?}");
    assert_eq!(m.warnings_suppressed, 20 + 5 - 1, "{m:?}");
    drop(held);
    t.shutdown().await;
}
