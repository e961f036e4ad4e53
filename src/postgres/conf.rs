//! PostgreSQL configuration files pgwarden owns: `postgresql.conf`, `pg_hba.conf`,
//! `pg_ident.conf` (in `config_dir` when it is separate from the data directory), the standby
//! signal, and the password file referenced from `primary_conninfo`: the pure rendering and
//! precedence rules, the built-in pg_hba.conf ([`default_pg_hba`]), and the [`PgManager`]
//! methods that write, save and restore the files.
//!
//! Ownership model (see docs/postgres.md): the first time pgwarden writes the configuration it
//! renames the `postgresql.conf` that initdb (or a clone) left into `postgresql.base.conf`, then
//! writes its own `postgresql.conf`, which includes the base file first and sets every managed
//! parameter after it, so pgwarden's values win. `postgresql.conf` is rewritten whole each time;
//! hand edits go into the base file.

use super::error::{Error, Result};
use super::manager::PgManager;
use super::process::write_file_atomic;
use super::query;
use super::settings::Credentials;
use crate::types::MemberName;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// First line of every `postgresql.conf` pgwarden writes; lets us tell ours from initdb's.
pub const HEADER: &str = "# Written by pgwarden. Do not edit: this file is rewritten whole.";
/// Name of the file holding the original configuration.
pub const BASE_CONF: &str = "postgresql.base.conf";

/// GUCs that must be equal on every member (a replica with a lower value cannot replay): taken
/// from the DCS configuration only, as Patroni does (patroni-behaviour.md §1 Precedence).
pub const CLUSTER_WIDE_GUCS: &[&str] = &[
    "hot_standby",
    "max_connections",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "max_replication_slots",
    "max_wal_senders",
    "max_worker_processes",
    "track_commit_timestamp",
    "wal_keep_segments",
    "wal_keep_size",
    "wal_level",
    "wal_log_hints",
];

/// GUCs the manager sets itself from [`super::PgSettings`]; configured values are ignored.
pub const MANAGED_GUCS: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "cluster_name",
    "data_directory",
    "hba_file",
    "ident_file",
    "config_file",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target_timeline",
];

/// What to stream from when running as a standby.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyTarget {
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Physical slot on the upstream, if any.
    pub slot: Option<String>,
}

/// What PostgreSQL is configured to run as.
///
/// Only the holder of the leader key is ever configured as a primary. A member with no
/// leader to follow starts as a standby without an upstream: read-only, replaying what it
/// has, ready to be promoted or pointed at a leader (Patroni does the same). Starting it
/// writable instead would accept commits that the next leader never sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgRole {
    /// Writable: no standby.signal.
    Primary,
    /// standby.signal, streaming from the upstream when there is one.
    Standby(Option<StandbyTarget>),
}

impl Default for PgRole {
    /// The safe side: read-only.
    fn default() -> Self {
        PgRole::Standby(None)
    }
}

impl PgRole {
    /// The upstream, when this is a standby with one.
    pub fn upstream(&self) -> Option<&StandbyTarget> {
        match self {
            PgRole::Standby(t) => t.as_ref(),
            PgRole::Primary => None,
        }
    }
}

/// Everything `write_config` needs: parameters by layer, pg_hba lines, and the role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigInput {
    /// `postgresql.parameters` from the DCS dynamic configuration.
    pub dcs_parameters: BTreeMap<String, String>,
    /// `postgresql.parameters` from the local configuration file.
    pub local_parameters: BTreeMap<String, String>,
    /// pg_hba.conf lines; the file is left alone when empty.
    pub pg_hba: Vec<String>,
    /// pg_ident.conf lines (`postgresql.pg_ident`, local over dynamic); the file is left alone
    /// when empty.
    pub pg_ident: Vec<String>,
    /// Primary, or standby (writes standby.signal) of an upstream or of none yet.
    pub role: PgRole,
    /// `recovery_conf` (DCS, overridden key by key by the local file): recovery settings
    /// such as restore_command, written for a standby only. The upstream settings pgwarden
    /// manages itself are not taken from here.
    pub recovery: BTreeMap<String, String>,
}

/// Applies Patroni's precedence: cluster-wide GUCs from the DCS only, other GUCs local over DCS,
/// managed GUCs dropped. Returns the merged parameters and the local keys that were ignored.
pub fn effective_parameters(
    dcs: &BTreeMap<String, String>,
    local: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let wide = |k: &str| CLUSTER_WIDE_GUCS.contains(&k.to_ascii_lowercase().as_str());
    let managed = |k: &str| MANAGED_GUCS.contains(&k.to_ascii_lowercase().as_str());
    let mut out = BTreeMap::new();
    let mut ignored = Vec::new();
    for (k, v) in dcs {
        if managed(k) {
            ignored.push(k.clone());
        } else {
            out.insert(k.to_ascii_lowercase(), v.clone());
        }
    }
    for (k, v) in local {
        if wide(k) || managed(k) {
            ignored.push(k.clone());
        } else {
            out.insert(k.to_ascii_lowercase(), v.clone());
        }
    }
    (out, ignored)
}

/// Quotes a value for postgresql.conf: single quotes, embedded quote and backslash escaped.
pub fn quote_guc(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Quotes a value for a libpq connection string.
pub fn quote_conninfo(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Escapes a field of a `.pgpass` line.
pub fn escape_pgpass(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// `primary_conninfo` for a standby of `target`: the member name as application_name and the
/// password only through `passfile` (never in the GUC, which any user can read with SHOW on
/// some versions, nor on a command line).
pub fn primary_conninfo(target: &StandbyTarget, user: &str, member: &MemberName, passfile: &Path) -> String {
    [
        ("host", target.host.as_str()),
        ("port", &target.port.to_string()),
        ("user", user),
        ("application_name", member.as_str()),
        ("passfile", &passfile.to_string_lossy()),
        ("sslmode", "prefer"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", quote_conninfo(v)))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Renders postgresql.conf: header, include of the base file, then sorted parameters.
pub fn render_postgresql_conf(params: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    s.push_str(HEADER);
    s.push_str(
        "\n# Local, hand-made settings belong in postgresql.base.conf (included first, so ours win).\n",
    );
    s.push_str(&format!("include {}\n\n", quote_guc(BASE_CONF)));
    for (k, v) in params {
        s.push_str(&format!("{k} = {}\n", quote_guc(v)));
    }
    s
}

/// Renders pg_hba.conf from its lines (`postgresql.pg_hba`, local or dynamic, or the built-in
/// default).
pub fn render_pg_hba(lines: &[String]) -> String {
    let mut s = String::from("# Written by pgwarden from postgresql.pg_hba. Do not edit.\n");
    for l in lines {
        s.push_str(l.trim_end());
        s.push('\n');
    }
    s
}

/// Renders pg_ident.conf from its lines (`postgresql.pg_ident`).
pub fn render_pg_ident(lines: &[String]) -> String {
    let mut s = String::from("# Written by pgwarden from postgresql.pg_ident. Do not edit.\n");
    for l in lines {
        s.push_str(l.trim_end());
        s.push('\n');
    }
    s
}

/// What the built-in pg_hba.conf is made of, used when neither the local configuration
/// (`postgresql.pg_hba`) nor the dynamic one (`postgresql.pg_hba` in the DCS) gives lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultHba {
    /// The OS user running PostgreSQL, when pgwarden runs as that same user: it may connect
    /// over the local socket with `peer`. `None` when pgwarden runs as another user (root that
    /// starts PostgreSQL as `postgres`): pgwarden's own socket connection as a superuser of
    /// that name would then fail `peer` (the first matching line decides), so every local
    /// connection uses a password.
    pub peer_user: Option<String>,
    /// The superuser pgwarden connects as; it also reaches the primary from other members.
    pub superuser: String,
    /// The role replicas stream with.
    pub replication: String,
    /// The pg_rewind role, when it is not the superuser.
    pub rewind: Option<String>,
    /// Hosts of the members as the configuration names them (this node's PostgreSQL and Raft
    /// hosts, the Raft partners' hosts): replication and pgwarden's own connections come from
    /// these.
    pub member_hosts: Vec<String>,
}

/// The built-in pg_hba.conf: nothing is `trust` and nothing is open to every address. Local
/// connections use `peer` for the OS user running PostgreSQL (when pgwarden is that user) and a
/// password otherwise; clients on the loopback address use a password; replication and
/// pgwarden's superuser/rewind connections are allowed, with a password, from the members'
/// hosts only. Any other client needs `postgresql.pg_hba` (local or dynamic).
pub fn default_pg_hba(d: &DefaultHba) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(u) = &d.peer_user {
        lines.push(format!("local all {} peer", hba_name(u)));
    }
    lines.push("local all all scram-sha-256".into());
    lines.push("host all all 127.0.0.1/32 scram-sha-256".into());
    lines.push("host all all ::1/128 scram-sha-256".into());
    let mut hosts: Vec<String> = Vec::new();
    for h in d.member_hosts.iter().map(|h| hba_address(h)) {
        if !h.is_empty() && !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    let mut admins = vec![hba_name(&d.superuser)];
    if let Some(r) = d.rewind.as_deref().filter(|r| *r != d.superuser) {
        admins.push(hba_name(r));
    }
    for h in &hosts {
        lines.push(format!(
            "host replication {} {h} scram-sha-256",
            hba_name(&d.replication)
        ));
    }
    for h in &hosts {
        lines.push(format!("host all {} {h} scram-sha-256", admins.join(",")));
    }
    lines
}

/// A role name as a pg_hba.conf user field: quoted unless it is a plain identifier, so a
/// keyword (`all`, `replication`) or a name with a comma stays one literal name.
fn hba_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.starts_with(['-', '.'])
        && !["all", "sameuser", "samerole", "samegroup", "replication"].contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A member host as a pg_hba.conf address: one IP address as a single-host CIDR, a host name
/// as it is (PostgreSQL matches it by reverse and forward lookup).
fn hba_address(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => format!("{ip}/32"),
        Ok(std::net::IpAddr::V6(ip)) => format!("{ip}/128"),
        Err(_) => bare.to_string(),
    }
}

/// The `.pgpass` lines for `host`: one per host of a comma-separated list (a standby
/// cluster's remote primary given as several hosts), since libpq matches each host it tries
/// against the file on its own.
pub(super) fn pgpass_line(host: &str, port: u16, creds: &Credentials) -> String {
    host.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            format!(
                "{}:{}:*:{}:{}\n",
                escape_pgpass(h),
                port,
                escape_pgpass(&creds.username),
                escape_pgpass(creds.password.as_deref().unwrap_or_default())
            )
        })
        .collect()
}

impl PgManager {
    fn render_config(&self, input: &ConfigInput, ssn: Option<&str>) -> (String, Vec<String>) {
        let s = &self.settings;
        let (mut params, mut ignored) = effective_parameters(&input.dcs_parameters, &input.local_parameters);
        if s.unix_socket_directories.is_some() {
            // The local value is applied, through the settings (see PgSettings).
            ignored.retain(|k| !k.eq_ignore_ascii_case("unix_socket_directories"));
        }
        params.insert("listen_addresses".into(), s.listen_host.clone());
        params.insert("port".into(), s.port.to_string());
        // The configured value as it is (several directories, relative ones); pgwarden itself
        // connects through the first, which `socket_dir` already is.
        params.insert(
            "unix_socket_directories".into(),
            s.unix_socket_directories
                .clone()
                .unwrap_or_else(|| s.socket_dir.display().to_string()),
        );
        params.insert("cluster_name".into(), s.scope.clone());
        if s.separate_config_dir() {
            // Started with config_file= in config_dir, PostgreSQL would look for the other
            // files beside -D's directory: name them, and the data, explicitly (Patroni does too).
            let dir = s.config_dir();
            params.insert("data_directory".into(), s.data_dir.display().to_string());
            params.insert("hba_file".into(), dir.join("pg_hba.conf").display().to_string());
            params.insert(
                "ident_file".into(),
                dir.join("pg_ident.conf").display().to_string(),
            );
        }
        if let Some(v) = ssn {
            params.insert("synchronous_standby_names".into(), v.to_owned());
        }
        if let Some(t) = input.role.upstream() {
            params.insert(
                "primary_conninfo".into(),
                primary_conninfo(t, &s.replication.username, &s.member, &s.pgpass_file),
            );
            if let Some(slot) = &t.slot {
                params.insert("primary_slot_name".into(), slot.clone());
            }
            params.insert("recovery_target_timeline".into(), "latest".into());
        }
        if matches!(input.role, PgRole::Standby(_)) {
            for (k, v) in &input.recovery {
                let k = k.to_ascii_lowercase();
                if !MANAGED_GUCS.contains(&k.as_str()) && k != "standby_mode" {
                    params.insert(k, v.clone());
                }
            }
        }
        (render_postgresql_conf(&params), ignored)
    }

    /// Whether pgwarden has written this data directory's configuration before (its own
    /// postgresql.conf, or the postgresql.base.conf it keeps the original in). A directory it
    /// never configured is a standalone PostgreSQL.
    pub(super) fn configured_by_pgwarden(&self) -> bool {
        let ours = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|t| t.starts_with(HEADER))
                .unwrap_or(false)
        };
        let dir = self.settings.config_dir();
        dir.join(BASE_CONF).exists()
            || ours(&dir.join("postgresql.conf"))
            || ours(&self.data_dir().join("postgresql.conf"))
            || self.data_dir().join(BASE_CONF).exists()
    }

    /// Makes pgwarden the owner of postgresql.conf: the original becomes postgresql.base.conf
    /// (once; a file that already has our header is never moved).
    ///
    /// With a separate `config_dir` whose postgresql.conf is missing or already ours, the base
    /// file starts as a copy of the one initdb or the clone left in the data directory, so its
    /// settings (locale, time zone) still apply.
    fn adopt_base_conf(&self) -> Result<()> {
        let dir = self.settings.config_dir();
        let base = dir.join(BASE_CONF);
        let main = dir.join("postgresql.conf");
        if base.exists() {
            return Ok(());
        }
        let ours = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|t| t.starts_with(HEADER))
                .unwrap_or(false)
        };
        let in_data = self.data_dir().join("postgresql.conf");
        if main.exists() && !ours(&main) {
            std::fs::rename(&main, &base).map_err(Error::io("rename to postgresql.base.conf", &main))?;
            tracing::info!(path = %base.display(), "kept the original postgresql.conf as postgresql.base.conf");
        } else if self.settings.separate_config_dir() && in_data.is_file() && !ours(&in_data) {
            let text = std::fs::read_to_string(&in_data).map_err(Error::io("read", &in_data))?;
            write_file_atomic(&base, &text, 0o600, &self.spawner.ids)?;
            tracing::info!(from = %in_data.display(), path = %base.display(), "copied the data directory's postgresql.conf as postgresql.base.conf");
        } else {
            write_file_atomic(
                &base,
                "# Local settings; pgwarden's postgresql.conf includes this file first.\n",
                0o600,
                &self.spawner.ids,
            )?;
        }
        Ok(())
    }

    fn write_postgresql_conf(&self, input: &ConfigInput, ssn: Option<&str>) -> Result<()> {
        self.adopt_base_conf()?;
        let (text, ignored) = self.render_config(input, ssn);
        if !ignored.is_empty() {
            tracing::warn!(
                ?ignored,
                "parameters ignored: cluster-wide ones come only from the DCS, connection ones from pgwarden's settings"
            );
        }
        write_file_atomic(
            &self.settings.config_dir().join("postgresql.conf"),
            &text,
            0o600,
            &self.spawner.ids,
        )
    }

    /// Creates a separate `config_dir` when it is missing (owned by PostgreSQL's user, 0700,
    /// like a data directory: it holds pg_hba.conf).
    fn ensure_config_dir(&self) -> Result<()> {
        if !self.settings.separate_config_dir() {
            return Ok(());
        }
        let dir = self.settings.config_dir();
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            // Missing parents get the usual mode (PostgreSQL's user must traverse them, as
            // /etc/postgresql/<version>); the directory itself is private.
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(Error::io("create the configuration directory", parent))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(Error::io("create the configuration directory", dir))?;
            self.spawner.ids.chown(dir)?;
        }
        Ok(())
    }

    fn remove_if_exists(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path)(e)),
        }
    }

    /// Copies of the configuration files pg_rewind would replace with the source's.
    pub(super) fn save_config_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        ["postgresql.conf", BASE_CONF, "pg_hba.conf", "pg_ident.conf"]
            .iter()
            .map(|f| self.data_dir().join(f))
            .filter_map(|p| std::fs::read(&p).ok().map(|c| (p, c)))
            .collect()
    }

    pub(super) fn restore_config_files(&self, saved: &[(PathBuf, Vec<u8>)]) -> Result<()> {
        for (path, content) in saved {
            std::fs::write(path, content).map_err(Error::io("restore", path))?;
            self.spawner.ids.chown(path)?;
        }
        Ok(())
    }

    /// Writes postgresql.conf, pg_hba.conf and the standby files.
    pub(super) async fn write_config_files(&self, input: &ConfigInput) -> Result<()> {
        self.check_data_dir()?;
        self.ensure_config_dir()?;
        let s = &self.settings;
        let dir = self.data_dir();
        let conf_dir = s.config_dir();
        // A primary found running (adopted) keeps the synchronous_standby_names it runs with
        // until the HA loop sets its own: writing the file without it would let commits stop
        // waiting for a standby, for a few seconds, in a cluster taken over in synchronous mode.
        let adopted_primary = {
            let inner = self.inner();
            matches!(input.role, PgRole::Primary) && !inner.ssn_known && inner.pid.is_some()
        };
        let running = if adopted_primary {
            match self.client().await {
                Ok(c) => {
                    query::running_setting(&c, self.settings.timeouts.query, "synchronous_standby_names")
                        .await
                        .ok()
                        .filter(|v| !v.is_empty())
                }
                Err(_) => None,
            }
        } else {
            None
        };
        // A standby never waits for standbys: a former primary's list is dropped here.
        let ssn = {
            let mut inner = self.inner();
            if !matches!(input.role, PgRole::Primary) {
                inner.synchronous_standby_names = None;
            } else if let Some(v) = running {
                tracing::info!(synchronous_standby_names = %v, "kept the running synchronous_standby_names of the adopted primary");
                inner.synchronous_standby_names = Some(v);
            }
            inner.ssn_known = true;
            inner.synchronous_standby_names.clone()
        };
        self.write_postgresql_conf(input, ssn.as_deref())?;
        if !input.pg_hba.is_empty() {
            write_file_atomic(
                &conf_dir.join("pg_hba.conf"),
                &render_pg_hba(&input.pg_hba),
                0o600,
                &self.spawner.ids,
            )?;
        }
        if !input.pg_ident.is_empty() {
            write_file_atomic(
                &conf_dir.join("pg_ident.conf"),
                &render_pg_ident(&input.pg_ident),
                0o600,
                &self.spawner.ids,
            )?;
        } else if s.separate_config_dir() && !conf_dir.join("pg_ident.conf").exists() {
            // ident_file names this file: PostgreSQL refuses to start when it is missing.
            write_file_atomic(
                &conf_dir.join("pg_ident.conf"),
                &render_pg_ident(&[]),
                0o600,
                &self.spawner.ids,
            )?;
        }
        match &input.role {
            PgRole::Standby(upstream) => {
                if let Some(t) = upstream {
                    write_file_atomic(
                        &s.pgpass_file,
                        &pgpass_line(&t.host, t.port, &s.replication),
                        0o600,
                        &self.spawner.ids,
                    )?;
                }
                write_file_atomic(&dir.join("standby.signal"), "", 0o600, &self.spawner.ids)?;
                Self::remove_if_exists(&dir.join("recovery.signal"))?;
            }
            PgRole::Primary => {
                Self::remove_if_exists(&dir.join("standby.signal"))?;
                Self::remove_if_exists(&dir.join("recovery.signal"))?;
            }
        }
        self.inner().last_config = Some(input.clone());
        tracing::info!(
            standby = !matches!(input.role, PgRole::Primary),
            upstream = ?input.role.upstream().map(|t| format!("{}:{}", t.host, t.port)),
            "configuration written"
        );
        Ok(())
    }

    /// Sets or removes synchronous_standby_names in postgresql.conf, reloading if running.
    pub(super) async fn write_synchronous_standby_names(&self, value: Option<&str>) -> Result<()> {
        let input = {
            let mut inner = self.inner();
            inner.synchronous_standby_names = value.map(str::to_owned);
            inner.ssn_known = true;
            inner.last_config.clone().unwrap_or_default()
        };
        self.check_data_dir()?;
        self.ensure_config_dir()?;
        self.write_postgresql_conf(&input, value)?;
        tracing::info!(synchronous_standby_names = ?value, "synchronous_standby_names set");
        // Not running: the value is in postgresql.conf for the next start.
        if self.running_pid()?.is_some() {
            self.reload_postmaster().await
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in pg_hba: no `trust`, nothing open to every address, replication only for
    /// the replication role from the members' hosts.
    #[test]
    fn safety_default_pg_hba_is_not_permissive() {
        let d = DefaultHba {
            peer_user: Some("postgres".into()),
            superuser: "postgres".into(),
            replication: "replicator".into(),
            rewind: Some("rewind user".into()),
            member_hosts: vec![
                "10.0.0.1".into(),
                "10.0.0.2".into(),
                "10.0.0.1".into(),
                "db3.example".into(),
                "[fd00::3]".into(),
            ],
        };
        let lines = default_pg_hba(&d);
        assert_eq!(
            lines,
            [
                "local all postgres peer",
                "local all all scram-sha-256",
                "host all all 127.0.0.1/32 scram-sha-256",
                "host all all ::1/128 scram-sha-256",
                "host replication replicator 10.0.0.1/32 scram-sha-256",
                "host replication replicator 10.0.0.2/32 scram-sha-256",
                "host replication replicator db3.example scram-sha-256",
                "host replication replicator fd00::3/128 scram-sha-256",
                "host all postgres,\"rewind user\" 10.0.0.1/32 scram-sha-256",
                "host all postgres,\"rewind user\" 10.0.0.2/32 scram-sha-256",
                "host all postgres,\"rewind user\" db3.example scram-sha-256",
                "host all postgres,\"rewind user\" fd00::3/128 scram-sha-256",
            ]
        );
        for l in &lines {
            let words: Vec<&str> = l.split_whitespace().collect();
            assert!(!words.contains(&"trust"), "{l}");
            assert!(!l.contains("0.0.0.0/0") && !l.contains("::/0"), "{l}");
            if words[1] == "replication" {
                assert_eq!(words[2], "replicator", "{l}");
            }
        }
        // pgwarden running as another user than PostgreSQL: no peer line, a keyword role is quoted.
        let d = DefaultHba {
            peer_user: None,
            replication: "all".into(),
            ..d
        };
        let lines = default_pg_hba(&d);
        assert_eq!(lines[0], "local all all scram-sha-256");
        assert!(lines.iter().all(|l| !l.contains("peer")));
        assert_eq!(lines[3], "host replication \"all\" 10.0.0.1/32 scram-sha-256");
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn cluster_wide_gucs_come_only_from_the_dcs_and_local_wins_otherwise() {
        let dcs = map(&[
            ("max_connections", "100"),
            ("work_mem", "4MB"),
            ("wal_level", "replica"),
        ]);
        let local = map(&[
            ("max_connections", "500"),
            ("work_mem", "8MB"),
            ("port", "1"),
            ("Shared_Buffers", "1GB"),
        ]);
        let (eff, ignored) = effective_parameters(&dcs, &local);
        assert_eq!(eff["max_connections"], "100");
        assert_eq!(eff["work_mem"], "8MB");
        assert_eq!(eff["wal_level"], "replica");
        assert_eq!(eff["shared_buffers"], "1GB");
        assert!(!eff.contains_key("port"));
        assert_eq!(ignored, vec!["max_connections".to_string(), "port".to_string()]);
    }

    #[test]
    fn rendering_quotes_values_and_includes_the_base_file_first() {
        let text = render_postgresql_conf(&map(&[("a", "it's"), ("b", r"c:\x")]));
        let include = text.find("include 'postgresql.base.conf'").unwrap();
        assert!(text.starts_with(HEADER));
        assert!(include < text.find("a = 'it''s'").unwrap());
        assert!(text.contains(r"b = 'c:\\x'"));
    }

    #[test]
    fn conninfo_and_pgpass_escape_their_specials() {
        let t = StandbyTarget {
            host: "127.0.0.1".into(),
            port: 5433,
            slot: None,
        };
        let m = MemberName::new("node-1").unwrap();
        let ci = primary_conninfo(&t, "re'pl", &m, Path::new("/tmp/p ass"));
        assert!(ci.contains(r"user='re\'pl'"), "{ci}");
        assert!(ci.contains("application_name='node-1'"));
        assert!(ci.contains("passfile='/tmp/p ass'"));
        assert!(!ci.contains("password"));
        assert_eq!(escape_pgpass(r"a:b\c"), r"a\:b\\c");
    }

    #[test]
    fn pgpass_lines_escape_fields() {
        let c = Credentials::new("re:pl", r"p\w");
        assert_eq!(pgpass_line("h", 5, &c), "h:5:*:re\\:pl:p\\\\w\n");
        assert_eq!(
            pgpass_line("a, b", 5, &c),
            "a:5:*:re\\:pl:p\\\\w\nb:5:*:re\\:pl:p\\\\w\n",
            "standby_cluster.host with several hosts: one line each"
        );
    }
}
