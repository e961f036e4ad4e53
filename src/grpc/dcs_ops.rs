//! The DCS operations of the admin API (`pgwardenctl dcs ...`, issue 22): keys with their
//! revisions and lease time left, every Raft member's own state, raw repair writes
//! behind `force`, and consistent snapshots of the cluster's keys.
//!
//! The time left on a lease is the Raft leader's: `dcs get` asks the leader's lease reaper
//! (the clock that expires keys) for the keys it read. When the leader cannot be asked (no
//! leader, an older member), it falls back to [`LeaseClock`], this member's own view by the
//! same rule (a key's deadline is armed when this member applies its last write, at that
//! moment + TTL; a restart or a missed event re-arms every key at now + TTL), which can only
//! show a deadline later than the reaper's, never an earlier one.

use super::error::AdminError;
use super::pb;
use super::service::RaftAdmin;
use crate::api::error::ApiError;
use crate::api::rest::ApiState;
use crate::dcs::Dcs;
use pgwarden_raft::command::{Condition, KeyValue};
use pgwarden_raft::dcs::WatchEvent;
use pgwarden_raft::node::wire::{AdminReply, AdminRequest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long `dcs status` waits for each member's report.
pub(super) const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// This member's lease deadlines (see the module doc).
#[derive(Clone, Default)]
pub struct LeaseClock {
    deadlines: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
}

impl LeaseClock {
    /// Follows the DCS's changes under `prefix` from now on (within a tokio runtime; with
    /// none, every lease shows its full TTL).
    pub fn start<D: Dcs>(dcs: Arc<D>, prefix: &str) -> Self {
        let clock = LeaseClock::default();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return clock;
        };
        // Subscribed before the first read, so no change falls between the two.
        let mut watch = dcs.watch(prefix);
        let prefix = prefix.to_string();
        clock.reset(&dcs.list_stale(&prefix));
        let c = clock.clone();
        rt.spawn(async move {
            while let Some(ev) = watch.next().await {
                match ev {
                    WatchEvent::Put(kv) => c.arm(&kv),
                    WatchEvent::Delete { key, .. } => {
                        c.lock().remove(&key);
                    }
                    WatchEvent::Reset => c.reset(&dcs.list_stale(&prefix)),
                }
            }
        });
        clock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arm(&self, kv: &KeyValue) {
        match kv.ttl_ms {
            Some(ttl) => {
                let deadline = Instant::now() + Duration::from_millis(ttl);
                self.lock().insert(kv.key.clone(), (kv.mod_revision, deadline));
            }
            None => {
                self.lock().remove(&kv.key);
            }
        }
    }

    fn reset(&self, kvs: &[KeyValue]) {
        let now = Instant::now();
        let mut map = self.lock();
        map.clear();
        for kv in kvs {
            if let Some(ttl) = kv.ttl_ms {
                map.insert(
                    kv.key.clone(),
                    (kv.mod_revision, now + Duration::from_millis(ttl)),
                );
            }
        }
    }

    /// Time left on `kv`'s lease; its full TTL when this member has not seen that write yet.
    pub fn left(&self, kv: &KeyValue) -> Option<Duration> {
        let ttl = Duration::from_millis(kv.ttl_ms?);
        match self.lock().get(&kv.key) {
            Some((rev, deadline)) if *rev == kv.mod_revision => {
                Some(deadline.saturating_duration_since(Instant::now()))
            }
            _ => Some(ttl),
        }
    }
}

/// A key as given: absolute when it starts with `/`, else under the cluster's prefix.
pub fn resolve(prefix: &str, key: &str) -> String {
    if key.starts_with('/') {
        key.to_string()
    } else {
        format!("{prefix}{key}")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A key as the admin API shows it, with this member's estimate of the time left.
pub fn key(kv: KeyValue, clock: &LeaseClock) -> pb::DcsKey {
    let left = clock.left(&kv).map(millis);
    key_with_left(kv, left)
}

fn key_with_left(kv: KeyValue, lease_left_ms: Option<u64>) -> pb::DcsKey {
    pb::DcsKey {
        lease_left_ms,
        ttl_ms: kv.ttl_ms,
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    }
}

fn dcs_err(e: crate::dcs::DcsError) -> AdminError {
    AdminError::Api(ApiError::Dcs(e))
}

/// `dcs get [--prefix] KEY`.
pub async fn get<D: Dcs, R: RaftAdmin>(
    api: &ApiState<D>,
    raft: &R,
    clock: &LeaseClock,
    req: pb::DcsGetRequest,
) -> Result<pb::DcsKeys, AdminError> {
    if req.key.is_empty() && !req.prefix {
        return Err(AdminError::InvalidArgument(
            "a key is required (or --prefix for every key of the cluster)".into(),
        ));
    }
    let full = resolve(&api.prefix, &req.key);
    let kvs = if req.prefix {
        api.dcs.list(&full).await.map_err(dcs_err)?
    } else {
        api.dcs.get(&full).await.map_err(dcs_err)?.into_iter().collect()
    };
    let revision = raft
        .applied()
        .max(kvs.iter().map(|k| k.mod_revision).max().unwrap_or(0));
    let mut left = leader_lease_left(raft, &kvs).await;
    let keys = kvs
        .into_iter()
        .map(|kv| match left.remove(&kv.key) {
            Some(ms) => key_with_left(kv, Some(ms)),
            None => key(kv, clock),
        })
        .collect();
    Ok(pb::DcsKeys { revision, keys })
}

/// The Raft leader's time left on the leases among `kvs`, by key; empty when it cannot be
/// asked (the caller then shows this member's estimate).
async fn leader_lease_left<R: RaftAdmin>(raft: &R, kvs: &[KeyValue]) -> HashMap<String, u64> {
    let asked: Vec<(String, u64)> = kvs
        .iter()
        .filter(|kv| kv.ttl_ms.is_some())
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    if asked.is_empty() {
        return HashMap::new();
    }
    match raft.admin(AdminRequest::LeaseLeft { keys: asked.clone() }).await {
        Ok(AdminReply::LeaseLeft(left)) if left.len() == asked.len() => asked
            .into_iter()
            .zip(left)
            .filter_map(|((k, _), ms)| Some((k, ms?)))
            .collect(),
        other => {
            tracing::debug!(reply = ?other, "the Raft leader's lease times are not available");
            HashMap::new()
        }
    }
}

/// `dcs status`: the membership as this member knows it, and each member's own report.
pub async fn status<R: RaftAdmin>(raft: &R) -> Result<pb::DcsStatus, AdminError> {
    let members = match raft.admin(AdminRequest::Status).await? {
        AdminReply::Status(s) => s.members,
        other => {
            return Err(AdminError::FailedPrecondition(format!(
                "unexpected reply to a status request: {other:?}"
            )))
        }
    };
    let reports = futures::future::join_all(members.iter().map(|m| raft.report_at(&m.addr))).await;
    let members = members
        .into_iter()
        .zip(reports)
        .map(|(m, r)| {
            let mut s = pb::DcsMemberStatus {
                id: m.id,
                name: m.name,
                addr: m.addr,
                voter: m.voter,
                ..Default::default()
            };
            match r {
                Ok(r) => {
                    s.reachable = true;
                    s.role = r.role;
                    s.term = r.term;
                    s.leader_id = r.leader.unwrap_or(0);
                    s.last_log_index = r.last_log_index;
                    s.applied = r.applied;
                    s.store_bytes = r.store_bytes;
                    s.snapshot_bytes = r.snapshot_bytes;
                    s.snapshot_index = r.snapshot_index;
                    s.lease_keys = r.lease_keys;
                    s.reaper_active = r.reaper_active;
                }
                Err(e) => s.error = e,
            }
            s
        })
        .collect();
    Ok(pb::DcsStatus {
        answered_by: raft.my_id(),
        members,
    })
}

fn require_force(force: bool, what: &str) -> Result<(), AdminError> {
    if force {
        Ok(())
    } else {
        Err(AdminError::FailedPrecondition(format!(
            "refused: a raw {what} bypasses the HA loop's checks and can break the cluster; \
             it is for repairs only, and needs force"
        )))
    }
}

/// `dcs put --force KEY VALUE [--ttl]`.
pub async fn put<D: Dcs>(api: &ApiState<D>, req: pb::DcsPutRequest) -> Result<pb::ActionReply, AdminError> {
    require_force(req.force, "write")?;
    if req.key.is_empty() {
        return Err(AdminError::InvalidArgument("a key is required".into()));
    }
    let full = resolve(&api.prefix, &req.key);
    tracing::warn!(key = %full, ttl_ms = ?req.ttl_ms, "admin API: raw DCS write (forced)");
    let r = api
        .dcs
        .put(
            &full,
            &req.value,
            req.ttl_ms.map(Duration::from_millis),
            Condition::Always,
        )
        .await
        .map_err(dcs_err)?;
    Ok(pb::ActionReply {
        message: format!("Success: wrote {full} at revision {}", r.revision),
        http_status: 200,
    })
}

/// `dcs delete --force KEY`.
pub async fn delete<D: Dcs>(
    api: &ApiState<D>,
    req: pb::DcsDeleteRequest,
) -> Result<pb::ActionReply, AdminError> {
    require_force(req.force, "delete")?;
    if req.key.is_empty() {
        return Err(AdminError::InvalidArgument("a key is required".into()));
    }
    let full = resolve(&api.prefix, &req.key);
    tracing::warn!(key = %full, "admin API: raw DCS delete (forced)");
    let r = api.dcs.delete(&full, Condition::Always).await.map_err(dcs_err)?;
    let message = if r.succeeded {
        format!("Success: deleted {full} at revision {}", r.revision)
    } else {
        format!("{full} did not exist")
    };
    Ok(pb::ActionReply {
        message,
        http_status: 200,
    })
}

/// `dcs snapshot save`: one consistent state of the cluster's keys, with its index.
pub async fn snapshot<D: Dcs, R: RaftAdmin>(
    api: &ApiState<D>,
    raft: &R,
    scope: String,
) -> Result<pb::DcsSnapshot, AdminError> {
    let (revision, kvs) = match raft.consistent_list(&api.prefix).await {
        Some(r) => r.map_err(dcs_err)?,
        None => {
            let kvs = api.dcs.list(&api.prefix).await.map_err(dcs_err)?;
            (kvs.iter().map(|k| k.mod_revision).max().unwrap_or(0), kvs)
        }
    };
    // A backup carries no lease time left: it is restored into another cluster, later.
    let none = LeaseClock::default();
    Ok(pb::DcsSnapshot {
        scope,
        prefix: api.prefix.clone(),
        revision,
        keys: kvs
            .into_iter()
            .map(|kv| pb::DcsKey {
                lease_left_ms: None,
                ..key(kv, &none)
            })
            .collect(),
    })
}
