//! pgwarden: PostgreSQL high availability in one binary.
//!
//! # Layout
//! - [`types`]: newtypes shared by every module (member names, LSNs, timelines).
//! - [`config`]: the Patroni-layout YAML configuration, environment overrides and validation.
//! - [`postgres`]: everything done to the local PostgreSQL instance; executes and observes, decides nothing.
//! - [`dcs`]: the DCS the HA loop sees (re-exported from the `pgwarden-raft` crate).
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
pub mod generate;
pub mod grpc;
pub mod ha;
pub mod pb;
pub mod postgres;
pub mod sd_notify;
pub mod shell;
pub mod types;
