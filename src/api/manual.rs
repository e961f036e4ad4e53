//! POST /switchover and /failover: Patroni's validation (texts and codes), the `failover`
//! key write, and for an immediate request the wait for the outcome.

use super::cluster::Snapshot;
use super::error::ApiError;
use super::params::parse_schedule;
use super::state::ApiState;
use crate::dcs::Dcs;
use crate::ha::view::{FailoverKey, MemberRecord};
use crate::types::MemberState;
use pgwarden_raft::command::Condition;
use serde_json::{Map, Value};
use std::time::Duration;

/// Switchover or failover, as the URL said (a failover naming a leader becomes a switchover).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// POST /switchover.
    Switchover,
    /// POST /failover.
    Failover,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Switchover => "switchover",
            Action::Failover => "failover",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Action::Switchover => "Switchover",
            Action::Failover => "Failover",
        }
    }
    /// "switched" / "failed", Patroni's `action[:-4] + 'ed'`.
    fn past(self) -> &'static str {
        match self {
            Action::Switchover => "switched",
            Action::Failover => "failed",
        }
    }
}

/// A non-empty string field; other JSON types count as absent, as Python's truthiness
/// would make `""`, `null` and `0` absent (a number or object cannot name a member).
fn name_field(req: &Map<String, Value>, k: &str) -> Option<String> {
    match req.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Patroni's `failover_limitation() is None` judged from the member key: running, and
/// allowed to be promoted. (Patroni asks each member's /patroni; the member key carries the
/// same facts, refreshed every loop.)
fn good_candidate(m: &MemberRecord) -> bool {
    m.state == MemberState::Running && m.failover_priority() > 0
}

/// Patroni's `is_failover_possible`; `Some(reason)` is a 412.
fn failover_impossible(
    snap: &Snapshot,
    leader: Option<&str>,
    candidate: Option<&str>,
    action: Action,
) -> Option<String> {
    let current = snap.view.leader_name().map(|l| l.as_str());
    if let Some(l) = leader {
        if current != Some(l) {
            return Some("leader name does not match".into());
        }
    }
    let strict_sync = snap.synchronous_mode() && !snap.quorum_mode();
    let members: Vec<&MemberRecord> = if let Some(c) = candidate {
        // In every synchronous mode, quorum included, a switchover goes only to a member
        // listed in /sync: another may lack acknowledged commits.
        if action == Action::Switchover
            && snap.synchronous_mode()
            && !snap.sync.as_ref().is_some_and(|s| s.matches(c, false))
        {
            return Some("candidate name does not match with sync_standby".into());
        }
        let found: Vec<_> = snap
            .view
            .members
            .iter()
            .filter(|(n, _)| n.as_str() == c)
            .map(|(_, m)| m)
            .collect();
        if found.is_empty() {
            return Some("candidate does not exists".into());
        }
        found
    } else if strict_sync {
        let found: Vec<_> = snap
            .view
            .members
            .iter()
            .filter(|(n, _)| snap.sync.as_ref().is_some_and(|s| s.matches(n.as_str(), false)))
            .map(|(_, m)| m)
            .collect();
        if found.is_empty() {
            return Some(format!(
                "{} is not possible: can not find sync_standby",
                action.name()
            ));
        }
        found
    } else {
        let found: Vec<_> = snap
            .view
            .members
            .iter()
            .filter(|(n, m)| Some(n.as_str()) != current && !m.api_url.is_empty())
            .map(|(_, m)| m)
            .collect();
        if found.is_empty() {
            return Some(format!(
                "{} is not possible: cluster does not have members except leader",
                action.name()
            ));
        }
        found
    };
    if members.iter().any(|m| good_candidate(m)) {
        None
    } else {
        Some(format!(
            "{} is not possible: no good candidates have been found",
            action.name()
        ))
    }
}

/// Handles POST /switchover (`Action::Switchover`) and /failover; returns the code and text.
pub async fn post_manual<D: Dcs>(
    st: &ApiState<D>,
    req: Map<String, Value>,
    mut action: Action,
) -> Result<(u16, String), ApiError> {
    let leader = name_field(&req, "leader");
    let candidate = name_field(&req, "candidate").or_else(|| name_field(&req, "member"));
    let scheduled_at = req.get("scheduled_at").filter(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        _ => true,
    });
    let snap = Snapshot::read_fresh(st.dcs.as_ref(), &st.prefix).await?;
    tracing::info!(
        action = action.name(),
        leader = leader.as_deref().unwrap_or(""),
        candidate = candidate.as_deref().unwrap_or(""),
        scheduled = scheduled_at.is_some(),
        "received a manual failover request"
    );

    if action == Action::Failover && candidate.is_none() {
        return Err(ApiError::BadRequest(
            "Failover could be performed only to a specific candidate".into(),
        ));
    }
    if action == Action::Switchover && leader.is_none() {
        return Err(ApiError::BadRequest(
            "Switchover could be performed only from a specific leader".into(),
        ));
    }
    let mut at = None;
    if let Some(v) = scheduled_at {
        if action == Action::Failover {
            return Err(ApiError::BadRequest("Failover can't be scheduled".into()));
        }
        if snap.view.paused() {
            return Err(ApiError::BadRequest(
                "Can't schedule switchover in the paused state".into(),
            ));
        }
        at = Some(parse_schedule(v, action.name())?);
    }
    if snap.view.paused() && candidate.is_none() {
        return Err(ApiError::BadRequest(
            "Switchover is possible only to a specific candidate in a paused state".into(),
        ));
    }
    if action == Action::Failover && leader.is_some() {
        tracing::warn!("received failover request with leader specified - performing switchover instead");
        action = Action::Switchover;
    }
    if leader == candidate {
        return Err(ApiError::BadRequest(
            "Switchover target and source are the same".into(),
        ));
    }
    if at.is_none() {
        if let Some(why) = failover_impossible(&snap, leader.as_deref(), candidate.as_deref(), action) {
            return Err(ApiError::PreconditionFailed(why));
        }
    }

    let key = FailoverKey {
        leader: leader.clone(),
        member: candidate.clone(),
        scheduled_at: at.map(|t| t.to_rfc3339()),
    };
    let written = match serde_json::to_string(&key) {
        Ok(value) => st
            .dcs
            .put(&format!("{}failover", st.prefix), &value, None, Condition::Always)
            .await
            .map(|o| o.succeeded),
        Err(_) => Ok(false),
    };
    match written {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::Unavailable(
                "failed to write failover key into DCS".into(),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "REST API: writing the failover key");
            return Err(ApiError::Unavailable(
                "failed to write failover key into DCS".into(),
            ));
        }
    }
    st.wakeup();
    if at.is_some() {
        return Ok((202, format!("{} scheduled", action.title())));
    }
    let old_leader = snap.view.leader_name().map(|l| l.to_string());
    Ok(poll_result(st, old_leader, candidate, action, snap.loop_wait()).await)
}

/// Patroni's `poll_failover_result`: once a second for 2 × max(10, loop_wait) seconds, until
/// another member holds the key (success) or the key was cleared without a change (failure).
async fn poll_result<D: Dcs>(
    st: &ApiState<D>,
    old_leader: Option<String>,
    candidate: Option<String>,
    action: Action,
    loop_wait: u64,
) -> (u16, String) {
    let rounds = 2 * loop_wait.max(10);
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(snap) = Snapshot::read_fresh(st.dcs.as_ref(), &st.prefix).await else {
            continue;
        };
        if let Some(new) = snap.view.leader_name().map(|l| l.as_str()) {
            if Some(new) != old_leader.as_deref() {
                return match candidate.as_deref() {
                    Some(c) if c != new => (
                        200,
                        format!(
                            "{}{} over to \"{new}\" instead of \"{c}\"",
                            action.past()[..1].to_uppercase(),
                            &action.past()[1..]
                        ),
                    ),
                    _ => (200, format!("Successfully {} over to \"{new}\"", action.past())),
                };
            }
        }
        if snap.view.failover.is_none() {
            return (503, format!("{} failed", action.title()));
        }
    }
    (
        503,
        format!(
            "{} status unknown after {rounds} seconds; operation may still be in progress",
            action.title()
        ),
    )
}
