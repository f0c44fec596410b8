//! The `kv` command line against three `kv-server` processes (8 groups x 3 replicas) and a
//! fourth that joins: every command of the README, with what it prints.

use super::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{CLIENT_BIN, ServerProc, assert_all_running, loopback_peers};

/// Runs `kv --servers <servers> <args>`; its stdout, or a panic with its stderr.
fn kv(servers: &str, args: &[&str]) -> String {
    let out = Command::new(CLIENT_BIN)
        .args(["--servers", servers])
        .args(args)
        .output()
        .expect("run kv");
    assert!(
        out.status.success(),
        "kv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// As [`kv`], retried until it succeeds (the cluster may still be starting).
fn kv_eventually(servers: &str, args: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let out = Command::new(CLIENT_BIN)
            .args(["--servers", servers, "--timeout-ms", "3000"])
            .args(args)
            .output()
            .expect("run kv");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "kv {args:?} kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_command_prints_what_the_readme_says() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut peers = loopback_peers(4);
    let (fourth, fourth_addrs) = peers.0.pop_last().expect("four nodes' addresses");
    let mut procs: Vec<ServerProc> = peers
        .0
        .keys()
        .map(|id| ServerProc::create(*id, &peers, 8, 3, dir))
        .collect();
    let first = peers.client_addrs()[0].to_string();
    let s = first.as_str();

    assert_eq!(kv_eventually(s, &["put", "greeting", "hello"]), "OK\n");
    assert_eq!(kv(s, &["get", "greeting"]), "hello\n");
    assert_eq!(kv(s, &["get", "greeting", "--read", "lease"]), "hello\n");
    assert_eq!(kv(s, &["get", "missing"]), "(absent)\n");
    assert_eq!(
        kv(s, &["cas", "greeting", "--expected", "hi", "--new", "bye"]),
        "not swapped, current: hello\n"
    );
    assert_eq!(
        kv(
            s,
            &["cas", "greeting", "--expected", "hello", "--new", "bye"]
        ),
        "swapped\n"
    );
    // A stale read is served by any replica: eventually the new value.
    let started = Instant::now();
    while kv(s, &["get", "greeting", "--read", "stale"]) != "bye\n" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stale read never caught up"
        );
    }
    // Two keys of one group, found by their hash.
    let group = kv::group_of(b"greeting", 8);
    let other = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| kv::group_of(k.as_bytes(), 8) == group)
        .expect("a key of the group");
    kv(s, &["put", &other, "x"]);
    assert_eq!(kv(s, &["mget", "greeting", &other]), "bye\nx\n");
    assert_eq!(kv(s, &["delete", "greeting"]), "deleted\n");
    assert_eq!(kv(s, &["delete", "greeting"]), "absent\n");
    assert_eq!(
        kv(s, &["where", "greeting"]),
        format!("group {group} on nodes 1,2,3\n")
    );
    let status = kv(s, &["status"]);
    assert!(
        status.starts_with("placement v1: 8 groups x 3 replicas on 3 nodes\n"),
        "{status}"
    );
    assert!(status.contains("node 1 at "), "{status}");
    assert!(
        status.contains("group 2: replicas [1,2,3], leader "),
        "{status}"
    );
    let bench = kv(
        s,
        &["bench", "--clients", "4", "--secs", "1", "--keys", "100"],
    );
    assert!(
        bench.starts_with("kv bench: 4 clients, 8 groups, "),
        "{bench}"
    );
    assert!(bench.trim_end().ends_with("errors 0"), "{bench}");
    let g = group.to_string();
    assert_eq!(
        kv(s, &["transfer-leader", &g, "2"]),
        format!("leadership of group {group} handed to node 2\n")
    );

    // A fourth node joins; a replica moves to it; rebalancing evens the rest out; it leaves.
    let join_args = vec![
        "--id".into(),
        fourth.to_string(),
        "--raft".into(),
        fourth_addrs.data.to_string(),
        "--listen".into(),
        fourth_addrs.client.expect("client address").to_string(),
        "--join".into(),
        first.clone(),
        "--data-dir".into(),
        dir.join(format!("node-{fourth}")).display().to_string(),
    ];
    procs.push(ServerProc::spawn(fourth, join_args, dir));
    let started = Instant::now();
    while !kv(s, &["status"]).contains("on 4 nodes") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "node 4 never joined"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let moved = kv(s, &["move-replica", &g, "1", "4"]);
    assert!(
        moved.starts_with(&format!(
            "group {group} moved from node 1 to node 4 (placement v"
        )),
        "{moved}"
    );
    assert_eq!(
        kv(s, &["get", &other]),
        "x\n",
        "the data moved with the replica"
    );
    let rebalanced = kv(s, &["rebalance"]);
    assert!(rebalanced.starts_with("rebalanced: "), "{rebalanced}");
    assert!(kv(s, &["status"]).contains("x 3 replicas on 4 nodes"));
    let removed = kv(s, &["remove-node", "4"]);
    assert!(removed.starts_with("node 4 removed: "), "{removed}");
    let status = kv(s, &["status"]);
    assert!(status.contains("on 3 nodes"), "{status}");
    assert!(!status.contains("node 4 at"), "{status}");
    assert_eq!(kv(s, &["get", &other]), "x\n");
    assert_all_running(&mut procs);
}
