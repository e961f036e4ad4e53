//! Synchronous replication, Patroni's way: which standbys are synchronous, the text of
//! `synchronous_standby_names` (SSN), and the order in which the `sync` key and the GUC
//! change.
//!
//! The invariant everything here protects: at every moment, each commit PostgreSQL has
//! acknowledged is on every member that the `sync` key allows to be promoted (mode `on`), or
//! on enough of the listed voters that a candidate gathering `quorum` votes must have seen
//! it (mode `quorum`). Hence the order:
//!
//! - a standby leaves the key before it leaves SSN, and enters the key only after it
//!   is synchronous in SSN *and* has flushed a WAL position (the "mark") taken after the
//!   SSN change had time to take effect, so that commits acknowledged asynchronously before
//!   the change are on it too;
//! - in quorum mode the key is first widened (more voters, a quorum large enough for both
//!   the old and the new SSN), then SSN changes, then the key narrows once every voter of
//!   the new SSN has reached the mark.
//!
//! Pure: the runner observes, calls [`plan`], and executes the steps in order, stopping at
//! the first that fails.

use super::view::{SyncKey, SyncMode};
use crate::config::DynamicConfig;
use crate::types::Lsn;
use std::collections::BTreeSet;

/// The dynamic configuration's synchronous replication keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    /// off, on or quorum.
    pub mode: SyncMode,
    /// Block commits rather than run without a synchronous standby.
    pub strict: bool,
    /// `synchronous_node_count`.
    pub node_count: usize,
    /// `maximum_lag_on_syncnode` in bytes; `None` when ≤ 0 (no limit).
    pub max_lag: Option<u64>,
}

impl SyncSettings {
    /// The settings of the dynamic configuration (its typed accessors apply the defaults).
    pub fn from_config(c: &DynamicConfig) -> Self {
        SyncSettings {
            mode: c.synchronous_mode(),
            strict: c.synchronous_mode_strict(),
            node_count: usize::try_from(c.synchronous_node_count().max(1)).unwrap_or(1),
            max_lag: u64::try_from(c.maximum_lag_on_syncnode()).ok().filter(|n| *n > 0),
        }
    }
}

/// A standby streaming from the primary: its `pg_stat_replication` row joined with its
/// member key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standby {
    /// Member name (the walsender's application_name).
    pub name: String,
    /// Flushed position it reported.
    pub flush: Lsn,
    /// `sync`, `quorum`, `potential` or `async`.
    pub sync_state: String,
    /// `sync_priority` tag (≤ 0: never synchronous, i.e. `nosync`).
    pub priority: i64,
}

impl Standby {
    fn counted_sync(&self) -> bool {
        matches!(self.sync_state.as_str(), "sync" | "quorum")
    }
}

/// What SSN should name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Sorted member names.
    pub names: Vec<String>,
    /// How many of them must confirm a commit.
    pub numsync: usize,
}

/// Patroni's choice of synchronous standbys: eligible (priority > 0, within
/// `maximum_lag_on_syncnode`), ordered by priority, then those already synchronous (so the
/// choice does not flap), then WAL position; `on` keeps the first `synchronous_node_count`,
/// `quorum` makes every eligible standby a voter.
pub fn choose(s: &SyncSettings, standbys: &[Standby], primary_lsn: Lsn) -> Target {
    let mut eligible: Vec<&Standby> = standbys
        .iter()
        .filter(|st| st.priority > 0)
        .filter(|st| {
            s.max_lag
                .is_none_or(|max| primary_lsn.0.saturating_sub(st.flush.0) <= max)
        })
        .collect();
    eligible.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(b.counted_sync().cmp(&a.counted_sync()))
            .then(b.flush.cmp(&a.flush))
            .then(a.name.cmp(&b.name))
    });
    let mut names: Vec<String> = match s.mode {
        SyncMode::On => eligible
            .iter()
            .take(s.node_count)
            .map(|st| st.name.clone())
            .collect(),
        _ => eligible.iter().map(|st| st.name.clone()).collect(),
    };
    names.sort();
    let numsync = match s.mode {
        SyncMode::Quorum => s.node_count.min(names.len()),
        _ => names.len(),
    };
    Target { names, numsync }
}

/// A member name in SSN: bare when it is a plain identifier that is not a keyword,
/// double-quoted otherwise.
fn quote(name: &str) -> String {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !matches!(name.to_ascii_lowercase().as_str(), "first" | "any");
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Patroni's SSN text for a target; `None` removes the GUC. With nobody to name, strict
/// mode names any standby (`*`), so commits wait instead of going asynchronous.
pub fn ssn_text(mode: SyncMode, strict: bool, t: &Target) -> Option<String> {
    if t.names.is_empty() {
        return match (mode, strict) {
            (SyncMode::On, true) => Some("*".into()),
            (SyncMode::Quorum, true) => Some("ANY 1 (*)".into()),
            _ => None,
        };
    }
    let list = t.names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(",");
    Some(match mode {
        SyncMode::Quorum => format!("ANY {} ({list})", t.numsync),
        _ if t.names.len() == 1 => list,
        _ => format!("{} ({list})", t.numsync),
    })
}

/// The SSN a primary must start with, from the key alone: everything the key allows to be
/// promoted must keep receiving every commit from the first one on.
pub fn ssn_from_key(mode: SyncMode, strict: bool, key: Option<&SyncKey>) -> Option<String> {
    let names = key.map(SyncKey::members).unwrap_or_default();
    let numsync = match mode {
        SyncMode::Quorum => {
            let q = key.and_then(|k| k.quorum).unwrap_or(0) as usize;
            names.len().saturating_sub(q).max(1).min(names.len())
        }
        _ => names.len(),
    };
    let mut names = names;
    names.sort();
    ssn_text(mode, strict, &Target { names, numsync })
}

/// One step, executed in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Compare-and-swap the `sync` key to this value.
    WriteKey(SyncKey),
    /// Set SSN (`None`: remove it) and reload; resets the mark.
    SetSsn(Option<String>),
}

/// Everything [`plan`] looks at.
#[derive(Clone, Debug)]
pub struct PlanInputs<'a> {
    /// This member (the primary).
    pub me: &'a str,
    /// The configuration.
    pub settings: &'a SyncSettings,
    /// The current `sync` key.
    pub key: Option<&'a SyncKey>,
    /// Streaming standbys.
    pub standbys: &'a [Standby],
    /// The primary's WAL position.
    pub primary_lsn: Lsn,
    /// The SSN this process last set (`None`: not known since start).
    pub ssn: Option<&'a Option<String>>,
    /// A primary position taken after the last SSN change took effect.
    pub mark: Option<Lsn>,
}

fn key(me: &str, names: &BTreeSet<String>, quorum: usize) -> SyncKey {
    SyncKey {
        leader: Some(me.to_string()),
        sync_standby: (!names.is_empty()).then(|| names.iter().cloned().collect::<Vec<_>>().join(",")),
        quorum: Some(quorum as u64),
    }
}

/// The steps of this iteration for a primary in synchronous mode (`on` or `quorum`).
pub fn plan(i: &PlanInputs<'_>) -> Vec<Step> {
    let s = i.settings;
    let mine = i.key.filter(|k| k.leader.as_deref() == Some(i.me));
    let Some(current) = mine else {
        // First take the key: listing nobody, so nobody may be promoted until a standby
        // is known to hold every acknowledged commit.
        return vec![Step::WriteKey(key(i.me, &BTreeSet::new(), 0))];
    };
    let cur: BTreeSet<String> = current.members().into_iter().collect();
    let cur_q = current.quorum.unwrap_or(0) as usize;
    let t = choose(s, i.standbys, i.primary_lsn);
    let wanted: BTreeSet<String> = t.names.iter().cloned().collect();
    let text = ssn_text(s.mode, s.strict, &t);
    let ssn_is_target = i.ssn == Some(&text);
    let reached = |n: &String| {
        i.mark.is_some_and(|mark| {
            i.standbys.iter().any(|st| {
                &st.name == n && st.flush >= mark && (s.mode == SyncMode::Quorum || st.counted_sync())
            })
        })
    };
    let mut steps = vec![];
    match s.mode {
        SyncMode::Quorum => {
            if !ssn_is_target {
                // Widen: the union of old and new voters, with a quorum that holds for
                // the smaller of the two numsyncs.
                let n_cur = cur.len().saturating_sub(cur_q);
                let union: BTreeSet<String> = cur.union(&wanted).cloned().collect();
                let q = union.len().saturating_sub(n_cur.min(t.numsync));
                let widened = key(i.me, &union, q);
                if &widened != current {
                    steps.push(Step::WriteKey(widened));
                }
                steps.push(Step::SetSsn(text));
            } else {
                let narrowed = key(i.me, &wanted, wanted.len().saturating_sub(t.numsync));
                if &narrowed != current && wanted.iter().all(reached) {
                    steps.push(Step::WriteKey(narrowed));
                }
            }
        }
        _ => {
            let keep: BTreeSet<String> = cur.intersection(&wanted).cloned().collect();
            if keep != cur || cur_q != 0 {
                steps.push(Step::WriteKey(key(i.me, &keep, 0)));
            }
            if !ssn_is_target {
                steps.push(Step::SetSsn(text));
            } else {
                let add: BTreeSet<String> =
                    wanted.difference(&keep).filter(|n| reached(n)).cloned().collect();
                if !add.is_empty() {
                    steps.push(Step::WriteKey(key(i.me, &keep.union(&add).cloned().collect(), 0)));
                }
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, flush: u64, state: &str) -> Standby {
        Standby {
            name: name.into(),
            flush: Lsn(flush),
            sync_state: state.into(),
            priority: 1,
        }
    }

    fn settings(mode: SyncMode, strict: bool, count: usize) -> SyncSettings {
        SyncSettings {
            mode,
            strict,
            node_count: count,
            max_lag: None,
        }
    }

    fn t(names: &[&str], numsync: usize) -> Target {
        Target {
            names: names.iter().map(|s| s.to_string()).collect(),
            numsync,
        }
    }

    /// Patroni's text rules: one bare name, `k (a,b)` for several, `ANY k (...)` for quorum
    /// even with one, quotes for non-identifiers and keywords, `*` only when strict.
    #[test]
    fn ssn_text_follows_patroni() {
        let on = SyncMode::On;
        assert_eq!(ssn_text(on, false, &t(&["pg1"], 1)).as_deref(), Some("pg1"));
        assert_eq!(ssn_text(on, false, &t(&["n-1"], 1)).as_deref(), Some("\"n-1\""));
        assert_eq!(
            ssn_text(on, false, &t(&["a", "n-2"], 2)).as_deref(),
            Some("2 (a,\"n-2\")")
        );
        assert_eq!(ssn_text(on, false, &t(&["any"], 1)).as_deref(), Some("\"any\""));
        assert_eq!(
            ssn_text(on, false, &t(&["First"], 1)).as_deref(),
            Some("\"First\"")
        );
        assert_eq!(ssn_text(on, false, &t(&[], 0)), None);
        assert_eq!(ssn_text(on, true, &t(&[], 0)).as_deref(), Some("*"));
        let q = SyncMode::Quorum;
        assert_eq!(ssn_text(q, false, &t(&["a"], 1)).as_deref(), Some("ANY 1 (a)"));
        assert_eq!(
            ssn_text(q, false, &t(&["a", "b"], 1)).as_deref(),
            Some("ANY 1 (a,b)")
        );
        assert_eq!(ssn_text(q, true, &t(&[], 0)).as_deref(), Some("ANY 1 (*)"));
        assert_eq!(
            ssn_text(on, false, &t(&["we\"ird"], 1)).as_deref(),
            Some("\"we\"\"ird\"")
        );
    }

    /// nosync (priority 0) and lagging standbys are never chosen; a standby that is already
    /// synchronous stays so over one slightly ahead.
    #[test]
    fn choice_prefers_priority_then_current_sync_then_wal() {
        let mut s = settings(SyncMode::On, false, 1);
        let mut b = st("b", 90, "sync");
        let a = st("a", 100, "async");
        assert_eq!(choose(&s, &[a.clone(), b.clone()], Lsn(100)).names, vec!["b"]);
        b.priority = 0;
        assert_eq!(choose(&s, &[a.clone(), b.clone()], Lsn(100)).names, vec!["a"]);
        s.max_lag = Some(5);
        let c = st("c", 10, "sync");
        assert_eq!(choose(&s, &[c], Lsn(100)).names, Vec::<String>::new());
        let mut hi = st("h", 1, "async");
        hi.priority = 5;
        s.max_lag = None;
        assert_eq!(choose(&s, &[a, hi], Lsn(1)).names, vec!["h"]);
        let q = settings(SyncMode::Quorum, false, 1);
        let all = choose(&q, &[st("b", 1, "quorum"), st("a", 1, "quorum")], Lsn(1));
        assert_eq!(all, t(&["a", "b"], 1));
    }

    fn run(
        s: &SyncSettings,
        k: Option<&SyncKey>,
        standbys: &[Standby],
        ssn: Option<&Option<String>>,
        mark: Option<u64>,
    ) -> Vec<Step> {
        plan(&PlanInputs {
            me: "p",
            settings: s,
            key: k,
            standbys,
            primary_lsn: Lsn(100),
            ssn,
            mark: mark.map(Lsn),
        })
    }

    fn sk(names: &str, q: u64) -> SyncKey {
        SyncKey {
            leader: Some("p".into()),
            sync_standby: (!names.is_empty()).then(|| names.to_string()),
            quorum: Some(q),
        }
    }

    /// Mode on: the key is taken listing nobody; SSN names the standby; the standby enters
    /// the key only when synchronous and past the mark; a standby that goes away leaves the
    /// key before SSN changes.
    #[test]
    fn on_mode_orders_key_and_ssn() {
        let s = settings(SyncMode::On, false, 1);
        let other = SyncKey {
            leader: Some("old".into()),
            ..sk("a", 0)
        };
        assert_eq!(
            run(&s, Some(&other), &[], None, None),
            vec![Step::WriteKey(sk("", 0))]
        );
        let empty = sk("", 0);
        let a_async = [st("a", 50, "async")];
        assert_eq!(
            run(&s, Some(&empty), &a_async, None, None),
            vec![Step::SetSsn(Some("a".into()))]
        );
        let set = Some("a".to_string());
        // SSN set, but no mark yet, or not synchronous yet, or behind the mark: wait.
        assert_eq!(run(&s, Some(&empty), &a_async, Some(&set), None), vec![]);
        assert_eq!(run(&s, Some(&empty), &a_async, Some(&set), Some(40)), vec![]);
        let a_sync = [st("a", 50, "sync")];
        assert_eq!(run(&s, Some(&empty), &a_sync, Some(&set), Some(60)), vec![]);
        assert_eq!(
            run(&s, Some(&empty), &a_sync, Some(&set), Some(40)),
            vec![Step::WriteKey(sk("a", 0))]
        );
        // a disappears, b streams: a leaves the key first, then SSN names b.
        let b = [st("b", 100, "async")];
        assert_eq!(
            run(&s, Some(&sk("a", 0)), &b, Some(&set), Some(40)),
            vec![Step::WriteKey(sk("", 0)), Step::SetSsn(Some("b".into()))]
        );
        // Nobody left: non-strict removes SSN, strict names any standby.
        assert_eq!(
            run(&s, Some(&sk("a", 0)), &[], Some(&set), None),
            vec![Step::WriteKey(sk("", 0)), Step::SetSsn(None)]
        );
        let strict = settings(SyncMode::On, true, 1);
        assert_eq!(
            run(&strict, Some(&empty), &[], Some(&set), None),
            vec![Step::SetSsn(Some("*".into()))]
        );
    }

    /// Quorum: widen the key (union of voters, quorum valid for both SSNs), change SSN, and
    /// narrow only when every voter has reached the mark.
    #[test]
    fn quorum_mode_widens_then_narrows() {
        let s = settings(SyncMode::Quorum, false, 1);
        let ab = [st("a", 50, "quorum"), st("b", 50, "quorum")];
        let empty = sk("", 0);
        // From nothing: key lists both with quorum 2 (nobody can count on the old SSN).
        assert_eq!(
            run(&s, Some(&empty), &ab, None, None),
            vec![
                Step::WriteKey(sk("a,b", 2)),
                Step::SetSsn(Some("ANY 1 (a,b)".into()))
            ]
        );
        let set = Some("ANY 1 (a,b)".to_string());
        assert_eq!(run(&s, Some(&sk("a,b", 2)), &ab, Some(&set), Some(60)), vec![]);
        assert_eq!(
            run(&s, Some(&sk("a,b", 2)), &ab, Some(&set), Some(50)),
            vec![Step::WriteKey(sk("a,b", 1))]
        );
        // b leaves: the key (a,b; quorum 1) already holds for the new SSN, which changes.
        let a = [st("a", 50, "quorum")];
        assert_eq!(
            run(&s, Some(&sk("a,b", 1)), &a, Some(&set), Some(50)),
            vec![Step::SetSsn(Some("ANY 1 (a)".into()))]
        );
        let set_a = Some("ANY 1 (a)".to_string());
        assert_eq!(
            run(&s, Some(&sk("a,b", 1)), &a, Some(&set_a), Some(50)),
            vec![Step::WriteKey(sk("a", 0))]
        );
    }

    /// The SSN a primary starts with covers everything the key allows to be promoted.
    #[test]
    fn start_ssn_from_key() {
        assert_eq!(
            ssn_from_key(SyncMode::On, false, Some(&sk("a,b", 0))).as_deref(),
            Some("2 (a,b)")
        );
        assert_eq!(ssn_from_key(SyncMode::On, false, Some(&sk("", 0))), None);
        assert_eq!(ssn_from_key(SyncMode::On, true, None).as_deref(), Some("*"));
        assert_eq!(
            ssn_from_key(SyncMode::Quorum, false, Some(&sk("a,b", 1))).as_deref(),
            Some("ANY 1 (a,b)")
        );
    }
}
