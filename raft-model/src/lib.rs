//! # raft-model: exhaustive model checking of raft-core's real state machines
//!
//! The model's state is a small cluster of real [`PartitionCore`]s and [`ReplicatorCore`]s, each
//! with the in-memory storage a runtime would give it, and a network. Every nondeterministic
//! choice a real deployment makes — which message arrives next, whether it is lost or arrives
//! twice, when a timer fires, when a disk write completes, when a node crashes, when a client
//! proposes — is an action of the model. The checker explores every reachable state within the
//! [`Bounds`] and checks the safety [properties](RaftModel) in each.
//!
//! No second copy of the protocol is written here: a transition feeds one input to the real
//! core and executes the [`raft_core::Action`]s it emits, as raft-actor and the raft-core test
//! cluster do.
//!
//! ## Why stateright
//! Candidates compared (issue 33):
//! - **stateright** (chosen): an explicit-state checker for Rust models. It gives, for free,
//!   breadth-first search with fingerprint deduplication (a state is stored as a 64-bit hash,
//!   not a copy, so a million states cost tens of MB), counterexample paths that are
//!   reconstructed by replaying actions (so they print as a sequence of events a unit test can
//!   replay), `always`/`sometimes`/`eventually` properties, a depth target and multi-threaded
//!   search, and a web explorer for a model under debugging. It is maintained, MIT-licensed,
//!   and its model trait (`init_states`, `actions`, `next_state`) is exactly the shape of
//!   raft-core's contract (events in, actions out).
//! - **A hand-written BFS** over the cores: no dependency, but it would re-implement
//!   deduplication, path reconstruction, liveness and reporting that stateright already has
//!   and tests. Worth it only if stateright's dependency cost or behaviour got in the way; it
//!   did not (the dependency is dev-only, in this unpublished crate).
//! - **kani** (bounded model checking by symbolic execution, CBMC): proves properties of one
//!   function over all inputs; it does not scale to sequences of dozens of protocol steps over
//!   three cores with `BTreeMap`s and `Arc`s, and needs its own toolchain, which CI cannot
//!   download.
//! - **loom**: explores thread interleavings of concurrent code; raft-core has no threads
//!   (already used for raft-actor's mailbox, I1).
//! - **A TLA+ specification** (as etcd-raft has): a second copy of the protocol that can drift
//!   from the code, the very thing this crate avoids; it also needs a JVM.
//!
//! ## Why a crate of its own
//! The checker needs `Clone` on [`PartitionCore`], which raft-core gives only behind its
//! `model` feature (additive derives, no behaviour change). A separate, unpublished crate keeps
//! stateright and that feature out of raft-core's own builds and tests, and out of every crate
//! that depends on raft-core; `cargo test -p raft-model` runs it alone.
//!
//! ## State identity
//! [`PartitionCore`] has no `Hash`/`Eq`. raft-core's `model` feature derives `Hash` (and
//! `Clone`) on the core and every part of its state, behind `#[cfg_attr(feature = "model",
//! ...)]`, so a build without the feature is unchanged. The checker identifies a state by a
//! 64-bit hash of every field (stateright's fingerprint). A first version hashed the `Debug`
//! rendering instead (no change to raft-core beyond `Clone`), but that cost 40 µs a state
//! against 5 µs, and was the bottleneck. `PartialEq` compares the `Debug` renderings (complete:
//! every type derives `Debug` over all its fields; `Entries`' manual impl lists every entry);
//! stateright uses it only to rebuild counterexample paths.
//!
//! ## Abstractions
//! - The network is a *set* of messages; delivering one may keep it (a duplicate arrives
//!   later) or consume it, and any message may be dropped. With any message deliverable at any
//!   time this covers reordering, loss and duplication with fewer states than a multiset.
//! - A disk write completes as its own action, oldest first (writes are durable in order).
//!   A crash loses the pending writes and restarts the node from what is durable, at once.
//! - Timers: `Tick` advances one node's logical clock until one of its timers fires (an
//!   election, a heartbeat, check-quorum, a replicator's probe), with small tick counts
//!   (elections after 2 to 3 ticks, heartbeats every tick). The silent ticks before it are not
//!   states of their own: they change only counters, and any timer may still fire at any
//!   point relative to the other events. What is lost is a timer that has partly run when a
//!   message resets it — states that differ from the ones kept only in a counter.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use raft_core::{
    Action, Config, Entry, HardState, Index, InitialState, Membership, Message, MessageBody,
    NodeId, PartitionCore, Plan, ReplicatorCore, Role, SnapshotMeta, Term,
};
use stateright::{Model, Property};

pub mod report;

/// Limits that make the state space finite. A state past a limit is checked but not expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Number of nodes (all voters).
    pub nodes: u64,
    /// Highest term a node may reach.
    pub max_term: Term,
    /// Longest log (entries, no-ops included).
    pub max_log: Index,
    /// Most distinct messages in flight: a message sent when the network is full is lost.
    pub max_msgs: usize,
    /// Most client proposals over a run.
    pub max_proposals: u8,
    /// Most crashes (with restart) over a run.
    pub max_crashes: u8,
    /// Most [`Event::Tick`]s over a run, all nodes together. Needed for finiteness: a leader's
    /// lease clock counts its ticks since it took office and never wraps.
    pub max_ticks: u8,
    /// Most disk writes one node issues over a run. Needed for finiteness: a granted vote is
    /// written again each time a duplicate of its request arrives, with a new sequence number.
    pub max_writes: u8,
    /// Most duplicated deliveries over a run. Needed for finiteness: each message that resets
    /// a follower's election timer draws the next randomized timeout, moving its generator.
    pub max_duplicates: u8,
    /// Most messages in flight on one directed link (0: only `max_msgs` limits); a message
    /// sent on a full link is lost.
    pub max_per_link: usize,
}

impl Bounds {
    /// The bound CI runs (about 30 s on 2 cores, every state explored). Small: with at most
    /// 2 messages in flight a new leader's appends are lost behind its heartbeats and its
    /// timer firings are spent, so no entry commits within it (see MODEL_STATUS.md).
    pub fn ci() -> Self {
        Bounds {
            nodes: 3,
            max_term: 2,
            max_log: 2,
            max_msgs: 2,
            max_proposals: 1,
            max_crashes: 0,
            max_ticks: 3,
            max_writes: 3,
            max_duplicates: 0,
            max_per_link: 0,
        }
    }

    /// A deeper bound, for a run by hand (`RAFT_MODEL_BOUND=deep`).
    pub fn deep() -> Self {
        Bounds {
            nodes: 3,
            max_term: 3,
            max_log: 3,
            max_msgs: 4,
            max_proposals: 2,
            max_crashes: 1,
            max_ticks: 10,
            max_writes: 6,
            max_duplicates: 2,
            max_per_link: 0,
        }
    }

    /// The bound `RAFT_MODEL_BOUND` names: `ci` (the default), `deep`, or a list of
    /// `key=value` changes to the CI bound, say `term=3,log=3,msgs=4,proposals=2,crashes=1`.
    /// Unknown keys and bad values are ignored (the CI value stays).
    pub fn from_env() -> Self {
        let spec = std::env::var("RAFT_MODEL_BOUND").unwrap_or_default();
        Bounds::parse(&spec)
    }

    /// See [`Bounds::from_env`].
    pub fn parse(spec: &str) -> Self {
        match spec.trim() {
            "deep" => return Bounds::deep(),
            "" | "ci" => return Bounds::ci(),
            _ => {}
        }
        let mut b = Bounds::ci();
        for kv in spec.split(',') {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.trim().parse::<u64>() else {
                continue;
            };
            match k.trim() {
                "nodes" => b.nodes = v,
                "term" => b.max_term = v,
                "log" => b.max_log = v,
                "msgs" => b.max_msgs = usize::try_from(v).unwrap_or(b.max_msgs),
                "proposals" => b.max_proposals = u8::try_from(v).unwrap_or(b.max_proposals),
                "crashes" => b.max_crashes = u8::try_from(v).unwrap_or(b.max_crashes),
                "ticks" => b.max_ticks = u8::try_from(v).unwrap_or(b.max_ticks),
                "writes" => b.max_writes = u8::try_from(v).unwrap_or(b.max_writes),
                "dups" => b.max_duplicates = u8::try_from(v).unwrap_or(b.max_duplicates),
                "link" => b.max_per_link = usize::try_from(v).unwrap_or(b.max_per_link),
                _ => {}
            }
        }
        b
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes {}, term <= {}, log <= {}, messages in flight <= {}, proposals <= {}, crashes <= {}, timer firings <= {}, writes per node <= {}, duplicates <= {}, per link <= {}",
            self.nodes,
            self.max_term,
            self.max_log,
            self.max_msgs,
            self.max_proposals,
            self.max_crashes,
            self.max_ticks,
            self.max_writes,
            self.max_duplicates,
            self.max_per_link
        )
    }
}

/// A disk write that is not yet durable.
#[derive(Clone, Debug, Hash)]
pub enum Write {
    /// Term and vote.
    Hard(u64, HardState),
    /// A truncation (from the index) and an append.
    Entries(u64, Option<Index>, Vec<Entry>),
}

impl Write {
    fn seq(&self) -> u64 {
        match self {
            Write::Hard(s, _) | Write::Entries(s, _, _) => *s,
        }
    }
}

/// One node: its core, its replicators while it leads, its storage and state machine.
#[derive(Clone, Debug, Hash)]
pub struct NodeState {
    /// The real protocol core.
    pub core: PartitionCore,
    /// The log as the core intends it (written at once; the disk lags behind in `pending`).
    pub log: Vec<Entry>,
    /// Durable term and vote.
    pub durable_hard: HardState,
    /// Durable log.
    pub durable_log: Vec<Entry>,
    /// Writes issued and not yet durable, oldest first.
    pub pending: Vec<Write>,
    /// What the state machine applied: (index, term) in order.
    pub applied: Vec<(Index, Term)>,
    /// One replicator per peer while leading.
    pub repls: BTreeMap<NodeId, ReplicatorCore>,
    /// Disk writes issued so far (a bound; kept across crashes).
    pub writes: u8,
}

/// The model's state: the cluster, the network and the history the properties need.
#[derive(Clone, Debug)]
pub struct ClusterState {
    /// The nodes, ids `1..=n` at positions `0..n`.
    pub nodes: Vec<NodeState>,
    /// Messages in flight, as a set ordered by their fingerprint.
    pub net: Vec<(u64, Message)>,
    /// History: the nodes seen leading each term.
    pub leaders: BTreeMap<Term, BTreeSet<NodeId>>,
    /// History: every entry known committed: index -> (entry term, lowest term in which a node
    /// knew it committed).
    pub committed: BTreeMap<Index, (Term, Term)>,
    /// History: the term of the entry any state machine applied at each index.
    pub applied: BTreeMap<Index, Term>,
    /// Proposals made so far.
    pub proposals: u8,
    /// Crashes so far.
    pub crashes: u8,
    /// Timer firings so far.
    pub ticks: u8,
    /// Duplicated deliveries so far.
    pub duplicates: u8,
    /// Violations seen during transitions (properties that are checked when a message is sent
    /// or an entry applied), by property name.
    pub broken: BTreeSet<&'static str>,
}

/// Every field: the checker's fingerprint of a state.
impl Hash for ClusterState {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.nodes.hash(h);
        self.net.hash(h);
        self.leaders.hash(h);
        self.committed.hash(h);
        self.applied.hash(h);
        self.proposals.hash(h);
        self.crashes.hash(h);
        self.ticks.hash(h);
        self.duplicates.hash(h);
        self.broken.hash(h);
    }
}

/// Equal renderings, equal states (see "State identity" in the crate docs). Used by the checker
/// only to rebuild counterexample paths.
impl PartialEq for ClusterState {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

impl Eq for ClusterState {}

fn fingerprint_of(m: &Message) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    m.hash(&mut h);
    h.finish()
}

/// One nondeterministic event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Deliver a message in flight; with `keep`, a copy stays in flight (a duplicate).
    Deliver {
        /// The message's fingerprint (its key in the network).
        key: u64,
        /// Leave a copy in flight.
        keep: bool,
    },
    /// Lose a message in flight.
    Drop {
        /// The message's fingerprint.
        key: u64,
    },
    /// A node's logical clock runs until a timer fires (election, heartbeat, check-quorum,
    /// replicator probe): the ticks in between, which change nothing but counters, are not
    /// separate states.
    Tick(NodeId),
    /// The oldest pending disk write of a node becomes durable.
    Persist(NodeId),
    /// The node crashes, losing what is not durable, and restarts.
    Crash(NodeId),
    /// A client proposes a command at the node (a leader).
    Propose(NodeId),
}

/// Deliberately broken variants, to show the checker finds the bugs (issue 33, item 3). Only
/// the ones the harness can break without touching raft-core are here so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Variant {
    /// The real code, unchanged.
    #[default]
    Correct,
    /// Storage that calls `persisted(seq)` as soon as a write is issued, before it is durable:
    /// the core then grants votes and acknowledges appends that a crash can take back.
    AckBeforePersist,
}

/// The model: bounds, the node configuration and the variant.
#[derive(Clone, Debug)]
pub struct RaftModel {
    /// State-space limits.
    pub bounds: Bounds,
    /// Real code or a broken variant.
    pub variant: Variant,
}

/// The names of the properties checked, in [`Model::properties`] order.
pub const PROPERTIES: [&str; 5] = [
    "election safety",
    "log matching",
    "leader completeness",
    "state-machine safety",
    "persistence before promises",
];

/// Things that must be reachable within the bounds, or the model is too small to say much:
/// each must be found as an example (`sometimes` properties; not counted as safety properties).
pub const COVERAGE: [&str; 3] = [
    "a leader is elected",
    "an entry commits",
    "a node restarts after a crash",
];

/// The configuration every model node runs: small tick counts so timeouts are a few steps
/// away, pre-vote and check-quorum on (the defaults), no automatic snapshots yet.
pub fn node_config(id: NodeId) -> Config {
    Config {
        election_ticks: 2,
        heartbeat_ticks: 1,
        probe_ticks: 1,
        snapshot_threshold: 0,
        seed: 1,
        ..Config::new(id)
    }
}

fn entry_at(log: &[Entry], index: Index) -> Option<&Entry> {
    let first = log.first()?.index;
    if index < first {
        return None;
    }
    log.get(usize::try_from(index - first).ok()?)
}

impl RaftModel {
    /// The real code under `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        RaftModel {
            bounds,
            variant: Variant::Correct,
        }
    }

    /// The initial cluster: every node a fresh voter of the same group.
    pub fn initial(&self) -> ClusterState {
        let membership = Membership::new(1..=self.bounds.nodes);
        let nodes = (1..=self.bounds.nodes)
            .filter_map(|id| {
                let core = PartitionCore::new(
                    node_config(id),
                    1,
                    InitialState::bootstrap(membership.clone()),
                )
                .ok()?;
                Some(NodeState {
                    core,
                    log: Vec::new(),
                    durable_hard: HardState::default(),
                    durable_log: Vec::new(),
                    pending: Vec::new(),
                    applied: Vec::new(),
                    repls: BTreeMap::new(),
                    writes: 0,
                })
            })
            .collect();
        let mut s = ClusterState {
            nodes,
            net: Vec::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            proposals: 0,
            crashes: 0,
            ticks: 0,
            duplicates: 0,
            broken: BTreeSet::new(),
        };
        for id in 1..=self.bounds.nodes {
            self.process(&mut s, id);
        }
        s
    }

    /// A readable rendering of event `ev` taken in state `s` (messages are looked up in the
    /// network by their key).
    pub fn describe(&self, s: &ClusterState, ev: &Event) -> String {
        let msg = |key: &u64| {
            s.net.iter().find(|(k, _)| k == key).map_or_else(
                || format!("message {key:#x} (not in flight)"),
                |(_, m)| format!("{} -> {} t{} {:?}", m.from, m.to, m.term, m.body),
            )
        };
        match ev {
            Event::Deliver { key, keep } => format!(
                "deliver{} {}",
                if *keep {
                    " (a copy stays in flight)"
                } else {
                    ""
                },
                msg(key)
            ),
            Event::Drop { key } => format!("drop {}", msg(key)),
            Event::Tick(id) => format!("node {id}: time passes until a timer fires"),
            Event::Persist(id) => format!("node {id}: oldest pending write becomes durable"),
            Event::Crash(id) => format!("node {id} crashes and restarts"),
            Event::Propose(id) => format!("client proposes at node {id}"),
        }
    }

    fn beyond_bounds(&self, s: &ClusterState) -> bool {
        s.nodes.iter().any(|n| {
            n.core.term() > self.bounds.max_term
                || n.core.log().last_index() > self.bounds.max_log
                || n.writes > self.bounds.max_writes
        })
    }

    /// Applies one event to a copy of `s`; `None` if the event does not apply.
    pub fn step(&self, s: &ClusterState, ev: &Event) -> Option<ClusterState> {
        let mut s = s.clone();
        match ev {
            Event::Deliver { key, keep, .. } => {
                let pos = s.net.iter().position(|(k, _)| k == key)?;
                let m = if *keep {
                    s.duplicates += 1;
                    s.net[pos].1.clone()
                } else {
                    s.net.remove(pos).1
                };
                self.deliver(&mut s, m);
            }
            Event::Drop { key, .. } => {
                let pos = s.net.iter().position(|(k, _)| k == key)?;
                s.net.remove(pos);
            }
            Event::Tick(id) => {
                // Silent ticks are collapsed: the clock runs until the node does something (a
                // timeout fires), at most two election timeouts' worth.
                let n = node_mut(&mut s, *id)?;
                let limit = 2 * node_config(*id).election_ticks + 1;
                for _ in 0..limit {
                    n.core.tick();
                    let mut resend = false;
                    for r in n.repls.values_mut() {
                        resend |= r.tick();
                    }
                    if resend || n.core.has_actions() {
                        break;
                    }
                }
                s.ticks += 1;
                self.process(&mut s, *id);
            }
            Event::Persist(id) => {
                let n = node_mut(&mut s, *id)?;
                if n.pending.is_empty() {
                    return None;
                }
                let w = n.pending.remove(0);
                let seq = w.seq();
                match w {
                    Write::Hard(_, hs) => n.durable_hard = hs,
                    Write::Entries(_, truncate, entries) => {
                        if let Some(t) = truncate {
                            n.durable_log.retain(|e| e.index < t);
                        }
                        n.durable_log.extend(entries);
                    }
                }
                n.core.persisted(seq);
                self.process(&mut s, *id);
            }
            Event::Crash(id) => {
                let n = node_mut(&mut s, *id)?;
                let snapshot = SnapshotMeta {
                    index: 0,
                    term: 0,
                    membership: Membership::new(1..=self.bounds.nodes),
                };
                let init = InitialState::recover(n.durable_hard, snapshot, &n.durable_log).ok()?;
                n.core = PartitionCore::new(node_config(*id), 1, init).ok()?;
                n.log = n.durable_log.clone();
                n.pending.clear();
                n.applied.clear();
                n.repls.clear();
                s.crashes += 1;
                self.process(&mut s, *id);
            }
            Event::Propose(id) => {
                let p = s.proposals;
                let n = node_mut(&mut s, *id)?;
                n.core.propose(vec![vec![p]]).ok()?;
                s.proposals += 1;
                self.process(&mut s, *id);
            }
        }
        self.observe(&mut s);
        Some(s)
    }

    fn deliver(&self, s: &mut ClusterState, m: Message) {
        let (from, to) = (m.from, m.to);
        let Some(n) = node_mut(s, to) else { return };
        if let MessageBody::AppendResponse(r) = &m.body {
            if let Some(repl) = n.repls.get_mut(&from) {
                let out = repl.on_append_response(m.term, r);
                if let Some(p) = out.progress {
                    let t = repl.term();
                    n.core.progress(from, t, p);
                }
            }
        }
        n.core.step(m);
        self.process(s, to);
    }

    /// Drains node `id`'s actions and executes them, then lets its replicators send.
    fn process(&self, s: &mut ClusterState, id: NodeId) {
        for _ in 0..64 {
            let Some(n) = node_mut(s, id) else { return };
            let actions = n.core.take_actions();
            if actions.is_empty() {
                break;
            }
            for a in actions {
                self.exec(s, id, a);
            }
            if self.variant == Variant::AckBeforePersist {
                // Broken storage: it reports every write durable as soon as it is issued; the
                // writes themselves still complete later (or are lost in a crash).
                let Some(n) = node_mut(s, id) else { return };
                if let Some(last) = n.pending.last().map(Write::seq) {
                    n.core.persisted(last);
                }
            }
        }
        self.pump(s, id);
    }

    fn exec(&self, s: &mut ClusterState, id: NodeId, action: Action) {
        let Some(n) = node_mut(s, id) else { return };
        match action {
            Action::PersistHardState { seq, hard_state } => {
                n.writes = n.writes.saturating_add(1);
                n.pending.push(Write::Hard(seq, hard_state))
            }
            Action::PersistEntries {
                seq,
                truncate_from,
                entries,
            } => {
                if let Some(t) = truncate_from {
                    n.log.retain(|e| e.index < t);
                }
                n.log.extend(entries.iter().cloned());
                n.writes = n.writes.saturating_add(1);
                n.pending
                    .push(Write::Entries(seq, truncate_from, entries.to_vec()));
            }
            Action::Send(m) => {
                if !self.promise_is_durable(n, &m) {
                    s.broken.insert("persistence before promises");
                }
                send(s, m, &self.bounds);
            }
            Action::Apply { index } => {
                let from = n.applied.last().map_or(1, |a| a.0 + 1);
                let mut ok = true;
                for i in from..=index {
                    match entry_at(&n.log, i) {
                        Some(e) => n.applied.push((i, e.term)),
                        None => ok = false,
                    }
                }
                n.core.applied(index);
                let applied: Vec<(Index, Term)> = n.applied.clone();
                if !ok {
                    s.broken.insert("state-machine safety");
                }
                for (i, t) in applied {
                    if *s.applied.entry(i).or_insert(t) != t {
                        s.broken.insert("state-machine safety");
                    }
                }
            }
            Action::RoleChanged { .. }
            | Action::MembershipChanged { .. }
            | Action::PeersChanged => sync_repls(n),
            Action::Replicate { .. }
            | Action::ReadReady { .. }
            | Action::ReadAborted { .. }
            | Action::Removed { .. }
            | Action::DiscardSnapshot { .. }
            | Action::CompactLog { .. } => {}
            Action::SnapshotChunk { .. }
            | Action::InstallSnapshot { .. }
            | Action::TakeSnapshot { .. } => {
                // Snapshots are not modelled yet (threshold 0): none should be asked for.
                s.broken.insert("harness: unmodelled snapshot action");
            }
        }
    }

    /// Persistence before promises (I7): a granted vote and an append acknowledgement may only
    /// leave once what they promise is on the node's disk.
    fn promise_is_durable(&self, n: &NodeState, m: &Message) -> bool {
        match &m.body {
            MessageBody::VoteResponse {
                pre_vote: false,
                granted: true,
            } => n.durable_hard.term == m.term && n.durable_hard.vote == Some(m.to),
            MessageBody::AppendResponse(raft_core::AppendResponse::Success { match_index }) => {
                *match_index == 0
                    || match (
                        entry_at(&n.durable_log, *match_index),
                        entry_at(&n.log, *match_index),
                    ) {
                        (Some(d), Some(l)) => d.term == l.term,
                        _ => false,
                    }
            }
            _ => true,
        }
    }

    /// Sends whatever node `id`'s replicators want to send.
    fn pump(&self, s: &mut ClusterState, id: NodeId) {
        let Some(n) = node_mut(s, id) else { return };
        if n.core.role() != Role::Leader {
            return;
        }
        let term = n.core.term();
        let (first, last, commit) = (
            n.core.log().first_index(),
            n.core.log().last_index(),
            n.core.commit_index(),
        );
        let mut out = Vec::new();
        let mut wants_snapshot = false;
        for (&peer, repl) in n.repls.iter_mut() {
            for _ in 0..16 {
                let Some(plan) = repl.next_plan(first, last, commit) else {
                    break;
                };
                match plan {
                    Plan::Append {
                        prev_index,
                        from,
                        to,
                    } => {
                        let Some(prev_term) = n.core.log().term(prev_index) else {
                            break;
                        };
                        let entries: Vec<Entry> = (from..=to)
                            .filter_map(|i| entry_at(&n.log, i).cloned())
                            .collect();
                        let last_sent = prev_index + entries.len() as Index;
                        let bytes = entries.iter().map(Entry::size_hint).sum();
                        out.push(Message {
                            from: id,
                            to: peer,
                            term,
                            body: MessageBody::AppendEntries {
                                prev_index,
                                prev_term,
                                entries: entries.into(),
                                commit,
                            },
                        });
                        repl.sent(prev_index, last_sent, bytes, commit);
                    }
                    Plan::Snapshot => {
                        wants_snapshot = true;
                        break;
                    }
                }
            }
        }
        if wants_snapshot {
            s.broken.insert("harness: unmodelled snapshot action");
        }
        for m in out {
            send(s, m, &self.bounds);
        }
    }

    /// Records leaders and committed entries (history for the properties).
    fn observe(&self, s: &mut ClusterState) {
        for n in &s.nodes {
            let term = n.core.term();
            if n.core.role() == Role::Leader {
                s.leaders.entry(term).or_default().insert(n.core.id());
            }
            for i in 1..=n.core.commit_index() {
                let Some(t) = n.core.log().term(i) else {
                    continue;
                };
                let e = s.committed.entry(i).or_insert((t, term));
                if e.0 != t {
                    s.broken.insert("state-machine safety");
                }
                e.1 = e.1.min(term);
            }
        }
    }
}

fn node_mut(s: &mut ClusterState, id: NodeId) -> Option<&mut NodeState> {
    s.nodes.get_mut(usize::try_from(id.checked_sub(1)?).ok()?)
}

/// Puts `m` in flight; a message sent while the network or its link is full is lost (the
/// network may lose any message; this loss keeps the state space finite).
fn send(s: &mut ClusterState, m: Message, b: &Bounds) {
    let key = fingerprint_of(&m);
    if let Err(pos) = s.net.binary_search_by_key(&key, |(k, _)| *k) {
        let on_link = || {
            s.net
                .iter()
                .filter(|(_, x)| x.from == m.from && x.to == m.to)
                .count()
        };
        if s.net.len() < b.max_msgs && (b.max_per_link == 0 || on_link() < b.max_per_link) {
            s.net.insert(pos, (key, m));
        }
    }
}

fn sync_repls(n: &mut NodeState) {
    if n.core.role() != Role::Leader {
        n.repls.clear();
        return;
    }
    let term = n.core.term();
    if n.repls.values().any(|r| r.term() != term) {
        n.repls.clear();
    }
    let peers = n.core.replication_peers();
    n.repls.retain(|p, _| peers.contains(p));
    let last = n.core.log().last_index();
    let cfg = node_config(n.core.id());
    for p in peers {
        n.repls
            .entry(p)
            .or_insert_with(|| ReplicatorCore::new(&cfg, p, term, last));
    }
}

// ---- properties ----

fn election_safety(s: &ClusterState) -> bool {
    s.leaders.values().all(|l| l.len() <= 1)
}

fn log_matching(s: &ClusterState) -> bool {
    for (i, a) in s.nodes.iter().enumerate() {
        for b in &s.nodes[i + 1..] {
            // Highest index where both hold an entry of the same term: equal up to it.
            let top = a
                .log
                .iter()
                .rev()
                .find(|e| entry_at(&b.log, e.index).is_some_and(|f| f.term == e.term))
                .map(|e| e.index);
            if let Some(top) = top {
                if (1..=top).any(|k| entry_at(&a.log, k) != entry_at(&b.log, k)) {
                    return false;
                }
            }
        }
    }
    true
}

fn leader_completeness(s: &ClusterState) -> bool {
    s.nodes
        .iter()
        .filter(|n| n.core.role() == Role::Leader)
        .all(|n| {
            let term = n.core.term();
            s.committed
                .iter()
                .filter(|(_, (_, known))| *known < term)
                .all(|(&i, &(t, _))| n.core.log().term(i) == Some(t))
        })
}

fn state_machine_safety(s: &ClusterState) -> bool {
    !s.broken.contains("state-machine safety")
}

fn persistence_before_promises(s: &ClusterState) -> bool {
    !s.broken.contains("persistence before promises")
}

/// A harness failure (an input the harness does not model) is reported under every property
/// so it cannot go unnoticed.
fn harness_ok(s: &ClusterState) -> bool {
    !s.broken.contains("harness: unmodelled snapshot action")
}

impl Model for RaftModel {
    type State = ClusterState;
    type Action = Event;

    fn init_states(&self) -> Vec<ClusterState> {
        vec![self.initial()]
    }

    fn actions(&self, s: &ClusterState, actions: &mut Vec<Event>) {
        if self.beyond_bounds(s) {
            return;
        }
        for (key, _) in &s.net {
            actions.push(Event::Deliver {
                key: *key,
                keep: false,
            });
            if s.duplicates < self.bounds.max_duplicates {
                actions.push(Event::Deliver {
                    key: *key,
                    keep: true,
                });
            }
            actions.push(Event::Drop { key: *key });
        }
        for n in &s.nodes {
            let id = n.core.id();
            if s.ticks < self.bounds.max_ticks {
                actions.push(Event::Tick(id));
            }
            if !n.pending.is_empty() {
                actions.push(Event::Persist(id));
            }
            if s.crashes < self.bounds.max_crashes {
                actions.push(Event::Crash(id));
            }
            if s.proposals < self.bounds.max_proposals && n.core.role() == Role::Leader {
                actions.push(Event::Propose(id));
            }
        }
    }

    fn next_state(&self, s: &ClusterState, ev: Event) -> Option<ClusterState> {
        self.step(s, &ev)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(PROPERTIES[0], |_, s| harness_ok(s) && election_safety(s)),
            Property::always(PROPERTIES[1], |_, s| harness_ok(s) && log_matching(s)),
            Property::always(PROPERTIES[2], |_, s| {
                harness_ok(s) && leader_completeness(s)
            }),
            Property::always(PROPERTIES[3], |_, s| {
                harness_ok(s) && state_machine_safety(s)
            }),
            Property::always(PROPERTIES[4], |_, s| {
                harness_ok(s) && persistence_before_promises(s)
            }),
            Property::sometimes(COVERAGE[0], |_, s: &ClusterState| !s.leaders.is_empty()),
            Property::sometimes(COVERAGE[1], |_, s: &ClusterState| !s.committed.is_empty()),
            Property::sometimes(COVERAGE[2], |_, s: &ClusterState| s.crashes > 0),
        ]
    }
}
