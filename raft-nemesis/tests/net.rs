//! The network's faults do what they say, seen from processes inside it: this test binary
//! re-executes itself as a tiny server in each node (answering on the node's Raft data port)
//! and as a prober in one node that connects to another and reports whether it got an answer.
//! Runs in whichever mode `Net::create` picks (namespaces as root, proxies elsewhere).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use raft_core::NodeId;
use raft_nemesis::{Mode, Net, Proc};

const SERVE: &str = "NEMESIS_TEST_SERVE";
const PROBE: &str = "NEMESIS_TEST_PROBE";

/// The child roles. Without their variables this test does nothing.
#[test]
fn child() {
    if let Ok(addr) = std::env::var(SERVE) {
        let listener = TcpListener::bind(addr.as_str()).expect("bind");
        for mut c in listener.incoming().flatten() {
            let _ = c.write_all(b"ok");
        }
    }
    if let Ok(addr) = std::env::var(PROBE) {
        let addr: SocketAddr = addr.parse().expect("address");
        let answered = TcpStream::connect_timeout(&addr, Duration::from_millis(700))
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_millis(700)))?;
                let mut buf = [0u8; 2];
                c.read_exact(&mut buf)
            })
            .is_ok();
        std::process::exit(if answered { 0 } else { 3 });
    }
}

fn me() -> String {
    std::env::current_exe()
        .expect("test binary")
        .display()
        .to_string()
}

fn child_args() -> Vec<String> {
    vec!["--exact".into(), "child".into(), "--nocapture".into()]
}

/// Whether node `from` gets an answer from node `to`'s server.
fn reaches(net: &Net, from: NodeId, to: NodeId) -> bool {
    let target = net.addrs(from).expect("node").peers[&to].0;
    let mut c = net.command(from, &me()).expect("command");
    c.args(child_args()).env(PROBE, target.to_string());
    let out = c.output().expect("probe runs");
    if !out.status.success() && out.status.code() != Some(3) {
        panic!(
            "probe n{from} -> n{to} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Whether this process (a client) gets an answer from node `to`.
fn client_reaches(net: &Net, to: NodeId) -> bool {
    let addr = net.addrs(to).expect("node").raft;
    TcpStream::connect_timeout(&addr, Duration::from_millis(700))
        .and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_millis(700)))?;
            let mut buf = [0u8; 2];
            c.read_exact(&mut buf)
        })
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_isolations_splits_and_heals_are_seen_by_the_processes() {
    let ids = [1, 2, 3];
    let mut net = Net::create(&ids).expect("network");
    eprintln!("mode: {}", net.mode());
    let dir = std::env::temp_dir().join(format!("nemesis-net-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log directory");
    let mut servers = Vec::new();
    for id in ids {
        let addrs = net.addrs(id).expect("node").clone();
        let mut p = Proc::new(id, &me(), child_args(), dir.join(format!("node-{id}.log")));
        p.env.push((SERVE.into(), addrs.raft.to_string()));
        p.start(&net).expect("server starts");
        servers.push(p);
    }
    // The servers are up once the client reaches each one.
    for id in ids {
        let mut up = false;
        for _ in 0..50 {
            if client_reaches(&net, id) {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "node {id}'s server never answered");
    }
    // The probes are blocking processes: run them off the runtime's workers.
    let check = |net: &Net, pairs: &[(NodeId, NodeId, bool)]| {
        for (a, b, want) in pairs {
            assert_eq!(
                reaches(net, *a, *b),
                *want,
                "n{a} -> n{b} (faults {:?})",
                net.faults()
            );
        }
    };

    check(
        &net,
        &[(1, 2, true), (2, 1, true), (1, 3, true), (3, 2, true)],
    );

    net.cut(1, 2).expect("cut");
    check(
        &net,
        &[
            (1, 2, false),
            (2, 1, false),
            (1, 3, true),
            (3, 1, true),
            (2, 3, true),
        ],
    );
    assert!(
        client_reaches(&net, 1) && client_reaches(&net, 2),
        "clients keep both ends"
    );
    net.heal().expect("heal");
    check(&net, &[(1, 2, true), (2, 1, true)]);

    net.isolate(3).expect("isolate");
    check(&net, &[(3, 1, false), (2, 3, false), (1, 2, true)]);
    assert!(
        client_reaches(&net, 3),
        "an isolated node still serves clients"
    );
    net.heal().expect("heal");

    net.disconnect(2).expect("disconnect");
    check(&net, &[(2, 1, false), (3, 2, false), (1, 3, true)]);
    if net.mode() == Mode::Netns {
        assert!(
            !client_reaches(&net, 2),
            "a disconnected node is cut off from clients too"
        );
    }
    net.heal().expect("heal");
    check(&net, &[(1, 2, true), (2, 3, true), (3, 1, true)]);
    assert!(client_reaches(&net, 2));

    // A paused server does not answer; continued, it does.
    servers[0].pause().expect("SIGSTOP");
    assert!(!reaches(&net, 2, 1), "a stopped process answered");
    servers[0].resume().expect("SIGCONT");
    assert!(reaches(&net, 2, 1));
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
