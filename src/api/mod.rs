//! The member's APIs: Patroni's REST API (axum on hyper, optionally behind rustls).
//!
//! - [`state`]: [`state::ApiState`], what every handler shares.
//! - [`rest`]: the router and Patroni's dispatch by method and first path segment.
//! - [`params`]: request parameters several endpoints share (Patroni's `parse_schedule`).
//! - [`health`]: the health-check rules (/primary, /replica, /liveness, ...), pure functions of the
//!   published [`crate::ha::status::NodeStatus`] and the DCS snapshot.
//! - [`cluster`]: the DCS snapshot the handlers read, GET /cluster, /history, /config, /failsafe,
//!   PATCH and PUT /config, DELETE /switchover.
//! - [`manual`]: POST /switchover and /failover.
//! - [`actions`]: the endpoints that hand work to the HA loop (restart, reload, reinitialize).
//! - [`metrics`]: GET /metrics (Prometheus text).
//! - [`security`]: Basic auth, allowlist and client-certificate checks on unsafe requests.
//! - [`serve`]: the listener loop (plain TCP or TLS) that daemons and tests start.
//! - [`error`]: [`error::ApiError`], every failure mapped to Patroni's status code and text.
//!
//! The API never changes PostgreSQL itself: it writes DCS keys Patroni's API writes
//! (failover, config) and hands everything else to the HA loop through [`crate::ha::requests::ApiRequest`].
pub mod actions;

/// The Patroni release whose REST API this one reproduces. GET /patroni reports it as
/// `patroni.version` (pgwarden's own version is beside it as `patroni.pgwarden_version`)
/// and /metrics as `patroni_version`, because clients choose how to read the API by it:
/// check_patroni, for one, judges a replica by `state: streaming` only from Patroni 3.0.4
/// on and expects `running` before that, so a 0.x version made every replica unhealthy.
pub const PATRONI_COMPAT_VERSION: &str = "4.1.5";

pub mod cluster;
pub mod error;
pub mod health;
pub mod manual;
pub mod metrics;
pub mod params;
pub mod rest;
pub mod security;
pub mod serve;
pub mod state;
