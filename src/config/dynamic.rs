//! The dynamic configuration: the JSON dict in the DCS `config` key (`bootstrap.dcs` in the file),
//! shared by every member and changed at run time with `pgwardenctl edit-config` or `PATCH /config`.
//!
//! Fields are `Option`s holding exactly what was written, so a config read from the DCS and written
//! back is unchanged; unknown keys are kept in [`DynamicConfig::extra`] (Patroni keeps arbitrary keys
//! too). Defaults are applied by the accessor methods, from [`super::defaults`].

use super::defaults as d;
use super::error::{ConfigError, ConfigWarning};
use super::keys::{self, MethodNames, WalkReport, DCS_PREFIX};
use super::values::{lenient, GucValue, Secs, SyncMode, ToolOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The DCS `config` key, typed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicConfig {
    /// Leader-key lease in seconds; see [`Timing`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub ttl: Option<i64>,
    /// Seconds between HA loop iterations.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub loop_wait: Option<i64>,
    /// Seconds DCS and PostgreSQL operations are retried.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub retry_timeout: Option<i64>,
    /// Bytes a replica may lag and still race for leadership.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub maximum_lag_on_failover: Option<u64>,
    /// Bytes a sync standby may lag before it is swapped (≤ 0: never).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub maximum_lag_on_syncnode: Option<i64>,
    /// Timeline history entries kept (0: all).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub max_timelines_history: Option<u32>,
    /// Seconds a crashed primary may take to recover before failover (alias `master_start_timeout`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub primary_start_timeout: Option<u32>,
    /// Seconds before SIGKILL when stopping a primary in sync mode (alias `master_stop_timeout`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub primary_stop_timeout: Option<u32>,
    /// Seconds a replica waits before racing while its WAL still advances.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub primary_race_backoff: Option<u32>,
    /// Synchronous replication mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_mode: Option<SyncMode>,
    /// Block writes rather than run without a synchronous standby.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub synchronous_mode_strict: Option<bool>,
    /// Number of synchronous standbys.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub synchronous_node_count: Option<u32>,
    /// Keep the primary running through a DCS outage if all members agree.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub failsafe_mode: Option<bool>,
    /// A candidate's timeline must be at least the cluster's to race.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub check_timeline: Option<bool>,
    /// How long an absent member's physical slot is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_slots_ttl: Option<Secs>,
    /// Permanent replication slots by name (`null` value: a physical slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<BTreeMap<String, Option<PermanentSlot>>>,
    /// Slots pgwarden must leave alone, matched on any subset of their properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_slots: Option<Vec<IgnoreSlot>>,
    /// Present when this cluster replicates from a remote primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<StandbyCluster>,
    /// Maintenance mode: no automatic action.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub pause: Option<bool>,
    /// Cluster-wide PostgreSQL settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<DynPostgresql>,
    /// Every other key, kept verbatim (including the `master_*` aliases).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A permanent slot (`slots.<name>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PermanentSlot {
    /// `physical` (default) or `logical`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub slot_type: Option<String>,
    /// Database of a logical slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Output plugin of a logical slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// `primary` or `standby`: create the slot only in that kind of cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_type: Option<String>,
    /// Other keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `ignore_slots` entry; a slot matching every given property is left alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IgnoreSlot {
    /// Slot name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `physical` or `logical`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub slot_type: Option<String>,
    /// Database (logical slots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Plugin (logical slots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Other keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `standby_cluster`: the remote primary this cluster follows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StandbyCluster {
    /// Remote host(s), comma-separated for several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Remote port.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub port: Option<u16>,
    /// Slot to use on the remote primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_slot_name: Option<String>,
    /// Methods to clone the standby leader from the remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_replica_methods: Option<Vec<String>>,
    /// WAL restore command for the standby cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_command: Option<String>,
    /// `archive_cleanup_command` on the standby leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_cleanup_command: Option<String>,
    /// `recovery_min_apply_delay` on the standby leader (a GUC value: `5min` or milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_min_apply_delay: Option<GucValue>,
    /// Other keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `postgresql` part of the dynamic configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DynPostgresql {
    /// Allow pg_rewind on a former primary (a local value overrides it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub use_pg_rewind: Option<bool>,
    /// Physical slots for members. Cluster-wide only: a local value is not accepted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    pub use_slots: Option<bool>,
    /// Cluster-wide GUCs; see [`merge_parameters`] for the precedence with local ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, GucValue>>,
    /// pg_hba.conf lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
    /// pg_ident.conf lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_ident: Option<Vec<String>>,
    /// Extra recovery settings for replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_conf: Option<Map<String, Value>>,
    /// pg_ctl wait in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_ctl_timeout: Option<Secs>,
    /// pg_basebackup options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basebackup: Option<ToolOptions>,
    /// pg_rewind options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<ToolOptions>,
    /// Other keys, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The effective `ttl` / `loop_wait` / `retry_timeout` after minima and the timing rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Leader lease, seconds.
    pub ttl: u32,
    /// Loop period, seconds.
    pub loop_wait: u32,
    /// Retry budget, seconds.
    pub retry_timeout: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttl: d::TTL,
            loop_wait: d::LOOP_WAIT,
            retry_timeout: d::RETRY_TIMEOUT,
        }
    }
}

/// Applies Patroni's `_validate_and_adjust_timeouts` with pgwarden's minima: raise each value to its
/// minimum, then enforce `loop_wait + 2*retry_timeout <= ttl` by shrinking `loop_wait`, or, if even
/// `loop_wait = 1` does not fit, `loop_wait = 1` and `retry_timeout = (ttl - 1) // 2`. The warnings
/// use Patroni's wording so that operators who grep for them find them.
pub fn adjust_timing(
    ttl: Option<i64>,
    loop_wait: Option<i64>,
    retry_timeout: Option<i64>,
) -> (Timing, Vec<ConfigWarning>) {
    let mut warnings = Vec::new();
    let mut at_least = |name: &str, value: Option<i64>, default: u32, min: u32| -> i64 {
        let v = value.unwrap_or(default.into());
        if v < i64::from(min) {
            warnings.push(ConfigWarning::RaisedToMinimum {
                key: name.into(),
                value: v,
                minimum: min.into(),
            });
            i64::from(min)
        } else {
            v
        }
    };
    let min_loop_wait = i64::from(d::MIN_LOOP_WAIT);
    let mut lw = at_least("loop_wait", loop_wait, d::LOOP_WAIT, d::MIN_LOOP_WAIT);
    let mut rt = at_least(
        "retry_timeout",
        retry_timeout,
        d::RETRY_TIMEOUT,
        d::MIN_RETRY_TIMEOUT,
    );
    let ttl = at_least("ttl", ttl, d::TTL, d::MIN_TTL);
    if min_loop_wait + 2 * rt > ttl {
        let new_rt = (ttl - min_loop_wait) / 2;
        warnings.push(ConfigWarning::TimingAdjusted(format!(
            "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={ttl}. Adjusting loop_wait from \
             {lw} to {min_loop_wait} and retry_timeout from {rt} to {new_rt}"
        )));
        lw = min_loop_wait;
        rt = new_rt;
    } else if lw + 2 * rt > ttl {
        let new_lw = ttl - 2 * rt;
        warnings.push(ConfigWarning::TimingAdjusted(format!(
            "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={ttl} and retry_timeout={rt}. \
             Adjusting loop_wait from {lw} to {new_lw}"
        )));
        lw = new_lw;
    }
    // Every value is now between its minimum and `ttl`, which came from an i64 the user wrote; clamp
    // rather than fail on absurd inputs beyond u32 (over a century of seconds).
    let clamp = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    (
        Timing {
            ttl: clamp(ttl),
            loop_wait: clamp(lw),
            retry_timeout: clamp(rt),
        },
        warnings,
    )
}

/// Removes the value at a dotted key path (`postgresql.use_slots`, `slots.a.type`), or, when the
/// path does not lead to a value, the top-level key it starts with. False when nothing was removed.
fn remove_key(doc: &mut Value, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let Some((last, parents)) = parts.split_last() else {
        return false;
    };
    let parent = parents.iter().try_fold(&mut *doc, |cur, p| cur.get_mut(*p));
    if let Some(obj) = parent.and_then(Value::as_object_mut) {
        if obj.remove(*last).is_some() {
            return true;
        }
    }
    parts
        .first()
        .is_some_and(|top| doc.as_object_mut().is_some_and(|o| o.remove(*top).is_some()))
}

fn lenient_int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl DynamicConfig {
    /// Parses the DCS `config` value. Shapes are checked key by key first, so an error names the key
    /// (`synchronous_node_count: wrong type ...`); unknown keys are kept, not reported.
    pub fn from_json(value: &Value) -> Result<Self, ConfigError> {
        let Value::Object(map) = value else {
            return Err(ConfigError::WrongType {
                key: "config".into(),
                expected: "a JSON object".into(),
                found: keys::type_name(value).into(),
            });
        };
        let mut report = WalkReport::default();
        keys::walk(map, DCS_PREFIX, "", &MethodNames::default(), &mut report);
        if let Some(e) = ConfigError::from_list(report.errors) {
            return Err(e);
        }
        serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Deserialize {
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// Parses the DCS `config` value the way the HA loop must: never failing. A key whose value
    /// does not parse is dropped (so it takes its default) and reported in the list returned, which
    /// the caller logs once; a value that is not an object at all gives the defaults.
    pub fn from_json_lenient(value: &Value) -> (Self, Vec<ConfigError>) {
        let mut doc = value.clone();
        let mut problems = Vec::new();
        // Each round drops at least one key, so the loop ends; the bound is a second guard.
        for _ in 0..64 {
            match Self::from_json(&doc) {
                Ok(c) => return (c, problems),
                Err(e) => {
                    let errors = match e {
                        ConfigError::Several(list) => list,
                        one => vec![one],
                    };
                    let mut dropped = false;
                    for err in errors {
                        if let Some(key) = err.key() {
                            dropped |= remove_key(&mut doc, key);
                        }
                        problems.push(err);
                    }
                    if !dropped {
                        break;
                    }
                }
            }
        }
        (Self::default(), problems)
    }

    /// The JSON to store in the DCS.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("DynamicConfig serialises to JSON: every map key is a string")
    }

    /// Effective timing and the warnings Patroni would log while adjusting it.
    pub fn timing(&self) -> (Timing, Vec<ConfigWarning>) {
        adjust_timing(self.ttl, self.loop_wait, self.retry_timeout)
    }

    /// `maximum_lag_on_failover` or its default.
    pub fn maximum_lag_on_failover(&self) -> u64 {
        self.maximum_lag_on_failover.unwrap_or(d::MAXIMUM_LAG_ON_FAILOVER)
    }
    /// `maximum_lag_on_syncnode` or its default.
    pub fn maximum_lag_on_syncnode(&self) -> i64 {
        self.maximum_lag_on_syncnode.unwrap_or(d::MAXIMUM_LAG_ON_SYNCNODE)
    }
    /// `max_timelines_history` or its default.
    pub fn max_timelines_history(&self) -> u32 {
        self.max_timelines_history.unwrap_or(d::MAX_TIMELINES_HISTORY)
    }
    /// `primary_start_timeout`, else the legacy `master_start_timeout`, else the default.
    pub fn primary_start_timeout(&self) -> u32 {
        self.primary_start_timeout
            .or_else(|| {
                lenient_int(self.extra.get("master_start_timeout")).and_then(|n| u32::try_from(n).ok())
            })
            .unwrap_or(d::PRIMARY_START_TIMEOUT)
    }
    /// `primary_stop_timeout`, else the legacy `master_stop_timeout`, else the default.
    pub fn primary_stop_timeout(&self) -> u32 {
        self.primary_stop_timeout
            .or_else(|| {
                lenient_int(self.extra.get("master_stop_timeout")).and_then(|n| u32::try_from(n).ok())
            })
            .unwrap_or(d::PRIMARY_STOP_TIMEOUT)
    }
    /// `primary_race_backoff` or its default.
    pub fn primary_race_backoff(&self) -> u32 {
        self.primary_race_backoff.unwrap_or(d::PRIMARY_RACE_BACKOFF)
    }
    /// Synchronous mode; always off in a standby cluster, as in Patroni.
    pub fn synchronous_mode(&self) -> SyncMode {
        if self.is_standby_cluster() {
            SyncMode::Off
        } else {
            self.synchronous_mode.unwrap_or_default()
        }
    }
    /// Whether this is a standby cluster: `standby_cluster` names a host, a port or a
    /// restore_command (Patroni's `is_standby_cluster`; an empty section is not one).
    pub fn is_standby_cluster(&self) -> bool {
        self.standby_cluster
            .as_ref()
            .is_some_and(|s| s.host.is_some() || s.port.is_some() || s.restore_command.is_some())
    }
    /// `synchronous_mode_strict` or false.
    pub fn synchronous_mode_strict(&self) -> bool {
        self.synchronous_mode_strict.unwrap_or(false)
    }
    /// `synchronous_node_count` or its default.
    pub fn synchronous_node_count(&self) -> u32 {
        self.synchronous_node_count.unwrap_or(d::SYNCHRONOUS_NODE_COUNT)
    }
    /// `failsafe_mode` or false.
    pub fn failsafe_mode(&self) -> bool {
        self.failsafe_mode.unwrap_or(false)
    }
    /// `check_timeline` or false.
    pub fn check_timeline(&self) -> bool {
        self.check_timeline.unwrap_or(false)
    }
    /// `member_slots_ttl` in seconds or its default.
    pub fn member_slots_ttl(&self) -> u64 {
        self.member_slots_ttl
            .as_ref()
            .map_or(d::MEMBER_SLOTS_TTL, |s| s.secs)
    }
    /// `pause` or false.
    pub fn is_paused(&self) -> bool {
        self.pause.unwrap_or(false)
    }
    /// `postgresql.use_slots` or its default.
    pub fn use_slots(&self) -> bool {
        self.postgresql
            .as_ref()
            .and_then(|p| p.use_slots)
            .unwrap_or(d::USE_SLOTS)
    }

    /// Checks values that have the right type but are not acceptable. `prefix` is prepended to key
    /// paths (`bootstrap.dcs` when checking the file, empty for the DCS).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        let mut errors = Vec::new();
        if self.synchronous_node_count == Some(0) {
            errors.push(ConfigError::Invalid {
                key: key("synchronous_node_count"),
                why: "must be at least 1".into(),
            });
        }
        if self.maximum_lag_on_syncnode.is_some_and(|v| v < -1) {
            errors.push(ConfigError::Invalid {
                key: key("maximum_lag_on_syncnode"),
                why: "must be -1 or more".into(),
            });
        }
        for (name, slot) in self.slots.iter().flatten() {
            let Some(slot) = slot else { continue };
            let k = key(&format!("slots.{name}"));
            match slot.slot_type.as_deref().unwrap_or("physical") {
                "physical" => {}
                "logical" if slot.database.is_some() && slot.plugin.is_some() => {}
                "logical" => errors.push(ConfigError::Invalid {
                    key: k,
                    why: "a logical slot needs `database` and `plugin`".into(),
                }),
                other => errors.push(ConfigError::Invalid {
                    key: k,
                    why: format!("type {other:?} is not physical or logical"),
                }),
            }
        }
        if let Some(sc) = &self.standby_cluster {
            if sc.host.is_none() && sc.port.is_none() && sc.restore_command.is_none() {
                errors.push(ConfigError::Missing {
                    key: key("standby_cluster"),
                    why: "a standby cluster needs `host`, `port` or `restore_command`",
                });
            }
        }
        match ConfigError::from_list(errors) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Patroni's PATCH semantics for the DCS `config` key (`patroni.utils.patch_config`): keys of `patch`
/// whose value is `null` are deleted; a mapping merged into a mapping recurses; anything else
/// replaces the old value, except that scalars whose text is equal are left as they were (Patroni
/// compares `str()` forms, so `"30"` does not replace `30`). A mapping added where there was none is
/// stored as given. A non-mapping `patch` replaces `base` whole.
pub fn merge_patch(base: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        return patch.clone();
    };
    let mut out = match base {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in patch_map {
        if v.is_null() {
            out.remove(k);
            continue;
        }
        match (out.get(k), v) {
            (Some(old @ Value::Object(_)), Value::Object(_)) => {
                let merged = merge_patch(old, v);
                out.insert(k.clone(), merged);
            }
            (Some(old), new) if python_str(old).is_some() && python_str(old) == python_str(new) => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// `str(value)` as Python prints a scalar, for Patroni's change test; `None` for containers.
fn python_str(v: &Value) -> Option<String> {
    match v {
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Null => Some("None".into()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Effective GUCs: the DCS ones, overridden by local ones, except for [`d::DCS_ONLY_GUCS`], which
/// only the DCS may set (they must agree across the cluster). Returns the merged map and the local
/// GUCs that were ignored for that reason, so the caller can log them.
pub fn merge_parameters(
    dynamic: Option<&BTreeMap<String, GucValue>>,
    local: &BTreeMap<String, GucValue>,
) -> (BTreeMap<String, GucValue>, Vec<String>) {
    let mut out = dynamic.cloned().unwrap_or_default();
    let mut ignored = Vec::new();
    for (k, v) in local {
        if d::DCS_ONLY_GUCS.iter().any(|g| g.eq_ignore_ascii_case(k)) {
            ignored.push(k.clone());
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    (out, ignored)
}
