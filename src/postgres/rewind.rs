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
    /// The local data diverged on a timeline that has the same number as the primary's:
    /// pg_rewind compares timeline numbers only, finds them equal and does nothing, so only a
    /// new clone brings this member back. Two clusters of one system identifier give this: a
    /// primary cluster that failed over within itself while its standby cluster was promoted.
    NeedsClone {
        /// Why.
        reason: String,
    },
}

impl RewindDecision {
    /// Whether the local data diverged (pg_rewind or a new clone is needed).
    pub fn needed(&self) -> bool {
        !matches!(self, RewindDecision::NotNeeded { .. })
    }
}

/// One stretch of WAL history: `timeline` until `end` (`None`: the current timeline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    timeline: TimelineId,
    end: Option<Lsn>,
}

fn segments(history: &[HistoryEntry], current: TimelineId) -> Vec<Segment> {
    history
        .iter()
        .map(|e| Segment {
            timeline: e.timeline,
            end: Some(e.switchpoint),
        })
        .chain(std::iter::once(Segment {
            timeline: current,
            end: None,
        }))
        .collect()
}

/// Where two WAL histories part: `None` when they are the same history; otherwise the last
/// timeline they share and the LSN where the first of them left it. The histories are
/// compared stretch by stretch, as pg_rewind finds its common ancestor, so a timeline number
/// that means a different history on each side (the same number reached through different
/// switchpoints) is caught.
fn fork_point(
    local: &[HistoryEntry],
    local_tl: TimelineId,
    primary: &[HistoryEntry],
    primary_tl: TimelineId,
) -> Option<(TimelineId, Lsn)> {
    let l = segments(local, local_tl);
    let p = segments(primary, primary_tl);
    let mut start = Lsn::ZERO;
    let mut shared = None;
    for (a, b) in l.iter().zip(p.iter()) {
        if a.timeline != b.timeline {
            // Both left `shared` at `start` (the previous ends were equal) for different
            // timelines.
            return Some((shared.unwrap_or(a.timeline), start));
        }
        match (a.end, b.end) {
            (Some(x), Some(y)) if x == y => {
                shared = Some(a.timeline);
                start = x;
            }
            (None, None) => return None,
            (x, y) => {
                let end = match (x, y) {
                    (Some(x), Some(y)) => x.min(y),
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => unreachable!("handled above"),
                };
                return Some((a.timeline, end));
            }
        }
    }
    None
}

/// Patroni's rule (patroni-behaviour.md "Recovery & rejoin"), made aware of whole histories.
/// `was_standby` selects the standby variant: a standby diverged if it replayed past the fork
/// point; a former primary if its last (shutdown) checkpoint is at or past it. For a cleanly
/// stopped primary the shutdown checkpoint is its last record and records never straddle a
/// switchpoint, so "checkpoint < switchpoint" is the same as Patroni's "checkpoint end ==
/// switchpoint" without decoding WAL.
///
/// `local_history` is this instance's own history file (`None` when it could not be read:
/// then the primary's history alone decides, as Patroni does). With it, an instance on the
/// same timeline number as the primary but reached through another switchpoint is found
/// diverged ([`RewindDecision::NeedsClone`]) instead of streaming WAL of another history.
pub fn decide(
    local_tl: TimelineId,
    local_lsn: Lsn,
    was_standby: bool,
    primary_tl: TimelineId,
    history: &[HistoryEntry],
    local_history: Option<&[HistoryEntry]>,
) -> RewindDecision {
    use RewindDecision::*;
    if local_tl > primary_tl {
        return Needed {
            reason: format!("local timeline {local_tl} is ahead of the primary's {primary_tl}"),
        };
    }
    let local_history = match local_history {
        Some(h) => h.to_vec(),
        // Without our own file: assume the primary's record of our timeline's ancestors.
        None => history
            .iter()
            .filter(|e| e.timeline < local_tl)
            .cloned()
            .collect(),
    };
    let Some((tl, fork)) = fork_point(&local_history, local_tl, history, primary_tl) else {
        return NotNeeded {
            reason: format!("same timeline {local_tl} and history as the primary"),
        };
    };
    let what = if was_standby {
        "replayed up to"
    } else {
        "last checkpoint at"
    };
    let diverged = if was_standby {
        local_lsn > fork
    } else {
        local_lsn >= fork
    };
    if !diverged {
        return NotNeeded {
            reason: format!(
                "{what} {local_lsn} on timeline {local_tl}, before the primary's history leaves timeline {tl} at {fork}"
            ),
        };
    }
    let reason = format!(
        "{what} {local_lsn} on timeline {local_tl}, past {fork} where the primary's history (timeline {primary_tl}) leaves timeline {tl}"
    );
    if local_tl == primary_tl {
        NeedsClone {
            reason: format!(
                "{reason}: both are on timeline {local_tl} through different switchpoints, which pg_rewind cannot tell apart"
            ),
        }
    } else {
        Needed { reason }
    }
}

impl PgManager {
    async fn primary_timeline(&self, primary: &Upstream) -> Result<query::PrimaryTimeline> {
        let c = self.primary_client(primary).await?;
        query::primary_timeline(&c, self.settings.timeouts.query).await
    }

    /// This instance's own timeline history file, when it is past timeline 1 and the file can
    /// be read (PostgreSQL keeps every history file in pg_wal; an unreadable one leaves the
    /// decision to the primary's history alone, as Patroni's check).
    pub(super) fn local_history(&self, tl: TimelineId) -> Option<Vec<HistoryEntry>> {
        if tl.0 <= 1 {
            return Some(Vec::new());
        }
        let path = self
            .data_dir()
            .join("pg_wal")
            .join(format!("{:08X}.history", tl.0));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not read this instance's timeline history: comparing with the primary's history only");
                return None;
            }
        };
        match parse_history(&text) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "this instance's timeline history does not parse: comparing with the primary's history only");
                None
            }
        }
    }

    /// Whether this instance's timeline `tl`, which began at `start`, is the source's timeline
    /// `tl` or another one of the same number: two members that each promoted at the same
    /// LSN write identical history files, but the first records of their new timelines (the
    /// end-of-recovery checkpoint, with its time) differ. Compares up to one WAL page from
    /// `start`, within what both have written. `None` when it cannot tell (a segment
    /// recycled on either side, nothing written yet): the history files decide then.
    async fn same_timeline_start(
        &self,
        primary: &Upstream,
        tl: TimelineId,
        start: Lsn,
        local_end: Lsn,
    ) -> Result<Option<bool>> {
        const PAGE: u64 = 8192;
        let c = self.primary_client(primary).await?;
        let t = self.settings.timeouts.query;
        // A first read learns the segment size and the source's durable end.
        let probe = query::wal_bytes(&c, t, None, 0, 0).await?;
        let seg = probe.segment_size;
        if seg == 0 || !seg.is_power_of_two() {
            return Ok(None);
        }
        let seg_end = (start.0 / seg + 1) * seg;
        let mut end = (start.0 + PAGE).min(local_end.0).min(seg_end);
        if let Some(d) = probe.durable {
            end = end.min(d.0);
        }
        if end <= start.0 {
            return Ok(None);
        }
        let segno = start.0 / seg;
        let per_id = 0x1_0000_0000 / seg;
        let name = format!("{:08X}{:08X}{:08X}", tl.0, segno / per_id, segno % per_id);
        let offset = start.0 % seg;
        let len = end - start.0;
        let theirs = match query::wal_bytes(&c, t, Some(&name), offset, len).await?.bytes {
            Some(b) if b.len() as u64 == len => b,
            _ => return Ok(None),
        };
        let path = self.data_dir().join("pg_wal").join(&name);
        let ours = match read_at(&path, offset, len) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "local WAL segment not readable for the timeline comparison");
                return Ok(None);
            }
        };
        Ok(Some(ours == theirs))
    }

    /// A source in recovery (the standby leader of a standby cluster, which its members follow)
    /// is one pg_rewind accepts from PostgreSQL 14; an older one is refused with the reason.
    fn source_usable(&self, primary: &Upstream, p: &query::PrimaryTimeline) -> Result<()> {
        if p.in_recovery && p.version_num < 140000 {
            return Err(Error::RewindPrecondition {
                data_dir: self.data_dir().to_owned(),
                why: format!(
                    "{primary} is in recovery, and pg_rewind before PostgreSQL 14 needs a primary as its source"
                ),
            });
        }
        Ok(())
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
        self.source_usable(primary, &p)?;
        let history = match &p.history {
            Some(h) => parse_history(h)?,
            None => Vec::new(),
        };
        let own = self.local_history(local_tl);
        let mut decision = decide(
            local_tl,
            local_lsn,
            cd.was_standby(),
            p.timeline,
            &history,
            own.as_deref(),
        );
        // Same history files; the same timeline too? (See `same_timeline_start`.)
        if let (false, Some(start)) = (
            decision.needed(),
            own.as_ref().and_then(|h| h.last()).map(|e| e.switchpoint),
        ) {
            match self.same_timeline_start(primary, local_tl, start, local_lsn).await {
                Ok(Some(false)) => {
                    decision = RewindDecision::NeedsClone {
                        reason: format!(
                            "timeline {local_tl} began at {start} here and on the source, but its first records differ: \
                             another member promoted at the same position"
                        ),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not compare the timeline's first WAL records with the source"),
            }
        }
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
        let mut p = self.primary_timeline(primary).await?;
        self.source_usable(primary, &p)?;
        // pg_rewind reads the source's timeline from its control file. A promoted primary's
        // names the new timeline only after the post-promote checkpoint; a standby's (the
        // standby leader its members follow) only after a restartpoint on it, which may be
        // minutes away: ask for one. Without it pg_rewind sees "the same timeline", changes
        // nothing and ends with success.
        if p.in_recovery && p.checkpoint_timeline != p.timeline {
            tracing::info!(source = %primary, checkpoint_timeline = p.checkpoint_timeline.0, timeline = p.timeline.0, "asking the standby source for a restartpoint before pg_rewind");
            let c = self.primary_client(primary).await?;
            if let Err(e) = c.batch_execute("CHECKPOINT").await {
                tracing::warn!(source = %primary, error = %e, "CHECKPOINT on the standby source failed");
            }
            p = self.primary_timeline(primary).await?;
        }
        if p.checkpoint_timeline != p.timeline {
            return Err(Error::RewindPrecondition {
                data_dir,
                why: format!(
                    "{primary} has not {} (checkpoint timeline {}, current {})",
                    if p.in_recovery {
                        "made a restartpoint on its new timeline yet"
                    } else {
                        "finished its post-promote checkpoint"
                    },
                    p.checkpoint_timeline,
                    p.timeline
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

/// `len` bytes of `path` from `offset` (fewer when the file is shorter).
fn read_at(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(len).read_to_end(&mut buf)?;
    Ok(buf)
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
        assert!(decide(TimelineId(3), lsn("0/1"), false, t2, &h, None).needed());
        assert!(!decide(t2, lsn("9/0"), false, t2, &h, None).needed());
        // former primary: its shutdown checkpoint before the switchpoint is fine, at/after is not
        assert!(!decide(t1, lsn("0/30000D8"), false, t2, &h, None).needed());
        assert!(decide(t1, lsn("0/3000148"), false, t2, &h, None).needed());
        // standby: may be exactly at the switchpoint
        assert!(!decide(t1, lsn("0/3000148"), true, t2, &h, None).needed());
        assert!(decide(t1, lsn("0/3000150"), true, t2, &h, None).needed());
        // local timeline missing from the history: a different branch
        assert!(decide(
            TimelineId(1),
            lsn("0/1"),
            true,
            TimelineId(3),
            &parse_history("2\t0/1\tx").unwrap(),
            None
        )
        .needed());
    }

    /// The same answers with the local history file read as without it, when the two
    /// clusters share their history.
    #[test]
    fn a_shared_history_gives_the_same_answers() {
        let h = parse_history("1\t0/3000148\tx\n2\t0/5000000\ty\n").unwrap();
        let own2 = parse_history("1\t0/3000148\tx\n").unwrap();
        let t2 = TimelineId(2);
        let t3 = TimelineId(3);
        assert!(!decide(t2, lsn("0/4FFFFFF"), true, t3, &h, Some(&own2)).needed());
        assert!(decide(t2, lsn("0/5000001"), true, t3, &h, Some(&own2)).needed());
        assert!(!decide(t3, lsn("0/9000000"), true, t3, &h, Some(&h)).needed());
        // an ancestor the primary skipped: timeline 2 of ours is not in its history
        let skipped = parse_history("1\t0/3000148\tx\n").unwrap();
        let d = decide(t2, lsn("0/3000200"), true, t3, &skipped, Some(&own2));
        assert!(d.needed(), "{d:?}");
    }

    /// Two clusters of one system identifier that each left timeline 1 at a different LSN
    /// (a standby cluster promoted, the old primary cluster failed over within itself): both
    /// on "timeline 2", different histories.
    #[test]
    fn the_same_timeline_number_through_different_switchpoints_needs_a_clone() {
        let theirs = parse_history("1\t0/3000148\tpromoted standby cluster\n").unwrap();
        let ours = parse_history("1\t0/3400000\tfailover in the old cluster\n").unwrap();
        let t2 = TimelineId(2);
        let d = decide(t2, lsn("0/3500000"), false, t2, &theirs, Some(&ours));
        assert!(
            matches!(d, RewindDecision::NeedsClone { .. }),
            "pg_rewind cannot fix this, only a clone: {d:?}"
        );
        // The same history on both sides is not a divergence.
        let d = decide(
            t2,
            lsn("0/3000100"),
            true,
            t2,
            &parse_history("1\t0/3000148\tx\n").unwrap(),
            Some(&parse_history("1\t0/3000148\tx\n").unwrap()),
        );
        assert!(!d.needed(), "{d:?}");
        // Ahead on timeline 1 of a primary that left it earlier: rewind, as before.
        let d = decide(TimelineId(1), lsn("0/3400000"), false, t2, &theirs, Some(&[]));
        assert!(matches!(d, RewindDecision::Needed { .. }), "{d:?}");
    }
}
