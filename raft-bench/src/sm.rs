//! The benchmark's state machine: counts applied writes and bytes, answers with the index.

use raft_actor::StateMachine;
use serde::{Deserialize, Serialize};

/// A write's payload (opaque bytes of `--payload` length), encoded as one byte string.
#[derive(Clone, Debug)]
pub struct Write(pub Vec<u8>);

impl Serialize for Write {
    fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Write {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Write;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Write, E> {
                Ok(Write(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Write, E> {
                Ok(Write(v))
            }
        }
        d.deserialize_byte_buf(Bytes)
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
        self.writes += 1;
        self.bytes += command.0.len() as u64;
        self.checksum = command.0.iter().fold(self.checksum ^ index, |h, b| {
            h.rotate_left(5) ^ u64::from(*b)
        });
        index
    }

    fn query(&self, _query: ()) -> u64 {
        self.writes
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&(self.writes, self.bytes, self.checksum)).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let (writes, bytes, checksum) =
            postcard::from_bytes(snapshot).map_err(|e| format!("bad bench snapshot: {e}"))?;
        *self = BenchSm {
            writes,
            bytes,
            checksum,
        };
        Ok(())
    }
}
