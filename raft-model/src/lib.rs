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
//! - Timers are the runtime's, as raft-actor runs the core (`Config::external_timers`): an
//!   election timeout ([`Event::Timeout`]: an election timeout's worth of ticks, so the lease
//!   on a known leader ends, then `election_timeout()`), a check-quorum verdict
//!   ([`Event::QuorumLost`]), a replicator's retransmission ([`Event::Retry`],
//!   `peer_reachable()`), and a leader's tick while a deadline runs ([`Event::LeaderTick`]).
//!   Each may happen at any point relative to the other events; none is a counter in the
//!   state. The core's own timer state that nothing reads with external timers (the jitter
//!   generator, tick counts past the election timeout, the leader's heartbeat counter) is
//!   canonicalized after every step (`PartitionCore::model_canonical_timers`), so states that
//!   differ only there are one. The runtime's heartbeats are not modelled: they only reset
//!   timers (which fire at will here) and carry the commit index, which appends carry too;
//!   the core's own heartbeat rounds for ReadIndex are.
//! - Snapshots: the state machine is the list of (index, term) applied; a snapshot is a prefix
//!   of it, taken at once and durable, and sent whole in one chunk.
//! - Counterexamples identify messages by an FNV-1a hash ([`fingerprint_of`]), stable across
//!   runs and toolchains, so a printed trace replays ([`RaftModel::replay`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use raft_core::{
    Action, Config, Entry, EntryPayload, HardState, Index, InitialState, Membership, Message,
    MessageBody, NodeId, PartitionCore, Plan, ReplicatorCore, Role, SnapshotMeta, Term,
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
    /// Most timer firings over a run, all nodes together: election timeouts
    /// ([`Event::Timeout`]), check-quorum verdicts ([`Event::QuorumLost`]) and replicator
    /// retransmissions ([`Event::Retry`]).
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
    /// Most linearizable reads ([`Event::Read`]) over a run.
    pub max_reads: u8,
    /// Most leader transfers ([`Event::Transfer`]) over a run.
    pub max_transfers: u8,
    /// Nodes that start outside the group (ids after the voters), for membership changes.
    pub spares: u64,
    /// Most membership changes over a run ([`Event::AddLearner`], [`Event::Promote`],
    /// [`Event::RemoveVoter`]; the core's own step out of a joint configuration not counted).
    pub max_config_changes: u8,
    /// Automatic snapshots after this many applied entries (the core's
    /// `snapshot_threshold`; 0: none), the log compacted right behind them.
    pub snapshot_every: u64,
}

impl Bounds {
    /// The bound CI runs: 1,895,351 states, every one explored (about 80 s on 2 cores when
    /// alone, 175 s beside other builds), in which a leader is elected, a client's command
    /// commits and a node crashes and restarts (the test asserts the first two).
    pub fn ci() -> Self {
        Bounds {
            nodes: 3,
            max_term: 2,
            max_log: 2,
            max_msgs: 2,
            max_proposals: 1,
            max_crashes: 1,
            max_ticks: 2,
            max_writes: 4,
            max_duplicates: 0,
            max_per_link: 0,
            max_reads: 0,
            max_transfers: 0,
            spares: 0,
            max_config_changes: 0,
            snapshot_every: 0,
        }
    }

    /// The bound of the ReadIndex test: 191,886 states, all explored.
    pub fn reads() -> Self {
        Bounds::parse("crashes=0,writes=3,reads=1,proposals=0")
    }

    /// The bound of the snapshot and leader-transfer test (a snapshot after every applied
    /// entry, the log compacted right behind it): 509,105 states, all explored.
    pub fn snapshots() -> Self {
        Bounds::parse("crashes=0,writes=3,snapshots=1,log=3,transfers=1")
    }

    /// The bound of the membership test: one spare node, two changes (add it as a learner,
    /// then promote it or remove a voter). Too large to explore whole in CI: the test explores
    /// it breadth-first up to a number of states.
    pub fn membership() -> Self {
        Bounds::parse("crashes=0,writes=3,spares=1,changes=2,log=3,proposals=0")
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
            max_reads: 1,
            max_transfers: 1,
            spares: 0,
            max_config_changes: 0,
            snapshot_every: 0,
        }
    }

    /// The bound `RAFT_MODEL_BOUND` names: `ci` (the default), `deep`, `reads`, `snapshots`,
    /// `membership`, or a list of
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
            "reads" => return Bounds::reads(),
            "snapshots" => return Bounds::snapshots(),
            "membership" => return Bounds::membership(),
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
                "reads" => b.max_reads = u8::try_from(v).unwrap_or(b.max_reads),
                "transfers" => b.max_transfers = u8::try_from(v).unwrap_or(b.max_transfers),
                "spares" => b.spares = v,
                "changes" => b.max_config_changes = u8::try_from(v).unwrap_or(b.max_config_changes),
                "snapshots" => b.snapshot_every = v,
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
            "nodes {}, term <= {}, log <= {}, messages in flight <= {}, proposals <= {}, crashes <= {}, timer firings <= {}, writes per node <= {}, duplicates <= {}, per link <= {}, reads <= {}, transfers <= {}, spare nodes {}, membership changes <= {}, snapshot every {} applied",
            self.nodes,
            self.max_term,
            self.max_log,
            self.max_msgs,
            self.max_proposals,
            self.max_crashes,
            self.max_ticks,
            self.max_writes,
            self.max_duplicates,
            self.max_per_link,
            self.max_reads,
            self.max_transfers,
            self.spares,
            self.max_config_changes,
            self.snapshot_every
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
    /// An installed snapshot (its state-machine contents), and whether the log is discarded
    /// (else compacted up to the snapshot).
    Snapshot(u64, SnapshotMeta, Vec<(Index, Term)>, bool),
}

impl Write {
    fn seq(&self) -> u64 {
        match self {
            Write::Hard(s, _) | Write::Entries(s, _, _) | Write::Snapshot(s, _, _, _) => *s,
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
    /// What the state machine applied: (index, term) in order (from the start: a snapshot
    /// holds the whole history, as in raft-core's test cluster).
    pub applied: Vec<(Index, Term)>,
    /// The configuration of the state machine's applied entries (what a snapshot records).
    pub sm_conf: Membership,
    /// The latest snapshot taken or installed here, and its contents.
    pub snap: (SnapshotMeta, Vec<(Index, Term)>),
    /// The durable snapshot and its contents.
    pub durable_snap: (SnapshotMeta, Vec<(Index, Term)>),
    /// Snapshot bytes received from a leader, not yet installed.
    pub incoming: Vec<u8>,
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
    /// Reads started so far.
    pub reads_started: u8,
    /// Reads served so far.
    pub reads_served: u8,
    /// Leader transfers started so far.
    pub transfers: u8,
    /// Membership changes made so far.
    pub config_changes: u8,
    /// Reads under way: context -> the highest index known committed anywhere when the read
    /// began (a read must not be served below it).
    pub reads: BTreeMap<u64, Index>,
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
        self.reads_started.hash(h);
        self.reads_served.hash(h);
        self.transfers.hash(h);
        self.config_changes.hash(h);
        self.reads.hash(h);
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

/// FNV-1a: a message's key in the network. Stable across runs and toolchains (unlike the
/// standard library's hasher), so a counterexample's events replay anywhere.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A message's key in the network.
pub fn fingerprint_of(m: &Message) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
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
    /// A node that does not lead hears nothing for an election timeout: its lease on the
    /// leader it knew ends, and its election timer fires (a pre-vote starts).
    Timeout(NodeId),
    /// A leader's check-quorum verdict: it has not heard from a quorum; it steps down.
    QuorumLost(NodeId),
    /// A leader's replicators retransmit what waits for an answer (a probe, a window): the
    /// retransmission timer fired, or the peer is reachable again.
    Retry(NodeId),
    /// A client asks the node (a leader) for a linearizable read (ReadIndex).
    Read(NodeId),
    /// A client asks the leader to hand leadership over to another voter.
    Transfer {
        /// The leader.
        from: NodeId,
        /// The voter to hand over to.
        to: NodeId,
    },
    /// One tick of a leader's clock while it has a deadline running (a leader transfer, a
    /// removed node still being told): with the runtime's timers these are its only ticks.
    LeaderTick(NodeId),
    /// The leader adds a node outside the group as a learner.
    AddLearner {
        /// The leader.
        leader: NodeId,
        /// The node added.
        node: NodeId,
    },
    /// The leader makes a learner a voter (through a joint configuration).
    Promote {
        /// The leader.
        leader: NodeId,
        /// The learner.
        node: NodeId,
    },
    /// The leader removes a voter (through a joint configuration).
    RemoveVoter {
        /// The leader.
        leader: NodeId,
        /// The voter removed (the leader itself possibly).
        node: NodeId,
    },
    /// The oldest pending disk write of a node becomes durable.
    Persist(NodeId),
    /// The node crashes, losing what is not durable, and restarts.
    Crash(NodeId),
    /// A client proposes a command at the node (a leader).
    Propose(NodeId),
}

/// Deliberately broken variants, to show the checker finds the bugs (issue 33, item 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Variant {
    /// The real code, unchanged.
    #[default]
    Correct,
    /// Storage that calls `persisted(seq)` as soon as a write is issued, before it is durable:
    /// the core then grants votes and acknowledges appends that a crash can take back.
    AckBeforePersist,
    /// raft-core with one rule broken on purpose (feature `model-bugs`).
    #[cfg(feature = "model-bugs")]
    Core(raft_core::Bug),
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
pub const PROPERTIES: [&str; 8] = [
    "election safety",
    "log matching",
    "leader completeness",
    "state-machine safety",
    "persistence before promises",
    "Figure 8 rule",
    "ReadIndex freshness",
    "one configuration change at a time",
];

/// Things that must be reachable within the bounds, or the model is too small to say much:
/// each must be found as an example (`sometimes` properties; not counted as safety properties).
pub const COVERAGE: [&str; 5] = [
    "a leader is elected",
    "an entry commits",
    "a client's command commits",
    "a node restarts after a crash",
    "a read is served",
];

/// The configuration every model node runs: the runtime's timers (`external_timers`, as
/// raft-actor runs the core: election timeouts, check-quorum and retransmissions are model
/// events), pre-vote and check-quorum on (the defaults), no automatic snapshots yet.
pub fn node_config(id: NodeId) -> Config {
    Config {
        election_ticks: 2,
        heartbeat_ticks: 1,
        probe_ticks: 1,
        snapshot_threshold: 0,
        external_timers: true,
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
        let nodes = (1..=self.bounds.nodes + self.bounds.spares)
            .filter_map(|id| {
                let base = SnapshotMeta {
                    index: 0,
                    term: 0,
                    membership: self.initial_membership(id),
                };
                let core = self.new_core(id, InitialState::bootstrap(base.membership.clone()))?;
                Some(NodeState {
                    core,
                    log: Vec::new(),
                    durable_hard: HardState::default(),
                    durable_log: Vec::new(),
                    pending: Vec::new(),
                    applied: Vec::new(),
                    sm_conf: base.membership.clone(),
                    snap: (base.clone(), Vec::new()),
                    durable_snap: (base, Vec::new()),
                    incoming: Vec::new(),
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
            reads_started: 0,
            reads_served: 0,
            transfers: 0,
            config_changes: 0,
            reads: BTreeMap::new(),
            broken: BTreeSet::new(),
        };
        for id in 1..=self.bounds.nodes + self.bounds.spares {
            self.process(&mut s, id);
        }
        s
    }

    /// What node `id` starts with: the group's voters, or nothing for a spare node (it joins).
    fn initial_membership(&self, id: NodeId) -> Membership {
        if id <= self.bounds.nodes {
            Membership::new(1..=self.bounds.nodes)
        } else {
            Membership::default()
        }
    }

    /// Node `id`'s configuration: [`node_config`] with the bounds' snapshot setting.
    pub fn config(&self, id: NodeId) -> Config {
        Config {
            snapshot_threshold: self.bounds.snapshot_every,
            compact_trailing: 0,
            ..node_config(id)
        }
    }

    /// Replays `events` from the initial state through [`RaftModel::step`], stopping at the
    /// first state that violates a property. Returns the number of events taken and the
    /// violated property (`None`: all taken, none violated); `Err(k)` if event `k` (0-based)
    /// does not apply.
    pub fn replay(&self, events: &[Event]) -> Result<(usize, Option<&'static str>), usize> {
        let mut s = self.initial();
        for (k, ev) in events.iter().enumerate() {
            s = self.step(&s, ev).ok_or(k)?;
            if let Some(p) = violated(&s) {
                return Ok((k + 1, Some(p)));
            }
        }
        Ok((events.len(), None))
    }

    /// A core for node `id`, broken as the variant says.
    fn new_core(&self, id: NodeId, init: InitialState) -> Option<PartitionCore> {
        #[allow(unused_mut)]
        let mut core = PartitionCore::new(self.config(id), 1, init).ok()?;
        #[cfg(feature = "model-bugs")]
        if let Variant::Core(bug) = self.variant {
            core.set_bug(bug);
        }
        core.model_canonical_timers();
        Some(core)
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
            Event::Timeout(id) => format!("node {id}: election timeout"),
            Event::QuorumLost(id) => format!("node {id}: check-quorum finds no quorum"),
            Event::Retry(id) => format!("node {id}: replicators retransmit"),
            Event::Read(id) => format!("client reads at node {id} (ReadIndex)"),
            Event::Transfer { from, to } => {
                format!("client asks leader {from} to transfer leadership to {to}")
            }
            Event::LeaderTick(id) => format!("node {id}: a leader's tick"),
            Event::AddLearner { leader, node } => {
                format!("leader {leader} adds node {node} as a learner")
            }
            Event::Promote { leader, node } => {
                format!("leader {leader} promotes learner {node} to voter")
            }
            Event::RemoveVoter { leader, node } => {
                format!("leader {leader} removes voter {node}")
            }
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
    pub fn step(&self, before: &ClusterState, ev: &Event) -> Option<ClusterState> {
        let mut s = before.clone();
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
            Event::Timeout(id) => {
                let n = node_mut(&mut s, *id)?;
                if n.core.role() == Role::Leader {
                    return None;
                }
                // An election timeout's worth of silence (the lease on the known leader ends),
                // then the runtime's election timer fires.
                for _ in 0..node_config(*id).election_ticks {
                    n.core.tick();
                }
                n.core.election_timeout();
                s.ticks += 1;
                self.process(&mut s, *id);
            }
            Event::QuorumLost(id) => {
                let n = node_mut(&mut s, *id)?;
                if n.core.role() != Role::Leader {
                    return None;
                }
                n.core.quorum_lost();
                s.ticks += 1;
                self.process(&mut s, *id);
            }
            Event::Retry(id) => {
                let n = node_mut(&mut s, *id)?;
                let mut any = false;
                for r in n.repls.values_mut() {
                    any |= r.needs_ticks() && r.peer_reachable();
                }
                if !any {
                    return None;
                }
                s.ticks += 1;
                self.process(&mut s, *id);
            }
            Event::Read(id) => {
                let ctx = u64::from(s.reads_started);
                let floor = s.committed.keys().next_back().copied().unwrap_or(0);
                let n = node_mut(&mut s, *id)?;
                n.core.read_index(ctx).ok()?;
                s.reads_started += 1;
                s.reads.insert(ctx, floor);
                self.process(&mut s, *id);
            }
            Event::Transfer { from, to } => {
                let n = node_mut(&mut s, *from)?;
                n.core.transfer_leader(*to).ok()?;
                s.transfers += 1;
                self.process(&mut s, *from);
            }
            Event::LeaderTick(id) => {
                let n = node_mut(&mut s, *id)?;
                if n.core.role() != Role::Leader || !n.core.needs_ticks() {
                    return None;
                }
                n.core.tick();
                s.ticks += 1;
                self.process(&mut s, *id);
            }
            Event::AddLearner { leader, node } => {
                let n = node_mut(&mut s, *leader)?;
                n.core.add_learner(*node, None).ok()?;
                s.config_changes += 1;
                self.process(&mut s, *leader);
            }
            Event::Promote { leader, node } | Event::RemoveVoter { leader, node } => {
                let n = node_mut(&mut s, *leader)?;
                let now = n.core.membership().clone();
                let mut target = Membership::with_learners(now.voters, now.learners);
                if matches!(ev, Event::Promote { .. }) {
                    if !target.learners.remove(node) {
                        return None;
                    }
                    target.voters.insert(*node);
                } else if !target.voters.remove(node) {
                    return None;
                }
                n.core.change_membership(target).ok()?;
                s.config_changes += 1;
                self.process(&mut s, *leader);
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
                    Write::Snapshot(_, meta, data, discard_log) => {
                        if discard_log {
                            n.durable_log.clear();
                        } else {
                            n.durable_log.retain(|e| e.index > meta.index);
                        }
                        n.durable_snap = (meta, data);
                    }
                }
                n.core.persisted(seq);
                self.process(&mut s, *id);
            }
            Event::Crash(id) => {
                let n = node_mut(&mut s, *id)?;
                let (snapshot, data) = n.durable_snap.clone();
                let init =
                    InitialState::recover(n.durable_hard, snapshot.clone(), &n.durable_log).ok()?;
                let core = self.new_core(*id, init)?;
                let n = node_mut(&mut s, *id)?;
                n.core = core;
                n.log = n.durable_log.clone();
                n.pending.clear();
                // The state machine restarts from the durable snapshot.
                n.applied = data.clone();
                n.sm_conf = snapshot.membership.clone();
                n.snap = (snapshot, data);
                n.incoming.clear();
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
        for n in &mut s.nodes {
            n.core.model_canonical_timers();
        }
        if commits_by_counting_earlier_terms(before, &s) {
            s.broken.insert("Figure 8 rule");
        }
        self.observe(&mut s);
        Some(s)
    }

    fn deliver(&self, s: &mut ClusterState, m: Message) {
        let (from, to) = (m.from, m.to);
        let Some(n) = node_mut(s, to) else { return };
        if let Some(repl) = n.repls.get_mut(&from) {
            let out = match &m.body {
                MessageBody::AppendResponse(r) => Some(repl.on_append_response(m.term, r)),
                MessageBody::SnapshotResponse { index, status } => {
                    Some(repl.on_snapshot_response(m.term, *index, *status))
                }
                _ => None,
            };
            if let Some(p) = out.and_then(|o| o.progress) {
                let t = repl.term();
                n.core.progress(from, t, p);
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
                        Some(e) => {
                            n.applied.push((i, e.term));
                            if let EntryPayload::Membership(m) = &e.payload {
                                n.sm_conf = m.clone();
                            }
                        }
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
            Action::ReadReady { ctx, index } => {
                let applied = n.applied.last().map_or(0, |a| a.0);
                let floor = s.reads.remove(&ctx).unwrap_or(Index::MAX);
                s.reads_served = s.reads_served.saturating_add(1);
                if index < floor || applied < index {
                    s.broken.insert("ReadIndex freshness");
                }
            }
            Action::ReadAborted { ctx, .. } => {
                s.reads.remove(&ctx);
            }
            Action::Replicate { .. } | Action::Removed { .. } => {}
            Action::DiscardSnapshot { .. } => n.incoming.clear(),
            Action::CompactLog { index } => {
                n.log.retain(|e| e.index > index);
                n.durable_log.retain(|e| e.index > index);
            }
            Action::TakeSnapshot { index } => {
                // The state machine keeps its whole history: a snapshot is a prefix of it,
                // durable at once (as raft-core's test cluster does).
                let data: Vec<(Index, Term)> =
                    n.applied.iter().filter(|a| a.0 <= index).copied().collect();
                let meta = SnapshotMeta {
                    index,
                    term: data.last().map_or(n.snap.0.term, |a| a.1),
                    membership: n.sm_conf.clone(),
                };
                n.snap = (meta.clone(), data.clone());
                n.durable_snap = (meta.clone(), data);
                if n.core.snapshot_taken(meta).is_err() {
                    s.broken.insert("harness: snapshot refused");
                }
            }
            Action::SnapshotChunk { offset, data, .. } => {
                if offset == 0 {
                    n.incoming.clear();
                }
                n.incoming.extend_from_slice(&data);
            }
            Action::InstallSnapshot {
                seq,
                meta,
                discard_log,
            } => {
                let Some(data) = decode_snapshot(&n.incoming) else {
                    s.broken.insert("harness: snapshot undecodable");
                    return;
                };
                if discard_log {
                    n.log.clear();
                } else {
                    n.log.retain(|e| e.index > meta.index);
                }
                n.applied = data.clone();
                n.sm_conf = meta.membership.clone();
                n.snap = (meta.clone(), data.clone());
                n.writes = n.writes.saturating_add(1);
                n.pending
                    .push(Write::Snapshot(seq, meta, data.clone(), discard_log));
                for (i, t) in data {
                    if *s.applied.entry(i).or_insert(t) != t {
                        s.broken.insert("state-machine safety");
                    }
                }
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
                *match_index <= n.durable_snap.0.index
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
                        // The whole snapshot in one chunk.
                        let (meta, data) = n.snap.clone();
                        repl.snapshot_sent(meta.index);
                        out.push(Message {
                            from: id,
                            to: peer,
                            term,
                            body: MessageBody::InstallSnapshot {
                                meta,
                                offset: 0,
                                data: encode_snapshot(&data),
                                done: true,
                            },
                        });
                        break;
                    }
                }
            }
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

/// A snapshot's contents as bytes: (index, term) pairs, 8 bytes each.
fn encode_snapshot(data: &[(Index, Term)]) -> Vec<u8> {
    data.iter()
        .flat_map(|(i, t)| {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&(*i as u32).to_le_bytes());
            b[4..].copy_from_slice(&(*t as u32).to_le_bytes());
            b
        })
        .collect()
}

fn decode_snapshot(bytes: &[u8]) -> Option<Vec<(Index, Term)>> {
    if bytes.len() % 8 != 0 {
        return None;
    }
    bytes
        .chunks_exact(8)
        .map(|c| {
            let i = u32::from_le_bytes(c[..4].try_into().ok()?);
            let t = u32::from_le_bytes(c[4..].try_into().ok()?);
            Some((Index::from(i), Term::from(t)))
        })
        .collect()
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
                // Entries compacted behind a snapshot on either side are not compared.
                let first = a
                    .log
                    .first()
                    .map_or(1, |e| e.index)
                    .max(b.log.first().map_or(1, |e| e.index));
                if (first..=top).any(|k| entry_at(&a.log, k) != entry_at(&b.log, k)) {
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

/// The Figure 8 rule, on one transition: a node that leads in the same term before and after
/// it and whose commit index advanced must land on an entry of its own term (it never commits
/// an earlier term's entry by counting its replicas).
fn commits_by_counting_earlier_terms(before: &ClusterState, after: &ClusterState) -> bool {
    before.nodes.iter().zip(&after.nodes).any(|(b, a)| {
        let (bc, ac) = (&b.core, &a.core);
        bc.role() == Role::Leader
            && ac.role() == Role::Leader
            && bc.term() == ac.term()
            && ac.commit_index() > bc.commit_index()
            && ac.log().term(ac.commit_index()) != Some(ac.term())
    })
}

fn figure_8_rule(s: &ClusterState) -> bool {
    !s.broken.contains("Figure 8 rule")
}

fn read_index_freshness(s: &ClusterState) -> bool {
    !s.broken.contains("ReadIndex freshness")
}

/// Every leader's log holds at most one configuration entry past its commit index.
fn one_configuration_change_at_a_time(s: &ClusterState) -> bool {
    s.nodes
        .iter()
        .filter(|n| n.core.role() == Role::Leader)
        .all(|n| {
            let commit = n.core.commit_index();
            n.log
                .iter()
                .filter(|e| e.index > commit && matches!(e.payload, EntryPayload::Membership(_)))
                .count()
                <= 1
        })
}

/// A harness failure (an input the harness does not model) is reported under every property
/// so it cannot go unnoticed.
fn harness_ok(s: &ClusterState) -> bool {
    !s.broken.iter().any(|b| b.starts_with("harness:"))
}

type Check = fn(&ClusterState) -> bool;

/// The checks of [`PROPERTIES`], in order; each also fails on a harness failure.
const CHECKS: [Check; 8] = [
    |s| harness_ok(s) && election_safety(s),
    |s| harness_ok(s) && log_matching(s),
    |s| harness_ok(s) && leader_completeness(s),
    |s| harness_ok(s) && state_machine_safety(s),
    |s| harness_ok(s) && persistence_before_promises(s),
    |s| harness_ok(s) && figure_8_rule(s),
    |s| harness_ok(s) && read_index_freshness(s),
    |s| harness_ok(s) && one_configuration_change_at_a_time(s),
];

/// The first property (of [`PROPERTIES`]) that state `s` violates, if any.
pub fn violated(s: &ClusterState) -> Option<&'static str> {
    PROPERTIES
        .iter()
        .zip(CHECKS)
        .find(|(_, check)| !check(s))
        .map(|(name, _)| *name)
}

impl Event {
    /// The event as a Rust expression (`Event::Timeout(1)`), for pasting a counterexample into a
    /// replay test.
    pub fn literal(&self) -> String {
        format!("Event::{self:?}")
    }
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
            let leads = n.core.role() == Role::Leader;
            if s.ticks < self.bounds.max_ticks {
                if leads {
                    actions.push(Event::QuorumLost(id));
                    if n.repls.values().any(ReplicatorCore::needs_ticks) {
                        actions.push(Event::Retry(id));
                    }
                } else if n.core.membership().is_voter(id) {
                    actions.push(Event::Timeout(id));
                }
            }
            if leads && s.reads_started < self.bounds.max_reads {
                actions.push(Event::Read(id));
            }
            if leads && s.ticks < self.bounds.max_ticks && n.core.needs_ticks() {
                actions.push(Event::LeaderTick(id));
            }
            if leads && s.config_changes < self.bounds.max_config_changes {
                let m = n.core.membership();
                for node in 1..=self.bounds.nodes + self.bounds.spares {
                    if m.is_learner(node) {
                        actions.push(Event::Promote { leader: id, node });
                    } else if m.is_voter(node) {
                        actions.push(Event::RemoveVoter { leader: id, node });
                    } else {
                        actions.push(Event::AddLearner { leader: id, node });
                    }
                }
            }
            if leads && s.transfers < self.bounds.max_transfers {
                for to in n.core.membership().voters.iter().copied() {
                    if to != id {
                        actions.push(Event::Transfer { from: id, to });
                    }
                }
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
        let mut v: Vec<Property<Self>> = vec![
            Property::always(PROPERTIES[0], |_, s| CHECKS[0](s)),
            Property::always(PROPERTIES[1], |_, s| CHECKS[1](s)),
            Property::always(PROPERTIES[2], |_, s| CHECKS[2](s)),
            Property::always(PROPERTIES[3], |_, s| CHECKS[3](s)),
            Property::always(PROPERTIES[4], |_, s| CHECKS[4](s)),
            Property::always(PROPERTIES[5], |_, s| CHECKS[5](s)),
            Property::always(PROPERTIES[6], |_, s| CHECKS[6](s)),
            Property::always(PROPERTIES[7], |_, s| CHECKS[7](s)),
        ];
        v.extend([
            Property::sometimes(COVERAGE[0], |_, s: &ClusterState| !s.leaders.is_empty()),
            Property::sometimes(COVERAGE[1], |_, s: &ClusterState| !s.committed.is_empty()),
            Property::sometimes(COVERAGE[2], |_, s: &ClusterState| {
                s.nodes.iter().any(|n| {
                    n.log.iter().any(|e| {
                        e.index <= n.core.commit_index()
                            && matches!(e.payload, EntryPayload::Normal(_))
                    })
                })
            }),
            Property::sometimes(COVERAGE[3], |_, s: &ClusterState| s.crashes > 0),
            Property::sometimes(COVERAGE[4], |_, s: &ClusterState| s.reads_served > 0),
        ]);
        v
    }
}
