//! Checks of the host against the configuration, as Patroni's validator makes them: the files
//! the configuration names can be read, `postgresql.data_dir` is not a file and holds no cluster
//! of another major version than the binaries, and `postgresql.bin_dir` has the programs.
//!
//! Kept apart from loading because they look at this machine: `pgwardenctl` loads the same file
//! on hosts (or as users) for which they mean nothing. `pgwarden --validate-config` and the daemon
//! at start run them. They read files and run `postgres --version`; nothing else.

use super::{Config, ConfigError};
use crate::postgres::{discover, PgVersion};
use std::path::{Path, PathBuf};

impl Config {
    /// Every problem the host has with this configuration, or `Ok`. Each error names its key.
    pub fn check_host(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let files: [(&str, Option<&PathBuf>); 9] = [
            ("restapi.certfile", self.restapi.certfile.as_ref()),
            ("restapi.keyfile", self.restapi.keyfile.as_ref()),
            ("restapi.cafile", self.restapi.cafile.as_ref()),
            ("ctl.certfile", self.ctl.certfile.as_ref()),
            ("ctl.keyfile", self.ctl.keyfile.as_ref()),
            ("ctl.cacert", self.ctl.cacert.as_ref()),
            ("raft.certfile", self.raft.certfile.as_ref()),
            ("raft.keyfile", self.raft.keyfile.as_ref()),
            ("raft.cafile", self.raft.cafile.as_ref()),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                if let Err(e) = std::fs::read(path) {
                    errors.push(ConfigError::Host {
                        key: key.into(),
                        why: format!("cannot read `{}`: {e}", path.display()),
                    });
                }
            }
        }
        // The VIP's interface must exist where the daemon runs (in its network namespace).
        if let Ok(Some(vip)) = self.vip_spec() {
            if let Err(e) = crate::vip::netlink::if_index(&vip.interface) {
                errors.push(ConfigError::Host {
                    key: "vip.interface".into(),
                    why: e.to_string(),
                });
            }
        }
        if let Some(pg) = self.postgresql.as_ref().filter(|_| !self.is_witness()) {
            let bin_dir = match &pg.bin_dir {
                Some(dir) if !dir.is_dir() => {
                    errors.push(ConfigError::Host {
                        key: "postgresql.bin_dir".into(),
                        why: format!("`{}` is not a directory", dir.display()),
                    });
                    None
                }
                Some(dir) => match discover(Some(dir)) {
                    Ok(dir) => Some(dir),
                    Err(e) => {
                        errors.push(ConfigError::Host {
                            key: "postgresql.bin_dir".into(),
                            why: e.to_string(),
                        });
                        None
                    }
                },
                // Not configured: the daemon searches; a host without PostgreSQL (where only
                // the file is checked) is not an error here.
                None => discover(None).ok(),
            };
            if let Err(why) = check_data_dir(&pg.data_dir, bin_dir.as_deref()) {
                errors.push(ConfigError::Host {
                    key: "postgresql.data_dir".into(),
                    why,
                });
            }
        }
        match ConfigError::from_list(errors) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// `data_dir` may be absent, empty or a data directory; if it holds a cluster (`PG_VERSION`),
/// its major version must be the binaries' (PostgreSQL refuses to start otherwise).
fn check_data_dir(data_dir: &Path, bin_dir: Option<&Path>) -> Result<(), String> {
    match std::fs::metadata(data_dir) {
        Ok(m) if !m.is_dir() => {
            return Err(format!("`{}` exists and is not a directory", data_dir.display()))
        }
        Ok(_) => {}
        // Absent: the daemon creates it. Unreadable parents are the daemon's to report.
        Err(_) => return Ok(()),
    }
    let Ok(text) = std::fs::read_to_string(data_dir.join("PG_VERSION")) else {
        return Ok(());
    };
    let cluster = text.trim();
    let Some(bin_dir) = bin_dir else {
        return Ok(());
    };
    let Some(binaries) = binaries_major(bin_dir) else {
        return Ok(());
    };
    if cluster.parse::<u32>().ok() == Some(binaries.major()) || cluster == major_text(&binaries) {
        return Ok(());
    }
    Err(format!(
        "`{}` holds a PostgreSQL {cluster} cluster (PG_VERSION), but the binaries in `{}` are {}: set \
         postgresql.bin_dir to the {cluster} binaries",
        data_dir.display(),
        bin_dir.display(),
        major_text(&binaries)
    ))
}

/// The version of `postgres` in `bin_dir`, or `None` if it cannot be run.
fn binaries_major(bin_dir: &Path) -> Option<PgVersion> {
    let out = std::process::Command::new(bin_dir.join("postgres"))
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    PgVersion::parse(&String::from_utf8_lossy(&out.stdout)).ok()
}

/// The major version as PG_VERSION writes it: `15`, or `9.6` before PostgreSQL 10.
fn major_text(v: &PgVersion) -> String {
    match v.major() {
        m if (10..100).contains(&m) => m.to_string(),
        m => format!("{}.{}", m / 100, m % 100),
    }
}
