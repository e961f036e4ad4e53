//! The data directory: checking and preparing it, initdb, pg_controldata, single-user crash
//! recovery, moving a directory aside (it is never deleted), and the private directory where
//! short-lived password files for tools go.

use super::bootstrap::InitdbOption;
use super::controldata::ControlData;
use super::error::{Error, Result};
use super::manager::PgManager;
use super::process::SecretFile;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub(super) fn is_empty_dir(path: &Path) -> Result<bool> {
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

/// Makes a directory's entries durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync", dir))
}

impl PgManager {
    /// Where short-lived password files for tools go: beside the data directory (where the
    /// replication passfile lives, owned by the same user), not in a shared /tmp, so that a
    /// file left by a daemon killed mid-operation is found and removed at the next start.
    pub(super) fn secret_dir(&self) -> PathBuf {
        self.settings
            .pgpass_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir)
    }

    /// The prefix of this instance's temporary password files (one per data directory, so
    /// two instances sharing a parent directory never remove each other's).
    pub(super) fn secret_prefix(&self) -> String {
        let base = self
            .data_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("pgwarden-pgpass-{base}")
    }

    /// Removes password files a killed predecessor left behind.
    pub(super) fn remove_stale_secrets(&self) {
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

    /// Whether the data directory holds a cluster; an I/O error other than "not found" is an
    /// error, not a "no".
    pub(super) fn data_dir_has_cluster(&self) -> Result<bool> {
        let marker = self.data_dir().join("PG_VERSION");
        match std::fs::metadata(&marker) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::Io {
                operation: "look for PG_VERSION in",
                path: self.data_dir().to_owned(),
                source,
            }),
        }
    }

    /// The data directory must exist, belong to the child user and hold a cluster.
    pub(super) fn check_data_dir(&self) -> Result<()> {
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
    pub(super) fn prepare_empty_data_dir(&self, operation: &'static str) -> Result<()> {
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

    /// Creates a new cluster in the absent or empty data directory.
    pub(super) async fn run_initdb(&self, options: &[InitdbOption]) -> Result<()> {
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

    /// Runs pg_controldata on the data directory.
    pub(super) async fn read_controldata(&self) -> Result<ControlData> {
        let mut cmd = self.spawner.command("pg_controldata");
        cmd.arg(self.data_dir());
        let out = self
            .spawner
            .output("read pg_control", cmd, self.settings.timeouts.tool)
            .await?;
        ControlData::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Replays WAL in single-user mode after an unclean shutdown; returns whether it ran.
    pub(super) async fn run_crash_recovery(&self) -> Result<bool> {
        self.check_data_dir()?;
        self.ensure_stopped("crash recovery")?;
        let cd = self.read_controldata().await?;
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
            .args(self.settings.server_config_args())
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

    /// Renames the data directory with a timestamp suffix; returns the new path.
    pub(super) fn move_aside(&self) -> Result<PathBuf> {
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
}
