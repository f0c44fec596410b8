//! The client-facing request/response transport over real loopback TCP: round trips, many
//! callers pipelined over one connection, backpressure, timeouts, connection loss, and hostile
//! bytes that close one connection while the server keeps serving the others.

use super::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{GENEROUS, closed_by_peer, serve_rpc};

use bytes::BytesMut;
use raft_net::frame::{FrameDecoder, FrameKind, encode_frame, encode_frame_with_version};
use raft_net::{RpcClient, RpcClientConfig, RpcError, RpcServer, RpcServerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Req {
    Echo(u64),
    Text(String),
    /// Answered only once the test's gate lets it through.
    Gated(u64),
    /// Never answered within any test's patience.
    Hang,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Resp {
    Echo(u64),
    Len(usize),
}

type Client = RpcClient<Req, Resp>;

/// A server whose gated requests report on `entered` and then wait for a token on `gate`.
async fn server_with(
    config: RpcServerConfig,
    entered: flume::Sender<u64>,
    gate: flume::Receiver<()>,
) -> RpcServer {
    serve_rpc(config, move |req: Req| {
        let entered = entered.clone();
        let gate = gate.clone();
        async move {
            match req {
                Req::Echo(n) => {
                    // Vary completion order so responses overtake each other.
                    for _ in 0..(n % 3) {
                        tokio::task::yield_now().await;
                    }
                    Resp::Echo(n)
                }
                Req::Text(s) => Resp::Len(s.len()),
                Req::Gated(n) => {
                    let _ = entered.send_async(n).await;
                    let _ = gate.recv_async().await;
                    Resp::Echo(n)
                }
                Req::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Resp::Echo(0)
                }
            }
        }
    })
    .await
}

async fn server() -> RpcServer {
    server_configured(RpcServerConfig::default()).await
}

/// A server with `config` whose gated requests nobody lets through.
async fn server_configured(config: RpcServerConfig) -> RpcServer {
    let (tx, _) = flume::bounded(1);
    let (_, rx) = flume::bounded(1);
    server_with(config, tx, rx).await
}

async fn client(addr: SocketAddr) -> Client {
    RpcClient::connect(addr, RpcClientConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip() {
    let server = server().await;
    let c = client(server.local_addr()).await;
    assert_eq!(c.call(&Req::Echo(7)).await, Ok(Resp::Echo(7)));
    assert_eq!(c.call(&Req::Text("hello".into())).await, Ok(Resp::Len(5)));
    assert!(!c.is_closed());
    assert_eq!(c.peer_addr(), server.local_addr());
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.requests), (1, 2));
    server.shutdown().await;
}

/// 64 tasks share one client (one connection) and each makes 200 calls; every response
/// matches its own request although the handler finishes them out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers_share_one_connection() {
    let server = server().await;
    let c = client(server.local_addr()).await;
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200u64 {
                let n = t * 1_000_000 + i;
                assert_eq!(c.call(&Req::Echo(n)).await, Ok(Resp::Echo(n)));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = server.stats();
    assert_eq!(stats.accepted, 1, "all callers used one connection");
    assert_eq!(stats.requests, 64 * 200);
    server.shutdown().await;
}

/// With `max_in_flight = 4`, a server whose handlers are blocked runs exactly 4 of 20
/// pipelined requests and reads no further; released, all 20 complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_reading_at_the_in_flight_limit() {
    let (entered_tx, entered) = flume::bounded(100);
    let (gate, gate_rx) = flume::bounded(100);
    let config = RpcServerConfig {
        max_in_flight: 4,
        ..RpcServerConfig::default()
    };
    let server = server_with(config, entered_tx, gate_rx).await;
    let c = client(server.local_addr()).await;
    let mut calls = Vec::new();
    for n in 0..20 {
        let c = c.clone();
        calls.push(tokio::spawn(async move { c.call(&Req::Gated(n)).await }));
    }
    for _ in 0..4 {
        tokio::time::timeout(GENEROUS, entered.recv_async())
            .await
            .expect("4 handlers start")
            .unwrap();
    }
    // Give the server every chance to (wrongly) start a fifth.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(entered.is_empty(), "a fifth request ran past the limit");
    assert_eq!(server.stats().requests, 4);
    for _ in 0..20 {
        gate.send_async(()).await.unwrap();
    }
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), Ok(Resp::Echo(n as u64)));
    }
    assert_eq!(server.stats().requests, 20);
    server.shutdown().await;
}

/// A call not answered in time fails with `Timeout { sent: true }`; the connection stays
/// usable and the late answer is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeout_is_typed_and_the_connection_survives() {
    let server = server().await;
    let c = client(server.local_addr()).await;
    let err = c
        .call_timeout(&Req::Hang, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err, RpcError::Timeout { sent: true });
    assert!(err.maybe_delivered());
    assert_eq!(c.call(&Req::Echo(3)).await, Ok(Resp::Echo(3)));
    server.shutdown().await;
}

/// The server goes away with calls pending: each fails with `ConnectionLost`, later calls
/// with `Closed`, nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_fails_pending_calls_with_a_typed_error() {
    let server = server().await;
    let c = client(server.local_addr()).await;
    assert_eq!(c.call(&Req::Echo(1)).await, Ok(Resp::Echo(1)));
    let mut calls = Vec::new();
    for _ in 0..10 {
        let c = c.clone();
        calls.push(tokio::spawn(async move {
            c.call_timeout(&Req::Hang, GENEROUS).await
        }));
    }
    while server.stats().requests < 11 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    server.shutdown().await;
    for call in calls {
        match call.await.unwrap() {
            Err(RpcError::ConnectionLost { reason }) => assert!(!reason.is_empty()),
            other => panic!("expected ConnectionLost, got {other:?}"),
        }
    }
    assert!(started.elapsed() < GENEROUS);
    // The client notices the end and refuses further calls without sending.
    let deadline = Instant::now() + GENEROUS;
    while !c.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = c.call(&Req::Echo(2)).await.unwrap_err();
    assert_eq!(err, RpcError::Closed);
    assert!(!err.maybe_delivered());
}

/// Hostile bytes: an oversized length prefix, a frame of the wrong kind, another version, an
/// undecodable body and a body with trailing bytes each close their own connection; a
/// well-behaved client connected the whole time keeps getting answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_close_that_connection_and_the_server_keeps_serving() {
    let server = server().await;
    let addr = server.local_addr();
    let good = client(addr).await;
    assert_eq!(good.call(&Req::Echo(1)).await, Ok(Resp::Echo(1)));

    let wrong_kind = encode_frame(FrameKind::Response, &(1u64, Req::Echo(1))).unwrap();
    let wrong_version =
        encode_frame_with_version(9, FrameKind::Request, &(1u64, Req::Echo(1))).unwrap();
    let bad_body = encode_frame(FrameKind::Request, &(1u64, 200u8)).unwrap();
    let trailing = encode_frame(FrameKind::Request, &(1u64, Req::Echo(1), 5u8)).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversized length", vec![0xFF, 0xFF, 0xFF, 0xFF, 1, 5]),
        ("wrong kind", wrong_kind),
        ("wrong version", wrong_version),
        ("undecodable body", bad_body),
        ("trailing bytes", trailing),
        ("too short", vec![0, 0, 0, 1, 1]),
    ];
    let n = cases.len() as u64;
    for (what, bytes) in cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        assert!(
            closed_by_peer(&mut s).await,
            "{what}: connection not closed"
        );
        assert_eq!(good.call(&Req::Echo(2)).await, Ok(Resp::Echo(2)), "{what}");
    }
    assert_eq!(server.stats().closed_bad_frames, n);

    // A well-formed request over a raw socket still gets its answer with its id.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&encode_frame(FrameKind::Request, &(42u64, Req::Echo(9))).unwrap())
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let dec = FrameDecoder::new(1024);
    let frame = loop {
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            break f;
        }
        assert!(s.read_buf(&mut buf).await.unwrap() > 0);
    };
    assert_eq!(frame.kind, FrameKind::Response as u8);
    let (id, resp): (u64, Resp) = frame.decode_body(FrameKind::Response).unwrap();
    assert_eq!((id, resp), (42, Resp::Echo(9)));
    server.shutdown().await;
}

/// A fake server answers with garbage: the client's pending call fails with
/// `ConnectionLost`, and no task panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closes_on_a_bad_frame_from_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf).await.unwrap();
        // A Request frame where a Response belongs.
        let bytes = encode_frame(FrameKind::Request, &(1u64, Resp::Echo(1))).unwrap();
        s.write_all(&bytes).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let c = client(addr).await;
    match c.call_timeout(&Req::Echo(1), GENEROUS).await {
        Err(RpcError::ConnectionLost { reason }) => {
            assert!(reason.contains("bad frame"), "{reason}")
        }
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
    fake.abort();
}

/// Typed errors before anything is sent: nobody listening, a request over the frame limit, a
/// bad config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_size_errors_are_typed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::connect(addr, RpcClientConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Connect { addr: a, .. } if a == addr),
        "{err:?}"
    );

    let bad = RpcClientConfig {
        call_timeout: Duration::ZERO,
        ..RpcClientConfig::default()
    };
    assert!(matches!(
        Client::connect(addr, bad).await,
        Err(RpcError::Config(_))
    ));

    let server = server().await;
    let small = RpcClientConfig {
        max_frame_size: 1024,
        ..RpcClientConfig::default()
    };
    let c = Client::connect(server.local_addr(), small).await.unwrap();
    let err = c.call(&Req::Text("x".repeat(5000))).await.unwrap_err();
    assert!(
        matches!(err, RpcError::TooLarge { max: 1024, .. }),
        "{err:?}"
    );
    assert_eq!(c.call(&Req::Echo(5)).await, Ok(Resp::Echo(5)));
    server.shutdown().await;
}

/// Throughput smoke test: 128 callers, 20,000 calls over one connection. Prints the rate; no
/// assertion on speed (shared CI machines are noisy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_smoke() {
    let server = server().await;
    let c = client(server.local_addr()).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..128u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..(20_000 / 128 + 1) {
                let n = t * 1_000 + i;
                assert_eq!(c.call(&Req::Echo(n)).await, Ok(Resp::Echo(n)));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let calls = server.stats().requests;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "rpc throughput smoke: {calls} calls in {secs:.2} s = {:.0} calls/s (128 callers, one connection)",
        calls as f64 / secs
    );
    server.shutdown().await;
}

/// Polls `cond` every 10 ms until it holds or the generous bound passes.
async fn eventually(cond: impl FnMut() -> bool) -> bool {
    common::eventually(GENEROUS, cond).await
}

/// The first 6 bytes of a request frame announcing 20 bytes: a frame begun and not finished.
const HALF_FRAME: [u8; 6] = [0, 0, 0, 20, 1, 5];

/// With `max_connections = 3`, a fourth connection is closed at accept and counted; once one
/// of the three closes, a new client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_accept() {
    let config = RpcServerConfig {
        max_connections: 3,
        ..RpcServerConfig::default()
    };
    let server = server_configured(config).await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(eventually(|| server.stats().accepted == 3).await);
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_peer(&mut fourth).await, "the fourth was served");
    let s = server.stats();
    assert_eq!((s.accepted, s.refused, s.open), (3, 1, 3), "{s:?}");

    drop(held.pop());
    assert!(eventually(|| server.stats().open == 2).await);
    let c = client(addr).await;
    assert_eq!(c.call(&Req::Echo(4)).await, Ok(Resp::Echo(4)));
    let s = server.stats();
    assert_eq!((s.accepted, s.refused, s.open), (4, 1, 3), "{s:?}");
    server.shutdown().await;
}

/// A client that sends 6 bytes of a frame and stalls is closed once `frame_timeout` has
/// passed since its first byte, and so is one that trickles a frame a byte at a time for
/// longer than that; an idle client connected all along (no frame under way) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_frame_is_closed_after_the_frame_timeout() {
    let config = RpcServerConfig {
        frame_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(3600),
        ..RpcServerConfig::default()
    };
    let server = server_configured(config).await;
    let addr = server.local_addr();
    let good = client(addr).await;
    assert_eq!(good.call(&Req::Echo(1)).await, Ok(Resp::Echo(1)));

    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&HALF_FRAME).await.unwrap();
    assert!(
        closed_by_peer(&mut stalled).await,
        "stalled frame kept open"
    );
    let s = server.stats();
    assert_eq!(
        (s.closed_frame_timeout, s.closed_idle, s.closed_bad_frames),
        (1, 0, 0),
        "{s:?}"
    );

    // A whole, valid frame, one byte every 50 ms: 1 s and more from its first byte to its last.
    let frame = encode_frame(FrameKind::Request, &(5u64, Req::Text("x".repeat(12)))).unwrap();
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    for b in &frame {
        if trickle.write_all(&[*b]).await.is_err() {
            break; // Closed under us: that is the point.
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        closed_by_peer(&mut trickle).await,
        "trickled frame kept open"
    );
    assert_eq!(server.stats().closed_frame_timeout, 2);
    assert_eq!(
        server.stats().requests,
        1,
        "the trickled request was not handled"
    );

    assert_eq!(good.call(&Req::Echo(2)).await, Ok(Resp::Echo(2)));
    assert_eq!(server.stats().closed_idle, 0);
    server.shutdown().await;
}

/// Connections with nothing to do are closed after `idle_timeout`: a raw one that never
/// sent a byte, and a client after its last answer, which then refuses calls with `Closed`
/// (not sent, safe to retry) until a new client is connected. A request whose handler runs
/// for longer than the idle timeout is answered: its connection is not idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let config = RpcServerConfig {
        idle_timeout: Duration::from_millis(300),
        frame_timeout: Duration::from_secs(3600),
        ..RpcServerConfig::default()
    };
    let (entered_tx, entered) = flume::bounded(10);
    let (gate, gate_rx) = flume::bounded(10);
    let server = server_with(config, entered_tx, gate_rx).await;
    let addr = server.local_addr();

    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_peer(&mut silent).await,
        "silent connection kept open"
    );
    assert_eq!(server.stats().closed_idle, 1);

    let c = client(addr).await;
    assert_eq!(c.call(&Req::Echo(1)).await, Ok(Resp::Echo(1)));
    assert!(eventually(|| c.is_closed()).await, "idle client not closed");
    assert_eq!(server.stats().closed_idle, 2);
    let err = c.call(&Req::Echo(2)).await.unwrap_err();
    assert_eq!(err, RpcError::Closed);
    assert!(!err.maybe_delivered());

    let c = client(addr).await;
    let call = {
        let c = c.clone();
        tokio::spawn(async move { c.call_timeout(&Req::Gated(7), GENEROUS).await })
    };
    entered.recv_async().await.unwrap();
    // Three idle timeouts with the handler running.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        server.stats().closed_idle,
        2,
        "closed with a handler running"
    );
    assert!(!c.is_closed());
    gate.send_async(()).await.unwrap();
    assert_eq!(call.await.unwrap(), Ok(Resp::Echo(7)));
    server.shutdown().await;
}

/// Many bad connections write one warning line per `warn_interval`, not one each: with an
/// hour's interval, 20 connections cut off mid-frame log one line and hold back 19.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_rate_limited() {
    let config = RpcServerConfig {
        warn_interval: Duration::from_secs(3600),
        ..RpcServerConfig::default()
    };
    let server = server_configured(config).await;
    let addr = server.local_addr();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&HALF_FRAME).await.unwrap();
        s.shutdown().await.unwrap();
        assert!(closed_by_peer(&mut s).await);
    }
    assert!(eventually(|| server.stats().closed_bad_frames == 20).await);
    assert_eq!(server.stats().warnings_suppressed, 19);
    server.shutdown().await;
}

/// The finding, scaled down: 40 connections each holding 6 bytes of a frame. At most
/// `max_connections` are ever open, the rest are refused at accept, every accepted one is
/// closed by the frame timeout, and the 40 closes log one line (the others are counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_frames_is_bounded() {
    let config = RpcServerConfig {
        max_connections: 8,
        frame_timeout: Duration::from_millis(500),
        warn_interval: Duration::from_secs(3600),
        ..RpcServerConfig::default()
    };
    let server = server_configured(config).await;
    let addr = server.local_addr();
    let mut conns = Vec::new();
    let mut most_open = 0;
    for _ in 0..40 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&HALF_FRAME).await; // A refused one may be closed already.
        conns.push(s);
        most_open = most_open.max(server.stats().open);
    }
    for s in &mut conns {
        assert!(closed_by_peer(s).await);
    }
    assert!(eventually(|| server.stats().open == 0).await);
    let s = server.stats();
    assert!(most_open <= 8, "{most_open} open at once");
    assert_eq!(s.accepted + s.refused, 40, "{s:?}");
    assert!(s.refused > 0, "{s:?}");
    assert_eq!(s.closed_frame_timeout, s.accepted, "{s:?}");
    assert_eq!(s.warnings_suppressed, 40 - 1, "{s:?}");
    server.shutdown().await;
}
