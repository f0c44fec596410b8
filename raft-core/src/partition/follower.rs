//! The receiving side of replication: AppendEntries (Raft paper, 5.3), heartbeats and
//! InstallSnapshot (section 7, Figure 13).

use tracing::{debug, error, info, warn};

use super::PartitionCore;
use crate::action::Action;
use crate::entries::Entries;
use crate::message::{AppendResponse, ConflictHint, MessageBody, SnapshotStatus};
use crate::types::{Entry, EntryPayload, Index, NodeId, SnapshotMeta, Term};

impl PartitionCore {
    /// AppendEntries from the current leader.
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        mut entries: Entries,
        leader_commit: Index,
    ) {
        if let Err(reason) = check_entries(self.ballot.term(), prev_index, prev_term, &entries) {
            warn!(
                group = self.group,
                from, prev_index, reason, "malformed AppendEntries; dropped"
            );
            return;
        }
        let msg_last = prev_index + entries.len() as Index;
        let (mut prev_index, mut prev_term) = (prev_index, prev_term);
        // Entries at or below our commit index are in every future leader's log at the same
        // place (Leader Completeness), so they match: skip them rather than checking terms we
        // may have compacted.
        if prev_index < self.log.commit() {
            let skip = ((self.log.commit() - prev_index) as usize).min(entries.len());
            entries.skip_front(skip);
            prev_index = self.log.commit();
            prev_term = self.log.term(self.log.commit()).unwrap_or(prev_term);
            if entries.is_empty() {
                self.reply_append(
                    from,
                    AppendResponse::Success {
                        match_index: msg_last.min(self.log.commit()),
                    },
                );
                self.advance_commit_to(leader_commit.min(msg_last));
                return;
            }
        }
        if self.log.term(prev_index) != Some(prev_term) {
            let last_index = self.log.last_index();
            let hint = self.log.term(prev_index).map(|term| ConflictHint {
                term,
                first_index: self.log.first_index_of_term_at(prev_index),
            });
            debug!(
                group = self.group,
                from,
                prev_index,
                prev_term,
                last_index,
                "log does not match at prev_index; rejecting"
            );
            self.reply_append(
                from,
                AppendResponse::Reject {
                    rejected_index: prev_index,
                    last_index,
                    hint,
                },
            );
            return;
        }
        // Find the first entry that is new or conflicts (Figure 2, AppendEntries steps 3-4):
        // never truncate on a matching entry, because the message may be stale or reordered.
        let last = self.log.last_index();
        let first_new = entries
            .iter()
            .position(|e| e.index > last || self.log.term(e.index) != Some(e.term));
        if let Some(pos) = first_new {
            let new_entries = entries.split_off(pos);
            let first = new_entries[0].index;
            let truncate_from = if first <= last {
                if first <= self.log.commit() {
                    error!(
                        group = self.group,
                        from,
                        first,
                        commit = self.log.commit(),
                        "leader would overwrite a committed entry; dropped"
                    );
                    return;
                }
                info!(
                    group = self.group,
                    from, first, last, "truncating conflicting entries"
                );
                self.truncate_log(first);
                Some(first)
            } else {
                None
            };
            for e in &new_entries {
                self.log.push(e.term);
                if let EntryPayload::Membership(m) = &e.payload {
                    self.push_config(e.index, m.clone());
                }
            }
            self.persist_entries(truncate_from, new_entries);
        }
        self.reply_append(
            from,
            AppendResponse::Success {
                match_index: msg_last,
            },
        );
        // Commit only what this message proved we share with the leader (Figure 2, step 5).
        self.advance_commit_to(leader_commit.min(msg_last));
    }

    /// An acknowledgement promises durability: it waits for every write issued so far.
    fn reply_append(&mut self, to: NodeId, resp: AppendResponse) {
        let msg = self.message(to, MessageBody::AppendResponse(resp));
        self.send_when_durable(msg);
    }

    /// Heartbeat from the current leader: carries the commit index (capped by the leader at
    /// what we are known to hold) and a ReadIndex round to acknowledge.
    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: Index, read_seq: u64) {
        self.advance_commit_to(commit);
        let reply = self.message(from, MessageBody::HeartbeatResponse { read_seq });
        self.send(reply);
    }

    /// The current leader says a committed configuration (at `index`) removed this node. It
    /// sends this only once this node holds that entry; a node whose own log still has it as
    /// a member (it lacks the entry, or a later one adds it back) ignores it.
    pub(crate) fn handle_removed(&mut self, from: NodeId, index: Index) {
        if index > self.log.last_index() || self.members.effective().contains(self.id) {
            warn!(
                group = self.group,
                from, index, "removal notice while this node's log has it as a member; ignored"
            );
            return;
        }
        self.mark_removed(index);
    }

    /// One chunk of a snapshot from the current leader.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        let accepted = self
            .snapshots
            .accept_chunk(&meta, offset, data.len() as u64, done);
        let next_offset = match accepted {
            Ok(next_offset) => next_offset,
            Err(expected) => {
                debug!(
                    group = self.group,
                    from, offset, expected, "snapshot chunk out of order; rejected"
                );
                let reply = self.message(
                    from,
                    MessageBody::SnapshotResponse {
                        index: meta.index,
                        status: SnapshotStatus::Rejected,
                    },
                );
                self.send(reply);
                return;
            }
        };
        self.emit(Action::SnapshotChunk {
            from,
            meta: meta.clone(),
            offset,
            data,
            done,
        });
        if !done {
            let status = SnapshotStatus::ChunkReceived { next_offset };
            let reply = self.message(
                from,
                MessageBody::SnapshotResponse {
                    index: meta.index,
                    status,
                },
            );
            self.send(reply);
            return;
        }
        self.install_snapshot(from, meta);
    }

    /// Decides what to do with a complete snapshot (Figure 13, steps 5-8).
    fn install_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        let index = meta.index;
        if index <= self.log.commit() {
            // We already hold everything it covers; nothing to install.
            debug!(
                group = self.group,
                from,
                index,
                commit = self.log.commit(),
                "stale snapshot discarded"
            );
            self.emit(Action::DiscardSnapshot { index });
            let reply = self.message(
                from,
                MessageBody::SnapshotResponse {
                    index,
                    status: SnapshotStatus::Installed,
                },
            );
            self.send_when_durable(reply);
            return;
        }
        if meta.membership.validate().is_err() {
            warn!(
                group = self.group,
                from, index, "snapshot with an invalid membership; rejected"
            );
            self.emit(Action::DiscardSnapshot { index });
            let reply = self.message(
                from,
                MessageBody::SnapshotResponse {
                    index,
                    status: SnapshotStatus::Rejected,
                },
            );
            self.send(reply);
            return;
        }
        // Step 6: if an entry at the snapshot's index has its term, keep the entries after it.
        let retain = self.log.term(index) == Some(meta.term);
        info!(
            group = self.group,
            from,
            index,
            term = meta.term,
            retain,
            "installing snapshot"
        );
        if !retain {
            // Step 7: discard the entire log.
            let commit = self.log.commit();
            if self.log.last_index() > commit {
                self.truncate_log(commit + 1);
            }
        }
        self.log.install_snapshot(index, meta.term, retain);
        if let Some(effective) =
            self.members
                .install_snapshot(index, meta.membership.clone(), retain)
        {
            self.membership_changed(effective);
        }
        self.note_committed_membership();
        self.snapshots.meta = meta.clone();
        self.snapshots.requested = false;
        let seq = self.next_persist_seq();
        self.emit(Action::InstallSnapshot {
            seq,
            meta,
            discard_log: !retain,
        });
        // With `retain` the suffix kept its durability; either way the snapshot itself becomes
        // durable at `seq`.
        self.gate_entries(seq, index);
        let reply = self.message(
            from,
            MessageBody::SnapshotResponse {
                index,
                status: SnapshotStatus::Installed,
            },
        );
        self.send_when_durable(reply);
    }
}

/// Structural checks of an AppendEntries body from a leader of `leader_term`, before anything
/// is changed.
fn check_entries(
    leader_term: Term,
    prev_index: Index,
    prev_term: Term,
    entries: &[Entry],
) -> Result<(), &'static str> {
    let mut expect_index = prev_index.checked_add(1).ok_or("prev_index overflows")?;
    let mut min_term = prev_term;
    for e in entries {
        if e.index != expect_index {
            return Err("entries are not consecutive from prev_index + 1");
        }
        if e.term < min_term {
            return Err("entry terms decrease");
        }
        if e.term > leader_term {
            return Err("entry term is newer than the leader's term");
        }
        if let EntryPayload::Membership(m) = &e.payload {
            if m.validate().is_err() {
                return Err("invalid membership entry");
            }
        }
        min_term = e.term;
        expect_index = expect_index.checked_add(1).ok_or("index overflows")?;
    }
    Ok(())
}
