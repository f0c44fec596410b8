//! The WAL directory's lock: two open stores on one directory are refused with a typed error
//! naming it, and the lock of a process killed with SIGKILL does not outlive it (the kernel
//! releases a `flock` with the process's last descriptor), so a restart needs no clean-up.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use raft_storage::{StorageError, Wal, WalConfig};

/// The child: opens the WAL in `RAFT_WAL_LOCK_CHILD`, says so, and waits to be killed.
#[test]
fn lock_child() {
    let Ok(dir) = std::env::var("RAFT_WAL_LOCK_CHILD") else {
        return;
    };
    let _wal = Wal::open(WalConfig::new(Path::new(&dir))).expect("child: open");
    let mut out = std::io::stdout().lock();
    writeln!(out, "opened").expect("child: write");
    out.flush().expect("child: flush");
    loop {
        std::thread::park();
    }
}

fn assert_locked(dir: &Path) {
    match Wal::open(WalConfig::new(dir)) {
        Err(StorageError::Locked { dir: d }) => {
            assert_eq!(d, dir);
            // The message names the directory.
            let msg = StorageError::Locked { dir: d }.to_string();
            assert!(msg.contains(&dir.display().to_string()), "{msg}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second store opened a locked WAL directory"),
    }
}

#[test]
fn a_second_open_of_one_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert_locked(dir.path());
    drop(wal);
    Wal::open(WalConfig::new(dir.path())).expect("reopens once the first store is dropped");
}

#[test]
fn another_process_is_refused_and_its_lock_dies_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args([
            "lock::lock_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RAFT_WAL_LOCK_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read child");
        assert!(n > 0, "the child ended without opening the WAL");
        // libtest may print the test's name on the same line first.
        if line.trim_end().ends_with("opened") {
            break;
        }
    }
    // The child holds it: this process is refused.
    assert_locked(dir.path());
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    // No stale lock: the directory reopens at once.
    Wal::open(WalConfig::new(dir.path())).expect("reopens after the holder was killed");
}
