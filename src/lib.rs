//! pgwarden: PostgreSQL high availability in one binary.
//!
//! # Layout
//! - [`types`]: newtypes shared by every module (member names, LSNs, timelines).
//! - [`config`]: the Patroni-layout YAML configuration, environment overrides and validation.
//! - [`postgres`]: everything done to the local PostgreSQL instance; executes and observes, decides nothing.
//! - [`process`]: spawning children (PostgreSQL's tools, user scripts): clean environment, user switch, time limits.
//! - [`dcs`]: the DCS the HA loop sees (re-exported from the `pgwarden-raft` crate).
//! - [`sd_notify`]: readiness and stopping notifications to systemd (`Type=notify`).
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
pub mod postgres;
pub mod process;
pub mod sd_notify;
pub mod shell;
pub mod types;
