//! Whether a stopped instance diverged from the primary's timeline, by Patroni's rule.
//!
//! Inputs: the local timeline and WAL end (from pg_controldata), the primary's current timeline
//! and its timeline history file. The history is read with SQL on the primary
//! (`pg_read_file('pg_wal/<TL>.history')` as superuser) rather than `TIMELINE_HISTORY` over a
//! replication connection, because tokio-postgres has no replication protocol.
//!
//! The [`PgManager`] methods here check the divergence and run pg_rewind with its
//! preconditions. A failed pg_rewind leaves the data directory in place: whether it is moved
//! aside is the HA loop's decision (`remove_data_directory_on_rewind_failure`).

use super::clone::Upstream;
use super::conf::{self, pgpass_line};
use super::error::{Error, Result};
use super::manager::PgManager;
use super::process::SecretFile;
use super::query;
use crate::types::{Lsn, TimelineId};

/// One line of a timeline history file: `parent_tl <tab> switchpoint <tab> reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub timeline: TimelineId,
    /// Where it ended (the first LSN of the next timeline).
    pub switchpoint: Lsn,
}

/// Parses a history file; comments and blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || Error::Unexpected {
            what: "timeline history line",
            value: line.to_owned(),
        };
        let mut it = line.split_whitespace();
        let tl = it.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let lsn = it.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        out.push(HistoryEntry {
            timeline: TimelineId(tl),
            switchpoint: lsn,
        });
    }
    Ok(out)
}

/// The outcome of the divergence check, with the reason for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RewindDecision {
    /// The local data can stream from the primary as it is.
    NotNeeded {
        /// Why.
        reason: String,
    },
    /// The local data holds WAL the primary does not have; pg_rewind (or a re-clone) is needed.
    Needed {
        /// Why.
        reason: String,
    },
}

impl RewindDecision {
    /// Whether pg_rewind is needed.
    pub fn needed(&self) -> bool {
        matches!(self, RewindDecision::Needed { .. })
    }
}

/// Patroni's rule (patroni-behaviour.md "Recovery & rejoin"). `was_standby` selects the standby
/// variant: a standby diverged if it replayed past the switchpoint; a former primary if its last
/// (shutdown) checkpoint is at or past it. For a cleanly stopped primary the shutdown checkpoint is
/// its last record and records never straddle a switchpoint, so "checkpoint < switchpoint" is the
/// same as Patroni's "checkpoint end == switchpoint" without decoding WAL.
pub fn decide(
    local_tl: TimelineId,
    local_lsn: Lsn,
    was_standby: bool,
    primary_tl: TimelineId,
    history: &[HistoryEntry],
) -> RewindDecision {
    use RewindDecision::*;
    if local_tl > primary_tl {
        return Needed {
            reason: format!("local timeline {local_tl} is ahead of the primary's {primary_tl}"),
        };
    }
    if local_tl == primary_tl {
        return NotNeeded {
            reason: format!("same timeline {local_tl} as the primary"),
        };
    }
    for e in history {
        if e.timeline == local_tl {
            let diverged = if was_standby {
                local_lsn > e.switchpoint
            } else {
                local_lsn >= e.switchpoint
            };
            let what = if was_standby {
                "replayed up to"
            } else {
                "last checkpoint at"
            };
            return if diverged {
                Needed {
                    reason: format!(
                        "{what} {local_lsn} on timeline {local_tl}, past the primary's switchpoint {}",
                        e.switchpoint
                    ),
                }
            } else {
                NotNeeded {
                    reason: format!(
                        "{what} {local_lsn} on timeline {local_tl}, before the primary's switchpoint {}",
                        e.switchpoint
                    ),
                }
            };
        }
        if e.timeline > local_tl {
            break;
        }
    }
    Needed {
        reason: format!(
            "local timeline {local_tl} is not an ancestor of the primary's timeline {primary_tl}"
        ),
    }
}

impl PgManager {
    async fn primary_timeline(&self, primary: &Upstream) -> Result<query::PrimaryTimeline> {
        let c = self.primary_client(primary).await?;
        query::primary_timeline(&c, self.settings.timeouts.query).await
    }

    /// Whether the stopped local instance diverged from `primary`'s timeline.
    pub(super) async fn check_divergence(&self, primary: &Upstream) -> Result<RewindDecision> {
        self.ensure_stopped("check for divergence")?;
        let mut cd = self.read_controldata().await?;
        if cd.needs_crash_recovery() && self.run_crash_recovery().await? {
            tracing::info!("crash recovery done before the divergence check");
            cd = self.read_controldata().await?;
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
            Some(h) => parse_history(h)?,
            None => Vec::new(),
        };
        let decision = decide(local_tl, local_lsn, cd.was_standby(), p.timeline, &history);
        tracing::info!(
            local_timeline = local_tl.0,
            local_lsn = %local_lsn,
            primary_timeline = p.timeline.0,
            ?decision,
            "divergence check"
        );
        Ok(decision)
    }

    /// Runs pg_rewind from `primary` after checking its preconditions.
    pub(super) async fn run_pg_rewind(&self, primary: &Upstream) -> Result<()> {
        self.check_data_dir()?;
        self.ensure_stopped("rewind")?;
        let s = &self.settings;
        let data_dir = s.data_dir.clone();
        self.run_crash_recovery().await?;
        let cd = self.read_controldata().await?;
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
                // pg_rewind may have replaced them with the source's before failing.
                if let Err(re) = self.restore_config_files(&saved) {
                    tracing::warn!(error = %re, "could not restore the configuration files after the failed pg_rewind");
                }
                Err(Error::RewindFailed {
                    data_dir,
                    source: Box::new(e),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn history_file_parses() {
        let h =
            parse_history("1\t0/3000148\tno recovery target specified\n\n2\t0/5000000\treason\n").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].timeline, TimelineId(2));
        assert_eq!(h[0].switchpoint, lsn("0/3000148"));
        assert!(parse_history("x y").is_err());
    }

    #[test]
    fn decision_follows_patroni_rule() {
        let h = parse_history("1\t0/3000148\tx\n").unwrap();
        let t1 = TimelineId(1);
        let t2 = TimelineId(2);
        assert!(decide(TimelineId(3), lsn("0/1"), false, t2, &h).needed());
        assert!(!decide(t2, lsn("9/0"), false, t2, &h).needed());
        // former primary: its shutdown checkpoint before the switchpoint is fine, at/after is not
        assert!(!decide(t1, lsn("0/30000D8"), false, t2, &h).needed());
        assert!(decide(t1, lsn("0/3000148"), false, t2, &h).needed());
        // standby: may be exactly at the switchpoint
        assert!(!decide(t1, lsn("0/3000148"), true, t2, &h).needed());
        assert!(decide(t1, lsn("0/3000150"), true, t2, &h).needed());
        // local timeline missing from the history: a different branch
        assert!(decide(
            TimelineId(1),
            lsn("0/1"),
            true,
            TimelineId(3),
            &parse_history("2\t0/1\tx").unwrap()
        )
        .needed());
    }
}
