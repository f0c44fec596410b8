//! The crate's additions to the Raft paper, one claim per test: pre-vote, check-quorum and the
//! leader lease, leader transfer, ReadIndex, joint consensus, learners, snapshots and log
//! compaction, the per-peer `ReplicatorCore`, and how every input copes with bad values.
//!
//! Every test opens with a `// Claim:` comment (and a reference to the Raft thesis, Ongaro 2014,
//! where one applies). Single-core tests drive one `PartitionCore` or `ReplicatorCore` by hand
//! and assert on the actions and status it reports; the few scenario tests run the simulated
//! cluster of `common`, which checks Raft's safety properties as it goes. Nothing here needs a
//! runtime, a clock or randomness beyond the cores' fixed seeds, so every run is identical.
//!
//! Cores run the crate's defaults (pre-vote and check-quorum on) unless a test says otherwise.
//! The Raft paper's own claims (sections 5.1–5.5) are in `paper.rs` and are not repeated here.

use super::common;

use common::*;
use raft_core::{
    Action, AppendResponse, Config, ConflictHint, Entry, EntryPayload, Error, HardState, Index,
    InitialState, Membership, MembershipError, Message, MessageBody, NodeAddrs, NodeId, Outcome,
    PartitionCore, Plan, ReplState, ReplicatorCore, Role, SnapshotMeta, SnapshotStatus, Term,
};

// ---------------------------------------------------------------------------------------------
// Helpers: building cores and messages, reading actions.
// ---------------------------------------------------------------------------------------------

fn voters(ids: &[NodeId]) -> Membership {
    Membership::new(ids.iter().copied())
}

/// A brand-new core of a group with the given membership.
fn fresh_in(cfg: Config, membership: Membership) -> PartitionCore {
    PartitionCore::new(cfg, 1, InitialState::bootstrap(membership)).expect("valid core")
}

/// A brand-new core of a group whose voters are `ids`.
fn fresh(cfg: Config, ids: &[NodeId]) -> PartitionCore {
    fresh_in(cfg, voters(ids))
}

/// Node `cfg.id` elected leader of term 1 by the other voters of `membership` (pre-vote or
/// not), with all its writes durable. Its log holds the term's no-op at index 1, uncommitted
/// unless the group has a single voter.
fn elected_in(cfg: Config, membership: Membership) -> PartitionCore {
    let id = cfg.id;
    let others: Vec<NodeId> = membership
        .voters
        .iter()
        .copied()
        .filter(|&v| v != id)
        .collect();
    let et = cfg.election_ticks;
    let leases = cfg.lease_reads;
    let mut core = fresh_in(cfg, membership);
    if leases {
        // A node with leases on keeps out of elections for its first election timeout.
        for _ in 0..et {
            core.tick();
        }
        core.take_actions();
    }
    core.campaign();
    settle(&mut core);
    for _round in 0..2 {
        for &v in &others {
            let (term, pre_vote) = match core.role() {
                Role::PreCandidate => (core.term() + 1, true),
                Role::Candidate => (core.term(), false),
                _ => break,
            };
            core.step(msg(
                v,
                id,
                term,
                MessageBody::VoteResponse {
                    pre_vote,
                    granted: true,
                },
            ));
            settle(&mut core);
        }
    }
    assert_eq!(core.role(), Role::Leader, "{:?}", core.status());
    core
}

fn elected(cfg: Config, ids: &[NodeId]) -> PartitionCore {
    elected_in(cfg, voters(ids))
}

/// Leader 1 of voters {1, 2, 3} in term 1 with its no-op (index 1) committed.
fn leader_of_three(cfg: Config) -> PartitionCore {
    let mut core = elected(cfg, &[1, 2, 3]);
    core.progress(2, 1, 1);
    core.progress(3, 1, 1);
    settle(&mut core);
    assert_eq!(core.commit_index(), 1);
    core
}

/// Leader 1 of voters {1, 2, 3} and learners `learners` in term 1 with its no-op (index 1)
/// committed.
fn leader_of_three_with_learners(cfg: Config, learners: &[NodeId]) -> PartitionCore {
    let mut core = elected_in(cfg, Membership::with_learners([1, 2, 3], learners.to_vec()));
    core.progress(2, 1, 1);
    core.progress(3, 1, 1);
    settle(&mut core);
    assert_eq!(core.commit_index(), 1);
    core
}

/// A leader with a single voter (itself) and `n` committed commands after its no-op.
fn single_leader(cfg: Config, n: usize) -> PartitionCore {
    let mut core = elected(cfg, &[1]);
    if n > 0 {
        core.propose((0..n).map(|i| vec![i as u8]).collect())
            .expect("leader accepts");
    }
    settle(&mut core);
    assert_eq!(core.commit_index(), 1 + n as Index);
    core
}

fn vote_request(
    from: NodeId,
    to: NodeId,
    term: Term,
    last: (Index, Term),
    pre_vote: bool,
) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::RequestVote {
            pre_vote,
            last_index: last.0,
            last_term: last.1,
            transfer: false,
        },
    )
}

fn transfer_vote_request(from: NodeId, to: NodeId, term: Term, last: (Index, Term)) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::RequestVote {
            pre_vote: false,
            last_index: last.0,
            last_term: last.1,
            transfer: true,
        },
    )
}

fn append(
    from: NodeId,
    to: NodeId,
    term: Term,
    (prev_index, prev_term): (Index, Term),
    entries: Vec<Entry>,
    commit: Index,
) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries: entries.into(),
            commit,
        },
    )
}

fn heartbeat(from: NodeId, to: NodeId, term: Term) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::Heartbeat {
            commit: 0,
            read_seq: 0,
        },
    )
}

fn heartbeat_ack(from: NodeId, to: NodeId, term: Term, read_seq: u64) -> Message {
    msg(from, to, term, MessageBody::HeartbeatResponse { read_seq })
}

fn snapshot_chunk(
    from: NodeId,
    to: NodeId,
    term: Term,
    meta: &SnapshotMeta,
    offset: u64,
    data: &[u8],
    done: bool,
) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::InstallSnapshot {
            meta: meta.clone(),
            offset,
            data: data.to_vec(),
            done,
        },
    )
}

/// Commands `first..first + terms.len()` with the given terms.
fn entries(first: Index, terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .zip(first..)
        .map(|(&term, index)| Entry {
            index,
            term,
            payload: EntryPayload::Normal(vec![index as u8].into()),
        })
        .collect()
}

fn entry(index: Index, term: Term, payload: EntryPayload) -> Entry {
    Entry {
        index,
        term,
        payload,
    }
}

/// Follower 2 of voters {1, 2, 3} holding `terms` from leader 1 (term = the last entry's term),
/// with the given commit index and everything durable.
fn follower_with(terms: &[Term], commit: Index) -> PartitionCore {
    let mut core = fresh(config(2), &[1, 2, 3]);
    let term = terms.last().copied().unwrap_or(1);
    core.step(append(1, 2, term, (0, 0), entries(1, terms), commit));
    settle(&mut core);
    assert_eq!(core.log().last_index(), terms.len() as Index);
    core
}

fn timeout_nows(actions: &[Action]) -> Vec<NodeId> {
    sent(actions)
        .iter()
        .filter(|m| m.body == MessageBody::TimeoutNow)
        .map(|m| m.to)
        .collect()
}

fn reads_ready(actions: &[Action]) -> Vec<(u64, Index)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReadReady { ctx, index } => Some((*ctx, *index)),
            _ => None,
        })
        .collect()
}

/// The index of every `Action::Removed` among `actions`.
fn removals(actions: &[Action]) -> Vec<Index> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Removed { index } => Some(*index),
            _ => None,
        })
        .collect()
}

fn memberships(actions: &[Action]) -> Vec<Membership> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::MembershipChanged { membership } => Some(membership.clone()),
            _ => None,
        })
        .collect()
}

/// The `(granted, term)` of every vote response (pre-vote or not) among `msgs`.
fn vote_answers(msgs: &[Message]) -> Vec<(bool, Term)> {
    msgs.iter()
        .filter_map(|m| match m.body {
            MessageBody::VoteResponse { granted, .. } => Some((granted, m.term)),
            _ => None,
        })
        .collect()
}

fn snapshot_answers(msgs: &[Message]) -> Vec<(Index, SnapshotStatus)> {
    msgs.iter()
        .filter_map(|m| match m.body {
            MessageBody::SnapshotResponse { index, status } => Some((index, status)),
            _ => None,
        })
        .collect()
}

fn has_hard_state_write(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::PersistHardState { .. }))
}

/// Ticks every node of the cluster `n` times, delivering everything in flight after each tick.
fn run_ticks(c: &mut Cluster, n: u32) {
    for _ in 0..n {
        c.tick_all();
        c.deliver_all();
    }
}

fn terms(c: &Cluster) -> Vec<Term> {
    c.nodes.values().map(|n| n.core.term()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Pre-vote (Raft thesis, 9.6).
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pre_candidate_that_cannot_win_changes_no_term_anywhere() {
    // Claim: a node that keeps timing out without being able to win (its log is behind) only
    // ever runs pre-vote rounds: neither it nor the voters it asks move to a new term, and the
    // leader keeps leading. Check-quorum is off so the voters' refusals come from pre-vote alone.
    let cfg = |id| Config {
        check_quorum: false,
        ..config(id)
    };
    let mut c = Cluster::with(&[1, 2, 3], &[1, 2, 3], cfg);
    c.elect(1);
    // Node 3 stops hearing from the leader (one way): it falls behind and times out, but its
    // own messages still reach everyone.
    c.cut.insert((1, 3));
    c.propose(1, b"x").unwrap();
    c.stabilize();
    run_ticks(&mut c, 6 * config(3).election_ticks);

    let seen = &c.nodes[&3].roles_seen;
    assert!(seen.contains(&(Role::PreCandidate, 1)), "{seen:?}");
    assert!(
        !seen.iter().any(|(r, _)| *r == Role::Candidate),
        "node 3 never campaigned for real: {seen:?}"
    );
    assert_eq!(terms(&c), vec![1, 1, 1]);
    for id in [1, 2, 3] {
        assert_eq!(c.nodes[&id].durable.hard.term, 1, "node {id}");
    }
    assert_eq!(c.leader(), Some(1));
    c.check().unwrap();
}

#[test]
fn a_partitioned_node_that_rejoins_does_not_disrupt_a_healthy_leader() {
    // Claim (thesis 9.6): while partitioned, a node's timeouts never raise its term, so when it
    // rejoins no higher term reaches the leader: the term stays, the leader stays, and the node
    // simply follows and catches up.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for cmd in [b"a", b"b", b"c"] {
        c.propose(1, cmd).unwrap();
    }
    c.stabilize();
    let et = config(3).election_ticks;
    run_ticks(&mut c, 6 * et);
    assert_eq!(c.core(3).term(), 1, "an isolated node only pre-votes");
    assert!(c.nodes[&3].roles_seen.contains(&(Role::PreCandidate, 1)));

    c.heal();
    run_ticks(&mut c, 3 * et);
    c.stabilize();
    assert_eq!(terms(&c), vec![1, 1, 1]);
    assert_eq!(c.leader(), Some(1));
    assert_eq!(c.core(3).leader(), Some(1));
    assert_eq!(c.core(3).commit_index(), c.core(1).commit_index());
    assert_eq!(
        c.commands(3),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    c.check().unwrap();
}

#[test]
fn granting_a_pre_vote_keeps_the_vote_already_cast() {
    // Claim (thesis 9.6): a pre-vote grant is not a vote. A voter that voted for node 2 in term
    // 1 grants node 3 a pre-vote for term 2 without writing anything, and is still bound to its
    // vote for node 2 in term 1.
    let mut voter = fresh(config(1), &[1, 2, 3]);
    let replies = respond(&mut voter, vote_request(2, 1, 1, (0, 0), false));
    assert_eq!(vote_answers(&replies), vec![(true, 1)]);
    assert_eq!(voter.hard_state().vote, Some(2));

    let actions = step(&mut voter, vote_request(3, 1, 2, (0, 0), true));
    assert_eq!(vote_answers(&sent(&actions)), vec![(true, 2)]);
    assert!(!has_hard_state_write(&actions), "{actions:?}");
    assert_eq!(
        voter.hard_state(),
        HardState {
            term: 1,
            vote: Some(2),
            commit: 0
        }
    );
    // Node 3 asking for a real vote in term 1 is still refused: the vote went to node 2.
    let replies = respond(&mut voter, vote_request(3, 1, 1, (0, 0), false));
    assert_eq!(vote_answers(&replies), vec![(false, 1)]);
}

#[test]
fn winning_the_pre_vote_leads_to_a_real_election_in_the_next_term() {
    // Claim (thesis 9.6): once a majority grants the pre-vote, the node campaigns for real in
    // term + 1, and the voters then record a durable vote for it.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.node(1).core.campaign();
    c.process(1);
    c.stabilize();
    assert_eq!(
        c.nodes[&1].roles_seen,
        vec![
            (Role::PreCandidate, 0),
            (Role::Candidate, 1),
            (Role::Leader, 1)
        ]
    );
    for id in [2, 3] {
        assert_eq!(
            c.nodes[&id].durable.hard.vote,
            Some(1),
            "node {id} voted in the real election"
        );
        assert_eq!(c.nodes[&id].durable.hard.term, 1);
    }
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. Check-quorum and the leader lease (Raft thesis, 6.2 and 4.2.3).
// ---------------------------------------------------------------------------------------------

#[test]
fn a_leader_that_hears_from_no_quorum_steps_down_on_ticks() {
    // Claim (thesis 6.2): a leader that has not heard from a quorum for an election timeout
    // steps down, in the same term, without any message telling it to. Peers count as heard
    // from when it takes office, so the first check it fails is the second, at most two
    // election timeouts in.
    let cfg = config(1);
    let et = cfg.election_ticks;
    let mut core = elected(cfg, &[1, 2, 3]);
    core.take_actions();
    let mut all = Vec::new();
    let mut stepped_down = None;
    for n in 1..=2 * et {
        core.tick();
        all.extend(core.take_actions());
        if core.role() != Role::Leader {
            stepped_down = Some(n);
            break;
        }
    }
    let n = stepped_down.expect("the leader steps down within two election timeouts");
    assert!(
        n >= et,
        "not before a full election timeout (stepped down at tick {n})"
    );
    assert_eq!(
        (core.role(), core.term(), core.leader()),
        (Role::Follower, 1, None)
    );
    assert!(all.contains(&Action::RoleChanged {
        role: Role::Follower,
        term: 1,
        leader: None
    }));
}

#[test]
fn a_leader_with_a_live_quorum_keeps_leading() {
    // Claim (thesis 6.2): hearing from one follower of three is a quorum; the leader stays.
    let cfg = config(1);
    let et = cfg.election_ticks;
    let mut core = elected(cfg, &[1, 2, 3]);
    for _ in 0..10 * et {
        core.tick();
        core.step(heartbeat_ack(2, 1, 1, 0));
        core.take_actions();
    }
    assert_eq!((core.role(), core.term()), (Role::Leader, 1));
}

#[test]
fn leader_lease_ignores_a_higher_term_vote_request_but_not_a_transfer() {
    // Claim (thesis 4.2.3): a follower that heard from its leader within the minimum election
    // timeout ignores a vote request, even from a higher term (its term does not move), unless
    // the request says it follows a leader transfer.
    let mut follower = fresh(config(2), &[1, 2, 3]);
    follower.step(heartbeat(1, 2, 1));
    settle(&mut follower);
    let before = follower.hard_state();

    let actions = step(&mut follower, vote_request(3, 2, 2, (0, 0), false));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(follower.hard_state(), before);
    assert_eq!(follower.leader(), Some(1));

    let replies = respond(&mut follower, transfer_vote_request(3, 2, 2, (0, 0)));
    assert_eq!(vote_answers(&replies), vec![(true, 2)]);
    assert_eq!(follower.hard_state().term, 2);
    assert_eq!(follower.hard_state().vote, Some(3));
}

#[test]
fn leader_lease_expires_after_an_election_timeout_of_silence() {
    // Claim (thesis 4.2.3): the lease only lasts the minimum election timeout; after that much
    // silence from the leader, a vote request from a higher term is heard and granted.
    let cfg = config(2);
    let et = cfg.election_ticks;
    let mut follower = fresh(cfg, &[1, 2, 3]);
    follower.step(heartbeat(1, 2, 1));
    settle(&mut follower);
    for _ in 0..et - 1 {
        follower.tick();
    }
    settle(&mut follower);
    let actions = step(&mut follower, vote_request(3, 2, 2, (0, 0), false));
    assert!(actions.is_empty(), "still inside the lease: {actions:?}");

    follower.tick();
    settle(&mut follower);
    let replies = respond(&mut follower, vote_request(3, 2, 2, (0, 0), false));
    assert_eq!(vote_answers(&replies), vec![(true, 2)]);
    assert_eq!(follower.term(), 2);
}

#[test]
fn with_external_timers_only_quorum_lost_makes_the_leader_step_down() {
    // Claim: with `external_timers`, check-quorum is the runtime's job: ticks alone never make a
    // silent leader step down (nor send heartbeats), and `quorum_lost()` does at once.
    let cfg = Config {
        external_timers: true,
        ..config(1)
    };
    let et = cfg.election_ticks;
    let mut core = elected(cfg, &[1, 2, 3]);
    core.take_actions();
    for _ in 0..10 * et {
        core.tick();
        let actions = core.take_actions();
        assert!(sent(&actions).is_empty(), "{actions:?}");
    }
    assert_eq!(core.role(), Role::Leader);

    core.quorum_lost();
    assert_eq!(
        core.take_actions(),
        vec![Action::RoleChanged {
            role: Role::Follower,
            term: 1,
            leader: None
        }]
    );
    assert_eq!((core.role(), core.term()), (Role::Follower, 1));
    // On a follower it is a no-op.
    core.quorum_lost();
    assert!(core.take_actions().is_empty());
}

#[test]
fn with_external_timers_tick_never_starts_an_election() {
    // Claim: with `external_timers`, elections start only when the runtime calls
    // `election_timeout()`, however many ticks pass.
    let cfg = Config {
        external_timers: true,
        ..config(1)
    };
    let et = cfg.election_ticks;
    let mut core = fresh(cfg, &[1, 2, 3]);
    for _ in 0..20 * et {
        core.tick();
    }
    assert!(core.take_actions().is_empty());
    assert_eq!((core.role(), core.term()), (Role::Follower, 0));

    core.election_timeout();
    let actions = core.take_actions();
    assert_eq!(core.role(), Role::PreCandidate);
    assert_eq!(sent(&actions).len(), 2, "{actions:?}");
}

#[test]
fn with_external_timers_only_a_transfer_needs_ticks_and_deferred_ticks_age_the_lease() {
    // Claim: with `external_timers` a core needs ticks only while a leader transfer is under way;
    // otherwise the runtime may skip them and deliver the elapsed ticks in a burst before the
    // next input, with the same outcome as ticking on time (the follower's lease expires).
    let external = |id| Config {
        external_timers: true,
        ..config(id)
    };
    let et = external(1).election_ticks;
    let mut follower = fresh(external(2), &[1, 2, 3]);
    assert!(!follower.needs_ticks());
    follower.step(heartbeat(1, 2, 1));
    settle(&mut follower);
    assert!(
        !follower.needs_ticks(),
        "a follower has no tick-driven deadline"
    );
    let actions = step(&mut follower, vote_request(3, 2, 2, (0, 0), false));
    assert!(actions.is_empty(), "inside the lease: {actions:?}");
    // An idle stretch of an election timeout, delivered at once before the next message.
    for _ in 0..et {
        follower.tick();
    }
    let replies = respond(&mut follower, vote_request(3, 2, 2, (0, 0), false));
    assert_eq!(vote_answers(&replies), vec![(true, 2)], "the lease expired");

    let mut leader = leader_of_three(external(1));
    leader.take_actions();
    assert!(
        !leader.needs_ticks(),
        "an idle leader has no tick-driven deadline"
    );
    assert_eq!(leader.transfer_leader(3), Ok(()));
    assert!(
        leader.needs_ticks(),
        "the transfer deadline is counted in ticks"
    );
    for _ in 0..et {
        leader.tick();
    }
    assert!(!leader.needs_ticks(), "the transfer timed out");
    assert!(leader.propose(vec![b"x".to_vec()]).is_ok());
    // Internal timers: every tick matters.
    assert!(fresh(config(1), &[1, 2, 3]).needs_ticks());
}

// ---------------------------------------------------------------------------------------------
// 3. Leader transfer (Raft thesis, 3.10).
// ---------------------------------------------------------------------------------------------

#[test]
fn transfer_to_an_up_to_date_voter_sends_timeout_now_at_once() {
    // Claim (thesis 3.10): if the target's log already matches the leader's, the leader tells
    // it to campaign immediately.
    let mut leader = leader_of_three(config(1));
    assert_eq!(leader.transfer_leader(2), Ok(()));
    let actions = leader.take_actions();
    assert_eq!(timeout_nows(&actions), vec![2]);
    let tn = sent(&actions)
        .into_iter()
        .find(|m| m.body == MessageBody::TimeoutNow)
        .unwrap();
    assert_eq!((tn.from, tn.term), (1, 1));
}

#[test]
fn transfer_to_a_lagging_voter_waits_until_it_catches_up() {
    // Claim (thesis 3.10): the leader first brings the target up to date; TimeoutNow goes out
    // only when the target's progress reaches the leader's last index.
    let mut leader = leader_of_three(config(1));
    leader.propose(vec![b"a".to_vec(), b"b".to_vec()]).unwrap();
    settle(&mut leader);
    assert_eq!(leader.log().last_index(), 3);

    leader.transfer_leader(2).unwrap();
    assert_eq!(timeout_nows(&leader.take_actions()), Vec::<NodeId>::new());
    leader.progress(2, 1, 2);
    assert_eq!(timeout_nows(&leader.take_actions()), Vec::<NodeId>::new());
    leader.progress(3, 1, 3);
    assert_eq!(
        timeout_nows(&leader.take_actions()),
        Vec::<NodeId>::new(),
        "another peer catching up does not trigger it"
    );
    leader.progress(2, 1, 3);
    assert_eq!(timeout_nows(&leader.take_actions()), vec![2]);
}

#[test]
fn proposals_are_refused_during_a_transfer_which_aborts_after_an_election_timeout() {
    // Claim (thesis 3.10): while a transfer is under way the leader refuses proposals (so the
    // target can catch up); if the transfer has not completed within an election timeout it is
    // abandoned and the leader accepts proposals again.
    let cfg = config(1);
    let et = cfg.election_ticks;
    let mut leader = leader_of_three(cfg);
    leader.propose(vec![b"a".to_vec()]).unwrap();
    settle(&mut leader);
    leader.transfer_leader(2).unwrap();

    assert_eq!(
        leader.propose(vec![b"b".to_vec()]),
        Err(Error::TransferInProgress)
    );
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3, 4])),
        Err(Error::TransferInProgress)
    );
    for _ in 0..et - 1 {
        leader.tick();
        leader.step(heartbeat_ack(3, 1, 1, 0));
    }
    assert_eq!(
        leader.propose(vec![b"b".to_vec()]),
        Err(Error::TransferInProgress)
    );
    leader.tick();
    assert_eq!(leader.role(), Role::Leader);
    let p = leader
        .propose(vec![b"b".to_vec()])
        .expect("transfer aborted");
    assert_eq!(p.first_index, 3);
    settle(&mut leader);
    // The abandoned target catching up no longer triggers TimeoutNow.
    leader.progress(2, 1, 3);
    assert_eq!(timeout_nows(&leader.take_actions()), Vec::<NodeId>::new());
}

#[test]
fn transfer_to_a_learner_or_a_non_member_is_a_typed_error() {
    // Claim: only a voter of the current configuration can take over; anything else is refused
    // with `Error::Transfer` naming the target, and no transfer starts.
    let mut leader = elected_in(config(1), Membership::with_learners([1, 2, 3], [4]));
    assert!(matches!(
        leader.transfer_leader(4),
        Err(Error::Transfer { target: 4, .. })
    ));
    assert!(matches!(
        leader.transfer_leader(9),
        Err(Error::Transfer { target: 9, .. })
    ));
    assert!(timeout_nows(&leader.take_actions()).is_empty());
    assert!(
        leader.propose(vec![b"x".to_vec()]).is_ok(),
        "no transfer is pending"
    );
}

#[test]
fn transfer_target_campaigns_with_the_transfer_flag_and_wins_despite_the_lease() {
    // Claim (thesis 3.10 and 4.2.3): TimeoutNow makes the target campaign at once, skipping
    // pre-vote, with `transfer: true`; voters that still hold a lease for the old leader vote
    // for it anyway, and it becomes leader of the next term.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"x").unwrap();
    c.stabilize();
    c.node(1).core.transfer_leader(2).unwrap();
    c.process(1);
    let i = c
        .net
        .iter()
        .position(|m| m.body == MessageBody::TimeoutNow)
        .expect("TimeoutNow in flight");
    assert_eq!(c.net[i].to, 2);
    c.deliver(i);

    let request = c
        .net
        .iter()
        .find(|m| m.from == 2 && m.to == 3)
        .expect("vote request to node 3")
        .clone();
    assert_eq!(request.term, 2);
    assert!(matches!(
        request.body,
        MessageBody::RequestVote {
            pre_vote: false,
            transfer: true,
            ..
        }
    ));
    c.stabilize();
    assert_eq!(c.leader(), Some(2));
    assert_eq!(c.core(2).term(), 2);
    assert_eq!(c.core(3).leader(), Some(2));
    assert_eq!(c.core(1).role(), Role::Follower);
    c.propose(2, b"y").unwrap();
    c.stabilize();
    assert_eq!(c.commands(1), vec![b"x".to_vec(), b"y".to_vec()]);
    c.check().unwrap();
}

#[test]
fn transfer_to_self_is_ok_and_changes_nothing() {
    // Claim: asking the leader to transfer to itself succeeds and has no effect: no message, and
    // proposals are still accepted.
    let mut leader = leader_of_three(config(1));
    assert_eq!(leader.transfer_leader(1), Ok(()));
    assert!(leader.take_actions().is_empty());
    assert!(leader.propose(vec![b"x".to_vec()]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// 4. ReadIndex (Raft thesis, 6.4).
// ---------------------------------------------------------------------------------------------

#[test]
fn a_read_on_a_follower_is_refused_with_the_leader_hint() {
    // Claim (thesis 6.4): only the leader serves ReadIndex; others say whom to ask.
    let mut follower = fresh(config(2), &[1, 2, 3]);
    assert_eq!(
        follower.read_index(1),
        Err(Error::NotLeader { leader: None })
    );
    follower.step(heartbeat(1, 2, 1));
    settle(&mut follower);
    assert_eq!(
        follower.read_index(1),
        Err(Error::NotLeader { leader: Some(1) })
    );
}

/// The read rounds (`read_seq`) of the heartbeats among `actions`, by receiver.
fn heartbeat_rounds(actions: &[Action]) -> Vec<(NodeId, u64)> {
    sent(actions)
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::Heartbeat { read_seq, .. } => Some((m.to, read_seq)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_read_is_released_only_after_a_quorum_acks_its_round() {
    // Claim (thesis 6.4): the leader records its commit index and confirms it is still leader
    // with a heartbeat round tagged for the read; only when a quorum acknowledged that round
    // (acks of an older round do not count) is the read released.
    let mut leader = elected(config(1), &[1, 2, 3, 4, 5]);
    leader.progress(2, 1, 1);
    leader.progress(3, 1, 1);
    settle(&mut leader);
    leader.applied(1);
    leader.take_actions();

    leader.read_index(7).unwrap();
    assert_eq!(
        heartbeat_rounds(&leader.take_actions()),
        vec![(2, 1), (3, 1), (4, 1), (5, 1)]
    );
    leader.step(heartbeat_ack(4, 1, 1, 0));
    leader.step(heartbeat_ack(5, 1, 1, 0));
    leader.step(heartbeat_ack(2, 1, 1, 1));
    assert!(
        reads_ready(&leader.take_actions()).is_empty(),
        "two of five confirmed the round (4 and 5 answered an older one)"
    );
    leader.step(heartbeat_ack(3, 1, 1, 1));
    assert_eq!(reads_ready(&leader.take_actions()), vec![(7, 1)]);
}

#[test]
fn a_confirmed_read_waits_until_the_state_machine_applied_its_index() {
    // Claim (thesis 6.4): a confirmed read is served only once the state machine has applied
    // the read index (the commit index when the read arrived).
    let mut leader = leader_of_three(config(1));
    leader.applied(1);
    leader.propose(vec![b"x".to_vec()]).unwrap();
    settle(&mut leader);
    leader.progress(2, 1, 2);
    let actions = settle(&mut leader);
    assert!(actions.contains(&Action::Apply { index: 2 }));

    leader.read_index(8).unwrap();
    leader.step(heartbeat_ack(2, 1, 1, 1));
    leader.step(heartbeat_ack(3, 1, 1, 1));
    assert!(
        reads_ready(&leader.take_actions()).is_empty(),
        "confirmed, but index 2 is not applied yet"
    );
    leader.applied(2);
    assert_eq!(reads_ready(&leader.take_actions()), vec![(8, 2)]);
}

#[test]
fn a_new_leader_defers_reads_until_its_noop_commits() {
    // Claim (thesis 6.4): a new leader may not know the latest commit index until an entry of its
    // own term commits, so a read waits for the no-op and is served at least at its index.
    let mut leader = elected(config(1), &[1, 2, 3]);
    assert_eq!(leader.commit_index(), 0);
    leader.read_index(5).unwrap();
    leader.step(heartbeat_ack(2, 1, 1, 1));
    leader.step(heartbeat_ack(3, 1, 1, 1));
    leader.applied(0);
    assert!(reads_ready(&settle(&mut leader)).is_empty());

    leader.progress(2, 1, 1);
    let actions = settle(&mut leader);
    assert!(actions.contains(&Action::Apply { index: 1 }));
    assert!(reads_ready(&actions).is_empty(), "not applied yet");
    leader.applied(1);
    assert_eq!(reads_ready(&leader.take_actions()), vec![(5, 1)]);
}

#[test]
fn a_leader_that_steps_down_aborts_its_pending_reads() {
    // Claim (thesis 6.4): reads waiting at a leader that loses leadership can no longer be
    // confirmed; each is aborted with the new leader as a hint.
    let mut leader = leader_of_three(config(1));
    leader.read_index(1).unwrap();
    leader.read_index(2).unwrap();
    leader.take_actions();
    let actions = step(&mut leader, heartbeat(2, 1, 2));
    let aborted: Vec<&Action> = actions
        .iter()
        .filter(|a| matches!(a, Action::ReadAborted { .. }))
        .collect();
    assert_eq!(
        aborted,
        vec![
            &Action::ReadAborted {
                ctx: 1,
                leader: Some(2)
            },
            &Action::ReadAborted {
                ctx: 2,
                leader: Some(2)
            }
        ]
    );
    assert!(reads_ready(&actions).is_empty());
    assert_eq!(
        leader.read_index(3),
        Err(Error::NotLeader { leader: Some(2) })
    );
}

#[test]
fn pending_reads_are_bounded_by_max_pending_reads() {
    // Claim: at most `max_pending_reads` reads wait for confirmation; more are refused with
    // `ReadsOverloaded`, and room frees up as reads are served.
    let cfg = Config {
        max_pending_reads: 2,
        ..config(1)
    };
    let mut leader = leader_of_three(cfg);
    leader.read_index(1).unwrap();
    leader.read_index(2).unwrap();
    assert_eq!(
        leader.read_index(3),
        Err(Error::ReadsOverloaded { limit: 2 })
    );
    leader.applied(1);
    leader.step(heartbeat_ack(2, 1, 1, 2));
    assert_eq!(reads_ready(&leader.take_actions()), vec![(1, 1), (2, 1)]);
    assert_eq!(leader.read_index(3), Ok(()));
}

#[test]
fn a_single_node_group_serves_reads_without_messages() {
    // Claim (thesis 6.4): with a single voter the leader is its own quorum: a read is confirmed
    // without a heartbeat round.
    let mut leader = single_leader(config(1), 0);
    leader.applied(1);
    leader.take_actions();
    leader.read_index(9).unwrap();
    let actions = leader.take_actions();
    assert!(sent(&actions).is_empty(), "{actions:?}");
    assert_eq!(reads_ready(&actions), vec![(9, 1)]);
}

// ---------------------------------------------------------------------------------------------
// 4b. Lease reads (Raft thesis, 6.4.1).
// ---------------------------------------------------------------------------------------------

fn lease_config(id: NodeId) -> Config {
    Config {
        lease_reads: true,
        ..config(id)
    }
}

/// Leader 1 of {1, 2, 3} with leases on, its no-op committed and applied, holding a lease
/// confirmed by a round started at its current tick (its first ReadIndex read, ctx 100).
fn leased_leader() -> PartitionCore {
    let mut leader = leader_of_three(lease_config(1));
    leader.applied(1);
    leader.take_actions();
    leader.read_lease(100).unwrap();
    let rounds = heartbeat_rounds(&leader.take_actions());
    assert_eq!(
        rounds,
        vec![(2, 1), (3, 1)],
        "no lease yet: a ReadIndex round"
    );
    leader.step(heartbeat_ack(2, 1, 1, 1));
    assert_eq!(reads_ready(&leader.take_actions()), vec![(100, 1)]);
    assert!(leader.lease_holds());
    leader
}

#[test]
fn a_lease_read_is_served_without_a_round_once_a_round_confirmed_the_lease() {
    // Claim (thesis 6.4.1): the first lease read finds no lease and is a ReadIndex read; the
    // quorum that confirms its round gives the leader a lease, and the next lease reads are
    // served at the commit index without any message.
    let mut leader = leased_leader();
    leader.read_lease(101).unwrap();
    let actions = leader.take_actions();
    assert!(sent(&actions).is_empty(), "{actions:?}");
    assert_eq!(reads_ready(&actions), vec![(101, 1)]);
    // A ReadIndex read still takes a round.
    leader.read_index(102).unwrap();
    assert_eq!(
        heartbeat_rounds(&leader.take_actions()),
        vec![(2, 2), (3, 2)]
    );
}

#[test]
fn a_lease_lasts_election_ticks_less_one_less_the_margin() {
    // Claim: the lease runs `election_ticks - 1 - lease_margin_ticks` ticks of the leader's own
    // clock from the tick its confirming round started; then a lease read needs a round again.
    let mut leader = leased_leader();
    let lease = lease_config(1).lease_ticks();
    assert_eq!(lease, lease_config(1).election_ticks - 2);
    for t in 1..lease {
        leader.tick();
        leader.take_actions();
        assert!(leader.lease_holds(), "tick {t} of {lease}");
        leader.read_lease(t as u64).unwrap();
        assert_eq!(reads_ready(&leader.take_actions()), vec![(t as u64, 1)]);
    }
    leader.tick();
    leader.take_actions();
    assert!(!leader.lease_holds());
    leader.read_lease(999).unwrap();
    let actions = leader.take_actions();
    assert!(reads_ready(&actions).is_empty(), "{actions:?}");
    assert!(
        !heartbeat_rounds(&actions).is_empty(),
        "a round confirms it"
    );
}

#[test]
fn a_lease_read_in_the_second_half_of_the_lease_renews_it() {
    // Claim: a lease read that finds less than half of the lease left is served at once and
    // starts a round (one per tick at most); once a quorum confirms it, the lease runs from that
    // round's tick.
    let mut leader = leased_leader();
    let lease = lease_config(1).lease_ticks();
    let half = lease.div_ceil(2);
    for _ in 0..half {
        leader.tick();
    }
    leader.take_actions();
    leader.read_lease(1).unwrap();
    let actions = leader.take_actions();
    assert_eq!(reads_ready(&actions), vec![(1, 1)]);
    let rounds = heartbeat_rounds(&actions);
    assert_eq!(rounds.len(), 2, "a renewal round: {actions:?}");
    let seq = rounds[0].1;
    leader.read_lease(2).unwrap();
    let actions = leader.take_actions();
    assert!(heartbeat_rounds(&actions).is_empty(), "one round per tick");
    leader.step(heartbeat_ack(3, 1, 1, seq));
    leader.take_actions();
    // Without the renewal the lease would end at tick `lease`; now it ends at `half + lease`.
    for _ in half..lease + half - 1 {
        leader.tick();
    }
    assert!(leader.lease_holds());
    leader.tick();
    assert!(!leader.lease_holds());
}

#[test]
fn a_lease_read_waits_until_the_commit_index_at_its_start_is_applied() {
    // Claim: a lease read is served at the commit index it found, once the state machine has
    // applied that far; later commits do not hold it back.
    let mut leader = leased_leader();
    leader.propose(vec![b"x".to_vec()]).unwrap();
    settle(&mut leader);
    leader.progress(2, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 2);
    leader.read_lease(5).unwrap();
    assert!(
        reads_ready(&leader.take_actions()).is_empty(),
        "2 not applied"
    );
    leader.propose(vec![b"y".to_vec()]).unwrap();
    settle(&mut leader);
    leader.progress(2, 1, 3);
    settle(&mut leader);
    leader.applied(2);
    assert_eq!(reads_ready(&leader.take_actions()), vec![(5, 2)]);
}

#[test]
fn without_leases_a_lease_read_is_a_readindex_read() {
    // Claim: with `lease_reads` off (the default) or `check_quorum` off, `read_lease` takes a
    // round every time, like `read_index`.
    for cfg in [
        config(1),
        Config {
            check_quorum: false,
            ..lease_config(1)
        },
    ] {
        let mut leader = leader_of_three(cfg);
        leader.applied(1);
        leader.take_actions();
        for ctx in 1..=3 {
            leader.read_lease(ctx).unwrap();
            let actions = leader.take_actions();
            assert_eq!(heartbeat_rounds(&actions).len(), 2, "{actions:?}");
            assert!(reads_ready(&actions).is_empty());
            leader.step(heartbeat_ack(2, 1, 1, ctx));
            assert_eq!(reads_ready(&leader.take_actions()), vec![(ctx, 1)]);
            assert!(!leader.lease_holds());
        }
    }
}

#[test]
fn a_new_leader_serves_no_lease_read_before_its_noop_commits() {
    // Claim: until an entry of its term commits, a leader may not know the latest commit index:
    // a lease read waits like a ReadIndex read.
    let mut leader = elected(lease_config(1), &[1, 2, 3]);
    leader.take_actions();
    leader.read_lease(1).unwrap();
    leader.step(heartbeat_ack(2, 1, 1, 1));
    assert!(reads_ready(&settle(&mut leader)).is_empty());
    assert!(
        !leader.lease_holds(),
        "confirmed, but the no-op is not committed"
    );
    leader.progress(2, 1, 1);
    settle(&mut leader);
    leader.applied(1);
    assert_eq!(reads_ready(&leader.take_actions()), vec![(1, 1)]);
    assert!(leader.lease_holds());
}

#[test]
fn a_leader_transfer_ends_the_lease_for_the_rest_of_the_term() {
    // Claim: the target of a transfer campaigns without waiting for any lease, so once a
    // transfer starts the leader serves no lease read, even after the transfer times out.
    let mut leader = leased_leader();
    leader.transfer_leader(2).unwrap();
    assert!(!leader.lease_holds(), "a transfer is under way");
    leader.progress(2, 1, 1);
    let actions = settle(&mut leader);
    assert_eq!(timeout_nows(&actions), vec![2]);
    for _ in 0..lease_config(1).election_ticks {
        leader.tick();
    }
    settle(&mut leader);
    assert_eq!(leader.role(), Role::Leader, "{:?}", leader.status());
    // A new round is confirmed, yet no lease.
    leader.read_lease(7).unwrap();
    let rounds = heartbeat_rounds(&leader.take_actions());
    leader.step(heartbeat_ack(3, 1, 1, rounds[0].1));
    assert_eq!(reads_ready(&leader.take_actions()), vec![(7, 1)]);
    assert!(!leader.lease_holds());
}

#[test]
fn a_membership_change_ends_the_lease_until_the_new_configuration_confirms_a_round() {
    // Claim: a lease confirmed by one configuration does not carry over to the next.
    let mut leader = leased_leader();
    leader.add_learner(4, None).unwrap();
    settle(&mut leader);
    assert!(!leader.lease_holds());
}

#[test]
fn with_leases_a_follower_defers_its_election_timeout_until_its_lease_ends() {
    // Claim: a follower that heard from its leader within an election timeout may have
    // confirmed its lease: an election timeout that comes meanwhile waits (the core asks for
    // ticks) and fires once `election_ticks` have passed since that contact.
    let cfg = Config {
        external_timers: true,
        ..lease_config(2)
    };
    let et = cfg.election_ticks;
    let mut follower = fresh(cfg, &[1, 2, 3]);
    for _ in 0..et {
        follower.tick();
    }
    follower.step(heartbeat(1, 2, 1));
    settle(&mut follower);
    follower.tick();
    follower.election_timeout();
    assert!(follower.take_actions().is_empty());
    assert_eq!(follower.role(), Role::Follower);
    assert!(
        follower.needs_ticks(),
        "the deferred timeout waits on ticks"
    );
    for _ in 1..et - 1 {
        follower.tick();
        assert!(follower.take_actions().is_empty());
    }
    follower.tick();
    let actions = follower.take_actions();
    assert_eq!(follower.role(), Role::PreCandidate, "{actions:?}");
    assert!(!follower.needs_ticks());

    // Heard from the leader meanwhile: the deferred timeout is dropped.
    let cfg = Config {
        external_timers: true,
        ..lease_config(3)
    };
    let mut follower = fresh(cfg, &[1, 2, 3]);
    for _ in 0..et {
        follower.tick();
    }
    follower.step(heartbeat(1, 3, 1));
    follower.election_timeout();
    follower.step(heartbeat(1, 3, 1));
    settle(&mut follower);
    assert!(!follower.needs_ticks());
    for _ in 0..2 * et {
        follower.tick();
    }
    assert_eq!(follower.role(), Role::Follower);
}

#[test]
fn with_leases_a_node_that_just_started_neither_votes_nor_campaigns_for_an_election_timeout() {
    // Claim: a node restarted after acknowledging a leader's round has forgotten that leader,
    // but it must still not help elect another while that lease may hold: for its first
    // `election_ticks` ticks it ignores vote requests and defers its own election timeout.
    let cfg = Config {
        external_timers: true,
        ..lease_config(2)
    };
    let et = cfg.election_ticks;
    let mut node = fresh(cfg.clone(), &[1, 2, 3]);
    let actions = step(&mut node, vote_request(3, 2, 1, (0, 0), true));
    assert!(actions.is_empty(), "{actions:?}");
    node.election_timeout();
    assert!(node.take_actions().is_empty());
    for _ in 0..et - 1 {
        node.tick();
    }
    assert!(node.take_actions().is_empty());
    assert_eq!(node.role(), Role::Follower);
    node.tick();
    assert_eq!(
        node.role(),
        Role::PreCandidate,
        "the deferred timeout fired"
    );
    settle(&mut node);
    let replies = respond(&mut node, vote_request(3, 2, 1, (0, 0), true));
    assert_eq!(vote_answers(&replies), vec![(true, 1)]);

    // Without leases nothing waits; with a single voter there is no one to wait for.
    let mut node = fresh(
        Config {
            external_timers: true,
            ..config(2)
        },
        &[1, 2, 3],
    );
    let replies = respond(&mut node, vote_request(3, 2, 1, (0, 0), true));
    assert_eq!(vote_answers(&replies), vec![(true, 1)]);
    let mut single = fresh(cfg, &[2]);
    single.election_timeout();
    settle(&mut single);
    assert_eq!(single.role(), Role::Leader);
}

#[test]
fn no_other_node_is_elected_while_an_isolated_leaders_lease_holds() {
    // Claim (thesis 6.4.1): once a leader's lease is confirmed by a quorum, no other node leads
    // while it holds, whatever the timers do: here the runtime's election timers (external)
    // at every tick. Node 1 leads; node 3 has not heard from it for an election timeout (it
    // would vote for anyone); node 2 alone confirms the lease round. Then either node 2's timer
    // fires at every tick (it would win with node 3's vote), or node 2 restarts at once,
    // forgetting the round, and node 3's timer fires at every tick (it would win with node 2's
    // vote).
    let cfg = |id| Config {
        external_timers: true,
        ..lease_config(id)
    };
    let et = cfg(1).election_ticks;
    for restart_2 in [false, true] {
        let mut c = Cluster::with(&[1, 2, 3], &[1, 2, 3], cfg);
        run_ticks(&mut c, et);
        c.elect(1);
        c.propose(1, b"a").unwrap();
        c.stabilize();
        c.cut.insert((1, 3));
        c.cut.insert((3, 1));
        run_ticks(&mut c, et);
        c.node(1).core.read_lease(1_000).unwrap();
        c.process(1);
        c.deliver_all();
        assert!(c.core(1).lease_holds(), "node 2 confirmed the round");
        c.isolate(1);
        if restart_2 {
            c.node(2).crash_restart();
        }
        let mut lease_ended = None;
        let mut elected = None;
        for t in 0..4 * et {
            c.tick_all();
            let campaigner = if restart_2 { 3 } else { 2 };
            c.node(campaigner).core.election_timeout();
            c.process(campaigner);
            c.deliver_all();
            if c.core(1).lease_holds() {
                for id in [2, 3] {
                    assert_ne!(
                        c.core(id).role(),
                        Role::Leader,
                        "restart {restart_2}: node {id} leads at tick {t} while node 1's lease holds"
                    );
                }
            } else if lease_ended.is_none() {
                lease_ended = Some(t);
            }
            if elected.is_none() && [2, 3].iter().any(|&id| c.core(id).role() == Role::Leader) {
                elected = Some(t);
            }
        }
        let (ended, elected) = (lease_ended.expect("lease ends"), elected.expect("elected"));
        assert!(
            ended <= elected,
            "lease ended at tick {ended}, new leader at {elected}"
        );
        c.check().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Membership changes through joint consensus (Raft paper, section 6).
// ---------------------------------------------------------------------------------------------

fn joint(old: &[NodeId], new: &[NodeId]) -> Membership {
    voters(old).enter_joint(&voters(new))
}

#[test]
fn adding_a_voter_goes_through_a_joint_configuration_and_leaves_it_once_committed() {
    // Claim (paper, section 6): the leader first appends C(old,new); once that commits it
    // appends C(new) on its own; once C(new) commits the change is over.
    let mut leader = leader_of_three_with_learners(config(1), &[4]);
    assert_eq!(leader.change_membership(voters(&[1, 2, 3, 4])), Ok(2));
    let actions = settle(&mut leader);
    let j = joint(&[1, 2, 3], &[1, 2, 3, 4]);
    assert_eq!(j.voters_outgoing, voters(&[1, 2, 3]).voters);
    assert_eq!(memberships(&actions), vec![j.clone()]);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PersistEntries { entries, .. }
            if **entries == [entry(2, 1, EntryPayload::Membership(j.clone()))]
    )));
    assert_eq!(leader.membership(), &j);

    leader.progress(2, 1, 2);
    leader.progress(3, 1, 2);
    let actions = settle(&mut leader);
    assert_eq!(leader.commit_index(), 2);
    let fin = voters(&[1, 2, 3, 4]);
    assert_eq!(memberships(&actions), vec![fin.clone()]);
    assert_eq!(leader.log().last_index(), 3);
    assert_eq!(leader.membership(), &fin);

    leader.progress(2, 1, 3);
    leader.progress(3, 1, 3);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 3);
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3])),
        Ok(4),
        "the change is over; another may start"
    );
}

/// Leader 1 of {1, 2, 3} (learners 4 and 5) that just appended C({1,2,3},{1,4,5}) at index 2
/// (durable).
fn leader_in_joint_to_1_4_5() -> PartitionCore {
    let mut leader = leader_of_three_with_learners(config(1), &[4, 5]);
    leader.change_membership(voters(&[1, 4, 5])).unwrap();
    settle(&mut leader);
    assert!(leader.membership().is_joint());
    leader
}

#[test]
fn a_joint_configuration_commits_only_with_majorities_of_both_halves() {
    // Claim (paper, section 6): in C(old,new) agreement needs separate majorities of the old
    // and of the new voters; a majority of one half alone commits nothing.
    // The new half {1, 4, 5} holds index 2, the old half {1, 2, 3} does not.
    let mut leader = leader_in_joint_to_1_4_5();
    leader.progress(4, 1, 2);
    leader.progress(5, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 1);
    leader.progress(2, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 2);

    // The old half holds it, the new half does not.
    let mut leader = leader_in_joint_to_1_4_5();
    leader.progress(2, 1, 2);
    leader.progress(3, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 1);
    leader.progress(4, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 2);
}

#[test]
fn a_second_membership_change_is_refused_while_one_is_in_flight() {
    // Claim (paper, section 6): one change at a time: while C(old,new) or C(new) is uncommitted
    // another change is refused with `ChangeInProgress` naming the pending entry.
    let mut leader = leader_of_three_with_learners(config(1), &[4, 5]);
    leader.change_membership(voters(&[1, 2, 3, 4])).unwrap();
    settle(&mut leader);
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3, 5])),
        Err(Error::Membership(MembershipError::ChangeInProgress {
            index: 2
        }))
    );
    leader.progress(2, 1, 2);
    leader.progress(3, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.log().last_index(), 3, "C(new) appended, uncommitted");
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3, 5])),
        Err(Error::Membership(MembershipError::ChangeInProgress {
            index: 3
        }))
    );
    assert_eq!(
        leader.add_learner(5, None),
        Err(Error::Membership(MembershipError::ChangeInProgress {
            index: 3
        }))
    );
    assert_eq!(leader.log().last_index(), 3);
}

#[test]
fn unchanged_or_invalid_memberships_are_refused() {
    // Claim: a change to the current membership, one without voters, one naming node 0, or
    // one with a node both learner and voter is refused with a typed error and appends nothing.
    let mut leader = leader_of_three(config(1));
    let cases = [
        (voters(&[1, 2, 3]), MembershipError::Unchanged),
        (Membership::default(), MembershipError::NoVoters),
        (
            Membership::with_learners([], [4]),
            MembershipError::NoVoters,
        ),
        (voters(&[0, 1, 2]), MembershipError::ReservedNodeId),
        (
            Membership::with_learners([1, 2, 3], [0]),
            MembershipError::ReservedNodeId,
        ),
        (
            Membership::with_learners([1, 2, 3], [3]),
            MembershipError::LearnerIsVoter(3),
        ),
        // 3 leaves the voters and becomes a learner in one step: it is still a voter of the
        // outgoing half, so this takes two changes.
        (
            Membership::with_learners([1, 2], [3]),
            MembershipError::LearnerIsVoter(3),
        ),
    ];
    for (target, err) in cases {
        assert_eq!(
            leader.change_membership(target.clone()),
            Err(Error::Membership(err)),
            "{target:?}"
        );
    }
    assert_eq!(leader.log().last_index(), 1);
    assert_eq!(leader.membership(), &voters(&[1, 2, 3]));
    assert!(memberships(&leader.take_actions()).is_empty());
}

#[test]
fn a_truncated_configuration_entry_reverts_the_membership() {
    // Claim (thesis 4.1): a configuration takes effect when appended, so when an uncommitted
    // configuration entry is overwritten by a new leader, the previous configuration is back in
    // effect (and the runtime is told).
    let mut follower = fresh(config(2), &[1, 2, 3]);
    let j = joint(&[1, 2, 3], &[1, 2, 3, 4]);
    follower.step(append(
        1,
        2,
        1,
        (0, 0),
        vec![
            entry(1, 1, EntryPayload::Noop),
            entry(2, 1, EntryPayload::Membership(j.clone())),
        ],
        1,
    ));
    assert_eq!(memberships(&settle(&mut follower)), vec![j.clone()]);
    assert_eq!(follower.membership(), &j);

    // Leader 3 of term 2 never had the entry at index 2.
    follower.step(append(
        3,
        2,
        2,
        (1, 1),
        vec![entry(2, 2, EntryPayload::Noop)],
        1,
    ));
    let actions = settle(&mut follower);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PersistEntries {
            truncate_from: Some(2),
            ..
        }
    )));
    assert_eq!(memberships(&actions), vec![voters(&[1, 2, 3])]);
    assert_eq!(follower.membership(), &voters(&[1, 2, 3]));
    assert_eq!(follower.log().term(2), Some(2));
}

#[test]
fn a_leader_removed_by_the_change_leads_through_it_then_steps_down_and_hands_over() {
    // Claim (paper, section 6): a leader that is not in C(new) keeps managing the cluster until
    // C(new) commits (replicating, accepting proposals, without counting itself in the new
    // majority), then steps down; here it also sends TimeoutNow to the most up-to-date remaining
    // voter so a new leader is elected at once (thesis 3.10).
    let mut leader = leader_of_three(config(1));
    leader.change_membership(voters(&[2, 3])).unwrap();
    settle(&mut leader);
    leader.propose(vec![b"a".to_vec()]).unwrap(); // index 3, during the joint phase
    settle(&mut leader);
    leader.progress(2, 1, 3);
    leader.progress(3, 1, 3);
    let actions = settle(&mut leader);
    assert_eq!(leader.commit_index(), 3);
    assert_eq!(memberships(&actions), vec![voters(&[2, 3])]);
    assert_eq!(
        leader.role(),
        Role::Leader,
        "still leading with C(new) pending"
    );

    leader.propose(vec![b"b".to_vec()]).unwrap(); // index 5, after C(new) at 4
    settle(&mut leader);
    // Node 2 alone holding C(new) is no majority of {2, 3}: the leader itself does not count.
    leader.progress(2, 1, 4);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 3);
    assert_eq!(leader.role(), Role::Leader);

    leader.progress(3, 1, 5);
    let actions = settle(&mut leader);
    assert_eq!(leader.commit_index(), 4);
    assert_eq!(timeout_nows(&actions), vec![3], "node 3 holds the most");
    assert_eq!(removals(&actions), vec![4], "it learns it was removed");
    assert!(leader.is_removed());
    assert_ne!(leader.role(), Role::Leader);
    assert_eq!((leader.term(), leader.leader()), (1, None));

    // No longer a voter, it never campaigns.
    for _ in 0..5 * config(1).election_ticks {
        leader.tick();
    }
    assert!(sent(&leader.take_actions()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. Learners (Raft thesis, 4.2.1).
// ---------------------------------------------------------------------------------------------

#[test]
fn adding_a_learner_does_not_change_the_quorum() {
    // Claim (thesis 4.2.1): a learner receives the log but does not count toward commitment,
    // so adding one needs no joint phase and commit still needs a majority of the voters only.
    let mut leader = leader_of_three(config(1));
    assert_eq!(leader.add_learner(4, None), Ok(2));
    let actions = settle(&mut leader);
    let with_learner = Membership::with_learners([1, 2, 3], [4]);
    assert_eq!(memberships(&actions), vec![with_learner.clone()]);
    leader.progress(2, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 2, "the learner's ack is not needed");
    assert_eq!(leader.membership(), &with_learner);

    leader.propose(vec![b"x".to_vec()]).unwrap();
    settle(&mut leader);
    leader.progress(4, 1, 3);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 2, "the learner's ack does not count");
    leader.progress(3, 1, 3);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 3);
}

#[test]
fn a_learner_never_campaigns_and_reports_the_learner_role() {
    // Claim (thesis 4.2.1): a learner's election timer never starts an election, TimeoutNow does
    // not make it campaign, and it reports `Role::Learner`.
    let cfg = config(4);
    let et = cfg.election_ticks;
    let mut learner = fresh_in(cfg, Membership::with_learners([1, 2, 3], [4]));
    assert_eq!(learner.role(), Role::Learner);
    for _ in 0..10 * et {
        learner.tick();
    }
    learner.campaign();
    learner.step(msg(1, 4, 0, MessageBody::TimeoutNow));
    assert!(learner.take_actions().is_empty());
    assert_eq!((learner.role(), learner.term()), (Role::Learner, 0));

    // A joining node (no membership yet) is a learner too.
    let joining = PartitionCore::new(config(5), 1, InitialState::joining()).unwrap();
    assert_eq!(joining.role(), Role::Learner);
}

#[test]
fn a_learners_vote_is_not_counted() {
    // Claim (thesis 4.2.1): learners are not asked for votes, and a vote from one does not
    // count toward a majority.
    let cfg = Config {
        pre_vote: false,
        ..config(1)
    };
    let mut cand = fresh_in(cfg, Membership::with_learners([1, 2, 3], [4]));
    cand.campaign();
    let asked: Vec<NodeId> = sent(&settle(&mut cand)).iter().map(|m| m.to).collect();
    assert_eq!(asked, vec![2, 3]);
    cand.step(msg(
        4,
        1,
        1,
        MessageBody::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    ));
    settle(&mut cand);
    assert_eq!(
        cand.role(),
        Role::Candidate,
        "own vote plus a learner's is no majority"
    );
    cand.step(msg(
        2,
        1,
        1,
        MessageBody::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    ));
    settle(&mut cand);
    assert_eq!(cand.role(), Role::Leader);
}

#[test]
fn a_learner_is_promoted_to_voter_through_change_membership() {
    // Claim (thesis 4.2.1): once caught up, a learner becomes a voter through an ordinary
    // (joint) membership change, after which its acknowledgements count.
    let mut leader = elected_in(config(1), Membership::with_learners([1, 2, 3], [4]));
    leader.progress(2, 1, 1);
    settle(&mut leader);
    leader.change_membership(voters(&[1, 2, 3, 4])).unwrap();
    let actions = settle(&mut leader);
    assert_eq!(
        memberships(&actions),
        vec![Membership {
            voters: [1, 2, 3, 4].into(),
            voters_outgoing: [1, 2, 3].into(),
            learners: [].into(),
            addrs: Default::default(),
        }]
    );
    for p in [2, 3, 4] {
        leader.progress(p, 1, 2);
    }
    settle(&mut leader);
    for p in [2, 3, 4] {
        leader.progress(p, 1, 3);
    }
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 3);
    assert_eq!(leader.membership(), &voters(&[1, 2, 3, 4]));

    // Now three of four are a majority: the leader and node 2 are not enough, 4 tips it.
    leader.propose(vec![b"x".to_vec()]).unwrap();
    settle(&mut leader);
    leader.progress(2, 1, 4);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 3);
    leader.progress(4, 1, 4);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 4);
}

// ---------------------------------------------------------------------------------------------
// 6b. Membership calls: who may be promoted, addresses, removal (a node learns it was removed).
// ---------------------------------------------------------------------------------------------

fn addrs(n: u16) -> NodeAddrs {
    NodeAddrs {
        data: ([127, 0, 0, 1], 7000 + n).into(),
        heartbeat: ([127, 0, 0, 1], 8000 + n).into(),
        client: Some(([127, 0, 0, 1], 9000 + n).into()),
    }
}

#[test]
fn only_a_caught_up_learner_is_promoted_to_voter() {
    // Claim: a new voter must be a learner of the current configuration whose log is within
    // `learner_catchup_lag` entries of the leader's last index and holds the latest committed
    // configuration; otherwise the change is refused with a typed error naming the node, and
    // nothing is appended.
    let cfg = Config {
        learner_catchup_lag: 2,
        ..config(1)
    };
    let mut leader = leader_of_three_with_learners(cfg, &[4]);
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3, 5])),
        Err(Error::Membership(MembershipError::NotLearner(5)))
    );
    leader
        .propose(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
        .unwrap();
    settle(&mut leader);
    leader.progress(2, 1, 4);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 4);
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3, 4])),
        Err(Error::Membership(MembershipError::NotCaughtUp {
            node: 4,
            matched: 0,
            last: 4
        }))
    );
    leader.progress(4, 1, 1);
    assert!(matches!(
        leader.change_membership(voters(&[1, 2, 3, 4])),
        Err(Error::Membership(MembershipError::NotCaughtUp {
            matched: 1,
            ..
        }))
    ));
    assert_eq!(leader.log().last_index(), 4, "nothing appended");
    // Two entries behind: within the lag.
    leader.progress(4, 1, 2);
    assert_eq!(leader.change_membership(voters(&[1, 2, 3, 4])), Ok(5));
    assert!(leader.membership().is_joint());

    // However short the log, a learner never heard from (it lacks the configuration that
    // made it a learner) is not caught up.
    let mut leader = leader_of_three(config(1));
    assert_eq!(leader.add_learner(4, None), Ok(2));
    leader.progress(2, 1, 2);
    leader.progress(3, 1, 2);
    settle(&mut leader);
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3, 4])),
        Err(Error::Membership(MembershipError::NotCaughtUp {
            node: 4,
            matched: 0,
            last: 2
        }))
    );
    leader.progress(4, 1, 2);
    assert_eq!(leader.change_membership(voters(&[1, 2, 3, 4])), Ok(3));
}

#[test]
fn a_joint_target_or_addresses_of_a_stranger_are_refused() {
    // Claim: the target of a change is a simple configuration (the joint phase is the
    // leader's), and addresses may only be given for nodes of the configuration.
    let mut leader = leader_of_three(config(1));
    let j = joint(&[1, 2, 3], &[1, 2]);
    assert_eq!(
        leader.change_membership(j),
        Err(Error::Membership(MembershipError::JointTarget))
    );
    assert_eq!(
        leader.change_membership(voters(&[1, 2, 3]).with_addrs(9, addrs(9))),
        Err(Error::Membership(MembershipError::AddrsOfNonMember(9)))
    );
    assert_eq!(leader.log().last_index(), 1);
}

#[test]
fn addresses_travel_in_configuration_entries_and_follow_the_members() {
    // Claim: a learner's addresses go into the configuration entry (so every node that holds
    // the entry, or a snapshot of it, knows them); later changes keep the addresses of the
    // nodes that stay, even when the target does not repeat them, and drop those of removed
    // nodes once the joint phase ends.
    let mut leader = leader_of_three(config(1));
    assert_eq!(leader.add_learner(4, Some(addrs(4))), Ok(2));
    let actions = settle(&mut leader);
    let with_learner = Membership::with_learners([1, 2, 3], [4]).with_addrs(4, addrs(4));
    assert_eq!(memberships(&actions), vec![with_learner.clone()]);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PersistEntries { entries, .. }
            if **entries == [entry(2, 1, EntryPayload::Membership(with_learner.clone()))]
    )));
    // The same learner with the same addresses: nothing to do.
    for p in [2, 3, 4] {
        leader.progress(p, 1, 2);
    }
    settle(&mut leader);
    assert_eq!(
        leader.add_learner(4, Some(addrs(4))),
        Err(Error::Membership(MembershipError::Unchanged))
    );
    // Promote it: the target names no addresses, node 4's are kept.
    assert_eq!(leader.change_membership(voters(&[1, 2, 3, 4])), Ok(3));
    settle(&mut leader);
    assert_eq!(leader.membership().addrs_of(4), Some(&addrs(4)));
    for p in [2, 3, 4] {
        leader.progress(p, 1, 3);
    }
    settle(&mut leader);
    for p in [2, 3, 4] {
        leader.progress(p, 1, 4);
    }
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 4);
    assert_eq!(
        leader.membership(),
        &voters(&[1, 2, 3, 4]).with_addrs(4, addrs(4))
    );
    // Remove it again: the joint configuration still has its addresses (it is an outgoing
    // voter), the final one does not.
    assert_eq!(leader.change_membership(voters(&[1, 2, 3])), Ok(5));
    settle(&mut leader);
    assert_eq!(leader.membership().addrs_of(4), Some(&addrs(4)));
    for p in [2, 3, 4] {
        leader.progress(p, 1, 5);
    }
    let actions = settle(&mut leader);
    assert_eq!(memberships(&actions), vec![voters(&[1, 2, 3])]);
    assert!(leader.membership().addrs.is_empty());
}

/// `MessageBody::Removed` from `from` to `to` in `term`.
fn removed_notice(from: NodeId, to: NodeId, term: Term, index: Index) -> Message {
    msg(from, to, term, MessageBody::Removed { index })
}

#[test]
fn a_follower_learns_it_was_removed_when_its_leader_tells_it() {
    // Claim: holding a committed configuration without itself does not make a node "removed"
    // on its own (a node that joins again replays the configurations of its earlier
    // membership); the leader tells it, and it reports it once (`Action::Removed` with the
    // removing entry's index). A notice is ignored while the node's own log still has it as a
    // member.
    let mut f = fresh(config(3), &[1, 2, 3]);
    let j = joint(&[1, 2, 3], &[1, 2]);
    f.step(append(
        1,
        3,
        1,
        (0, 0),
        vec![
            entry(1, 1, EntryPayload::Noop),
            entry(2, 1, EntryPayload::Membership(j)),
        ],
        2,
    ));
    settle(&mut f);
    // It lacks the final configuration: the notice is ignored.
    f.step(removed_notice(1, 3, 1, 3));
    assert!(removals(&settle(&mut f)).is_empty());
    f.step(append(
        1,
        3,
        1,
        (2, 1),
        vec![entry(3, 1, EntryPayload::Membership(voters(&[1, 2])))],
        3,
    ));
    let actions = settle(&mut f);
    assert!(removals(&actions).is_empty(), "not on its own");
    assert!(!f.is_removed());
    // A notice from a stale term is ignored too.
    f.step(removed_notice(2, 3, 0, 3));
    assert!(removals(&settle(&mut f)).is_empty());
    f.step(removed_notice(1, 3, 1, 3));
    assert_eq!(removals(&settle(&mut f)), vec![3]);
    assert!(f.is_removed());
    // Told once.
    f.step(removed_notice(1, 3, 1, 3));
    assert!(removals(&settle(&mut f)).is_empty());
}

#[test]
fn a_node_that_joins_again_is_not_removed_by_its_own_history() {
    // Claim: a node removed earlier that joins again (afresh) replays the configurations of its
    // earlier membership, its removal included, before the one that adds it back: none of
    // that makes it report a removal.
    let mut joining = PartitionCore::new(config(3), 1, InitialState::joining()).unwrap();
    joining.step(append(
        1,
        3,
        1,
        (0, 0),
        vec![
            entry(1, 1, EntryPayload::Noop),
            entry(2, 1, EntryPayload::Membership(joint(&[1, 2, 3], &[1, 2]))),
            entry(3, 1, EntryPayload::Membership(voters(&[1, 2]))),
        ],
        3,
    ));
    assert!(removals(&settle(&mut joining)).is_empty());
    joining.step(append(
        1,
        3,
        1,
        (3, 1),
        vec![entry(
            4,
            1,
            EntryPayload::Membership(Membership::with_learners([1, 2], [3])),
        )],
        4,
    ));
    assert!(removals(&settle(&mut joining)).is_empty());
    assert_eq!(joining.role(), Role::Learner);
    assert!(!joining.is_removed());
}

#[test]
fn a_removed_node_is_replicated_to_until_it_holds_the_committed_removal() {
    // Claim: the leader keeps replicating to a node it removes (its replicator stays, so the
    // node receives the configuration entry); once the entry committed and the node holds it,
    // the leader tells it (`MessageBody::Removed`) once a tick for an election timeout, then
    // lets it go; a node that never answers is let go after four election timeouts. Meanwhile
    // the leader needs its ticks, and the node cannot be added back yet (`ChangeInProgress`,
    // retry later).
    let cfg = Config {
        external_timers: true,
        ..config(1)
    };
    let et = cfg.election_ticks;
    let mut leader = leader_of_three_with_learners(cfg.clone(), &[4]);
    assert!(!leader.needs_ticks());
    assert_eq!(leader.change_membership(voters(&[1, 2, 3])), Ok(2));
    settle(&mut leader);
    assert_eq!(leader.membership(), &voters(&[1, 2, 3]));
    assert_eq!(leader.replication_peers(), [2, 3, 4].into());
    assert!(leader.needs_ticks());
    leader.progress(2, 1, 2);
    leader.progress(3, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 2);
    assert_eq!(
        leader.add_learner(4, None),
        Err(Error::Membership(MembershipError::ChangeInProgress {
            index: 2
        }))
    );
    let notices = |actions: &[Action]| {
        sent(actions)
            .into_iter()
            .filter(|m| m.body == MessageBody::Removed { index: 2 })
            .map(|m| m.to)
            .collect::<Vec<_>>()
    };
    for _ in 0..et {
        leader.tick();
    }
    let actions = settle(&mut leader);
    assert!(!actions.contains(&Action::PeersChanged));
    assert!(notices(&actions).is_empty(), "4 does not hold the entry");
    assert!(leader.replication_peers().contains(&4), "4 has not acked");
    // Once it holds the entry it is told, once a tick, an election timeout long.
    leader.progress(4, 1, 2);
    for _ in 0..et - 1 {
        leader.tick();
        let actions = settle(&mut leader);
        assert_eq!(notices(&actions), vec![4]);
        assert!(!actions.contains(&Action::PeersChanged));
    }
    leader.tick();
    let actions = settle(&mut leader);
    assert_eq!(notices(&actions), vec![4]);
    assert!(actions.contains(&Action::PeersChanged));
    assert_eq!(leader.replication_peers(), [2, 3].into());
    assert!(!leader.needs_ticks());
    assert_eq!(leader.add_learner(4, None), Ok(3), "now it can come back");

    // A removed node that never answers is let go after four election timeouts.
    let mut leader = leader_of_three_with_learners(cfg, &[4]);
    leader.change_membership(voters(&[1, 2, 3])).unwrap();
    leader.progress(2, 1, 2);
    leader.progress(3, 1, 2);
    settle(&mut leader);
    for _ in 0..4 * et - 1 {
        leader.tick();
    }
    assert!(notices(&settle(&mut leader)).is_empty());
    assert!(leader.replication_peers().contains(&4));
    leader.tick();
    assert!(settle(&mut leader).contains(&Action::PeersChanged));
    assert_eq!(leader.replication_peers(), [2, 3].into());
}

/// Removes node 4 from the voters {1, 2, 3, 4} led by node 1 (joint consensus, then the final
/// configuration), then moves leadership to node 2 (a transfer). `reach_4`: whether node 4
/// receives the removal's entries (it is not told all the same: its links to the leader are
/// cut before the notices); otherwise it is cut off throughout. Node 1 lets it go first.
/// Leaves the links healed; returns the index of the final configuration.
fn remove_4_then_change_leader(c: &mut Cluster, reach_4: bool) -> Index {
    let et = config(1).election_ticks;
    c.elect(1);
    if !reach_4 {
        c.isolate(4);
    }
    c.node(1)
        .core
        .change_membership(voters(&[1, 2, 3]))
        .unwrap();
    c.process(1);
    c.stabilize();
    if reach_4 {
        c.cut.insert((1, 4));
        c.cut.insert((4, 1));
    }
    // Heartbeats carry the commit to the followers; node 1 gives up on node 4 (never told: the
    // notices are cut, or it never acknowledged the entry).
    run_ticks(c, 4 * et + 1);
    let final_index = c.core(1).latest_config_index();
    assert_eq!(c.core(1).membership(), &voters(&[1, 2, 3]));
    for id in [1, 2, 3] {
        assert_eq!(
            c.core(id).committed_membership().0,
            final_index,
            "node {id}"
        );
    }
    assert!(!c.core(1).replication_peers().contains(&4));
    assert!(c.nodes[&4].removed.is_empty());
    assert_eq!(c.core(4).latest_config_index() == final_index, reach_4);

    c.node(1).core.transfer_leader(2).unwrap();
    c.process(1);
    c.stabilize();
    assert_eq!(c.leader(), Some(2));
    assert_eq!(c.core(2).replication_peers(), [1, 3].into());
    c.heal();
    final_index
}

/// [`remove_4_then_change_leader`] on a new cluster of nodes 1 to 4, then ticks until node 4
/// reports its removal (at most ten election timeouts): it reports it once, with the index of
/// the final configuration, and node 2 still leads in the same term.
fn told_by_the_next_leader(reach_4: bool) -> Cluster {
    let mut c = Cluster::new(&[1, 2, 3, 4]);
    let final_index = remove_4_then_change_leader(&mut c, reach_4);
    let term = c.core(2).term();
    for _ in 0..10 * config(2).election_ticks {
        if !c.nodes[&4].removed.is_empty() {
            break;
        }
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(c.nodes[&4].removed, vec![final_index]);
    assert_eq!(c.leader(), Some(2));
    assert_eq!(c.core(2).term(), term);
    c
}

#[test]
fn a_later_leader_tells_a_removed_node_that_campaigns_with_its_old_configuration() {
    // Claim: a node cut off while it was removed lacks the removal and still campaigns as a
    // voter of its old configuration. A leader elected after the removal committed does not
    // replicate to it; hearing from it (its pre-vote requests), the leader makes it a
    // retiring peer, replicates the log to it and tells it (`MessageBody::Removed`, with the
    // committed configuration's index) once it holds that configuration; the node reports its
    // removal once. No term changes on the way.
    let mut c = told_by_the_next_leader(false);
    assert!(c.core(4).is_removed());
    assert_eq!(c.core(4).membership(), &voters(&[1, 2, 3]));
    // Let go once told, as any retiring node.
    run_ticks(&mut c, config(2).election_ticks + 1);
    assert_eq!(c.core(2).replication_peers(), [1, 3].into());
    c.check().unwrap();
}

#[test]
fn a_removed_node_holding_its_removal_asks_and_a_later_leader_tells_it() {
    // Claim: a node that holds the configuration that removed it but was never told (the
    // leader lost office first) does not campaign, so no later leader would hear from it: it
    // asks the voters of that configuration (`MessageBody::RemovalQuery`) once an election
    // timeout, and the leader, which does not count it as a member, tells it.
    let mut c = told_by_the_next_leader(true);
    // Told, it asks no more.
    c.tick_all();
    c.deliver_all();
    for _ in 0..3 * config(4).election_ticks {
        c.tick(4);
        assert!(
            !c.net.iter().any(|m| m.body == MessageBody::RemovalQuery),
            "asked after it was told"
        );
    }
    c.check().unwrap();
}

#[test]
fn only_a_leader_answers_removal_queries_and_only_for_nodes_it_does_not_count() {
    // Claim: a `RemovalQuery` changes no term, vote or role anywhere. A leader answers it (and
    // any other message) by retiring the sender only when neither its committed configuration
    // nor its latest one names the sender: not for a member, not for a node it is adding,
    // not while only the initial configuration (index 0) is committed.
    let query =
        |from: NodeId, to: NodeId, term: Term| msg(from, to, term, MessageBody::RemovalQuery);

    // A follower: nothing, even from a higher term.
    let mut f = fresh(config(2), &[1, 2, 3]);
    f.step(query(4, 2, 7));
    assert!(settle(&mut f).is_empty());
    assert_eq!((f.term(), f.role()), (0, Role::Follower));

    let cfg = Config {
        external_timers: true,
        ..config(1)
    };
    // Only the initial configuration committed: a stranger is not told.
    let mut leader = leader_of_three(cfg.clone());
    leader.step(query(4, 1, 5));
    assert!(!settle(&mut leader).contains(&Action::PeersChanged));
    assert_eq!(leader.replication_peers(), [2, 3].into());
    assert_eq!(leader.term(), 1);

    // Learner 4 removed by a committed configuration, and let go without an answer.
    let mut leader = leader_of_three_with_learners(cfg.clone(), &[4]);
    assert_eq!(leader.change_membership(voters(&[1, 2, 3])), Ok(2));
    leader.progress(2, 1, 2);
    leader.progress(3, 1, 2);
    settle(&mut leader);
    for _ in 0..4 * cfg.election_ticks {
        leader.tick();
    }
    settle(&mut leader);
    assert_eq!(leader.replication_peers(), [2, 3].into());
    assert!(!leader.needs_ticks());
    // A member's query changes nothing.
    leader.step(query(3, 1, 1));
    assert!(!settle(&mut leader).contains(&Action::PeersChanged));
    // Node 4's, from a higher term: retired again, told once it holds index 2; the term stays.
    leader.step(query(4, 1, 9));
    assert!(settle(&mut leader).contains(&Action::PeersChanged));
    assert_eq!(leader.replication_peers(), [2, 3, 4].into());
    assert_eq!((leader.term(), leader.role()), (1, Role::Leader));
    assert!(leader.needs_ticks());
    assert_eq!(
        leader.add_learner(4, None),
        Err(Error::Membership(MembershipError::ChangeInProgress {
            index: 2
        })),
        "not back while it is being told"
    );
    leader.tick();
    let told = |actions: &[Action]| {
        sent(actions)
            .iter()
            .any(|m| m.to == 4 && m.body == MessageBody::Removed { index: 2 })
    };
    assert!(!told(&settle(&mut leader)), "4 does not hold index 2 yet");
    leader.progress(4, 1, 2);
    leader.tick();
    assert!(told(&settle(&mut leader)));
    // Asking again while retiring adds nothing.
    leader.step(query(4, 1, 1));
    assert!(!settle(&mut leader).contains(&Action::PeersChanged));

    // A node the leader is adding (in its latest configuration, not committed) is left alone.
    let mut leader = leader_of_three(cfg);
    leader.add_learner(5, None).unwrap();
    settle(&mut leader);
    leader.step(query(5, 1, 1));
    assert!(!settle(&mut leader).contains(&Action::PeersChanged));
}

#[test]
fn only_a_node_its_own_log_removed_asks_and_it_needs_its_ticks_for_that() {
    // Claim: a follower whose latest configuration leaves it out, after a committed one named
    // it, asks the voters of that configuration (`RemovalQuery`) once an election timeout
    // (with external timers it then needs its ticks); a node that joins (no configuration has
    // named it yet) does not ask, and neither does a member.
    let cfg = Config {
        external_timers: true,
        ..config(3)
    };
    let et = cfg.election_ticks;
    let queries = |actions: &[Action]| {
        let mut to: Vec<NodeId> = sent(actions)
            .iter()
            .filter(|m| m.body == MessageBody::RemovalQuery)
            .map(|m| m.to)
            .collect();
        to.sort();
        to
    };
    let mut f = fresh(cfg.clone(), &[1, 2, 3]);
    assert!(!f.needs_ticks());
    f.step(append(
        1,
        3,
        1,
        (0, 0),
        vec![
            entry(1, 1, EntryPayload::Noop),
            entry(2, 1, EntryPayload::Membership(joint(&[1, 2, 3], &[1, 2]))),
            entry(3, 1, EntryPayload::Membership(voters(&[1, 2]))),
        ],
        3,
    ));
    settle(&mut f);
    assert!(f.needs_ticks());
    let mut asked = Vec::new();
    for _ in 0..2 * et {
        f.tick();
        asked.extend(queries(&settle(&mut f)));
    }
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|&to| to == 1 || to == 2), "{asked:?}");
    assert!(asked.len() <= 4, "once an election timeout: {asked:?}");
    f.step(msg(1, 3, 1, MessageBody::Removed { index: 3 }));
    assert_eq!(removals(&settle(&mut f)), vec![3]);
    assert!(!f.needs_ticks());
    for _ in 0..2 * et {
        f.tick();
        assert!(queries(&settle(&mut f)).is_empty());
    }

    // A joining node that received configurations without itself yet.
    let mut joining = PartitionCore::new(cfg.clone(), 1, InitialState::joining()).unwrap();
    joining.step(append(
        1,
        3,
        1,
        (0, 0),
        vec![
            entry(1, 1, EntryPayload::Noop),
            entry(2, 1, EntryPayload::Membership(voters(&[1, 2]))),
        ],
        2,
    ));
    settle(&mut joining);
    assert!(!joining.needs_ticks());
    for _ in 0..3 * et {
        joining.tick();
        assert!(queries(&settle(&mut joining)).is_empty());
    }
}

#[test]
fn addresses_survive_recovery() {
    // Claim: a recovered core has the addresses of its snapshot's and its log's
    // configurations.
    let base = voters(&[1, 2, 3]).with_addrs(3, addrs(3));
    let snapshot = SnapshotMeta {
        index: 1,
        term: 1,
        membership: base.clone(),
    };
    let readdressed = base.clone().with_addrs(1, addrs(1));
    let entries = vec![entry(2, 1, EntryPayload::Membership(readdressed.clone()))];
    let hard = HardState {
        term: 1,
        vote: None,
        commit: 1,
    };
    let init = InitialState::recover(hard, snapshot, &entries).unwrap();
    let core = PartitionCore::new(config(3), 1, init).unwrap();
    assert_eq!(core.membership(), &readdressed);
    assert_eq!(core.committed_membership(), (1, &base));
}

// ---------------------------------------------------------------------------------------------
// 7. Snapshots and log compaction (Raft paper, section 7).
// ---------------------------------------------------------------------------------------------

fn snapshot_cfg() -> Config {
    Config {
        snapshot_threshold: 5,
        compact_trailing: 2,
        ..config(1)
    }
}

fn meta(index: Index, term: Term, ids: &[NodeId]) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        membership: voters(ids),
    }
}

#[test]
fn a_snapshot_is_requested_after_snapshot_threshold_applied_entries() {
    // Claim (paper, section 7): the core asks the state machine for a snapshot once
    // `snapshot_threshold` entries were applied since the last one, and not again until that
    // many more are applied after it.
    let mut leader = single_leader(snapshot_cfg(), 9);
    leader.applied(4);
    assert!(
        !leader
            .take_actions()
            .iter()
            .any(|a| matches!(a, Action::TakeSnapshot { .. }))
    );
    leader.applied(5);
    assert_eq!(
        leader.take_actions(),
        vec![Action::TakeSnapshot { index: 5 }]
    );
    leader.applied(6);
    assert!(leader.take_actions().is_empty(), "one request at a time");
    leader.snapshot_taken(meta(5, 1, &[1])).unwrap();
    leader.take_actions();
    leader.applied(9);
    assert!(leader.take_actions().is_empty(), "only 4 applied since");
    leader.applied(10);
    assert_eq!(
        leader.take_actions(),
        vec![Action::TakeSnapshot { index: 10 }]
    );
}

#[test]
fn a_snapshot_not_taken_is_asked_for_again_after_another_threshold() {
    // A failed snapshot (the state machine or storage could not write it) is asked for
    // again, but not on the very next applied entry: a state machine that always fails
    // would otherwise be asked on every entry.
    let mut leader = single_leader(snapshot_cfg(), 20);
    leader.applied(5);
    assert_eq!(
        leader.take_actions(),
        vec![Action::TakeSnapshot { index: 5 }]
    );
    leader.snapshot_not_taken();
    leader.applied(9);
    assert!(
        leader.take_actions().is_empty(),
        "4 applied since the failure"
    );
    leader.applied(10);
    assert_eq!(
        leader.take_actions(),
        vec![Action::TakeSnapshot { index: 10 }]
    );
}

#[test]
fn snapshot_taken_compacts_the_log_keeping_compact_trailing_entries() {
    // Claim (paper, section 7): once a snapshot covers index i, entries up to i may go, but
    // `compact_trailing` of them are kept so a slightly lagging follower can catch up by append.
    let mut leader = single_leader(snapshot_cfg(), 4);
    leader.applied(5);
    leader.take_actions();
    assert_eq!(leader.snapshot_taken(meta(5, 1, &[1])), Ok(()));
    let actions = leader.take_actions();
    assert!(
        actions.contains(&Action::CompactLog { index: 3 }),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Replicate { first_index: 4, .. }))
    );
    assert_eq!(leader.log().first_index(), 4);
    assert_eq!(leader.log().last_index(), 5);
    assert_eq!(leader.snapshot().index, 5);
}

#[test]
fn snapshot_taken_with_bad_metadata_is_a_typed_error() {
    // Claim: a snapshot whose term disagrees with the log, that covers unapplied entries, or
    // that is not newer than the current one is refused with `Error::Snapshot` and changes
    // nothing.
    let mut leader = single_leader(snapshot_cfg(), 6);
    leader.applied(5);
    leader.take_actions();
    leader.snapshot_taken(meta(5, 1, &[1])).unwrap();
    leader.applied(6);
    leader.take_actions();
    let first = leader.log().first_index();

    let bad = [
        (meta(6, 2, &[1]), "term"),
        (meta(7, 1, &[1]), "applied"),
        (meta(5, 1, &[1]), "newer"),
        (meta(4, 1, &[1]), "newer"),
    ];
    for (m, why) in bad {
        let index = m.index;
        match leader.snapshot_taken(m) {
            Err(Error::Snapshot { index: i, reason }) => {
                assert_eq!(i, index);
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("snapshot at {index}: expected an error, got {other:?}"),
        }
        assert!(leader.take_actions().is_empty());
        assert_eq!(leader.log().first_index(), first);
        assert_eq!(leader.snapshot().index, 5);
    }
    assert_eq!(leader.snapshot_taken(meta(6, 1, &[1])), Ok(()));
}

#[test]
fn a_follower_installs_chunks_and_discards_a_log_that_conflicts_with_the_snapshot() {
    // Claim (paper, Figure 13): chunks are handed to the runtime as they arrive; on the last one
    // the snapshot is installed, and since the follower's entry at the snapshot's index has
    // another term (step 7) the whole log is discarded. The answer waits until it is durable.
    let mut follower = follower_with(&[1, 1, 1, 1, 1], 1);
    let m = meta(5, 2, &[1, 2, 3]);

    follower.step(snapshot_chunk(3, 2, 2, &m, 0, &[1, 2, 3], false));
    let actions = settle(&mut follower);
    assert!(actions.contains(&Action::SnapshotChunk {
        from: 3,
        meta: m.clone(),
        offset: 0,
        data: vec![1, 2, 3],
        done: false
    }));
    assert_eq!(
        snapshot_answers(&sent(&actions)),
        vec![(5, SnapshotStatus::ChunkReceived { next_offset: 3 })]
    );

    let actions = step(&mut follower, snapshot_chunk(3, 2, 2, &m, 3, &[4, 5], true));
    assert!(actions.contains(&Action::SnapshotChunk {
        from: 3,
        meta: m.clone(),
        offset: 3,
        data: vec![4, 5],
        done: true
    }));
    let seq = actions
        .iter()
        .find_map(|a| match a {
            Action::InstallSnapshot {
                seq,
                meta: got,
                discard_log,
            } => {
                assert_eq!(got, &m);
                assert!(*discard_log, "the log conflicts at index 5");
                Some(*seq)
            }
            _ => None,
        })
        .expect("InstallSnapshot");
    assert!(
        snapshot_answers(&sent(&actions)).is_empty(),
        "no answer before the snapshot is durable"
    );
    follower.persisted(seq);
    let replies = sent(&follower.take_actions());
    assert_eq!(
        snapshot_answers(&replies),
        vec![(5, SnapshotStatus::Installed)]
    );
    let s = follower.status();
    assert_eq!(
        (s.commit, s.first_index, s.last_index, s.last_term),
        (5, 6, 5, 2)
    );
}

#[test]
fn a_follower_holding_the_snapshots_last_entry_keeps_the_entries_after_it() {
    // Claim (paper, Figure 13, step 6): if the follower has an entry with the snapshot's last
    // index and term, it keeps the entries that follow it and only drops what the snapshot
    // covers.
    let mut follower = follower_with(&[1, 1, 1, 1, 1, 1, 1], 1);
    let m = meta(5, 1, &[1, 2, 3]);
    let actions = step(&mut follower, snapshot_chunk(1, 2, 1, &m, 0, &[9], true));
    let seq = actions
        .iter()
        .find_map(|a| match a {
            Action::InstallSnapshot {
                seq, discard_log, ..
            } => {
                assert!(!*discard_log, "entries 6 and 7 are kept");
                Some(*seq)
            }
            _ => None,
        })
        .expect("InstallSnapshot");
    assert!(snapshot_answers(&sent(&actions)).is_empty());
    follower.persisted(seq);
    assert_eq!(
        snapshot_answers(&sent(&follower.take_actions())),
        vec![(5, SnapshotStatus::Installed)]
    );
    let s = follower.status();
    assert_eq!((s.commit, s.first_index, s.last_index), (5, 6, 7));
    assert_eq!(follower.log().term(7), Some(1));
}

#[test]
fn a_stale_snapshot_is_discarded() {
    // Claim (paper, Figure 13): a snapshot that covers no more than the follower has already
    // committed is not installed; the runtime drops the assembled bytes.
    let mut follower = follower_with(&[1, 1, 1, 1, 1], 5);
    assert_eq!(follower.commit_index(), 5);
    let before = follower.status();
    let actions = step(
        &mut follower,
        snapshot_chunk(1, 2, 1, &meta(4, 1, &[1, 2, 3]), 0, &[7], true),
    );
    assert!(actions.contains(&Action::DiscardSnapshot { index: 4 }));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::InstallSnapshot { .. }))
    );
    assert_eq!(
        snapshot_answers(&sent(&actions)),
        vec![(4, SnapshotStatus::Installed)],
        "the follower already holds everything it covers"
    );
    assert_eq!(follower.status(), before);
}

#[test]
fn out_of_order_snapshot_chunks_are_rejected() {
    // Claim: chunks must arrive in order from offset 0; a chunk at any other offset is rejected
    // (and not handed to the runtime), and the transfer must restart from offset 0.
    let mut follower = follower_with(&[1], 1);
    let m = meta(5, 1, &[1, 2, 3]);
    let actions = step(&mut follower, snapshot_chunk(1, 2, 1, &m, 3, &[1], false));
    assert_eq!(
        snapshot_answers(&sent(&actions)),
        vec![(5, SnapshotStatus::Rejected)],
        "no transfer under way"
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SnapshotChunk { .. }))
    );

    step(
        &mut follower,
        snapshot_chunk(1, 2, 1, &m, 0, &[1, 2, 3], false),
    );
    let actions = step(&mut follower, snapshot_chunk(1, 2, 1, &m, 7, &[4], false));
    assert_eq!(
        snapshot_answers(&sent(&actions)),
        vec![(5, SnapshotStatus::Rejected)]
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SnapshotChunk { .. }))
    );
    // The transfer was reset: even the chunk that would have been next is refused now.
    let actions = step(&mut follower, snapshot_chunk(1, 2, 1, &m, 3, &[4], true));
    assert_eq!(
        snapshot_answers(&sent(&actions)),
        vec![(5, SnapshotStatus::Rejected)]
    );
    assert_eq!(follower.commit_index(), 1);
}

// ---------------------------------------------------------------------------------------------
// 8. ReplicatorCore: probe, pipelining, flow control, back-off.
// ---------------------------------------------------------------------------------------------

/// Two entries a message, three messages in flight, probes re-sent after two ticks.
fn repl_cfg() -> Config {
    Config {
        max_inflight_msgs: 3,
        max_entries_per_msg: 2,
        probe_ticks: 2,
        ..config(1)
    }
}

fn success(match_index: Index) -> AppendResponse {
    AppendResponse::Success { match_index }
}

/// Sends what `plan` says, as the runtime would (no bytes), and returns the plan.
fn send_plan(r: &mut ReplicatorCore, plan: Plan, commit: Index) -> Plan {
    if let Plan::Append { prev_index, to, .. } = plan {
        r.sent(prev_index, to.max(prev_index), 10, commit);
    }
    plan
}

/// A replicator for peer 2 in term 1, in Replicate state with the peer matching `matched`.
fn replicating(cfg: &Config, matched: Index) -> ReplicatorCore {
    let mut r = ReplicatorCore::new(cfg, 2, 1, matched);
    let plan = r.next_plan(1, matched, 0).expect("probe");
    send_plan(&mut r, plan, 0);
    r.on_append_response(1, &success(matched));
    assert_eq!(r.state(), ReplState::Replicate);
    r
}

#[test]
fn a_replicator_starts_probing_with_one_message_at_a_time() {
    // Claim: a new replicator does not know the peer's log: it sends one probe at
    // `last_index + 1` and plans nothing more until the probe is answered or `probe_ticks`
    // ticks pass.
    let cfg = repl_cfg();
    let mut r = ReplicatorCore::new(&cfg, 2, 1, 10);
    assert_eq!(r.state(), ReplState::Probe);
    let probe = r.next_plan(1, 10, 0).unwrap();
    assert_eq!(
        probe,
        Plan::Append {
            prev_index: 10,
            from: 11,
            to: 10
        }
    );
    r.sent(10, 10, 0, 0);
    assert_eq!(
        r.next_plan(1, 14, 0),
        None,
        "new entries wait for the answer"
    );
    assert!(!r.tick());
    assert_eq!(r.next_plan(1, 14, 0), None);
    assert!(r.tick(), "probe_ticks passed: probe again");
    assert_eq!(
        r.next_plan(1, 14, 0),
        Some(Plan::Append {
            prev_index: 10,
            from: 11,
            to: 12
        })
    );
}

#[test]
fn a_replicator_needs_ticks_only_while_something_is_unanswered() {
    // Claim: ticks drive only retransmission, so a replicator with nothing outstanding needs
    // none (an idle group's replicators can sleep); a probe, a pipelined window or a snapshot
    // in flight does.
    let cfg = repl_cfg();
    let mut r = ReplicatorCore::new(&cfg, 2, 1, 10);
    assert!(!r.needs_ticks(), "nothing sent yet");
    r.sent(10, 10, 0, 0);
    assert!(r.needs_ticks(), "the probe waits for an answer");
    r.on_append_response(1, &success(10));
    assert_eq!(r.state(), ReplState::Replicate);
    assert!(!r.needs_ticks(), "in sync and idle");
    assert!(!r.tick());
    let plan = r.next_plan(1, 12, 0).unwrap();
    send_plan(&mut r, plan, 0);
    assert!(r.needs_ticks(), "a window in flight");
    r.on_append_response(1, &success(12));
    assert!(!r.needs_ticks());
    r.snapshot_sent(20);
    assert!(r.needs_ticks(), "a snapshot in flight");
}

#[test]
fn a_reachable_peer_gets_what_waits_for_it_at_once() {
    // Claim: when the runtime learns the peer is reachable again after a silence, a probe or
    // snapshot that was probably lost is retried at once rather than after its timeout (a
    // snapshot's is 20 probe periods).
    let cfg = repl_cfg();
    let mut r = ReplicatorCore::new(&cfg, 2, 1, 10);
    assert!(!r.peer_reachable(), "nothing waits");
    r.sent(10, 10, 0, 0);
    assert_eq!(r.next_plan(1, 10, 0), None, "the probe waits");
    assert!(r.peer_reachable());
    assert!(r.next_plan(1, 10, 0).is_some(), "probe again now");

    let mut r = replicating(&cfg, 10);
    r.snapshot_sent(20);
    assert_eq!(r.next_plan(1, 30, 0), None, "the snapshot waits");
    assert!(r.peer_reachable());
    assert_eq!(r.state(), ReplState::Probe);
    assert_eq!(
        r.next_plan(1, 30, 0),
        Some(Plan::Append {
            prev_index: 10,
            from: 11,
            to: 12
        })
    );
}

#[test]
fn after_a_success_the_replicator_pipelines_up_to_max_inflight_msgs() {
    // Claim: once the peer's position is known the replicator switches to Replicate and sends
    // without waiting, up to `max_inflight_msgs` messages; an ack frees the window.
    let cfg = repl_cfg();
    let mut r = ReplicatorCore::new(&cfg, 2, 1, 10);
    r.sent(10, 10, 0, 0);
    let out = r.on_append_response(1, &success(10));
    assert_eq!(out.progress, Some(10));
    assert_eq!(r.state(), ReplState::Replicate);

    let mut plans = Vec::new();
    while let Some(plan) = r.next_plan(1, 20, 0) {
        plans.push(send_plan(&mut r, plan, 0));
        assert!(plans.len() <= 3, "window overflow: {plans:?}");
    }
    assert_eq!(
        plans,
        vec![
            Plan::Append {
                prev_index: 10,
                from: 11,
                to: 12
            },
            Plan::Append {
                prev_index: 12,
                from: 13,
                to: 14
            },
            Plan::Append {
                prev_index: 14,
                from: 15,
                to: 16
            },
        ]
    );
    assert!(r.window_full());
    assert_eq!(r.inflight_count(), 3);

    let out = r.on_append_response(1, &success(14));
    assert_eq!(out.progress, Some(14));
    assert_eq!(r.inflight_count(), 1);
    assert_eq!(
        r.next_plan(1, 20, 0),
        Some(Plan::Append {
            prev_index: 16,
            from: 17,
            to: 18
        })
    );
}

#[test]
fn the_pipelining_window_is_also_limited_by_bytes() {
    // Claim: `max_inflight_bytes` bounds the bytes in flight as well as the count; an ack frees
    // the bytes of the messages it covers.
    let cfg = Config {
        max_inflight_msgs: 100,
        max_inflight_bytes: 100,
        ..repl_cfg()
    };
    let mut r = replicating(&cfg, 10);
    r.sent(10, 12, 60, 0);
    assert!(!r.window_full());
    assert!(r.next_plan(1, 20, 0).is_some());
    r.sent(12, 14, 60, 0);
    assert_eq!(r.inflight_bytes(), 120);
    assert!(r.window_full());
    assert_eq!(r.next_plan(1, 20, 0), None, "two messages, but 120 bytes");

    r.on_append_response(1, &success(12));
    assert_eq!(r.inflight_bytes(), 60);
    assert_eq!(
        r.next_plan(1, 20, 0),
        Some(Plan::Append {
            prev_index: 14,
            from: 15,
            to: 16
        })
    );
}

#[test]
fn a_rejection_with_a_conflict_hint_skips_the_whole_term_and_returns_to_probe() {
    // Claim (paper 5.3, the optimisation at its end): the follower's hint names the first index
    // of its conflicting term, so the leader backs off past that whole term at once, and probes
    // from there.
    let cfg = repl_cfg();
    let mut r = replicating(&cfg, 2);
    while let Some(plan) = r.next_plan(1, 8, 0) {
        send_plan(&mut r, plan, 0); // 3..4, 5..6, 7..8
    }
    assert_eq!(r.inflight_count(), 3);
    let out = r.on_append_response(
        1,
        &AppendResponse::Reject {
            rejected_index: 6,
            last_index: 9,
            hint: Some(ConflictHint {
                term: 2,
                first_index: 4,
            }),
        },
    );
    assert_eq!(out.progress, None);
    assert_eq!(r.state(), ReplState::Probe);
    assert_eq!(
        r.next_index(),
        4,
        "not 6: the follower's whole term 2 is skipped"
    );
    assert_eq!(r.inflight_count(), 0);
    assert_eq!(
        r.next_plan(1, 8, 0),
        Some(Plan::Append {
            prev_index: 3,
            from: 4,
            to: 5
        })
    );
}

#[test]
fn a_stale_rejection_is_ignored() {
    // Claim: a rejection of an index below what the peer already acknowledged is a late answer
    // to an old message; it changes nothing.
    let cfg = repl_cfg();
    let mut r = replicating(&cfg, 8);
    let plan = r.next_plan(1, 12, 0).unwrap();
    send_plan(&mut r, plan, 0);
    let next = r.next_index();
    let out = r.on_append_response(
        1,
        &AppendResponse::Reject {
            rejected_index: 5,
            last_index: 5,
            hint: None,
        },
    );
    assert_eq!(out.progress, None);
    assert_eq!(r.state(), ReplState::Replicate);
    assert_eq!((r.matched(), r.next_index()), (8, next));
    assert_eq!(r.inflight_count(), 1);
}

#[test]
fn a_peer_that_lost_acknowledged_entries_is_probed_on_the_timer_not_at_once() {
    // Claim: a rejection from a peer whose log is now shorter than what it acknowledged (its
    // log was wiped: a node removed, purged and joined again while the leader still
    // replicated to it) is not answered with a new probe at once, which it would refuse the
    // same way, in a loop with no pause; the message is retried when its timer runs out.
    let cfg = repl_cfg();
    let mut r = replicating(&cfg, 8);
    let plan = r.next_plan(1, 12, 0).unwrap();
    send_plan(&mut r, plan, 0);
    let wiped = AppendResponse::Reject {
        rejected_index: 8,
        last_index: 0,
        hint: None,
    };
    let out = r.on_append_response(1, &wiped);
    assert_eq!(out.progress, None);
    assert_eq!(r.state(), ReplState::Replicate);
    assert_eq!(r.matched(), 8);
    assert_eq!(r.inflight_count(), 1, "the message stays in flight");
    // The window's timer runs out: back to probing from the match index, one probe at a time.
    let mut ticks = 0;
    while r.state() == ReplState::Replicate {
        r.tick();
        ticks += 1;
        assert!(ticks < 1000, "the window never timed out");
    }
    let probe = r.next_plan(1, 12, 0).expect("a probe");
    send_plan(&mut r, probe, 0);
    r.on_append_response(1, &wiped);
    assert_eq!(r.next_plan(1, 12, 0), None, "no new probe before its timer");
}

#[test]
fn a_response_from_a_higher_term_is_reported_and_an_older_one_ignored() {
    // Claim: an answer carrying a newer term means this leader is deposed: the outcome says so
    // (and nothing else changes); an answer from an older term is ignored.
    let cfg = repl_cfg();
    let mut r = ReplicatorCore::new(&cfg, 2, 3, 10);
    r.sent(10, 10, 0, 0);
    let out = r.on_append_response(5, &success(10));
    assert_eq!(
        out,
        Outcome {
            progress: None,
            higher_term: Some(5),
            heard: false
        }
    );
    assert_eq!((r.state(), r.matched()), (ReplState::Probe, 0));
    assert_eq!(
        r.on_snapshot_response(4, 10, SnapshotStatus::Installed)
            .higher_term,
        Some(4)
    );
    assert_eq!(r.on_append_response(2, &success(10)), Outcome::default());
    assert_eq!(r.matched(), 0);
}

#[test]
fn an_unanswered_window_falls_back_to_probe_after_four_probe_intervals() {
    // Claim: in Replicate state, if nothing in the window is answered for 4 * `probe_ticks`
    // ticks, the messages are presumed lost: the replicator probes again from its match index.
    let cfg = repl_cfg();
    let mut r = replicating(&cfg, 4);
    let plan = r.next_plan(1, 8, 0).unwrap();
    send_plan(&mut r, plan, 0);
    for _ in 0..4 * cfg.probe_ticks - 1 {
        assert!(!r.tick());
    }
    assert_eq!(r.state(), ReplState::Replicate);
    assert!(r.tick());
    assert_eq!(r.state(), ReplState::Probe);
    assert_eq!((r.next_index(), r.inflight_count()), (5, 0));
}

#[test]
fn a_peer_behind_the_first_index_gets_a_snapshot_and_then_matches_its_index() {
    // Claim (paper, section 7): when the entries a peer needs were compacted, the plan is a
    // snapshot; nothing else is sent while it is in progress, and once installed the peer's
    // match index is the snapshot's.
    let cfg = repl_cfg();
    let mut r = ReplicatorCore::new(&cfg, 2, 1, 10);
    r.sent(10, 10, 0, 0);
    r.on_append_response(
        1,
        &AppendResponse::Reject {
            rejected_index: 10,
            last_index: 2,
            hint: None,
        },
    );
    assert_eq!(r.next_index(), 3);
    assert_eq!(r.next_plan(6, 10, 5), Some(Plan::Snapshot));
    r.snapshot_sent(5);
    assert_eq!(r.state(), ReplState::Snapshot { index: 5 });
    assert_eq!(r.next_plan(6, 10, 5), None);

    let out = r.on_snapshot_response(1, 5, SnapshotStatus::ChunkReceived { next_offset: 9 });
    assert_eq!(
        (out.progress, r.state()),
        (None, ReplState::Snapshot { index: 5 })
    );
    let out = r.on_snapshot_response(1, 4, SnapshotStatus::Installed);
    assert_eq!(out.progress, None, "an answer about another snapshot");
    let out = r.on_snapshot_response(1, 5, SnapshotStatus::Installed);
    assert_eq!(out.progress, Some(5));
    assert_eq!((r.matched(), r.next_index()), (5, 6));
    assert_eq!(
        r.next_plan(6, 10, 5),
        Some(Plan::Append {
            prev_index: 5,
            from: 6,
            to: 7
        })
    );
}

#[test]
fn a_commit_only_empty_append_is_planned_when_the_commit_index_advances() {
    // Claim: when the peer holds every entry but was told an older commit index, the
    // replicator plans an empty append at its match index to carry the new commit index, once.
    let cfg = repl_cfg();
    let mut r = ReplicatorCore::new(&cfg, 2, 1, 10);
    let probe = r.next_plan(1, 10, 5).expect("a new replicator probes");
    assert!(
        !r.only_commit(&probe),
        "a probe is not a commit-only append"
    );
    r.sent(10, 10, 0, 5);
    r.on_append_response(1, &success(10));
    assert_eq!(
        r.next_plan(1, 10, 5),
        None,
        "the peer already knows commit 5"
    );
    let plan = r.next_plan(1, 10, 8).expect("commit moved");
    assert_eq!(
        plan,
        Plan::Append {
            prev_index: 10,
            from: 11,
            to: 10
        }
    );
    assert!(r.only_commit(&plan));
    r.sent(10, 10, 0, 8);
    assert_eq!(r.next_plan(1, 10, 8), None);
    assert_eq!(
        r.inflight_count(),
        0,
        "an empty append holds no window slot"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Bad inputs: refused or ignored, never a panic.
// ---------------------------------------------------------------------------------------------

/// Steps `m` and asserts that the core neither acted nor changed.
fn assert_ignored(core: &mut PartitionCore, m: Message) {
    let before = core.status();
    let what = format!("{m:?}");
    let actions = step(core, m);
    assert!(actions.is_empty(), "{what}: {actions:?}");
    assert_eq!(core.status(), before, "{what}");
}

#[test]
fn misaddressed_messages_and_invalid_senders_are_dropped() {
    // Claim: a message for another node, from node 0 or claiming to come from this node is
    // dropped, however high its term.
    let mut follower = follower_with(&[1, 1], 1);
    assert_ignored(&mut follower, heartbeat(1, 3, 9));
    assert_ignored(&mut follower, heartbeat(0, 2, 9));
    assert_ignored(&mut follower, heartbeat(2, 2, 9));
    assert_ignored(&mut follower, vote_request(0, 2, 9, (9, 9), false));
    assert_ignored(&mut follower, append(2, 2, 9, (2, 1), entries(3, &[9]), 3));
    assert_eq!(follower.term(), 1);
}

#[test]
fn malformed_append_entries_are_dropped() {
    // Claim: AppendEntries whose entries are not consecutive from prev_index + 1, whose terms
    // decrease, or that carry an entry newer than the leader's term is dropped unanswered.
    let mut follower = follower_with(&[1, 1, 2], 1);
    follower.step(heartbeat(1, 2, 3));
    settle(&mut follower);
    let bad = [
        (
            "gap",
            append(
                1,
                2,
                3,
                (3, 2),
                vec![entries(4, &[3])[0].clone(), entries(6, &[3])[0].clone()],
                1,
            ),
        ),
        ("wrong start", append(1, 2, 3, (3, 2), entries(5, &[3]), 1)),
        (
            "terms decrease",
            append(1, 2, 3, (3, 2), entries(4, &[3, 2]), 1),
        ),
        (
            "below prev_term",
            append(1, 2, 3, (3, 2), entries(4, &[1]), 1),
        ),
        (
            "newer than leader",
            append(1, 2, 3, (3, 2), entries(4, &[3, 4]), 1),
        ),
        (
            "bad membership",
            append(
                1,
                2,
                3,
                (3, 2),
                vec![entry(4, 3, EntryPayload::Membership(Membership::default()))],
                1,
            ),
        ),
    ];
    for (why, m) in bad {
        let before = follower.status();
        let actions = step(&mut follower, m);
        assert!(actions.is_empty(), "{why}: {actions:?}");
        assert_eq!(follower.status(), before, "{why}");
    }
    // A well-formed one is accepted (control).
    let replies = respond(&mut follower, append(1, 2, 3, (3, 2), entries(4, &[3]), 1));
    assert_eq!(
        replies.iter().map(|m| &m.body).collect::<Vec<_>>(),
        vec![&MessageBody::AppendResponse(success(4))]
    );
}

#[test]
fn prev_index_far_beyond_the_log_is_rejected_without_overflow() {
    // Claim: a prev_index past the end of the log is an ordinary rejection carrying the
    // follower's last index, even next to u64::MAX; one whose entries would overflow the index
    // space is dropped.
    let mut follower = follower_with(&[1, 1], 1);
    for prev in [1_000, u64::MAX - 1] {
        let replies = respond(&mut follower, append(1, 2, 1, (prev, 1), vec![], 1));
        assert_eq!(
            replies.iter().map(|m| &m.body).collect::<Vec<_>>(),
            vec![&MessageBody::AppendResponse(AppendResponse::Reject {
                rejected_index: prev,
                last_index: 2,
                hint: None
            })]
        );
    }
    let last = entry(u64::MAX, 1, EntryPayload::Noop);
    assert_ignored(
        &mut follower,
        append(1, 2, 1, (u64::MAX - 1, 1), vec![last], 1),
    );
    assert_ignored(&mut follower, append(1, 2, 1, (u64::MAX, 1), vec![], 1));
    assert_eq!(follower.log().last_index(), 2);
}

#[test]
fn inputs_naming_unknown_peers_are_refused_or_ignored() {
    // Claim: a node outside the configuration gets no vote (pre-vote or real); its progress
    // reports and append answers do not touch the leader's state.
    let mut voter = fresh(config(2), &[1, 2, 3]);
    let replies = respond(&mut voter, vote_request(9, 2, 1, (5, 1), true));
    assert_eq!(vote_answers(&replies), vec![(false, 0)]);
    let replies = respond(&mut voter, vote_request(9, 2, 1, (5, 1), false));
    assert_eq!(vote_answers(&replies), vec![(false, 1)]);
    assert_eq!(voter.hard_state().vote, None);

    let mut leader = leader_of_three(config(1));
    let before = leader.status();
    leader.progress(9, 1, 1);
    assert!(leader.take_actions().is_empty());
    assert_eq!(leader.status(), before);
    assert_ignored(
        &mut leader,
        msg(9, 1, 1, MessageBody::AppendResponse(success(1))),
    );
    assert_ignored(&mut leader, heartbeat_ack(9, 1, 1, 1));
    assert_eq!(leader.role(), Role::Leader);
}

#[test]
fn persisted_with_a_sequence_never_issued_is_ignored() {
    // Claim: `persisted(seq)` for a write the core never asked for releases nothing: the
    // candidate's own vote and its vote requests still wait for the real write.
    let cfg = Config {
        pre_vote: false,
        ..config(1)
    };
    let mut cand = fresh(cfg, &[1, 2, 3]);
    cand.campaign();
    let actions = cand.take_actions();
    assert_eq!(last_seq(&actions), Some(1));
    assert!(sent(&actions).is_empty());

    cand.persisted(100);
    assert!(cand.take_actions().is_empty());
    cand.step(msg(
        2,
        1,
        1,
        MessageBody::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    ));
    assert_eq!(
        cand.role(),
        Role::Candidate,
        "its own vote is not durable, so one other vote is no majority"
    );
    cand.persisted(1);
    let requests: Vec<NodeId> = sent(&cand.take_actions())
        .iter()
        .filter(|m| matches!(m.body, MessageBody::RequestVote { .. }))
        .map(|m| m.to)
        .collect();
    assert_eq!(requests, vec![2, 3], "the vote requests go out now");
    assert_eq!(cand.role(), Role::Leader);
}

#[test]
fn applied_past_commit_and_progress_past_the_last_index_are_clamped() {
    // Claim: `applied()` beyond the commit index counts only up to the commit index, and a
    // peer's progress beyond the leader's log counts only up to its last index (so it cannot
    // commit entries proposed later).
    let mut follower = follower_with(&[1, 1, 1], 1);
    follower.applied(50);
    assert_eq!(follower.status().applied, 1);

    let mut leader = elected(config(1), &[1, 2, 3]);
    leader.progress(2, 1, 1_000);
    settle(&mut leader);
    assert_eq!(leader.status().matched.get(&2), Some(&1));
    assert_eq!(leader.commit_index(), 1);
    leader.propose(vec![b"x".to_vec()]).unwrap();
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 1, "entry 2 is on no follower yet");
    leader.progress(2, 1, 2);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 2);
}

#[test]
fn a_huge_term_is_adopted_without_panicking() {
    // Claim: terms are plain numbers from the wire: a message with term u64::MAX is handled by
    // the ordinary term rules, and older-term messages after it are answered as stale.
    let mut follower = follower_with(&[1, 1], 1);
    let replies = respond(&mut follower, heartbeat(1, 2, u64::MAX));
    assert_eq!(follower.term(), u64::MAX);
    assert_eq!(follower.leader(), Some(1));
    assert_eq!(replies.len(), 1);
    let replies = respond(&mut follower, heartbeat(3, 2, u64::MAX - 1));
    assert_eq!(
        replies.iter().map(|m| (m.to, m.term)).collect::<Vec<_>>(),
        vec![(3, u64::MAX)]
    );
    let mut voter = fresh(config(2), &[1, 2, 3]);
    let replies = respond(&mut voter, vote_request(3, 2, u64::MAX, (0, 0), true));
    assert_eq!(vote_answers(&replies), vec![(true, u64::MAX)]);
    assert_eq!(voter.term(), 0);
}

#[test]
fn a_node_at_the_maximum_term_does_not_panic_when_asked_to_campaign() {
    // Claim: nothing panics on bad input. A node that adopted term u64::MAX from a message has
    // no later term to campaign in; neither TimeoutNow nor its election timer may overflow.
    let mut follower = fresh(config(2), &[1, 2, 3]);
    respond(&mut follower, heartbeat(1, 2, u64::MAX));
    respond(&mut follower, msg(1, 2, u64::MAX, MessageBody::TimeoutNow));
    assert_eq!(follower.term(), u64::MAX);

    let cfg = config(2);
    let et = cfg.election_ticks;
    let mut follower = fresh(cfg, &[1, 2, 3]);
    respond(&mut follower, heartbeat(1, 2, u64::MAX));
    for _ in 0..2 * et {
        follower.tick();
    }
    settle(&mut follower);
    assert_eq!(follower.term(), u64::MAX);
}

#[test]
fn recovering_a_log_with_gaps_or_decreasing_terms_is_an_invalid_state() {
    // Claim: `InitialState::recover` refuses a durable log that cannot be a Raft log.
    let snap = meta(0, 0, &[1, 2, 3]);
    let hs = HardState {
        term: 3,
        vote: None,
        commit: 0,
    };
    let gap_inside = vec![entries(1, &[1])[0].clone(), entries(3, &[1])[0].clone()];
    let cases = [
        ("gap inside", gap_inside),
        ("gap after the snapshot", entries(2, &[1, 1])),
        ("decreasing terms", entries(1, &[2, 1])),
    ];
    for (why, log) in cases {
        assert!(
            matches!(
                InitialState::recover(hs, snap.clone(), &log),
                Err(Error::InvalidState(_))
            ),
            "{why}"
        );
    }
    assert!(InitialState::recover(hs, snap, &entries(1, &[1, 2, 2])).is_ok());
}

#[test]
fn partition_core_new_with_an_invalid_config_names_the_field() {
    // Claim: `PartitionCore::new` validates its `Config` and the error names the bad field.
    let cases: [(&str, Config); 4] = [
        ("id", Config { id: 0, ..config(1) }),
        (
            "election_ticks",
            Config {
                election_ticks: 2,
                heartbeat_ticks: 2,
                ..config(1)
            },
        ),
        (
            "max_pending_reads",
            Config {
                max_pending_reads: 0,
                ..config(1)
            },
        ),
        (
            "probe_ticks",
            Config {
                probe_ticks: 0,
                ..config(1)
            },
        ),
    ];
    for (field, cfg) in cases {
        match PartitionCore::new(cfg, 1, InitialState::bootstrap(voters(&[1, 2, 3]))) {
            Err(Error::Config(e)) => {
                assert_eq!(e.field, field);
                assert!(Error::Config(e).to_string().contains(field));
            }
            other => panic!("{field}: expected a config error, got {other:?}"),
        }
    }
}
