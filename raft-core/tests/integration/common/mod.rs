//! A deterministic, in-memory network of raft-core nodes, shared by the integration tests.
//!
//! Each simulated node runs one `PartitionCore`, a `ReplicatorCore` per peer while it leads, an
//! in-memory "disk" written only when the test flushes it (so votes and acknowledgements really
//! wait for `persisted`), and a state machine that records every applied entry.
//!
//! The network holds messages in flight; tests (or the seeded fault schedule) choose which to
//! deliver, drop, duplicate or reorder, and which links are cut. After any step, `check()` looks
//! for violations of Raft's safety properties (paper, Figure 3):
//! election safety, log matching, leader completeness and state-machine safety — plus
//! linearizable ReadIndex (a read is never older than a commit that happened before it).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use raft_core::rng::SplitMix64;
use raft_core::{
    Action, Config, Entry, EntryPayload, HardState, Index, InitialState, Membership, Message,
    MessageBody, NodeId, PartitionCore, Plan, Proposed, ReplicatorCore, Role, SnapshotMeta, Term,
};
use serde::{Deserialize, Serialize};

/// One entry as the state machine saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub index: Index,
    pub term: Term,
    pub payload: EntryPayload,
}

/// A write waiting on the simulated disk.
#[derive(Clone, Debug)]
pub enum Write {
    Hard(u64, HardState),
    Entries(u64, Option<Index>, Vec<Entry>),
    Snapshot(u64, SnapshotMeta, Vec<Applied>, bool),
}

impl Write {
    fn seq(&self) -> u64 {
        match self {
            Write::Hard(s, _) | Write::Entries(s, _, _) | Write::Snapshot(s, _, _, _) => *s,
        }
    }
}

/// What survives a crash.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub hard: HardState,
    pub snapshot: SnapshotMeta,
    pub snapshot_data: Vec<Applied>,
    pub entries: Vec<Entry>,
}

/// One simulated node.
pub struct Node {
    pub id: NodeId,
    pub cfg: Config,
    pub core: PartitionCore,
    /// The log as the core intends it (written at once; the disk lags in `pending`).
    pub log: Vec<Entry>,
    pub durable: Durable,
    pub pending: Vec<Write>,
    /// The state machine: every applied entry, in order (after the snapshot's).
    pub sm: Vec<Applied>,
    pub sm_conf: Membership,
    /// Latest snapshot held locally (sent to lagging followers).
    pub snap: (SnapshotMeta, Vec<Applied>),
    pub incoming: Vec<u8>,
    pub repls: BTreeMap<NodeId, ReplicatorCore>,
    pub reads_ready: Vec<(u64, Index)>,
    pub reads_aborted: Vec<u64>,
    pub roles_seen: Vec<(Role, Term)>,
    /// Every `Action::Removed` index the core reported.
    pub removed: Vec<Index>,
    pub down: bool,
}

fn entry_at(log: &[Entry], index: Index) -> Option<&Entry> {
    let first = log.first()?.index;
    if index < first {
        return None;
    }
    log.get((index - first) as usize)
}

fn truncate_vec(log: &mut Vec<Entry>, from: Index) {
    log.retain(|e| e.index < from);
}

fn compact_vec(log: &mut Vec<Entry>, upto: Index) {
    log.retain(|e| e.index > upto);
}

impl Node {
    pub fn new(cfg: Config, init_membership: Membership) -> Node {
        let snapshot = SnapshotMeta {
            index: 0,
            term: 0,
            membership: init_membership.clone(),
        };
        let durable = Durable {
            snapshot: snapshot.clone(),
            ..Default::default()
        };
        let core = PartitionCore::new(
            cfg.clone(),
            1,
            InitialState::bootstrap(init_membership.clone()),
        )
        .expect("valid bootstrap");
        Node {
            id: cfg.id,
            cfg,
            core,
            log: Vec::new(),
            durable,
            pending: Vec::new(),
            sm: Vec::new(),
            sm_conf: init_membership,
            snap: (snapshot, Vec::new()),
            incoming: Vec::new(),
            repls: BTreeMap::new(),
            reads_ready: Vec::new(),
            reads_aborted: Vec::new(),
            roles_seen: Vec::new(),
            removed: Vec::new(),
            down: false,
        }
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        entry_at(&self.log, index)
    }

    pub fn applied_index(&self) -> Index {
        self.sm.last().map_or(self.snap.0.index, |a| a.index)
    }

    /// Completes the first `n` pending writes (all if `n` is `usize::MAX`).
    pub fn flush(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        if n == 0 {
            return;
        }
        let writes: Vec<Write> = self.pending.drain(..n).collect();
        let mut last_seq = 0;
        for w in writes {
            last_seq = w.seq();
            match w {
                Write::Hard(_, hs) => self.durable.hard = hs,
                Write::Entries(_, truncate, entries) => {
                    if let Some(t) = truncate {
                        truncate_vec(&mut self.durable.entries, t);
                    }
                    self.durable.entries.extend(entries);
                }
                Write::Snapshot(_, meta, data, discard) => {
                    if discard {
                        self.durable.entries.clear();
                    } else {
                        compact_vec(&mut self.durable.entries, meta.index);
                    }
                    self.durable.snapshot = meta;
                    self.durable.snapshot_data = data;
                }
            }
        }
        self.core.persisted(last_seq);
    }

    /// Loses everything not durable and restarts from the disk.
    pub fn crash_restart(&mut self) {
        self.pending.clear();
        let d = self.durable.clone();
        let init = InitialState::recover(d.hard, d.snapshot.clone(), &d.entries)
            .expect("recoverable disk");
        self.core = PartitionCore::new(self.cfg.clone(), 1, init).expect("restart");
        self.log = d.entries.clone();
        self.sm = d.snapshot_data.clone();
        self.sm_conf = d.snapshot.membership.clone();
        self.snap = (d.snapshot.clone(), d.snapshot_data.clone());
        self.incoming.clear();
        self.repls.clear();
    }
}

/// Fault probabilities, in per-mille.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub drop: u64,
    pub duplicate: u64,
}

/// The simulated cluster.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    pub net: Vec<Message>,
    /// Cut links, as (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub rng: SplitMix64,
    pub faults: Faults,
    /// Every entry any state machine applied: index -> (term, payload).
    pub global: BTreeMap<Index, (Term, EntryPayload)>,
    /// Leader seen per term.
    pub leaders: BTreeMap<Term, NodeId>,
    /// Minimum index each read must observe, by ctx.
    pub read_floor: BTreeMap<u64, Index>,
    pub violations: Vec<String>,
    /// Complete writes at once (unit tests) or only when told (property tests).
    pub auto_persist: bool,
    pub next_ctx: u64,
    pub delivered: u64,
    /// Deliveries left before the run is declared a livelock (a bug must fail, not hang).
    pub budget: u64,
    /// Print every delivered message (debugging a failing seed).
    pub trace: bool,
}

pub fn config(id: NodeId) -> Config {
    Config {
        snapshot_threshold: 0,
        ..Config::new(id)
    }
}

impl Cluster {
    /// A cluster of `ids`, all voters, with persistence completed automatically.
    pub fn new(ids: &[NodeId]) -> Cluster {
        Cluster::with(ids, ids, config)
    }

    /// Nodes `ids`; the initial voters are `voters` (others start empty and join later).
    pub fn with(ids: &[NodeId], voters: &[NodeId], cfg: impl Fn(NodeId) -> Config) -> Cluster {
        let membership = Membership::new(voters.iter().copied());
        let mut nodes = BTreeMap::new();
        for &id in ids {
            let m = if voters.contains(&id) {
                membership.clone()
            } else {
                Membership::default()
            };
            nodes.insert(id, Node::new(cfg(id), m));
        }
        Cluster {
            nodes,
            net: Vec::new(),
            cut: BTreeSet::new(),
            rng: SplitMix64::new(7),
            faults: Faults::default(),
            global: BTreeMap::new(),
            leaders: BTreeMap::new(),
            read_floor: BTreeMap::new(),
            violations: Vec::new(),
            auto_persist: true,
            next_ctx: 1,
            delivered: 0,
            budget: 2_000_000,
            trace: false,
        }
    }

    pub fn node(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("node exists")
    }

    pub fn core(&self, id: NodeId) -> &PartitionCore {
        &self.nodes[&id].core
    }

    /// The leader of the highest term, if any node leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|n| !n.down && n.core.role() == Role::Leader)
            .max_by_key(|n| n.core.term())
            .map(|n| n.id)
    }

    /// Drains and executes the actions of node `id` until it has none.
    pub fn process(&mut self, id: NodeId) {
        for _ in 0..1000 {
            let actions = {
                let node = self.nodes.get_mut(&id).expect("node");
                if node.auto_persist_due(self.auto_persist) {
                    node.flush(usize::MAX);
                }
                node.core.take_actions()
            };
            if actions.is_empty() {
                if self.auto_persist && !self.nodes[&id].pending.is_empty() {
                    self.node(id).flush(usize::MAX);
                    continue;
                }
                break;
            }
            for a in actions {
                self.exec(id, a);
            }
        }
        self.pump(id);
        self.observe(id);
    }

    fn exec(&mut self, id: NodeId, action: Action) {
        let node = self.nodes.get_mut(&id).expect("node");
        match action {
            Action::PersistHardState { seq, hard_state } => {
                node.pending.push(Write::Hard(seq, hard_state))
            }
            Action::PersistEntries {
                seq,
                truncate_from,
                entries,
            } => {
                if let Some(t) = truncate_from {
                    truncate_vec(&mut node.log, t);
                }
                if let (Some(last), Some(first)) = (node.log.last(), entries.first()) {
                    if first.index != last.index + 1 {
                        self.violations.push(format!(
                            "node {id}: append at {} after {}",
                            first.index, last.index
                        ));
                    }
                }
                node.log.extend(entries.iter().cloned());
                node.pending
                    .push(Write::Entries(seq, truncate_from, entries.to_vec()));
            }
            Action::Send(m) => {
                if m.from != id {
                    self.violations
                        .push(format!("node {id} sent a message from {}", m.from));
                }
                self.net.push(m);
            }
            Action::Replicate { .. } => {}
            Action::Apply { index } => {
                let from = node.applied_index() + 1;
                for i in from..=index {
                    let Some(e) = entry_at(&node.log, i).cloned() else {
                        self.violations
                            .push(format!("node {id}: apply of missing entry {i}"));
                        return;
                    };
                    if let EntryPayload::Membership(m) = &e.payload {
                        node.sm_conf = m.clone();
                    }
                    let a = Applied {
                        index: e.index,
                        term: e.term,
                        payload: e.payload,
                    };
                    match self.global.get(&i) {
                        Some((t, p)) if *t != a.term || *p != a.payload => self.violations.push(format!(
                            "state machine safety: node {id} applied term {} at {i}, another node applied term {t}",
                            a.term
                        )),
                        Some(_) => {}
                        None => {
                            self.global.insert(i, (a.term, a.payload.clone()));
                        }
                    }
                    node.sm.push(a);
                }
                node.core.applied(index);
            }
            Action::ReadReady { ctx, index } => {
                if node.applied_index() < index {
                    self.violations.push(format!(
                        "node {id}: read {ctx} ready at {index} before apply reached it"
                    ));
                }
                if let Some(&floor) = self.read_floor.get(&ctx) {
                    if index < floor {
                        self.violations.push(format!(
                            "linearizability: read {ctx} at node {id} served at index {index}, but {floor} was committed before it began"
                        ));
                    }
                }
                node.reads_ready.push((ctx, index));
            }
            Action::ReadAborted { ctx, .. } => node.reads_aborted.push(ctx),
            Action::RoleChanged { role, term, .. } => {
                node.roles_seen.push((role, term));
                if role == Role::Leader {
                    node.repls.clear();
                    self.sync_repls(id);
                    self.check_leader_completeness(id);
                } else {
                    node.repls.clear();
                }
            }
            Action::MembershipChanged { .. } | Action::PeersChanged => self.sync_repls(id),
            Action::Removed { index } => node.removed.push(index),
            Action::SnapshotChunk { offset, data, .. } => {
                if offset == 0 {
                    node.incoming.clear();
                }
                node.incoming.extend_from_slice(&data);
            }
            Action::InstallSnapshot {
                seq,
                meta,
                discard_log,
            } => {
                let data: Vec<Applied> = match postcard::from_bytes(&node.incoming) {
                    Ok(d) => d,
                    Err(e) => {
                        self.violations
                            .push(format!("node {id}: snapshot undecodable: {e}"));
                        return;
                    }
                };
                for a in &data {
                    match self.global.get(&a.index) {
                        Some((t, _)) if *t != a.term => self.violations.push(format!(
                            "state machine safety: node {id} installed a snapshot with term {} at {}, applied elsewhere with {t}",
                            a.term, a.index
                        )),
                        Some(_) => {}
                        None => {
                            self.global.insert(a.index, (a.term, a.payload.clone()));
                        }
                    }
                }
                if discard_log {
                    node.log.clear();
                } else {
                    compact_vec(&mut node.log, meta.index);
                }
                node.sm = data.clone();
                node.sm_conf = meta.membership.clone();
                node.snap = (meta.clone(), data.clone());
                node.pending
                    .push(Write::Snapshot(seq, meta, data, discard_log));
            }
            Action::DiscardSnapshot { .. } => node.incoming.clear(),
            Action::TakeSnapshot { index } => {
                // The simulated state machine keeps its whole history, so a snapshot is a prefix.
                let data: Vec<Applied> = node
                    .sm
                    .iter()
                    .filter(|a| a.index <= index)
                    .cloned()
                    .collect();
                let term = data.last().map_or(node.snap.0.term, |a| a.term);
                let meta = SnapshotMeta {
                    index,
                    term,
                    membership: node.sm_conf.clone(),
                };
                node.durable.snapshot = meta.clone();
                node.durable.snapshot_data = data.clone();
                node.snap = (meta.clone(), data);
                if let Err(e) = node.core.snapshot_taken(meta) {
                    self.violations
                        .push(format!("node {id}: snapshot_taken refused: {e}"));
                }
            }
            Action::CompactLog { index } => {
                compact_vec(&mut node.log, index);
                compact_vec(&mut node.durable.entries, index);
            }
        }
    }

    /// Keeps one replicator per node the leader replicates to.
    fn sync_repls(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        if node.core.role() != Role::Leader {
            return;
        }
        let peers: BTreeSet<NodeId> = node.core.replication_peers();
        node.repls.retain(|p, _| peers.contains(p));
        let (term, last) = (node.core.term(), node.core.log().last_index());
        for p in peers {
            node.repls
                .entry(p)
                .or_insert_with(|| ReplicatorCore::new(&node.cfg, p, term, last));
        }
    }

    /// Sends whatever the leader's replicators want to send.
    pub fn pump(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        if node.core.role() != Role::Leader || node.down {
            return;
        }
        let term = node.core.term();
        let (first, last, commit) = (
            node.core.log().first_index(),
            node.core.log().last_index(),
            node.core.commit_index(),
        );
        let max_bytes = node.cfg.max_msg_bytes;
        for (&peer, repl) in node.repls.iter_mut() {
            while let Some(plan) = repl.next_plan(first, last, commit) {
                match plan {
                    Plan::Append {
                        prev_index,
                        from,
                        to,
                    } => {
                        let Some(prev_term) = node.core.log().term(prev_index) else {
                            self.violations
                                .push(format!("leader {id}: no term for prev_index {prev_index}"));
                            break;
                        };
                        let mut entries = Vec::new();
                        let mut bytes = 0;
                        for i in from..=to {
                            let Some(e) = entry_at(&node.log, i) else {
                                break;
                            };
                            if bytes > 0 && bytes + e.size_hint() > max_bytes {
                                break;
                            }
                            bytes += e.size_hint();
                            entries.push(e.clone());
                        }
                        let last_sent = prev_index + entries.len() as Index;
                        let body = MessageBody::AppendEntries {
                            prev_index,
                            prev_term,
                            entries: entries.into(),
                            commit,
                        };
                        self.net.push(Message {
                            from: id,
                            to: peer,
                            term,
                            body,
                        });
                        repl.sent(prev_index, last_sent, bytes, commit);
                    }
                    Plan::Snapshot => {
                        let (meta, data) = node.snap.clone();
                        let bytes = postcard::to_allocvec(&data).expect("encode snapshot");
                        // Two chunks, to exercise reassembly.
                        let mid = bytes.len() / 2;
                        let chunks = [
                            (0u64, bytes[..mid].to_vec(), false),
                            (mid as u64, bytes[mid..].to_vec(), true),
                        ];
                        for (offset, data, done) in chunks {
                            let body = MessageBody::InstallSnapshot {
                                meta: meta.clone(),
                                offset,
                                data,
                                done,
                            };
                            self.net.push(Message {
                                from: id,
                                to: peer,
                                term,
                                body,
                            });
                        }
                        repl.snapshot_sent(meta.index);
                    }
                }
            }
        }
    }

    /// Records the node's leadership and checks election safety.
    fn observe(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        if node.core.role() == Role::Leader {
            let term = node.core.term();
            match self.leaders.get(&term) {
                Some(&other) if other != id => self.violations.push(format!(
                    "election safety: nodes {other} and {id} both lead term {term}"
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                }
            }
        }
    }

    /// Leader completeness: a new leader holds every entry any state machine applied.
    fn check_leader_completeness(&mut self, id: NodeId) {
        let core = &self.nodes[&id].core;
        for (&index, &(term, _)) in &self.global {
            if index <= core.log().snapshot_index() {
                continue;
            }
            if core.log().term(index) != Some(term) {
                self.violations.push(format!(
                    "leader completeness: node {id} leads term {} without committed entry {index} (term {term})",
                    core.term()
                ));
                return;
            }
        }
    }

    /// Log matching over every pair of live nodes: if two logs hold an entry with the same
    /// index and term, they are identical up to it.
    pub fn check_log_matching(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i + 1..] {
                let (la, lb) = (&self.nodes[&a].log, &self.nodes[&b].log);
                let (Some(fa), Some(fb)) = (la.first(), lb.first()) else {
                    continue;
                };
                let start = fa.index.max(fb.index);
                let end = la
                    .last()
                    .map_or(0, |e| e.index)
                    .min(lb.last().map_or(0, |e| e.index));
                // Highest common index with equal terms.
                let mut top = None;
                let mut k = end;
                while k >= start && k > 0 {
                    if entry_at(la, k).map(|e| e.term) == entry_at(lb, k).map(|e| e.term) {
                        top = Some(k);
                        break;
                    }
                    k -= 1;
                }
                let Some(top) = top else { continue };
                for k in start..=top {
                    if entry_at(la, k) != entry_at(lb, k) {
                        self.violations.push(format!(
                            "log matching: nodes {a} and {b} agree at {top} but differ at {k}"
                        ));
                        return;
                    }
                }
            }
        }
    }

    /// Runs the cheap per-step checks; returns the first violation.
    pub fn check(&mut self) -> Result<(), String> {
        match self.violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    /// Delivers message `i` of the network (subject to cut links and faults).
    pub fn deliver(&mut self, i: usize) {
        if i >= self.net.len() {
            return;
        }
        let m = self.net.swap_remove(i);
        self.deliver_msg(m);
    }

    pub fn deliver_msg(&mut self, m: Message) {
        let to = m.to;
        if self.cut.contains(&(m.from, to)) || self.nodes.get(&to).is_none_or(|n| n.down) {
            return;
        }
        if self.faults.drop > 0 && self.rng.below(1000) < self.faults.drop {
            return;
        }
        if self.faults.duplicate > 0 && self.rng.below(1000) < self.faults.duplicate {
            self.net.push(m.clone());
        }
        self.delivered += 1;
        if self.budget == 0 {
            if self.violations.is_empty() {
                self.violations
                    .push("livelock: message budget exhausted".into());
            }
            self.net.clear();
            return;
        }
        self.budget -= 1;
        if self.trace {
            eprintln!("  deliver {} -> {} t{} {:?}", m.from, m.to, m.term, m.body);
        }
        let from = m.from;
        let node = self.nodes.get_mut(&to).expect("node");
        match &m.body {
            MessageBody::AppendResponse(r) => {
                if let Some(repl) = node.repls.get_mut(&from) {
                    let out = repl.on_append_response(m.term, r);
                    if let Some(p) = out.progress {
                        node.core.progress(from, repl.term(), p);
                    }
                }
            }
            MessageBody::SnapshotResponse { index, status } => {
                if let Some(repl) = node.repls.get_mut(&from) {
                    let out = repl.on_snapshot_response(m.term, *index, *status);
                    if let Some(p) = out.progress {
                        node.core.progress(from, repl.term(), p);
                    }
                }
            }
            _ => {}
        }
        node.core.step(m);
        self.process(to);
    }

    /// Delivers everything in flight, in order, until the network is quiet.
    pub fn deliver_all(&mut self) {
        for _ in 0..20_000 {
            if self.net.is_empty() {
                return;
            }
            let m = self.net.remove(0);
            self.deliver_msg(m);
        }
    }

    /// Completes every pending write everywhere and delivers until quiet.
    pub fn stabilize(&mut self) {
        for _ in 0..50 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            let mut any = false;
            for id in ids {
                if !self.nodes[&id].pending.is_empty() && !self.nodes[&id].down {
                    self.node(id).flush(usize::MAX);
                    any = true;
                }
                self.process(id);
            }
            if self.net.is_empty() && !any {
                return;
            }
            self.deliver_all();
        }
    }

    pub fn tick(&mut self, id: NodeId) {
        let node = self.node(id);
        if node.down {
            return;
        }
        node.core.tick();
        for repl in node.repls.values_mut() {
            repl.tick();
        }
        self.process(id);
    }

    pub fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.tick(id);
        }
    }

    /// Makes `id` campaign and runs the election to its end.
    pub fn elect(&mut self, id: NodeId) {
        self.node(id).core.campaign();
        self.process(id);
        self.stabilize();
        assert_eq!(
            self.core(id).role(),
            Role::Leader,
            "node {id} failed to win: {:?}",
            self.core(id).status()
        );
    }

    pub fn propose(&mut self, id: NodeId, cmd: &[u8]) -> Result<Proposed, raft_core::Error> {
        let r = self.node(id).core.propose(vec![cmd.to_vec()]);
        self.process(id);
        r
    }

    /// Starts a ReadIndex read at `id`, recording the floor it must observe.
    pub fn read(&mut self, id: NodeId) -> Result<u64, raft_core::Error> {
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        let floor = self
            .nodes
            .values()
            .map(|n| n.core.commit_index())
            .max()
            .unwrap_or(0);
        // Only entries some state machine could have acknowledged count: committed ones.
        self.read_floor.insert(ctx, floor);
        let r = self.node(id).core.read_index(ctx);
        self.process(id);
        r.map(|_| ctx)
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Applied payloads of a node, commands only.
    pub fn commands(&self, id: NodeId) -> Vec<Vec<u8>> {
        self.nodes[&id]
            .sm
            .iter()
            .filter_map(|a| match &a.payload {
                EntryPayload::Normal(d) => Some(d.to_vec()),
                _ => None,
            })
            .collect()
    }
}

impl Node {
    fn auto_persist_due(&self, auto: bool) -> bool {
        auto && !self.pending.is_empty()
    }
}

/// Builds a message for unit tests.
pub fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

/// Takes the messages a core emitted (executing nothing else).
pub fn sent(actions: &[Action]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The highest persistence sequence number among `actions`.
pub fn last_seq(actions: &[Action]) -> Option<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistHardState { seq, .. }
            | Action::PersistEntries { seq, .. }
            | Action::InstallSnapshot { seq, .. } => Some(*seq),
            _ => None,
        })
        .max()
}

/// Drains the core, completing every write it asks for, until it has nothing more to say.
pub fn settle(core: &mut PartitionCore) -> Vec<Action> {
    let mut all = Vec::new();
    loop {
        let actions = core.take_actions();
        if actions.is_empty() {
            return all;
        }
        let seq = last_seq(&actions);
        all.extend(actions);
        if let Some(seq) = seq {
            core.persisted(seq);
        }
    }
}

/// Steps `m` and returns the actions, completing no write.
pub fn step(core: &mut PartitionCore, m: Message) -> Vec<Action> {
    core.step(m);
    core.take_actions()
}

/// Steps `m`, completes every write, and returns the messages the core sent.
pub fn respond(core: &mut PartitionCore, m: Message) -> Vec<Message> {
    core.step(m);
    sent(&settle(core))
}
