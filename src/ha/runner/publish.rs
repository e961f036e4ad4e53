//! Publishing: the member key in the DCS and the [`NodeStatus`] the REST API serves.

use super::{Observation, Runner};
use crate::dcs::{Dcs, DcsError};
use crate::ha::decide::PgState;
use crate::ha::status::ReplicationInfo;
use crate::ha::view::{ClusterView, MemberRecord};
use crate::postgres::PgControl;
use crate::types::{MemberState, Role};
use pgwarden_raft::Condition;
use serde_json::json;
use tokio::time::Instant;

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// Writes this member's key (with the lease's ttl, so a dead member's key goes away).
    pub(super) async fn write_member(&self, obs: &Observation) -> Result<(), DcsError> {
        let (state, role) = state_and_role(&obs.pg, &self.status.borrow().state);
        let role = self.published_role(role);
        let mut m = MemberRecord {
            conn_url: self.s.conn_url.clone(),
            api_url: self.s.api_url.clone(),
            state,
            role,
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            tags: self.s.tags.clone(),
            scheduled_restart: self.scheduled_restart.as_ref().map(|(at, c)| c.published(at)),
            ..Default::default()
        };
        if let Some(st) = &obs.status {
            m.timeline = Some(st.timeline.0);
            if st.in_recovery {
                m.receive_lsn = st.receive_lsn.map(|l| l.0);
                m.replay_lsn = st.replay_lsn.map(|l| l.0);
                m.xlog_location = st.receive_lsn.max(st.replay_lsn).map(|l| l.0);
                m.replication_state = Some(if obs.streaming {
                    "streaming".into()
                } else {
                    "in archive recovery".into()
                });
            } else {
                m.xlog_location = st.current_lsn.map(|l| l.0);
            }
        }
        if !obs.pending_restart.is_empty() {
            m.pending_restart = Some(true);
            m.pending_restart_reason = serde_json::to_value(&obs.pending_restart).ok();
        }
        let value = serde_json::to_string(&m).unwrap_or_default();
        let key = self.key(&format!("members/{}", self.s.me));
        self.dcs
            .put(&key, &value, Some(self.timing.ttl), Condition::Always)
            .await?;
        self.lease.remember_member_record(key, value);
        Ok(())
    }

    pub(super) fn publish(&mut self, v: &ClusterView, obs: &Observation, dcs_ok: bool) {
        if dcs_ok {
            self.report_refused_config(v);
        }
        let (pg, sysid) = (&obs.pg, obs.sysid);
        let (state, role) = state_and_role(pg, &self.status.borrow().state);
        let role = self.published_role(role);
        let lease_until = self.lease.deadline();
        let watchdog_failed = !self.lease.watchdog().is_healthy(self.lease.watchdog_timing());
        let server_version = self.pg.version().num;
        if let PgState::Running(r) = pg {
            if !r.primary && !r.streaming {
                self.not_streaming_since.get_or_insert(Instant::now());
            } else {
                self.not_streaming_since = None;
            }
        }
        self.status.send_modify(|s| {
            s.state = state;
            s.role = role;
            s.timeline = obs.status.as_ref().map(|st| st.timeline.0);
            s.database_system_identifier = sysid.map(|x| x.to_string());
            s.server_version = obs.status.as_ref().map(|_| server_version);
            s.postmaster_start_time = obs
                .status
                .as_ref()
                .and_then(|st| st.postmaster_start)
                .and_then(postmaster_start_text);
            s.xlog = obs.status.as_ref().map(|st| {
                if st.in_recovery {
                    json!({
                        "received_location": st.receive_lsn.map(|l| l.0),
                        "replayed_location": st.replay_lsn.map(|l| l.0),
                        "replayed_timestamp": st.replay_timestamp.and_then(replayed_timestamp_text),
                        "paused": st.replay_paused,
                    })
                } else {
                    json!({"location": st.current_lsn.map(|l| l.0)})
                }
            });
            s.replication_state = obs.status.as_ref().filter(|st| st.in_recovery).map(|_| {
                if obs.streaming {
                    "streaming".to_string()
                } else {
                    "in archive recovery".to_string()
                }
            });
            s.replication = obs
                .replication
                .iter()
                .map(|r| ReplicationInfo {
                    usename: r.usename.clone(),
                    application_name: r.application_name.clone(),
                    client_addr: r.client_addr.clone(),
                    state: r.state.clone(),
                    sync_state: r.sync_state.clone(),
                    sync_priority: r.sync_priority,
                })
                .collect();
            if dcs_ok {
                s.pause = v.paused();
                s.cluster_unlocked = v.leader.is_none();
                s.leader = v.leader_name().map(|l| l.to_string());
                s.dcs_last_seen = Some(chrono::Utc::now().timestamp());
                s.lag = match (&obs.status, v.optime) {
                    (Some(st), Some(opt)) if st.in_recovery => {
                        Some(opt.saturating_sub(st.receive_lsn.max(st.replay_lsn).map_or(0, |l| l.0)))
                    }
                    _ => None,
                };
            }
            // From the lease itself, not the view read before acting: a key acquired or
            // released in this iteration shows at once.
            s.lease_until = lease_until;
            s.holds_lock = lease_until.is_some();
            s.watchdog_failed = watchdog_failed;
            s.tags = self.s.tags.clone();
            s.pending_restart = !obs.pending_restart.is_empty();
            s.pending_restart_reason = (!obs.pending_restart.is_empty())
                .then(|| serde_json::to_value(&obs.pending_restart).ok())
                .flatten();
            s.last_loop = Some(Instant::now());
        });
    }
}

/// Patroni's `postmaster_start_time`: Python's `isoformat(sep=' ')` of the timestamp, here
/// always in UTC ("2026-11-22 04:36:36.123456+00:00").
fn postmaster_start_text(micros: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_micros(micros)?;
    Some(t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string())
}

/// Patroni's `replayed_timestamp`: `to_char(..., 'YYYY-MM-DD HH24:MI:SS.MS TZ')`, in UTC.
fn replayed_timestamp_text(micros: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_micros(micros)?;
    Some(t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
}

fn state_and_role(pg: &PgState, current: &MemberState) -> (MemberState, Role) {
    match pg {
        PgState::NoData => {
            let s = match current {
                MemberState::CreatingReplica
                | MemberState::InitializingNewCluster
                | MemberState::RunningCustomBootstrapScript
                | MemberState::CustomBootstrapFailed => current.clone(),
                _ => MemberState::Stopped,
            };
            (s, Role::Uninitialized)
        }
        PgState::Stopped { clean: true, .. } => (MemberState::Stopped, Role::Replica),
        PgState::Stopped { clean: false, .. } => (MemberState::Crashed, Role::Replica),
        PgState::Unresponsive => (MemberState::Starting, Role::Replica),
        PgState::Unknown(_) => (MemberState::Stopped, Role::Replica),
        PgState::Running(r) => (
            MemberState::Running,
            if r.primary { Role::Primary } else { Role::Replica },
        ),
    }
}

/// The runner's warned-once set holds, under this prefix and the `config` key's revision, that
/// the refused settings of that revision were reported.
const REFUSED_CONFIG: &str = "config refused at revision ";

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// Reports the settings of the `config` key that the loop refuses ([`ClusterView::refused_config`]):
    /// an error per setting, once per revision of the key, naming the key and what to do. The
    /// loop acts as if they were absent, so the cluster keeps running as it is; a revision
    /// without them clears the record, so that storing one again is reported again.
    fn report_refused_config(&mut self, v: &ClusterView) {
        let refused = v.refused_config();
        if refused.is_empty() {
            self.warned_slots.retain(|k| !k.starts_with(REFUSED_CONFIG));
            return;
        }
        let rev = v.config.as_ref().map_or(0, |c| c.revision);
        if !self.warned_slots.insert(format!("{REFUSED_CONFIG}{rev}")) {
            return;
        }
        for e in refused {
            tracing::error!(
                key = e.key().unwrap_or_default(),
                revision = rev,
                "the DCS `config` key holds a setting pgwarden refuses, ignored: the cluster keeps running as it is. {e}"
            );
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::dcs::MemDcs;
    use crate::ha::runner::{HaSettings, Timing};
    use crate::ha::status::{DaemonInfo, NodeStatus};
    use crate::postgres::fake::FakePg;
    use crate::types::MemberName;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    /// The scope prefix of [`runner_a`].
    pub(in crate::ha::runner) const P: &str = "/service/t/";

    /// Member `a` of scope `t` (ttl 30, loop_wait 10, no watchdog, no scripts) on `dcs` and `pg`.
    pub(in crate::ha::runner) fn runner_a(dcs: Arc<MemDcs>, pg: Arc<FakePg>) -> Runner<MemDcs, FakePg> {
        let settings = HaSettings {
            prefix: P.into(),
            scope: "t".into(),
            me: MemberName::new("a").unwrap(),
            api_url: "http://127.0.0.1:1/patroni".into(),
            conn_url: "postgres://127.0.0.1:5432/postgres".into(),
            timing: Timing {
                ttl: Duration::from_secs(30),
                loop_wait: Duration::from_secs(10),
                retry_timeout: Duration::from_secs(10),
            },
            safety_margin: Duration::from_secs(2),
            tags: BTreeMap::new(),
            failover_priority: 1,
            initdb: vec![],
            bootstrap_dcs: json!({}),
            pg_hba: vec![],
            pg_ident: vec![],
            use_pg_rewind: None,
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
            default_pg_hba: vec![],
            local_parameters: BTreeMap::new(),
            recovery_conf: BTreeMap::new(),
            post_bootstrap: None,
            replica_methods: vec![],
            bootstrap_method: None,
            api_auth: None,
            scripts: None,
            watchdog: None,
        };
        let info = DaemonInfo {
            version: "test".into(),
            scope: "t".into(),
            name: "a".into(),
        };
        let (status, _) = tokio::sync::watch::channel(NodeStatus::initial(info, false));
        Runner::new(dcs, pg, settings, status)
    }

    /// Writes `<P><key>` = `value` (no TTL, unconditionally).
    pub(in crate::ha::runner) async fn put(dcs: &MemDcs, key: &str, value: String) {
        dcs.put(&format!("{P}{key}"), &value, None, Condition::Always)
            .await
            .unwrap();
    }

    /// Patroni's text forms of the postmaster start and last replay times.
    #[test]
    fn timestamps_as_patroni_prints_them() {
        assert_eq!(
            postmaster_start_text(1_700_000_000_123_456).as_deref(),
            Some("2023-11-14 22:13:20.123456+00:00")
        );
        assert_eq!(
            replayed_timestamp_text(1_700_000_000_123_456).as_deref(),
            Some("2023-11-14 22:13:20.123 UTC")
        );
    }

    /// A standby cluster through the runner: the primary holding the key when
    /// `standby_cluster` appears (demote-cluster) restarts as the standby leader of the
    /// remote primary and is published as `standby_leader`; it stays so (no restart, no
    /// promotion) while the section is unchanged, is re-pointed by a reload when the host
    /// changes, and is promoted when the section is removed (promote-cluster).
    #[tokio::test(flavor = "current_thread")]
    async fn standby_runner_demotes_follows_the_remote_and_promotes_on_removal() {
        use crate::postgres::fake::Call;
        use crate::postgres::PostmasterState;
        use crate::types::{Lsn, Role, TimelineId};

        let dcs = Arc::new(MemDcs::new());
        let config = |extra: serde_json::Value| {
            let mut c = json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c.to_string()
        };
        put(&dcs, "initialize", "7000000000000000001".into()).await;
        put(
            &dcs,
            "config",
            config(
                json!({"standby_cluster": {"host": "10.0.0.9", "port": 5433, "primary_slot_name": "dc2",
                                              "restore_command": "cp /a/%f %p"}}),
            ),
        )
        .await;
        put(&dcs, "leader", "a".into()).await;
        let pg = Arc::new(FakePg::new());
        pg.with_state(|s| {
            // No process can have this pid: the fence thread never finds one.
            s.postmaster = PostmasterState::Running { pid: i32::MAX };
            s.status.in_recovery = false;
            s.status.current_lsn = Some(Lsn(0x300_0000));
            s.status.timeline = TimelineId(1);
        });
        let mut runner = runner_a(dcs.clone(), pg.clone());
        let written = |pg: &FakePg| {
            pg.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::WriteConfig(i) => Some(i),
                    _ => None,
                })
                .next_back()
        };

        runner.iteration().await.unwrap();
        let calls = pg.calls();
        assert!(calls.iter().any(|c| matches!(c, Call::Stop(_))), "{calls:?}");
        assert!(calls.iter().any(|c| matches!(c, Call::Start)), "{calls:?}");
        let w = written(&pg).expect("no configuration written");
        let t = w.role.upstream().expect("no upstream");
        assert_eq!(
            (t.host.as_str(), t.port, t.slot.as_deref()),
            ("10.0.0.9", 5433, Some("dc2"))
        );
        assert_eq!(
            w.recovery.get("restore_command").map(String::as_str),
            Some("cp /a/%f %p")
        );
        // PostgreSQL came back in recovery.
        pg.with_state(|s| {
            s.status.in_recovery = true;
            s.status.receive_lsn = Some(Lsn(0x300_0000));
            s.status.replay_lsn = Some(Lsn(0x300_0000));
        });
        pg.clear_calls();
        runner.iteration().await.unwrap();
        runner.iteration().await.unwrap();
        let calls = pg.calls();
        assert!(
            !calls.iter().any(|c| matches!(
                c,
                Call::Stop(_) | Call::Start | Call::Promote | Call::WriteConfig(_)
            )),
            "the standby leader was acted on: {calls:?}"
        );
        assert_eq!(runner.status.borrow().role, Role::StandbyLeader);
        let member = dcs.get(&format!("{P}members/a")).await.unwrap().unwrap().value;
        assert!(member.contains(r#""role":"standby_leader""#), "{member}");

        // Another remote host: re-pointed with a reload, never restarted.
        put(
            &dcs,
            "config",
            config(json!({"standby_cluster": {"host": "10.0.0.10,10.0.0.11"}})),
        )
        .await;
        runner.iteration().await.unwrap();
        let calls = pg.calls();
        assert!(calls.iter().any(|c| matches!(c, Call::Reload)), "{calls:?}");
        assert!(
            !calls.iter().any(|c| matches!(c, Call::Stop(_) | Call::Promote)),
            "{calls:?}"
        );
        let w = written(&pg).unwrap();
        assert_eq!(
            w.role.upstream().map(|t| (t.host.as_str(), t.port)),
            Some(("10.0.0.10,10.0.0.11", 5432))
        );
        assert!(!w.recovery.contains_key("restore_command"), "{:?}", w.recovery);

        // promote-cluster: the section is removed and the standby leader is promoted.
        pg.clear_calls();
        put(&dcs, "config", config(json!({}))).await;
        runner.iteration().await.unwrap();
        let calls = pg.calls();
        assert!(calls.iter().any(|c| matches!(c, Call::Promote)), "{calls:?}");
        let history = dcs.get(&format!("{P}history")).await.unwrap().map(|kv| kv.value);
        assert!(history.is_some_and(|h| h.contains("\"a\"")), "no history row");
    }
}
