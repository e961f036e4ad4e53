//! Child processes: PostgreSQL's tools and the user's scripts (replica methods, `post_bootstrap`,
//! callbacks), all spawned here with a clean environment, closed stdin, captured output, the
//! right user, a time limit on every wait, and secrets passed through private files only.
//!
//! It owns how a child is spawned, never what it is for: the PostgreSQL manager and the HA
//! loop's callbacks decide which program runs and what its result means. Errors are the
//! PostgreSQL manager's [`Error`] (its tools were the first and are still most of the
//! children), which is why this module sits inside `postgres`: at the top level it would
//! import `postgres` and be imported by it.

use super::{Error, Result};
use nix::unistd::{Gid, Uid};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;

/// Longest stderr kept in an error: enough for PostgreSQL's FATAL/HINT lines, bounded so a chatty
/// tool cannot blow up a log line.
const STDERR_KEEP: usize = 4000;

/// The uid/gid every PostgreSQL child runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChildIds {
    pub uid: Uid,
    pub gid: Gid,
    /// Whether we switch to these ids when spawning (true only when we are root).
    pub switch: bool,
}

impl ChildIds {
    /// Resolves who children run as: `run_as` when we are root, else ourselves.
    pub fn resolve(run_as: Option<&str>) -> Result<Self> {
        let me = Uid::effective();
        if !me.is_root() {
            return Ok(ChildIds {
                uid: me,
                gid: Gid::effective(),
                switch: false,
            });
        }
        let name = run_as.ok_or(Error::RootWithoutRunAs)?;
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| Error::NoSuchUser {
                user: name.to_owned(),
            })?;
        Ok(ChildIds {
            uid: user.uid,
            gid: user.gid,
            switch: true,
        })
    }

    /// Makes `path` owned by the child user (no-op unless we switch users).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if self.switch {
            nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| Error::Io {
                operation: "change the owner of",
                path: path.to_owned(),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Fails unless `path` is owned by the child user: PostgreSQL itself refuses such a data
    /// directory, and we must not chown a directory somebody else owns.
    pub fn check_owner(&self, path: &Path) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(Error::io("inspect", path))?;
        if meta.uid() != self.uid.as_raw() {
            return Err(Error::DataDirOwner {
                path: path.to_owned(),
                owner: meta.uid(),
                expected: self.uid.as_raw(),
            });
        }
        Ok(())
    }
}

/// Builds and runs commands for PostgreSQL's tools and configured scripts.
#[derive(Clone, Debug)]
pub(crate) struct Spawner {
    pub bin_dir: PathBuf,
    pub ids: ChildIds,
}

impl Spawner {
    /// A command for one of PostgreSQL's tools, by name, from `bin_dir`. See [`Self::external`].
    pub fn command(&self, tool: &str) -> Command {
        self.external(self.bin_dir.join(tool))
    }

    /// A command for `program` (a configured script: a path, or a name looked up in the child's
    /// PATH, which starts with `bin_dir`), set up by [`clean_command`].
    pub fn external(&self, program: impl AsRef<OsStr>) -> Command {
        clean_command(
            program,
            &format!("{}:/usr/bin:/bin", self.bin_dir.display()),
            &self.ids,
        )
    }

    /// Runs a command to completion within `timeout`; a non-zero exit becomes `ChildFailed` with
    /// the stderr tail.
    pub async fn output(
        &self,
        operation: &'static str,
        mut cmd: Command,
        timeout: Duration,
    ) -> Result<Output> {
        let program = program_name(&cmd);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            operation,
            program: program.clone(),
            source,
        })?;
        // On timeout the future, and with it the child, is dropped: kill_on_drop sends SIGKILL and
        // tokio reaps it in the background.
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(res) => res.map_err(|source| Error::Spawn {
                operation,
                program: program.clone(),
                source,
            })?,
            Err(_) => {
                return Err(Error::ChildTimeout {
                    operation,
                    program,
                    timeout,
                })
            }
        };
        if !out.status.success() {
            return Err(Error::ChildFailed {
                operation,
                program,
                status: out.status.to_string(),
                stderr: tail(&String::from_utf8_lossy(&out.stderr), STDERR_KEEP),
            });
        }
        Ok(out)
    }
}

/// A command for `program` with the environment every child gets: environment cleared except
/// `path` as PATH and a UTF-8 C locale (so messages and initdb's defaults do not depend on the
/// daemon's environment), stdin closed, stdout and stderr piped, cwd `/` (the daemon's cwd may
/// not be readable by the child user), running as `ids`, and killed if the handle is dropped,
/// which is how timeouts end a child.
pub(crate) fn clean_command(program: impl AsRef<OsStr>, path: &str, ids: &ChildIds) -> Command {
    let mut cmd = Command::new(PathBuf::from(program.as_ref()));
    cmd.env_clear()
        .env("PATH", path)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if ids.switch {
        cmd.uid(ids.uid.as_raw()).gid(ids.gid.as_raw());
    }
    cmd
}

/// The program name of a command, for errors.
pub(crate) fn program_name(cmd: &Command) -> String {
    let p = cmd.as_std().get_program();
    Path::new(p)
        .file_name()
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The last `max` bytes of `text` (on a char boundary), trimmed.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

/// A file holding a secret (password file for initdb, passfile for libpq tools): created with
/// mode 0600 before any byte is written, owned by the child user, removed when dropped.
pub(crate) struct SecretFile {
    path: PathBuf,
}

impl SecretFile {
    /// Writes `content` to a new private file in `dir`.
    pub fn create(dir: &Path, prefix: &str, content: &str, ids: &ChildIds) -> Result<Self> {
        let path = dir.join(format!("{prefix}.{:016x}", rand::random::<u64>()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io("create secret file", &path))?;
        let me = SecretFile { path };
        ids.chown(&me.path)?;
        f.write_all(content.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(Error::io("write secret file", &me.path))?;
        Ok(me)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "failed to remove secret file");
        }
    }
}

/// Writes `content` to `path` atomically (temp file + rename), mode `mode`, owned by the child user.
pub(crate) fn write_file_atomic(path: &Path, content: &str, mode: u32, ids: &ChildIds) -> Result<()> {
    let tmp = path.with_extension(format!("pgwarden-tmp-{:08x}", rand::random::<u32>()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(Error::io("create", &tmp))?;
        f.write_all(content.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(Error::io("write", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(Error::io("set permissions of", &tmp))?;
        ids.chown(&tmp)?;
        std::fs::rename(&tmp, path).map_err(Error::io("replace", path))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Splits a configured command line into words (see [`crate::shell::split_words`]).
pub(crate) fn split_command(command: &str) -> Result<Vec<String>> {
    let bad = |why| Error::BadCommand {
        command: command.to_owned(),
        why,
    };
    let words = crate::shell::split_words(command).map_err(bad)?;
    if words.is_empty() {
        return Err(bad("it is empty"));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_command_handles_quotes_and_escapes() {
        assert_eq!(
            split_command(r#"/bin/echo 'a b' "c \"d\"" e\ f"#).unwrap(),
            vec!["/bin/echo", "a b", "c \"d\"", "e f"]
        );
        assert!(split_command("  ").is_err());
        assert!(split_command("a 'b").is_err());
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("  short \n", 100), "short");
        assert_eq!(tail("abcdef", 3), "...def");
    }
}
