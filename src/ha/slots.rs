//! Replication slots, the pure part: which slots a member keeps, which it may advance and
//! how far, the permanent slots of the dynamic configuration, and the `status` value the
//! leader publishes (Patroni 4.1's `{"optime", "slots", "retain_slots"}`).
//!
//! The runner reads PostgreSQL and the DCS, calls these functions and carries out the
//! result (`Runner::ensure_slots`); nothing here does I/O.
//!
//! The rules, as Patroni's (patroni-behaviour.md, "Slots"):
//! - The primary keeps a physical slot per member, except itself, `nostream` members and
//!   members cascading from another member (`replicatefrom`; their slot is on that member).
//! - A failover-capable replica (failover_priority > 0, not `nostream`) keeps, when
//!   member_slots_ttl > 0, a slot for every other member that would stream from it once it is
//!   promoted (the leader included), and the permanent physical slots; it advances them to the
//!   positions the leader publishes in `status.slots`, never past its own replay position.
//!   So a new primary already holds every member's slot with its WAL retained.
//! - Any replica keeps the slots of the members cascading from it.
//! - `retain_slots` carries the names of absent members for member_slots_ttl; their slots
//!   are kept that long, on the primary and on the replicas.

use super::decide::upstream;
use super::view::{ClusterView, StatusKey};
use crate::config::{DynamicConfig, IgnoreSlot};
use crate::postgres::Slot;
use crate::types::SlotType;
use crate::types::{Lsn, MemberName};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// A permanent slot of the dynamic configuration (`slots: {name: {...}}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permanent {
    /// `type: physical` (the default).
    Physical,
    /// `type: logical` in `database` with the output plugin `plugin`.
    Logical {
        /// The database the slot belongs to.
        database: String,
        /// The output plugin, e.g. `pgoutput`.
        plugin: String,
    },
}

/// The permanent slots of the dynamic configuration, and the definitions that were refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermanentSlots {
    /// Usable definitions by slot name.
    pub slots: BTreeMap<String, Permanent>,
    /// (slot name, problem) for each refused definition.
    pub problems: Vec<(String, String)>,
}

impl PermanentSlots {
    /// The names of the permanent physical slots.
    pub fn physical(&self) -> impl Iterator<Item = &String> {
        self.slots
            .iter()
            .filter(|(_, p)| **p == Permanent::Physical)
            .map(|(n, _)| n)
    }
}

/// Whether `name` is a valid slot name: lower-case letters, digits and `_`, at most 63 bytes.
fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Patroni's slot name for a member: lowercase, `-` and `.` to `_`, other characters
/// outside `[a-z0-9_]` as `u%04x`, at most 63 bytes.
pub fn slot_name(member: &MemberName) -> String {
    let mut out = String::new();
    for c in member.as_str().to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04x}", other as u32)),
        }
    }
    out.truncate(63);
    out
}

/// Whether an `ignore_slots` rule (a subset of name, type, database, plugin) matches.
pub fn slot_matches(rule: &IgnoreSlot, slot: &Slot) -> bool {
    let is = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
    is(&rule.name, Some(&slot.name))
        && is(&rule.slot_type, Some(slot.slot_type.as_str()))
        && is(&rule.database, slot.database.as_deref())
        && is(&rule.plugin, slot.plugin.as_deref())
}

/// Reads `slots` from the dynamic configuration. Patroni's rules: no `type` means logical when
/// both `database` and `plugin` are given, else physical; `cluster_type: standby` slots belong
/// to standby clusters only. A bad definition is reported in `problems`, never fatal.
pub fn permanent_slots(config: &DynamicConfig) -> PermanentSlots {
    let mut out = PermanentSlots::default();
    let Some(slots) = &config.slots else {
        return out;
    };
    for (name, spec) in slots {
        let mut bad = |why: &str| out.problems.push((name.clone(), why.to_owned()));
        if !valid_slot_name(name) {
            bad("invalid slot name: only lower-case letters, digits and `_`, at most 63 bytes");
            continue;
        }
        let Some(spec) = spec else {
            out.slots.insert(name.clone(), Permanent::Physical);
            continue;
        };
        fn text(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        match text(&spec.cluster_type) {
            None | Some("primary") => {}
            Some("standby") => continue,
            Some(_) => {
                bad("`cluster_type` must be `primary` or `standby`");
                continue;
            }
        }
        let (database, plugin) = (text(&spec.database), text(&spec.plugin));
        let kind = match spec.slot_type.as_deref() {
            None if database.is_some() && plugin.is_some() => "logical",
            None => "physical",
            Some(t) => t,
        };
        match kind {
            "physical" => {
                out.slots.insert(name.clone(), Permanent::Physical);
            }
            "logical" => match (database, plugin) {
                (Some(d), Some(p)) => {
                    out.slots.insert(
                        name.clone(),
                        Permanent::Logical {
                            database: d.to_owned(),
                            plugin: p.to_owned(),
                        },
                    );
                }
                (None, None) => bad("a logical slot needs `database` and `plugin`"),
                (None, _) => bad("a logical slot needs `database`"),
                (_, None) => bad("a logical slot needs `plugin`"),
            },
            _ => bad("`type` must be `physical` or `logical`"),
        }
    }
    out
}

/// Who is asking: the primary, or a replica of `leader`.
#[derive(Clone, Copy, Debug)]
pub enum Holder<'a> {
    /// The primary (leader key holder).
    Primary,
    /// A replica.
    Replica {
        /// The leader.
        leader: &'a MemberName,
        /// failover_priority > 0 and not `nostream`.
        failover_capable: bool,
    },
}

/// The member slots `me` must have (create them when missing), by Patroni's names.
///
/// `keep_all_members` is member_slots_ttl > 0: only then do failover-capable replicas keep
/// every member's slot (Patroni 4's condition; with 0 they keep those cascading from them).
pub fn member_slots(
    me: &MemberName,
    view: &ClusterView,
    holder: Holder<'_>,
    keep_all_members: bool,
) -> BTreeSet<String> {
    let others = view
        .members
        .iter()
        .filter(|(n, m)| *n != me && !m.tag_true("nostream"));
    match holder {
        Holder::Primary => others
            .filter(|(n, _)| upstream(n, view, me) == me)
            .map(|(n, _)| slot_name(n))
            .collect(),
        Holder::Replica {
            leader,
            failover_capable,
        } => others
            .filter(|(n, _)| *n != leader || (failover_capable && keep_all_members))
            .filter(|(n, _)| {
                if *n == leader {
                    return true;
                }
                let up = upstream(n, view, leader);
                // Cascading from me: always. Streaming from the leader: it would stream
                // from me once I am promoted. Cascading from somebody else: not mine.
                up == me || (failover_capable && keep_all_members && up == leader)
            })
            .map(|(n, _)| slot_name(n))
            .collect(),
    }
}

/// What the leader publishes in `status`: its WAL position, its slots with their positions
/// (restart LSN; confirmed flush LSN for logical slots) plus its own member slot name at its
/// WAL position, so replicas keep a slot for it too, and `retain_slots`.
///
/// With member_slots_ttl 0 (`keep_all_members` false), only permanent slots are listed, as
/// Patroni does.
pub fn status_key(
    optime: Lsn,
    me: &MemberName,
    local: &[Slot],
    permanent: &PermanentSlots,
    keep_all_members: bool,
    retain_slots: Vec<String>,
) -> StatusKey {
    let mut slots = BTreeMap::new();
    for s in local {
        if !keep_all_members && !permanent.slots.contains_key(&s.name) {
            continue;
        }
        let lsn = if s.slot_type == SlotType::Logical {
            s.confirmed_flush_lsn
        } else {
            s.restart_lsn
        };
        if let Some(l) = lsn {
            slots.insert(s.name.clone(), l.0);
        }
    }
    if keep_all_members {
        slots.insert(slot_name(me), optime.0);
    }
    StatusKey {
        optime: Some(optime.0),
        slots: (!slots.is_empty()).then_some(slots),
        retain_slots: (!retain_slots.is_empty()).then_some(retain_slots),
    }
}

/// The leader's bookkeeping behind `retain_slots`: when each member slot name was last seen
/// in the member keys. Patroni's `_build_retain_slots`: names published by the previous
/// leader count as seen now, so a new leader keeps them another member_slots_ttl.
#[derive(Clone, Debug, Default)]
pub struct Retained {
    seen: BTreeMap<String, Instant>,
}

impl Retained {
    /// Records the members present now and returns the sorted names to retain: those seen
    /// less than `ttl` ago (none when `ttl` is 0).
    pub fn update(
        &mut self,
        now: Instant,
        me: &MemberName,
        view: &ClusterView,
        ttl: Duration,
    ) -> Vec<String> {
        let published = view
            .status
            .as_ref()
            .and_then(|s| s.retain_slots.as_deref())
            .unwrap_or(&[]);
        for name in published {
            self.seen.entry(name.clone()).or_insert(now);
        }
        for (n, m) in &view.members {
            if !m.tag_true("nostream") {
                self.seen.insert(slot_name(n), now);
            }
        }
        self.seen.insert(slot_name(me), now);
        self.seen.retain(|_, at| *at + ttl > now);
        self.seen.keys().cloned().collect()
    }
}

/// The slots a replica moves forward: its inactive physical slots in `keep`, each to the
/// position the leader published for it, capped at the replica's own replay position, and
/// only forward. Slots with no position yet (no restart LSN, nothing published) are left.
pub fn advances(
    existing: &[Slot],
    keep: &BTreeSet<String>,
    published: &BTreeMap<String, u64>,
    replay: Lsn,
) -> Vec<(String, Lsn)> {
    existing
        .iter()
        .filter(|s| s.slot_type == SlotType::Physical && !s.active && keep.contains(&s.name))
        .filter_map(|s| {
            let from = s.restart_lsn?;
            let to = Lsn((*published.get(&s.name)?).min(replay.0));
            (to > from).then(|| (s.name.clone(), to))
        })
        .collect()
}

/// What a failover-capable replica does with the permanent logical slots (Patroni's
/// logical slot copies, for PostgreSQL before 17, which has no failover slots of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogicalPlan {
    /// Slots to copy from the primary: configured, published by the leader (so they exist
    /// there), absent here.
    pub copy: Vec<String>,
    /// Copies to move forward: (name, database, position), to the leader's published
    /// confirmed position capped at this replica's replay position, forward only.
    pub advance: Vec<(String, String, Lsn)>,
    /// Logical slots here that are no longer configured: dropped, since on a standby they
    /// only hold back the primary's catalog cleanup (through hot_standby_feedback).
    pub drop: Vec<String>,
    /// (name, problem) for a slot of a configured name that is not the configured slot.
    pub mismatched: Vec<(String, String)>,
}

/// Plans the permanent logical slots on a failover-capable replica. `reserved` holds the
/// member slot names (a permanent slot may not take one); `ignored` says whether a slot
/// matches `ignore_slots`.
pub fn logical_on_replica(
    permanent: &PermanentSlots,
    existing: &[Slot],
    published: &BTreeMap<String, u64>,
    replay: Lsn,
    reserved: &BTreeSet<String>,
    ignored: impl Fn(&Slot) -> bool,
) -> LogicalPlan {
    let mut plan = LogicalPlan::default();
    for (name, p) in &permanent.slots {
        let Permanent::Logical { database, plugin } = p else {
            continue;
        };
        // Without a published position the leader has not got the slot (yet).
        let Some(&at) = published.get(name) else {
            continue;
        };
        if reserved.contains(name) {
            continue;
        }
        match existing.iter().find(|s| &s.name == name) {
            None => plan.copy.push(name.clone()),
            Some(s)
                if s.slot_type == SlotType::Logical
                    && s.database.as_deref() == Some(database.as_str())
                    && s.plugin.as_deref() == Some(plugin.as_str()) =>
            {
                let to = Lsn(at.min(replay.0));
                if !s.active && s.confirmed_flush_lsn.is_some_and(|c| to > c) {
                    plan.advance.push((name.clone(), database.clone(), to));
                }
            }
            Some(s) => plan.mismatched.push((
                name.clone(),
                format!(
                    "a {} slot of that name exists here (database {:?}, plugin {:?}); it is not copied from the primary",
                    s.slot_type, s.database, s.plugin
                ),
            )),
        }
    }
    plan.drop = existing
        .iter()
        .filter(|s| s.slot_type == SlotType::Logical && !s.active)
        .filter(|s| !permanent.slots.contains_key(&s.name) && !ignored(s))
        .map(|s| s.name.clone())
        .collect();
    plan
}

/// Patroni's readiness rule for logical slot copies on a replica. A copy is safe to use after
/// a failover once the primary keeps the catalog rows it needs: the replica's physical slot
/// on the primary has a `catalog_xmin` (hot_standby_feedback reaches it), and that value
/// lies between the primary slot's `catalog_xmin` as it was when the feedback first counted
/// (remembered in `pending`) and the copy's own `catalog_xmin`.
///
/// `pending` maps each copy not yet known safe to that remembered value (`None` until
/// remembered); `on_primary` holds the primary's logical slots' `catalog_xmin`; `physical`
/// the replica's physical slot's. Returns the copies found safe (and removes them, and any
/// whose copy is gone, from `pending`).
pub fn ready_copies(
    pending: &mut BTreeMap<String, Option<u64>>,
    on_primary: &BTreeMap<String, Option<u64>>,
    physical: Option<u64>,
    local: &[Slot],
) -> Vec<String> {
    let Some(physical) = physical else {
        // No feedback yet (not streaming, or hot_standby_feedback off): nothing is known.
        return vec![];
    };
    let mut ready = vec![];
    pending.retain(|name, remembered| {
        if remembered.is_none() {
            *remembered = on_primary.get(name).copied().flatten();
        }
        let Some(copy) = local.iter().find(|s| &s.name == name) else {
            return false;
        };
        let safe =
            remembered.is_some_and(|p| p <= physical && copy.catalog_xmin.is_some_and(|c| physical <= c));
        if safe {
            ready.push(name.clone());
        }
        !safe
    });
    ready
}

/// Retained WAL per slot: `position − restart_lsn` (the primary's current position, a
/// replica's replay position); slots that reserve nothing are left out.
pub fn retained_bytes(existing: &[Slot], position: Lsn) -> BTreeMap<String, u64> {
    existing
        .iter()
        .filter_map(|s| Some((s.name.clone(), position.0.saturating_sub(s.restart_lsn?.0))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::view::{MemberRecord, Versioned};
    use serde_json::{json, Value};

    fn n(s: &str) -> MemberName {
        MemberName::new(s).unwrap()
    }

    fn config(v: Value) -> DynamicConfig {
        DynamicConfig::from_json(&v).unwrap()
    }

    /// Members pg0 (leader), pg1, pg2, with tags per member.
    fn view(tags: &[(&str, Value)]) -> ClusterView {
        let mut v = ClusterView {
            leader: Some(Versioned {
                value: n("pg0"),
                revision: 1,
            }),
            ..Default::default()
        };
        for name in ["pg0", "pg1", "pg2", "pg-3"] {
            let mut m = MemberRecord {
                state: "running".into(),
                role: if name == "pg0" { "primary" } else { "replica" }.into(),
                ..Default::default()
            };
            for (who, t) in tags {
                if *who == name {
                    if let Value::Object(o) = t {
                        m.tags.extend(o.clone());
                    }
                }
            }
            v.members.insert(n(name), m);
        }
        v
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn slot(name: &str, kind: &str, active: bool, restart: Option<u64>) -> Slot {
        Slot {
            name: name.into(),
            slot_type: kind.into(),
            active,
            restart_lsn: restart.map(Lsn),
            database: None,
            plugin: None,
            confirmed_flush_lsn: None,
            catalog_xmin: None,
        }
    }

    /// The primary keeps a slot per member but itself, nostream and cascading members.
    #[test]
    fn primary_slots_skip_nostream_and_cascading_members() {
        let v = view(&[
            ("pg2", json!({"nostream": true})),
            ("pg-3", json!({"replicatefrom": "pg1"})),
        ]);
        assert_eq!(member_slots(&n("pg0"), &v, Holder::Primary, true), set(&["pg1"]));
    }

    /// A failover-capable replica keeps the leader's and the other replicas' slots, not its
    /// own, not a nostream member's, not one cascading from another replica; a member
    /// cascading from it, always.
    #[test]
    fn failover_capable_replica_keeps_every_member_that_would_stream_from_it() {
        let v = view(&[
            ("pg2", json!({"nostream": true})),
            ("pg-3", json!({"replicatefrom": "pg2"})),
        ]);
        let holder = Holder::Replica {
            leader: &n("pg0"),
            failover_capable: true,
        };
        // pg-3 cascades from pg2, a running replica: its slot is there, not here.
        assert_eq!(member_slots(&n("pg1"), &v, holder, true), set(&["pg0"]));
        let v = view(&[("pg-3", json!({"replicatefrom": "pg1"}))]);
        assert_eq!(
            member_slots(&n("pg1"), &v, holder, true),
            set(&["pg0", "pg2", "pg_3"])
        );
        // member_slots_ttl 0: only the cascading member.
        assert_eq!(member_slots(&n("pg1"), &v, holder, false), set(&["pg_3"]));
        // nofailover: only the cascading member.
        let nofailover = Holder::Replica {
            leader: &n("pg0"),
            failover_capable: false,
        };
        assert_eq!(member_slots(&n("pg1"), &v, nofailover, true), set(&["pg_3"]));
    }

    /// Permanent slots: physical by default, logical with database and plugin; bad
    /// definitions are named with their problem and the others still apply.
    #[test]
    fn permanent_slot_definitions() {
        let c = json!({"slots": {
            "archiver": {"type": "physical"},
            "plain": null,
            "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "implied": {"database": "app", "plugin": "pgoutput"},
            "nodb": {"type": "logical", "plugin": "pgoutput"},
            "noplugin": {"type": "logical", "database": "app"},
            "Bad-Name": {"type": "physical"},
            "weird": {"type": "magic"},
            "standby_only": {"type": "physical", "cluster_type": "standby"},
        }});
        let p = permanent_slots(&config(c));
        assert_eq!(p.slots["archiver"], Permanent::Physical);
        assert_eq!(p.slots["plain"], Permanent::Physical);
        let logical = Permanent::Logical {
            database: "app".into(),
            plugin: "pgoutput".into(),
        };
        assert_eq!(p.slots["cdc"], logical);
        assert_eq!(p.slots["implied"], logical);
        assert_eq!(p.slots.len(), 4);
        let problems: BTreeMap<_, _> = p.problems.into_iter().collect();
        assert_eq!(problems["nodb"], "a logical slot needs `database`");
        assert_eq!(problems["noplugin"], "a logical slot needs `plugin`");
        assert!(problems["Bad-Name"].contains("invalid slot name"));
        assert!(problems["weird"].contains("`type`"));
        assert_eq!(problems.len(), 4);
        // A `slots` that is no mapping is dropped by the lenient parse, and reported there.
        let (c, problems) = DynamicConfig::from_json_lenient(&json!({"slots": [1]}));
        assert!(permanent_slots(&c).slots.is_empty());
        assert_eq!(problems.len(), 1);
    }

    /// `status`: slots with their positions, the leader's own name at its optime, retain_slots;
    /// with member_slots_ttl 0 only permanent slots.
    #[test]
    fn status_content() {
        let mut cdc = slot("cdc", "logical", false, Some(50));
        cdc.confirmed_flush_lsn = Some(Lsn(70));
        let local = vec![
            slot("pg1", "physical", true, Some(100)),
            slot("archiver", "physical", false, Some(90)),
            slot("fresh", "physical", false, None),
            cdc,
        ];
        let p = permanent_slots(&config(json!({"slots": {
            "archiver": {},
            "cdc": {"database": "postgres", "plugin": "pgoutput"},
        }})));
        let s = status_key(
            Lsn(200),
            &n("pg0"),
            &local,
            &p,
            true,
            vec!["pg0".into(), "pg1".into()],
        );
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"optime": 200, "slots": {"pg0": 200, "pg1": 100, "archiver": 90, "cdc": 70},
                   "retain_slots": ["pg0", "pg1"]})
        );
        let s = status_key(Lsn(200), &n("pg0"), &local, &p, false, vec![]);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"optime": 200, "slots": {"archiver": 90, "cdc": 70}})
        );
        let none = status_key(Lsn(5), &n("pg0"), &[], &PermanentSlots::default(), false, vec![]);
        assert_eq!(serde_json::to_value(&none).unwrap(), json!({"optime": 5}));
    }

    /// retain_slots: present members (nostream ones excluded) and the leader itself; absent
    /// ones until member_slots_ttl has passed; names published by a previous leader too.
    #[test]
    fn retain_slots_expire_after_the_ttl() {
        let mut v = view(&[("pg2", json!({"nostream": true}))]);
        v.status = Some(StatusKey {
            retain_slots: Some(vec!["old".into()]),
            ..Default::default()
        });
        let mut r = Retained::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        assert_eq!(
            r.update(t0, &n("pg0"), &v, ttl),
            vec!["old", "pg0", "pg1", "pg_3"]
        );
        v.members.remove(&n("pg1"));
        v.status = None;
        assert_eq!(
            r.update(t0 + Duration::from_secs(59), &n("pg0"), &v, ttl),
            vec!["old", "pg0", "pg1", "pg_3"]
        );
        assert_eq!(
            r.update(t0 + Duration::from_secs(61), &n("pg0"), &v, ttl),
            vec!["pg0", "pg_3"]
        );
        assert!(r.update(t0, &n("pg0"), &v, Duration::ZERO).is_empty());
    }

    /// Replicas advance inactive physical slots they keep, forward only, never past their
    /// own replay position; nothing without a published position or a restart LSN.
    #[test]
    fn advance_forward_only_and_capped_at_replay() {
        let existing = vec![
            slot("pg0", "physical", false, Some(100)),
            slot("pg2", "physical", false, Some(100)),
            slot("ahead", "physical", false, Some(500)),
            slot("busy", "physical", true, Some(10)),
            slot("unreserved", "physical", false, None),
            slot("unknown", "physical", false, Some(1)),
            slot("foreign", "physical", false, Some(1)),
        ];
        let keep = set(&["pg0", "pg2", "ahead", "busy", "unreserved", "unknown"]);
        let published: BTreeMap<String, u64> = [
            ("pg0", 150),
            ("pg2", 900),
            ("ahead", 400),
            ("busy", 300),
            ("unreserved", 300),
            ("foreign", 300),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        assert_eq!(
            advances(&existing, &keep, &published, Lsn(300)),
            vec![("pg0".into(), Lsn(150)), ("pg2".into(), Lsn(300))]
        );
    }

    /// Retained bytes: position − restart LSN, per slot that reserves WAL.
    /// Logical copies: copied when published and absent, advanced forward only and never
    /// past replay, a same-named slot of another kind left alone, unconfigured copies
    /// dropped unless ignored or active.
    #[test]
    fn logical_slots_on_a_replica() {
        let permanent = permanent_slots(&config(json!({"slots": {
            "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "new": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "unpublished": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "other": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "pg1": {"type": "logical", "database": "app", "plugin": "pgoutput"},
        }})));
        let logical = |name: &str, confirmed: u64, active: bool| Slot {
            database: Some("app".into()),
            plugin: Some("pgoutput".into()),
            confirmed_flush_lsn: Some(Lsn(confirmed)),
            ..slot(name, "logical", active, Some(confirmed))
        };
        let mut other = logical("other", 10, false);
        other.database = Some("elsewhere".into());
        let existing = vec![
            logical("cdc", 100, false),
            other,
            logical("stale", 10, false),
            logical("kept", 10, false),
            logical("busy", 10, true),
        ];
        let published: BTreeMap<String, u64> = [("cdc", 500), ("new", 300), ("other", 300), ("pg1", 300)]
            .into_iter()
            .map(|(n, l)| (n.to_string(), l))
            .collect();
        let plan = logical_on_replica(&permanent, &existing, &published, Lsn(400), &set(&["pg1"]), |s| {
            s.name == "kept"
        });
        assert_eq!(plan.copy, vec!["new".to_string()]);
        assert_eq!(
            plan.advance,
            vec![("cdc".to_string(), "app".to_string(), Lsn(400))]
        );
        assert_eq!(plan.drop, vec!["stale".to_string()]);
        assert_eq!(plan.mismatched.len(), 1);
        assert_eq!(plan.mismatched[0].0, "other");
        // Already there: nothing to advance.
        let plan = logical_on_replica(&permanent, &existing, &published, Lsn(100), &set(&[]), |_| false);
        assert!(plan.advance.is_empty());
    }

    /// A copy is safe once the physical slot's catalog_xmin is known, not older than what
    /// the primary's slot needed when feedback started, and not newer than the copy's.
    #[test]
    fn logical_copy_readiness() {
        let copy = |name: &str, xmin: u64| Slot {
            catalog_xmin: Some(xmin),
            ..slot(name, "logical", false, Some(1))
        };
        let on_primary: BTreeMap<String, Option<u64>> =
            [("a".to_string(), Some(700)), ("b".to_string(), Some(900))].into();
        let mut pending: BTreeMap<String, Option<u64>> = [
            ("a".to_string(), None),
            ("b".to_string(), None),
            ("gone".to_string(), None),
        ]
        .into();
        let local = vec![copy("a", 760), copy("b", 950)];
        // No feedback yet: nothing remembered, nothing ready.
        assert!(ready_copies(&mut pending, &on_primary, None, &local).is_empty());
        assert_eq!(pending.len(), 3);
        // Feedback at 750: a (700 <= 750 <= 760) is safe; b's primary slot needed 900 when
        // feedback started, so rows between 750 and 900 may be gone; the vanished copy is
        // forgotten.
        assert_eq!(
            ready_copies(&mut pending, &on_primary, Some(750), &local),
            vec!["a".to_string()]
        );
        assert_eq!(pending, [("b".to_string(), Some(900))].into());
        // Later feedback at 920 <= 950: b is safe too.
        assert_eq!(
            ready_copies(&mut pending, &on_primary, Some(920), &local),
            vec!["b".to_string()]
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn retained_bytes_per_slot() {
        let existing = vec![
            slot("a", "physical", false, Some(100)),
            slot("b", "physical", false, None),
        ];
        let r = retained_bytes(&existing, Lsn(1100));
        assert_eq!(r.len(), 1);
        assert_eq!(r["a"], 1000);
    }

    /// Patroni's slot naming.
    #[test]
    fn slot_names_follow_patroni() {
        assert_eq!(slot_name(&n("Node-1.dc")), "node_1_dc");
        assert_eq!(slot_name(&n("a b")), "au0020b");
    }

    /// ignore_slots rules match on the fields they name.
    #[test]
    fn ignore_slot_rules() {
        let s = slot("keep_me", "physical", false, None);
        let rule = |v: Value| serde_json::from_value::<IgnoreSlot>(v).unwrap();
        assert!(slot_matches(&rule(json!({"name": "keep_me"})), &s));
        assert!(slot_matches(&rule(json!({"type": "physical"})), &s));
        assert!(!slot_matches(
            &rule(json!({"name": "keep_me", "type": "logical"})),
            &s
        ));
    }
}
