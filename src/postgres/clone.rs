//! Replica creation: Patroni's `create_replica_methods`, pg_basebackup's progress lines, and
//! the [`PgManager`] methods that run the methods in order into an empty data directory.

use super::conf::{self, pgpass_line};
use super::datadir::is_empty_dir;
use super::error::{Error, Result};
use super::manager::PgManager;
use super::process::{program_name, split_command, tail, SecretFile};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// The member to clone from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One way to create a replica, tried in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaMethod {
    /// `pg_basebackup -X stream` (Patroni's `basebackup`), up to `max_tries` attempts.
    Basebackup {
        /// Attempts (Patroni: 2).
        max_tries: u32,
    },
    /// A custom command, called with `--scope=… --role=replica --datadir=… --connstring=…` and
    /// `--<key>=<value>` for each extra parameter, like Patroni's methods.
    Custom {
        /// Method name (for logs).
        name: String,
        /// Command line (split into words; no shell).
        command: String,
        /// Extra `--key=value` arguments.
        params: BTreeMap<String, String>,
    },
}

impl ReplicaMethod {
    /// Patroni's default: pg_basebackup, two tries.
    pub fn default_methods() -> Vec<ReplicaMethod> {
        vec![ReplicaMethod::Basebackup { max_tries: 2 }]
    }

    /// Name for logs and progress.
    pub fn name(&self) -> &str {
        match self {
            ReplicaMethod::Basebackup { .. } => "basebackup",
            ReplicaMethod::Custom { name, .. } => name,
        }
    }
}

/// pg_basebackup options pgwarden sets itself or that would make the copy unusable as a
/// replica's data directory: Patroni's list (where it goes, its format and compression, how
/// WAL and the connection are given), plus `write-recovery-conf` (its primary_conninfo in
/// postgresql.auto.conf would override the one pgwarden writes) and `target` (a server-side
/// backup writes no data directory).
pub const FORBIDDEN_BASEBACKUP_OPTIONS: &[&str] = &[
    "pgdata",
    "format",
    "wal-method",
    "xlog-method",
    "gzip",
    "version",
    "compress",
    "dbname",
    "host",
    "port",
    "username",
    "password",
    "no-password",
    "write-recovery-conf",
    "target",
];

/// Checks `postgresql.basebackup` options (long names without dashes, as Patroni writes them)
/// and returns them as command-line arguments, which pgwarden passes after its own, so a
/// repeated option such as `checkpoint: spread` wins. An option pgwarden must control is an
/// error naming it.
pub fn basebackup_args(options: &[(String, Option<String>)]) -> std::result::Result<Vec<String>, String> {
    options
        .iter()
        .map(|(name, value)| {
            let bare = name.trim_start_matches('-');
            if FORBIDDEN_BASEBACKUP_OPTIONS.contains(&bare) {
                return Err(format!(
                    "option `{bare}` is set by pgwarden itself and cannot be given (not allowed: {})",
                    FORBIDDEN_BASEBACKUP_OPTIONS.join(", ")
                ));
            }
            if bare.len() == 1 {
                return Err(format!(
                    "option `{bare}`: write the long name without dashes (e.g. `max-rate: 100M`, `checkpoint: fast`)"
                ));
            }
            Ok(match value {
                Some(v) => format!("--{bare}={v}"),
                None => format!("--{bare}"),
            })
        })
        .collect()
}

/// Progress of a clone, published on a `tokio::sync::watch` channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CloneProgress {
    /// Method running.
    pub method: String,
    /// Attempt number of that method, from 1.
    pub attempt: u32,
    /// kB copied.
    pub done_kb: u64,
    /// kB expected (pg_basebackup's estimate).
    pub total_kb: u64,
    /// Percent as pg_basebackup reports it.
    pub percent: u8,
    /// The clone finished successfully.
    pub finished: bool,
}

/// Parses a `--progress` line: `  12345/23456 kB (52%), 0/1 tablespace (...)`.
pub fn parse_progress(line: &str) -> Option<(u64, u64, u8)> {
    let line = line.trim();
    let (sizes, rest) = line.split_once(" kB (")?;
    let (done, total) = sizes.trim().split_once('/')?;
    let pct = rest.split_once("%)")?.0;
    Some((
        done.trim().parse().ok()?,
        total.trim().parse().ok()?,
        pct.trim().parse().ok()?,
    ))
}

/// Classification of pg_basebackup's stderr: connection trouble and bad credentials get their own
/// error variants because the caller handles them differently (try another member vs. alert).
pub(crate) enum Failure {
    Unreachable,
    Authentication,
    Other,
}

pub(crate) fn classify(stderr: &str) -> Failure {
    let s = stderr.to_ascii_lowercase();
    if s.contains("password authentication failed")
        || s.contains("no password supplied")
        || s.contains("no pg_hba.conf entry")
    {
        Failure::Authentication
    } else if s.contains("connection refused")
        || s.contains("could not connect")
        || s.contains("could not translate host name")
        || s.contains("timeout expired")
        || s.contains("no route to host")
    {
        Failure::Unreachable
    } else {
        Failure::Other
    }
}

impl PgManager {
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
            .args(&s.basebackup_args)
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

    /// Creates the data directory from `source` with the replica methods in order.
    pub(super) async fn clone_data_dir(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(n: &str, v: Option<&str>) -> (String, Option<String>) {
        (n.to_string(), v.map(str::to_string))
    }

    #[test]
    fn basebackup_options_become_arguments_and_controlled_ones_are_refused() {
        let args = basebackup_args(&[
            opt("max-rate", Some("100M")),
            opt("checkpoint", Some("spread")),
            opt("verbose", None),
        ])
        .unwrap();
        assert_eq!(args, ["--max-rate=100M", "--checkpoint=spread", "--verbose"]);
        for bad in [
            "pgdata",
            "wal-method",
            "--dbname",
            "write-recovery-conf",
            "format",
        ] {
            let e = basebackup_args(&[opt(bad, Some("x"))]).unwrap_err();
            assert!(e.contains(bad.trim_start_matches('-')), "{e}");
        }
        assert!(basebackup_args(&[opt("D", Some("/x"))]).is_err());
    }

    #[test]
    fn progress_lines_parse() {
        assert_eq!(
            parse_progress("    0/22478 kB (0%), 0/1 tablespace (...pgdata/backup_label )"),
            Some((0, 22478, 0))
        );
        assert_eq!(
            parse_progress("22488/22488 kB (100%), 1/1 tablespace"),
            Some((22488, 22488, 100))
        );
        assert_eq!(
            parse_progress("pg_basebackup: write-ahead log start point: 0/2000028"),
            None
        );
    }

    #[test]
    fn failures_are_classified() {
        assert!(matches!(
            classify("pg_basebackup: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused"),
            Failure::Unreachable
        ));
        assert!(matches!(
            classify("FATAL:  password authentication failed for user \"repl\""),
            Failure::Authentication
        ));
        assert!(matches!(classify("disk full"), Failure::Other));
    }
}
