//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use raft_net::{
    Envelope, Inbound, Listeners, NodeId, PeerAddrs, RpcServer, RpcServerConfig, TcpConfig,
    TcpTransport,
};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for what must happen soon: long enough never to fail a correct run
/// on a loaded machine, short enough that a hang fails the test.
pub const GENEROUS: Duration = Duration::from_secs(20);

/// The payload used by the tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// A numbered small message.
    Ping(u64),
    /// A heartbeat carrying its send time (nanoseconds since a shared epoch).
    Stamp { seq: u64, sent_ns: u64 },
    /// A large payload.
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
}

pub type Node = (TcpTransport<Msg>, Inbound<Msg>);

pub const CLUSTER: u64 = 0xC1A5_7E55;

/// Binds listeners for `ids`, returning them with their addresses.
pub fn bind_all(ids: &[NodeId]) -> (Vec<Listeners>, BTreeMap<NodeId, PeerAddrs>) {
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for &id in ids {
        let l = Listeners::bind_loopback().expect("bind");
        addrs.insert(id, l.local_addrs().expect("addrs"));
        listeners.push(l);
    }
    (listeners, addrs)
}

/// A config for `id` in a mesh described by `addrs`, with test-friendly timings.
pub fn config(id: NodeId, addrs: &BTreeMap<NodeId, PeerAddrs>) -> TcpConfig {
    let mut c = TcpConfig::new(id, CLUSTER, addrs.clone());
    c.backoff_min = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(200);
    c.handshake_timeout = Duration::from_secs(2);
    c.shutdown_timeout = Duration::from_secs(2);
    c
}

/// Starts a full mesh of `ids` on loopback, tweaking each config with `tweak`.
pub fn mesh(ids: &[NodeId], tweak: impl Fn(&mut TcpConfig)) -> Vec<Node> {
    let (listeners, addrs) = bind_all(ids);
    ids.iter()
        .zip(listeners)
        .map(|(&id, l)| {
            let mut c = config(id, &addrs);
            tweak(&mut c);
            TcpTransport::start(c, l).expect("start")
        })
        .collect()
}

/// Receives until `count` messages arrived or `limit` passed; returns what arrived.
pub async fn collect(
    rx: &flume::Receiver<Envelope<Msg>>,
    count: usize,
    limit: Duration,
) -> Vec<Envelope<Msg>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv_async()).await {
            Ok(Ok(e)) => out.push(e),
            _ => break,
        }
    }
    out
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// A test CA: its certificate's PEM and the issuer that signs leaf certificates.
pub fn ca() -> (String, Issuer<'static, KeyPair>) {
    let (pem, _, issuer) = ca_with_der();
    (pem, issuer)
}

/// [`ca`], with its certificate's DER too.
pub fn ca_with_der() -> (String, Vec<u8>, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), cert.der().to_vec(), Issuer::new(params, key))
}

/// A leaf certificate signed by `issuer` for `names` (an IP address string becomes an IP
/// subject alternative name, anything else a DNS name), usable by servers and clients:
/// `(certificate PEM, private key PEM)`.
pub fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

/// An RPC server on a fresh loopback port with `config`, answering with `handler`.
pub async fn serve_rpc<Req, Resp, F, Fut>(config: RpcServerConfig, handler: F) -> RpcServer
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    RpcServer::serve(listener, config, handler).expect("serve")
}

/// Reads until the peer closes; true if it closed (EOF or reset) within [`GENEROUS`].
pub async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + GENEROUS;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}
