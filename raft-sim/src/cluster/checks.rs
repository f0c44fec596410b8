//! Observation and the checkers: election safety, leader completeness, liveness after
//! healing, linearizability of the client history and the workload's own history checks, the
//! replicator wake-up audit, log matching over the final durable logs, state-machine safety,
//! and the run's hashes.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use raft_actor::metrics::GroupMetrics;
use raft_core::{Entry, Index, NodeId, Role, Term};
use raft_storage::{LogStore, MemStore};

use super::client::History;
use super::workload::{Op, Workload};
use super::{Applied, CommandOf, GROUP, Harness, SimNode, SimReport};
use crate::checkers::{LogImage, LogView, WakeupAudit, check_log_matching};
use crate::trace::TraceLog;

/// What a node's metrics say of its session table: (sessions, evicted so far, digest).
type SessionTable = (u64, u64, u64);

/// Read access to a node's durable image for the leader-completeness checker.
struct StoreView<'a> {
    node: NodeId,
    store: &'a MemStore,
}

impl LogView for StoreView<'_> {
    fn node(&self) -> NodeId {
        self.node
    }

    fn snapshot_point(&self) -> (Index, Term) {
        match self.store.snapshot(GROUP) {
            Ok(Some((meta, _))) => (meta.index, meta.term),
            _ => (0, 0),
        }
    }

    fn entry(&self, index: Index) -> Option<Entry> {
        let mut v = self.store.entries(GROUP, index, index, u64::MAX).ok()?;
        v.pop().filter(|e| e.index == index)
    }
}

impl<W: Workload> Harness<W> {
    /// Reads every node's metrics: election safety, leader completeness, commits, queues,
    /// stalls and the victim's lag.
    pub(super) async fn observe(&mut self) {
        let mut seen: Vec<(NodeId, GroupMetrics)> = Vec::new();
        for (&id, n) in &self.nodes {
            if let Ok(m) = n.group_metrics(GROUP).await {
                seen.push((id, m));
            }
        }
        let mut newest: Option<(Term, NodeId)> = None;
        for (id, m) in seen {
            self.max_term = self.max_term.max(m.term);
            if m.stalled {
                self.report.stalls_seen += 1;
            }
            let q = &mut self.report.max_queues;
            *q = (
                q.0.max(m.client_queue),
                q.1.max(m.raft_queue),
                q.2.max(m.control_queue),
            );
            if !(m.responsive && m.role == Role::Leader) {
                continue;
            }
            if let Some(v) = self.lagging.or(self.hung) {
                if let Some(&lag) = m.lag.get(&v) {
                    self.report.max_victim_lag = self.report.max_victim_lag.max(lag);
                }
            }
            if newest.is_none_or(|(t, _)| m.term > t) {
                newest = Some((m.term, id));
            }
            let mut found = Vec::new();
            match self.leaders.get(&m.term) {
                Some(&other) if other != id => found.push(format!(
                    "election safety: nodes {other} and {id} both lead term {}",
                    m.term
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert(m.term, id);
                    self.trace
                        .event(|| format!("n{id} leads term {} (commit {})", m.term, m.commit));
                }
            }
            let sole_leader = found.is_empty();
            if let Some(disk) = self.disks.get_mut(&id) {
                match disk.settle() {
                    Err(e) => found.push(e),
                    Ok(()) => {
                        let view = StoreView {
                            node: id,
                            store: &disk.image,
                        };
                        // Incremental: `check_leader` resumes where it stopped for this node.
                        if sole_leader {
                            if let Err(e) = self.completeness.check_leader(m.term, &view) {
                                found.push(e);
                            }
                        }
                        let before = self.completeness.commit_index();
                        if let Err(e) = self.completeness.committed(m.term, &view, m.commit) {
                            found.push(e);
                        }
                        self.report.committed_checked += self.completeness.commit_index() - before;
                    }
                }
            }
            for v in found {
                self.violate(v);
            }
        }
        if newest.is_some() {
            self.leader = newest;
        }
    }

    /// Liveness once the faults are healed: a fresh write commits within
    /// [`SimConfig::liveness_bound`](super::SimConfig::liveness_bound), tried at each node in
    /// turn. Returns whether one did.
    pub(super) async fn check_liveness(&mut self) -> bool {
        let healed = tokio::time::Instant::now();
        let mut live = false;
        let mut k = 0usize;
        while healed.elapsed() < self.cfg.liveness_bound {
            self.observe().await;
            let current: Vec<&SimNode<W>> = self.nodes.values().collect();
            let n = current[k % current.len()];
            k += 1;
            // The probe changes nothing a client can observe: it needs no session.
            if n.propose(GROUP, self.workload.probe()).await.is_ok() {
                live = true;
                self.trace
                    .event(|| format!("liveness: a write commits at n{}", n.id()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !live {
            self.violate(format!(
                "liveness: no commit within {:?} after healing",
                self.cfg.liveness_bound
            ));
        }
        live
    }

    /// The workload's own checks and linearizability of the clients' history; what they find
    /// goes in the trace too.
    pub(super) fn check_client_history(&mut self, history: &History<W>) {
        let fault_phase = u64::try_from(self.cfg.duration.as_nanos()).unwrap_or(u64::MAX);
        self.report.commands_acked_under_faults = history
            .iter()
            .filter(|r| matches!(r.op, super::Op::Command(_)))
            .filter(|r| r.ret.as_ref().is_some_and(|(at, _)| *at <= fault_phase))
            .count() as u64;
        let before = self.report.violations.len();
        check_history(&self.workload, history, &mut self.report);
        for v in &self.report.violations[before..] {
            self.trace.event(|| format!("VIOLATION {v}"));
        }
    }

    /// Lets followers apply everything, then (if the cluster is live) audits replicator
    /// wake-ups in a quiet window.
    pub(super) async fn audit_quiet_window(&mut self, live: bool) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.observe().await;
        if live {
            match self.wakeup_audit().await {
                Ok(audit) => {
                    self.trace.event(|| format!("wake-up audit: {audit:?}"));
                    if let Err(e) = audit.check() {
                        self.violate(e);
                    }
                    self.report.wakeup_audit = Some(audit);
                }
                Err(e) => self.violate(e),
            }
        }
    }

    /// The final figures, then every node shuts down and their durable logs are checked.
    pub(super) async fn shut_down(&mut self) {
        self.finish_metrics().await;
        self.report.leader_terms = self.leaders.len() as u64;
        for n in self.nodes.values() {
            n.shutdown().await;
        }
        self.check_durable_logs();
    }

    /// The report: state-machine safety over every applied command, the run's hashes and the
    /// trace.
    pub(super) fn into_report(self, history: &History<W>, trace_log: &TraceLog) -> SimReport {
        let mut report = self.report;
        report.membership_changes = self.changes_rx.len() as u64;
        let before = report.violations.len();
        summarize_applied::<W>(&self.applied_rx, history, &mut report);
        for v in &report.violations[before..] {
            self.trace.event(|| format!("VIOLATION {v}"));
        }
        report.trace = trace_log.drain();
        report
    }

    /// The wake-up audit: in a quiet window with one leader and a fixed membership, spaced writes
    /// must wake each replicator exactly once per published log change.
    async fn wakeup_audit(&mut self) -> Result<WakeupAudit, String> {
        const WRITES: u64 = 20;
        for _attempt in 0..5 {
            self.observe().await;
            let Some((_, leader)) = self.leader else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let Some(node) = self.nodes.get(&leader).cloned() else {
                continue;
            };
            let Ok(m0) = node.group_metrics(GROUP).await else {
                continue;
            };
            if m0.role != Role::Leader || m0.membership.is_joint() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            for _ in 0..WRITES {
                let _ = node.propose(GROUP, self.workload.probe()).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Ok(m1) = node.group_metrics(GROUP).await else {
                continue;
            };
            // The replicators are the leader's peers (`matched` has one entry each): the members
            // and, for a while, a node a change removed. The same set throughout the window.
            let peers = |m: &GroupMetrics| m.matched.keys().copied().collect::<Vec<_>>();
            if m1.role != Role::Leader
                || m1.term != m0.term
                || m1.membership != m0.membership
                || peers(&m1) != peers(&m0)
            {
                continue;
            }
            return Ok(WakeupAudit {
                signals: m1.replicate_signals - m0.replicate_signals,
                wakeups: m1.replicator_wakeups - m0.replicator_wakeups,
                replicators: m0.matched.len() as u64,
            });
        }
        Err("wake-up audit: no quiet window with a stable leader after healing".into())
    }

    /// Final per-node figures: snapshots, whether the victim caught up, and the session
    /// tables: replicas that applied the same index must hold the same table (same digest,
    /// same size, same evictions so far), however each got there (applying the log, or
    /// restoring a snapshot).
    async fn finish_metrics(&mut self) {
        let mut commit = 0;
        let mut applied = BTreeMap::new();
        let mut tables: BTreeMap<u64, Vec<(NodeId, SessionTable)>> = BTreeMap::new();
        for (&id, n) in &self.nodes {
            let Ok(m) = n.group_metrics(GROUP).await else {
                continue;
            };
            self.report.snapshots_installed += m.snapshots_installed;
            self.report.snapshots_taken += m.snapshots_taken;
            if m.role == Role::Leader {
                commit = commit.max(m.commit);
            }
            applied.insert(id, m.applied);
            self.report.sessions_evicted = self.report.sessions_evicted.max(m.sessions_evicted);
            tables
                .entry(m.applied)
                .or_default()
                .push((id, (m.sessions, m.sessions_evicted, m.session_digest)));
        }
        if let Some(v) = self.report.victim {
            self.report.victim_caught_up = applied.get(&v).is_some_and(|&a| a >= commit);
        }
        let mut found = Vec::new();
        for (index, nodes) in &tables {
            let Some(&(first, table)) = nodes.first() else {
                continue;
            };
            self.report.session_tables_compared += nodes.len() as u64 - 1;
            for &(other, t) in &nodes[1..] {
                if t != table {
                    found.push(format!(
                        "session tables differ at applied index {index}: node {first} holds \
                         (sessions, evicted, digest) {table:?}, node {other} {t:?}"
                    ));
                }
            }
        }
        for v in found {
            self.violate(v);
        }
    }

    /// Log matching over every pair of final durable logs.
    fn check_durable_logs(&mut self) {
        let mut images = Vec::new();
        let mut found = Vec::new();
        for (&id, disk) in &mut self.disks {
            if let Err(e) = disk.settle() {
                found.push(e);
            }
            images.push(LogImage::from_recovered(
                id,
                disk.image.recover(GROUP).ok().flatten(),
            ));
        }
        // Proposals committed by the end of the fault phase: the commands (and session
        // openings) in the longest log, up to the commit index reached by then.
        self.report.proposals_committed_under_faults = images
            .iter()
            .map(|l| {
                l.entries
                    .iter()
                    .filter(|e| e.index <= self.fault_end_commit)
                    .filter(|e| matches!(e.payload, raft_core::EntryPayload::Normal(_)))
                    .count() as u64
            })
            .max()
            .unwrap_or(0);
        for (i, a) in images.iter().enumerate() {
            for b in &images[i + 1..] {
                if let Err(e) = check_log_matching(a, b) {
                    found.push(e);
                }
            }
        }
        for v in found {
            self.violate(v);
        }
        let nodes: BTreeSet<NodeId> = self.nodes.keys().copied().collect();
        self.trace.event(|| {
            format!(
                "final durable logs of {nodes:?}: {:?}",
                images
                    .iter()
                    .map(|l| (l.node, l.snapshot_index, l.last_index()))
                    .collect::<Vec<_>>()
            )
        });
    }
}

/// Checks the client history: the workload's own checks ([`Workload::check_history`]), then
/// linearizability against the workload's model (a command whose outcome is unknown may or may
/// not have taken effect). Counts the acknowledged and in-doubt operations.
fn check_history<W: Workload>(workload: &W, history: &History<W>, report: &mut SimReport) {
    use crate::linearizability::{CheckBudget, CheckResult, Operation, check};
    let mut ops = Vec::with_capacity(history.len());
    for r in history {
        match &r.ret {
            Some(_) => report.acked += 1,
            None => report.in_doubt += 1,
        }
        ops.push(Operation {
            client: r.client,
            input: workload.input(&r.op),
            call: r.call,
            ret: r
                .ret
                .as_ref()
                .map(|(ret, response)| ((*ret).max(r.call + 1), workload.output(&r.op, response))),
        });
    }
    report.violations.extend(workload.check_history(history));
    match check(&workload.model(), &ops, CheckBudget::default()) {
        CheckResult::Linearizable => {}
        CheckResult::NotLinearizable { explanation } => {
            report
                .violations
                .push(format!("linearizability: {explanation}"));
        }
        CheckResult::Unknown { .. } => report.linearizability_unknown = true,
    }
}

/// State-machine safety over every applied command, and the run's hashes.
fn summarize_applied<W: Workload>(
    applied_rx: &flume::Receiver<Applied<CommandOf<W>>>,
    history: &History<W>,
    report: &mut SimReport,
) {
    let mut applied: BTreeMap<u64, (NodeId, CommandOf<W>)> = BTreeMap::new();
    let mut hasher = DefaultHasher::new();
    let mut applied_hasher = DefaultHasher::new();
    let mut history_hasher = DefaultHasher::new();
    if applied_rx.is_full() {
        report
            .violations
            .push("checker: applied-entry queue overflowed".into());
    }
    while let Ok(a) = applied_rx.try_recv() {
        (a.node, a.index).hash(&mut applied_hasher);
        report.applied_order.push((a.node, a.index));
        a.node.hash(&mut hasher);
        a.index.hash(&mut hasher);
        a.command.hash(&mut hasher);
        match applied.get(&a.index) {
            Some((other, cmd)) if *cmd != a.command => report.violations.push(format!(
                "state-machine safety: index {} applied as {:?} on node {} but {:?} on node {}",
                a.index, cmd, other, a.command, a.node
            )),
            Some(_) => {}
            None => {
                applied.insert(a.index, (a.node, a.command));
            }
        }
    }
    // Timestamps are left out: only the order of events is hashed. A command answered, a
    // query answered and a command in doubt: (0, client, seq, response), (1, client, 0,
    // response) and (2, client, seq, 0i64).
    for r in history {
        match (&r.op, &r.ret) {
            (Op::Command(_), Some((_, response))) => {
                (0u8, r.client, r.seq, response).hash(&mut history_hasher)
            }
            (Op::Query(_), Some((_, response))) => {
                (1u8, r.client, 0u64, response).hash(&mut history_hasher)
            }
            (_, None) => (2u8, r.client, r.seq, 0i64).hash(&mut history_hasher),
        }
    }
    report.applied_hash = applied_hasher.finish();
    report.history_hash = history_hasher.finish();
    report.history_hash.hash(&mut hasher);
    report.trace_hash = hasher.finish();
}
