//! The one error type of the PostgreSQL manager.
//!
//! Each variant names the operation and its subject; an underlying cause is kept in `#[source]` and
//! never interpolated into the message, so a chain printed with `{:#}`-style walkers shows each
//! layer once. Output of a failed child (its stderr, or the server log tail) is data, not a
//! cause, so it is part of the message.

use std::path::PathBuf;
use std::time::Duration;

/// Everything the PostgreSQL manager can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No directory with the PostgreSQL server binaries was found.
    #[error(
        "PostgreSQL binaries not found: `{missing}` is not in {searched}; install the {package} package \
         or set postgresql.bin_dir"
    )]
    BinariesNotFound {
        /// The first binary that was looked for and not found.
        missing: String,
        /// Human-readable list of the places searched.
        searched: String,
        /// The distribution package that provides the server.
        package: &'static str,
    },

    /// The configured `run_as` user does not exist.
    #[error("user `{user}` (postgresql.run_as) does not exist")]
    NoSuchUser {
        /// The user name.
        user: String,
    },

    /// PostgreSQL refuses to run as root and no unprivileged user was configured.
    #[error("running as root but postgresql.run_as is not set; PostgreSQL refuses to run as root")]
    RootWithoutRunAs,

    /// A file system operation failed.
    #[error("failed to {operation} `{path}`")]
    Io {
        /// What was being done, as a verb phrase.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A child process could not be started.
    #[error("failed to start `{program}` to {operation}")]
    Spawn {
        /// What the child was for.
        operation: &'static str,
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A child process exited unsuccessfully.
    #[error("{operation}: `{program}` failed ({status}): {stderr}")]
    ChildFailed {
        /// What the child was for.
        operation: &'static str,
        /// The program.
        program: String,
        /// Exit status as text (code or signal).
        status: String,
        /// Captured standard error (its tail if long).
        stderr: String,
    },

    /// A child process did not finish in time; it was killed.
    #[error("{operation}: `{program}` did not finish within {timeout:?} and was killed")]
    ChildTimeout {
        /// What the child was for.
        operation: &'static str,
        /// The program.
        program: String,
        /// The limit that passed.
        timeout: Duration,
    },

    /// An initdb option from `bootstrap.initdb` that pgwarden sets itself or that would be unsafe.
    #[error("initdb option `{option}` is not allowed in bootstrap.initdb (pgwarden sets it itself or it is unsafe)")]
    ForbiddenInitdbOption {
        /// The option name.
        option: String,
    },

    /// An initdb option with a bad shape.
    #[error("invalid initdb option `{option}`: {why}")]
    InvalidInitdbOption {
        /// The option as given.
        option: String,
        /// What is wrong.
        why: &'static str,
    },

    /// initdb or a clone was asked to write into a directory that already holds files.
    #[error("data directory `{path}` is not empty; refusing to {operation} over existing files")]
    DataDirNotEmpty {
        /// The data directory.
        path: PathBuf,
        /// What was refused.
        operation: &'static str,
    },

    /// The data directory is owned by a different user than the one PostgreSQL runs as.
    #[error("data directory `{path}` is owned by uid {owner}, but PostgreSQL runs as uid {expected}")]
    DataDirOwner {
        /// The data directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The uid PostgreSQL children run as.
        expected: u32,
    },

    /// The data directory has no PostgreSQL cluster in it.
    #[error("`{path}` is not a PostgreSQL data directory (no PG_VERSION)")]
    NotADataDir {
        /// The directory.
        path: PathBuf,
    },

    /// The postmaster exited while we waited for it to accept connections.
    #[error("postmaster for `{data_dir}` exited during startup; server log tail:\n{log_tail}")]
    PostmasterDied {
        /// The data directory.
        data_dir: PathBuf,
        /// Last lines of the server log.
        log_tail: String,
    },

    /// The postmaster did not accept connections in time.
    #[error("postmaster for `{data_dir}` did not accept connections within {timeout:?}; server log tail:\n{log_tail}")]
    StartTimeout {
        /// The data directory.
        data_dir: PathBuf,
        /// The limit that passed.
        timeout: Duration,
        /// Last lines of the server log.
        log_tail: String,
    },

    /// A postmaster is already running on this data directory.
    #[error("a postmaster (pid {pid}) is already running on `{data_dir}`")]
    AlreadyRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// Its pid.
        pid: i32,
    },

    /// Even SIGQUIT (immediate) did not stop the postmaster in time.
    #[error("postmaster (pid {pid}) did not stop within {timeout:?} even in immediate mode")]
    StopTimeout {
        /// The postmaster pid.
        pid: i32,
        /// The limit that passed.
        timeout: Duration,
    },

    /// Signalling the postmaster failed.
    #[error("failed to send {signal} to postmaster pid {pid}")]
    Signal {
        /// Signal name.
        signal: &'static str,
        /// Target pid.
        pid: i32,
        /// The OS error.
        #[source]
        source: nix::Error,
    },

    /// An operation needed a running server and none is running.
    #[error("PostgreSQL is not running on `{data_dir}`; cannot {operation}")]
    NotRunning {
        /// The data directory.
        data_dir: PathBuf,
        /// What was attempted.
        operation: &'static str,
    },

    /// Connecting with tokio-postgres failed.
    #[error("failed to connect to PostgreSQL at {target}")]
    Connect {
        /// Where (socket dir or host:port) and as whom.
        target: String,
        /// The driver error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A connection attempt timed out.
    #[error("connecting to PostgreSQL at {target} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Where.
        target: String,
        /// The limit that passed.
        timeout: Duration,
    },

    /// A query failed.
    #[error("query failed: {what}")]
    Query {
        /// What the query was for.
        what: &'static str,
        /// The driver error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A query did not answer in time.
    #[error("query timed out after {timeout:?}: {what}")]
    QueryTimeout {
        /// What the query was for.
        what: &'static str,
        /// The limit that passed.
        timeout: Duration,
    },

    /// A database named in the configuration (e.g. a permanent logical slot's) does not exist.
    #[error("database `{database}` does not exist")]
    NoSuchDatabase {
        /// Its name.
        database: String,
    },

    /// A value read from PostgreSQL or one of its tools could not be understood.
    #[error("unexpected {what}: {value:?}")]
    Unexpected {
        /// What was being read.
        what: &'static str,
        /// The value.
        value: String,
    },

    /// Promotion did not finish in time.
    #[error("promotion of `{data_dir}` did not end recovery within {timeout:?}")]
    PromoteTimeout {
        /// The data directory.
        data_dir: PathBuf,
        /// The limit that passed.
        timeout: Duration,
    },

    /// The clone source refused or could not be reached.
    #[error("cannot reach clone source {source_addr}: {stderr}")]
    CloneSourceUnreachable {
        /// host:port of the source.
        source_addr: String,
        /// pg_basebackup's stderr.
        stderr: String,
    },

    /// The clone source rejected the replication credentials.
    #[error("clone source {source_addr} rejected replication user `{user}`: {stderr}")]
    CloneAuthentication {
        /// host:port of the source.
        source_addr: String,
        /// The replication user.
        user: String,
        /// pg_basebackup's stderr.
        stderr: String,
    },

    /// Every replica creation method failed; the cause is the last method's error.
    #[error("failed to clone `{data_dir}` from {source_addr}: all replica methods failed")]
    CloneFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// host:port of the source.
        source_addr: String,
        /// The last failure.
        #[source]
        source: Box<Error>,
    },

    /// pg_rewind cannot run safely yet or at all.
    #[error("cannot rewind `{data_dir}`: {why}")]
    RewindPrecondition {
        /// The data directory.
        data_dir: PathBuf,
        /// Which precondition failed.
        why: String,
    },

    /// pg_rewind failed; the data directory is left where it is (the HA loop decides whether
    /// to move it aside, by `remove_data_directory_on_rewind_failure`).
    #[error("pg_rewind of `{data_dir}` failed")]
    RewindFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// The pg_rewind failure.
        #[source]
        source: Box<Error>,
    },

    /// A post_bootstrap or custom replica command failed.
    #[error("invalid command line {command:?}: {why}")]
    BadCommand {
        /// The command as configured.
        command: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Result alias for the manager.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether a query failed because the WAL it needed is gone (`58P01`, undefined_file) or
    /// the object is unusable in this state (`55000`, e.g. an invalidated slot): for a slot
    /// copy, a sign that it must be copied again rather than retried.
    pub fn wal_missing_or_unusable(&self) -> bool {
        match self {
            Error::Query { source, .. } => source
                .code()
                .is_some_and(|c| matches!(c.code(), "58P01" | "55000")),
            _ => false,
        }
    }

    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    }
}
