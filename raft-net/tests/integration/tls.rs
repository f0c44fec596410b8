//! Mutual TLS: nodes holding the cluster's certificates talk; a node whose certificate was
//! signed by another CA, or that speaks plaintext, cannot complete the handshake.

use super::common;

use std::time::Duration;

use common::{Msg, bind_all, ca, collect, config, eventually, leaf};
use raft_net::{Lane, NetError, TcpTransport, TlsConfig, Transport};
use rcgen::{Issuer, KeyPair};

const NAME: &str = "raft.test";

/// A node certificate for the cluster name, signed by `issuer`: TLS config trusting `ca_pem`.
fn node_tls(ca_pem: &str, issuer: &Issuer<'static, KeyPair>) -> TlsConfig {
    let (cert, key) = leaf(issuer, &[NAME]);
    TlsConfig::from_pem(ca_pem.as_bytes(), cert.as_bytes(), key.as_bytes(), NAME).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_holders_of_cluster_certificates_get_in() {
    let (ca_pem, issuer) = ca();
    let (rogue_ca_pem, rogue_issuer) = ca();
    let ids = [1, 2, 3, 4];
    let (mut listeners, addrs) = bind_all(&ids);
    let l4 = listeners.pop().unwrap();
    let l3 = listeners.pop().unwrap();
    let l2 = listeners.pop().unwrap();
    let l1 = listeners.pop().unwrap();

    let mut c1 = config(1, &addrs);
    c1.tls = Some(node_tls(&ca_pem, &issuer));
    let mut c2 = config(2, &addrs);
    c2.tls = Some(node_tls(&ca_pem, &issuer));
    // Node 3 has a certificate from another CA (it trusts its own CA).
    let mut c3 = config(3, &addrs);
    c3.tls = Some(node_tls(&rogue_ca_pem, &rogue_issuer));
    // Node 4 speaks plaintext.
    let c4 = config(4, &addrs);

    let (t1, in1) = TcpTransport::<Msg>::start(c1, l1).unwrap();
    let (t2, in2) = TcpTransport::<Msg>::start(c2, l2).unwrap();
    let (t3, _in3) = TcpTransport::<Msg>::start(c3, l3).unwrap();
    let (t4, _in4) = TcpTransport::<Msg>::start(c4, l4).unwrap();

    for i in 0..50 {
        for lane in Lane::ALL {
            t1.send(2, lane, 5, Msg::Ping(i)).unwrap();
            t2.send(1, lane, 5, Msg::Ping(i)).unwrap();
            let _ = t3.send(1, lane, 5, Msg::Ping(1000 + i));
            let _ = t4.send(1, lane, 5, Msg::Ping(2000 + i));
        }
    }
    let long = Duration::from_secs(20);
    for lane in Lane::ALL {
        assert_eq!(collect(in2.lane(lane), 50, long).await.len(), 50, "{lane}");
        let got = collect(in1.lane(lane), 50, long).await;
        assert_eq!(got.len(), 50, "{lane}");
        assert!(got.iter().all(|e| e.from == 2));
    }

    // Both intruders keep failing; node 1 counts refused handshakes and delivers nothing of
    // theirs.
    let refused = || {
        let m = t1.metrics();
        let (s3, s4) = (t3.metrics().peer(1), t4.metrics().peer(1));
        m.rejected_handshakes >= 4
            && s3.data.connect_failures > 0
            && s3.heartbeat.connect_failures > 0
            && s4.data.connect_failures > 0
            && s4.heartbeat.connect_failures > 0
    };
    assert!(eventually(long, refused).await, "{:?}", t1.metrics());
    for lane in Lane::ALL {
        assert_eq!(t3.metrics().peer(1).lane(lane).connects, 0);
        assert_eq!(t4.metrics().peer(1).lane(lane).connects, 0);
        assert!(in1.lane(lane).try_recv().is_err(), "nothing from intruders");
    }
    assert_eq!(t1.metrics().peer(3).data.frames_received, 0);
    assert_eq!(t1.metrics().peer(4).data.frames_received, 0);

    for t in [&t1, &t2, &t3, &t4] {
        t.shutdown().await;
    }
}

#[test]
fn bad_pem_is_a_typed_error() {
    let err = TlsConfig::from_pem(b"not pem", b"", b"", NAME).unwrap_err();
    assert!(matches!(err, NetError::Tls(_)), "{err}");
}
