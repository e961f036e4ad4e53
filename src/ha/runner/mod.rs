//! The HA loop's runner: the imperative shell around the pure [`super::decide`].
//!
//! One iteration, in [`Runner::iteration`], reads on one screen: read the scope from the DCS
//! (linearizably) → observe PostgreSQL once → decide (pure) → act on that observation →
//! leader upkeep when this member holds the lease as a running primary (also right after a
//! promotion) → publish the member key and the REST state. The lease itself, its deadline and
//! the fence belong to [`super::lease::LeaderLease`]; the runner never writes the leader key.
//!
//! Files, one concern each (all `impl Runner` blocks):
//! - `mod.rs`: the loop, its state, wake-ups, the helpers every step uses;
//! - [`observe`]: what PostgreSQL and the peers report ([`Observation`]);
//! - [`act`]: carrying out one [`super::decide::Action`] (start, clone, promote, demote, bootstrap);
//! - [`leader`]: the leader's upkeep (watchdog, `initialize` repair, `status` and slots,
//!   `/failsafe`, synchronous replication) and the failsafe hold of a primary without the DCS;
//! - [`slots`]: carrying out the slot plans of [`super::slots`];
//! - [`requests`]: the REST API's requests (restart, reload, reinitialize) and shutdown;
//! - [`publish`]: the member key and the [`NodeStatus`] the REST API serves.

use super::callbacks::{CallbackAction, CallbackCommands, CallbackRole, Callbacks, ScriptCallbacks};
use super::decide::{decide, Action, Decision, Inputs, PgState};
use super::failsafe::FailsafeState;
use super::lease::{LeaderLease, LeaseLost, LeaseTiming};
use super::requests::{ApiRequest, RestartConditions};
use super::slots::Retained;
use super::status::NodeStatus;
use super::view::ClusterView;
use super::watchdog::{Watchdog, WatchdogMode};
use crate::dcs::{Dcs, DcsError};
use crate::error::chain;
use crate::postgres::{
    CloneProgress, InitdbOption, PgControl, PgRole, PostmasterState, ReplicaMethod, StopMode,
};
use crate::types::MemberName;
use crate::types::MemberState;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod act;
mod leader;
mod observe;
mod publish;
mod requests;
mod slots;
mod standby;

use leader::SyncTrack;
pub use observe::Observation;

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
    /// pg_hba lines of the local configuration file; empty when it gives none, and then the
    /// dynamic configuration's lines apply, else `default_pg_hba` (Patroni's precedence).
    pub pg_hba: Vec<String>,
    /// `postgresql.pg_ident` of the local configuration file; empty when it gives none, and
    /// then the dynamic configuration's lines apply (as for pg_hba).
    pub pg_ident: Vec<String>,
    /// The built-in pg_hba lines (`postgres::default_pg_hba`), built from the addresses in
    /// the configuration file.
    pub default_pg_hba: Vec<String>,
    /// Local `postgresql.use_pg_rewind` (over the dynamic configuration's; see `ha::rejoin`).
    pub use_pg_rewind: Option<bool>,
    /// `postgresql.remove_data_directory_on_rewind_failure`.
    pub remove_data_directory_on_rewind_failure: bool,
    /// `postgresql.remove_data_directory_on_diverged_timelines`.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Local postgresql.parameters.
    pub local_parameters: BTreeMap<String, String>,
    /// Local postgresql.recovery_conf (standbys only; over the DCS one).
    pub recovery_conf: BTreeMap<String, String>,
    /// post_bootstrap command.
    pub post_bootstrap: Option<String>,
    /// create_replica_methods.
    pub replica_methods: Vec<ReplicaMethod>,
    /// `bootstrap.method` when it names a custom method (`None`: initdb).
    pub bootstrap_method: Option<crate::postgres::CustomBootstrap>,
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
    /// Another member holds (or just took) the leader key.
    #[error("another member holds the leader key")]
    LeaderKeyTaken,
    /// Another member won the `initialize` race.
    #[error("another member won the bootstrap race")]
    BootstrapRaceLost,
    /// The `sync` key changed under a compare-and-swap.
    #[error("the sync key changed concurrently")]
    SyncKeyChanged,
    /// The member to follow or clone from has no member key.
    #[error("no member key for {0}")]
    NoMemberKey(MemberName),
    /// The member to follow or clone from published no usable `conn_url`.
    #[error("{member} has no usable conn_url: {conn_url:?}")]
    NoConnUrl {
        /// The member.
        member: MemberName,
        /// What it published.
        conn_url: String,
    },
    /// This member gave the leader key up on purpose (the reason is Patroni's text).
    #[error("{0}")]
    GaveUp(String),
    /// The lease could not be kept while a long action ran; the action was stopped.
    #[error("stopped a long action")]
    LeaseLost(#[from] LeaseLost),
    /// The DCS failed.
    #[error("DCS operation failed")]
    Dcs(#[from] DcsError),
    /// PostgreSQL failed.
    #[error("PostgreSQL operation failed")]
    Pg(#[from] crate::postgres::Error),
    /// The data diverged from the leader's and may not be rewound or moved aside: PostgreSQL
    /// stays stopped (the text says which keys decide).
    #[error("{0}")]
    Diverged(String),
    /// Unrecoverable: the loop stops.
    #[error("{0}")]
    Fatal(String),
}

impl ActError {
    /// Outcomes of a race or a deliberate choice, logged at INFO rather than as failures.
    fn is_expected(&self) -> bool {
        matches!(
            self,
            ActError::LeaderKeyTaken
                | ActError::BootstrapRaceLost
                | ActError::SyncKeyChanged
                | ActError::NoMemberKey(_)
                | ActError::NoConnUrl { .. }
                | ActError::GaveUp(_)
                | ActError::LeaseLost(_)
        )
    }
}

/// The HA loop of one member.
pub struct Runner<D: Dcs, P: PgControl + 'static> {
    dcs: Arc<D>,
    pg: Arc<P>,
    s: HaSettings,
    timing: Timing,
    status: watch::Sender<NodeStatus>,
    /// The leader key, its deadline, the fence and the watchdog feed (see `ha::lease`).
    lease: LeaderLease<D>,
    following: Option<MemberName>,
    /// The role PostgreSQL's configuration was last written for (None before the first write).
    written_role: Option<PgRole>,
    /// The recovery settings written with it (a standby leader's come from `standby_cluster`).
    written_recovery: BTreeMap<String, String>,
    /// PostgreSQL was last configured as the standby leader of a standby cluster (a replica
    /// of the remote primary); cleared by every start, follow or promotion as anything else.
    standby_leader: bool,
    not_streaming_since: Option<Instant>,
    /// The data directory was just cloned: its pg_control says "in production" (copied from
    /// a running primary) but it must be started as is, since recovery from the backup
    /// label is what makes it consistent. Crash recovery or a rewind here would fork it.
    just_cloned: bool,
    /// PostgreSQL was stopped by a graceful demotion (a switchover) and not started since: in a
    /// paused cluster it is started as a replica anyway, as Patroni does.
    demoted_for_switchover: bool,
    /// This member's custom bootstrap failed (the reason): it takes no part in the bootstrap
    /// race again until restarted, so that a broken restore command does not run, and leave
    /// a moved-aside data directory, every loop (Patroni exits instead).
    custom_bootstrap_failed: Option<String>,
    /// The next clone is taken from the leader (POST /reinitialize with `from_leader`).
    clone_from_leader: bool,
    /// pg_rewind failed on the data directory in place and no `remove_data_directory_*` flag
    /// allows moving it aside: it is not retried (Patroni's failed rewind state); PostgreSQL
    /// stays stopped until an operator reinitializes the member.
    rewind_failed: bool,
    /// Since when this member, holding the key, has been trying to bring PostgreSQL up as
    /// the primary (stopped or not answering); `primary_start_timeout` counts from here,
    /// across iterations and start attempts.
    primary_start_since: Option<Instant>,
    http: reqwest::Client,
    progress: watch::Sender<CloneProgress>,
    tick: u64,
    last_reason: String,
    warned_keys: bool,
    /// Requests from the REST API (restart, reload, reinitialize).
    requests: Option<tokio::sync::mpsc::Receiver<ApiRequest>>,
    /// The view of the last iteration, for requests handled between iterations.
    last_view: Option<ClusterView>,
    /// The last `config` value read from the DCS: what a leader writes back if the key
    /// disappears while this daemon runs (Patroni writes its in-memory dynamic
    /// configuration); the local bootstrap.dcs section only when it never read one.
    known_config: Option<serde_json::Value>,
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

/// Builds fresh [`HaSettings`] from the configuration file, or says why it cannot.
pub type Reloader = Arc<dyn Fn() -> Result<HaSettings, String> + Send + Sync>;

/// How long a replica may fail to stream from its leader before it is restarted (with a
/// rewind check): long enough for a new primary to come up, short enough to heal fast.
const STREAMING_GRACE: Duration = Duration::from_secs(8);

/// The lease's timing for these settings and loop timing.
///
/// The fence margin is an eighth of the lease, at most `safety_margin`: it only has to cover
/// the time SIGQUIT takes to stop the backends and the drift of two monotonic clocks over
/// one lease, and every bit of it taken from a short lease is a stall the primary no longer
/// rides through (0.5 s at the default ttl of 4 s).
fn lease_timing(s: &HaSettings, t: Timing) -> LeaseTiming {
    LeaseTiming {
        ttl: t.ttl,
        loop_wait: t.loop_wait,
        safety_margin: s.safety_margin.min(t.ttl / 8),
        vouch: t.loop_wait + 2 * t.retry_timeout,
    }
}

impl<D: Dcs, P: PgControl + 'static> Runner<D, P> {
    /// A runner; `status` receives a new [`NodeStatus`] after every iteration.
    pub fn new(dcs: Arc<D>, pg: Arc<P>, s: HaSettings, status: watch::Sender<NodeStatus>) -> Self {
        let timing = s.timing;
        let (progress, _) = watch::channel(CloneProgress::default());
        let lease = LeaderLease::new(dcs.clone(), &s.prefix, s.me.clone(), lease_timing(&s, timing));
        lease.report_to(status.clone());
        Runner {
            dcs,
            pg,
            s,
            timing,
            status,
            lease,
            following: None,
            written_role: None,
            written_recovery: BTreeMap::new(),
            standby_leader: false,
            not_streaming_since: None,
            just_cloned: false,
            demoted_for_switchover: false,
            custom_bootstrap_failed: None,
            clone_from_leader: false,
            rewind_failed: false,
            primary_start_since: None,
            // A host that is gone drops the SYN: 300 ms is plenty on any LAN and keeps a dead
            // peer from costing the leader race more than that.
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(300))
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            progress,
            tick: 0,
            last_reason: String::new(),
            warned_keys: false,
            requests: None,
            last_view: None,
            known_config: None,
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
    pub fn with_watchdog(self, watchdog: Arc<Watchdog>) -> Self {
        self.lease.set_watchdog(watchdog);
        self
    }

    /// Re-reads the configuration file on a reload request.
    pub fn with_reloader(mut self, r: Reloader) -> Self {
        self.reloader = Some(r);
        self
    }

    /// Lets the fence thread stop a postmaster started after the lease ran out (see
    /// [`LeaderLease::watch_pid_file`]).
    pub fn with_pid_file(self, path: std::path::PathBuf) -> Self {
        self.lease.watch_pid_file(path);
        self
    }

    /// Runs `f` where the lease stops counting: the fence thread at the deadline, and every
    /// release or loss (the VIP's removal, see [`LeaderLease::on_fence`]).
    pub fn with_fence_hook(self, f: Arc<dyn Fn(&'static str) + Send + Sync>) -> Self {
        self.lease.on_fence(f);
        self
    }

    /// Takes requests from the REST API.
    pub fn with_requests(mut self, rx: tokio::sync::mpsc::Receiver<ApiRequest>) -> Self {
        self.requests = Some(rx);
        self
    }

    pub(super) fn key(&self, rel: &str) -> String {
        format!("{}{}", self.s.prefix, rel)
    }

    /// Runs until `shutdown`; then, on the primary, stops PostgreSQL and releases the key
    /// so a replica takes over at once instead of waiting for the lease to run out.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ActError> {
        let fence = self.lease.spawn_fence(self.pg.clone(), shutdown.clone());
        let keepalive = self.lease.spawn_keepalive(shutdown.clone());
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
            // The leader's keep-alive rewrites its key several times per loop_wait; only a
            // change of holder is news here (a deletion wakes the loop below).
            let known_leader = self
                .last_view
                .as_ref()
                .and_then(|v| v.leader_name())
                .map(|l| l.to_string());
            let wait = async {
                loop {
                    match watch.next().await {
                        Some(crate::dcs::WatchEvent::Delete { key, .. }) if key == leader_key => return,
                        Some(crate::dcs::WatchEvent::Put(kv))
                            if kv.key == failover_key || kv.key == config_key =>
                        {
                            return
                        }
                        Some(crate::dcs::WatchEvent::Put(kv))
                            if kv.key == leader_key
                                && kv.value != me
                                && known_leader.as_deref() != Some(kv.value.as_str()) =>
                        {
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
        keepalive.abort();
        self.on_shutdown().await;
        fence.abort();
        result
    }

    /// One iteration: read → observe → decide → act → leader upkeep → publish.
    async fn iteration(&mut self) -> Result<(), ActError> {
        self.run_scheduled_restart().await;
        let view = self.read_view().await;
        // A lease that ran out (the fence has fired) and a key that no longer names us: the
        // fence keeps stopping any postmaster until the lease is forgotten, which the demoting
        // paths do; a member that goes straight to following another leader must do it here,
        // or its start as a replica would be stopped again and again.
        if let Some(v) = &view {
            let ran_out = self.lease.deadline().is_some_and(|d| d <= Instant::now());
            if ran_out && v.leader_name() != Some(&self.s.me) {
                self.lease.forget();
            }
        }
        let obs = self.observe().await;
        self.rebuild_adopted_config(view.as_ref(), &obs).await;
        self.ensure_member_key(view.as_ref(), &obs).await;
        let d = self.decide(view.as_ref(), &obs).await;
        let outcome = self.act_all(&d.actions, view.as_ref(), &obs).await;
        if let Err(ActError::Fatal(_)) = outcome {
            return outcome;
        }
        // The rest works from what PostgreSQL is now, after acting.
        let obs = if d.actions.is_empty() {
            obs
        } else {
            self.observe().await
        };
        let mut upkeep = Ok(());
        if let (Some(v), Ok(())) = (&view, &outcome) {
            self.apply_config_change(v).await;
            upkeep = self.upkeep(v, &obs).await;
        }
        self.publish_iteration(view.as_ref(), &obs).await;
        outcome.and(upkeep)
    }

    /// A restart scheduled through the API whose time has come.
    async fn run_scheduled_restart(&mut self) {
        if let Some((at, _)) = &self.scheduled_restart {
            if *at <= chrono::Utc::now() {
                if let Some((_, cond)) = self.scheduled_restart.take() {
                    let out = self.restart(&cond).await;
                    tracing::info!(ok = out.ok, message = %out.message, "scheduled restart");
                }
            }
        }
    }

    /// Reads the scope (linearizably) and applies what the dynamic configuration sets for the
    /// loop itself: timing, the failsafe leader, no watchdog while paused. `None` when the DCS
    /// cannot be read.
    async fn read_view(&mut self) -> Option<ClusterView> {
        let mut v = match self.dcs.list(&self.s.prefix).await {
            Ok(kvs) => ClusterView::from_kvs(&self.s.prefix, &kvs),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster from the DCS");
                return None;
            }
        };
        self.last_view = Some(v.clone());
        if let Some(c) = &v.config {
            self.known_config = serde_json::to_value(&c.value).ok();
        }
        self.apply_dynamic_timing(&v);
        self.failsafe.set_ttl(self.timing.ttl);
        self.inject_failsafe_leader(&mut v);
        if v.paused() {
            // Patroni: no watchdog while paused (nothing acts on a hung daemon then).
            self.lease.watchdog().disable();
        }
        if !v.unparsable.is_empty() && !self.warned_keys {
            tracing::warn!(keys = ?v.unparsable, "ignoring DCS values that do not parse");
            self.warned_keys = true;
        }
        Some(v)
    }

    /// A PostgreSQL this daemon found running (adopted at start) has configuration files
    /// written by an earlier process: rewrite them once from the real inputs (the DCS and the
    /// local settings) for the role it runs in, and reload. Until then neither a reload nor a
    /// change of synchronous_standby_names may rewrite them (both would start from defaults,
    /// and a reload would make a running primary a standby on its next restart).
    async fn rebuild_adopted_config(&mut self, view: Option<&ClusterView>, obs: &Observation) {
        let (Some(v), PgState::Running(r), None) = (view, &obs.pg, &self.written_role) else {
            return;
        };
        let role = if r.primary {
            PgRole::Primary
        } else {
            let target = v
                .leader_name()
                .filter(|l| **l != self.s.me)
                .and_then(|l| self.upstream_of(Some(v), l).ok())
                .map(|(_, t)| t);
            if target.is_none() {
                // No leader known yet (a cluster being taken over: the primary's daemon has not
                // taken the key). Rewriting now would drop the primary_conninfo it streams with
                // and stop replication until the leader appears (and then for
                // wal_retrieve_retry_interval more): leave it streaming as it is until then.
                return;
            }
            PgRole::Standby(target)
        };
        let res = async {
            self.write_pg_config(Some(v), role).await?;
            self.pg.reload().await.map_err(ActError::from)
        }
        .await;
        match res {
            Ok(()) => tracing::info!(
                primary = r.primary,
                "PostgreSQL was already running: its configuration was rewritten from the DCS and the local settings"
            ),
            Err(e) => tracing::warn!(error = %chain(&e), "rewriting the configuration of the running PostgreSQL"),
        }
    }

    /// Patroni writes its member key first when it is missing: the primary creates a
    /// replica's slot from it, and a replica that starts up may block until it streams.
    async fn ensure_member_key(&mut self, view: Option<&ClusterView>, obs: &Observation) {
        if view.is_some_and(|v| !v.members.contains_key(&self.s.me)) {
            if let Err(e) = self.write_member(obs).await {
                tracing::warn!(error = %e, "cannot write the member key");
            }
        }
    }

    /// Gathers what the pure decision needs beyond the view and the observation (the peers
    /// when the key is free, the failsafe hold of a primary without the DCS) and decides.
    async fn decide(&mut self, view: Option<&ClusterView>, obs: &Observation) -> Decision {
        let running_primary = matches!(&obs.pg, PgState::Running(r) if r.primary);
        let starting_as_leader = view.is_some_and(|v| v.leader_name() == Some(&self.s.me))
            && matches!(obs.pg, PgState::Stopped { .. } | PgState::Unresponsive);
        if !starting_as_leader {
            self.primary_start_since = None;
        } else if self.primary_start_since.is_none() {
            self.primary_start_since = Some(Instant::now());
        }
        let primary_start_overdue = self.primary_start_since.is_some_and(|since| {
            let limit = view.map_or(0, |v| v.dynamic().primary_start_timeout());
            since.elapsed() >= Duration::from_secs(limit.into())
        });
        let peers = match view {
            Some(v) if v.leader.is_none() && matches!(obs.pg, PgState::Running(_)) => {
                self.poll_peers(v).await
            }
            _ => vec![],
        };
        // Failsafe: the DCS cannot be read and this is a running primary — it stays one
        // only on the word of every member listed in /failsafe.
        let failsafe_held = view.is_none() && running_primary && self.failsafe_hold().await;
        let scheduled_due = view
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
            view,
            pg: &obs.pg,
            sysid: obs.sysid,
            failover_priority: self.s.failover_priority,
            peers: &peers,
            maximum_lag_on_failover: view
                .map_or(ClusterView::default().dynamic().maximum_lag_on_failover(), |v| {
                    v.dynamic().maximum_lag_on_failover()
                }),
            scheduled_due,
            pre_promote_backoff: self.race_backoff_until.is_some_and(|t| Instant::now() < t),
            watchdog_healthy: self.lease.watchdog().is_healthy(self.lease.watchdog_timing()),
            failsafe_held,
            lease_valid: self.lease.is_valid(),
            primary_start_overdue,
            standalone: matches!(obs.pg, PgState::Stopped { standby: false, .. })
                && view.is_some_and(|v| v.initialize.is_none())
                && !self.pg.configured_by_pgwarden(),
            standby_cluster: self.standby_cluster_config(view).is_some(),
            following_remote: self.following_remote(view),
            clone_without_leader: self
                .s
                .replica_methods
                .iter()
                .any(crate::postgres::ReplicaMethod::works_without_leader),
            demoted_for_switchover: self.demoted_for_switchover,
        });
        if d.reason != self.last_reason && d.needs_operator {
            tracing::warn!(reason = %d.reason, "decision: waiting for an operator");
            self.last_reason = d.reason.clone();
        } else if d.reason != self.last_reason {
            tracing::info!(reason = %d.reason, actions = ?d.actions, "decision");
            self.last_reason = d.reason.clone();
        } else {
            tracing::debug!(reason = %d.reason, "decision");
        }
        d
    }

    /// Carries out the actions in order, stopping at the first that fails.
    async fn act_all(
        &mut self,
        actions: &[Action],
        view: Option<&ClusterView>,
        obs: &Observation,
    ) -> Result<(), ActError> {
        for a in actions {
            if let Err(e) = self.act(a, view, obs).await {
                match &e {
                    ActError::Fatal(_) => return Err(e),
                    e if e.is_expected() => tracing::info!(action = ?a, "{}", chain(e)),
                    other => tracing::warn!(action = ?a, error = %chain(other), "action failed"),
                }
                // The DCS failed under the lease refresh itself (not a lost compare-and-
                // swap): the same failsafe rule as for a failed read, before the fence
                // stops PostgreSQL at the end of the lease.
                if matches!((a, &e), (Action::RefreshLeader, ActError::Dcs(_)))
                    && matches!(&obs.pg, PgState::Running(r) if r.primary)
                {
                    self.failsafe_hold().await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// A changed dynamic configuration reaches PostgreSQL on every member: rewrite its files
    /// for the role they were written for, and reload (what needs a restart then shows as
    /// pending_restart).
    async fn apply_config_change(&mut self, v: &ClusterView) {
        let Some(role) = self.written_role.clone() else {
            return;
        };
        let rev = v.config.as_ref().map(|c| c.revision);
        if rev.is_none()
            || rev == self.applied_config_rev
            || !matches!(self.pg.probe(), PostmasterState::Running { .. })
        {
            return;
        }
        if self.applied_config_rev.is_some() {
            match self.rewrite_config_and_reload(Some(v), role).await {
                Ok(()) => {
                    tracing::info!(
                        "dynamic configuration changed: PostgreSQL configuration rewritten and reloaded"
                    )
                }
                Err(e) => tracing::warn!(error = %chain(&e), "applying the changed dynamic configuration"),
            }
        }
        self.applied_config_rev = rev;
    }

    /// Rewrites PostgreSQL's files for `role` from the view and the local settings, and
    /// reloads PostgreSQL.
    async fn rewrite_config_and_reload(
        &self,
        v: Option<&ClusterView>,
        role: PgRole,
    ) -> Result<(), crate::postgres::Error> {
        let input = self.config_input(v, role);
        self.pg.write_config(&input).await?;
        self.pg.reload().await
    }

    /// After acting: the leader's upkeep when this member holds a valid lease as a running
    /// primary (after a refresh, and right after a promotion); a replica's slots otherwise.
    async fn upkeep(&mut self, v: &ClusterView, obs: &Observation) -> Result<(), ActError> {
        match (&obs.pg, &obs.status) {
            (PgState::Running(r), Some(st)) if r.primary => {
                if self.lease.is_valid() {
                    self.failsafe.release();
                    self.failsafe_logged = false;
                    if let Err(e) = self.leader_upkeep(v, obs, st).await {
                        if e.is_expected() {
                            tracing::info!("{}", chain(&e));
                        } else {
                            tracing::warn!(error = %chain(&e), "leader upkeep failed");
                        }
                        return Err(e);
                    }
                }
            }
            (PgState::Running(_), Some(st)) => {
                self.sync = SyncTrack::default();
                self.ensure_slots(Some(v), false, st).await;
            }
            _ => self.sync = SyncTrack::default(),
        }
        Ok(())
    }

    /// Writes the member key and publishes the REST state.
    async fn publish_iteration(&mut self, view: Option<&ClusterView>, obs: &Observation) {
        match view {
            Some(v) => {
                if let Err(e) = self.write_member(obs).await {
                    tracing::warn!(error = %e, "cannot write the member key");
                }
                self.publish(v, obs, true);
            }
            None => self.publish(&ClusterView::default(), obs, false),
        }
    }

    /// Timing from the dynamic configuration (Patroni's rule and pgwarden's minima, see
    /// [`crate::config::adjust_timing`]); the file's values until a configuration is stored.
    fn apply_dynamic_timing(&mut self, v: &ClusterView) {
        let Some(c) = &v.config else { return };
        let (t, _) = c.value.timing();
        let t = Timing {
            ttl: Duration::from_secs(t.ttl.into()),
            loop_wait: Duration::from_secs(t.loop_wait.into()),
            retry_timeout: Duration::from_secs(t.retry_timeout.into()),
        };
        if t != self.timing {
            tracing::info!(ttl = ?t.ttl, loop_wait = ?t.loop_wait, retry_timeout = ?t.retry_timeout, "timing from the dynamic config");
            self.timing = t;
            self.lease.set_timing(lease_timing(&self.s, t));
            // The DCS's own time limit follows too: a DCS call bounded by the old value
            // could outlast the new loop and lease timing.
            self.dcs.set_op_timeout(t.retry_timeout);
        }
    }

    /// PostgreSQL's role for a callback argument.
    pub(super) fn cb_role_now(&self) -> CallbackRole {
        self.cb_role
            .unwrap_or_else(|| CallbackRole::from_status(self.status.borrow().role.as_str()))
    }

    /// Whether PostgreSQL was last announced as primary (or demoted from it): the next start
    /// as a replica is then a role change, not a start (Patroni's `follow`).
    pub(super) fn role_changes_to_replica(&self) -> bool {
        matches!(self.cb_role, Some(CallbackRole::Primary | CallbackRole::Demoted))
    }

    /// The callback of a start as a replica (or standby leader): on_role_change after a
    /// primary, on_restart when PostgreSQL was running just before, else on_start.
    pub(super) fn fire_replica_start(&mut self, was_running: bool, role: CallbackRole) {
        let action = if self.role_changes_to_replica() {
            CallbackAction::OnRoleChange
        } else if was_running {
            CallbackAction::OnRestart
        } else {
            CallbackAction::OnStart
        };
        self.fire(action, role);
    }

    /// Starts a background callback and remembers the role it announced.
    pub(super) fn fire(&mut self, action: CallbackAction, role: CallbackRole) {
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
    pub(super) async fn stop_pg(
        &mut self,
        mode: StopMode,
        quiet: bool,
    ) -> Result<(), crate::postgres::Error> {
        let running = matches!(self.pg.probe(), PostmasterState::Running { .. });
        let role = self.cb_role_now();
        // Health checks answer from this at once: a stopping primary is no longer one.
        self.set_state(MemberState::Stopping);
        if running {
            self.callbacks.before_stop(self.timing.retry_timeout).await;
        }
        self.pg.stop(mode).await?;
        self.set_state(MemberState::Stopped);
        if running && !quiet {
            self.callbacks.fire(CallbackAction::OnStop, role);
        }
        Ok(())
    }

    /// Stops a primary that must not stay one: PostgreSQL first, then the watchdog.
    pub(super) async fn demote_stop(&mut self, mode: StopMode) -> Result<(), crate::postgres::Error> {
        let was_primary = self.cb_role_now() == CallbackRole::Primary;
        // Patroni disarms at the safepoint, before the shutdown checkpoint: a checkpoint that
        // outlasts the watchdog's timeout must not reset the host of a primary that is
        // stopping anyway. If the stop fails, it is armed again: PostgreSQL still runs.
        let wd = self.lease.watchdog();
        let was_armed = wd.is_running();
        wd.disable();
        if let Err(e) = self.stop_pg(mode, false).await {
            if was_armed && wd.activate(self.lease.watchdog_timing()).is_err() {
                tracing::error!("PostgreSQL could not be stopped and the watchdog could not be armed again");
            }
            return Err(e);
        }
        if was_primary {
            self.cb_role = Some(CallbackRole::Demoted);
            crate::ha::counters::COUNTERS.demotion();
        }
        Ok(())
    }

    pub(super) fn set_state(&self, state: MemberState) {
        self.status.send_modify(|s| s.state = state);
    }

    /// This member's `nostream` tag: it replays from the archive only, never streams.
    pub(super) fn nostream(&self) -> bool {
        matches!(self.s.tags.get("nostream"), Some(Value::Bool(true)))
    }

    /// Whether this member could be promoted: it then keeps copies of the other members'
    /// slots (see `ha::slots`).
    pub(super) fn failover_capable(&self) -> bool {
        self.s.failover_priority > 0 && !self.nostream()
    }
}

#[cfg(test)]
mod hooks_tests;
