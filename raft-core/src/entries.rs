//! [`Entries`]: a run of consecutive log entries that is shared, not copied.
//!
//! One batch of entries is needed in several places at once: the leader's storage write, its
//! in-memory tail, one AppendEntries per follower, and on a follower its own storage write and
//! tail. A `Vec<Entry>` in each would mean a copy per place and a reference-count change per
//! entry payload per copy, on the hot path of every write. `Entries` holds the batch once,
//! behind an `Arc`, and every place holds a window of it: cloning or narrowing one costs one
//! reference-count change whatever its length. The entries themselves are immutable.
//!
//! On the wire it is a plain sequence of entries (postcard encodes it like a `Vec<Entry>`).

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::Entry;

/// An immutable window `range` of a shared buffer of entries.
#[derive(Clone, Default)]
pub struct Entries {
    buf: Option<Arc<Vec<Entry>>>,
    range: Range<usize>,
}

impl Entries {
    /// No entries (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries at positions `range` of this window (relative to its start), sharing the
    /// buffer.
    ///
    /// # Panics
    /// If `range` does not lie within `0..self.len()`, like slice indexing.
    pub fn slice(&self, range: Range<usize>) -> Entries {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "Entries::slice({range:?}) of {} entries",
            self.len()
        );
        if range.is_empty() {
            return Entries::new();
        }
        Entries {
            buf: self.buf.clone(),
            range: self.range.start + range.start..self.range.start + range.end,
        }
    }

    /// Drops the first `n` entries (all of them if there are fewer).
    pub fn skip_front(&mut self, n: usize) {
        let n = n.min(self.len());
        self.range.start += n;
        if self.range.is_empty() {
            *self = Entries::new();
        }
    }

    /// Keeps the first `n` entries (all of them if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.range.end = self.range.start + n;
            if self.range.is_empty() {
                *self = Entries::new();
            }
        }
    }

    /// Splits off the entries from position `at` on, leaving the first `at` here.
    ///
    /// # Panics
    /// If `at > self.len()`, like `Vec::split_off`.
    pub fn split_off(&mut self, at: usize) -> Entries {
        let tail = self.slice(at..self.len());
        self.truncate(at);
        tail
    }

    /// Whether `self` and `other` are windows of the same buffer (a test of sharing).
    pub fn shares_buffer_with(&self, other: &Entries) -> bool {
        match (&self.buf, &other.buf) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Deref for Entries {
    type Target = [Entry];

    #[inline]
    fn deref(&self) -> &[Entry] {
        match &self.buf {
            Some(buf) => &buf[self.range.clone()],
            None => &[],
        }
    }
}

impl AsRef<[Entry]> for Entries {
    fn as_ref(&self) -> &[Entry] {
        self
    }
}

impl From<Vec<Entry>> for Entries {
    fn from(v: Vec<Entry>) -> Self {
        if v.is_empty() {
            return Entries::new();
        }
        let len = v.len();
        Entries {
            // `Arc<Vec>`, not `Arc<[Entry]>`: wrapping the vector moves no entry (making an
            // `Arc<[Entry]>` copies them all, on the hot path of every proposal batch).
            buf: Some(Arc::new(v)),
            range: 0..len,
        }
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Entries {}

impl PartialEq<[Entry]> for Entries {
    fn eq(&self, other: &[Entry]) -> bool {
        **self == *other
    }
}

impl PartialEq<Vec<Entry>> for Entries {
    fn eq(&self, other: &Vec<Entry>) -> bool {
        **self == **other
    }
}

/// Hashes the entries in view, consistent with `PartialEq` (the model checker's state identity).
#[cfg(feature = "model")]
impl std::hash::Hash for Entries {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // As a sequence, exactly like the `Vec<Entry>` it replaced on the wire.
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Entry>::deserialize(d).map(Entries::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    fn batch(n: u64) -> Vec<Entry> {
        (1..=n)
            .map(|index| Entry {
                index,
                term: 1,
                payload: EntryPayload::Normal(vec![index as u8; 3].into()),
            })
            .collect()
    }

    fn indexes(e: &Entries) -> Vec<u64> {
        e.iter().map(|e| e.index).collect()
    }

    #[test]
    fn windows_share_one_buffer_and_see_only_their_part() {
        let all = Entries::from(batch(5));
        let mid = all.slice(1..4);
        assert_eq!(indexes(&mid), [2, 3, 4]);
        assert!(mid.shares_buffer_with(&all));
        assert_eq!(indexes(&mid.slice(1..3)), [3, 4]);
        let mut front = all.clone();
        let back = front.split_off(2);
        assert_eq!(
            (indexes(&front), indexes(&back)),
            (vec![1, 2], vec![3, 4, 5])
        );
        let mut s = all.clone();
        s.skip_front(3);
        assert_eq!(indexes(&s), [4, 5]);
        s.skip_front(10);
        assert!(
            s.is_empty() && !s.shares_buffer_with(&all),
            "an empty window lets go"
        );
        let mut t = all.clone();
        t.truncate(0);
        assert!(t.is_empty());
        assert!(all.slice(2..2).is_empty());
        assert_eq!(all, batch(5));
    }

    #[test]
    #[should_panic(expected = "Entries::slice")]
    fn a_window_past_the_end_is_refused() {
        let _ = Entries::from(batch(2)).slice(1..3);
    }

    #[test]
    fn encodes_exactly_like_a_vec() {
        let v = batch(4);
        let e = Entries::from(v.clone()).slice(1..3);
        let bytes = postcard::to_allocvec(&e).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&v[1..3].to_vec()).unwrap());
        let back: Entries = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, e);
        let empty: Entries =
            postcard::from_bytes(&postcard::to_allocvec(&Entries::new()).unwrap()).unwrap();
        assert!(empty.is_empty());
    }
}
