//! The documented commands, run as real processes: three `counter-server`s on loopback TCP with
//! their WALs, `counter-client` incr/get/watch/status against them (a SIGKILLed leader
//! included), the `scripts/cluster.sh` life cycle, and bad flags exiting with status 2.

use super::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{CLIENT_BIN, DEMO_BIN, SERVER_BIN, ServerProc};
use counter::addrs::{Peers, free_loopback_peers};

fn servers_arg(peers: &Peers) -> String {
    common::client_addrs(peers)
        .iter()
        .map(|(_, a)| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn client(servers: &str, args: &[&str]) -> Output {
    Command::new(CLIENT_BIN)
        .env("RUST_LOG", "raft_service=debug")
        .arg("--servers")
        .arg(servers)
        .args(args)
        .output()
        .expect("run counter-client")
}

/// Runs the client and returns its stdout, trimmed; panics with its stderr if it failed.
fn client_ok(servers: &str, args: &[&str]) -> String {
    let out = client(servers, args);
    assert!(
        out.status.success(),
        "counter-client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The node the `status` command names as leader, once there is one (up to 20 s).
fn leader(servers: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = client(servers, &["status"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(line) = text.lines().find(|l| l.contains(" Leader ")) {
            // "ADDR: node N Leader term ..."
            let n = line.split_whitespace().nth(2).expect("node id");
            return n.parse().expect("numeric node id");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no leader reported by `status` within 20 s");
}

#[test]
fn documented_commands_against_three_server_processes() {
    let dir = tempfile::tempdir().unwrap();
    let peers = free_loopback_peers(3).unwrap();
    let mut procs = ServerProc::spawn_all(&peers, dir.path());
    let servers = servers_arg(&peers);

    assert_eq!(client_ok(&servers, &["incr", "5"]), "5");
    assert_eq!(client_ok(&servers, &["incr"]), "6");
    assert_eq!(client_ok(&servers, &["incr", "-2"]), "4");
    assert_eq!(client_ok(&servers, &["get"]), "4");

    // `watch` prints the current value, then each new one.
    let mut watch = Command::new(CLIENT_BIN)
        .args(["--servers", &servers, "watch", "--interval-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a watch line")
    };
    assert_eq!(next(), "4");
    assert_eq!(client_ok(&servers, &["incr", "3"]), "7");
    assert_eq!(next(), "7");
    let _ = watch.kill();
    let _ = watch.wait();

    // `status`: every server answers, exactly one leads.
    let status = client_ok(&servers, &["status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    assert_eq!(status.matches(" Leader ").count(), 1, "{status}");

    // SIGKILL the leader: the client finds the new one; the restarted node recovers.
    let l = leader(&servers);
    let victim = procs.iter_mut().find(|p| p.id == l).unwrap();
    victim.kill();
    assert_eq!(client_ok(&servers, &["incr"]), "8");
    victim.start();
    assert_eq!(client_ok(&servers, &["get"]), "8");
    // Only the restarted node's client port, once it is back and has caught up: a read there
    // is forwarded to the leader by hint and sees every increment.
    let restarted = peers.0[&l].client.unwrap().to_string();
    assert_eq!(client_ok(&restarted, &["get"]), "8");
    common::assert_all_running(&mut procs);
}

/// `scripts/cluster.sh start|status|kill|stop|clean` with prebuilt binaries, a temporary
/// directory and free ports.
#[test]
fn cluster_script_life_cycle() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
    let bin_dir = Path::new(SERVER_BIN).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The script puts node N at BASE + 10(N-1): find three consecutive free triples.
    let base = (0..50)
        .find_map(|_| {
            let p = free_loopback_peers(3).ok()?;
            let b = p.0[&1].raft.data.port();
            (p.0[&2].raft.data.port() == b + 10 && p.0[&3].raft.data.port() == b + 20).then_some(b)
        })
        .expect("free ports");
    let data = dir.path().join("cluster");
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .env("COUNTER_BIN_DIR", bin_dir)
            .env("COUNTER_DIR", &data)
            .env("COUNTER_BASE_PORT", base.to_string())
            .output()
            .expect("run cluster.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "cluster.sh {args:?} failed:\n{text}");
        text
    };
    // Stops the cluster even if an assertion fails half-way.
    struct Stop<F: Fn(&[&str]) -> String>(F);
    impl<F: Fn(&[&str]) -> String> Drop for Stop<F> {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.0)(&["stop"])));
        }
    }
    let guard = Stop(run);
    let run = &guard.0;

    let started = run(&["start"]);
    assert!(started.contains("cluster ready"), "{started}");
    let servers = run(&["servers"]).trim().to_string();
    assert_eq!(client_ok(&servers, &["incr", "2"]), "2");
    let status = run(&["status"]);
    assert_eq!(status.matches(": running").count(), 3, "{status}");
    assert_eq!(status.matches(" Leader ").count(), 1, "{status}");

    let l = leader(&servers);
    let killed = run(&["kill", &l.to_string()]);
    assert!(killed.contains("killed"), "{killed}");
    assert_eq!(client_ok(&servers, &["incr"]), "3");
    let restarted = run(&["start"]);
    assert!(restarted.contains("already running"), "{restarted}");
    assert_eq!(client_ok(&servers, &["get"]), "3");

    let stopped = run(&["stop"]);
    assert_eq!(stopped.matches("stopped").count(), 3, "{stopped}");
    assert!(data.join("node-1").exists(), "stop keeps the data");
    run(&["start"]);
    assert_eq!(
        client_ok(&servers, &["get"]),
        "3",
        "recovered from the WALs"
    );
    let cleaned = run(&["clean"]);
    assert!(cleaned.contains("removed"), "{cleaned}");
    assert!(!data.exists());
}

/// Bad flags: a clear message on stderr and exit status 2, for every binary.
#[test]
fn bad_flags_exit_with_status_2() {
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (CLIENT_BIN, vec!["get"], "--servers"),
        (
            CLIENT_BIN,
            vec!["--servers", "nonsense", "get"],
            "HOST:PORT",
        ),
        (
            CLIENT_BIN,
            vec!["--servers", "127.0.0.1:1", "frobnicate"],
            "frobnicate",
        ),
        (
            CLIENT_BIN,
            vec!["--servers", "127.0.0.1:1", "incr", "x"],
            "invalid",
        ),
        (
            SERVER_BIN,
            vec![
                "--id",
                "4",
                "--peers",
                "1=127.0.0.1:5000",
                "--data-dir",
                "/nonexistent",
                "--listen",
                "127.0.0.1:5002",
            ],
            "--id 4 is not one of the ids",
        ),
        (
            SERVER_BIN,
            vec![
                "--id",
                "1",
                "--peers",
                "1:127.0.0.1:5000",
                "--data-dir",
                "/x",
                "--listen",
                "127.0.0.1:5002",
            ],
            "ID=HOST:PORT",
        ),
        (
            SERVER_BIN,
            vec![
                "--id",
                "1",
                "--peers",
                "1=127.0.0.1:5000,1=127.0.0.1:6000",
                "--data-dir",
                "/x",
                "--listen",
                "127.0.0.1:5002",
            ],
            "appears twice",
        ),
        (SERVER_BIN, vec!["--id", "1"], "required"),
        (DEMO_BIN, vec![], "Usage"),
        (DEMO_BIN, vec!["demo", "--clients", "0"], "clients"),
    ];
    for (bin, args, needle) in cases {
        let out = Command::new(bin).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{bin} {args:?}: expected {needle:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{bin} {args:?}: {stderr}");
    }
}
