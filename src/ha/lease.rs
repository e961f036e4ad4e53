//! The leader lease: the one owner of the `leader` key, its deadline and the fence.
//!
//! The safety argument of the whole system (docs/architecture.md, "the lease rule") is that a
//! primary stops being writable at `sent + ttl − margin`, where `sent` is the moment it *sent*
//! its last successful refresh: the DCS lets the key expire at `applied + ttl` on the Raft
//! leader's clock, which is later, so no other member can take the key while this one may still
//! accept writes. Everything that touches that argument lives here:
//!
//! - the leader-key operations: [`LeaderLease::acquire`], [`LeaderLease::refresh`],
//!   [`LeaderLease::take_over`] (bootstrap), [`LeaderLease::release`] and [`LeaderLease::forget`];
//! - the deadline, computed in one place ([`LeaderLease::extend`]), and its watch;
//! - the watchdog feed: every extension of the deadline feeds it, every release disarms it;
//! - the fence ([`LeaderLease::spawn_fence`]) that stops PostgreSQL when the deadline passes:
//!   a tokio task that stops it cleanly through [`PgControl`], and under it a dedicated OS
//!   thread ([`FenceThread`]) that SIGQUITs the postmaster even when the runtime is blocked;
//! - [`LeaderLease::keep_alive_while`], which keeps the lease alive while a long action runs
//!   and stops that action when the lease cannot be kept;
//! - the keep-alive ([`LeaderLease::spawn_keepalive`]): it refreshes the key every `ttl / 8`
//!   on its own cadence, but only while the HA loop vouches for the primary (a refresh by the
//!   loop, which runs only when PostgreSQL was found healthy, vouches for `loop_wait +
//!   2·retry_timeout`). A short ttl then survives a slow iteration or a stalled daemon, and a
//!   loop that hangs still loses the key: the keep-alive stops when the vouching runs out.
//!
//! The HA loop never writes the leader key or the deadline itself.
//!
//! Release has one fixed order: forget the deadline, disarm the watchdog, then delete the key
//! (compare-and-swap on our name). Forgetting first means the fence cannot fire on a primary
//! that is being stopped on purpose; disarming before the delete means a watchdog that nobody
//! feeds any more can never reset the host after another member took over.

use super::deadman::{self, FenceThread, Proc};
use super::status::NodeStatus;
use super::watchdog::{Watchdog, WatchdogTiming};
use crate::dcs::{Dcs, DcsError};
use crate::postgres::{PgControl, PostmasterState, StopMode};
use crate::types::MemberName;
use pgwarden_raft::Condition;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The lease's timing, from the dynamic configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// Length of the lease (the key's TTL).
    pub ttl: Duration,
    /// The HA loop's period (the watchdog's timeout is derived from it and ttl).
    pub loop_wait: Duration,
    /// How long before the DCS would expire the key the primary stops itself.
    pub safety_margin: Duration,
    /// How long a refresh by the HA loop lets the keep-alive go on refreshing on its own
    /// (`loop_wait + 2·retry_timeout`: Patroni's budget for one iteration that retries).
    pub vouch: Duration,
}

impl LeaseTiming {
    /// The margin actually used: never more than half the lease, so a short ttl still leaves
    /// the primary a useful lease.
    fn margin(&self) -> Duration {
        self.safety_margin.min(self.ttl / 2)
    }

    fn watchdog(&self) -> WatchdogTiming {
        // Rounded up: the watchdog counts whole seconds and must not fire before the fence.
        let fence_ms = (self.ttl - self.margin()).as_millis();
        WatchdogTiming {
            ttl: self.ttl.as_secs(),
            loop_wait: self.loop_wait.as_secs(),
            fence: u64::try_from(fence_ms.div_ceil(1000)).unwrap_or(u64::MAX),
        }
    }

    /// The keep-alive's period: eight refreshes per lease, so that a daemon stalled for half
    /// the lease still finds its deadline ahead when it resumes (and refreshes at once).
    pub fn keepalive_every(&self) -> Duration {
        (self.ttl / 8).max(Duration::from_millis(100))
    }
}

/// Why a long action run under [`LeaderLease::keep_alive_while`] was stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLost {
    /// A refresh found the key held by somebody else (or gone).
    #[error("the leader key is no longer ours")]
    Taken,
    /// Refreshes failed until the deadline passed.
    #[error("the leader lease ran out: the DCS did not accept a refresh in time")]
    Expired,
}

/// The leader lease of one member; clones share it.
pub struct LeaderLease<D: Dcs> {
    inner: Arc<Inner<D>>,
}

impl<D: Dcs> Clone for LeaderLease<D> {
    fn clone(&self) -> Self {
        LeaderLease {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<D: Dcs> {
    dcs: Arc<D>,
    /// `<prefix>leader`.
    key: String,
    me: MemberName,
    /// Until when the lock is ours; `None` while we do not hold it. The fence watches it.
    until: watch::Sender<Option<Instant>>,
    /// Held only to copy or swap the values, never across an await or on the fence's path.
    timing: Mutex<LeaseTiming>,
    watchdog: Mutex<Arc<Watchdog>>,
    /// The state the REST API serves: whether this member holds the lease changes there the
    /// moment it changes here, not at the end of the loop's iteration.
    status: Mutex<Option<watch::Sender<NodeStatus>>>,
    /// The second layer of the fence: fed the deadline by every extension and every forget.
    thread: FenceThread,
    /// Finds the running postmaster (through `PgControl::probe`, verified in /proc); set by
    /// [`LeaderLease::spawn_fence`]. Called on the extension path only, never by the thread.
    postmaster: OnceLock<Box<dyn Fn() -> Option<Proc> + Send + Sync>>,
    /// Bumped by every [`LeaderLease::forget`]. A write sent before a forget must not extend
    /// the lease after it: the keep-alive's refresh runs beside the loop, and its answer may
    /// arrive after the loop released the key.
    epoch: Mutex<u64>,
    /// Until when the HA loop vouches for this primary: the keep-alive refreshes only before.
    vouched: Mutex<Option<Instant>>,
    /// This member's key and the value the HA loop last wrote there. A long action keeps it
    /// alive with the leader key (see [`LeaderLease::keep_alive_while`]).
    member_record: Mutex<Option<(String, String)>>,
    /// Called by every forget (see [`LeaderLease::on_fence`]).
    on_forget: OnceLock<Arc<dyn Fn(&'static str) + Send + Sync>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<D: Dcs> LeaderLease<D> {
    /// The lease on `<prefix>leader` for member `me`, not held.
    pub fn new(dcs: Arc<D>, prefix: &str, me: MemberName, timing: LeaseTiming) -> Self {
        let (until, _) = watch::channel(None);
        LeaderLease {
            inner: Arc::new(Inner {
                dcs,
                key: format!("{prefix}leader"),
                me,
                until,
                timing: Mutex::new(timing),
                watchdog: Mutex::new(Arc::new(Watchdog::off())),
                status: Mutex::new(None),
                thread: FenceThread::new(),
                postmaster: OnceLock::new(),
                epoch: Mutex::new(0),
                vouched: Mutex::new(None),
                member_record: Mutex::new(None),
                on_forget: OnceLock::new(),
            }),
        }
    }

    /// The member key `key` now holds `value` (written by the HA loop with the ttl): a long
    /// action rewrites it as it refreshes the leader key, so that it does not expire meanwhile.
    pub fn remember_member_record(&self, key: String, value: String) {
        *lock(&self.inner.member_record) = Some((key, value));
    }

    /// Reports every change of the lease (`holds_lock`, `lease_until`) into this state at once.
    pub fn report_to(&self, status: watch::Sender<NodeStatus>) {
        *lock(&self.inner.status) = Some(status);
    }

    fn report(&self, until: Option<Instant>) {
        if let Some(tx) = lock(&self.inner.status).as_ref() {
            tx.send_modify(|s| {
                s.holds_lock = until.is_some();
                s.lease_until = until;
            });
        }
    }

    /// Uses this watchdog from now on (a reload may replace it: the old one is disarmed).
    pub fn set_watchdog(&self, w: Arc<Watchdog>) {
        let old = std::mem::replace(&mut *lock(&self.inner.watchdog), w);
        old.disable();
    }

    /// The watchdog the lease feeds.
    pub fn watchdog(&self) -> Arc<Watchdog> {
        lock(&self.inner.watchdog).clone()
    }

    /// New timing (the dynamic configuration changed); applies from the next extension.
    pub fn set_timing(&self, t: LeaseTiming) {
        *lock(&self.inner.timing) = t;
    }

    /// The current timing.
    pub fn timing(&self) -> LeaseTiming {
        *lock(&self.inner.timing)
    }

    /// The watchdog's timing (ttl and loop_wait).
    pub fn watchdog_timing(&self) -> WatchdogTiming {
        self.timing().watchdog()
    }

    /// Until when this member may act as the primary; `None` when it does not hold the lease.
    pub fn deadline(&self) -> Option<Instant> {
        *self.inner.until.borrow()
    }

    /// Whether the lease is held and its deadline has not passed.
    pub fn is_valid(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() < d)
    }

    /// A receiver of the deadline (the fence and the REST state watch it).
    pub fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.inner.until.subscribe()
    }

    /// Takes the free key (compare-and-swap on "absent"). True when it is ours now.
    pub async fn acquire(&self) -> Result<bool, DcsError> {
        self.put(Condition::Absent, true).await
    }

    /// Refreshes the key we hold. False when somebody else holds it (or nobody): the
    /// deadline is then forgotten, and the caller must stop PostgreSQL as a primary.
    pub async fn refresh(&self) -> Result<bool, DcsError> {
        let ours = self
            .put(Condition::ValueEquals(self.inner.me.to_string()), true)
            .await?;
        if !ours {
            self.forget();
        }
        Ok(ours)
    }

    /// Writes the key whatever it holds: only the member that just bootstrapped the cluster
    /// (under the `initialize` key it won) does this.
    pub async fn take_over(&self) -> Result<bool, DcsError> {
        self.put(Condition::Always, true).await
    }

    /// Writes the key; on success extends the lease from the send time, unless a forget
    /// came in between. `vouch`: the caller is the HA loop, which has just seen PostgreSQL
    /// healthy, so the keep-alive may go on refreshing for `LeaseTiming::vouch`.
    async fn put(&self, cond: Condition, vouch: bool) -> Result<bool, DcsError> {
        let sent = Instant::now();
        let epoch = *lock(&self.inner.epoch);
        let t = self.timing();
        let r = self
            .inner
            .dcs
            .put(&self.inner.key, self.inner.me.as_str(), Some(t.ttl), cond)
            .await?;
        if r.succeeded {
            // Checked and extended under the epoch lock, so a forget cannot slip in between.
            let current = lock(&self.inner.epoch);
            if *current != epoch {
                return Ok(false);
            }
            if vouch {
                *lock(&self.inner.vouched) = Some(sent + t.vouch);
            }
            self.extend(sent);
        }
        Ok(r.succeeded)
    }

    /// The lease is ours as of `sent` (the send time of a successful write, or the moment a
    /// failsafe confirmation was asked): the deadline becomes `sent + ttl − margin`, and the
    /// watchdog is fed. This is the one place the deadline is computed.
    pub fn extend(&self, sent: Instant) {
        let t = self.timing();
        let until = sent + t.ttl - t.margin();
        self.inner.until.send_replace(Some(until));
        self.report(Some(until));
        self.watchdog().keepalive(t.watchdog());
        self.feed_thread(Some(until));
    }

    /// After a deadline has passed, the fence thread also stops whatever postmaster this file
    /// names, until the lease is renewed or forgotten: a PostgreSQL started (by a restart in
    /// flight, or anyone) after the lease ran out never runs writable. Set once.
    pub fn watch_pid_file(&self, path: std::path::PathBuf) {
        self.inner.thread.watch_pid_file(path);
    }

    /// Runs `f` with a reason wherever the lease stops counting: on the fence thread when the
    /// deadline passes (right after its signal), and in [`LeaderLease::forget`] (lost,
    /// released, demoted) before anything else learns of it, so that the VIP (see
    /// [`crate::vip`]) is gone before the key can be taken. Set once.
    pub fn on_fence(&self, f: Arc<dyn Fn(&'static str) + Send + Sync>) {
        let g = f.clone();
        self.inner
            .thread
            .on_fire(Box::new(move || g("the leader lease ran out (fence thread)")));
        let _ = self.inner.on_forget.set(f);
    }

    /// Hands a deadline (or none) to the fence thread, with the postmaster it applies to.
    fn feed_thread(&self, until: Option<Instant>) {
        let thread = &self.inner.thread;
        match until {
            Some(until) => {
                if let Some(find) = self.inner.postmaster.get() {
                    thread.set_target(find());
                }
                thread.arm(deadman::mono_at(until));
            }
            None => thread.disarm(),
        }
    }

    /// Stops counting on the lease without touching the key (it was lost, or PostgreSQL is
    /// being stopped anyway): the fence will not fire until the lease is taken again.
    pub fn forget(&self) {
        let mut epoch = lock(&self.inner.epoch);
        *epoch += 1;
        *lock(&self.inner.vouched) = None;
        // Before the status says so (and before a release deletes the key): nobody may take
        // the key while this member still answers on the VIP.
        if let Some(f) = self.inner.on_forget.get() {
            f("the leader lease was released or lost");
        }
        self.inner.until.send_replace(None);
        self.report(None);
        self.feed_thread(None);
    }

    /// Starts the keep-alive: while the lease is held and the HA loop's last refresh vouches
    /// for the primary, the key is refreshed every [`LeaseTiming::keepalive_every`], each
    /// attempt bounded by the deadline. A refresh that finds the key gone or taken changes
    /// nothing here: the deadline stays, so the fence still fires on time, and the watch on the
    /// leader key wakes the loop, which demotes. Ends with `shutdown`.
    pub fn spawn_keepalive(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let lease = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let every = lease.timing().keepalive_every();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let now = Instant::now();
                let Some(deadline) = lease.deadline().filter(|d| now < *d) else {
                    continue;
                };
                if !lock(&lease.inner.vouched).is_some_and(|v| now < v) {
                    continue;
                }
                let cond = Condition::ValueEquals(lease.inner.me.to_string());
                let outcome = tokio::time::timeout_at(deadline, lease.put(cond, false)).await;
                match outcome {
                    Ok(Ok(_)) if failing => {
                        failing = false;
                        tracing::info!("the lease keep-alive reaches the DCS again");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) if !failing => {
                        failing = true;
                        tracing::warn!(error = %crate::error::chain(&e), "the lease keep-alive cannot refresh the leader key; retrying every {every:?} until the deadline");
                    }
                    Err(_) if !failing => {
                        failing = true;
                        tracing::warn!(
                            "the lease keep-alive got no answer from the DCS before the lease's deadline"
                        );
                    }
                    _ => {}
                }
            }
        })
    }

    /// Gives the key up: forget the deadline, disarm the watchdog, delete the key if it still
    /// names us. The order is the protocol (see the module documentation).
    pub async fn release(&self) -> Result<(), DcsError> {
        self.forget();
        self.watchdog().disable();
        self.inner
            .dcs
            .delete(&self.inner.key, Condition::ValueEquals(self.inner.me.to_string()))
            .await?;
        Ok(())
    }

    /// Runs `action` while keeping the lease alive: a refresh every `every` (at most a third
    /// of the lease, so that one failed refresh still leaves time for the next). When a
    /// refresh finds the key taken, or refreshes fail until the deadline passes, the action is
    /// dropped (stopped at its next await point) and the reason returned. Without a lease
    /// (deadline `None`) the action simply runs.
    pub async fn keep_alive_while<F: Future>(
        &self,
        every: Duration,
        action: F,
    ) -> Result<F::Output, LeaseLost> {
        if self.deadline().is_none() {
            return Ok(action.await);
        }
        let every = every.min(self.timing().ttl / 3).max(Duration::from_millis(100));
        tokio::pin!(action);
        // The first refresh goes out at once: the action starts with the lease's full length.
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut until = self.subscribe();
        loop {
            let deadline = *until.borrow_and_update();
            let Some(deadline) = deadline else {
                return Err(LeaseLost::Taken);
            };
            tokio::select! {
                out = &mut action => return Ok(out),
                // The action is not polled while the refresh runs, so the refresh may not
                // outlast the deadline: a DCS that hangs must not let the action go on past it.
                _ = tick.tick() => match tokio::time::timeout_at(deadline, self.refresh()).await {
                    Ok(Ok(true)) => self.touch_member_record(deadline).await,
                    Ok(Ok(false)) => return Err(LeaseLost::Taken),
                    Ok(Err(e)) => tracing::warn!(error = %crate::error::chain(&e), "refreshing the leader lease during a long action"),
                    Err(_) => return Err(LeaseLost::Expired),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if *until.borrow() == Some(deadline) {
                        return Err(LeaseLost::Expired);
                    }
                }
                r = until.changed() => if r.is_err() { return Err(LeaseLost::Expired) },
            }
        }
    }

    /// Rewrites this member's key with its last value, as Patroni's etcd3 DCS does by keeping
    /// it on the leader's lease: the HA loop, blocked in the long action, does not publish,
    /// and a leader whose member key expired has no `conn_url` for its replicas and is missing
    /// from `/cluster` and `pgwardenctl list`. Best effort, within the lease: a failure only
    /// means that the key may expire, as it did before.
    async fn touch_member_record(&self, deadline: Instant) {
        let Some((key, value)) = lock(&self.inner.member_record).clone() else {
            return;
        };
        let ttl = self.timing().ttl;
        let put = self.inner.dcs.put(&key, &value, Some(ttl), Condition::Always);
        if let Ok(Err(e)) = tokio::time::timeout_at(deadline, put).await {
            tracing::debug!(error = %crate::error::chain(&e), "rewriting the member key during a long action");
        }
    }

    /// Starts the fence: it stops PostgreSQL (immediate mode) when the deadline passes without
    /// a refresh, whatever the HA loop is doing, even while one of its DCS calls hangs.
    ///
    /// Two independent layers watch the same deadline. The tokio task stops PostgreSQL through
    /// `pg` (and so waits for it to be gone); it follows tokio's clock, which unit tests pause.
    /// The fence thread sends SIGQUIT to the postmaster `pg` reports (verified in /proc to be a
    /// postgres process, by pid and start time) on the real `CLOCK_MONOTONIC`, so it fires on
    /// time when the runtime's workers are blocked; a fake PostgreSQL has no such process and
    /// the thread stays idle. Both end with `shutdown`.
    pub fn spawn_fence<P: PgControl + 'static>(
        &self,
        pg: Arc<P>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let probe = pg.clone();
        let _ = self.inner.postmaster.set(Box::new(move || match probe.probe() {
            PostmasterState::Running { pid } => Proc::postmaster(pid),
            _ => None,
        }));
        let thread = self.inner.thread.clone();
        if let Err(e) = thread.start() {
            tracing::error!(error = %e, "cannot start the fence thread: only the runtime's fence is left");
        }
        // A deadline set before the fence existed (bootstrap) gets its target now.
        self.feed_thread(self.deadline());
        let until = self.subscribe();
        tokio::spawn(async move {
            fence(pg, until, shutdown).await;
            thread.stop();
        })
    }
}

/// The fence task: see [`LeaderLease::spawn_fence`].
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
                        // Not once per deadline: until a refresh or a forget changes the
                        // deadline, any postmaster that runs (a restart that was in flight, a
                        // start by hand) is stopped again, checked every 200 ms.
                        let mut logged = false;
                        loop {
                            if *until.borrow() == Some(d) && matches!(pg.probe(), PostmasterState::Running { .. }) {
                                if !logged {
                                    tracing::error!("the leader lease ran out before it could be refreshed: stopping PostgreSQL now");
                                    logged = true;
                                }
                                if let Err(e) = pg.stop(StopMode::Immediate).await {
                                    tracing::error!(error = %crate::error::chain(&e), "fencing stop failed");
                                }
                            }
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                r = until.changed() => { if r.is_err() { return } break }
                                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
