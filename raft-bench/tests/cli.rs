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
