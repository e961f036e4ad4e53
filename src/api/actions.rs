//! The request channel from the REST API to the HA loop, for the endpoints that must act
//! on PostgreSQL or on the loop's own state: POST/DELETE /restart, POST /reload,
//! POST /reinitialize, and the wake-up Patroni's API sends after writing a
//! failover or config key.
//!
//! # Contract for the receiving side (the HA runner)
//!
//! The daemon creates `tokio::sync::mpsc::channel::<ApiRequest>(REQUEST_QUEUE)`, gives the
//! sender to [`super::rest::ApiState::with_requests`] and the receiver to the runner, which
//! must:
//!
//! - poll the receiver between (or during) iterations, so a request is seen within
//!   `loop_wait` at the latest; any message also means "wake up now" (Patroni's `ha.wakeup()`);
//! - answer every `reply` exactly once. Dropping a reply sender makes the API answer 503
//!   (for restart: "restart failed"), so a panic or shutdown never hangs a client;
//! - for [`ApiRequest::Restart`]: check the conditions against the local PostgreSQL (role,
//!   `restart_pending`, server version older than `postgres_version`), restart with
//!   `timeout`, then reply Patroni's `(ok, message)`: `(true, "restarted successfully")`,
//!   `(false, "restart conditions are not satisfied")`, `(false, "<action> already in
//!   progress")`, `(false, "postgres is still starting")`, `(false, "restart failed")`.
//!   The HTTP side waits for the reply (Patroni's restart is synchronous);
//! - for [`ApiRequest::ScheduleRestart`]: store the restart (publish it as `scheduled_restart`
//!   in the member key) and reply `true`, or `false` when one is already scheduled (409);
//! - for [`ApiRequest::CancelScheduledRestart`]: reply whether one was deleted (200 / 404);
//! - for [`ApiRequest::Reload`]: re-read the configuration file and apply it (no reply:
//!   Patroni answers 202 "reload scheduled" before doing it);
//! - for [`ApiRequest::Reinitialize`]: reply `Ok(())` once the reinitialization has started
//!   (200 "reinitialize started"), or `Err(message)` with Patroni's text: "I am the leader,
//!   can not reinitialize", "Cluster has no leader, can not reinitialize", "<action> already
//!   in progress" (503). The API already refuses the first two from its own view; the runner
//!   must check again because the view can be a loop old;
//! - [`ApiRequest::Wakeup`]: start the next iteration now.
//!
//! Validation (JSON shape, roles, versions, timeouts, schedules, pause) is done here; the
//! runner receives only well-formed requests.

use super::cluster::Snapshot;
use super::error::ApiError;
use super::rest::ApiState;
use crate::dcs::Dcs;
use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::oneshot;

/// The capacity the daemon should give the channel: requests are rare, and a full queue
/// means the loop is stuck, which the API reports as 503 rather than queueing more.
pub const REQUEST_QUEUE: usize = 16;

/// How long the API waits for room in the queue before answering 503.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Patroni's `ha.restart()` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionOutcome {
    /// Done (200) or refused/failed (503).
    pub ok: bool,
    /// Patroni's text ("restarted successfully", "restart conditions are not satisfied", ...).
    pub message: String,
}

/// The filters of POST /restart, all of which must hold for the restart to happen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartConditions {
    /// Only if PostgreSQL reports pending_restart.
    pub restart_pending: bool,
    /// Only on a member with this role: "primary", "standby_leader" or "replica".
    pub role: Option<String>,
    /// Only if the running server_version_num is lower than this (e.g. 150004).
    pub postgres_version: Option<u32>,
    /// Give up (and report failure) if PostgreSQL is not up again after this long.
    pub timeout: Option<Duration>,
}

/// A request for the HA loop; see the module documentation for the reply contract.
#[derive(Debug)]
pub enum ApiRequest {
    /// POST /restart without `schedule`.
    Restart {
        /// Conditions that must hold.
        conditions: RestartConditions,
        /// The outcome.
        reply: oneshot::Sender<ActionOutcome>,
    },
    /// POST /restart with `schedule`.
    ScheduleRestart {
        /// Conditions checked when the time comes.
        conditions: RestartConditions,
        /// When (with time zone, in the future when sent).
        at: DateTime<FixedOffset>,
        /// `true` if stored, `false` if another restart is already scheduled.
        reply: oneshot::Sender<bool>,
    },
    /// DELETE /restart.
    CancelScheduledRestart {
        /// Whether a scheduled restart was deleted.
        reply: oneshot::Sender<bool>,
    },
    /// POST /reload.
    Reload,
    /// POST /reinitialize.
    Reinitialize {
        /// Reinitialize even if another action is in progress (Patroni cancels it).
        force: bool,
        /// Take the base backup from the leader, not from a replica.
        from_leader: bool,
        /// `Ok` once started, or Patroni's refusal text.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Run the next iteration now (after a failover or config key was written).
    Wakeup,
}

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

/// Patroni's `parse_schedule`: a timestamp with a time zone in the future. Errors carry
/// Patroni's codes (400 without a zone, 422 in the past or unparsable).
pub fn parse_schedule(v: &Value, action: &str) -> Result<DateTime<FixedOffset>, ApiError> {
    let unparsable = || {
        ApiError::Unprocessable(
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"
                .into(),
        )
    };
    let Value::String(s) = v else {
        return Err(unparsable());
    };
    let s = s.trim();
    let with_zone = DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        [
            "%Y-%m-%d %H:%M:%S%.f%:z",
            "%Y-%m-%d %H:%M:%S%.f%z",
            "%Y-%m-%dT%H:%M:%S%.f%z",
            "%Y-%m-%d %H:%M%:z",
            "%Y-%m-%dT%H:%M%:z",
        ]
        .iter()
        .find_map(|f| DateTime::parse_from_str(s, f).ok())
    });
    let t = match with_zone {
        Some(t) => t,
        None => {
            let naive = [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .any(|f| chrono::NaiveDateTime::parse_from_str(s, f).is_ok());
            return Err(if naive {
                ApiError::BadRequest(format!(
                    "Timezone information is mandatory for the scheduled {action}"
                ))
            } else {
                unparsable()
            });
        }
    };
    if t < chrono::Utc::now() {
        return Err(ApiError::Unprocessable(format!(
            "Cannot schedule {action} in the past"
        )));
    }
    Ok(t)
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
            "restart_pending" => c.restart_pending = super::cluster::truthy(v),
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
    let flag = |k: &str| req.get(k).is_some_and(super::cluster::truthy);
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
