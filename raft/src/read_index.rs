//! Leader-confirmed read indexes, with the one correction openraft 0.9 needs when the
//! committed index is not durable.
//!
//! openraft 0.9 restores a node whose saved vote is a committed vote for itself as leader
//! in the same term, with no new blank entry. Its read index is then
//! `max(first entry of its term, committed)`, and the committed index read back from the
//! store may be older than the last write a client saw acknowledged (the store saves it
//! without an fsync of its own: see `log_store.rs`). Such a restored leader must not
//! serve reads below its whole log as it was at startup: every entry it had committed is
//! in that log, because a leader appends (and flushes) an entry before it replicates it.
//! Those entries are of its own term, so it commits them as soon as a quorum has them.
//! In any later term the node's read index is at or past its new blank entry, which is
//! after that log, so the floor applies to the restored term only.

use crate::{NodeId, Raft};
use openraft::error::{CheckIsLeaderError, Fatal, RaftError};
use openraft::Vote;

/// The startup log of a node restored as leader: reads served in `term` wait for `index`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadFloor {
    /// The term the node was leader in when it stopped (0: no floor).
    pub term: u64,
    /// Its last log index at startup.
    pub index: u64,
}

impl ReadFloor {
    /// The floor for node `id` starting with `vote` and `last_log_index` from its store.
    pub fn at_startup(id: NodeId, vote: Option<&Vote<NodeId>>, last_log_index: Option<u64>) -> Self {
        match vote {
            Some(v) if v.is_committed() && v.leader_id().node_id == id => ReadFloor {
                term: v.leader_id().term,
                index: last_log_index.unwrap_or(0),
            },
            _ => ReadFloor::default(),
        }
    }

    /// The index a read confirmed with `read_log_id` must wait for.
    pub fn apply(&self, read_log_id: Option<crate::LogId>) -> u64 {
        let index = read_log_id.map_or(0, |l| l.index);
        match read_log_id {
            // The read index of a leader in a later term is past the floor already.
            Some(l) if l.leader_id.term > self.term => index,
            _ => index.max(self.index),
        }
    }
}

/// Confirms leadership with a quorum and returns the index a linearizable read must
/// wait for (the leader's read index, raised to the floor).
pub async fn read_index(
    raft: &Raft,
    floor: ReadFloor,
) -> Result<u64, RaftError<NodeId, CheckIsLeaderError<NodeId, crate::Node>>> {
    let (read_log_id, _) = raft.get_read_log_id().await?;
    Ok(floor.apply(read_log_id))
}

/// Like openraft's `ensure_linearizable`, with the floor: confirms leadership, then waits
/// until this node has applied up to the read index. Callers bound it with a timeout.
pub async fn ensure_linearizable(
    raft: &Raft,
    floor: ReadFloor,
) -> Result<u64, RaftError<NodeId, CheckIsLeaderError<NodeId, crate::Node>>> {
    let index = read_index(raft, floor).await?;
    if index > 0 {
        raft.wait(None)
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|_| RaftError::Fatal(Fatal::Stopped))?;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};

    fn log_id(term: u64, index: u64) -> Option<crate::LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    #[test]
    fn only_a_restored_leader_gets_a_floor() {
        let mut v = Vote::new(3, 1);
        assert_eq!(ReadFloor::at_startup(1, Some(&v), Some(9)), ReadFloor::default());
        v.commit();
        assert_eq!(
            ReadFloor::at_startup(1, Some(&v), Some(9)),
            ReadFloor { term: 3, index: 9 }
        );
        assert_eq!(ReadFloor::at_startup(2, Some(&v), Some(9)), ReadFloor::default());
        assert_eq!(ReadFloor::at_startup(1, None, Some(9)), ReadFloor::default());
    }

    #[test]
    fn the_floor_applies_in_the_restored_term_only() {
        let f = ReadFloor { term: 3, index: 9 };
        assert_eq!(f.apply(log_id(3, 5)), 9);
        assert_eq!(f.apply(log_id(2, 4)), 9);
        assert_eq!(f.apply(log_id(3, 12)), 12);
        assert_eq!(f.apply(None), 9);
        // A later term: its blank entry is past the startup log, or the log was
        // truncated and the floor would never be reached.
        assert_eq!(f.apply(log_id(4, 7)), 7);
        assert_eq!(ReadFloor::default().apply(log_id(1, 7)), 7);
    }
}
