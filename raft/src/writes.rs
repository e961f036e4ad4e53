//! The write path of a member: a write is proposed here when this node leads (through
//! the group-committing [`crate::proposer`]) and forwarded to the leader otherwise; and
//! the peer handler for forwarded writes.
//!
//! A forwarded write follows leadership: while it waits on one leader and this node
//! learns of another (openraft's metrics), the call is given up at once instead of
//! waiting on a leader that may be dead or cut off until the time limit. A write that
//! certainly did not reach a leader is sent to the next one; while no leader is known it
//! waits for one, within the same limit.
//!
//! # Sending a write again
//! A write given up that way may still have been proposed, and may have committed just
//! before its leader went silent: sent again, it would be applied twice. What that does
//! depends on the command, so a write whose first try may have been proposed is:
//! - **sent again if it is conditional** (every write of the leader key, the HA loop's
//!   CAS on config, sync and failover keys): its second apply is either harmless or
//!   detected, and its result is read with that in mind ([`settle`]):
//!   - a refresh (`ValueEquals(me)`, writing `me`) finds our value again: it succeeds,
//!     and only moves the revision and the lease deadline forward, which the holder does
//!     not count on (it measures its lease from its own send time);
//!   - an acquire (`Absent`, `ModRevisionEquals(0)`) finds the key it created: it fails,
//!     and when the key holds our value and was created after the write was first sent,
//!     that failure hides our own success, which is reported instead;
//!   - any other CAS (`ModRevisionEquals(n)`, `ValueEquals(v)` writing another value, a
//!     conditional delete) finds the key changed by its first apply and fails. A failure
//!     is trusted only when the key has not changed since the write was first sent (then
//!     the first try changed nothing either); otherwise the outcome is reported unknown,
//!     exactly as before this forwarding existed;
//!   - `Expire` is proposed by the leader's reaper on the leader itself, never forwarded;
//! - **not sent again if it is unconditional** (a put or delete with `Always`, a prefix
//!   delete): its outcome is reported unknown at once. Applied twice, it could undo a
//!   write another client made to the same key in between and report that write's value
//!   as its own previous value; the linearizability test (concurrent puts and swaps on
//!   shared keys while the leader is killed) catches exactly that. The HA loop's
//!   unconditional puts (member key, status, failsafe) are rewritten at its next cycle.
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
        match self.write_until(cmd, Instant::now() + self.op_timeout()).await {
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
        self.write_until(cmd, Instant::now() + self.op_timeout()).await
    }

    /// Writes `cmd` through whoever leads, following leadership until `deadline`.
    async fn write_until(&self, cmd: Command, deadline: Instant) -> Result<CommandResult, DcsError> {
        let limit = self.op_timeout();
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
                    Try::Done(Ok(r)) => {
                        return match &maybe_proposed {
                            None => Ok(r),
                            Some(why) => settle(&cmd, r, floor).ok_or_else(|| DcsError::Unavailable {
                                op: "write",
                                reason: format!(
                                    "outcome unknown: {why}; sent again, it found the key changed since"
                                ),
                            }),
                        };
                    }
                    Try::Done(r) => return r,
                    Try::NotProposed => {}
                    Try::MaybeProposed(why) if !may_send_again(&cmd) => {
                        return Err(DcsError::Unavailable {
                            op: "write",
                            reason: format!("outcome unknown: {why}"),
                        });
                    }
                    Try::MaybeProposed(why) => {
                        tracing::debug!(reason = %why, "sending a conditional write again: its first try may have been proposed");
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

/// Whether a write whose first try may have been proposed may be sent again: only a
/// conditional one, whose second apply is harmless or detected (see the module doc).
fn may_send_again(cmd: &Command) -> bool {
    match cmd {
        Command::Put { condition, .. } | Command::Delete { condition, .. } => *condition != Condition::Always,
        Command::Expire { .. } => true,
    }
}

/// The result to report for a conditional write sent again after a try that may have
/// been proposed (`floor`: the index applied here before the first try; the first try,
/// if it committed, did so above it). `None`: the outcome is unknown.
/// - Success is what it says: the condition held at the second apply. For a refresh
///   that is also true after a first apply; for any other CAS the first one would have
///   changed what the condition tests.
/// - An acquire that finds the key holding our value, created above `floor`, lost only
///   to its own first try: reported won, at that revision. Another writer could produce
///   the same state only by writing the same value, and a member writes only its own
///   name into the leader key.
/// - Another failure is true if the key is unchanged since `floor` (the first try did
///   not change it either); otherwise the first try may be what changed it.
fn settle(cmd: &Command, r: CommandResult, floor: u64) -> Option<CommandResult> {
    if r.succeeded {
        return Some(r);
    }
    if let (
        Command::Put {
            key,
            value,
            condition: Condition::Absent | Condition::ModRevisionEquals(0),
            ..
        },
        Some(cur),
    ) = (cmd, &r.prev)
    {
        if &cur.value == value && cur.create_revision > floor {
            tracing::info!(
                key = %key,
                revision = cur.create_revision,
                "an acquire sent again found the key created with our value: its first try had committed"
            );
            return Some(CommandResult {
                succeeded: true,
                revision: cur.mod_revision,
                prev: None,
                deleted: 0,
            });
        }
    }
    match &r.prev {
        Some(cur) if cur.mod_revision <= floor => Some(r),
        _ => None,
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

    /// An acquire whose first try committed unseen is reported won; one that really
    /// lost (to another value, or to our value from before the write was sent) stays lost.
    #[test]
    fn a_resent_acquire_reports_its_hidden_success_only() {
        let won = settle(&acquire("n1"), lost_to("n1", 12), 10).expect("known");
        assert!(won.succeeded);
        assert_eq!(won.revision, 12);
        assert!(won.prev.is_none());
        // Another member created the key after we first sent: we may have lost to it, or
        // our first try may have won and been overwritten since; unknown.
        assert!(settle(&acquire("n1"), lost_to("n2", 12), 10).is_none());
        // The key predates the write: lost, whatever the first try did.
        let lost = settle(&acquire("n1"), lost_to("n1", 9), 10).expect("known");
        assert!(!lost.succeeded);
        assert!(
            !settle(&acquire("n1"), lost_to("n2", 9), 10)
                .expect("known")
                .succeeded
        );
    }

    /// A swap that fails against a key changed since it was first sent may have been
    /// applied by its first try: unknown. Successes and unconditional writes are plain.
    #[test]
    fn a_resent_swap_is_trusted_only_against_an_unchanged_key() {
        let swap = Command::Put {
            key: "/s/c/leader".into(),
            value: "n1".into(),
            ttl_ms: Some(4000),
            condition: Condition::ValueEquals("n0".into()),
        };
        assert!(settle(&swap, lost_to("n1", 12), 10).is_none());
        assert!(settle(&swap, lost_to("n2", 12), 10).is_none());
        assert!(!settle(&swap, lost_to("n2", 8), 10).expect("known").succeeded);
        let mut ok = lost_to("n0", 8);
        ok.succeeded = true;
        assert!(settle(&swap, ok, 10).expect("known").succeeded);
        assert!(may_send_again(&swap));
        let put = Command::Put {
            key: "/s/c/status".into(),
            value: "{}".into(),
            ttl_ms: None,
            condition: Condition::Always,
        };
        assert!(!may_send_again(&put));
    }
}
