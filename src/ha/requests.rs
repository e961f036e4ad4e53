//! The request channel into the HA loop, which the REST API (and gRPC through it) sends on, for the endpoints that must act
//! on PostgreSQL or on the loop's own state: POST/DELETE /restart, POST /reload,
//! POST /reinitialize, and the wake-up Patroni's API sends after writing a
//! failover or config key.
//!
//! # Contract for the receiving side (the HA runner)
//!
//! The daemon creates `tokio::sync::mpsc::channel::<ApiRequest>(REQUEST_QUEUE)`, gives the
//! sender to `api::rest::ApiState::with_requests` and the receiver to the runner, which
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
//!
//! It lives in `ha` because it is the loop's own inbox: the API depends on the loop, never the
//! reverse.

use chrono::{DateTime, FixedOffset};
use std::time::Duration;
use tokio::sync::oneshot;

/// The capacity the daemon should give the channel: requests are rare, and a full queue
/// means the loop is stuck, which the API reports as 503 rather than queueing more.
pub const REQUEST_QUEUE: usize = 16;

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

impl RestartConditions {
    /// The member key's `scheduled_restart` for a restart at `at` (Patroni's fields).
    pub fn published(&self, at: &DateTime<FixedOffset>) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("schedule".into(), at.to_rfc3339().into());
        if self.restart_pending {
            m.insert("restart_pending".into(), true.into());
        }
        if let Some(r) = &self.role {
            m.insert("role".into(), r.clone().into());
        }
        if let Some(v) = self.postgres_version {
            m.insert("postgres_version".into(), v.to_string().into());
        }
        if let Some(t) = self.timeout {
            m.insert("timeout".into(), t.as_secs().into());
        }
        serde_json::Value::Object(m)
    }
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
