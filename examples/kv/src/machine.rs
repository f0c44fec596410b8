//! The replicated state machine: one type for both kinds of group, since a `Node<S>` hosts
//! groups of one state machine type.
//!
//! [`KvMachine::Meta`] is the metadata group's (the [`Placement`]); [`KvMachine::Data`] is a
//! shard's (a `BTreeMap` of keys to values). A command or query of the other kind, or for a
//! key of another shard, is answered [`KvResponse::Refused`] and changes nothing: nothing a
//! client sends can make a replica panic.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use raft_actor::{SnapshotMeta, StateMachine};
use serde::{Deserialize, Serialize};

use crate::hash::shard_of;
use crate::placement::{MetaCommand, Placement, PlacementError};

/// A key or a value: bytes.
pub type Bytes = Vec<u8>;

/// A change to a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataCommand {
    /// Sets `key` to `value`; answered [`KvResponse::Ok`].
    Put {
        /// The key.
        key: Bytes,
        /// Its new value.
        value: Bytes,
    },
    /// Removes `key`; answered [`KvResponse::Deleted`] (whether it existed).
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Sets `key` to `new` (`None`: deletes it) if its value is `expected` (`None`: absent);
    /// answered [`KvResponse::Cas`].
    Cas {
        /// The key.
        key: Bytes,
        /// The value it must have.
        expected: Option<Bytes>,
        /// The value it gets.
        new: Option<Bytes>,
    },
}

impl DataCommand {
    /// The key the command changes.
    pub fn key(&self) -> &[u8] {
        match self {
            DataCommand::Put { key, .. }
            | DataCommand::Delete { key }
            | DataCommand::Cas { key, .. } => key,
        }
    }
}

/// A command of either kind of group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// For the metadata group.
    Meta(MetaCommand),
    /// For a shard.
    Data(DataCommand),
}

/// A query of either kind of group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The metadata group's placement; answered [`KvResponse::Placement`].
    Placement,
    /// One key's value; answered [`KvResponse::Value`].
    Get(Bytes),
    /// Several keys of one shard; answered [`KvResponse::Values`], in the order asked.
    MultiGet(Vec<Bytes>),
    /// How many keys the shard holds; answered [`KvResponse::Count`].
    Count,
}

/// Why a group refused a command or query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// A data command or query sent to the metadata group, or the reverse.
    #[error("the group holds {0}, not what the request is for")]
    WrongKind(String),
    /// A key of another shard.
    #[error("key hashes to shard {key_shard}, this group holds shard {shard}")]
    WrongShard {
        /// The key's shard.
        key_shard: u32,
        /// This group's.
        shard: u32,
    },
    /// The placement refused the change.
    #[error("placement: {0}")]
    Placement(#[from] PlacementError),
}

/// Every answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// A put applied.
    Ok,
    /// A key's value (`None`: absent).
    Value(Option<Bytes>),
    /// Several keys' values.
    Values(Vec<Option<Bytes>>),
    /// A delete applied; whether the key existed.
    Deleted(bool),
    /// A compare-and-swap: whether it swapped, and the key's value after it.
    Cas {
        /// The value was the expected one and was replaced.
        swapped: bool,
        /// The value now.
        current: Option<Bytes>,
    },
    /// A shard's key count.
    Count(u64),
    /// The placement (`None` before the cluster's creation applied).
    Placement(Option<Box<Placement>>),
    /// A placement change applied; the placement's version after it.
    Version(u64),
    /// The request was refused; nothing changed.
    Refused(Refusal),
}

/// A shard's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataState {
    /// The shard it holds.
    pub shard: u32,
    /// The cluster's number of shards.
    pub groups: u32,
    /// The keys and values.
    pub map: BTreeMap<Bytes, Bytes>,
}

/// The metadata group's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaState {
    /// The placement, once created.
    pub placement: Option<Placement>,
}

/// The state machine of every group of a KV node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvMachine {
    /// The metadata group's.
    Meta(MetaState),
    /// A shard's.
    Data(DataState),
}

impl KvMachine {
    /// An empty metadata machine.
    pub fn meta() -> Self {
        KvMachine::Meta(MetaState::default())
    }

    /// An empty shard `shard` of `groups`.
    pub fn data(shard: u32, groups: u32) -> Self {
        KvMachine::Data(DataState {
            shard,
            groups,
            map: BTreeMap::new(),
        })
    }

    fn kind(&self) -> String {
        match self {
            KvMachine::Meta(_) => "the placement".into(),
            KvMachine::Data(d) => format!("shard {}", d.shard),
        }
    }

    fn wrong_kind(&self) -> KvResponse {
        KvResponse::Refused(Refusal::WrongKind(self.kind()))
    }
}

impl DataState {
    fn check(&self, key: &[u8]) -> Result<(), KvResponse> {
        let key_shard = shard_of(key, self.groups);
        if key_shard == self.shard {
            Ok(())
        } else {
            Err(KvResponse::Refused(Refusal::WrongShard {
                key_shard,
                shard: self.shard,
            }))
        }
    }

    fn apply(&mut self, command: DataCommand) -> KvResponse {
        if let Err(refused) = self.check(command.key()) {
            return refused;
        }
        match command {
            DataCommand::Put { key, value } => {
                self.map.insert(key, value);
                KvResponse::Ok
            }
            DataCommand::Delete { key } => KvResponse::Deleted(self.map.remove(&key).is_some()),
            DataCommand::Cas { key, expected, new } => {
                if self.map.get(&key) != expected.as_ref() {
                    let current = self.map.get(&key).cloned();
                    return KvResponse::Cas {
                        swapped: false,
                        current,
                    };
                }
                match &new {
                    Some(v) => self.map.insert(key, v.clone()),
                    None => self.map.remove(&key),
                };
                KvResponse::Cas {
                    swapped: true,
                    current: new,
                }
            }
        }
    }

    fn query(&self, query: KvQuery) -> Option<KvResponse> {
        Some(match query {
            KvQuery::Get(key) => match self.check(&key) {
                Ok(()) => KvResponse::Value(self.map.get(&key).cloned()),
                Err(refused) => refused,
            },
            KvQuery::MultiGet(keys) => {
                if let Some(Err(refused)) = keys.iter().map(|k| self.check(k)).find(Result::is_err)
                {
                    return Some(refused);
                }
                KvResponse::Values(keys.iter().map(|k| self.map.get(k).cloned()).collect())
            }
            KvQuery::Count => KvResponse::Count(self.map.len() as u64),
            KvQuery::Placement => return None,
        })
    }
}

/// What a snapshot holds (postcard-encoded).
#[derive(Serialize, Deserialize)]
enum SnapshotBody {
    Meta(Option<Placement>),
    Data {
        shard: u32,
        groups: u32,
        entries: Vec<(Bytes, Bytes)>,
    },
}

impl StateMachine for KvMachine {
    type Command = KvCommand;
    type Query = KvQuery;
    type Response = KvResponse;

    fn apply(&mut self, _index: u64, command: KvCommand) -> KvResponse {
        match (self, command) {
            (KvMachine::Data(d), KvCommand::Data(c)) => d.apply(c),
            (KvMachine::Meta(m), KvCommand::Meta(c)) => match (&mut m.placement, c) {
                (None, MetaCommand::Create(p)) => {
                    let version = p.version;
                    m.placement = Some(p);
                    KvResponse::Version(version)
                }
                (None, _) => KvResponse::Refused(PlacementError::NotCreated.into()),
                (Some(p), c) => match p.apply(&c) {
                    Ok(v) => KvResponse::Version(v),
                    Err(e) => KvResponse::Refused(e.into()),
                },
            },
            (me, _) => me.wrong_kind(),
        }
    }

    fn query(&self, query: KvQuery) -> KvResponse {
        match (self, query) {
            (KvMachine::Meta(m), KvQuery::Placement) => {
                KvResponse::Placement(m.placement.clone().map(Box::new))
            }
            (KvMachine::Data(d), q) => d.query(q).unwrap_or_else(|| self.wrong_kind()),
            (me, _) => me.wrong_kind(),
        }
    }

    fn snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        let body = match self {
            KvMachine::Meta(m) => SnapshotBody::Meta(m.placement.clone()),
            KvMachine::Data(d) => SnapshotBody::Data {
                shard: d.shard,
                groups: d.groups,
                entries: d.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            },
        };
        postcard::to_io(&body, out).map_err(io::Error::other)?;
        Ok(())
    }

    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        let body: SnapshotBody = postcard::from_bytes(&bytes).map_err(io::Error::other)?;
        *self = match body {
            SnapshotBody::Meta(placement) => KvMachine::Meta(MetaState { placement }),
            SnapshotBody::Data {
                shard,
                groups,
                entries,
            } => KvMachine::Data(DataState {
                shard,
                groups,
                map: entries.into_iter().collect(),
            }),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::shard_of;

    fn key_of_shard(shard: u32, groups: u32) -> Bytes {
        (0..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| shard_of(k, groups) == shard)
            .unwrap()
    }

    #[test]
    fn put_get_delete_cas_and_multi_get() {
        let mut m = KvMachine::data(3, 8);
        let k = key_of_shard(3, 8);
        let put = |v: &str| {
            KvCommand::Data(DataCommand::Put {
                key: k.clone(),
                value: v.into(),
            })
        };
        assert_eq!(m.apply(1, put("a")), KvResponse::Ok);
        assert_eq!(
            m.query(KvQuery::Get(k.clone())),
            KvResponse::Value(Some(b"a".to_vec()))
        );
        let cas = |e: Option<&str>, n: Option<&str>| {
            KvCommand::Data(DataCommand::Cas {
                key: k.clone(),
                expected: e.map(Into::into),
                new: n.map(Into::into),
            })
        };
        assert_eq!(
            m.apply(2, cas(Some("x"), Some("b"))),
            KvResponse::Cas {
                swapped: false,
                current: Some(b"a".to_vec())
            }
        );
        assert_eq!(
            m.apply(3, cas(Some("a"), Some("b"))),
            KvResponse::Cas {
                swapped: true,
                current: Some(b"b".to_vec())
            }
        );
        assert_eq!(
            m.query(KvQuery::MultiGet(vec![k.clone(), k.clone()])),
            KvResponse::Values(vec![Some(b"b".to_vec()), Some(b"b".to_vec())])
        );
        assert_eq!(
            m.apply(4, KvCommand::Data(DataCommand::Delete { key: k.clone() })),
            KvResponse::Deleted(true)
        );
        assert_eq!(
            m.apply(5, cas(None, Some("c"))),
            KvResponse::Cas {
                swapped: true,
                current: Some(b"c".to_vec())
            }
        );
        assert_eq!(m.query(KvQuery::Count), KvResponse::Count(1));
    }

    #[test]
    fn requests_of_the_wrong_kind_or_shard_are_refused_and_change_nothing() {
        let mut m = KvMachine::data(3, 8);
        let other = key_of_shard(4, 8);
        let put = KvCommand::Data(DataCommand::Put {
            key: other.clone(),
            value: vec![1],
        });
        assert!(matches!(
            m.apply(1, put.clone()),
            KvResponse::Refused(Refusal::WrongShard {
                key_shard: 4,
                shard: 3
            })
        ));
        assert!(matches!(
            m.query(KvQuery::Get(other)),
            KvResponse::Refused(_)
        ));
        assert!(matches!(
            m.query(KvQuery::Placement),
            KvResponse::Refused(_)
        ));
        assert_eq!(m, KvMachine::data(3, 8));
        let mut meta = KvMachine::meta();
        assert!(matches!(
            meta.apply(1, put),
            KvResponse::Refused(Refusal::WrongKind(_))
        ));
        assert!(matches!(
            meta.apply(2, KvCommand::Meta(MetaCommand::RemoveNode { id: 1 })),
            KvResponse::Refused(Refusal::Placement(PlacementError::NotCreated))
        ));
        assert_eq!(meta.query(KvQuery::Placement), KvResponse::Placement(None));
    }

    #[test]
    fn snapshots_restore_both_kinds_and_garbage_is_an_error() {
        let mut m = KvMachine::data(0, 1);
        m.apply(
            1,
            KvCommand::Data(DataCommand::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }),
        );
        let mut snap = Vec::new();
        m.snapshot(&mut snap).unwrap();
        let mut r = KvMachine::meta();
        r.restore(&SnapshotMeta::default(), &mut &snap[..]).unwrap();
        assert_eq!(r, m);
        let meta = KvMachine::meta();
        let mut snap = Vec::new();
        meta.snapshot(&mut snap).unwrap();
        r.restore(&SnapshotMeta::default(), &mut &snap[..]).unwrap();
        assert_eq!(r, meta);
        assert!(
            r.restore(&SnapshotMeta::default(), &mut &[9u8, 9, 9][..])
                .is_err()
        );
    }
}
