//! [`KvClient`]: routes each key to its group and the group's hosts by the placement (read
//! from the metadata group and refreshed when it fails), on top of `raft_service::Client`,
//! which follows leader hints and redirects, retries, and applies each write exactly once
//! under a session per group.

use std::sync::Arc;

use raft_actor::GroupId;
use raft_service::{Client, ClientConfig, ReadKind};

use crate::error::KvError;
use crate::hash::{META_GROUP, group_of};
use crate::machine::{Bytes, DataCommand, KvCommand, KvMachine, KvQuery, KvResponse};
use crate::placement::{MetaCommand, Placement};

/// A compare-and-swap's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    /// The value was the expected one and was replaced.
    pub swapped: bool,
    /// The key's value after the call.
    pub current: Option<Bytes>,
}

/// A client of a KV cluster. Calls are sequential (`&mut self`); for concurrency,
/// [`KvClient::fork`] one per task (forks share connections).
pub struct KvClient {
    inner: Client<KvMachine>,
    placement: Option<Arc<Placement>>,
}

impl std::fmt::Debug for KvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvClient")
            .field("servers", &self.inner.servers())
            .field("placement", &self.placement.as_ref().map(|p| p.version))
            .finish()
    }
}

impl KvClient {
    /// A client starting from `config.servers` (any node of the cluster will do).
    pub fn new(config: ClientConfig) -> Result<Self, KvError> {
        Ok(KvClient {
            inner: Client::new(config)?,
            placement: None,
        })
    }

    /// Another client sharing this one's connections and placement, with its own sessions.
    pub fn fork(&mut self) -> Self {
        KvClient {
            inner: self.inner.fork(),
            placement: self.placement.clone(),
        }
    }

    /// The underlying service client (admin calls by group, status of one server).
    pub fn service(&mut self) -> &mut Client<KvMachine> {
        &mut self.inner
    }

    /// The placement, read from the metadata group on first use.
    pub async fn placement(&mut self) -> Result<Arc<Placement>, KvError> {
        match &self.placement {
            Some(p) => Ok(p.clone()),
            None => self.refresh().await,
        }
    }

    /// Reads the placement from the metadata group (linearizable) and keeps it.
    pub async fn refresh(&mut self) -> Result<Arc<Placement>, KvError> {
        match self.inner.read(META_GROUP, KvQuery::Placement).await? {
            KvResponse::Placement(Some(p)) => {
                let p = Arc::new(*p);
                self.placement = Some(p.clone());
                Ok(p)
            }
            KvResponse::Placement(None) => Err(KvError::NoPlacement),
            other => Err(unexpected(other)),
        }
    }

    /// The group holding `key`.
    pub async fn group_of(&mut self, key: &[u8]) -> Result<GroupId, KvError> {
        Ok(group_of(key, self.placement().await?.groups))
    }

    /// The group of `key`, with its first call sent to a host of the group if no leader is
    /// known yet (hints and redirects lead on from there).
    async fn route(&mut self, key: &[u8]) -> Result<GroupId, KvError> {
        let p = self.placement().await?;
        let group = group_of(key, p.groups);
        if self.inner.leader(group).is_none() {
            if let Some(host) = p.host_addrs(group).first() {
                self.inner.prefer(group, *host);
            }
        }
        Ok(group)
    }

    /// A write to its key's group.
    async fn write(&mut self, command: DataCommand) -> Result<KvResponse, KvError> {
        let group = self.route(command.key()).await?;
        let response = self
            .inner
            .propose(group, KvCommand::Data(command))
            .await?
            .response;
        refusal(response)
    }

    async fn query(
        &mut self,
        key: &[u8],
        kind: ReadKind,
        query: KvQuery,
    ) -> Result<KvResponse, KvError> {
        let group = self.route(key).await?;
        let response = self.inner.read_with(group, kind, query).await?.response;
        refusal(response)
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), KvError> {
        let command = DataCommand::Put {
            key: key.into(),
            value: value.into(),
        };
        match self.write(command).await? {
            KvResponse::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&mut self, key: impl Into<Bytes>) -> Result<bool, KvError> {
        match self.write(DataCommand::Delete { key: key.into() }).await? {
            KvResponse::Deleted(existed) => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `new` (`None`: deletes it) if its value is `expected` (`None`: absent).
    pub async fn cas(
        &mut self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome, KvError> {
        let command = DataCommand::Cas {
            key: key.into(),
            expected,
            new,
        };
        match self.write(command).await? {
            KvResponse::Cas { swapped, current } => Ok(CasOutcome { swapped, current }),
            other => Err(unexpected(other)),
        }
    }

    /// `key`'s value, as fresh as `kind` asks (`Linearizable`, `Lease` or `Stale`).
    pub async fn get(&mut self, key: &[u8], kind: ReadKind) -> Result<Option<Bytes>, KvError> {
        match self.query(key, kind, KvQuery::Get(key.to_vec())).await? {
            KvResponse::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// The values of `keys`, which must all belong to one group, read at one point of it.
    pub async fn multi_get(
        &mut self,
        keys: &[Bytes],
        kind: ReadKind,
    ) -> Result<Vec<Option<Bytes>>, KvError> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        let groups = self.placement().await?.groups;
        let group = group_of(first, groups);
        if let Some(other) = keys
            .iter()
            .map(|k| group_of(k, groups))
            .find(|g| *g != group)
        {
            return Err(KvError::CrossGroup {
                first: group,
                other,
            });
        }
        match self
            .query(first, kind, KvQuery::MultiGet(keys.to_vec()))
            .await?
        {
            KvResponse::Values(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// Applies a placement change in the metadata group; the placement's version after it.
    pub async fn change_placement(&mut self, command: MetaCommand) -> Result<u64, KvError> {
        let response = self
            .inner
            .propose(META_GROUP, KvCommand::Meta(command))
            .await?
            .response;
        match refusal(response)? {
            KvResponse::Version(v) => {
                self.placement = None;
                Ok(v)
            }
            other => Err(unexpected(other)),
        }
    }
}

/// A refusal as an error; anything else as it is.
fn refusal(response: KvResponse) -> Result<KvResponse, KvError> {
    match response {
        KvResponse::Refused(r) => Err(KvError::Refused(r)),
        other => Ok(other),
    }
}

fn unexpected(response: KvResponse) -> KvError {
    KvError::Unexpected(format!("{response:?}"))
}
