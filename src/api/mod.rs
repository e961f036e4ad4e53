//! The member's APIs: Patroni's REST API (axum on hyper, optionally behind rustls).
//!
//! - [`rest`]: [`rest::ApiState`], the router and Patroni's dispatch by method and first path segment.
//! - [`health`]: the health-check rules (/primary, /replica, /liveness, ...), pure functions of the
//!   published [`crate::ha::status::NodeStatus`] and the DCS snapshot.
//! - [`cluster`]: the DCS snapshot the handlers read, GET /cluster, /history, /config, /failsafe,
//!   PATCH and PUT /config, DELETE /switchover.
//! - [`manual`]: POST /switchover and /failover.
//! - [`actions`]: the request channel to the HA loop (restart, reload, reinitialize, failsafe).
//! - [`metrics`]: GET /metrics (Prometheus text).
//! - [`security`]: Basic auth, allowlist and client-certificate checks on unsafe requests.
//! - [`serve`]: the listener loop (plain TCP or TLS) that daemons and tests start.
//! - [`error`]: [`error::ApiError`], every failure mapped to Patroni's status code and text.
//!
//! The API never changes PostgreSQL itself: it writes DCS keys Patroni's API writes
//! (failover, config) and hands everything else to the HA loop through [`actions::ApiRequest`].
pub mod actions;
pub mod cluster;
pub mod error;
pub mod health;
pub mod manual;
pub mod metrics;
pub mod rest;
pub mod security;
pub mod serve;
