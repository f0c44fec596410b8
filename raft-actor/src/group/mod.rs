//! One Raft group on this node: its actors, the messages they exchange, and the one place
//! that builds every channel between them.
//!
//! - [`start`] recovers a group from storage (or bootstraps it) and calls [`spawn`], which
//!   builds the partition's and the apply actor's channels, registers the group with the
//!   storage and heartbeat actors and spawns both actors. [`spawn_replicator`] builds one
//!   replicator's channels when the partition starts leading or the membership grows.
//! - [`partition`] — the partition actor: drives the group's `PartitionCore`.
//! - [`replicator`] — one actor per peer while leading: drives a `ReplicatorCore`.
//! - [`apply`] — the user's state machine, client sessions, snapshots.
//! - [`sessions`] — the client-session table: bounded, replicated, inside snapshots.
//! - [`tail`] — the log's recent entries, shared read-only with replicators and apply.
//! - [`ticks`] — on-demand protocol ticks: an idle group arms no timer.
//! - [`messages`] — what the actors send each other.
//!
//! # Channel edges
//!
//! Every edge, its capacity (a [`NodeConfig`] field) and what happens when it is full:
//!
//! | from → to | channel | capacity | when full |
//! | --- | --- | --- | --- |
//! | API → partition | flume | `client_queue` | `try_send`: caller gets `Overloaded` |
//! | router → partition | flume | `raft_queue` | `try_send`: dropped and counted (Raft retransmits) |
//! | router → replicator (a peer's answers to this leader's AppendEntries and snapshot chunks, routed by the partition's published replicator queues) | flume | `replicator_queue` | `try_send`: dropped and counted (the replicator retransmits) |
//! | replicator / apply → partition | flume | `control_queue` | `try_send`: progress kept and re-sent on a tick armed for it |
//! | partition → each replicator (log/commit signal) | one-slot flume (`latest`) | latest value | the unread value is replaced; never blocks |
//! | partition → replicator ("peer reachable again", and answers that came before the router knew the replicator) | flume | `replicator_queue` | `try_send`: dropped and counted (a lost nudge leaves the retry to the replicator's own timeout) |
//! | partition → apply (waiters, reads) | flume | `client_queue + max_batch + 64` | room checked before the partition takes client work |
//! | partition → apply (commit index and log tail) | one-slot flume (`latest`) | latest value | the unread value is replaced; never blocks |
//! | apply → partition (applied index) | atomic position (`mailbox::position`) | latest value | never full |
//! | partition / replicator / apply → storage | flume | `storage_queue` | partition: kept in its backlog, no client work until drained; readers: retry next tick |
//! | storage → partition (persisted sequence, sticky error) | atomic position (`mailbox::position`) | latest value | never full |
//! | storage → readers | one-shot | 1 | never full |
//! | partition → heartbeat | flume | `heartbeat_queue` | `try_send`: role updates and contact reports retried on a tick armed for them |
//! | heartbeat → partition (timers, probes) | flume | `control_queue` | `try_send`: a timer fires again at the next interval; a probe that does not fit counts as unanswered (I6) |
//! | actors → transport | raft-net queues | per peer and lane | dropped and counted |
//! | API → registry (add/remove group, shutdown) | flume | 64 | the API call waits (not an actor) |
//! | partition → registry (the group's peers and their addresses; "removed from the group") | flume | `registry_queue` | `try_send`: retried on a tick armed for it |
//! | transport → router (data lane) | flume | raft-net inbound capacity | dropped and counted by raft-net |
//! | transport → heartbeat actor (heartbeat lane) | flume | raft-net inbound capacity | dropped and counted by raft-net |
//!
//! **No bounded cycle can deadlock:** no actor ever awaits a send on a bounded channel while
//! handling a message — every edge above is `try_send`, a latest value or a one-shot — so a full
//! queue never makes its sender wait, and no cycle of waiting senders can form. Replies
//! (storage reads, metrics) are separate events of the receiving actor's loop (I3); the only
//! awaited replies are at the API boundary and in the registry's group start, which no actor
//! waits on.

use std::collections::BTreeMap;
use std::sync::Arc;

use raft_core::{
    GroupId, Index, InitialState, Membership, Message, NodeId, PartitionCore, SnapshotMeta, Term,
};
use tokio::sync::{oneshot, watch};
use tracing::{Instrument, info, info_span};

use crate::config::NodeConfig;
use crate::error::Error;
use crate::heartbeat::HeartbeatHandle;
use crate::kill::Kill;
use crate::mailbox::bell::Bell;
use crate::mailbox::inbox::{self, InboxTx};
use crate::mailbox::latest::{self, LatestTx};
use crate::mailbox::position;
use crate::metrics::GroupStats;
use crate::state_machine::StateMachine;
use crate::storage::{StorageHandle, StorageRequest, WriteOp};
use crate::wire::Net;
use messages::{ClientReq, Control, ReplicateSignal, ToReplicator};

pub(crate) mod apply;
pub(crate) mod messages;
pub(crate) mod partition;
pub(crate) mod replicator;
pub(crate) mod sessions;
pub(crate) mod tail;
pub(crate) mod ticks;

/// Entries a partition keeps in memory for its replicators and apply actor (about).
const TAIL_ENTRIES: usize = 8192;

/// Where the router sends a peer's answers to this group's AppendEntries and snapshot
/// chunks: straight to the replicator of that peer, without a hop through the partition
/// (published by the partition whenever its set of replicators changes; empty unless
/// leading).
pub(crate) type AckRoutes = Arc<BTreeMap<NodeId, InboxTx<ToReplicator>>>;

/// A group's handle: only the senders of its partition's queues, and where its
/// replicators take their peers' answers.
pub(crate) struct GroupHandle<S: StateMachine> {
    pub(crate) client: InboxTx<ClientReq<S>>,
    pub(crate) raft: InboxTx<Message>,
    pub(crate) control: InboxTx<Control>,
    /// The current replicators' answer queues (latest value).
    pub(crate) acks: watch::Receiver<AckRoutes>,
}

impl<S: StateMachine> Clone for GroupHandle<S> {
    fn clone(&self) -> Self {
        GroupHandle {
            client: self.client.clone(),
            raft: self.raft.clone(),
            control: self.control.clone(),
            acks: self.acks.clone(),
        }
    }
}

/// What a group's actors need from their node.
pub(crate) struct Wiring {
    pub(crate) cfg: NodeConfig,
    pub(crate) group: GroupId,
    pub(crate) net: Net,
    pub(crate) storage: StorageHandle,
    pub(crate) heartbeat: HeartbeatHandle,
    pub(crate) stats: Arc<GroupStats>,
    /// The node's kill switch: every task of the group runs under it.
    pub(crate) kill: Kill,
    /// The registry's queue for what the group tells it (`registry_queue`, `try_send`).
    pub(crate) registry: flume::Sender<messages::ToRegistry>,
    /// Which start of this group on this node (a group removed and added again is another).
    pub(crate) incarnation: u64,
}

/// The partition's two edges to one replicator.
pub(crate) struct ReplicatorLink {
    /// Acknowledgements from the peer (bounded `replicator_queue`, `try_send`: drop and count).
    pub(crate) acks: InboxTx<ToReplicator>,
    /// Log and commit changes (latest value).
    pub(crate) signal: LatestTx<ReplicateSignal>,
}

/// Starts hosting `group` with `sm`: recovers it from storage when storage holds it (the given
/// `membership` is then ignored), otherwise bootstraps it with `membership` as its voters (or
/// as a joining node that waits for a leader, when `None`), then [`spawn`]s its actors.
///
/// Awaits storage: only the registry calls this, and storage never waits on the registry, so
/// this wait cannot close a cycle.
pub(crate) async fn start<S: StateMachine>(
    w: Wiring,
    membership: Option<Membership>,
    sm: S,
) -> Result<GroupHandle<S>, Error> {
    let group = w.group;
    let storage = &w.storage;
    let (tx, rx) = oneshot::channel();
    storage
        .send(StorageRequest::Recover { group, reply: tx })
        .await
        .map_err(|_| Error::Stopped)?;
    let recovered = rx
        .await
        .map_err(|_| Error::Stopped)?
        .map_err(|e| Error::Storage(e.to_string()))?;
    let (init, from, data) = match recovered {
        Some(r) => {
            if membership.is_some() {
                info!(
                    group,
                    "group found in storage; recovering it (the given membership is ignored)"
                );
            }
            let data = if r.snapshot.index > 0 {
                let (tx, rx) = oneshot::channel();
                storage
                    .send(StorageRequest::ReadSnapshot { group, reply: tx })
                    .await
                    .map_err(|_| Error::Stopped)?;
                rx.await
                    .map_err(|_| Error::Stopped)?
                    .map_err(|e| Error::Storage(e.to_string()))?
                    .map(|(_, reader)| reader)
            } else {
                None
            };
            let from = r.snapshot.clone();
            let init = InitialState::recover(r.hard_state, r.snapshot, &r.entries)
                .map_err(|e| Error::Storage(format!("group {group}: {e}")))?;
            (init, from, data)
        }
        None => {
            let m = membership.unwrap_or_default();
            let from = SnapshotMeta {
                index: 0,
                term: 0,
                membership: m.clone(),
            };
            if m != Membership::default() {
                // The initial configuration must be durable before the group promises
                // anything: it rides in the same group commit as the first vote. Without
                // it a restarted group would recover with no voters.
                let op = WriteOp::InitialConfig(from.clone());
                storage
                    .send(StorageRequest::Write { group, seq: 0, op })
                    .await
                    .map_err(|_| Error::Stopped)?;
            }
            (InitialState::bootstrap(m), from, None)
        }
    };
    spawn(w, init, sm, from, data).await
}

/// Builds every channel of a group's partition and apply actor, registers the group with the
/// storage actor (its persisted position) and the heartbeat actor, and spawns both actors on
/// the current (data) runtime under the node's kill switch. `apply_from` is the snapshot the
/// state machine starts from, `snapshot_data` a reader of its bytes.
pub(crate) async fn spawn<S: StateMachine>(
    w: Wiring,
    init: InitialState,
    state_machine: S,
    apply_from: SnapshotMeta,
    snapshot_data: Option<raft_storage::SnapshotReader>,
) -> Result<GroupHandle<S>, Error> {
    let cfg = w.cfg.clone();
    let group = w.group;
    let core =
        PartitionCore::new(cfg.group_config(), group, init).map_err(|e| Error::raft(group, e))?;
    // The partition's inputs, behind one bell.
    let bell = Bell::new();
    let (client_tx, client_rx) = inbox::bounded(cfg.client_queue, &bell);
    let (raft_tx, raft_rx) = inbox::bounded(cfg.raft_queue, &bell);
    let (control_tx, control_rx) = inbox::bounded(cfg.control_queue, &bell);
    let (persisted_tx, persisted_rx) = position::position(0, &bell);
    let (applied_tx, applied_rx) = position::position(apply_from.index, &bell);
    // The apply actor's inputs, behind another.
    let apply_bell = Bell::new();
    let (commit_tx, commit_rx) = latest::ringing(&apply_bell);
    // Apply queue: room for one waiter per queued client request, plus control traffic.
    let apply_cap = cfg.client_queue + cfg.max_batch + 64;
    let (apply_tx, apply_rx) = inbox::bounded(apply_cap, &apply_bell);
    let (acks_tx, acks_rx) = watch::channel(AckRoutes::default());
    w.storage
        .send(StorageRequest::Register {
            group,
            persisted: persisted_tx,
        })
        .await
        .map_err(|_| Error::Stopped)?;
    let apply = apply::ApplyActor::new(
        group,
        state_machine,
        apply_from,
        snapshot_data,
        apply::ApplyInputs {
            rx: apply_rx,
            commit_rx,
            bell: apply_bell,
        },
        applied_tx,
        control_tx.clone(),
        w.storage.clone(),
        w.stats.clone(),
    )?;
    let span = info_span!("apply", node = cfg.node_id, group);
    w.kill.spawn(apply.run().instrument(span));
    let registered = w
        .heartbeat
        .register(group, control_tx.clone(), w.stats.clone());
    let kill = w.kill.clone();
    let actor = partition::PartitionActor::new(
        w,
        core,
        partition::Inputs {
            bell,
            client_rx,
            raft_rx,
            control_rx,
            control_tx: control_tx.clone(),
            persisted_rx,
            applied_rx,
            apply_tx,
            apply_cap,
            commit_tx,
            acks_tx,
        },
        tail::Tail::new(TAIL_ENTRIES, cfg.tail_bytes),
        registered,
    );
    // term and role are recorded on every role change, so every log line of this actor
    // (and of its replicators, spawned inside it) says which term and role it ran in.
    let span = info_span!(
        "partition",
        node = cfg.node_id,
        group,
        term = tracing::field::Empty,
        role = tracing::field::Empty
    );
    kill.spawn(actor.run().instrument(span));
    Ok(GroupHandle {
        client: client_tx,
        raft: raft_tx,
        control: control_tx,
        acks: acks_rx,
    })
}

/// Builds one replicator's channels (its answer queue and its latest-value signal, behind
/// one bell) and spawns it for leadership epoch `term`, starting from `last` as the leader's
/// last index. The partition keeps the returned link and drops it to end the replicator.
pub(crate) fn spawn_replicator(
    w: &Wiring,
    peer: NodeId,
    term: Term,
    last: Index,
    control: InboxTx<Control>,
) -> ReplicatorLink {
    let bell = Bell::new();
    let (acks, responses) = inbox::bounded(w.cfg.replicator_queue, &bell);
    let (signal, signal_rx) = latest::ringing(&bell);
    let actor = replicator::ReplicatorActor::new(
        w,
        peer,
        term,
        last,
        replicator::Inputs {
            bell,
            responses,
            signal: signal_rx,
        },
        control,
    );
    let span = info_span!(
        "replicator",
        node = w.cfg.node_id,
        group = w.group,
        peer,
        term,
        role = "leader"
    );
    w.kill.spawn(actor.run().instrument(span));
    ReplicatorLink { acks, signal }
}
