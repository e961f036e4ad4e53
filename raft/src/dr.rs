//! Disaster recovery on the store of a stopped node: [`force_new_cluster`] rewrites the
//! Raft membership to this node alone, keeping the keyspace, for when the majority of the
//! voters is lost for good (etcd's `--force-new-cluster`); [`restore`] creates a store
//! holding a backup's keys ([`crate::backup`]) as a one-voter cluster (etcd's
//! `snapshot restore`). Either way the node then starts alone and new members join it
//! with `members add`.
//!
//! It works offline, through the same storage traits openraft uses, so the store is
//! left in a state openraft itself could have written: the keyspace (snapshot plus every
//! log entry, replayed) becomes a new snapshot one index past the log, in a term above
//! any the node has seen, whose membership holds this node only; the log is purged up to
//! it and the vote moves to that term (not committed, so the node starts as a follower
//! and elects itself as the only voter). Each step is durable before the next, and a
//! crash between them leaves a store openraft repairs at start (a snapshot ahead of the
//! log is the state after a snapshot install).
//!
//! Entries past the saved committed index are kept and will commit: that index is only
//! a hint here (see `log_store::save_committed`), so discarding them, as etcd does, could
//! drop a write a client saw acknowledged. An uncommitted write may commit; that is
//! allowed for a write whose outcome the client could not know.
//!
//! The one thing that must never happen is a second cluster next to a majority that is
//! still alive: every other member (and every configured partner) is asked who it is
//! first, and any answer, or any failure that is not a plain "could not connect", refuses
//! the operation with nothing changed.

use crate::log_store::{SledStore, StoreError};
use crate::network::{CallError, PeerClients, Rpc};
use crate::state_machine::StateMachineStore;
use crate::wire::{self, HelloReply};
use crate::{LogId, Node, NodeId, StorageError, TypeConfig};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftSnapshotBuilder, Vote};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a member has to answer the probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why `force_new_cluster` did not (or did not fully) run.
#[derive(Debug, thiserror::Error)]
pub enum DrError {
    /// The store could not be opened: most often the daemon still runs and holds its lock.
    #[error("cannot use the Raft store (is the pgwarden daemon of this node still running? stop it first)")]
    Store(#[source] StoreError),
    /// openraft's storage calls failed.
    #[error("the Raft store in {dir} could not be read or written")]
    Storage {
        /// The data directory.
        dir: PathBuf,
        /// openraft's storage error.
        #[source]
        source: StorageError,
    },
    /// The store has never held Raft state: there is no keyspace to keep.
    #[error("the Raft store in {dir} is empty: this node never belonged to a cluster, so there is nothing to recover")]
    NeverJoined {
        /// The data directory.
        dir: PathBuf,
    },
    /// The log has a gap between the snapshot and its first entry.
    #[error("the Raft store in {dir} is inconsistent: the snapshot ends at index {applied} but the log resumes at {next}")]
    LogGap {
        /// The data directory.
        dir: PathBuf,
        /// The snapshot's last index.
        applied: u64,
        /// The first log index found after it.
        next: u64,
    },
    /// This node is not a voter of the membership its store holds.
    #[error("node {id} is not a voter of the membership in {dir} (voters: {voters:?}); only a voter's keyspace is complete")]
    NotAVoter {
        /// The data directory.
        dir: PathBuf,
        /// This node's Raft id.
        id: NodeId,
        /// The voters it holds.
        voters: Vec<NodeId>,
    },
    /// The backup is of another cluster.
    #[error(
        "{}: this is a snapshot of cluster {found:?} (keys under {found_prefix}), but this node belongs to \
         {expected:?} (keys under {expected_prefix}); refusing to restore it here",
        .file.display()
    )]
    OtherScope {
        /// The backup file.
        file: PathBuf,
        /// The backup's scope and prefix.
        found: String,
        /// The backup's prefix.
        found_prefix: String,
        /// This node's scope.
        expected: String,
        /// This node's prefix.
        expected_prefix: String,
    },
    /// A key of the backup could not be restored (outside the prefix, or refused by the
    /// keyspace's limits): the file was edited or is not what it claims.
    #[error("{}: key {key:?} cannot be restored: {why}", .file.display())]
    BadKey {
        /// The backup file.
        file: PathBuf,
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
    /// The data directory holds a Raft store already.
    #[error(
        "{} already holds a Raft store; restoring replaces it: pass --force to move it aside \
         (it is renamed, never deleted)",
        .dir.display()
    )]
    NotEmpty {
        /// The data directory.
        dir: PathBuf,
    },
    /// Moving the old store aside failed.
    #[error("cannot move {} aside to {}", .dir.display(), .to.display())]
    MoveAside {
        /// The data directory.
        dir: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Other members answered (or may be alive): making a cluster here would make two.
    #[error(
        "refused: other members may still be running, and a second cluster beside them would split the DCS: {}. \
         Stop them (or make sure their hosts are gone for good) and try again; nothing was changed",
        .alive.join("; ")
    )]
    PeersAlive {
        /// Each member that answered, or whose state is unknown, with what it said.
        alive: Vec<String>,
    },
}

/// What `force_new_cluster` did, for the operator's log and the tests.
#[derive(Clone, Debug)]
pub struct ForceReport {
    /// This node's Raft id (unchanged).
    pub node_id: NodeId,
    /// This node as the new membership records it.
    pub me: Node,
    /// The members dropped from the membership.
    pub removed: Vec<Node>,
    /// The members probed, with why each counts as down.
    pub probed: Vec<String>,
    /// The index of the new snapshot (one past the last entry kept).
    pub index: u64,
    /// The term the new membership was written in.
    pub term: u64,
    /// Keys in the keyspace kept.
    pub keys: usize,
    /// Of those, keys with a TTL lease: they expire by their TTL once the node leads.
    pub ttl_keys: usize,
    /// Whether the HA configuration was set to pause (see [`force_new_cluster`]).
    pub paused: bool,
}

/// Rewrites the Raft membership in `dir` to this node alone, keeping the keyspace (see
/// the module doc). `partner_addrs` are probed besides the members the store names, and
/// `peers` carries the TLS settings the probe needs. The daemon must be stopped (sled's
/// lock refuses a second opener).
///
/// `pause_key`: the HA configuration key (`/<namespace>/<scope>/config`). When given, the
/// rewrite also sets `"pause": true` in it, so that the survivor's HA loop starts in
/// maintenance mode: it never promotes on its own when the old leader key expires, and the
/// operator chooses with `pgwardenctl failover` (honoured in pause), then `resume`.
pub async fn force_new_cluster(
    dir: &Path,
    partner_addrs: &[String],
    peers: &PeerClients,
    pause_key: Option<&str>,
) -> Result<ForceReport, DrError> {
    let storage = |source| DrError::Storage {
        dir: dir.to_path_buf(),
        source,
    };
    let store = SledStore::open(dir).map_err(DrError::Store)?;
    if store.is_fresh() {
        return Err(DrError::NeverJoined {
            dir: dir.to_path_buf(),
        });
    }
    let id = store.node_id().map_err(DrError::Store)?;
    // The lease events of the replay are not needed: nothing runs the reaper here.
    let (lease_tx, _lease_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sm = StateMachineStore::open(store.snapshot_store(), lease_tx).map_err(storage)?;
    let mut log = store.log_store();

    // Replay every entry after the snapshot, committed or not (see the module doc).
    let (applied, _) = sm.applied_state().await.map_err(storage)?;
    let state = log.get_log_state().await.map_err(storage)?;
    let from = applied.map_or(0, |l| l.index + 1);
    let entries = log.try_get_log_entries(from..).await.map_err(storage)?;
    if let Some(first) = entries.first() {
        if first.log_id.index != from && applied.is_some() {
            return Err(DrError::LogGap {
                dir: dir.to_path_buf(),
                applied: from.saturating_sub(1),
                next: first.log_id.index,
            });
        }
    }
    sm.apply(entries).await.map_err(storage)?;
    let (applied, membership) = sm.applied_state().await.map_err(storage)?;
    let last = [applied, state.last_log_id, state.last_purged_log_id]
        .into_iter()
        .flatten()
        .max_by_key(|l| l.index);

    let members = membership.membership();
    let voters: Vec<NodeId> = members.voter_ids().collect();
    let me = match members.get_node(&id) {
        Some(n) if voters.contains(&id) => n.clone(),
        _ => {
            return Err(DrError::NotAVoter {
                dir: dir.to_path_buf(),
                id,
                voters,
            })
        }
    };
    let others: Vec<(NodeId, Node)> = members
        .nodes()
        .filter(|(nid, _)| **nid != id)
        .map(|(nid, n)| (*nid, n.clone()))
        .collect();

    let mut addrs: BTreeSet<String> = others.iter().map(|(_, n)| n.addr.clone()).collect();
    addrs.extend(partner_addrs.iter().cloned());
    addrs.remove(&me.addr);
    let (alive, probed) = probe(peers, &addrs).await;
    if !alive.is_empty() {
        tracing::error!(alive = ?alive, "force-new-cluster refused: other members may be running");
        return Err(DrError::PeersAlive { alive });
    }

    let vote = log.read_vote().await.map_err(storage)?;
    let term = vote
        .map(|v| v.leader_id().term)
        .into_iter()
        .chain(last.map(|l| l.leader_id.term))
        .max()
        .unwrap_or(0)
        + 1;
    let mut index = last.map_or(0, |l| l.index) + 1;
    let paused = match pause_key {
        Some(key) => {
            let value = paused_config(sm.shared().get(key).map(|kv| kv.value).as_deref());
            sm.apply([openraft::Entry::<TypeConfig> {
                log_id: LogId::new(CommittedLeaderId::new(term, id), index),
                payload: EntryPayload::Normal(crate::command::Proposal::One(crate::Command::Put {
                    key: key.to_string(),
                    value,
                    ttl_ms: None,
                    condition: crate::Condition::Always,
                })),
            }])
            .await
            .map_err(storage)?;
            index += 1;
            true
        }
        None => false,
    };
    let new_id = LogId::new(CommittedLeaderId::new(term, id), index);
    tracing::warn!(
        node_id = id,
        me = %me,
        removed = ?others.iter().map(|(_, n)| n.to_string()).collect::<Vec<_>>(),
        term,
        index,
        "FORCE-NEW-CLUSTER: rewriting the Raft membership of this node to itself alone, keeping its keyspace"
    );
    let alone = Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, me.clone())]));
    sm.apply([openraft::Entry::<TypeConfig> {
        log_id: new_id,
        payload: EntryPayload::Membership(alone),
    }])
    .await
    .map_err(storage)?;
    // Durable first: the snapshot holds the keyspace and the new membership.
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .map_err(storage)?;
    log.save_vote(&Vote::new(term, id)).await.map_err(storage)?;
    log.save_committed(Some(new_id)).await.map_err(storage)?;
    // Syncs the committed index with it.
    log.purge(new_id).await.map_err(storage)?;

    let all = sm_keys(&sm);
    if paused {
        tracing::warn!(
            "FORCE-NEW-CLUSTER: the cluster is paused; nothing is promoted until an operator asks"
        );
    }
    let report = ForceReport {
        paused,
        node_id: id,
        me,
        removed: others.into_iter().map(|(_, n)| n).collect(),
        probed,
        index,
        term,
        keys: all.0,
        ttl_keys: all.1,
    };
    tracing::warn!(
        node_id = id,
        keys = report.keys,
        ttl_keys = report.ttl_keys,
        "FORCE-NEW-CLUSTER done: start the daemon; it elects itself as the only voter. TTL keys \
         (the leader key of a lost primary among them) expire by their TTL once it leads"
    );
    Ok(report)
}

/// The HA configuration `current` (JSON; missing or unreadable: empty) with `"pause": true`.
/// A value that is not a JSON object is replaced: the survivor must start paused, and the
/// operator sets the rest again with `edit-config`.
fn paused_config(current: Option<&str>) -> String {
    let mut obj = current
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    obj.insert("pause".into(), serde_json::Value::Bool(true));
    serde_json::Value::Object(obj).to_string()
}

fn sm_keys(sm: &StateMachineStore) -> (usize, usize) {
    let all = sm.shared().list("");
    let ttl = all.iter().filter(|kv| kv.ttl_ms.is_some()).count();
    (all.len(), ttl)
}

/// Asks each address who it is. Returns the members that answered or whose state is
/// unknown (refusal), and the ones that are down with the reason.
async fn probe(peers: &PeerClients, addrs: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let mut alive = Vec::new();
    let mut down = Vec::new();
    for addr in addrs {
        let r: Result<HelloReply, CallError> = peers
            .call(Rpc::Hello, 0, addr, &wire::Hello::default(), PROBE_TIMEOUT)
            .await;
        match r {
            Ok(h) => alive.push(format!(
                "{} ({addr}) answers{}",
                h.name,
                if h.initialized {
                    " and belongs to a cluster"
                } else {
                    ""
                }
            )),
            Err(CallError::NotSent { reason, .. }) => {
                tracing::info!(addr = %addr, reason = %reason, "probe: member unreachable");
                down.push(format!("{addr}: {reason}"));
            }
            Err(e) => alive.push(format!(
                "{addr} is in an unknown state ({})",
                crate::error_chain(&e)
            )),
        }
    }
    (alive, down)
}

/// What [`restore`] did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The new node id.
    pub node_id: NodeId,
    /// Keys restored.
    pub keys: usize,
    /// The Raft index they were written at (above the backup's revision).
    pub index: u64,
    /// Where an existing store was moved, with `--force`.
    pub moved_aside: Option<PathBuf>,
}

/// Checks that `backup` (read from `file`) belongs to the cluster `scope` with key prefix
/// `prefix`, and that every key lies under it.
pub fn check_backup(
    file: &Path,
    backup: &crate::backup::DcsBackup,
    scope: &str,
    prefix: &str,
) -> Result<(), DrError> {
    if backup.scope != scope || backup.prefix != prefix {
        return Err(DrError::OtherScope {
            file: file.to_path_buf(),
            found: backup.scope.clone(),
            found_prefix: backup.prefix.clone(),
            expected: scope.to_string(),
            expected_prefix: prefix.to_string(),
        });
    }
    if let Some(kv) = backup.keys.iter().find(|kv| !kv.key.starts_with(prefix)) {
        return Err(DrError::BadKey {
            file: file.to_path_buf(),
            key: kv.key.clone(),
            why: format!("it is not under {prefix}"),
        });
    }
    Ok(())
}

/// Creates a Raft store in `dir` for the node `me` holding `backup`'s keys, as a cluster
/// of which it is the only voter (run [`check_backup`] first). An existing store is
/// refused, or with `force` renamed to `<dir>.before-restore-<unix seconds>`. TTL keys
/// keep their TTL and expire by it once the node leads, as after any restart.
pub async fn restore(
    dir: &Path,
    file: &Path,
    backup: &crate::backup::DcsBackup,
    me: Node,
    force: bool,
) -> Result<RestoreReport, DrError> {
    let storage = |source| DrError::Storage {
        dir: dir.to_path_buf(),
        source,
    };
    let mut moved_aside = None;
    let occupied = dir.is_dir() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some());
    if occupied {
        // A directory made ready (empty store) by a package or a first start is fine.
        let fresh = SledStore::open(dir).map(|s| s.is_fresh());
        if !matches!(fresh, Ok(true)) {
            match fresh {
                // Locked (a running daemon) or unreadable: never moved, even with force.
                Err(e @ StoreError::Open { .. }) | Err(e @ StoreError::Write { .. }) => {
                    return Err(DrError::Store(e))
                }
                // A store whose records do not decode may be replaced with force.
                Err(e) if !force => return Err(DrError::Store(e)),
                _ if !force => {
                    return Err(DrError::NotEmpty {
                        dir: dir.to_path_buf(),
                    })
                }
                _ => {}
            }
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut to = dir.as_os_str().to_owned();
            to.push(format!(".before-restore-{secs}"));
            let to = PathBuf::from(to);
            std::fs::rename(dir, &to).map_err(|source| DrError::MoveAside {
                dir: dir.to_path_buf(),
                to: to.clone(),
                source,
            })?;
            tracing::warn!(from = %dir.display(), to = %to.display(), "moved the existing Raft store aside");
            moved_aside = Some(to);
        }
    }
    let store = SledStore::open(dir).map_err(DrError::Store)?;
    let id = store.node_id().map_err(DrError::Store)?;
    let (lease_tx, _lease_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sm = StateMachineStore::open(store.snapshot_store(), lease_tx).map_err(storage)?;
    let mut log = store.log_store();
    let term = 1;
    let membership_id = LogId::new(CommittedLeaderId::new(term, id), backup.revision + 1);
    let keys_id = LogId::new(CommittedLeaderId::new(term, id), backup.revision + 2);
    let puts: Vec<crate::Command> = backup
        .keys
        .iter()
        .map(|kv| crate::Command::Put {
            key: kv.key.clone(),
            value: kv.value.clone(),
            ttl_ms: kv.ttl_ms,
            condition: crate::Condition::Always,
        })
        .collect();
    let results = sm
        .apply([
            openraft::Entry::<TypeConfig> {
                log_id: membership_id,
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([id])],
                    BTreeMap::from([(id, me.clone())]),
                )),
            },
            openraft::Entry::<TypeConfig> {
                log_id: keys_id,
                payload: EntryPayload::Normal(crate::Proposal::Batch(puts)),
            },
        ])
        .await
        .map_err(storage)?;
    let refused = results
        .iter()
        .flatten()
        .zip(&backup.keys)
        .find(|(r, _)| !r.succeeded);
    if let Some((_, kv)) = refused {
        return Err(DrError::BadKey {
            file: file.to_path_buf(),
            key: kv.key.clone(),
            why: "the keyspace refused it (size limits?)".into(),
        });
    }
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .map_err(storage)?;
    log.save_vote(&Vote::new(term, id)).await.map_err(storage)?;
    log.save_committed(Some(keys_id)).await.map_err(storage)?;
    log.purge(keys_id).await.map_err(storage)?;
    tracing::warn!(
        node_id = id,
        me = %me,
        keys = backup.keys.len(),
        revision = backup.revision,
        "RESTORE-DCS: created a one-voter Raft cluster holding the backup's keys"
    );
    Ok(RestoreReport {
        node_id: id,
        keys: backup.keys.len(),
        index: keys_id.index,
        moved_aside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member whose host is gone for good is usually not refusing but silent: the probe
    /// must count an address that drops our SYN (here a listener with a full accept queue,
    /// as in the network module's test) as down within the connect timeout, not as
    /// "unknown" (which would refuse for ever); a refused connection is down too.
    #[tokio::test]
    async fn dcs_ops_probe_counts_a_silent_or_refusing_address_as_down() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let silent = listener.local_addr().unwrap().to_string();
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(&silent),
            )
            .await
            {
                held.push(s);
            }
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = closed.local_addr().unwrap().to_string();
        drop(closed);
        let addrs = BTreeSet::from([silent, refused]);
        let started = std::time::Instant::now();
        let (alive, down) = probe(&PeerClients::new(0, None), &addrs).await;
        assert!(alive.is_empty(), "{alive:?}");
        assert_eq!(down.len(), 2, "{down:?}");
        assert!(started.elapsed() < PROBE_TIMEOUT, "{:?}", started.elapsed());
        drop(held);
    }

    /// A process that accepts the connection but never answers (hung, or not pgwarden) may
    /// be a live member: it counts as alive, and the operation is refused.
    #[tokio::test]
    async fn dcs_ops_probe_counts_a_connected_but_silent_peer_as_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let keep = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.push(s);
            }
        });
        let (alive, down) = probe(&PeerClients::new(0, None), &BTreeSet::from([addr])).await;
        assert_eq!((alive.len(), down.len()), (1, 0), "{alive:?} {down:?}");
        keep.abort();
    }
}
