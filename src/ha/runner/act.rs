//! Carrying out one [`Action`] of [`decide`](crate::ha::decide) on the observation it was
//! decided on. Nothing here asks PostgreSQL for its state again: what it was is in the
//! [`Observation`]. Every step that can outlast the lease (starting a primary, promoting, a
//! graceful stop) runs under [`LeaderLease::keep_alive_while`](crate::ha::lease::LeaderLease::keep_alive_while).

use super::{ActError, Observation, Runner, SyncTrack};
use crate::config::{DynamicConfig, GucValue};
use crate::dcs::Dcs;
use crate::error::chain;
use crate::ha::callbacks::{CallbackAction, CallbackRole, PrePromote};
use crate::ha::decide::{clone_source, Action, DemoteMode, PgState};
use crate::ha::slots::{self, slot_name, Permanent};
use crate::ha::sync;
use crate::ha::view::{ClusterView, HistoryRow, SyncMode};
use crate::postgres::{ConfigInput, PgControl, PgRole, StandbyTarget, StopMode, Upstream};
use crate::types::MemberName;
use crate::types::{MemberState, Role};
use pgwarden_raft::Condition;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long the archive recovery after a custom bootstrap may take before the bootstrap
/// is given up (Patroni waits without a bound; a restore of a large archive takes hours).
const RECOVERY_AFTER_BOOTSTRAP_LIMIT: Duration = Duration::from_secs(6 * 3600);

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// Carries out one action.
    pub(super) async fn act(
        &mut self,
        a: &Action,
        v: Option<&ClusterView>,
        obs: &Observation,
    ) -> Result<(), ActError> {
        match a {
            Action::RaceInitialize => {
                if let Some(why) = &self.custom_bootstrap_failed {
                    return Err(ActError::GaveUp(format!(
                        "not bootstrapping again: the custom bootstrap failed ({why}); fix it and restart this daemon"
                    )));
                }
                let r = self
                    .dcs
                    .put(&self.key("initialize"), "", None, Condition::Absent)
                    .await?;
                if !r.succeeded {
                    return Err(ActError::BootstrapRaceLost);
                }
                tracing::info!("won the bootstrap race: initialising a new cluster");
            }
            Action::Bootstrap => self.bootstrap_or_give_up().await?,
            Action::AcquireLeader => {
                if !self.lease.acquire().await? {
                    return Err(ActError::LeaderKeyTaken);
                }
                tracing::info!("acquired the leader key");
            }
            Action::RefreshLeader => {
                if !self.lease.refresh().await? {
                    if matches!(obs.pg, PgState::Running(_)) {
                        tracing::warn!("lost the leader key: demoting at once");
                        self.demote_stop(StopMode::Immediate).await?;
                    }
                    // Nothing feeds it any more: a watchdog left armed would reset the host.
                    self.lease.watchdog().disable();
                    return Err(ActError::LeaderKeyTaken);
                }
            }
            Action::ReleaseLeader => self.lease.release().await?,
            Action::ClearFailover { revision } => {
                self.dcs
                    .put(
                        &self.key("failover"),
                        "{}",
                        None,
                        Condition::ModRevisionEquals(*revision),
                    )
                    .await?;
            }
            Action::Clone { from, clonefrom } => {
                // Patroni's reinitialize `--from-leader`: a copy of the leader itself, by
                // pg_basebackup only (a backup restore would not be the leader's state).
                let from_leader = std::mem::take(&mut self.clone_from_leader);
                let from = if from_leader {
                    from
                } else {
                    clone_source(clonefrom, from, rand::random::<usize>())
                };
                let methods = if from_leader {
                    crate::postgres::ReplicaMethod::default_methods()
                } else {
                    self.s.replica_methods.clone()
                };
                let (up, _) = self.upstream_of(v, from)?;
                self.set_state(MemberState::CreatingReplica);
                tracing::info!(from = %from, upstream = %up, "cloning a replica");
                PgControl::clone_from(&*self.pg, &up, &methods, &self.progress).await?;
                self.just_cloned = true;
            }
            Action::CloneWithoutLeader => {
                self.set_state(MemberState::CreatingReplica);
                tracing::info!("cloning a replica with no leader, by the methods marked no_leader");
                PgControl::clone_without_source(&*self.pg, &self.s.replica_methods, &self.progress).await?;
                self.just_cloned = true;
            }
            Action::StartPrimary => self.start_primary(v).await?,
            Action::StartReplica { leader } => self.start_replica(leader.as_ref(), v, obs).await?,
            Action::Follow { leader } => {
                let (_, target) = self.upstream_of(v, leader)?;
                self.standby_leader = false;
                self.write_pg_config(v, PgRole::Standby(Some(target))).await?;
                // primary_conninfo is reloadable since PostgreSQL 13.
                self.pg.reload().await?;
                self.following = Some(leader.clone());
                self.not_streaming_since = Some(Instant::now());
                let action = if self.role_changes_to_replica() {
                    CallbackAction::OnRoleChange
                } else {
                    CallbackAction::OnReload
                };
                self.fire(action, CallbackRole::Replica);
                tracing::info!(leader = %leader, "following a new leader");
            }
            Action::Promote => self.promote(v, obs).await?,
            Action::BootstrapStandby => self.bootstrap_standby(v).await?,
            Action::StartStandbyLeader => self.start_standby_leader(v, obs).await?,
            Action::FollowRemote => self.follow_remote(v).await?,
            Action::Demote(mode) => self.demote(mode.clone(), v).await?,
            Action::Fatal(why) => return Err(ActError::Fatal(why.clone())),
        }
        Ok(())
    }

    /// Bootstraps; on failure gives the `initialize` key back and moves the half-made data
    /// directory aside (never deletes it), so another member can try.
    async fn bootstrap_or_give_up(&mut self) -> Result<(), ActError> {
        let res = self.bootstrap().await;
        if let Err(e) = &res {
            tracing::error!(error = %chain(e), "bootstrap failed; giving up the initialize key");
            self.give_back_initialize().await;
            let _ = self.pg.stop(StopMode::Immediate).await;
            // Only a directory this bootstrap made is moved aside: initdb refuses a directory
            // that is not empty or not ours before it writes anything, and such a directory
            // may hold the cluster.
            let untouched = matches!(
                e,
                ActError::Pg(
                    crate::postgres::Error::DataDirNotEmpty { .. }
                        | crate::postgres::Error::DataDirOwner { .. }
                )
            );
            let mut moved = None;
            if untouched {
                tracing::error!("the data directory was left as it was: this bootstrap did not make it");
            } else {
                match self.pg.move_data_dir_aside() {
                    Ok(p) => {
                        tracing::error!(moved_to = %p.display(), "the failed data directory was moved aside");
                        moved = Some(p);
                    }
                    Err(e2) => tracing::warn!(error = %e2, "could not move the failed data directory aside"),
                }
            }
            if let Some(m) = &self.s.bootstrap_method {
                let mut why = format!("bootstrap method `{}`: {}", m.name, chain(e));
                if let Some(p) = moved {
                    why.push_str(&format!(
                        "; the data directory was moved aside to {}",
                        p.display()
                    ));
                }
                self.set_state(MemberState::CustomBootstrapFailed);
                self.status
                    .send_modify(|s| s.bootstrap_failure = Some(why.clone()));
                self.custom_bootstrap_failed = Some(why);
            }
            return res;
        }
        self.fire(CallbackAction::OnStart, CallbackRole::Primary);
        Ok(())
    }

    async fn bootstrap(&mut self) -> Result<(), ActError> {
        match self.s.bootstrap_method.clone() {
            None => {
                self.set_state(MemberState::InitializingNewCluster);
                self.pg.initdb(&self.s.initdb).await?;
                self.write_pg_config(None, PgRole::Primary).await?;
                self.pg.start().await?;
            }
            Some(m) => self.custom_bootstrap(&m).await?,
        }
        self.pg.create_roles().await?;
        if let Some(cmd) = &self.s.post_bootstrap {
            self.pg.run_post_bootstrap(cmd).await?;
        }
        let st = self.pg.status().await?;
        let sysid = st.system_identifier.to_string();
        self.finish_bootstrap(&sysid).await?;
        tracing::info!(system_identifier = %sysid, "bootstrapped a new cluster; this member is the leader");
        Ok(())
    }

    /// The end of every bootstrap, of a primary cluster or a standby one: records the system
    /// identifier in the `initialize` key this member reserved (empty until now), stores the
    /// dynamic configuration from `bootstrap.dcs` unless one is already there (a cluster
    /// re-initialised after a DCS wipe keeps the operator's), and takes the leader lease.
    pub(super) async fn finish_bootstrap(&mut self, sysid: &str) -> Result<(), ActError> {
        self.dcs
            .put(
                &self.key("initialize"),
                sysid,
                None,
                Condition::ValueEquals(String::new()),
            )
            .await?;
        self.dcs
            .put(
                &self.key("config"),
                &self.s.bootstrap_dcs.to_string(),
                None,
                Condition::Absent,
            )
            .await?;
        self.lease.take_over().await?;
        Ok(())
    }

    /// Hands the reserved (still empty) `initialize` key back after a failed bootstrap, so
    /// that another member, or this one on its next iteration, can try.
    pub(super) async fn give_back_initialize(&self) {
        let _ = self
            .dcs
            .delete(&self.key("initialize"), Condition::ValueEquals(String::new()))
            .await;
    }

    /// Patroni's custom bootstrap: the method's command fills the data directory (a restore
    /// from a backup), then the first start is an archive recovery when `recovery_conf` is
    /// given (recovery.signal and those settings) or when `keep_existing_recovery_conf` keeps
    /// the command's own recovery.signal; otherwise a plain start as primary. The bootstrap
    /// goes on (roles, `initialize`, the leader key) once PostgreSQL has left recovery, which
    /// needs `recovery_target_action: promote` when a target is set.
    async fn custom_bootstrap(&mut self, m: &crate::postgres::CustomBootstrap) -> Result<(), ActError> {
        self.set_state(MemberState::RunningCustomBootstrapScript);
        let left_signal = match self.pg.custom_bootstrap(m).await {
            Ok(s) => s,
            Err(e) => {
                self.set_state(MemberState::CustomBootstrapFailed);
                return Err(e.into());
            }
        };
        let recover = if !m.recovery_conf.is_empty() {
            let mut input = self.config_input(None, PgRole::Standby(None));
            input.recovery = m.recovery_conf.clone();
            self.pg.write_config(&input).await?;
            true
        } else {
            self.write_pg_config(None, PgRole::Primary).await?;
            m.keep_existing_recovery_conf && left_signal
        };
        if recover {
            self.pg.archive_recovery_signal()?;
        }
        self.set_state(MemberState::StartingAfterCustomBootstrap);
        self.pg.start().await?;
        if recover {
            let limit = RECOVERY_AFTER_BOOTSTRAP_LIMIT;
            let deadline = Instant::now() + limit;
            loop {
                match self.pg.status().await {
                    Ok(st) if !st.in_recovery => break,
                    _ if Instant::now() >= deadline => {
                        self.set_state(MemberState::CustomBootstrapFailed);
                        return Err(ActError::GaveUp(format!(
                            "custom bootstrap `{}`: PostgreSQL was still in recovery after {}s; set \
                             recovery_target_action: promote (the default, pause, never ends recovery)",
                            m.name,
                            limit.as_secs()
                        )));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            tracing::info!(method = %m.name, "archive recovery after the custom bootstrap ended");
            // The recovery settings have done their work: the primary's own configuration.
            self.write_pg_config(None, PgRole::Primary).await?;
            self.pg.reload().await?;
        }
        Ok(())
    }

    /// Starts PostgreSQL as the primary of the key we hold.
    async fn start_primary(&mut self, v: Option<&ClusterView>) -> Result<(), ActError> {
        self.following = None;
        self.standby_leader = false;
        if let Some(v) = v {
            // Commits must wait for the listed standbys from the first one on.
            let mode = v.synchronous_mode();
            if mode != SyncMode::Off {
                let s = v.sync_settings();
                let mine = v
                    .sync
                    .as_ref()
                    .map(|k| &k.value)
                    .filter(|k| k.leader.as_deref() == Some(self.s.me.as_str()));
                let ssn = sync::ssn_from_key(mode, s.strict, mine);
                self.pg.set_synchronous_standby_names(ssn.as_deref()).await?;
                self.sync = SyncTrack {
                    ssn: Some(ssn),
                    changed_at: Some(Instant::now()),
                    ..Default::default()
                };
            }
        }
        self.write_pg_config(v, PgRole::Primary).await?;
        self.set_state(MemberState::Starting);
        self.start_primary_keeping_the_lease(v).await?;
        self.fire(CallbackAction::OnStart, CallbackRole::Primary);
        tracing::info!("started PostgreSQL as primary");
        Ok(())
    }

    /// Starts PostgreSQL on the leader (after a crash: through its crash recovery) while
    /// keeping the lease alive, for at most `primary_start_timeout` (Patroni's rule). When that
    /// runs out, or is 0, and a healthy replica could take over, PostgreSQL is stopped and the
    /// key released so a failover happens instead. A lease that cannot be kept stops the start.
    async fn start_primary_keeping_the_lease(&mut self, v: Option<&ClusterView>) -> Result<(), ActError> {
        let limit = Duration::from_secs(
            v.map_or(ClusterView::default().dynamic().primary_start_timeout(), |v| {
                v.dynamic().primary_start_timeout()
            })
            .into(),
        );
        let failover_possible = v.is_some_and(|v| {
            v.members
                .iter()
                .any(|(n, m)| *n != self.s.me && m.is_failover_candidate())
        });
        if limit.is_zero() && failover_possible {
            self.lease.release().await?;
            return Err(self.gave_up(limit, "primary_start_timeout is 0 and a replica can take over"));
        }
        // The time limit counts from the first attempt (or the first observation of a
        // postmaster that did not answer), never from this retry.
        let since = *self.primary_start_since.get_or_insert_with(Instant::now);
        let left = limit.saturating_sub(since.elapsed());
        let pg = self.pg.clone();
        let start = async {
            if failover_possible {
                tokio::time::timeout(left, pg.start()).await.ok()
            } else {
                Some(pg.start().await)
            }
        };
        let lease = self.lease.clone();
        match lease.keep_alive_while(self.timing.loop_wait, start).await {
            Ok(Some(Ok(()))) => Ok(()),
            // Patroni's post_recover: a start that failed gives the key up at once when a
            // replica can take over, rather than retrying for primary_start_timeout.
            Ok(Some(Err(e))) if failover_possible => {
                tracing::error!(error = %chain(&e), "PostgreSQL failed to start as primary");
                let _ = self.pg.stop(StopMode::Immediate).await;
                self.lease.release().await?;
                Err(self.gave_up(limit, "PostgreSQL failed to start as primary"))
            }
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(None) => {
                let _ = self.pg.stop(StopMode::Immediate).await;
                self.lease.release().await?;
                Err(self.gave_up(limit, "PostgreSQL did not start within primary_start_timeout"))
            }
            Err(lost) => {
                let _ = self.pg.stop(StopMode::Immediate).await;
                self.lease.forget();
                self.lease.watchdog().disable();
                Err(lost.into())
            }
        }
    }

    fn gave_up(&self, limit: Duration, why: &str) -> ActError {
        tracing::warn!(timeout = ?limit, "{why}: releasing the leader key so a replica takes over");
        ActError::GaveUp(format!("{why}: released the leader key"))
    }

    /// Starts PostgreSQL as a replica of `leader` (or of nobody): a former primary is first
    /// brought to a consistent state (crash recovery when it did not stop cleanly, pg_rewind
    /// when it diverged), a fresh clone is started as it is.
    async fn start_replica(
        &mut self,
        leader: Option<&MemberName>,
        v: Option<&ClusterView>,
        obs: &Observation,
    ) -> Result<(), ActError> {
        let was_running = matches!(obs.pg, PgState::Running(_) | PgState::Unresponsive);
        if was_running {
            self.stop_pg(StopMode::Fast, true).await?;
        }
        self.standby_leader = false;
        let target = match leader {
            Some(l) if std::mem::take(&mut self.just_cloned) => Some(self.upstream_of(v, l)?.1),
            Some(l) => {
                let (up, target) = self.upstream_of(v, l)?;
                // pg_control as observed; a member that was running has just stopped cleanly.
                if !was_running && obs.control.as_ref().is_some_and(|c| c.needs_crash_recovery()) {
                    tracing::info!(
                        "this former primary did not shut down cleanly: running crash recovery first"
                    );
                    self.pg.crash_recovery().await?;
                }
                match self.pg.check_rewind(&up).await {
                    Ok(d) if d.needed() => self.handle_divergence(v, l, &up, &d).await?,
                    Ok(d) => tracing::debug!(decision = ?d, "no rewind needed"),
                    Err(e) => tracing::warn!(error = %chain(&e), "rewind check failed; starting anyway"),
                }
                Some(target)
            }
            None => {
                self.just_cloned = false;
                None
            }
        };
        self.write_pg_config(v, PgRole::Standby(target)).await?;
        self.set_state(MemberState::Starting);
        self.pg.start().await?;
        self.demoted_for_switchover = false;
        self.following = leader.cloned();
        self.not_streaming_since = None;
        self.fire_replica_start(was_running, CallbackRole::Replica);
        tracing::info!(leader = ?leader, "started PostgreSQL as a replica");
        Ok(())
    }

    /// A fast demoting stop, cut short by an immediate one after `limit` when one is given.
    /// An immediate stop (SIGQUIT) rather than Patroni's SIGKILL: the postmaster stops waiting
    /// for the standbys just the same, and takes its backends down with it.
    async fn demote_stop_within(&mut self, limit: Option<Duration>) -> Result<(), crate::postgres::Error> {
        let Some(limit) = limit else {
            return self.demote_stop(StopMode::Fast).await;
        };
        match tokio::time::timeout(limit, self.demote_stop(StopMode::Fast)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    timeout = ?limit,
                    "primary_stop_timeout passed while stopping in synchronous mode: stopping PostgreSQL at once"
                );
                self.demote_stop(StopMode::Immediate).await
            }
        }
    }

    /// Diverged data: rewind, move aside (the next iteration clones) or stay stopped, by
    /// `use_pg_rewind` and the `remove_data_directory_*` flags (see `ha::rejoin`).
    pub(super) async fn handle_divergence(
        &mut self,
        v: Option<&ClusterView>,
        leader: &MemberName,
        up: &Upstream,
        d: &crate::postgres::RewindDecision,
    ) -> Result<(), ActError> {
        use crate::ha::rejoin::{OnDivergence, RejoinPolicy};
        let dynamic = v
            .and_then(|v| v.config.as_ref())
            .and_then(|c| c.value.postgresql.as_ref())
            .and_then(|p| p.use_pg_rewind);
        let policy = RejoinPolicy::resolve(
            self.s.use_pg_rewind,
            dynamic,
            self.s.remove_data_directory_on_rewind_failure,
            self.s.remove_data_directory_on_diverged_timelines,
        );
        let cannot_rewind = matches!(d, crate::postgres::RewindDecision::NeedsClone { .. });
        let mut step = policy.on_divergence(self.rewind_failed || cannot_rewind);
        if step == OnDivergence::Rewind {
            tracing::info!(decision = ?d, leader = %leader, "rewinding from the new leader");
            match self.pg.rewind(up).await {
                // pg_rewind also ends with success when it finds nothing to do; the check
                // again makes sure this data now follows the leader's history.
                Ok(()) => match self.pg.check_rewind(up).await {
                    Ok(after) if after.needed() => {
                        tracing::error!(decision = ?after, "pg_rewind ended but the data still diverges from the leader's history");
                        step = policy.after_rewind_failure();
                        if step == OnDivergence::StayStopped {
                            self.rewind_failed = true;
                        }
                    }
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(e.into()),
                },
                Err(e @ crate::postgres::Error::RewindFailed { .. }) => {
                    tracing::error!(error = %chain(&e), "pg_rewind failed");
                    step = policy.after_rewind_failure();
                    if step == OnDivergence::StayStopped {
                        self.rewind_failed = true;
                    }
                }
                // Preconditions (the leader's post-promote checkpoint not done yet, ...):
                // tried again next iteration.
                Err(e) => return Err(e.into()),
            }
        }
        match step {
            OnDivergence::Rewind => Ok(()),
            OnDivergence::Reinitialize => {
                let moved = self.pg.move_data_dir_aside()?;
                self.rewind_failed = false;
                tracing::warn!(
                    moved_to = %moved.display(),
                    "the data directory diverged from the leader's and was moved aside (remove_data_directory_on_*): a new replica is cloned next"
                );
                Err(ActError::Diverged(format!(
                    "diverged data moved aside to {}; cloning next",
                    moved.display()
                )))
            }
            OnDivergence::StayStopped => Err(ActError::Diverged(format!(
                "the data directory diverged from {leader}'s timeline ({d:?}); {}: PostgreSQL stays stopped. \
                 Reinitialize this member (pgwardenctl reinit), or set postgresql.remove_data_directory_on_diverged_timelines",
                if cannot_rewind {
                    "pg_rewind cannot rewind between two histories of the same timeline number"
                } else if self.rewind_failed {
                    "pg_rewind failed and remove_data_directory_on_rewind_failure is off"
                } else {
                    "use_pg_rewind is off"
                }
            ))),
        }
    }

    /// Promotes this replica, which holds the key: pre_promote, the `sync` key, `pg_promote()`
    /// under the lease, the callback, the history row, the post-promote checkpoint.
    async fn promote(&mut self, v: Option<&ClusterView>, obs: &Observation) -> Result<(), ActError> {
        self.pre_promote_hooks().await?;
        if let Some(v) = v {
            self.pre_promote_sync(v).await?;
        }
        if let Some(unsafe_copies) = self.logical_pending.take().filter(|p| !p.is_empty()) {
            let names: Vec<&String> = unsafe_copies.keys().collect();
            tracing::warn!(slots = ?names, "logical replication slots that might be unsafe to use after the promotion: the old primary may have removed catalog rows they need");
        }
        let lease = self.lease.clone();
        let pg = self.pg.clone();
        match lease.keep_alive_while(self.timing.loop_wait, pg.promote()).await {
            // A promotion that failed (or did not finish in time) leaves a replica: nothing
            // below (the primary role, the history row) may be published for it.
            Ok(promoted) => promoted?,
            Err(lost) => {
                // pg_promote() may have gone through: never leave a writable instance without
                // the lease.
                self.demote_stop(StopMode::Immediate).await?;
                return Err(lost.into());
            }
        }
        self.standby_leader = false;
        // Health checks answer from this at once (GET /primary is 200 the moment PostgreSQL
        // accepts writes), not at the end of the iteration.
        // The new timeline comes with it, from the promoted instance itself (GET /patroni must
        // not show a primary on the old timeline).
        let now = self.pg.status().await.ok();
        self.status.send_modify(|s| {
            s.role = Role::Primary;
            s.state = MemberState::Running;
            s.replication_state = None;
            if let Some(st) = &now {
                s.timeline = Some(st.timeline.0);
                s.xlog = Some(serde_json::json!({"location": st.current_lsn.map(|l| l.0)}));
            }
        });
        self.fire(CallbackAction::OnRoleChange, CallbackRole::Primary);
        self.following = None;
        if let Some(b) = &obs.status {
            let mut history = v.map(|v| v.history.clone()).unwrap_or_default();
            // The switch as the new timeline's history file records it (what Patroni writes,
            // and what the diverged-replica rule compares replicas with); the last position
            // observed before the promotion when the file cannot be read.
            let (ended, lsn) = now
                .as_ref()
                .and_then(|st| self.pg.last_switch(st.timeline))
                .map_or(
                    (b.timeline.0, b.receive_lsn.max(b.replay_lsn).map_or(0, |l| l.0)),
                    |(t, l)| (t.0, l.0),
                );
            history.push(HistoryRow::new(
                ended,
                lsn,
                "no recovery target specified",
                Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)),
                Some(self.s.me.to_string()),
            ));
            let _ = self
                .dcs
                .put(
                    &self.key("history"),
                    &serde_json::to_string(&history).unwrap_or_default(),
                    None,
                    Condition::Always,
                )
                .await;
        }
        crate::ha::counters::COUNTERS.promotion();
        tracing::info!("promoted to primary");
        // Others can pg_rewind from us only once the post-promote checkpoint is done.
        if let Err(e) = self.pg.checkpoint().await {
            tracing::warn!(error = %chain(&e), "post-promote checkpoint");
        }
        Ok(())
    }

    /// Stops being the primary.
    async fn demote(&mut self, mode: DemoteMode, v: Option<&ClusterView>) -> Result<(), ActError> {
        tracing::info!(mode = ?mode, "demoting");
        match mode {
            DemoteMode::Graceful => {
                // A fast stop writes the shutdown checkpoint and waits for the walsenders to
                // send it, so the candidate has all our WAL; the lease is kept alive
                // meanwhile, and an immediate stop follows if it cannot be.
                // Patroni's primary_stop_timeout: in synchronous mode a stop that waits too long
                // for the standbys is cut short (an immediate stop), trading the last commits'
                // wait for availability; 0 (the default) never cuts it.
                let limit = v
                    .filter(|v| v.synchronous_mode() != SyncMode::Off)
                    .map(|v| v.dynamic().primary_stop_timeout())
                    .filter(|t| *t > 0)
                    .map(|t| Duration::from_secs(t.into()));
                let lease = self.lease.clone();
                match lease
                    .keep_alive_while(self.timing.loop_wait, self.demote_stop_within(limit))
                    .await
                {
                    // PostgreSQL that could not be stopped keeps the key (Patroni's rule): it
                    // may still be a running primary, so nobody else may take over yet.
                    Ok(stopped) => stopped?,
                    Err(lost) => {
                        tracing::warn!(error = %chain(&lost), "the graceful stop outlived the lease: stopping at once");
                        self.demote_stop(StopMode::Immediate).await?;
                    }
                }
                self.lease.release().await?;
                self.demoted_for_switchover = true;
            }
            DemoteMode::ImmediateNoLock => {
                self.lease.forget();
                self.demote_stop(StopMode::Immediate).await?;
            }
            DemoteMode::Offline => {
                self.lease.forget();
                self.demote_stop(StopMode::Fast).await?;
                self.write_pg_config(v, PgRole::Standby(None)).await?;
            }
        }
        Ok(())
    }

    /// Before promoting: the `pre_promote` script, then a trial of the watchdog. A failing script (or one
    /// that outlives the lease) releases the leader key and keeps this member out of the race
    /// for ttl (Patroni's back-off), so another member is chosen; in `required` mode a
    /// watchdog that cannot be armed releases the key too.
    ///
    /// Unlike Patroni, the script runs before the watchdog is armed and before `/sync` is
    /// rewritten: the loop is blocked while it runs and cannot feed the watchdog, and a
    /// failed promotion must not leave `/sync` naming a member that then backs off (in
    /// synchronous mode no other member could be promoted).
    async fn pre_promote_hooks(&mut self) -> Result<(), ActError> {
        // The script may run until shortly before the lease runs out; the key is then
        // refreshed before anything irreversible happens.
        let lease_left = self
            .lease
            .deadline()
            .map(|u| u.saturating_duration_since(Instant::now()))
            .unwrap_or(self.timing.retry_timeout);
        let limit = lease_left
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let fail = match self.callbacks.pre_promote(limit).await {
            Ok(PrePromote::NotConfigured) => None,
            Ok(PrePromote::Succeeded) => {
                if !self.lease.refresh().await? {
                    return Err(ActError::LeaderKeyTaken);
                }
                None
            }
            Err(e) => Some(format!(
                "Promotion cancelled because the pre-promote script failed: {}",
                chain(&e)
            )),
        };
        if let Some(why) = fail {
            tracing::warn!(reason = %why, "releasing the leader key voluntarily; not racing for ttl");
            self.race_backoff_until = Some(Instant::now() + self.timing.ttl);
            self.lease.release().await?;
            return Err(ActError::GaveUp(why));
        }
        // The watchdog is armed once the promotion has succeeded (by the leader's upkeep that
        // follows it), so that a long promotion cannot reset the host. Whether it can be armed
        // at all is tried now, opening and closing the device, so that in `required` mode a
        // member whose watchdog does not work is never promoted.
        let wd = self.lease.watchdog();
        let usable = wd.activate(self.lease.watchdog_timing()).is_ok();
        wd.disable();
        if !usable {
            self.lease.release().await?;
            return Err(ActError::GaveUp(
                "Not promoting self because watchdog could not be activated".into(),
            ));
        }
        Ok(())
    }

    /// The leader's PostgreSQL address, and what a standby of it writes as its upstream.
    pub(super) fn upstream_of(
        &self,
        v: Option<&ClusterView>,
        leader: &MemberName,
    ) -> Result<(Upstream, StandbyTarget), ActError> {
        let m = v
            .and_then(|v| v.members.get(leader))
            .ok_or_else(|| ActError::NoMemberKey(leader.clone()))?;
        let (host, port) = m.pg_address().ok_or_else(|| ActError::NoConnUrl {
            member: leader.clone(),
            conn_url: m.conn_url.clone(),
        })?;
        Ok((
            Upstream {
                host: host.clone(),
                port,
            },
            StandbyTarget {
                host,
                port,
                slot: Some(slot_name(&self.s.me)),
            },
        ))
    }

    /// What PostgreSQL's configuration files are written from, for `role`: the dynamic
    /// configuration (the file's `bootstrap.dcs` before one is stored) and the local settings.
    pub(super) fn config_input(&self, v: Option<&ClusterView>, role: PgRole) -> ConfigInput {
        // `nostream`: a standby that replays from the archive only (restore_command), with
        // no primary_conninfo and no slot, whichever member it follows.
        let role = match role {
            PgRole::Standby(Some(_)) if self.nostream() => PgRole::Standby(None),
            other => other,
        };
        let bootstrap;
        let dynamic = match v.and_then(|v| v.config.as_ref()) {
            Some(c) => &c.value,
            None => {
                bootstrap = DynamicConfig::from_json_lenient(&self.s.bootstrap_dcs).0;
                &bootstrap
            }
        };
        let pg = dynamic.postgresql.as_ref();
        let dcs_parameters = pg
            .and_then(|p| p.parameters.as_ref())
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            .unwrap_or_default();
        let mut recovery: BTreeMap<String, String> = pg
            .and_then(|p| p.recovery_conf.as_ref())
            .map(|o| o.iter().map(|(k, v)| (k.clone(), GucValue::text(v))).collect())
            .unwrap_or_default();
        recovery.extend(self.s.recovery_conf.clone());
        if self.standby_leader && matches!(role, PgRole::Standby(_)) {
            recovery.extend(self.standby_leader_recovery(v));
        }
        let mut local_parameters = self.s.local_parameters.clone();
        // A replica holding copies of logical slots must tell the primary which catalog rows
        // they still need, or the copies are unusable after a failover (Patroni enforces
        // this too, over any configured value).
        if matches!(role, PgRole::Standby(_)) && self.failover_capable() {
            let permanent = slots::permanent_slots(dynamic);
            if permanent
                .slots
                .values()
                .any(|p| matches!(p, Permanent::Logical { .. }))
            {
                local_parameters.insert("hot_standby_feedback".into(), "on".into());
            }
        }
        // pg_hba as in Patroni: the local file's lines win, else the dynamic configuration's,
        // else the built-in default (never `trust`, never open to every address).
        let pg_hba = if !self.s.pg_hba.is_empty() {
            self.s.pg_hba.clone()
        } else {
            pg.and_then(|p| p.pg_hba.clone())
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| self.s.default_pg_hba.clone())
        };
        let pg_ident = if !self.s.pg_ident.is_empty() {
            self.s.pg_ident.clone()
        } else {
            pg.and_then(|p| p.pg_ident.clone()).unwrap_or_default()
        };
        ConfigInput {
            dcs_parameters,
            local_parameters,
            pg_hba,
            pg_ident,
            role,
            recovery,
        }
    }

    /// Writes PostgreSQL's configuration for `role` and remembers the role, so a reload
    /// keeps it.
    pub(super) async fn write_pg_config(
        &mut self,
        v: Option<&ClusterView>,
        role: PgRole,
    ) -> Result<(), ActError> {
        let input = self.config_input(v, role);
        self.pg.write_config(&input).await?;
        self.written_role = Some(input.role);
        self.written_recovery = input.recovery;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::publish::tests::{put, runner_a, P};
    use crate::dcs::{Dcs, MemDcs};
    use crate::postgres::fake::FakePg;
    use crate::postgres::PostmasterState;
    use crate::types::{Lsn, Role, TimelineId};
    use serde_json::json;
    use std::sync::Arc;

    async fn cluster(dcs: &MemDcs) {
        put(dcs, "initialize", "7000000000000000001".into()).await;
        put(
            dcs,
            "config",
            json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10}).to_string(),
        )
        .await;
    }

    /// A promotion whose pg_promote() fails leaves a replica: the iteration fails, and neither
    /// the primary role nor a history row is published for it.
    #[tokio::test]
    async fn a_failed_promotion_is_never_published_as_a_primary() {
        let dcs = Arc::new(MemDcs::new());
        cluster(&dcs).await;
        let pg = Arc::new(FakePg::new());
        pg.with_state(|s| {
            // No process can have this pid: the fence thread never finds one.
            s.postmaster = PostmasterState::Running { pid: i32::MAX };
            s.status.in_recovery = true;
            s.status.current_lsn = None;
            s.status.receive_lsn = Some(Lsn(0x300_0000));
            s.status.replay_lsn = Some(Lsn(0x300_0000));
            s.status.timeline = TimelineId(1);
        });
        pg.fail("promote");
        let mut r = runner_a(dcs.clone(), pg.clone());
        assert!(
            r.iteration().await.is_err(),
            "the failed promotion was not reported"
        );
        assert_ne!(r.status.borrow().role, Role::Primary, "published as a primary");
        assert!(
            dcs.get(&format!("{P}history")).await.unwrap().is_none(),
            "a history row for a promotion that failed"
        );
    }

    /// primary_stop_timeout in synchronous mode: a switchover's fast stop that hangs (waiting
    /// for a synchronous standby) is cut short by an immediate stop; before, it waited until
    /// the lease could not be kept.
    #[tokio::test]
    async fn config_state_applied_primary_stop_timeout_cuts_a_hanging_stop() {
        let dcs = Arc::new(MemDcs::new());
        put(&dcs, "initialize", "7000000000000000001".into()).await;
        put(
            &dcs,
            "config",
            json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10,
                   "synchronous_mode": true, "primary_stop_timeout": 1})
            .to_string(),
        )
        .await;
        put(&dcs, "leader", "a".into()).await;
        put(
            &dcs,
            "members/b",
            json!({"conn_url": "postgres://127.0.0.1:5433/postgres", "api_url": "http://127.0.0.1:1/patroni",
                   "state": "running", "role": "replica", "xlog_location": 0x300_0000})
            .to_string(),
        )
        .await;
        put(
            &dcs,
            "sync",
            json!({"leader": "a", "sync_standby": "b"}).to_string(),
        )
        .await;
        put(
            &dcs,
            "failover",
            json!({"leader": "a", "member": "b"}).to_string(),
        )
        .await;
        let pg = Arc::new(FakePg::new());
        pg.with_state(|s| {
            s.postmaster = PostmasterState::Running { pid: i32::MAX };
            s.status.in_recovery = false;
            s.status.current_lsn = Some(Lsn(0x300_0000));
            s.status.timeline = TimelineId(1);
            s.graceful_stop_hangs = true;
        });
        let mut r = runner_a(dcs.clone(), pg.clone());
        let started = std::time::Instant::now();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(8), r.iteration())
            .await
            .expect("the hanging stop was not cut short");
        assert!(started.elapsed() < std::time::Duration::from_secs(8));
        let calls = pg.calls();
        let fast = calls.iter().position(|c| format!("{c:?}") == "Stop(Fast)");
        let immediate = calls.iter().position(|c| format!("{c:?}") == "Stop(Immediate)");
        assert!(fast.is_some() && immediate > fast, "{calls:?}");
    }

    /// A stopped member with data that diverged from leader `b`'s timeline.
    async fn diverged(dcs: &MemDcs, pg: &FakePg) {
        cluster(dcs).await;
        put(dcs, "leader", "b".into()).await;
        put(
            dcs,
            "members/b",
            json!({"conn_url": "postgres://127.0.0.1:5433/postgres", "api_url": "http://127.0.0.1:1/patroni",
                   "state": "running", "role": "primary", "xlog_location": 0x400_0000, "timeline": 2})
            .to_string(),
        )
        .await;
        pg.with_state(|s| {
            s.postmaster = PostmasterState::Stopped;
            s.has_data = true;
            s.rewind_decision = crate::postgres::RewindDecision::Needed {
                reason: "fake divergence".into(),
            };
        });
    }

    /// A runner for member `a`, diverged from leader `b` (see [`diverged`]), with
    /// `use_pg_rewind` set.
    async fn diverged_runner(
        use_pg_rewind: bool,
    ) -> (Arc<FakePg>, crate::ha::runner::Runner<MemDcs, FakePg>) {
        let dcs = Arc::new(MemDcs::new());
        let pg = Arc::new(FakePg::new());
        diverged(&dcs, &pg).await;
        let mut r = runner_a(dcs, pg.clone());
        r.s.use_pg_rewind = Some(use_pg_rewind);
        (pg, r)
    }

    fn called(pg: &FakePg, what: &str) -> bool {
        pg.calls().iter().any(|c| format!("{c:?}").starts_with(what))
    }

    /// use_pg_rewind: false (Patroni's meaning): diverged data is not rewound (it used to be,
    /// whatever the file said) and, without remove_data_directory_on_diverged_timelines,
    /// PostgreSQL is not started on it.
    #[tokio::test]
    async fn config_state_applied_use_pg_rewind_false_never_rewinds() {
        let (pg, mut r) = diverged_runner(false).await;
        assert!(
            r.iteration().await.is_err(),
            "a diverged member must report why it stays down"
        );
        assert!(called(&pg, "CheckRewind"), "{:?}", pg.calls());
        assert!(!called(&pg, "Rewind"), "pg_rewind ran: {:?}", pg.calls());
        assert!(
            !called(&pg, "Start"),
            "started on diverged data: {:?}",
            pg.calls()
        );
        assert!(!called(&pg, "MoveAside"), "{:?}", pg.calls());

        // With remove_data_directory_on_diverged_timelines: moved aside (then cloned).
        let (pg, mut r) = diverged_runner(false).await;
        r.s.remove_data_directory_on_diverged_timelines = true;
        let _ = r.iteration().await;
        assert!(called(&pg, "MoveAside"), "{:?}", pg.calls());
        assert!(!called(&pg, "Rewind"), "{:?}", pg.calls());
    }

    /// Data that diverged on a timeline of the leader's number through another switchpoint
    /// (two clusters of one system identifier): pg_rewind would see nothing to do, so it is
    /// not run; the member stays stopped with the reason, or is moved aside and cloned when
    /// remove_data_directory_on_diverged_timelines says so.
    #[tokio::test]
    async fn rewind_same_timeline_other_history_is_never_streamed() {
        for remove in [false, true] {
            let dcs = Arc::new(MemDcs::new());
            let pg = Arc::new(FakePg::new());
            diverged(&dcs, &pg).await;
            pg.with_state(|s| {
                s.rewind_decision = crate::postgres::RewindDecision::NeedsClone {
                    reason: "fake: timeline 2 through another switchpoint".into(),
                }
            });
            let mut r = runner_a(dcs.clone(), pg.clone());
            r.s.use_pg_rewind = Some(true);
            r.s.remove_data_directory_on_diverged_timelines = remove;
            let res = r.iteration().await;
            assert!(!called(&pg, "Rewind"), "{:?}", pg.calls());
            assert!(
                !called(&pg, "Start"),
                "started on diverged data: {:?}",
                pg.calls()
            );
            assert_eq!(called(&pg, "MoveAside"), remove, "{:?}", pg.calls());
            if !remove {
                let e = format!("{:?}", res.expect_err("the reason is reported"));
                assert!(e.contains("same timeline number"), "{e}");
            }
        }
    }

    /// pg_rewind that ends with success but leaves the data diverged (it does when it finds
    /// the timelines equal) is a failed rewind: PostgreSQL is not started on that data.
    #[tokio::test]
    async fn rewind_that_changes_nothing_is_checked_and_counts_as_failed() {
        let (pg, mut r) = diverged_runner(true).await;
        pg.with_state(|s| s.rewind_changes_nothing = true);
        assert!(r.iteration().await.is_err());
        assert!(called(&pg, "Rewind"), "{:?}", pg.calls());
        assert!(
            !called(&pg, "Start"),
            "started on diverged data: {:?}",
            pg.calls()
        );
        assert!(!called(&pg, "MoveAside"), "{:?}", pg.calls());

        // A rewind that works is followed by the start as a replica.
        let (pg, mut r) = diverged_runner(true).await;
        r.iteration().await.expect("rewound and started");
        assert!(called(&pg, "Rewind") && called(&pg, "Start"), "{:?}", pg.calls());
    }

    /// A failed pg_rewind moves the data aside only with remove_data_directory_on_rewind_failure
    /// (it always did); otherwise the member stays stopped and the rewind is not retried.
    #[tokio::test]
    async fn config_state_applied_rewind_failure_reinitializes_only_when_configured() {
        let (pg, mut r) = diverged_runner(true).await;
        pg.with_state(|s| s.rewind_fails = true);
        assert!(r.iteration().await.is_err());
        assert!(called(&pg, "Rewind"), "{:?}", pg.calls());
        assert!(!called(&pg, "MoveAside"), "{:?}", pg.calls());
        assert!(!called(&pg, "Start"), "{:?}", pg.calls());
        let rewinds = |pg: &FakePg| {
            pg.calls()
                .iter()
                .filter(|c| format!("{c:?}").starts_with("Rewind"))
                .count()
        };
        let _ = r.iteration().await;
        assert_eq!(rewinds(&pg), 1, "a failed rewind is not retried on the same data");

        let dcs = Arc::new(MemDcs::new());
        let pg = Arc::new(FakePg::new());
        diverged(&dcs, &pg).await;
        pg.with_state(|s| s.rewind_fails = true);
        let mut r = runner_a(dcs.clone(), pg.clone());
        r.s.remove_data_directory_on_rewind_failure = true;
        let _ = r.iteration().await;
        assert!(called(&pg, "MoveAside"), "{:?}", pg.calls());
    }

    /// A switchover whose graceful stop fails keeps the leader key: PostgreSQL may still run
    /// as the primary, so the candidate must not take over (Patroni's rule).
    #[tokio::test]
    async fn a_graceful_demotion_that_cannot_stop_postgres_keeps_the_key() {
        let dcs = Arc::new(MemDcs::new());
        cluster(&dcs).await;
        put(&dcs, "leader", "a".into()).await;
        put(
            &dcs,
            "members/b",
            json!({"conn_url": "postgres://127.0.0.1:5433/postgres", "api_url": "http://127.0.0.1:1/patroni",
                   "state": "running", "role": "replica", "xlog_location": 0x300_0000})
            .to_string(),
        )
        .await;
        put(
            &dcs,
            "failover",
            json!({"leader": "a", "member": "b"}).to_string(),
        )
        .await;
        let pg = Arc::new(FakePg::new());
        pg.with_state(|s| {
            s.postmaster = PostmasterState::Running { pid: i32::MAX };
            s.status.in_recovery = false;
            s.status.current_lsn = Some(Lsn(0x300_0000));
            s.status.timeline = TimelineId(1);
        });
        pg.fail("stop");
        let mut r = runner_a(dcs.clone(), pg.clone());
        assert!(r.iteration().await.is_err(), "the failed stop was not reported");
        let leader = dcs.get(&format!("{P}leader")).await.unwrap().map(|kv| kv.value);
        assert_eq!(
            leader.as_deref(),
            Some("a"),
            "the key was released although PostgreSQL could not be stopped"
        );
    }

    /// `reinit --from-leader` (Patroni's `from_leader`): the copy made after a reinitialize
    /// comes from the leader, although a member tagged `clonefrom` would otherwise be the
    /// source; only that one clone, the next one prefers `clonefrom` again.
    #[tokio::test]
    async fn ctl_reinit_from_leader_clones_from_the_leader_not_clonefrom() {
        let dcs = Arc::new(MemDcs::new());
        cluster(&dcs).await;
        put(&dcs, "leader", "b".into()).await;
        put(
            &dcs,
            "members/b",
            json!({"conn_url": "postgres://127.0.0.1:5433/postgres", "api_url": "http://127.0.0.1:1/patroni",
                   "state": "running", "role": "primary", "xlog_location": 0x300_0000})
            .to_string(),
        )
        .await;
        put(
            &dcs,
            "members/c",
            json!({"conn_url": "postgres://127.0.0.1:5434/postgres", "api_url": "http://127.0.0.1:1/patroni",
                   "state": "running", "role": "replica", "xlog_location": 0x300_0000,
                   "tags": {"clonefrom": true}})
            .to_string(),
        )
        .await;
        let cloned_from = |pg: &FakePg| -> Vec<u16> {
            pg.calls()
                .iter()
                .filter_map(|c| match c {
                    crate::postgres::fake::Call::Clone(up) => Some(up.port),
                    _ => None,
                })
                .collect()
        };
        for (from_leader, port) in [(true, 5433), (false, 5434)] {
            let pg = Arc::new(FakePg::new());
            pg.with_state(|s| {
                s.postmaster = PostmasterState::Stopped;
                s.has_data = false;
            });
            let mut r = runner_a(dcs.clone(), pg.clone());
            r.clone_from_leader = from_leader;
            let _ = r.iteration().await;
            assert_eq!(cloned_from(&pg), vec![port], "from_leader {from_leader}");
            assert!(!r.clone_from_leader, "the flag outlived its clone");
        }
    }
}
