//! [`PgManager`]: the real [`PgControl`], driving PostgreSQL's binaries and tokio-postgres.

use super::binaries::{self, PgVersion};
use super::bootstrap::{quote_ident, quote_literal, InitdbOption, REWIND_GRANTS};
use super::clone::{classify, parse_progress, CloneProgress, Failure, ReplicaMethod, Upstream};
use super::conf::{self, ConfigInput, PgRole, BASE_CONF, HEADER};
use super::controldata::ControlData;
use super::error::{Error, Result};
use super::query::{self, LocalStatus, PendingChange, ReplicationRow, Slot, SlotState, WalReceiver};
use super::rewind::{self, RewindDecision};
use super::settings::{Credentials, PgSettings};
use super::{PgControl, PostmasterState, StopMode, StopOutcome};
use crate::process::{program_name, split_command, tail, ChildIds, SecretFile, Spawner};
use crate::types::{Lsn, TimelineId};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio_postgres::Client;

/// How often waits poll: short enough that start/stop feel immediate, long enough to cost nothing.
const POLL: Duration = Duration::from_millis(100);
/// Server log lines put into startup errors.
const LOG_TAIL_LINES: usize = 20;

/// State shared between calls.
#[derive(Default)]
struct Inner {
    /// The postmaster we started or adopted and have not stopped: a crash is this pid vanishing.
    pid: Option<i32>,
    /// Exit status of a postmaster we spawned, filled by its reaper task.
    exited: Option<watch::Receiver<Option<String>>>,
    /// The last configuration written, so synchronous_standby_names can be changed alone.
    last_config: Option<ConfigInput>,
    /// Current synchronous_standby_names override.
    synchronous_standby_names: Option<String>,
    /// The highest timeline this data directory was seen replaying, by system identifier.
    /// Once the upstream is gone a standby no longer reports its walreceiver's timeline,
    /// and the checkpoint's can be several promotions old; a standby never goes back to
    /// an older timeline, so the highest seen stands (Patroni caches it the same way).
    replica_timeline: Option<(u64, TimelineId)>,
}

/// The real PostgreSQL manager for one data directory.
pub struct PgManager {
    settings: PgSettings,
    spawner: Spawner,
    version: PgVersion,
    inner: Mutex<Inner>,
    /// Cached superuser connection over the unix socket; replaced when closed.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
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

fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut rd = std::fs::read_dir(path).map_err(Error::io("list", path))?;
    Ok(rd.next().is_none())
}

/// `YYYYMMDDTHHMMSSZ` for a unix time (UTC), for moved-aside directory names.
fn utc_stamp(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant's algorithm), valid for any date after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn pgpass_line(host: &str, port: u16, creds: &Credentials) -> String {
    format!(
        "{}:{}:*:{}:{}\n",
        conf::escape_pgpass(host),
        port,
        conf::escape_pgpass(&creds.username),
        conf::escape_pgpass(creds.password.as_deref().unwrap_or_default())
    )
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

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain data; the data
        // is still the best knowledge we have.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn data_dir(&self) -> &Path {
        &self.settings.data_dir
    }

    /// Where short-lived password files for tools go: beside the data directory (where the
    /// replication passfile lives, owned by the same user), not in a shared /tmp, so that a
    /// file left by a daemon killed mid-operation is found and removed at the next start.
    fn secret_dir(&self) -> PathBuf {
        self.settings
            .pgpass_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir)
    }

    /// The prefix of this instance's temporary password files (one per data directory, so
    /// two instances sharing a parent directory never remove each other's).
    fn secret_prefix(&self) -> String {
        let base = self
            .data_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("pgwarden-pgpass-{base}")
    }

    /// Removes password files a killed predecessor left behind.
    fn remove_stale_secrets(&self) {
        let prefix = format!("{}.", self.secret_prefix());
        let Ok(entries) = std::fs::read_dir(self.secret_dir()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => {
                        tracing::info!(path = %e.path().display(), "removed a password file left by a previous run")
                    }
                    Err(err) => {
                        tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a stale password file")
                    }
                }
            }
        }
    }

    /// The data directory must exist, belong to the child user and hold a cluster.
    fn check_data_dir(&self) -> Result<()> {
        let dir = self.data_dir();
        if !dir.is_dir() {
            return Err(Error::NotADataDir { path: dir.to_owned() });
        }
        self.spawner.ids.check_owner(dir)?;
        if !dir.join("PG_VERSION").is_file() {
            return Err(Error::NotADataDir { path: dir.to_owned() });
        }
        Ok(())
    }

    /// Prepares an absent or empty data directory for initdb or a clone: created 0700 and owned
    /// by the child user. Existing files or a foreign owner are refused before anything is done.
    fn prepare_empty_data_dir(&self, operation: &'static str) -> Result<()> {
        let dir = self.data_dir();
        if dir.exists() {
            if !is_empty_dir(dir)? {
                return Err(Error::DataDirNotEmpty {
                    path: dir.to_owned(),
                    operation,
                });
            }
            self.spawner.ids.check_owner(dir)?;
        } else {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(Error::io("create", dir))?;
            self.spawner.ids.chown(dir)?;
        }
        Ok(())
    }

    fn local_target(&self) -> String {
        format!(
            "{}/.s.PGSQL.{} as {}",
            self.settings.socket_dir.display(),
            self.settings.port,
            self.settings.superuser.username
        )
    }

    async fn connect(&self, cfg: tokio_postgres::Config, target: String) -> Result<Client> {
        let timeout = self.settings.timeouts.connect;
        let (client, conn) = match tokio::time::timeout(timeout, cfg.connect(tokio_postgres::NoTls)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(source)) => return Err(Error::Connect { target, source }),
            Err(_) => return Err(Error::ConnectTimeout { target, timeout }),
        };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    fn local_config(&self) -> tokio_postgres::Config {
        let s = &self.settings;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&s.socket_dir)
            .port(s.port)
            .user(&s.superuser.username)
            .dbname("postgres")
            .application_name("pgwarden")
            .connect_timeout(s.timeouts.connect);
        if let Some(p) = &s.superuser.password {
            cfg.password(p);
        }
        cfg
    }

    fn remote_config(&self, to: &Upstream, creds: &Credentials) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&to.host)
            .port(to.port)
            .user(&creds.username)
            .dbname("postgres")
            .application_name("pgwarden")
            .connect_timeout(self.settings.timeouts.connect);
        if let Some(p) = &creds.password {
            cfg.password(p);
        }
        cfg
    }

    /// The cached local superuser connection, reconnecting if it closed.
    async fn client(&self) -> Result<Arc<Client>> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(self.connect(self.local_config(), self.local_target()).await?);
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn drop_client(&self) {
        *self.client.lock().await = None;
    }

    /// The pid of the running postmaster, if any: the one we know, else a verified pid file.
    fn running_pid(&self) -> Result<Option<i32>> {
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

    fn render_config(&self, input: &ConfigInput, ssn: Option<&str>) -> (String, Vec<String>) {
        let s = &self.settings;
        let (mut params, ignored) =
            conf::effective_parameters(&input.dcs_parameters, &input.local_parameters);
        params.insert("listen_addresses".into(), s.listen_host.clone());
        params.insert("port".into(), s.port.to_string());
        params.insert(
            "unix_socket_directories".into(),
            s.socket_dir.display().to_string(),
        );
        params.insert("cluster_name".into(), s.scope.clone());
        if let Some(v) = ssn {
            params.insert("synchronous_standby_names".into(), v.to_owned());
        }
        if let Some(t) = input.role.upstream() {
            params.insert(
                "primary_conninfo".into(),
                conf::primary_conninfo(t, &s.replication.username, &s.member, &s.pgpass_file),
            );
            if let Some(slot) = &t.slot {
                params.insert("primary_slot_name".into(), slot.clone());
            }
            params.insert("recovery_target_timeline".into(), "latest".into());
        }
        if matches!(input.role, PgRole::Standby(_)) {
            for (k, v) in &input.recovery {
                let k = k.to_ascii_lowercase();
                if !conf::MANAGED_GUCS.contains(&k.as_str()) && k != "standby_mode" {
                    params.insert(k, v.clone());
                }
            }
        }
        (conf::render_postgresql_conf(&params), ignored)
    }

    /// Makes pgwarden the owner of postgresql.conf: the original becomes postgresql.base.conf
    /// (once; a file that already has our header is never moved).
    fn adopt_base_conf(&self) -> Result<()> {
        let dir = self.data_dir();
        let base = dir.join(BASE_CONF);
        let main = dir.join("postgresql.conf");
        if base.exists() {
            return Ok(());
        }
        let ours = std::fs::read_to_string(&main)
            .map(|t| t.starts_with(HEADER))
            .unwrap_or(false);
        if main.exists() && !ours {
            std::fs::rename(&main, &base).map_err(Error::io("rename to postgresql.base.conf", &main))?;
            tracing::info!(path = %base.display(), "kept the original postgresql.conf as postgresql.base.conf");
        } else {
            crate::process::write_file_atomic(
                &base,
                "# Local settings; pgwarden's postgresql.conf includes this file first.\n",
                0o600,
                &self.spawner.ids,
            )?;
        }
        Ok(())
    }

    fn write_postgresql_conf(&self, input: &ConfigInput, ssn: Option<&str>) -> Result<()> {
        self.adopt_base_conf()?;
        let (text, ignored) = self.render_config(input, ssn);
        if !ignored.is_empty() {
            tracing::warn!(
                ?ignored,
                "parameters ignored: cluster-wide ones come only from the DCS, connection ones from pgwarden's settings"
            );
        }
        crate::process::write_file_atomic(
            &self.data_dir().join("postgresql.conf"),
            &text,
            0o600,
            &self.spawner.ids,
        )
    }

    fn remove_if_exists(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path)(e)),
        }
    }

    async fn run_basebackup(
        &self,
        source: &Upstream,
        passfile: &Path,
        progress: &watch::Sender<CloneProgress>,
    ) -> Result<()> {
        let s = &self.settings;
        let conninfo = [
            ("host", source.host.clone()),
            ("port", source.port.to_string()),
            ("user", s.replication.username.clone()),
            ("application_name", s.member.to_string()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", conf::quote_conninfo(v)))
        .collect::<Vec<_>>()
        .join(" ");
        let mut cmd = self.spawner.command("pg_basebackup");
        cmd.arg("--pgdata")
            .arg(self.data_dir())
            .args([
                "--wal-method=stream",
                "--checkpoint=fast",
                "--progress",
                "--verbose",
                "--no-password",
            ])
            .arg("--dbname")
            .arg(conninfo)
            .env("PGPASSFILE", passfile)
            .stdout(Stdio::null());
        let program = program_name(&cmd);
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            operation: "clone with pg_basebackup",
            program: program.clone(),
            source,
        })?;
        let mut stderr = child.stderr.take();
        let source_addr = source.to_string();
        let run = async {
            // Progress lines end in '\n' when stderr is not a terminal, '\r' when it is; split on both.
            let mut text = String::new();
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            let mut last_logged = None;
            if let Some(err) = stderr.as_mut() {
                loop {
                    let n = err.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    for &b in &buf[..n] {
                        if b == b'\n' || b == b'\r' {
                            let line = String::from_utf8_lossy(&pending).into_owned();
                            pending.clear();
                            if let Some((done, total, pct)) = parse_progress(&line) {
                                progress.send_modify(|p| {
                                    p.done_kb = done;
                                    p.total_kb = total;
                                    p.percent = pct;
                                });
                                if last_logged.is_none_or(|l: u8| pct / 10 > l / 10) {
                                    last_logged = Some(pct);
                                    tracing::info!(source = %source_addr, done_kb = done, total_kb = total, percent = pct, "clone progress");
                                }
                            } else if !line.trim().is_empty() {
                                text.push_str(&line);
                                text.push('\n');
                            }
                        } else {
                            pending.push(b);
                        }
                    }
                }
            }
            (text, child.wait().await)
        };
        let timeout = s.timeouts.clone;
        let (text, status) = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Error::ChildTimeout {
                    operation: "clone with pg_basebackup",
                    program,
                    timeout,
                })
            }
        };
        let status = status.map_err(|source| Error::Spawn {
            operation: "clone with pg_basebackup",
            program: program.clone(),
            source,
        })?;
        if status.success() {
            return Ok(());
        }
        let stderr = tail(&text, 4000);
        Err(match classify(&stderr) {
            Failure::Unreachable => Error::CloneSourceUnreachable {
                source_addr: source.to_string(),
                stderr,
            },
            Failure::Authentication => Error::CloneAuthentication {
                source_addr: source.to_string(),
                user: s.replication.username.clone(),
                stderr,
            },
            Failure::Other => Error::ChildFailed {
                operation: "clone with pg_basebackup",
                program,
                status: status.to_string(),
                stderr,
            },
        })
    }

    async fn run_custom_method(
        &self,
        source: &Upstream,
        command: &str,
        params: &BTreeMap<String, String>,
        passfile: &Path,
    ) -> Result<()> {
        let s = &self.settings;
        let words = split_command(command)?;
        let mut cmd = self.spawner.external(&words[0]);
        cmd.args(&words[1..])
            .arg(format!("--scope={}", s.scope))
            .arg("--role=replica")
            .arg(format!("--datadir={}", s.data_dir.display()))
            .arg(format!(
                "--connstring=postgres://{}@{}:{}/postgres",
                s.replication.username, source.host, source.port
            ))
            .args(params.iter().map(|(k, v)| format!("--{k}={v}")))
            .env("PGPASSFILE", passfile);
        self.spawner
            .output("clone with a custom replica method", cmd, s.timeouts.clone)
            .await?;
        Ok(())
    }

    /// Copies of the configuration files pg_rewind would replace with the source's.
    fn save_config_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        ["postgresql.conf", BASE_CONF, "pg_hba.conf", "pg_ident.conf"]
            .iter()
            .map(|f| self.data_dir().join(f))
            .filter_map(|p| std::fs::read(&p).ok().map(|c| (p, c)))
            .collect()
    }

    fn restore_config_files(&self, saved: &[(PathBuf, Vec<u8>)]) -> Result<()> {
        for (path, content) in saved {
            std::fs::write(path, content).map_err(Error::io("restore", path))?;
            self.spawner.ids.chown(path)?;
        }
        Ok(())
    }

    /// A short-lived superuser connection to the primary's PostgreSQL.
    async fn primary_client(&self, primary: &Upstream) -> Result<Client> {
        let creds = &self.settings.superuser;
        let target = format!("{primary} as {}", creds.username);
        self.connect(self.remote_config(primary, creds), target).await
    }

    /// A short-lived local superuser connection to `database` (logical slots belong to one).
    async fn database_client(&self, database: &str) -> Result<Client> {
        let mut cfg = self.local_config();
        cfg.dbname(database);
        let target = format!("{} database {database}", self.local_target());
        self.connect(cfg, target).await
    }

    async fn primary_timeline(&self, primary: &Upstream) -> Result<query::PrimaryTimeline> {
        let c = self.primary_client(primary).await?;
        query::primary_timeline(&c, self.settings.timeouts.query).await
    }

    fn ensure_stopped(&self, operation: &'static str) -> Result<()> {
        if let Some(pid) = self.running_pid()? {
            tracing::warn!(operation, pid, "refused: the postmaster is running");
            return Err(Error::AlreadyRunning {
                data_dir: self.data_dir().to_owned(),
                pid,
            });
        }
        Ok(())
    }
}

impl PgControl for PgManager {
    fn version(&self) -> PgVersion {
        self.version.clone()
    }

    async fn initdb(&self, options: &[InitdbOption]) -> Result<()> {
        // Validate everything before touching the disk.
        let args = options
            .iter()
            .map(InitdbOption::to_arg)
            .collect::<Result<Vec<_>>>()?;
        self.prepare_empty_data_dir("run initdb")?;
        let s = &self.settings;
        let pwfile = match &s.superuser.password {
            Some(p) => Some(SecretFile::create(
                &self.secret_dir(),
                "pgwarden-initdb-pw",
                &format!("{p}\n"),
                &self.spawner.ids,
            )?),
            None => None,
        };
        let mut cmd = self.spawner.command("initdb");
        cmd.arg("--pgdata")
            .arg(&s.data_dir)
            .arg(format!("--username={}", s.superuser.username));
        if let Some(f) = &pwfile {
            cmd.arg(format!("--pwfile={}", f.path().display()));
        }
        cmd.args(&args);
        // Not cancelled early on purpose: a killed initdb leaves a half-made directory, which
        // the next initdb refuses; the timeout is only a last resort.
        self.spawner
            .output("create the cluster with initdb", cmd, s.timeouts.initdb)
            .await?;
        tracing::info!(data_dir = %s.data_dir.display(), "initdb done");
        Ok(())
    }

    async fn create_roles(&self) -> Result<()> {
        let s = &self.settings;
        let t = s.timeouts.query;
        let c = self.client().await?;
        // Keep passwords out of the server log whatever the logging settings are.
        query::timed(
            "silence statement logging",
            t,
            c.batch_execute("SET log_statement TO 'none'; SET log_min_duration_statement TO -1; SET log_min_error_statement TO 'log'"),
        )
        .await?;
        let ensure = |creds: &Credentials, attrs: &'static str| {
            let password = creds
                .password
                .as_deref()
                .map(|p| format!(" PASSWORD {}", quote_literal(p)))
                .unwrap_or_default();
            let name = quote_ident(&creds.username);
            let c = c.clone();
            let user = creds.username.clone();
            async move {
                let exists = query::timed(
                    "look up a role",
                    t,
                    c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user]),
                )
                .await?
                .is_some();
                let verb = if exists { "ALTER" } else { "CREATE" };
                query::timed(
                    "create or update a role",
                    t,
                    c.batch_execute(&format!("{verb} ROLE {name} WITH {attrs}{password}")),
                )
                .await?;
                tracing::info!(role = %user, created = !exists, "role ready");
                Ok::<_, Error>(())
            }
        };
        ensure(&s.superuser, "SUPERUSER LOGIN").await?;
        ensure(&s.replication, "LOGIN REPLICATION").await?;
        if let Some(rw) = &s.rewind {
            if rw.username != s.superuser.username {
                ensure(rw, "LOGIN").await?;
                for f in REWIND_GRANTS {
                    let sql = format!("GRANT EXECUTE ON FUNCTION {f} TO {}", quote_ident(&rw.username));
                    query::timed("grant pg_rewind functions", t, c.batch_execute(&sql)).await?;
                }
            }
        }
        Ok(())
    }

    async fn run_post_bootstrap(&self, command: &str) -> Result<()> {
        let s = &self.settings;
        let words = split_command(command)?;
        let pass = SecretFile::create(
            &self.secret_dir(),
            &self.secret_prefix(),
            &pgpass_line("*", s.port, &s.superuser),
            &self.spawner.ids,
        )?;
        let mut cmd = self.spawner.external(&words[0]);
        cmd.args(&words[1..])
            .arg(format!(
                "postgres://{}@{}:{}/postgres",
                s.superuser.username, s.listen_host, s.port
            ))
            .env("PGPASSFILE", pass.path());
        self.spawner
            .output("run the post_bootstrap command", cmd, s.timeouts.initdb)
            .await?;
        tracing::info!("post_bootstrap command done");
        Ok(())
    }

    async fn write_config(&self, input: &ConfigInput) -> Result<()> {
        self.check_data_dir()?;
        let s = &self.settings;
        let dir = self.data_dir();
        // A standby never waits for standbys: a former primary's list is dropped here.
        let ssn = {
            let mut inner = self.inner();
            if !matches!(input.role, PgRole::Primary) {
                inner.synchronous_standby_names = None;
            }
            inner.synchronous_standby_names.clone()
        };
        self.write_postgresql_conf(input, ssn.as_deref())?;
        if !input.pg_hba.is_empty() {
            crate::process::write_file_atomic(
                &dir.join("pg_hba.conf"),
                &conf::render_pg_hba(&input.pg_hba),
                0o600,
                &self.spawner.ids,
            )?;
        }
        match &input.role {
            PgRole::Standby(upstream) => {
                if let Some(t) = upstream {
                    crate::process::write_file_atomic(
                        &s.pgpass_file,
                        &pgpass_line(&t.host, t.port, &s.replication),
                        0o600,
                        &self.spawner.ids,
                    )?;
                }
                crate::process::write_file_atomic(&dir.join("standby.signal"), "", 0o600, &self.spawner.ids)?;
                Self::remove_if_exists(&dir.join("recovery.signal"))?;
            }
            PgRole::Primary => {
                Self::remove_if_exists(&dir.join("standby.signal"))?;
                Self::remove_if_exists(&dir.join("recovery.signal"))?;
            }
        }
        self.inner().last_config = Some(input.clone());
        tracing::info!(
            standby = !matches!(input.role, PgRole::Primary),
            upstream = ?input.role.upstream().map(|t| format!("{}:{}", t.host, t.port)),
            "configuration written"
        );
        Ok(())
    }

    async fn start(&self) -> Result<()> {
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
        cmd.arg("-D")
            .arg(&s.data_dir)
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

    async fn stop(&self, mode: StopMode) -> Result<StopOutcome> {
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

    async fn restart(&self, mode: StopMode) -> Result<()> {
        self.stop(mode).await?;
        self.start().await
    }

    async fn reload(&self) -> Result<()> {
        let pid = self.running_pid()?.ok_or_else(|| Error::NotRunning {
            data_dir: self.data_dir().to_owned(),
            operation: "reload",
        })?;
        // SIGHUP: the postmaster re-reads its files and forwards the signal to its children.
        self.signal(pid, Signal::SIGHUP)?;
        tracing::info!(pid, "configuration reload requested");
        Ok(())
    }

    async fn promote(&self) -> Result<()> {
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

    fn probe(&self) -> PostmasterState {
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

    fn adopt(&self) -> Result<Option<i32>> {
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

    async fn controldata(&self) -> Result<ControlData> {
        let mut cmd = self.spawner.command("pg_controldata");
        cmd.arg(self.data_dir());
        let out = self
            .spawner
            .output("read pg_control", cmd, self.settings.timeouts.tool)
            .await?;
        ControlData::parse(&String::from_utf8_lossy(&out.stdout))
    }

    async fn crash_recovery(&self) -> Result<bool> {
        self.check_data_dir()?;
        self.ensure_stopped("crash recovery")?;
        let cd = self.controldata().await?;
        if cd.clean_shutdown() {
            return Ok(false);
        }
        tracing::info!(state = %cd.state, "unclean shutdown: running single-user crash recovery");
        // Single-user mode refuses standby mode: move the signal files aside for the run.
        let dir = self.data_dir().to_owned();
        let mut moved = Vec::new();
        for f in ["standby.signal", "recovery.signal"] {
            let p = dir.join(f);
            if p.exists() {
                let aside = dir.join(format!("{f}.pgwarden-saved"));
                std::fs::rename(&p, &aside).map_err(Error::io("move aside", &p))?;
                moved.push((aside, p));
            }
        }
        let mut cmd = self.spawner.command("postgres");
        // stdin is closed (the spawner's default): single-user mode reads EOF, finishes recovery,
        // writes a shutdown checkpoint and exits.
        cmd.arg("--single")
            .arg("-D")
            .arg(&dir)
            // Not max_replication_slots=0: a former primary keeps a slot per member, and
            // PostgreSQL refuses to start with slots on disk and none allowed.
            .args(["-c", "archive_mode=off"])
            .arg("template1");
        let res = self
            .spawner
            .output(
                "run single-user crash recovery",
                cmd,
                self.settings.timeouts.crash_recovery,
            )
            .await;
        for (aside, orig) in moved {
            std::fs::rename(&aside, &orig).map_err(Error::io("restore", &orig))?;
        }
        res?;
        tracing::info!("single-user crash recovery done");
        Ok(true)
    }

    async fn clone_from(
        &self,
        source: &Upstream,
        methods: &[ReplicaMethod],
        progress: &watch::Sender<CloneProgress>,
    ) -> Result<()> {
        self.prepare_empty_data_dir("clone")?;
        let s = &self.settings;
        let pass = SecretFile::create(
            &self.secret_dir(),
            &self.secret_prefix(),
            &pgpass_line(&source.host, source.port, &s.replication),
            &self.spawner.ids,
        )?;
        let mut last = None;
        'methods: for method in methods {
            let tries = match method {
                ReplicaMethod::Basebackup { max_tries } => (*max_tries).max(1),
                ReplicaMethod::Custom { .. } => 1,
            };
            for attempt in 1..=tries {
                progress.send_replace(CloneProgress {
                    method: method.name().to_owned(),
                    attempt,
                    ..Default::default()
                });
                tracing::info!(source = %source, method = method.name(), attempt, "cloning");
                let res = match method {
                    ReplicaMethod::Basebackup { .. } => {
                        self.run_basebackup(source, pass.path(), progress).await
                    }
                    ReplicaMethod::Custom { command, params, .. } => {
                        self.run_custom_method(source, command, params, pass.path()).await
                    }
                };
                match res {
                    Ok(()) => {
                        progress.send_modify(|p| p.finished = true);
                        tracing::info!(source = %source, method = method.name(), "clone finished");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(source = %source, method = method.name(), attempt, error = %e, "clone attempt failed");
                        let dirty = !is_empty_dir(self.data_dir()).unwrap_or(false);
                        last = Some(e);
                        if dirty {
                            // We never delete a data directory, even a partial one: stop here.
                            break 'methods;
                        }
                        if attempt < tries {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        }
        Err(Error::CloneFailed {
            data_dir: s.data_dir.clone(),
            source_addr: source.to_string(),
            source: Box::new(last.unwrap_or(Error::BadCommand {
                command: String::new(),
                why: "no replica method configured",
            })),
        })
    }

    async fn check_rewind(&self, primary: &Upstream) -> Result<RewindDecision> {
        self.ensure_stopped("check for divergence")?;
        let mut cd = self.controldata().await?;
        if cd.needs_crash_recovery() && self.crash_recovery().await? {
            tracing::info!("crash recovery done before the divergence check");
            cd = self.controldata().await?;
        }
        let (local_tl, local_lsn) = cd.local_position();
        let p = self.primary_timeline(primary).await?;
        if p.in_recovery {
            return Err(Error::RewindPrecondition {
                data_dir: self.data_dir().to_owned(),
                why: format!("{primary} is in recovery, not a primary"),
            });
        }
        let history = match &p.history {
            Some(h) => rewind::parse_history(h)?,
            None => Vec::new(),
        };
        let decision = rewind::decide(local_tl, local_lsn, cd.was_standby(), p.timeline, &history);
        tracing::info!(
            local_timeline = local_tl.0,
            local_lsn = %local_lsn,
            primary_timeline = p.timeline.0,
            ?decision,
            "divergence check"
        );
        Ok(decision)
    }

    async fn rewind(&self, primary: &Upstream) -> Result<()> {
        self.check_data_dir()?;
        self.ensure_stopped("rewind")?;
        let s = &self.settings;
        let data_dir = s.data_dir.clone();
        self.crash_recovery().await?;
        let cd = self.controldata().await?;
        if !cd.rewindable() {
            return Err(Error::RewindPrecondition {
                data_dir,
                why: "neither wal_log_hints nor data checksums are on".into(),
            });
        }
        let p = self.primary_timeline(primary).await?;
        if p.in_recovery || p.checkpoint_timeline != p.timeline {
            return Err(Error::RewindPrecondition {
                data_dir,
                why: format!(
                    "{primary} has not finished its post-promote checkpoint (checkpoint timeline {}, current {})",
                    p.checkpoint_timeline, p.timeline
                ),
            });
        }
        let creds = s.rewind_credentials();
        let pass = SecretFile::create(
            &self.secret_dir(),
            &self.secret_prefix(),
            &pgpass_line(&primary.host, primary.port, creds),
            &self.spawner.ids,
        )?;
        let saved = self.save_config_files();
        let source_server = [
            ("host", primary.host.clone()),
            ("port", primary.port.to_string()),
            ("user", creds.username.clone()),
            ("dbname", "postgres".to_owned()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", conf::quote_conninfo(v)))
        .collect::<Vec<_>>()
        .join(" ");
        let mut cmd = self.spawner.command("pg_rewind");
        cmd.arg("--target-pgdata")
            .arg(&data_dir)
            .arg("--source-server")
            .arg(source_server)
            .env("PGPASSFILE", pass.path());
        tracing::info!(source = %primary, "running pg_rewind");
        match self
            .spawner
            .output("rewind with pg_rewind", cmd, s.timeouts.rewind)
            .await
        {
            Ok(_) => {
                // pg_rewind copies the source's configuration files; ours describe this member.
                self.restore_config_files(&saved)?;
                tracing::info!(source = %primary, "pg_rewind done");
                Ok(())
            }
            Err(e) => {
                let moved_to = self.move_data_dir_aside()?;
                Err(Error::RewindFailed {
                    data_dir,
                    moved_to,
                    source: Box::new(e),
                })
            }
        }
    }

    fn move_data_dir_aside(&self) -> Result<PathBuf> {
        self.ensure_stopped("move the data directory aside")?;
        self.inner().replica_timeline = None;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let dir = self.data_dir();
        let mut to = PathBuf::from(format!("{}.failed-{}", dir.display(), utc_stamp(secs)));
        let mut n = 1;
        while to.exists() {
            to = PathBuf::from(format!("{}.failed-{}-{n}", dir.display(), utc_stamp(secs)));
            n += 1;
        }
        std::fs::rename(dir, &to).map_err(Error::io("move aside the data directory", dir))?;
        tracing::warn!(from = %dir.display(), to = %to.display(), "data directory moved aside");
        Ok(to)
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
        let c = self.primary_client(primary).await?;
        query::logical_slot_states(&c, self.settings.timeouts.query, names).await
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
        self.ensure_stopped("install replication slot copies")?;
        let replslot = self.data_dir().join("pg_replslot");
        for slot in slots {
            // The name becomes a directory name: only what PostgreSQL allows in slot names.
            let valid = !slot.name.is_empty()
                && slot.name.len() < 64
                && slot
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(Error::Unexpected {
                    what: "replication slot name from the primary",
                    value: slot.name.clone(),
                });
            }
            // Written beside, then renamed over any older copy, so a crash leaves either
            // the old copy or the new one (PostgreSQL ignores `*.tmp` slot directories).
            let dir = replslot.join(&slot.name);
            let tmp = replslot.join(format!("{}.tmp", slot.name));
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(Error::io("remove", &tmp))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .map_err(Error::io("create", &tmp))?;
            self.spawner.ids.chown(&tmp)?;
            let file = tmp.join("state");
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&file)
                    .map_err(Error::io("create", &file))?;
                f.write_all(&slot.state).map_err(Error::io("write", &file))?;
                f.sync_all().map_err(Error::io("sync", &file))?;
            }
            self.spawner.ids.chown(&file)?;
            sync_dir(&tmp)?;
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))?;
            }
            std::fs::rename(&tmp, &dir).map_err(Error::io("rename", &tmp))?;
            sync_dir(&dir)?;
            tracing::info!(slot = %slot.name, database = %slot.database, "installed a copy of the primary's logical slot");
        }
        sync_dir(&replslot)
    }

    async fn set_synchronous_standby_names(&self, value: Option<&str>) -> Result<()> {
        let input = {
            let mut inner = self.inner();
            inner.synchronous_standby_names = value.map(str::to_owned);
            inner.last_config.clone().unwrap_or_default()
        };
        self.check_data_dir()?;
        self.write_postgresql_conf(&input, value)?;
        tracing::info!(synchronous_standby_names = ?value, "synchronous_standby_names set");
        // Not running: the value is in postgresql.conf for the next start.
        if self.running_pid()?.is_some() {
            self.reload().await
        } else {
            Ok(())
        }
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

/// Makes a directory's entries durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_formats_known_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_785_000_000), "20260725T172000Z");
    }

    #[test]
    fn pgpass_lines_escape_fields() {
        let c = Credentials::new("re:pl", r"p\w");
        assert_eq!(pgpass_line("h", 5, &c), "h:5:*:re\\:pl:p\\\\w\n");
    }
}
