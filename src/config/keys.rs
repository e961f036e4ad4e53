//! The key table: every configuration key pgwarden knows, with its shape, default, whether it is
//! dynamic (lives in the DCS `config` key) and its environment variable.
//!
//! This table is the single source for three things that must never drift apart: the unknown-key
//! check (and the shape check that gives errors their key path), the `PGWARDEN_*` environment
//! mapping, and [`super::Config::known_keys`], which `tests/config_docs.rs` compares with
//! `docs/configuration.md`. Unit tests check that the serde types accept every key listed here and
//! serialise no key that is missing from it.

use super::defaults as d;
use super::error::{ConfigError, ConfigWarning};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::LazyLock;

/// The shape a key's value must have. The walk checks it before serde sees the document, so that a
/// wrong type is reported with its full key path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A mapping whose children are all listed in the table.
    Section,
    /// A mapping with listed children plus arbitrary extra ones (`tags`).
    Open,
    /// A free-form mapping; children are not checked (`slots`, `recovery_conf`, method sections).
    Map,
    /// A free-form mapping of scalar values (`parameters`, headers).
    ScalarMap,
    /// A string.
    Str,
    /// A filesystem path (a string).
    Path,
    /// `true` / `false`.
    Bool,
    /// An integer (a numeric string is accepted, as Patroni calls `int()` on it).
    Int,
    /// Seconds: an integer or a number with a unit (`30min`).
    Secs,
    /// `host:port`.
    Addr,
    /// `host[,host...]:port` (PostgreSQL's listen, which may name several addresses).
    ListenAddr,
    /// A list of strings.
    StrList,
    /// A list of `host:port` strings.
    AddrList,
    /// Tool options: a list of strings and single-key mappings (`initdb`, `basebackup`), or a mapping.
    OptList,
    /// A command: a string (split like a shell would) or a list of arguments.
    Command,
    /// One of a fixed set of strings (case-insensitive, as in Patroni).
    Enum(&'static [&'static str]),
    /// `synchronous_mode`: a boolean or `on` / `off` / `quorum`.
    SyncMode,
    /// `watchdog.mode`: `off` / `automatic` / `required`, or a boolean.
    WatchdogMode,
    /// A port: an integer or a numeric string.
    Port,
    /// A string or an integer (`recovery_min_apply_delay`), or a string or list (`log.format`).
    Scalar,
    /// A list of mappings (`ignore_slots`).
    MapList,
    /// Accepted so that Patroni files load, but with no effect in pgwarden (the text says why).
    Ignored(&'static str),
}

impl Kind {
    fn expected(self) -> String {
        match self {
            Kind::Section | Kind::Open | Kind::Map => "a mapping".into(),
            Kind::ScalarMap => "a mapping of names to scalar values".into(),
            Kind::Str => "a string (quote numbers)".into(),
            Kind::Path => "a path (a string)".into(),
            Kind::Bool => "true or false".into(),
            Kind::Int => "an integer".into(),
            Kind::Secs => "seconds (an integer) or a number with a unit".into(),
            Kind::Addr => "\"host:port\"".into(),
            Kind::ListenAddr => "\"host[,host...]:port\"".into(),
            Kind::StrList => "a list of strings".into(),
            Kind::AddrList => "a list of \"host:port\" strings".into(),
            Kind::OptList => "a list of strings and single-key mappings".into(),
            Kind::Command => "a command (a string or a list of strings)".into(),
            Kind::Enum(vals) => format!("one of {}", vals.join(", ")),
            Kind::SyncMode => "true, false, on, off or quorum".into(),
            Kind::WatchdogMode => "off, automatic or required".into(),
            Kind::Port => "a port number".into(),
            Kind::Scalar => "a scalar value".into(),
            Kind::MapList => "a list of mappings".into(),
            Kind::Ignored(_) => "anything".into(),
        }
    }
}

/// A key's default as the documentation shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dflt {
    /// Must be set (for the node kinds the description says).
    Required,
    /// Unset means "off" or "not used".
    Unset,
    /// A literal default.
    Text(&'static str),
    /// An integer default.
    Num(i64),
    /// A boolean default.
    Flag(bool),
}

impl fmt::Display for Dflt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dflt::Required => f.write_str("required"),
            Dflt::Unset => f.write_str("none"),
            Dflt::Text(t) => f.write_str(t),
            Dflt::Num(n) => write!(f, "{n}"),
            Dflt::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// One row of the key table.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// Dotted path as written in the YAML file (`bootstrap.dcs.ttl`, `postgresql.<method>`).
    pub path: String,
    /// Shape of the value.
    pub kind: Kind,
    /// Default, as documented.
    pub default: Dflt,
    /// True when the key lives in the DCS `config` key (under `bootstrap.dcs` in the file).
    pub dynamic: bool,
    /// The environment variable that overrides it, if any.
    pub env: Option<String>,
}

/// Prefix of the dynamic keys in the YAML file.
pub const DCS_PREFIX: &str = "bootstrap.dcs";

/// libpq connection parameters accepted in each `postgresql.authentication.*` user (Patroni's list).
const AUTH_PARAMS: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];

/// The PostgreSQL programs whose names `postgresql.bin_name` may override.
const BINARIES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];

/// DCS sections of Patroni that pgwarden replaces with `raft:`.
pub const UNSUPPORTED_DCS: &[&str] = &[
    "citus",
    "consul",
    "etcd",
    "etcd3",
    "kubernetes",
    "zookeeper",
    "exhibitor",
];

struct Builder {
    rows: Vec<KeySpec>,
    dynamic: bool,
    prefix: &'static str,
}

impl Builder {
    fn k(&mut self, path: &str, kind: Kind, default: Dflt) -> &mut KeySpec {
        let path = if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}.{path}", self.prefix)
        };
        self.rows.push(KeySpec {
            path,
            kind,
            default,
            dynamic: self.dynamic,
            env: None,
        });
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }
}

impl KeySpec {
    /// Gives the key the environment variable `PGWARDEN_` + its path in upper case with `_`.
    fn env(&mut self) -> &mut Self {
        self.env = Some(format!("PGWARDEN_{}", self.path.replace('.', "_").to_uppercase()));
        self
    }
    fn env_named(&mut self, name: String) -> &mut Self {
        self.env = Some(name);
        self
    }
}

/// The dynamic keys, relative to the DCS `config` key.
fn dynamic_rows(b: &mut Builder) {
    use Dflt::*;
    use Kind::{
        Bool, Int, Map, MapList, OptList, Port, Scalar, ScalarMap, Secs, Section, Str, StrList, SyncMode,
    };
    b.k("ttl", Int, Num(d::TTL.into()));
    b.k("loop_wait", Int, Num(d::LOOP_WAIT.into()));
    b.k("retry_timeout", Int, Num(d::RETRY_TIMEOUT.into()));
    b.k(
        "maximum_lag_on_failover",
        Int,
        Num(d::MAXIMUM_LAG_ON_FAILOVER as i64),
    );
    b.k("maximum_lag_on_syncnode", Int, Num(d::MAXIMUM_LAG_ON_SYNCNODE));
    b.k("max_timelines_history", Int, Num(d::MAX_TIMELINES_HISTORY.into()));
    b.k("primary_start_timeout", Int, Num(d::PRIMARY_START_TIMEOUT.into()));
    b.k("primary_stop_timeout", Int, Num(d::PRIMARY_STOP_TIMEOUT.into()));
    b.k(
        "master_start_timeout",
        Int,
        Text("alias of primary_start_timeout"),
    );
    b.k("master_stop_timeout", Int, Text("alias of primary_stop_timeout"));
    b.k("primary_race_backoff", Int, Num(d::PRIMARY_RACE_BACKOFF.into()));
    b.k("synchronous_mode", SyncMode, Text("off"));
    b.k("synchronous_mode_strict", Bool, Flag(false));
    b.k(
        "synchronous_node_count",
        Int,
        Num(d::SYNCHRONOUS_NODE_COUNT.into()),
    );
    b.k("failsafe_mode", Bool, Flag(false));
    b.k("check_timeline", Bool, Flag(false));
    b.k("member_slots_ttl", Secs, Text("30min"));
    b.k("slots", Map, Unset);
    b.k("ignore_slots", MapList, Unset);
    b.k("pause", Bool, Flag(false));
    b.k("standby_cluster", Section, Unset);
    b.k("standby_cluster.host", Str, Unset);
    b.k("standby_cluster.port", Port, Unset);
    b.k("standby_cluster.primary_slot_name", Str, Unset);
    b.k("standby_cluster.create_replica_methods", StrList, Unset);
    b.k("standby_cluster.restore_command", Str, Unset);
    b.k("standby_cluster.archive_cleanup_command", Str, Unset);
    b.k("standby_cluster.recovery_min_apply_delay", Scalar, Unset);
    b.k("postgresql", Section, Unset);
    b.k("postgresql.use_pg_rewind", Bool, Flag(false));
    b.k("postgresql.use_slots", Bool, Flag(d::USE_SLOTS));
    b.k("postgresql.parameters", ScalarMap, Unset);
    b.k("postgresql.pg_hba", StrList, Unset);
    b.k("postgresql.pg_ident", StrList, Unset);
    b.k("postgresql.recovery_conf", Map, Unset);
    b.k("postgresql.pg_ctl_timeout", Secs, Num(d::PG_CTL_TIMEOUT as i64));
    b.k("postgresql.basebackup", OptList, Unset);
    b.k("postgresql.rewind", OptList, Unset);
}

fn local_rows(b: &mut Builder) {
    use Dflt::*;
    use Kind::{
        Addr, AddrList, Bool, Command, Enum, Int, ListenAddr, Map, Open, OptList, Path, Scalar, ScalarMap,
        Secs, Section, Str, StrList, WatchdogMode,
    };
    let ignored_threads = "pgwarden does not use a Python thread pool";
    b.k("scope", Str, Required).env();
    b.k("namespace", Str, Text(d::NAMESPACE)).env();
    b.k("name", Str, Required).env();
    b.k("thread_pool_size", Kind::Ignored(ignored_threads), Unset);
    b.k("thread_stack_size", Kind::Ignored(ignored_threads), Unset);

    b.k("log", Section, Unset);
    b.k("log.type", Enum(&["plain", "json"]), Text("plain")).env();
    b.k(
        "log.level",
        Enum(&["DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"]),
        Text(d::LOG_LEVEL),
    )
    .env();
    b.k(
        "log.traceback_level",
        Kind::Ignored("Rust errors are logged with their full cause chain"),
        Unset,
    )
    .env();
    b.k("log.format", Scalar, Unset).env();
    b.k("log.dateformat", Str, Unset).env();
    b.k("log.static_fields", ScalarMap, Unset).env();
    b.k(
        "log.max_queue_size",
        Kind::Ignored("logging is not queued through a Python thread"),
        Unset,
    )
    .env();
    b.k("log.dir", Path, Unset).env();
    b.k("log.mode", Int, Unset).env();
    b.k("log.file_num", Int, Num(4)).env();
    b.k("log.file_size", Int, Num(25_000_000)).env();
    b.k("log.loggers", ScalarMap, Unset).env();
    b.k("log.deduplicate_heartbeat_logs", Bool, Flag(false)).env();

    b.k("restapi", Section, Unset);
    b.k("restapi.listen", Addr, Required).env();
    b.k("restapi.connect_address", Addr, Required).env();
    b.k("restapi.authentication", Section, Unset);
    b.k("restapi.authentication.username", Str, Unset)
        .env_named("PGWARDEN_RESTAPI_USERNAME".into());
    b.k("restapi.authentication.password", Str, Unset)
        .env_named("PGWARDEN_RESTAPI_PASSWORD".into());
    b.k("restapi.certfile", Path, Unset).env();
    b.k("restapi.keyfile", Path, Unset).env();
    b.k("restapi.keyfile_password", Str, Unset).env();
    b.k("restapi.cafile", Path, Unset).env();
    b.k("restapi.ciphers", Str, Unset).env();
    b.k(
        "restapi.verify_client",
        Enum(&["none", "optional", "required"]),
        Text("none"),
    )
    .env();
    b.k("restapi.allowlist", StrList, Unset).env();
    b.k("restapi.allowlist_include_members", Bool, Flag(false)).env();
    b.k("restapi.http_extra_headers", ScalarMap, Unset).env();
    b.k("restapi.https_extra_headers", ScalarMap, Unset).env();
    b.k(
        "restapi.request_queue_size",
        Int,
        Num(d::REQUEST_QUEUE_SIZE.into()),
    )
    .env();
    b.k(
        "restapi.server_tokens",
        Enum(&["minimal", "productonly", "original"]),
        Text("original"),
    )
    .env();
    b.k("restapi.thread_pool_size", Kind::Ignored(ignored_threads), Unset);

    b.k("ctl", Section, Unset);
    b.k("ctl.listen", Addr, Text(d::CTL_LISTEN)).env();
    b.k("ctl.connect_address", Addr, Text("ctl.listen")).env();
    b.k("ctl.auth_token", Str, Unset).env();
    b.k("ctl.certfile", Path, Unset).env();
    b.k("ctl.keyfile", Path, Unset).env();
    b.k("ctl.keyfile_password", Str, Unset).env();
    b.k("ctl.cacert", Path, Unset).env();
    b.k("ctl.verify_client", Enum(&["none", "required"]), Text("none"))
        .env();
    b.k("ctl.insecure", Bool, Flag(false)).env();
    b.k("ctl.authentication", Section, Unset);
    b.k(
        "ctl.authentication.username",
        Str,
        Text("restapi.authentication.username"),
    )
    .env_named("PGWARDEN_CTL_USERNAME".into());
    b.k(
        "ctl.authentication.password",
        Str,
        Text("restapi.authentication.password"),
    )
    .env_named("PGWARDEN_CTL_PASSWORD".into());

    b.k("raft", Section, Required);
    b.k("raft.data_dir", Path, Required).env();
    b.k("raft.self_addr", Addr, Required).env();
    b.k("raft.bind_addr", Addr, Text("raft.self_addr")).env();
    b.k("raft.partner_addrs", AddrList, Text("[]")).env();
    b.k("raft.witness", Bool, Flag(false)).env();
    b.k("raft.single_node", Bool, Flag(false)).env();
    b.k(
        "raft.heartbeat_interval_ms",
        Int,
        Num(d::RAFT_HEARTBEAT_INTERVAL_MS as i64),
    )
    .env();
    b.k(
        "raft.election_timeout_min_ms",
        Int,
        Num(d::RAFT_ELECTION_TIMEOUT_MIN_MS as i64),
    )
    .env();
    b.k(
        "raft.election_timeout_max_ms",
        Int,
        Num(d::RAFT_ELECTION_TIMEOUT_MAX_MS as i64),
    )
    .env();
    b.k("raft.certfile", Path, Unset).env();
    b.k("raft.keyfile", Path, Unset).env();
    b.k("raft.cafile", Path, Unset).env();

    b.k("postgresql", Section, Required);
    b.k("postgresql.listen", ListenAddr, Required).env();
    b.k("postgresql.connect_address", Addr, Required).env();
    b.k("postgresql.proxy_address", Addr, Unset).env();
    b.k("postgresql.data_dir", Path, Required).env();
    b.k("postgresql.config_dir", Path, Text("postgresql.data_dir"))
        .env();
    b.k("postgresql.bin_dir", Path, Text("$PATH")).env();
    b.k("postgresql.pgpass", Path, Unset).env();
    b.k("postgresql.run_as", Str, Unset).env();
    b.k("postgresql.custom_conf", Path, Unset);
    b.k("postgresql.authentication", Section, Required);
    for user in ["superuser", "replication", "rewind"] {
        b.k(
            &format!("postgresql.authentication.{user}"),
            Section,
            if user == "rewind" { Unset } else { Required },
        );
        for p in AUTH_PARAMS {
            let default = if *p == "username" && user != "rewind" {
                Required
            } else {
                Unset
            };
            b.k(&format!("postgresql.authentication.{user}.{p}"), Str, default)
                .env_named(format!("PGWARDEN_{}_{}", user.to_uppercase(), p.to_uppercase()));
        }
    }
    b.k("postgresql.parameters", ScalarMap, Unset);
    b.k("postgresql.pg_hba", StrList, Unset);
    b.k("postgresql.pg_ident", StrList, Unset);
    b.k("postgresql.callbacks", Section, Unset);
    for cb in ["on_start", "on_stop", "on_restart", "on_reload", "on_role_change"] {
        b.k(&format!("postgresql.callbacks.{cb}"), Command, Unset);
    }
    b.k("postgresql.pre_promote", Command, Unset);
    b.k("postgresql.before_stop", Command, Unset);
    b.k("postgresql.create_replica_methods", StrList, Text("[basebackup]"));
    b.k("postgresql.basebackup", OptList, Unset);
    b.k("postgresql.<method>", Map, Unset);
    b.k("postgresql.rewind", OptList, Unset);
    b.k("postgresql.use_pg_rewind", Bool, Flag(false));
    b.k(
        "postgresql.remove_data_directory_on_rewind_failure",
        Bool,
        Flag(false),
    );
    b.k(
        "postgresql.remove_data_directory_on_diverged_timelines",
        Bool,
        Flag(false),
    );
    b.k("postgresql.use_unix_socket", Bool, Flag(false));
    b.k("postgresql.use_unix_socket_repl", Bool, Flag(false));
    b.k("postgresql.pg_ctl_timeout", Secs, Num(d::PG_CTL_TIMEOUT as i64));
    b.k("postgresql.recovery_conf", Map, Unset);
    b.k("postgresql.bin_name", Section, Unset);
    for bin in BINARIES {
        b.k(&format!("postgresql.bin_name.{bin}"), Str, Text(bin))
            .env_named(format!("PGWARDEN_POSTGRESQL_BIN_{}", bin.to_uppercase()));
    }

    b.k("bootstrap", Section, Unset);
    b.k("bootstrap.dcs", Section, Unset);
    b.k("bootstrap.method", Str, Text("initdb"));
    b.k("bootstrap.<method>", Map, Unset);
    b.k("bootstrap.initdb", OptList, Unset);
    b.k("bootstrap.pg_hba", StrList, Unset);
    b.k("bootstrap.post_bootstrap", Command, Unset);
    b.k("bootstrap.post_init", Command, Unset);

    b.k("tags", Open, Unset);
    b.k("tags.nofailover", Bool, Flag(false));
    b.k("tags.failover_priority", Int, Num(d::FAILOVER_PRIORITY));
    b.k("tags.noloadbalance", Bool, Flag(false));
    b.k("tags.clonefrom", Bool, Flag(false));
    b.k("tags.replicatefrom", Str, Unset);
    b.k("tags.nosync", Bool, Flag(false));
    b.k("tags.sync_priority", Int, Num(d::SYNC_PRIORITY));
    b.k("tags.nostream", Bool, Flag(false));

    b.k("watchdog", Section, Unset);
    b.k("watchdog.mode", WatchdogMode, Text("automatic"));
    b.k("watchdog.device", Path, Text(d::WATCHDOG_DEVICE));
    b.k("watchdog.safety_margin", Int, Num(d::WATCHDOG_SAFETY_MARGIN));
}

/// The whole table, built once: local keys, then the dynamic ones under `bootstrap.dcs`.
pub fn table() -> &'static [KeySpec] {
    static TABLE: LazyLock<Vec<KeySpec>> = LazyLock::new(|| {
        let mut b = Builder {
            rows: Vec::new(),
            dynamic: false,
            prefix: "",
        };
        local_rows(&mut b);
        b.dynamic = true;
        b.prefix = DCS_PREFIX;
        dynamic_rows(&mut b);
        b.rows
    });
    &TABLE
}

fn index() -> &'static HashMap<&'static str, &'static KeySpec> {
    static INDEX: LazyLock<HashMap<&'static str, &'static KeySpec>> =
        LazyLock::new(|| table().iter().map(|k| (k.path.as_str(), k)).collect());
    &INDEX
}

/// Looks a dotted path up in the table.
pub fn lookup(path: &str) -> Option<&'static KeySpec> {
    index().get(path).copied()
}

/// Names of replica-creation and bootstrap methods that may have their own section.
#[derive(Default)]
pub(crate) struct MethodNames {
    replica: BTreeSet<String>,
    bootstrap: Option<String>,
}

impl MethodNames {
    /// Reads the method names from the document, so that `postgresql.wal_g:` is accepted exactly
    /// when `wal_g` is listed in a `create_replica_methods`.
    pub(crate) fn from_doc(root: &Value) -> Self {
        let mut names = MethodNames::default();
        for path in [
            &["postgresql", "create_replica_methods"][..],
            &["bootstrap", "dcs", "standby_cluster", "create_replica_methods"],
        ] {
            if let Some(Value::Array(list)) = get_path(root, path) {
                names
                    .replica
                    .extend(list.iter().filter_map(|v| v.as_str()).map(str::to_string));
            }
        }
        if let Some(Value::String(m)) = get_path(root, &["bootstrap", "method"]) {
            if m != "initdb" {
                names.bootstrap = Some(m.clone());
            }
        }
        names
    }
}

fn get_path<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, seg| v.get(seg))
}

/// What the walk found.
#[derive(Default)]
pub(crate) struct WalkReport {
    pub unknown: Vec<ConfigWarning>,
    pub notes: Vec<ConfigWarning>,
    pub errors: Vec<ConfigError>,
}

/// Walks `obj` (whose table path is `table_prefix`, shown to the user as `shown_prefix`), checking
/// every key against the table: unknown keys, Patroni-only keys and values of the wrong shape.
pub(crate) fn walk(
    obj: &Map<String, Value>,
    table_prefix: &str,
    shown_prefix: &str,
    methods: &MethodNames,
    out: &mut WalkReport,
) {
    let parent_open = lookup(table_prefix).is_some_and(|s| s.kind == Kind::Open);
    for (key, value) in obj {
        let tpath = join(table_prefix, key);
        let shown = join(shown_prefix, key);
        let spec = lookup(&tpath).or_else(|| {
            if table_prefix == "postgresql" && methods.replica.contains(key.as_str()) {
                lookup("postgresql.<method>")
            } else if table_prefix == "bootstrap" && methods.bootstrap.as_deref() == Some(key.as_str()) {
                lookup("bootstrap.<method>")
            } else {
                None
            }
        });
        let Some(spec) = spec else {
            if !parent_open {
                out.unknown.push(ConfigWarning::UnknownKey {
                    key: shown,
                    hint: hint(&tpath),
                });
            }
            continue;
        };
        if value.is_null() {
            // `key:` with nothing after it means "not set" in YAML files, and "delete" in a PATCH.
            continue;
        }
        if let Kind::Ignored(why) = spec.kind {
            out.notes.push(ConfigWarning::Ignored { key: shown, why });
            continue;
        }
        if let Err(e) = check(spec.kind, value, &shown) {
            out.errors.push(e);
            continue;
        }
        if matches!(spec.kind, Kind::Section | Kind::Open) {
            if let Value::Object(child) = value {
                walk(child, &tpath, &shown, methods, out);
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A hint for an unknown key: where a misplaced dynamic key belongs, or a near spelling.
fn hint(tpath: &str) -> Option<String> {
    let (parent, leaf) = tpath.rsplit_once('.').unwrap_or(("", tpath));
    if parent.is_empty() && lookup(&format!("{DCS_PREFIX}.{leaf}")).is_some() {
        return Some(format!(
            "`{leaf}` is a dynamic setting: put it under `bootstrap.dcs` or change it with `pgwardenctl edit-config`"
        ));
    }
    if parent == "postgresql" && leaf == "use_slots" {
        return Some("`use_slots` is cluster-wide: set it under `bootstrap.dcs.postgresql`".into());
    }
    if parent == "raft" && ["password", "min_timeout", "max_timeout", "append_entries_period"].contains(&leaf)
    {
        return Some("pysyncobj setting; see the `raft` section of docs/configuration.md".into());
    }
    let candidates = table().iter().filter_map(|k| {
        let (p, l) = k.path.rsplit_once('.').unwrap_or(("", k.path.as_str()));
        (p == parent && !l.starts_with('<')).then_some(l)
    });
    let best = candidates
        .map(|c| (edit_distance(c, leaf), c))
        .filter(|(dist, _)| *dist <= 2)
        .min();
    best.map(|(_, c)| format!("did you mean `{}`?", join(parent, c)))
}

/// Levenshtein distance; keys are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks one value against its kind. Address and duration syntax are checked here too, so that
/// every such error carries its key.
pub(crate) fn check(kind: Kind, v: &Value, key: &str) -> Result<(), ConfigError> {
    let wrong = || ConfigError::WrongType {
        key: key.to_string(),
        expected: kind.expected(),
        found: type_name(v).to_string(),
    };
    let ok = match kind {
        Kind::Section | Kind::Open | Kind::Map => v.is_object(),
        Kind::ScalarMap => match v {
            Value::Object(m) => {
                for (k, val) in m {
                    if val.is_array() || val.is_object() {
                        return Err(ConfigError::WrongType {
                            key: join(key, k),
                            expected: "a scalar value".into(),
                            found: type_name(val).into(),
                        });
                    }
                }
                true
            }
            _ => false,
        },
        Kind::Str | Kind::Path => v.is_string(),
        // Patroni's parse_bool: `synchronous_mode_strict: on` or `1` is a valid flag.
        Kind::Bool => super::values::lenient::bool_value(v).is_some(),
        Kind::Int => v.is_i64() || v.is_u64() || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok()),
        Kind::Port => {
            let port = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            return match port {
                Some(p) if p <= u64::from(u16::MAX) => Ok(()),
                _ => Err(ConfigError::Invalid {
                    key: key.into(),
                    why: format!("{v} is not a port number (0-65535)"),
                }),
            };
        }
        Kind::Secs => {
            return match super::values::Secs::from_value(v) {
                Some(_) => Ok(()),
                None => Err(ConfigError::BadDuration {
                    key: key.into(),
                    value: scalar_text(v),
                }),
            }
        }
        Kind::Addr => match v.as_str() {
            Some(s) => {
                return super::values::HostPort::parse(s)
                    .map(|_| ())
                    .map_err(|why| bad_addr(key, s, why))
            }
            None => false,
        },
        Kind::ListenAddr => match v.as_str() {
            Some(s) => {
                return super::values::ListenAddr::parse(s)
                    .map(|_| ())
                    .map_err(|why| bad_addr(key, s, why))
            }
            None => false,
        },
        Kind::AddrList => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let k = format!("{key}[{i}]");
                    let Some(s) = item.as_str() else {
                        return Err(ConfigError::WrongType {
                            key: k,
                            expected: "\"host:port\"".into(),
                            found: type_name(item).into(),
                        });
                    };
                    super::values::HostPort::parse(s).map_err(|why| bad_addr(&k, s, why))?;
                }
                true
            }
            _ => false,
        },
        Kind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Kind::OptList => match v {
            Value::Array(items) => items.iter().all(|i| match i {
                Value::String(_) => true,
                Value::Object(m) => m.len() == 1 && m.values().all(|x| !x.is_array() && !x.is_object()),
                _ => false,
            }),
            Value::Object(m) => m.values().all(|x| !x.is_array() && !x.is_object()),
            _ => false,
        },
        Kind::Command => {
            v.is_string()
                || v.as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
        }
        Kind::Enum(vals) => {
            let Some(s) = v.as_str() else { return Err(wrong()) };
            if vals.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                true
            } else {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    why: format!("{s:?} is not one of {}", vals.join(", ")),
                });
            }
        }
        Kind::SyncMode => {
            if v.is_boolean() {
                true
            } else if let Some(s) = v.as_str() {
                if super::values::SyncMode::parse(s).is_none() {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        why: format!("{s:?} is not one of on, off, quorum"),
                    });
                }
                true
            } else {
                false
            }
        }
        Kind::WatchdogMode => {
            if v.is_boolean() {
                true
            } else if let Some(s) = v.as_str() {
                if super::values::WatchdogMode::parse(s).is_none() {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        why: format!("{s:?} is not one of off, automatic, required"),
                    });
                }
                true
            } else {
                false
            }
        }
        Kind::Scalar => !v.is_object(),
        Kind::MapList => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        Kind::Ignored(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(wrong())
    }
}

fn bad_addr(key: &str, value: &str, why: String) -> ConfigError {
    ConfigError::BadAddress {
        key: key.into(),
        value: value.into(),
        why,
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---- Environment -----------------------------------------------------------------------------

/// Turns one environment value into a document value for a key of `kind`, the way Patroni does:
/// lists may be `a,b` or YAML `[a, b]` / `- a`, mappings `k: v, k2: v2` or YAML `{...}`.
fn env_value(kind: Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::Bool => super::values::parse_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| format!("{raw:?} is not a boolean (true/false, on/off)")),
        Kind::Int => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{raw:?} is not an integer")),
        Kind::StrList | Kind::AddrList => {
            let text = if raw.trim_start().starts_with('-') || raw.contains('[') {
                raw.to_string()
            } else {
                format!("[{raw}]")
            };
            let parsed: Value = serde_yaml::from_str(&text).map_err(|e| format!("not a list: {e}"))?;
            match parsed {
                Value::Array(items) => Ok(Value::Array(
                    items
                        .into_iter()
                        .map(|i| {
                            if let Value::String(_) = i {
                                i
                            } else {
                                Value::String(scalar_text(&i))
                            }
                        })
                        .collect(),
                )),
                _ => Err("not a list".into()),
            }
        }
        Kind::Map | Kind::ScalarMap => {
            let text = if raw.trim_start().starts_with('{') {
                raw.to_string()
            } else {
                format!("{{{raw}}}")
            };
            let parsed: Value = serde_yaml::from_str(&text).map_err(|e| format!("not a mapping: {e}"))?;
            if parsed.is_object() {
                Ok(parsed)
            } else {
                Err("not a mapping".into())
            }
        }
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// Applies `PGWARDEN_*` variables from `env` on top of the document; environment wins over the file,
/// as with Patroni's `PATRONI_*`. Empty values are ignored (Patroni does the same).
pub(crate) fn apply_env(
    root: &mut Map<String, Value>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    static BY_VAR: LazyLock<HashMap<&'static str, &'static KeySpec>> = LazyLock::new(|| {
        table()
            .iter()
            .filter_map(|k| k.env.as_deref().map(|e| (e, k)))
            .collect()
    });
    let mut errors = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, v)| k.starts_with("PGWARDEN_") && !v.is_empty())
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let Some(spec) = BY_VAR.get(var.as_str()) else {
            continue;
        };
        match env_value(spec.kind, &raw) {
            Ok(value) => set_path(root, &spec.path, value),
            Err(why) => errors.push(ConfigError::Env {
                var: var.clone(),
                key: spec.path.clone(),
                why,
            }),
        }
    }
    match ConfigError::from_list(errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn set_path(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut cur = root;
    let mut segs = path.split('.').peekable();
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            cur.insert(seg.to_string(), value);
            return;
        }
        let slot = cur
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        cur = next;
    }
}
