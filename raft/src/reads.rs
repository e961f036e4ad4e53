//! The read path of a member: linearizable reads (confirm the read index with a quorum,
//! locally or through the leader, then wait until it is applied here), and the peer
//! handlers for `ReadIndex` and `Read`.

use crate::command::KeyValue;
use crate::dcs::DcsError;
use crate::inner::{NodeInner, RETRY_MAX, RETRY_MIN};
use crate::network::{CallError, Rpc};
use crate::read_index;
use crate::wire::{self, ReadError, ReadIndexError};
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::time::Instant;

impl NodeInner {
    /// Waits until this node has applied everything the leader had committed when it
    /// confirmed its leadership with a quorum (read index). After that a local read is
    /// linearizable. Fails instead of answering from a partitioned minority.
    pub(crate) async fn linearize(&self, op: &'static str) -> Result<(), DcsError> {
        let limit = self.op_timeout();
        let deadline = Instant::now() + limit;
        tokio::time::timeout(limit, async {
            let mut pause = RETRY_MIN;
            loop {
                if self.shutdown.is_cancelled() {
                    return Err(DcsError::ShuttingDown { op });
                }
                let leader = self.leader();
                let known = leader.as_ref().map(|(lid, _)| *lid);
                match leader {
                    Some((lid, _)) if lid == self.id => {
                        match read_index::ensure_linearizable(&self.raft, self.read_floor).await {
                            Ok(_) => return Ok(()),
                            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                                return Err(DcsError::Unavailable {
                                    op,
                                    reason: e.to_string(),
                                })
                            }
                            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {}
                            Err(RaftError::Fatal(_)) => return Err(DcsError::ShuttingDown { op }),
                        }
                    }
                    Some((lid, node)) => {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        let call = self.peers.call(Rpc::ReadIndex, lid, &node.addr, &(), remaining);
                        // A read index is asked again of a new leader as soon as one is
                        // known: the old one may be dead or cut off, and asking twice is
                        // harmless (a read changes nothing).
                        let r: Option<Result<Result<u64, ReadIndexError>, CallError>> = tokio::select! {
                            r = call => Some(r),
                            () = self.leader_other_than(Some(lid)) => None,
                        };
                        // Any failure (the leader moved, lost its quorum or stopped, or the
                        // call failed) is retried until the deadline: a new leader may be
                        // elected meanwhile.
                        if let Some(Ok(Ok(index))) = r {
                            let remaining = deadline.saturating_duration_since(Instant::now());
                            return match self
                                .raft
                                .wait(Some(remaining))
                                .applied_index_at_least(Some(index), "linearizable read")
                                .await
                            {
                                Ok(_) => Ok(()),
                                Err(e) => Err(DcsError::Unavailable {
                                    op,
                                    reason: e.to_string(),
                                }),
                            };
                        }
                        if r.is_none() {
                            continue;
                        }
                    }
                    None => {
                        self.leader_other_than(None).await;
                        continue;
                    }
                }
                // Go on as soon as another leader is known, or after a short pause.
                let _ = tokio::time::timeout(pause, self.leader_other_than(known)).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        })
        .await
        .map_err(|_| DcsError::Timeout { op, after: limit })?
    }

    pub(crate) async fn serve_read_index(&self) -> Result<u64, ReadIndexError> {
        read_index::read_index(&self.raft, self.read_floor)
            .await
            .map_err(|e| match e {
                RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                    ReadIndexError::NotLeader { leader: f.leader_id }
                }
                RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => ReadIndexError::NoQuorum {
                    reason: q.to_string(),
                },
                RaftError::Fatal(f) => ReadIndexError::Stopped {
                    reason: f.to_string(),
                },
            })
    }

    pub(crate) async fn serve_read(&self, r: wire::Read) -> Result<Vec<KeyValue>, ReadError> {
        if !self.is_member().await {
            return Err(ReadError::NotAMember);
        }
        self.linearize("read").await?;
        Ok(if r.prefix {
            self.sm.list(&r.key)
        } else {
            self.sm.get(&r.key).into_iter().collect()
        })
    }
}
