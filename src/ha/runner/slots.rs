//! Carrying out the slot plans of [`crate::ha::slots`] on the local PostgreSQL: member and
//! permanent slots, their advance on replicas, logical slot copies, and the leader's `status`.

use super::Runner;
use crate::dcs::Dcs;
use crate::error::chain;
use crate::ha::slots::{self, slot_matches, slot_name, Holder, Permanent, PermanentSlots};
use crate::ha::view::{ClusterView, StatusKey};
use crate::postgres::{LocalStatus, PgControl, StopMode};
use crate::types::SlotType;
use crate::types::{Lsn, MemberName};
use pgwarden_raft::Condition;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// What `ensure_slots` leaves for the `status` key.
pub(super) struct SlotsOutcome {
    /// The slots after the changes.
    slots: Vec<crate::postgres::Slot>,
    /// The permanent slots of the dynamic config.
    permanent: PermanentSlots,
    /// member_slots_ttl > 0.
    keep_all_members: bool,
    /// `retain_slots` (on the leader).
    retain: Vec<String>,
}

/// How long a replica waits before copying the same logical slot from the primary again (a
/// copy restarts its PostgreSQL; a copy whose WAL is gone here needs the primary's slot to
/// move on first).
const LOGICAL_COPY_INTERVAL: Duration = Duration::from_secs(60);

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// Warns once about a slot problem (keyed by `key`), so a bad definition or a slot that
    /// cannot be created does not repeat every loop.
    pub(super) fn warn_slot_once(&mut self, key: String, slot: &str, problem: &str) {
        if self.warned_slots.insert(key) {
            tracing::warn!(slot = %slot, problem = %problem, "replication slot not managed");
        }
    }

    /// Carries out a replica's plan for the permanent logical slots (`slots::logical_on_replica`):
    /// drops unconfigured copies, advances the others, and copies missing ones from the
    /// leader's PostgreSQL. A copy is Patroni's: the slot's `state` file is read from the
    /// primary, PostgreSQL is stopped, the file is installed and PostgreSQL started again,
    /// since a standby loads slots only at start. Returns whether a slot changed, and whether
    /// slots were copied.
    pub(super) async fn manage_logical_copies(
        &mut self,
        v: &ClusterView,
        leader: &MemberName,
        permanent: &PermanentSlots,
        plan: slots::LogicalPlan,
    ) -> (bool, bool) {
        let mut changed = false;
        for (name, problem) in &plan.mismatched {
            self.warn_slot_once(format!("mismatch {name}"), name, problem);
        }
        for name in &plan.drop {
            match self.pg.drop_slot(name).await {
                Ok(()) => {
                    changed = true;
                    tracing::info!(slot = %name, "dropped a logical slot copy that is no longer a permanent slot");
                }
                Err(e) => tracing::warn!(slot = %name, error = %chain(&e), "dropping a logical slot copy"),
            }
        }
        let mut copy = plan.copy;
        for (name, database, to) in &plan.advance {
            match self.pg.advance_logical_slot(name, database, *to).await {
                Ok(()) => {
                    changed = true;
                    self.warned_slots.remove(&format!("advance {name}"));
                }
                // The copy points at WAL this standby no longer has (or it was
                // invalidated): only a fresh copy from the primary helps.
                Err(e) if e.wal_missing_or_unusable() => {
                    let why = format!(
                        "its copy cannot be advanced to {to} ({}); copying it again",
                        chain(&e)
                    );
                    self.warn_slot_once(format!("advance {name}"), name, &why);
                    copy.push(name.clone());
                }
                Err(e) => {
                    let why = format!("cannot advance it to {to} yet: {}", chain(&e));
                    self.warn_slot_once(format!("advance {name}"), name, &why);
                }
            }
        }
        let now = Instant::now();
        copy.retain(|n| {
            self.logical_copied_at
                .get(n)
                .is_none_or(|at| now.duration_since(*at) >= LOGICAL_COPY_INTERVAL)
        });
        if copy.is_empty() {
            return (changed, false);
        }
        let Ok((primary, _)) = self.upstream_of(Some(v), leader) else {
            return (changed, false);
        };
        let states = match self.pg.read_logical_slots(&primary, &copy).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("cannot read it from the primary {primary}: {}", chain(&e));
                self.warn_slot_once(format!("copy {}", copy.join(",")), &copy.join(","), &why);
                return (changed, false);
            }
        };
        let states: Vec<_> = states
            .into_iter()
            .filter(|st| {
                permanent.slots.get(&st.name)
                    == Some(&Permanent::Logical {
                        database: st.database.clone(),
                        plugin: st.plugin.clone(),
                    })
            })
            .collect();
        if states.is_empty() {
            return (changed, false);
        }
        for st in &states {
            self.logical_copied_at.insert(st.name.clone(), now);
            self.logical_pending
                .get_or_insert_with(BTreeMap::new)
                .insert(st.name.clone(), None);
        }
        let names: Vec<&str> = states.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(slots = ?names, from = %primary, "copying logical slots from the primary: restarting PostgreSQL to load them");
        if let Err(e) = self.pg.stop(StopMode::Fast).await {
            tracing::warn!(error = %chain(&e), "stopping PostgreSQL to install logical slot copies");
            return (changed, false);
        }
        if let Err(e) = self.pg.install_slot_states(&states).await {
            tracing::warn!(error = %chain(&e), "installing logical slot copies");
        }
        // Started again whatever happened above: a standby must not stay down for a slot.
        match self.pg.start().await {
            Ok(()) => tracing::info!(slots = ?names, "logical slot copies loaded"),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "starting PostgreSQL after installing logical slot copies")
            }
        }
        (true, true)
    }

    /// Follows the logical slot copies until each is safe to use after a failover (Patroni's
    /// readiness check): asks the primary for its logical slots' and this replica's physical
    /// slot's `catalog_xmin`. Only logs; an unsafe copy is named again at promotion.
    pub(super) async fn check_logical_readiness(
        &mut self,
        v: &ClusterView,
        leader: &MemberName,
        permanent: &PermanentSlots,
        existing: &[crate::postgres::Slot],
    ) {
        let pending = self.logical_pending.get_or_insert_with(|| {
            existing
                .iter()
                .filter(|s| s.slot_type == SlotType::Logical && permanent.slots.contains_key(&s.name))
                .map(|s| (s.name.clone(), None))
                .collect()
        });
        if pending.is_empty() {
            return;
        }
        let my_slot = slot_name(&self.s.me);
        let mut names: Vec<String> = pending
            .iter()
            .filter(|(_, remembered)| remembered.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        names.push(my_slot.clone());
        let Ok((primary, _)) = self.upstream_of(Some(v), leader) else {
            return;
        };
        let mut on_primary = match self.pg.catalog_xmins_on_primary(&primary, &names).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %chain(&e), "reading catalog_xmin from the primary");
                return;
            }
        };
        let Some(physical) = on_primary.remove(&my_slot) else {
            let why = "this replica's physical slot is missing on the primary: its logical slot copies cannot be made safe";
            self.warn_slot_once(format!("physical {my_slot}"), &my_slot, why);
            return;
        };
        let pending = self.logical_pending.get_or_insert_with(BTreeMap::new);
        for name in slots::ready_copies(pending, &on_primary, physical, existing) {
            tracing::info!(slot = %name, "logical slot copy is safe to use after a failover");
        }
    }

    /// On the leader, after its lease refresh: keep the slots, then publish `status`
    /// (Patroni 4.1: optime, slots, retain_slots) when it changed.
    pub(super) async fn write_status_and_slots(&mut self, v: &ClusterView, optime: Lsn, st: &LocalStatus) {
        let outcome = self.ensure_slots(Some(v), true, st).await;
        let key = match &outcome {
            Some(o) => slots::status_key(
                optime,
                &self.s.me,
                &o.slots,
                &o.permanent,
                o.keep_all_members,
                o.retain.clone(),
            ),
            None => StatusKey {
                optime: Some(optime.0),
                ..Default::default()
            },
        };
        if v.status.as_ref() == Some(&key) {
            return;
        }
        let value = serde_json::to_string(&key).unwrap_or_default();
        if let Err(e) = self
            .dcs
            .put(&self.key("status"), &value, None, Condition::Always)
            .await
        {
            tracing::debug!(error = %e, "writing the status key");
        }
    }

    /// Keeps this member's replication slots as `ha::slots` describes: creates the member
    /// and permanent slots it must have (logical ones on the primary only), advances a
    /// replica's copies to the positions the leader published, and drops inactive physical
    /// slots nobody needs: at once when `retain_slots` says so (the leader applied
    /// member_slots_ttl), otherwise after they have been unneeded for member_slots_ttl.
    /// Logical slots, active slots and slots matching `ignore_slots` are never dropped.
    /// Problems are logged (once per slot), never returned: slots never stop the loop.
    pub(super) async fn ensure_slots(
        &mut self,
        v: Option<&ClusterView>,
        primary: bool,
        st: &LocalStatus,
    ) -> Option<SlotsOutcome> {
        let v = v?;
        let config = v.dynamic();
        if !config.use_slots() {
            self.status.send_modify(|s| s.slot_retained_bytes.clear());
            return None;
        }
        let ttl = Duration::from_secs(config.member_slots_ttl());
        let keep_all_members = !ttl.is_zero();
        let failover_capable = self.failover_capable();
        let holder = if primary {
            Holder::Primary
        } else {
            Holder::Replica {
                leader: v.leader_name()?,
                failover_capable,
            }
        };
        let permanent = slots::permanent_slots(config);
        for (name, problem) in &permanent.problems {
            self.warn_slot_once(format!("definition {name}: {problem}"), name, problem);
        }
        let ignore = config.ignore_slots.clone().unwrap_or_default();
        let existing = match self.pg.slots().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %chain(&e), "listing replication slots");
                return None;
            }
        };
        let my_slot = slot_name(&self.s.me);
        let mut create = slots::member_slots(&self.s.me, v, holder, keep_all_members);
        if primary || failover_capable {
            create.extend(permanent.physical().filter(|n| **n != my_slot).cloned());
        }
        // Names to keep if present: the leader's own bookkeeping on the primary, what the
        // leader published on a replica that keeps member slots.
        let retain: Vec<String> = if primary {
            self.retained.update(Instant::now(), &self.s.me, v, ttl)
        } else if failover_capable && keep_all_members {
            v.status
                .as_ref()
                .and_then(|s| s.retain_slots.clone())
                .unwrap_or_default()
        } else {
            vec![]
        };
        let drop_at_once = primary || !retain.is_empty();
        let mut keep = create.clone();
        keep.extend(retain.iter().filter(|n| **n != my_slot).cloned());

        let mut changed = false;
        for slot in &create {
            match existing.iter().find(|s| &s.name == slot) {
                Some(s) if s.slot_type != SlotType::Physical => {
                    let key = format!("type {slot}");
                    self.warn_slot_once(key, slot, "a slot of that name exists but is not physical");
                }
                Some(_) => {}
                None => match self.pg.create_physical_slot(slot).await {
                    Ok(()) => {
                        changed = true;
                        tracing::info!(slot = %slot, "created replication slot");
                    }
                    Err(e) => tracing::warn!(slot = %slot, error = %chain(&e), "creating replication slot"),
                },
            }
        }
        if primary {
            for (name, p) in &permanent.slots {
                let Permanent::Logical { database, plugin } = p else {
                    continue;
                };
                if create.contains(name) || keep.contains(name) {
                    let key = format!("conflict {name}");
                    self.warn_slot_once(key, name, "a permanent logical slot has a member's slot name");
                    continue;
                }
                match existing.iter().find(|s| &s.name == name) {
                    Some(s)
                        if s.slot_type != SlotType::Logical
                            || s.database.as_deref() != Some(database.as_str()) =>
                    {
                        let key = format!("mismatch {name}");
                        let why = format!(
                            "a {} slot of that name exists (database {:?}); drop it to have the permanent logical slot created",
                            s.slot_type, s.database
                        );
                        self.warn_slot_once(key, name, &why);
                    }
                    Some(_) => {}
                    None => match self.pg.create_logical_slot(name, database, plugin).await {
                        Ok(()) => {
                            changed = true;
                            self.warned_slots.remove(&format!("create {name}"));
                            tracing::info!(slot = %name, database = %database, plugin = %plugin, "created permanent logical replication slot");
                        }
                        Err(e) => {
                            let why = format!(
                                "cannot create it in database {database} with plugin {plugin}: {}",
                                chain(&e)
                            );
                            self.warn_slot_once(format!("create {name}"), name, &why);
                        }
                    },
                }
            }
        }
        // A replica moves its copies forward to the leader's positions.
        if let (false, Some(published), Some(replay)) = (
            primary,
            v.status.as_ref().and_then(|s| s.slots.as_ref()),
            st.replay_lsn,
        ) {
            for (name, to) in slots::advances(&existing, &keep, published, replay) {
                match self.pg.advance_slot(&name, to).await {
                    Ok(()) => {
                        changed = true;
                        self.warned_slots.remove(&format!("advance {name}"));
                    }
                    Err(e) => {
                        // Not an error worth repeating: it is retried next loop.
                        tracing::debug!(slot = %name, to = %to, error = %chain(&e), "advancing replication slot");
                        let why = format!("cannot advance it to {to} yet: {}", chain(&e));
                        self.warn_slot_once(format!("advance {name}"), &name, &why);
                    }
                }
            }
        }
        if let (false, true, Some(published), Some(replay), Holder::Replica { leader, .. }) = (
            primary,
            failover_capable,
            v.status.as_ref().and_then(|s| s.slots.as_ref()),
            st.replay_lsn,
            holder,
        ) {
            let plan = slots::logical_on_replica(&permanent, &existing, published, replay, &keep, |s| {
                ignore.iter().any(|r| slot_matches(r, s))
            });
            let (slots_changed, copied) = self.manage_logical_copies(v, leader, &permanent, plan).await;
            changed |= slots_changed;
            // The readiness check reads `existing`, which lacks what was just copied (an
            // advance only makes it conservative: older catalog_xmin values).
            if !copied {
                self.check_logical_readiness(v, leader, &permanent, &existing)
                    .await;
            }
        }
        // An iteration that read no `config` key (a cluster being adopted, or the keyspace
        // lost): the other members have not written their keys yet and their walreceivers may
        // be reconnecting, so an inactive slot says nothing about them. Drop nothing then.
        let no_config = v.config.is_none();
        let mut still_absent = BTreeMap::new();
        for slot in &existing {
            let kept = no_config
                || keep.contains(&slot.name)
                || permanent.slots.contains_key(&slot.name)
                || slot.active
                || slot.slot_type != SlotType::Physical
                || ignore.iter().any(|r| slot_matches(r, slot));
            if kept {
                continue;
            }
            let since = self
                .slot_absent_since
                .get(&slot.name)
                .copied()
                .unwrap_or_else(Instant::now);
            if drop_at_once || since.elapsed() >= ttl {
                match self.pg.drop_slot(&slot.name).await {
                    Ok(()) => {
                        changed = true;
                        tracing::info!(slot = %slot.name, member_slots_ttl = ?ttl, "dropped the replication slot of a member gone for member_slots_ttl")
                    }
                    Err(e) => {
                        tracing::warn!(slot = %slot.name, error = %chain(&e), "dropping replication slot")
                    }
                }
            } else {
                still_absent.insert(slot.name.clone(), since);
            }
        }
        self.slot_absent_since = still_absent;
        let slots = if changed {
            self.pg.slots().await.unwrap_or(existing)
        } else {
            existing
        };
        let position = if primary { st.current_lsn } else { st.replay_lsn };
        let retained = position
            .map(|p| slots::retained_bytes(&slots, p))
            .unwrap_or_default();
        self.status.send_modify(|s| s.slot_retained_bytes = retained);
        Some(SlotsOutcome {
            slots,
            permanent,
            keep_all_members,
            retain,
        })
    }
}
