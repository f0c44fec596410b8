//! Clients and servers over TLS: server authentication (each server's certificate names
//! 127.0.0.1, the address clients and leader hints use), mutual TLS, and clients whose TLS
//! does not match the servers', which fail with a typed error within their timeouts, never in
//! doubt, while the servers keep serving the others.

use std::time::Duration;

use raft_net::{RpcServerConfig, RpcTlsClient, RpcTlsServer};
use raft_service::{Client, ClientError, ServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::common::{Cluster, Cmd, Counter, G, Query, config};

/// A CA and the certificates it signed: the servers' one (127.0.0.1) and a client's.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// `(certificate PEM, key PEM)` for `name` (an IP address becomes an IP SAN).
fn leaf(issuer: &Issuer<'static, KeyPair>, name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca, issuer) = ca();
    Pki {
        server: leaf(&issuer, "127.0.0.1"),
        client: leaf(&issuer, "client.test"),
        ca,
    }
}

impl Pki {
    /// Server settings with TLS; `mutual`: client certificates from the CA required.
    fn server_config(&self, mutual: bool) -> ServerConfig {
        let (cert, key) = &self.server;
        let client_ca = mutual.then_some(self.ca.as_bytes());
        let tls = RpcTlsServer::from_pem(cert.as_bytes(), key.as_bytes(), client_ca).unwrap();
        ServerConfig {
            rpc: RpcServerConfig {
                tls: Some(tls),
                ..RpcServerConfig::default()
            },
        }
    }

    /// Client TLS trusting the CA, with the client certificate if `with_cert`.
    fn client_tls(&self, with_cert: bool) -> RpcTlsClient {
        let (cert, key) = &self.client;
        let identity = with_cert.then_some((cert.as_bytes(), key.as_bytes()));
        RpcTlsClient::from_pem(self.ca.as_bytes(), identity).unwrap()
    }
}

/// A client of every server of `c` with `tls`, giving up after `request_timeout`.
fn client(
    c: &Cluster,
    tls: Option<RpcTlsClient>,
    request_timeout: Duration,
) -> anyhow::Result<Client<Counter>> {
    let mut cfg = config(c.addrs());
    cfg.rpc.tls = tls;
    cfg.request_timeout = request_timeout;
    Ok(Client::new(cfg)?)
}

/// `call` fails within its request timeout (plus slack, so a hang fails the test) with
/// `GaveUp`, not in doubt, its last error naming TLS.
async fn fails_over_tls<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T, ClientError>>,
) {
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call hung past its request timeout");
    match result {
        Err(e @ ClientError::GaveUp { .. }) => {
            assert!(!e.is_in_doubt(), "{e}");
            assert!(e.to_string().contains("TLS"), "{e}");
        }
        other => panic!("expected GaveUp over TLS, got {other:?}"),
    }
}

/// The TLS handshakes the servers of `c` refused so far.
fn refused_handshakes(c: &Cluster) -> u64 {
    c.servers
        .iter()
        .map(|s| s.stats().closed_tls_handshake)
        .sum()
}

/// A client of `c` whose TLS (`tls`) does not match the servers': its write gives up over
/// TLS within a one-second request timeout ([`fails_over_tls`]). Returned for more calls.
async fn a_mismatched_write_fails(
    c: &Cluster,
    tls: Option<RpcTlsClient>,
) -> anyhow::Result<Client<Counter>> {
    let mut mismatched = client(c, tls, Duration::from_secs(1))?;
    fails_over_tls(mismatched.propose(G, Cmd::Add(100))).await;
    Ok(mismatched)
}

/// Server authentication: writes, reads and status over TLS against three servers; the
/// client finds the leader through hints whatever server it tries first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_talks_to_servers_over_tls() -> anyhow::Result<()> {
    let pki = pki();
    let c = Cluster::start_with(3, pki.server_config(false)).await?;
    let mut client = client(&c, Some(pki.client_tls(false)), Duration::from_secs(20))?;
    for i in 1..=10 {
        assert_eq!(client.propose(G, Cmd::Add(1)).await?.response, i);
    }
    assert_eq!(client.read(G, Query::Value).await?, 10);
    for addr in c.addrs() {
        assert_eq!(client.status(addr, G).await?.group, G);
    }
    for s in &c.servers {
        assert_eq!(s.stats().closed_tls_handshake, 0);
    }
    c.shutdown().await;
    Ok(())
}

/// Mutual TLS: a client with a certificate from the CA is served; one without a
/// certificate, or without TLS at all, gives up within its timeout (not in doubt: nothing
/// was applied), the servers count the refused handshakes and keep serving the good client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_clients_with_certificates() -> anyhow::Result<()> {
    let pki = pki();
    let c = Cluster::start_with(3, pki.server_config(true)).await?;
    let mut good = client(&c, Some(pki.client_tls(true)), Duration::from_secs(20))?;
    assert_eq!(good.propose(G, Cmd::Add(5)).await?.response, 5);

    a_mismatched_write_fails(&c, Some(pki.client_tls(false))).await?;
    a_mismatched_write_fails(&c, None).await?;

    let refused = refused_handshakes(&c);
    assert!(refused >= 2, "{refused}");
    assert_eq!(good.propose(G, Cmd::Add(5)).await?.response, 10);
    assert_eq!(
        good.read(G, Query::Applied).await?,
        2,
        "nothing refused was applied"
    );
    c.shutdown().await;
    Ok(())
}

/// A plaintext client of TLS servers fails cleanly, bounded by its timeout, for reads and
/// writes; a TLS client of plaintext servers too; the TLS servers keep serving TLS clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_clients_fail_with_a_typed_error() -> anyhow::Result<()> {
    let pki = pki();
    let c = Cluster::start_with(3, pki.server_config(false)).await?;
    let mut plaintext = a_mismatched_write_fails(&c, None).await?;
    fails_over_tls(plaintext.read(G, Query::Value)).await;
    let mut good = client(&c, Some(pki.client_tls(false)), Duration::from_secs(20))?;
    assert_eq!(good.propose(G, Cmd::Add(1)).await?.response, 1);
    let refused = refused_handshakes(&c);
    assert!(refused >= 2, "{refused}");

    let plain = Cluster::start(1).await?;
    let mut tls_client = client(&plain, Some(pki.client_tls(false)), Duration::from_secs(1))?;
    fails_over_tls(tls_client.read(G, Query::Value)).await;
    plain.shutdown().await;
    c.shutdown().await;
    Ok(())
}
