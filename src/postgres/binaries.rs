//! Finding PostgreSQL's binaries and the server version.
//!
//! Order: the configured `bin_dir`; else the newest major version among Debian's
//! `/usr/lib/postgresql/<v>/bin` and RHEL's `/usr/pgsql-<v>/bin`; else the first `PATH` entry that
//! has them.

use super::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Tools the manager runs; a directory counts only if it has all of them.
pub const REQUIRED: &[&str] = &[
    "postgres",
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "pg_rewind",
];

/// Package hint shown when nothing is found.
const PACKAGE: &str = "postgresql-15 (Debian/Ubuntu) or postgresql-server (RHEL)";

/// A PostgreSQL server version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PgVersion {
    /// Numeric form as in `server_version_num`: 150018 for 15.18, 90624 for 9.6.24.
    pub num: u32,
    /// The text `postgres --version` printed.
    pub text: String,
}

impl PgVersion {
    /// Major version (15 for 150018; 906 for 9.6).
    pub fn major(&self) -> u32 {
        if self.num >= 100_000 {
            self.num / 10_000
        } else {
            self.num / 100
        }
    }

    /// Parses `postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)`.
    pub fn parse(output: &str) -> Result<Self> {
        let bad = || Error::Unexpected {
            what: "output of postgres --version",
            value: output.trim().to_owned(),
        };
        let word = output
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .ok_or_else(bad)?;
        // Development builds print "16devel" or "16beta1": keep the leading digits of each part.
        let nums: Vec<u32> = word
            .split('.')
            .map(|p| p.chars().take_while(|c| c.is_ascii_digit()).collect::<String>())
            .take_while(|p| !p.is_empty())
            .map(|p| p.parse::<u32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad())?;
        let num = match nums.as_slice() {
            [major, minor, ..] if *major < 10 => {
                major * 10_000 + minor * 100 + nums.get(2).copied().unwrap_or(0)
            }
            [major, minor, ..] => major * 10_000 + minor,
            [major] if *major >= 10 => major * 10_000,
            _ => return Err(bad()),
        };
        Ok(PgVersion {
            num,
            text: output.trim().to_owned(),
        })
    }
}

fn has_all(dir: &Path) -> Option<&'static str> {
    REQUIRED.iter().copied().find(|b| !dir.join(b).is_file())
}

/// Sort key of a version directory name like "15", "9.6".
fn version_key(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map(|m| m.parse().ok()).unwrap_or(Some(0))?;
    Some((major, minor))
}

/// Candidate directories under the standard distribution layouts, newest version first.
fn distro_candidates(debian_root: &Path, rhel_root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<((u32, u32), PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(debian_root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(k) = version_key(&name) {
                found.push((k, e.path().join("bin")));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(rhel_root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(k) = name.strip_prefix("pgsql-").and_then(version_key) {
                found.push((k, e.path().join("bin")));
            }
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// Finds the binary directory (see the module doc for the order).
pub fn discover(bin_dir: Option<&Path>) -> Result<PathBuf> {
    discover_in(
        bin_dir,
        Path::new("/usr/lib/postgresql"),
        Path::new("/"),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`discover`] with the roots injectable, for tests.
pub(crate) fn discover_in(
    bin_dir: Option<&Path>,
    debian_root: &Path,
    rhel_root: &Path,
    path_env: Option<&std::ffi::OsStr>,
) -> Result<PathBuf> {
    if let Some(dir) = bin_dir {
        // A configured directory is used or refused, never second-guessed with a search.
        return match has_all(dir) {
            None => Ok(dir.to_owned()),
            Some(missing) => Err(Error::BinariesNotFound {
                missing: missing.to_owned(),
                searched: format!("`{}` (postgresql.bin_dir)", dir.display()),
                package: PACKAGE,
            }),
        };
    }
    let mut searched = Vec::new();
    let mut candidates = distro_candidates(debian_root, rhel_root);
    if let Some(path) = path_env {
        candidates.extend(std::env::split_paths(path));
    }
    for dir in candidates {
        if has_all(&dir).is_none() {
            return Ok(dir);
        }
        searched.push(format!("`{}`", dir.display()));
    }
    let mut searched = searched.join(", ");
    if !searched.is_empty() {
        searched.push_str(", ");
    }
    searched.push_str(&format!(
        "{}/<version>/bin, {}/pgsql-<version>/bin and PATH",
        debian_root.display(),
        rhel_root.display().to_string().trim_end_matches('/')
    ));
    Err(Error::BinariesNotFound {
        missing: "postgres".to_owned(),
        searched,
        package: PACKAGE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parses_debian_rhel_and_old_formats() {
        let v = PgVersion::parse("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n").unwrap();
        assert_eq!(v.num, 150018);
        assert_eq!(v.major(), 15);
        assert_eq!(
            PgVersion::parse("postgres (PostgreSQL) 9.6.24").unwrap().num,
            90624
        );
        assert_eq!(
            PgVersion::parse("postgres (PostgreSQL) 17devel").unwrap().num,
            170000
        );
        assert!(PgVersion::parse("nonsense").is_err());
    }

    fn fake_bin(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for b in REQUIRED {
            std::fs::write(dir.join(b), "").unwrap();
        }
    }

    #[test]
    fn discovery_prefers_the_newest_distribution_directory() {
        let root = tempfile::tempdir().unwrap();
        let deb = root.path().join("deb");
        let rhel = root.path().join("rhel");
        fake_bin(&deb.join("13/bin"));
        fake_bin(&rhel.join("pgsql-16/bin"));
        fake_bin(&deb.join("9.6/bin"));
        std::fs::create_dir_all(deb.join("17/bin")).unwrap(); // incomplete: skipped
        let got = discover_in(None, &deb, &rhel, None).unwrap();
        assert_eq!(got, rhel.join("pgsql-16/bin"));
    }

    #[test]
    fn discovery_error_lists_places_and_package() {
        let root = tempfile::tempdir().unwrap();
        let err = discover_in(None, &root.path().join("none"), root.path(), None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::BinariesNotFound { .. }));
        assert!(
            msg.contains("postgresql-15") && msg.contains("postgresql-server"),
            "{msg}"
        );
        assert!(msg.contains("PATH"), "{msg}");

        let err = discover_in(Some(root.path()), root.path(), root.path(), None).unwrap_err();
        assert!(err.to_string().contains(&root.path().display().to_string()));
    }
}
