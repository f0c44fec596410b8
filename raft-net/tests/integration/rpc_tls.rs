//! The RPC over TLS, on real loopback TCP: round trips with server authentication (the
//! server's certificate names 127.0.0.1, the address the client dials), mutual TLS that
//! refuses missing and foreign client certificates, mismatched ends (plaintext against TLS,
//! both ways) that fail with a typed error instead of hanging, and handshakes that stall,
//! bounded by `tls_handshake_timeout` and counted against `max_connections`.

use super::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{GENEROUS, ca_with_der, closed_by_peer, eventually, leaf, serve_rpc};
use raft_net::{
    RpcClient, RpcClientConfig, RpcError, RpcServer, RpcServerConfig, RpcTlsClient, RpcTlsServer,
    TlsSource,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

type Client = RpcClient<u64, u64>;

/// The certificates of one test: a CA whose server certificate names 127.0.0.1 and
/// `rpc.test`, and a client certificate; and another CA that signs a rogue client
/// certificate and a rogue server certificate.
struct Pki {
    ca: String,
    ca_der: Vec<u8>,
    server: (String, String),
    client: (String, String),
    rogue_ca: String,
    rogue_client: (String, String),
}

fn pki() -> Pki {
    let (ca, ca_der, issuer) = ca_with_der();
    let (rogue_ca, rogue_issuer) = common::ca();
    Pki {
        server: leaf(&issuer, &["127.0.0.1", "rpc.test"]),
        client: leaf(&issuer, &["client.test"]),
        rogue_client: leaf(&rogue_issuer, &["client.test"]),
        ca,
        ca_der,
        rogue_ca,
    }
}

impl Pki {
    /// Server TLS; `mutual`: client certificates must chain to the CA.
    fn server_tls(&self, mutual: bool) -> RpcTlsServer {
        let (cert, key) = &self.server;
        let client_ca = mutual.then_some(self.ca.as_bytes());
        RpcTlsServer::from_pem(cert.as_bytes(), key.as_bytes(), client_ca).unwrap()
    }

    /// Client TLS trusting the CA, with the client certificate if `with_cert`.
    fn client_tls(&self, with_cert: bool) -> RpcTlsClient {
        let (cert, key) = &self.client;
        let identity = with_cert.then_some((cert.as_bytes(), key.as_bytes()));
        RpcTlsClient::from_pem(self.ca.as_bytes(), identity).unwrap()
    }
}

/// Answers `n` with `n + 1`.
async fn server(config: RpcServerConfig) -> RpcServer {
    serve_rpc(config, |n: u64| async move { n + 1 }).await
}

fn tls_server_config(tls: RpcTlsServer) -> RpcServerConfig {
    RpcServerConfig {
        tls: Some(tls),
        ..RpcServerConfig::default()
    }
}

async fn connect(addr: SocketAddr, tls: Option<RpcTlsClient>) -> Result<Client, RpcError> {
    let config = RpcClientConfig {
        tls,
        ..RpcClientConfig::default()
    };
    RpcClient::connect(addr, config).await
}

/// Connects and makes one call: the first error either step gives, or the answer.
async fn connect_and_call(addr: SocketAddr, tls: Option<RpcTlsClient>) -> Result<u64, RpcError> {
    connect(addr, tls).await?.call(&1).await
}

/// Server authentication: calls from many tasks over one TLS connection, verified against
/// the dialed IP address, or against a DNS name the certificate also carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip() {
    let pki = pki();
    let server = server(tls_server_config(pki.server_tls(false))).await;
    let addr = server.local_addr();
    let c = connect(addr, Some(pki.client_tls(false))).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                let n = t * 1000 + i;
                assert_eq!(c.call(&n).await, Ok(n + 1));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let named = pki.client_tls(false).with_server_name("rpc.test").unwrap();
    assert_eq!(connect_and_call(addr, Some(named)).await, Ok(2));
    let s = server.stats();
    assert_eq!(
        (s.accepted, s.requests, s.closed_tls_handshake),
        (2, 801, 0),
        "{s:?}"
    );

    // A client that goes away ends its connection, which is neither a failed handshake nor a
    // bad frame.
    drop(c);
    assert!(eventually(GENEROUS, || server.stats().open == 0).await);
    let s = server.stats();
    assert_eq!(
        (s.closed_tls_handshake, s.closed_bad_frames),
        (0, 0),
        "{s:?}"
    );
    server.shutdown().await;
}

/// The client refuses a server it cannot verify: certificate from a CA it does not trust,
/// or not naming what it checks. Nothing was sent: not `maybe_delivered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_a_server_it_cannot_verify() {
    let pki = pki();
    let server = server(tls_server_config(pki.server_tls(false))).await;
    let addr = server.local_addr();
    let untrusting = RpcTlsClient::from_pem(pki.rogue_ca.as_bytes(), None).unwrap();
    let misnamed = pki
        .client_tls(false)
        .with_server_name("other.test")
        .unwrap();
    for tls in [untrusting, misnamed] {
        let err = connect(addr, Some(tls)).await.unwrap_err();
        assert!(
            matches!(&err, RpcError::Tls { addr: a, .. } if *a == addr),
            "{err}"
        );
        assert!(!err.maybe_delivered());
    }
    assert!(eventually(GENEROUS, || server.stats().closed_tls_handshake == 2).await);
    assert_eq!(
        connect_and_call(addr, Some(pki.client_tls(false))).await,
        Ok(2)
    );
    server.shutdown().await;
}

/// Mutual TLS: a client with a certificate from the CA is served; one without a
/// certificate and one whose certificate another CA signed are refused with
/// `RpcError::Tls` (at connect or, with TLS 1.3, on the first call), and so are their later
/// calls; the server counts both and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_missing_and_foreign_client_certificates() {
    let pki = pki();
    let server = server(tls_server_config(pki.server_tls(true))).await;
    let addr = server.local_addr();
    let good = connect(addr, Some(pki.client_tls(true))).await.unwrap();
    assert_eq!(good.call(&10).await, Ok(11));

    let (rogue_cert, rogue_key) = &pki.rogue_client;
    let foreign = RpcTlsClient::new(
        TlsSource::Pem(pki.ca.clone().into_bytes()),
        Some((
            TlsSource::Pem(rogue_cert.clone().into_bytes()),
            TlsSource::Pem(rogue_key.clone().into_bytes()),
        )),
    )
    .unwrap();
    for tls in [pki.client_tls(false), foreign] {
        match connect(addr, Some(tls)).await {
            Err(err) => assert!(matches!(err, RpcError::Tls { .. }), "{err}"),
            Ok(c) => {
                let err = c.call(&1).await.unwrap_err();
                assert!(matches!(err, RpcError::Tls { .. }), "{err}");
                assert!(!err.maybe_delivered());
                // The connection is gone; later calls say why, without being sent.
                assert!(eventually(GENEROUS, || c.is_closed()).await);
                let again = c.call(&1).await.unwrap_err();
                assert!(matches!(again, RpcError::Tls { .. }), "{again}");
            }
        }
    }
    assert!(eventually(GENEROUS, || server.stats().closed_tls_handshake == 2).await);
    assert_eq!(good.call(&20).await, Ok(21));
    let s = server.stats();
    assert_eq!(
        s.requests, 2,
        "no request of a refused client was handled: {s:?}"
    );
    server.shutdown().await;
}

/// Mismatched ends fail at once with `RpcError::Tls`, neither side hangs, and the server
/// keeps serving: a plaintext client of a TLS server (the server's TLS alert tells it what
/// happened; its request was not processed), and a TLS client of a plaintext server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_ends_do_not_mix() {
    let pki = pki();
    let tls_server = server(tls_server_config(pki.server_tls(false))).await;
    let addr = tls_server.local_addr();
    let plain = connect(addr, None).await.unwrap();
    let err = plain.call(&1).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Tls { addr: a, .. } if *a == addr),
        "{err}"
    );
    assert!(!err.maybe_delivered());
    assert!(eventually(GENEROUS, || tls_server.stats().closed_tls_handshake == 1).await);
    assert_eq!(tls_server.stats().requests, 0);
    assert_eq!(
        connect_and_call(addr, Some(pki.client_tls(false))).await,
        Ok(2)
    );

    let plain_server = server(RpcServerConfig::default()).await;
    let err = connect(plain_server.local_addr(), Some(pki.client_tls(false)))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Tls { .. }), "{err}");
    assert_eq!(
        connect_and_call(plain_server.local_addr(), None).await,
        Ok(2)
    );
    tls_server.shutdown().await;
    plain_server.shutdown().await;
}

/// A connection that does not complete its handshake (silent, or stalled after part of a
/// TLS record) is closed once `tls_handshake_timeout` has passed since accept, not before;
/// idle and frame timeouts are an hour, so it is the handshake's bound that closes it. Each
/// close is counted and the warning lines are rate-limited (one line, the rest counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_after_the_handshake_timeout() {
    let pki = pki();
    let limit = Duration::from_millis(300);
    let config = RpcServerConfig {
        tls_handshake_timeout: limit,
        idle_timeout: Duration::from_secs(3600),
        frame_timeout: Duration::from_secs(3600),
        warn_interval: Duration::from_secs(3600),
        ..tls_server_config(pki.server_tls(false))
    };
    let server = server(config).await;
    let addr = server.local_addr();
    let good = connect(addr, Some(pki.client_tls(false))).await.unwrap();

    // The header of a handshake record announcing 512 bytes, and nothing more.
    let part_of_a_hello: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00];
    for bytes in [&[][..], part_of_a_hello] {
        let started = tokio::time::Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        assert!(closed_by_peer(&mut s).await, "stalled handshake kept open");
        assert!(started.elapsed() >= limit, "closed before the timeout");
    }
    assert!(eventually(GENEROUS, || server.stats().closed_tls_handshake == 2).await);
    let s = server.stats();
    assert_eq!((s.closed_idle, s.closed_frame_timeout), (0, 0), "{s:?}");
    assert_eq!(s.warnings_suppressed, 1, "{s:?}");
    assert_eq!(good.call(&5).await, Ok(6));
    server.shutdown().await;
}

/// A handshake under way holds one of `max_connections`: with two silent connections
/// handshaking, a third connection is refused at accept (its client's handshake fails with
/// a typed error); once the handshake timeout has closed them, a client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_under_way_count_against_max_connections() {
    let pki = pki();
    let config = RpcServerConfig {
        max_connections: 2,
        tls_handshake_timeout: Duration::from_millis(500),
        ..tls_server_config(pki.server_tls(false))
    };
    let server = server(config).await;
    let addr = server.local_addr();
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(eventually(GENEROUS, || server.stats().accepted == 2).await);
    let err = connect(addr, Some(pki.client_tls(false)))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Tls { .. }), "{err}");
    assert_eq!(server.stats().refused, 1);

    for s in &mut silent {
        assert!(closed_by_peer(s).await);
    }
    assert!(eventually(GENEROUS, || server.stats().open == 0).await);
    assert_eq!(
        connect_and_call(addr, Some(pki.client_tls(false))).await,
        Ok(2)
    );
    let s = server.stats();
    assert_eq!((s.closed_tls_handshake, s.refused), (2, 1), "{s:?}");
    server.shutdown().await;
}

/// Certificates and keys load from PEM files and from DER; bad material is a typed error
/// naming what is wrong, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_material_loads_from_files_and_der() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("raft-net-rpc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = &pki.server;
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let from_files = RpcTlsServer::new(
        TlsSource::PemFile(cert_path.clone()),
        TlsSource::PemFile(key_path),
        None,
    )
    .unwrap();
    assert!(!from_files.requires_client_cert());
    let server = server(tls_server_config(from_files)).await;

    // A server certificate from a CA the client is given as DER.
    let client = RpcTlsClient::new(TlsSource::Der(vec![pki.ca_der.clone()]), None).unwrap();
    assert!(!client.has_client_cert());
    assert_eq!(
        connect_and_call(server.local_addr(), Some(client)).await,
        Ok(2)
    );

    let missing = TlsSource::PemFile(dir.join("absent.pem"));
    let err = RpcTlsServer::new(missing, TlsSource::Pem(key.clone().into_bytes()), None);
    assert!(matches!(err, Err(raft_net::NetError::Tls(m)) if m.contains("absent.pem")));
    let no_key = RpcTlsServer::from_pem(cert.as_bytes(), b"not a key", None);
    assert!(matches!(no_key, Err(raft_net::NetError::Tls(_))));
    let two_keys = TlsSource::Der(vec![vec![1], vec![2]]);
    let err = RpcTlsServer::new(TlsSource::Pem(cert.clone().into_bytes()), two_keys, None);
    assert!(matches!(err, Err(raft_net::NetError::Tls(_))));
    let no_ca = RpcTlsClient::from_pem(b"", None);
    assert!(matches!(no_ca, Err(raft_net::NetError::Tls(_))));
    std::fs::remove_dir_all(&dir).unwrap();
    server.shutdown().await;
}
