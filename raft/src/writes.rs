//! The write path of a member: a write is proposed here when this node leads (through
//! the group-committing [`crate::proposer`]) and forwarded to the leader otherwise, with
//! retries while no leader is known; and the peer handler for forwarded writes.

use crate::command::{Command, CommandResult};
use crate::dcs::DcsError;
use crate::inner::{NodeInner, RETRY_MAX, RETRY_MIN};
use crate::network::{CallError, Rpc};
use crate::wire::{RemoteWriteError, WriteUnknown};

impl NodeInner {
    /// Proposes on this node if it is the leader. A write that was proposed and then lost
    /// its leader may still commit, so it is reported as unknown, never retried blindly.
    async fn write_local(&self, cmd: Command) -> Result<CommandResult, RemoteWriteError> {
        if self.raft.metrics().borrow().current_leader != Some(self.id) {
            return Err(RemoteWriteError::NotLeader);
        }
        self.proposer.propose(cmd).await
    }

    pub(crate) async fn serve_write(&self, cmd: Command) -> Result<CommandResult, RemoteWriteError> {
        cmd.validate().map_err(RemoteWriteError::Invalid)?;
        if !self.is_member().await {
            return Err(RemoteWriteError::NotLeader);
        }
        let limit = self.config.op_timeout;
        match tokio::time::timeout(limit, self.write_inner(cmd)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(DcsError::Invalid(e))) => Err(RemoteWriteError::Invalid(e)),
            Ok(Err(DcsError::ShuttingDown { .. })) => {
                Err(RemoteWriteError::Unknown(WriteUnknown::ShuttingDown))
            }
            Ok(Err(DcsError::Timeout { after, .. })) => {
                Err(RemoteWriteError::Unknown(WriteUnknown::Timeout { after }))
            }
            Ok(Err(e @ DcsError::Unavailable { .. })) => Err(RemoteWriteError::Unknown(
                WriteUnknown::Unavailable(e.to_string()),
            )),
            Err(_) => Err(RemoteWriteError::Unknown(WriteUnknown::Timeout { after: limit })),
        }
    }

    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResult, DcsError> {
        cmd.validate().map_err(DcsError::Invalid)?;
        let limit = self.config.op_timeout;
        tokio::time::timeout(limit, self.write_inner(cmd))
            .await
            .map_err(|_| DcsError::Timeout {
                op: "write",
                after: limit,
            })?
    }

    async fn write_inner(&self, cmd: Command) -> Result<CommandResult, DcsError> {
        let mut pause = RETRY_MIN;
        loop {
            if self.shutdown.is_cancelled() {
                return Err(DcsError::ShuttingDown { op: "write" });
            }
            let res = match self.leader() {
                Some((lid, _)) if lid == self.id => self.write_local(cmd.clone()).await,
                Some((lid, node)) => {
                    let r: Result<Result<CommandResult, RemoteWriteError>, CallError> = self
                        .peers
                        .call(Rpc::Write, lid, &node.addr, &cmd, self.config.op_timeout)
                        .await;
                    match r {
                        Ok(r) => r,
                        Err(CallError::NotSent { .. }) => Err(RemoteWriteError::NotLeader),
                        Err(e) => Err(RemoteWriteError::Unknown(WriteUnknown::Forward(e.to_string()))),
                    }
                }
                None => Err(RemoteWriteError::NotLeader),
            };
            match res {
                Ok(r) => return Ok(r),
                Err(RemoteWriteError::NotLeader) => {}
                Err(RemoteWriteError::Unknown(why)) => {
                    return Err(DcsError::Unavailable {
                        op: "write",
                        reason: format!("outcome unknown: {why}"),
                    })
                }
                Err(RemoteWriteError::Invalid(e)) => return Err(DcsError::Invalid(e)),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }
}
