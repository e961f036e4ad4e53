//! openraft's state machine over the [`Keyspace`]: apply, snapshots, and publication of
//! changes to watchers and to the lease tracker.
//!
//! The keyspace lives in memory and is persisted only as snapshots; on restart it is
//! rebuilt from the last snapshot plus the log, which openraft replays up to the saved
//! committed index. So no cross-tree transaction is ever needed in sled.

use crate::dcs::WatchEvent;
use crate::keyspace::{Change, Keyspace};
use crate::lease::LeaseEvent;
use crate::log_store::{SnapshotStore, StoredSnapshot};
use crate::{CommandResult, KeyValue, LogId, Node, NodeId, StorageError, StoredMembership, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Capacity of the watch broadcast; a subscriber that falls further behind gets a
/// `Reset` and re-reads.
const WATCH_CAPACITY: usize = 4096;

/// What a snapshot holds.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    keyspace: Keyspace,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

#[derive(Default)]
struct SmState {
    keyspace: Keyspace,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// State shared between openraft's state machine and the node's readers.
pub struct SmShared {
    state: RwLock<SmState>,
    events: broadcast::Sender<WatchEvent>,
    revision: watch::Sender<u64>,
    lease_tx: mpsc::UnboundedSender<LeaseEvent>,
}

impl SmShared {
    /// A local (possibly stale) read of one key.
    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.read().keyspace.get(key).cloned()
    }

    /// A local (possibly stale) read of a prefix, in key order.
    pub fn list(&self, prefix: &str) -> Vec<KeyValue> {
        self.read().keyspace.list(prefix)
    }

    /// The index of the last applied entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.read().last_applied.map_or(0, |l| l.index)
    }

    /// The membership last applied locally.
    pub fn membership(&self) -> StoredMembership {
        self.read().membership.clone()
    }

    /// Subscribes to every change applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }

    /// A channel that always holds the last applied index; it cannot lag.
    pub fn revision(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SmState> {
        // A poisoned lock means a panic while applying; the data is still the last
        // consistent state because apply mutates only after all checks.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SmState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, changes: Vec<Change>, applied: u64) {
        for change in changes {
            match change {
                Change::Put(kv) => {
                    let ev = match kv.ttl_ms {
                        Some(ttl) => LeaseEvent::Arm {
                            key: kv.key.clone(),
                            revision: kv.mod_revision,
                            ttl: Duration::from_millis(ttl),
                        },
                        None => LeaseEvent::Disarm { key: kv.key.clone() },
                    };
                    let _ = self.lease_tx.send(ev);
                    let _ = self.events.send(WatchEvent::Put(kv));
                }
                Change::Delete {
                    key,
                    revision,
                    expired,
                } => {
                    let _ = self.lease_tx.send(LeaseEvent::Disarm { key: key.clone() });
                    let _ = self.events.send(WatchEvent::Delete {
                        key,
                        revision,
                        expired,
                    });
                }
            }
        }
        self.revision.send_replace(applied);
    }

    /// Re-arms every TTL key at now + ttl: after a restart or a snapshot install this
    /// node does not know when the keys were last refreshed, and a later deadline is the
    /// safe side.
    fn rearm_all(&self) {
        let keys = self
            .read()
            .keyspace
            .iter()
            .filter_map(|kv| {
                kv.ttl_ms
                    .map(|t| (kv.key.clone(), kv.mod_revision, Duration::from_millis(t)))
            })
            .collect();
        let _ = self.lease_tx.send(LeaseEvent::ResetAll(keys));
    }
}

/// openraft's state machine.
pub struct StateMachineStore {
    shared: Arc<SmShared>,
    snapshots: SnapshotStore,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Restores the keyspace from the last persisted snapshot (openraft replays the log
    /// after it) and arms the leases it holds.
    pub fn open(
        snapshots: SnapshotStore,
        lease_tx: mpsc::UnboundedSender<LeaseEvent>,
    ) -> Result<Self, StorageError> {
        let mut state = SmState::default();
        if let Some(snap) = snapshots.load()? {
            let data: SnapshotData = serde_json::from_slice(&snap.data)
                .map_err(|e| StorageIOError::read_snapshot(Some(snap.meta.signature()), &e))?;
            state = SmState {
                keyspace: data.keyspace,
                last_applied: data.last_applied,
                membership: data.membership,
            };
        }
        let applied = state.last_applied.map_or(0, |l| l.index);
        let (events, _) = broadcast::channel(WATCH_CAPACITY);
        let (revision, _) = watch::channel(applied);
        let shared = Arc::new(SmShared {
            state: RwLock::new(state),
            events,
            revision,
            lease_tx,
        });
        shared.rearm_all();
        Ok(StateMachineStore {
            shared,
            snapshots,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The shared state, for readers.
    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }
}

/// Builds snapshots on openraft's request.
pub struct SnapshotBuilder {
    shared: Arc<SmShared>,
    snapshots: SnapshotStore,
    snapshot_seq: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_applied, membership) = {
            let st = self.shared.read();
            let data = SnapshotData {
                keyspace: st.keyspace.clone(),
                last_applied: st.last_applied,
                membership: st.membership.clone(),
            };
            (serde_json::to_vec(&data), st.last_applied, st.membership.clone())
        };
        let data = data.map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, seq),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.snapshots
            .save(&StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            })
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.shared.read();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResult>>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut changes = Vec::new();
        let applied = {
            let mut st = self.shared.write();
            for entry in entries {
                st.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => results.push(Vec::new()),
                    EntryPayload::Normal(p) => {
                        let index = entry.log_id.index;
                        let r = p
                            .commands()
                            .iter()
                            .map(|cmd| st.keyspace.apply(index, cmd, &mut changes))
                            .collect();
                        results.push(r);
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                        results.push(Vec::new());
                    }
                }
            }
            st.last_applied.map_or(0, |l| l.index)
        };
        // Published after the lock is released, so a woken reader sees the new state.
        self.shared.publish(changes, applied);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            snapshots: self.snapshots.clone(),
            snapshot_seq: self.snapshot_seq.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.snapshots
            .save(&StoredSnapshot {
                meta: meta.clone(),
                data: bytes,
            })
            .await?;
        let applied = {
            let mut st = self.shared.write();
            st.keyspace = data.keyspace;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.last_applied.map_or(0, |l| l.index)
        };
        tracing::info!(snapshot = %meta.snapshot_id, applied, "installed snapshot from the leader");
        let _ = self.shared.events.send(WatchEvent::Reset);
        self.shared.revision.send_replace(applied);
        self.shared.rearm_all();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshots.load()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
