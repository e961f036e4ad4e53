//! The sections of the local configuration file: one serde struct per section of Patroni's
//! layout, with accessors that apply the defaults from [`super::defaults`]. The root
//! [`super::Config`] that holds them lives in `mod.rs`.

use super::defaults as d;
use super::values::lenient;
use super::{
    Command, ConfigError, ConfigWarning, DynamicConfig, GucValue, HostPort, ListenAddr, Secs, Timing,
};
use super::{ToolOptions, WatchdogMode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// This member's site or datacenter; the Raft leader spreads the voters over sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// How many members vote (3 or 5); the others are learners.
    #[serde(
        default,
        rename = "voters",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_int"
    )]
    pub voter_target: Option<u64>,
    /// How long a voter may be unreachable before a learner takes its vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voter_replace_after: Option<Secs>,
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
    /// The target voter count (`raft.voters`).
    pub fn voter_target(&self) -> u64 {
        self.voter_target.unwrap_or(d::RAFT_VOTERS)
    }
    /// How long a voter may be unreachable before it is replaced (`raft.voter_replace_after`).
    pub fn voter_replace_after(&self) -> std::time::Duration {
        self.voter_replace_after.as_ref().map_or(
            std::time::Duration::from_secs(d::RAFT_VOTER_REPLACE_AFTER),
            Secs::duration,
        )
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
    /// Directory of the PostgreSQL programs (default: searched, see `postgres::discover`).
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
    /// Local GUCs (cluster-wide ones only come from the DCS; see [`merge_parameters`](super::merge_parameters)).
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
    /// Watchdog timeout, or `None` when it would be shorter than `loop_wait` (Patroni then refuses
    /// to use the watchdog: it would fire between two pings). Patroni's `ttl − safety_margin`, but
    /// never less than the lease's fence deadline (`ttl` less a margin of ttl/8, at most 2 s, rounded
    /// up), as the HA loop sets it: a watchdog that fires before the fence would reset a host whose
    /// lease is still valid.
    pub fn timeout(&self, timing: &Timing) -> Option<u32> {
        let ttl_ms = u64::from(timing.ttl) * 1000;
        let fence = u32::try_from((ttl_ms - (ttl_ms / 8).min(2000)).div_ceil(1000)).unwrap_or(u32::MAX);
        let t = timing
            .ttl
            .saturating_sub(self.safety_margin(timing.ttl))
            .max(fence);
        (t >= timing.loop_wait).then_some(t)
    }
}
