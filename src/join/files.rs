//! The files `init` and `join` write: held in memory until everything they need is known
//! (the join exchange included), then each written to a temporary file beside its final
//! path and renamed into place. A refused join therefore leaves nothing behind, and no file
//! is ever half-written.
//!
//! Owners: run as root, the commands give every file they write to the `postgres` user,
//! the `User=` of the packaged systemd unit, because the daemon reads its keys and
//! credentials and consumes join tokens as that user. Run as another user, the files stay
//! that user's (a daemon run by hand as that user).

use super::JoinError;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The user the written files belong to.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

/// The daemon's user when running as root (`postgres`, as the packaged unit's `User=`), or
/// `None`: keep the caller as owner.
pub fn daemon_owner() -> Result<Option<Owner>, JoinError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(u)) => Ok(Some(Owner {
            uid: u.uid,
            gid: u.gid,
        })),
        _ => Err(JoinError::Usage(
            "run as root, the files are given to the `postgres` user (the packaged unit's User=), \
             but there is no such user: install PostgreSQL (or the pgwarden package) first"
                .into(),
        )),
    }
}

fn chown(path: &Path, owner: Option<Owner>) -> Result<(), JoinError> {
    if let Some(o) = owner {
        nix::unistd::chown(path, Some(o.uid), Some(o.gid))
            .map_err(|e| JoinError::io(path)(std::io::Error::from(e)))?;
    }
    Ok(())
}

/// Creates `dir` (and its parents) if missing; a directory it creates gets `mode` and
/// `owner`. An existing directory is left as it is: it may be shared (/etc).
pub fn create_dir(dir: &Path, mode: u32, owner: Option<Owner>) -> Result<(), JoinError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(JoinError::io(parent))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(JoinError::io(dir)(e)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(JoinError::io(dir))?;
    chown(dir, owner)
}

/// [`create_dir`] with mode 0700.
pub fn create_private_dir(dir: &Path, owner: Option<Owner>) -> Result<(), JoinError> {
    create_dir(dir, 0o700, owner)
}

/// Writes `data` to `path` through a temporary file and a rename, with `mode` from the
/// start (a key is never readable by others, not even for an instant).
pub fn write_now(path: &Path, data: &[u8], mode: u32, owner: Option<Owner>) -> Result<(), JoinError> {
    let tmp = temp_path(path);
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(JoinError::io(&tmp))?;
        f.write_all(data).map_err(JoinError::io(&tmp))?;
        f.sync_all().map_err(JoinError::io(&tmp))?;
        // The umask may have narrowed the mode; set it exactly.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(JoinError::io(&tmp))?;
        chown(&tmp, owner)?;
        std::fs::rename(&tmp, path).map_err(JoinError::io(path))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// The example `/etc/pgwarden/pgwarden.yml` of the packages, byte for byte.
const PACKAGED_EXAMPLE: &str = include_str!("../../packaging/pgwarden.yml");

/// Whether `path` holds the packaged example, unmodified.
pub fn is_packaged_example(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b == PACKAGED_EXAMPLE.as_bytes())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

struct Pending {
    path: PathBuf,
    data: Vec<u8>,
    mode: u32,
}

/// Files to write together, at the end.
pub struct Staged {
    files: Vec<Pending>,
    dirs: Vec<(PathBuf, u32)>,
    owner: Option<Owner>,
    force: bool,
}

impl Staged {
    /// Files for `owner`; `force` allows replacing existing ones.
    pub fn new(owner: Option<Owner>, force: bool) -> Staged {
        Staged {
            files: vec![],
            dirs: vec![],
            owner,
            force,
        }
    }

    /// Refuses early (before any network exchange) if `path` exists and `--force` was not
    /// given: nothing is ever silently replaced. The one exception is the unmodified example
    /// configuration the package installs at the configuration's usual path, which exists on
    /// every freshly installed host and holds nothing of the operator's.
    pub fn check_absent(&self, path: &Path) -> Result<(), JoinError> {
        if !self.force && path.exists() && !is_packaged_example(path) {
            return Err(JoinError::Exists {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// A directory to create (if missing) before the files, with `mode`.
    pub fn dir(&mut self, path: &Path, mode: u32) {
        self.dirs.push((path.to_path_buf(), mode));
    }

    /// A file to write with `mode`.
    pub fn file(&mut self, path: &Path, data: impl Into<Vec<u8>>, mode: u32) -> Result<(), JoinError> {
        self.check_absent(path)?;
        self.files.push(Pending {
            path: path.to_path_buf(),
            data: data.into(),
            mode,
        });
        Ok(())
    }

    /// Writes everything: directories, then every file through a temporary file and a
    /// rename.
    pub fn commit(self) -> Result<(), JoinError> {
        for (d, mode) in &self.dirs {
            create_dir(d, *mode, self.owner)?;
        }
        for f in &self.files {
            if let Some(parent) = f.path.parent() {
                create_dir(parent, 0o750, self.owner)?;
            }
            write_now(&f.path, &f.data, f.mode, self.owner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An existing file is refused without --force, except the packaged example; staged
    /// files get their modes.
    #[test]
    fn existing_files_are_refused_but_the_packaged_example() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("pgwarden.yml");
        std::fs::write(&cfg, PACKAGED_EXAMPLE).unwrap();
        let s = Staged::new(None, false);
        s.check_absent(&cfg).unwrap();
        std::fs::write(&cfg, "scope: mine\n").unwrap();
        assert!(matches!(s.check_absent(&cfg), Err(JoinError::Exists { .. })));
        Staged::new(None, true).check_absent(&cfg).unwrap();
        let mut s = Staged::new(None, false);
        let key = dir.path().join("sub/node.key");
        s.file(&key, "k", 0o600).unwrap();
        s.commit().unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
