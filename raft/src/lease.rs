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
use std::sync::{Arc, Mutex, MutexGuard};
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

    /// Time left at `now` on `key`'s lease, when its deadline belongs to the write at
    /// `revision` (`None`: not armed, or armed for another write).
    pub fn left(&self, key: &str, revision: u64, now: Instant) -> Option<Duration> {
        match self.deadlines.get(key) {
            Some((rev, d)) if *rev == revision => Some(d.saturating_duration_since(now)),
            _ => None,
        }
    }
}

/// The table of one node, shared by its reaper task and its admin requests: `dcs get` shows
/// the time left as the Raft leader's reaper counts it, the clock that actually expires keys.
#[derive(Clone, Debug, Default)]
pub struct SharedLeaseTable(Arc<Mutex<LeaseTable>>);

impl SharedLeaseTable {
    /// The table (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, LeaseTable> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the reaper needs from Raft. A trait so that its retry rules can be tested with
/// a fake whose commits time out, without a cluster.
pub(crate) trait Expirer {
    /// Why a leadership check or an Expire failed (only logged).
    type Error: std::fmt::Display;
    /// Whether this node believes it is the Raft leader (its local, unconfirmed view).
    fn is_leader(&self) -> bool;
    /// Confirms leadership with a quorum and waits until everything committed before
    /// that confirmation is applied here.
    async fn confirm_leadership(&self) -> Result<(), Self::Error>;
    /// Proposes `Expire{key, mod_revision: revision}` and waits for its commit; `true`
    /// if it deleted the key.
    async fn expire(&self, key: &str, revision: u64) -> Result<bool, Self::Error>;
}

/// The real [`Expirer`]: this node's Raft handle.
struct RaftExpirer {
    raft: Raft,
    my_id: NodeId,
    read_floor: ReadFloor,
}

impl Expirer for RaftExpirer {
    type Error = String;

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.my_id)
    }

    async fn confirm_leadership(&self) -> Result<(), String> {
        read_index::ensure_linearizable(&self.raft, self.read_floor)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn expire(&self, key: &str, revision: u64) -> Result<bool, String> {
        let cmd = Command::Expire {
            key: key.to_string(),
            mod_revision: revision,
        };
        let resp = self
            .raft
            .client_write(Proposal::One(cmd))
            .await
            .map_err(|e| e.to_string())?;
        Ok(resp.data.first().is_some_and(|r| r.succeeded))
    }
}

/// The tracker's table and the reaper's memory of what it proposed.
#[derive(Default)]
struct Reaper {
    table: SharedLeaseTable,
    /// Expires whose commit succeeded and whose apply has not been seen yet, so a key is
    /// not proposed again while its Disarm is on the way. An Expire that failed or timed
    /// out is *not* kept here: it may have been lost in a term change, and if this node
    /// regains leadership before a tick sees it as a follower, keeping it would mean the
    /// key is never expired (review finding F11). Proposing it again is harmless, since
    /// an Expire deletes only the write at exactly `mod_revision`.
    proposed: HashSet<(String, u64)>,
}

impl Reaper {
    /// One reaper tick: if this node is the confirmed leader, proposes an Expire for
    /// every passed deadline not already committed.
    async fn tick<E: Expirer>(&mut self, expirer: &E, events: &mut mpsc::UnboundedReceiver<LeaseEvent>) {
        if self.table.lock().expired(Instant::now()).is_empty() || !expirer.is_leader() {
            self.proposed.clear();
            return;
        }
        // Confirm leadership with a quorum and wait until everything committed before
        // that confirmation is applied here; a refresh among those entries re-arms its
        // key, which the drain below picks up.
        match tokio::time::timeout(REAPER_RPC_TIMEOUT, expirer.confirm_leadership()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "lease reaper: not confirmed as leader");
                return;
            }
            Err(_) => {
                tracing::warn!("lease reaper: leadership check timed out");
                return;
            }
        }
        while let Ok(ev) = events.try_recv() {
            self.table.lock().handle(ev, Instant::now());
        }
        let expired = self.table.lock().expired(Instant::now());
        self.proposed.retain(|p| expired.contains(p));
        for (key, revision) in expired {
            if !self.proposed.insert((key.clone(), revision)) {
                continue;
            }
            match tokio::time::timeout(REAPER_RPC_TIMEOUT, expirer.expire(&key, revision)).await {
                Ok(Ok(deleted)) => {
                    if deleted {
                        tracing::info!(key = %key, revision, "lease expired; key deleted");
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(key = %key, error = %e, "lease reaper: expire not committed");
                    self.proposed.remove(&(key, revision));
                }
                Err(_) => {
                    tracing::warn!(key = %key, "lease reaper: expire commit timed out; will propose it again");
                    self.proposed.remove(&(key, revision));
                }
            }
        }
    }
}

/// Runs the tracker and reaper until `shutdown`.
pub(crate) async fn run(
    raft: Raft,
    my_id: NodeId,
    read_floor: ReadFloor,
    table: SharedLeaseTable,
    mut events: mpsc::UnboundedReceiver<LeaseEvent>,
    shutdown: CancellationToken,
) {
    let expirer = RaftExpirer {
        raft,
        my_id,
        read_floor,
    };
    let mut reaper = Reaper {
        table,
        ..Default::default()
    };
    let mut tick = tokio::time::interval(REAPER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = events.recv() => match ev {
                Some(ev) => reaper.table.lock().handle(ev, Instant::now()),
                None => return,
            },
            _ = tick.tick() => reaper.tick(&expirer, &mut events).await,
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
        // Time left, only for the write the deadline was armed by.
        let at = later + Duration::from_millis(500);
        assert_eq!(t.left("c", 9, at), Some(Duration::from_millis(1500)));
        assert_eq!(t.left("c", 8, at), None);
        assert_eq!(
            t.left("c", 9, later + Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
        assert_eq!(t.left("b", 3, at), None);
    }

    /// A fake leader whose first Expire never commits (lost in a term change); later
    /// ones commit and are applied, which disarms the key.
    struct LossyLeader {
        calls: std::sync::Mutex<Vec<(String, u64)>>,
        applied: mpsc::UnboundedSender<LeaseEvent>,
    }

    impl Expirer for LossyLeader {
        type Error = String;

        fn is_leader(&self) -> bool {
            true
        }

        async fn confirm_leadership(&self) -> Result<(), String> {
            Ok(())
        }

        async fn expire(&self, key: &str, revision: u64) -> Result<bool, String> {
            let first = {
                let mut calls = self.calls.lock().unwrap();
                calls.push((key.to_string(), revision));
                calls.len() == 1
            };
            if first {
                std::future::pending::<()>().await;
            }
            let _ = self.applied.send(LeaseEvent::Disarm { key: key.to_string() });
            Ok(true)
        }
    }

    /// F11: an Expire whose commit times out is proposed again on the next tick, and the
    /// key does expire; once applied it is not proposed a third time.
    #[tokio::test(start_paused = true)]
    async fn safety_f11_timed_out_expire_is_proposed_again() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let leader = LossyLeader {
            calls: std::sync::Mutex::new(Vec::new()),
            applied: tx,
        };
        let mut reaper = Reaper::default();
        reaper.table.lock().handle(
            LeaseEvent::Arm {
                key: "/leader".into(),
                revision: 5,
                ttl: Duration::from_secs(1),
            },
            Instant::now(),
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let start = Instant::now();
        reaper.tick(&leader, &mut rx).await;
        assert!(
            start.elapsed() >= REAPER_RPC_TIMEOUT,
            "the first Expire timed out"
        );
        assert!(reaper.proposed.is_empty(), "a timed-out Expire is forgotten");
        reaper.tick(&leader, &mut rx).await;
        reaper.tick(&leader, &mut rx).await;
        let calls = leader.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![("/leader".to_string(), 5), ("/leader".to_string(), 5)]
        );
        assert!(
            reaper.table.lock().deadline("/leader").is_none(),
            "the key expired"
        );
    }
}
