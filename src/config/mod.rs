//! Configuration: one YAML file in Patroni's layout, `PGWARDEN_*` environment overrides, validation.
//!
//! # What this module owns
//! - The serde tree ([`Config`] and its sections) for the local file, and [`DynamicConfig`] for the
//!   DCS `config` key (`bootstrap.dcs` in the file), with Patroni's PATCH semantics ([`merge_patch`])
//!   and timing rule ([`adjust_timing`]).
//! - The key table ([`keys`]): the one list of keys that drives the unknown-key report, the shape
//!   check (so every error names its key path), the environment mapping, each key's state (applied,
//!   no effect, refused, Patroni only: the warnings and refusals) and [`Config::known_keys`], which
//!   the documentation tests compare with `docs/configuration.md`.
//! - All defaults, in [`defaults`].
//!
//! Loading reads the file and the environment given to it and nothing else; it never touches the
//! DCS or PostgreSQL. Loading is: YAML → JSON value → environment overrides → key walk (unknown
//! keys, shapes, inert keys) → refusals → serde → [`Config::validate`]. [`Config::check_host`] then
//! checks this machine (files readable, PGDATA, binaries), for `--validate-config` and the daemon.
//!
//! # Module map
//! - `sections`: the serde structs of the file's sections (`log`, `restapi`, `ctl`, `raft`,
//!   `postgresql`, `bootstrap`, `tags`, `watchdog`; `vip` is `crate::vip::config`) and their accessors with defaults.
//! - `load`: the loading pipeline of [`Config::load`] (YAML → JSON → environment → key walk →
//!   serde), the required keys, and dropping method sections nothing names.
//! - `validate`: [`Config::validate`] and its checks of values.
//! - `host`: [`Config::check_host`], the checks of this machine.
//! - [`keys`]: the key table with each key's state, the walk over a document, the refusals and
//!   the environment mapping.
//! - `dynamic`: [`DynamicConfig`], the DCS `config` key, with [`merge_patch`] and [`adjust_timing`].
//! - `values`: value types ([`Secs`], [`HostPort`], [`GucValue`], [`Command`], ...) and lenient serde.
//! - [`convert`]: a Patroni file turned into a pgwarden one (`pgwarden convert-patroni-config`).
//! - [`defaults`]: every default value.
//! - `error`: [`ConfigError`] and [`ConfigWarning`].
//! - `tests`: unit tests of loading, validation and the key table.

pub mod convert;
pub mod defaults;
mod dynamic;
mod error;
mod host;
pub mod keys;
mod load;
mod methods;
mod sections;
mod validate;
mod values;

#[cfg(test)]
mod tests;

pub use dynamic::{
    adjust_timing, merge_parameters, merge_patch, DynPostgresql, DynamicConfig, IgnoreSlot, PermanentSlot,
    StandbyCluster, Timing,
};
pub use error::{ConfigError, ConfigWarning};
pub use methods::{parse_method_section, MethodKind, MethodSection};
pub use sections::{
    BasicAuth, BinNames, Bootstrap, Callbacks, Ctl, Log, PgAuthentication, PgUser, Postgresql, Raft, RestApi,
    Tags, VerifyClient, Watchdog,
};
pub use values::{
    flag, Command, GucValue, HostPort, ListenAddr, Secs, SyncMode, ToolOpt, ToolOptions, WatchdogMode,
};

use crate::types::MemberName;
use defaults as d;
use serde::{Deserialize, Serialize};

/// How unknown keys are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// The daemon: unknown keys are warnings, so a typo in a rarely used key does not stop a node.
    Lenient,
    /// `pgwarden --validate-config`: unknown keys are errors.
    Strict,
}

/// A loaded, validated configuration and what the operator should hear about it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings to log once at start (unknown keys, keys with no effect, Patroni-only keys,
    /// `PATRONI_*` variables, adjusted timing, tag conflicts and near-misspelt tags).
    pub warnings: Vec<ConfigWarning>,
}

/// The local configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Cluster name; the DCS prefix is `<namespace><scope>/`.
    pub scope: String,
    /// DCS key prefix.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// This member's name, unique in the cluster.
    pub name: MemberName,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// REST API (Patroni's endpoints, health checks).
    pub restapi: RestApi,
    /// gRPC admin API (pgwardenctl) and the CLI's client settings.
    #[serde(default)]
    pub ctl: Ctl,
    /// The embedded Raft DCS.
    pub raft: Raft,
    /// The local PostgreSQL; `None` on a witness.
    #[serde(default)]
    pub postgresql: Option<Postgresql>,
    /// How a new cluster is created, and the initial dynamic configuration.
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// Member tags.
    #[serde(default)]
    pub tags: Tags,
    /// Hardware/software watchdog.
    #[serde(default)]
    pub watchdog: Watchdog,
    /// The virtual IP that follows the leader lease (see [`crate::vip`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<crate::vip::VipConfig>,
}

fn default_namespace() -> String {
    d::NAMESPACE.to_string()
}

impl Config {
    /// Every key path pgwarden knows, as written in the YAML file (dynamic keys under
    /// `bootstrap.dcs`, method sections as `postgresql.<method>`). The documentation test uses it.
    pub fn known_keys() -> Vec<&'static keys::KeySpec> {
        keys::table().iter().collect()
    }

    /// Whether this node runs PostgreSQL.
    pub fn is_witness(&self) -> bool {
        self.raft.witness
    }

    /// The checked `vip:` section; `None` when no VIP is configured (or on a witness, which
    /// never holds the lease).
    pub fn vip_spec(&self) -> Result<Option<crate::vip::VipSpec>, ConfigError> {
        match &self.vip {
            Some(v) if !self.is_witness() => v.spec().map_err(|e| match e {
                crate::vip::VipError::Config { key, why } => ConfigError::Invalid { key: key.into(), why },
                other => ConfigError::Invalid {
                    key: "vip".into(),
                    why: pgwarden_raft::error_chain(&other),
                },
            }),
            _ => Ok(None),
        }
    }
}
