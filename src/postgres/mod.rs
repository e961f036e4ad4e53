//! The PostgreSQL manager: everything done to, and read from, the local PostgreSQL instance.
//!
//! It owns the data directory's life cycle (initdb, clone, rewind, moving a directory aside), the
//! configuration files pgwarden writes (`postgresql.conf`, `pg_hba.conf`, `pg_ident.conf`, in the
//! data directory or a separate `config_dir`; `standby.signal`, the replication passfile), the postmaster process (start, stop, restart, reload, promote, crash
//! detection, adoption after a daemon restart, single-user crash recovery) and observation over
//! tokio-postgres.
//!
//! It decides nothing: it never chooses a role, an upstream or whether to rewind, re-clone or
//! fail over. It executes what the HA loop asks and reports what it sees, with a typed [`Error`]
//! naming what failed. It never deletes a data directory. Every wait has a time limit.
//!
//! The HA loop sees it through the [`PgControl`] trait; [`PgManager`] is the real implementation
//! and [`fake::FakePg`] a recording fake for unit tests.
//!
//! # Layout
//! - `settings`: paths, ports, users, timeouts ([`PgSettings`]).
//! - `binaries`: finding the binaries and the server version.
//! - `manager`: [`PgManager`]'s state and its [`PgControl`] façade; the work is done by the
//!   `impl PgManager` blocks of the modules below. `fake`: [`fake::FakePg`].
//! - `postmaster`: postmaster.pid, start (and the reaper), stop, reload, promote, probe, adopt.
//! - `datadir`: checking and preparing the data directory, initdb, pg_controldata, single-user
//!   crash recovery, moving a directory aside, temporary password files.
//! - `connect`: the cached local connection, the primary's, a given database's.
//! - `conf`: parameter precedence and the files pgwarden owns (render, write, save, restore).
//! - `bootstrap`: initdb options, role SQL and `post_bootstrap`. `clone`: replica methods,
//!   progress, and running them.
//! - `controldata`, `rewind`: pg_controldata parsing; the timeline-divergence rule and pg_rewind.
//! - `slot_files`: logical slot state files read from the primary and installed locally.
//! - `query`: observation SQL. `error`: the one [`Error`] type.
//!
//! - `process`: spawning every child (PostgreSQL's tools, and the HA loop's user scripts): clean
//!   environment, closed stdin, the right user, time limits, secrets in private files. It lives
//!   here because its errors are this module's [`Error`]; the HA loop's callbacks use it too.

mod binaries;
mod bootstrap;
mod clone;
mod conf;
mod connect;
mod controldata;
mod datadir;
mod error;
pub mod fake;
mod manager;
mod postmaster;
pub mod process;
mod query;
mod rewind;
mod settings;
mod slot_files;

pub use binaries::{discover, PgVersion};
pub use bootstrap::{CustomBootstrap, InitdbOption};
pub use clone::{
    basebackup_args, parse_progress, CloneProgress, ReplicaMethod, Upstream, FORBIDDEN_BASEBACKUP_OPTIONS,
};
pub use conf::{
    default_pg_hba, effective_parameters, ConfigInput, DefaultHba, PgRole, StandbyTarget, BASE_CONF,
    CLUSTER_WIDE_GUCS,
};
pub use controldata::ControlData;
pub use error::{Error, Result};
pub use manager::PgManager;
pub use query::{LocalStatus, PendingChange, ReplicationRow, Slot, SlotState, WalReceiver};
pub use rewind::{decide as decide_rewind, parse_history, HistoryEntry, RewindDecision};
pub use settings::{Credentials, PgSettings, Timeouts};

use crate::types::{Lsn, TimelineId};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use tokio::sync::watch;

/// How to stop the postmaster; each maps to a signal (see [`PgControl::stop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// SIGTERM: wait for sessions to end, then checkpoint.
    Smart,
    /// SIGINT: end sessions, checkpoint.
    Fast,
    /// SIGQUIT: exit at once; crash recovery at next start.
    Immediate,
}

impl std::fmt::Display for StopMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        })
    }
}

/// What is known about the postmaster right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostmasterState {
    /// A postmaster for our data directory is alive.
    Running {
        /// Its pid.
        pid: i32,
    },
    /// Cleanly stopped (no postmaster.pid) or never started.
    Stopped,
    /// A postmaster we started or adopted is gone without us stopping it, or a stale
    /// postmaster.pid names a dead process: the instance crashed.
    Crashed {
        /// The pid that died.
        pid: i32,
    },
}

/// Result of a stop request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Nothing was running.
    NotRunning,
    /// Stopped; `mode` is the mode that finally worked (after escalation).
    Stopped {
        /// The effective mode.
        mode: StopMode,
    },
}

/// The side effects the HA loop needs from the local PostgreSQL, narrow enough to fake.
///
/// Methods return `Send` futures so the loop can run them from spawned tasks.
pub trait PgControl: Send + Sync {
    /// The server version of the binaries in use.
    fn version(&self) -> PgVersion;

    /// Creates a new cluster in the (absent or empty) data directory with `bootstrap.initdb`
    /// options; the superuser password goes through a private temporary file.
    fn initdb(&self, options: &[InitdbOption]) -> impl Future<Output = Result<()>> + Send;

    /// Runs a custom bootstrap method into the empty data directory instead of initdb; returns
    /// whether the command left a recovery.signal.
    fn custom_bootstrap(&self, method: &CustomBootstrap) -> impl Future<Output = Result<bool>> + Send;

    /// Replaces standby.signal with recovery.signal: the next start is a targeted archive
    /// recovery that ends (promotes) at its target rather than a standby.
    fn archive_recovery_signal(&self) -> Result<()>;

    /// Whether pgwarden has configured this data directory before; `false` for a standalone
    /// PostgreSQL's. The default is the safe answer: a directory that is not adopted.
    fn configured_by_pgwarden(&self) -> bool {
        true
    }

    /// Creates or updates the superuser password, the replication role and the rewind role
    /// (with pg_rewind's function grants). Needs a running primary.
    fn create_roles(&self) -> impl Future<Output = Result<()>> + Send;

    /// Runs the `post_bootstrap` command with the superuser connection URL as its argument.
    fn run_post_bootstrap(&self, command: &str) -> impl Future<Output = Result<()>> + Send;

    /// Writes postgresql.conf (layered parameters), pg_hba.conf and the standby files.
    /// Takes effect at the next reload or start.
    fn write_config(&self, input: &ConfigInput) -> impl Future<Output = Result<()>> + Send;

    /// Starts the postmaster and waits until it accepts connections.
    fn start(&self) -> impl Future<Output = Result<()>> + Send;

    /// Stops the postmaster in `mode`, escalating smart → fast → immediate when a stage times out.
    fn stop(&self, mode: StopMode) -> impl Future<Output = Result<StopOutcome>> + Send;

    /// Stops (in `mode`) and starts.
    fn restart(&self, mode: StopMode) -> impl Future<Output = Result<()>> + Send;

    /// Makes the postmaster re-read its configuration files (SIGHUP).
    fn reload(&self) -> impl Future<Output = Result<()>> + Send;

    /// Promotes a standby and waits for the end of recovery.
    fn promote(&self) -> impl Future<Output = Result<()>> + Send;

    /// Whether the postmaster runs, is stopped, or crashed.
    fn probe(&self) -> PostmasterState;

    /// After a daemon restart: takes over a postmaster already running on our data directory,
    /// without restarting it. Returns its pid, or `None` if none runs.
    fn adopt(&self) -> Result<Option<i32>>;

    /// pg_control of the stopped (or running) instance.
    fn controldata(&self) -> impl Future<Output = Result<ControlData>> + Send;

    /// If the last shutdown was unclean, replays WAL in single-user mode so pg_control says
    /// "shut down". Returns whether recovery ran. The postmaster must be stopped.
    fn crash_recovery(&self) -> impl Future<Output = Result<bool>> + Send;

    /// Creates the data directory with no member to copy from: only the methods that need
    /// none (`no_leader: true`, a restore from a backup repository) run, in order.
    fn clone_without_source(
        &self,
        methods: &[ReplicaMethod],
        progress: &watch::Sender<CloneProgress>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Creates the data directory from `source` with the replica methods in order, publishing
    /// progress on `progress`.
    fn clone_from(
        &self,
        source: &Upstream,
        methods: &[ReplicaMethod],
        progress: &watch::Sender<CloneProgress>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Whether the stopped local instance diverged from `primary`'s timeline.
    fn check_rewind(&self, primary: &Upstream) -> impl Future<Output = Result<RewindDecision>> + Send;

    /// Runs pg_rewind from `primary` after checking its preconditions. A failure of pg_rewind
    /// itself is [`Error::RewindFailed`]; the data directory stays where it is (the caller
    /// decides whether to move it aside).
    fn rewind(&self, primary: &Upstream) -> impl Future<Output = Result<()>> + Send;

    /// The last switch in the history file of timeline `tl` (this instance's `pg_wal`): the
    /// timeline that ended and the LSN where `tl` began, the row Patroni's `history` key
    /// records for a promotion. `None` for timeline 1 or a file that cannot be read (the
    /// default, for implementations without a data directory).
    fn last_switch(&self, tl: TimelineId) -> Option<(TimelineId, Lsn)> {
        let _ = tl;
        None
    }

    /// Whether the data directory holds a cluster (`PG_VERSION`): `false` for an absent or empty
    /// directory, an error when it cannot be looked at. Never a guess: a data directory that
    /// cannot be read must not be taken for a missing one (bootstrap or clone would follow).
    fn has_data(&self) -> Result<bool>;

    /// Renames the data directory with a timestamp suffix (it is never deleted); returns the
    /// new path.
    fn move_data_dir_aside(&self) -> Result<PathBuf>;

    /// Recovery state, LSNs, timeline, system identifier.
    fn status(&self) -> impl Future<Output = Result<LocalStatus>> + Send;

    /// `pg_stat_replication`.
    fn replication(&self) -> impl Future<Output = Result<Vec<ReplicationRow>>> + Send;

    /// `pg_stat_wal_receiver`.
    fn wal_receiver(&self) -> impl Future<Output = Result<Option<WalReceiver>>> + Send;

    /// `pg_replication_slots`.
    fn slots(&self) -> impl Future<Output = Result<Vec<Slot>>> + Send;

    /// Creates a physical slot (no-op if present).
    fn create_physical_slot(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    /// Creates a logical slot in `database` with the output plugin `plugin` (no-op if a slot
    /// of that name exists). Fails with [`Error::NoSuchDatabase`] when the database is missing.
    fn create_logical_slot(
        &self,
        name: &str,
        database: &str,
        plugin: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Drops a slot (no-op if absent).
    fn drop_slot(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    /// Advances a slot to `to`.
    fn advance_slot(&self, name: &str, to: Lsn) -> impl Future<Output = Result<()>> + Send;

    /// Advances a logical slot to `to` from a connection to its database (logical slots can
    /// only be moved from there); on a standby this works without logical decoding.
    fn advance_logical_slot(
        &self,
        name: &str,
        database: &str,
        to: Lsn,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Reads from the running primary `primary` (as the superuser) the on-disk state of its
    /// logical slots named in `names`: what a standby needs to hold a copy of them.
    fn read_logical_slots(
        &self,
        primary: &Upstream,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<SlotState>>> + Send;

    /// `catalog_xmin` of the running primary's slots named in `names` (absent ones left out).
    fn catalog_xmins_on_primary(
        &self,
        primary: &Upstream,
        names: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, Option<u64>>>> + Send;

    /// Writes slot states read from the primary into `pg_replslot` (replacing a copy of the
    /// same name), durably. The postmaster must be stopped: it loads slots at start.
    fn install_slot_states(&self, slots: &[SlotState]) -> impl Future<Output = Result<()>> + Send;

    /// Sets (or with `None` removes) synchronous_standby_names in postgresql.conf and reloads.
    fn set_synchronous_standby_names(&self, value: Option<&str>) -> impl Future<Output = Result<()>> + Send;

    /// Runs `CHECKPOINT`.
    fn checkpoint(&self) -> impl Future<Output = Result<()>> + Send;

    /// Parameters changed in the files that need a restart, with running and file values.
    fn pending_restart(&self) -> impl Future<Output = Result<BTreeMap<String, PendingChange>>> + Send;
}
