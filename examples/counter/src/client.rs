//! The counter client: `raft_service::Client` for the counter's one group.
//!
//! Leader discovery, hint following, retries with jittered backoff under a deadline and the
//! session ids that make each increment apply exactly once are the service client's (see
//! `raft_service::client` for the retry rule). A failed increment's error says whether it is
//! in doubt ([`ClientError::is_in_doubt`]).

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use raft_service::{Client, GroupStatus, ReadKind};

pub use raft_service::{ClientConfig, ClientError};

use crate::machine::{Command, Counter, GROUP, Query};

/// One client of the counter. Requests are sequential (`&mut self`); [`CounterClient::fork`]
/// more for concurrency (forks share connections).
#[derive(Debug)]
pub struct CounterClient {
    inner: Client<Counter>,
}

impl CounterClient {
    /// A client of the servers in `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Ok(Self {
            inner: Client::new(config)?,
        })
    }

    /// Another client sharing this one's connections, with its own session.
    pub fn fork(&mut self) -> Self {
        Self {
            inner: self.inner.fork(),
        }
    }

    /// Adds `n` exactly once; returns the value right after this increment.
    pub async fn incr(&mut self, n: i64) -> Result<i64, ClientError> {
        Ok(self.inner.propose(GROUP, Command::Incr(n)).await?.response)
    }

    /// A linearizable read of the value.
    pub async fn get(&mut self) -> Result<i64, ClientError> {
        self.inner.read(GROUP, Query::Get).await
    }

    /// The value as some server has applied it, and the log index it reflects.
    pub async fn get_stale(&mut self) -> Result<(i64, Option<u64>), ClientError> {
        let r = self
            .inner
            .read_with(GROUP, ReadKind::Stale, Query::Get)
            .await?;
        Ok((r.response, r.applied))
    }

    /// Polls the value every `interval` and calls `on_change` with each new value (the first
    /// one included) until it returns `ControlFlow::Break`. A read that gives up ends the
    /// watch with its error.
    pub async fn watch(
        &mut self,
        interval: Duration,
        mut on_change: impl FnMut(i64) -> ControlFlow<()>,
    ) -> Result<(), ClientError> {
        let mut last = None;
        loop {
            let v = self.get().await?;
            if last != Some(v) {
                last = Some(v);
                if on_change(v).is_break() {
                    return Ok(());
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// One server's view of the group (a single attempt).
    pub async fn status(&mut self, server: SocketAddr) -> Result<GroupStatus, ClientError> {
        self.inner.status(server, GROUP).await
    }

    /// The servers this client knows (configured, then learnt from hints).
    pub fn servers(&self) -> &[SocketAddr] {
        self.inner.servers()
    }
}
