//! A standby cluster's side effects: its leader (the standby leader) is a replica of the
//! remote primary named by `standby_cluster`, cloned from it when the cluster is new, and
//! re-pointed at it whenever the section changes. The rules that choose these steps are in
//! `decide_standby_cluster` (see `ha::decide`).

use super::{ActError, Observation, Runner};
use crate::config::{DynamicConfig, StandbyCluster};
use crate::dcs::Dcs;
use crate::ha::callbacks::{CallbackAction, CallbackRole};
use crate::ha::decide::PgState;
use crate::ha::view::ClusterView;
use crate::postgres::{PgControl, PgRole, ReplicaMethod, StandbyTarget, StopMode, Upstream};
use crate::types::{MemberState, Role};
use std::collections::BTreeMap;

/// libpq's default port, Patroni's default for `standby_cluster.port`.
const DEFAULT_PORT: u16 = 5432;

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// The `standby_cluster` section when it makes this a standby cluster: the DCS's dynamic
    /// configuration, or the file's `bootstrap.dcs` before one is stored (Patroni reads the
    /// same pair: a new standby cluster is bootstrapped from the file's section).
    pub(super) fn standby_cluster_config(&self, v: Option<&ClusterView>) -> Option<StandbyCluster> {
        let stored = v.and_then(|v| v.config.as_ref()).map(|c| &c.value);
        let parsed;
        let dynamic = match stored {
            Some(d) => d,
            None => {
                parsed = DynamicConfig::from_json_lenient(&self.s.bootstrap_dcs).0;
                &parsed
            }
        };
        dynamic
            .is_standby_cluster()
            .then(|| dynamic.standby_cluster.clone())
            .flatten()
    }

    /// Where the standby leader streams from: `None` when the section names no host (a
    /// standby cluster fed by `restore_command` alone).
    fn remote_target(sc: &StandbyCluster) -> Option<(Upstream, StandbyTarget)> {
        let host = sc.host.as_deref().map(str::trim).filter(|h| !h.is_empty())?;
        let port = sc.port.unwrap_or(DEFAULT_PORT);
        Some((
            Upstream {
                host: host.to_string(),
                port,
            },
            StandbyTarget {
                host: host.to_string(),
                port,
                slot: sc.primary_slot_name.clone().filter(|s| !s.is_empty()),
            },
        ))
    }

    /// The recovery settings of the standby leader: `restore_command`,
    /// `archive_cleanup_command` and `recovery_min_apply_delay` of `standby_cluster`, over
    /// those of `recovery_conf` (they are the standby leader's, not the cascading members').
    pub(super) fn standby_leader_recovery(&self, v: Option<&ClusterView>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(sc) = self.standby_cluster_config(v) else {
            return out;
        };
        if let Some(c) = sc.restore_command.filter(|c| !c.is_empty()) {
            out.insert("restore_command".to_string(), c);
        }
        if let Some(c) = sc.archive_cleanup_command.filter(|c| !c.is_empty()) {
            out.insert("archive_cleanup_command".to_string(), c);
        }
        if let Some(d) = sc.recovery_min_apply_delay {
            out.insert("recovery_min_apply_delay".to_string(), d.to_string());
        }
        out
    }

    /// The role PostgreSQL's files are written for on the standby leader.
    fn standby_leader_role(&self, v: Option<&ClusterView>) -> PgRole {
        PgRole::Standby(
            self.standby_cluster_config(v)
                .as_ref()
                .and_then(Self::remote_target)
                .map(|(_, t)| t),
        )
    }

    /// Whether PostgreSQL's files were last written for the standby leader of the remote
    /// primary as the dynamic configuration names it now (a changed host, port or slot makes
    /// this false, and the decision re-points it).
    pub(super) fn following_remote(&self, v: Option<&ClusterView>) -> bool {
        if !self.standby_leader || self.standby_cluster_config(v).is_none() {
            return false;
        }
        let wanted = self.config_input(v, self.standby_leader_role(v));
        self.written_role.as_ref() == Some(&wanted.role) && self.written_recovery == wanted.recovery
    }

    /// The role published for this member: a replica holding the leader key of a standby
    /// cluster is its standby leader.
    pub(super) fn published_role(&self, role: Role) -> Role {
        if role == Role::Replica && self.standby_leader && self.lease.deadline().is_some() {
            Role::StandbyLeader
        } else {
            role
        }
    }

    /// The create_replica_methods for cloning the remote primary: those of `standby_cluster`
    /// (by name, configured in the `postgresql` section as for any replica), else basebackup.
    fn remote_clone_methods(&self, sc: &StandbyCluster) -> Vec<ReplicaMethod> {
        let Some(names) = sc.create_replica_methods.as_ref().filter(|n| !n.is_empty()) else {
            return ReplicaMethod::default_methods();
        };
        let mut out = vec![];
        for name in names {
            if let Some(m) = self.s.replica_methods.iter().find(|m| m.name() == name) {
                out.push(m.clone());
            } else if name == "basebackup" {
                out.extend(ReplicaMethod::default_methods());
            } else {
                tracing::warn!(method = %name, "standby_cluster.create_replica_methods: no such method configured in postgresql; skipping it");
            }
        }
        if out.is_empty() {
            out = ReplicaMethod::default_methods();
        }
        out
    }

    /// A new standby cluster: clone the remote primary, start as its standby leader, then
    /// publish `initialize` (the remote's system identifier, which is also ours), the dynamic
    /// configuration, and take the leader key.
    pub(super) async fn bootstrap_standby(&mut self, v: Option<&ClusterView>) -> Result<(), ActError> {
        let res = self.bootstrap_standby_steps(v).await;
        if let Err(e) = &res {
            tracing::error!(error = %crate::error::chain(e), "bootstrapping the standby cluster failed: giving the initialize key back");
            let _ = self.pg.stop(StopMode::Immediate).await;
            match self.pg.move_data_dir_aside() {
                Ok(moved) => {
                    tracing::warn!(moved_to = %moved.display(), "the half-made data directory was moved aside")
                }
                Err(e) => {
                    tracing::debug!(error = %crate::error::chain(&e), "moving the data directory aside")
                }
            }
            self.give_back_initialize().await;
        }
        res
    }

    async fn bootstrap_standby_steps(&mut self, v: Option<&ClusterView>) -> Result<(), ActError> {
        let sc = self
            .standby_cluster_config(v)
            .ok_or_else(|| ActError::GaveUp("standby_cluster disappeared from the configuration".into()))?;
        let Some((up, _)) = Self::remote_target(&sc) else {
            return Err(ActError::GaveUp(
                "standby_cluster has no host: a new standby cluster is cloned from the remote primary, \
                 so `standby_cluster.host` is needed to bootstrap one"
                    .into(),
            ));
        };
        self.set_state(MemberState::CreatingReplica);
        tracing::info!(remote = %up, "standby cluster: cloning the remote primary");
        let methods = self.remote_clone_methods(&sc);
        PgControl::clone_from(&*self.pg, &up, &methods, &self.progress).await?;
        self.just_cloned = false;
        self.standby_leader = true;
        let role = self.standby_leader_role(v);
        self.write_pg_config(v, role).await?;
        self.set_state(MemberState::Starting);
        self.pg.start().await?;
        let sysid = match self.pg.status().await {
            Ok(st) => st.system_identifier,
            // A standby can take a while to accept connections: pg_control has it too.
            Err(_) => self.pg.controldata().await?.system_identifier,
        };
        let sysid = sysid.to_string();
        self.finish_bootstrap(&sysid).await?;
        self.following = None;
        self.fire(CallbackAction::OnStart, CallbackRole::StandbyLeader);
        tracing::info!(system_identifier = %sysid, remote = %up, "bootstrapped the standby cluster; this member is its standby leader");
        Ok(())
    }

    /// (Stops and) starts PostgreSQL as the standby leader. A running primary (the cluster
    /// was turned into a standby cluster) is stopped cleanly first, so that its shutdown
    /// checkpoint is the last thing it wrote; then, as for any replica, crash recovery when it
    /// did not stop cleanly and pg_rewind from the remote primary when it diverged (a former
    /// primary cluster whose site was promoted elsewhere, demote-cluster).
    pub(super) async fn start_standby_leader(
        &mut self,
        v: Option<&ClusterView>,
        obs: &Observation,
    ) -> Result<(), ActError> {
        let was_running = matches!(obs.pg, PgState::Running(_) | PgState::Unresponsive);
        if was_running {
            self.stop_pg(StopMode::Fast, true).await?;
        }
        let remote = self
            .standby_cluster_config(v)
            .as_ref()
            .and_then(Self::remote_target)
            .map(|(up, _)| up);
        if let Some(up) = remote {
            if !was_running && obs.control.as_ref().is_some_and(|c| c.needs_crash_recovery()) {
                tracing::info!("PostgreSQL did not shut down cleanly: running crash recovery first");
                self.pg.crash_recovery().await?;
            }
            match self.pg.check_rewind(&up).await {
                Ok(d) if d.needed() => {
                    tracing::info!(remote = %up, decision = ?d, "the data directory diverged from the remote primary's timeline");
                    let me = self.s.me.clone();
                    self.handle_divergence(v, &me, &up, &d).await?;
                }
                Ok(d) => tracing::debug!(decision = ?d, "no rewind needed"),
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "rewind check against the remote primary failed; starting anyway")
                }
            }
        }
        self.standby_leader = true;
        let role = self.standby_leader_role(v);
        self.write_pg_config(v, role).await?;
        self.set_state(MemberState::Starting);
        self.pg.start().await?;
        self.following = None;
        self.not_streaming_since = None;
        self.fire_replica_start(was_running, CallbackRole::StandbyLeader);
        tracing::info!(upstream = ?self.written_role.as_ref().and_then(|r| r.upstream()).map(|t| format!("{}:{}", t.host, t.port)), "started PostgreSQL as the standby leader");
        Ok(())
    }

    /// Points the running replica at the remote primary: it is the standby leader now.
    pub(super) async fn follow_remote(&mut self, v: Option<&ClusterView>) -> Result<(), ActError> {
        self.standby_leader = true;
        let role = self.standby_leader_role(v);
        self.write_pg_config(v, role).await?;
        // primary_conninfo and restore_command are reloadable (PostgreSQL 13 and 14).
        self.pg.reload().await?;
        self.following = None;
        self.not_streaming_since = Some(tokio::time::Instant::now());
        self.fire(CallbackAction::OnRoleChange, CallbackRole::StandbyLeader);
        tracing::info!(upstream = ?self.written_role.as_ref().and_then(|r| r.upstream()).map(|t| format!("{}:{}", t.host, t.port)), "standby leader: following the remote primary");
        Ok(())
    }
}
