//! The REST endpoints that hand work to the HA loop through [`crate::ha::requests`]:
//! POST/DELETE /restart, POST /reload, POST /reinitialize, and the wake-up Patroni's API sends
//! after writing a failover or config key. The reply contract is documented there.
//!
//! Validation (JSON shape, roles, versions, timeouts, schedules, pause) is done here; the
//! runner receives only well-formed requests.

use super::cluster::Snapshot;
use super::error::ApiError;
use super::params::parse_schedule;
use super::state::ApiState;
use crate::dcs::Dcs;
pub use crate::ha::requests::{ActionOutcome, ApiRequest, RestartConditions, REQUEST_QUEUE};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the API waits for room in the queue before answering 503.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

impl<D: Dcs> ApiState<D> {
    fn sender(&self, what: &str) -> Result<&tokio::sync::mpsc::Sender<ApiRequest>, ApiError> {
        self.requests.as_ref().ok_or_else(|| {
            ApiError::Unavailable(format!(
                "{what} is not possible: the HA loop does not take requests"
            ))
        })
    }

    async fn send(&self, what: &str, req: ApiRequest) -> Result<(), ApiError> {
        let tx = self.sender(what)?;
        match tokio::time::timeout(SEND_TIMEOUT, tx.send(req)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ApiError::Unavailable(format!(
                "{what} is not possible: the HA loop has stopped"
            ))),
            Err(_) => Err(ApiError::Unavailable(format!(
                "{what} is not possible: the HA loop is busy"
            ))),
        }
    }

    /// Sends a request and waits for its reply; a dropped reply is `dropped`'s 503.
    async fn ask<T>(
        &self,
        what: &str,
        dropped: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> ApiRequest,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.send(what, make(tx)).await?;
        rx.await.map_err(|_| ApiError::Unavailable(dropped.to_string()))
    }

    /// Wakes the loop if it listens; best effort, as Patroni's `wakeup()`.
    pub(crate) fn wakeup(&self) {
        if let Some(tx) = &self.requests {
            let _ = tx.try_send(ApiRequest::Wakeup);
        }
    }
}

/// Patroni's `postgres_version_to_int`: "X.Y" (X ≥ 10) or "X.Y.Z".
pub fn postgres_version_to_int(v: &str) -> Result<u32, String> {
    let parts: Result<Vec<u32>, _> = v.split('.').map(str::parse::<u32>).collect();
    let Ok(mut c) = parts else {
        return Err(format!("Invalid PostgreSQL version: {v}"));
    };
    if c.len() < 2 || (c.len() == 2 && c[0] < 10) || c.len() > 3 {
        return Err(format!(
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {v}"
        ));
    }
    if c.len() == 2 {
        c.insert(1, 0);
    }
    c.iter()
        .try_fold(0u32, |acc, x| acc.checked_mul(100)?.checked_add(*x))
        .filter(|_| c.iter().all(|x| *x < 100))
        .ok_or_else(|| format!("Invalid PostgreSQL version: {v}"))
}

/// Patroni's `parse_int(value, 's')` for the restart timeout: a number of seconds or a
/// string with a unit (ms, s, min, h, d).
fn parse_seconds(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: f64 = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "s" => 1.0,
                "ms" => 0.001,
                "min" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                _ => return None,
            };
            Some(n * mult)
        }
        _ => None,
    }
}

/// POST /restart, with Patroni's validation order: the paused check first, then each key.
pub async fn post_restart<D: Dcs>(
    st: &ApiState<D>,
    req: Map<String, Value>,
) -> Result<(u16, String), ApiError> {
    let (snap, _) = Snapshot::read(st.dcs.as_ref(), &st.prefix).await;
    if snap.view.paused() && req.contains_key("schedule") {
        return Err(ApiError::Refused(
            "Can't schedule restart in the paused state".into(),
        ));
    }
    let mut c = RestartConditions::default();
    let mut at = None;
    for (k, v) in &req {
        match k.as_str() {
            "schedule" => at = Some(parse_schedule(v, "restart")?),
            "role" => match v.as_str() {
                Some(r @ ("primary" | "standby_leader" | "replica")) => c.role = Some(r.to_string()),
                // Patroni still accepts the pre-3.0 name of the primary role.
                Some("master") => c.role = Some("primary".into()),
                _ => {
                    return Err(ApiError::BadRequest(
                        "PostgreSQL role should be either primary, standby_leader, or replica".into(),
                    ))
                }
            },
            "postgres_version" => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                c.postgres_version = Some(postgres_version_to_int(&text).map_err(ApiError::BadRequest)?);
            }
            "timeout" => match parse_seconds(v) {
                Some(secs) if secs > 0.0 && secs.is_finite() && secs < 1e9 => {
                    c.timeout = Some(Duration::from_secs_f64(secs))
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "Timeout should be a positive number of seconds".into(),
                    ))
                }
            },
            "restart_pending" => c.restart_pending = crate::config::flag(v),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "Unknown filter for the scheduled restart: {other}"
                )))
            }
        }
    }
    match at {
        None => {
            let out = st
                .ask("restart", "restart failed", |reply| ApiRequest::Restart {
                    conditions: c,
                    reply,
                })
                .await?;
            Ok((if out.ok { 200 } else { 503 }, out.message))
        }
        Some(at) => {
            let stored = st
                .ask("restart", "restart failed", |reply| ApiRequest::ScheduleRestart {
                    conditions: c,
                    at,
                    reply,
                })
                .await?;
            if stored {
                Ok((202, "Restart scheduled".into()))
            } else {
                Err(ApiError::Conflict("Another restart is already scheduled".into()))
            }
        }
    }
}

/// DELETE /restart.
pub async fn delete_restart<D: Dcs>(st: &ApiState<D>) -> Result<String, ApiError> {
    let deleted = st
        .ask("restart", "restart failed", |reply| {
            ApiRequest::CancelScheduledRestart { reply }
        })
        .await?;
    if deleted {
        Ok("scheduled restart deleted".into())
    } else {
        Err(ApiError::NotFound("no restarts are scheduled".into()))
    }
}

/// POST /reload.
pub async fn post_reload<D: Dcs>(st: &ApiState<D>) -> Result<String, ApiError> {
    st.send("reload", ApiRequest::Reload).await?;
    Ok("reload scheduled".into())
}

/// POST /reinitialize `{force, from-leader}`.
pub async fn post_reinitialize<D: Dcs>(
    st: &ApiState<D>,
    req: Map<String, Value>,
) -> Result<String, ApiError> {
    let flag = |k: &str| req.get(k).is_some_and(crate::config::flag);
    let force = flag("force");
    // patronictl sends `from-leader`; accept the underscore spelling too.
    let from_leader = flag("from-leader") || flag("from_leader");
    let s = st.status.borrow().clone();
    // Holding the key at all (even with a lapsed lease) means this member is the leader.
    if s.holds_lock {
        return Err(ApiError::Unavailable(
            "I am the leader, can not reinitialize".into(),
        ));
    }
    let (snap, _) = Snapshot::read(st.dcs.as_ref(), &st.prefix).await;
    if snap.view.leader.is_none() {
        return Err(ApiError::Unavailable(
            "Cluster has no leader, can not reinitialize".into(),
        ));
    }
    st.ask("reinitialize", "reinitialize failed", |reply| {
        ApiRequest::Reinitialize {
            force,
            from_leader,
            reply,
        }
    })
    .await?
    .map_err(ApiError::Unavailable)?;
    Ok("reinitialize started".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Patroni's version parsing and its error texts.
    #[test]
    fn postgres_versions_parse_like_patroni() {
        assert_eq!(postgres_version_to_int("9.6.3"), Ok(90603));
        assert_eq!(postgres_version_to_int("10.1"), Ok(100001));
        assert_eq!(postgres_version_to_int("16.4"), Ok(160004));
        assert!(postgres_version_to_int("10")
            .unwrap_err()
            .contains("X.Y or X.Y.Z"));
        assert!(postgres_version_to_int("9.6")
            .unwrap_err()
            .contains("X.Y or X.Y.Z"));
        assert_eq!(
            postgres_version_to_int("a.b").unwrap_err(),
            "Invalid PostgreSQL version: a.b"
        );
        assert!(postgres_version_to_int("99999.1.1").is_err());
    }

    /// Schedules: zone mandatory (400), past or garbage 422.
    #[test]
    fn schedules_follow_patroni_codes() {
        assert!(parse_schedule(&json!("2999-01-01T00:00:00+00:00"), "restart").is_ok());
        assert!(parse_schedule(&json!("2999-01-01 10:00+02:00"), "restart").is_ok());
        assert!(matches!(
            parse_schedule(&json!("2999-01-01T00:00:00"), "switchover"),
            Err(ApiError::BadRequest(m)) if m == "Timezone information is mandatory for the scheduled switchover"
        ));
        assert!(matches!(
            parse_schedule(&json!("2000-01-01T00:00:00Z"), "restart"),
            Err(ApiError::Unprocessable(m)) if m == "Cannot schedule restart in the past"
        ));
        assert!(matches!(
            parse_schedule(&json!("soon"), "restart"),
            Err(ApiError::Unprocessable(_))
        ));
        assert!(matches!(
            parse_schedule(&json!(5), "restart"),
            Err(ApiError::Unprocessable(_))
        ));
    }

    /// Timeouts with units.
    #[test]
    fn timeouts_take_units() {
        assert_eq!(parse_seconds(&json!(30)), Some(30.0));
        assert_eq!(parse_seconds(&json!("2min")), Some(120.0));
        assert_eq!(parse_seconds(&json!("x")), None);
    }
}
