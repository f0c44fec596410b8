//! One test per claim of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
//! Consensus Algorithm", extended version), sections 5.1–5.5, plus the persistence rule of
//! Figure 2 and the no-op a new leader appends (persistence before promises and no-op on
//! election, docs/architecture.md).
//!
//! Every test opens with a `// Reference: section 5.x` comment stating the claim it checks.
//! Single-core tests drive one `PartitionCore` by hand and assert on the actions it emits;
//! scenario tests (Figures 7 and 8, leader changes, crashes) run the simulated cluster of
//! `common`, which also checks election safety, log matching, leader completeness and
//! state-machine safety as it goes.
//!
//! Unless a test says otherwise, cores run the paper's plain algorithm ([`plain`]): no pre-vote
//! and no leader lease, both of which are later additions (Raft thesis, 9.6 and 4.2.3).

use super::common;

use common::*;
use raft_core::{
    Action, AppendResponse, Config, ConflictHint, Entry, EntryPayload, Error, HardState, Index,
    InitialState, Membership, Message, MessageBody, NodeId, PartitionCore, Plan, Proposed,
    ReplicatorCore, Role, SnapshotMeta, Term,
};

// ---------------------------------------------------------------------------------------------
// Helpers: building cores and messages, reading actions.
// ---------------------------------------------------------------------------------------------

/// The paper's plain algorithm: no pre-vote round, no leader lease.
fn plain(id: NodeId) -> Config {
    Config {
        pre_vote: false,
        check_quorum: false,
        snapshot_threshold: 0,
        ..Config::new(id)
    }
}

/// The plain algorithm plus the pre-vote round (the crate's default).
fn with_pre_vote(id: NodeId) -> Config {
    Config {
        pre_vote: true,
        ..plain(id)
    }
}

fn membership(voters: &[NodeId]) -> Membership {
    Membership::new(voters.iter().copied())
}

/// A brand-new core of a group whose voters are `voters`.
fn fresh(cfg: Config, voters: &[NodeId]) -> PartitionCore {
    PartitionCore::new(cfg, 1, InitialState::bootstrap(membership(voters))).expect("valid core")
}

/// A log with one entry per term in `terms`, from index 1. The payload names the entry's index
/// and term, so two logs holding the same (index, term) hold the same command.
fn log_of(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .zip(1..)
        .map(|(&term, index): (&Term, Index)| Entry {
            index,
            term,
            payload: EntryPayload::Normal(vec![index as u8, term as u8].into()),
        })
        .collect()
}

fn terms_of(log: &[Entry]) -> Vec<Term> {
    log.iter().map(|e| e.term).collect()
}

fn hard(term: Term, commit: Index) -> HardState {
    HardState {
        term,
        vote: None,
        commit,
    }
}

/// A core restarted from a durable hard state and a durable log with the given terms.
fn recovered(
    cfg: Config,
    voters: &[NodeId],
    hard_state: HardState,
    terms: &[Term],
) -> PartitionCore {
    let snapshot = SnapshotMeta {
        index: 0,
        term: 0,
        membership: membership(voters),
    };
    let init = InitialState::recover(hard_state, snapshot, &log_of(terms)).expect("consistent log");
    PartitionCore::new(cfg, 1, init).expect("valid core")
}

fn request_vote(
    from: NodeId,
    to: NodeId,
    term: Term,
    last_index: Index,
    last_term: Term,
) -> Message {
    let body = MessageBody::RequestVote {
        pre_vote: false,
        last_index,
        last_term,
        transfer: false,
    };
    msg(from, to, term, body)
}

fn pre_vote_request(
    from: NodeId,
    to: NodeId,
    term: Term,
    last_index: Index,
    last_term: Term,
) -> Message {
    let body = MessageBody::RequestVote {
        pre_vote: true,
        last_index,
        last_term,
        transfer: false,
    };
    msg(from, to, term, body)
}

fn vote(from: NodeId, to: NodeId, term: Term, granted: bool) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::VoteResponse {
            pre_vote: false,
            granted,
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

fn heartbeat(from: NodeId, to: NodeId, term: Term, commit: Index) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::Heartbeat {
            commit,
            read_seq: 0,
        },
    )
}

/// The `granted` flag of every (non-pre-vote) vote response among `msgs`.
fn vote_answers(msgs: &[Message]) -> Vec<bool> {
    msgs.iter()
        .filter_map(|m| match m.body {
            MessageBody::VoteResponse {
                pre_vote: false,
                granted,
            } => Some(granted),
            _ => None,
        })
        .collect()
}

/// Every AppendEntries answer among `msgs`.
fn append_answers(msgs: &[Message]) -> Vec<AppendResponse> {
    msgs.iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendResponse(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The receivers of the (non-pre-vote) vote requests among `msgs`, with the term they carry.
fn vote_requests(msgs: &[Message]) -> Vec<(NodeId, Term)> {
    msgs.iter()
        .filter(|m| {
            matches!(
                m.body,
                MessageBody::RequestVote {
                    pre_vote: false,
                    ..
                }
            )
        })
        .map(|m| (m.to, m.term))
        .collect()
}

fn hard_states(actions: &[Action]) -> Vec<HardState> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistHardState { hard_state, .. } => Some(*hard_state),
            _ => None,
        })
        .collect()
}

/// Every `PersistEntries` as (truncate_from, entries).
fn entry_writes(actions: &[Action]) -> Vec<(Option<Index>, Vec<Entry>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistEntries {
                truncate_from,
                entries,
                ..
            } => Some((*truncate_from, entries.to_vec())),
            _ => None,
        })
        .collect()
}

/// The highest index an `Apply` action among `actions` names.
fn applied_to(actions: &[Action]) -> Option<Index> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply { index } => Some(*index),
            _ => None,
        })
        .max()
}

/// Node `cfg.id` elected leader of term 1 by every other voter, with all writes durable.
fn elected(cfg: Config, voters: &[NodeId]) -> PartitionCore {
    let id = cfg.id;
    let mut core = fresh(cfg, voters);
    core.campaign();
    settle(&mut core);
    let term = core.term();
    for &v in voters.iter().filter(|&&v| v != id) {
        if core.role() == Role::Leader {
            break;
        }
        core.step(vote(v, id, term, true));
        settle(&mut core);
    }
    assert_eq!(core.role(), Role::Leader, "{:?}", core.status());
    core
}

/// Ticks `core` until `done` holds; returns how many ticks that took.
fn ticks_until(
    core: &mut PartitionCore,
    limit: u32,
    done: impl Fn(&PartitionCore) -> bool,
) -> Option<u32> {
    for n in 1..=limit {
        core.tick();
        if done(core) {
            return Some(n);
        }
    }
    None
}

/// A simulated node restarted from the given durable hard state and log.
fn node_with_log(cfg: Config, voters: &[NodeId], hard_state: HardState, terms: &[Term]) -> Node {
    let mut node = Node::new(cfg.clone(), membership(voters));
    node.core = recovered(cfg, voters, hard_state, terms);
    node.log = log_of(terms);
    node.durable.hard = hard_state;
    node.durable.entries = log_of(terms);
    node
}

/// A cluster whose nodes start from the given (id, durable hard state, log terms); all are
/// voters.
fn cluster_of(cfg: fn(NodeId) -> Config, nodes: &[(NodeId, HardState, &[Term])]) -> Cluster {
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.0).collect();
    let mut c = Cluster::with(&ids, &ids, cfg);
    for &(id, hard_state, terms) in nodes {
        c.nodes
            .insert(id, node_with_log(cfg(id), &ids, hard_state, terms));
    }
    c
}

/// Delivers, in order, the in-flight messages `pass` accepts (and those they cause) until none
/// is left; the others stay in flight.
fn deliver_only(c: &mut Cluster, pass: impl Fn(&Message) -> bool) {
    for _ in 0..100_000 {
        let Some(i) = c.net.iter().position(&pass) else {
            return;
        };
        let m = c.net.remove(i);
        c.deliver_msg(m);
    }
    panic!("the network never went quiet");
}

/// True if `m` is an AppendEntries carrying an entry at `index` or later.
fn carries_from(m: &Message, index: Index) -> bool {
    matches!(&m.body, MessageBody::AppendEntries { entries, .. } if entries.iter().any(|e| e.index >= index))
}

// ---------------------------------------------------------------------------------------------
// 5.1 Raft basics: terms.
// ---------------------------------------------------------------------------------------------

#[test]
fn any_message_with_a_higher_term_updates_the_term_and_makes_a_follower() {
    // Reference: section 5.1 — servers exchange their current term on every message; a server
    // that sees a larger term than its own adopts it and reverts to follower (Figure 2, "Rules
    // for all servers"), and the new term is persisted.
    let bodies = [
        MessageBody::AppendEntries {
            prev_index: 0,
            prev_term: 0,
            entries: raft_core::Entries::new(),
            commit: 0,
        },
        MessageBody::Heartbeat {
            commit: 0,
            read_seq: 0,
        },
        MessageBody::RequestVote {
            pre_vote: false,
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
        MessageBody::VoteResponse {
            pre_vote: false,
            granted: false,
        },
        MessageBody::AppendResponse(AppendResponse::Success { match_index: 0 }),
        MessageBody::HeartbeatResponse { read_seq: 0 },
    ];
    for body in bodies {
        let kind = msg(2, 1, 5, body.clone()).kind();
        let mut core = recovered(plain(1), &[1, 2, 3], hard(2, 0), &[]);
        let actions = step(&mut core, msg(2, 1, 5, body));
        assert_eq!(core.term(), 5, "{kind}");
        assert_eq!(core.role(), Role::Follower, "{kind}");
        assert!(
            hard_states(&actions).iter().any(|h| h.term == 5),
            "{kind}: the new term must be written to stable storage: {actions:?}"
        );
    }
}

#[test]
fn append_entries_from_a_stale_term_is_rejected_and_the_sender_learns_the_newer_term() {
    // Reference: section 5.1 — a request carrying a stale term is rejected; the reply carries
    // the receiver's current term so the out-of-date sender can update itself.
    let mut core = recovered(plain(1), &[1, 2, 3], hard(3, 0), &[]);
    let entries = vec![Entry {
        index: 1,
        term: 2,
        payload: EntryPayload::Noop,
    }];
    let actions = step(&mut core, append(2, 1, 2, (0, 0), entries, 1));
    assert!(
        entry_writes(&actions).is_empty(),
        "a stale leader's entries must not be stored"
    );
    assert_eq!(core.log().last_index(), 0);
    assert_eq!(core.leader(), None, "a stale leader must not be followed");
    assert_eq!(core.term(), 3);
    let replies = sent(&actions);
    assert!(
        append_answers(&replies).is_empty(),
        "no acknowledgement to a stale leader: {replies:?}"
    );
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(
        (replies[0].to, replies[0].term),
        (2, 3),
        "the reply must carry the newer term"
    );
}

#[test]
fn vote_request_from_a_stale_term_is_not_granted() {
    // Reference: section 5.1 — a RequestVote whose term is older than the receiver's is
    // rejected (Figure 2, RequestVote receiver step 1).
    let mut voter = recovered(plain(1), &[1, 2, 3], hard(3, 0), &[]);
    let replies = respond(&mut voter, request_vote(2, 1, 2, 10, 2));
    assert!(!vote_answers(&replies).contains(&true), "{replies:?}");
    assert_eq!(voter.status().vote, None);
    assert_eq!(voter.term(), 3);
}

#[test]
fn candidate_steps_down_when_it_sees_a_higher_term() {
    // Reference: section 5.1 — a candidate that discovers a higher term immediately reverts to
    // follower state, whether the term comes from a new leader or from a vote answer.
    let mut cand = fresh(plain(1), &[1, 2, 3]);
    cand.campaign();
    settle(&mut cand);
    assert_eq!((cand.role(), cand.term()), (Role::Candidate, 1));
    cand.step(heartbeat(3, 1, 2, 0));
    assert_eq!(
        (cand.role(), cand.term(), cand.leader()),
        (Role::Follower, 2, Some(3))
    );

    let mut cand = fresh(plain(1), &[1, 2, 3]);
    cand.campaign();
    settle(&mut cand);
    cand.step(vote(2, 1, 5, false));
    assert_eq!((cand.role(), cand.term()), (Role::Follower, 5));
}

#[test]
fn leader_steps_down_when_it_sees_a_higher_term() {
    // Reference: section 5.1 — a leader that learns of a higher term (here from a follower's
    // answer) is out of date: it reverts to follower and stops accepting commands.
    let mut leader = elected(plain(1), &[1, 2, 3]);
    assert_eq!(leader.term(), 1);
    let reject = AppendResponse::Reject {
        rejected_index: 1,
        last_index: 0,
        hint: None,
    };
    let actions = step(
        &mut leader,
        msg(2, 1, 4, MessageBody::AppendResponse(reject)),
    );
    assert_eq!((leader.role(), leader.term()), (Role::Follower, 4));
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::RoleChanged {
                role: Role::Follower,
                term: 4,
                ..
            }
        )),
        "{actions:?}"
    );
    assert!(matches!(
        leader.propose(vec![b"x".to_vec()]),
        Err(Error::NotLeader { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// 5.2 Leader election.
// ---------------------------------------------------------------------------------------------

#[test]
fn follower_starts_an_election_after_the_election_timeout() {
    // Reference: section 5.2 — a follower that hears nothing for an election timeout assumes
    // there is no viable leader: it increments its term, becomes a candidate, votes for itself
    // and sends RequestVote to every other server.
    let cfg = plain(1);
    let et = cfg.election_ticks;
    let mut core = fresh(cfg, &[1, 2, 3]);
    let mut ticks = 0;
    let actions = loop {
        core.tick();
        ticks += 1;
        let actions = core.take_actions();
        if core.role() != Role::Follower {
            break actions;
        }
        assert!(
            sent(&actions).is_empty(),
            "a follower sends nothing before its timeout"
        );
        assert!(ticks < 2 * et, "no election after {ticks} ticks");
    };
    assert!((et..2 * et).contains(&ticks), "timeout of {ticks} ticks");
    assert_eq!((core.role(), core.term()), (Role::Candidate, 1));
    assert_eq!(
        hard_states(&actions),
        vec![HardState {
            term: 1,
            vote: Some(1),
            commit: 0
        }]
    );
    let seq = last_seq(&actions).expect("hard state written");
    core.persisted(seq);
    let requests = vote_requests(&sent(&core.take_actions()));
    assert_eq!(requests, vec![(2, 1), (3, 1)]);
}

#[test]
fn leader_heartbeats_keep_a_follower_from_campaigning() {
    // Reference: section 5.2 — a server stays a follower as long as it receives valid RPCs
    // from a leader; only when they stop does its election timer fire.
    let cfg = plain(1);
    let et = cfg.election_ticks;
    let mut core = fresh(cfg, &[1, 2, 3]);
    for _ in 0..10 {
        for _ in 0..et - 1 {
            core.tick();
        }
        core.step(heartbeat(2, 1, 1, 0));
        assert_eq!((core.role(), core.leader()), (Role::Follower, Some(2)));
    }
    assert_eq!(core.term(), 1, "heartbeats must not lead to an election");
    let waited = ticks_until(&mut core, 2 * et, |c| c.role() == Role::Candidate);
    assert!(
        waited.is_some_and(|n| n >= et),
        "once heartbeats stop it campaigns: {waited:?}"
    );
    assert_eq!(core.term(), 2);
}

#[test]
fn leader_sends_periodic_heartbeats_to_every_follower() {
    // Reference: section 5.2 — leaders send periodic heartbeats (AppendEntries without
    // entries) to all followers to maintain their authority.
    let cfg = plain(1);
    let hb = cfg.heartbeat_ticks;
    let mut leader = elected(cfg, &[1, 2, 3]);
    let beats = |actions: &[Action]| -> Vec<NodeId> {
        sent(actions)
            .iter()
            .filter(|m| m.term == 1 && matches!(m.body, MessageBody::Heartbeat { .. }))
            .map(|m| m.to)
            .collect()
    };
    for _ in 0..3 {
        for _ in 0..hb - 1 {
            leader.tick();
            assert!(beats(&leader.take_actions()).is_empty());
        }
        leader.tick();
        assert_eq!(beats(&leader.take_actions()), vec![2, 3]);
    }
    assert_eq!(leader.role(), Role::Leader);
}

#[test]
fn pre_candidate_does_not_increase_its_term() {
    // Reference: section 5.2 (with the thesis' pre-vote, 9.6) — on timeout a node with pre-vote
    // first asks whether it could win, proposing term + 1 without adopting it; only after a
    // majority says yes does it become a candidate and increment its term.
    let cfg = with_pre_vote(1);
    let et = cfg.election_ticks;
    let mut core = fresh(cfg, &[1, 2, 3]);
    ticks_until(&mut core, 2 * et, |c| c.role() != Role::Follower).expect("timeout");
    let actions = core.take_actions();
    assert_eq!((core.role(), core.term()), (Role::PreCandidate, 0));
    assert!(
        hard_states(&actions).is_empty(),
        "a pre-vote writes no new term: {actions:?}"
    );
    let probes: Vec<(NodeId, Term)> = sent(&actions)
        .iter()
        .filter(|m| matches!(m.body, MessageBody::RequestVote { pre_vote: true, .. }))
        .map(|m| (m.to, m.term))
        .collect();
    assert_eq!(probes, vec![(2, 1), (3, 1)], "probes propose term + 1");

    // One granted pre-vote plus its own makes a majority of three: now it campaigns for real.
    core.step(msg(
        2,
        1,
        1,
        MessageBody::VoteResponse {
            pre_vote: true,
            granted: true,
        },
    ));
    let actions = core.take_actions();
    assert_eq!((core.role(), core.term()), (Role::Candidate, 1));
    assert_eq!(
        hard_states(&actions),
        vec![HardState {
            term: 1,
            vote: Some(1),
            commit: 0
        }]
    );

    // A pre-vote that a majority refuses leaves the term untouched.
    let mut core = fresh(with_pre_vote(1), &[1, 2, 3]);
    core.campaign();
    core.step(msg(
        2,
        1,
        0,
        MessageBody::VoteResponse {
            pre_vote: true,
            granted: false,
        },
    ));
    core.step(msg(
        3,
        1,
        0,
        MessageBody::VoteResponse {
            pre_vote: true,
            granted: false,
        },
    ));
    assert_eq!((core.role(), core.term()), (Role::Follower, 0));
}

#[test]
fn pre_vote_request_changes_neither_term_nor_vote_of_the_voter() {
    // Reference: section 5.2 (with the thesis' pre-vote, 9.6) — answering a pre-vote is free: the
    // voter neither adopts the proposed term nor records a vote.
    let mut voter = recovered(with_pre_vote(1), &[1, 2, 3], hard(2, 0), &[1, 2]);
    let actions = step(&mut voter, pre_vote_request(2, 1, 3, 2, 2));
    assert!(hard_states(&actions).is_empty(), "{actions:?}");
    assert_eq!((voter.term(), voter.status().vote), (2, None));
    let replies = sent(&actions);
    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0].body,
        MessageBody::VoteResponse {
            pre_vote: true,
            granted: true
        }
    );
    assert_eq!(
        replies[0].term, 3,
        "a granted pre-vote answers in the proposed term"
    );
}

#[test]
fn candidate_counts_its_own_vote_only_after_persisting_it() {
    // Reference: section 5.2 and Figure 2 — a candidate votes for itself, and currentTerm and
    // votedFor are on stable storage before the server relies on them: its own vote counts, and
    // its vote requests go out, only after `persisted`.
    let mut cand = fresh(plain(1), &[1, 2, 3]);
    cand.campaign();
    let actions = cand.take_actions();
    assert_eq!(
        hard_states(&actions),
        vec![HardState {
            term: 1,
            vote: Some(1),
            commit: 0
        }]
    );
    assert!(
        sent(&actions).is_empty(),
        "vote requests wait for the durable self-vote"
    );
    let seq = last_seq(&actions).expect("hard state written");

    // A peer's vote alone is not a majority of three while the self-vote is not durable.
    cand.step(vote(2, 1, 1, true));
    assert_eq!(cand.role(), Role::Candidate);
    cand.persisted(seq);
    let actions = cand.take_actions();
    assert_eq!(cand.role(), Role::Leader);
    assert_eq!(vote_requests(&sent(&actions)), vec![(2, 1), (3, 1)]);

    // A single-node group is the sharpest case: it wins on its own vote, after persisting it.
    let mut solo = fresh(plain(1), &[1]);
    solo.campaign();
    let seq = last_seq(&solo.take_actions()).expect("hard state written");
    assert_eq!(solo.role(), Role::Candidate);
    solo.persisted(seq);
    assert_eq!(solo.role(), Role::Leader);
}

#[test]
fn each_server_votes_for_at_most_one_candidate_per_term() {
    // Reference: section 5.2 — each server votes for at most one candidate in a given term,
    // first-come-first-served; a repeated request from the same candidate gets the same answer,
    // and a later term allows a new vote.
    let mut voter = fresh(plain(1), &[1, 2, 3]);
    assert_eq!(
        vote_answers(&respond(&mut voter, request_vote(2, 1, 1, 0, 0))),
        vec![true]
    );
    assert_eq!(voter.status().vote, Some(2));
    assert_eq!(
        vote_answers(&respond(&mut voter, request_vote(3, 1, 1, 0, 0))),
        vec![false]
    );
    assert_eq!(voter.status().vote, Some(2));
    assert_eq!(
        vote_answers(&respond(&mut voter, request_vote(2, 1, 1, 0, 0))),
        vec![true]
    );
    assert_eq!(
        vote_answers(&respond(&mut voter, request_vote(3, 1, 2, 0, 0))),
        vec![true]
    );
    assert_eq!((voter.term(), voter.status().vote), (2, Some(3)));
}

#[test]
fn candidate_with_votes_from_a_majority_becomes_leader_and_sends_heartbeats() {
    // Reference: section 5.2 — a candidate wins once it has votes from a majority of the full
    // cluster for its term; it then becomes leader and sends heartbeats to all the others to
    // establish its authority.
    let mut cand = fresh(plain(1), &[1, 2, 3, 4, 5]);
    cand.campaign();
    settle(&mut cand);
    cand.step(vote(2, 1, 1, true));
    assert_eq!(
        cand.role(),
        Role::Candidate,
        "two of five is not a majority"
    );
    cand.step(vote(3, 1, 1, true));
    let actions = cand.take_actions();
    assert_eq!((cand.role(), cand.leader()), (Role::Leader, Some(1)));
    let won = Action::RoleChanged {
        role: Role::Leader,
        term: 1,
        leader: Some(1),
    };
    assert!(actions.contains(&won), "{actions:?}");
    let beats: Vec<NodeId> = sent(&actions)
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat { .. }))
        .map(|m| m.to)
        .collect();
    assert_eq!(beats, vec![2, 3, 4, 5]);
}

#[test]
fn candidate_returns_to_follower_on_append_entries_from_a_leader_of_its_term() {
    // Reference: section 5.2 — a candidate that receives AppendEntries from a server claiming
    // leadership with a term at least as large as its own recognizes that leader and returns to
    // follower state (and processes the request).
    let mut cand = fresh(plain(1), &[1, 2, 3]);
    cand.campaign();
    settle(&mut cand);
    let replies = respond(&mut cand, append(2, 1, 1, (0, 0), vec![], 0));
    assert_eq!(
        (cand.role(), cand.term(), cand.leader()),
        (Role::Follower, 1, Some(2))
    );
    assert_eq!(
        append_answers(&replies),
        vec![AppendResponse::Success { match_index: 0 }]
    );
}

#[test]
fn candidate_rejects_append_entries_from_a_stale_leader_and_stays_candidate() {
    // Reference: section 5.2 — if the term in the AppendEntries is smaller than the candidate's
    // current term, the candidate rejects it and continues in candidate state.
    let mut cand = recovered(plain(1), &[1, 2, 3], hard(1, 0), &[1]);
    cand.campaign();
    settle(&mut cand);
    assert_eq!((cand.role(), cand.term()), (Role::Candidate, 2));
    let replies = respond(
        &mut cand,
        append(3, 1, 1, (1, 1), log_of(&[1, 1])[1..].to_vec(), 1),
    );
    assert_eq!((cand.role(), cand.term()), (Role::Candidate, 2));
    assert!(append_answers(&replies).is_empty(), "{replies:?}");
    assert_eq!(cand.log().last_index(), 1);
}

#[test]
fn split_vote_ends_in_a_new_election_with_a_new_term() {
    // Reference: section 5.2 — when no candidate obtains a majority, each candidate times out
    // and starts a new election by incrementing its term and sending another round of
    // RequestVote.
    let cfg = plain(1);
    let et = cfg.election_ticks;
    let mut cand = fresh(cfg, &[1, 2, 3, 4]);
    cand.campaign();
    settle(&mut cand);
    cand.step(vote(2, 1, 1, true));
    cand.step(vote(3, 1, 1, false));
    settle(&mut cand);
    assert_eq!(
        (cand.role(), cand.term()),
        (Role::Candidate, 1),
        "2 of 4: undecided"
    );
    for _ in 0..et - 1 {
        cand.tick();
    }
    assert_eq!(
        cand.term(),
        1,
        "the election timeout is at least election_ticks"
    );
    ticks_until(&mut cand, et + 1, |c| c.term() == 2).expect("a new election within the timeout");
    let actions = settle(&mut cand);
    assert_eq!(cand.role(), Role::Candidate);
    assert_eq!(
        hard_states(&actions),
        vec![HardState {
            term: 2,
            vote: Some(1),
            commit: 0
        }]
    );
    // Term 1's requests were sent again to node 4, which had not answered (section 5.1:
    // servers retry RPCs that get no response); the new term asks everyone.
    let term_2: Vec<_> = vote_requests(&sent(&actions))
        .into_iter()
        .filter(|&(_, term)| term == 2)
        .collect();
    assert_eq!(term_2, vec![(2, 2), (3, 2), (4, 2)]);
}

#[test]
fn split_vote_in_a_cluster_is_resolved_by_randomized_timeouts() {
    // Reference: section 5.2 — two candidates can split the votes so that neither wins; Raft
    // relies on randomized election timeouts so that, usually, one server times out first in
    // the next term and wins before the others.
    let mut c = Cluster::with(&[1, 2, 3, 4], &[1, 2, 3, 4], plain);
    c.node(1).core.campaign();
    c.node(3).core.campaign();
    c.cut.extend([(1, 4), (3, 2)]);
    c.process(1);
    c.process(3);
    c.deliver_all();
    assert_eq!(
        c.leader(),
        None,
        "node 2 voted for 1, node 4 for 3: nobody has 3 of 4"
    );
    assert_eq!((c.core(1).role(), c.core(1).term()), (Role::Candidate, 1));
    assert_eq!((c.core(3).role(), c.core(3).term()), (Role::Candidate, 1));
    c.heal();
    for _ in 0..100 {
        if c.leader().is_some() {
            break;
        }
        c.tick_all();
        c.deliver_all();
    }
    let leader = c.leader().expect("the split vote resolves");
    assert!(
        c.core(leader).term() >= 2,
        "the winner was elected in a later term"
    );
    c.stabilize();
    c.check().unwrap();
}

#[test]
fn election_timeouts_are_randomized_per_node_within_one_to_two_election_ticks() {
    // Reference: section 5.2 — election timeouts are chosen randomly from a fixed interval (here
    // [election_ticks, 2 * election_ticks)), so servers rarely time out together; the choice is
    // derived from the seed, so a run replays exactly, and it is redrawn for every election.
    let et = plain(1).election_ticks;
    let first_timeout = |seed: u64, id: NodeId| {
        let mut core = fresh(Config { seed, ..plain(id) }, &[1, 2, 3, 4, 5]);
        ticks_until(&mut core, 4 * et, |c| c.role() == Role::Candidate).expect("campaigns")
    };
    let mut per_seed = Vec::new();
    for seed in [0, 1, 2024] {
        let timeouts: Vec<u32> = (1..=5).map(|id| first_timeout(seed, id)).collect();
        assert!(
            timeouts.iter().all(|t| (et..2 * et).contains(t)),
            "seed {seed}: {timeouts:?}"
        );
        assert!(
            timeouts.iter().any(|&t| t != timeouts[0]),
            "seed {seed}: all equal {timeouts:?}"
        );
        let again: Vec<u32> = (1..=5).map(|id| first_timeout(seed, id)).collect();
        assert_eq!(timeouts, again, "same seed, same timeouts");
        per_seed.push(timeouts);
    }
    assert!(
        per_seed.windows(2).any(|w| w[0] != w[1]),
        "the seed must matter: {per_seed:?}"
    );

    let mut core = fresh(plain(1), &[1, 2, 3]);
    let mut successive = Vec::new();
    for _ in 0..8 {
        let term = core.term();
        successive.push(ticks_until(&mut core, 4 * et, |c| c.term() > term).expect("re-election"));
    }
    assert!(
        successive.iter().all(|t| (et..2 * et).contains(t)),
        "{successive:?}"
    );
    assert!(
        successive.iter().any(|&t| t != successive[0]),
        "redrawn each time: {successive:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5.3 Log replication.
// ---------------------------------------------------------------------------------------------

#[test]
fn leader_appends_a_client_command_to_its_log_and_replicates_it() {
    // Reference: section 5.3 — the leader appends a client command to its log as a new entry
    // of its term, then sends AppendEntries to the other servers to replicate it.
    let mut leader = elected(plain(1), &[1, 2, 3]);
    let p = leader.propose(vec![b"x".to_vec()]).unwrap();
    assert_eq!(
        p,
        Proposed {
            term: 1,
            first_index: 2,
            last_index: 2
        }
    );
    let actions = leader.take_actions();
    let x = Entry {
        index: 2,
        term: 1,
        payload: EntryPayload::Normal(b"x".to_vec().into()),
    };
    assert_eq!(entry_writes(&actions), vec![(None, vec![x.clone()])]);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Replicate {
                term: 1,
                last_index: 2,
                ..
            }
        )),
        "{actions:?}"
    );

    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"x").unwrap();
    let mut carried: Vec<NodeId> = c
        .net
        .iter()
        .filter(|m| matches!(&m.body, MessageBody::AppendEntries { entries, .. } if entries.contains(&x)))
        .map(|m| m.to)
        .collect();
    carried.sort_unstable();
    assert_eq!(carried, vec![2, 3]);
    c.stabilize();
    for id in [2, 3] {
        assert_eq!(c.node(id).entry(2), Some(&x), "node {id}");
    }
    c.check().unwrap();
}

#[test]
fn entry_commits_once_a_majority_stores_it_and_is_then_applied() {
    // Reference: section 5.3 — an entry is committed once the leader that created it has
    // replicated it on a majority of the servers; the leader then applies it (Action::Apply).
    let mut leader = elected(plain(1), &[1, 2, 3, 4, 5]);
    leader.progress(2, 1, 1);
    leader.progress(3, 1, 1);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 1);
    leader.propose(vec![b"x".to_vec()]).unwrap();
    settle(&mut leader);

    leader.progress(2, 1, 2);
    let actions = settle(&mut leader);
    assert_eq!(
        leader.commit_index(),
        1,
        "leader and one follower are two of five"
    );
    assert_eq!(applied_to(&actions), None);

    leader.progress(3, 1, 2);
    let actions = settle(&mut leader);
    assert_eq!(leader.commit_index(), 2);
    assert_eq!(applied_to(&actions), Some(2));
}

#[test]
fn follower_rejects_append_entries_whose_previous_entry_does_not_match() {
    // Reference: section 5.3 — AppendEntries carries the index and term of the entry preceding
    // the new ones; a follower without an entry of that term at that index refuses the new
    // entries (the consistency check) and stores nothing.
    let mut f = recovered(plain(1), &[1, 2, 3], hard(2, 0), &[1, 1, 2]);
    let e4 = vec![Entry {
        index: 4,
        term: 3,
        payload: EntryPayload::Noop,
    }];
    f.step(append(2, 1, 3, (3, 3), e4, 0));
    let actions = settle(&mut f);
    assert!(entry_writes(&actions).is_empty(), "{actions:?}");
    assert_eq!(
        append_answers(&sent(&actions)),
        vec![AppendResponse::Reject {
            rejected_index: 3,
            last_index: 3,
            hint: Some(ConflictHint {
                term: 2,
                first_index: 3
            }),
        }]
    );
    assert_eq!((f.log().last_index(), f.log().term(3)), (3, Some(2)));

    // A previous index past the end of the log fails the check too.
    let e6 = vec![Entry {
        index: 6,
        term: 3,
        payload: EntryPayload::Noop,
    }];
    let replies = respond(&mut f, append(2, 1, 3, (5, 3), e6, 0));
    assert_eq!(
        append_answers(&replies),
        vec![AppendResponse::Reject {
            rejected_index: 5,
            last_index: 3,
            hint: None
        }]
    );
    assert_eq!(f.log().last_index(), 3);
}

#[test]
fn conflicting_entries_are_truncated_and_replaced_by_the_leaders() {
    // Reference: section 5.3 — when an existing entry conflicts with a new one (same index,
    // different term), the follower deletes it and everything after it, then appends the
    // leader's entries.
    let mut f = recovered(plain(1), &[1, 2, 3], hard(2, 0), &[1, 1, 2, 2]);
    let new = vec![Entry {
        index: 3,
        term: 3,
        payload: EntryPayload::Normal(b"new".to_vec().into()),
    }];
    f.step(append(2, 1, 3, (2, 1), new.clone(), 0));
    let actions = settle(&mut f);
    assert_eq!(entry_writes(&actions), vec![(Some(3), new)]);
    assert_eq!(
        append_answers(&sent(&actions)),
        vec![AppendResponse::Success { match_index: 3 }]
    );
    assert_eq!((f.log().last_index(), f.log().term(3)), (3, Some(3)));
}

#[test]
fn a_stale_or_reordered_append_entries_never_truncates_matching_entries() {
    // Reference: section 5.3 (Figure 2, AppendEntries step 3) — only a conflicting entry is
    // deleted: an old message whose entries all match the log (a retry, or one overtaken by a
    // later message) must not cut off the entries that came after it.
    let mut f = recovered(plain(1), &[1, 2, 3], hard(1, 0), &[1, 1, 1, 1]);
    let log = log_of(&[1, 1, 1, 1]);
    let actions_a = {
        f.step(append(2, 1, 1, (0, 0), log[..2].to_vec(), 0));
        settle(&mut f)
    };
    assert!(entry_writes(&actions_a).is_empty(), "{actions_a:?}");
    assert_eq!(
        append_answers(&sent(&actions_a)),
        vec![AppendResponse::Success { match_index: 2 }]
    );
    let replies = respond(&mut f, append(2, 1, 1, (1, 1), log[1..3].to_vec(), 0));
    assert_eq!(
        append_answers(&replies),
        vec![AppendResponse::Success { match_index: 3 }]
    );
    assert_eq!((f.log().last_index(), f.log().term(4)), (4, Some(1)));
}

/// Figure 7: the log of the leader of term 8 (before its no-op), then followers (a)-(f).
const FIG7_LEADER: [Term; 10] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
const FIG7_A: [Term; 9] = [1, 1, 1, 4, 4, 5, 5, 6, 6];
const FIG7_B: [Term; 4] = [1, 1, 1, 4];
const FIG7_C: [Term; 11] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6];
const FIG7_D: [Term; 12] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7];
const FIG7_E: [Term; 7] = [1, 1, 1, 4, 4, 4, 4];
const FIG7_F: [Term; 11] = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3];

fn fig7_leader_log() -> Vec<Entry> {
    let mut log = log_of(&FIG7_LEADER);
    log.push(Entry {
        index: 11,
        term: 8,
        payload: EntryPayload::Noop,
    });
    log
}

/// Drives leader-to-follower replication by hand: the leader's replicator for node 2 plans
/// each AppendEntries, the follower core answers. Returns the `prev_index` of every message
/// and how many were rejected.
fn replicate_by_hand(follower: &mut PartitionCore, leader_log: &[Entry]) -> (Vec<Index>, usize) {
    let last = leader_log.len() as Index;
    let mut repl = ReplicatorCore::new(&plain(1), 2, 8, last);
    let (mut probes, mut rejections) = (Vec::new(), 0);
    for _ in 0..30 {
        let Some(Plan::Append {
            prev_index,
            from,
            to,
        }) = repl.next_plan(1, last, 0)
        else {
            break;
        };
        let batch = leader_log[(from - 1) as usize..to as usize].to_vec();
        let prev_term = if prev_index == 0 {
            0
        } else {
            leader_log[prev_index as usize - 1].term
        };
        let bytes = batch.iter().map(Entry::size_hint).sum();
        repl.sent(prev_index, prev_index + batch.len() as Index, bytes, 0);
        probes.push(prev_index);
        let replies = respond(follower, append(1, 2, 8, (prev_index, prev_term), batch, 0));
        let answers = append_answers(&replies);
        let [resp] = &answers[..] else {
            panic!("one answer expected: {replies:?}")
        };
        if matches!(resp, AppendResponse::Reject { .. }) {
            rejections += 1;
        }
        repl.on_append_response(8, resp);
    }
    (probes, rejections)
}

#[test]
fn leader_backs_off_past_a_whole_conflicting_term_using_the_follower_hint() {
    // Reference: section 5.3 — after a rejection the leader decrements nextIndex and retries
    // until the logs match; with the follower's hint (the conflicting term and the first index
    // it stores for it) the leader skips a whole term per round trip instead of one entry.
    // Follower (f) of Figure 7 then needs two rejections instead of eight.
    let leader_log = fig7_leader_log();
    let mut f = recovered(plain(2), &[1, 2, 3], hard(7, 0), &FIG7_F);
    let (probes, rejections) = replicate_by_hand(&mut f, &leader_log);
    assert_eq!(
        probes[..3],
        [11, 6, 3],
        "11 holds term 3 from 7 on; 6 holds term 2 from 4 on"
    );
    assert_eq!(rejections, 2);
    let terms: Vec<Term> = (1..=11).map(|i| f.log().term(i).unwrap_or(0)).collect();
    assert_eq!(terms, terms_of(&leader_log));
    assert_eq!(f.log().last_index(), 11);
}

#[test]
fn leader_backs_off_straight_to_the_end_of_a_short_follower_log() {
    // Reference: section 5.3 — a follower missing entries rejects and reports its last index,
    // so the leader's next attempt starts right after it (follower (b) of Figure 7).
    let leader_log = fig7_leader_log();
    let mut f = recovered(plain(2), &[1, 2, 3], hard(7, 0), &FIG7_B);
    let (probes, rejections) = replicate_by_hand(&mut f, &leader_log);
    assert_eq!(probes[..2], [11, 4]);
    assert_eq!(rejections, 1);
    assert_eq!(f.log().last_index(), 11);
    assert_eq!(f.log().term(11), Some(8));
}

/// Figure 7: node 1 holds the leader's log, node 2 one of the follower logs (a)–(f), node 3 the
/// leader's log again (so that node 1 can win term 8 whatever node 2's log). After node 1 is
/// elected, node 2's log must equal the leader's, and the leader's own log only grew.
fn figure7(follower: &[Term]) {
    let mut c = cluster_of(
        plain,
        &[
            (1, hard(7, 0), &FIG7_LEADER),
            (2, hard(7, 0), follower),
            (3, hard(7, 0), &FIG7_LEADER),
        ],
    );
    c.elect(1);
    assert_eq!(c.core(1).term(), 8);
    c.stabilize();
    let leader_log = fig7_leader_log();
    assert_eq!(
        c.node(1).log,
        leader_log,
        "the leader never overwrites or deletes its entries"
    );
    assert_eq!(
        c.node(2).log,
        leader_log,
        "follower log {follower:?} was not repaired"
    );
    assert_eq!(
        c.node(2).durable.entries,
        leader_log,
        "the repaired log is durable"
    );
    assert_eq!(c.core(2).log().last_index(), 11);
    assert_eq!(c.core(2).log().last_term(), 8);
    assert_eq!(c.core(2).commit_index(), 11);
    c.check_log_matching();
    c.check().unwrap();
}

#[test]
fn figure7_a_follower_missing_an_entry_is_brought_up_to_date() {
    // Reference: section 5.3, Figure 7 (a) — a follower missing the last entry gets it.
    figure7(&FIG7_A);
}

#[test]
fn figure7_b_follower_missing_many_entries_is_brought_up_to_date() {
    // Reference: section 5.3, Figure 7 (b) — a follower missing six entries gets them all.
    figure7(&FIG7_B);
}

#[test]
fn figure7_c_follower_with_an_extra_uncommitted_entry_is_repaired() {
    // Reference: section 5.3, Figure 7 (c) — an extra, uncommitted entry of term 6 is replaced
    // by the leader's entry at that index.
    figure7(&FIG7_C);
}

#[test]
fn figure7_d_follower_with_extra_entries_of_a_later_term_is_repaired() {
    // Reference: section 5.3, Figure 7 (d) — two uncommitted term-7 entries (from a leader that
    // never committed them) are deleted and replaced.
    figure7(&FIG7_D);
}

#[test]
fn figure7_e_follower_missing_and_having_extra_entries_is_repaired() {
    // Reference: section 5.3, Figure 7 (e) — a follower that lacks the term-5 and term-6
    // entries and holds extra term-4 entries ends with exactly the leader's log.
    figure7(&FIG7_E);
}

#[test]
fn figure7_f_follower_with_entries_of_terms_the_leader_never_saw_is_repaired() {
    // Reference: section 5.3, Figure 7 (f) — a follower that led terms 2 and 3 without
    // committing anything has every entry after index 3 replaced.
    figure7(&FIG7_F);
}

#[test]
fn followers_learn_the_commit_index_from_later_append_entries() {
    // Reference: section 5.3 — the leader includes its commit index in future AppendEntries
    // (heartbeats included); a follower that learns an entry is committed applies it.
    let mut f = fresh(plain(2), &[1, 2, 3]);
    let entries = vec![
        Entry {
            index: 1,
            term: 1,
            payload: EntryPayload::Noop,
        },
        Entry {
            index: 2,
            term: 1,
            payload: EntryPayload::Normal(b"x".to_vec().into()),
        },
    ];
    f.step(append(1, 2, 1, (0, 0), entries, 0));
    let actions = settle(&mut f);
    assert_eq!(
        append_answers(&sent(&actions)),
        vec![AppendResponse::Success { match_index: 2 }]
    );
    assert_eq!(
        (f.commit_index(), applied_to(&actions)),
        (0, None),
        "stored is not committed"
    );

    f.step(append(1, 2, 1, (2, 1), vec![], 1));
    let actions = settle(&mut f);
    assert_eq!((f.commit_index(), applied_to(&actions)), (1, Some(1)));

    f.step(heartbeat(1, 2, 1, 2));
    let actions = settle(&mut f);
    assert_eq!((f.commit_index(), applied_to(&actions)), (2, Some(2)));
}

#[test]
fn follower_commit_is_capped_at_the_last_entry_it_shares_with_the_leader() {
    // Reference: section 5.3 (Figure 2, AppendEntries step 5) — a follower sets its commit index
    // to min(leaderCommit, index of the last entry the message covers): entries beyond it may
    // still conflict with the leader's and must not be applied.
    let mut f = recovered(plain(1), &[1, 2, 3], hard(2, 0), &[1, 1, 2, 2]);
    let replies = respond(&mut f, append(3, 1, 3, (2, 1), vec![], 4));
    assert_eq!(
        append_answers(&replies),
        vec![AppendResponse::Success { match_index: 2 }]
    );
    assert_eq!(
        f.commit_index(),
        2,
        "entries 3 and 4 of term 2 are not known to be the leader's"
    );
}

#[test]
fn followers_apply_committed_entries_in_log_order() {
    // Reference: section 5.3 — once a follower learns an entry is committed, it applies it (and
    // every earlier one) to its state machine in log order.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    for cmd in [b"a", b"b", b"c"] {
        c.propose(1, cmd).unwrap();
        c.deliver_all();
    }
    c.stabilize();
    for id in [1, 2, 3] {
        let indices: Vec<Index> = c.node(id).sm.iter().map(|a| a.index).collect();
        assert_eq!(indices, vec![1, 2, 3, 4], "node {id}");
        assert_eq!(
            c.commands(id),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            "node {id}"
        );
    }
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5.4.1 Election restriction.
// ---------------------------------------------------------------------------------------------

#[test]
fn voter_denies_its_vote_to_a_candidate_whose_log_is_less_up_to_date() {
    // Reference: section 5.4.1 — a voter refuses a candidate whose log is less up to date than
    // its own: a log whose last entry has an older term is behind, however long; with equal
    // last terms, the shorter log is behind.
    for (last_term, last_index, why) in [
        (1, 10, "older last term"),
        (2, 2, "same last term, shorter"),
    ] {
        let mut voter = recovered(plain(1), &[1, 2, 3], hard(2, 0), &[1, 1, 2]);
        let replies = respond(&mut voter, request_vote(2, 1, 3, last_index, last_term));
        assert_eq!(vote_answers(&replies), vec![false], "{why}");
        assert_eq!((voter.term(), voter.status().vote), (3, None), "{why}");
    }
}

#[test]
fn voter_grants_its_vote_to_a_candidate_at_least_as_up_to_date() {
    // Reference: section 5.4.1 — a candidate whose log is at least as up to date as the voter's
    // (newer last term, or the same last term and at least as long) gets the vote.
    for (last_term, last_index, why) in [
        (2, 3, "identical"),
        (2, 4, "same last term, longer"),
        (3, 1, "newer last term, shorter"),
    ] {
        let mut voter = recovered(plain(1), &[1, 2, 3], hard(2, 0), &[1, 1, 2]);
        let replies = respond(&mut voter, request_vote(2, 1, 3, last_index, last_term));
        assert_eq!(vote_answers(&replies), vec![true], "{why}");
        assert_eq!(voter.status().vote, Some(2), "{why}");
    }
}

#[test]
fn a_node_missing_a_committed_entry_cannot_be_elected() {
    // Reference: section 5.4.1 — a candidate must contact a majority to win, and every
    // committed entry is on at least one server of any majority; that server refuses a candidate
    // that lacks the entry, so such a candidate never becomes leader.
    let mut c = Cluster::with(&[1, 2, 3], &[1, 2, 3], plain);
    c.elect(1);
    c.cut.insert((1, 3));
    c.propose(1, b"x").unwrap();
    c.stabilize();
    assert_eq!(c.core(1).commit_index(), 2, "committed by nodes 1 and 2");
    assert_eq!(c.core(3).log().last_index(), 1, "node 3 missed it");
    c.isolate(1);
    for _ in 0..5 {
        c.node(3).core.campaign();
        c.process(3);
        c.stabilize();
        assert_ne!(
            c.core(3).role(),
            Role::Leader,
            "node 3 lacks committed entry 2"
        );
    }
    c.elect(2);
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5.4.2 Committing entries from previous terms; the no-op (no-op on election,
// docs/architecture.md).
// ---------------------------------------------------------------------------------------------

/// S1 of Figure 8 (c) as a single core: log [1, 2], elected leader of term 4 by S2 and S3 of a
/// five-node group, with everything durable; its no-op sits at index 3.
fn figure8_s1() -> PartitionCore {
    let mut s1 = recovered(plain(1), &[1, 2, 3, 4, 5], hard(3, 1), &[1, 2]);
    s1.campaign();
    settle(&mut s1);
    s1.step(vote(2, 1, 4, true));
    s1.step(vote(3, 1, 4, true));
    settle(&mut s1);
    assert_eq!(
        (s1.role(), s1.term(), s1.log().last_index()),
        (Role::Leader, 4, 3)
    );
    s1
}

#[test]
fn new_leader_appends_a_noop_entry_of_its_term() {
    // Reference: section 5.4.2 (and section 8) — a new leader does not know which entries are
    // committed; it appends a blank no-op entry of its own term at the start of its term and
    // replicates it.
    let mut cand = recovered(plain(1), &[1, 2, 3], hard(3, 0), &[1, 2]);
    cand.campaign();
    settle(&mut cand);
    cand.step(vote(2, 1, 4, true));
    let actions = cand.take_actions();
    assert_eq!(cand.role(), Role::Leader);
    let noop = Entry {
        index: 3,
        term: 4,
        payload: EntryPayload::Noop,
    };
    assert_eq!(entry_writes(&actions), vec![(None, vec![noop])]);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Replicate {
                term: 4,
                last_index: 3,
                ..
            }
        )),
        "{actions:?}"
    );
}

#[test]

fn leader_never_commits_an_earlier_term_entry_by_counting_replicas() {
    // Reference: section 5.4.2, Figure 8 (c) — S1, leader of term 4, knows that its term-2
    // entry at index 2 is stored on a majority (S1, S2, S3), yet must not commit it: a leader
    // commits by counting replicas only entries of its current term.
    let mut s1 = figure8_s1();
    s1.progress(2, 4, 2);
    s1.progress(3, 4, 2);
    let actions = settle(&mut s1);
    assert_eq!(s1.status().matched.get(&2), Some(&2));
    assert_eq!(s1.status().matched.get(&3), Some(&2));
    assert_eq!(s1.commit_index(), 1);
    assert_eq!(applied_to(&actions), None);

    // Index 3 (term 4) on S1 and S2 only, index 2 on three: still nothing new commits.
    s1.progress(2, 4, 3);
    settle(&mut s1);
    assert_eq!(s1.commit_index(), 1);
}

#[test]
fn committing_the_noop_commits_every_earlier_entry_with_it() {
    // Reference: section 5.4.2 — once an entry of the current term (the no-op) is committed by
    // counting replicas, every entry before it is committed indirectly (Log Matching), earlier
    // terms included.
    let mut s1 = figure8_s1();
    s1.progress(2, 4, 3);
    settle(&mut s1);
    assert_eq!(s1.commit_index(), 1);
    s1.progress(3, 4, 3);
    let actions = settle(&mut s1);
    assert_eq!(
        s1.commit_index(),
        3,
        "the no-op at 3 commits the term-2 entry at 2 with it"
    );
    assert_eq!(applied_to(&actions), Some(3));
}

fn figure8_config(id: NodeId) -> Config {
    Config {
        max_entries_per_msg: 1,
        ..plain(id)
    }
}

/// Figure 8 up to (c), in the simulated cluster. Index 1 (term 1) is committed everywhere; S1
/// holds a term-2 entry at index 2 and S5 a term-3 entry there. S5 is down and S4 cut off from
/// S1. S1 is elected in term 4 and replicates index 2 to S2 and S3, but its no-op (index 3)
/// stays in flight: the term-2 entry is on a majority (S1, S2, S3) and not committed.
fn figure8_c() -> Cluster {
    let mut c = cluster_of(
        figure8_config,
        &[
            (1, hard(3, 1), &[1, 2]),
            (2, hard(3, 1), &[1]),
            (3, hard(3, 1), &[1]),
            (4, hard(3, 1), &[1]),
            (5, hard(3, 1), &[1, 3]),
        ],
    );
    c.node(5).down = true;
    c.cut.extend([(1, 4), (4, 1)]);
    c.node(1).core.campaign();
    c.process(1);
    deliver_only(&mut c, |m| !carries_from(m, 3));
    assert_eq!((c.core(1).role(), c.core(1).term()), (Role::Leader, 4));
    for id in [1, 2, 3] {
        assert_eq!(
            terms_of(&c.node(id).log)[..2],
            [1, 2],
            "S{id} holds the term-2 entry"
        );
    }
    let matched = c.core(1).status().matched;
    assert_eq!(
        (matched[&2], matched[&3]),
        (2, 2),
        "S1 knows S2 and S3 hold index 2"
    );
    assert_eq!(
        c.core(1).commit_index(),
        1,
        "an earlier-term entry is not committed by count"
    );
    assert!(
        !c.global.contains_key(&2),
        "no state machine applied index 2"
    );
    c
}

#[test]

fn figure8_d_an_old_term_entry_on_a_majority_can_still_be_overwritten() {
    // Reference: section 5.4.2, Figure 8 (d) — this is why S1 must not commit its term-2 entry
    // in (c): if S1 crashes, S5 (last term 3) can be elected with votes from S2, S3 and S4 and
    // overwrite index 2 on every server. Had it counted as committed, state machines would
    // disagree.
    let mut c = figure8_c();
    c.node(1).down = true;
    c.net.clear();
    c.heal();
    c.node(5).crash_restart();
    c.node(5).down = false;
    for _ in 0..3 {
        if c.core(5).role() == Role::Leader {
            break;
        }
        c.node(5).core.campaign();
        c.process(5);
        c.stabilize();
    }
    assert_eq!(
        c.core(5).role(),
        Role::Leader,
        "S5's last term 3 beats the others' term 2"
    );
    c.stabilize();
    for id in [2, 3, 4, 5] {
        assert_eq!(
            c.core(id).log().term(2),
            Some(3),
            "S{id}: index 2 now holds S5's entry"
        );
    }
    c.check_log_matching();
    c.check().unwrap();
}

#[test]

fn figure8_e_a_current_term_entry_on_a_majority_commits_the_old_one_for_good() {
    // Reference: section 5.4.2, Figure 8 (e) — if S1 replicates an entry of its current term
    // (its no-op) on a majority before crashing, that entry commits and index 2 with it; S5 can
    // then no longer win an election, and index 2 survives every later leader.
    let mut c = figure8_c();
    c.stabilize();
    assert_eq!(c.core(1).commit_index(), 3);
    assert_eq!(
        c.global.get(&2).map(|e| e.0),
        Some(2),
        "S1 applied the term-2 entry"
    );
    c.node(1).down = true;
    c.net.clear();
    c.heal();
    c.node(5).crash_restart();
    c.node(5).down = false;
    for _ in 0..3 {
        c.node(5).core.campaign();
        c.process(5);
        c.stabilize();
        assert_ne!(
            c.core(5).role(),
            Role::Leader,
            "S2 and S3 hold a term-4 entry; S5 lacks it"
        );
    }
    c.elect(2);
    c.stabilize();
    for id in [2, 3, 4, 5] {
        assert_eq!(c.core(id).log().term(2), Some(2), "S{id}");
        assert_eq!(c.core(id).commit_index(), c.core(2).commit_index(), "S{id}");
    }
    c.check_log_matching();
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5.4.3 Safety argument: Leader Completeness.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_committed_entry_is_in_the_log_of_every_later_leader() {
    // Reference: section 5.4.3 — Leader Completeness: an entry committed in some term is
    // present in the logs of the leaders of all higher terms. Here x is committed on exactly
    // three of five servers; after the leader fails, a server without x cannot win and the one
    // that does win holds x (the harness also checks this on every election).
    let mut c = Cluster::with(&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5], plain);
    c.elect(1);
    c.cut.extend([(1, 4), (1, 5)]);
    c.propose(1, b"x").unwrap();
    c.stabilize();
    assert_eq!(c.core(1).commit_index(), 2);
    for id in [4, 5] {
        assert_eq!(c.core(id).log().last_index(), 1, "node {id} never got x");
    }

    c.isolate(1);
    c.node(4).core.campaign();
    c.process(4);
    c.stabilize();
    assert_ne!(
        c.core(4).role(),
        Role::Leader,
        "nodes 2 and 3 refuse a log without x"
    );

    c.elect(3);
    let x = Entry {
        index: 2,
        term: 1,
        payload: EntryPayload::Normal(b"x".to_vec().into()),
    };
    assert_eq!(
        c.node(3).entry(2),
        Some(&x),
        "the new leader holds the committed entry"
    );
    c.propose(3, b"y").unwrap();
    c.stabilize();
    c.heal();
    for _ in 0..10 {
        c.tick(3);
        c.stabilize();
    }
    for id in [1, 2, 3, 4, 5] {
        assert_eq!(
            c.commands(id),
            vec![b"x".to_vec(), b"y".to_vec()],
            "node {id}"
        );
    }
    c.check_log_matching();
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5.5 Follower and candidate crashes: retries are harmless.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_duplicated_append_entries_does_not_change_the_log() {
    // Reference: section 5.5 — Raft RPCs are idempotent: a follower that receives an
    // AppendEntries whose entries it already holds ignores them, stores nothing, and answers as
    // before.
    let mut f = fresh(plain(2), &[1, 2, 3]);
    let m = append(1, 2, 1, (0, 0), log_of(&[1, 1]), 1);
    f.step(m.clone());
    let first = settle(&mut f);
    assert_eq!(entry_writes(&first).len(), 1);
    f.step(m);
    let second = settle(&mut f);
    assert!(entry_writes(&second).is_empty(), "{second:?}");
    assert_eq!(
        append_answers(&sent(&first)),
        append_answers(&sent(&second))
    );
    assert_eq!(
        (f.log().last_index(), f.log().term(2), f.commit_index()),
        (2, Some(1), 1)
    );
}

#[test]
fn duplicated_vote_messages_are_harmless() {
    // Reference: section 5.5 — a retried RequestVote gets the same answer, and a duplicated
    // vote answer is counted once: one voter cannot make a majority by repeating itself.
    let mut voter = fresh(plain(1), &[1, 2, 3]);
    let m = request_vote(2, 1, 1, 0, 0);
    assert_eq!(vote_answers(&respond(&mut voter, m.clone())), vec![true]);
    assert_eq!(vote_answers(&respond(&mut voter, m)), vec![true]);
    assert_eq!((voter.term(), voter.status().vote), (1, Some(2)));

    let mut cand = fresh(plain(1), &[1, 2, 3, 4, 5]);
    cand.campaign();
    settle(&mut cand);
    for _ in 0..3 {
        cand.step(vote(2, 1, 1, true));
    }
    assert_eq!(
        cand.role(),
        Role::Candidate,
        "self and node 2 are two of five"
    );
    cand.step(vote(3, 1, 1, true));
    assert_eq!(cand.role(), Role::Leader);
}

#[test]
fn a_crashed_follower_catches_up_after_restart() {
    // Reference: section 5.5 — if a follower crashes, messages to it fail and the leader
    // retries them indefinitely; once it restarts, the retries bring its log up to date.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, b"a").unwrap();
    c.stabilize();
    c.node(3).down = true;
    c.propose(1, b"b").unwrap();
    c.propose(1, b"c").unwrap();
    c.stabilize();
    assert_eq!(
        c.commands(1),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    c.node(3).crash_restart();
    c.node(3).down = false;
    for _ in 0..20 {
        if c.commands(3).len() == 3 {
            break;
        }
        c.tick(1);
        c.stabilize();
    }
    assert_eq!(
        c.commands(3),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(c.core(1).role(), Role::Leader);
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Figure 2: persistent state is on stable storage before responding to RPCs (persistence
// before promises, docs/architecture.md).
// ---------------------------------------------------------------------------------------------

#[test]
fn a_vote_is_sent_only_after_it_is_persisted() {
    // Reference: section 5.2 and Figure 2 — currentTerm and votedFor are updated on stable
    // storage before responding: no granted vote leaves the node until the write recording it
    // is durable (an earlier write, of the new term alone, is not enough).
    let mut voter = fresh(plain(1), &[1, 2, 3]);
    let actions = step(&mut voter, request_vote(2, 1, 1, 0, 0));
    assert!(
        sent(&actions).is_empty(),
        "a vote promised before it is durable: {actions:?}"
    );
    let writes: Vec<(u64, HardState)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistHardState { seq, hard_state } => Some((*seq, *hard_state)),
            _ => None,
        })
        .collect();
    let &(vote_seq, _) = writes
        .iter()
        .find(|(_, h)| {
            *h == HardState {
                term: 1,
                vote: Some(2),
                commit: 0,
            }
        })
        .expect("the vote is written");
    for &(seq, _) in writes.iter().filter(|(s, _)| *s < vote_seq) {
        voter.persisted(seq);
        assert!(
            sent(&voter.take_actions()).is_empty(),
            "released at seq {seq} < {vote_seq}"
        );
    }
    voter.persisted(vote_seq);
    let replies = sent(&voter.take_actions());
    assert_eq!(vote_answers(&replies), vec![true]);
    assert_eq!((replies[0].to, replies[0].term), (2, 1));
}

#[test]
fn an_append_acknowledgement_is_sent_only_after_the_entries_are_persisted() {
    // Reference: section 5.3 and Figure 2 — the log is persistent state: a follower tells the
    // leader it stores entries only once they are on stable storage, or a crash could lose an
    // entry the leader counted toward commit.
    let mut f = fresh(plain(2), &[1, 2, 3]);
    respond(&mut f, heartbeat(1, 2, 1, 0));
    let actions = step(&mut f, append(1, 2, 1, (0, 0), log_of(&[1]), 0));
    assert_eq!(entry_writes(&actions).len(), 1);
    assert!(
        sent(&actions).is_empty(),
        "acknowledged before durable: {actions:?}"
    );
    f.persisted(last_seq(&actions).expect("entries written"));
    let replies = sent(&f.take_actions());
    assert_eq!(
        append_answers(&replies),
        vec![AppendResponse::Success { match_index: 1 }]
    );
}

#[test]
fn leader_counts_itself_toward_commit_only_after_its_own_entries_are_persisted() {
    // Reference: section 5.3 and Figure 2 — a leader is one of the majority that stores an
    // entry only once the entry is on its own stable storage (persistence before promises,
    // docs/architecture.md).
    let mut leader = elected(plain(1), &[1, 2, 3]);
    leader.progress(2, 1, 1);
    settle(&mut leader);
    assert_eq!(leader.commit_index(), 1);
    leader.propose(vec![b"x".to_vec()]).unwrap();
    let actions = leader.take_actions();
    let seq = last_seq(&actions).expect("entry written");
    leader.progress(2, 1, 2);
    assert_eq!(
        leader.commit_index(),
        1,
        "only node 2 has x durably; the leader's write is pending"
    );
    assert_eq!(applied_to(&leader.take_actions()), None);
    leader.persisted(seq);
    assert_eq!(leader.commit_index(), 2);
    assert_eq!(applied_to(&leader.take_actions()), Some(2));
}

#[test]
fn follower_applies_committed_entries_only_once_they_are_durable() {
    // Reference: section 5.3 and Figure 2 — an entry is applied after it is committed; a
    // follower that learns of the commit before its own write of the entry completes waits for
    // that write.
    let mut f = fresh(plain(2), &[1, 2, 3]);
    let actions = step(&mut f, append(1, 2, 1, (0, 0), log_of(&[1, 1]), 2));
    assert_eq!(f.commit_index(), 2);
    assert_eq!(applied_to(&actions), None);
    let seq = last_seq(&actions).expect("entries written");
    if seq > 1 {
        f.persisted(seq - 1);
        assert_eq!(
            applied_to(&f.take_actions()),
            None,
            "only the term is durable so far"
        );
    }
    f.persisted(seq);
    assert_eq!(applied_to(&f.take_actions()), Some(2));
}

#[test]
fn a_persisted_vote_survives_a_restart() {
    // Reference: section 5.2 and Figure 2 — votedFor is persistent so that a server that
    // crashes and restarts cannot vote twice in the same term.
    let before = HardState {
        term: 1,
        vote: Some(2),
        commit: 0,
    };
    let mut voter = recovered(plain(1), &[1, 2, 3], before, &[]);
    assert_eq!(
        vote_answers(&respond(&mut voter, request_vote(3, 1, 1, 0, 0))),
        vec![false]
    );
    assert_eq!(
        vote_answers(&respond(&mut voter, request_vote(2, 1, 1, 0, 0))),
        vec![true]
    );
}

#[test]
fn a_candidate_asks_again_the_voters_that_have_not_answered() {
    // Reference: section 5.1 — "Servers retry RPCs if they do not receive a response in a
    // timely manner". A candidate sends its vote requests again every `vote_retry_ticks`, only
    // to the voters that have not answered in this round; a lost request or answer then costs
    // a retry, not the whole round.
    let cfg = Config {
        vote_retry_ticks: 2,
        ..plain(1)
    };
    let mut cand = fresh(cfg, &[1, 2, 3, 4, 5]);
    cand.campaign();
    let first = settle(&mut cand);
    assert_eq!(
        vote_requests(&sent(&first)),
        vec![(2, 1), (3, 1), (4, 1), (5, 1)]
    );
    cand.step(vote(2, 1, 1, true));
    cand.step(vote(3, 1, 1, false));
    settle(&mut cand);
    cand.tick();
    assert!(
        vote_requests(&sent(&settle(&mut cand))).is_empty(),
        "not yet"
    );
    cand.tick();
    assert_eq!(
        vote_requests(&sent(&settle(&mut cand))),
        vec![(4, 1), (5, 1)],
        "again, to the two that did not answer"
    );
    cand.step(vote(4, 1, 1, true));
    let actions = settle(&mut cand);
    assert_eq!(cand.role(), Role::Leader, "{actions:?}");

    // Off, a round sends its requests once.
    let cfg = Config {
        vote_retry_ticks: 0,
        ..plain(1)
    };
    let et = cfg.election_ticks;
    let mut cand = fresh(cfg, &[1, 2, 3]);
    cand.campaign();
    settle(&mut cand);
    for _ in 0..et - 1 {
        cand.tick();
        assert!(vote_requests(&sent(&settle(&mut cand))).is_empty());
    }
}

#[test]
fn a_voter_asked_again_by_its_candidate_answers_without_writing_its_vote_again() {
    // Reference: section 5.2 (one vote per term, persisted before answering) with the retries
    // of section 5.1: the repeated request is granted again, behind the same durable vote.
    let mut voter = fresh(plain(2), &[1, 2, 3]);
    let first = step(&mut voter, request_vote(1, 2, 1, 0, 0));
    assert_eq!(
        hard_states(&first).last(),
        Some(&HardState {
            term: 1,
            vote: Some(1),
            commit: 0
        }),
        "the new term, then the vote"
    );
    assert!(
        vote_answers(&sent(&first)).is_empty(),
        "no answer before the vote is durable"
    );
    let again = step(&mut voter, request_vote(1, 2, 1, 0, 0));
    assert!(
        hard_states(&again).is_empty(),
        "the same vote is not written again"
    );
    assert!(
        vote_answers(&sent(&again)).is_empty(),
        "the repeated answer waits for the first write too"
    );
    let seq = last_seq(&first).expect("the vote's write");
    voter.persisted(seq);
    let answers = vote_answers(&sent(&voter.take_actions()));
    assert_eq!(
        answers,
        vec![true, true],
        "both requests answered once the vote is durable"
    );
    // Another candidate of the same term is refused.
    let other = respond(&mut voter, request_vote(3, 2, 1, 0, 0));
    assert_eq!(vote_answers(&other), vec![false]);
}
