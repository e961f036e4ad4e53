//! A hand-written fake of [`PgControl`] for the HA loop's unit tests: it records every call in
//! order, keeps a tiny model of the instance (running or not, in recovery or not, timeline), and
//! can be told to fail a named operation.

use super::error::{Error, Result};
use super::{
    CloneProgress, ConfigInput, ControlData, InitdbOption, LocalStatus, PendingChange, PgControl, PgVersion,
    PostmasterState, ReplicaMethod, ReplicationRow, RewindDecision, Slot, SlotState, StopMode, StopOutcome,
    Upstream, WalReceiver,
};
use crate::types::{Lsn, SlotType, TimelineId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::watch;

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `initdb`.
    Initdb(Vec<InitdbOption>),
    /// `custom_bootstrap` (the method's name).
    CustomBootstrap(String),
    /// `archive_recovery_signal`.
    ArchiveRecoverySignal,
    /// `create_roles`.
    CreateRoles,
    /// `run_post_bootstrap`.
    PostBootstrap(String),
    /// `write_config`.
    WriteConfig(ConfigInput),
    /// `start`.
    Start,
    /// `stop`.
    Stop(StopMode),
    /// `restart`.
    Restart(StopMode),
    /// `reload`.
    Reload,
    /// `promote`.
    Promote,
    /// `adopt`.
    Adopt,
    /// `controldata`.
    Controldata,
    /// `has_data`.
    HasData,
    /// `crash_recovery`.
    CrashRecovery,
    /// `clone_from`.
    Clone(Upstream),
    /// `clone_without_source`.
    CloneWithoutSource,
    /// `check_rewind`.
    CheckRewind(Upstream),
    /// `rewind`.
    Rewind(Upstream),
    /// `move_data_dir_aside`.
    MoveAside,
    /// `create_physical_slot`.
    CreateSlot(String),
    /// `create_logical_slot`: name, database, plugin.
    CreateLogicalSlot(String, String, String),
    /// `drop_slot`.
    DropSlot(String),
    /// `advance_slot`.
    AdvanceSlot(String, Lsn),
    /// `advance_logical_slot`: name, database, position.
    AdvanceLogicalSlot(String, String, Lsn),
    /// `read_logical_slots`: from where, which.
    ReadLogicalSlots(Upstream, Vec<String>),
    /// `install_slot_states`: the names.
    InstallSlotStates(Vec<String>),
    /// `catalog_xmins_on_primary`: from where, which.
    CatalogXmins(Upstream, Vec<String>),
    /// `set_synchronous_standby_names`.
    SetSyncStandbyNames(Option<String>),
    /// `checkpoint`.
    Checkpoint,
}

/// The fake's model of the instance; tests may read and change it.
#[derive(Clone, Debug)]
pub struct FakeState {
    /// What `has_data` answers.
    pub has_data: bool,
    /// The postmaster runs but `status` fails (a PostgreSQL that does not answer).
    pub unresponsive: bool,
    /// Postmaster state reported by `probe`.
    pub postmaster: PostmasterState,
    /// Status reported by `status` (when running).
    pub status: LocalStatus,
    /// Decision returned by `check_rewind`.
    pub rewind_decision: RewindDecision,
    /// `rewind` succeeds without changing the decision (pg_rewind's "no rewind required").
    pub rewind_changes_nothing: bool,
    /// `rewind` fails as pg_rewind itself would ([`Error::RewindFailed`]).
    pub rewind_fails: bool,
    /// A fast or smart `stop` never returns (a primary waiting for its synchronous standbys).
    pub graceful_stop_hangs: bool,
    /// Rows returned by `replication`.
    pub replication: Vec<ReplicationRow>,
    /// Row returned by `wal_receiver`.
    pub wal_receiver: Option<WalReceiver>,
    /// Slots.
    pub slots: BTreeMap<String, Slot>,
    /// Pending restart parameters.
    pub pending_restart: BTreeMap<String, PendingChange>,
    /// Whether the last shutdown was clean.
    pub clean_shutdown: bool,
    /// What `read_logical_slots` finds on the primary.
    pub primary_slot_states: Vec<SlotState>,
    /// What `catalog_xmins_on_primary` finds: slot name → catalog_xmin.
    pub primary_catalog_xmins: BTreeMap<String, Option<u64>>,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            has_data: true,
            unresponsive: false,
            postmaster: PostmasterState::Stopped,
            status: LocalStatus {
                in_recovery: false,
                current_lsn: Some(Lsn(0x300_0000)),
                receive_lsn: None,
                replay_lsn: None,
                timeline: TimelineId(1),
                system_identifier: 7_000_000_000_000_000_001,
                postmaster_start: None,
                replay_timestamp: None,
                replay_paused: false,
            },
            rewind_decision: RewindDecision::NotNeeded {
                reason: "fake".into(),
            },
            rewind_fails: false,
            rewind_changes_nothing: false,
            graceful_stop_hangs: false,
            replication: Vec::new(),
            wal_receiver: None,
            slots: BTreeMap::new(),
            pending_restart: BTreeMap::new(),
            clean_shutdown: true,
            primary_slot_states: Vec::new(),
            primary_catalog_xmins: BTreeMap::new(),
        }
    }
}

/// The fake.
#[derive(Debug, Default)]
pub struct FakePg {
    calls: Mutex<Vec<Call>>,
    fail: Mutex<BTreeSet<&'static str>>,
    state: Mutex<FakeState>,
}

/// Fake pid for a "running" fake postmaster.
const FAKE_PID: i32 = 4242;

impl FakePg {
    /// A stopped fake primary on timeline 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// Forgets recorded calls.
    pub fn clear_calls(&self) {
        lock(&self.calls).clear();
    }

    /// Makes the named operation (the method name, e.g. `"start"`) fail until [`Self::heal`].
    pub fn fail(&self, op: &'static str) {
        lock(&self.fail).insert(op);
    }

    /// Makes a failed operation succeed again.
    pub fn heal(&self, op: &'static str) {
        lock(&self.fail).remove(op);
    }

    /// Reads or changes the model.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// Simulates the postmaster dying.
    pub fn crash(&self) {
        self.with_state(|s| {
            s.postmaster = PostmasterState::Crashed { pid: FAKE_PID };
            s.clean_shutdown = false;
        });
    }

    fn record(&self, op: &'static str, call: Call) -> Result<()> {
        lock(&self.calls).push(call);
        if lock(&self.fail).contains(op) {
            return Err(Error::ChildFailed {
                operation: op,
                program: "fake".into(),
                status: "exit status: 1".into(),
                stderr: format!("injected failure of {op}"),
            });
        }
        Ok(())
    }

    fn require_running(&self, operation: &'static str) -> Result<()> {
        match self.with_state(|s| s.postmaster) {
            PostmasterState::Running { .. } => Ok(()),
            _ => Err(Error::NotRunning {
                data_dir: PathBuf::from("/fake"),
                operation,
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PgControl for FakePg {
    fn version(&self) -> PgVersion {
        PgVersion {
            num: 150_018,
            text: "postgres (PostgreSQL) 15.18 (fake)".into(),
        }
    }

    async fn initdb(&self, options: &[InitdbOption]) -> Result<()> {
        self.record("initdb", Call::Initdb(options.to_vec()))?;
        for o in options {
            o.to_arg()?;
        }
        self.with_state(|s| s.has_data = true);
        Ok(())
    }

    async fn custom_bootstrap(&self, method: &super::CustomBootstrap) -> Result<bool> {
        self.record("custom_bootstrap", Call::CustomBootstrap(method.name.clone()))?;
        self.with_state(|s| s.has_data = true);
        Ok(false)
    }

    fn archive_recovery_signal(&self) -> Result<()> {
        self.record("archive_recovery_signal", Call::ArchiveRecoverySignal)
    }

    async fn create_roles(&self) -> Result<()> {
        self.record("create_roles", Call::CreateRoles)?;
        self.require_running("create roles")
    }

    async fn run_post_bootstrap(&self, command: &str) -> Result<()> {
        self.record("run_post_bootstrap", Call::PostBootstrap(command.to_owned()))
    }

    async fn write_config(&self, input: &ConfigInput) -> Result<()> {
        self.record("write_config", Call::WriteConfig(input.clone()))
    }

    async fn start(&self) -> Result<()> {
        self.record("start", Call::Start)?;
        self.with_state(|s| {
            s.postmaster = PostmasterState::Running { pid: FAKE_PID };
            s.clean_shutdown = false;
        });
        Ok(())
    }

    async fn stop(&self, mode: StopMode) -> Result<StopOutcome> {
        self.record("stop", Call::Stop(mode))?;
        if mode != StopMode::Immediate && self.with_state(|s| s.graceful_stop_hangs) {
            std::future::pending::<()>().await;
        }
        Ok(self.with_state(|s| {
            let was = matches!(s.postmaster, PostmasterState::Running { .. });
            s.postmaster = PostmasterState::Stopped;
            s.clean_shutdown = mode != StopMode::Immediate;
            if was {
                StopOutcome::Stopped { mode }
            } else {
                StopOutcome::NotRunning
            }
        }))
    }

    async fn restart(&self, mode: StopMode) -> Result<()> {
        self.record("restart", Call::Restart(mode))?;
        self.with_state(|s| s.postmaster = PostmasterState::Running { pid: FAKE_PID });
        Ok(())
    }

    async fn reload(&self) -> Result<()> {
        self.record("reload", Call::Reload)?;
        self.require_running("reload")
    }

    async fn promote(&self) -> Result<()> {
        self.record("promote", Call::Promote)?;
        self.require_running("promote")?;
        self.with_state(|s| {
            if s.status.in_recovery {
                s.status.in_recovery = false;
                s.status.timeline = TimelineId(s.status.timeline.0 + 1);
            }
        });
        Ok(())
    }

    fn probe(&self) -> PostmasterState {
        self.with_state(|s| s.postmaster)
    }

    fn adopt(&self) -> Result<Option<i32>> {
        self.record("adopt", Call::Adopt)?;
        Ok(match self.probe() {
            PostmasterState::Running { pid } => Some(pid),
            _ => None,
        })
    }

    async fn controldata(&self) -> Result<ControlData> {
        self.record("controldata", Call::Controldata)?;
        Ok(self.with_state(|s| ControlData {
            state: match (s.clean_shutdown, s.status.in_recovery) {
                (true, false) => "shut down",
                (true, true) => "shut down in recovery",
                (false, false) => "in production",
                (false, true) => "in archive recovery",
            }
            .into(),
            system_identifier: s.status.system_identifier,
            checkpoint_lsn: s.status.current_lsn.unwrap_or_default(),
            checkpoint_timeline: s.status.timeline,
            min_recovery_lsn: Lsn::ZERO,
            min_recovery_timeline: 0,
            wal_log_hints: true,
            data_checksums: false,
        }))
    }

    async fn crash_recovery(&self) -> Result<bool> {
        self.record("crash_recovery", Call::CrashRecovery)?;
        Ok(self.with_state(|s| !std::mem::replace(&mut s.clean_shutdown, true)))
    }

    async fn clone_without_source(
        &self,
        methods: &[ReplicaMethod],
        _progress: &watch::Sender<CloneProgress>,
    ) -> Result<()> {
        self.record("clone_without_source", Call::CloneWithoutSource)?;
        if !methods.iter().any(ReplicaMethod::works_without_leader) {
            return Err(Error::Unexpected {
                what: "replica methods",
                value: "none works without a leader".into(),
            });
        }
        self.with_state(|s| s.has_data = true);
        Ok(())
    }

    async fn clone_from(
        &self,
        source: &Upstream,
        methods: &[ReplicaMethod],
        progress: &watch::Sender<CloneProgress>,
    ) -> Result<()> {
        self.record("clone_from", Call::Clone(source.clone()))?;
        self.with_state(|s| s.has_data = true);
        progress.send_replace(CloneProgress {
            method: methods.first().map(|m| m.name().to_owned()).unwrap_or_default(),
            attempt: 1,
            done_kb: 100,
            total_kb: 100,
            percent: 100,
            finished: true,
        });
        self.with_state(|s| s.status.in_recovery = true);
        Ok(())
    }

    async fn check_rewind(&self, primary: &Upstream) -> Result<RewindDecision> {
        self.record("check_rewind", Call::CheckRewind(primary.clone()))?;
        Ok(self.with_state(|s| s.rewind_decision.clone()))
    }

    async fn rewind(&self, primary: &Upstream) -> Result<()> {
        self.record("rewind", Call::Rewind(primary.clone()))?;
        if self.with_state(|s| s.rewind_fails) {
            return Err(Error::RewindFailed {
                data_dir: PathBuf::from("/fake"),
                source: Box::new(Error::ChildFailed {
                    operation: "rewind",
                    program: "pg_rewind".into(),
                    status: "exit status: 1".into(),
                    stderr: "injected".into(),
                }),
            });
        }
        // A real pg_rewind leaves the data on the source's history, unless the test says it
        // ends without changing anything (it does so when it sees the same timeline number).
        self.with_state(|s| {
            if !s.rewind_changes_nothing {
                s.rewind_decision = RewindDecision::NotNeeded {
                    reason: "rewound".into(),
                };
            }
        });
        Ok(())
    }

    fn has_data(&self) -> Result<bool> {
        self.record("has_data", Call::HasData)?;
        Ok(self.with_state(|s| s.has_data))
    }

    fn move_data_dir_aside(&self) -> Result<PathBuf> {
        self.record("move_data_dir_aside", Call::MoveAside)?;
        self.with_state(|s| s.has_data = false);
        Ok(PathBuf::from("/fake.failed-19700101T000000Z"))
    }

    async fn status(&self) -> Result<LocalStatus> {
        self.require_running("read status")?;
        if self.with_state(|s| s.unresponsive) {
            return Err(Error::NotRunning {
                data_dir: PathBuf::from("/fake"),
                operation: "read status (not answering)",
            });
        }
        Ok(self.with_state(|s| s.status.clone()))
    }

    async fn replication(&self) -> Result<Vec<ReplicationRow>> {
        self.require_running("read pg_stat_replication")?;
        Ok(self.with_state(|s| s.replication.clone()))
    }

    async fn wal_receiver(&self) -> Result<Option<WalReceiver>> {
        self.require_running("read pg_stat_wal_receiver")?;
        Ok(self.with_state(|s| s.wal_receiver.clone()))
    }

    async fn slots(&self) -> Result<Vec<Slot>> {
        self.require_running("list slots")?;
        Ok(self.with_state(|s| s.slots.values().cloned().collect()))
    }

    async fn create_physical_slot(&self, name: &str) -> Result<()> {
        self.record("create_physical_slot", Call::CreateSlot(name.to_owned()))?;
        self.with_state(|s| {
            s.slots.entry(name.to_owned()).or_insert_with(|| Slot {
                name: name.to_owned(),
                slot_type: SlotType::Physical,
                active: false,
                restart_lsn: s.status.current_lsn,
                database: None,
                plugin: None,
                confirmed_flush_lsn: None,
                catalog_xmin: None,
            });
        });
        Ok(())
    }

    async fn create_logical_slot(&self, name: &str, database: &str, plugin: &str) -> Result<()> {
        self.record(
            "create_logical_slot",
            Call::CreateLogicalSlot(name.to_owned(), database.to_owned(), plugin.to_owned()),
        )?;
        self.with_state(|s| {
            s.slots.entry(name.to_owned()).or_insert_with(|| Slot {
                name: name.to_owned(),
                slot_type: SlotType::Logical,
                active: false,
                restart_lsn: s.status.current_lsn,
                database: Some(database.to_owned()),
                plugin: Some(plugin.to_owned()),
                confirmed_flush_lsn: s.status.current_lsn,
                catalog_xmin: None,
            });
        });
        Ok(())
    }

    async fn drop_slot(&self, name: &str) -> Result<()> {
        self.record("drop_slot", Call::DropSlot(name.to_owned()))?;
        self.with_state(|s| s.slots.remove(name));
        Ok(())
    }

    async fn advance_slot(&self, name: &str, to: Lsn) -> Result<()> {
        self.record("advance_slot", Call::AdvanceSlot(name.to_owned(), to))?;
        self.with_state(|s| {
            if let Some(slot) = s.slots.get_mut(name) {
                slot.restart_lsn = Some(to);
            }
        });
        Ok(())
    }

    async fn advance_logical_slot(&self, name: &str, database: &str, to: Lsn) -> Result<()> {
        self.record(
            "advance_logical_slot",
            Call::AdvanceLogicalSlot(name.to_owned(), database.to_owned(), to),
        )?;
        self.with_state(|s| {
            if let Some(slot) = s.slots.get_mut(name) {
                slot.confirmed_flush_lsn = Some(to);
            }
        });
        Ok(())
    }

    async fn read_logical_slots(&self, primary: &Upstream, names: &[String]) -> Result<Vec<SlotState>> {
        self.record(
            "read_logical_slots",
            Call::ReadLogicalSlots(primary.clone(), names.to_vec()),
        )?;
        Ok(self.with_state(|s| {
            s.primary_slot_states
                .iter()
                .filter(|p| names.contains(&p.name))
                .cloned()
                .collect()
        }))
    }

    async fn catalog_xmins_on_primary(
        &self,
        primary: &Upstream,
        names: &[String],
    ) -> Result<BTreeMap<String, Option<u64>>> {
        self.record(
            "catalog_xmins_on_primary",
            Call::CatalogXmins(primary.clone(), names.to_vec()),
        )?;
        Ok(self.with_state(|s| {
            s.primary_catalog_xmins
                .iter()
                .filter(|(n, _)| names.contains(n))
                .map(|(n, x)| (n.clone(), *x))
                .collect()
        }))
    }

    async fn install_slot_states(&self, slots: &[SlotState]) -> Result<()> {
        let names = slots.iter().map(|s| s.name.clone()).collect();
        self.record("install_slot_states", Call::InstallSlotStates(names))?;
        if self.with_state(|s| matches!(s.postmaster, PostmasterState::Running { .. })) {
            return Err(Error::AlreadyRunning {
                data_dir: PathBuf::from("/fake"),
                pid: 1,
            });
        }
        self.with_state(|s| {
            for p in slots {
                s.slots.insert(
                    p.name.clone(),
                    Slot {
                        name: p.name.clone(),
                        slot_type: SlotType::Logical,
                        active: false,
                        restart_lsn: p.confirmed_flush_lsn,
                        database: Some(p.database.clone()),
                        plugin: Some(p.plugin.clone()),
                        confirmed_flush_lsn: p.confirmed_flush_lsn,
                        catalog_xmin: None,
                    },
                );
            }
        });
        Ok(())
    }

    async fn set_synchronous_standby_names(&self, value: Option<&str>) -> Result<()> {
        self.record(
            "set_synchronous_standby_names",
            Call::SetSyncStandbyNames(value.map(str::to_owned)),
        )
    }

    async fn checkpoint(&self) -> Result<()> {
        self.record("checkpoint", Call::Checkpoint)?;
        self.require_running("checkpoint")
    }

    async fn pending_restart(&self) -> Result<BTreeMap<String, PendingChange>> {
        self.require_running("read pending restart")?;
        Ok(self.with_state(|s| s.pending_restart.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_records_calls_models_state_and_injects_failures() {
        let pg = FakePg::new();
        assert_eq!(pg.probe(), PostmasterState::Stopped);
        pg.start().await.unwrap();
        assert!(matches!(pg.probe(), PostmasterState::Running { .. }));
        pg.fail("reload");
        assert!(pg.reload().await.is_err());
        pg.heal("reload");
        pg.reload().await.unwrap();
        pg.crash();
        assert!(matches!(pg.probe(), PostmasterState::Crashed { .. }));
        assert!(pg.crash_recovery().await.unwrap());
        assert_eq!(
            pg.calls(),
            vec![Call::Start, Call::Reload, Call::Reload, Call::CrashRecovery]
        );
        assert_eq!(pg.stop(StopMode::Fast).await.unwrap(), StopOutcome::NotRunning);
    }
}
