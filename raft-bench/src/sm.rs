//! The benchmark's state machine: counts applied writes and bytes, answers with the index.

use std::io::{self, Read};

use bytes::Bytes;
use raft_actor::{SnapshotMeta, StateMachine};
use serde::{Deserialize, Serialize};

/// Decodes one byte string into whatever `.0` makes of it.
struct ByteString<F>(F);

impl<T, F: FnOnce(&[u8]) -> T> serde::de::Visitor<'_> for ByteString<F> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
        Ok((self.0)(v))
    }
}

/// The state machine's command. It is proposed as the payload's bytes and decoded from the log
/// as their digest: the decoder reads every byte but copies none (an allocation per write on
/// every node is a cost the benchmark would charge to the library).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// As proposed: the payload (shared, so a client sends it again without copying it).
    Payload(Bytes),
    /// As decoded for applying: the payload's length and hash.
    Digest {
        /// Bytes in the payload.
        len: u64,
        /// [`hash`] of the payload.
        hash: u64,
    },
}

/// The digest's hash: every byte mixed in, in order.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0, |h: u64, b| h.rotate_left(5) ^ u64::from(*b))
}

impl Write {
    /// The payload's length and hash.
    fn digest(&self) -> (u64, u64) {
        match self {
            Write::Payload(b) => (b.len() as u64, hash(b)),
            Write::Digest { len, hash } => (*len, *hash),
        }
    }
}

impl Serialize for Write {
    fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        match self {
            Write::Payload(b) => s.serialize_bytes(b),
            Write::Digest { .. } => Err(serde::ser::Error::custom(
                "a decoded write holds only its digest and cannot be encoded again",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Write {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(ByteString(|v: &[u8]| Write::Digest {
            len: v.len() as u64,
            hash: hash(v),
        }))
    }
}

/// Counts what it applied; the cheapest state machine that still touches every byte.
#[derive(Debug, Default)]
pub struct BenchSm {
    writes: u64,
    bytes: u64,
    checksum: u64,
}

impl StateMachine for BenchSm {
    type Command = Write;
    type Query = ();
    type Response = u64;

    fn apply(&mut self, index: u64, command: Write) -> u64 {
        let (len, hash) = command.digest();
        self.writes += 1;
        self.bytes += len;
        self.checksum = (self.checksum ^ index).rotate_left(7) ^ hash;
        index
    }

    fn query(&self, _query: ()) -> u64 {
        self.writes
    }

    fn snapshot(&self, out: &mut dyn io::Write) -> io::Result<()> {
        postcard::to_io(&(self.writes, self.bytes, self.checksum), out)
            .map_err(io::Error::other)?;
        Ok(())
    }

    fn restore(&mut self, _meta: &SnapshotMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut snapshot = Vec::new();
        data.read_to_end(&mut snapshot)?;
        let (writes, bytes, checksum) = postcard::from_bytes(&snapshot)
            .map_err(|e| io::Error::other(format!("bad bench snapshot: {e}")))?;
        *self = BenchSm {
            writes,
            bytes,
            checksum,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_decodes_as_the_digest_of_its_payload_and_a_digest_is_not_encoded() {
        let body = Bytes::from_static(b"sixteen byte pay");
        let wire = postcard::to_allocvec(&Write::Payload(body.clone())).unwrap();
        let decoded: Write = postcard::from_bytes(&wire).unwrap();
        assert_eq!(
            decoded,
            Write::Digest {
                len: 16,
                hash: hash(&body)
            }
        );
        assert_ne!(hash(b"ab"), hash(b"ba"), "order counts");
        assert!(postcard::to_allocvec(&decoded).is_err());
        // Applying either form counts the same.
        let (mut a, mut b) = (BenchSm::default(), BenchSm::default());
        a.apply(3, Write::Payload(body));
        b.apply(3, decoded);
        let (mut sa, mut sb) = (Vec::new(), Vec::new());
        a.snapshot(&mut sa).unwrap();
        b.snapshot(&mut sb).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(a.query(()), 1);
    }
}
