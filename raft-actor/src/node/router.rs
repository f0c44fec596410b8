//! The router: hands each data-lane message to its group, a peer's answer to replication
//! straight to the replicator of that peer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use raft_core::{Message, NodeId};
use raft_net::Envelope;
use tokio::sync::watch;
use tracing::{Instrument, debug, info_span, warn};

use super::registry::{GroupEntry, Table};
use crate::group::messages::ToReplicator;
use crate::kill::Kill;
use crate::state_machine::StateMachine;
use crate::wire::WireMsg;

/// Hands data-lane messages to their group's partition (drop and count when its queue is full
/// or the group is unknown: Raft retransmits, I2, docs/architecture.md).
struct Router<S: StateMachine> {
    rx: flume::Receiver<Envelope<WireMsg>>,
    table: watch::Receiver<Table<S>>,
    unknown: Arc<AtomicU64>,
}

/// Spawns the router of node `node` over the transport's data lane.
pub(super) fn spawn<S: StateMachine>(
    kill: &Kill,
    node: NodeId,
    rx: flume::Receiver<Envelope<WireMsg>>,
    table: watch::Receiver<Table<S>>,
    unknown: Arc<AtomicU64>,
) {
    let router = Router { rx, table, unknown };
    kill.spawn(router.run().instrument(info_span!("router", node)));
}

impl<S: StateMachine> Router<S> {
    async fn run(mut self) {
        // The router's own copy of the table, taken again only after the registry publishes
        // a change (an atomic load per message to see that; a `borrow` per message would
        // take the channel's read lock, a cache line every `Node::propose` caller touches).
        let mut table = self.table.borrow_and_update().clone();
        loop {
            // Waits only when nothing is queued; then the end of the registry (its table's
            // sender dropped, at shutdown) ends the router too.
            let env = match self.rx.try_recv() {
                Ok(env) => env,
                Err(flume::TryRecvError::Disconnected) => break,
                Err(flume::TryRecvError::Empty) => tokio::select! {
                    biased;
                    r = self.rx.recv_async() => match r {
                        Ok(env) => env,
                        Err(_) => break,
                    },
                    r = self.table.changed() => {
                        if r.is_err() {
                            break;
                        }
                        table = self.table.borrow_and_update().clone();
                        continue;
                    }
                },
            };
            if self.table.has_changed().unwrap_or(false) {
                table = self.table.borrow_and_update().clone();
            }
            let WireMsg::Raft(m) = env.msg else {
                warn!(from = env.from, "heartbeat frame on the data lane; dropped");
                continue;
            };
            if m.from != env.from {
                warn!(
                    from = env.from,
                    claimed = m.from,
                    "message claims another sender; dropped"
                );
                continue;
            }
            // A peer's answer to this node's replication goes straight to the replicator of
            // that peer when there is one (one hop fewer than through the partition, which
            // only forwarded it); a replicator that sees a higher term in it tells the
            // partition.
            let sent = table
                .get(env.group)
                .filter(|e| !e.removed)
                .map(|e| deliver(e, m));
            match sent {
                Some(true) => {}
                Some(false) => {
                    debug!(group = env.group, "partition queue full; message dropped");
                }
                None => {
                    self.unknown.fetch_add(1, Ordering::Relaxed);
                    debug!(
                        group = env.group,
                        from = env.from,
                        "message for an unknown group; dropped"
                    );
                }
            }
        }
    }
}

/// Hands `m` to its group: a peer's answer to replication to the replicator of that peer if
/// there is one (dropped and counted if its queue is full), anything else to the partition.
/// False when the partition's queue is full.
fn deliver<S: StateMachine>(e: &GroupEntry<S>, m: Message) -> bool {
    if ToReplicator::takes(&m) {
        if let Some(tx) = e.handle.acks.borrow().get(&m.from) {
            if tx.try_send(ToReplicator::Response(m)).is_err() {
                e.stats.dropped_messages.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        }
    }
    e.handle.raft.try_send(m).is_ok()
}
