//! The key table: every configuration key pgwarden knows, with its shape, default, whether it is
//! dynamic (lives in the DCS `config` key), its environment variable and its [`State`]: applied,
//! accepted with no effect, refused, or meaningful only to Patroni.
//!
//! This table is the single source for things that must never drift apart: the unknown-key check
//! (and the shape check that gives errors their key path), the `PGWARDEN_*` environment mapping,
//! the warning for each inert key that a file sets, the refusals, and
//! [`super::Config::known_keys`], which `tests/config_docs.rs` and `tests/config_state.rs` compare
//! with `docs/configuration.md` and `docs/migrating-from-patroni.md`. Unit tests check that the
//! serde types accept every key listed here and serialise no key that is missing from it.
//!
//! # Module map
//! - this file: the row types and the rows;
//! - `walk`: the walk over a document (unknown keys, shapes, inert keys, refusals, hints);
//! - `env`: the `PGWARDEN_*` environment mapping.

mod env;
mod walk;

pub(crate) use env::{apply_env, pgwarden_var, EnvReport};
pub(crate) use walk::{refusals, type_name, walk, MethodNames, WalkReport};

use super::defaults as d;
use std::collections::HashMap;
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
    /// Anything: the value is not checked (keys that mean something only to Patroni).
    Any,
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
            Kind::Any => "anything".into(),
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
    /// What pgwarden does with the key when it is set.
    pub state: State,
    /// For a boolean key with no effect: the value pgwarden behaves as if it had. Setting exactly
    /// that value is not warned about (`use_pg_rewind: true`: pgwarden rewinds anyway).
    pub behaves_as: Option<bool>,
}

/// What pgwarden does with a key that a file (or the environment) sets. The documentation's
/// "State" column shows [`State::label`]; `tests/config_state.rs` keeps the two in step.
///
/// To make a key take effect once the code reads it, change its row's state (usually one of the
/// constants below) to `Applied`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Read and acted on.
    Applied,
    /// Accepted so that Patroni files load, but nothing reads it yet: one warning per key that is
    /// set, at start and in `--validate-config`, with this text (why, and what to do instead).
    NoEffect(&'static str),
    /// An error, at `--validate-config` and at start: running with it would build a different
    /// cluster from the one the file describes, or fail later.
    Refused(Refusal),
    /// Meaningful only to Patroni's own Python process (thread pools, log queue): accepted with a
    /// note, because nothing in pgwarden corresponds to it.
    PatroniOnly(&'static str),
}

impl State {
    /// The text of the documentation's "State" column.
    pub fn label(&self) -> String {
        match self {
            State::Applied => "applied".into(),
            State::NoEffect(_) => "no effect".into(),
            State::Refused(Refusal {
                when: RefuseWhen::Except(allowed),
                ..
            }) => format!(
                "refused except {}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            State::Refused(_) => "refused".into(),
            State::PatroniOnly(_) => "Patroni only".into(),
        }
    }
    /// Whether setting the key changes nothing (no effect, or Patroni only).
    pub fn is_inert(&self) -> bool {
        matches!(self, State::NoEffect(_) | State::PatroniOnly(_))
    }
}

/// When a refused key is an error, and what the message tells the operator to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Which values are refused.
    pub when: RefuseWhen,
    /// Why, and what to do; `{v}` stands for the refused value.
    pub todo: &'static str,
}

/// Which values of a refused key are errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseWhen {
    /// Any value.
    Set,
    /// Any value, or list item, other than these.
    Except(&'static [&'static str]),
    /// A mapping that sets one of these children (Patroni's test for a standby cluster).
    AnyChild(&'static [&'static str]),
    /// A part of a refused section or method: the refusal names the parent key.
    WithParent,
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
            state: State::Applied,
            behaves_as: None,
        });
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }
}

impl KeySpec {
    /// Whether `value` asks for what pgwarden does anyway ([`KeySpec::behaves_as`]), so that an
    /// inert key set to it needs no warning.
    pub fn is_what_happens(&self, value: &serde_json::Value) -> bool {
        self.behaves_as
            .is_some_and(|b| crate::config::values::lenient::bool_value(value) == Some(b))
    }
    /// Gives the key the environment variable `PGWARDEN_` + its path in upper case with `_`.
    fn env(&mut self) -> &mut Self {
        self.env = Some(format!("PGWARDEN_{}", self.path.replace('.', "_").to_uppercase()));
        self
    }
    fn env_named(&mut self, name: String) -> &mut Self {
        self.env = Some(name);
        self
    }
    /// Sets the key's state (keys are `Applied` unless a row says otherwise).
    fn is(&mut self, state: State) -> &mut Self {
        self.state = state;
        self
    }
    /// See [`KeySpec::behaves_as`].
    fn behaves_as(&mut self, value: bool) -> &mut Self {
        self.behaves_as = Some(value);
        self
    }
}

// ---- States -----------------------------------------------------------------------------------
// One constant per reason, so that rows sharing a reason share its text, and a key that starts to
// take effect is flipped by replacing the constant at its row with `Applied`.

use State::{Applied, NoEffect, PatroniOnly, Refused};

const PY_THREADS: State = PatroniOnly("pgwarden does not use a Python thread pool");
const PY_TRACEBACK: State = PatroniOnly("Rust errors are logged with their full cause chain");
const PY_LOG_QUEUE: State = PatroniOnly("logging is not queued through a Python thread");
const DEDUP_HEARTBEAT: State =
    NoEffect("every HA loop line is logged; lower `log.loggers` for `patroni.ha` to quieten them");
const RESTAPI_BACKLOG: State = NoEffect("the REST socket uses the operating system's listen backlog");
const RESTAPI_TOKENS: State = NoEffect("the `Server` header is not configurable");
const ENCRYPTED_KEY: State = Refused(Refusal {
    when: RefuseWhen::Set,
    todo:
        "encrypted private keys are not supported; decrypt the key file and protect it with file permissions",
});
const CTL_REST_AUTH: State = NoEffect(
    "pgwardenctl talks to the gRPC admin API, which uses `ctl.auth_token` or client certificates, not basic auth",
);
const PROXY_ADDRESS: State = NoEffect("not published: member keys carry no `proxy_url`");
const CUSTOM_CONF: State = NoEffect("not included: put the settings in `postgresql.parameters`");
const ROLE_TLS: State =
    NoEffect("the roles' libpq TLS and GSS settings are not passed on: replicas connect with sslmode=prefer");
const REWIND_OPTS: State = NoEffect("pg_rewind runs with pgwarden's own options only");
const UNIX_SOCKET: State = NoEffect(
    "pgwarden always connects to its own PostgreSQL over the Unix socket, and replicas stream over TCP",
);
const DCS_PG_CTL_TIMEOUT: State = NoEffect("only the local `postgresql.pg_ctl_timeout` is read");
const BIN_NAME: State = NoEffect("the programs are run by their standard names from `postgresql.bin_dir`");
const MAX_TIMELINES: State = NoEffect("not read: the `history` key keeps every timeline");
const RACE_BACKOFF: State = NoEffect("not read: a replica races as soon as the leader key is free");

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
    b.k("max_timelines_history", Int, Num(d::MAX_TIMELINES_HISTORY.into()))
        .is(MAX_TIMELINES);
    b.k("primary_start_timeout", Int, Num(d::PRIMARY_START_TIMEOUT.into()));
    b.k("primary_stop_timeout", Int, Num(d::PRIMARY_STOP_TIMEOUT.into()));
    b.k(
        "master_start_timeout",
        Int,
        Text("alias of primary_start_timeout"),
    );
    b.k("master_stop_timeout", Int, Text("alias of primary_stop_timeout"));
    b.k("primary_race_backoff", Int, Num(d::PRIMARY_RACE_BACKOFF.into()))
        .is(RACE_BACKOFF);
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
    // A standby cluster: its leader replicates from the remote primary (ha::runner::standby).
    b.k("standby_cluster", Section, Unset);
    b.k("standby_cluster.host", Str, Unset);
    b.k("standby_cluster.port", Port, Unset);
    b.k("standby_cluster.primary_slot_name", Str, Unset);
    b.k("standby_cluster.create_replica_methods", StrList, Unset);
    b.k("standby_cluster.restore_command", Str, Unset);
    b.k("standby_cluster.archive_cleanup_command", Str, Unset);
    b.k("standby_cluster.recovery_min_apply_delay", Scalar, Unset);
    b.k("postgresql", Section, Unset);
    // pgwarden rewinds when unset (Patroni: false), so that a former primary rejoins by
    // default; `false` gives Patroni's behaviour (see ha::rejoin).
    b.k("postgresql.use_pg_rewind", Bool, Flag(true));
    b.k("postgresql.use_slots", Bool, Flag(d::USE_SLOTS));
    b.k("postgresql.parameters", ScalarMap, Unset);
    b.k("postgresql.pg_hba", StrList, Unset);
    b.k("postgresql.pg_ident", StrList, Unset);
    b.k("postgresql.recovery_conf", Map, Unset);
    b.k("postgresql.pg_ctl_timeout", Secs, Num(d::PG_CTL_TIMEOUT as i64))
        .is(DCS_PG_CTL_TIMEOUT);
    b.k("postgresql.basebackup", OptList, Unset);
    b.k("postgresql.rewind", OptList, Unset).is(REWIND_OPTS);
}

fn local_rows(b: &mut Builder) {
    use Dflt::*;
    use Kind::{
        Addr, AddrList, Bool, Command, Enum, Int, ListenAddr, Map, Open, OptList, Path, Scalar, ScalarMap,
        Secs, Section, Str, StrList, WatchdogMode,
    };
    b.k("scope", Str, Required).env();
    b.k("namespace", Str, Text(d::NAMESPACE)).env();
    b.k("name", Str, Required).env();
    b.k("thread_pool_size", Kind::Any, Unset).is(PY_THREADS);
    b.k("thread_stack_size", Kind::Any, Unset).is(PY_THREADS);

    b.k("log", Section, Unset);
    b.k("log.type", Enum(&["plain", "json"]), Text("plain")).env();
    b.k(
        "log.level",
        Enum(&["DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"]),
        Text(d::LOG_LEVEL),
    )
    .env();
    b.k("log.traceback_level", Kind::Any, Unset)
        .env()
        .is(PY_TRACEBACK);
    b.k("log.format", Scalar, Unset).env();
    b.k("log.dateformat", Str, Unset).env();
    b.k("log.static_fields", ScalarMap, Unset).env();
    b.k("log.max_queue_size", Kind::Any, Unset).env().is(PY_LOG_QUEUE);
    b.k("log.dir", Path, Unset).env();
    b.k("log.mode", Int, Unset).env();
    b.k("log.file_num", Int, Num(4)).env();
    b.k("log.file_size", Int, Num(25_000_000)).env();
    b.k("log.loggers", ScalarMap, Unset).env();
    b.k("log.deduplicate_heartbeat_logs", Bool, Flag(false))
        .env()
        .is(DEDUP_HEARTBEAT);

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
    b.k("restapi.keyfile_password", Str, Unset)
        .env()
        .is(ENCRYPTED_KEY);
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
    .env()
    .is(RESTAPI_BACKLOG);
    b.k(
        "restapi.server_tokens",
        Enum(&["minimal", "productonly", "original"]),
        Text("original"),
    )
    .env()
    .is(RESTAPI_TOKENS);
    b.k("restapi.thread_pool_size", Kind::Any, Unset).is(PY_THREADS);

    b.k("ctl", Section, Unset);
    b.k("ctl.listen", Addr, Text(d::CTL_LISTEN)).env();
    b.k("ctl.connect_address", Addr, Text("ctl.listen")).env();
    b.k("ctl.auth_token", Str, Unset).env();
    b.k("ctl.certfile", Path, Unset).env();
    b.k("ctl.keyfile", Path, Unset).env();
    b.k("ctl.keyfile_password", Str, Unset).env().is(ENCRYPTED_KEY);
    b.k("ctl.cacert", Path, Unset).env();
    b.k("ctl.verify_client", Enum(&["none", "required"]), Text("none"))
        .env();
    b.k("ctl.insecure", Bool, Flag(false)).env().behaves_as(false);
    b.k("ctl.authentication", Section, Unset).is(CTL_REST_AUTH);
    b.k(
        "ctl.authentication.username",
        Str,
        Text("restapi.authentication.username"),
    )
    .env_named("PGWARDEN_CTL_USERNAME".into())
    .is(CTL_REST_AUTH);
    b.k(
        "ctl.authentication.password",
        Str,
        Text("restapi.authentication.password"),
    )
    .env_named("PGWARDEN_CTL_PASSWORD".into())
    .is(CTL_REST_AUTH);

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
    b.k("raft.site", Str, Unset).env();
    b.k("raft.voters", Int, Num(d::RAFT_VOTERS as i64)).env();
    b.k(
        "raft.voter_replace_after",
        Secs,
        Num(d::RAFT_VOTER_REPLACE_AFTER as i64),
    )
    .env();

    b.k("postgresql", Section, Required);
    b.k("postgresql.listen", ListenAddr, Required).env();
    b.k("postgresql.connect_address", Addr, Required).env();
    b.k("postgresql.proxy_address", Addr, Unset)
        .env()
        .is(PROXY_ADDRESS);
    b.k("postgresql.data_dir", Path, Required).env();
    b.k("postgresql.config_dir", Path, Text("postgresql.data_dir"))
        .env();
    b.k("postgresql.bin_dir", Path, Text("searched")).env();
    b.k("postgresql.pgpass", Path, Unset).env();
    b.k("postgresql.run_as", Str, Unset).env();
    b.k("postgresql.custom_conf", Path, Unset).is(CUSTOM_CONF);
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
                .env_named(format!("PGWARDEN_{}_{}", user.to_uppercase(), p.to_uppercase()))
                .is(if ["username", "password"].contains(p) {
                    Applied
                } else {
                    ROLE_TLS
                });
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
    b.k("postgresql.rewind", OptList, Unset).is(REWIND_OPTS);
    // pgwarden rewinds when unset (Patroni: false), so that a former primary rejoins by
    // default; `false` gives Patroni's behaviour (see ha::rejoin).
    b.k("postgresql.use_pg_rewind", Bool, Flag(true));
    b.k(
        "postgresql.remove_data_directory_on_rewind_failure",
        Bool,
        Flag(false),
    )
    .behaves_as(true);
    b.k(
        "postgresql.remove_data_directory_on_diverged_timelines",
        Bool,
        Flag(false),
    )
    .behaves_as(true);
    b.k("postgresql.use_unix_socket", Bool, Flag(false))
        .is(UNIX_SOCKET)
        .behaves_as(true);
    b.k("postgresql.use_unix_socket_repl", Bool, Flag(false))
        .is(UNIX_SOCKET)
        .behaves_as(false);
    b.k("postgresql.pg_ctl_timeout", Secs, Num(d::PG_CTL_TIMEOUT as i64));
    b.k("postgresql.recovery_conf", Map, Unset);
    b.k("postgresql.bin_name", Section, Unset).is(BIN_NAME);
    for bin in BINARIES {
        b.k(&format!("postgresql.bin_name.{bin}"), Str, Text(bin))
            .env_named(format!("PGWARDEN_POSTGRESQL_BIN_{}", bin.to_uppercase()))
            .is(BIN_NAME);
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

    b.k("vip", Section, Unset);
    b.k("vip.address", Str, Unset);
    b.k("vip.interface", Str, Unset);
    b.k("vip.label", Str, Unset);
    b.k(
        "vip.arp_count",
        Int,
        Num(i64::from(crate::vip::config::ARP_COUNT)),
    );
    b.k(
        "vip.arp_interval_ms",
        Int,
        Num(crate::vip::config::ARP_INTERVAL_MS as i64),
    );
    b.k("vip.on", Enum(&["primary", "standby_leader"]), Text("primary"));
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
