//! The client-session table of a group's apply actor: what makes a retried request apply
//! once (Raft thesis, 6.3), bounded.
//!
//! - A session is opened by a replicated entry ([`super::messages::Header::OpenSession`]);
//!   its id is that entry's log index. Ids are never reused, so a request naming a session
//!   the table does not hold names one that was evicted (or never opened): it is answered
//!   [`crate::Error::SessionExpired`] and not applied.
//! - For each session the table keeps the sequence number of the last request applied under
//!   it, the index it applied at and its encoded response: a retry (same sequence number) is
//!   answered from there without applying it again.
//! - The table holds at most the cap the opening entry carries; opening one more evicts the
//!   session whose last request (or opening) has the lowest log index. Every replica applies
//!   the same entries in the same order with the same caps, so every replica evicts the same
//!   sessions at the same entries: the table is part of the replicated state, and travels in
//!   snapshots.
//!
//! Memory per session: one entry in `table` (key and [`Session`], 40 bytes) and one in
//! `by_use` (two `u64`s), in `BTreeMap` nodes of 11 slots that increasing keys leave about
//! half full, plus the response's heap allocation: about 180 bytes with a small response (see
//! `estimated_bytes_per_session` and the test `a_million_sessions` in `apply.rs`, whose
//! figures `NodeConfig::max_sessions` quotes). In a snapshot, about 12 bytes.

use std::collections::BTreeMap;

use raft_core::Index;
use raft_core::rng::SplitMix64;
use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::state_machine::RequestId;

/// One client session.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    /// The sequence number of the last request applied under it (0: none yet).
    seq: u64,
    /// The index of the entry that applied that request.
    applied_at: Index,
    /// The index of the last entry that named the session (its key in `by_use`).
    last_use: Index,
    /// The encoded response to that request.
    response: Box<[u8]>,
}

impl Session {
    /// This session's share of the table digest.
    fn digest(&self, client: u64) -> u64 {
        // FNV-1a over the response, then the fields through the seeded mixer.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in self.response.iter() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        SplitMix64::derive(
            0x5E55_D16E,
            &[client, self.seq, self.applied_at, self.last_use, h],
        )
    }
}

/// What the table says about a request under a session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check<'a> {
    /// A new request of a live session: apply it, then [`Sessions::record`] its response.
    Apply,
    /// A retry of the request the session applied last (or of an older one): answer what it
    /// answered, at the index it applied at, without applying it again.
    Retry {
        /// The index the request applied at.
        applied_at: Index,
        /// Its encoded response.
        response: &'a [u8],
    },
    /// The table holds no such session: it was evicted, or never opened.
    Expired,
}

/// The client sessions of one group (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Session id → session.
    table: BTreeMap<u64, Session>,
    /// The index of each session's last use → its id: the eviction order.
    by_use: BTreeMap<Index, u64>,
    /// Sessions evicted so far.
    evicted: u64,
    /// XOR of every session's digest: the same table gives the same value, whatever the order
    /// it was built in, and each change costs two hashes.
    digest: u64,
}

impl Sessions {
    /// Opens the session with id `index` (the index of the entry that opens it), evicting the
    /// least recently used sessions first while the table holds `cap` (at least 1) or more.
    pub(crate) fn open(&mut self, index: Index, cap: u64) {
        let cap = cap.max(1);
        while self.table.len() as u64 >= cap {
            let Some((_, client)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(old) = self.table.remove(&client) {
                self.digest ^= old.digest(client);
                self.evicted += 1;
            }
        }
        let session = Session {
            seq: 0,
            applied_at: index,
            last_use: index,
            response: Box::default(),
        };
        self.digest ^= session.digest(index);
        if let Some(old) = self.table.insert(index, session) {
            // An index opens at most one session; a replayed entry replaces its own.
            self.digest ^= old.digest(index);
            self.by_use.remove(&old.last_use);
        }
        self.by_use.insert(index, index);
    }

    /// What to do with request `id` carried by the entry at `index`. A request under a live
    /// session counts as its use at `index` (retries too): it moves to the back of the
    /// eviction order.
    pub(crate) fn check(&mut self, id: RequestId, index: Index) -> Check<'_> {
        let Some(session) = self.table.get_mut(&id.client) else {
            return Check::Expired;
        };
        if index > session.last_use {
            self.digest ^= session.digest(id.client);
            self.by_use.remove(&session.last_use);
            session.last_use = index;
            self.by_use.insert(index, id.client);
            self.digest ^= session.digest(id.client);
        }
        if id.seq <= session.seq {
            Check::Retry {
                applied_at: session.applied_at,
                response: &session.response,
            }
        } else {
            Check::Apply
        }
    }

    /// Records that request `id` applied at `index` and answered `response` (encoded).
    pub(crate) fn record(&mut self, id: RequestId, index: Index, response: Vec<u8>) {
        let Some(session) = self.table.get_mut(&id.client) else {
            return;
        };
        self.digest ^= session.digest(id.client);
        session.seq = id.seq;
        session.applied_at = index;
        session.response = response.into_boxed_slice();
        self.digest ^= session.digest(id.client);
    }

    /// Sessions held.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Sessions evicted so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The digest of the table (see the field).
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }
}

/// One session as a snapshot holds it: `(id, seq, applied_at, last_use, response)`.
type Row = (u64, u64, Index, Index, Vec<u8>);

/// The table in a snapshot: the eviction count and one row per session, by id.
#[derive(Serialize)]
struct ImageOut<'a> {
    evicted: u64,
    sessions: Rows<'a>,
}

/// The rows of a table, serialized straight from it (no copy of a large table).
struct Rows<'a>(&'a BTreeMap<u64, Session>);

impl Serialize for Rows<'_> {
    fn serialize<Ser: Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.collect_seq(
            self.0
                .iter()
                .map(|(&client, x)| (client, x.seq, x.applied_at, x.last_use, &*x.response)),
        )
    }
}

#[derive(Deserialize)]
struct ImageIn {
    evicted: u64,
    sessions: Vec<Row>,
}

impl Serialize for Sessions {
    fn serialize<Ser: Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        ImageOut {
            evicted: self.evicted,
            sessions: Rows(&self.table),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sessions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let image = ImageIn::deserialize(d)?;
        let mut sessions = Sessions {
            evicted: image.evicted,
            ..Sessions::default()
        };
        for (client, seq, applied_at, last_use, response) in image.sessions {
            let session = Session {
                seq,
                applied_at,
                last_use,
                response: response.into_boxed_slice(),
            };
            if sessions.by_use.insert(last_use, client).is_some() {
                return Err(serde::de::Error::custom(
                    "two sessions last used at the same index",
                ));
            }
            sessions.digest ^= session.digest(client);
            sessions.table.insert(client, session);
        }
        Ok(sessions)
    }
}

/// Estimated heap bytes per session of a large table whose responses are `response_len`
/// bytes long, from the sizes of its parts: a `BTreeMap` node holds 11 slots (an internal
/// node 12 child pointers more) and keys inserted in increasing order, as session ids and
/// use indices are, leave each node with about 6 of them; every allocation costs the
/// allocator a word of header and rounds up to 16 bytes (glibc, 64-bit: 32 bytes at least).
#[cfg(test)]
pub(crate) fn estimated_bytes_per_session(response_len: usize) -> f64 {
    fn chunk(bytes: usize) -> f64 {
        (bytes + 8).div_ceil(16).max(2) as f64 * 16.0
    }
    fn per_entry(key: usize, value: usize) -> f64 {
        const SLOTS: usize = 11;
        const FILL: f64 = 6.0;
        // Keys, values, the parent pointer, the parent index and length (2 bytes each).
        let leaf = (SLOTS * (key + value) + 8 + 4).next_multiple_of(8);
        let internal = leaf + (SLOTS + 1) * 8;
        chunk(leaf) / FILL + chunk(internal) / (FILL * (FILL + 1.0))
    }
    let table = per_entry(8, std::mem::size_of::<Session>());
    let by_use = per_entry(8, 8);
    let response = if response_len == 0 {
        0.0
    } else {
        chunk(response_len)
    };
    table + by_use + response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: u64, seq: u64) -> RequestId {
        RequestId { client, seq }
    }

    #[test]
    fn a_retry_is_answered_from_the_table_and_an_unknown_session_has_expired() {
        let mut s = Sessions::default();
        s.open(5, 10);
        assert_eq!(s.check(id(5, 1), 6), Check::Apply);
        s.record(id(5, 1), 6, vec![42]);
        assert_eq!(
            s.check(id(5, 1), 7),
            Check::Retry {
                applied_at: 6,
                response: &[42]
            }
        );
        assert_eq!(s.check(id(5, 2), 8), Check::Apply);
        assert_eq!(s.check(id(6, 1), 9), Check::Expired, "6 was never opened");
    }

    #[test]
    fn the_least_recently_used_session_is_evicted_at_the_cap() {
        let mut s = Sessions::default();
        s.open(1, 2);
        s.open(2, 2);
        // Session 1 is used after 2 was opened: 2 is now the least recently used.
        assert_eq!(s.check(id(1, 1), 3), Check::Apply);
        s.record(id(1, 1), 3, vec![1]);
        s.open(4, 2);
        assert_eq!((s.len(), s.evicted()), (2, 1));
        assert_eq!(s.check(id(2, 1), 5), Check::Expired);
        assert!(matches!(s.check(id(1, 1), 6), Check::Retry { .. }));
        // A lower cap in a later entry evicts down to it.
        s.open(7, 1);
        assert_eq!((s.len(), s.evicted()), (1, 3));
        assert_eq!(s.check(id(7, 1), 8), Check::Apply);
    }

    #[test]
    fn the_digest_depends_on_the_table_alone_and_survives_a_snapshot() {
        let build = |uses: &[(u64, Index)]| {
            let mut s = Sessions::default();
            s.open(1, 10);
            s.open(2, 10);
            for &(client, index) in uses {
                if s.check(id(client, index), index) == Check::Apply {
                    s.record(id(client, index), index, vec![index as u8]);
                }
            }
            s
        };
        let a = build(&[(1, 3), (2, 4)]);
        let b = build(&[(1, 3), (2, 4)]);
        let c = build(&[(2, 3), (1, 4)]);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        let bytes = postcard::to_allocvec(&a).unwrap();
        let restored: Sessions = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(restored.digest(), a.digest());
        assert_eq!(restored.table, a.table);
        assert_eq!(restored.by_use, a.by_use);
        assert_eq!(restored.evicted(), a.evicted());
    }
}
