//! What the manager needs to know about the local instance: paths, ports, users, timeouts.
//!
//! Built by the daemon from the `postgresql:` section of the configuration; the manager never reads
//! the configuration file itself.

use crate::types::MemberName;
use std::path::PathBuf;
use std::time::Duration;

/// A role name and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Role name.
    pub username: String,
    /// Password; `None` relies on trust/peer authentication.
    pub password: Option<String>,
}

impl Credentials {
    /// Credentials with a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: Some(password.into()),
        }
    }
}

// Passwords must never reach logs through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Time limits; every wait on PostgreSQL or a child process has one.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// initdb (creates a whole cluster, fsyncs it).
    pub initdb: Duration,
    /// From spawning the postmaster to its first accepted connection (includes crash recovery).
    pub start: Duration,
    /// Per stop stage: smart waits this long before escalating to fast, fast before immediate.
    pub stop: Duration,
    /// Promotion until `pg_is_in_recovery()` is false.
    pub promote: Duration,
    /// One tokio-postgres connection attempt.
    pub connect: Duration,
    /// One query.
    pub query: Duration,
    /// One replica creation attempt (pg_basebackup or custom command).
    pub clone: Duration,
    /// pg_rewind.
    pub rewind: Duration,
    /// Short tools: pg_controldata, `postgres --version`, post_bootstrap.
    pub tool: Duration,
    /// Single-user crash recovery (replays WAL, may be long).
    pub crash_recovery: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            initdb: Duration::from_secs(300),
            start: Duration::from_secs(300),
            stop: Duration::from_secs(60),
            promote: Duration::from_secs(60),
            connect: Duration::from_secs(5),
            query: Duration::from_secs(10),
            clone: Duration::from_secs(6 * 3600),
            rewind: Duration::from_secs(3600),
            tool: Duration::from_secs(30),
            crash_recovery: Duration::from_secs(3600),
        }
    }
}

/// Settings of the local PostgreSQL instance.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// This member's name: `application_name` in `primary_conninfo`.
    pub member: MemberName,
    /// The cluster's scope, passed to custom replica methods and set as `cluster_name`.
    pub scope: String,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// Directory of the PostgreSQL binaries; discovered when `None`.
    pub bin_dir: Option<PathBuf>,
    /// When the daemon runs as root, PostgreSQL children run as this user (PostgreSQL refuses root).
    pub run_as: Option<String>,
    /// Address PostgreSQL listens on (`listen_addresses`) and that other members use to reach it.
    pub listen_host: String,
    /// TCP port.
    pub port: u16,
    /// Directory of the unix socket the manager connects through: the first entry of
    /// [`unix_socket_directories`](Self::unix_socket_directories) when that is set (see
    /// [`PgSettings::with_unix_socket_directories`]), else the data directory's parent.
    pub socket_dir: PathBuf,
    /// `unix_socket_directories` as configured (`postgresql.parameters`), written verbatim
    /// into postgresql.conf; `None` writes [`socket_dir`](Self::socket_dir) alone.
    pub unix_socket_directories: Option<String>,
    /// Where postgresql.conf, its base file, pg_hba.conf and pg_ident.conf live (Patroni's
    /// `postgresql.config_dir`, e.g. Debian's `/etc/postgresql/<version>/<cluster>`); the data
    /// directory when `None`. When it differs, the postmaster is started with
    /// `config_file=` pointing there.
    pub config_dir: Option<PathBuf>,
    /// `postgresql.basebackup` as pg_basebackup arguments (checked by
    /// [`basebackup_args`](super::clone::basebackup_args)), passed after pgwarden's own.
    pub basebackup_args: Vec<String>,
    /// Server log (stdout/stderr of the postmaster); kept outside PGDATA so clones and rewinds
    /// neither copy nor delete it.
    pub log_file: PathBuf,
    /// Password file referenced by `primary_conninfo` (`passfile=`), kept outside PGDATA.
    pub pgpass_file: PathBuf,
    /// Superuser, used for local observation and bootstrap.
    pub superuser: Credentials,
    /// Replication role, used by replicas and clones.
    pub replication: Credentials,
    /// Role pg_rewind connects as; the superuser when `None`.
    pub rewind: Option<Credentials>,
    /// Time limits.
    pub timeouts: Timeouts,
}

impl PgSettings {
    /// Settings with defaults derived from the data directory: the socket in its parent, the log
    /// file and passfile beside it.
    pub fn new(
        member: MemberName,
        scope: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        port: u16,
    ) -> Self {
        let data_dir: PathBuf = data_dir.into();
        let parent = data_dir
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let base = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pgdata".to_owned());
        PgSettings {
            member,
            scope: scope.into(),
            bin_dir: None,
            run_as: None,
            listen_host: "127.0.0.1".to_owned(),
            port,
            socket_dir: parent.clone(),
            unix_socket_directories: None,
            config_dir: None,
            basebackup_args: Vec::new(),
            log_file: parent.join(format!("{base}.log")),
            pgpass_file: parent.join(format!("{base}.pgpass")),
            data_dir,
            superuser: Credentials {
                username: "postgres".to_owned(),
                password: None,
            },
            replication: Credentials {
                username: "replicator".to_owned(),
                password: None,
            },
            rewind: None,
            timeouts: Timeouts::default(),
        }
    }

    /// Takes `unix_socket_directories` from the configuration: PostgreSQL gets the value as it
    /// is, and pgwarden connects through its first entry (relative to the data directory, as
    /// the postmaster resolves it). An empty first entry means "no unix socket" to PostgreSQL,
    /// but pgwarden connects only through one: such a value is refused.
    pub fn with_unix_socket_directories(mut self, value: &str) -> std::result::Result<Self, String> {
        let first = value.split(',').next().unwrap_or_default().trim();
        let first = first.trim_matches('"').trim();
        if first.is_empty() {
            return Err(format!(
                "unix_socket_directories {value:?}: the first entry must be a directory, pgwarden connects through it"
            ));
        }
        self.socket_dir = self.data_dir.join(first);
        self.unix_socket_directories = Some(value.to_owned());
        Ok(self)
    }

    /// The directory of postgresql.conf, pg_hba.conf and pg_ident.conf.
    pub fn config_dir(&self) -> &std::path::Path {
        self.config_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// Whether the configuration files live outside the data directory.
    pub fn separate_config_dir(&self) -> bool {
        self.config_dir.as_deref().is_some_and(|c| c != self.data_dir)
    }

    /// The postmaster's arguments naming its configuration: `-D <data_dir>`, plus
    /// `-c config_file=<config_dir>/postgresql.conf` with a separate `config_dir`.
    pub fn server_config_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec!["-D".into(), self.data_dir.clone().into_os_string()];
        if self.separate_config_dir() {
            args.push("-c".into());
            let mut file = std::ffi::OsString::from("config_file=");
            file.push(self.config_dir().join("postgresql.conf"));
            args.push(file);
        }
        args
    }

    /// The credentials pg_rewind uses.
    pub fn rewind_credentials(&self) -> &Credentials {
        self.rewind.as_ref().unwrap_or(&self.superuser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PgSettings {
        PgSettings::new(MemberName::new("a").unwrap(), "s", "/srv/pg/data", 5432)
    }

    #[test]
    fn socket_dir_defaults_to_the_data_directory_parent() {
        let s = settings();
        assert_eq!(s.socket_dir, PathBuf::from("/srv/pg"));
        assert_eq!(s.unix_socket_directories, None);
    }

    #[test]
    fn unix_socket_directories_first_entry_is_where_pgwarden_connects() {
        let s = settings()
            .with_unix_socket_directories("/var/run/postgresql, /tmp")
            .unwrap();
        assert_eq!(s.socket_dir, PathBuf::from("/var/run/postgresql"));
        assert_eq!(
            s.unix_socket_directories.as_deref(),
            Some("/var/run/postgresql, /tmp")
        );
        // Patroni's postgres0.yml: '..', relative to the data directory like the postmaster does.
        let s = settings().with_unix_socket_directories("..").unwrap();
        assert_eq!(s.socket_dir, PathBuf::from("/srv/pg/data/.."));
        assert!(settings().with_unix_socket_directories("").is_err());
        assert!(settings().with_unix_socket_directories(" , /tmp").is_err());
    }

    #[test]
    fn a_separate_config_dir_is_passed_as_config_file() {
        let mut s = settings();
        assert_eq!(s.server_config_args(), ["-D", "/srv/pg/data"]);
        s.config_dir = Some("/srv/pg/data".into());
        assert!(!s.separate_config_dir());
        assert_eq!(s.server_config_args(), ["-D", "/srv/pg/data"]);
        s.config_dir = Some("/etc/postgresql/15/main".into());
        assert_eq!(
            s.server_config_args(),
            [
                "-D",
                "/srv/pg/data",
                "-c",
                "config_file=/etc/postgresql/15/main/postgresql.conf"
            ]
        );
    }
}
