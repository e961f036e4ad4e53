//! The postmaster's life: reading `postmaster.pid`, starting the postmaster (with its reaper),
//! stopping it with escalation, reload, promotion, probing for a crash, and adopting a running
//! postmaster after a daemon restart.
//!
//! A postmaster is "known" once we spawned or adopted it; a known pid that vanishes without a
//! stop is a crash. Every wait here has a time limit from [`super::Timeouts`].

use super::error::{Error, Result};
use super::manager::PgManager;
use super::query;
use super::{PostmasterState, StopMode, StopOutcome};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_postgres::Client;

/// How often waits poll: short enough that start/stop feel immediate, long enough to cost nothing.
const POLL: Duration = Duration::from_millis(100);
/// Server log lines put into startup errors.
const LOG_TAIL_LINES: usize = 20;

/// Contents of postmaster.pid that we use.
struct PidFile {
    pid: i32,
    data_dir: PathBuf,
    status: String,
}

fn read_pidfile(data_dir: &Path) -> Result<Option<PidFile>> {
    let path = data_dir.join("postmaster.pid");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path)(e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    // The postmaster writes the file in steps; a file without a pid yet is treated as absent.
    let Some(pid) = lines.first().and_then(|l| l.trim().parse::<i32>().ok()) else {
        return Ok(None);
    };
    Ok(Some(PidFile {
        pid,
        data_dir: PathBuf::from(lines.get(1).map(|s| s.trim()).unwrap_or_default()),
        status: lines.get(7).map(|s| s.trim().to_owned()).unwrap_or_default(),
    }))
}

/// Whether `pid` is a live process. A zombie counts as dead: when the postmaster is not our
/// child, its parent (init) may not have reaped it yet.
fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Whether `pid` is a postmaster working in `data_dir`: its command is postgres and its cwd is
/// the data directory (the postmaster chdirs there). If /proc/<pid>/cwd is unreadable (another
/// user), the command name and the pid file's own data directory line must do.
fn is_postmaster_for(pid: i32, data_dir: &Path) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !matches!(comm.trim(), "postgres" | "postmaster") {
        return false;
    }
    match (
        std::fs::read_link(format!("/proc/{pid}/cwd")),
        std::fs::canonicalize(data_dir),
    ) {
        (Ok(cwd), Ok(dir)) => cwd == dir,
        _ => true,
    }
}

/// Processes whose cwd is `dir`: leftover backends of a killed postmaster still attached to its
/// shared memory, which would make a new postmaster refuse to start.
fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir))
        .filter(|pid| pid_alive(*pid))
        .collect()
}

fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read(path) else {
        return format!("(server log `{}` unreadable)", path.display());
    };
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(16 * 1024)..]).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

impl PgManager {
    /// The pid of the running postmaster, if any: the one we know, else a verified pid file.
    pub(super) fn running_pid(&self) -> Result<Option<i32>> {
        if let Some(pid) = self.inner().pid {
            if pid_alive(pid) {
                return Ok(Some(pid));
            }
        }
        match read_pidfile(self.data_dir())? {
            Some(pf) if pid_alive(pf.pid) && is_postmaster_for(pf.pid, self.data_dir()) => Ok(Some(pf.pid)),
            _ => Ok(None),
        }
    }

    pub(super) fn ensure_stopped(&self, operation: &'static str) -> Result<()> {
        if let Some(pid) = self.running_pid()? {
            tracing::warn!(operation, pid, "refused: the postmaster is running");
            return Err(Error::AlreadyRunning {
                data_dir: self.data_dir().to_owned(),
                pid,
            });
        }
        Ok(())
    }

    fn signal(&self, pid: i32, sig: Signal) -> Result<()> {
        nix::sys::signal::kill(Pid::from_raw(pid), sig).map_err(|source| Error::Signal {
            signal: sig.as_str(),
            pid,
            source,
        })
    }

    fn exited(&self) -> Option<String> {
        self.inner().exited.as_ref().and_then(|rx| rx.borrow().clone())
    }

    fn postmaster_gone(&self, pid: i32) -> bool {
        self.exited().is_some() || !pid_alive(pid)
    }

    /// Opens (creating 0600, owned by the child user) the server log for appending.
    fn open_log(&self) -> Result<std::fs::File> {
        let path = &self.settings.log_file;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(Error::io("open the server log", path))?;
        self.spawner.ids.chown(path)?;
        Ok(f)
    }

    /// Waits until leftover processes of a dead postmaster have left the data directory.
    async fn wait_for_leftovers(&self, deadline: Instant) -> Result<()> {
        loop {
            let left = processes_in(self.data_dir());
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::StartTimeout {
                    data_dir: self.data_dir().to_owned(),
                    timeout: self.settings.timeouts.start,
                    log_tail: format!(
                        "processes of a previous postmaster still run in the data directory: {left:?}"
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn try_select_one(&self) -> bool {
        match self.client().await {
            Ok(c) => query::timed(
                "check the server answers",
                self.settings.timeouts.query,
                c.simple_query("SELECT 1"),
            )
            .await
            .is_ok(),
            Err(_) => false,
        }
    }

    /// Starts the postmaster and waits until it accepts connections.
    pub(super) async fn start_postmaster(&self) -> Result<()> {
        self.check_data_dir()?;
        let s = &self.settings;
        let timeout = s.timeouts.start;
        let deadline = Instant::now() + timeout;
        if let Some(pf) = read_pidfile(self.data_dir())? {
            if pid_alive(pf.pid) && is_postmaster_for(pf.pid, self.data_dir()) {
                return Err(Error::AlreadyRunning {
                    data_dir: self.data_dir().to_owned(),
                    pid: pf.pid,
                });
            }
            tracing::warn!(pid = pf.pid, "stale postmaster.pid: the previous postmaster died");
            self.wait_for_leftovers(deadline).await?;
        }
        let log = self.open_log()?;
        let log2 = log
            .try_clone()
            .map_err(Error::io("duplicate the handle of", &s.log_file))?;
        let mut cmd = self.spawner.command("postgres");
        cmd.args(s.server_config_args())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            // The postmaster must outlive the daemon (a daemon restart adopts it), so it is not
            // killed on drop, and it gets its own process group so a Ctrl-C or a signal sent to
            // the daemon's group does not reach it.
            .kill_on_drop(false)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            operation: "start the postmaster",
            program: "postgres".into(),
            source,
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or_default();
        let (tx, rx) = watch::channel(None);
        // Reaper: waits for the postmaster's exit so it never lingers as a zombie, and tells
        // waits and probes at once.
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(st) => st.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            let _ = tx.send(Some(status));
        });
        {
            let mut inner = self.inner();
            inner.pid = Some(pid);
            inner.exited = Some(rx);
        }
        tracing::info!(pid, data_dir = %s.data_dir.display(), "postmaster spawned");
        loop {
            if let Some(status) = self.exited() {
                self.inner().pid = None;
                return Err(Error::PostmasterDied {
                    data_dir: s.data_dir.clone(),
                    log_tail: format!("(exit: {status})\n{}", log_tail(&s.log_file)),
                });
            }
            let ready = read_pidfile(self.data_dir())?
                .is_some_and(|pf| pf.pid == pid && matches!(pf.status.as_str(), "ready" | "standby"));
            if ready && self.try_select_one().await {
                tracing::info!(pid, "PostgreSQL accepts connections");
                return Ok(());
            }
            if Instant::now() >= deadline {
                // Left running: it may be in a long crash recovery; the caller decides.
                return Err(Error::StartTimeout {
                    data_dir: s.data_dir.clone(),
                    timeout,
                    log_tail: log_tail(&s.log_file),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the postmaster, escalating when a stage times out.
    pub(super) async fn stop_postmaster(&self, mode: StopMode) -> Result<StopOutcome> {
        let Some(pid) = self.running_pid()? else {
            self.inner().pid = None;
            return Ok(StopOutcome::NotRunning);
        };
        // Our own idle connection would hold a smart shutdown forever.
        self.drop_client().await;
        let stages: &[StopMode] = match mode {
            StopMode::Smart => &[StopMode::Smart, StopMode::Fast, StopMode::Immediate],
            StopMode::Fast => &[StopMode::Fast, StopMode::Immediate],
            StopMode::Immediate => &[StopMode::Immediate],
        };
        let timeout = self.settings.timeouts.stop;
        for &stage in stages {
            // PostgreSQL's shutdown signals: SIGTERM smart (wait for clients), SIGINT fast
            // (disconnect clients, checkpoint), SIGQUIT immediate (no checkpoint).
            let sig = match stage {
                StopMode::Smart => Signal::SIGTERM,
                StopMode::Fast => Signal::SIGINT,
                StopMode::Immediate => Signal::SIGQUIT,
            };
            tracing::info!(pid, mode = %stage, "stopping PostgreSQL");
            match self.signal(pid, sig) {
                Ok(()) => {}
                Err(Error::Signal {
                    source: nix::errno::Errno::ESRCH,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if self.postmaster_gone(pid) {
                    let mut inner = self.inner();
                    inner.pid = None;
                    inner.exited = None;
                    tracing::info!(pid, mode = %stage, "PostgreSQL stopped");
                    return Ok(StopOutcome::Stopped { mode: stage });
                }
                tokio::time::sleep(POLL / 2).await;
            }
            tracing::warn!(pid, mode = %stage, ?timeout, "PostgreSQL did not stop in time; escalating");
        }
        Err(Error::StopTimeout { pid, timeout })
    }

    /// Sends SIGHUP to the running postmaster.
    pub(super) async fn reload_postmaster(&self) -> Result<()> {
        let pid = self.running_pid()?.ok_or_else(|| Error::NotRunning {
            data_dir: self.data_dir().to_owned(),
            operation: "reload",
        })?;
        // SIGHUP: the postmaster re-reads its files and forwards the signal to its children.
        self.signal(pid, Signal::SIGHUP)?;
        tracing::info!(pid, "configuration reload requested");
        Ok(())
    }

    /// Promotes a standby and waits for the end of recovery.
    pub(super) async fn promote_standby(&self) -> Result<()> {
        let s = &self.settings;
        let t = s.timeouts.query;
        let c = self.client().await?;
        let in_recovery = |c: Arc<Client>| async move {
            query::timed(
                "check recovery state",
                t,
                c.query_one("SELECT pg_is_in_recovery()", &[]),
            )
            .await?
            .try_get::<_, bool>(0)
            .map_err(|source| Error::Query {
                what: "check recovery state",
                source,
            })
        };
        if !in_recovery(c.clone()).await? {
            return Ok(());
        }
        // wait => false: we wait ourselves, with our own timeout and error.
        query::timed("request promotion", t, c.execute("SELECT pg_promote(false)", &[])).await?;
        tracing::info!("promotion requested");
        let deadline = Instant::now() + s.timeouts.promote;
        while Instant::now() < deadline {
            if !in_recovery(c.clone()).await? {
                tracing::info!("promoted: recovery ended");
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        Err(Error::PromoteTimeout {
            data_dir: s.data_dir.clone(),
            timeout: s.timeouts.promote,
        })
    }

    /// Whether the postmaster runs, is stopped, or crashed.
    pub(super) fn probe_postmaster(&self) -> PostmasterState {
        let known = self.inner().pid;
        if let Some(pid) = known {
            return if self.postmaster_gone(pid) {
                PostmasterState::Crashed { pid }
            } else {
                PostmasterState::Running { pid }
            };
        }
        match read_pidfile(self.data_dir()) {
            Ok(Some(pf)) if pid_alive(pf.pid) && is_postmaster_for(pf.pid, self.data_dir()) => {
                PostmasterState::Running { pid: pf.pid }
            }
            Ok(Some(pf)) => PostmasterState::Crashed { pid: pf.pid },
            Ok(None) => PostmasterState::Stopped,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read postmaster.pid; reporting stopped");
                PostmasterState::Stopped
            }
        }
    }

    /// Takes over a postmaster already running on our data directory.
    pub(super) fn adopt_postmaster(&self) -> Result<Option<i32>> {
        let Some(pf) = read_pidfile(self.data_dir())? else {
            return Ok(None);
        };
        let dir_matches =
            std::fs::canonicalize(&pf.data_dir).ok() == std::fs::canonicalize(self.data_dir()).ok();
        if !(pid_alive(pf.pid) && dir_matches && is_postmaster_for(pf.pid, self.data_dir())) {
            return Ok(None);
        }
        let mut inner = self.inner();
        inner.pid = Some(pf.pid);
        inner.exited = None;
        tracing::info!(pid = pf.pid, "adopted the running postmaster");
        Ok(Some(pf.pid))
    }
}
