//! The DCS backup file (`pgwardenctl dcs snapshot save`, `pgwarden restore-dcs`): one
//! consistent state of a cluster's keys with the Raft index it was read at.
//!
//! Layout: a header line of JSON (format name, version, the body's length and FNV-1a 64
//! checksum), then the body, the [`DcsBackup`] as JSON. The checksum covers the body's
//! exact bytes, so a truncated or damaged file is refused before anything is parsed, and a
//! reader names the file and what is wrong with it. Written atomically: a temporary file
//! in the same directory, fsync, rename over the target, fsync of the directory; an
//! existing file is replaced only when the caller says so.

use crate::KeyValue;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format name in the header.
pub const FORMAT: &str = "pgwarden-dcs-snapshot";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// A backup of a cluster's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcsBackup {
    /// The cluster's scope.
    pub scope: String,
    /// Its key prefix, `<namespace><scope>/`.
    pub prefix: String,
    /// The Raft index of the state read.
    pub revision: u64,
    /// When it was taken (RFC 3339), for the operator.
    pub taken_at: String,
    /// Every key under the prefix, with revisions and TTLs.
    pub keys: Vec<KeyValue>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// The body's length in bytes.
    bytes: u64,
    /// FNV-1a 64 of the body, hex.
    fnv1a64: String,
}

/// A backup file that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file could not be read.
    #[error("{}: cannot read it", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a backup of this kind.
    #[error("{}: not a pgwarden DCS snapshot: {why}", .file.display())]
    NotABackup {
        /// The file.
        file: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// A version this build does not read.
    #[error("{}: DCS snapshot format version {found}; this pgwarden reads version {VERSION}", .file.display())]
    Version {
        /// The file.
        file: PathBuf,
        /// The version in its header.
        found: u32,
    },
    /// Length or checksum wrong, or a body that does not parse: damaged or truncated.
    #[error("{}: the DCS snapshot is corrupt: {why}", .file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What does not match.
        why: String,
    },
    /// The target exists and overwriting was not asked for.
    #[error("{} exists; pass --force to overwrite it", .file.display())]
    Exists {
        /// The file.
        file: PathBuf,
    },
    /// Writing failed; the target is unchanged.
    #[error("{}: cannot write it", .file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// FNV-1a, 64 bits: detects damage, needs no dependency (the same as the Raft store's).
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl DcsBackup {
    /// The file's bytes: header line, then the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        let body = serde_json::to_vec_pretty(self).unwrap_or_default();
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            bytes: body.len() as u64,
            fnv1a64: format!("{:016x}", fnv1a64(&body)),
        };
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(&body);
        out
    }

    /// Parses and checks a file's bytes; `file` only names it in errors.
    pub fn from_bytes(file: &Path, bytes: &[u8]) -> Result<Self, BackupError> {
        let not_backup = |why: String| BackupError::NotABackup {
            file: file.to_path_buf(),
            why,
        };
        let corrupt = |why: String| BackupError::Corrupt {
            file: file.to_path_buf(),
            why,
        };
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| not_backup("no header line".into()))?;
        let header: Header = serde_json::from_slice(&bytes[..nl])
            .map_err(|e| not_backup(format!("the first line is not its header ({e})")))?;
        if header.format != FORMAT {
            return Err(not_backup(format!("format {:?}", header.format)));
        }
        if header.version != VERSION {
            return Err(BackupError::Version {
                file: file.to_path_buf(),
                found: header.version,
            });
        }
        let body = &bytes[nl + 1..];
        if body.len() as u64 != header.bytes {
            return Err(corrupt(format!(
                "{} bytes after the header, the header says {} (truncated?)",
                body.len(),
                header.bytes
            )));
        }
        let sum = format!("{:016x}", fnv1a64(body));
        if sum != header.fnv1a64 {
            return Err(corrupt(format!(
                "checksum {sum}, the header says {}",
                header.fnv1a64
            )));
        }
        serde_json::from_slice(body).map_err(|e| corrupt(format!("the body does not parse: {e}")))
    }

    /// Reads and checks `file`.
    pub fn read(file: &Path) -> Result<Self, BackupError> {
        let bytes = std::fs::read(file).map_err(|source| BackupError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_bytes(file, &bytes)
    }

    /// Writes to `file` atomically (see the module doc); refuses an existing file unless
    /// `overwrite`.
    pub fn write(&self, file: &Path, overwrite: bool) -> Result<(), BackupError> {
        if !overwrite && file.exists() {
            return Err(BackupError::Exists {
                file: file.to_path_buf(),
            });
        }
        let write_err = |source| BackupError::Write {
            file: file.to_path_buf(),
            source,
        };
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = file
            .file_name()
            .ok_or_else(|| write_err(std::io::Error::other("not a file name")))?;
        let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        let res = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&self.to_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, file)?;
            File::open(&dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DcsBackup {
        DcsBackup {
            scope: "batman".into(),
            prefix: "/service/batman/".into(),
            revision: 42,
            taken_at: "2026-01-01T00:00:00Z".into(),
            keys: vec![KeyValue {
                key: "/service/batman/leader".into(),
                value: "pg0".into(),
                create_revision: 3,
                mod_revision: 40,
                ttl_ms: Some(30_000),
            }],
        }
    }

    #[test]
    fn dcs_ops_backup_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.snap");
        sample().write(&f, false).unwrap();
        assert_eq!(DcsBackup::read(&f).unwrap(), sample());
        assert!(matches!(
            sample().write(&f, false),
            Err(BackupError::Exists { .. })
        ));
        sample().write(&f, true).unwrap();
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let good = std::fs::read(&f).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0x01;
        let e = DcsBackup::from_bytes(&f, &flipped).unwrap_err();
        assert!(e.to_string().contains("corrupt: checksum"), "{e}");
        let e = DcsBackup::from_bytes(&f, &good[..good.len() - 10]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = DcsBackup::from_bytes(&f, b"hello\nworld").unwrap_err();
        assert!(matches!(e, BackupError::NotABackup { .. }), "{e}");
        assert!(e.to_string().starts_with(&f.display().to_string()), "{e}");
        let e = DcsBackup::from_bytes(&f, b"").unwrap_err();
        assert!(matches!(e, BackupError::NotABackup { .. }), "{e}");
    }
}
