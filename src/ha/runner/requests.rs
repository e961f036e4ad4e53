//! The REST API's requests (see [`crate::ha::requests`]) and the stop at shutdown.

use super::{HaSettings, Runner};
use crate::dcs::Dcs;
use crate::error::chain;
use crate::ha::callbacks::{CallbackAction, ScriptCallbacks};
use crate::ha::requests::{ActionOutcome, ApiRequest, RestartConditions};
use crate::postgres::{PgControl, PgRole, PostmasterState, StopMode};
use crate::types::MemberState;
use crate::types::Role;
use pgwarden_raft::Condition;
use std::sync::Arc;
use std::time::Duration;

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// Handles one REST request between iterations (see `api::actions` for the contract).
    pub(super) async fn handle_request(&mut self, req: ApiRequest) {
        match req {
            ApiRequest::Restart { conditions, reply } => {
                let out = self.restart(&conditions).await;
                let _ = reply.send(out);
            }
            ApiRequest::ScheduleRestart {
                conditions,
                at,
                reply,
            } => {
                let free = self.scheduled_restart.is_none();
                if free {
                    tracing::info!(at = %at, "restart scheduled");
                    self.scheduled_restart = Some((at, conditions));
                }
                let _ = reply.send(free);
            }
            ApiRequest::CancelScheduledRestart { reply } => {
                let _ = reply.send(self.scheduled_restart.take().is_some());
            }
            ApiRequest::Reload => {
                // Re-read the configuration file, then rewrite PostgreSQL's configuration
                // from it and the current dynamic config, and reload PostgreSQL.
                if let Some(r) = self.reloader.clone() {
                    match r() {
                        Ok(new) => self.apply_reloaded(new),
                        Err(e) => {
                            tracing::error!(error = %e, "reload: the configuration file is not valid; keeping the running configuration")
                        }
                    }
                }
                // The role stays what it was last written as; only the upstream's address
                // is looked up again.
                let role = match &self.written_role {
                    Some(PgRole::Primary) => PgRole::Primary,
                    // The standby leader's upstream is the remote primary, not a member.
                    Some(r) if self.standby_leader => r.clone(),
                    _ => PgRole::Standby(
                        self.following
                            .clone()
                            .and_then(|l| self.upstream_of(self.last_view.as_ref(), &l).ok())
                            .map(|(_, t)| t),
                    ),
                };
                let view = self.last_view.clone();
                match self.rewrite_config_and_reload(view.as_ref(), role).await {
                    Ok(()) => {
                        tracing::info!("configuration reloaded on request");
                        self.fire(CallbackAction::OnReload, self.cb_role_now());
                    }
                    Err(e) => tracing::warn!(error = %chain(&e), "reload failed"),
                }
            }
            // `force` asks Patroni to cancel an action in progress; this loop handles requests
            // between actions, so there is never one to cancel.
            ApiRequest::Reinitialize {
                force: _,
                from_leader,
                reply,
            } => {
                let v = self.last_view.clone().unwrap_or_default();
                let answer = match v.leader_name() {
                    Some(l) if *l == self.s.me => Err("I am the leader, can not reinitialize".to_string()),
                    None => Err("Cluster has no leader, can not reinitialize".to_string()),
                    Some(_) => {
                        // The data directory is moved aside, never deleted; the next
                        // iteration sees no data and clones from the leader.
                        let res = async {
                            self.stop_pg(StopMode::Immediate, false).await?;
                            self.pg.move_data_dir_aside()
                        }
                        .await;
                        match res {
                            Ok(p) => {
                                tracing::info!(moved_to = %p.display(), "reinitializing: old data directory moved aside");
                                self.following = None;
                                self.rewind_failed = false;
                                // Patroni's `from_leader`: the new copy comes from the leader,
                                // not from a member tagged clonefrom.
                                self.clone_from_leader = from_leader;
                                Ok(())
                            }
                            Err(e) => Err(format!("reinitialize failed: {}", chain(&e))),
                        }
                    }
                };
                let _ = reply.send(answer);
            }
            ApiRequest::Wakeup => {}
        }
    }

    /// Patroni's `ha.restart()`: check the conditions, restart, report.
    pub(super) async fn restart(&mut self, c: &RestartConditions) -> ActionOutcome {
        let st = self.status.borrow().clone();
        let role_ok = c
            .role
            .as_deref()
            .is_none_or(|r| Role::parse(r) == st.role || (r == "primary" && st.role.is_primary()));
        let version_ok = c.postgres_version.is_none_or(|v| self.pg.version().num < v);
        let pending_ok = !c.restart_pending
            || self
                .pg
                .pending_restart()
                .await
                .map(|p| !p.is_empty())
                .unwrap_or(false);
        if !(role_ok && version_ok && pending_ok) {
            return ActionOutcome {
                ok: false,
                message: "restart conditions are not satisfied".into(),
            };
        }
        if st.state == MemberState::Starting {
            return ActionOutcome {
                ok: false,
                message: "postgres is still starting".into(),
            };
        }
        self.set_state(MemberState::Restarting);
        // PostgreSQL is down for part of the restart: disarm the watchdog; the next refresh
        // as primary re-arms it.
        self.lease.watchdog().disable();
        let role = self.cb_role_now();
        if matches!(self.pg.probe(), PostmasterState::Running { .. }) {
            self.callbacks.before_stop(self.timing.retry_timeout).await;
        }
        let limit = c.timeout.unwrap_or(Duration::from_secs(600));
        // The loop does not run during the restart: the lease is kept alive meanwhile, and a
        // lease that cannot be kept stops the restart (and PostgreSQL with it), so that the
        // restarted instance never runs writable without it.
        let lease = self.lease.clone();
        let pg = self.pg.clone();
        let res = match lease
            .keep_alive_while(
                self.timing.loop_wait,
                tokio::time::timeout(limit, pg.restart(StopMode::Fast)),
            )
            .await
        {
            Ok(r) => r,
            Err(lost) => {
                tracing::error!(error = %chain(&lost), "the restart outlived the leader lease: stopping PostgreSQL");
                if let Err(e) = self.demote_stop(StopMode::Immediate).await {
                    tracing::error!(error = %chain(&e), "stopping PostgreSQL after the lease was lost");
                }
                self.set_state(MemberState::RestartFailed);
                return ActionOutcome {
                    ok: false,
                    message: "restart failed".into(),
                };
            }
        };
        match res {
            Ok(Ok(())) => {
                self.set_state(MemberState::Running);
                self.fire(CallbackAction::OnRestart, role);
                tracing::info!("restarted PostgreSQL on request");
                ActionOutcome {
                    ok: true,
                    message: "restarted successfully".into(),
                }
            }
            Ok(Err(e)) => {
                self.set_state(MemberState::RestartFailed);
                tracing::warn!(error = %chain(&e), "restart failed");
                ActionOutcome {
                    ok: false,
                    message: "restart failed".into(),
                }
            }
            Err(_) => ActionOutcome {
                ok: false,
                message: "restart failed".into(),
            },
        }
    }

    /// Applies a re-read configuration file: what a running member can change (tags,
    /// PostgreSQL parameters and pg_hba, addresses published in the member key, replica
    /// methods); a changed name or scope needs a restart and is refused.
    pub(super) fn apply_reloaded(&mut self, new: HaSettings) {
        if new.me != self.s.me || new.prefix != self.s.prefix {
            tracing::error!(
                name = %new.me,
                scope = %new.scope,
                "reload: `name` and `scope` cannot change while running; restart the daemon to apply; nothing was reloaded"
            );
            return;
        }
        let mut changed = vec![];
        if new.tags != self.s.tags || new.failover_priority != self.s.failover_priority {
            changed.push("tags");
        }
        if new.local_parameters != self.s.local_parameters {
            changed.push("postgresql.parameters");
        }
        if new.pg_hba != self.s.pg_hba {
            changed.push("pg_hba");
        }
        if new.pg_ident != self.s.pg_ident {
            changed.push("pg_ident");
        }
        if new.api_url != self.s.api_url || new.conn_url != self.s.conn_url {
            changed.push("connect addresses");
        }
        if new.replica_methods != self.s.replica_methods {
            changed.push("postgresql.create_replica_methods");
        }
        if new.scripts != self.s.scripts {
            if let Some((commands, run_as)) = &new.scripts {
                match ScriptCallbacks::new(commands.clone(), new.scope.clone(), run_as.as_deref()) {
                    Ok(cb) => {
                        // Scripts already running finish under the old set; new events use
                        // the new commands.
                        self.callbacks = Arc::new(cb);
                        changed.push("postgresql.callbacks");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload: the new callbacks cannot be used; keeping the old ones")
                    }
                }
            }
        }
        if let Some((mode, path, margin)) = &new.watchdog {
            if !self.lease.watchdog().configured_as(*mode, path, *margin) {
                // Patroni's reload: the old device is disarmed; an armed primary arms the new
                // one at its next lease refresh (within loop_wait), and demotes there if a
                // required watchdog cannot be armed.
                let new = self.lease.watchdog().reconfigured(*mode, path.clone(), *margin);
                self.lease.set_watchdog(Arc::new(new));
                changed.push("watchdog");
            }
        }
        let timing = self.s.timing;
        self.s = HaSettings { timing, ..new };
        tracing::info!(changed = ?changed, "configuration file reloaded");
    }

    /// At shutdown: stops PostgreSQL (keeping the lease alive meanwhile) and, on the
    /// primary, releases the key so a replica takes over at once instead of waiting for the
    /// lease to run out. PostgreSQL that could not be stopped keeps the key and the watchdog
    /// armed (Patroni's rule): the lease then runs out on its own.
    pub(super) async fn on_shutdown(&mut self) {
        let holds = self.status.borrow().holds_lock;
        // Patroni's rule: a daemon stopped while the cluster is paused leaves PostgreSQL
        // running and the leader key to expire; the operator who paused is in charge (this is
        // how a cluster is handed back to Patroni, or upgraded, without stopping writes).
        // Nothing promotes on its own in a paused cluster, so the running primary has no
        // rival; the lease is forgotten so that neither fence stops it once this process is
        // gone.
        if self.last_view.as_ref().is_some_and(|v| v.paused()) {
            tracing::info!(
                leader = holds,
                "shutting down while the cluster is paused: PostgreSQL is left running and the leader key left to expire"
            );
            self.lease.forget();
            self.lease.watchdog().disable();
            self.callbacks.wait_idle(Duration::from_secs(5)).await;
            return;
        }
        tracing::info!(leader = holds, "shutting down: stopping PostgreSQL");
        let lease = self.lease.clone();
        let stopped = match lease
            .keep_alive_while(self.timing.loop_wait, self.stop_pg(StopMode::Fast, false))
            .await
        {
            Ok(r) => r,
            Err(lost) => {
                tracing::warn!(error = %chain(&lost), "the stop at shutdown outlived the lease: stopping at once");
                self.stop_pg(StopMode::Immediate, true).await
            }
        };
        match stopped {
            Ok(()) if holds => {
                // The replicas received the shutdown checkpoint during the fast stop, so
                // releasing now lets the healthiest take over at once.
                if let Err(e) = self.lease.release().await {
                    tracing::warn!(error = %chain(&e), "releasing the leader key at shutdown");
                }
            }
            Ok(()) => self.lease.watchdog().disable(),
            Err(e) => tracing::warn!(error = %chain(&e), "stopping PostgreSQL at shutdown"),
        }
        let _ = self
            .dcs
            .delete(&self.key(&format!("members/{}", self.s.me)), Condition::Always)
            .await;
        // Let the on_stop script run before the process exits.
        self.callbacks.wait_idle(Duration::from_secs(5)).await;
    }
}
