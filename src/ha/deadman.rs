//! The fence outside the async runtime, and outside the daemon.
//!
//! The lease's own fence ([`super::lease::LeaderLease::spawn_fence`]) is a tokio task: it
//! stops PostgreSQL cleanly through [`crate::postgres::PgControl`], but it fires only while the
//! runtime runs and the daemon lives. This module owns the two layers that do without either:
//!
//! - [`FenceThread`]: a dedicated OS thread in the daemon. The lease hands it the deadline as
//!   `CLOCK_MONOTONIC` nanoseconds and the postmaster's identity through atomics; when the
//!   deadline passes it sends `SIGQUIT` (PostgreSQL's immediate shutdown) with `kill(2)` to
//!   that postmaster, and only then logs. Nothing on that path takes a lock, allocates a log
//!   record or waits on a tokio worker, so a runtime blocked by a stalled fsync, a journald
//!   back-pressure or a held mutex does not delay it (F7).
//! - the fence guard ([`run_guard`], the hidden `pgwarden fence-guard` subcommand): a small
//!   process started next to each running postmaster, in its own process group, so it survives
//!   the daemon as the postmaster does. The daemon writes the lease's deadline into a
//!   [`DeadlineFile`] on every change; when the daemon dies and the deadline passes, the guard
//!   `SIGQUIT`s the postmaster. A restarted daemon finds the guard through its [`GuardPidFile`]
//!   and keeps writing the same deadline file, so a healthy primary is not restarted.
//!
//! Both layers identify the postmaster by pid *and* start time ([`Proc`]), read from /proc, so
//! a recycled pid is never signalled, and both signal only that one process.
//!
//! Neither is one-shot per deadline. A lease that ran out and was not renewed stays run out:
//! a postmaster that appears after the deadline (a restart that went on, a start) is as
//! unfenced as the one that was stopped, so both layers stop every postmaster they see until
//! the deadline changes (the review's F3: "re-check on every state change").
//!
//! Why `CLOCK_MONOTONIC` in nanoseconds: it is system-wide (comparable between the daemon and
//! the guard), never jumps with the wall clock, and is what tokio's `Instant` reads in
//! production, so converting a lease deadline is one subtraction.

use super::status::NodeStatus;
use crate::postgres::{PgControl, PostmasterState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the guard looks at the deadline file and at the postmaster: the guard fires at
/// most this late, and an idle guard costs two small reads per period.
pub const GUARD_POLL: Duration = Duration::from_millis(50);

/// The longest the fence thread sleeps without looking again (its loop is bounded even if a
/// wake-up were lost).
const THREAD_MAX_SLEEP: Duration = Duration::from_millis(500);

/// How often the fence thread looks for a new postmaster after a deadline has passed (until
/// the lease is renewed or forgotten): a restarted instance is stopped within about this much
/// of its start, well before it has finished crash recovery and accepts connections.
const RECHECK: Duration = Duration::from_millis(50);

/// How often, while this member holds a lease, the daemon looks for a new postmaster to
/// publish the deadline for and to give a guard. Slower than [`RECHECK`]: these looks run on
/// the runtime and read postmaster.pid. A postmaster started after the lease ran out is
/// stopped by its guard within about twice this (plus [`GUARD_POLL`]).
const FOLLOW_POSTMASTER: Duration = Duration::from_millis(200);

/// Why the fence guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// postmaster.pid is missing or names no running postgres process.
    #[error("{path}: no running postmaster to guard")]
    NoPostmaster {
        /// The pid file read.
        path: PathBuf,
    },
    /// The guard's own pid file could not be written.
    #[error("cannot write the guard's pid file {path}")]
    PidFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn mono_now() -> u64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call cannot fail (and on failure `ts` stays zero, which only makes a fence late).
    unsafe {
        nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A tokio instant as `CLOCK_MONOTONIC` nanoseconds: now plus (or minus) the distance to it.
/// Under tokio's paused test time the result is a real moment that far ahead.
pub fn mono_at(at: tokio::time::Instant) -> u64 {
    let now = tokio::time::Instant::now();
    let mono = mono_now();
    match at.checked_duration_since(now) {
        Some(ahead) => mono.saturating_add(nanos(ahead)),
        None => mono.saturating_sub(nanos(now - at)),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One process, identified by pid and start time (clock ticks after boot, field 22 of
/// /proc/<pid>/stat): a pid reused by another process has another start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    /// The pid.
    pub pid: i32,
    /// The start time, in clock ticks after boot.
    pub start: u64,
}

impl Proc {
    /// The live (not zombie) process `pid`, if any. Reads only procfs, which never waits on a disk.
    pub fn of(pid: i32) -> Option<Proc> {
        // 0 and negative pids address process groups in kill(2); 1 is init.
        if pid <= 1 {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is parenthesised and may hold spaces: the fields after it start
        // with the state (field 3); the start time is field 22.
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first().is_some_and(|s| s.starts_with(['Z', 'X'])) {
            return None;
        }
        let start = fields.get(19)?.parse().ok()?;
        Some(Proc { pid, start })
    }

    /// The live process `pid` if it is a PostgreSQL server (its command is `postgres`).
    pub fn postmaster(pid: i32) -> Option<Proc> {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if !matches!(comm.trim(), "postgres" | "postmaster") {
            return None;
        }
        Proc::of(pid)
    }

    /// The postmaster named by a postmaster.pid file (its first line), if it runs.
    pub fn from_pid_file(path: &Path) -> Option<Proc> {
        let text = std::fs::read_to_string(path).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        Proc::postmaster(pid)
    }

    /// Whether this very process still runs.
    pub fn is_alive(&self) -> bool {
        Proc::of(self.pid) == Some(*self)
    }

    /// Sends SIGQUIT (PostgreSQL's immediate shutdown) if this very process still runs. True
    /// when the signal was sent. No lock, no allocation beyond the /proc path, no logging.
    pub fn quit(&self) -> bool {
        self.is_alive()
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGQUIT,
            )
            .is_ok()
    }
}

/// The fence on its own OS thread (see the module documentation). Clones share the thread.
#[derive(Clone, Default)]
pub struct FenceThread {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// `CLOCK_MONOTONIC` nanoseconds; 0 while no deadline is set.
    deadline: AtomicU64,
    /// The postmaster to stop: pid (0 = none) and start time. Written rarely, read as a pair
    /// and checked against /proc before the signal, so a torn read only skips one look.
    pid: AtomicI32,
    start: AtomicU64,
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// The data directory's postmaster.pid, when known: after a deadline has passed, every
    /// postmaster it names is stopped too (see the module documentation).
    pid_file: OnceLock<PathBuf>,
    /// Called on the thread after the signal when a deadline passes: removes the VIP (see
    /// [`crate::vip`]), so the address goes at the moment the fence acts.
    on_fire: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl FenceThread {
    /// A fence with no deadline and no target; its thread starts with [`FenceThread::start`].
    pub fn new() -> Self {
        FenceThread::default()
    }

    /// Starts the thread (once; later calls do nothing).
    pub fn start(&self) -> std::io::Result<()> {
        if self.shared.thread.get().is_some() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("pgwarden-fence".into())
            .spawn(move || fence_loop(&shared))?;
        let _ = self.shared.thread.set(handle.thread().clone());
        Ok(())
    }

    fn wake(&self) {
        if let Some(t) = self.shared.thread.get() {
            t.unpark();
        }
    }

    /// The postmaster the fence stops (`None`: nothing to stop).
    pub fn set_target(&self, p: Option<Proc>) {
        let s = &self.shared;
        if p.map(|p| p.pid) == Some(s.pid.load(Ordering::Acquire))
            && p.map(|p| p.start) == Some(s.start.load(Ordering::Acquire))
        {
            return;
        }
        // pid 0 first, so that a reader never pairs the new start time with the old pid.
        s.pid.store(0, Ordering::Release);
        if let Some(p) = p {
            s.start.store(p.start, Ordering::Release);
            s.pid.store(p.pid, Ordering::Release);
        }
    }

    /// After a deadline has passed, and until the fence is armed again or disarmed, also stop
    /// whatever postmaster `postmaster.pid` names as soon as it appears (set once).
    pub fn watch_pid_file(&self, path: PathBuf) {
        let _ = self.shared.pid_file.set(path);
    }

    /// Runs `f` on the fence thread each time a deadline passes, after the signal (set once).
    pub fn on_fire(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.shared.on_fire.set(f);
    }

    /// Arms the fence for `deadline` (`CLOCK_MONOTONIC` ns), replacing any earlier one.
    pub fn arm(&self, deadline: u64) {
        self.shared.deadline.store(deadline.max(1), Ordering::Release);
        self.wake();
    }

    /// No deadline: the fence does nothing until armed again.
    pub fn disarm(&self) {
        self.shared.deadline.store(0, Ordering::Release);
        self.wake();
    }

    /// Ends the thread (the daemon is shutting down).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.wake();
    }
}

fn fence_loop(s: &Shared) {
    // The deadline that has passed, and the postmasters already signalled for it (each once).
    let mut fired_for = 0u64;
    let mut signalled: Vec<Proc> = Vec::new();
    while !s.stop.load(Ordering::Acquire) {
        let deadline = s.deadline.load(Ordering::Acquire);
        if deadline == 0 {
            std::thread::park_timeout(THREAD_MAX_SLEEP);
            continue;
        }
        if deadline == fired_for {
            // Still the passed deadline: the lease was neither renewed nor forgotten, so a
            // postmaster started since runs without it. Reading postmaster.pid may wait on the
            // data volume; that delays only this thread, after the known target was stopped.
            let found = s.pid_file.get().and_then(|f| Proc::from_pid_file(f));
            if let Some(p) = found.filter(|p| !signalled.contains(p)) {
                signalled.push(p);
                if p.quit() {
                    super::counters::COUNTERS.fence_stop();
                    tracing::error!(
                        pid = p.pid,
                        "fence thread: a postmaster started after the leader lease ran out; sent SIGQUIT"
                    );
                }
            }
            std::thread::park_timeout(RECHECK);
            continue;
        }
        let now = mono_now();
        if now < deadline {
            std::thread::park_timeout(Duration::from_nanos(deadline - now).min(THREAD_MAX_SLEEP));
            continue;
        }
        fired_for = deadline;
        let target = Proc {
            pid: s.pid.load(Ordering::Acquire),
            start: s.start.load(Ordering::Acquire),
        };
        signalled.clear();
        signalled.push(target);
        // The kill first; the log line (which may block on a full stderr) only afterwards.
        let sent = target.quit();
        let late = Duration::from_nanos(mono_now().saturating_sub(deadline));
        if let Some(f) = s.on_fire.get() {
            f();
        }
        if sent {
            super::counters::COUNTERS.fence_stop();
            tracing::error!(
                pid = target.pid,
                ?late,
                "fence thread: the leader lease ran out; sent SIGQUIT (immediate shutdown) to the postmaster"
            );
        } else {
            tracing::debug!(
                pid = target.pid,
                "fence thread: the lease ran out, no running postmaster to stop"
            );
        }
    }
}

/// The deadline the daemon publishes for the guard: one line, `<pid> <start> <deadline_ns>`
/// (the postmaster it applies to and `CLOCK_MONOTONIC` nanoseconds), or `none`.
///
/// Written as a temporary file renamed over the old one, so a reader sees the old or the new
/// line, never half of one. Never fsynced: the value means something only for the postmaster
/// it names, in this boot, so after a host crash it is meaningless anyway (the postmaster is
/// gone with the host); an fsync per refresh would only put a disk on the refresh path.
#[derive(Clone, Debug)]
pub struct DeadlineFile {
    path: PathBuf,
}

/// A deadline for one postmaster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// The postmaster it applies to.
    pub target: Proc,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub at: u64,
}

impl DeadlineFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DeadlineFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Publishes `d` (`None`: no deadline).
    pub fn write(&self, d: Option<Deadline>) -> std::io::Result<()> {
        let line = match d {
            Some(d) => format!("{} {} {}\n", d.target.pid, d.target.start, d.at),
            None => "none\n".to_string(),
        };
        write_replace(&self.path, &line)
    }

    /// The published deadline; `None` for "none", a missing or an unreadable file.
    pub fn read(&self) -> Option<Deadline> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut f = text.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(pid)), Some(Ok(start)), Some(Ok(at))) = (f.next(), f.next(), f.next()) else {
            return None;
        };
        Some(Deadline {
            target: Proc {
                pid: i32::try_from(pid).ok()?,
                start,
            },
            at,
        })
    }
}

/// Writes `text` to a temporary sibling of `path` and renames it over `path`.
fn write_replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The running guard's pid file: `<guard pid> <guard start> <postmaster pid> <postmaster start>`,
/// so a (restarted) daemon can tell whether the postmaster it sees already has its guard.
#[derive(Clone, Debug)]
pub struct GuardPidFile {
    path: PathBuf,
}

impl GuardPidFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        GuardPidFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Option<(Proc, Proc)> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let v: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [gp, gs, pp, ps] = v[..] else { return None };
        let p = |pid: u64, start| {
            Some(Proc {
                pid: i32::try_from(pid).ok()?,
                start,
            })
        };
        Some((p(gp, gs)?, p(pp, ps)?))
    }

    /// The live guard of `postmaster`, if there is one.
    pub fn guard_of(&self, postmaster: Proc) -> Option<Proc> {
        self.read()
            .filter(|(g, p)| *p == postmaster && g.is_alive())
            .map(|(g, _)| g)
    }

    fn write(&self, guard: Proc, postmaster: Proc) -> std::io::Result<()> {
        write_replace(
            &self.path,
            &format!(
                "{} {} {} {}\n",
                guard.pid, guard.start, postmaster.pid, postmaster.start
            ),
        )
    }

    /// Removes the file if it still names `guard` (a newer guard may have replaced it).
    fn remove_if(&self, guard: Proc) {
        if self.read().is_some_and(|(g, _)| g == guard) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the guard needs to know.
#[derive(Clone, Debug)]
pub struct GuardArgs {
    /// `<data dir>/postmaster.pid`: names the postmaster to guard (read once, at start).
    pub pid_file: PathBuf,
    /// Where the daemon publishes the deadline.
    pub deadline_file: PathBuf,
    /// Where the guard says who it is.
    pub guard_pid_file: PathBuf,
    /// The VIP to remove when the guard fires (`address/prefix` and interface), if one is
    /// configured.
    pub vip: Option<(String, String)>,
}

/// The fence guard's loop: guards the postmaster that `pid_file` names until it exits. Every
/// [`GUARD_POLL`] it reads the deadline file; a deadline for that postmaster that has passed
/// makes it send SIGQUIT once (per deadline). A missing file, `none`, or a deadline for
/// another postmaster leaves it idle. It never signals any other process.
pub fn run_guard(args: &GuardArgs) -> Result<(), GuardError> {
    let postmaster = Proc::from_pid_file(&args.pid_file).ok_or_else(|| GuardError::NoPostmaster {
        path: args.pid_file.clone(),
    })?;
    let pids = GuardPidFile::new(&args.guard_pid_file);
    if let Some(other) = pids.guard_of(postmaster) {
        eprintln!(
            "pgwarden fence-guard: postmaster {} is already guarded by pid {}",
            postmaster.pid, other.pid
        );
        return Ok(());
    }
    let me = Proc::of(std::process::id() as i32).ok_or_else(|| GuardError::NoPostmaster {
        path: PathBuf::from("/proc/self/stat"),
    })?;
    pids.write(me, postmaster).map_err(|source| GuardError::PidFile {
        path: args.guard_pid_file.clone(),
        source,
    })?;
    let file = DeadlineFile::new(&args.deadline_file);
    let mut fired_for = None;
    while postmaster.is_alive() {
        if let Some(d) = file.read().filter(|d| d.target == postmaster) {
            if fired_for != Some(d.at) && mono_now() >= d.at {
                fired_for = Some(d.at);
                let sent = postmaster.quit();
                let late = Duration::from_nanos(mono_now().saturating_sub(d.at));
                eprintln!(
                    "pgwarden fence-guard: the leader lease ran out with no daemon renewing it; SIGQUIT to postmaster {} {} ({late:?} after the deadline)",
                    postmaster.pid,
                    if sent { "sent" } else { "not sent (gone)" },
                );
                if let Some((address, interface)) = &args.vip {
                    guard_remove_vip(address, interface);
                }
            }
        }
        std::thread::sleep(GUARD_POLL);
    }
    // The postmaster is gone, but a VIP stays on the interface without it. A living daemon
    // publishes another deadline or `none` within moments (and removes the address itself);
    // a dead one (the node's processes were killed together) leaves this deadline, so the
    // guard removes the address when it passes, before another member can take the key.
    if let Some((address, interface)) = &args.vip {
        while let Some(d) = file.read().filter(|d| d.target == postmaster) {
            if mono_now() >= d.at {
                if fired_for != Some(d.at) {
                    guard_remove_vip(address, interface);
                }
                break;
            }
            std::thread::sleep(GUARD_POLL);
        }
    }
    pids.remove_if(me);
    Ok(())
}

/// The guard's removal of the VIP: the address goes with the fence even without a daemon.
fn guard_remove_vip(address: &str, interface: &str) {
    let cfg = crate::vip::VipConfig {
        address: Some(address.into()),
        interface: Some(interface.into()),
        ..Default::default()
    };
    let result = match cfg.spec() {
        Ok(Some(spec)) => crate::vip::VipDriver::remove(&crate::vip::netlink::NetlinkDriver, &spec)
            .map_err(|e| pgwarden_raft::error_chain(&e)),
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(true) => eprintln!("pgwarden fence-guard: VIP {address} removed from {interface}"),
        Ok(false) => {}
        Err(e) => eprintln!("pgwarden fence-guard: VIP {address} not removed: {e}"),
    }
}

/// Where a member keeps the guard's files: in the daemon's own state directory (the Raft data
/// directory), never in PGDATA, which base backups and pg_rewind copy to other members.
#[derive(Clone, Debug)]
pub struct FenceFiles {
    /// The deadline the daemon publishes.
    pub deadline: DeadlineFile,
    /// The running guard's pid file.
    pub guard_pids: GuardPidFile,
}

impl FenceFiles {
    /// The files in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        FenceFiles {
            deadline: DeadlineFile::new(state_dir.join("fence-deadline")),
            guard_pids: GuardPidFile::new(state_dir.join("fence-guard.pid")),
        }
    }
}

/// Keeps a fence guard next to every running postmaster, until `shutdown`: every
/// [`FOLLOW_POSTMASTER`], a postmaster without a live guard gets one (`program fence-guard …`, in its own process
/// group so that it outlives the daemon, as the postmaster does). A guard left by a previous
/// daemon is kept: it is found through the guard pid file.
pub async fn keep_guards<P: PgControl>(
    pg: Arc<P>,
    program: PathBuf,
    data_dir: PathBuf,
    files: FenceFiles,
    vip: crate::vip::Vip,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(FOLLOW_POSTMASTER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let PostmasterState::Running { pid } = pg.probe() else {
            continue;
        };
        let Some(postmaster) = Proc::postmaster(pid) else {
            continue;
        };
        if files.guard_pids.guard_of(postmaster).is_some() {
            continue;
        }
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg("fence-guard")
            .arg("--pid-file")
            .arg(data_dir.join("postmaster.pid"))
            .arg("--deadline-file")
            .arg(files.deadline.path())
            .arg("--guard-pid-file")
            .arg(files.guard_pids.path())
            // The VIP as configured now; a reload that changes it reaches a guard started later.
            .args(vip.guard_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its one line, if it ever fires, goes where the daemon's log goes.
            .stderr(Stdio::inherit())
            .kill_on_drop(false)
            .process_group(0);
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(guard = child.id(), postmaster = pid, "fence guard started");
                // Reaped here while the daemon lives; init reaps it afterwards.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                // Give it a moment to write its pid file, so the next look does not start
                // a second one.
                for _ in 0..20 {
                    if files.guard_pids.guard_of(postmaster).is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, program = %program.display(), "cannot start the fence guard")
            }
        }
    }
}

/// Publishes every change of the lease's deadline (as the REST state carries it) into the
/// deadline file, with the postmaster it applies to, until the state's sender is gone; while
/// a deadline is known, a change of postmaster (a restart) is published as well, so the new
/// postmaster's guard holds it to the same deadline, and stops it at once if that deadline has
/// already passed. The state at start is not written: a restarted daemon leaves its
/// predecessor's deadline in place until its own first refresh (or forget), so the guard keeps
/// that deadline meanwhile. Writes go to the blocking pool: a stalled state directory delays
/// the next publication (the guard then fires on the older, earlier deadline) but never a
/// runtime worker.
pub async fn publish_deadlines<P: PgControl + 'static>(
    mut status: watch::Receiver<NodeStatus>,
    pg: Arc<P>,
    file: DeadlineFile,
) {
    let postmaster = || match pg.probe() {
        PostmasterState::Running { pid } => Proc::postmaster(pid),
        _ => None,
    };
    let mut last = status.borrow().lease_until;
    let mut last_target = last.and_then(|_| postmaster());
    let mut tick = tokio::time::interval(FOLLOW_POSTMASTER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = status.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let until = status.borrow_and_update().lease_until;
        let target = until.and_then(|_| postmaster());
        if until == last && target == last_target {
            continue;
        }
        last = until;
        last_target = target;
        let d = until.zip(target).map(|(u, target)| Deadline {
            target,
            at: mono_at(u),
        });
        let f = file.clone();
        match tokio::task::spawn_blocking(move || f.write(d)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, file = %file.path().display(), "cannot publish the lease deadline for the fence guard")
            }
            Err(e) => tracing::warn!(error = %e, "publishing the lease deadline"),
        }
    }
}

#[cfg(test)]
#[path = "deadman_tests.rs"]
pub(crate) mod tests;
