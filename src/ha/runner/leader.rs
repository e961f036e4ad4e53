//! The leader's upkeep after a successful refresh or promotion, synchronous replication on
//! the primary, and failsafe mode (the leader's `/failsafe` list; a primary's hold without
//! the DCS; a replica following a primary that vouched for itself).

use super::{ActError, Observation, Runner};
use crate::dcs::Dcs;
use crate::ha::failsafe;
use crate::ha::sync::{self, Standby};
use crate::ha::view::{ClusterView, MemberRecord, SyncKey, SyncMode, Versioned};
use crate::ha::watchdog::WatchdogMode;
use crate::postgres::{LocalStatus, PgControl, StopMode};
use crate::types::MemberState;
use crate::types::{Lsn, MemberName};
use pgwarden_raft::Condition;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// What a primary knows about its own synchronous_standby_names.
#[derive(Debug, Default)]
pub(super) struct SyncTrack {
    /// The SSN this process set (`None`: not known, e.g. after a start).
    pub(super) ssn: Option<Option<String>>,
    /// When it was set.
    pub(super) changed_at: Option<Instant>,
    /// The primary's WAL position taken once the change had time to take effect: a
    /// standby that has flushed it holds every commit acknowledged before the change.
    pub(super) mark: Option<Lsn>,
    /// "running without a synchronous standby" was logged.
    pub(super) warned_degraded: bool,
}

/// How long after a reload SSN is taken as in effect in every backend (PostgreSQL
/// processes SIGHUP within milliseconds; this is the margin).
const SSN_SETTLE: Duration = Duration::from_millis(500);

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// The leader's upkeep, each iteration in which it holds a valid lease as a running
    /// primary (after a refresh, and right after its promotion): arm a required watchdog,
    /// restore a lost `initialize` and `config`, keep the slots and publish `status`, keep `/failsafe`, and
    /// manage synchronous replication. Works from the observation taken after acting.
    pub(super) async fn leader_upkeep(
        &mut self,
        v: &ClusterView,
        obs: &Observation,
        st: &LocalStatus,
    ) -> Result<(), ActError> {
        let wd = self.lease.watchdog();
        if !v.paused()
            && wd.mode() != WatchdogMode::Off
            && !wd.is_running()
            && wd.activate(self.lease.watchdog_timing()).is_err()
        {
            // Patroni: demote immediately and release the key.
            tracing::error!("demoting: the required watchdog could not be armed");
            self.demote_stop(StopMode::Immediate).await?;
            self.lease.release().await?;
            return Err(ActError::GaveUp(
                "Demoting self because watchdog could not be activated".into(),
            ));
        }
        // Patroni's repair: the lock holder restores a lost `initialize`.
        let init = v.initialize.as_deref();
        if init.is_none_or(str::is_empty) {
            let cond = match init {
                None => Condition::Absent,
                Some(_) => Condition::ValueEquals(String::new()),
            };
            let sysid = st.system_identifier.to_string();
            if let Ok(r) = self.dcs.put(&self.key("initialize"), &sysid, None, cond).await {
                if r.succeeded {
                    tracing::warn!(system_identifier = %sysid, "restored the missing initialize key");
                }
            }
        }
        // Patroni's other repair: a missing `config` is written again, from the last value
        // this daemon read (the key deleted while it ran) or else from the local bootstrap.dcs
        // section (a keyspace rebuilt after every Raft directory was lost, the daemons
        // restarted). A value that is there but does not parse is left for the operator.
        let config_key = self.key("config");
        if v.config.is_none() && !v.unparsable.iter().any(|(k, _)| *k == config_key) {
            let (text, from) = match &self.known_config {
                Some(c) => (c.to_string(), "the last value this member read"),
                None => (
                    self.s.bootstrap_dcs.to_string(),
                    "the local bootstrap.dcs section",
                ),
            };
            if let Ok(r) = self.dcs.put(&config_key, &text, None, Condition::Absent).await {
                if r.succeeded {
                    tracing::warn!(config = %text, from, "recreated the missing config key");
                }
            }
        }
        if let Some(lsn) = st.current_lsn {
            self.write_status_and_slots(v, lsn, st).await;
        }
        self.write_failsafe_topology(v).await;
        self.manage_sync(v, obs).await
    }

    /// Patroni's pre-promote step in synchronous mode: the new primary writes `sync` naming
    /// itself and no standby (compare-and-swap; losing it aborts the promotion), so nobody
    /// can be promoted after it until a standby provably holds its commits; in strict mode
    /// SSN is `*` before the first commit.
    pub(super) async fn pre_promote_sync(&mut self, v: &ClusterView) -> Result<(), ActError> {
        let mode = v.synchronous_mode();
        if mode == SyncMode::Off {
            return Ok(());
        }
        let s = v.sync_settings();
        let value = SyncKey {
            leader: Some(self.s.me.to_string()),
            sync_standby: None,
            quorum: Some(0),
        };
        let cond = match &v.sync {
            Some(k) => Condition::ModRevisionEquals(k.revision),
            None => Condition::Absent,
        };
        let r = self
            .dcs
            .put(
                &self.key("sync"),
                &serde_json::to_string(&value).unwrap_or_default(),
                None,
                cond,
            )
            .await?;
        if !r.succeeded {
            return Err(ActError::SyncKeyChanged);
        }
        let ssn = sync::ssn_text(
            mode,
            s.strict,
            &sync::Target {
                names: vec![],
                numsync: 0,
            },
        );
        self.pg.set_synchronous_standby_names(ssn.as_deref()).await?;
        self.sync = SyncTrack {
            ssn: Some(ssn),
            changed_at: Some(Instant::now()),
            ..Default::default()
        };
        Ok(())
    }

    /// One round of synchronous replication management on the primary (see `ha::sync`).
    pub(super) async fn manage_sync(&mut self, v: &ClusterView, obs: &Observation) -> Result<(), ActError> {
        if v.config.is_none() {
            // No `config` key was read (a cluster being adopted, or the key deleted): the
            // defaults would say synchronous mode is off and make commits stop waiting for a
            // standby. The leader writes the key back in this iteration; decide on the next.
            return Ok(());
        }
        let mode = v.synchronous_mode();
        if mode == SyncMode::Off {
            if let Some(k) = &v.sync {
                self.dcs
                    .delete(&self.key("sync"), Condition::ModRevisionEquals(k.revision))
                    .await?;
                tracing::info!("synchronous mode is off: removed the sync key");
            }
            if self.sync.ssn != Some(None) {
                self.pg.set_synchronous_standby_names(None).await?;
                self.sync.ssn = Some(None);
            }
            return Ok(());
        }
        let settings = v.sync_settings();
        let Some(primary_lsn) = obs.status.as_ref().and_then(|s| s.current_lsn) else {
            return Ok(());
        };
        if self.sync.mark.is_none() && self.sync.changed_at.is_some_and(|t| t.elapsed() >= SSN_SETTLE) {
            self.sync.mark = Some(primary_lsn);
        }
        let standbys: Vec<Standby> = obs
            .replication
            .iter()
            .filter(|r| r.state.as_deref() == Some("streaming"))
            .filter_map(|r| {
                let name = MemberName::new(r.application_name.clone()).ok()?;
                let m = v.members.get(&name)?;
                // A nostream member does not stream, so is never synchronous (a row with its
                // name is somebody else's connection).
                (m.state == MemberState::Running && !m.tag_true("nostream")).then_some(())?;
                Some(Standby {
                    name: name.to_string(),
                    flush: r.flush_lsn.unwrap_or(Lsn(0)),
                    sync_state: r.sync_state.clone().unwrap_or_default(),
                    priority: member_sync_priority(m),
                })
            })
            .collect();
        let current = v.sync.as_ref().map(|k| &k.value);
        let steps = sync::plan(&sync::PlanInputs {
            me: self.s.me.as_str(),
            settings: &settings,
            key: current,
            standbys: &standbys,
            primary_lsn,
            ssn: self.sync.ssn.as_ref(),
            mark: self.sync.mark,
        });
        tracing::debug!(?standbys, ?current, ssn = ?self.sync.ssn, mark = ?self.sync.mark, %primary_lsn, ?steps, "sync plan");
        let mut revision = v.sync.as_ref().map(|k| k.revision);
        for step in steps {
            match step {
                sync::Step::WriteKey(k) => {
                    let cond = match revision {
                        Some(r) => Condition::ModRevisionEquals(r),
                        None => Condition::Absent,
                    };
                    let r = self
                        .dcs
                        .put(
                            &self.key("sync"),
                            &serde_json::to_string(&k).unwrap_or_default(),
                            None,
                            cond,
                        )
                        .await?;
                    if !r.succeeded {
                        return Err(ActError::SyncKeyChanged);
                    }
                    revision = Some(r.revision);
                    tracing::info!(sync_standby = ?k.sync_standby, quorum = ?k.quorum, "sync key written");
                }
                sync::Step::SetSsn(text) => {
                    self.pg.set_synchronous_standby_names(text.as_deref()).await?;
                    if text.is_none() && !self.sync.warned_degraded {
                        tracing::warn!(
                            "synchronous mode: no synchronous standby is available; commits no longer wait \
                             for a standby (synchronous_mode_strict is off)"
                        );
                        self.sync.warned_degraded = true;
                    }
                    if text.is_some() {
                        self.sync.warned_degraded = false;
                    }
                    self.sync.ssn = Some(text);
                    self.sync.changed_at = Some(Instant::now());
                    self.sync.mark = None;
                }
            }
        }
        Ok(())
    }

    /// The leader keeps /failsafe (members with an API, and itself) while failsafe_mode
    /// is on, writing it only when it changed.
    pub(super) async fn write_failsafe_topology(&mut self, v: &ClusterView) {
        if !v.failsafe_mode() {
            return;
        }
        let want = failsafe::topology(
            v.members.iter().map(|(n, m)| (n, m.api_url.as_str())),
            &self.s.me,
            &self.s.api_url,
        );
        if v.failsafe.as_ref() == Some(&want) {
            return;
        }
        let value = match serde_json::to_string(&want) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "failsafe: cannot encode the member list");
                return;
            }
        };
        match self
            .dcs
            .put(&self.key("failsafe"), &value, None, Condition::Always)
            .await
        {
            // The list this member asks when the DCS fails is the one it last read; what it
            // just wrote is newer, and the DCS may be gone before the next read.
            Ok(_) => {
                if let Some(last) = self.last_view.as_mut() {
                    last.failsafe = Some(want);
                }
            }
            Err(e) => tracing::warn!(error = %e, "failsafe: cannot write /failsafe"),
        }
    }

    /// Primary side of failsafe, on a DCS error: ask every other member listed in the last
    /// known /failsafe; if all accept, extend the lease from the moment of asking (each
    /// member's window starts later, when it answers) and feed the watchdog. False when
    /// failsafe_mode is off, the cluster is paused, this member is not listed, or anyone
    /// did not accept in time.
    pub(super) async fn failsafe_hold(&mut self) -> bool {
        let Some(v) = self.last_view.clone() else {
            return false;
        };
        if !v.failsafe_mode() || v.paused() {
            return false;
        }
        let Some(ask) = failsafe::to_ask(v.failsafe.as_ref(), &self.s.me) else {
            tracing::warn!("failsafe mode: this member is not listed in /failsafe, so it cannot stay primary without the DCS");
            return false;
        };
        let asked = Instant::now();
        let Some(until) = self.lease.deadline() else {
            return false;
        };
        let left = until.saturating_duration_since(asked);
        if left.is_zero() {
            return false;
        }
        let body = failsafe::notice(&self.s.me, &self.s.conn_url, &self.s.api_url, None);
        let ok = failsafe::ask_all(
            &self.http,
            self.s.api_auth.as_ref(),
            &ask,
            &body,
            left.min(Duration::from_secs(4)),
        )
        .await;
        if !ok {
            self.failsafe.release();
            tracing::warn!("failsafe mode: not every member in /failsafe accepted; this primary must stop");
            return false;
        }
        self.lease.extend(asked);
        self.failsafe.held(asked);
        if !self.failsafe_logged {
            tracing::warn!(
                members = ask.len(),
                "DCS unreachable: continuing to run as the leader because failsafe mode is enabled and all members are accessible"
            );
            self.failsafe_logged = true;
        }
        true
    }

    /// Replica side of failsafe: when the leader key is free but a primary vouched for
    /// itself over POST /failsafe within ttl, treat it as the leader (follow it, do not
    /// race), as Patroni does.
    pub(super) fn inject_failsafe_leader(&self, v: &mut ClusterView) {
        if v.leader.is_some() || !v.failsafe_mode() {
            return;
        }
        if let Some(r) = self.failsafe.leader(Instant::now()) {
            if r.leader != self.s.me {
                tracing::info!(leader = %r.leader, "no leader key, but the primary confirmed itself over POST /failsafe: following it");
                v.leader = Some(Versioned {
                    value: r.leader,
                    revision: 0,
                });
            }
        }
    }
}

/// Patroni's `sync_priority` from a member's tags: `nosync` means 0, default 1.
pub(super) fn member_sync_priority(m: &MemberRecord) -> i64 {
    if m.tag_true("nosync") {
        return 0;
    }
    m.tags.get("sync_priority").and_then(Value::as_i64).unwrap_or(1)
}
