//! Server processes: started as a node of a [`Net`], killed, paused and resumed with signals.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use raft_core::NodeId;

use crate::net::{Net, NetError};

/// A failure to start or signal a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The network could not make the command.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The process could not be started, or its log file opened.
    #[error("node {id}: cannot start {program}: {source}")]
    Spawn {
        /// The node.
        id: NodeId,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `kill` failed to signal the process.
    #[error("node {id}: cannot send SIG{signal}: {detail}")]
    Signal {
        /// The node.
        id: NodeId,
        /// The signal's name.
        signal: &'static str,
        /// `kill`'s error output.
        detail: String,
    },
}

/// One server process, run as node `id` of a [`Net`]. Killed (SIGKILL) when dropped.
pub struct Proc {
    /// The node this process runs.
    pub id: NodeId,
    /// The program.
    pub program: String,
    /// Its arguments (kept for restarts).
    pub args: Vec<String>,
    /// Its standard output and error, appended to across restarts.
    pub log: PathBuf,
    /// Environment variables set for it.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    paused: bool,
}

impl Proc {
    /// A process that is not started yet.
    pub fn new(id: NodeId, program: &str, args: Vec<String>, log: PathBuf) -> Proc {
        Proc {
            id,
            program: program.to_string(),
            args,
            log,
            env: vec![("RUST_LOG".into(), "warn".into())],
            child: None,
            paused: false,
        }
    }

    /// Starts (or restarts) the process in `net`, appending to its log.
    pub fn start(&mut self, net: &Net) -> Result<(), ProcError> {
        self.kill();
        let spawn_err = |source| ProcError::Spawn {
            id: self.id,
            program: self.program.clone(),
            source,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(spawn_err)?;
        let out = log.try_clone().map_err(spawn_err)?;
        let mut command: Command = net.command(self.id, &self.program)?;
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        self.child = Some(command.spawn().map_err(spawn_err)?);
        self.paused = false;
        Ok(())
    }

    /// SIGKILL and reap (a paused process too).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP: the process stops running, its sockets stay open.
    pub fn pause(&mut self) -> Result<(), ProcError> {
        self.signal("STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&mut self) -> Result<(), ProcError> {
        if self.paused {
            self.signal("CONT")?;
            self.paused = false;
        }
        Ok(())
    }

    /// Whether the process is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether the process is running (or paused): started and not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// How the process ended, if it did on its own.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&mut self, signal: &'static str) -> Result<(), ProcError> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let out = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .output()
            .map_err(|e| ProcError::Signal {
                id: self.id,
                signal,
                detail: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ProcError::Signal {
                id: self.id,
                signal,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process would not die until continued on some systems' kill paths;
        // SIGKILL works on stopped processes on Linux, but continue it anyway.
        let _ = self.resume();
        self.kill();
    }
}
