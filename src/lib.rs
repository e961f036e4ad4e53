//! pgwarden: PostgreSQL high availability in one binary.
//!
//! # Layout
//! The modules form a stack: each uses only those listed above it, never one below (the
//! `pgwarden-raft` crate, the DCS, sits under all of them).
//! - [`types`]: newtypes shared by every module (member names, LSNs, timelines).
//! - [`error`]: the one renderer of an error and its causes for log lines.
//! - [`shell`]: word splitting for the commands users configure (callbacks, replica methods).
//! - [`config`]: the Patroni-layout YAML configuration, the typed dynamic configuration,
//!   environment overrides and validation.
//! - [`dcs`]: the DCS the HA loop sees (re-exported from the `pgwarden-raft` crate).
//! - [`postgres`]: everything done to the local PostgreSQL instance, and the spawning of every child
//!   process (`postgres::process`); executes and observes, decides nothing.
//! - [`ha`]: the HA loop: the cluster view, the pure decision, the leader lease and its fence,
//!   the runner that acts, synchronous replication, slots, failsafe, callbacks and the watchdog.
//! - [`api`]: Patroni's REST API, answering from the HA loop's published state and the DCS.
//! - [`grpc`]: the gRPC admin API (`pgwarden.admin.v1`), served from the same code as the REST API.
//! - [`ctl`]: `pgwardenctl`, the admin CLI (a gRPC client, patronictl's commands and output).
//! - [`logging`]: the daemon's own log as the `log:` section asks (format, files, rotation).
//! - [`daemon`]: wiring a member (or a witness) together from its configuration.
//! - [`demo`]: `pgwarden demo`, a three-member cluster on loopback, narrated.
//! - [`sd_notify`]: readiness and stopping notifications to systemd (`Type=notify`).
//! - [`pb`]: the generated protobuf types of the gRPC admin API, shared by server and client.
//! - [`generate`]: the hidden `generate man|completions` subcommand used by packaging.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dcs;
pub mod demo;
pub mod error;
pub mod generate;
pub mod grpc;
pub mod ha;
pub mod join;
pub mod logging;
pub mod pb;
pub mod postgres;
pub mod rtt;
pub mod sd_notify;
pub mod shell;
pub mod types;
pub mod vip;
