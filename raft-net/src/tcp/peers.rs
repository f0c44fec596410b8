//! The TCP transport's peers, added and removed at runtime without a lock on the send path.
//!
//! # The table
//!
//! [`PeerTable`] is a fixed array of cells, sized at start for `max_peers` (twice that many
//! cells, rounded up to a power of two, so a probe sequence is short and always meets an
//! empty cell). A peer id's cell is found by hashing the id and probing linearly. A cell is
//! filled once ([`OnceLock`]) with that id's [`PeerSlot`] the first time the id is added and is
//! never emptied: removing a peer marks its slot inactive, and adding the id again reuses the
//! slot. Cells only ever go from empty to filled, so a lookup that meets an empty cell knows
//! the id has no slot.
//!
//! The send path ([`crate::Transport::send`], many tasks, every message) reads the table with
//! `OnceLock::get` (an acquire load per probed cell) and the slot's `active` flag (one
//! acquire load): no lock, no await, no `watch` borrow. Only `add_peer` writes cells; two
//! `add_peer` calls racing for the same empty cell are ordered by the `OnceLock` (the loser
//! waits for the winner's initialisation, which only moves an `Arc` into the cell, then probes
//! on). The send path never waits: it only calls `get`.
//!
//! # A slot
//!
//! A [`PeerSlot`] holds the peer's bounded send queues (heartbeat, data, bulk), its counters,
//! its `active` flag, and the sending half of a `watch` cell holding its [`Target`]: the
//! addresses its links dial (`None` while removed) and the number of removals so far. The
//! slot's two link tasks (heartbeat and data lane) and every inbound reader authenticated as
//! that peer hold receivers of that cell:
//!
//! - a link dials the addresses of its lane; when they change it closes its connection and
//!   dials the new ones; when the removal count grows it closes its connection and drops
//!   (and counts, `dropped_removed`) what is queued; while the target is `None` it dials
//!   nobody and drops whatever still reaches its queues;
//! - an inbound reader closes its connection as soon as the removal count differs from the
//!   one it saw when the peer's handshake was accepted: removing a peer closes its
//!   established inbound connections at once, idle or not.
//!
//! A `watch` cell is a latest-value channel: changing the target never blocks and never
//! fails, and a link that was busy sees only the newest target; the removal count makes sure
//! a remove followed at once by a re-add still closes the old connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::PeerAddrs;
use crate::metrics::PeerCounters;
use crate::transport::{Lane, NodeId};

/// Where a peer's links should be connected, published to its link tasks and readers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Target {
    /// The peer's listeners; `None` while the peer is removed.
    pub(crate) addrs: Option<PeerAddrs>,
    /// How many times the peer has been removed. A reader or link that saw another count
    /// closes its connection.
    pub(crate) removals: u64,
}

impl Target {
    /// The address `lane`'s link should dial, if any.
    pub(crate) fn addr(&self, lane: Lane) -> Option<std::net::SocketAddr> {
        self.addrs.map(|a| a.lane(lane))
    }
}

/// One peer: its queues, counters, state and target. Created on the first `add_peer` of its
/// id and kept for the transport's life.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    pub(crate) id: NodeId,
    /// Whether the peer is active (added and not removed since): `send` refuses an inactive
    /// peer with `UnknownPeer`, and the listeners refuse its handshakes.
    ///
    /// Contract: written only inside `target`'s `send_if_modified` closure, so writes are
    /// serialised by the `watch` cell and the flag always equals `target.addrs.is_some()` for
    /// anyone who reads both after a change. Stored with `Release`, loaded with `Acquire`:
    /// whoever sees `true` also sees the target published with it. Nothing else is published
    /// through it; a reader that must not miss a removal subscribes to `target` *before*
    /// loading the flag (see the listener), so a removal after its load still reaches it.
    active: AtomicBool,
    target: watch::Sender<Target>,
    pub(crate) heartbeat: flume::Sender<Bytes>,
    pub(crate) data: flume::Sender<Bytes>,
    pub(crate) bulk: flume::Sender<Bytes>,
    pub(crate) counters: Arc<PeerCounters>,
}

/// The receiving ends of a new slot's queues, for its link tasks.
pub(crate) struct SlotQueues {
    pub(crate) heartbeat: flume::Receiver<Bytes>,
    pub(crate) data: flume::Receiver<Bytes>,
    pub(crate) bulk: flume::Receiver<Bytes>,
}

/// Capacities of a slot's queues (from `TcpConfig`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueCapacities {
    pub(crate) heartbeat: usize,
    pub(crate) data: usize,
    pub(crate) bulk: usize,
}

impl PeerSlot {
    /// A new, inactive slot with no target, and its queues' receiving ends.
    pub(crate) fn new(id: NodeId, caps: QueueCapacities) -> (Self, SlotQueues) {
        let (hb_tx, hb_rx) = flume::bounded(caps.heartbeat);
        let (data_tx, data_rx) = flume::bounded(caps.data);
        let (bulk_tx, bulk_rx) = flume::bounded(caps.bulk);
        let (target, _) = watch::channel(Target::default());
        let slot = Self {
            id,
            active: AtomicBool::new(false),
            target,
            heartbeat: hb_tx,
            data: data_tx,
            bulk: bulk_tx,
            counters: Arc::default(),
        };
        let queues = SlotQueues {
            heartbeat: hb_rx,
            data: data_rx,
            bulk: bulk_rx,
        };
        (slot, queues)
    }

    /// Whether the peer is active now (see the field's contract).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Activates the peer at `addrs` (idempotent: the links are told only if the target
    /// changes).
    pub(crate) fn activate(&self, addrs: PeerAddrs) {
        self.target.send_if_modified(|t| {
            self.active.store(true, Ordering::Release);
            if t.addrs == Some(addrs) {
                return false;
            }
            t.addrs = Some(addrs);
            true
        });
    }

    /// Deactivates the peer: its links close and drop what is queued, its readers close.
    /// Idempotent: removing a removed peer changes nothing.
    pub(crate) fn deactivate(&self) {
        self.target.send_if_modified(|t| {
            if t.addrs.is_none() {
                return false;
            }
            self.active.store(false, Ordering::Release);
            t.addrs = None;
            t.removals += 1;
            true
        });
    }

    /// A receiver of the target, which has seen the current value.
    pub(crate) fn watch(&self) -> watch::Receiver<Target> {
        self.target.subscribe()
    }
}

/// The table is full: `max_peers` distinct ids already have a slot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TableFull;

/// What [`PeerTable::get_or_insert`] found or made.
pub(crate) enum Entry<'a, T> {
    /// The id already had a slot.
    Existing(&'a Arc<PeerSlot>),
    /// A slot was made for the id; `T` (its queues' receivers) goes to its new link tasks.
    New(&'a Arc<PeerSlot>, T),
}

/// Fixed-capacity, insert-only map from peer id to slot; see the module docs.
#[derive(Debug)]
pub(crate) struct PeerTable {
    cells: Box<[OnceLock<Arc<PeerSlot>>]>,
    /// `cells.len() - 1`; the length is a power of two.
    mask: usize,
    max_peers: usize,
    /// Cells filled or claimed by an `add_peer` under way; at most `max_peers`, so at least
    /// half the cells stay empty and every probe sequence meets one.
    ///
    /// Contract: a count only, bounding insertions; the slots themselves are published by
    /// their `OnceLock`. Relaxed is enough: the read-modify-write operations on this one
    /// atomic are totally ordered whatever the ordering, which is all the bound needs.
    claimed: AtomicUsize,
}

impl PeerTable {
    /// A table for up to `max_peers` distinct ids (`1..=MAX_PEERS_LIMIT`, validated).
    pub(crate) fn new(max_peers: usize) -> Self {
        let len = max_peers.max(1).saturating_mul(2).next_power_of_two();
        Self {
            cells: (0..len).map(|_| OnceLock::new()).collect(),
            mask: len - 1,
            max_peers,
            claimed: AtomicUsize::new(0),
        }
    }

    /// The most distinct ids this table holds.
    pub(crate) fn max_peers(&self) -> usize {
        self.max_peers
    }

    /// Where `id`'s probe sequence starts: a fixed mix of its bits (SplitMix64's finaliser),
    /// so ids that differ in a few low bits land far apart.
    fn home(&self, id: NodeId) -> usize {
        let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Only the low bits are kept; truncating on 32-bit targets is intended.
        (z as usize) & self.mask
    }

    /// The slot of `id`, active or not. Never blocks.
    pub(crate) fn get(&self, id: NodeId) -> Option<&Arc<PeerSlot>> {
        let mut i = self.home(id);
        for _ in 0..self.cells.len() {
            match self.cells[i].get() {
                None => return None,
                Some(slot) if slot.id == id => return Some(slot),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// The slot of `id`, made with `make` if the id has none and the table has room.
    pub(crate) fn get_or_insert<T>(
        &self,
        id: NodeId,
        make: impl FnOnce() -> (PeerSlot, T),
    ) -> Result<Entry<'_, T>, TableFull> {
        if let Some(slot) = self.get(id) {
            return Ok(Entry::Existing(slot));
        }
        let claim = self
            .claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_peers).then_some(n + 1)
            });
        if claim.is_err() {
            return Err(TableFull);
        }
        let (slot, extra) = make();
        let slot = Arc::new(slot);
        let mut i = self.home(id);
        for _ in 0..self.cells.len() {
            let cell = &self.cells[i];
            let held = cell.get_or_init(|| slot.clone());
            if Arc::ptr_eq(held, &slot) {
                return Ok(Entry::New(held, extra));
            }
            if held.id == id {
                // Another add_peer of the same id won the race: use its slot, free our claim.
                self.claimed.fetch_sub(1, Ordering::Relaxed);
                return Ok(Entry::Existing(held));
            }
            i = (i + 1) & self.mask;
        }
        // Unreachable: at most `max_peers` of at least `2 * max_peers` cells are filled.
        self.claimed.fetch_sub(1, Ordering::Relaxed);
        Err(TableFull)
    }

    /// Every slot, active or not, in table order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Arc<PeerSlot>> {
        self.cells.iter().filter_map(OnceLock::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: QueueCapacities = QueueCapacities {
        heartbeat: 1,
        data: 1,
        bulk: 1,
    };

    fn addrs(port: u16) -> PeerAddrs {
        PeerAddrs {
            data: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            heartbeat: std::net::SocketAddr::from(([127, 0, 0, 1], port + 1)),
        }
    }

    fn insert(t: &PeerTable, id: NodeId) -> Result<bool, TableFull> {
        t.get_or_insert(id, || PeerSlot::new(id, CAPS))
            .map(|e| matches!(e, Entry::New(..)))
    }

    #[test]
    fn ids_get_one_slot_each_up_to_the_limit() {
        let t = PeerTable::new(5);
        // Ids that collide in the low bits, and large ones.
        let ids = [1u64, 1 << 32, 2 << 32, u64::MAX, 7];
        for id in ids {
            assert_eq!(insert(&t, id), Ok(true), "id {id}");
            assert_eq!(insert(&t, id), Ok(false), "id {id} again");
        }
        for id in ids {
            assert_eq!(t.get(id).map(|s| s.id), Some(id));
        }
        assert!(t.get(8).is_none());
        assert_eq!(insert(&t, 8), Err(TableFull));
        assert_eq!(t.slots().count(), 5);
        // A known id is still found with the table full.
        assert_eq!(insert(&t, 7), Ok(false));
    }

    #[test]
    fn activation_is_idempotent_and_removal_counts() {
        let (slot, _queues) = PeerSlot::new(3, CAPS);
        let mut rx = slot.watch();
        assert!(!slot.is_active());
        slot.activate(addrs(10));
        assert!(slot.is_active());
        assert!(rx.has_changed().unwrap());
        let seen = *rx.borrow_and_update();
        assert_eq!(seen.addrs, Some(addrs(10)));
        slot.activate(addrs(10));
        assert!(
            !rx.has_changed().unwrap(),
            "same addresses: links not woken"
        );
        slot.deactivate();
        slot.deactivate();
        assert!(!slot.is_active());
        assert_eq!(
            *rx.borrow_and_update(),
            Target {
                addrs: None,
                removals: 1
            }
        );
        slot.activate(addrs(20));
        assert!(slot.is_active());
        assert_eq!(
            rx.borrow_and_update().addr(Lane::Heartbeat),
            Some(addrs(20).heartbeat)
        );
    }

    #[test]
    fn racing_inserts_of_one_id_share_a_slot() {
        let t = Arc::new(PeerTable::new(4));
        let handles: Vec<_> = (0..8)
            .map(|k| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let id = k % 2;
                    insert(&t, id).map(|_| Arc::as_ptr(t.get(id).expect("inserted")) as usize)
                })
            })
            .collect();
        let mut ptrs = [Vec::new(), Vec::new()];
        for (k, h) in handles.into_iter().enumerate() {
            ptrs[k % 2].push(h.join().expect("thread").expect("room"));
        }
        for p in ptrs {
            assert!(p.windows(2).all(|w| w[0] == w[1]));
        }
        assert_eq!(t.slots().count(), 2);
        // Two claims left: the racers that lost gave theirs back.
        assert_eq!(insert(&t, 10), Ok(true));
        assert_eq!(insert(&t, 11), Ok(true));
        assert_eq!(insert(&t, 12), Err(TableFull));
    }
}
