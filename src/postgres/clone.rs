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
    /// A custom command (a section `postgresql.<name>`), called with `--scope=… --role=replica
    /// --datadir=… --connstring=…` unless `no_params`, then `--<key>=<value>` for each extra
    /// key of the section, like Patroni's methods.
    Custom {
        /// Method name (for logs).
        name: String,
        /// Command line (split into words; no shell).
        command: String,
        /// Extra `--key=value` arguments.
        params: BTreeMap<String, String>,
        /// `keep_data`: runs over what an earlier method left in the data directory (e.g.
        /// `pgbackrest --delta restore`) instead of over a fresh, empty one.
        keep_data: bool,
        /// `no_leader` (Patroni's old name: `no_master`): the method needs no running member
        /// to copy from (a restore from a backup repository).
        no_leader: bool,
        /// `no_params`: the four standard arguments are not appended.
        no_params: bool,
    },
}

/// The argument vector of a custom replica method: the command's own words, then (unless
/// `no_params`) Patroni's four standard arguments, then every extra key as `--key=value`.
/// `connstring` is empty when the method runs with no member to copy from.
pub fn custom_method_argv(
    command: &str,
    params: &BTreeMap<String, String>,
    no_params: bool,
    scope: &str,
    data_dir: &Path,
    connstring: &str,
) -> Result<Vec<String>> {
    let mut argv = split_command(command)?;
    if !no_params {
        argv.extend([
            format!("--scope={scope}"),
            "--role=replica".to_owned(),
            format!("--datadir={}", data_dir.display()),
            format!("--connstring={connstring}"),
        ]);
    }
    argv.extend(params.iter().map(|(k, v)| format!("--{k}={v}")));
    Ok(argv)
}

impl ReplicaMethod {
    /// Patroni's default: pg_basebackup, two tries.
    pub fn default_methods() -> Vec<ReplicaMethod> {
        vec![ReplicaMethod::Basebackup { max_tries: 2 }]
    }

    /// Whether the method can run with no member to copy from (Patroni: never `basebackup`).
    pub fn works_without_leader(&self) -> bool {
        matches!(self, ReplicaMethod::Custom { no_leader: true, .. })
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
        source: Option<&Upstream>,
        method: &ReplicaMethod,
        passfile: Option<&Path>,
    ) -> Result<()> {
        let ReplicaMethod::Custom {
            command,
            params,
            no_params,
            ..
        } = method
        else {
            return Ok(());
        };
        let s = &self.settings;
        let connstring = source.map_or(String::new(), |up| {
            format!(
                "postgres://{}@{}:{}/postgres",
                s.replication.username, up.host, up.port
            )
        });
        let argv = custom_method_argv(command, params, *no_params, &s.scope, &s.data_dir, &connstring)?;
        let mut cmd = self.spawner.external(&argv[0]);
        cmd.args(&argv[1..]);
        if let Some(p) = passfile {
            cmd.env("PGPASSFILE", p);
        }
        tracing::info!(method = method.name(), command = %argv.join(" "), "running a custom replica method");
        self.spawner
            .output("clone with a custom replica method", cmd, s.timeouts.clone)
            .await?;
        Ok(())
    }

    /// Creates the data directory with the replica methods in order, from `source`, or with no
    /// source at all (a cluster with no leader) by the methods that need none (`no_leader`).
    ///
    /// A method that fails is logged (its command, exit status and stderr) and the next one is
    /// tried. What a failed attempt wrote is never deleted: the next method either works over
    /// it (`keep_data`, e.g. a `--delta` restore) or gets a fresh, empty directory, the partial
    /// one being moved aside (`<data_dir>.failed-<time>`). Patroni deletes it instead.
    pub(super) async fn clone_data_dir(
        &self,
        source: Option<&Upstream>,
        methods: &[ReplicaMethod],
        progress: &watch::Sender<CloneProgress>,
    ) -> Result<()> {
        self.prepare_empty_data_dir("clone")?;
        let s = &self.settings;
        let pass = match source {
            Some(up) => Some(SecretFile::create(
                &self.secret_dir(),
                &self.secret_prefix(),
                &pgpass_line(&up.host, up.port, &s.replication),
                &self.spawner.ids,
            )?),
            None => None,
        };
        let source_addr = source.map_or_else(
            || "no member (restore without a leader)".to_owned(),
            ToString::to_string,
        );
        let mut last = None;
        for method in methods {
            let tries = match method {
                ReplicaMethod::Basebackup { max_tries } => (*max_tries).max(1),
                ReplicaMethod::Custom { .. } => 1,
            };
            if source.is_none() && !method.works_without_leader() {
                tracing::info!(
                    method = method.name(),
                    "skipping a replica method that needs a member to copy from: there is none"
                );
                continue;
            }
            let keep_data = matches!(method, ReplicaMethod::Custom { keep_data: true, .. });
            for attempt in 1..=tries {
                self.fresh_dir_unless_kept(keep_data, method.name())?;
                progress.send_replace(CloneProgress {
                    method: method.name().to_owned(),
                    attempt,
                    ..Default::default()
                });
                tracing::info!(source = %source_addr, method = method.name(), attempt, "cloning");
                let res = match (method, source, &pass) {
                    (ReplicaMethod::Basebackup { .. }, Some(up), Some(pass)) => {
                        self.run_basebackup(up, pass.path(), progress).await
                    }
                    (ReplicaMethod::Basebackup { .. }, _, _) => continue,
                    (ReplicaMethod::Custom { .. }, _, _) => {
                        self.run_custom_method(source, method, pass.as_ref().map(|p| p.path()))
                            .await
                    }
                };
                match res {
                    Ok(()) => {
                        progress.send_modify(|p| p.finished = true);
                        tracing::info!(source = %source_addr, method = method.name(), "clone finished");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(source = %source_addr, method = method.name(), attempt, error = %e, "replica method failed; trying the next one");
                        last = Some(e);
                        if attempt < tries {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        }
        Err(Error::CloneFailed {
            data_dir: s.data_dir.clone(),
            source_addr,
            source: Box::new(last.unwrap_or(Error::BadCommand {
                command: String::new(),
                why: "no replica method can run: with no leader, only methods with `no_leader: true` can",
            })),
        })
    }

    /// Before a replica method: an absent data directory is created; one that an earlier
    /// attempt left files in is moved aside (never deleted) and replaced by an empty one,
    /// unless the method keeps data. A clone retried every loop would otherwise keep a copy
    /// per attempt: with [`MAX_FAILED_COPIES`] copies already kept, the files stay where they
    /// are and the clone stops until an operator removes some.
    fn fresh_dir_unless_kept(&self, keep_data: bool, method: &str) -> Result<()> {
        let dir = self.data_dir();
        if dir.exists() && !is_empty_dir(dir)? {
            if keep_data {
                tracing::info!(method, "keep_data: running over what the data directory holds");
                return Ok(());
            }
            if self.failed_copies() >= MAX_FAILED_COPIES {
                return Err(Error::DataDirNotEmpty {
                    path: dir.to_owned(),
                    operation: "run the next replica method (three failed copies are already kept beside it \
                                as <data_dir>.failed-*: remove them so that pgwarden tries again)",
                });
            }
            let to = self.move_aside()?;
            tracing::warn!(method, moved_to = %to.display(), "a failed attempt left files in the data directory: moved aside before the next method");
        }
        self.prepare_empty_data_dir("clone")
    }

    /// How many moved-aside copies of the data directory (`<data_dir>.failed-*`) exist.
    fn failed_copies(&self) -> usize {
        let dir = self.data_dir();
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return 0;
        };
        let prefix = format!("{}.failed-", name.to_string_lossy());
        std::fs::read_dir(parent)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Moved-aside copies of a data directory kept before a replica method stops making more.
pub const MAX_FAILED_COPIES: usize = 3;

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
    fn datain_custom_method_arguments_follow_patroni() {
        let params: BTreeMap<String, String> = [("threads".to_string(), "4".to_string())].into();
        let d = Path::new("/data/pg");
        let argv = custom_method_argv(
            "wal-g backup-fetch 'a b'",
            &params,
            false,
            "demo",
            d,
            "postgres://r@h:5432/postgres",
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "wal-g",
                "backup-fetch",
                "a b",
                "--scope=demo",
                "--role=replica",
                "--datadir=/data/pg",
                "--connstring=postgres://r@h:5432/postgres",
                "--threads=4"
            ]
        );
        let argv = custom_method_argv("pgbackrest --delta restore", &params, true, "demo", d, "").unwrap();
        assert_eq!(argv, ["pgbackrest", "--delta", "restore", "--threads=4"]);
        assert!(custom_method_argv("  ", &params, true, "demo", d, "").is_err());
        assert!(ReplicaMethod::Custom {
            name: "x".into(),
            command: "x".into(),
            params,
            keep_data: false,
            no_leader: true,
            no_params: false
        }
        .works_without_leader());
        assert!(!ReplicaMethod::Basebackup { max_tries: 2 }.works_without_leader());
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
