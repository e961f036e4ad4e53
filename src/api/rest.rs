//! Patroni's REST API: the health checks HAProxy and monitoring use, GET /patroni (which
//! peers poll in the leader race), and switchover / failover requests.

use crate::dcs::Dcs;
use crate::ha::status::NodeStatus;
use crate::ha::view::{ClusterView, FailoverKey};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use pgwarden_raft::Condition;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the handlers share.
pub struct ApiState<D: Dcs> {
    /// The loop's last published status.
    pub status: watch::Receiver<NodeStatus>,
    /// The DCS.
    pub dcs: Arc<D>,
    /// `<namespace><scope>/`.
    pub prefix: String,
    /// The member's ttl (liveness).
    pub ttl: Duration,
}

impl<D: Dcs> Clone for ApiState<D> {
    fn clone(&self) -> Self {
        ApiState {
            status: self.status.clone(),
            dcs: self.dcs.clone(),
            prefix: self.prefix.clone(),
            ttl: self.ttl,
        }
    }
}

/// The router.
pub fn router<D: Dcs>(state: ApiState<D>) -> Router {
    Router::new()
        .route("/switchover", post(switchover::<D>))
        .route("/failover", post(failover::<D>))
        .fallback(any(health::<D>))
        .with_state(state)
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (code, body.into()).into_response()
}

/// Every GET path that is not an action is a health check, chosen by its first segment.
async fn health<D: Dcs>(
    State(st): State<ApiState<D>>,
    method: Method,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
        return text(StatusCode::NOT_IMPLEMENTED, "Not Implemented");
    }
    let s = st.status.borrow().clone();
    let now = Instant::now();
    let path = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let replica_ok = || {
        s.role == "replica"
            && s.state == "running"
            && !s
                .tags
                .get("noloadbalance")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            && lag_ok(&q, s.lag)
    };
    let ok = match path.as_str() {
        "" | "primary" | "master" | "read-write" | "leader" => s.is_writable_leader(now),
        "replica" => replica_ok(),
        "read-only" => s.is_writable_leader(now) || replica_ok(),
        "health" => s.state == "running",
        "liveness" => {
            let limit = if s.holds_lock { st.ttl } else { st.ttl * 2 };
            s.pause || s.last_loop.is_some_and(|t| now.duration_since(t) < limit)
        }
        "readiness" => {
            s.is_writable_leader(now) || (replica_ok() && s.replication_state.as_deref() == Some("streaming"))
        }
        "patroni" => true,
        _ => s.is_writable_leader(now) || replica_ok(),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if method != Method::GET || path == "liveness" || path == "readiness" {
        return code.into_response();
    }
    (code, Json(serde_json::to_value(&s).unwrap_or(Value::Null))).into_response()
}

fn lag_ok(q: &HashMap<String, String>, lag: Option<u64>) -> bool {
    match q.get("lag").and_then(|v| parse_size(v)) {
        Some(max) => lag.is_some_and(|l| l <= max),
        None => true,
    }
}

/// Patroni's lag values: bytes, or with a unit (16kB, 10MB, 1GB).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[derive(Deserialize, Default)]
struct SwitchoverBody {
    leader: Option<String>,
    candidate: Option<String>,
    member: Option<String>,
    scheduled_at: Option<String>,
}

async fn switchover<D: Dcs>(State(st): State<ApiState<D>>, body: axum::body::Bytes) -> Response {
    manual(st, body, false).await
}

async fn failover<D: Dcs>(State(st): State<ApiState<D>>, body: axum::body::Bytes) -> Response {
    manual(st, body, true).await
}

/// Patroni's POST /switchover and /failover: validate, write the failover key, and for an
/// immediate request wait for the outcome.
async fn manual<D: Dcs>(st: ApiState<D>, body: axum::body::Bytes, is_failover: bool) -> Response {
    let Ok(b) = serde_json::from_slice::<SwitchoverBody>(&body) else {
        return text(StatusCode::BAD_REQUEST, "Bad request: body is not a JSON object");
    };
    let candidate = b.candidate.or(b.member);
    let leader = b.leader;
    let action = if is_failover && leader.is_none() {
        "failover"
    } else {
        "switchover"
    };
    if is_failover && leader.is_none() && candidate.is_none() {
        return text(
            StatusCode::BAD_REQUEST,
            "Failover could be performed only to a specific candidate",
        );
    }
    if !is_failover && leader.is_none() {
        return text(
            StatusCode::BAD_REQUEST,
            "Switchover could be performed only from a specific leader",
        );
    }
    if leader.is_some() && leader == candidate {
        return text(
            StatusCode::BAD_REQUEST,
            "Switchover target and source are the same",
        );
    }
    if is_failover && leader.is_none() && b.scheduled_at.is_some() {
        return text(StatusCode::BAD_REQUEST, "Failover can't be scheduled");
    }
    let scheduled = match &b.scheduled_at {
        Some(at) => match chrono::DateTime::parse_from_rfc3339(at) {
            Ok(t) if t <= chrono::Utc::now() => {
                return text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Can't schedule switchover in the past",
                )
            }
            Ok(_) => true,
            Err(e) => {
                return text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Unable to parse scheduled timestamp ({e})"),
                )
            }
        },
        None => false,
    };
    let view = match st.dcs.list(&st.prefix).await {
        Ok(kvs) => ClusterView::from_kvs(&st.prefix, &kvs),
        Err(_) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "failed to write failover key into DCS",
            )
        }
    };
    if view.paused() && scheduled {
        return text(
            StatusCode::BAD_REQUEST,
            "Can't schedule switchover in the paused state",
        );
    }
    if !scheduled {
        if let Some(l) = &leader {
            if view.leader_name().map(|n| n.as_str()) != Some(l.as_str()) {
                return text(StatusCode::PRECONDITION_FAILED, "leader name does not match");
            }
        }
        if let Some(c) = &candidate {
            if !view.members.keys().any(|n| n.as_str() == c) {
                return text(StatusCode::PRECONDITION_FAILED, "candidate does not exists");
            }
        } else if !view.members.iter().any(|(n, m)| {
            Some(n.as_str()) != leader.as_deref() && m.role == "replica" && m.state == "running"
        }) {
            return text(
                StatusCode::PRECONDITION_FAILED,
                format!("{action} is not possible: cluster does not have members except leader"),
            );
        }
    }
    let key = FailoverKey {
        leader: leader.clone(),
        member: candidate.clone(),
        scheduled_at: b.scheduled_at.clone(),
    };
    let value = serde_json::to_string(&key).unwrap_or_default();
    if st
        .dcs
        .put(&format!("{}failover", st.prefix), &value, None, Condition::Always)
        .await
        .is_err()
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed to write failover key into DCS",
        );
    }
    if scheduled {
        return text(StatusCode::ACCEPTED, "Switchover scheduled");
    }
    // Wait for the outcome, as Patroni does: up to 2 × max(10, loop_wait) seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = if is_failover && leader.is_none() {
        "failed over"
    } else {
        "switched over"
    };
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(kvs) = st.dcs.list(&st.prefix).await else {
            continue;
        };
        let v = ClusterView::from_kvs(&st.prefix, &kvs);
        if let Some(new) = v.leader_name() {
            if Some(new.as_str()) != leader.as_deref() && v.failover.is_none() {
                return match &candidate {
                    Some(c) if c != new.as_str() => text(
                        StatusCode::OK,
                        format!("Switched over to \"{new}\" instead of \"{c}\""),
                    ),
                    _ => text(StatusCode::OK, format!("Successfully {done} to \"{new}\"")),
                };
            }
        }
        if v.failover.is_none()
            && v.leader_name().map(|n| n.as_str()) == leader.as_deref()
            && leader.is_some()
        {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Switchover failed");
        }
    }
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "Switchover status unknown after 20 seconds; operation may still be in progress",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patroni's lag units.
    #[test]
    fn sizes_parse_like_patroni() {
        assert_eq!(parse_size("16kB"), Some(16384));
        assert_eq!(parse_size("10MB"), Some(10 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1XB"), None);
    }
}
