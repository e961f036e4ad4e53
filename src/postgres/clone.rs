//! Replica creation: Patroni's `create_replica_methods` and pg_basebackup's progress lines.

use serde::Serialize;
use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::*;

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
