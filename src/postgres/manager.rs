//! [`PgManager`]: the real [`PgControl`], driving PostgreSQL's binaries and tokio-postgres.
//!
//! This file holds the manager's state and the [`PgControl`] implementation as a façade: each
//! trait method either runs one observation query or calls the `impl PgManager` block of the
//! sibling module that owns the work (`postmaster`, `datadir`, `conf`, `clone`, `rewind`,
//! `bootstrap`, `slot_files`, `connect`).

use super::binaries::{self, PgVersion};
use super::bootstrap::InitdbOption;
use super::clone::{CloneProgress, ReplicaMethod, Upstream};
use super::conf::ConfigInput;
use super::controldata::ControlData;
use super::error::{Error, Result};
use super::process::{ChildIds, Spawner};
use super::query::{self, LocalStatus, PendingChange, ReplicationRow, Slot, SlotState, WalReceiver};
use super::rewind::RewindDecision;
use super::settings::PgSettings;
use super::{PgControl, PostmasterState, StopMode, StopOutcome};
use crate::types::{Lsn, TimelineId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_postgres::Client;

/// State shared between calls.
#[derive(Default)]
pub(super) struct Inner {
    /// The postmaster we started or adopted and have not stopped: a crash is this pid vanishing.
    pub(super) pid: Option<i32>,
    /// Exit status of a postmaster we spawned, filled by its reaper task.
    pub(super) exited: Option<watch::Receiver<Option<String>>>,
    /// The last configuration written, so synchronous_standby_names can be changed alone.
    pub(super) last_config: Option<ConfigInput>,
    /// Current synchronous_standby_names override.
    pub(super) synchronous_standby_names: Option<String>,
    /// Whether synchronous_standby_names has been set, or the running server's value read,
    /// since this process started (see `write_config_files`).
    pub(super) ssn_known: bool,
    /// The highest timeline this data directory was seen replaying, by system identifier.
    /// Once the upstream is gone a standby no longer reports its walreceiver's timeline,
    /// and the checkpoint's can be several promotions old; a standby never goes back to
    /// an older timeline, so the highest seen stands (Patroni caches it the same way).
    pub(super) replica_timeline: Option<(u64, TimelineId)>,
}

/// The real PostgreSQL manager for one data directory.
pub struct PgManager {
    pub(super) settings: PgSettings,
    pub(super) spawner: Spawner,
    version: PgVersion,
    inner: Mutex<Inner>,
    /// Cached superuser connection over the unix socket; replaced when closed.
    pub(super) client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for PgManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgManager")
            .field("data_dir", &self.settings.data_dir)
            .field("bin_dir", &self.spawner.bin_dir)
            .field("version", &self.version.num)
            .finish()
    }
}

impl PgManager {
    /// Finds the binaries, reads the server version and resolves the user children run as.
    pub async fn new(settings: PgSettings) -> Result<Self> {
        let bin_dir = binaries::discover(settings.bin_dir.as_deref())?;
        let ids = ChildIds::resolve(settings.run_as.as_deref())?;
        let spawner = Spawner { bin_dir, ids };
        let mut cmd = spawner.command("postgres");
        cmd.arg("--version");
        let out = spawner
            .output("read the server version", cmd, settings.timeouts.tool)
            .await?;
        let version = PgVersion::parse(&String::from_utf8_lossy(&out.stdout))?;
        tracing::info!(
            bin_dir = %spawner.bin_dir.display(),
            version = version.num,
            data_dir = %settings.data_dir.display(),
            "PostgreSQL binaries found"
        );
        let mgr = PgManager {
            settings,
            spawner,
            version,
            inner: Mutex::new(Inner::default()),
            client: tokio::sync::Mutex::new(None),
        };
        mgr.remove_stale_secrets();
        Ok(mgr)
    }

    /// The settings in use.
    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// The binary directory in use.
    pub fn bin_dir(&self) -> &Path {
        &self.spawner.bin_dir
    }

    pub(super) fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain data; the data
        // is still the best knowledge we have.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn data_dir(&self) -> &Path {
        &self.settings.data_dir
    }
}

impl PgControl for PgManager {
    fn version(&self) -> PgVersion {
        self.version.clone()
    }

    async fn initdb(&self, options: &[InitdbOption]) -> Result<()> {
        self.run_initdb(options).await
    }

    async fn custom_bootstrap(&self, method: &super::CustomBootstrap) -> Result<bool> {
        self.run_custom_bootstrap(method).await
    }

    fn archive_recovery_signal(&self) -> Result<()> {
        PgManager::archive_recovery_signal(self)
    }

    fn configured_by_pgwarden(&self) -> bool {
        PgManager::configured_by_pgwarden(self)
    }

    async fn create_roles(&self) -> Result<()> {
        self.ensure_roles().await
    }

    async fn run_post_bootstrap(&self, command: &str) -> Result<()> {
        self.post_bootstrap(command).await
    }

    async fn write_config(&self, input: &ConfigInput) -> Result<()> {
        self.write_config_files(input).await
    }

    async fn start(&self) -> Result<()> {
        self.start_postmaster().await
    }

    async fn stop(&self, mode: StopMode) -> Result<StopOutcome> {
        self.stop_postmaster(mode).await
    }

    async fn restart(&self, mode: StopMode) -> Result<()> {
        self.stop_postmaster(mode).await?;
        self.start_postmaster().await
    }

    async fn reload(&self) -> Result<()> {
        self.reload_postmaster().await
    }

    async fn promote(&self) -> Result<()> {
        self.promote_standby().await
    }

    fn probe(&self) -> PostmasterState {
        self.probe_postmaster()
    }

    fn adopt(&self) -> Result<Option<i32>> {
        self.adopt_postmaster()
    }

    fn has_data(&self) -> Result<bool> {
        self.data_dir_has_cluster()
    }

    async fn controldata(&self) -> Result<ControlData> {
        self.read_controldata().await
    }

    async fn crash_recovery(&self) -> Result<bool> {
        self.run_crash_recovery().await
    }

    async fn clone_from(
        &self,
        source: &Upstream,
        methods: &[ReplicaMethod],
        progress: &watch::Sender<CloneProgress>,
    ) -> Result<()> {
        self.clone_data_dir(Some(source), methods, progress).await
    }

    async fn clone_without_source(
        &self,
        methods: &[ReplicaMethod],
        progress: &watch::Sender<CloneProgress>,
    ) -> Result<()> {
        self.clone_data_dir(None, methods, progress).await
    }

    async fn check_rewind(&self, primary: &Upstream) -> Result<RewindDecision> {
        self.check_divergence(primary).await
    }

    fn last_switch(&self, tl: TimelineId) -> Option<(TimelineId, Lsn)> {
        if tl.0 <= 1 {
            return None;
        }
        let last = self.local_history(tl)?.pop()?;
        Some((last.timeline, last.switchpoint))
    }

    async fn rewind(&self, primary: &Upstream) -> Result<()> {
        self.run_pg_rewind(primary).await
    }

    fn move_data_dir_aside(&self) -> Result<PathBuf> {
        self.move_aside()
    }

    async fn status(&self) -> Result<LocalStatus> {
        let mut st = query::status(&*self.client().await?, self.settings.timeouts.query).await?;
        if st.in_recovery {
            let mut inner = self.inner();
            let seen = match inner.replica_timeline {
                Some((sysid, tl)) if sysid == st.system_identifier => tl.max(st.timeline),
                _ => st.timeline,
            };
            inner.replica_timeline = Some((st.system_identifier, seen));
            st.timeline = seen;
        }
        Ok(st)
    }

    async fn replication(&self) -> Result<Vec<ReplicationRow>> {
        query::replication(&*self.client().await?, self.settings.timeouts.query).await
    }

    async fn wal_receiver(&self) -> Result<Option<WalReceiver>> {
        query::wal_receiver(&*self.client().await?, self.settings.timeouts.query).await
    }

    async fn slots(&self) -> Result<Vec<Slot>> {
        query::slots(&*self.client().await?, self.settings.timeouts.query).await
    }

    async fn create_physical_slot(&self, name: &str) -> Result<()> {
        query::create_physical_slot(&*self.client().await?, self.settings.timeouts.query, name).await
    }

    async fn create_logical_slot(&self, name: &str, database: &str, plugin: &str) -> Result<()> {
        let t = self.settings.timeouts.query;
        if !query::database_exists(&*self.client().await?, t, database).await? {
            return Err(Error::NoSuchDatabase {
                database: database.to_owned(),
            });
        }
        let client = self.database_client(database).await?;
        query::create_logical_slot(&client, t, name, plugin).await
    }

    async fn drop_slot(&self, name: &str) -> Result<()> {
        query::drop_slot(&*self.client().await?, self.settings.timeouts.query, name).await
    }

    async fn advance_slot(&self, name: &str, to: Lsn) -> Result<()> {
        query::advance_slot(&*self.client().await?, self.settings.timeouts.query, name, to).await
    }

    async fn advance_logical_slot(&self, name: &str, database: &str, to: Lsn) -> Result<()> {
        let client = self.database_client(database).await?;
        query::advance_slot(&client, self.settings.timeouts.query, name, to).await
    }

    async fn read_logical_slots(&self, primary: &Upstream, names: &[String]) -> Result<Vec<SlotState>> {
        self.read_slot_states(primary, names).await
    }

    async fn catalog_xmins_on_primary(
        &self,
        primary: &Upstream,
        names: &[String],
    ) -> Result<BTreeMap<String, Option<u64>>> {
        let c = self.primary_client(primary).await?;
        query::catalog_xmins(&c, self.settings.timeouts.query, names).await
    }

    async fn install_slot_states(&self, slots: &[SlotState]) -> Result<()> {
        self.write_slot_states(slots).await
    }

    async fn set_synchronous_standby_names(&self, value: Option<&str>) -> Result<()> {
        self.write_synchronous_standby_names(value).await
    }

    async fn checkpoint(&self) -> Result<()> {
        let c = self.client().await?;
        query::timed(
            "run CHECKPOINT",
            self.settings.timeouts.query,
            c.batch_execute("CHECKPOINT"),
        )
        .await
    }

    async fn pending_restart(&self) -> Result<BTreeMap<String, PendingChange>> {
        query::pending_restart(&*self.client().await?, self.settings.timeouts.query).await
    }
}
