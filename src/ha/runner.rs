//! The HA loop's runner: one iteration reads the scope from the DCS (linearizably),
//! observes PostgreSQL, polls peers when the leader key is free, calls [`decide`], executes
//! the actions in order, writes the member key and publishes [`NodeStatus`]. A fence task
//! stops PostgreSQL when the leader's lease (measured from the send time of its last
//! successful refresh) runs out, even while a DCS call is still pending.

use super::callbacks::{
    CallbackAction, CallbackCommands, CallbackRole, Callbacks, PrePromote, ScriptCallbacks,
};
use super::decide::{decide, Action, DemoteMode, Inputs, PeerStatus, PgState, Running};
use super::failsafe::{self, FailsafeState};
use super::slots::{self, Holder, Permanent, PermanentSlots, Retained};
use super::status::{NodeStatus, ReplicationInfo};
use super::sync::{self, Standby, SyncSettings};
use super::view::{ClusterView, HistoryRow, MemberRecord, StatusKey, SyncKey, SyncMode, Versioned};
use super::watchdog::{Watchdog, WatchdogMode, WatchdogTiming};
use crate::api::actions::{ActionOutcome, ApiRequest, RestartConditions};
use crate::dcs::{Dcs, DcsError};
use crate::postgres::{
    CloneProgress, ConfigInput, InitdbOption, PgControl, PgRole, PostmasterState, ReplicaMethod,
    StandbyTarget, StopMode, Upstream,
};
use crate::types::{Lsn, MemberName};
use pgwarden_raft::Condition;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Loop timing (Patroni's keys), re-read from the dynamic config every iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Lease length of the leader and member keys.
    pub ttl: Duration,
    /// Pause between iterations.
    pub loop_wait: Duration,
    /// Time limit of one DCS or peer operation.
    pub retry_timeout: Duration,
}

/// Everything the runner needs from the configuration.
#[derive(Clone, Debug)]
pub struct HaSettings {
    /// `<namespace><scope>/`.
    pub prefix: String,
    /// Cluster scope.
    pub scope: String,
    /// This member.
    pub me: MemberName,
    /// `http://host:port/patroni`.
    pub api_url: String,
    /// `postgres://host:port/postgres`.
    pub conn_url: String,
    /// Timing before the dynamic config is known.
    pub timing: Timing,
    /// How long before its lease runs out a primary stops itself.
    pub safety_margin: Duration,
    /// Tags published in the member key.
    pub tags: BTreeMap<String, Value>,
    /// Failover priority (0: nofailover).
    pub failover_priority: i64,
    /// initdb options.
    pub initdb: Vec<InitdbOption>,
    /// bootstrap.dcs, written as `config` by the member that bootstraps.
    pub bootstrap_dcs: Value,
    /// pg_hba lines.
    pub pg_hba: Vec<String>,
    /// Local postgresql.parameters.
    pub local_parameters: BTreeMap<String, String>,
    /// Local postgresql.recovery_conf (standbys only; over the DCS one).
    pub recovery_conf: BTreeMap<String, String>,
    /// post_bootstrap command.
    pub post_bootstrap: Option<String>,
    /// create_replica_methods.
    pub replica_methods: Vec<ReplicaMethod>,
    /// `restapi.authentication`: the credentials members use on each other's REST API
    /// (POST /failsafe).
    pub api_auth: Option<(String, String)>,
    /// `postgresql.callbacks`, `pre_promote`, `before_stop`, and the user they run as:
    /// compared on reload, which rebuilds the scripts when they changed.
    pub scripts: Option<(CallbackCommands, Option<String>)>,
    /// `watchdog` mode, device and safety_margin, applied on reload (`None`: keep).
    pub watchdog: Option<(WatchdogMode, std::path::PathBuf, i64)>,
}

/// Why an action did not complete; the rest of the iteration is abandoned.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// A compare-and-swap lost: somebody else got there first.
    #[error("{0}")]
    Lost(String),
    /// The DCS failed.
    #[error("DCS operation failed")]
    Dcs(#[from] DcsError),
    /// PostgreSQL failed.
    #[error("PostgreSQL operation failed")]
    Pg(#[from] crate::postgres::Error),
    /// Unrecoverable: the loop stops.
    #[error("{0}")]
    Fatal(String),
}

/// Shared between the runner and its fence task.
struct Lease {
    /// Until when the lock is ours (send time of the last refresh + ttl − margin).
    until: watch::Sender<Option<Instant>>,
}

/// The HA loop of one member.
pub struct Runner<D: Dcs, P: PgControl + 'static> {
    dcs: Arc<D>,
    pg: Arc<P>,
    s: HaSettings,
    timing: Timing,
    status: watch::Sender<NodeStatus>,
    lease: Arc<Lease>,
    following: Option<MemberName>,
    /// The role PostgreSQL's configuration was last written for (None before the first write).
    written_role: Option<PgRole>,
    not_streaming_since: Option<Instant>,
    /// The data directory was just cloned: its pg_control says "in production" (copied from
    /// a running primary) but it must be started as is, since recovery from the backup
    /// label is what makes it consistent. Crash recovery or a rewind here would fork it.
    just_cloned: bool,
    http: reqwest::Client,
    progress: watch::Sender<CloneProgress>,
    tick: u64,
    last_reason: String,
    warned_keys: bool,
    /// Requests from the REST API (restart, reload, reinitialize).
    requests: Option<tokio::sync::mpsc::Receiver<ApiRequest>>,
    /// The view of the last iteration, for requests handled between iterations.
    last_view: Option<ClusterView>,
    /// A restart scheduled through the API: when, and on which conditions.
    scheduled_restart: Option<(chrono::DateTime<chrono::FixedOffset>, RestartConditions)>,
    /// Synchronous replication bookkeeping of a primary.
    sync: SyncTrack,
    /// Re-reads the configuration file (SIGHUP, POST /reload).
    reloader: Option<Reloader>,
    /// The `config` revision PostgreSQL's files were last written from.
    applied_config_rev: Option<u64>,
    /// Unneeded inactive slots on the primary, since when (see `ensure_slots`).
    slot_absent_since: BTreeMap<String, Instant>,
    /// Slot problems already warned about (see `warn_slot_once`).
    warned_slots: BTreeSet<String>,
    /// When each permanent logical slot was last copied from the primary: a copy restarts
    /// PostgreSQL, so a slot that still needs one (its WAL gone here) waits a while first.
    logical_copied_at: BTreeMap<String, Instant>,
    /// Logical slot copies not yet known to be safe after a failover (`slots::ready_copies`),
    /// with the primary slot's catalog_xmin once remembered; `None` before the first check
    /// after start, which takes every copy present.
    logical_pending: Option<BTreeMap<String, Option<u64>>>,
    /// The leader's `retain_slots` bookkeeping.
    retained: Retained,
    /// User scripts: callbacks, pre_promote, before_stop (see `ha::callbacks`).
    callbacks: Arc<dyn Callbacks>,
    /// The kernel watchdog (see `ha::watchdog`).
    watchdog: Arc<Watchdog>,
    /// This member's pre_promote script failed and it released the key: no racing until then.
    race_backoff_until: Option<Instant>,
    /// PostgreSQL's role as last announced to the callbacks, to tell a role change (former
    /// primary → replica) from a plain start or restart, as Patroni does.
    cb_role: Option<CallbackRole>,
    /// Failsafe mode, shared with the REST API (see `ha::failsafe`).
    failsafe: FailsafeState,
    /// "kept running through a DCS outage in failsafe mode" was logged.
    failsafe_logged: bool,
}

/// What `ensure_slots` leaves for the `status` key.
struct SlotsOutcome {
    /// The slots after the changes.
    slots: Vec<crate::postgres::Slot>,
    /// The permanent slots of the dynamic config.
    permanent: PermanentSlots,
    /// member_slots_ttl > 0.
    keep_all_members: bool,
    /// `retain_slots` (on the leader).
    retain: Vec<String>,
}

/// Builds fresh [`HaSettings`] from the configuration file, or says why it cannot.
pub type Reloader = Arc<dyn Fn() -> Result<HaSettings, String> + Send + Sync>;

/// What a primary knows about its own synchronous_standby_names.
#[derive(Debug, Default)]
struct SyncTrack {
    /// The SSN this process set (`None`: not known, e.g. after a start).
    ssn: Option<Option<String>>,
    /// When it was set.
    changed_at: Option<Instant>,
    /// The primary's WAL position taken once the change had time to take effect: a
    /// standby that has flushed it holds every commit acknowledged before the change.
    mark: Option<Lsn>,
    /// "running without a synchronous standby" was logged.
    warned_degraded: bool,
}

/// How long after a reload SSN is taken as in effect in every backend (PostgreSQL
/// processes SIGHUP within milliseconds; this is the margin).
const SSN_SETTLE: Duration = Duration::from_millis(500);

/// How long a replica may fail to stream from its leader before it is restarted (with a
/// rewind check): long enough for a new primary to come up, short enough to heal fast.
const STREAMING_GRACE: Duration = Duration::from_secs(8);

/// How long a replica waits before copying the same logical slot from the primary again (a
/// copy restarts its PostgreSQL; a copy whose WAL is gone here needs the primary's slot to
/// move on first).
const LOGICAL_COPY_INTERVAL: Duration = Duration::from_secs(60);

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// A runner; `status` receives a new [`NodeStatus`] after every iteration.
    pub fn new(dcs: Arc<D>, pg: Arc<P>, s: HaSettings, status: watch::Sender<NodeStatus>) -> Self {
        let (until, _) = watch::channel(None);
        let timing = s.timing;
        let (progress, _) = watch::channel(CloneProgress::default());
        Runner {
            dcs,
            pg,
            s,
            timing,
            status,
            lease: Arc::new(Lease { until }),
            following: None,
            written_role: None,
            not_streaming_since: None,
            just_cloned: false,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            progress,
            tick: 0,
            last_reason: String::new(),
            warned_keys: false,
            requests: None,
            last_view: None,
            scheduled_restart: None,
            sync: SyncTrack::default(),
            reloader: None,
            applied_config_rev: None,
            slot_absent_since: BTreeMap::new(),
            warned_slots: BTreeSet::new(),
            logical_copied_at: BTreeMap::new(),
            logical_pending: None,
            retained: Retained::default(),
            callbacks: Arc::new(ScriptCallbacks::none()),
            watchdog: Arc::new(Watchdog::off()),
            race_backoff_until: None,
            cb_role: None,
            failsafe: FailsafeState::new(timing.ttl),
            failsafe_logged: false,
        }
    }

    /// Shares the failsafe state with the REST API (which answers POST /failsafe).
    pub fn with_failsafe(mut self, f: FailsafeState) -> Self {
        self.failsafe = f;
        self
    }

    /// Runs these user scripts (default: none).
    pub fn with_callbacks(mut self, callbacks: Arc<dyn Callbacks>) -> Self {
        self.callbacks = callbacks;
        self
    }

    /// Uses this watchdog (default: off).
    pub fn with_watchdog(mut self, watchdog: Arc<Watchdog>) -> Self {
        self.watchdog = watchdog;
        self
    }

    fn wd_timing(&self) -> WatchdogTiming {
        WatchdogTiming {
            ttl: self.timing.ttl.as_secs(),
            loop_wait: self.timing.loop_wait.as_secs(),
        }
    }

    /// PostgreSQL's role for a callback argument.
    fn cb_role_now(&self) -> CallbackRole {
        self.cb_role
            .unwrap_or_else(|| CallbackRole::from_status(&self.status.borrow().role))
    }

    /// Whether PostgreSQL was last announced as primary (or demoted from it): the next start
    /// as a replica is then a role change, not a start (Patroni's `follow`).
    fn role_changes_to_replica(&self) -> bool {
        matches!(self.cb_role, Some(CallbackRole::Primary | CallbackRole::Demoted))
    }

    /// Starts a background callback and remembers the role it announced.
    fn fire(&mut self, action: CallbackAction, role: CallbackRole) {
        self.callbacks.fire(action, role);
        if matches!(
            action,
            CallbackAction::OnStart | CallbackAction::OnRestart | CallbackAction::OnRoleChange
        ) {
            self.cb_role = Some(role);
        }
    }

    /// Stops PostgreSQL as Patroni does: `before_stop` first (synchronously, within
    /// retry_timeout) when it runs, `on_stop` after, unless `quiet` (the stop of a restart,
    /// which announces on_restart or on_role_change once started again).
    async fn stop_pg(&mut self, mode: StopMode, quiet: bool) -> Result<(), crate::postgres::Error> {
        let running = matches!(self.pg.probe(), PostmasterState::Running { .. });
        let role = self.cb_role_now();
        if running {
            self.callbacks.before_stop(self.timing.retry_timeout).await;
        }
        self.pg.stop(mode).await?;
        if running && !quiet {
            self.callbacks.fire(CallbackAction::OnStop, role);
        }
        Ok(())
    }

    /// Stops a primary that must not stay one: PostgreSQL first, then the watchdog.
    async fn demote_stop(&mut self, mode: StopMode) -> Result<(), crate::postgres::Error> {
        let was_primary = self.cb_role_now() == CallbackRole::Primary;
        self.stop_pg(mode, false).await?;
        self.watchdog.disable();
        if was_primary {
            self.cb_role = Some(CallbackRole::Demoted);
        }
        Ok(())
    }

    /// Re-reads the configuration file on a reload request.
    pub fn with_reloader(mut self, r: Reloader) -> Self {
        self.reloader = Some(r);
        self
    }

    /// Applies a re-read configuration file: what a running member can change (tags,
    /// PostgreSQL parameters and pg_hba, addresses published in the member key, replica
    /// methods); a changed name or scope needs a restart and is refused.
    fn apply_reloaded(&mut self, new: HaSettings) {
        if new.me != self.s.me || new.prefix != self.s.prefix {
            tracing::error!(
                name = %new.me,
                scope = %new.scope,
                "reload: `name` and `scope` cannot change while running; restart the daemon to apply; nothing was reloaded"
            );
            return;
        }
        let mut changed = vec![];
        if new.tags != self.s.tags || new.failover_priority != self.s.failover_priority {
            changed.push("tags");
        }
        if new.local_parameters != self.s.local_parameters {
            changed.push("postgresql.parameters");
        }
        if new.pg_hba != self.s.pg_hba {
            changed.push("pg_hba");
        }
        if new.api_url != self.s.api_url || new.conn_url != self.s.conn_url {
            changed.push("connect addresses");
        }
        if new.replica_methods != self.s.replica_methods {
            changed.push("postgresql.create_replica_methods");
        }
        if new.scripts != self.s.scripts {
            if let Some((commands, run_as)) = &new.scripts {
                match ScriptCallbacks::new(commands.clone(), new.scope.clone(), run_as.as_deref()) {
                    Ok(cb) => {
                        // Scripts already running finish under the old set; new events use
                        // the new commands.
                        self.callbacks = Arc::new(cb);
                        changed.push("postgresql.callbacks");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload: the new callbacks cannot be used; keeping the old ones")
                    }
                }
            }
        }
        if let Some((mode, path, margin)) = &new.watchdog {
            if !self.watchdog.configured_as(*mode, path, *margin) {
                // Patroni's reload: the old device is disarmed; an armed primary arms the new
                // one at its next lease refresh (within loop_wait), and demotes there if a
                // required watchdog cannot be armed.
                self.watchdog.disable();
                self.watchdog = Arc::new(self.watchdog.reconfigured(*mode, path.clone(), *margin));
                changed.push("watchdog");
            }
        }
        let timing = self.s.timing;
        self.s = HaSettings { timing, ..new };
        tracing::info!(changed = ?changed, "configuration file reloaded");
    }

    /// Takes requests from the REST API.
    pub fn with_requests(mut self, rx: tokio::sync::mpsc::Receiver<ApiRequest>) -> Self {
        self.requests = Some(rx);
        self
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{}", self.s.prefix, rel)
    }

    /// Runs until `shutdown`; then, on the primary, stops PostgreSQL and releases the key
    /// so a replica takes over at once instead of waiting for the lease to run out.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ActError> {
        let fence = tokio::spawn(fence(
            self.pg.clone(),
            self.lease.until.subscribe(),
            shutdown.clone(),
        ));
        let mut watch = self.dcs.watch(&self.s.prefix);
        let result = loop {
            let started = Instant::now();
            self.tick += 1;
            let span = tracing::info_span!("ha_tick", member = %self.s.me, tick = self.tick);
            let res = tracing::Instrument::instrument(self.iteration(), span).await;
            if let Err(ActError::Fatal(why)) = res {
                tracing::error!(reason = %why, "stopping the HA loop");
                break Err(ActError::Fatal(why));
            }
            // Sleep loop_wait, or less when the leader key, failover or config changes.
            let deadline = started + self.timing.loop_wait;
            let (leader_key, failover_key, config_key) =
                (self.key("leader"), self.key("failover"), self.key("config"));
            let me = self.s.me.to_string();
            let wait = async {
                loop {
                    match watch.next().await {
                        Some(crate::dcs::WatchEvent::Delete { key, .. }) if key == leader_key => return,
                        Some(crate::dcs::WatchEvent::Put(kv))
                            if kv.key == failover_key || kv.key == config_key =>
                        {
                            return
                        }
                        Some(crate::dcs::WatchEvent::Put(kv)) if kv.key == leader_key && kv.value != me => {
                            return
                        }
                        Some(_) => continue,
                        None => std::future::pending::<()>().await,
                    }
                }
            };
            let mut requests = self.requests.take();
            let req = async {
                match requests.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let got = tokio::select! {
                _ = shutdown.cancelled() => { self.requests = requests; break Ok(()) }
                _ = tokio::time::sleep_until(deadline) => None,
                _ = wait => None,
                r = req => r,
            };
            self.requests = requests;
            if let Some(r) = got {
                self.handle_request(r).await;
            }
        };
        self.on_shutdown().await;
        fence.abort();
        result
    }

    /// Handles one REST request between iterations (see `api::actions` for the contract).
    async fn handle_request(&mut self, req: ApiRequest) {
        match req {
            ApiRequest::Restart { conditions, reply } => {
                let out = self.restart(&conditions).await;
                let _ = reply.send(out);
            }
            ApiRequest::ScheduleRestart {
                conditions,
                at,
                reply,
            } => {
                let free = self.scheduled_restart.is_none();
                if free {
                    tracing::info!(at = %at, "restart scheduled");
                    self.scheduled_restart = Some((at, conditions));
                }
                let _ = reply.send(free);
            }
            ApiRequest::CancelScheduledRestart { reply } => {
                let _ = reply.send(self.scheduled_restart.take().is_some());
            }
            ApiRequest::Reload => {
                // Re-read the configuration file, then rewrite PostgreSQL's configuration
                // from it and the current dynamic config, and reload PostgreSQL.
                if let Some(r) = self.reloader.clone() {
                    match r() {
                        Ok(new) => self.apply_reloaded(new),
                        Err(e) => {
                            tracing::error!(error = %e, "reload: the configuration file is not valid; keeping the running configuration")
                        }
                    }
                }
                // The role stays what it was last written as; only the upstream's address
                // is looked up again.
                let role = match self.written_role {
                    Some(PgRole::Primary) => PgRole::Primary,
                    _ => PgRole::Standby(
                        self.following
                            .clone()
                            .and_then(|l| self.upstream_of(self.last_view.as_ref(), &l).ok())
                            .map(|(_, t)| t),
                    ),
                };
                let input = self.config_input(self.last_view.as_ref(), role);
                let res = async {
                    self.pg.write_config(&input).await?;
                    self.pg.reload().await
                }
                .await;
                match res {
                    Ok(()) => {
                        tracing::info!("configuration reloaded on request");
                        self.fire(CallbackAction::OnReload, self.cb_role_now());
                    }
                    Err(e) => tracing::warn!(error = %chain(&e), "reload failed"),
                }
            }
            ApiRequest::Reinitialize {
                force: _,
                from_leader: _,
                reply,
            } => {
                let v = self.last_view.clone().unwrap_or_default();
                let answer = match v.leader_name() {
                    Some(l) if *l == self.s.me => Err("I am the leader, can not reinitialize".to_string()),
                    None => Err("Cluster has no leader, can not reinitialize".to_string()),
                    Some(_) => {
                        // The data directory is moved aside, never deleted; the next
                        // iteration sees no data and clones from the leader.
                        let res = async {
                            self.stop_pg(StopMode::Immediate, false).await?;
                            self.pg.move_data_dir_aside()
                        }
                        .await;
                        match res {
                            Ok(p) => {
                                tracing::info!(moved_to = %p.display(), "reinitializing: old data directory moved aside");
                                self.following = None;
                                Ok(())
                            }
                            Err(e) => Err(format!("reinitialize failed: {}", chain(&e))),
                        }
                    }
                };
                let _ = reply.send(answer);
            }
            ApiRequest::Wakeup => {}
        }
    }

    /// Patroni's `ha.restart()`: check the conditions, restart, report.
    async fn restart(&mut self, c: &RestartConditions) -> ActionOutcome {
        let st = self.status.borrow().clone();
        let role_ok = c
            .role
            .as_deref()
            .is_none_or(|r| r == st.role || (r == "primary" && st.role == "master"));
        let version_ok = c.postgres_version.is_none_or(|v| self.pg.version().num < v);
        let pending_ok = !c.restart_pending
            || self
                .pg
                .pending_restart()
                .await
                .map(|p| !p.is_empty())
                .unwrap_or(false);
        if !(role_ok && version_ok && pending_ok) {
            return ActionOutcome {
                ok: false,
                message: "restart conditions are not satisfied".into(),
            };
        }
        if st.state == "starting" {
            return ActionOutcome {
                ok: false,
                message: "postgres is still starting".into(),
            };
        }
        // The loop does not run during the restart: give the lease its full length first,
        // so a restart that takes a while does not trip the fence and a failover.
        if st.holds_lock {
            let me = self.s.me.to_string();
            if let Err(e) = self
                .put_lease("leader", &me, Condition::ValueEquals(me.clone()))
                .await
            {
                tracing::warn!(error = %chain(&e), "refreshing the leader key before a restart");
            }
        }
        self.set_state("restarting");
        // The loop (and with it the watchdog's feeding) stops during the restart, and
        // PostgreSQL is down for part of it: disarm; the next refresh as primary re-arms.
        self.watchdog.disable();
        let role = self.cb_role_now();
        if matches!(self.pg.probe(), PostmasterState::Running { .. }) {
            self.callbacks.before_stop(self.timing.retry_timeout).await;
        }
        let limit = c.timeout.unwrap_or(Duration::from_secs(600));
        let res = tokio::time::timeout(limit, self.pg.restart(StopMode::Fast)).await;
        match res {
            Ok(Ok(())) => {
                self.set_state("running");
                self.fire(CallbackAction::OnRestart, role);
                tracing::info!("restarted PostgreSQL on request");
                ActionOutcome {
                    ok: true,
                    message: "restarted successfully".into(),
                }
            }
            Ok(Err(e)) => {
                self.set_state("restart failed");
                tracing::warn!(error = %chain(&e), "restart failed");
                ActionOutcome {
                    ok: false,
                    message: "restart failed".into(),
                }
            }
            Err(_) => ActionOutcome {
                ok: false,
                message: "restart failed".into(),
            },
        }
    }

    async fn on_shutdown(&mut self) {
        let holds = self.status.borrow().holds_lock;
        tracing::info!(leader = holds, "shutting down: stopping PostgreSQL");
        match self.stop_pg(StopMode::Fast, false).await {
            // Patroni leaves the watchdog armed when PostgreSQL could not be stopped.
            Ok(()) => self.watchdog.disable(),
            Err(e) => tracing::warn!(error = %chain(&e), "stopping PostgreSQL at shutdown"),
        }
        if holds {
            // The replicas received the shutdown checkpoint during the fast stop, so
            // releasing now lets the healthiest take over at once.
            let _ = self
                .dcs
                .delete(&self.key("leader"), Condition::ValueEquals(self.s.me.to_string()))
                .await;
            self.lease.until.send_replace(None);
        }
        let _ = self
            .dcs
            .delete(&self.key(&format!("members/{}", self.s.me)), Condition::Always)
            .await;
        // Let the on_stop script run before the process exits.
        self.callbacks.wait_idle(Duration::from_secs(5)).await;
    }

    async fn iteration(&mut self) -> Result<(), ActError> {
        if let Some((at, _)) = &self.scheduled_restart {
            if *at <= chrono::Utc::now() {
                if let Some((_, cond)) = self.scheduled_restart.take() {
                    let out = self.restart(&cond).await;
                    tracing::info!(ok = out.ok, message = %out.message, "scheduled restart");
                }
            }
        }
        let mut view = match self.dcs.list(&self.s.prefix).await {
            Ok(kvs) => Some(ClusterView::from_kvs(&self.s.prefix, &kvs)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster from the DCS");
                None
            }
        };
        if let Some(v) = &mut view {
            self.last_view = Some(v.clone());
            self.apply_dynamic_timing(v);
            self.failsafe.set_ttl(self.timing.ttl);
            self.inject_failsafe_leader(v);
            if v.paused() {
                // Patroni: no watchdog while paused (nothing acts on a hung daemon then).
                self.watchdog.disable();
            }
            if !v.unparsable.is_empty() && !self.warned_keys {
                tracing::warn!(keys = ?v.unparsable, "ignoring DCS values that do not parse");
                self.warned_keys = true;
            }
        }
        let (pg, sysid, obs) = self.observe().await;
        // Patroni writes its member key first when it is missing: the primary creates a
        // replica's slot from it, and a replica that starts up may block until it streams.
        if let Some(v) = &view {
            if !v.members.contains_key(&self.s.me) {
                if let Err(e) = self.write_member(&pg, &obs).await {
                    tracing::warn!(error = %e, "cannot write the member key");
                }
            }
        }
        let peers = match &view {
            Some(v) if v.leader.is_none() && matches!(pg, PgState::Running(_)) => self.poll_peers(v).await,
            _ => vec![],
        };
        // Failsafe: the DCS cannot be read and this is a running primary — it stays one
        // only on the word of every member listed in /failsafe.
        let failsafe_held = match (&view, &pg) {
            (None, PgState::Running(r)) if r.primary => self.failsafe_hold().await,
            _ => false,
        };
        let scheduled_due = view
            .as_ref()
            .and_then(|v| v.failover.as_ref())
            .and_then(|f| f.value.scheduled_at.as_deref())
            .map(|at| {
                chrono::DateTime::parse_from_rfc3339(at)
                    .map(|t| t <= chrono::Utc::now())
                    .unwrap_or(true)
            })
            .unwrap_or(true);
        let d = decide(&Inputs {
            me: &self.s.me,
            view: view.as_ref(),
            pg: &pg,
            sysid,
            failover_priority: self.s.failover_priority,
            peers: &peers,
            maximum_lag_on_failover: max_lag(view.as_ref()),
            scheduled_due,
            pre_promote_backoff: self.race_backoff_until.is_some_and(|t| Instant::now() < t),
            watchdog_healthy: self.watchdog.is_healthy(self.wd_timing()),
            failsafe_held,
        });
        if d.reason != self.last_reason {
            tracing::info!(reason = %d.reason, actions = ?d.actions, "decision");
            self.last_reason = d.reason.clone();
        } else {
            tracing::debug!(reason = %d.reason, "decision");
        }
        let mut outcome = Ok(());
        for a in &d.actions {
            if let Err(e) = self.act(a, view.as_ref()).await {
                match &e {
                    ActError::Lost(why) => tracing::info!(action = ?a, "{why}"),
                    ActError::Fatal(_) => return Err(e),
                    other => tracing::warn!(action = ?a, error = %chain(other), "action failed"),
                }
                // The DCS failed under the lease refresh itself (not a lost compare-and-
                // swap): the same failsafe rule as for a failed read, before the fence
                // stops PostgreSQL at the end of the lease.
                if matches!((a, &e), (Action::RefreshLeader, ActError::Dcs(_)))
                    && matches!(&pg, PgState::Running(r) if r.primary)
                {
                    self.failsafe_hold().await;
                }
                outcome = Err(e);
                break;
            }
        }
        // A changed dynamic configuration reaches PostgreSQL on every member: rewrite its
        // files for the role they were written for, and reload (what needs a restart then
        // shows as pending_restart).
        if let (Some(v), Some(role), Ok(())) = (&view, self.written_role.clone(), &outcome) {
            let rev = v.config.as_ref().map(|c| c.revision);
            if rev.is_some()
                && rev != self.applied_config_rev
                && matches!(self.pg.probe(), PostmasterState::Running { .. })
            {
                if self.applied_config_rev.is_some() {
                    let input = self.config_input(Some(v), role);
                    let res = async {
                        self.pg.write_config(&input).await?;
                        self.pg.reload().await
                    }
                    .await;
                    match res {
                        Ok(()) => tracing::info!(
                            "dynamic configuration changed: PostgreSQL configuration rewritten and reloaded"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %chain(&e), "applying the changed dynamic configuration")
                        }
                    }
                }
                self.applied_config_rev = rev;
            }
        }
        if let (Some(v), Ok(()), PgState::Running(r)) = (&view, &outcome, &pg) {
            if !r.primary {
                self.ensure_slots(Some(v), false).await;
            }
        }
        // Publish after acting, from a fresh observation.
        let (pg_after, sysid_after, obs_after) = if d.actions.is_empty() {
            (pg, sysid, obs)
        } else {
            self.observe().await
        };
        if let Some(v) = &view {
            let leading = outcome.is_ok()
                && d.actions.contains(&Action::RefreshLeader)
                && matches!(&pg_after, PgState::Running(r) if r.primary);
            if leading {
                self.failsafe.release();
                self.failsafe_logged = false;
                self.write_failsafe_topology(v).await;
                if let Err(e) = self.manage_sync(v, &obs_after).await {
                    tracing::warn!(error = %chain(&e), "synchronous replication step failed");
                }
            } else if !matches!(&pg_after, PgState::Running(r) if r.primary) {
                self.sync = SyncTrack::default();
            }
            if let Err(e) = self.write_member(&pg_after, &obs_after).await {
                tracing::warn!(error = %e, "cannot write the member key");
            }
            self.publish(v, &pg_after, sysid_after, &obs_after, true);
        } else {
            self.publish(
                &ClusterView {
                    leader: None,
                    ..Default::default()
                },
                &pg_after,
                sysid_after,
                &obs_after,
                false,
            );
        }
        outcome
    }

    fn apply_dynamic_timing(&mut self, v: &ClusterView) {
        let Some(c) = &v.config else { return };
        let get = |k: &str, d: Duration| {
            c.value
                .get(k)
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .unwrap_or(d)
        };
        let mut t = Timing {
            ttl: get("ttl", self.s.timing.ttl),
            loop_wait: get("loop_wait", self.s.timing.loop_wait),
            retry_timeout: get("retry_timeout", self.s.timing.retry_timeout),
        };
        // Patroni's rule: loop_wait + 2*retry_timeout <= ttl.
        if t.loop_wait + 2 * t.retry_timeout > t.ttl {
            let lw = t.ttl.saturating_sub(2 * t.retry_timeout);
            if lw >= Duration::from_secs(1) {
                t.loop_wait = lw;
            } else {
                t.loop_wait = Duration::from_secs(1);
                t.retry_timeout = Duration::from_secs(t.ttl.as_secs().saturating_sub(1) / 2);
            }
        }
        if t != self.timing {
            tracing::info!(ttl = ?t.ttl, loop_wait = ?t.loop_wait, retry_timeout = ?t.retry_timeout, "timing from the dynamic config");
            self.timing = t;
        }
    }

    /// Observes PostgreSQL: its state, system identifier and the raw facts for the member key.
    async fn observe(&self) -> (PgState, Option<u64>, Observation) {
        let mut obs = Observation::default();
        // pg_controldata (a child process) is read only when PostgreSQL is not running;
        // a running instance reports its system identifier over SQL.
        let mut control_sysid = None;
        let state = match self.pg.probe() {
            PostmasterState::Running { .. } => match self.pg.status().await {
                Ok(st) => {
                    obs.status = Some(st.clone());
                    let wal = if st.in_recovery {
                        st.receive_lsn.max(st.replay_lsn).unwrap_or(Lsn(0))
                    } else {
                        st.current_lsn.unwrap_or(Lsn(0))
                    };
                    let mut streaming = false;
                    if st.in_recovery {
                        if let Ok(Some(w)) = self.pg.wal_receiver().await {
                            streaming = w.status == "streaming";
                        }
                    } else if let Ok(rows) = self.pg.replication().await {
                        obs.replication = rows;
                    }
                    obs.streaming = streaming;
                    obs.pending_restart = self.pg.pending_restart().await.unwrap_or_default();
                    PgState::Running(Running {
                        primary: !st.in_recovery,
                        timeline: st.timeline.0,
                        wal,
                        following: if st.in_recovery {
                            self.following.clone()
                        } else {
                            None
                        },
                        streaming,
                        // A nostream member never streams: that is no reason to restart it.
                        stalled: st.in_recovery
                            && !streaming
                            && !self.nostream()
                            && self
                                .not_streaming_since
                                .is_some_and(|t| t.elapsed() > STREAMING_GRACE),
                    })
                }
                Err(_) => PgState::Unresponsive,
            },
            PostmasterState::Stopped | PostmasterState::Crashed { .. } => match self.pg.controldata().await {
                Err(_) => PgState::NoData,
                Ok(c) => {
                    control_sysid = Some(c.system_identifier);
                    PgState::Stopped {
                        clean: c.clean_shutdown(),
                    }
                }
            },
        };
        (
            state,
            obs.status.as_ref().map(|s| s.system_identifier).or(control_sysid),
            obs,
        )
    }

    /// Asks every other member for GET /patroni, in parallel, 2 s each (Patroni's limit).
    async fn poll_peers(&self, v: &ClusterView) -> Vec<PeerStatus> {
        let futs = v
            .members
            .iter()
            .filter(|(n, _)| **n != self.s.me)
            .map(|(name, m)| {
                let http = self.http.clone();
                let url = m.api_url.clone();
                let name = name.clone();
                let prio = m.failover_priority();
                async move {
                    let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                    let role = body.get("role").and_then(Value::as_str).unwrap_or("");
                    let x = body.get("xlog");
                    let pick = |k: &str| x.and_then(|x| x.get(k)).and_then(Value::as_u64).unwrap_or(0);
                    let primary =
                        role == "primary" && body.get("state").and_then(Value::as_str) == Some("running");
                    let wal = if primary {
                        pick("location")
                    } else {
                        pick("received_location").max(pick("replayed_location"))
                    };
                    Some(PeerStatus {
                        name,
                        primary,
                        wal: Lsn(wal),
                        timeline: body.get("timeline").and_then(Value::as_u64).unwrap_or(0) as u32,
                        failover_priority: prio,
                        watchdog_failed: body
                            .get("watchdog_failed")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                }
            });
        futures::future::join_all(futs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Replica side of failsafe: when the leader key is free but a primary vouched for
    /// itself over POST /failsafe within ttl, treat it as the leader (follow it, do not
    /// race), as Patroni does.
    fn inject_failsafe_leader(&self, v: &mut ClusterView) {
        if v.leader.is_some() || !v.failsafe_mode() {
            return;
        }
        if let Some(r) = self.failsafe.leader(Instant::now()) {
            if r.leader != self.s.me {
                tracing::info!(leader = %r.leader, "no leader key, but the primary confirmed itself over POST /failsafe: following it");
                v.leader = Some(Versioned {
                    value: r.leader,
                    revision: 0,
                });
            }
        }
    }

    /// Primary side of failsafe, on a DCS error: ask every other member listed in the last
    /// known /failsafe; if all accept, extend the lease from the moment of asking (each
    /// member's window starts later, when it answers) and feed the watchdog. False when
    /// failsafe_mode is off, the cluster is paused, this member is not listed, or anyone
    /// did not accept in time.
    async fn failsafe_hold(&mut self) -> bool {
        let Some(v) = self.last_view.clone() else {
            return false;
        };
        if !v.failsafe_mode() || v.paused() {
            return false;
        }
        let Some(ask) = failsafe::to_ask(v.failsafe.as_ref(), &self.s.me) else {
            tracing::warn!("failsafe mode: this member is not listed in /failsafe, so it cannot stay primary without the DCS");
            return false;
        };
        let asked = Instant::now();
        let Some(until) = *self.lease.until.borrow() else {
            return false;
        };
        let left = until.saturating_duration_since(asked);
        if left.is_zero() {
            return false;
        }
        let body = failsafe::notice(&self.s.me, &self.s.conn_url, &self.s.api_url, None);
        let ok = failsafe::ask_all(
            &self.http,
            self.s.api_auth.as_ref(),
            &ask,
            &body,
            left.min(Duration::from_secs(4)),
        )
        .await;
        if !ok {
            self.failsafe.release();
            tracing::warn!("failsafe mode: not every member in /failsafe accepted; this primary must stop");
            return false;
        }
        let margin = self.s.safety_margin.min(self.timing.ttl / 2);
        self.lease
            .until
            .send_replace(Some(asked + self.timing.ttl - margin));
        self.watchdog.keepalive(self.wd_timing());
        self.failsafe.held(asked);
        if !self.failsafe_logged {
            tracing::warn!(
                members = ask.len(),
                "DCS unreachable: continuing to run as the leader because failsafe mode is enabled and all members are accessible"
            );
            self.failsafe_logged = true;
        }
        true
    }

    /// The leader keeps /failsafe (members with an API, and itself) while failsafe_mode
    /// is on, writing it only when it changed.
    async fn write_failsafe_topology(&mut self, v: &ClusterView) {
        if !v.failsafe_mode() {
            return;
        }
        let want = failsafe::topology(
            v.members.iter().map(|(n, m)| (n, m.api_url.as_str())),
            &self.s.me,
            &self.s.api_url,
        );
        if v.failsafe.as_ref() == Some(&want) {
            return;
        }
        let value = match serde_json::to_string(&want) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "failsafe: cannot encode the member list");
                return;
            }
        };
        match self
            .dcs
            .put(&self.key("failsafe"), &value, None, Condition::Always)
            .await
        {
            // The list this member asks when the DCS fails is the one it last read; what it
            // just wrote is newer, and the DCS may be gone before the next read.
            Ok(_) => {
                if let Some(last) = self.last_view.as_mut() {
                    last.failsafe = Some(want);
                }
            }
            Err(e) => tracing::warn!(error = %e, "failsafe: cannot write /failsafe"),
        }
    }

    fn upstream_of(
        &self,
        v: Option<&ClusterView>,
        leader: &MemberName,
    ) -> Result<(Upstream, StandbyTarget), ActError> {
        let m = v
            .and_then(|v| v.members.get(leader))
            .ok_or_else(|| ActError::Lost(format!("no member key for {leader}")))?;
        let (host, port) = m
            .pg_address()
            .ok_or_else(|| ActError::Lost(format!("{leader} has no usable conn_url: {:?}", m.conn_url)))?;
        Ok((
            Upstream {
                host: host.clone(),
                port,
            },
            StandbyTarget {
                host,
                port,
                slot: Some(slot_name(&self.s.me)),
            },
        ))
    }

    fn config_input(&self, v: Option<&ClusterView>, role: PgRole) -> ConfigInput {
        // `nostream`: a standby that replays from the archive only (restore_command), with
        // no primary_conninfo and no slot, whichever member it follows.
        let role = match role {
            PgRole::Standby(Some(_)) if self.nostream() => PgRole::Standby(None),
            other => other,
        };
        let dynamic = v
            .and_then(|v| v.config.as_ref())
            .map(|c| &c.value)
            .unwrap_or(&self.s.bootstrap_dcs);
        let dcs_parameters = dynamic
            .pointer("/postgresql/parameters")
            .and_then(Value::as_object)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), guc_text(v))).collect())
            .unwrap_or_default();
        let mut recovery: BTreeMap<String, String> = dynamic
            .pointer("/postgresql/recovery_conf")
            .and_then(Value::as_object)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), guc_text(v))).collect())
            .unwrap_or_default();
        recovery.extend(self.s.recovery_conf.clone());
        let mut local_parameters = self.s.local_parameters.clone();
        // A replica holding copies of logical slots must tell the primary which catalog rows
        // they still need, or the copies are unusable after a failover (Patroni enforces
        // this too, over any configured value).
        if matches!(role, PgRole::Standby(_)) && self.failover_capable() {
            let permanent = slots::permanent_slots(Some(dynamic));
            if permanent
                .slots
                .values()
                .any(|p| matches!(p, Permanent::Logical { .. }))
            {
                local_parameters.insert("hot_standby_feedback".into(), "on".into());
            }
        }
        ConfigInput {
            dcs_parameters,
            local_parameters,
            pg_hba: self.s.pg_hba.clone(),
            role,
            recovery,
        }
    }

    /// Starts PostgreSQL on the leader (after a crash: through its crash recovery) while
    /// refreshing the leader key every loop_wait, for at most `primary_start_timeout`
    /// (Patroni's rule). When that runs out, or is 0, and a healthy replica could take
    /// over, PostgreSQL is stopped and the key released so a failover happens instead.
    async fn start_primary_keeping_the_lease(&mut self, v: Option<&ClusterView>) -> Result<(), ActError> {
        let me = self.s.me.to_string();
        let limit = v
            .and_then(|v| v.config.as_ref())
            .and_then(|c| {
                c.value
                    .get("primary_start_timeout")
                    .or_else(|| c.value.get("master_start_timeout"))
            })
            .and_then(Value::as_u64)
            .map_or(Duration::from_secs(300), Duration::from_secs);
        let failover_possible = v.is_some_and(|v| {
            v.members.iter().any(|(n, m)| {
                *n != self.s.me && m.state == "running" && m.role == "replica" && m.failover_priority() > 0
            })
        });
        let give_up = |why: &str| {
            tracing::warn!(timeout = ?limit, "{why}: releasing the leader key so a replica takes over");
            ActError::Lost(format!("{why}: released the leader key"))
        };
        if limit.is_zero() && failover_possible {
            self.lease.until.send_replace(None);
            self.watchdog.disable();
            self.dcs
                .delete(&self.key("leader"), Condition::ValueEquals(me))
                .await?;
            return Err(give_up("primary_start_timeout is 0 and a replica can take over"));
        }
        let pg = self.pg.clone();
        let start = pg.start();
        tokio::pin!(start);
        let deadline = Instant::now() + limit;
        let mut tick = tokio::time::interval(self.timing.loop_wait);
        tick.tick().await;
        loop {
            tokio::select! {
                r = &mut start => return r.map_err(Into::into),
                _ = tick.tick() => {
                    if !self.put_lease("leader", &me, Condition::ValueEquals(me.clone())).await? {
                        self.lease.until.send_replace(None);
                        let _ = self.pg.stop(StopMode::Immediate).await;
                        self.watchdog.disable();
                        return Err(ActError::Lost("the leader key was lost while PostgreSQL started".into()));
                    }
                    if Instant::now() >= deadline && failover_possible {
                        self.lease.until.send_replace(None);
                        let _ = self.pg.stop(StopMode::Immediate).await;
                        self.watchdog.disable();
                        self.dcs
                            .delete(&self.key("leader"), Condition::ValueEquals(me.clone()))
                            .await?;
                        return Err(give_up("PostgreSQL did not start within primary_start_timeout"));
                    }
                }
            }
        }
    }

    /// Before promoting: the `pre_promote` script, then the watchdog. A failing script (or one
    /// that outlives the lease) releases the leader key and keeps this member out of the race
    /// for ttl (Patroni's back-off), so another member is chosen; in `required` mode a
    /// watchdog that cannot be armed releases the key too.
    ///
    /// Unlike Patroni, the script runs before the watchdog is armed and before `/sync` is
    /// rewritten: the loop is blocked while it runs and cannot feed the watchdog, and a
    /// failed promotion must not leave `/sync` naming a member that then backs off (in
    /// synchronous mode no other member could be promoted).
    async fn pre_promote_hooks(&mut self) -> Result<(), ActError> {
        let me = self.s.me.to_string();
        // The script may run until shortly before the lease runs out; the key is then
        // refreshed before anything irreversible happens.
        let lease_left = self
            .lease
            .until
            .borrow()
            .map(|u| u.saturating_duration_since(Instant::now()))
            .unwrap_or(self.timing.retry_timeout);
        let limit = lease_left
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let fail = match self.callbacks.pre_promote(limit).await {
            Ok(PrePromote::NotConfigured) => None,
            Ok(PrePromote::Succeeded) => {
                if self
                    .put_lease("leader", &me, Condition::ValueEquals(me.clone()))
                    .await?
                {
                    None
                } else {
                    self.lease.until.send_replace(None);
                    return Err(ActError::Lost(
                        "the leader key was lost while pre_promote ran: not promoting".into(),
                    ));
                }
            }
            Err(e) => Some(format!(
                "Promotion cancelled because the pre-promote script failed: {}",
                chain(&e)
            )),
        };
        if let Some(why) = fail {
            tracing::warn!(reason = %why, "releasing the leader key voluntarily; not racing for ttl");
            self.race_backoff_until = Some(Instant::now() + self.timing.ttl);
            self.lease.until.send_replace(None);
            self.dcs
                .delete(&self.key("leader"), Condition::ValueEquals(me))
                .await?;
            return Err(ActError::Lost(why));
        }
        if self.watchdog.activate(self.wd_timing()).is_err() {
            self.lease.until.send_replace(None);
            self.dcs
                .delete(&self.key("leader"), Condition::ValueEquals(me))
                .await?;
            return Err(ActError::Lost(
                "Not promoting self because watchdog could not be activated".into(),
            ));
        }
        Ok(())
    }

    /// Patroni's pre-promote step in synchronous mode: the new primary writes `sync` naming
    /// itself and no standby (compare-and-swap; losing it aborts the promotion), so nobody
    /// can be promoted after it until a standby provably holds its commits; in strict mode
    /// SSN is `*` before the first commit.
    async fn pre_promote_sync(&mut self, v: &ClusterView) -> Result<(), ActError> {
        let mode = v.synchronous_mode();
        if mode == SyncMode::Off {
            return Ok(());
        }
        let s = SyncSettings::from_config(mode, v.config.as_ref().map(|c| &c.value));
        let value = SyncKey {
            leader: Some(self.s.me.to_string()),
            sync_standby: None,
            quorum: Some(0),
        };
        let cond = match &v.sync {
            Some(k) => Condition::ModRevisionEquals(k.revision),
            None => Condition::Absent,
        };
        let r = self
            .dcs
            .put(
                &self.key("sync"),
                &serde_json::to_string(&value).unwrap_or_default(),
                None,
                cond,
            )
            .await?;
        if !r.succeeded {
            return Err(ActError::Lost(
                "the sync key changed under us: not promoting".into(),
            ));
        }
        let ssn = sync::ssn_text(
            mode,
            s.strict,
            &sync::Target {
                names: vec![],
                numsync: 0,
            },
        );
        self.pg.set_synchronous_standby_names(ssn.as_deref()).await?;
        self.sync = SyncTrack {
            ssn: Some(ssn),
            changed_at: Some(Instant::now()),
            ..Default::default()
        };
        Ok(())
    }

    /// One round of synchronous replication management on the primary (see `ha::sync`).
    async fn manage_sync(&mut self, v: &ClusterView, obs: &Observation) -> Result<(), ActError> {
        let mode = v.synchronous_mode();
        if mode == SyncMode::Off {
            if let Some(k) = &v.sync {
                self.dcs
                    .delete(&self.key("sync"), Condition::ModRevisionEquals(k.revision))
                    .await?;
                tracing::info!("synchronous mode is off: removed the sync key");
            }
            if self.sync.ssn != Some(None) {
                self.pg.set_synchronous_standby_names(None).await?;
                self.sync.ssn = Some(None);
            }
            return Ok(());
        }
        let settings = SyncSettings::from_config(mode, v.config.as_ref().map(|c| &c.value));
        let Some(primary_lsn) = obs.status.as_ref().and_then(|s| s.current_lsn) else {
            return Ok(());
        };
        if self.sync.mark.is_none() && self.sync.changed_at.is_some_and(|t| t.elapsed() >= SSN_SETTLE) {
            self.sync.mark = Some(primary_lsn);
        }
        let standbys: Vec<Standby> = obs
            .replication
            .iter()
            .filter(|r| r.state.as_deref() == Some("streaming"))
            .filter_map(|r| {
                let name = MemberName::new(r.application_name.clone()).ok()?;
                let m = v.members.get(&name)?;
                // A nostream member does not stream, so is never synchronous (a row with its
                // name is somebody else's connection).
                (m.state == "running" && !m.tag_true("nostream")).then_some(())?;
                Some(Standby {
                    name: name.to_string(),
                    flush: r.flush_lsn.unwrap_or(Lsn(0)),
                    sync_state: r.sync_state.clone().unwrap_or_default(),
                    priority: member_sync_priority(m),
                })
            })
            .collect();
        let current = v.sync.as_ref().map(|k| &k.value);
        let steps = sync::plan(&sync::PlanInputs {
            me: self.s.me.as_str(),
            settings: &settings,
            key: current,
            standbys: &standbys,
            primary_lsn,
            ssn: self.sync.ssn.as_ref(),
            mark: self.sync.mark,
        });
        tracing::debug!(?standbys, ?current, ssn = ?self.sync.ssn, mark = ?self.sync.mark, %primary_lsn, ?steps, "sync plan");
        let mut revision = v.sync.as_ref().map(|k| k.revision);
        for step in steps {
            match step {
                sync::Step::WriteKey(k) => {
                    let cond = match revision {
                        Some(r) => Condition::ModRevisionEquals(r),
                        None => Condition::Absent,
                    };
                    let r = self
                        .dcs
                        .put(
                            &self.key("sync"),
                            &serde_json::to_string(&k).unwrap_or_default(),
                            None,
                            cond,
                        )
                        .await?;
                    if !r.succeeded {
                        return Err(ActError::Lost("the sync key changed concurrently".into()));
                    }
                    revision = Some(r.revision);
                    tracing::info!(sync_standby = ?k.sync_standby, quorum = ?k.quorum, "sync key written");
                }
                sync::Step::SetSsn(text) => {
                    self.pg.set_synchronous_standby_names(text.as_deref()).await?;
                    if text.is_none() && !self.sync.warned_degraded {
                        tracing::warn!(
                            "synchronous mode: no synchronous standby is available; commits no longer wait \
                             for a standby (synchronous_mode_strict is off)"
                        );
                        self.sync.warned_degraded = true;
                    }
                    if text.is_some() {
                        self.sync.warned_degraded = false;
                    }
                    self.sync.ssn = Some(text);
                    self.sync.changed_at = Some(Instant::now());
                    self.sync.mark = None;
                }
            }
        }
        Ok(())
    }

    /// Writes PostgreSQL's configuration for `role` and remembers the role, so a reload
    /// keeps it.
    async fn write_pg_config(&mut self, v: Option<&ClusterView>, role: PgRole) -> Result<(), ActError> {
        let input = self.config_input(v, role);
        self.pg.write_config(&input).await?;
        self.written_role = Some(input.role);
        Ok(())
    }

    async fn put_lease(&self, key: &str, value: &str, cond: Condition) -> Result<bool, ActError> {
        let sent = Instant::now();
        let r = self
            .dcs
            .put(&self.key(key), value, Some(self.timing.ttl), cond)
            .await?;
        if r.succeeded && key == "leader" {
            let margin = self.s.safety_margin.min(self.timing.ttl / 2);
            self.lease
                .until
                .send_replace(Some(sent + self.timing.ttl - margin));
            self.watchdog.keepalive(self.wd_timing());
        }
        Ok(r.succeeded)
    }

    async fn act(&mut self, a: &Action, v: Option<&ClusterView>) -> Result<(), ActError> {
        let me = self.s.me.to_string();
        match a {
            Action::RaceInitialize => {
                let r = self
                    .dcs
                    .put(&self.key("initialize"), "", None, Condition::Absent)
                    .await?;
                if !r.succeeded {
                    return Err(ActError::Lost("another member won the bootstrap race".into()));
                }
                tracing::info!("won the bootstrap race: initialising a new cluster");
            }
            Action::Bootstrap => {
                let res = self.bootstrap(v).await;
                if res.is_ok() {
                    self.fire(CallbackAction::OnStart, CallbackRole::Primary);
                }
                if let Err(e) = res {
                    tracing::error!(error = %chain(&e), "bootstrap failed; giving up the initialize key");
                    let _ = self
                        .dcs
                        .delete(&self.key("initialize"), Condition::ValueEquals(String::new()))
                        .await;
                    let _ = self.pg.stop(StopMode::Immediate).await;
                    match self.pg.move_data_dir_aside() {
                        Ok(p) => {
                            tracing::error!(moved_to = %p.display(), "the failed data directory was moved aside")
                        }
                        Err(e2) => {
                            tracing::warn!(error = %e2, "could not move the failed data directory aside")
                        }
                    }
                    return Err(e);
                }
            }
            Action::AcquireLeader => {
                if !self.put_lease("leader", &me, Condition::Absent).await? {
                    return Err(ActError::Lost("another member took the leader key first".into()));
                }
                tracing::info!("acquired the leader key");
            }
            Action::RefreshLeader => {
                if !self
                    .put_lease("leader", &me, Condition::ValueEquals(me.clone()))
                    .await?
                {
                    self.lease.until.send_replace(None);
                    if matches!(self.pg.probe(), PostmasterState::Running { .. }) {
                        tracing::warn!("lost the leader key: demoting at once");
                        self.demote_stop(StopMode::Immediate).await?;
                    }
                    // Nothing feeds it any more: a watchdog left armed would reset the host.
                    self.watchdog.disable();
                    return Err(ActError::Lost("the leader key is no longer ours".into()));
                }
                let paused = v.is_some_and(ClusterView::paused);
                if !paused && self.watchdog.mode() != WatchdogMode::Off && !self.watchdog.is_running() {
                    if let Ok(st) = self.pg.status().await {
                        if !st.in_recovery && self.watchdog.activate(self.wd_timing()).is_err() {
                            // Patroni: demote immediately and release the key.
                            tracing::error!("demoting: the required watchdog could not be armed");
                            self.demote_stop(StopMode::Immediate).await?;
                            self.lease.until.send_replace(None);
                            self.dcs
                                .delete(&self.key("leader"), Condition::ValueEquals(me))
                                .await?;
                            return Err(ActError::Lost(
                                "Demoting self because watchdog could not be activated".into(),
                            ));
                        }
                    }
                }
                if let Ok(st) = self.pg.status().await {
                    // Patroni's repair: the lock holder restores a lost `initialize`.
                    let init = v.and_then(|v| v.initialize.as_deref());
                    if !st.in_recovery && init.is_none_or(str::is_empty) {
                        let cond = match init {
                            None => Condition::Absent,
                            Some(_) => Condition::ValueEquals(String::new()),
                        };
                        let sysid = st.system_identifier.to_string();
                        if let Ok(r) = self.dcs.put(&self.key("initialize"), &sysid, None, cond).await {
                            if r.succeeded {
                                tracing::warn!(system_identifier = %sysid, "restored the missing initialize key");
                            }
                        }
                    }
                    if let (false, Some(lsn)) = (st.in_recovery, st.current_lsn) {
                        self.write_status_and_slots(v, lsn).await;
                    }
                }
            }
            Action::ReleaseLeader => {
                self.lease.until.send_replace(None);
                self.watchdog.disable();
                self.dcs
                    .delete(&self.key("leader"), Condition::ValueEquals(me))
                    .await?;
            }
            Action::ClearFailover { revision } => {
                self.dcs
                    .put(
                        &self.key("failover"),
                        "{}",
                        None,
                        Condition::ModRevisionEquals(*revision),
                    )
                    .await?;
            }
            Action::Clone { from, clonefrom } => {
                let from = super::decide::clone_source(clonefrom, from, rand::random::<usize>());
                let (up, _) = self.upstream_of(v, from)?;
                self.set_state("creating replica");
                tracing::info!(from = %from, upstream = %up, "cloning a replica");
                PgControl::clone_from(&*self.pg, &up, &self.s.replica_methods, &self.progress).await?;
                self.just_cloned = true;
            }
            Action::StartPrimary => {
                self.following = None;
                if let Some(v) = v {
                    // Commits must wait for the listed standbys from the first one on.
                    let mode = v.synchronous_mode();
                    if mode != SyncMode::Off {
                        let s = SyncSettings::from_config(mode, v.config.as_ref().map(|c| &c.value));
                        let mine = v
                            .sync
                            .as_ref()
                            .map(|k| &k.value)
                            .filter(|k| k.leader.as_deref() == Some(self.s.me.as_str()));
                        let ssn = sync::ssn_from_key(mode, s.strict, mine);
                        self.pg.set_synchronous_standby_names(ssn.as_deref()).await?;
                        self.sync = SyncTrack {
                            ssn: Some(ssn),
                            changed_at: Some(Instant::now()),
                            ..Default::default()
                        };
                    }
                }
                self.write_pg_config(v, PgRole::Primary).await?;
                self.set_state("starting");
                self.start_primary_keeping_the_lease(v).await?;
                self.fire(CallbackAction::OnStart, CallbackRole::Primary);
                tracing::info!("started PostgreSQL as primary");
            }
            Action::StartReplica { leader } => {
                let was_running = matches!(self.pg.probe(), PostmasterState::Running { .. });
                if was_running {
                    self.stop_pg(StopMode::Fast, true).await?;
                }
                let target = match leader {
                    Some(l) if std::mem::take(&mut self.just_cloned) => Some(self.upstream_of(v, l)?.1),
                    Some(l) => {
                        let (up, target) = self.upstream_of(v, l)?;
                        if let Ok(c) = self.pg.controldata().await {
                            if c.needs_crash_recovery() {
                                tracing::info!("this former primary did not shut down cleanly: running crash recovery first");
                                self.pg.crash_recovery().await?;
                            }
                        }
                        match self.pg.check_rewind(&up).await {
                            Ok(d) if d.needed() => {
                                tracing::info!(decision = ?d, leader = %l, "rewinding from the new leader");
                                if let Err(e) = self.pg.rewind(&up).await {
                                    tracing::error!(error = %chain(&e), "pg_rewind failed");
                                    return Err(e.into());
                                }
                            }
                            Ok(d) => tracing::debug!(decision = ?d, "no rewind needed"),
                            Err(e) => {
                                tracing::warn!(error = %chain(&e), "rewind check failed; starting anyway")
                            }
                        }
                        Some(target)
                    }
                    None => None,
                };
                self.write_pg_config(v, PgRole::Standby(target)).await?;
                self.set_state("starting");
                self.pg.start().await?;
                self.following = leader.clone();
                self.not_streaming_since = None;
                let action = if self.role_changes_to_replica() {
                    CallbackAction::OnRoleChange
                } else if was_running {
                    CallbackAction::OnRestart
                } else {
                    CallbackAction::OnStart
                };
                self.fire(action, CallbackRole::Replica);
                tracing::info!(leader = ?leader, "started PostgreSQL as a replica");
            }
            Action::Follow { leader } => {
                let (_, target) = self.upstream_of(v, leader)?;
                self.write_pg_config(v, PgRole::Standby(Some(target))).await?;
                // primary_conninfo is reloadable since PostgreSQL 13.
                self.pg.reload().await?;
                self.following = Some(leader.clone());
                self.not_streaming_since = Some(Instant::now());
                let action = if self.role_changes_to_replica() {
                    CallbackAction::OnRoleChange
                } else {
                    CallbackAction::OnReload
                };
                self.fire(action, CallbackRole::Replica);
                tracing::info!(leader = %leader, "following a new leader");
            }
            Action::Promote => {
                self.pre_promote_hooks().await?;
                if let Some(v) = v {
                    self.pre_promote_sync(v).await?;
                }
                if let Some(unsafe_copies) = self.logical_pending.take().filter(|p| !p.is_empty()) {
                    let names: Vec<&String> = unsafe_copies.keys().collect();
                    tracing::warn!(slots = ?names, "logical replication slots that might be unsafe to use after the promotion: the old primary may have removed catalog rows they need");
                }
                let before = self.pg.status().await.ok();
                self.pg.promote().await?;
                self.fire(CallbackAction::OnRoleChange, CallbackRole::Primary);
                self.following = None;
                if let Some(b) = before {
                    let mut history = v.map(|v| v.history.clone()).unwrap_or_default();
                    let lsn = b.receive_lsn.max(b.replay_lsn).map_or(0, |l| l.0);
                    history.push(HistoryRow(
                        b.timeline.0,
                        lsn,
                        "no recovery target specified".into(),
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
                        me.clone(),
                    ));
                    let _ = self
                        .dcs
                        .put(
                            &self.key("history"),
                            &serde_json::to_string(&history).unwrap_or_default(),
                            None,
                            Condition::Always,
                        )
                        .await;
                }
                tracing::info!("promoted to primary");
                // Others can pg_rewind from us only once the post-promote checkpoint is done.
                if let Err(e) = self.pg.checkpoint().await {
                    tracing::warn!(error = %chain(&e), "post-promote checkpoint");
                }
            }
            Action::Demote(mode) => {
                tracing::info!(mode = ?mode, "demoting");
                match mode {
                    DemoteMode::Graceful => {
                        // A fast stop writes the shutdown checkpoint and waits for the
                        // walsenders to send it, so the candidate has all our WAL.
                        self.demote_stop(StopMode::Fast).await?;
                        self.lease.until.send_replace(None);
                        self.dcs
                            .delete(&self.key("leader"), Condition::ValueEquals(me))
                            .await?;
                    }
                    DemoteMode::ImmediateNoLock => {
                        self.lease.until.send_replace(None);
                        self.demote_stop(StopMode::Immediate).await?;
                    }
                    DemoteMode::Offline => {
                        self.lease.until.send_replace(None);
                        self.demote_stop(StopMode::Fast).await?;
                        self.write_pg_config(v, PgRole::Standby(None)).await?;
                    }
                }
            }
            Action::Fatal(why) => return Err(ActError::Fatal(why.clone())),
        }
        Ok(())
    }

    async fn bootstrap(&mut self, _v: Option<&ClusterView>) -> Result<(), ActError> {
        self.set_state("initializing new cluster");
        self.pg.initdb(&self.s.initdb).await?;
        self.write_pg_config(None, PgRole::Primary).await?;
        self.pg.start().await?;
        self.pg.create_roles().await?;
        if let Some(cmd) = &self.s.post_bootstrap {
            self.pg.run_post_bootstrap(cmd).await?;
        }
        let st = self.pg.status().await?;
        let sysid = st.system_identifier.to_string();
        self.dcs
            .put(
                &self.key("initialize"),
                &sysid,
                None,
                Condition::ValueEquals(String::new()),
            )
            .await?;
        self.dcs
            .put(
                &self.key("config"),
                &self.s.bootstrap_dcs.to_string(),
                None,
                Condition::Absent,
            )
            .await?;
        self.put_lease("leader", self.s.me.as_str(), Condition::Always)
            .await?;
        tracing::info!(system_identifier = %sysid, "bootstrapped a new cluster; this member is the leader");
        Ok(())
    }

    /// This member's `nostream` tag: it replays from the archive only, never streams.
    fn nostream(&self) -> bool {
        matches!(self.s.tags.get("nostream"), Some(Value::Bool(true)))
    }

    /// Whether this member could be promoted: it then keeps copies of the other members'
    /// slots (see `ha::slots`).
    fn failover_capable(&self) -> bool {
        self.s.failover_priority > 0 && !self.nostream()
    }

    /// Warns once about a slot problem (keyed by `key`), so a bad definition or a slot that
    /// cannot be created does not repeat every loop.
    fn warn_slot_once(&mut self, key: String, slot: &str, problem: &str) {
        if self.warned_slots.insert(key) {
            tracing::warn!(slot = %slot, problem = %problem, "replication slot not managed");
        }
    }

    /// Carries out a replica's plan for the permanent logical slots (`slots::logical_on_replica`):
    /// drops unconfigured copies, advances the others, and copies missing ones from the
    /// leader's PostgreSQL. A copy is Patroni's: the slot's `state` file is read from the
    /// primary, PostgreSQL is stopped, the file is installed and PostgreSQL started again,
    /// since a standby loads slots only at start. Returns whether a slot changed, and whether
    /// slots were copied.
    async fn manage_logical_copies(
        &mut self,
        v: &ClusterView,
        leader: &MemberName,
        permanent: &PermanentSlots,
        plan: slots::LogicalPlan,
    ) -> (bool, bool) {
        let mut changed = false;
        for (name, problem) in &plan.mismatched {
            self.warn_slot_once(format!("mismatch {name}"), name, problem);
        }
        for name in &plan.drop {
            match self.pg.drop_slot(name).await {
                Ok(()) => {
                    changed = true;
                    tracing::info!(slot = %name, "dropped a logical slot copy that is no longer a permanent slot");
                }
                Err(e) => tracing::warn!(slot = %name, error = %chain(&e), "dropping a logical slot copy"),
            }
        }
        let mut copy = plan.copy;
        for (name, database, to) in &plan.advance {
            match self.pg.advance_logical_slot(name, database, *to).await {
                Ok(()) => {
                    changed = true;
                    self.warned_slots.remove(&format!("advance {name}"));
                }
                // The copy points at WAL this standby no longer has (or it was
                // invalidated): only a fresh copy from the primary helps.
                Err(e) if e.wal_missing_or_unusable() => {
                    let why = format!(
                        "its copy cannot be advanced to {to} ({}); copying it again",
                        chain(&e)
                    );
                    self.warn_slot_once(format!("advance {name}"), name, &why);
                    copy.push(name.clone());
                }
                Err(e) => {
                    let why = format!("cannot advance it to {to} yet: {}", chain(&e));
                    self.warn_slot_once(format!("advance {name}"), name, &why);
                }
            }
        }
        let now = Instant::now();
        copy.retain(|n| {
            self.logical_copied_at
                .get(n)
                .is_none_or(|at| now.duration_since(*at) >= LOGICAL_COPY_INTERVAL)
        });
        if copy.is_empty() {
            return (changed, false);
        }
        let Ok((primary, _)) = self.upstream_of(Some(v), leader) else {
            return (changed, false);
        };
        let states = match self.pg.read_logical_slots(&primary, &copy).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("cannot read it from the primary {primary}: {}", chain(&e));
                self.warn_slot_once(format!("copy {}", copy.join(",")), &copy.join(","), &why);
                return (changed, false);
            }
        };
        let states: Vec<_> = states
            .into_iter()
            .filter(|st| {
                permanent.slots.get(&st.name)
                    == Some(&Permanent::Logical {
                        database: st.database.clone(),
                        plugin: st.plugin.clone(),
                    })
            })
            .collect();
        if states.is_empty() {
            return (changed, false);
        }
        for st in &states {
            self.logical_copied_at.insert(st.name.clone(), now);
            self.logical_pending
                .get_or_insert_with(BTreeMap::new)
                .insert(st.name.clone(), None);
        }
        let names: Vec<&str> = states.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(slots = ?names, from = %primary, "copying logical slots from the primary: restarting PostgreSQL to load them");
        if let Err(e) = self.pg.stop(StopMode::Fast).await {
            tracing::warn!(error = %chain(&e), "stopping PostgreSQL to install logical slot copies");
            return (changed, false);
        }
        if let Err(e) = self.pg.install_slot_states(&states).await {
            tracing::warn!(error = %chain(&e), "installing logical slot copies");
        }
        // Started again whatever happened above: a standby must not stay down for a slot.
        match self.pg.start().await {
            Ok(()) => tracing::info!(slots = ?names, "logical slot copies loaded"),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "starting PostgreSQL after installing logical slot copies")
            }
        }
        (true, true)
    }

    /// Follows the logical slot copies until each is safe to use after a failover (Patroni's
    /// readiness check): asks the primary for its logical slots' and this replica's physical
    /// slot's `catalog_xmin`. Only logs; an unsafe copy is named again at promotion.
    async fn check_logical_readiness(
        &mut self,
        v: &ClusterView,
        leader: &MemberName,
        permanent: &PermanentSlots,
        existing: &[crate::postgres::Slot],
    ) {
        let pending = self.logical_pending.get_or_insert_with(|| {
            existing
                .iter()
                .filter(|s| s.slot_type == "logical" && permanent.slots.contains_key(&s.name))
                .map(|s| (s.name.clone(), None))
                .collect()
        });
        if pending.is_empty() {
            return;
        }
        let my_slot = slot_name(&self.s.me);
        let mut names: Vec<String> = pending
            .iter()
            .filter(|(_, remembered)| remembered.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        names.push(my_slot.clone());
        let Ok((primary, _)) = self.upstream_of(Some(v), leader) else {
            return;
        };
        let mut on_primary = match self.pg.catalog_xmins_on_primary(&primary, &names).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %chain(&e), "reading catalog_xmin from the primary");
                return;
            }
        };
        let Some(physical) = on_primary.remove(&my_slot) else {
            let why = "this replica's physical slot is missing on the primary: its logical slot copies cannot be made safe";
            self.warn_slot_once(format!("physical {my_slot}"), &my_slot, why);
            return;
        };
        let pending = self.logical_pending.get_or_insert_with(BTreeMap::new);
        for name in slots::ready_copies(pending, &on_primary, physical, existing) {
            tracing::info!(slot = %name, "logical slot copy is safe to use after a failover");
        }
    }

    /// On the leader, after its lease refresh: keep the slots, then publish `status`
    /// (Patroni 4.1: optime, slots, retain_slots) when it changed.
    async fn write_status_and_slots(&mut self, v: Option<&ClusterView>, optime: Lsn) {
        let outcome = self.ensure_slots(v, true).await;
        let key = match &outcome {
            Some(o) => slots::status_key(
                optime,
                &self.s.me,
                &o.slots,
                &o.permanent,
                o.keep_all_members,
                o.retain.clone(),
            ),
            None => StatusKey {
                optime: Some(optime.0),
                ..Default::default()
            },
        };
        if v.and_then(|v| v.status.as_ref()) == Some(&key) {
            return;
        }
        let value = serde_json::to_string(&key).unwrap_or_default();
        if let Err(e) = self
            .dcs
            .put(&self.key("status"), &value, None, Condition::Always)
            .await
        {
            tracing::debug!(error = %e, "writing the status key");
        }
    }

    /// Keeps this member's replication slots as `ha::slots` describes: creates the member
    /// and permanent slots it must have (logical ones on the primary only), advances a
    /// replica's copies to the positions the leader published, and drops inactive physical
    /// slots nobody needs: at once when `retain_slots` says so (the leader applied
    /// member_slots_ttl), otherwise after they have been unneeded for member_slots_ttl.
    /// Logical slots, active slots and slots matching `ignore_slots` are never dropped.
    /// Problems are logged (once per slot), never returned: slots never stop the loop.
    async fn ensure_slots(&mut self, v: Option<&ClusterView>, primary: bool) -> Option<SlotsOutcome> {
        let v = v?;
        let config = v.config.as_ref().map(|c| &c.value);
        let use_slots = config
            .and_then(|c| c.pointer("/postgresql/use_slots"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !use_slots {
            self.status.send_modify(|s| s.slot_retained_bytes.clear());
            return None;
        }
        let ttl = config
            .and_then(|c| c.get("member_slots_ttl"))
            .and_then(duration_value)
            .unwrap_or(Duration::from_secs(1800));
        let keep_all_members = !ttl.is_zero();
        let failover_capable = self.failover_capable();
        let holder = if primary {
            Holder::Primary
        } else {
            Holder::Replica {
                leader: v.leader_name()?,
                failover_capable,
            }
        };
        let permanent = slots::permanent_slots(config);
        for (name, problem) in &permanent.problems {
            self.warn_slot_once(format!("definition {name}: {problem}"), name, problem);
        }
        let ignore = config
            .and_then(|c| c.get("ignore_slots"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let st = self.pg.status().await.ok()?;
        let existing = match self.pg.slots().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %chain(&e), "listing replication slots");
                return None;
            }
        };
        let my_slot = slot_name(&self.s.me);
        let mut create = slots::member_slots(&self.s.me, v, holder, keep_all_members);
        if primary || failover_capable {
            create.extend(permanent.physical().filter(|n| **n != my_slot).cloned());
        }
        // Names to keep if present: the leader's own bookkeeping on the primary, what the
        // leader published on a replica that keeps member slots.
        let retain: Vec<String> = if primary {
            self.retained.update(Instant::now(), &self.s.me, v, ttl)
        } else if failover_capable && keep_all_members {
            v.status
                .as_ref()
                .and_then(|s| s.retain_slots.clone())
                .unwrap_or_default()
        } else {
            vec![]
        };
        let drop_at_once = primary || !retain.is_empty();
        let mut keep = create.clone();
        keep.extend(retain.iter().filter(|n| **n != my_slot).cloned());

        let mut changed = false;
        for slot in &create {
            match existing.iter().find(|s| &s.name == slot) {
                Some(s) if s.slot_type != "physical" => {
                    let key = format!("type {slot}");
                    self.warn_slot_once(key, slot, "a slot of that name exists but is not physical");
                }
                Some(_) => {}
                None => match self.pg.create_physical_slot(slot).await {
                    Ok(()) => {
                        changed = true;
                        tracing::info!(slot = %slot, "created replication slot");
                    }
                    Err(e) => tracing::warn!(slot = %slot, error = %chain(&e), "creating replication slot"),
                },
            }
        }
        if primary {
            for (name, p) in &permanent.slots {
                let Permanent::Logical { database, plugin } = p else {
                    continue;
                };
                if create.contains(name) || keep.contains(name) {
                    let key = format!("conflict {name}");
                    self.warn_slot_once(key, name, "a permanent logical slot has a member's slot name");
                    continue;
                }
                match existing.iter().find(|s| &s.name == name) {
                    Some(s)
                        if s.slot_type != "logical" || s.database.as_deref() != Some(database.as_str()) =>
                    {
                        let key = format!("mismatch {name}");
                        let why = format!(
                            "a {} slot of that name exists (database {:?}); drop it to have the permanent logical slot created",
                            s.slot_type, s.database
                        );
                        self.warn_slot_once(key, name, &why);
                    }
                    Some(_) => {}
                    None => match self.pg.create_logical_slot(name, database, plugin).await {
                        Ok(()) => {
                            changed = true;
                            self.warned_slots.remove(&format!("create {name}"));
                            tracing::info!(slot = %name, database = %database, plugin = %plugin, "created permanent logical replication slot");
                        }
                        Err(e) => {
                            let why = format!(
                                "cannot create it in database {database} with plugin {plugin}: {}",
                                chain(&e)
                            );
                            self.warn_slot_once(format!("create {name}"), name, &why);
                        }
                    },
                }
            }
        }
        // A replica moves its copies forward to the leader's positions.
        if let (false, Some(published), Some(replay)) = (
            primary,
            v.status.as_ref().and_then(|s| s.slots.as_ref()),
            st.replay_lsn,
        ) {
            for (name, to) in slots::advances(&existing, &keep, published, replay) {
                match self.pg.advance_slot(&name, to).await {
                    Ok(()) => {
                        changed = true;
                        self.warned_slots.remove(&format!("advance {name}"));
                    }
                    Err(e) => {
                        // Not an error worth repeating: it is retried next loop.
                        tracing::debug!(slot = %name, to = %to, error = %chain(&e), "advancing replication slot");
                        let why = format!("cannot advance it to {to} yet: {}", chain(&e));
                        self.warn_slot_once(format!("advance {name}"), &name, &why);
                    }
                }
            }
        }
        if let (false, true, Some(published), Some(replay), Holder::Replica { leader, .. }) = (
            primary,
            failover_capable,
            v.status.as_ref().and_then(|s| s.slots.as_ref()),
            st.replay_lsn,
            holder,
        ) {
            let plan = slots::logical_on_replica(&permanent, &existing, published, replay, &keep, |s| {
                ignore.iter().any(|r| slot_matches(r, s))
            });
            let (slots_changed, copied) = self.manage_logical_copies(v, leader, &permanent, plan).await;
            changed |= slots_changed;
            // The readiness check reads `existing`, which lacks what was just copied (an
            // advance only makes it conservative: older catalog_xmin values).
            if !copied {
                self.check_logical_readiness(v, leader, &permanent, &existing)
                    .await;
            }
        }
        let mut still_absent = BTreeMap::new();
        for slot in &existing {
            let kept = keep.contains(&slot.name)
                || permanent.slots.contains_key(&slot.name)
                || slot.active
                || slot.slot_type != "physical"
                || ignore.iter().any(|r| slot_matches(r, slot));
            if kept {
                continue;
            }
            let since = self
                .slot_absent_since
                .get(&slot.name)
                .copied()
                .unwrap_or_else(Instant::now);
            if drop_at_once || since.elapsed() >= ttl {
                match self.pg.drop_slot(&slot.name).await {
                    Ok(()) => {
                        changed = true;
                        tracing::info!(slot = %slot.name, member_slots_ttl = ?ttl, "dropped the replication slot of a member gone for member_slots_ttl")
                    }
                    Err(e) => {
                        tracing::warn!(slot = %slot.name, error = %chain(&e), "dropping replication slot")
                    }
                }
            } else {
                still_absent.insert(slot.name.clone(), since);
            }
        }
        self.slot_absent_since = still_absent;
        let slots = if changed {
            self.pg.slots().await.unwrap_or(existing)
        } else {
            existing
        };
        let position = if primary { st.current_lsn } else { st.replay_lsn };
        let retained = position
            .map(|p| slots::retained_bytes(&slots, p))
            .unwrap_or_default();
        self.status.send_modify(|s| s.slot_retained_bytes = retained);
        Some(SlotsOutcome {
            slots,
            permanent,
            keep_all_members,
            retain,
        })
    }

    fn set_state(&self, state: &str) {
        self.status.send_modify(|s| s.state = state.to_string());
    }

    async fn write_member(&self, pg: &PgState, obs: &Observation) -> Result<(), DcsError> {
        let (state, role) = state_and_role(pg, &self.status.borrow().state);
        let mut m = MemberRecord {
            conn_url: self.s.conn_url.clone(),
            api_url: self.s.api_url.clone(),
            state,
            role,
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            tags: self.s.tags.clone(),
            ..Default::default()
        };
        if let Some(st) = &obs.status {
            m.timeline = Some(st.timeline.0);
            if st.in_recovery {
                m.receive_lsn = st.receive_lsn.map(|l| l.0);
                m.replay_lsn = st.replay_lsn.map(|l| l.0);
                m.xlog_location = st.receive_lsn.max(st.replay_lsn).map(|l| l.0);
                m.replication_state = Some(if obs.streaming {
                    "streaming".into()
                } else {
                    "in archive recovery".into()
                });
            } else {
                m.xlog_location = st.current_lsn.map(|l| l.0);
            }
        }
        if !obs.pending_restart.is_empty() {
            m.pending_restart = Some(true);
            m.pending_restart_reason = serde_json::to_value(&obs.pending_restart).ok();
        }
        let value = serde_json::to_string(&m).unwrap_or_default();
        self.dcs
            .put(
                &self.key(&format!("members/{}", self.s.me)),
                &value,
                Some(self.timing.ttl),
                Condition::Always,
            )
            .await
            .map(|_| ())
    }

    fn publish(
        &mut self,
        v: &ClusterView,
        pg: &PgState,
        sysid: Option<u64>,
        obs: &Observation,
        dcs_ok: bool,
    ) {
        let holds = v.leader_name() == Some(&self.s.me);
        let (state, role) = state_and_role(pg, &self.status.borrow().state);
        let lease_until = *self.lease.until.borrow();
        let watchdog_failed = !self.watchdog.is_healthy(self.wd_timing());
        let server_version = self.pg.version().num;
        if let PgState::Running(r) = pg {
            if !r.primary && !r.streaming {
                self.not_streaming_since.get_or_insert(Instant::now());
            } else {
                self.not_streaming_since = None;
            }
        }
        self.status.send_modify(|s| {
            s.state = state;
            s.role = role;
            s.timeline = obs.status.as_ref().map(|st| st.timeline.0);
            s.database_system_identifier = sysid.map(|x| x.to_string());
            s.server_version = obs.status.as_ref().map(|_| server_version);
            s.postmaster_start_time = obs
                .status
                .as_ref()
                .and_then(|st| st.postmaster_start)
                .and_then(postmaster_start_text);
            s.xlog = obs.status.as_ref().map(|st| {
                if st.in_recovery {
                    json!({
                        "received_location": st.receive_lsn.map(|l| l.0),
                        "replayed_location": st.replay_lsn.map(|l| l.0),
                        "replayed_timestamp": st.replay_timestamp.and_then(replayed_timestamp_text),
                        "paused": st.replay_paused,
                    })
                } else {
                    json!({"location": st.current_lsn.map(|l| l.0)})
                }
            });
            s.replication_state = obs.status.as_ref().filter(|st| st.in_recovery).map(|_| {
                if obs.streaming {
                    "streaming".to_string()
                } else {
                    "in archive recovery".to_string()
                }
            });
            s.replication = obs
                .replication
                .iter()
                .map(|r| ReplicationInfo {
                    usename: r.usename.clone(),
                    application_name: r.application_name.clone(),
                    client_addr: r.client_addr.clone(),
                    state: r.state.clone(),
                    sync_state: r.sync_state.clone(),
                    sync_priority: r.sync_priority,
                })
                .collect();
            if dcs_ok {
                s.pause = v.paused();
                s.cluster_unlocked = v.leader.is_none();
                s.leader = v.leader_name().map(|l| l.to_string());
                s.holds_lock = holds;
                s.dcs_last_seen = Some(chrono::Utc::now().timestamp());
                s.lag = match (&obs.status, v.optime) {
                    (Some(st), Some(opt)) if st.in_recovery => {
                        Some(opt.saturating_sub(st.receive_lsn.max(st.replay_lsn).map_or(0, |l| l.0)))
                    }
                    _ => None,
                };
            }
            s.lease_until = lease_until;
            s.watchdog_failed = watchdog_failed;
            s.tags = self.s.tags.clone();
            s.pending_restart = !obs.pending_restart.is_empty();
            s.pending_restart_reason = (!obs.pending_restart.is_empty())
                .then(|| serde_json::to_value(&obs.pending_restart).ok())
                .flatten();
            s.last_loop = Some(Instant::now());
        });
    }
}

/// Raw observations kept for the member key and the REST document.
#[derive(Default)]
struct Observation {
    status: Option<crate::postgres::LocalStatus>,
    replication: Vec<crate::postgres::ReplicationRow>,
    streaming: bool,
    /// Parameters whose new value waits for a restart.
    pending_restart: BTreeMap<String, crate::postgres::PendingChange>,
}

/// Patroni's `postmaster_start_time`: Python's `isoformat(sep=' ')` of the timestamp, here
/// always in UTC ("2026-11-22 04:36:36.123456+00:00").
fn postmaster_start_text(micros: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_micros(micros)?;
    Some(t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string())
}

/// Patroni's `replayed_timestamp`: `to_char(..., 'YYYY-MM-DD HH24:MI:SS.MS TZ')`, in UTC.
fn replayed_timestamp_text(micros: i64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_micros(micros)?;
    Some(t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
}

fn state_and_role(pg: &PgState, current: &str) -> (String, String) {
    match pg {
        PgState::NoData => {
            let s = if current == "creating replica" || current == "initializing new cluster" {
                current
            } else {
                "stopped"
            };
            (s.into(), "uninitialized".into())
        }
        PgState::Stopped { clean: true } => ("stopped".into(), "replica".into()),
        PgState::Stopped { clean: false } => ("crashed".into(), "replica".into()),
        PgState::Unresponsive => ("starting".into(), "replica".into()),
        PgState::Running(r) => (
            "running".into(),
            if r.primary {
                "primary".into()
            } else {
                "replica".into()
            },
        ),
    }
}

/// Patroni's slot name for a member: lowercase, `-` and `.` to `_`, other characters
/// outside `[a-z0-9_]` as `u%04x`, at most 63 bytes.
pub fn slot_name(member: &MemberName) -> String {
    let mut out = String::new();
    for c in member.as_str().to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04x}", other as u32)),
        }
    }
    out.truncate(63);
    out
}

/// A duration in Patroni's style: seconds as a number, or text with a unit (`30min`, `2h`,
/// `90s`, `1d`; no unit means seconds).
fn duration_value(v: &Value) -> Option<Duration> {
    if let Some(n) = v.as_u64() {
        return Some(Duration::from_secs(n));
    }
    let t = v.as_str()?.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "ms" => return Some(Duration::from_millis(n)),
        _ => return None,
    };
    Some(Duration::from_secs(n.saturating_mul(mult)))
}

/// Whether an `ignore_slots` rule (a subset of name, type, database, plugin) matches.
fn slot_matches(rule: &Value, slot: &crate::postgres::Slot) -> bool {
    let Some(rule) = rule.as_object() else {
        return false;
    };
    let field = |k: &str| rule.get(k).and_then(Value::as_str);
    field("name").is_none_or(|n| n == slot.name)
        && field("type").is_none_or(|t| t == slot.slot_type)
        && field("database").is_none_or(|d| Some(d) == slot.database.as_deref())
        && field("plugin").is_none_or(|p| Some(p) == slot.plugin.as_deref())
}

/// Patroni's `sync_priority` from a member's tags: `nosync` means 0, default 1.
fn member_sync_priority(m: &MemberRecord) -> i64 {
    if m.tag_true("nosync") {
        return 0;
    }
    m.tags.get("sync_priority").and_then(Value::as_i64).unwrap_or(1)
}

pub(crate) fn guc_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "on".into()
            } else {
                "off".into()
            }
        }
        other => other.to_string(),
    }
}

fn max_lag(v: Option<&ClusterView>) -> u64 {
    v.and_then(|v| v.config.as_ref())
        .and_then(|c| c.value.get("maximum_lag_on_failover"))
        .and_then(Value::as_u64)
        .unwrap_or(1 << 20)
}

/// Stops PostgreSQL when the lease runs out, whatever the loop is doing: a primary must
/// not stay writable past `sent + ttl − margin` even while a DCS call hangs.
async fn fence<P: PgControl + 'static>(
    pg: Arc<P>,
    mut until: watch::Receiver<Option<Instant>>,
    shutdown: CancellationToken,
) {
    loop {
        let deadline = *until.borrow_and_update();
        match deadline {
            None => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = until.changed() => if r.is_err() { return },
                }
            }
            Some(d) => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = until.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep_until(d) => {
                        if *until.borrow() == Some(d) && matches!(pg.probe(), PostmasterState::Running { .. }) {
                            tracing::error!("the leader lease ran out before it could be refreshed: stopping PostgreSQL now");
                            if let Err(e) = pg.stop(StopMode::Immediate).await {
                                tracing::error!(error = %chain(&e), "fencing stop failed");
                            }
                        }
                        // Wait for the next refresh (or none) before arming again.
                        if until.changed().await.is_err() { return }
                    }
                }
            }
        }
    }
}

pub use pgwarden_raft::error_chain as chain;

#[cfg(test)]
#[path = "runner_hooks_tests.rs"]
mod hooks_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// member_slots_ttl in Patroni's forms.
    #[test]
    fn durations_with_units() {
        assert_eq!(duration_value(&json!(90)), Some(Duration::from_secs(90)));
        assert_eq!(duration_value(&json!("30min")), Some(Duration::from_secs(1800)));
        assert_eq!(duration_value(&json!("2h")), Some(Duration::from_secs(7200)));
        assert_eq!(duration_value(&json!("15")), Some(Duration::from_secs(15)));
        assert_eq!(duration_value(&json!("soon")), None);
    }

    /// ignore_slots rules match on the fields they name.
    #[test]
    fn ignore_slot_rules() {
        let slot = crate::postgres::Slot {
            name: "keep_me".into(),
            slot_type: "physical".into(),
            active: false,
            restart_lsn: None,
            database: None,
            plugin: None,
            confirmed_flush_lsn: None,
            catalog_xmin: None,
        };
        assert!(slot_matches(&json!({"name": "keep_me"}), &slot));
        assert!(slot_matches(&json!({"type": "physical"}), &slot));
        assert!(!slot_matches(
            &json!({"name": "keep_me", "type": "logical"}),
            &slot
        ));
        assert!(!slot_matches(&json!("keep_me"), &slot));
    }

    /// Patroni's text forms of the postmaster start and last replay times.
    #[test]
    fn timestamps_as_patroni_prints_them() {
        assert_eq!(
            postmaster_start_text(1_700_000_000_123_456).as_deref(),
            Some("2023-11-14 22:13:20.123456+00:00")
        );
        assert_eq!(
            replayed_timestamp_text(1_700_000_000_123_456).as_deref(),
            Some("2023-11-14 22:13:20.123 UTC")
        );
    }

    /// Patroni's slot naming.
    #[test]
    fn slot_names_follow_patroni() {
        assert_eq!(slot_name(&MemberName::new("Node-1.dc").unwrap()), "node_1_dc");
        assert_eq!(slot_name(&MemberName::new("a b").unwrap()), "au0020b");
    }
}
