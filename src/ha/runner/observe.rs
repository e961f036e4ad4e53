//! Observing: PostgreSQL once per iteration ([`Observation`]) and, when the leader key is
//! free, the peers' `GET /patroni`.

use super::{Runner, STREAMING_GRACE};
use crate::dcs::Dcs;
use crate::ha::decide::{PeerStatus, PgState, Running};
use crate::ha::view::ClusterView;
use crate::postgres::{ControlData, LocalStatus, PgControl, PostmasterState};
use crate::types::Lsn;
use serde_json::Value;
use std::collections::BTreeMap;

/// What PostgreSQL reported in one observation: the state [`decide`](crate::ha::decide)
/// reads, and the raw facts the actions, the member key and the REST document use. Taken
/// once before deciding and once after acting; nothing in between queries PostgreSQL's
/// state again.
pub struct Observation {
    /// The state as the decision sees it.
    pub pg: PgState,
    /// The system identifier (from SQL when running, from pg_control when stopped).
    pub sysid: Option<u64>,
    /// pg_control, read when PostgreSQL is not running.
    pub control: Option<ControlData>,
    /// What a running PostgreSQL reports about itself.
    pub status: Option<LocalStatus>,
    /// The primary's walsenders.
    pub replication: Vec<crate::postgres::ReplicationRow>,
    /// A standby's WAL receiver is streaming.
    pub streaming: bool,
    /// Parameters whose new value waits for a restart.
    pub pending_restart: BTreeMap<String, crate::postgres::PendingChange>,
}

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// Observes PostgreSQL: its state, system identifier and the raw facts for the member key.
    pub(super) async fn observe(&self) -> Observation {
        let mut obs = Observation {
            pg: PgState::NoData,
            sysid: None,
            control: None,
            status: None,
            replication: vec![],
            streaming: false,
            pending_restart: BTreeMap::new(),
        };
        // pg_controldata (a child process) is read only when PostgreSQL is not running;
        // a running instance reports its system identifier over SQL.
        obs.pg = match self.pg.probe() {
            PostmasterState::Running { .. } => match self.pg.status().await {
                Ok(st) => {
                    obs.status = Some(st.clone());
                    let wal = if st.in_recovery {
                        st.receive_lsn.max(st.replay_lsn).unwrap_or(Lsn(0))
                    } else {
                        st.current_lsn.unwrap_or(Lsn(0))
                    };
                    let mut streaming = false;
                    let mut receiver_timeline = None;
                    if st.in_recovery {
                        if let Ok(Some(w)) = self.pg.wal_receiver().await {
                            streaming = w.status == "streaming";
                            receiver_timeline = Some(w.received_tli.0).filter(|t| *t > 0);
                        }
                    } else if let Ok(rows) = self.pg.replication().await {
                        obs.replication = rows;
                    }
                    obs.streaming = streaming;
                    obs.pending_restart = self.pg.pending_restart().await.unwrap_or_default();
                    PgState::Running(Running {
                        primary: !st.in_recovery,
                        timeline: st.timeline.0,
                        wal,
                        following: if st.in_recovery {
                            self.following.clone()
                        } else {
                            None
                        },
                        streaming,
                        // A nostream member never streams: that is no reason to restart it.
                        // Never before the leader's lease could have run out (ttl, plus a
                        // loop for its last write): when the leader died, its key expires
                        // first and this replica takes part in the race with PostgreSQL up,
                        // instead of being restarted just then.
                        stalled: st.in_recovery
                            && !streaming
                            && !self.nostream()
                            && self.not_streaming_since.is_some_and(|t| {
                                t.elapsed() > STREAMING_GRACE.max(self.timing.ttl + self.timing.loop_wait)
                            }),
                        receiver_timeline,
                        replayed: st.replay_lsn.unwrap_or(Lsn(0)),
                    })
                }
                Err(_) => PgState::Unresponsive,
            },
            PostmasterState::Stopped | PostmasterState::Crashed { .. } => match self.pg.has_data() {
                Ok(false) => PgState::NoData,
                Err(e) => PgState::Unknown(crate::error::chain(&e)),
                Ok(true) => match self.pg.controldata().await {
                    Err(e) => PgState::Unknown(crate::error::chain(&e)),
                    Ok(c) => {
                        let (clean, standby) = (c.clean_shutdown(), c.was_standby());
                        obs.control = Some(c);
                        PgState::Stopped { clean, standby }
                    }
                },
            },
        };
        obs.sysid = obs
            .status
            .as_ref()
            .map(|s| s.system_identifier)
            .or(obs.control.as_ref().map(|c| c.system_identifier));
        obs
    }

    /// Asks every other member for GET /patroni, in parallel, each for at most `retry_timeout`
    /// (and never more than Patroni's 2 s): a stalled peer must not hold the race up for longer
    /// than a DCS operation may take.
    pub(super) async fn poll_peers(&self, v: &ClusterView) -> Vec<PeerStatus> {
        let futs = v
            .members
            .iter()
            .filter(|(n, _)| **n != self.s.me)
            .map(|(name, m)| {
                let http = self.http.clone();
                let url = m.api_url.clone();
                let limit = self.timing.retry_timeout.min(std::time::Duration::from_secs(2));
                let name = name.clone();
                let prio = m.failover_priority();
                async move {
                    let body: Value = http
                        .get(&url)
                        .timeout(limit)
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    let role = body.get("role").and_then(Value::as_str).unwrap_or("");
                    let x = body.get("xlog");
                    let pick = |k: &str| x.and_then(|x| x.get(k)).and_then(Value::as_u64).unwrap_or(0);
                    let primary =
                        role == "primary" && body.get("state").and_then(Value::as_str) == Some("running");
                    let wal = if primary {
                        pick("location")
                    } else {
                        pick("received_location").max(pick("replayed_location"))
                    };
                    Some(PeerStatus {
                        name,
                        primary,
                        wal: Lsn(wal),
                        timeline: body.get("timeline").and_then(Value::as_u64).unwrap_or(0) as u32,
                        failover_priority: prio,
                        watchdog_failed: body
                            .get("watchdog_failed")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                }
            });
        futures::future::join_all(futs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
