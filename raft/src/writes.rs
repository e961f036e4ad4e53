//! The write path of a member: a write is proposed here when this node leads (through
//! the group-committing [`crate::proposer`]) and forwarded to the leader otherwise; and
//! the peer handler for forwarded writes.
//!
//! A forwarded write follows leadership: while it waits on one leader and this node
//! learns of another (openraft's metrics), it is sent again to the new one at once,
//! instead of waiting on a leader that may be dead or cut off until the time limit.
//! While no leader is known it waits for one, within the same limit.
//!
//! # Why sending a write again is safe
//! The first attempt may have committed before its leader went silent, so the write can
//! be applied twice. That is harmless for what the DCS is asked to do:
//! - a refresh conditioned on our own value (`ValueEquals(me)`): the second apply finds
//!   our value again and only moves the revision and the lease deadline forward, which
//!   the holder does not count on (it measures its lease from its own send time);
//! - a conditional delete (`ValueEquals`, `ModRevisionEquals`): the second apply finds
//!   the key gone or changed and does nothing;
//! - an acquire (`Absent`, `ModRevisionEquals(0)`) or any other CAS put: the second apply
//!   fails its condition because the first one changed the key. That would report a won
//!   race as lost, so such a failure is turned back into the success it hides (see
//!   [`hidden_success`]);
//! - `Expire` is proposed by the leader's reaper on the leader itself, never forwarded;
//!   applied twice, the second finds the revision gone and does nothing;
//! - an unconditional put writes the same value again. It could undo a write another
//!   client made to the same key between the two applies; every unconditional put of the
//!   HA loop is to a key only its own member writes (its member key, status, optime), and
//!   that member waits for this write's result before it writes the key again.
//!
//! A write is only sent again while its caller is still waiting for it, and never after
//! its deadline: a caller that gets an error (the outcome unknown) knows, as before, that
//! the write may still take effect.

use crate::command::{Command, CommandResult, Condition};
use crate::dcs::DcsError;
use crate::inner::{NodeInner, RETRY_MAX, RETRY_MIN};
use crate::network::{CallError, Rpc};
use crate::wire::{RemoteWriteError, WriteUnknown};
use tokio::time::Instant;

/// How one try of a write ended.
enum Try {
    /// It has a result.
    Done(Result<CommandResult, DcsError>),
    /// It was certainly not proposed (no leader, or the leader was not reached).
    NotProposed,
    /// It may have been proposed and may commit: another try may apply it a second time.
    MaybeProposed(String),
}

impl NodeInner {
    /// Proposes on this node if it is the leader. A write that was proposed and then lost
    /// its leader may still commit, so it is reported as unknown.
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
        match self
            .write_until(cmd, Instant::now() + self.config.op_timeout)
            .await
        {
            Ok(r) => Ok(r),
            Err(DcsError::Invalid(e)) => Err(RemoteWriteError::Invalid(e)),
            Err(DcsError::ShuttingDown { .. }) => Err(RemoteWriteError::Unknown(WriteUnknown::ShuttingDown)),
            Err(DcsError::Timeout { after, .. }) => {
                Err(RemoteWriteError::Unknown(WriteUnknown::Timeout { after }))
            }
            Err(e @ DcsError::Unavailable { .. }) => Err(RemoteWriteError::Unknown(
                WriteUnknown::Unavailable(e.to_string()),
            )),
        }
    }

    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResult, DcsError> {
        cmd.validate().map_err(DcsError::Invalid)?;
        self.write_until(cmd, Instant::now() + self.config.op_timeout)
            .await
    }

    /// Writes `cmd` through whoever leads, following leadership until `deadline`.
    async fn write_until(&self, cmd: Command, deadline: Instant) -> Result<CommandResult, DcsError> {
        let limit = self.config.op_timeout;
        // Everything applied here now is below the index the write will get.
        let floor = self.applied_index();
        let mut maybe_proposed: Option<String> = None;
        let mut pause = RETRY_MIN;
        let attempt = async {
            loop {
                if self.shutdown.is_cancelled() {
                    return Err(DcsError::ShuttingDown { op: "write" });
                }
                let leader = self.leader();
                let known = leader.as_ref().map(|(lid, _)| *lid);
                match self.try_write(&cmd, leader, deadline).await {
                    Try::Done(Ok(r)) if maybe_proposed.is_some() => {
                        return Ok(hidden_success(&cmd, r, floor));
                    }
                    Try::Done(r) => return r,
                    Try::NotProposed => {}
                    Try::MaybeProposed(why) => {
                        tracing::debug!(reason = %why, "sending a write again: its outcome at the old leader is unknown");
                        maybe_proposed = Some(why);
                    }
                }
                // Go on as soon as another leader is known, or after a short pause (the
                // same leader may have been briefly unable to take it).
                let _ = tokio::time::timeout(pause, self.leader_other_than(known)).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(match maybe_proposed {
                Some(why) => DcsError::Unavailable {
                    op: "write",
                    reason: format!("outcome unknown after {limit:?}: {why}"),
                },
                None => DcsError::Timeout {
                    op: "write",
                    after: limit,
                },
            }),
        }
    }

    /// One try: propose here, or forward to `leader` and give up on that call as soon as
    /// another leader is known.
    async fn try_write(
        &self,
        cmd: &Command,
        leader: Option<(crate::NodeId, crate::Node)>,
        deadline: Instant,
    ) -> Try {
        let res = match leader {
            None => return Try::NotProposed,
            Some((lid, _)) if lid == self.id => self.write_local(cmd.clone()).await,
            Some((lid, node)) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let call = self.peers.call(Rpc::Write, lid, &node.addr, cmd, remaining);
                tokio::select! {
                    r = call => match r {
                        Ok(r) => r,
                        Err(CallError::NotSent { .. }) => return Try::NotProposed,
                        Err(e) => return Try::MaybeProposed(e.to_string()),
                    },
                    () = self.leader_other_than(Some(lid)) => {
                        return Try::MaybeProposed(format!("leader {lid} was replaced while it held the write"));
                    }
                }
            }
        };
        match res {
            Ok(r) => Try::Done(Ok(r)),
            Err(RemoteWriteError::NotLeader) => Try::NotProposed,
            Err(RemoteWriteError::Invalid(e)) => Try::Done(Err(DcsError::Invalid(e))),
            Err(RemoteWriteError::Unknown(why)) => Try::MaybeProposed(why.to_string()),
        }
    }
}

/// The result of a write that was sent again after an attempt whose outcome is unknown.
/// An acquire (the key must be absent) fails on its second apply if its first one
/// committed; when the key now holds exactly our value and was created after the write
/// was first sent (above `floor`, the index applied here before it), that failure hides
/// our own success, and the success is reported (with the first apply's revision).
/// Another writer could only produce the same state by writing the same value, and a
/// member writes only its own name into the leader key.
fn hidden_success(cmd: &Command, r: CommandResult, floor: u64) -> CommandResult {
    let Command::Put {
        key,
        value,
        condition: Condition::Absent | Condition::ModRevisionEquals(0),
        ..
    } = cmd
    else {
        return r;
    };
    match &r.prev {
        Some(cur) if !r.succeeded && &cur.value == value && cur.create_revision > floor => {
            tracing::info!(
                key = %key,
                revision = cur.create_revision,
                "an acquire sent again found the key created with our value: the first attempt had committed"
            );
            CommandResult {
                succeeded: true,
                revision: cur.mod_revision,
                prev: None,
                deleted: 0,
            }
        }
        _ => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::KeyValue;

    fn acquire(value: &str) -> Command {
        Command::Put {
            key: "/s/c/leader".into(),
            value: value.into(),
            ttl_ms: Some(4000),
            condition: Condition::Absent,
        }
    }

    fn lost_to(value: &str, create_revision: u64) -> CommandResult {
        CommandResult {
            succeeded: false,
            revision: create_revision + 1,
            prev: Some(KeyValue {
                key: "/s/c/leader".into(),
                value: value.into(),
                create_revision,
                mod_revision: create_revision,
                ttl_ms: Some(4000),
            }),
            deleted: 0,
        }
    }

    /// An acquire whose first apply committed unseen is reported won; one that really
    /// lost (another value, or our value from before the write was sent) stays lost.
    #[test]
    fn a_resent_acquire_reports_its_hidden_success_only() {
        let won = hidden_success(&acquire("n1"), lost_to("n1", 12), 10);
        assert!(won.succeeded);
        assert_eq!(won.revision, 12);
        assert!(!hidden_success(&acquire("n1"), lost_to("n2", 12), 10).succeeded);
        assert!(!hidden_success(&acquire("n1"), lost_to("n1", 9), 10).succeeded);
        let refresh = Command::Put {
            key: "/s/c/leader".into(),
            value: "n1".into(),
            ttl_ms: Some(4000),
            condition: Condition::ValueEquals("n2".into()),
        };
        assert!(!hidden_success(&refresh, lost_to("n1", 12), 10).succeeded);
    }
}
