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
        self.dcs
            .put(
                &self.key(&format!("members/{}", self.s.me)),
                &value,
                Some(self.timing.ttl),
                Condition::Always,
            )
            .await
            .map(|_| ())
    }

    pub(super) fn publish(&mut self, v: &ClusterView, obs: &Observation, dcs_ok: bool) {
        let (pg, sysid) = (&obs.pg, obs.sysid);
        let (state, role) = state_and_role(pg, &self.status.borrow().state);
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
                MemberState::CreatingReplica | MemberState::InitializingNewCluster => current.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
