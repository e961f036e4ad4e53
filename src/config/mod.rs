//! Configuration: one YAML file in Patroni's layout, `PGWARDEN_*` environment overrides, validation.
//!
//! # What this module owns
//! - The serde tree ([`Config`] and its sections) for the local file, and [`DynamicConfig`] for the
//!   DCS `config` key (`bootstrap.dcs` in the file), with Patroni's PATCH semantics ([`merge_patch`])
//!   and timing rule ([`adjust_timing`]).
//! - The key table ([`keys`]): the one list of keys that drives the unknown-key report, the shape
//!   check (so every error names its key path), the environment mapping and [`Config::known_keys`],
//!   which the documentation test compares with `docs/configuration.md`.
//! - All defaults, in [`defaults`].
//!
//! It reads files and the environment given to it and nothing else; it never touches the DCS or
//! PostgreSQL. Loading is: YAML → JSON value → environment overrides → key walk (unknown keys, shapes)
//! → serde → [`Config::validate`].

pub mod defaults;
mod dynamic;
mod error;
pub mod keys;
mod values;

#[cfg(test)]
mod tests;

pub use dynamic::{
    adjust_timing, merge_parameters, merge_patch, DynPostgresql, DynamicConfig, IgnoreSlot, PermanentSlot,
    StandbyCluster, SyncMode, Timing,
};
pub use error::{ConfigError, ConfigWarning};
pub use values::{flag, Command, GucValue, HostPort, ListenAddr, Secs, ToolOpt, ToolOptions, WatchdogMode};

use crate::types::MemberName;
use defaults as d;
use keys::{MethodNames, WalkReport};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use values::lenient;

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
    /// Warnings to log once at start (unknown keys, ignored Patroni keys, adjusted timing, tag conflicts).
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
}

fn default_namespace() -> String {
    d::NAMESPACE.to_string()
}

/// `log:`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Log {
    /// `plain` or `json`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub log_type: Option<String>,
    /// Level name (Python's: DEBUG, INFO, WARNING, ERROR, CRITICAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Format string, or a list of fields for json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Timestamp format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dateformat: Option<String>,
    /// Extra fields added to every json record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_fields: Option<BTreeMap<String, Value>>,
    /// Log to files in this directory instead of stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// File permissions (e.g. 0o640).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub mode: Option<u32>,
    /// Rotated files kept.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub file_num: Option<u32>,
    /// Bytes before rotation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub file_size: Option<u64>,
    /// Per-target levels (`pgwarden::ha: DEBUG`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loggers: Option<BTreeMap<String, Value>>,
    /// Suppress identical consecutive HA loop lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicate_heartbeat_logs: Option<bool>,
}

impl Log {
    /// The level, upper-cased, or the default.
    pub fn level(&self) -> String {
        self.level.as_deref().unwrap_or(d::LOG_LEVEL).to_ascii_uppercase()
    }
}

/// Basic-auth credentials.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BasicAuth {
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Client-certificate checking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyClient {
    /// Not checked.
    #[default]
    None,
    /// Checked on unsafe (non-GET) requests.
    Optional,
    /// Required on every request.
    Required,
}

fn verify_client(v: Option<&str>) -> VerifyClient {
    match v.map(str::to_ascii_lowercase).as_deref() {
        Some("optional") => VerifyClient::Optional,
        Some("required") => VerifyClient::Required,
        _ => VerifyClient::None,
    }
}

/// `restapi:`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestApi {
    /// Address to bind.
    pub listen: HostPort,
    /// Address other members and tools use; written into the member key as `api_url`.
    pub connect_address: HostPort,
    /// Basic auth for unsafe endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<BasicAuth>,
    /// TLS certificate (PEM); TLS is on when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// TLS key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// Password of an encrypted key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile_password: Option<String>,
    /// CA bundle for client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    /// Permitted cipher suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<String>,
    /// `none`, `optional` or `required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_client: Option<String>,
    /// Hosts/networks allowed to call unsafe endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<Vec<String>>,
    /// Also allow the members' REST hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist_include_members: Option<bool>,
    /// Headers added to every response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_extra_headers: Option<BTreeMap<String, Value>>,
    /// Headers added to every response when TLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_extra_headers: Option<BTreeMap<String, Value>>,
    /// Listen backlog.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub request_queue_size: Option<u32>,
    /// `Server` header: `minimal`, `productonly` or `original`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tokens: Option<String>,
}

impl RestApi {
    /// Client-certificate policy.
    pub fn verify_client(&self) -> VerifyClient {
        verify_client(self.verify_client.as_deref())
    }
    /// Listen backlog or its default.
    pub fn request_queue_size(&self) -> u32 {
        self.request_queue_size.unwrap_or(d::REQUEST_QUEUE_SIZE)
    }
}

/// `ctl:` — the gRPC admin API on the daemon side, and pgwardenctl's client settings.
///
/// On a member the same files usually serve both roles: the daemon presents `certfile`/`keyfile` and
/// checks clients against `cacert` when `verify_client: required`; pgwardenctl verifies the server
/// against `cacert` and presents `certfile`/`keyfile` as its client certificate.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctl {
    /// Address the gRPC admin API binds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<HostPort>,
    /// Address other members and pgwardenctl use (requests are forwarded between members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_address: Option<HostPort>,
    /// Bearer token required on every admin call (sent as `authorization: Bearer <token>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// Key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// Password of an encrypted key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile_password: Option<String>,
    /// CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<PathBuf>,
    /// `none` or `required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_client: Option<String>,
    /// pgwardenctl: do not verify the server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// pgwardenctl: basic auth for REST calls (defaults to `restapi.authentication`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<BasicAuth>,
}

impl Ctl {
    /// Address to bind.
    pub fn listen(&self) -> HostPort {
        self.listen.clone().unwrap_or_else(|| {
            HostPort::parse(d::CTL_LISTEN).expect("defaults::CTL_LISTEN is a valid host:port (unit-tested)")
        })
    }
    /// Address to advertise.
    pub fn connect_address(&self) -> HostPort {
        self.connect_address.clone().unwrap_or_else(|| self.listen())
    }
    /// Client-certificate policy.
    pub fn verify_client(&self) -> VerifyClient {
        verify_client(self.verify_client.as_deref())
    }
}

/// `raft:` — the embedded DCS.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Raft {
    /// Raft log, vote and snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// This node's Raft address, as partners reach it; also its identity in the Raft group.
    pub self_addr: HostPort,
    /// Address to bind if different from `self_addr` (NAT, containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_addr: Option<HostPort>,
    /// The other voters.
    #[serde(default)]
    pub partner_addrs: Vec<HostPort>,
    /// Run Raft and the REST API only, never PostgreSQL.
    #[serde(default)]
    pub witness: bool,
    /// Allow a one-voter cluster (no failover possible).
    #[serde(default)]
    pub single_node: bool,
    /// Leader heartbeat period, ms.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub heartbeat_interval_ms: Option<u64>,
    /// Election timeout lower bound, ms.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub election_timeout_min_ms: Option<u64>,
    /// Election timeout upper bound, ms.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub election_timeout_max_ms: Option<u64>,
    /// This node's certificate chain (PEM) for mutual TLS with the peers; TLS is on when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// Private key of `certfile` (PEM, unencrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// CA bundle every peer's certificate must be signed by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
}

impl Raft {
    /// Mutual TLS with the peers from `raft.certfile`, `raft.keyfile` and `raft.cafile`;
    /// `None` when `raft.certfile` is not set. Errors name the key and the file.
    pub fn peer_tls(&self) -> Result<Option<pgwarden_raft::tls::PeerTls>, ConfigError> {
        use pgwarden_raft::tls;
        let Some(certfile) = &self.certfile else {
            return Ok(None);
        };
        let missing = |key: &str| ConfigError::Missing {
            key: key.into(),
            why: "mutual TLS between peers needs raft.certfile, raft.keyfile and raft.cafile together",
        };
        let keyfile = self.keyfile.as_ref().ok_or_else(|| missing("raft.keyfile"))?;
        let cafile = self.cafile.as_ref().ok_or_else(|| missing("raft.cafile"))?;
        let invalid = |key: &str| {
            let key = key.to_string();
            move |e: tls::TlsError| ConfigError::Invalid {
                key,
                why: e.to_string(),
            }
        };
        let certs = tls::read_certs(certfile).map_err(invalid("raft.certfile"))?;
        let key = tls::read_key(keyfile).map_err(invalid("raft.keyfile"))?;
        let roots = tls::read_roots(cafile).map_err(invalid("raft.cafile"))?;
        tls::PeerTls::new(certs, key, roots)
            .map(Some)
            .map_err(invalid("raft.keyfile"))
    }
    /// The data directory (a witness may omit it).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(d::WITNESS_RAFT_DATA_DIR))
    }
    /// Address to bind.
    pub fn bind_addr(&self) -> &HostPort {
        self.bind_addr.as_ref().unwrap_or(&self.self_addr)
    }
    /// Number of voters: this node plus its partners.
    pub fn voters(&self) -> usize {
        1 + self.partner_addrs.len()
    }
    /// Heartbeat period.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.heartbeat_interval_ms
            .unwrap_or(d::RAFT_HEARTBEAT_INTERVAL_MS)
    }
    /// Election timeout lower bound.
    pub fn election_timeout_min_ms(&self) -> u64 {
        self.election_timeout_min_ms
            .unwrap_or(d::RAFT_ELECTION_TIMEOUT_MIN_MS)
    }
    /// Election timeout upper bound.
    pub fn election_timeout_max_ms(&self) -> u64 {
        self.election_timeout_max_ms
            .unwrap_or(d::RAFT_ELECTION_TIMEOUT_MAX_MS)
    }
}

/// Connection settings of one PostgreSQL role pgwarden uses.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PgUser {
    /// Role name.
    pub username: String,
    /// Password (written to the pgpass file, never on a command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// libpq `sslmode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    /// libpq `sslcert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcert: Option<String>,
    /// libpq `sslkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslkey: Option<String>,
    /// libpq `sslpassword`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslpassword: Option<String>,
    /// libpq `sslrootcert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<String>,
    /// libpq `sslcrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcrl: Option<String>,
    /// libpq `sslcrldir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcrldir: Option<String>,
    /// libpq `gssencmode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gssencmode: Option<String>,
    /// libpq `channel_binding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_binding: Option<String>,
    /// libpq `sslnegotiation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslnegotiation: Option<String>,
}

/// `postgresql.authentication`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PgAuthentication {
    /// Superuser (created by initdb; used by pgwarden for local queries).
    pub superuser: PgUser,
    /// Replication user (replicas stream with it).
    pub replication: PgUser,
    /// pg_rewind user (PostgreSQL 11+); the superuser if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<PgUser>,
}

/// `postgresql.callbacks`: run asynchronously with `<action> <role> <scope>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Callbacks {
    /// After PostgreSQL starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_start: Option<Command>,
    /// After it stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stop: Option<Command>,
    /// After a restart without role change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_restart: Option<Command>,
    /// After a configuration reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reload: Option<Command>,
    /// After promotion or demotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_role_change: Option<Command>,
}

/// `postgresql.bin_name`: custom program names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BinNames {
    /// `pg_ctl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_ctl: Option<String>,
    /// `initdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdb: Option<String>,
    /// `pg_controldata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_controldata: Option<String>,
    /// `pg_basebackup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_basebackup: Option<String>,
    /// `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// `pg_isready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_isready: Option<String>,
    /// `pg_rewind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_rewind: Option<String>,
}

/// `postgresql:` — the local instance. Absent on a witness.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Postgresql {
    /// Addresses PostgreSQL listens on; pgwarden connects to the first.
    pub listen: ListenAddr,
    /// Address others connect to; written into the member key as `conn_url`.
    pub connect_address: HostPort,
    /// Connection pooler address, advertised as `proxy_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_address: Option<HostPort>,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// Where postgresql.conf and the hba/ident files go (default: `data_dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_dir: Option<PathBuf>,
    /// Directory of the PostgreSQL programs (default: `$PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// pgpass file pgwarden writes for its tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgpass: Option<PathBuf>,
    /// pgwarden-specific: when the daemon runs as root, run PostgreSQL and its tools as this user
    /// (PostgreSQL refuses to run as root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// A postgresql.conf to include instead of the generated base file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_conf: Option<PathBuf>,
    /// Roles pgwarden connects as.
    pub authentication: PgAuthentication,
    /// Local GUCs (cluster-wide ones only come from the DCS; see [`merge_parameters`]).
    #[serde(default)]
    pub parameters: BTreeMap<String, GucValue>,
    /// pg_hba.conf lines (override the DCS ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
    /// pg_ident.conf lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_ident: Option<Vec<String>>,
    /// Scripts run on events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callbacks: Option<Callbacks>,
    /// Fencing script run after taking the leader lock, before promoting; non-zero aborts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promote: Option<Command>,
    /// Script run synchronously before stopping PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_stop: Option<Command>,
    /// Replica creation methods in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_replica_methods: Option<Vec<String>>,
    /// pg_basebackup options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basebackup: Option<ToolOptions>,
    /// pg_rewind options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<ToolOptions>,
    /// Use pg_rewind on a former primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_pg_rewind: Option<bool>,
    /// Re-clone when pg_rewind fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_data_directory_on_rewind_failure: Option<bool>,
    /// Re-clone when timelines diverged and rewind is impossible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_data_directory_on_diverged_timelines: Option<bool>,
    /// Connect over a Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_unix_socket: Option<bool>,
    /// Replication connections over a Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_unix_socket_repl: Option<bool>,
    /// pg_ctl wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_ctl_timeout: Option<Secs>,
    /// Extra recovery settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_conf: Option<Map<String, Value>>,
    /// Custom program names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_name: Option<BinNames>,
    /// Sections of custom replica methods (`wal_g: {command: ...}`), keyed by method name. Only
    /// methods named in a `create_replica_methods` list are kept; everything else the flatten
    /// collects was already reported as unknown by the key walk and is dropped.
    #[serde(flatten)]
    pub replica_methods: BTreeMap<String, Value>,
}

impl Postgresql {
    /// Configuration directory.
    pub fn config_dir(&self) -> &Path {
        self.config_dir.as_deref().unwrap_or(&self.data_dir)
    }
    /// Replica creation methods, or `[basebackup]`.
    pub fn create_replica_methods(&self) -> Vec<String> {
        self.create_replica_methods
            .clone()
            .unwrap_or_else(|| d::CREATE_REPLICA_METHODS.iter().map(|s| s.to_string()).collect())
    }
    /// pg_ctl wait in seconds.
    pub fn pg_ctl_timeout(&self) -> u64 {
        self.pg_ctl_timeout.as_ref().map_or(d::PG_CTL_TIMEOUT, |s| s.secs)
    }
}

/// `bootstrap:`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Initial dynamic configuration, written to the DCS once by the member that initialises the cluster.
    #[serde(default)]
    pub dcs: DynamicConfig,
    /// `initdb` (default) or the name of a custom method section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// initdb options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdb: Option<ToolOptions>,
    /// pg_hba.conf lines appended at bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
    /// Script run once after the cluster is created (gets a connection URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_bootstrap: Option<Command>,
    /// Old name of `post_bootstrap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_init: Option<Command>,
    /// The custom method section named by `method` (`command`, `keep_existing_recovery_conf`, ...).
    #[serde(flatten)]
    pub methods: BTreeMap<String, Value>,
}

impl Bootstrap {
    /// `post_bootstrap`, else `post_init`.
    pub fn post_bootstrap(&self) -> Option<&Command> {
        self.post_bootstrap.as_ref().or(self.post_init.as_ref())
    }
}

/// `tags:`. Known tags are typed; any other tag is kept in `custom` (visible in the member key and
/// usable in `/replica?tag_k=v` checks).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tags {
    /// Never become leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofailover: Option<bool>,
    /// Leader race tie-break; ≤ 0 means nofailover.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub failover_priority: Option<i64>,
    /// Answer 503 on `/replica`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noloadbalance: Option<bool>,
    /// Preferred source for new replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clonefrom: Option<bool>,
    /// Cascade from this member instead of the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    /// Never a synchronous standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nosync: Option<bool>,
    /// Sync standby preference; ≤ 0 means nosync.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub sync_priority: Option<i64>,
    /// Archive recovery only, no streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nostream: Option<bool>,
    /// Any other tag.
    #[serde(flatten)]
    pub custom: BTreeMap<String, Value>,
}

impl Tags {
    /// Patroni's `Tags.nofailover`: the boolean wins; else priority ≤ 0.
    pub fn nofailover(&self) -> bool {
        match self.nofailover {
            Some(b) => b,
            None => self.failover_priority.is_some_and(|p| p <= 0),
        }
    }
    /// Patroni's `Tags.failover_priority`: 0 if nofailover is true, else the priority or 1.
    pub fn failover_priority(&self) -> i64 {
        if self.nofailover == Some(true) {
            0
        } else {
            self.failover_priority.unwrap_or(d::FAILOVER_PRIORITY)
        }
    }
    /// Patroni's `Tags.nosync`.
    pub fn nosync(&self) -> bool {
        match self.nosync {
            Some(b) => b,
            None => self.sync_priority.is_some_and(|p| p <= 0),
        }
    }
    /// Patroni's `Tags.sync_priority`.
    pub fn sync_priority(&self) -> i64 {
        if self.nosync == Some(true) {
            0
        } else {
            self.sync_priority.unwrap_or(d::SYNC_PRIORITY)
        }
    }

    /// Patroni's `_validate_failover_tags` warnings, with its exact text (Python prints booleans as
    /// `True`/`False`).
    pub fn conflicts(&self) -> Vec<ConfigWarning> {
        let py = |b: bool| if b { "True" } else { "False" };
        let mut out = Vec::new();
        for (bool_name, b, prio_name, p) in [
            (
                "nofailover",
                self.nofailover,
                "failover_priority",
                self.failover_priority,
            ),
            ("nosync", self.nosync, "sync_priority", self.sync_priority),
        ] {
            if let (Some(b), Some(p)) = (b, p) {
                if (b && p > 0) || (!b && p <= 0) {
                    out.push(ConfigWarning::TagConflict(format!(
                        "Conflicting configuration between {bool_name}: {} and {prio_name}: {p}. Defaulting to {bool_name}: {}",
                        py(b),
                        py(b)
                    )));
                }
            }
        }
        out
    }
}

/// `watchdog:`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Watchdog {
    /// off, automatic or required.
    #[serde(default)]
    pub mode: WatchdogMode,
    /// Device path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// Seconds between watchdog expiry and lease expiry; -1 means `ttl // 2`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub safety_margin: Option<i64>,
}

impl Watchdog {
    /// Device path or `/dev/watchdog`.
    pub fn device(&self) -> PathBuf {
        self.device
            .clone()
            .unwrap_or_else(|| PathBuf::from(d::WATCHDOG_DEVICE))
    }
    /// The safety margin for a given `ttl` (`-1` → `ttl // 2`).
    pub fn safety_margin(&self, ttl: u32) -> u32 {
        match self.safety_margin.unwrap_or(d::WATCHDOG_SAFETY_MARGIN) {
            -1 => ttl / 2,
            m => u32::try_from(m.max(0)).unwrap_or(u32::MAX),
        }
    }
    /// Watchdog timeout (`ttl − safety_margin`), or `None` when it would be shorter than `loop_wait`
    /// (Patroni then refuses to use the watchdog: it would fire between two pings).
    pub fn timeout(&self, timing: &Timing) -> Option<u32> {
        let t = timing.ttl.checked_sub(self.safety_margin(timing.ttl))?;
        (t >= timing.loop_wait).then_some(t)
    }
}

/// Turns a YAML document into the JSON value the rest of loading works on. JSON is the DCS's format,
/// so one walk and one set of serde impls serve both.
fn yaml_to_json(text: &str, path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|source| ConfigError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_value(&yaml).map_err(|e| ConfigError::Invalid {
        key: String::new(),
        why: format!("the document cannot be represented as JSON (non-string mapping keys?): {e}"),
    })?;
    match json {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(ConfigError::NotAMapping {
            found: keys::type_name(&other),
        }),
    }
}

/// Removes `key: null` entries at every mapping level: in a file, an empty value means "not set".
fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Object(m) = v {
            strip_nulls(m);
        }
    }
}

fn get<'a>(root: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segs = path.split('.');
    let first = root.get(segs.next()?)?;
    segs.try_fold(first, |v, s| v.get(s))
}

impl Config {
    /// Loads `path` with the process environment applied.
    pub fn load(path: &Path, strictness: Strictness) -> Result<Loaded, ConfigError> {
        Self::load_with_env(path, strictness, std::env::vars())
    }

    /// Loads `path` with the given environment (tests pass their own).
    pub fn load_with_env(
        path: &Path,
        strictness: Strictness,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_str(&text, path, strictness, env)
    }

    /// Parses YAML text; `origin` names the source in syntax errors.
    pub fn from_yaml_str(
        text: &str,
        origin: &Path,
        strictness: Strictness,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut root = yaml_to_json(text, origin)?;
        strip_nulls(&mut root);
        keys::apply_env(&mut root, env)?;

        // Sections we refuse outright, before anything else, so the message is the first thing seen.
        let mut errors: Vec<ConfigError> = keys::UNSUPPORTED_DCS
            .iter()
            .filter(|s| root.contains_key(**s))
            .map(|s| ConfigError::UnsupportedDcs {
                section: s.to_string(),
            })
            .collect();
        if get(&root, "bootstrap.users").is_some() {
            errors.push(ConfigError::Removed {
                key: "bootstrap.users".into(),
                why: "removed in Patroni 4.0 and not supported: create roles in a `bootstrap.post_bootstrap` script",
            });
        }
        if let Some(Value::Object(b)) = root.get_mut("bootstrap") {
            b.remove("users");
        }
        for s in keys::UNSUPPORTED_DCS {
            root.remove(*s);
        }

        let mut report = WalkReport::default();
        keys::walk(
            &root,
            "",
            "",
            &MethodNames::from_doc(&Value::Object(root.clone())),
            &mut report,
        );
        errors.append(&mut report.errors);

        let witness = matches!(get(&root, "raft.witness"), Some(Value::Bool(true)));
        errors.extend(Self::missing_keys(&root, witness));
        if let Some(e) = ConfigError::from_list(errors) {
            return Err(e);
        }

        let mut warnings = Vec::new();
        match strictness {
            Strictness::Strict if !report.unknown.is_empty() => {
                return Err(ConfigError::UnknownKeys {
                    keys: report.unknown.iter().map(ToString::to_string).collect(),
                })
            }
            _ => warnings.append(&mut report.unknown),
        }
        warnings.append(&mut report.notes);

        if witness && root.remove("postgresql").is_some() {
            warnings.push(ConfigWarning::Note {
                key: "postgresql".into(),
                message: "ignored: a witness never runs PostgreSQL".into(),
            });
        }

        let mut config: Config =
            serde_path_to_error::deserialize(Value::Object(root)).map_err(|e| ConfigError::Deserialize {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        config.drop_stray_method_sections();
        warnings.extend(config.validate()?);
        Ok(Loaded { config, warnings })
    }

    /// Required keys, checked on the document so each error names its key. `postgresql` is required
    /// only on a data node; `raft.data_dir` too (a witness has a default).
    fn missing_keys(root: &Map<String, Value>, witness: bool) -> Vec<ConfigError> {
        let mut required: Vec<(&str, &'static str)> = vec![
            ("scope", "the cluster name"),
            ("name", "this member's unique name"),
            ("restapi.listen", "the REST API bind address"),
            (
                "restapi.connect_address",
                "the REST API address other members use",
            ),
            ("raft.self_addr", "this node's Raft address"),
        ];
        if !witness {
            required.extend([
                ("raft.data_dir", "where the Raft log is stored"),
                (
                    "postgresql.listen",
                    "PostgreSQL's listen address (not needed with `raft.witness: true`)",
                ),
                (
                    "postgresql.connect_address",
                    "PostgreSQL's address for other members",
                ),
                ("postgresql.data_dir", "PGDATA"),
                (
                    "postgresql.authentication.superuser.username",
                    "the superuser pgwarden connects as",
                ),
                (
                    "postgresql.authentication.replication.username",
                    "the role replicas stream with",
                ),
            ]);
        }
        let mut out: Vec<ConfigError> = required
            .into_iter()
            .filter(|(k, _)| get(root, k).is_none())
            .map(|(key, why)| ConfigError::Missing { key: key.into(), why })
            .collect();
        if get(root, "postgresql.authentication.rewind").is_some()
            && get(root, "postgresql.authentication.rewind.username").is_none()
        {
            out.push(ConfigError::Missing {
                key: "postgresql.authentication.rewind.username".into(),
                why: "a rewind user needs a name",
            });
        }
        out
    }

    /// Keeps only the method sections that a method list or `bootstrap.method` names (the flatten
    /// maps also catch unknown keys, which the walk already reported).
    fn drop_stray_method_sections(&mut self) {
        let standby_methods: Vec<String> = self
            .bootstrap
            .dcs
            .standby_cluster
            .as_ref()
            .and_then(|s| s.create_replica_methods.clone())
            .unwrap_or_default();
        if let Some(pg) = &mut self.postgresql {
            let listed: Vec<String> = pg.create_replica_methods.clone().unwrap_or_default();
            pg.replica_methods
                .retain(|k, _| listed.contains(k) || standby_methods.contains(k));
        }
        let method = self.bootstrap.method.clone();
        self.bootstrap
            .methods
            .retain(|k, _| method.as_deref() == Some(k.as_str()));
    }

    /// Checks values: names, addresses, Raft membership and timing, method sections, forbidden tool
    /// options, timing of `bootstrap.dcs`. Returns warnings (adjusted timing, tag conflicts) or every
    /// error found.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        if let Err(e) = MemberName::new(self.name.as_str()) {
            errors.push(ConfigError::Invalid {
                key: "name".into(),
                why: e.to_string(),
            });
        }
        if self.name.as_str() == d::RESERVED_NAME {
            errors.push(ConfigError::Invalid {
                key: "name".into(),
                why: format!("{:?} is reserved", d::RESERVED_NAME),
            });
        }
        if self.scope.is_empty() || self.scope.contains('/') {
            errors.push(ConfigError::Invalid {
                key: "scope".into(),
                why: "must be non-empty and contain no '/'".into(),
            });
        }
        if !self.namespace.starts_with('/') {
            errors.push(ConfigError::Invalid {
                key: "namespace".into(),
                why: "must start with '/'".into(),
            });
        }
        let connect = |key: &str, a: &HostPort, errors: &mut Vec<ConfigError>| {
            if a.host.is_empty() || a.port == 0 {
                errors.push(ConfigError::BadAddress {
                    key: key.into(),
                    value: a.to_string(),
                    why: "others connect here: it needs a host and a non-zero port".into(),
                });
            }
        };
        connect(
            "restapi.connect_address",
            &self.restapi.connect_address,
            &mut errors,
        );
        connect("raft.self_addr", &self.raft.self_addr, &mut errors);
        if let Some(a) = &self.ctl.connect_address {
            connect("ctl.connect_address", a, &mut errors);
        }

        // Raft membership.
        let r = &self.raft;
        if r.single_node {
            if !r.partner_addrs.is_empty() {
                errors.push(ConfigError::SingleNodeWithPartners {
                    count: r.partner_addrs.len(),
                });
            }
            if r.witness {
                errors.push(ConfigError::Invalid {
                    key: "raft.single_node".into(),
                    why: "a single-node cluster cannot be a witness: nothing would run PostgreSQL".into(),
                });
            }
        } else if r.voters() == 2 {
            errors.push(ConfigError::TwoVoters {
                partner: r.partner_addrs[0].to_string(),
            });
        } else if r.voters() < 3 {
            errors.push(ConfigError::TooFewVoters { voters: r.voters() });
        }
        for (i, p) in r.partner_addrs.iter().enumerate() {
            if *p == r.self_addr {
                errors.push(ConfigError::Invalid {
                    key: format!("raft.partner_addrs[{i}]"),
                    why: format!("{p} is this node's own raft.self_addr"),
                });
            }
            if r.partner_addrs[..i].contains(p) {
                errors.push(ConfigError::Invalid {
                    key: format!("raft.partner_addrs[{i}]"),
                    why: format!("{p} is listed twice"),
                });
            }
        }
        let (hb, emin, emax) = (
            r.heartbeat_interval_ms(),
            r.election_timeout_min_ms(),
            r.election_timeout_max_ms(),
        );
        if hb == 0 {
            errors.push(ConfigError::Invalid {
                key: "raft.heartbeat_interval_ms".into(),
                why: "must be positive".into(),
            });
        }
        if emin <= hb {
            errors.push(ConfigError::Invalid {
                key: "raft.election_timeout_min_ms".into(),
                why: format!("{emin} must be greater than raft.heartbeat_interval_ms ({hb}), or followers time out between heartbeats"),
            });
        }
        if emax <= emin {
            errors.push(ConfigError::Invalid {
                key: "raft.election_timeout_max_ms".into(),
                why: format!("{emax} must be greater than raft.election_timeout_min_ms ({emin}) so timeouts are randomised"),
            });
        }

        // ctl exposure.
        let ctl_listen = self.ctl.listen();
        let loopback = ctl_listen.host == "localhost"
            || ctl_listen
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let client_certs = self.ctl.verify_client() == VerifyClient::Required && self.ctl.cacert.is_some();
        if !loopback && self.ctl.auth_token.is_none() && !client_certs {
            errors.push(ConfigError::Invalid {
                key: "ctl.listen".into(),
                why: format!(
                    "{ctl_listen} is not a loopback address: set `ctl.auth_token`, or `ctl.verify_client: required` with \
                     `ctl.cacert`, so that admin actions are not open to the network"
                ),
            });
        }
        for (key, cert, keyf) in [
            ("restapi", &self.restapi.certfile, &self.restapi.keyfile),
            ("ctl", &self.ctl.certfile, &self.ctl.keyfile),
        ] {
            if keyf.is_some() && cert.is_none() {
                errors.push(ConfigError::Missing {
                    key: format!("{key}.certfile"),
                    why: "a keyfile needs its certificate",
                });
            }
        }
        // Raft mutual TLS: all three files or none.
        let tls = [
            ("raft.certfile", &r.certfile),
            ("raft.keyfile", &r.keyfile),
            ("raft.cafile", &r.cafile),
        ];
        if tls.iter().any(|(_, v)| v.is_some()) {
            for (key, v) in tls {
                if v.is_none() {
                    errors.push(ConfigError::Missing {
                        key: key.into(),
                        why: "mutual TLS between peers needs raft.certfile, raft.keyfile and raft.cafile together",
                    });
                }
            }
        }
        if self.ctl.verify_client() == VerifyClient::Required && self.ctl.cacert.is_none() {
            errors.push(ConfigError::Missing {
                key: "ctl.cacert".into(),
                why: "client certificates are verified against it (ctl.verify_client is required)",
            });
        }
        if self.ctl.verify_client() == VerifyClient::Required && self.ctl.certfile.is_none() {
            errors.push(ConfigError::Missing {
                key: "ctl.certfile".into(),
                why: "client certificates need TLS, which the admin API serves when ctl.certfile is set",
            });
        }
        if self.restapi.verify_client() != VerifyClient::None && self.restapi.cafile.is_none() {
            errors.push(ConfigError::Missing {
                key: "restapi.cafile".into(),
                why: "client certificates are verified against it (restapi.verify_client is not none)",
            });
        }

        // PostgreSQL.
        if let Some(pg) = &self.postgresql {
            connect("postgresql.connect_address", &pg.connect_address, &mut errors);
            if pg.authentication.superuser.username.is_empty() {
                errors.push(ConfigError::Missing {
                    key: "postgresql.authentication.superuser.username".into(),
                    why: "it is empty",
                });
            }
            if pg.authentication.replication.username.is_empty() {
                errors.push(ConfigError::Missing {
                    key: "postgresql.authentication.replication.username".into(),
                    why: "it is empty",
                });
            }
            for m in pg.create_replica_methods() {
                if m != "basebackup" && !pg.replica_methods.contains_key(&m) {
                    errors.push(ConfigError::Missing {
                        key: format!("postgresql.{m}"),
                        why: "a custom replica method needs its own section with a `command`",
                    });
                }
            }
            for (m, section) in &pg.replica_methods {
                if section.get("command").is_none() {
                    errors.push(ConfigError::Missing {
                        key: format!("postgresql.{m}.command"),
                        why: "the script to run",
                    });
                }
            }
            check_forbidden(
                "postgresql.rewind",
                pg.rewind.as_ref(),
                &[
                    "target-pgdata",
                    "source-pgdata",
                    "source-server",
                    "write-recovery-conf",
                    "dry-run",
                    "restore-target-wal",
                    "config-file",
                    "no-ensure-shutdown",
                    "version",
                    "help",
                ],
                &mut errors,
            );
            for (key, cmd) in [
                ("postgresql.pre_promote", pg.pre_promote.as_ref()),
                ("postgresql.before_stop", pg.before_stop.as_ref()),
            ]
            .into_iter()
            .chain(pg.callbacks.iter().flat_map(|c| {
                [
                    ("postgresql.callbacks.on_start", c.on_start.as_ref()),
                    ("postgresql.callbacks.on_stop", c.on_stop.as_ref()),
                    ("postgresql.callbacks.on_restart", c.on_restart.as_ref()),
                    ("postgresql.callbacks.on_reload", c.on_reload.as_ref()),
                    ("postgresql.callbacks.on_role_change", c.on_role_change.as_ref()),
                ]
            })) {
                check_command(key, cmd, &mut errors);
            }
            let ignored: Vec<&String> = pg
                .parameters
                .keys()
                .filter(|k| d::DCS_ONLY_GUCS.iter().any(|g| g.eq_ignore_ascii_case(k)))
                .collect();
            for k in ignored {
                warnings.push(ConfigWarning::Note {
                    key: format!("postgresql.parameters.{k}"),
                    message: "cluster-wide GUC: only the value in the DCS (bootstrap.dcs.postgresql.parameters) is used".into(),
                });
            }
        }

        // Bootstrap.
        let b = &self.bootstrap;
        if let Some(m) = b.method.as_deref().filter(|m| *m != "initdb") {
            match b.methods.get(m) {
                None => errors.push(ConfigError::Missing {
                    key: format!("bootstrap.{m}"),
                    why: "`bootstrap.method` names this section",
                }),
                Some(s) if s.get("command").is_none() => errors.push(ConfigError::Missing {
                    key: format!("bootstrap.{m}.command"),
                    why: "the script to run",
                }),
                Some(_) => {}
            }
        }
        check_forbidden(
            "bootstrap.initdb",
            b.initdb.as_ref(),
            &["pgdata", "nosync", "pwfile", "sync-only", "version"],
            &mut errors,
        );
        check_command("bootstrap.post_bootstrap", b.post_bootstrap.as_ref(), &mut errors);
        check_command("bootstrap.post_init", b.post_init.as_ref(), &mut errors);
        if b.post_bootstrap.is_some() && b.post_init.is_some() {
            warnings.push(ConfigWarning::Note {
                key: "bootstrap.post_init".into(),
                message: "ignored: bootstrap.post_bootstrap is set too".into(),
            });
        }
        if let Err(e) = b.dcs.validate(keys::DCS_PREFIX) {
            errors.extend(e.iter().map(clone_error));
        }
        let (timing, mut timing_warnings) = b.dcs.timing();
        warnings.append(&mut timing_warnings);

        // Watchdog against the bootstrap timing (the DCS may change it later; the HA loop re-checks).
        if self.watchdog.mode != WatchdogMode::Off && self.watchdog.timeout(&timing).is_none() {
            warnings.push(ConfigWarning::Note {
                key: "watchdog.safety_margin".into(),
                message: format!(
                    "ttl ({}) - safety_margin ({}) is shorter than loop_wait ({}): the watchdog cannot be used with this timing",
                    timing.ttl,
                    self.watchdog.safety_margin(timing.ttl),
                    timing.loop_wait
                ),
            });
        }
        warnings.extend(self.tags.conflicts());

        match ConfigError::from_list(errors) {
            Some(e) => Err(e),
            None => Ok(warnings),
        }
    }

    /// Every key path pgwarden knows, as written in the YAML file (dynamic keys under
    /// `bootstrap.dcs`, method sections as `postgresql.<method>`). The documentation test uses it.
    pub fn known_keys() -> Vec<&'static keys::KeySpec> {
        keys::table().iter().collect()
    }

    /// Whether this node runs PostgreSQL.
    pub fn is_witness(&self) -> bool {
        self.raft.witness
    }
}

/// `ConfigError` holds io/yaml sources and is not `Clone`; the variants that `DynamicConfig::validate`
/// produces are plain data, so they are rebuilt here.
fn clone_error(e: &ConfigError) -> ConfigError {
    match e {
        ConfigError::Invalid { key, why } => ConfigError::Invalid {
            key: key.clone(),
            why: why.clone(),
        },
        ConfigError::Missing { key, why } => ConfigError::Missing {
            key: key.clone(),
            why,
        },
        other => ConfigError::Invalid {
            key: other.key().unwrap_or_default().to_string(),
            why: other.to_string(),
        },
    }
}

fn check_forbidden(key: &str, opts: Option<&ToolOptions>, forbidden: &[&str], errors: &mut Vec<ConfigError>) {
    for o in opts.iter().flat_map(|o| o.0.iter()) {
        if forbidden.contains(&o.name.as_str()) {
            errors.push(ConfigError::Invalid {
                key: key.into(),
                why: format!(
                    "option `{}` is set by pgwarden itself and may not be given here",
                    o.name
                ),
            });
        }
    }
}

fn check_command(key: &str, cmd: Option<&Command>, errors: &mut Vec<ConfigError>) {
    if let Some(c) = cmd {
        match c.argv() {
            Some(argv) if !argv.is_empty() => {}
            Some(_) => errors.push(ConfigError::Invalid {
                key: key.into(),
                why: "the command is empty".into(),
            }),
            None => errors.push(ConfigError::Invalid {
                key: key.into(),
                why: "unbalanced quote or trailing backslash".into(),
            }),
        }
    }
}
