//! The cluster as stored in the DCS, parsed from Patroni's keys under `<namespace><scope>/`.
//!
//! Parsing is tolerant the way Patroni's is: a value that does not parse is skipped (and
//! reported once by the caller), never a reason to stop the loop.

pub use crate::config::SyncMode;
use crate::config::{ConfigError, DynamicConfig};
use crate::ha::sync::SyncSettings;
use crate::types::{Lsn, MemberName, MemberState, Role};
use pgwarden_raft::KeyValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A member key (`members/<name>`), Patroni's JSON fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// `postgres://host:port/postgres`.
    #[serde(default)]
    pub conn_url: String,
    /// `http://host:port/patroni`.
    #[serde(default)]
    pub api_url: String,
    /// PostgreSQL's state ("running", "stopped", "creating replica", ...).
    #[serde(default)]
    pub state: MemberState,
    /// "primary", "replica", "uninitialized", ...
    #[serde(default)]
    pub role: Role,
    /// Daemon version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// WAL position as an integer (primary: write position; replica: max(receive, replay)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    /// Receive position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    /// Replay position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    /// "streaming" or "in archive recovery".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// Timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Non-default tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, Value>,
    /// A restart is needed for a changed parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart: Option<bool>,
    /// Reason per parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Value>,
    /// Set while the cluster is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    /// A restart scheduled through the API (Patroni's `scheduled_restart`: `schedule`, and the
    /// conditions `postgres_version`, `restart_pending`, `role`, `timeout` when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Value>,
    /// Set by a new leader until its post-promote checkpoint has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_after_promote: Option<bool>,
}

impl MemberRecord {
    /// host and port of `conn_url`.
    pub fn pg_address(&self) -> Option<(String, u16)> {
        let rest = self
            .conn_url
            .strip_prefix("postgres://")
            .or_else(|| self.conn_url.strip_prefix("postgresql://"))?;
        let hostport = rest.split('/').next()?;
        let hostport = hostport.rsplit('@').next()?;
        let (host, port) = hostport.rsplit_once(':')?;
        Some((host.trim_matches(['[', ']']).to_string(), port.parse().ok()?))
    }

    /// Whether a tag is set to true.
    pub fn tag_true(&self, tag: &str) -> bool {
        self.tags.get(tag).is_some_and(crate::config::flag)
    }

    /// A running replica that may be promoted (failover priority above 0).
    pub fn is_failover_candidate(&self) -> bool {
        self.state == MemberState::Running && self.role == Role::Replica && self.failover_priority() > 0
    }

    /// Patroni's failover priority: `nofailover` means 0, default 1.
    pub fn failover_priority(&self) -> i64 {
        if self.tag_true("nofailover") {
            return 0;
        }
        self.tags
            .get("failover_priority")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }
}

/// The `failover` key: a requested switchover or failover. Cleared by writing `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverKey {
    /// The member that must stop being leader (switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The member that must become leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// ISO 8601 time with zone, for a scheduled switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
}

impl FailoverKey {
    /// Whether the key asks for nothing (`{}`).
    pub fn is_empty(&self) -> bool {
        self.leader.is_none() && self.member.is_none()
    }
}

/// The `sync` key: `{"leader":"n0","sync_standby":"n1,n2","quorum":0}`. In synchronous
/// mode only the listed standbys (and the primary that wrote it) may be promoted
/// automatically; in quorum mode `quorum` is how many of them a candidate must hear from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncKey {
    /// The primary that wrote it.
    #[serde(default)]
    pub leader: Option<String>,
    /// Comma-separated synchronous (or quorum) standbys, sorted; `null` for none.
    #[serde(default)]
    pub sync_standby: Option<String>,
    /// Quorum commit: votes a candidate needs from the listed standbys (0 otherwise).
    #[serde(default)]
    pub quorum: Option<u64>,
}

impl SyncKey {
    /// The listed standbys.
    pub fn members(&self) -> Vec<String> {
        self.sync_standby
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether `name` is one of the listed standbys (Patroni's `SyncState.matches`);
    /// with `or_leader`, the primary that wrote the key matches too.
    pub fn matches(&self, name: &str, or_leader: bool) -> bool {
        (or_leader && self.leader.as_deref() == Some(name)) || self.members().iter().any(|m| m == name)
    }
}

/// The `status` key the leader writes after each lease refresh:
/// `{"optime": lsn, "slots": {name: lsn}, "retain_slots": [names]}` (Patroni 4.1; the last
/// two only from leaders that keep member slots). Values that do not parse are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusKey {
    /// The leader's WAL position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optime: Option<u64>,
    /// The leader's slots with their positions (restart LSN, or confirmed flush LSN for
    /// logical slots), including its own member slot name at its WAL position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<BTreeMap<String, u64>>,
    /// Member slot names to keep: members present, and absent ones within member_slots_ttl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_slots: Option<Vec<String>>,
}

impl StatusKey {
    /// Parses leniently: entries of the wrong type are dropped, not the whole key.
    pub fn parse(text: &str) -> Option<StatusKey> {
        let v: Value = serde_json::from_str(text).ok()?;
        Some(StatusKey {
            optime: v.get("optime").and_then(Value::as_u64),
            slots: v.get("slots").and_then(Value::as_object).map(|o| {
                o.iter()
                    .filter_map(|(k, l)| Some((k.clone(), l.as_u64()?)))
                    .collect()
            }),
            retain_slots: v
                .get("retain_slots")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()),
        })
    }
}

/// One `history` row: `[timeline, lsn, reason]`, to which newer writers add `timestamp`
/// and then `new_leader` (Patroni's rows have 3, 4 or 5 fields, depending on its version).
/// A row is written back with the fields it was read with.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where it ended.
    pub lsn: u64,
    /// Why (`no recovery target specified` for a promotion).
    pub reason: String,
    /// When the new timeline began (ISO 8601), if the writer recorded it.
    pub timestamp: Option<String>,
    /// The member promoted, if the writer recorded it.
    pub new_leader: Option<String>,
}

impl HistoryRow {
    /// A row; a `new_leader` without a `timestamp` is written with an empty timestamp.
    pub fn new(
        timeline: u32,
        lsn: u64,
        reason: &str,
        timestamp: Option<String>,
        new_leader: Option<String>,
    ) -> Self {
        HistoryRow {
            timeline,
            lsn,
            reason: reason.to_owned(),
            timestamp,
            new_leader,
        }
    }
}

impl Serialize for HistoryRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut row = vec![
            Value::from(self.timeline),
            Value::from(self.lsn),
            Value::from(self.reason.clone()),
        ];
        if self.timestamp.is_some() || self.new_leader.is_some() {
            row.push(Value::from(self.timestamp.clone().unwrap_or_default()));
        }
        if let Some(l) = &self.new_leader {
            row.push(Value::from(l.clone()));
        }
        row.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HistoryRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let row = Vec::<Value>::deserialize(d)?;
        if !(3..=5).contains(&row.len()) {
            return Err(D::Error::custom(format!(
                "a history row has 3 to 5 fields, this one has {}",
                row.len()
            )));
        }
        let int = |i: usize, what: &str| {
            row[i]
                .as_u64()
                .ok_or_else(|| D::Error::custom(format!("history: {what} {} is not a number", row[i])))
        };
        let text = |i: usize| {
            row.get(i).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        Ok(HistoryRow {
            timeline: u32::try_from(int(0, "timeline")?).map_err(D::Error::custom)?,
            lsn: int(1, "lsn")?,
            reason: text(2).unwrap_or_default(),
            timestamp: text(3),
            new_leader: text(4),
        })
    }
}

/// A value with the revision it was read at, for compare-and-swap.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its mod revision.
    pub revision: u64,
}

/// Everything under the scope prefix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    /// `initialize`: the system identifier, "" while bootstrapping, `None` before.
    pub initialize: Option<String>,
    /// `config`: the dynamic configuration, parsed leniently (a value that does not parse takes
    /// its default and is listed in `unparsable`). Every reader of the dynamic configuration
    /// goes through this one typed copy.
    pub config: Option<Versioned<DynamicConfig>>,
    /// `leader`: the lock holder.
    pub leader: Option<Versioned<MemberName>>,
    /// `members/*`.
    pub members: BTreeMap<MemberName, MemberRecord>,
    /// `failover`, unless empty.
    pub failover: Option<Versioned<FailoverKey>>,
    /// `history`.
    pub history: Vec<HistoryRow>,
    /// `status.optime`: the leader's last reported WAL position.
    pub optime: Option<u64>,
    /// `sync`, when present and parsable.
    pub sync: Option<Versioned<SyncKey>>,
    /// `failsafe`: the members (name → api_url) the leader last listed, when it is a JSON
    /// object of strings.
    pub failsafe: Option<BTreeMap<String, String>>,
    /// `status` as a whole (slots and retain_slots; `optime` is also above).
    pub status: Option<StatusKey>,
    /// Keys that did not parse: (key, problem).
    pub unparsable: Vec<(String, String)>,
}

impl ClusterView {
    /// Parses the keys read under `prefix` (which ends with '/').
    pub fn from_kvs(prefix: &str, kvs: &[KeyValue]) -> ClusterView {
        let mut v = ClusterView::default();
        for kv in kvs {
            let Some(rel) = kv.key.strip_prefix(prefix) else {
                continue;
            };
            let bad = |v: &mut ClusterView, why: String| v.unparsable.push((kv.key.clone(), why));
            match rel {
                "initialize" => v.initialize = Some(kv.value.clone()),
                "config" => match serde_json::from_str::<Value>(&kv.value) {
                    Ok(val @ Value::Object(_)) => {
                        let (config, problems) = DynamicConfig::from_json_lenient(&val);
                        for p in problems {
                            bad(&mut v, crate::error::chain(&p));
                        }
                        v.config = Some(Versioned {
                            value: config,
                            revision: kv.mod_revision,
                        })
                    }
                    Ok(_) => bad(&mut v, "not a JSON object".into()),
                    Err(e) => bad(&mut v, e.to_string()),
                },
                "leader" => match MemberName::new(kv.value.clone()) {
                    Ok(n) => {
                        v.leader = Some(Versioned {
                            value: n,
                            revision: kv.mod_revision,
                        })
                    }
                    Err(e) => bad(&mut v, e.to_string()),
                },
                "failover" => match parse_failover(&kv.value) {
                    Some(f) if f.is_empty() => {}
                    Some(f) => {
                        v.failover = Some(Versioned {
                            value: f,
                            revision: kv.mod_revision,
                        })
                    }
                    None => bad(&mut v, "not a failover request".into()),
                },
                "history" => match serde_json::from_str(&kv.value) {
                    Ok(h) => v.history = h,
                    Err(e) => bad(&mut v, e.to_string()),
                },
                "sync" => match serde_json::from_str::<SyncKey>(&kv.value) {
                    Ok(k) => {
                        v.sync = Some(Versioned {
                            value: k,
                            revision: kv.mod_revision,
                        })
                    }
                    Err(e) => bad(&mut v, e.to_string()),
                },
                "failsafe" => match serde_json::from_str::<BTreeMap<String, String>>(&kv.value) {
                    Ok(m) => v.failsafe = Some(m),
                    Err(e) => bad(&mut v, e.to_string()),
                },
                "status" => {
                    v.optime = serde_json::from_str::<Value>(&kv.value)
                        .ok()
                        .and_then(|s| s.get("optime").and_then(Value::as_u64));
                    v.status = StatusKey::parse(&kv.value);
                }
                _ => {
                    if let Some(name) = rel.strip_prefix("members/") {
                        match (
                            MemberName::new(name),
                            serde_json::from_str::<MemberRecord>(&kv.value),
                        ) {
                            (Ok(n), Ok(m)) => {
                                v.members.insert(n, m);
                            }
                            (Err(e), _) => bad(&mut v, e.to_string()),
                            (_, Err(e)) => bad(&mut v, e.to_string()),
                        }
                    }
                }
            }
        }
        v
    }

    /// The leader's name, if the key is held.
    pub fn leader_name(&self) -> Option<&MemberName> {
        self.leader.as_ref().map(|l| &l.value)
    }

    /// The cluster timeline: last history timeline + 1 (1 without history).
    pub fn timeline(&self) -> u32 {
        self.history.last().map_or(1, |h| h.timeline + 1)
    }

    /// The dynamic configuration, or the defaults before one is stored.
    pub fn dynamic(&self) -> &DynamicConfig {
        static DEFAULTS: std::sync::OnceLock<DynamicConfig> = std::sync::OnceLock::new();
        match &self.config {
            Some(c) => &c.value,
            None => DEFAULTS.get_or_init(DynamicConfig::default),
        }
    }

    /// Whether the dynamic config pauses the cluster (maintenance mode).
    pub fn paused(&self) -> bool {
        self.dynamic().is_paused()
    }

    /// `failsafe_mode` from the dynamic config.
    pub fn failsafe_mode(&self) -> bool {
        self.dynamic().failsafe_mode()
    }

    /// `synchronous_mode` from the dynamic config; always off in a standby cluster (its
    /// standby leader cannot wait for anybody, being a replica).
    pub fn synchronous_mode(&self) -> SyncMode {
        self.dynamic().synchronous_mode()
    }

    /// The synchronous replication settings, with the mode of [`ClusterView::synchronous_mode`].
    pub fn sync_settings(&self) -> SyncSettings {
        SyncSettings {
            mode: self.synchronous_mode(),
            ..SyncSettings::from_config(self.dynamic())
        }
    }

    /// Settings stored in the `config` key that pgwarden has not built (`standby_cluster`),
    /// each naming its key and what to do. PATCH and PUT /config refuse them, but an older
    /// version or a raw DCS write may have stored one. The loop acts as if they were absent
    /// (never promoting or demoting because of them) and reports them.
    pub fn refused_config(&self) -> Vec<ConfigError> {
        self.config
            .as_ref()
            .map(|c| c.value.not_built(""))
            .unwrap_or_default()
    }

    /// The `sync` key when synchronous replication is active: the mode is on (or quorum)
    /// and the key names a leader. Promotion rules then depend on it.
    pub fn sync_active(&self) -> Option<&SyncKey> {
        if self.synchronous_mode() == SyncMode::Off {
            return None;
        }
        self.sync
            .as_ref()
            .map(|s| &s.value)
            .filter(|s| s.leader.as_deref().is_some_and(|l| !l.is_empty()))
    }

    /// The leader's last reported WAL position.
    pub fn leader_optime(&self) -> Option<Lsn> {
        self.optime.map(Lsn)
    }
}

/// Patroni's failover value: JSON, or the legacy `leader:candidate` text.
fn parse_failover(s: &str) -> Option<FailoverKey> {
    if let Ok(f) = serde_json::from_str::<FailoverKey>(s) {
        return Some(f);
    }
    let (leader, member) = s.split_once(':')?;
    let some = |x: &str| (!x.is_empty()).then(|| x.to_string());
    Some(FailoverKey {
        leader: some(leader),
        member: some(member),
        scheduled_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(key: &str, value: &str, rev: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: rev,
            mod_revision: rev,
            ttl_ms: None,
        }
    }

    /// Patroni's values parse into the view; `{}` failover is "none"; bad values are reported, not fatal.
    #[test]
    fn parses_patroni_keys() {
        let p = "/service/batman/";
        let kvs = vec![
            kv("/service/batman/initialize", "7277694203142172922", 1),
            kv(
                "/service/batman/config",
                r#"{"ttl":30,"loop_wait":10,"pause":true}"#,
                2,
            ),
            kv("/service/batman/leader", "pg1", 9),
            kv(
                "/service/batman/members/pg1",
                r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","xlog_location":100,"timeline":2,"tags":{"nofailover":true}}"#,
                8,
            ),
            kv("/service/batman/members/pg2", "garbage", 7),
            kv("/service/batman/failover", "{}", 5),
            kv(
                "/service/batman/history",
                r#"[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","pg1"]]"#,
                6,
            ),
            kv("/service/batman/status", r#"{"optime":123}"#, 10),
        ];
        let v = ClusterView::from_kvs(p, &kvs);
        assert_eq!(v.initialize.as_deref(), Some("7277694203142172922"));
        assert!(v.paused());
        assert_eq!(v.leader_name().unwrap().as_str(), "pg1");
        assert_eq!(v.leader.as_ref().unwrap().revision, 9);
        let m = &v.members[&MemberName::new("pg1").unwrap()];
        assert_eq!(m.pg_address(), Some(("127.0.0.1".into(), 5432)));
        assert_eq!(m.failover_priority(), 0);
        assert_eq!(v.members.len(), 1);
        assert_eq!(v.unparsable.len(), 1);
        assert!(v.failover.is_none());
        assert_eq!(v.timeline(), 2);
        assert_eq!(v.optime, Some(123));
        assert_eq!(v.status.as_ref().and_then(|s| s.slots.as_ref()), None);
    }

    /// Patroni 4.1's `status` with slots and retain_slots; bad entries are dropped alone.
    #[test]
    fn status_with_slots() {
        let s = StatusKey::parse(
            r#"{"optime":300,"slots":{"pg1":200,"bad":"x","pg0":300},"retain_slots":["pg0","pg1",7]}"#,
        )
        .unwrap();
        assert_eq!(s.optime, Some(300));
        let slots = s.slots.unwrap();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots["pg1"], 200);
        assert_eq!(
            s.retain_slots.unwrap(),
            vec!["pg0".to_string(), "pg1".to_string()]
        );
    }

    /// The legacy `leader:candidate` failover text is understood.
    #[test]
    fn legacy_failover_text() {
        let f = parse_failover("pg1:pg2").unwrap();
        assert_eq!(
            (f.leader.as_deref(), f.member.as_deref()),
            (Some("pg1"), Some("pg2"))
        );
        let f = parse_failover(":pg2").unwrap();
        assert_eq!((f.leader, f.member.as_deref()), (None, Some("pg2")));
    }

    fn view_with_config(config: serde_json::Value) -> ClusterView {
        let p = "/service/t/";
        ClusterView::from_kvs(p, &[kv("/service/t/config", &config.to_string(), 3)])
    }

    /// Booleans in every Patroni spelling mean the same everywhere they are read: the loop's
    /// view, the synchronous settings, and the REST layer (all read the one typed copy).
    #[test]
    fn booleans_in_all_patroni_spellings() {
        for yes in [
            json!(true),
            json!(1),
            json!("on"),
            json!("yes"),
            json!("true"),
            json!("ON"),
        ] {
            let v = view_with_config(json!({"synchronous_mode": "on", "synchronous_mode_strict": yes,
                                            "failsafe_mode": yes, "pause": yes}));
            assert!(v.unparsable.is_empty(), "{yes}: {:?}", v.unparsable);
            assert!(
                crate::ha::sync::SyncSettings::from_config(v.dynamic()).strict,
                "{yes}"
            );
            assert!(v.failsafe_mode() && v.paused(), "{yes}");
        }
        for no in [json!(false), json!(0), json!("off"), json!("no"), json!("false")] {
            let v = view_with_config(json!({"synchronous_mode_strict": no, "pause": no}));
            assert!(!v.dynamic().synchronous_mode_strict() && !v.paused(), "{no}");
        }
        // A value that is no boolean falls back to the default and is reported, once.
        let v = view_with_config(json!({"pause": "maybe", "ttl": 20}));
        assert!(!v.paused());
        assert_eq!(v.dynamic().ttl, Some(20), "the other keys still apply");
        assert_eq!(v.unparsable.len(), 1, "{:?}", v.unparsable);
    }

    /// Durations with units, integers as strings, and the timing minima.
    #[test]
    fn durations_string_integers_and_minima() {
        let v = view_with_config(json!({"member_slots_ttl": "30min", "ttl": "20", "loop_wait": "5",
                                        "retry_timeout": 2, "maximum_lag_on_failover": "2048",
                                        "primary_start_timeout": "0"}));
        assert!(v.unparsable.is_empty(), "{:?}", v.unparsable);
        let c = v.dynamic();
        assert_eq!(c.member_slots_ttl(), 1800);
        assert_eq!(c.maximum_lag_on_failover(), 2048);
        assert_eq!(c.primary_start_timeout(), 0);
        let (t, _) = c.timing();
        assert_eq!((t.ttl, t.loop_wait, t.retry_timeout), (20, 5, 2));
        assert_eq!(
            view_with_config(json!({"member_slots_ttl": "2h"}))
                .dynamic()
                .member_slots_ttl(),
            7200
        );
        // Below the minima: raised, and loop_wait + 2*retry_timeout <= ttl enforced.
        let (t, warnings) = view_with_config(json!({"ttl": 1, "loop_wait": 0, "retry_timeout": 0}))
            .dynamic()
            .timing();
        assert_eq!((t.ttl, t.loop_wait, t.retry_timeout), (4, 1, 1));
        assert!(!warnings.is_empty());
        // No configuration stored yet: pgwarden's defaults, not Patroni's.
        let (t, _) = ClusterView::default().dynamic().timing();
        assert_eq!(t.loop_wait, crate::config::defaults::LOOP_WAIT);
    }

    /// History rows of 3, 4 and 5 fields all parse, and are written back as they were.
    #[test]
    fn history_rows_of_three_to_five_fields() {
        let stored = r#"[[1,25165992,"no recovery target specified"],
                         [2,50331824,"no recovery target specified","2026-01-01T00:00:00+00:00"],
                         [3,67109032,"no recovery target specified","2026-02-01T00:00:00+00:00","pg2"]]"#;
        let v = ClusterView::from_kvs("/service/t/", &[kv("/service/t/history", stored, 4)]);
        assert!(v.unparsable.is_empty(), "{:?}", v.unparsable);
        assert_eq!(v.history.len(), 3);
        assert_eq!(v.timeline(), 4);
        assert_eq!(v.history[2].new_leader.as_deref(), Some("pg2"));
        let back: serde_json::Value = serde_json::to_value(&v.history).unwrap();
        let want: serde_json::Value = serde_json::from_str(stored).unwrap();
        assert_eq!(back, want);
        let bad = ClusterView::from_kvs("/service/t/", &[kv("/service/t/history", "[[1,2]]", 4)]);
        assert_eq!(bad.unparsable.len(), 1);
    }
}
