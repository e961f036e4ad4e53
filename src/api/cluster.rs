//! The DCS as the handlers see it, and the endpoints that only read or write DCS keys:
//! GET /cluster, /history, /config, /failsafe; PATCH and PUT /config; DELETE /switchover.

use super::error::ApiError;
use crate::config::{merge_patch, ConfigError, DynamicConfig};
use crate::dcs::Dcs;
use crate::ha::view::{ClusterView, FailoverKey, MemberRecord, SyncMode};
use crate::types::Lsn;
use pgwarden_raft::command::{Condition, KeyValue};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub use crate::ha::view::SyncKey;

/// Everything under the scope prefix, parsed for the handlers: the HA loop's
/// [`ClusterView`] plus the keys it does not model (sync, failsafe, raw history and members).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Patroni's keys as the HA loop parses them.
    pub view: ClusterView,
    /// `sync`, if it parses.
    pub sync: Option<SyncKey>,
    /// `failsafe`, if it is a JSON object.
    pub failsafe: Option<Map<String, Value>>,
    /// `config` as stored, for GET /config and the base of PATCH /config; everything that
    /// reads a setting goes through the typed `view.config`.
    pub config_raw: Option<Value>,
    /// `history` as stored (rows may have 3 to 5 fields depending on the writer's version).
    pub history: Option<Value>,
    /// `members/<name>` as stored, for fields the view does not keep (scheduled_restart).
    pub raw_members: BTreeMap<String, Value>,
    /// No key at all under the prefix: the DCS is empty or unreachable.
    pub empty: bool,
}

impl Snapshot {
    /// Parses the keys listed under `prefix`.
    pub fn from_kvs(prefix: &str, kvs: &[KeyValue]) -> Snapshot {
        let mut s = Snapshot {
            view: ClusterView::from_kvs(prefix, kvs),
            empty: kvs.is_empty(),
            ..Snapshot::default()
        };
        for kv in kvs {
            let Some(rel) = kv.key.strip_prefix(prefix) else {
                continue;
            };
            match rel {
                "sync" => s.sync = serde_json::from_str(&kv.value).ok(),
                "failsafe" => {
                    if let Ok(Value::Object(m)) = serde_json::from_str(&kv.value) {
                        s.failsafe = Some(m);
                    }
                }
                "history" => s.history = serde_json::from_str(&kv.value).ok(),
                "config" => {
                    s.config_raw = serde_json::from_str::<Value>(&kv.value)
                        .ok()
                        .filter(Value::is_object)
                }
                _ => {
                    if let Some(name) = rel.strip_prefix("members/") {
                        if let Ok(v) = serde_json::from_str::<Value>(&kv.value) {
                            s.raw_members.insert(name.to_string(), v);
                        }
                    }
                }
            }
        }
        s
    }

    /// A linearizable read; on failure the local (possibly stale) copy, as Patroni falls back
    /// to its cached cluster. The bool says whether the read was linearizable.
    pub async fn read<D: Dcs>(dcs: &D, prefix: &str) -> (Snapshot, bool) {
        match dcs.list(prefix).await {
            Ok(kvs) => (Snapshot::from_kvs(prefix, &kvs), true),
            Err(e) => {
                tracing::debug!(error = %e, "REST API: linearizable read failed, using the local copy");
                (Snapshot::from_kvs(prefix, &dcs.list_stale(prefix)), false)
            }
        }
    }

    /// A linearizable read, or the DCS error (for handlers that decide on it).
    pub async fn read_fresh<D: Dcs>(dcs: &D, prefix: &str) -> Result<Snapshot, ApiError> {
        let kvs = dcs.list(prefix).await.map_err(ApiError::Dcs)?;
        Ok(Snapshot::from_kvs(prefix, &kvs))
    }

    /// The local copy, without network (health checks must answer even when partitioned).
    pub fn read_local<D: Dcs>(dcs: &D, prefix: &str) -> Snapshot {
        Snapshot::from_kvs(prefix, &dcs.list_stale(prefix))
    }

    /// The dynamic configuration as stored, if any.
    pub fn config(&self) -> Option<&Value> {
        self.config_raw.as_ref()
    }

    /// `synchronous_mode` is on (`on` or `quorum`; never in a standby cluster).
    pub fn synchronous_mode(&self) -> bool {
        self.view.synchronous_mode() != SyncMode::Off
    }

    /// `synchronous_mode: quorum`.
    pub fn quorum_mode(&self) -> bool {
        self.view.synchronous_mode() == SyncMode::Quorum
    }

    /// `failsafe_mode` is on.
    pub fn failsafe_mode(&self) -> bool {
        self.view.failsafe_mode()
    }

    /// Whether `name` is a synchronous (or quorum) standby right now.
    pub fn is_sync(&self, name: &str) -> bool {
        self.synchronous_mode() && self.sync.as_ref().is_some_and(|s| s.matches(name, false))
    }

    /// `loop_wait` in seconds, after the timing rule (the HA loop's own value).
    pub fn loop_wait(&self) -> u64 {
        self.view.dynamic().timing().0.loop_wait.into()
    }

    /// `maximum_lag_on_failover` in bytes.
    pub fn maximum_lag_on_failover(&self) -> u64 {
        self.view.dynamic().maximum_lag_on_failover()
    }
}

/// A non-leader's position and its lag behind the cluster's last optime, Patroni's rule:
/// the lag is 0 when ahead, and an unknown position (absent, or 0 as Python's falsy test
/// reads it) shows as `"unknown"` in both fields.
fn lsn_and_lag(cluster_lsn: u64, pos: Option<u64>) -> (Value, Value) {
    match pos.filter(|p| *p != 0) {
        None => (json!("unknown"), json!("unknown")),
        Some(p) => (json!(Lsn(p).to_string()), json!(cluster_lsn.saturating_sub(p))),
    }
}

/// One member of GET /cluster (Patroni's `cluster_as_json`).
fn member_json(name: &str, m: &MemberRecord, raw: Option<&Value>, snap: &Snapshot) -> Value {
    let leader = snap.view.leader_name().map(|l| l.as_str());
    let is_leader = leader == Some(name);
    // Patroni's cluster_as_json: the lock holder of a standby cluster is its standby leader.
    let role = if is_leader && snap.view.dynamic().is_standby_cluster() {
        "standby_leader"
    } else if is_leader {
        "leader"
    } else if snap.is_sync(name) {
        if snap.quorum_mode() {
            "quorum_standby"
        } else {
            "sync_standby"
        }
    } else {
        "replica"
    };
    // Replicas, the standby leader included, show how they replicate ("streaming"); the
    // leader its PostgreSQL state.
    let state = (role != "leader")
        .then(|| m.replication_state.clone())
        .flatten()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| m.state.to_string());
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("role".into(), json!(role));
    out.insert("state".into(), json!(state));
    out.insert("api_url".into(), json!(m.api_url));
    if let Some((host, port)) = m.pg_address() {
        out.insert("host".into(), json!(host));
        out.insert("port".into(), json!(port));
    }
    for k in [
        "timeline",
        "pending_restart",
        "pending_restart_reason",
        "scheduled_restart",
        "tags",
    ] {
        if let Some(v) = raw.and_then(|r| r.get(k)) {
            out.insert(k.into(), v.clone());
        }
    }
    if !is_leader {
        let cluster_lsn = snap.view.optime.unwrap_or(0);
        for (lsn_key, lag_key, pos) in [
            ("lsn", "lag", m.xlog_location),
            ("receive_lsn", "receive_lag", m.receive_lsn),
            ("replay_lsn", "replay_lag", m.replay_lsn),
        ] {
            let (lsn, lag) = lsn_and_lag(cluster_lsn, pos);
            out.insert(lsn_key.into(), lsn);
            out.insert(lag_key.into(), lag);
        }
    }
    Value::Object(out)
}

/// GET /cluster.
pub fn cluster_json(snap: &Snapshot, scope: &str) -> Value {
    let members: Vec<Value> = snap
        .view
        .members
        .iter()
        .map(|(n, m)| member_json(n.as_str(), m, snap.raw_members.get(n.as_str()), snap))
        .collect();
    let mut out = Map::new();
    out.insert("members".into(), Value::Array(members));
    out.insert("scope".into(), json!(scope));
    if snap.view.paused() {
        out.insert("pause".into(), json!(true));
    }
    if let Some(f) = &snap.view.failover {
        if let Some(at) = &f.value.scheduled_at {
            let mut s = Map::new();
            s.insert("at".into(), json!(at));
            if let Some(l) = &f.value.leader {
                s.insert("from".into(), json!(l));
            }
            if let Some(c) = &f.value.member {
                s.insert("to".into(), json!(c));
            }
            out.insert("scheduled_switchover".into(), Value::Object(s));
        }
    }
    Value::Object(out)
}

/// GET /history: the rows as stored, `[]` without a history key.
pub fn history_json(snap: &Snapshot) -> Value {
    match &snap.history {
        Some(h @ Value::Array(_)) => h.clone(),
        _ => json!([]),
    }
}

/// GET /config: the dynamic configuration, 502 when there is none.
pub fn config_json(snap: &Snapshot) -> Result<Value, ApiError> {
    snap.config().cloned().ok_or(ApiError::BadGateway)
}

/// GET /failsafe: the failsafe member map, 502 when there is none.
pub fn failsafe_json(snap: &Snapshot) -> Result<Value, ApiError> {
    snap.failsafe
        .clone()
        .map(Value::Object)
        .ok_or(ApiError::BadGateway)
}

/// PATCH /config: Patroni's deep merge (null deletes) written with compare-and-swap on the
/// revision read, so two concurrent PATCHes cannot silently lose one of them.
pub async fn patch_config<D: Dcs>(
    dcs: &D,
    prefix: &str,
    patch: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let key = format!("{prefix}config");
    let current = dcs.get(&key).await.map_err(ApiError::Dcs)?;
    // Patroni answers 503 when there is no config to patch (not even a parsable one).
    let Some(kv) = current else {
        return Err(ApiError::Unavailable("Service Unavailable".into()));
    };
    let Ok(old @ Value::Object(_)) = serde_json::from_str::<Value>(&kv.value) else {
        return Err(ApiError::Unavailable("Service Unavailable".into()));
    };
    let new = merge_patch(&old, &Value::Object(patch.clone()));
    refuse_not_built(&new)?;
    if new != old {
        let text = serde_json::to_string(&new).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let out = dcs
            .put(&key, &text, None, Condition::ModRevisionEquals(kv.mod_revision))
            .await
            .map_err(ApiError::Dcs)?;
        if !out.succeeded {
            return Err(ApiError::Conflict("Conflict".into()));
        }
    }
    Ok(new)
}

/// A dynamic configuration with a setting pgwarden has not built (the key table's refused rows) is
/// answered 400 naming the key, rather than stored: the HA loop would silently run a different
/// cluster than the one asked for. The file's `bootstrap.dcs` is refused the same way at start.
fn refuse_not_built(new: &Value) -> Result<(), ApiError> {
    let errors = DynamicConfig::from_json_lenient(new).0.not_built("");
    match ConfigError::from_list(errors) {
        Some(e) => Err(ApiError::BadRequest(e.to_string())),
        None => Ok(()),
    }
}

/// PUT /config: replaces the configuration unconditionally (Patroni skips the write when
/// nothing changes); a failed write is 502, as in Patroni.
pub async fn put_config<D: Dcs>(dcs: &D, prefix: &str, new: &Map<String, Value>) -> Result<Value, ApiError> {
    let key = format!("{prefix}config");
    let new = Value::Object(new.clone());
    refuse_not_built(&new)?;
    let same = match dcs.get(&key).await {
        Ok(Some(kv)) => serde_json::from_str::<Value>(&kv.value).ok().as_ref() == Some(&new),
        _ => false,
    };
    if !same {
        let text = serde_json::to_string(&new).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        match dcs.put(&key, &text, None, Condition::Always).await {
            Ok(o) if o.succeeded => {}
            Ok(_) => return Err(ApiError::BadGateway),
            Err(e) => {
                tracing::warn!(error = %e, "REST API: PUT /config failed");
                return Err(ApiError::BadGateway);
            }
        }
    }
    Ok(new)
}

/// DELETE /switchover: clears a scheduled switchover by writing `{}` (Patroni never deletes
/// the key), with compare-and-swap so a switchover written meanwhile is not lost.
pub async fn delete_switchover<D: Dcs>(dcs: &D, prefix: &str) -> Result<&'static str, ApiError> {
    let key = format!("{prefix}failover");
    let current = dcs.get(&key).await.map_err(ApiError::Dcs)?;
    let scheduled = current.as_ref().and_then(|kv| {
        serde_json::from_str::<FailoverKey>(&kv.value)
            .ok()
            .filter(|f| f.scheduled_at.is_some())
            .map(|_| kv.mod_revision)
    });
    let Some(rev) = scheduled else {
        return Err(ApiError::NotFound("no switchover is scheduled".into()));
    };
    let out = dcs
        .put(&key, "{}", None, Condition::ModRevisionEquals(rev))
        .await
        .map_err(ApiError::Dcs)?;
    if !out.succeeded {
        return Err(ApiError::Conflict("Conflict".into()));
    }
    Ok("scheduled switchover deleted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarden_raft::dcs::MemDcs;

    const P: &str = "/service/s/";

    fn kv(rel: &str, value: &str) -> KeyValue {
        KeyValue {
            key: format!("{P}{rel}"),
            value: value.into(),
            create_revision: 1,
            mod_revision: 1,
            ttl_ms: None,
        }
    }

    /// A standby cluster (Patroni's cluster_as_json): the lock holder is `standby_leader`, shows
    /// how it replicates, and has no LSN fields (it is the leader); the others are replicas.
    #[test]
    fn standby_cluster_json_names_the_standby_leader() {
        let snap = Snapshot::from_kvs(
            P,
            &[
                kv("config", r#"{"standby_cluster":{"host":"10.9.0.1","port":5432}}"#),
                kv("leader", "a"),
                kv(
                    "members/a",
                    r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","state":"running","role":"standby_leader","replication_state":"streaming","receive_lsn":900,"replay_lsn":900}"#,
                ),
                kv(
                    "members/b",
                    r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","state":"running","role":"replica","replication_state":"streaming","xlog_location":900,"receive_lsn":900,"replay_lsn":900}"#,
                ),
            ],
        );
        let j = cluster_json(&snap, "s");
        let m = j["members"].as_array().unwrap();
        assert_eq!(m[0]["role"], "standby_leader");
        assert_eq!(m[0]["state"], "streaming");
        assert!(m[0].get("receive_lsn").is_none(), "{j}");
        assert_eq!(m[1]["role"], "replica");
        // Without the section, the same lock holder is the leader.
        let plain = Snapshot::from_kvs(
            P,
            &[
                kv("leader", "a"),
                kv("members/a", r#"{"state":"running","role":"primary"}"#),
            ],
        );
        assert_eq!(cluster_json(&plain, "s")["members"][0]["role"], "leader");
    }

    /// Members are listed by name with Patroni's roles, LSNs as X/Y and lag against status.optime.
    #[test]
    fn cluster_json_has_patronis_member_fields() {
        let snap = Snapshot::from_kvs(
            P,
            &[
                kv("config", r#"{"synchronous_mode":true}"#),
                kv("leader", "a"),
                kv("sync", r#"{"leader":"a","sync_standby":"b"}"#),
                kv("status", r#"{"optime":1000}"#),
                kv(
                    "members/a",
                    r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"primary","timeline":3}"#,
                ),
                kv(
                    "members/b",
                    r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"replica","replication_state":"streaming","xlog_location":900,"receive_lsn":900,"replay_lsn":800,"tags":{"x":1}}"#,
                ),
                kv("members/c", r#"{"state":"stopped","role":"replica"}"#),
                kv(
                    "failover",
                    r#"{"leader":"a","member":"b","scheduled_at":"2030-01-01T00:00:00+00:00"}"#,
                ),
            ],
        );
        let j = cluster_json(&snap, "s");
        let m = j["members"].as_array().unwrap();
        assert_eq!(m[0]["role"], "leader");
        assert_eq!(m[0]["host"], "10.0.0.1");
        assert_eq!(m[0]["port"], 5432);
        assert_eq!(m[0]["timeline"], 3);
        assert!(m[0].get("lag").is_none());
        assert_eq!(m[1]["role"], "sync_standby");
        assert_eq!(m[1]["state"], "streaming");
        assert_eq!(m[1]["lag"], 100);
        assert_eq!(m[1]["replay_lag"], 200);
        assert_eq!(m[1]["lsn"], "0/384");
        assert_eq!(m[1]["tags"]["x"], 1);
        assert_eq!(m[2]["role"], "replica");
        // A member with no position (PostgreSQL down): "unknown" for position and lag alike.
        for k in [
            "lsn",
            "lag",
            "receive_lsn",
            "receive_lag",
            "replay_lsn",
            "replay_lag",
        ] {
            assert_eq!(m[2][k], "unknown", "{k}");
        }
        assert_eq!(j["scope"], "s");
        assert_eq!(j["scheduled_switchover"]["to"], "b");
        assert!(j.get("pause").is_none());
    }

    /// PATCH deep-merges, deletes nulls and uses CAS; a missing config is 503.
    #[tokio::test]
    async fn patch_merges_and_needs_a_config() {
        let dcs = MemDcs::new();
        let patch = json!({"postgresql": {"parameters": {"work_mem": "8MB"}}, "ttl": null});
        let Value::Object(patch) = patch else {
            unreachable!()
        };
        assert!(matches!(
            patch_config(&dcs, P, &patch).await,
            Err(ApiError::Unavailable(_))
        ));
        dcs.put(
            &format!("{P}config"),
            r#"{"ttl":30,"loop_wait":10}"#,
            None,
            Condition::Always,
        )
        .await
        .unwrap();
        let new = patch_config(&dcs, P, &patch).await.unwrap();
        assert_eq!(
            new,
            json!({"loop_wait":10,"postgresql":{"parameters":{"work_mem":"8MB"}}})
        );
        let stored = dcs.get(&format!("{P}config")).await.unwrap().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&stored.value).unwrap(), new);
    }
}
