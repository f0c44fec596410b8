//! Local snapshot and compaction decisions: when to ask the state machine for a snapshot, and
//! how much log a new snapshot lets storage drop.

use tracing::{debug, warn};

use super::PartitionCore;
use crate::action::Action;
use crate::error::Error;
use crate::types::SnapshotMeta;

impl PartitionCore {
    /// Asks for a snapshot once enough entries were applied since the last one.
    pub(crate) fn maybe_request_snapshot(&mut self) {
        let due = self
            .snapshots
            .request_due(self.log.applied(), self.cfg.snapshot_threshold);
        if let Some(index) = due {
            debug!(group = self.group, index, "requesting a snapshot");
            self.emit(Action::TakeSnapshot { index });
        }
    }

    /// The snapshot asked for with `TakeSnapshot` was not taken (the runtime could not queue
    /// the request, or the state machine or storage failed to write it). Another is asked for
    /// once `snapshot_threshold` more entries are applied.
    pub fn snapshot_not_taken(&mut self) {
        let applied = self.log.applied();
        self.snapshots
            .not_taken(applied, self.cfg.snapshot_threshold);
    }

    /// The state machine took a snapshot covering `meta.index` (durably). The log up to
    /// `meta.index - compact_trailing` may go.
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta) -> Result<(), Error> {
        self.snapshots.requested = false;
        let index = meta.index;
        if index <= self.snapshots.meta.index {
            return Err(Error::Snapshot {
                index,
                reason: "not newer than the current snapshot",
            });
        }
        if index > self.log.applied() {
            return Err(Error::Snapshot {
                index,
                reason: "covers entries not yet applied",
            });
        }
        if self.log.term(index) != Some(meta.term) {
            warn!(
                group = self.group,
                index,
                term = meta.term,
                "snapshot term disagrees with the log"
            );
            return Err(Error::Snapshot {
                index,
                reason: "its term disagrees with the log",
            });
        }
        self.snapshots.meta = meta;
        let compact_to = index.saturating_sub(self.cfg.compact_trailing);
        if compact_to > self.log.snapshot_index() {
            self.log.compact_to(compact_to);
            self.mark_replicate();
            self.emit(Action::CompactLog { index: compact_to });
        }
        Ok(())
    }
}
