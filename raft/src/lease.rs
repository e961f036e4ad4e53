//! TTL leases: per-node deadlines and the leader-only reaper.
//!
//! Every node arms a key's deadline on its own monotonic clock when it applies a TTL
//! write (`apply instant + ttl`). Because every refresh is a log entry applied on every
//! node, a node that becomes Raft leader already holds a deadline no earlier than the
//! true one, so no grace period is added on leader change. Only the Raft leader expires
//! keys: when a deadline passes it confirms leadership with a quorum (read index) and
//! proposes `Expire{key, mod_revision}`, which deletes the key only if nobody refreshed
//! it in between. An event that reaches this tracker late only makes a deadline later,
//! which is the safe side.

use crate::read_index::{self, ReadFloor};
use crate::{Command, NodeId, Proposal, Raft};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the reaper looks for passed deadlines. Bounds how late after its TTL a key
/// is deleted (plus one quorum round and one commit).
pub const REAPER_TICK: Duration = Duration::from_millis(100);
/// How long the reaper waits for a leadership check or an Expire commit before giving up
/// for this tick.
const REAPER_RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// What the state machine tells the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A TTL write to `key` at `revision` was applied now.
    Arm {
        /// The key.
        key: String,
        /// Its new mod revision.
        revision: u64,
        /// Its time to live.
        ttl: Duration,
    },
    /// `key` was deleted or rewritten without a TTL.
    Disarm {
        /// The key.
        key: String,
    },
    /// The keyspace was replaced (start, snapshot install): arm all of these at now + ttl.
    ResetAll(Vec<(String, u64, Duration)>),
}

/// Deadlines of the TTL keys as this node has applied them.
#[derive(Debug, Default)]
pub struct LeaseTable {
    deadlines: HashMap<String, (u64, Instant)>,
}

impl LeaseTable {
    /// Applies an event, reading the clock now.
    pub fn handle(&mut self, ev: LeaseEvent, now: Instant) {
        match ev {
            LeaseEvent::Arm { key, revision, ttl } => {
                self.deadlines.insert(key, (revision, now + ttl));
            }
            LeaseEvent::Disarm { key } => {
                self.deadlines.remove(&key);
            }
            LeaseEvent::ResetAll(keys) => {
                self.deadlines = keys
                    .into_iter()
                    .map(|(k, rev, ttl)| (k, (rev, now + ttl)))
                    .collect();
            }
        }
    }

    /// Keys whose deadline has passed, with the revision the deadline belongs to.
    pub fn expired(&self, now: Instant) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .deadlines
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(k, (rev, _))| (k.clone(), *rev))
            .collect();
        v.sort();
        v
    }

    /// The deadline of a key, if armed.
    pub fn deadline(&self, key: &str) -> Option<Instant> {
        self.deadlines.get(key).map(|(_, d)| *d)
    }
}

/// Runs the tracker and reaper until `shutdown`.
pub(crate) async fn run(
    raft: Raft,
    my_id: NodeId,
    read_floor: ReadFloor,
    mut events: mpsc::UnboundedReceiver<LeaseEvent>,
    shutdown: CancellationToken,
) {
    let mut table = LeaseTable::default();
    let mut tick = tokio::time::interval(REAPER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Expires proposed and not yet seen applied, so a slow commit is not proposed twice.
    let mut proposed: HashSet<(String, u64)> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = events.recv() => match ev {
                Some(ev) => table.handle(ev, Instant::now()),
                None => return,
            },
            _ = tick.tick() => {
                if table.expired(Instant::now()).is_empty() || raft.metrics().borrow().current_leader != Some(my_id) {
                    proposed.clear();
                    continue;
                }
                // Confirm leadership with a quorum and wait until everything committed
                // before that confirmation is applied here; a refresh among those entries
                // re-arms its key, which the drain below picks up.
                match tokio::time::timeout(REAPER_RPC_TIMEOUT, read_index::ensure_linearizable(&raft, read_floor)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "lease reaper: not confirmed as leader");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!("lease reaper: leadership check timed out");
                        continue;
                    }
                }
                while let Ok(ev) = events.try_recv() {
                    table.handle(ev, Instant::now());
                }
                let expired = table.expired(Instant::now());
                proposed.retain(|p| expired.contains(p));
                for (key, revision) in expired {
                    if !proposed.insert((key.clone(), revision)) {
                        continue;
                    }
                    let cmd = Command::Expire { key: key.clone(), mod_revision: revision };
                    match tokio::time::timeout(REAPER_RPC_TIMEOUT, raft.client_write(Proposal::One(cmd))).await {
                        Ok(Ok(resp)) => {
                            if resp.data.first().is_some_and(|r| r.succeeded) {
                                tracing::info!(key = %key, revision, "lease expired; key deleted");
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(key = %key, error = %e, "lease reaper: expire not committed");
                            proposed.remove(&(key, revision));
                        }
                        Err(_) => {
                            tracing::warn!(key = %key, "lease reaper: expire commit timed out");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refresh re-arms; a disarm forgets; ResetAll re-arms everything from now.
    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_applied_events() {
        let mut t = LeaseTable::default();
        let t0 = Instant::now();
        t.handle(
            LeaseEvent::Arm {
                key: "a".into(),
                revision: 1,
                ttl: Duration::from_secs(5),
            },
            t0,
        );
        t.handle(
            LeaseEvent::Arm {
                key: "b".into(),
                revision: 2,
                ttl: Duration::from_secs(1),
            },
            t0,
        );
        assert!(t.expired(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(t.expired(t0 + Duration::from_secs(1)), vec![("b".to_string(), 2)]);
        t.handle(
            LeaseEvent::Arm {
                key: "b".into(),
                revision: 3,
                ttl: Duration::from_secs(1),
            },
            t0 + Duration::from_secs(1),
        );
        assert!(t.expired(t0 + Duration::from_millis(1999)).is_empty());
        t.handle(LeaseEvent::Disarm { key: "a".into() }, t0);
        assert!(t.deadline("a").is_none());
        let later = t0 + Duration::from_secs(10);
        t.handle(
            LeaseEvent::ResetAll(vec![("c".into(), 9, Duration::from_secs(2))]),
            later,
        );
        assert_eq!(t.deadline("c"), Some(later + Duration::from_secs(2)));
        assert!(t.deadline("b").is_none());
    }
}
