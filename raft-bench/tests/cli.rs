//! The benchmark binary end to end: bad flags, JSON output of short runs in both transports.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_raft-bench"))
}

#[test]
fn bad_flags_exit_with_status_2_and_a_message() {
    for args in [
        &["--clients", "0"][..],
        &["--nodes", "12"],
        &["--transport", "carrier-pigeon"],
        &["--duration", "-1"],
        &["--storage", "mem", "--sync", "never"],
        &["--no-such-flag"],
        &["idle", "--groups", "0"],
        &["--workers", "0"],
        &["--transport", "tcp", "--workers", "2"],
    ] {
        let out = bench().args(args).output().expect("run raft-bench");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
}

fn json_run(args: &[&str]) -> serde_json::Value {
    let out = bench()
        .args([
            "--output",
            "json",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--clients",
            "8",
        ])
        .args(args)
        .output()
        .expect("run raft-bench");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn check_report(v: &serde_json::Value) {
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
    assert!(v["throughput"].as_f64().unwrap() > 0.0);
    let l = &v["latency_us"];
    let p50 = l["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= l["p99"].as_f64().unwrap());
    assert!(l["p99"].as_f64().unwrap() <= l["max"].as_f64().unwrap());
    assert!(v["leader_changes"].is_u64());
    assert!(v["floor_ratio"]["p50_ratio"].as_f64().unwrap() > 0.0);
    assert!(v["floors"]["loopback_rtt_us"].as_f64().unwrap() > 0.0);
    assert!(v["floors"]["loopback_rtt_one_runtime_us"].as_f64().unwrap() > 0.0);
    assert!(v["floors"]["fdatasync_4k_shared_us"].as_f64().unwrap() > 0.0);
    assert!(v["resources"]["cpu_secs"].is_f64());
    assert_eq!(v["allocator"], "mimalloc");
}

#[test]
fn in_process_run_prints_json() {
    let v = json_run(&["--nodes", "3", "--groups", "2"]);
    check_report(&v);
    assert_eq!(v["config"]["transport"], "mem");
    // The floors' loopback round trip has a runtime of its own; one data worker is enough.
    let v = json_run(&["--workers", "1"]);
    check_report(&v);
    assert_eq!(v["config"]["workers"], 1);
}

#[test]
fn tcp_run_with_the_wal_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let v = json_run(&[
        "--transport",
        "tcp",
        "--storage",
        "wal",
        "--sync",
        "never",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    check_report(&v);
    assert_eq!(v["config"]["storage"], "wal");
    assert_eq!(v["config"]["workers"], 1);
    assert_eq!(v["floor_ratio"]["floor"], "loopback_rtt");
    // Not durable (sync=never): no shared-disk floor applies.
    assert!(v["floor_ratio"]["shared_disk_floor_us"].is_null());
}

/// Starts the hidden node mode and reads the addresses it bound.
fn node() -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = std::env::temp_dir();
    let mut child = bench()
        .args(["node", "--id", "1", "--groups", "1", "--storage", "mem"])
        .args(["--sync", "always", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a node");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addrs = line
        .trim()
        .strip_prefix("bound ")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .to_owned();
    (child, out, addrs)
}

fn stderr_of(mut child: std::process::Child) -> (Option<i32>, String) {
    use std::io::Read;
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn node_mode_binds_first_then_takes_its_peers_on_stdin() {
    use std::io::{BufRead, Write};
    // A one-node cluster with the addresses the node bound: it starts, then stops cleanly
    // when its standard input closes.
    let (mut child, mut out, addrs) = node();
    assert_eq!(addrs.split('/').count(), 3, "{addrs}");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "1={addrs}").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    drop(stdin);
    let (code, err) = stderr_of(child);
    assert_eq!(code, Some(0), "{err}");

    // A peer list without this node, one with other addresses, a malformed one, and none at
    // all (`None`: stdin closes first): each is a clear error and a failed exit.
    for (list, error) in [
        (Some("2={addrs}"), "node 1 is not in the peer list"),
        (
            Some("1=127.0.0.1:1/127.0.0.1:2/127.0.0.1:3"),
            "addresses it did not bind",
        ),
        (Some("1=nowhere"), "bad address"),
        (None, "before the peer list came"),
    ] {
        let (mut child, _out, addrs) = node();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(list) = list {
            writeln!(stdin, "{}", list.replace("{addrs}", &addrs)).unwrap();
        }
        drop(stdin);
        let (code, err) = stderr_of(child);
        assert_eq!(code, Some(1), "{list:?}: {err}");
        assert!(err.contains(error), "{list:?}: {err}");
    }
}
