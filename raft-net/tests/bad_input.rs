//! Hostile bytes against a live listener: each bad connection is refused or closed with a
//! `tracing` warning naming the peer and the reason, while a well-behaved peer connected at the
//! same time keeps exchanging messages.

#[path = "integration/common/mod.rs"]
mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use common::{CLUSTER, Msg, collect, mesh};
use raft_net::frame::{
    FrameDecoder, FrameKind, PROTOCOL_VERSION, encode_frame, encode_frame_with_version,
};
use raft_net::handshake::{Hello, RejectReason};
use raft_net::{Lane, SplitMix64, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing_subscriber::fmt::MakeWriter;

/// Sends every formatted log event into a bounded channel the test reads.
#[derive(Clone)]
struct ChannelWriter(flume::Sender<String>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.try_send(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for ChannelWriter {
    type Writer = ChannelWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The captured log lines.
struct Logs {
    rx: flume::Receiver<String>,
    lines: Vec<String>,
}

impl Logs {
    fn install() -> Self {
        let (tx, rx) = flume::bounded(100_000);
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(ChannelWriter(tx))
            .init();
        Self {
            rx,
            lines: Vec::new(),
        }
    }

    /// Waits until a line contains every needle; returns it.
    async fn expect(&mut self, needles: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self
                .lines
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l.clone();
            }
            match tokio::time::timeout_at(deadline, self.rx.recv_async()).await {
                Ok(Ok(line)) => self.lines.push(line),
                _ => panic!(
                    "no log line with {needles:?}; got:\n{}",
                    self.lines.join("")
                ),
            }
        }
    }
}

/// Connects, writes `bytes` (then half-closes if asked), and reads until the server closes.
/// Returns our address (as the server names us) and what the server sent.
async fn probe(to: SocketAddr, bytes: &[u8], half_close: bool) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(to).await.unwrap();
    let me = s.local_addr().unwrap().to_string();
    let _ = s.write_all(bytes).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "server did not close the connection from {me}"
    );
    (me, reply)
}

fn hello(cluster_id: u64, from: u64) -> Hello {
    Hello {
        cluster_id,
        from,
        to: 2,
        lane: Lane::Data,
    }
}

/// Decodes the single reject frame a refused hello receives.
fn reject_reason(reply: &[u8]) -> RejectReason {
    let mut buf = BytesMut::from(reply);
    let frame = FrameDecoder::new(1024)
        .decode(&mut buf)
        .unwrap()
        .expect("a reject frame");
    assert_eq!(frame.kind, FrameKind::Reject as u8);
    postcard::from_bytes(&frame.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_and_good_peers_carry_on() {
    let mut logs = Logs::install();
    // The raw clients below that pass the handshake impersonate node 3.
    let nodes = mesh(&[1, 2, 3], |c| {
        c.handshake_timeout = Duration::from_secs(1);
        // Every refusal logs its line (the test waits for each): no rate limit to speak of.
        c.warn_interval = Duration::from_nanos(1);
        c.max_frame_size = 64 << 10;
    });
    let (a, _) = &nodes[0];
    let (b, b_in) = &nodes[1];
    let b_addrs = b.local_addrs();
    let data = b_addrs.data;

    // The well-behaved peer: node 1 keeps sending to node 2 on both lanes throughout.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let chatter = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                tokio::select! {
                    biased;
                    _ = stop_rx.wait_for(|s| *s) => return i,
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {
                        for lane in Lane::ALL {
                            let _ = a.send(2, lane, 1, Msg::Ping(i));
                        }
                        i += 1;
                    }
                }
            }
        })
    };
    assert_eq!(
        collect(&b_in.data, 5, Duration::from_secs(10)).await.len(),
        5
    );

    // 1. Random bytes, on both listeners.
    let mut rng = SplitMix64::new(0xBAD);
    for target in [data, b_addrs.heartbeat] {
        let junk: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        let (me, _) = probe(target, &junk, false).await;
        logs.expect(&["refused handshake", &format!("peer={me}")])
            .await;
    }

    // 2. A length prefix of 4 GiB - 1: refused from the prefix alone.
    let (me, _) = probe(data, &[0xFF, 0xFF, 0xFF, 0xFF], false).await;
    let line = logs
        .expect(&["refused handshake", &format!("peer={me}")])
        .await;
    assert!(line.contains("exceeds the maximum"), "{line}");

    // 3. A truncated frame: 100 bytes announced, 10 sent, then end of stream.
    let mut truncated = vec![0, 0, 0, 100, PROTOCOL_VERSION, FrameKind::Hello as u8];
    truncated.extend_from_slice(&[0; 8]);
    let (me, _) = probe(data, &truncated, true).await;
    let line = logs
        .expect(&["refused handshake", &format!("peer={me}")])
        .await;
    assert!(line.contains("truncated frame"), "{line}");

    // 4. A valid hello with the wrong cluster id.
    let bytes = encode_frame(FrameKind::Hello, &hello(999, 1)).unwrap();
    let (me, reply) = probe(data, &bytes, false).await;
    assert_eq!(reject_reason(&reply), RejectReason::WrongCluster);
    let line = logs
        .expect(&["refused handshake", &format!("peer={me}")])
        .await;
    assert!(line.contains("wrong cluster id 999"), "{line}");

    // 5. A valid hello from an unknown node id.
    let bytes = encode_frame(FrameKind::Hello, &hello(CLUSTER, 77)).unwrap();
    let (me, reply) = probe(data, &bytes, false).await;
    assert_eq!(reject_reason(&reply), RejectReason::UnknownNode);
    let line = logs
        .expect(&["refused handshake", &format!("peer={me}")])
        .await;
    assert!(line.contains("unknown node id 77"), "{line}");

    // 6. A hello of another protocol version.
    let bytes = encode_frame_with_version(9, FrameKind::Hello, &hello(CLUSTER, 3)).unwrap();
    let (me, reply) = probe(data, &bytes, false).await;
    assert_eq!(reject_reason(&reply), RejectReason::VersionMismatch);
    let line = logs
        .expect(&["refused handshake", &format!("peer={me}")])
        .await;
    assert!(line.contains("protocol version mismatch"), "{line}");

    // 7. A peer that connects and says nothing is cut off after handshake_timeout.
    let (me, _) = probe(data, &[], false).await;
    let line = logs
        .expect(&["refused handshake", &format!("peer={me}")])
        .await;
    assert!(line.contains("timed out"), "{line}");

    // 8. Authenticated (as node 3), then bad frames: oversized, malformed, unknown version.
    let good_hello = encode_frame(FrameKind::Hello, &hello(CLUSTER, 3)).unwrap();
    let mut malformed = vec![0, 0, 0, 5, PROTOCOL_VERSION, FrameKind::Message as u8];
    malformed.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
    let other_version = encode_frame_with_version(7, FrameKind::Message, &(1u64, 1u8)).unwrap();
    let oversized = (1u32 << 20).to_be_bytes().to_vec();
    for (bad, reason) in [
        (oversized, "exceeds the maximum"),
        (malformed, "malformed frame body"),
        (other_version, "unknown protocol version 7"),
    ] {
        let mut bytes = good_hello.clone();
        bytes.extend_from_slice(&bad);
        let (me, reply) = probe(data, &bytes, false).await;
        assert_eq!(reply[4..6], [PROTOCOL_VERSION, FrameKind::HelloAck as u8]);
        let line = logs
            .expect(&["bad frame; closing connection", &format!("peer={me}")])
            .await;
        assert!(line.contains(reason), "{line}");
        assert!(line.contains("from=3"), "{line}");
    }

    // The good peer was never disturbed: its connection is the first and only one, and
    // messages keep flowing on both lanes.
    let before = b.metrics().peer(1);
    for lane in Lane::ALL {
        while b_in.lane(lane).try_recv().is_ok() {}
        let fresh = collect(b_in.lane(lane), 20, Duration::from_secs(10)).await;
        assert_eq!(fresh.len(), 20, "{lane}");
        assert!(fresh.iter().all(|e| e.from == 1));
    }
    let _ = stop_tx.send(true);
    let sent = chatter.await.unwrap();
    let m = b.metrics();
    let after = m.peer(1);
    assert!(after.data.frames_received > before.data.frames_received);
    assert_eq!(
        a.metrics().peer(2).data.connects,
        1,
        "the good connection never broke"
    );
    assert_eq!(a.metrics().peer(2).data.disconnects, 0);
    assert!(m.rejected_handshakes >= 8, "{m:?}");
    assert!(m.closed_bad_frames >= 3, "{m:?}");
    eprintln!("good peer sent {sent} rounds during the attack");
    for l in logs.lines.iter().filter(|l| l.contains("WARN")) {
        eprint!("{l}");
    }
    for (t, _) in &nodes {
        t.shutdown().await;
    }
}
